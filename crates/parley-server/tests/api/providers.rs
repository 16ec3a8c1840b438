//! Issue 10, items 1 and 2 for providers: no workspace can make Parley send a secret it does
//! not own to a URL it chooses, nor reach the server's own network through a provider URL.
//! The "attacker's listener" is the stub provider on 127.0.0.1; the server's secret is the
//! value of `PATH` (an environment variable every test process has: the tests cannot set
//! variables, `unsafe` being forbidden).

use parley_core::UserRole;
use parley_store::NewAssistant;
use parley_testkit::stub_provider::StubProvider;
use serde_json::json;

use crate::helpers::{Backend, TestApp, guarded, port_of};

/// The value a leak would carry: `Bearer <value of PATH>`.
fn leaked_bearer() -> String {
    format!("Bearer {}", std::env::var("PATH").expect("PATH is set"))
}

/// `GET /v1/models` for the assistant named `name`.
async fn models(app: &TestApp, name: &str) -> crate::helpers::Resp {
    app.send(
        app.client
            .get(app.url("/v1/models"))
            .bearer_auth(&app.key)
            .header("parley-assistant", name),
    )
    .await
}

/// An assistant stored as a version before operator providers saved it: settings JSON as it
/// is in the database (a provider whose key is an environment variable).
async fn legacy_assistant(app: &TestApp, name: &str, base_url: &str, var: &str) -> String {
    let settings = serde_json::from_value(json!({"provider": {
        "base_url": base_url, "model": "gpt-4o-mini",
        "api_key": {"kind": "env", "name": var}}}))
    .unwrap();
    let a = app
        .state
        .store
        .assistants()
        .create_assistant(
            app.workspace.id,
            &NewAssistant {
                name: name.into(),
                company: String::new(),
                mode: parley_core::AssistantMode::Active,
                settings,
            },
        )
        .await
        .unwrap();
    a.id.to_string()
}

/// The API refuses `api_key_env` (naming the field), and the dashboard form no longer stores
/// one: the gateway never sends the server's variable to the workspace's URL.
async fn a_server_environment_variable_cannot_be_named_as_a_key(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let listener = StubProvider::start().await.unwrap();
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Exfil", "settings": {"provider": {
                "base_url": listener.base_url, "model": "gpt-4o-mini", "api_key_env": "PATH"}}}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{}",
        r.text
    );
    assert_eq!(r.body["error"]["field"], "settings.provider.api_key_env");
    assert!(r.text.contains("no longer accepted"), "{}", r.text);
    // Not through a patch either.
    let r = app
        .post("/api/v1/assistants", &json!({"name": "Plain"}))
        .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .patch(
            &format!("/api/v1/assistants/{id}"),
            &json!({"settings": {"provider": {"base_url": listener.base_url,
                                              "model": "m", "api_key_env": "PATH"}}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "settings.provider.api_key_env");

    // The dashboard form, posted as the old form posted it.
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let res = app
        .post_form(
            "/assistants/new",
            &cookie,
            &[
                ("_csrf", csrf.as_str()),
                ("name", "FormExfil"),
                ("mode", "active"),
                ("provider", "custom"),
                ("base_url", listener.base_url.as_str()),
                ("model", "gpt-4o-mini"),
                ("key_source", "env"),
                ("key_env", "PATH"),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.text);
    let r = models(&app, "FormExfil").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let leaked = leaked_bearer();
    for auth in listener.authorizations() {
        assert_ne!(
            auth.as_deref(),
            Some(leaked.as_str()),
            "the server's variable leaked"
        );
    }
    let stored = app.get("/api/v1/assistants").await;
    assert!(!stored.text.contains("\"env\""), "{}", stored.text);
}

/// Assistants saved before operator providers whose key was an environment variable of the
/// server, at a URL of the workspace's: "needs a provider" — the variable is never sent to
/// their URL, and they do not answer.
async fn a_stored_environment_key_is_never_sent_to_a_workspace_url(backend: Backend) {
    let attacker = StubProvider::start().await.unwrap();
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let moved = legacy_assistant(&app, "Moved", &attacker.base_url, "PATH").await;
    let r = models(&app, "Moved").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "provider_not_configured"),
        "{}",
        r.text
    );
    assert!(r.text.contains("needs a provider"), "{}", r.text);
    assert!(
        attacker.authorizations().is_empty(),
        "nothing reached the other URL"
    );

    // It does not answer API conversations either (it only records), and says why on its page.
    let r = app
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"id": moved}, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["answering"], false, "{}", r.text);
    let (cookie, _) = app.dashboard_session(UserRole::Member).await;
    let page = app.page(&format!("/assistants/{moved}"), &cookie).await;
    assert!(page.text.contains("id=\"needs-provider\""), "{}", page.text);
    let list = app.page("/assistants", &cookie).await;
    assert!(list.text.contains("Needs a provider"), "{}", list.text);
    assert!(attacker.authorizations().is_empty());
}

