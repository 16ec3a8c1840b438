//! Bad input: clear errors with the right status, and nothing half-written.

use serde_json::json;

use crate::helpers::Backend;
use crate::helpers::TestApp;

async fn malformed_and_invalid_bodies_get_clear_errors(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let cases = [
        (r#"{"assistant": {"name": "A"}"#, 400, "invalid_json", None),
        (r#"not json"#, 400, "invalid_json", None),
        (
            r#"{"assistant": {"name": "A"}, "channel": "sms"}"#,
            422,
            "validation_failed",
            Some("channel"),
        ),
        (
            r#"{"assistant": {"name": "A"}, "messages": [{"role": "bot", "content": "x"}]}"#,
            422,
            "validation_failed",
            Some("messages[0].role"),
        ),
        (
            r#"{"assistant": {"name": "A"}, "rating": {"score": 6}}"#,
            422,
            "validation_failed",
            Some("rating.score"),
        ),
        (
            r#"{"assistant": {"name": "A"}, "rating": {"score": 0}}"#,
            422,
            "validation_failed",
            Some("rating.score"),
        ),
        (
            r#"{"assistant": {"name": "A"}, "colour": "red"}"#,
            422,
            "validation_failed",
            Some("colour"),
        ),
        (
            r#"{"assistant": {"name": "A"}, "started_at": "last tuesday"}"#,
            422,
            "validation_failed",
            Some("started_at"),
        ),
        (
            r#"{"assistant": {"name": "A"}, "messages": [{"role": "user", "content": "x", "usage": {"prompt_tokens": -1, "completion_tokens": 0}}]}"#,
            422,
            "validation_failed",
            Some("messages[0].usage"),
        ),
        (r#"{"channel": "web"}"#, 422, "validation_failed", None),
        (
            r#"{"assistant": {}}"#,
            422,
            "validation_failed",
            Some("assistant"),
        ),
    ];
    for (body, status, code, field) in cases {
        let r = app
            .post_raw("/api/v1/conversations", "application/json", body.to_owned())
            .await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        if let Some(field) = field {
            assert_eq!(
                r.body["error"]["field"].as_str().unwrap_or(""),
                field,
                "{body}: {}",
                r.text
            );
        }
        assert!(
            !r.text.to_lowercase().contains("sqlite"),
            "no internals leak"
        );
    }
    let r = app
        .post_raw(
            "/api/v1/conversations",
            "text/plain",
            r#"{"assistant": {"name": "A"}}"#,
        )
        .await;
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));
    assert_eq!(
        app.get("/api/v1/conversations/count").await.body["count"],
        0,
        "nothing was written"
    );
    let r = app.get("/api/v1/conversations/not-a-uuid").await;
    assert_eq!((r.status, r.code()), (400, "invalid_id"));
    let r = app.get("/api/v1/nothing-here").await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = app
        .patch(
            "/api/v1/conversations/0190f8a8-0000-7000-8000-000000000000",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 422, "an empty patch changes nothing: {}", r.text);
}

async fn one_bad_message_rejects_the_whole_batch(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let id = app
        .create(
            json!({"assistant": {"name": "A"}, "messages": [{"role": "user", "content": "first"}]}),
        )
        .await;
    let oversized = "y".repeat(parley_core::validate::MAX_CONTENT_CHARS + 1);
    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &json!({"messages": [{"role": "user", "content": "fine"}, {"role": "user", "content": oversized}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("messages[1].content")),
        "{}",
        r.text
    );
    let d = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(
        d.body["message_count"], 1,
        "the valid message before it was not stored either"
    );
    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &json!({"messages": []}),
        )
        .await;
    assert_eq!(r.status, 422);
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, |s| s.max_body_bytes = 64 * 1024).await else {
        return;
    };
    let body = json!({"assistant": {"name": "A"}, "messages": [{"role": "user", "content": "z".repeat(100 * 1024)}]});
    let r = app.post("/api/v1/conversations", &body).await;
    assert_eq!((r.status, r.code()), (413, "body_too_large"), "{}", r.text);
    assert_eq!(
        app.get("/api/v1/conversations/count").await.body["count"],
        0
    );
}

crate::both_backends!(
    malformed_and_invalid_bodies_get_clear_errors,
    one_bad_message_rejects_the_whole_batch,
    oversized_bodies_are_refused,
);
