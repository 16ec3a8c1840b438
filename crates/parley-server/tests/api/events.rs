//! `GET /api/v1/events` (issue 14): events of the key's workspace as they are committed, with
//! filters, `Last-Event-ID` resume (every missed event once), 410 after pruning, tenancy, and
//! across two `parley serve` processes on one PostgreSQL database.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, conversation};

/// An open event stream, read with a deadline per event (a deadline, not a timed assertion:
/// a healthy server delivers within milliseconds).
struct Events {
    inner: std::pin::Pin<Box<dyn Stream<Item = (String, String, Value)> + Send>>,
}

impl Events {
    async fn open(client: &reqwest::Client, url: String, key: &str, last: Option<i64>) -> Events {
        let mut req = client.get(url).bearer_auth(key);
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id.to_string());
        }
        Events::of(req).await
    }

    async fn of(req: reqwest::RequestBuilder) -> Events {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let inner = res.bytes_stream().eventsource().map(|e| {
            let e = e.expect("a well-formed event");
            let data: Value = serde_json::from_str(&e.data).expect("JSON data");
            (e.id, e.event, data)
        });
        Events {
            inner: Box::pin(inner),
        }
    }

    /// The next event: (id, type, data).
    async fn next(&mut self) -> (String, String, Value) {
        tokio::time::timeout(Duration::from_secs(30), self.inner.next())
            .await
            .expect("an event within the deadline")
            .expect("the stream stays open")
    }

    async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        for _ in 0..n {
            let (id, ty, data) = self.next().await;
            assert_eq!(id, data["id"].to_string(), "the SSE id is the event id");
            assert_eq!(
                ty,
                data["type"].as_str().unwrap(),
                "the SSE event is the type"
            );
            out.push(data);
        }
        out
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn stream_filters_and_resumes(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let open = |query: &str, last: Option<i64>| {
        let url = app.url(&format!("/api/v1/events{query}"));
        Events::open(&app.client, url, &app.key, last)
    };
    let mut all = open("", None).await;
    let mut messages = open("?type=message.created&channel=widget,web", None).await;
    let mut on_whatsapp = open("?channel=whatsapp", None).await;

    let id = app.create(conversation("Ava", 2)).await;
    let got = all.take(3).await;
    assert_eq!(
        types(&got),
        ["conversation.created", "message.created", "message.created"]
    );
    assert_eq!(got[0]["conversation_id"], id.as_str());
    assert_eq!(got[0]["workspace"], app.workspace.id.to_string());
    assert_eq!(got[0]["channel"], "widget");
    assert_eq!(got[1]["data"]["role"], "user");
    assert!(got[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let only_messages = messages.take(2).await;
    assert_eq!(
        types(&only_messages),
        ["message.created", "message.created"]
    );
    assert_eq!(only_messages[0]["id"], got[1]["id"]);

    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &json!({"messages": [{"role": "user", "content": "one more"}]}),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    let r = app
        .send(
            app.client
                .patch(app.url(&format!("/api/v1/conversations/{id}")))
                .bearer_auth(&app.key)
                .json(&json!({"status": "closed", "rating": {"score": 5}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let more = all.take(4).await;
    assert_eq!(
        types(&more),
        [
            "conversation.updated",
            "message.created",
            "conversation.updated",
            "rating.updated"
        ]
    );
    assert_eq!(more[2]["data"]["fields"], json!(["status"]));
    assert_eq!(more[3]["data"]["rating"], 5);
    // The conversation filter, from a resume point: only this conversation's events, once.
    let other = app.create(conversation("Bo", 1)).await;
    let r = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/conversations/{id}")))
                .bearer_auth(&app.key),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    let tail = all.take(3).await;
    assert_eq!(
        types(&tail),
        [
            "conversation.created",
            "message.created",
            "conversation.deleted"
        ]
    );
    assert_eq!(tail[0]["conversation_id"], other.as_str());

    // Resume: a client that saw up to the second event gets every later one, once, in order,
    // except the earlier events of the deleted conversation: deleting it removed them from the
    // log (deleted means gone: they can hold its text), and kept its `conversation.deleted`.
    let every: Vec<Value> = got.iter().chain(&more).chain(&tail).cloned().collect();
    let seen = every[1]["id"].as_i64().unwrap();
    let kept: Vec<Value> = every[2..]
        .iter()
        .filter(|e| e["conversation_id"] != id.as_str() || e["type"] == "conversation.deleted")
        .cloned()
        .collect();
    assert_eq!(
        kept.len(),
        3,
        "the other conversation's two events and the deletion"
    );
    let mut resumed = open("", Some(seen)).await;
    let again = resumed.take(kept.len()).await;
    assert_eq!(again, kept);
    let mut of_one = open(&format!("?conversation={id}&last_event_id=0"), None).await;
    let first = of_one.take(1).await;
    assert_eq!(first[0]["type"], "conversation.deleted");
    assert_eq!(first[0], *every.last().unwrap());
    // Nothing more is pending on the resumed stream: the next event is a new one.
    let third = app.create(conversation("Cy", 0)).await;
    let next = resumed.take(1).await;
    assert_eq!(next[0]["conversation_id"], third.as_str());
    assert_eq!(next[0]["type"], "conversation.created");

    // The channel filter saw nothing on whatsapp: its first event is a whatsapp one.
    let mut wa = conversation("Dee", 0);
    wa["channel"] = json!("whatsapp");
    let wa_id = app.create(wa).await;
    let (_, ty, data) = on_whatsapp.next().await;
    assert_eq!(
        (ty.as_str(), data["conversation_id"].as_str()),
        ("conversation.created", Some(wa_id.as_str()))
    );

    // Bad parameters.
    for (q, code) in [
        ("?type=nope", "invalid_parameter"),
        ("?channel=fax", "invalid_parameter"),
        ("?conversation=x", "invalid_parameter"),
        ("?last_event_id=abc", "invalid_last_event_id"),
        ("?last_event_id=-1", "invalid_last_event_id"),
        ("?since=1", "invalid_parameter"),
    ] {
        let r = app.get(&format!("/api/v1/events{q}")).await;
        assert_eq!((r.status, r.code()), (400, code), "{q}: {}", r.text);
    }

    // After pruning, a resume from before the pruned events is told they are gone.
    let pruned = app
        .state
        .store
        .events()
        .prune_before(parley_core::Timestamp(parley_core::Timestamp::now().0 + 1))
        .await
        .unwrap();
    assert!(pruned > 0);
    let r = app.get("/api/v1/events?last_event_id=1").await;
    assert_eq!((r.status, r.code()), (410, "events_expired"), "{}", r.text);
    let latest = app.state.store.events().latest_event_id().await.unwrap();
    drop(open("", Some(latest)).await);
}

/// A key of another workspace never sees this workspace's events, not even from id 0.
async fn another_workspace_sees_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (_ws, other_key) = app.other_tenant("rival").await;
    let mut theirs =
        Events::open(&app.client, app.url("/api/v1/events"), &other_key, Some(0)).await;
    let ours = app.create(conversation("Ava", 3)).await;
    let r = app
        .post_as(
            "/api/v1/conversations",
            &conversation("Rival", 1),
            &other_key,
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    let their_id = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let got = theirs.take(2).await;
    assert_eq!(types(&got), ["conversation.created", "message.created"]);
    assert!(
        got.iter()
            .all(|e| e["conversation_id"] == their_id.as_str())
    );
    // From the start of the log: their three events, then the next one of theirs; none of ours
    // (which came first) in between.
    let r = app
        .post_as(
            "/api/v1/conversations",
            &conversation("Rival", 0),
            &other_key,
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    let mut from_zero =
        Events::open(&app.client, app.url("/api/v1/events"), &other_key, Some(0)).await;
    let got = from_zero.take(3).await;
    assert!(got.iter().all(|e| e["conversation_id"] != ours.as_str()));
    let r = app
        .post_as(
            "/api/v1/conversations",
            &conversation("Rival", 0),
            &other_key,
        )
        .await;
    let last = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    assert_eq!(from_zero.take(1).await[0]["conversation_id"], last.as_str());
}

/// The dashboard's stream: a signed-in member gets their workspace's events in the same shape,
/// a member of another workspace none of them, and without a session there is no stream.
async fn the_dashboard_stream_is_the_members_workspace(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Member).await;
    let (other_ws, other_key) = app.other_tenant("rival").await;
    let eve = app
        .state
        .store
        .auth()
        .create_user(
            other_ws.id,
            "eve@example.com",
            "not-a-real-hash",
            parley_core::UserRole::Admin,
        )
        .await
        .unwrap();
    let token = parley_server::auth::session::random_token();
    let now = parley_core::Timestamp::now();
    app.state
        .store
        .auth()
        .create_session(&parley_store::NewSession {
            token_hash: parley_server::auth::session::token_hash(&token),
            user_id: eve.id,
            csrf_token: parley_server::auth::session::random_token(),
            created_at: now,
            expires_at: now.add_millis(3_600_000),
        })
        .await
        .unwrap();
    let eve_cookie = format!("parley_session={token}");
    let dashboard = |cookie: &str, last: Option<i64>| {
        let mut req = app
            .client
            .get(app.url("/dashboard/events"))
            .header("cookie", cookie);
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id.to_string());
        }
        Events::of(req)
    };
    let mut ours = dashboard(&cookie, None).await;
    let mut theirs = dashboard(&eve_cookie, Some(0)).await;
    let id = app.create(conversation("Ava", 1)).await;
    let got = ours.take(2).await;
    assert_eq!(types(&got), ["conversation.created", "message.created"]);
    assert_eq!(got[0]["conversation_id"], id.as_str());
    let r = app
        .post_as(
            "/api/v1/conversations",
            &conversation("Rival", 0),
            &other_key,
        )
        .await;
    let their_id = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let first = theirs.take(1).await;
    assert_eq!(
        first[0]["conversation_id"],
        their_id.as_str(),
        "none of ours came first"
    );
    // An expired resume point starts from now rather than failing the browser's EventSource.
    app.state
        .store
        .events()
        .prune_before(parley_core::Timestamp(parley_core::Timestamp::now().0 + 1))
        .await
        .unwrap();
    let mut resumed = dashboard(&cookie, Some(1)).await;
    let next = app.create(conversation("Ava", 0)).await;
    assert_eq!(resumed.take(1).await[0]["conversation_id"], next.as_str());
    // No session, no stream.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/dashboard/events"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
}

crate::both_backends!(
    stream_filters_and_resumes,
    another_workspace_sees_nothing,
    the_dashboard_stream_is_the_members_workspace
);

/// Two `parley serve` processes on one PostgreSQL database: a listener on B receives what is
/// ingested on A (B's LISTEN connection hears A's commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_one_server_hears_an_ingest_on_another() {
    let Some(site) = crate::processes::Site::new(Backend::Postgres).await else {
        return;
    };
    let (a, b) = (site.start("a", ""), site.start("b", ""));
    let mut on_b = Events::open(&b.client, b.url("/api/v1/events"), &b.key, None).await;
    let r = a
        .post("/api/v1/conversations", &conversation("Ava", 1))
        .await;
    assert!(r.status < 300, "{}", r.text);
    let id = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let got = on_b.take(2).await;
    assert_eq!(types(&got), ["conversation.created", "message.created"]);
    assert!(got.iter().all(|e| e["conversation_id"] == id.as_str()));
    // A graceful shutdown ends open streams instead of waiting for them for ever.
    let log = b.terminate();
    assert!(!log.contains("panicked"), "{log}");
    let end = tokio::time::timeout(Duration::from_secs(30), on_b.inner.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "{end:?}");
    drop(a);
}
