//! Replacing a widget's key on its settings page revokes what was issued under the old key:
//! the key itself, and the visitor and tracker tokens handed out with it, even when they are
//! sent with the new key.

use parley_core::{AssistantId, UserRole};
use serde_json::json;

use crate::helpers::{Backend, Resp, TestApp};

crate::both_backends!(tokens_issued_under_a_replaced_key_stop_working);

const SITE: &str = "http://site.test:8000";

async fn widget_call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    header: Option<(&str, &str)>,
    body: Option<serde_json::Value>,
) -> Resp {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("origin", SITE);
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    app.send(req).await
}

async fn current_key(app: &TestApp, assistant: AssistantId) -> String {
    app.state
        .store
        .widgets()
        .widget_for_assistant(app.workspace.id, assistant)
        .await
        .unwrap()
        .expect("a widget")
        .public_key
}

async fn tokens_issued_under_a_replaced_key_stop_working(backend: Backend) {
    use reqwest::Method;
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    // A passive assistant: it records, never answers, so no provider is needed.
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme", "mode": "passive"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let old_key = app.widget_for(assistant, SITE).await;

    let started = widget_call(
        &app,
        Method::POST,
        &format!("/widget/v1/conversations?key={old_key}"),
        None,
        Some(json!({"pre_chat": {}})),
    )
    .await;
    assert_eq!(started.status, 201, "{}", started.text);
    let visitor = started.body["visitor_token"].as_str().unwrap().to_owned();
    let visit = widget_call(
        &app,
        Method::POST,
        &format!("/widget/v1/track/session?key={old_key}"),
        None,
        Some(json!({"landing_page": "http://site.test:8000/"})),
    )
    .await;
    assert_eq!(visit.status, 200, "{}", visit.text);
    let tracker = visit.body["tracker"].as_str().unwrap().to_owned();
    let messages = |key: &str| format!("/widget/v1/messages?key={key}");
    let r = widget_call(
        &app,
        Method::GET,
        &messages(&old_key),
        Some(("x-parley-visitor", &visitor)),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "the token works before: {}", r.text);

    // An admin replaces the key on the settings page.
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/assistants/{assistant}/widget")))
                .header("cookie", cookie)
                .form(&[
                    ("_csrf", csrf.as_str()),
                    ("enabled", "1"),
                    ("allowed_origins", SITE),
                    ("mode", "chat"),
                    ("color", "#6d28d9"),
                    ("text_color", "#ffffff"),
                    ("idle_timeout_minutes", "15"),
                    ("tracking", "1"),
                    ("rotate_key", "1"),
                ]),
        )
        .await;
    assert!(r.status == 303 || r.status == 200, "{}", r.text);
    let new_key = current_key(&app, assistant).await;
    assert_ne!(new_key, old_key, "the key was replaced");

    // The old key is unknown; the old tokens are refused even with the new key.
    let visitor_header = Some(("x-parley-visitor", visitor.as_str()));
    let refused = [
        (
            Method::GET,
            messages(&old_key),
            visitor_header,
            None,
            "unknown_widget_key",
        ),
        (
            Method::GET,
            messages(&new_key),
            visitor_header,
            None,
            "invalid_visitor_token",
        ),
        (
            Method::POST,
            messages(&new_key),
            visitor_header,
            Some(json!({"client_id": "m1", "content": "still here?"})),
            "invalid_visitor_token",
        ),
        (
            Method::POST,
            format!("/widget/v1/rating?key={new_key}"),
            visitor_header,
            Some(json!({"score": 1})),
            "invalid_visitor_token",
        ),
        (
            Method::POST,
            format!("/widget/v1/track?key={new_key}"),
            Some(("x-parley-tracker", tracker.as_str())),
            Some(json!({"items": []})),
            "invalid_tracker_token",
        ),
    ];
    for (method, path, header, body, code) in refused {
        let r = widget_call(&app, method.clone(), &path, header, body).await;
        assert_eq!(
            (r.status, r.code()),
            (401, code),
            "{method} {path}: {}",
            r.text
        );
    }

    // A visitor who starts again under the new key is served.
    let again = widget_call(
        &app,
        Method::POST,
        &format!("/widget/v1/conversations?key={new_key}"),
        None,
        Some(json!({"pre_chat": {}})),
    )
    .await;
    assert_eq!(again.status, 201, "{}", again.text);
    let fresh = again.body["visitor_token"].as_str().unwrap().to_owned();
    let r = widget_call(
        &app,
        Method::GET,
        &messages(&new_key),
        Some(("x-parley-visitor", &fresh)),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let nothing_new = app
        .get(&format!(
            "/api/v1/conversations/{}",
            started.body["conversation_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        nothing_new.body["message_count"], 0,
        "the refused message was not stored"
    );
}
