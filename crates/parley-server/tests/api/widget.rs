//! The web widget's public endpoints (`/widget/v1`, `/widget.js`) and its settings page: key and
//! origin checks, CORS, rate and size limits, the conversation flow with pre-chat variables,
//! idempotent sends, reconnect by cursor, closing and rating, visitor isolation, and the tracker.

use parley_core::widget::{FieldKind, PreChatField, WidgetMode, WidgetRecord, WidgetSettings};
use parley_core::{AssistantId, Timestamp, UserRole};
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::helpers::{Backend, Resp, TestApp};

crate::both_backends!(
    a_conversation_from_pre_chat_to_rating,
    the_tracker_fills_the_client_data_tab,
    a_voice_message_is_stored_transcribed_searched_and_answered,
    voice_needs_a_voice_mode_real_audio_and_room_in_the_quota
);

const SITE: &str = "http://site.test:8000";

/// An assistant on `stub` with a widget allowing [`SITE`] and a pre-chat form (name required,
/// email optional, topic dropdown); returns (assistant id, widget key).
async fn widget_app(app: &TestApp, stub: &StubProvider, name: &str) -> (String, String) {
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": name, "company": "Acme", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini", "api_key": "sk-test-0123456789abcdef"},
                "system_prompt": "Be brief."}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    let mut settings = WidgetSettings {
        allowed_origins: vec![SITE.into()],
        pre_chat: vec![
            PreChatField {
                key: "name".into(),
                label: "Name".into(),
                kind: FieldKind::Text,
                required: true,
                options: vec![],
            },
            PreChatField {
                key: "email".into(),
                label: "E-mail".into(),
                kind: FieldKind::Email,
                required: false,
                options: vec![],
            },
            PreChatField {
                key: "topic".into(),
                label: "Topic".into(),
                kind: FieldKind::Dropdown,
                required: false,
                options: vec!["Sales".into(), "Support".into()],
            },
        ],
        ..Default::default()
    };
    settings.validate().unwrap();
    app.state
        .store
        .widgets()
        .save_widget(&WidgetRecord {
            workspace_id: app.workspace.id,
            assistant_id: id,
            public_key: key.clone(),
            settings,
            updated_at: Timestamp::now(),
        })
        .await
        .unwrap();
    (id.to_string(), key)
}

/// A widget request from `origin` (none when empty) with an optional visitor token.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    origin: &str,
    visitor: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = app.client.request(method, app.url(path));
    if !origin.is_empty() {
        req = req.header("origin", origin);
    }
    if let Some(v) = visitor {
        req = req.header("x-parley-visitor", v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    app.send(req).await
}

async fn post(app: &TestApp, path: &str, visitor: Option<&str>, body: Value) -> Resp {
    call(app, reqwest::Method::POST, path, SITE, visitor, Some(body)).await
}

async fn get(app: &TestApp, path: &str, visitor: Option<&str>) -> Resp {
    call(app, reqwest::Method::GET, path, SITE, visitor, None).await
}

/// Server-sent events of a response body, as (event, data).
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let mut ev = String::new();
            let mut data = Value::Null;
            for l in b.lines() {
                if let Some(e) = l.strip_prefix("event: ") {
                    ev = e.to_owned();
                } else if let Some(d) = l.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (ev, data)
        })
        .collect()
}

