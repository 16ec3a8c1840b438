//! A key of one workspace can neither see nor change another workspace's data.

use serde_json::json;

use crate::helpers::Backend;
use crate::helpers::TestApp;

async fn another_workspace_sees_and_changes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let id = app
        .create(json!({"external_id": "ext-1", "assistant": {"name": "Ava"}, "session_id": "secret-session",
                       "messages": [{"role": "user", "content": "tenant A private words"}]}))
        .await;
    let (_, other) = app.other_tenant("intruder").await;
    let path = format!("/api/v1/conversations/{id}");
    let as_other = |method: reqwest::Method, p: String, body: Option<serde_json::Value>| {
        let mut req = app.client.request(method, app.url(&p)).bearer_auth(&other);
        if let Some(b) = body {
            req = req.json(&b);
        }
        app.send(req)
    };
    use reqwest::Method;
    for (method, p, body) in [
        (Method::GET, path.clone(), None),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"status": "archived"})),
        ),
        (Method::DELETE, path.clone(), None),
        (Method::GET, format!("{path}/messages"), None),
        (
            Method::POST,
            format!("{path}/messages"),
            Some(json!({"messages": [{"role": "user", "content": "injected"}]})),
        ),
        (Method::DELETE, format!("{path}/rating"), None),
    ] {
        let r = as_other(method.clone(), p.clone(), body).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "not_found"),
            "{method} {p}: {}",
            r.text
        );
    }
    for q in ["", "q=private", "q=secret-session", "q=Ava"] {
        let r = app
            .get_as(&format!("/api/v1/conversations?{q}"), &other)
            .await;
        assert_eq!(r.body["items"], json!([]), "{q}");
        let r = app
            .get_as(&format!("/api/v1/conversations/count?{q}"), &other)
            .await;
        assert_eq!(r.body["count"], 0, "{q}");
    }
    assert_eq!(app.get_as("/api/v1/export", &other).await.text, "");
    assert_eq!(
        app.get_as("/api/v1/assistants", &other).await.body["items"],
        json!([])
    );
    // Reusing the id in a create neither reveals nor touches the record.
    let r = app
        .post_as(
            "/api/v1/conversations",
            &json!({"id": id, "assistant": {"name": "X"}}),
            &other,
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "id_conflict"), "{}", r.text);
    assert!(!r.text.contains("secret"));
    // The same external id is simply another conversation over there.
    let r = app
        .post_as(
            "/api/v1/conversations",
            &json!({"external_id": "ext-1", "assistant": {"name": "X"}}),
            &other,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_ne!(r.body["conversation"]["id"], id.as_str());

    let mine = app.get(&path).await;
    assert_eq!(
        (
            mine.body["status"].as_str(),
            mine.body["message_count"].as_i64()
        ),
        (Some("active"), Some(1))
    );
}

async fn missing_malformed_unknown_and_revoked_keys_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let url = app.url("/api/v1/conversations");
    let r = app.send(app.client.get(&url)).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = app
        .send(app.client.get(&url).header("authorization", "Basic YTpi"))
        .await;
    assert_eq!(r.status, 401);
    let r = app
        .send(app.client.get(&url).bearer_auth("pk_not_a_real_key"))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (401, Some("invalid API key"))
    );
    let key = app
        .state
        .store
        .list_api_keys(app.workspace.id)
        .await
        .unwrap()
        .remove(0);
    app.state
        .store
        .revoke_api_key(app.workspace.id, key.id)
        .await
        .unwrap();
    let r = app.get("/api/v1/conversations").await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (401, Some("this API key has been revoked"))
    );
}

crate::both_backends!(
    another_workspace_sees_and_changes_nothing,
    missing_malformed_unknown_and_revoked_keys_are_refused,
);
