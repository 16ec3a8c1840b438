//! Retention policies and right-to-erasure (issue 16) through the real server, on both
//! backends: `GET/PUT /api/v1/retention`, `POST /api/v1/retention/run`, `GET
//! /api/v1/audit-log`, `POST /api/v1/contacts/erase`, and the dashboard's forms. What a run
//! claims to delete is checked by reading the tables themselves
//! (`parley_store::testing::scalar`), the search, and the attachment files on disk.

use base64::Engine as _;
use parley_core::widget::{TrackerItem, TrackerItemKind, TrackerSession};
use parley_core::{ConversationId, Timestamp, UserRole};
use parley_store::testing::{execute, id_literal, scalar};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, shared_dir};

const DAY: i64 = 86_400_000;

fn days_ago(d: i64) -> String {
    Timestamp(Timestamp::now().0 - d * DAY).to_rfc3339()
}

/// A conversation of `contact` whose messages (`words` in the first) are `age` days old.
fn conversation(contact: &str, status: &str, age: i64, words: &str) -> Value {
    json!({
        "assistant": {"name": "Ava", "company": "Acme"},
        "channel": "widget",
        "status": status,
        "contact": contact,
        "variables": [{"key": "email", "value": format!("{contact}@mail.example"), "source": "pre_chat"}],
        "messages": [
            {"role": "user", "content": format!("hello {words}"), "created_at": days_ago(age)},
            {"role": "assistant", "content": "how can I help?", "created_at": days_ago(age)},
        ],
    })
}