/// The migration's other half: a stored environment key whose URL and variable match an
/// operator provider exactly (trailing slash aside) is served by that provider, with the
/// operator's key; the same variable at any other URL is not.
async fn a_stored_environment_key_matching_an_operator_provider_keeps_working(backend: Backend) {
    let operator = StubProvider::start().await.unwrap();
    let attacker = StubProvider::start().await.unwrap();
    let op_url = operator.base_url.clone();
    let Some(app) = TestApp::spawn_on_with(backend, move |s| {
        s.providers.insert(
            "house".into(),
            serde_json::from_value(json!({"base_url": op_url, "api_key_env": "PATH"})).unwrap(),
        );
    })
    .await
    else {
        return;
    };
    legacy_assistant(&app, "Kept", &format!("{}/", operator.base_url), "PATH").await;
    legacy_assistant(&app, "Moved", &attacker.base_url, "PATH").await;
    let r = models(&app, "Kept").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        operator.authorizations(),
        [Some(leaked_bearer())],
        "the operator's own provider gets the operator's key"
    );
    let r = models(&app, "Moved").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "provider_not_configured"),
        "{}",
        r.text
    );
    assert!(
        attacker.authorizations().is_empty(),
        "nothing reached the other URL"
    );
    // Its page shows the operator's provider picked; saving stores it by name.
    let (cookie, _) = app.dashboard_session(UserRole::Member).await;
    let id = app.get("/api/v1/assistants").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Kept")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = app.page(&format!("/assistants/{id}"), &cookie).await;
    assert!(
        page.text.contains("<option value=\"house\" selected>"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("id=\"needs-provider\""));
}

