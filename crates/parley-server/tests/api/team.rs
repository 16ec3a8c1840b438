//! The team acts (issue 14) against the real server on both backends: replies with their
//! author on API conversations, take over / hand back of a hybrid assistant answering through
//! the stub provider, the `hand_off` tool replayed from the recorded tool-call stream, Needs
//! attention, close / archive / reopen, assignment, the dashboard's JSON routes and workspace
//! isolation.

use std::time::Duration;

use parley_store::{EventFilter, events::EventType};
use parley_testkit::stub_provider::StubProvider;
use serde_json::{Value, json};

use crate::channel_support::{eventually, messages};
use crate::helpers::{Backend, Resp, TestApp, tool_call_stream};

/// A `mode` assistant answering through `stub`; returns its id.
async fn assistant(app: &TestApp, stub: &StubProvider, mode: &str) -> String {
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": format!("Ava {mode}"), "company": "Acme", "mode": mode, "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"},
                "system_prompt": "You are Acme's assistant."}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

/// A new API conversation of `assistant` with one customer message; returns its id.
async fn conversation(app: &TestApp, assistant: &str, text: &str) -> String {
    let r = app
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"id": assistant}, "channel": "api",
                    "messages": [{"role": "user", "content": text}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["conversation"]["id"].as_str().unwrap().to_owned()
}

