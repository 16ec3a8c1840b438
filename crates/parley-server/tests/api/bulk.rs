//! Bulk actions on conversations (issue 14) through the real server on both backends:
//! `POST /api/v1/conversations/bulk` by ids and by filter for every action, the background job
//! of a large selection and `GET /api/v1/conversations/bulk/{id}`, a bulk delete that leaves no
//! trace (rows, search index, events, attachment files, read from the tables and the disk),
//! retries with an idempotency key, another workspace's ids, the admin rule, the audit log and
//! the validation errors.

use std::time::Duration;

use base64::Engine as _;
use parley_core::{ConversationId, UserRole};
use parley_store::testing::{id_literal, scalar};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, Resp, TestApp, shared_dir};

const BULK: &str = "/api/v1/conversations/bulk";

fn conversation(contact: &str, words: &str) -> Value {
    json!({
        "assistant": {"name": "Ava", "company": "Acme"},
        "channel": "widget",
        "contact": contact,
        "variables": [{"key": "email", "value": format!("{contact}@mail.example"), "source": "pre_chat"}],
        "messages": [
            {"role": "user", "content": format!("hello {words}")},
            {"role": "assistant", "content": "how can I help?"},
        ],
    })
}

/// Imports `n` conversations whose first message holds `words`.
async fn import(app: &TestApp, n: usize, words: &str) {
    let mut body = String::new();
    for i in 0..n {
        body.push_str(&conversation(&format!("{words}-{i:05}"), words).to_string());
        body.push('\n');
    }
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/import"))
                .bearer_auth(&app.key)
                .header("content-type", "application/jsonl")
                .body(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn bulk(app: &TestApp, body: &Value) -> Resp {
    app.post(BULK, body).await
}

async fn detail(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Polls a bulk action until it is finished; returns its last state.
async fn finished(app: &TestApp, id: &str) -> Value {
    for _ in 0..600 {
        let r = app.get(&format!("{BULK}/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["state"] == "done" || r.body["state"] == "failed" {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("bulk action {id} did not finish");
}

async fn n(app: &TestApp, sql: &str) -> i64 {
    scalar(&app.state.settings.database_url, sql, sql).await
}

fn lit(app: &TestApp, id: &str) -> String {
    id_literal(&app.state.settings.database_url, id.parse().unwrap())
}

async fn audit(app: &TestApp) -> Vec<Value> {
    let r = app.get("/api/v1/audit-log?action=conversations.bulk").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["entries"].as_array().unwrap().clone()
}

async fn each_action_by_ids_and_by_filter(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            app.create(conversation(&format!("c{i}"), "plainword"))
                .await,
        );
    }
    let (other_ws, other_key) = app.other_tenant("elsewhere").await;
    let r = app
        .post_as(
            "/api/v1/conversations",
            &conversation("theirs", "plainword"),
            &other_key,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let theirs = r.body["conversation"]["id"].as_str().unwrap().to_owned();

    // Close two (and name the other workspace's conversation: left untouched).
    let r = bulk(
        &app,
        &json!({"action": "close", "end_reason": "resolved", "ids": [ids[0], ids[1], theirs]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["state"], "done");
    assert_eq!(
        (r.body["total"].clone(), r.body["done"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(r.body["affected"], 2, "{}", r.text);
    for id in &ids[..2] {
        let d = detail(&app, id).await;
        assert_eq!(d["status"], "closed");
        assert_eq!(d["end_reason"], "resolved");
        assert!(d["ended_at"].is_string());
    }
    let t = app
        .get_as(&format!("/api/v1/conversations/{theirs}"), &other_key)
        .await;
    assert_eq!(
        t.body["status"], "active",
        "another workspace's conversation"
    );
    // The batch wrote the usual events.
    let events = app
        .state
        .store
        .events()
        .events_after(
            app.workspace.id,
            0,
            &parley_store::EventFilter::default(),
            1000,
        )
        .await
        .unwrap();
    let closed: ConversationId = ids[0].parse().unwrap();
    assert!(
        events.iter().any(|e| e.conversation_id == Some(closed)
            && e.event_type == parley_store::events::EventType::ConversationUpdated),
        "a conversation.updated event for each closed conversation"
    );

    // Archive by filter: the closed ones.
    let r = bulk(
        &app,
        &json!({"action": "archive", "filter": {"status": "closed"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["affected"], 2, "{}", r.text);
    assert_eq!(detail(&app, &ids[0]).await["status"], "archived");
    assert_eq!(detail(&app, &ids[2]).await["status"], "active");
    // Reopen them by ids.
    let r = bulk(&app, &json!({"action": "reopen", "ids": [ids[0], ids[1]]})).await;
    assert_eq!(r.body["affected"], 2, "{}", r.text);
    let d = detail(&app, &ids[1]).await;
    assert_eq!(d["status"], "active");
    assert!(d["end_reason"].is_null());

    // Assign every matching conversation to a member, then to nobody.
    let member = app
        .state
        .store
        .auth()
        .create_user(
            app.workspace.id,
            "mia@example.com",
            "not-a-real-hash",
            UserRole::Member,
        )
        .await
        .unwrap();
    let r = bulk(
        &app,
        &json!({"action": "assign", "assignee_id": member.id, "filter": {"q": "plainword"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["affected"], 6, "{}", r.text);
    assert_eq!(
        app.list_ids(&format!("assignee={}", member.id)).await.len(),
        6
    );
    let r = bulk(
        &app,
        &json!({"action": "assign", "assignee_id": null, "ids": [ids[5]]}),
    )
    .await;
    assert_eq!(r.body["affected"], 1, "{}", r.text);
    assert_eq!(app.list_ids("assignee=none").await, vec![ids[5].clone()]);
    // A user of another workspace is not an assignee here.
    let stranger = app
        .state
        .store
        .auth()
        .create_user(
            other_ws.id,
            "stranger@example.com",
            "not-a-real-hash",
            UserRole::Admin,
        )
        .await
        .unwrap();
    let r = bulk(
        &app,
        &json!({"action": "assign", "assignee_id": stranger.id, "ids": [ids[0]]}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{}",
        r.text
    );

    // Export hands the filter to the existing export.
    let r = bulk(
        &app,
        &json!({"action": "export", "filter": {"status": ["active"], "q": "plainword"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let url = r.body["export_url"].as_str().unwrap();
    let file = app.get(&format!("{url}&format=jsonl")).await;
    assert_eq!(file.status, 200, "{}", file.text);
    assert_eq!(file.text.lines().count(), 6, "{}", file.text);

    // Delete two by ids; the other workspace's stays.
    let r = bulk(
        &app,
        &json!({"action": "delete", "ids": [ids[3], ids[4], theirs]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["affected"], 2, "{}", r.text);
    for id in &ids[3..5] {
        assert_eq!(
            app.get(&format!("/api/v1/conversations/{id}")).await.status,
            404
        );
    }
    let t = app
        .get_as(&format!("/api/v1/conversations/{theirs}"), &other_key)
        .await;
    assert_eq!(
        t.status, 200,
        "another workspace's conversation is not deleted"
    );

    // One audit entry per bulk action (the export changes nothing and is not one).
    let log = audit(&app).await;
    assert_eq!(log.len(), 6, "{log:?}");
    let del = &log[0];
    assert_eq!(del["details"]["action"], "delete");
    assert_eq!(del["details"]["count"], 3);
    assert_eq!(del["details"]["ids"].as_array().unwrap().len(), 3);
    assert!(del["actor"].as_str().unwrap().starts_with("api_key:"));
    assert!(del["at"].is_string(), "{del}");
    let archive = &log[4];
    assert_eq!(archive["details"]["filter"], json!({"status": "closed"}));
    // The other workspace sees none of them, nor the progress of ours.
    let theirs_log = app
        .get_as("/api/v1/audit-log?action=conversations.bulk", &other_key)
        .await;
    assert_eq!(theirs_log.body["entries"], json!([]));
    let job = log[0]["details"]["bulk_id"].as_str().unwrap();
    assert_eq!(
        app.get_as(&format!("{BULK}/{job}"), &other_key)
            .await
            .status,
        404
    );
}

/// A phone call whose transcript says `word`, with an uploaded recording; (id, storage key).
async fn call_with_recording(app: &TestApp, word: &str) -> (String, String) {
    let bytes =
        std::fs::read(shared_dir().join("fixtures/audio/en_sentence_16k_mono.opus")).unwrap();
    let body = json!({
        "call_id": "call-bulk-1", "assistant": {"name": "Phone desk"}, "platform": "generic",
        "caller": "+15550001111", "callee": "+15550002222", "direction": "inbound",
        "started_at": "2026-11-20T10:00:00Z",
        "transcript": [{"speaker": "user", "start_ms": 0, "end_ms": 3670, "text": format!("a recorded {word} sentence")}],
        "recording": {"data_base64": base64::engine::general_purpose::STANDARD.encode(&bytes), "mime_type": "audio/ogg"},
    });
    let r = app.post("/api/v1/calls", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let conv = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let ms = crate::calls::messages(app, &conv).await;
    let m = crate::calls::call_message(&ms);
    let key = m["meta"]["channel"]["attachments"][0]["storage_key"]
        .as_str()
        .expect("a stored recording")
        .to_owned();
    (conv, key)
}

async fn a_bulk_delete_by_filter_leaves_no_trace(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    import(&app, 2_500, "purgeword").await;
    import(&app, 20, "keepword").await;
    let (call, key) = call_with_recording(&app, "purgeword").await;
    let file = app.state.settings.data_dir.join("attachments").join(&key);
    assert!(file.exists());
    let pks: Vec<i64> = {
        let first = app.list_ids("q=purgeword&limit=3").await;
        let mut out = Vec::new();
        for id in first.iter().chain([&call]) {
            out.push(
                n(
                    &app,
                    &format!("SELECT pk FROM conversations WHERE id = {}", lit(&app, id)),
                )
                .await,
            );
        }
        out
    };
    let r = bulk(
        &app,
        &json!({"action": "delete", "filter": {"q": "purgeword"}}),
    )
    .await;
    assert_eq!(
        r.status, 202,
        "a large selection runs in the background: {}",
        r.text
    );
    assert_eq!(r.body["total"], 2_501);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["progress_url"], format!("{BULK}/{id}"), "{}", r.text);
    let done = finished(&app, &id).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        (done["done"].clone(), done["affected"].clone()),
        (json!(2_501), json!(2_501))
    );
    assert!(done["finished_at"].is_string());

    // Nothing left: rows, messages, variables, insights, earlier events, search, the file.
    assert_eq!(
        app.get("/api/v1/conversations/count").await.body["count"],
        20
    );
    assert_eq!(app.list_ids("q=purgeword").await.len(), 0);
    for pk in pks {
        for table in ["messages", "variables", "conversation_insights"] {
            assert_eq!(
                n(
                    &app,
                    &format!("SELECT count(*) FROM {table} WHERE conversation = {pk}")
                )
                .await,
                0,
                "{table}"
            );
        }
    }
    assert_eq!(n(&app, "SELECT count(*) FROM conversations").await, 20);
    assert_eq!(n(&app, "SELECT count(*) FROM messages").await, 40);
    assert_eq!(
        n(&app, "SELECT count(*) FROM events WHERE type <> 'conversation.deleted' AND conversation_id NOT IN (SELECT id FROM conversations)").await,
        0,
        "only conversation.deleted events remain of the deleted conversations"
    );
    assert_eq!(
        n(
            &app,
            "SELECT count(*) FROM events WHERE type = 'conversation.deleted'"
        )
        .await,
        2_501
    );
    assert!(!file.exists(), "the recording's file is removed");
    let db = &app.state.settings.database_url;
    let indexed = scalar(
        db,
        "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '\"pur\" AND \"rge\" AND \"ord\"'",
        "SELECT count(*) FROM messages WHERE content ILIKE '%purgeword%'",
    )
    .await;
    assert_eq!(indexed, 0, "the search index forgets them");
    let log = audit(&app).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["details"]["filter"], json!({"q": "purgeword"}));
    assert_eq!(log[0]["details"]["count"], 2_501);
    // The job row goes once the worker completes it (just after its last progress).
    let mut left = 1;
    for _ in 0..100 {
        left = n(
            &app,
            "SELECT count(*) FROM jobs WHERE kind = 'conversations.bulk'",
        )
        .await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the finished job is removed");
}

async fn a_retry_runs_once_and_the_rules_hold(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let a = app.create(conversation("a", "retryword")).await;
    let b = app.create(conversation("b", "retryword")).await;
    let send = |key: &'static str| {
        app.send(
            app.client
                .post(app.url(BULK))
                .bearer_auth(&app.key)
                .header("idempotency-key", key)
                .json(&json!({"action": "archive", "ids": [a, b]})),
        )
    };
    let first = send("archive-once-1").await;
    assert_eq!(first.status, 200, "{}", first.text);
    // Someone reopens one; the retried request must not archive it again.
    let r = app
        .patch(
            &format!("/api/v1/conversations/{a}"),
            &json!({"status": "active"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let again = send("archive-once-1").await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(
        again.body["id"], first.body["id"],
        "the first request's record"
    );
    assert_eq!(detail(&app, &a).await["status"], "active", "not run twice");
    assert_eq!(audit(&app).await.len(), 1);
    // A large selection retried: the same job, one run.
    import(&app, 600, "retrybulk").await;
    let big = |k: &'static str| {
        app.send(
            app.client
                .post(app.url(BULK))
                .bearer_auth(&app.key)
                .header("idempotency-key", k)
                .json(
                    &json!({"action": "close", "end_reason": "spam", "filter": {"q": "retrybulk"}}),
                ),
        )
    };
    let one = big("close-big").await;
    assert_eq!(one.status, 202, "{}", one.text);
    let two = big("close-big").await;
    assert!(two.status == 202 || two.status == 200, "{}", two.text);
    assert_eq!(two.body["id"], one.body["id"]);
    let done = finished(&app, one.body["id"].as_str().unwrap()).await;
    assert_eq!(done["affected"], 600, "{done}");
    assert_eq!(audit(&app).await.len(), 2);
    assert_eq!(app.list_ids("status=closed&limit=200").await.len(), 200);

    // A member key may archive but not delete.
    let r = app
        .post("/api/v1/keys", &json!({"name": "helper", "role": "member"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let member = r.body["secret"].as_str().unwrap().to_owned();
    let r = app
        .post_as(BULK, &json!({"action": "delete", "ids": [b]}), &member)
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);
    assert_eq!(detail(&app, &b).await["status"], "archived", "still there");
    let r = app
        .post_as(BULK, &json!({"action": "reopen", "ids": [b]}), &member)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Clear errors for bad requests.
    let many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    for (body, field) in [
        (json!({"ids": [a]}), "action"),
        (json!({"action": "explode", "ids": [a]}), "action"),
        (json!({"action": "archive"}), "ids"),
        (
            json!({"action": "archive", "ids": [a], "filter": {}}),
            "ids",
        ),
        (json!({"action": "archive", "ids": []}), "ids"),
        (json!({"action": "archive", "ids": many}), "ids"),
        (json!({"action": "archive", "ids": ["not-an-id"]}), "ids"),
        (
            json!({"action": "archive", "filter": {"chanel": "widget"}}),
            "filter",
        ),
        (
            json!({"action": "archive", "filter": {"status": "sleeping"}}),
            "filter",
        ),
        (
            json!({"action": "archive", "filter": {"q": {"deep": 1}}}),
            "filter.q",
        ),
        (
            json!({"action": "archive", "filter": "status=closed"}),
            "filter",
        ),
        (json!({"action": "close", "ids": [a]}), "end_reason"),
        (
            json!({"action": "archive", "end_reason": "x", "ids": [a]}),
            "end_reason",
        ),
        (json!({"action": "assign", "ids": [a]}), "assignee_id"),
        (
            json!({"action": "assign", "assignee_id": "me", "ids": [a]}),
            "assignee_id",
        ),
        (json!({"action": "export", "ids": [a]}), "ids"),
    ] {
        let r = bulk(&app, &body).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "validation_failed"),
            "{body}: {}",
            r.text
        );
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
    let r = app
        .send(
            app.client
                .post(app.url(BULK))
                .bearer_auth(&app.key)
                .header("idempotency-key", "x".repeat(201))
                .json(&json!({"action": "archive", "ids": [a]})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_header"), "{}", r.text);
    let r = bulk(&app, &json!(["archive"])).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{}",
        r.text
    );
    let r = app.post_raw(BULK, "text/plain", "action=archive").await;
    assert_eq!(r.status, 415, "{}", r.text);
    assert_eq!(app.get(&format!("{BULK}/not-a-job")).await.status, 404);
    assert_eq!(
        app.get(&format!("{BULK}/{}", uuid::Uuid::now_v7()))
            .await
            .status,
        404
    );
    let anon = app
        .send(
            app.client
                .post(app.url(BULK))
                .json(&json!({"action": "archive", "ids": [a]})),
        )
        .await;
    assert_eq!(anon.status, 401);
}

both_backends!(
    each_action_by_ids_and_by_filter,
    a_bulk_delete_by_filter_leaves_no_trace,
    a_retry_runs_once_and_the_rules_hold,
);