async fn start(app: &TestApp, key: &str) -> (String, String) {
    let r = post(
        app,
        &format!("/widget/v1/conversations?key={key}"),
        None,
        json!({"pre_chat": {"name": "Ana", "email": "ana@example.com", "topic": "Support"}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["conversation_id"].as_str().unwrap().to_owned(),
        r.body["visitor_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_origins_are_checked() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    let (assistant, key) = widget_app(&app, &stub, "Ava").await;

    // The allowed origin gets the settings and CORS headers naming it (and only it).
    let r = get(&app, &format!("/widget/v1/config?key={key}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["access-control-allow-origin"], SITE);
    assert_eq!(r.body["pre_chat"][0]["key"], "name");
    assert!(
        r.body.get("allowed_origins").is_none(),
        "no settings beyond what the script needs"
    );

    // Unknown key: 401 with a clear code and nothing else.
    for bad in ["pk_doesnotexist", "", "sk-not-a-widget-key"] {
        let r = get(&app, &format!("/widget/v1/config?key={bad}"), None).await;
        assert_eq!((r.status, r.code()), (401, "unknown_widget_key"), "{bad}");
        assert_eq!(
            r.body.as_object().unwrap().len(),
            1,
            "only the error: {}",
            r.text
        );
        assert!(r.headers.get("access-control-allow-origin").is_none());
    }
    // Another origin, or none at all: 403, no CORS headers (the browser hides the answer).
    for origin in [
        "http://evil.test",
        "http://site.test:8001",
        "https://site.test:8000",
        "",
    ] {
        let r = call(
            &app,
            reqwest::Method::GET,
            &format!("/widget/v1/config?key={key}"),
            origin,
            None,
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (403, "origin_not_allowed"),
            "{origin}"
        );
        assert!(r.headers.get("access-control-allow-origin").is_none());
    }
    // Preflights: allowed for the site, refused elsewhere.
    let pre = |origin: &'static str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                app.url(&format!("/widget/v1/messages?key={key}")),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, x-parley-visitor",
            )
    };
    let r = app.send(pre(SITE)).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["access-control-allow-origin"], SITE);
    assert!(
        r.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-parley-visitor")
    );
    let r = app.send(pre("http://evil.test")).await;
    assert_eq!(r.status, 403);
    assert!(r.headers.get("access-control-allow-origin").is_none());

    // Switched off: 403 widget_disabled. A replaced key: the old one is unknown.
    let id: AssistantId = assistant.parse().unwrap();
    let mut w = app
        .state
        .store
        .widgets()
        .widget_for_assistant(app.workspace.id, id)
        .await
        .unwrap()
        .unwrap();
    w.settings.enabled = false;
    app.state.store.widgets().save_widget(&w).await.unwrap();
    let r = get(&app, &format!("/widget/v1/config?key={key}"), None).await;
    assert_eq!((r.status, r.code()), (403, "widget_disabled"));
    w.settings.enabled = true;
    w.public_key = parley_server::widget::new_public_key().unwrap();
    app.state.store.widgets().save_widget(&w).await.unwrap();
    let r = post(
        &app,
        &format!("/widget/v1/conversations?key={key}"),
        None,
        json!({"pre_chat": {"name": "x"}}),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "unknown_widget_key"));
    let r = get(
        &app,
        &format!("/widget/v1/config?key={}", w.public_key),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
}

async fn a_conversation_from_pre_chat_to_rating(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text("Hello Ana! **How** can I help?"));
    let (_, key) = widget_app(&app, &stub, "Ava").await;

    // The pre-chat form is validated field by field.
    for (values, field) in [
        (json!({"email": "ana@example.com"}), "pre_chat.name"),
        (
            json!({"name": "Ana", "email": "not-an-email"}),
            "pre_chat.email",
        ),
        (json!({"name": "Ana", "topic": "Other"}), "pre_chat.topic"),
        (json!({"name": "Ana", "age": "40"}), "pre_chat.age"),
    ] {
        let r = post(
            &app,
            &format!("/widget/v1/conversations?key={key}"),
            None,
            json!({"pre_chat": values}),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (422, "validation_failed"),
            "{}",
            r.text
        );
        assert_eq!(r.body["error"]["field"], field);
    }
    let (conversation, token) = start(&app, &key).await;
    // Stored before any message: a widget conversation with pre_chat variables.
    let d = app
        .get(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(d.body["channel"], "widget", "{}", d.text);
    let vars = d.body["variables"].as_array().unwrap();
    assert_eq!(vars.len(), 3, "{}", d.text);
    assert!(vars.iter().all(|v| v["source"] == "pre_chat"));
    assert_eq!(d.body["contact"], "ana@example.com");

    // A message streams the answer back.
    let path = format!("/widget/v1/messages?key={key}");
    let r = post(
        &app,
        &path,
        Some(&token),
        json!({"client_id": "m1", "content": "Hi there"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["access-control-allow-origin"], SITE);
    let ev = events(&r.text);
    assert_eq!(ev[0].0, "message");
    assert_eq!(
        (ev[0].1["role"].as_str(), ev[0].1["client_id"].as_str()),
        (Some("user"), Some("m1"))
    );
    let deltas: String = ev
        .iter()
        .filter(|e| e.0 == "delta")
        .map(|e| e.1["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello Ana! **How** can I help?");
    let answer = ev
        .iter()
        .find(|e| e.0 == "message" && e.1["role"] == "assistant")
        .expect("the stored answer");
    assert_eq!(answer.1["content"], "Hello Ana! **How** can I help?");
    assert_eq!(ev.last().unwrap().0, "done");
    assert_eq!(stub.requests().len(), 1);

    // The same client id again (a retry after a dropped connection): not stored twice, no new
    // answer; the script then catches up by cursor.
    let r = post(
        &app,
        &path,
        Some(&token),
        json!({"client_id": "m1", "content": "Hi there"}),
    )
    .await;
    let ev = events(&r.text);
    assert_eq!(ev.len(), 2, "{}", r.text);
    assert_eq!(ev[1].1["duplicate"], true);
    assert_eq!(stub.requests().len(), 1, "no second answer");
    let all = get(&app, &path, Some(&token)).await;
    let msgs = all.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{}", all.text);
    let first = msgs[0]["id"].as_str().unwrap();
    let after = get(&app, &format!("{path}&after={first}"), Some(&token)).await;
    assert_eq!(after.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(after.body["messages"][0]["role"], "assistant");
    let last = msgs[1]["id"].as_str().unwrap();
    let none = get(&app, &format!("{path}&after={last}"), Some(&token)).await;
    assert_eq!(none.body["messages"], json!([]));
    assert_eq!(none.body["status"], "active");

    // Invalid messages.
    for (body, field) in [
        (json!({"client_id": "m2", "content": "  "}), "content"),
        (json!({"client_id": "bad id!", "content": "x"}), "client_id"),
    ] {
        let r = post(&app, &path, Some(&token), body).await;
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (422, Some(field))
        );
    }

    // Close, rate; the closed conversation takes no more messages.
    let r = post(
        &app,
        &format!("/widget/v1/close?key={key}"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(
        &app,
        &format!("/widget/v1/rating?key={key}"),
        Some(&token),
        json!({"score": 6}),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = post(
        &app,
        &format!("/widget/v1/rating?key={key}"),
        Some(&token),
        json!({"score": 4, "comment": "Quick"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(
        &app,
        &path,
        Some(&token),
        json!({"client_id": "m3", "content": "one more"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "conversation_closed"));
    let d = app
        .get(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(d.body["status"], "closed");
    assert_eq!(d.body["end_reason"], "visitor_closed");
    assert_eq!(d.body["rating"]["score"], 4);
    assert_eq!(d.body["rating"]["comment"], "Quick");
    assert_eq!(d.body["message_count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_reach_only_their_own_conversation() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text("ok"));
    let (_, key) = widget_app(&app, &stub, "Ava").await;
    let (_, other_key) = widget_app(&app, &stub, "Bea").await;
    let (_, token_a) = start(&app, &key).await;
    let (_, token_b) = start(&app, &key).await;
    let path = format!("/widget/v1/messages?key={key}");
    let r = post(
        &app,
        &path,
        Some(&token_a),
        json!({"client_id": "a1", "content": "secret of A"}),
    )
    .await;
    assert_eq!(r.status, 200);
    // B sees nothing of A's.
    let r = get(&app, &path, Some(&token_b)).await;
    assert_eq!(r.body["messages"], json!([]), "{}", r.text);
    // No token, a forged one, or one of another widget: 401.
    for t in [None, Some("forged"), Some(&token_a[..token_a.len() - 2])] {
        let r = get(&app, &path, t).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "invalid_visitor_token"),
            "{t:?}"
        );
    }
    let r = get(
        &app,
        &format!("/widget/v1/messages?key={other_key}"),
        Some(&token_a),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "invalid_visitor_token"));
    // The dashboard API is not reachable with a widget key.
    let r = app.get_as("/api/v1/conversations", &key).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_and_size_limits() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    let (_, key) = widget_app(&app, &stub, "Ava").await;
    let limits = &app.state.widget.limits;
    limits
        .per_visitor
        .store(3, std::sync::atomic::Ordering::Relaxed);
    let path = format!("/widget/v1/config?key={key}");
    for _ in 0..3 {
        assert_eq!(get(&app, &path, None).await.status, 200);
    }
    let r = get(&app, &path, None).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"));
    assert_eq!(r.headers["retry-after"], "60");
    assert_eq!(
        r.headers["access-control-allow-origin"], SITE,
        "the script can read why"
    );

    limits
        .per_visitor
        .store(1000, std::sync::atomic::Ordering::Relaxed);
    limits
        .per_key
        .store(0, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        get(&app, &path, None).await.code(),
        "rate_limited",
        "per key"
    );
    limits
        .per_key
        .store(1000, std::sync::atomic::Ordering::Relaxed);

    let big = "x".repeat(parley_server::widget::MAX_BODY_BYTES + 1);
    let r = post(
        &app,
        &format!("/widget/v1/conversations?key={key}"),
        None,
        json!({"pre_chat": {"name": big}}),
    )
    .await;
    assert_eq!((r.status, r.code()), (413, "body_too_large"), "{}", r.text);
}

async fn the_tracker_fills_the_client_data_tab(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let (_, key) = widget_app(&app, &stub, "Ava").await;
    let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    let session = |extra: Option<(&'static str, &'static str)>, body: Value| {
        let mut req = app
            .client
            .post(app.url(&format!("/widget/v1/track/session?key={key}")))
            .header("origin", SITE)
            .header("user-agent", ua)
            .json(&body);
        if let Some((h, v)) = extra {
            req = req.header(h, v);
        }
        req
    };
    // Do Not Track / Global Privacy Control: nothing is recorded.
    for h in [("dnt", "1"), ("sec-gpc", "1")] {
        let r = app
            .send(session(
                Some(h),
                json!({"landing_page": "http://site.test:8000/"}),
            ))
            .await;
        assert_eq!(r.body["recording"], false, "{h:?}");
    }
    let r = app
        .send(session(None, json!({
            "landing_page": "http://site.test:8000/shoes?utm_source=newsletter&utm_medium=email&utm_campaign=autumn#top",
            "referrer": "https://mail.example/inbox"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tracker = r.body["tracker"].as_str().unwrap().to_owned();
    // Resuming keeps the same visit.
    let again = app
        .send(session(
            None,
            json!({"tracker": tracker, "landing_page": "x"}),
        ))
        .await;
    assert_eq!(again.body["session_id"], r.body["session_id"]);

    let track = |items: Value| {
        app.client
            .post(app.url(&format!("/widget/v1/track?key={key}")))
            .header("origin", SITE)
            .header("x-parley-tracker", tracker.clone())
            .json(&json!({"items": items}))
    };
    let pv = "0199a1f4-6c1e-7a53-9d4b-5a0c2e7d1f01";
    let r = app.send(track(json!([{"id": pv, "kind": "pageview", "name": "Shoes", "url": "http://site.test:8000/shoes"}]))).await;
    assert_eq!(r.body["stored"], 1, "{}", r.text);
    let r = app
        .send(track(json!([
            {"id": pv, "kind": "pageview", "name": "Shoes", "url": "http://site.test:8000/shoes", "time_spent_ms": 42_000, "scroll_depth": 80},
            {"id": "0199a1f4-6c1e-7a53-9d4b-5a0c2e7d1f02", "kind": "pageview", "name": "Cart", "url": "http://site.test:8000/cart", "time_spent_ms": 5_000, "scroll_depth": 100},
            {"id": "0199a1f4-6c1e-7a53-9d4b-5a0c2e7d1f03", "kind": "event", "name": "add_to_cart", "url": "http://site.test:8000/shoes", "data": {"sku": "RUN-42"}},
            {"id": "0199a1f4-6c1e-7a53-9d4b-5a0c2e7d1f04", "kind": "trigger", "name": "quote_request", "url": "http://site.test:8000/cart",
             "data": {"company": "Globex", "password": "hunter2", "card_number": "4111111111111111"}}
        ])))
        .await;
    assert_eq!(r.body["stored"], 4, "{}", r.text);
    let r = app
        .send(track(json!([{"id": pv, "kind": "pageview", "data": [1]}])))
        .await;
    assert_eq!(r.status, 422, "data must be an object");
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/widget/v1/track?key={key}")))
                .header("origin", SITE)
                .json(&json!({"items": []})),
        )
        .await;
    assert_eq!(r.code(), "invalid_tracker_token");

    // A conversation started with the tracker token is linked to the visit.
    let c = post(
        &app,
        &format!("/widget/v1/conversations?key={key}"),
        None,
        json!({"pre_chat": {"name": "Ana"}, "tracker": tracker}),
    )
    .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let conversation = c.body["conversation_id"].as_str().unwrap();
    let rec = app
        .state
        .store
        .widgets()
        .tracker_for_conversation(app.workspace.id, conversation.parse().unwrap())
        .await
        .unwrap()
        .expect("linked");
    let s = &rec.session;
    assert_eq!(
        (s.device.as_str(), s.traffic_source.as_str()),
        ("mobile", "email")
    );
    assert_eq!(
        (
            s.utm_source.as_str(),
            s.utm_medium.as_str(),
            s.utm_campaign.as_str()
        ),
        ("newsletter", "email", "autumn")
    );
    assert_eq!(
        s.landing_page,
        "http://site.test:8000/shoes?utm_source=newsletter&utm_medium=email&utm_campaign=autumn"
    );
    assert!(s.browser.starts_with("Safari"), "{}", s.browser);
    assert_eq!(rec.pages_visited(), 2);
    assert!(!rec.bounced());
    let trigger = rec
        .items
        .iter()
        .find(|i| i.name == "quote_request")
        .unwrap();
    assert_eq!(
        trigger.data,
        json!({"company": "Globex"}),
        "password and card dropped"
    );

    // The dashboard's Client data tab shows it all.
    let (cookie, _) = app.dashboard_session(UserRole::Member).await;
    let html = app
        .send(
            app.client
                .get(app.url(&format!("/conversations/{conversation}/panel?tab=client")))
                .header("cookie", cookie),
        )
        .await
        .text;
    for needle in [
        "id=\"website-session\"",
        "mobile",
        "autumn",
        "id=\"pageviews\"",
        "Cart",
        "42s",
        "80%",
        "add_to_cart",
        "RUN-42",
        "quote_request",
        "Globex",
        "Pre-chat",
    ] {
        assert!(html.contains(needle), "{needle} missing from the panel");
    }
    assert!(!html.contains("hunter2"));

    // A second conversation in the same visit ("new conversation"): both show the visit.
    let c2 = post(
        &app,
        &format!("/widget/v1/conversations?key={key}"),
        None,
        json!({"pre_chat": {"name": "Ana"}, "tracker": tracker}),
    )
    .await;
    let second = c2.body["conversation_id"].as_str().unwrap().to_owned();
    let visit = |id: String| {
        let store = app.state.store.clone();
        let ws = app.workspace.id;
        async move {
            store
                .widgets()
                .tracker_for_conversation(ws, id.parse().unwrap())
                .await
                .unwrap()
        }
    };
    assert_eq!(
        visit(second.clone()).await.unwrap().session.id,
        rec.session.id
    );
    assert!(
        visit(conversation.to_owned()).await.is_some(),
        "the first keeps its visit"
    );

    // Deleting a conversation removes its link; the visit goes with the last conversation.
    assert_eq!(
        app.delete(&format!("/api/v1/conversations/{conversation}"))
            .await
            .status,
        204
    );
    assert!(visit(conversation.to_owned()).await.is_none());
    assert_eq!(
        visit(second.clone()).await.unwrap().items.len(),
        rec.items.len()
    );
    assert_eq!(
        app.delete(&format!("/api/v1/conversations/{second}"))
            .await
            .status,
        204
    );
    assert!(visit(second).await.is_none());
    let gone = app
        .state
        .store
        .widgets()
        .tracker_session(app.workspace.id, rec.session.id)
        .await
        .unwrap();
    assert!(
        gone.is_none(),
        "the visit and its items are deleted with its last conversation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_page_saves_and_shows_the_script_tag() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    let r = app.post("/api/v1/assistants", &json!({"name": "Cleo", "settings": {"provider": {"base_url": stub.base_url, "model": "gpt-4o-mini"}}})).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let stored_widget = async || {
        app.state
            .store
            .widgets()
            .widget_for_assistant(app.workspace.id, id.parse().unwrap())
            .await
            .unwrap()
    };
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let page = app
        .send(
            app.client
                .get(app.url(&format!("/assistants/{id}/widget")))
                .header("cookie", &cookie),
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("/widget.js&#34; data-key=&#34;pk_")
            || page.text.contains("/widget.js\" data-key=\"pk_"),
        "the script tag"
    );
    assert!(page.text.contains("id=\"widget-preview\""));
    // The key shown on the first visit, before any save, is stored and is the key that works
    // (issue 14: a new user who copies the script tag at once must not get a dead widget).
    let stored = stored_widget()
        .await
        .expect("the first visit stores the widget");
    assert!(
        page.text.contains(&stored.public_key),
        "the page shows the stored key"
    );
    let again = app
        .send(
            app.client
                .get(app.url(&format!("/assistants/{id}/widget")))
                .header("cookie", &cookie),
        )
        .await;
    assert!(
        again.text.contains(&stored.public_key),
        "a second visit shows the same key"
    );
    let config = app
        .send(
            app.client
                .get(app.url(&format!("/widget/v1/config?key={}", stored.public_key)))
                .header("origin", "https://shop.example.com"),
        )
        .await;
    assert_eq!(
        config.body["error"]["code"], "origin_not_allowed",
        "the key is known; only the site's origin is still to be allowed: {}",
        config.text
    );
    let form = |origins: &str, pre_chat: &str| {
        vec![
            ("_csrf", csrf.clone()),
            ("enabled", "1".into()),
            ("allowed_origins", origins.into()),
            ("title", "Talk to Cleo".into()),
            ("greeting", "Hey!".into()),
            ("color", "#0f766e".into()),
            ("text_color", "#ffffff".into()),
            ("position", "bottom_left".into()),
            ("mode", "voice_and_chat".into()),
            ("pre_chat", pre_chat.into()),
            ("idle_timeout_minutes", "15".into()),
            ("tracking", "1".into()),
            ("str_send", "Senden".into()),
            ("str_mic_denied", "Kein Mikrofon".into()),
            ("transcription_model", "  whisper-1 ".into()),
        ]
    };
    let post = |f: Vec<(&'static str, String)>| {
        app.client
            .post(app.url(&format!("/assistants/{id}/widget")))
            .header("cookie", &cookie)
            .form(&f)
    };
    let r = app.send(post(form("not an origin", ""))).await;
    assert!(
        r.text.contains("allowed_origins[0]"),
        "the error names the field"
    );
    assert_eq!(
        stored_widget()
            .await
            .expect("stored on the first visit")
            .settings
            .allowed_origins,
        Vec::<String>::new(),
        "the rejected form changed nothing"
    );
    let r = app.send(post(form("https://Shop.Example.com/\nhttp://127.0.0.1:3000", "email | E-mail | email | required\ntopic | Topic | dropdown | optional | Sales, Support"))).await;
    assert!(r.status == 303 || r.status == 200, "{}", r.status);
    let w = stored_widget().await.expect("saved");
    assert_eq!(
        w.settings.allowed_origins,
        vec!["https://shop.example.com", "http://127.0.0.1:3000"]
    );
    assert_eq!(w.settings.pre_chat.len(), 2);
    assert!(w.settings.pre_chat[0].required);
    assert_eq!(w.settings.strings.send, "Senden");
    assert_eq!(w.settings.strings.mic_denied, "Kein Mikrofon");
    assert_eq!(w.settings.transcription_model, "whisper-1", "trimmed");
    let page = app
        .send(
            app.client
                .get(app.url(&format!("/assistants/{id}/widget")))
                .header("cookie", &cookie),
        )
        .await;
    assert!(
        page.text
            .contains("name=\"transcription_model\" maxlength=\"200\" value=\"whisper-1\""),
        "the saved model is shown"
    );
    assert_eq!(
        w.settings.strings.start, "Start chat",
        "empty strings keep the default"
    );
    assert!(!w.settings.respect_dnt, "unchecked");
    // The key survives a save; "replace the key" revokes it.
    let mut f = form("https://shop.example.com", "");
    f.push(("respect_dnt", "1".into()));
    app.send(post(f.clone())).await;
    let same = stored_widget().await.unwrap();
    assert_eq!(same.public_key, w.public_key);
    f.push(("rotate_key", "1".into()));
    app.send(post(f)).await;
    let rotated = stored_widget().await.unwrap();
    assert_ne!(rotated.public_key, w.public_key);
    // Members may look but not save.
    let (member, member_csrf) = app.dashboard_session(UserRole::Member).await;
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/assistants/{id}/widget")))
                .header("cookie", member)
                .form(&[("_csrf", member_csrf)]),
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_is_served_small_and_self_contained() {
    let app = TestApp::spawn().await;
    // The bytes the server sends to a browser that accepts gzip.
    let res = app
        .client
        .get(app.url("/widget.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let gz = res.bytes().await.unwrap();
    assert!(
        gz.len() < 20 * 1024,
        "widget.js is {} bytes gzipped; the budget is 20 KiB",
        gz.len()
    );
    println!(
        "widget.js: {} bytes, {} bytes gzipped",
        parley_server::widget::WIDGET_JS.len(),
        gz.len()
    );
    let js = parley_server::widget::WIDGET_JS;
    // No third-party requests, no HTML parsing of untrusted text.
    assert!(
        !js.contains("innerHTML")
            && !js.contains("insertAdjacentHTML")
            && !js.contains("document.write")
    );
    // The SVG namespace (for the icons' createElementNS) is a name, never fetched.
    let fetchable = js.replace("\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !fetchable.contains("http://") && !fetchable.contains("https://parley"),
        "only the script's own origin"
    );
    assert!(js.contains("attachShadow"));
}

/// A MaxMind DB (format 2.0, IPv4, 24-bit records) that maps 127.0.0.0/8 to `{"country":
/// {"iso_code": country}, "city": {"names": {"en": city}}}`, as the MaxMind DB spec lays it
/// out: search tree, 16 zero bytes, data section, metadata marker and metadata map.
fn test_mmdb(country: &str, city: &str) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, text: &str) {
        assert!(text.len() < 29);
        out.push(0x40 | text.len() as u8);
        out.extend_from_slice(text.as_bytes());
    }
    fn map(out: &mut Vec<u8>, pairs: usize) {
        out.push(0xE0 | pairs as u8);
    }
    fn u16_(out: &mut Vec<u8>, v: u8) {
        if v == 0 {
            out.push(0xA0);
        } else {
            out.extend_from_slice(&[0xA1, v]);
        }
    }
    let bits: Vec<u8> = (0..8).map(|i| (127u8 >> (7 - i)) & 1).collect();
    let node_count = 8u32;
    let data_pointer = node_count + 16;
    let mut out = Vec::new();
    for (i, bit) in bits.iter().enumerate() {
        let next = if i < 7 { i as u32 + 1 } else { data_pointer };
        let (left, right) = if *bit == 0 {
            (next, node_count)
        } else {
            (node_count, next)
        };
        out.extend_from_slice(&left.to_be_bytes()[1..]);
        out.extend_from_slice(&right.to_be_bytes()[1..]);
    }
    out.extend_from_slice(&[0; 16]);
    map(&mut out, 2);
    s(&mut out, "country");
    map(&mut out, 1);
    s(&mut out, "iso_code");
    s(&mut out, country);
    s(&mut out, "city");
    map(&mut out, 1);
    s(&mut out, "names");
    map(&mut out, 1);
    s(&mut out, "en");
    s(&mut out, city);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    map(&mut out, 9);
    s(&mut out, "node_count");
    out.extend_from_slice(&[0xC1, node_count as u8]);
    s(&mut out, "record_size");
    u16_(&mut out, 24);
    s(&mut out, "ip_version");
    u16_(&mut out, 4);
    s(&mut out, "database_type");
    s(&mut out, "Parley-Test-City");
    s(&mut out, "languages");
    out.extend_from_slice(&[0x01, 0x04]);
    s(&mut out, "en");
    s(&mut out, "binary_format_major_version");
    u16_(&mut out, 2);
    s(&mut out, "binary_format_minor_version");
    u16_(&mut out, 0);
    s(&mut out, "build_epoch");
    out.extend_from_slice(&[0x04, 0x02, 0x69, 0x00, 0x00, 0x00]);
    s(&mut out, "description");
    map(&mut out, 1);
    s(&mut out, "en");
    s(&mut out, "test");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_and_city_come_from_a_configured_geoip_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    std::fs::write(&db, test_mmdb("AT", "Vienna")).unwrap();
    let app = TestApp::spawn_with(|s| s.geoip_db = Some(db.clone())).await;
    let stub = StubProvider::start().await.unwrap();
    let (_, key) = widget_app(&app, &stub, "Ava").await;
    let start_visit = || {
        app.client
            .post(app.url(&format!("/widget/v1/track/session?key={key}")))
            .header("origin", SITE)
            .json(&json!({"landing_page": "http://site.test:8000/"}))
    };
    let r = app.send(start_visit()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id: uuid::Uuid = r.body["session_id"].as_str().unwrap().parse().unwrap();
    let s = app
        .state
        .store
        .widgets()
        .tracker_session(app.workspace.id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.country.as_str(), s.city.as_str()),
        ("AT", "Vienna"),
        "127.0.0.1 is in the test database"
    );

    // Without a database they stay empty; a file that is not one stops the server from starting.
    let plain = TestApp::spawn().await;
    let (_, key2) = widget_app(&plain, &stub, "Bea").await;
    let r = plain
        .send(
            plain
                .client
                .post(plain.url(&format!("/widget/v1/track/session?key={key2}")))
                .header("origin", SITE)
                .json(&json!({})),
        )
        .await;
    let id: uuid::Uuid = r.body["session_id"].as_str().unwrap().parse().unwrap();
    let s = plain
        .state
        .store
        .widgets()
        .tracker_session(plain.workspace.id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.country.as_str(), s.city.as_str()), ("", ""));
    let bad = dir.path().join("not.mmdb");
    std::fs::write(&bad, b"not a database").unwrap();
    let mut settings = app.state.settings.as_ref().clone();
    settings.geoip_db = Some(bad);
    let err = parley_server::AppState::open(settings)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("GeoIP database"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_conversation_ends_with_a_timeout() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    let (assistant, key) = widget_app(&app, &stub, "Ava").await;
    // A widget conversation whose last message was an hour ago (the default idle timeout is 30
    // minutes). The message is the assistant's: a visitor's would be answered in the background
    // now, and that answer would make the conversation fresh again.
    let an_hour_ago = Timestamp(Timestamp::now().0 - 3_600_000).to_rfc3339();
    let conversation = app
        .create(json!({"assistant": {"id": assistant}, "channel": "widget", "started_at": an_hour_ago,
                       "messages": [{"role": "assistant", "content": "hello?", "created_at": an_hour_ago}]}))
        .await;
    let widget = app
        .state
        .store
        .widgets()
        .widget_by_key(&key)
        .await
        .unwrap()
        .unwrap();
    let token =
        parley_server::widget::visitor_token(&app.state, &widget, conversation.parse().unwrap());
    let r = get(
        &app,
        &format!("/widget/v1/messages?key={key}"),
        Some(&token),
    )
    .await;
    assert_eq!(r.body["status"], "closed", "{}", r.text);
    let r = post(
        &app,
        &format!("/widget/v1/messages?key={key}"),
        Some(&token),
        json!({"client_id": "late", "content": "still there?"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "conversation_closed"));
    let d = app
        .get(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(
        (d.body["status"].as_str(), d.body["end_reason"].as_str()),
        (Some("closed"), Some("timeout"))
    );
    // A fresh conversation is not affected.
    let (_, fresh) = start(&app, &key).await;
    let r = get(
        &app,
        &format!("/widget/v1/messages?key={key}"),
        Some(&fresh),
    )
    .await;
    assert_eq!(r.body["status"], "active");
}

/// Changes the settings of the widget with `key`.
async fn update_widget(app: &TestApp, key: &str, change: impl FnOnce(&mut WidgetSettings)) {
    let mut w = app
        .state
        .store
        .widgets()
        .widget_by_key(key)
        .await
        .unwrap()
        .unwrap();
    change(&mut w.settings);
    app.state.store.widgets().save_widget(&w).await.unwrap();
}

/// Sets the widget's transcription model (empty: none).
async fn set_transcription_model(app: &TestApp, key: &str, model: &str) {
    update_widget(app, key, |s| s.transcription_model = model.to_owned()).await;
}

/// Switches the widget to the voice-and-chat mode (voice messages are refused in `chat`).
async fn enable_voice(app: &TestApp, key: &str) {
    update_widget(app, key, |s| s.mode = WidgetMode::VoiceAndChat).await;
}

/// The workspace's attachment usage as the store counts it: (bytes, files).
async fn attachment_usage(app: &TestApp) -> (u64, u64) {
    let u = app
        .state
        .store
        .attachments()
        .attachment_usage(app.workspace.id)
        .await
        .unwrap();
    (u.bytes, u.files)
}

/// A recording from `../shared/fixtures/audio`.
fn recording(name: &str) -> Vec<u8> {
    std::fs::read(
        crate::helpers::shared_dir()
            .join("fixtures/audio")
            .join(name),
    )
    .unwrap()
}

/// `POST /widget/v1/voice` from [`SITE`] with a visitor token, an audio body and its type.
async fn send_voice(
    app: &TestApp,
    key: &str,
    token: Option<&str>,
    client_id: &str,
    content_type: &str,
    audio: Vec<u8>,
) -> Resp {
    let mut req = app
        .client
        .post(app.url(&format!("/widget/v1/voice?key={key}&client_id={client_id}")))
        .header("origin", SITE)
        .header("content-type", content_type)
        .body(audio);
    if let Some(t) = token {
        req = req.header("x-parley-visitor", t);
    }
    app.send(req).await
}

/// The files under the attachment storage, recursively.
fn stored_files(app: &TestApp) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else if e.file_name().to_string_lossy().ends_with(".peaks.json") {
                            // An audio file's waveform (issue 15), kept beside it.
                            0
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&app.state.settings.data_dir.join("attachments"))
}

/// A recorded voice message is kept as an attachment, transcribed by the assistant's provider
/// (the transcript is the message's text, found by search), answered like text, served by the
/// attachment download, idempotent by client id, and deleted with its conversation.
async fn a_voice_message_is_stored_transcribed_searched_and_answered(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text("A table for two at 8pm is booked."));
    stub.set_transcript("I would like a table for two tonight");
    let (_, key) = widget_app(&app, &stub, "Ava").await;
    set_transcription_model(&app, &key, "whisper-1").await;
    enable_voice(&app, &key).await;
    let cfg = get(&app, &format!("/widget/v1/config?key={key}"), None).await;
    assert_eq!(cfg.body["voice_transcribed"], true, "{}", cfg.text);
    assert_eq!(cfg.body["max_voice_bytes"], 2 * 1024 * 1024);
    let (conversation, token) = start(&app, &key).await;

    let audio = recording("en_sentence_16k_mono.webm");
    let r = send_voice(
        &app,
        &key,
        Some(&token),
        "v1",
        "audio/webm;codecs=opus",
        audio.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["access-control-allow-origin"], SITE);
    let ev = events(&r.text);
    assert_eq!(ev[0].0, "message", "{}", r.text);
    assert_eq!(ev[0].1["role"], "user");
    assert_eq!(ev[0].1["client_id"], "v1");
    assert_eq!(
        ev[0].1["content"],
        "🎤 I would like a table for two tonight"
    );
    let answer = ev
        .iter()
        .find(|e| e.0 == "message" && e.1["role"] == "assistant")
        .expect("the stored answer");
    assert_eq!(answer.1["content"], "A table for two at 8pm is booked.");
    assert_eq!(ev.last().unwrap().0, "done");
    assert_eq!(
        stub.transcriptions(),
        vec![("whisper-1".to_owned(), audio.len())]
    );
    assert_eq!(stub.transcription_files(), vec!["voice.webm".to_owned()]);
    // The assistant was asked with the transcript.
    let asked = stub.requests();
    assert_eq!(asked.len(), 1);
    let last_user = asked[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap()
        .clone();
    assert!(
        last_user["content"]
            .as_str()
            .unwrap()
            .contains("I would like a table for two tonight"),
        "{last_user}"
    );

    // The record: the attachment with its transcript, the file in the storage.
    let list = app
        .get(&format!(
            "/api/v1/conversations/{conversation}/messages?include=all&order=asc&per_page=200"
        ))
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    let m = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["external_id"] == "widget:v1")
        .expect("the voice message")
        .clone();
    let a = &m["meta"]["channel"]["attachments"][0];
    assert_eq!(m["meta"]["channel"]["type"], "voice", "{m}");
    assert_eq!(a["kind"], "voice");
    assert_eq!(a["mime_type"], "audio/webm");
    assert_eq!(a["size_bytes"], audio.len());
    assert_eq!(a["transcript"], "I would like a table for two tonight");
    let path = app
        .state
        .settings
        .data_dir
        .join("attachments")
        .join(a["storage_key"].as_str().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), audio);
    assert_eq!(stored_files(&app), 1);
    assert_eq!(
        app.list_ids("q=table%20for%20two").await,
        vec![conversation.clone()]
    );
    let served = app
        .client
        .get(app.url(&format!(
            "/api/v1/conversations/{conversation}/messages/{}/attachments/0",
            m["id"].as_str().unwrap()
        )))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "audio/webm");
    assert_eq!(&served.bytes().await.unwrap()[..], &audio[..]);

    // A retry with the same client id: nothing stored, transcribed or answered again.
    let r = send_voice(&app, &key, Some(&token), "v1", "audio/webm", audio.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ev = events(&r.text);
    assert_eq!(ev.len(), 2, "{}", r.text);
    assert_eq!(
        ev[0].1["content"],
        "🎤 I would like a table for two tonight"
    );
    assert_eq!(ev[1].1["duplicate"], true);
    assert_eq!(stub.transcriptions().len(), 1);
    assert_eq!(stub.requests().len(), 1);
    assert_eq!(stored_files(&app), 1, "no second file");
    let all = get(
        &app,
        &format!("/widget/v1/messages?key={key}"),
        Some(&token),
    )
    .await;
    assert_eq!(
        all.body["messages"].as_array().unwrap().len(),
        2,
        "{}",
        all.text
    );

    // Deleting the conversation deletes the recording.
    let r = app
        .delete(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(
        !path.exists(),
        "the recording is gone with its conversation"
    );
}

/// The voice endpoint's checks: key, origin, visitor token, audio type, size, client id, an
/// empty body, a closed conversation; its CORS preflight; without a transcription model the
/// recording is kept with a placeholder text and the assistant still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_uploads_are_checked() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text("Could you type your question, please?"));
    let (_, key) = widget_app(&app, &stub, "Ava").await;
    enable_voice(&app, &key).await;
    let cfg = get(&app, &format!("/widget/v1/config?key={key}"), None).await;
    assert_eq!(cfg.body["voice_transcribed"], false, "{}", cfg.text);
    let (_, token) = start(&app, &key).await;
    let audio = recording("en_sentence_16k_mono.opus");

    // Preflight: the audio content type is allowed for the site, not for another one.
    let pre = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url(&format!("/widget/v1/voice?key={key}&client_id=a")),
        )
        .header("origin", SITE)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-parley-visitor",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], SITE);
    let pre = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url(&format!("/widget/v1/voice?key={key}&client_id=a")),
        )
        .header("origin", "https://evil.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 403);

    let r = send_voice(
        &app,
        "pk_unknown",
        Some(&token),
        "a1",
        "audio/ogg",
        audio.clone(),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "unknown_widget_key"));
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/widget/v1/voice?key={key}&client_id=a1")))
                .header("origin", "https://evil.test")
                .header("x-parley-visitor", &token)
                .header("content-type", "audio/ogg")
                .body(audio.clone()),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "origin_not_allowed"));
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let r = send_voice(&app, &key, None, "a1", "audio/ogg", audio.clone()).await;
    assert_eq!((r.status, r.code()), (401, "invalid_visitor_token"));
    for bad in ["text/plain", "video/webm", "application/octet-stream", ""] {
        let r = send_voice(&app, &key, Some(&token), "a1", bad, audio.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (415, "unsupported_audio_type"),
            "{bad}: {}",
            r.text
        );
        assert_eq!(r.headers["access-control-allow-origin"], SITE);
    }
    let too_big = vec![0u8; parley_server::widget::chat::MAX_VOICE_BYTES + 1];
    let r = send_voice(&app, &key, Some(&token), "a1", "audio/ogg", too_big).await;
    assert_eq!((r.status, r.code()), (413, "body_too_large"), "{}", r.text);
    let r = send_voice(&app, &key, Some(&token), "a1", "audio/ogg", Vec::new()).await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("body"))
    );
    let r = send_voice(
        &app,
        &key,
        Some(&token),
        "bad%20id",
        "audio/ogg",
        audio.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("client_id"))
    );
    assert_eq!(stored_files(&app), 0, "nothing kept from refused uploads");

    // Larger than the other endpoints' 16 KiB (a real 88 KB MP3), within the 2 MiB: kept, not
    // transcribed (no model), and the assistant still asked with the placeholder.
    let mp3 = recording("call_two_speakers_8k_mono.mp3");
    let r = send_voice(&app, &key, Some(&token), "a1", "audio/mpeg", mp3).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ev = events(&r.text);
    assert_eq!(
        ev[0].1["content"],
        parley_server::widget::chat::VOICE_NOT_TRANSCRIBED
    );
    let answer = ev
        .iter()
        .find(|e| e.0 == "message" && e.1["role"] == "assistant")
        .expect("the stored answer");
    assert_eq!(answer.1["content"], "Could you type your question, please?");
    assert!(
        stub.transcriptions().is_empty(),
        "no model, no transcription"
    );
    assert_eq!(stub.requests().len(), 1);
    assert_eq!(stored_files(&app), 1);

    // A failing provider: kept with the other placeholder.
    set_transcription_model(&app, &key, "whisper-1").await;
    drop(stub);
    let wav = recording("en_sentence_16k_mono.wav");
    let r = send_voice(&app, &key, Some(&token), "a2", "audio/wav", wav).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        events(&r.text)[0].1["content"],
        parley_server::widget::chat::VOICE_TRANSCRIPTION_FAILED
    );
    assert_eq!(stored_files(&app), 2);

    // A closed conversation takes no recordings.
    let r = post(
        &app,
        &format!("/widget/v1/close?key={key}"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send_voice(&app, &key, Some(&token), "a3", "audio/ogg", audio).await;
    assert_eq!((r.status, r.code()), (409, "conversation_closed"));
    assert_eq!(stored_files(&app), 2);
}

/// Issue 10, item 6: a chat-only widget takes no recordings; a voice widget takes only bytes
/// that are the declared audio container (2 MiB of zeros, or a WAV labelled WebM, are
/// refused); and each workspace's attachments stay within `attachment_quota_bytes`, counted
/// by the store (freed when the conversation is deleted), whichever server takes the upload.
async fn voice_needs_a_voice_mode_real_audio_and_room_in_the_quota(backend: Backend) {
    let webm = recording("en_sentence_16k_mono.webm");
    let quota = 2 * webm.len() as u64 + 100;
    let Some(app) = TestApp::spawn_on_with(backend, |s| s.attachment_quota_bytes = quota).await
    else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text("Noted."));
    let (_, key) = widget_app(&app, &stub, "Ava").await;
    let (conversation, token) = start(&app, &key).await;

    // Chat mode (the default): refused before anything is kept.
    let r = send_voice(&app, &key, Some(&token), "c1", "audio/webm", webm.clone()).await;
    assert_eq!((r.status, r.code()), (403, "voice_disabled"), "{}", r.text);
    assert_eq!(r.headers["access-control-allow-origin"], SITE);
    assert_eq!(stored_files(&app), 0);

    enable_voice(&app, &key).await;
    let zeros = vec![0u8; parley_server::widget::chat::MAX_VOICE_BYTES];
    for (mime, bytes) in [
        ("audio/webm", zeros.clone()),
        ("audio/ogg", zeros.clone()),
        ("audio/mp4", zeros),
        ("audio/webm", recording("en_sentence_16k_mono.wav")),
        ("audio/mpeg", recording("en_sentence_16k_mono.opus")),
        ("audio/wav", b"not a recording at all".to_vec()),
    ] {
        let r = send_voice(&app, &key, Some(&token), "c1", mime, bytes).await;
        assert_eq!(
            (r.status, r.code(), r.body["error"]["field"].as_str()),
            (415, "audio_content_mismatch", Some("body")),
            "{mime}: {}",
            r.text
        );
    }
    assert_eq!(stored_files(&app), 0, "nothing kept from refused uploads");

    // The quota: two recordings fit, the third does not (on PostgreSQL a second server
    // shares the count).
    let other = if backend == Backend::Postgres {
        Some(app.second_server().await)
    } else {
        None
    };
    let r = send_voice(&app, &key, Some(&token), "c1", "audio/webm", webm.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send_voice(
        other.as_ref().unwrap_or(&app),
        &key,
        Some(&token),
        "c2",
        "audio/webm",
        webm.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(attachment_usage(&app).await, (2 * webm.len() as u64, 2));
    let r = send_voice(&app, &key, Some(&token), "c3", "audio/webm", webm.clone()).await;
    assert_eq!(
        (r.status, r.code()),
        (413, "attachment_quota_exceeded"),
        "{}",
        r.text
    );
    assert_eq!(r.headers["access-control-allow-origin"], SITE);
    // A resend of a stored recording is still answered (nothing new is stored).
    let r = send_voice(&app, &key, Some(&token), "c1", "audio/webm", webm.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // (Each test server has its own data directory; in production they share one.)
    let files = |app: &TestApp| stored_files(app) + other.as_ref().map_or(0, stored_files);
    assert_eq!(files(&app), 2);

    // Deleting the conversation frees its bytes: recordings fit again.
    let r = app
        .delete(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(stored_files(&app), 0);
    assert_eq!(attachment_usage(&app).await, (0, 0));
    let (_, token) = start(&app, &key).await;
    let r = send_voice(&app, &key, Some(&token), "c4", "audio/webm", webm).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