async fn customer_says(app: &TestApp, id: &str, text: &str) {
    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &json!({"messages": [{"role": "user", "content": text}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Waits until the conversation holds `n` assistant messages.
async fn assistant_answers(app: &TestApp, id: &str, n: usize) -> Vec<Value> {
    eventually(20, "the assistant's answer", || async {
        let ms = messages(app, id).await;
        (ms.iter().filter(|m| m["role"] == "assistant").count() >= n).then_some(ms)
    })
    .await
}

/// How many messages of `role` the conversation holds.
async fn count_role(app: &TestApp, id: &str, role: &str) -> usize {
    messages(app, id)
        .await
        .iter()
        .filter(|m| m["role"] == role)
        .count()
}

/// Waits until no job is queued or running (every answer job has run).
async fn jobs_idle(app: &TestApp) {
    eventually(20, "the job queue to drain", || async {
        let stats = app.state.store.jobs().queue_stats().await.unwrap();
        stats
            .iter()
            .all(|s| s.state.as_str() == "failed")
            .then_some(())
    })
    .await;
}

async fn detail(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Hybrid: a team reply takes over, and the assistant stays silent until handed back; then it
/// answers again. Active assistants never pause.
async fn a_team_reply_pauses_a_hybrid_assistant_until_handed_back(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let hybrid = assistant(&app, &stub, "hybrid").await;
    let id = conversation(&app, &hybrid, "Hello?").await;
    assistant_answers(&app, &id, 1).await;
    assert_eq!(stub.requests().len(), 1);

    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/replies"),
            &json!({"text": "Hi, **Dana** from the team here.", "author": "Dana"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["role"], "agent");
    assert_eq!(r.body["meta"]["author"]["name"], "Dana");
    let d = detail(&app, &id).await;
    assert!(d["taken_over_at"].is_string(), "{d}");
    let stored = messages(&app, &id).await;
    let agent = stored.iter().find(|m| m["role"] == "agent").unwrap();
    assert_eq!(agent["content"], "Hi, **Dana** from the team here.");
    assert_eq!(agent["meta"]["author"]["name"], "Dana");

    customer_says(&app, &id, "Thanks, Dana!").await;
    jobs_idle(&app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ms = messages(&app, &id).await;
    assert_eq!(
        ms.iter().filter(|m| m["role"] == "assistant").count(),
        1,
        "the assistant stays silent after a take over: {ms:?}"
    );
    assert_eq!(stub.requests().len(), 1, "the provider was not called");

    let r = app
        .post(&format!("/api/v1/conversations/{id}/handback"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["taken_over_at"].is_null(), "{}", r.text);
    customer_says(&app, &id, "One more question").await;
    assistant_answers(&app, &id, 2).await;
    assert_eq!(stub.requests().len(), 2);
    // The assistant saw the team's message as part of the history.
    let history = &stub.requests()[1]["messages"];
    assert!(
        history.to_string().contains("from the team here"),
        "{history}"
    );

    // Take over again explicitly; then the assistant is silent again.
    let r = app
        .post(&format!("/api/v1/conversations/{id}/takeover"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["taken_over_at"].is_string());

    // Active assistants never pause; passive ones never answer.
    for mode in ["active", "passive"] {
        let other = assistant(&app, &stub, mode).await;
        let c = conversation(&app, &other, "Hi").await;
        let r = app
            .post(&format!("/api/v1/conversations/{c}/takeover"), &json!({}))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (409, "assistant_not_hybrid"),
            "{mode}"
        );
    }
}

/// The `hand_off` tool, replayed by the stub provider from the recorded tool-call stream:
/// the conversation needs a human (flag, `handoff.requested` event, Needs attention filter and
/// count), the customer is told someone will answer, the assistant is paused; a team reply
/// answers the request.
async fn the_hand_off_tool_flags_the_conversation(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.push(tool_call_stream(
        "hand_off",
        r#"{"reason": "The customer asks for a person"}"#,
    ));
    let hybrid = assistant(&app, &stub, "hybrid").await;
    let id = conversation(&app, &hybrid, "I want to talk to a person").await;
    let ms = eventually(20, "the hand-off", || async {
        let ms = messages(&app, &id).await;
        ms.iter()
            .any(|m| m["role"] == "assistant" && m["content"].as_str().unwrap().contains("team"))
            .then_some(ms)
    })
    .await;
    jobs_idle(&app).await;
    // Another conversation, answered as usual, needs no attention.
    let quiet = conversation(&app, &hybrid, "Just browsing").await;
    assistant_answers(&app, &quiet, 1).await;
    // The hand-off was offered to the model and called once.
    let tools = &stub.requests()[0]["tools"];
    assert!(tools.to_string().contains("\"hand_off\""), "{tools}");
    let answer = ms.iter().rfind(|m| m["role"] == "assistant").unwrap();
    assert_eq!(
        answer["content"],
        parley_server::assistant::runtime::HANDOFF_TEXT
    );
    let d = detail(&app, &id).await;
    assert_eq!(d["handoff"]["reason"], "The customer asks for a person");
    assert!(d["handoff"]["requested_at"].is_string());
    assert!(
        d["taken_over_at"].is_string(),
        "a hand-off pauses the assistant"
    );

    let listed = app.list_ids("needs_human=true").await;
    assert_eq!(
        listed,
        [id.as_str()],
        "only the handed-off one needs attention"
    );
    let count = app
        .get("/api/v1/conversations/count?needs_human=true")
        .await;
    assert_eq!(count.body["count"], 1, "{}", count.text);
    assert_eq!(app.list_ids("").await.len(), 2);
    assert!(!app.list_ids("needs_human=false").await.is_empty());
    let bad = app.get("/api/v1/conversations?needs_human=maybe").await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_parameter"));

    let ws = app.workspace.id;
    let events = app
        .state
        .store
        .events()
        .events_after(
            ws,
            0,
            &EventFilter {
                types: vec![EventType::HandoffRequested],
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].conversation_id.unwrap().to_string(), id);
    assert_eq!(events[0].data["reason"], "The customer asks for a person");

    // The customer writes again: nobody but the team answers.
    customer_says(&app, &id, "Hello? Anyone?").await;
    jobs_idle(&app).await;
    let calls = stub.requests().len();
    assert_eq!(count_role(&app, &id, "assistant").await, 1);

    // A team reply answers the request.
    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/replies"),
            &json!({"text": "Hi, I'm here."}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["meta"]["author"]["name"], "API");
    assert!(detail(&app, &id).await["handoff"].is_null());
    assert!(app.list_ids("needs_human=true").await.is_empty());
    assert_eq!(stub.requests().len(), calls);
}

/// Close (with a reason), archive and reopen from the dashboard's JSON routes (CSRF checked);
/// a closed conversation takes no reply; assignment to a member, the Mine/Unassigned filters.
async fn status_and_assignment(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let a = assistant(&app, &stub, "passive").await;
    let id = conversation(&app, &a, "Where is my order?").await;
    let other = conversation(&app, &a, "Another one").await;
    let (cookie, csrf) = app.dashboard_session(parley_core::UserRole::Member).await;
    let dash = |path: String, body: Value, token: Option<String>| {
        let mut req = app
            .client
            .post(app.url(&path))
            .header("cookie", &cookie)
            .json(&body);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        app.send(req)
    };
    let status = format!("/conversations/{id}/status");
    let r: Resp = dash(
        status.clone(),
        json!({"status": "closed", "end_reason": "resolved"}),
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "csrf_failed"));
    let r = dash(
        status.clone(),
        json!({"status": "closed", "end_reason": " "}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{}",
        r.text
    );
    let r = dash(
        status.clone(),
        json!({"status": "closed", "end_reason": "resolved"}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = detail(&app, &id).await;
    assert_eq!(
        (d["status"].as_str(), d["end_reason"].as_str()),
        (Some("closed"), Some("resolved"))
    );
    assert!(d["ended_at"].is_string());

    // No reply to a closed conversation, from the dashboard or the API.
    let r = dash(
        format!("/conversations/{id}/reply"),
        json!({"text": "hello"}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "conversation_not_active"),
        "{}",
        r.text
    );

    let r = dash(
        status.clone(),
        json!({"status": "archived"}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(detail(&app, &id).await["status"], "archived");
    let r = dash(
        status.clone(),
        json!({"status": "active"}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = detail(&app, &id).await;
    assert_eq!(d["status"], "active");
    assert!(d["ended_at"].is_null() && d["end_reason"].is_null(), "{d}");

    // The dashboard reply names the signed-in member as its author.
    let r = dash(
        format!("/conversations/{id}/reply"),
        json!({"text": "We are on it."}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let me = app
        .state
        .store
        .auth()
        .list_users(app.workspace.id)
        .await
        .unwrap();
    let me = me.last().unwrap();
    assert_eq!(r.body["meta"]["author"]["name"], me.email.as_str());
    assert_eq!(r.body["meta"]["author"]["user_id"], me.id.to_string());
    let r = dash(
        format!("/conversations/{id}/reply"),
        json!({"text": "   "}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!((r.status, r.code()), (422, "validation_failed"));
    let r = dash(
        format!("/conversations/{id}/reply"),
        json!({"template": {"name": "hello_world", "language": "en_US"}}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "no templates off WhatsApp"
    );

    // Assignment.
    let r = dash(
        format!("/conversations/{id}/assign"),
        json!({"assignee_id": me.id}),
        Some(csrf.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(detail(&app, &id).await["assignee_id"], me.id.to_string());
    assert_eq!(
        app.list_ids(&format!("assignee={}", me.id)).await,
        [id.as_str()]
    );
    assert_eq!(app.list_ids("assignee=none").await, [other.as_str()]);
    let (stranger_ws, _) = app.other_tenant("strangers").await;
    let stranger = app
        .state
        .store
        .auth()
        .create_user(
            stranger_ws.id,
            "s@example.com",
            "x",
            parley_core::UserRole::Admin,
        )
        .await
        .unwrap();
    let r = app
        .send(
            app.client
                .put(app.url(&format!("/api/v1/conversations/{id}/assignee")))
                .bearer_auth(&app.key)
                .json(&json!({"assignee_id": stranger.id})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{}",
        r.text
    );
    let r = app
        .send(
            app.client
                .put(app.url(&format!("/api/v1/conversations/{id}/assignee")))
                .bearer_auth(&app.key)
                .json(&json!({"assignee_id": null})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["assignee_id"].is_null());
    assert_eq!(app.list_ids("assignee=none").await.len(), 2);
    // The dashboard's "Mine" view lists what is assigned to the signed-in member.
    dash(
        format!("/conversations/{other}/assign"),
        json!({"assignee_id": me.id}),
        Some(csrf.clone()),
    )
    .await;
    let page = app.page("/conversations?view=mine", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains(&other) && !page.text.contains(&format!("data-id=\"{id}\"")),
        "only mine"
    );
}

/// Another workspace's key or member reaches none of these routes on this workspace's
/// conversation (404), and an unknown conversation is 404 too.
async fn team_actions_stay_in_their_workspace(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let a = assistant(&app, &stub, "hybrid").await;
    let id = conversation(&app, &a, "Mine").await;
    jobs_idle(&app).await;
    let (_, key) = app.other_tenant("intruders").await;
    for (path, body) in [
        (
            format!("/api/v1/conversations/{id}/replies"),
            json!({"text": "hi"}),
        ),
        (format!("/api/v1/conversations/{id}/takeover"), json!({})),
        (format!("/api/v1/conversations/{id}/handback"), json!({})),
    ] {
        let r = app.post_as(&path, &body, &key).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "not_found"),
            "{path}: {}",
            r.text
        );
    }
    let r = app
        .get_as(&format!("/api/v1/conversations/{id}/templates"), &key)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = app
        .send(
            app.client
                .put(app.url(&format!("/api/v1/conversations/{id}/assignee")))
                .bearer_auth(&key)
                .json(&json!({"assignee_id": null})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // Nothing changed here.
    let d = detail(&app, &id).await;
    assert!(d["taken_over_at"].is_null());
    assert_eq!(count_role(&app, &id, "agent").await, 0);
    // Templates belong to WhatsApp conversations.
    let r = app
        .get(&format!("/api/v1/conversations/{id}/templates"))
        .await;
    assert_eq!((r.status, r.code()), (409, "not_a_whatsapp_conversation"));
    // A member of another workspace cannot act from the dashboard either.
    let (members, _) = app.other_tenant("members").await;
    let (cookie, csrf) = app
        .session_in(members.id, parley_core::UserRole::Admin)
        .await;
    for (path, body) in [
        ("reply", json!({"text": "x"})),
        ("takeover", json!({})),
        ("status", json!({"status": "closed", "end_reason": "x"})),
    ] {
        let r = app
            .send(
                app.client
                    .post(app.url(&format!("/conversations/{id}/{path}")))
                    .header("cookie", &cookie)
                    .header("x-csrf-token", &csrf)
                    .json(&body),
            )
            .await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
    assert_eq!(detail(&app, &id).await["status"], "active");
}

crate::both_backends!(
    a_team_reply_pauses_a_hybrid_assistant_until_handed_back,
    the_hand_off_tool_flags_the_conversation,
    status_and_assignment,
    team_actions_stay_in_their_workspace,
);