/// A workspace picks an operator provider by name: the operator's URL and key are used and
/// never shown; the operator's model list is enforced, in settings and in the gateway.
#[tokio::test]
async fn operator_providers_are_picked_by_name() {
    let operator = StubProvider::start().await.unwrap();
    let op_url = operator.base_url.clone();
    let app = TestApp::spawn_with(move |s| {
        s.providers.insert(
            "house".into(),
            serde_json::from_value(json!({"base_url": op_url, "api_key_env": "PATH",
                "models": ["gpt-4o-mini", "gpt-4o"], "default_model": "gpt-4o-mini",
                "label": "House OpenAI"}))
            .unwrap(),
        );
    })
    .await;
    let listed = app.get("/api/v1/providers").await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.body["items"],
        json!([{"name": "house", "label": "House OpenAI", "models": ["gpt-4o-mini", "gpt-4o"],
                "default_model": "gpt-4o-mini"}])
    );
    assert!(!listed.text.contains(&operator.base_url) && !listed.text.contains("PATH"));

    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "settings": {"provider": {"name": "house"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.body["settings"]["provider"],
        json!({"name": "house", "model": "gpt-4o-mini", "api_key": {"kind": "none"}})
    );
    let res = app
        .send(
            app.client
                .post(app.url("/v1/chat/completions"))
                .bearer_auth(&app.key)
                .json(&json!({"messages": [{"role": "user", "content": "Hi"}]})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(operator.requests()[0]["model"], "gpt-4o-mini");
    assert_eq!(operator.authorizations(), [Some(leaked_bearer())]);
    // A model the operator does not offer: refused in settings and in the gateway.
    let id = r.body["id"].as_str().unwrap();
    let r = app
        .patch(
            &format!("/api/v1/assistants/{id}"),
            &json!({"settings": {"provider": {"name": "house", "model": "o1-pro"}}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "validation_failed"));
    assert_eq!(r.body["error"]["field"], "settings.provider.model");
    let res = app
        .send(
            app.client
                .post(app.url("/v1/chat/completions"))
                .bearer_auth(&app.key)
                .json(&json!({"model": "o1-pro", "messages": [{"role": "user", "content": "Hi"}]})),
        )
        .await;
    assert_eq!(
        (res.status, res.code()),
        (422, "model_not_allowed"),
        "{}",
        res.text
    );
    assert_eq!(operator.requests().len(), 1, "refused before the provider");
    // A named provider takes no URL or key of the workspace's, and unknown names are named.
    for (provider, field) in [
        (
            json!({"name": "house", "base_url": "https://x.example/v1"}),
            "settings.provider.base_url",
        ),
        (
            json!({"name": "house", "api_key": "sk-mine-0123456789"}),
            "settings.provider.api_key",
        ),
        (json!({"name": "elsewhere"}), "settings.provider.name"),
    ] {
        let r = app
            .patch(
                &format!("/api/v1/assistants/{id}"),
                &json!({"settings": {"provider": provider}}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (422, "validation_failed"),
            "{provider}"
        );
        assert_eq!(r.body["error"]["field"], field, "{provider}");
    }
    // The dashboard's picker offers it, and saving the form by name keeps it so.
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let page = app.page(&format!("/assistants/{id}"), &cookie).await;
    assert!(
        page.text
            .contains("<option value=\"house\" selected>House OpenAI</option>"),
        "{}",
        page.text
    );
    assert!(!page.text.contains(&operator.base_url));
    let res = app
        .post_form(
            &format!("/assistants/{id}"),
            &cookie,
            &[
                ("_csrf", csrf.as_str()),
                ("version", "1"),
                ("name", "Ava"),
                ("mode", "active"),
                ("provider", "house"),
                ("model", "gpt-4o"),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.text);
    let r = app.get(&format!("/api/v1/assistants/{id}")).await;
    assert_eq!(r.body["settings"]["provider"]["name"], "house");
    assert_eq!(r.body["settings"]["provider"]["model"], "gpt-4o");
}

/// With the default network settings, a workspace's own provider URL cannot reach loopback,
/// private or metadata addresses: IP literals are refused when saved, host names that
/// resolve to them when called; nothing is sent, and the workspace gets
/// `destination_not_allowed`, never the internal body.
#[tokio::test]
async fn a_workspace_provider_url_cannot_reach_the_servers_network() {
    let internal = StubProvider::start().await.unwrap();
    let port = port_of(&internal.base_url);
    let app = TestApp::spawn_with(guarded).await;
    // IP literals that are not allowed, refused when saved; so are a query string (it would
    // swallow the path Parley appends), a fragment, and user info (it would carry a secret).
    let refused = [
        format!("http://127.0.0.1:{port}/v1"),
        format!("http://[::ffff:127.0.0.1]:{port}/v1"),
        format!("http://2130706433:{port}/v1"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.5:11434/v1".to_owned(),
        "http://[fd00:ec2::254]/v1".to_owned(),
    ];
    let malformed = [
        "https://x.example/v1?x=",
        "https://x.example/v1#",
        "https://u:p@x.example/v1",
    ];
    let cases = refused
        .iter()
        .map(|u| (u.as_str(), "destination_not_allowed"))
        .chain(malformed.iter().map(|u| (*u, "validation_failed")));
    for (url, code) in cases {
        let r = app
            .post(
                "/api/v1/assistants",
                &json!({"name": "Probe", "settings": {"provider": {"base_url": url, "model": "m"}}}),
            )
            .await;
        assert_eq!((r.status, r.code()), (422, code), "{url}: {}", r.text);
        assert_eq!(r.body["error"]["field"], "settings.provider.base_url");
    }
    // A host name that resolves to 127.0.0.1: saved, refused at connect time.
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Local", "settings": {"provider": {
                "base_url": format!("http://localhost:{port}/v1"), "model": "gpt-4o-mini",
                "api_key": "sk-workspace-own-0123456789"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = models(&app, "Local").await;
    assert_eq!(
        (r.status, r.code()),
        (403, "destination_not_allowed"),
        "{}",
        r.text
    );
    assert!(
        !r.text.contains("stub-model"),
        "no internal body: {}",
        r.text
    );
    let res = app
        .send(
            app.client
                .post(app.url("/v1/chat/completions"))
                .bearer_auth(&app.key)
                .header("parley-assistant", "Local")
                .json(&json!({"messages": [{"role": "user", "content": "Hi"}]})),
        )
        .await;
    assert_eq!(
        (res.status, res.code()),
        (403, "destination_not_allowed"),
        "{}",
        res.text
    );
    // Test Chat: the failure is recorded as such.
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let id = app.get("/api/v1/assistants").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = app
        .send(
            app.client
                .post(app.url("/test-chat/send"))
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .json(&json!({"assistant": id, "content": "hi"})),
        )
        .await;
    assert!(events.text.contains("\"failed\":true"), "{}", events.text);
    let conv = &crate::channel_support::conversations(&app, "test").await[0];
    let stored = crate::channel_support::messages(&app, conv["id"].as_str().unwrap()).await;
    assert_eq!(
        stored.last().unwrap()["meta"]["error"]["code"],
        "destination_not_allowed",
        "{stored:?}"
    );
    assert!(
        internal.authorizations().is_empty(),
        "nothing reached the internal service"
    );
}

/// The operator lists one private URL: a workspace may use exactly that, nothing beside it.
#[tokio::test]
async fn only_the_operators_listed_private_urls_are_reachable() {
    let allowed = StubProvider::start().await.unwrap();
    let other = StubProvider::start().await.unwrap();
    let listed = allowed.base_url.clone();
    let app = TestApp::spawn_with(move |s| {
        guarded(s);
        s.network.allowed_private_urls = vec![listed];
    })
    .await;
    for (name, url) in [("Listed", &allowed.base_url), ("Unlisted", &other.base_url)] {
        let r = app
            .post(
                "/api/v1/assistants",
                &json!({"name": name, "settings": {"provider": {"base_url": url, "model": "m"}}}),
            )
            .await;
        let expected = if name == "Listed" { 201 } else { 422 };
        assert_eq!(r.status, expected, "{name}: {}", r.text);
    }
    let r = models(&app, "Listed").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"][0]["id"], "stub-model");
}

crate::both_backends!(
    a_server_environment_variable_cannot_be_named_as_a_key,
    a_stored_environment_key_is_never_sent_to_a_workspace_url,
    a_stored_environment_key_matching_an_operator_provider_keeps_working,
);
