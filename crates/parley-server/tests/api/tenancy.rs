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
    // Reusing the id in a create neither reveals nor touches the record: it creates the
    // intruder's own conversation (under a stand-in id, see ids_another_workspace_uses_...).
    let r = app
        .post_as(
            "/api/v1/conversations",
            &json!({"id": id, "assistant": {"name": "X"}}),
            &other,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_ne!(r.body["conversation"]["id"], id.as_str());
    assert!(!r.text.contains("secret") && !r.text.contains("tenant A"));
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
    let key = app.key_record().await;
    app.state
        .store
        .workspaces()
        .revoke_api_key(app.workspace.id, key.id)
        .await
        .unwrap();
    let r = app.get("/api/v1/conversations").await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (401, Some("this API key has been revoked"))
    );
}

/// A client-given conversation or message id that another workspace uses is answered exactly
/// as a fresh id is (201, no `id_conflict`), creates the caller's own record, and a repeat of
/// the request (or of the import) stores nothing twice: the id's existence elsewhere is not
/// told. The other workspace's records are untouched.
async fn ids_another_workspace_uses_are_answered_as_fresh_ones(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let theirs = app
        .create(json!({"assistant": {"name": "Ava"}, "messages": [
            {"role": "user", "content": "tenant A private words", "created_at": "2026-11-01T10:00:00Z"}]}))
        .await;
    let their_message = app
        .get(&format!("/api/v1/conversations/{theirs}/messages"))
        .await
        .body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other) = app.other_tenant("intruder").await;

    // The same shape of request with a fresh id and with the other workspace's ids.
    let fresh = uuid::Uuid::now_v7().to_string();
    let mut answers = Vec::new();
    for (conversation, message) in [
        (fresh.clone(), uuid::Uuid::now_v7().to_string()),
        (theirs.clone(), their_message.clone()),
    ] {
        let body = json!({"id": conversation, "assistant": {"name": "X"}, "messages": [
            {"id": message, "role": "user", "content": "hello", "created_at": "2026-11-02T10:00:00Z"}]});
        let first = app.post_as("/api/v1/conversations", &body, &other).await;
        let again = app.post_as("/api/v1/conversations", &body, &other).await;
        assert_eq!(first.status, 201, "{}", first.text);
        assert_eq!(again.status, 200, "a repeat finds it: {}", again.text);
        let created = first.body["conversation"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(again.body["conversation"]["id"], created.as_str());
        assert_eq!(
            first.body["messages"][0]["outcome"], "stored",
            "{}",
            first.text
        );
        assert_eq!(
            again.body["messages"][0]["outcome"], "duplicate",
            "{}",
            again.text
        );
        let d = app
            .get_as(&format!("/api/v1/conversations/{created}"), &other)
            .await;
        assert_eq!((d.status, d.body["message_count"].as_i64()), (200, Some(1)));
        answers.push((first.status, again.status, created));
    }
    assert_eq!(answers[0].2, fresh, "a free id is kept");
    assert_ne!(
        answers[1].2, theirs,
        "a used one gets the caller's own stand-in"
    );

    // Appending a message with the other workspace's message id to one's own conversation.
    let mine = &answers[1].2;
    let r = app
        .post_as(
            &format!("/api/v1/conversations/{mine}/messages"),
            &json!({"messages": [{"id": their_message, "role": "user", "content": "again"}]}),
            &other,
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    assert_ne!(r.code(), "id_conflict");

    // A third workspace imports the first one's export: created once, nothing the second time.
    let (_, third) = app.other_tenant("third").await;
    let export = app.get("/api/v1/export").await.text;
    for (created, existing) in [(1, 0), (0, 1)] {
        let r = app
            .send(
                app.client
                    .post(app.url("/api/v1/import"))
                    .bearer_auth(&third)
                    .header("content-type", "application/jsonl")
                    .body(export.clone()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            (
                r.body["conversations_created"].as_i64(),
                r.body["conversations_existing"].as_i64()
            ),
            (Some(created), Some(existing)),
            "{}",
            r.text
        );
    }

    // Workspace A's records are as they were.
    let d = app.get(&format!("/api/v1/conversations/{theirs}")).await;
    assert_eq!(d.body["message_count"], 1);
    assert_eq!(
        app.get("/api/v1/conversations/count").await.body["count"],
        1
    );
}

crate::both_backends!(
    another_workspace_sees_and_changes_nothing,
    missing_malformed_unknown_and_revoked_keys_are_refused,
    ids_another_workspace_uses_are_answered_as_fresh_ones,
    forged_attachment_keys_reach_no_file,
);

/// A message sent through the API (or an import) can carry `meta.channel.attachments` with any
/// `storage_key`: one pointing out of the attachment storage (`../secret.key`, the server's
/// secret key) or into another workspace's folder is neither served nor removed with the
/// conversation, and frees nothing from the quota.
async fn forged_attachment_keys_reach_no_file(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (other, _) = app.other_tenant("victim").await;
    let victim_key = format!("{}/{}", other.id, uuid::Uuid::now_v7());
    let root = app.state.settings.data_dir.join("attachments");
    std::fs::create_dir_all(root.join(other.id.to_string())).unwrap();
    std::fs::write(root.join(&victim_key), b"the victim's photo").unwrap();
    app.state
        .store
        .attachments()
        .record_attachment(
            other.id,
            &victim_key,
            18,
            None,
            parley_core::Timestamp::now(),
        )
        .await
        .unwrap();
    let secret = app.state.settings.data_dir.join("secret.key");
    assert!(secret.exists(), "the server's generated secret key");
    let attachment = |key: &str| json!({"kind": "image", "media_id": "m", "mime_type": "image/png", "storage_key": key, "size_bytes": 1_000_000_000u64});
    let id = app
        .create(json!({"assistant": {"name": "Ava"}, "channel": "whatsapp",
            "messages": [{"role": "user", "content": "[image]", "meta": {"channel": {"type": "image",
                "attachments": [attachment("../secret.key"), attachment(&victim_key)]}}}]}))
        .await;
    let m = app
        .get(&format!("/api/v1/conversations/{id}/messages"))
        .await;
    let message = m.body["items"][0]["id"].as_str().unwrap().to_owned();
    for index in 0..2 {
        let r = app
            .get(&format!(
                "/api/v1/conversations/{id}/messages/{message}/attachments/{index}"
            ))
            .await;
        assert_eq!(r.status, 404, "attachment {index}: {}", r.text);
    }
    let r = app.delete(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(secret.exists(), "the secret key is not deleted");
    assert_eq!(
        std::fs::read(root.join(&victim_key)).unwrap(),
        b"the victim's photo"
    );
    let victim = app
        .state
        .store
        .attachments()
        .attachment_usage(other.id)
        .await
        .unwrap();
    assert_eq!((victim.bytes, victim.files), (18, 1));
}
