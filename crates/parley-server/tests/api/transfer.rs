//! Import and export: JSONL round trip, idempotent re-import, CSV, atomic import.

use serde_json::json;

use crate::helpers::Backend;
use crate::helpers::TestApp;

async fn export_then_import_into_an_empty_instance_gives_the_same_data(backend: Backend) {
    let Some(source) = TestApp::spawn_on(backend).await else {
        return;
    };
    source.import_sgd(&["dialogues_033.json"]).await;
    // Add the fields SGD lacks: rating, sentiment, priced and unpriced usage, a hidden message.
    let id = source
        .create(json!({
            "external_id": "rt-1", "assistant": {"name": "Ava", "company": "Acme"}, "channel": "whatsapp",
            "contact": "+1 555 0100", "rating": {"score": 4, "comment": "quick"}, "sentiment": {"label": "neutral", "score": 0.1},
            "variables": [{"key": "k", "value": "v", "source": "pre_chat"}], "memory": {"deep": {"x": [1, null]}},
            "messages": [
                {"role": "system", "content": "sys", "created_at": "2026-11-01T10:00:00Z"},
                {"role": "user", "content": "Grüße ✓", "created_at": "2026-11-01T10:00:01Z", "external_id": "w1"},
                {"role": "assistant", "content": "ok", "created_at": "2026-11-01T10:00:02Z", "model": "gpt-4o",
                 "usage": {"prompt_tokens": 12, "completion_tokens": 3}},
                {"role": "assistant", "content": "?", "created_at": "2026-11-01T10:00:03Z", "model": "mystery",
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
            ]}))
        .await;
    source
        .patch(
            &format!("/api/v1/conversations/{id}"),
            &json!({"status": "closed", "ended_at": "2026-11-01T10:01:00Z"}),
        )
        .await;
    let export = source.get("/api/v1/export").await;
    assert_eq!(export.status, 200);
    assert!(
        export.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".jsonl")
    );
    let lines = export.text.lines().count();
    assert_eq!(lines, 129);

    let Some(target) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = target
        .post_raw("/api/v1/import", "application/jsonl", export.text.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["conversations_created"], 129);
    let again = target.get("/api/v1/export").await;
    assert_eq!(again.text, export.text, "the round trip is exact");
    assert_eq!(
        detail(&target, &id).await,
        detail(&source, &id).await,
        "counters and flags too"
    );

    // Importing the same file again creates nothing.
    let r = target
        .post_raw("/api/v1/import", "application/jsonl", export.text.clone())
        .await;
    assert_eq!(
        (
            r.body["conversations_created"].as_i64(),
            r.body["conversations_existing"].as_i64(),
            r.body["messages_stored"].as_i64()
        ),
        (Some(0), Some(129), Some(0))
    );
    assert_eq!(
        target.get("/api/v1/conversations/count").await.body["count"],
        129
    );
}

/// A conversation's record without what differs between instances by design.
async fn detail(app: &TestApp, id: &str) -> serde_json::Value {
    let mut d = app.get(&format!("/api/v1/conversations/{id}")).await.body;
    // The computed insight (issue 13) is not transferred: each server's background analyser
    // computes it in its own time.
    if d["sentiment_source"] == "lexicon" {
        d["sentiment"] = serde_json::Value::Null;
    }
    for k in [
        "created_at",
        "updated_at",
        "analysed_at",
        "resolution",
        "sentiment_shift",
        "sentiment_source",
        "first_response_ms",
        "key_phrases",
        "topic",
    ] {
        d.as_object_mut().unwrap().remove(k);
    }
    d["assistant"].as_object_mut().unwrap().remove("id");
    d
}

async fn import_is_atomic_and_names_the_bad_line(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let body = [
        r#"{"external_id": "a", "assistant": {"name": "Ava"}, "messages": [{"role": "user", "content": "hi"}]}"#,
        "",
        r#"{"external_id": "b", "assistant": {"name": "Ava"}, "messages": [{"role": "robot", "content": "hi"}]}"#,
    ]
    .join("\n");
    let r = app
        .post_raw("/api/v1/import", "application/jsonl", body)
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "line 3: messages[0].role");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 3: ")
    );
    assert_eq!(
        app.get("/api/v1/conversations/count").await.body["count"],
        0,
        "line 1 was not imported either"
    );
    let r = app
        .post_raw("/api/v1/import", "application/jsonl", "{\"assistant\": ")
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    let r = app
        .post_raw("/api/v1/import", "application/jsonl", "")
        .await;
    assert_eq!(
        (r.status, r.body["conversations_created"].as_i64()),
        (200, Some(0))
    );
}