async fn create(app: &TestApp, body: &Value) -> ConversationId {
    let r = app.post("/api/v1/conversations", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["conversation"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A phone call `age` days old with an uploaded recording; (conversation, storage key).
async fn call_with_recording(app: &TestApp, id: &str, caller: &str, age: i64) -> (String, String) {
    let bytes =
        std::fs::read(shared_dir().join("fixtures/audio/en_sentence_16k_mono.opus")).unwrap();
    let started = days_ago(age);
    let body = json!({
        "call_id": id, "assistant": {"name": "Phone desk"}, "platform": "generic",
        "caller": caller, "callee": "+15550002222", "direction": "inbound",
        "started_at": started,
        "transcript": [{"speaker": "user", "start_ms": 0, "end_ms": 3670, "text": "a recorded quokkaline sentence"}],
        "recording": {"data_base64": base64::engine::general_purpose::STANDARD.encode(&bytes), "mime_type": "audio/ogg"},
    });
    let r = app.post("/api/v1/calls", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let conv = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let m = call_message(app, &conv).await;
    let key = m["meta"]["channel"]["attachments"][0]["storage_key"]
        .as_str()
        .expect("a stored recording")
        .to_owned();
    (conv, key)
}

async fn call_message(app: &TestApp, conv: &str) -> Value {
    let ms = crate::calls::messages(app, conv).await;
    crate::calls::call_message(&ms)
}

struct Db {
    url: String,
}

impl Db {
    fn of(app: &TestApp) -> Db {
        Db {
            url: app.state.settings.database_url.clone(),
        }
    }
    fn id(&self, id: impl std::fmt::Display) -> String {
        id_literal(&self.url, id.to_string().parse().unwrap())
    }
    async fn n(&self, sql: &str) -> i64 {
        scalar(&self.url, sql, sql).await
    }
    async fn pk(&self, c: ConversationId) -> i64 {
        self.n(&format!(
            "SELECT pk FROM conversations WHERE id = {}",
            self.id(c)
        ))
        .await
    }
    /// Every row that belongs to conversation `c` (row key `pk`), per table.
    async fn rows_of(&self, c: ConversationId, pk: i64) -> Vec<(&'static str, i64)> {
        let id = self.id(c);
        vec![
            (
                "conversations",
                self.n(&format!("SELECT count(*) FROM conversations WHERE pk = {pk}")).await,
            ),
            (
                "messages",
                self.n(&format!("SELECT count(*) FROM messages WHERE conversation = {pk}")).await,
            ),
            (
                "variables",
                self.n(&format!("SELECT count(*) FROM variables WHERE conversation = {pk}")).await,
            ),
            (
                "conversation_insights",
                self.n(&format!(
                    "SELECT count(*) FROM conversation_insights WHERE conversation = {pk}"
                ))
                .await,
            ),
            (
                "events",
                self.n(&format!(
                    "SELECT count(*) FROM events WHERE conversation_id = {id} AND type <> 'conversation.deleted'"
                ))
                .await,
            ),
            (
                "jobs",
                self.n(&format!("SELECT count(*) FROM jobs WHERE conversation_id = {id}")).await,
            ),
            (
                "tracker_links",
                self.n(&format!("SELECT count(*) FROM tracker_links WHERE conversation_id = {id}"))
                    .await,
            ),
        ]
    }
    /// Whether the search index holds `word` (SQLite: the FTS5 tables themselves; PostgreSQL:
    /// the trigram-indexed columns).
    async fn indexed(&self, word: &str) -> i64 {
        // FTS5 trigram tables with `detail = none` match trigrams, not phrases: every
        // trigram of the word, ANDed (the store's own search does the same).
        let chars: Vec<char> = word.chars().collect();
        let trigrams = chars
            .windows(3)
            .map(|w| format!("\"{}\"", w.iter().collect::<String>()))
            .collect::<Vec<_>>()
            .join(" AND ");
        scalar(
            &self.url,
            &format!(
                "SELECT (SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '{trigrams}')
                      + (SELECT count(*) FROM conversations_fts WHERE conversations_fts MATCH '{trigrams}')"
            ),
            &format!(
                "SELECT (SELECT count(*) FROM messages WHERE content ILIKE '%{word}%')
                      + (SELECT count(*) FROM conversations WHERE contact ILIKE '%{word}%')"
            ),
        )
        .await
    }
}

async fn put_policy(app: &TestApp, body: &Value) -> Value {
    let r = app
        .send(
            app.client
                .put(app.url("/api/v1/retention"))
                .bearer_auth(&app.key)
                .json(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn run(app: &TestApp, dry_run: bool) -> Value {
    let r = app
        .post("/api/v1/retention/run", &json!({"dry_run": dry_run}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn search(app: &TestApp, q: &str) -> usize {
    let r = app.get(&format!("/api/v1/conversations?q={q}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().unwrap().len()
}

/// A tracker visit of the workspace last updated `age` days ago, with one item per age in
/// `items` (days); linked to `conversation` when given. Returns (session id, item ids).
async fn visit(
    app: &TestApp,
    ws: parley_core::WorkspaceId,
    age: i64,
    items: &[i64],
    conversation: Option<ConversationId>,
) -> (uuid::Uuid, Vec<uuid::Uuid>) {
    let store = &app.state.store;
    let session = TrackerSession {
        id: uuid::Uuid::now_v7(),
        workspace_id: Some(ws),
        landing_page: "https://shop.example/".into(),
        ..Default::default()
    };
    store
        .widgets()
        .save_tracker_session(&session)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for a in items {
        let item = TrackerItem {
            id: uuid::Uuid::now_v7(),
            session_id: session.id,
            kind: TrackerItemKind::Trigger,
            name: "form".into(),
            url: "https://shop.example/contact".into(),
            at: Timestamp(Timestamp::now().0 - a * DAY),
            time_spent_ms: None,
            scroll_depth: None,
            data: json!({"email": "visitor@mail.example"}),
        };
        store.widgets().save_tracker_item(ws, &item).await.unwrap();
        ids.push(item.id);
    }
    if let Some(c) = conversation {
        store
            .widgets()
            .link_tracker_session(ws, session.id, c)
            .await
            .unwrap();
    }
    // Time passes: the visit was last updated `age` days ago.
    let db = Db::of(app);
    let at = Timestamp::now().0 - age * DAY;
    let sql = format!(
        "UPDATE tracker_sessions SET updated_at = {at} WHERE id = {}",
        db.id(session.id)
    );
    assert_eq!(execute(&db.url, &sql, &sql).await, 1);
    (session.id, ids)
}

fn file_of(app: &TestApp, key: &str) -> std::path::PathBuf {
    app.state.settings.data_dir.join("attachments").join(key)
}

async fn a_policy_deletes_exactly_what_it_names(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let db = Db::of(&app);
    let ws = app.workspace.id;
    // Deleted: closed, 400 days old. Kept: an active one as old (the policy names closed
    // and archived only), a closed one of last week, an archived one of 300 days.
    let doomed = create(
        &app,
        &conversation("+4917000001", "closed", 400, "zebracornish"),
    )
    .await;
    let old_active = create(
        &app,
        &conversation("+4917000002", "active", 400, "survivorbeta"),
    )
    .await;
    let recent = create(
        &app,
        &conversation("+4917000003", "closed", 7, "freshgamma"),
    )
    .await;
    let archived = create(
        &app,
        &conversation("+4917000004", "archived", 300, "archivedelta"),
    )
    .await;
    // A call of 100 days with its recording: kept, but its file goes (attachments: 30 days);
    // a call of 2 days keeps its file.
    let (old_call, old_key) = call_with_recording(&app, "call-old", "+15550009999", 100).await;
    let (new_call, new_key) = call_with_recording(&app, "call-new", "+15550008888", 2).await;
    assert!(file_of(&app, &old_key).is_file() && file_of(&app, &new_key).is_file());
    // Insights, a queued job and a visit for the doomed conversation.
    crate::helpers::analyse_now(app.state.store.as_ref(), ws).await;
    let mut job = parley_store::jobs::NewJob::new("answer", "{}".into(), 3);
    job.workspace_id = Some(ws);
    job.conversation_id = Some(doomed);
    job.run_after = Timestamp(Timestamp::now().0 + 30 * DAY);
    app.state.store.jobs().enqueue(&job).await.unwrap();
    let (doomed_visit, doomed_items) = visit(&app, ws, 400, &[400, 399], Some(doomed)).await;
    // Tracker data (90 days): an old visit goes with its items; a current visit loses only
    // its old item.
    let (old_visit, _) = visit(&app, ws, 200, &[200], None).await;
    let (live_visit, live_items) = visit(&app, ws, 1, &[120, 1], None).await;

    let pk = db.pk(doomed).await;
    let before = db.rows_of(doomed, pk).await;
    for (table, n) in &before {
        if *table != "tracker_links" && *table != "conversations" {
            assert!(
                *n > 0,
                "{table} holds rows of the doomed conversation before the run"
            );
        }
    }
    assert!(db.indexed("zebracornish").await > 0);

    let policy = put_policy(
        &app,
        &json!({"conversation_days": 365, "conversation_statuses": ["closed", "archived"],
                "attachment_days": 30, "tracker_days": 90}),
    )
    .await;
    assert_eq!(policy["conversation_days"], 365);
    assert_eq!(
        policy["conversation_statuses"],
        json!(["closed", "archived"])
    );
    assert!(policy["updated_at"].is_string());
    let got = app.get("/api/v1/retention").await;
    assert_eq!(got.body, policy);

    // A dry run counts and changes nothing.
    let dry = run(&app, true).await;
    let expected = json!({"conversations": 1, "messages": 2, "attachment_messages": 1,
        "attachment_files": 1, "tracker_items": 4, "tracker_sessions": 2});
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["counts"], expected, "{dry}");
    assert_eq!(
        db.rows_of(doomed, pk).await,
        before,
        "a dry run deletes nothing"
    );
    assert!(file_of(&app, &old_key).is_file());
    assert_eq!(search(&app, "zebracornish").await, 1);

    let done = run(&app, false).await;
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["counts"], expected, "{done}");

    // The doomed conversation is gone from every table, the index and the search.
    for (table, n) in db.rows_of(doomed, pk).await {
        assert_eq!(n, 0, "{table} still holds rows of the deleted conversation");
    }
    assert_eq!(
        db.indexed("zebracornish").await,
        0,
        "search index entries remain"
    );
    assert_eq!(search(&app, "zebracornish").await, 0);
    assert_eq!(search(&app, "4917000001").await, 0);
    let r = app.get(&format!("/api/v1/conversations/{doomed}")).await;
    assert_eq!(r.status, 404);
    // Its visit and the old visit went with their items; the live visit kept its new item.
    for s in [doomed_visit, old_visit] {
        assert_eq!(
            db.n(&format!(
                "SELECT count(*) FROM tracker_sessions WHERE id = {}",
                db.id(s)
            ))
            .await,
            0
        );
        assert_eq!(
            db.n(&format!(
                "SELECT count(*) FROM tracker_items WHERE session_id = {}",
                db.id(s)
            ))
            .await,
            0
        );
    }
    assert_eq!(
        db.n(&format!(
            "SELECT count(*) FROM tracker_items WHERE id = {}",
            db.id(doomed_items[0])
        ))
        .await,
        0
    );
    assert_eq!(
        db.n(&format!(
            "SELECT count(*) FROM tracker_items WHERE id = {}",
            db.id(live_items[0])
        ))
        .await,
        0,
        "the 120-day item of a current visit goes"
    );
    assert_eq!(
        db.n(&format!(
            "SELECT count(*) FROM tracker_items WHERE id = {}",
            db.id(live_items[1])
        ))
        .await,
        1
    );
    assert_eq!(
        db.n(&format!(
            "SELECT count(*) FROM tracker_sessions WHERE id = {}",
            db.id(live_visit)
        ))
        .await,
        1
    );

    // Nothing else went.
    for (c, word) in [
        (old_active, "survivorbeta"),
        (recent, "freshgamma"),
        (archived, "archivedelta"),
    ] {
        let r = app.get(&format!("/api/v1/conversations/{c}")).await;
        assert_eq!(r.status, 200, "{word}: {}", r.text);
        assert_eq!(search(&app, word).await, 1, "{word}");
    }
    // The old call keeps its text and transcript but not its file, and says so.
    let m = call_message(&app, &old_call).await;
    let a = &m["meta"]["channel"]["attachments"][0];
    assert!(a["storage_key"].is_null(), "{m}");
    assert!(a["removed_at"].is_string(), "{m}");
    assert!(
        !file_of(&app, &old_key).exists(),
        "the file is removed from disk"
    );
    assert_eq!(
        db.n(&format!(
            "SELECT count(*) FROM attachment_files WHERE storage_key = '{old_key}'"
        ))
        .await,
        0
    );
    assert_eq!(
        search(&app, "quokkaline").await,
        2,
        "both calls' text stays"
    );
    let m = call_message(&app, &new_call).await;
    assert_eq!(
        m["meta"]["channel"]["attachments"][0]["storage_key"],
        new_key.as_str()
    );
    assert!(file_of(&app, &new_key).is_file());
    let (cookie, _) = app.dashboard_session(UserRole::Member).await;
    let panel = app
        .page(&format!("/conversations/{old_call}/panel"), &cookie)
        .await;
    assert_eq!(panel.status, 200);
    assert!(
        panel.text.contains("removed by the retention policy on"),
        "the panel says why the recording is gone"
    );

    // A second run finds nothing; every run and the policy change are in the audit log.
    let again = run(&app, false).await;
    assert_eq!(
        again["counts"],
        json!({"conversations": 0, "messages": 0, "attachment_messages": 0,
            "attachment_files": 0, "tracker_items": 0, "tracker_sessions": 0})
    );
    let log = app.get("/api/v1/audit-log?action=retention.run").await;
    assert_eq!(log.status, 200, "{}", log.text);
    let entries = log.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{}", log.text);
    assert_eq!(entries[2]["details"]["dry_run"], true, "oldest last");
    assert_eq!(entries[1]["details"]["counts"], expected);
    assert_eq!(entries[1]["details"]["policy"]["conversation_days"], 365);
    assert!(
        entries[1]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api_key:")
    );
    assert!(entries[1]["details"]["started_at"].is_string());
    assert!(entries[1]["details"]["finished_at"].is_string());
    let all = app.get("/api/v1/audit-log?limit=2").await;
    assert_eq!(all.body["entries"].as_array().unwrap().len(), 2);
    let next = all.body["next_before"].as_str().unwrap();
    let rest = app.get(&format!("/api/v1/audit-log?before={next}")).await;
    let rest = rest.body["entries"].as_array().unwrap();
    assert_eq!(rest.len(), 2, "three runs and one policy change in all");
    assert_eq!(rest[1]["action"], "retention.policy_updated");
}

async fn writes_keep_working_during_a_run(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    // 1,100 old closed conversations: three batches of at most 500.
    let mut body = String::new();
    for i in 0..1100 {
        body.push_str(
            &conversation(&format!("+49180{i:05}"), "closed", 800, "bulkword").to_string(),
        );
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
    put_policy(&app, &json!({"conversation_days": 30})).await;
    let runner = {
        let app_run = app.client.post(app.url("/api/v1/retention/run"));
        let key = app.key.clone();
        tokio::spawn(async move {
            crate::helpers::Resp::of(app_run.bearer_auth(key).json(&json!({}))).await
        })
    };
    // Meanwhile new conversations and messages keep being written.
    let mut written = Vec::new();
    for i in 0..30 {
        let c = create(
            &app,
            &conversation(&format!("+4930{i:04}"), "active", 0, "livewrite"),
        )
        .await;
        let r = app
            .post(
                &format!("/api/v1/conversations/{c}/messages"),
                &json!({"messages": [{"role": "user", "content": "still here"}]}),
            )
            .await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
        written.push(c);
    }
    let done = runner.await.unwrap();
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["counts"]["conversations"], 1100);
    assert_eq!(done.body["counts"]["messages"], 2200);
    for c in written {
        let r = app.get(&format!("/api/v1/conversations/{c}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["stored_message_count"], 3, "{}", r.text);
    }
    let count = app.get("/api/v1/conversations/count").await;
    assert_eq!(count.body["count"], 30, "{}", count.text);
    assert_eq!(search(&app, "bulkword").await, 0);
}

async fn workspaces_keep_their_own_policies_and_logs(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (other, other_key) = app.other_tenant("globex").await;
    // The same contact and the same age in both workspaces.
    let mine = create(
        &app,
        &conversation("+4917111111", "closed", 400, "mineword"),
    )
    .await;
    let r = app
        .post_as(
            "/api/v1/conversations",
            &conversation("+4917111111", "closed", 400, "theirword"),
            &other_key,
        )
        .await;
    assert_eq!(r.status, 201);
    let theirs = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let (_, their_items) = visit(&app, other.id, 400, &[400], None).await;
    put_policy(&app, &json!({"conversation_days": 30, "tracker_days": 30})).await;
    // The other workspace has no policy: its view is the default, its run deletes nothing.
    let p = app.get_as("/api/v1/retention", &other_key).await;
    assert_eq!(p.body["conversation_days"], Value::Null);
    assert_eq!(p.body["updated_at"], Value::Null);
    let done = run(&app, false).await;
    assert_eq!(done["counts"]["conversations"], 1);
    assert_eq!(
        done["counts"]["tracker_items"], 0,
        "the other workspace's visit is not mine"
    );
    let r = app.get(&format!("/api/v1/conversations/{mine}")).await;
    assert_eq!(r.status, 404);
    let r = app
        .get_as(&format!("/api/v1/conversations/{theirs}"), &other_key)
        .await;
    assert_eq!(
        r.status, 200,
        "another workspace's conversation is untouched"
    );
    let db = Db::of(&app);
    assert_eq!(
        db.n(&format!(
            "SELECT count(*) FROM tracker_items WHERE id = {}",
            db.id(their_items[0])
        ))
        .await,
        1
    );
    // Erasure is scoped too: the same contact in my workspace only.
    let e = app
        .post("/api/v1/contacts/erase", &json!({"contact": "+4917111111"}))
        .await;
    assert_eq!(e.status, 200);
    assert_eq!(e.body["conversations"], 0);
    let e = app
        .post(
            "/api/v1/contacts/erase",
            &json!({"conversation_id": theirs}),
        )
        .await;
    assert_eq!(
        e.status, 404,
        "another workspace's conversation is not found: {}",
        e.text
    );
    let r = app
        .get_as(&format!("/api/v1/conversations/{theirs}"), &other_key)
        .await;
    assert_eq!(r.status, 200);
    // Each workspace sees its own audit log.
    let theirs_log = app.get_as("/api/v1/audit-log", &other_key).await;
    assert_eq!(theirs_log.body["entries"], json!([]), "{}", theirs_log.text);
    let mine_log = app.get("/api/v1/audit-log").await;
    assert_eq!(mine_log.body["entries"].as_array().unwrap().len(), 3);
    // Another workspace's member cannot open my settings page with their session; they
    // see their own (empty) page.
    let (cookie, _) = app.session_in(other.id, UserRole::Admin).await;
    let page = app.page("/settings/retention", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("No runs yet"), "{}", page.text);
}

async fn invalid_requests_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    // A member key reads the policy but changes, runs and erases nothing.
    let r = app
        .post("/api/v1/keys", &json!({"name": "reader", "role": "member"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let member = r.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(app.get_as("/api/v1/retention", &member).await.status, 200);
    assert_eq!(app.get_as("/api/v1/audit-log", &member).await.status, 403);
    for (path, body) in [
        ("/api/v1/retention/run", json!({"dry_run": true})),
        ("/api/v1/contacts/erase", json!({"email": "a@b.example"})),
    ] {
        let r = app.post_as(path, &body, &member).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{path}");
    }
    let put = |body: Value| {
        let req = app
            .client
            .put(app.url("/api/v1/retention"))
            .bearer_auth(&app.key)
            .json(&body);
        async move { crate::helpers::Resp::of(req).await }
    };
    for (body, field) in [
        (json!({"conversation_days": 0}), "conversation_days"),
        (json!({"conversation_days": 36501}), "conversation_days"),
        (json!({"attachment_days": 1.5}), "attachment_days"),
        (json!({"tracker_days": "30"}), "tracker_days"),
        (
            json!({"conversation_statuses": ["bogus"]}),
            "conversation_statuses[0]",
        ),
        (
            json!({"conversation_statuses": ["closed", "closed"]}),
            "conversation_statuses[1]",
        ),
        (
            json!({"conversation_statuses": "closed"}),
            "conversation_statuses",
        ),
        (json!({"keep_days": 3}), "keep_days"),
    ] {
        let r = put(body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert_eq!(r.code(), "validation_failed");
        assert_eq!(r.body["error"]["field"], field, "{body}");
    }
    let r = put(json!([1])).await;
    assert!(r.status == 400 || r.status == 422, "{}", r.text);
    let r = app
        .send(
            app.client
                .put(app.url("/api/v1/retention"))
                .bearer_auth(&app.key)
                .body("{}"),
        )
        .await;
    assert_eq!(r.status, 415);
    // Nothing was saved by the refusals.
    let p = app.get("/api/v1/retention").await;
    assert_eq!(p.body["updated_at"], Value::Null);
    let r = app
        .post("/api/v1/retention/run", &json!({"dry_run": "yes"}))
        .await;
    assert_eq!(r.status, 422);
    for body in [
        json!({}),
        json!({"contact": "a", "email": "a@b.example"}),
        json!({"email": "not-an-address"}),
        json!({"phone": "12"}),
        json!({"contact": "  "}),
        json!({"contact": 5}),
        json!({"name": "Ana"}),
        json!({"conversation_id": "nope"}),
    ] {
        let r = app.post("/api/v1/contacts/erase", &body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
    }
    let r = app
        .post(
            "/api/v1/contacts/erase",
            &json!({"conversation_id": ConversationId::new().to_string()}),
        )
        .await;
    assert_eq!(r.status, 404);
    let no_contact = create(
        &app,
        &json!({"assistant": {"name": "Ava"}, "channel": "api",
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let r = app
        .post(
            "/api/v1/contacts/erase",
            &json!({"conversation_id": no_contact.to_string()}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.code(), "no_contact");
    for q in ["limit=0", "limit=201", "before=x", "actor=me"] {
        let r = app.get(&format!("/api/v1/audit-log?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
    }
    for path in ["/api/v1/retention", "/api/v1/audit-log"] {
        let r = app.send(app.client.get(app.url(path))).await;
        assert_eq!(r.status, 401, "{path}");
    }
    // The page and its forms are for administrators.
    let (cookie, csrf) = app.dashboard_session(UserRole::Member).await;
    assert_eq!(app.page("/settings/retention", &cookie).await.status, 403);
    let r = app
        .post_form(
            "/settings/retention",
            &cookie,
            &[("_csrf", &csrf), ("conversation_days", "5")],
        )
        .await;
    assert_eq!(r.status, 403);
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let r = app
        .post_form(
            "/settings/retention",
            &cookie,
            &[("_csrf", "wrong"), ("conversation_days", "5")],
        )
        .await;
    assert_eq!(r.status, 403, "CSRF is checked");
    let r = app
        .post_form(
            "/settings/retention",
            &cookie,
            &[("_csrf", &csrf), ("conversation_days", "0")],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("whole number of days"), "{}", r.text);
    let p = app.get("/api/v1/retention").await;
    assert_eq!(p.body["updated_at"], Value::Null);
}

async fn a_contact_is_erased_everywhere(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let db = Db::of(&app);
    let ws = app.workspace.id;
    // The contact: two chats under their phone number (written differently), a call with a
    // recording, and a widget chat where only a variable holds their email.
    let a = create(
        &app,
        &conversation("+49 151 2345678", "active", 1, "erasemeone"),
    )
    .await;
    let b = create(
        &app,
        &conversation("+491512345678", "closed", 50, "erasemetwo"),
    )
    .await;
    let (call, key) = call_with_recording(&app, "call-erase", "+49-151-234-5678", 3).await;
    let mut widget = conversation("visitor-77", "active", 1, "erasemethree");
    widget["variables"] =
        json!([{"key": "email", "value": "Ana.Lopez@Example.com", "source": "pre_chat"}]);
    let w = create(&app, &widget).await;
    let (w_visit, _) = visit(&app, ws, 1, &[1], Some(w)).await;
    // Someone else, who stays.
    let other = create(
        &app,
        &conversation("+4915199999", "active", 1, "keepmeplease"),
    )
    .await;
    let pks = [db.pk(a).await, db.pk(b).await, db.pk(w).await];

    let r = app
        .post(
            "/api/v1/contacts/erase",
            &json!({"phone": "+49 (151) 234-5678"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["conversations"], 3, "{}", r.text);
    assert_eq!(r.body["attachment_files"], 1);
    assert!(!file_of(&app, &key).exists());
    let r = app
        .post(
            "/api/v1/contacts/erase",
            &json!({"email": "ana.lopez@example.com"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["conversations"], 1, "{}", r.text);
    for (c, pk) in [a, b, w].into_iter().zip(pks) {
        for (table, n) in db.rows_of(c, pk).await {
            assert_eq!(n, 0, "{table} still holds rows of an erased conversation");
        }
    }
    let call_id: ConversationId = call.parse().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{call_id}"))
            .await
            .status,
        404
    );
    assert_eq!(
        db.n(&format!(
            "SELECT count(*) FROM tracker_sessions WHERE id = {}",
            db.id(w_visit)
        ))
        .await,
        0,
        "the visit went with its conversation"
    );
    for word in ["erasemeone", "erasemetwo", "erasemethree", "quokkaline"] {
        assert_eq!(search(&app, word).await, 0, "{word}");
        assert_eq!(db.indexed(word).await, 0, "{word}");
    }
    assert_eq!(search(&app, "keepmeplease").await, 1);
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{other}"))
            .await
            .status,
        200
    );
    // A retry is harmless.
    let r = app
        .post("/api/v1/contacts/erase", &json!({"phone": "+491512345678"}))
        .await;
    assert_eq!(r.body["conversations"], 0);
    // The audit log records each erasure without the personal data.
    let log = app.get("/api/v1/audit-log?action=contact.erased").await;
    let entries = log.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2]["details"]["matched_by"], "phone");
    assert_eq!(entries[2]["details"]["conversations"], 3);
    assert_eq!(entries[1]["details"]["matched_by"], "email");
    for needle in ["2345678", "ana.lopez", "Ana.Lopez", "visitor-77"] {
        assert!(!log.text.contains(needle), "the audit log holds {needle:?}");
    }

    // From the panel: "Erase contact" erases the conversation's contact (admins only).
    let c1 = create(&app, &conversation("tg:4242", "active", 1, "panelone")).await;
    let c2 = create(&app, &conversation("tg:4242", "closed", 9, "paneltwo")).await;
    let (member, member_csrf) = app.dashboard_session(UserRole::Member).await;
    let panel = app
        .page(&format!("/conversations/{c1}/panel"), &member)
        .await;
    assert!(
        !panel.text.contains("erase-button"),
        "members see no erase button"
    );
    let r = app
        .post_form(
            &format!("/conversations/{c1}/erase-contact"),
            &member,
            &[("_csrf", &member_csrf)],
        )
        .await;
    assert_eq!(r.status, 403);
    let (admin, csrf) = app.dashboard_session(UserRole::Admin).await;
    let panel = app
        .page(&format!("/conversations/{c1}/panel"), &admin)
        .await;
    assert!(panel.text.contains("Delete everything about this contact?"));
    let r = app
        .post_form(
            &format!("/conversations/{c1}/erase-contact"),
            &admin,
            &[("_csrf", &csrf), ("back", "/conversations")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(
        r.headers["location"]
            .to_str()
            .unwrap()
            .contains("notice=contact_erased")
    );
    for c in [c1, c2] {
        assert_eq!(
            app.get(&format!("/api/v1/conversations/{c}")).await.status,
            404
        );
    }
    let log = app
        .get("/api/v1/audit-log?action=contact.erased&limit=1")
        .await;
    assert_eq!(log.body["entries"][0]["details"]["via"], "dashboard");
    assert_eq!(log.body["entries"][0]["details"]["conversations"], 2);
    assert!(
        log.body["entries"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
}

async fn the_settings_page_saves_runs_and_shows_the_log(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    create(
        &app,
        &conversation("+4917222222", "archived", 100, "pageword"),
    )
    .await;
    create(
        &app,
        &conversation("+4917333333", "active", 100, "pagekept"),
    )
    .await;
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let page = app.page("/settings/retention", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("No runs yet"));
    let r = app
        .post_form(
            "/settings/retention",
            &cookie,
            &[
                ("_csrf", &csrf),
                ("conversation_days", "60"),
                ("attachment_days", ""),
                ("tracker_days", "90"),
                ("status_archived", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let p = app.get("/api/v1/retention").await;
    assert_eq!(p.body["conversation_days"], 60);
    assert_eq!(p.body["attachment_days"], Value::Null);
    assert_eq!(p.body["conversation_statuses"], json!(["archived"]));
    let r = app
        .post_form(
            "/settings/retention/run",
            &cookie,
            &[("_csrf", &csrf), ("dry_run", "1")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        search(&app, "pageword").await,
        1,
        "a dry run keeps everything"
    );
    let r = app
        .post_form("/settings/retention/run", &cookie, &[("_csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(search(&app, "pageword").await, 0);
    assert_eq!(search(&app, "pagekept").await, 1);
    let page = app.page("/settings/retention?ran=1", &cookie).await;
    assert!(page.text.contains("id=\"retention-runs\""), "{}", page.text);
    assert!(page.text.contains("Dry run"));
    assert!(
        page.text.contains("1 conversations (2 messages)"),
        "{}",
        page.text
    );
    assert!(page.text.contains("conversations 60 d (archived)"));
    assert!(page.text.contains("value=\"60\""));
}

both_backends!(
    a_policy_deletes_exactly_what_it_names,
    writes_keep_working_during_a_run,
    workspaces_keep_their_own_policies_and_logs,
    invalid_requests_are_refused,
    a_contact_is_erased_everywhere,
    the_settings_page_saves_runs_and_shows_the_log,
);