async fn csv_export_has_one_row_per_conversation_and_defuses_formulas(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    app.create(json!({"assistant": {"name": "Ava"}, "contact": "=HYPERLINK(\"http://evil\")", "channel": "telegram",
                      "messages": [{"role": "user", "content": "line one\nline \"two\"", "created_at": "2026-11-01T10:00:00Z"},
                                   {"role": "assistant", "content": "priced", "model": "gpt-4o", "created_at": "2026-11-01T10:00:01Z",
                                    "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}]}))
        .await;
    app.create(json!({"assistant": {"name": "Bob"}, "channel": "whatsapp"}))
        .await;
    let r = app.get("/api/v1/export?format=csv&channel=telegram").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "filtered to telegram");
    let get = |name: &str| {
        rows[0]
            .get(headers.iter().position(|h| h == name).unwrap())
            .unwrap()
            .to_owned()
    };
    assert_eq!(get("contact"), "'=HYPERLINK(\"http://evil\")");
    assert_eq!(get("cost_usd"), "0.007500000");
    assert_eq!(get("message_count"), "2");
    assert!(get("transcript").contains("user: line one\nline \"two\""));
    let r = app.get("/api/v1/export?format=xml").await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("format"))
    );
}

/// The README's JSONL example is a valid line (compacted) and imports as documented.
async fn the_readme_jsonl_example_imports(backend: Backend) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("```json\n").unwrap() + 8;
    let end = start + readme[start..].find("```").unwrap();
    let value: serde_json::Value = serde_json::from_str(&readme[start..end]).unwrap();
    let line = serde_json::to_string(&value).unwrap();
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = app
        .post_raw("/api/v1/import", "application/jsonl", line)
        .await;
    assert_eq!(
        (r.status, r.body["conversations_created"].as_i64()),
        (200, Some(1)),
        "{}",
        r.text
    );
    let d = app
        .get(&format!(
            "/api/v1/conversations/{}",
            value["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        d.body["cost_nanousd"], 1_210_000,
        "412 x 2.5e-6 + 18 x 1e-5 USD"
    );
    assert_eq!(d.body["message_count"], 2);
}

crate::both_backends!(
    export_then_import_into_an_empty_instance_gives_the_same_data,
    import_is_atomic_and_names_the_bad_line,
    a_large_import_is_atomic_per_batch_and_resumes_where_it_stopped,
    csv_export_has_one_row_per_conversation_and_defuses_formulas,
    the_readme_jsonl_example_imports,
);

/// Issue 10, item 7: an import larger than one batch (500 conversations) is stored batch by
/// batch; a bad line stops it with its line number, keeps the batches before it, stores
/// nothing of its own batch, and says where to resume; `from_line` resumes there, and the
/// whole import ends with every line stored once.
async fn a_large_import_is_atomic_per_batch_and_resumes_where_it_stopped(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, |s| s.max_body_bytes = 4_096).await else {
        return;
    };
    let line = |n: usize, role: &str| {
        json!({"external_id": format!("big-{n}"), "assistant": {"name": "Ava"},
               "messages": [{"role": role, "content": format!("message {n}")}]})
        .to_string()
    };
    let body = |bad: Option<usize>| -> String {
        (1..=1_203)
            .map(|n| line(n, if Some(n) == bad { "robot" } else { "user" }) + "\n")
            .collect()
    };
    let r = app
        .post_raw("/api/v1/import", "application/jsonl", body(Some(1_100)))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "line 1100: messages[0].role");
    assert_eq!(
        r.body["imported"]["conversations_created"], 1_000,
        "{}",
        r.text
    );
    assert_eq!(r.body["resume_from_line"], 1_001);
    assert_eq!(
        app.get("/api/v1/conversations/count").await.body["count"],
        1_000
    );
    // Resume from there with the line fixed.
    let r = app
        .post_raw(
            "/api/v1/import?from_line=1001",
            "application/jsonl",
            body(None),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            r.body["conversations_created"].as_i64(),
            r.body["conversations_existing"].as_i64()
        ),
        (Some(203), Some(0))
    );
    assert_eq!(
        app.get("/api/v1/conversations/count").await.body["count"],
        1_203
    );
    // Sending everything again stores nothing twice.
    let r = app
        .post_raw("/api/v1/import", "application/jsonl", body(None))
        .await;
    assert_eq!(
        (
            r.body["conversations_created"].as_i64(),
            r.body["messages_stored"].as_i64()
        ),
        (Some(0), Some(0)),
        "{}",
        r.text
    );
    // A line longer than max_body_bytes, and a bad from_line.
    let long = line(9_999, "user").replace("message 9999", &"x".repeat(5_000));
    let r = app
        .post_raw(
            "/api/v1/import",
            "application/jsonl",
            format!("{}\n{long}\n", line(1, "user")),
        )
        .await;
    assert_eq!(
        (r.status, r.code(), r.body["error"]["field"].as_str()),
        (413, "line_too_large", Some("line 2")),
        "{}",
        r.text
    );
    assert_eq!(r.body["resume_from_line"], 1);
    let r = app
        .post_raw("/api/v1/import?from_line=0", "application/jsonl", "")
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
}
