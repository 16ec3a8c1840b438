//! Outgoing webhooks (issue 16) against a receiver on 127.0.0.1 written in Python with the
//! PyPI `standardwebhooks` library (the specification's reference implementation): it verifies
//! every request's `webhook-id` / `webhook-timestamp` / `webhook-signature` with the endpoint's
//! secret and counts what it refused. The interpreter is `PARLEY_TEST_PYTHON` (see
//! `helpers::python_importing`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::channel_support::eventually;
use crate::helpers::{Backend, TestApp, guarded, http_client};
use crate::processes::Site;

/// The receiver: `PUT /secret` (body: the secret) sets the key it verifies with; `POST` any
/// path verifies the request, answers 400 when the signature is wrong, 500 for the first
/// `FAIL_FIRST` verified requests ("down for maintenance"; `FAIL_STATUS` overrides the 500) and
/// 200 after; `GET` answers what it
/// got: `{"posts", "rejected", "received": [{"id", "type", "payload"}]}` (received: the
/// verified requests it answered 200).
const RECEIVER: &str = r#"
import json, os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from standardwebhooks.webhooks import Webhook

lock = threading.Lock()
state = {"posts": 0, "rejected": 0, "received": []}
hook = {"wh": None}
fail_first = int(os.environ.get("FAIL_FIRST", "0"))
fail_status = int(os.environ.get("FAIL_STATUS", "500"))

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, body):
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read(self):
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def do_PUT(self):
        hook["wh"] = Webhook(self.read().decode())
        self.answer(204, b"")

    def do_GET(self):
        with lock:
            body = json.dumps(state).encode()
        self.answer(200, body)

    def do_POST(self):
        data = self.read()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = hook["wh"].verify(data, headers)
        except Exception:
            with lock:
                state["rejected"] += 1
            self.answer(400, b'{"error":"bad signature"}')
            return
        with lock:
            state["posts"] += 1
            failing = state["posts"] <= fail_first
            if not failing:
                state["received"].append({"id": headers["webhook-id"], "type": payload["type"], "payload": payload})
        if failing:
            self.answer(fail_status, b'{"error":"down for maintenance"}')
        else:
            self.answer(200, b'{"ok":true}')

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A running receiver, killed when dropped.
struct Receiver {
    child: Child,
    url: String,
}

impl Receiver {
    /// Starts one that fails its first `fail_first` verified requests; `None` without a Python
    /// that has `standardwebhooks` (a loud skip, a failure under `CI=true`).
    fn start(fail_first: u32) -> Option<Receiver> {
        Receiver::start_failing_with(fail_first, 500)
    }

    /// Like [`Receiver::start`], failing with `status` instead of 500.
    fn start_failing_with(fail_first: u32, status: u16) -> Option<Receiver> {
        let python = crate::helpers::python_importing("standardwebhooks")?;
        let mut child = Command::new(python)
            .args(["-c", RECEIVER])
            .env("FAIL_FIRST", fail_first.to_string())
            .env("FAIL_STATUS", status.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the receiver prints its port");
        Some(Receiver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn set_secret(&self, secret: &str) {
        let r = http_client()
            .put(format!("{}/secret", self.url))
            .body(secret.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    async fn state(&self) -> Value {
        http_client()
            .get(format!("{}/state", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits (at most 30 s) until it has answered 200 to `n` verified requests.
    async fn received(&self, n: usize) -> Vec<Value> {
        eventually(30, &format!("{n} verified deliveries"), || async {
            let s = self.state().await;
            let got = s["received"].as_array().cloned().unwrap_or_default();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Retries within milliseconds, so a failing receiver is asked again at once.
fn quick_retries(s: &mut parley_server::config::Settings) {
    s.webhooks.retry_first = Duration::from_millis(50);
    s.webhooks.retry_max = Duration::from_millis(200);
}

async fn add_endpoint(app: &TestApp, url: &str, types: &[&str]) -> (String, String) {
    let r = app
        .post(
            "/api/v1/webhooks",
            &json!({"url": url, "description": "CRM", "event_types": types}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (r.body["id"].as_str().unwrap().to_owned(), secret)
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/api/v1/webhooks/{endpoint}/deliveries"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].as_array().unwrap().clone()
}

fn types_of(got: &[Value]) -> Vec<String> {
    let mut t: Vec<String> = got
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_owned())
        .collect();
    t.sort();
    t
}

/// Every delivery is signed so that the reference library accepts it, carries `{type,
/// timestamp, data}`, and is logged; `conversation.ended` comes from closing; a rotated secret
/// signs from then on; another workspace's events never reach the endpoint.
async fn every_delivery_verifies_with_the_standard_webhooks_library(backend: Backend) {
    let Some(receiver) = Receiver::start(0) else {
        return;
    };
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (endpoint, secret) = add_endpoint(
        &app,
        &format!("{}/hooks/parley", receiver.url),
        &[
            "conversation.created",
            "message.created",
            "rating.updated",
            "conversation.ended",
        ],
    )
    .await;
    receiver.set_secret(&secret).await;
    let conversation = app.create(crate::helpers::conversation("Ava", 2)).await;
    let r = app
        .send(
            app.client
                .patch(app.url(&format!("/api/v1/conversations/{conversation}")))
                .bearer_auth(&app.key)
                .json(&json!({"status": "closed", "rating": {"score": 5}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = receiver.received(5).await;
    assert_eq!(
        types_of(&got),
        [
            "conversation.created",
            "conversation.ended",
            "message.created",
            "message.created",
            "rating.updated"
        ]
    );
    for g in &got {
        let p = &g["payload"];
        assert_eq!(p["data"]["conversation_id"], conversation.as_str(), "{p}");
        assert_eq!(p["data"]["channel"], "widget");
        assert!(p["timestamp"].as_str().unwrap().ends_with('Z'), "{p}");
        assert!(g["id"].as_str().unwrap().starts_with("msg_"));
    }
    let rated = got.iter().find(|g| g["type"] == "rating.updated").unwrap();
    assert_eq!(rated["payload"]["data"]["rating"], 5);
    assert_eq!(receiver.state().await["rejected"], 0);

    let log = eventually(30, "the log to show every success", || async {
        let log = deliveries(&app, &endpoint).await;
        (log.len() == 5 && log.iter().all(|d| d["status"] == "succeeded")).then_some(log)
    })
    .await;
    for d in &log {
        assert_eq!(d["http_status"], 200, "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["response_excerpt"], r#"{"ok":true}"#, "{d}");
        assert!(d["response_ms"].as_i64().is_some_and(|ms| ms >= 0), "{d}");
        assert!(d["next_attempt_at"].is_null());
        assert!(got.iter().any(|g| g["id"] == d["message_id"]), "{d}");
    }

    // Another workspace's conversation, then a rotated secret and one more of ours.
    let (_, other_key) = app.other_tenant("rival").await;
    let theirs = app
        .post_as(
            "/api/v1/conversations",
            &crate::helpers::conversation("Bo", 1),
            &other_key,
        )
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.text);
    let rotated = app
        .post(&format!("/api/v1/webhooks/{endpoint}/secret"), &json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let shown = app
        .get(&format!("/api/v1/webhooks/{endpoint}/secret"))
        .await;
    assert_eq!(shown.body["secret"], new_secret.as_str());
    receiver.set_secret(&new_secret).await;
    let ours = app.create(crate::helpers::conversation("Ava", 1)).await;
    let got = eventually(30, "the next conversation's delivery", || async {
        let got = receiver.received(1).await;
        got.iter()
            .any(|g| {
                g["type"] == "conversation.created"
                    && g["payload"]["data"]["conversation_id"] == ours.as_str()
            })
            .then_some(got)
    })
    .await;
    assert_eq!(
        receiver.state().await["rejected"],
        0,
        "the rotated secret signs"
    );
    let their_id = theirs.body["conversation"]["id"].as_str().unwrap();
    assert!(
        got.iter()
            .all(|g| g["payload"]["data"]["conversation_id"] != their_id),
        "another workspace's events are never sent"
    );
}

/// A receiver that answers 500 twice gets the delivery on the third attempt; "send again"
/// sends it once more with the same `webhook-id`, counted as another attempt.
async fn a_receiver_that_fails_then_recovers_gets_it_later(backend: Backend) {
    let Some(receiver) = Receiver::start(2) else {
        return;
    };
    let Some(app) = TestApp::spawn_on_with(backend, quick_retries).await else {
        return;
    };
    let (endpoint, secret) = add_endpoint(&app, &receiver.url, &["conversation.created"]).await;
    receiver.set_secret(&secret).await;
    app.create(crate::helpers::conversation("Ava", 1)).await;
    let got = receiver.received(1).await;
    assert_eq!(
        receiver.state().await["posts"],
        3,
        "two refusals, then success"
    );
    let log = eventually(30, "the success in the log", || async {
        let log = deliveries(&app, &endpoint).await;
        (log.first().is_some_and(|d| d["status"] == "succeeded")).then_some(log)
    })
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempts"], 3, "{}", log[0]);
    assert_eq!(log[0]["http_status"], 200);
    assert_eq!(log[0]["message_id"], got[0]["id"]);

    let delivery = log[0]["id"].as_str().unwrap();
    let again = app
        .post(
            &format!("/api/v1/webhooks/{endpoint}/deliveries/{delivery}/resend"),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.body["status"], "pending");
    let got = receiver.received(2).await;
    assert_eq!(got[1]["id"], got[0]["id"], "the same webhook-id");
    let log = eventually(30, "the second success", || async {
        let log = deliveries(&app, &endpoint).await;
        (log[0]["status"] == "succeeded" && log[0]["attempts"] == 4).then_some(log)
    })
    .await;
    assert_eq!(log.len(), 1, "sending again adds no delivery");
}

/// A receiver that never recovers: after the retry window the delivery is `failed`, with the
/// last answer's status and body in the log.
async fn a_delivery_that_keeps_failing_ends_failed(backend: Backend) {
    let Some(receiver) = Receiver::start(u32::MAX) else {
        return;
    };
    let Some(app) = TestApp::spawn_on_with(backend, |s| {
        quick_retries(s);
        s.webhooks.retry_window = Duration::from_millis(400);
    })
    .await
    else {
        return;
    };
    let (endpoint, secret) = add_endpoint(&app, &receiver.url, &["conversation.created"]).await;
    receiver.set_secret(&secret).await;
    app.create(crate::helpers::conversation("Ava", 1)).await;
    let d = eventually(30, "the delivery to fail", || async {
        let log = deliveries(&app, &endpoint).await;
        log.first().filter(|d| d["status"] == "failed").cloned()
    })
    .await;
    assert_eq!(d["http_status"], 500, "{d}");
    assert_eq!(d["error"], "HTTP 500");
    assert!(
        d["response_excerpt"]
            .as_str()
            .unwrap()
            .contains("down for maintenance")
    );
    assert!(d["next_attempt_at"].is_null());
    assert!(d["attempts"].as_i64().unwrap() >= 1);
    assert!(
        receiver.state().await["received"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A receiver that answers 410 Gone: the delivery fails at once (no retry), the endpoint is
/// disabled and the audit log says so; enabled again, it receives the next events.
async fn an_endpoint_that_answers_gone_is_disabled(backend: Backend) {
    let Some(receiver) = Receiver::start_failing_with(1, 410) else {
        return;
    };
    let Some(app) = TestApp::spawn_on_with(backend, quick_retries).await else {
        return;
    };
    let (endpoint, secret) = add_endpoint(&app, &receiver.url, &["conversation.created"]).await;
    receiver.set_secret(&secret).await;
    app.create(crate::helpers::conversation("Ava", 1)).await;
    let d = eventually(30, "the delivery to fail", || async {
        let log = deliveries(&app, &endpoint).await;
        log.first().filter(|d| d["status"] == "failed").cloned()
    })
    .await;
    assert_eq!(
        (d["http_status"].clone(), d["attempts"].clone()),
        (json!(410), json!(1)),
        "{d}"
    );
    let path = format!("/api/v1/webhooks/{endpoint}");
    let e = eventually(30, "the endpoint to be disabled", || async {
        let e = app.get(&path).await.body;
        (e["enabled"] == false).then_some(e)
    })
    .await;
    assert_eq!(e["id"], endpoint.as_str());
    let log = app.get("/api/v1/audit-log?action=webhook.disabled").await;
    assert_eq!(log.status, 200, "{}", log.text);
    let entries = log.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", log.text);
    assert_eq!(entries[0]["actor"], "system");
    assert_eq!(entries[0]["target"], format!("webhook:{endpoint}"));
    assert_eq!(entries[0]["details"]["delivery"], d["id"]);
    // Disabled: the next event is not sent.
    app.create(crate::helpers::conversation("Ben", 1)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.state().await["posts"],
        1,
        "nothing sent while disabled"
    );
    // Enabled again by an admin: new events go out (the receiver answers 200 now).
    let r = app.patch(&path, &json!({"enabled": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.create(crate::helpers::conversation("Cy", 1)).await;
    let got = receiver.received(1).await;
    assert_eq!(got[0]["type"], "conversation.created");
    // The receiver has answered; the server records the outcome just after.
    eventually(
        30,
        "the new delivery to be recorded as succeeded",
        || async {
            let log = deliveries(&app, &endpoint).await;
            (log[0]["status"] == "succeeded").then_some(())
        },
    )
    .await;
}

/// The server is killed (`kill -9`) after the change was acknowledged and before any event
/// was taken (the sender is held by the test hook); restarted, it delivers the event once.
async fn delivered_once_across_a_restart(backend: Backend) {
    let Some(receiver) = Receiver::start(0) else {
        return;
    };
    let Some(site) = Site::new(backend).await else {
        return;
    };
    let a = site.start("a", "webhooks");
    let r = a
        .post(
            "/api/v1/webhooks",
            &json!({"url": receiver.url, "event_types": ["conversation.created"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let endpoint = r.body["id"].as_str().unwrap().to_owned();
    receiver
        .set_secret(r.body["secret"].as_str().unwrap())
        .await;
    let first = a
        .post(
            "/api/v1/conversations",
            &crate::helpers::conversation("Ava", 1),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let r = a
        .get(&format!("/api/v1/webhooks/{endpoint}/deliveries"))
        .await;
    assert_eq!(r.body["data"], json!([]), "nothing taken before the crash");
    a.kill_9();

    let b = site.start("b", "");
    let second = b
        .post(
            "/api/v1/conversations",
            &crate::helpers::conversation("Ava", 1),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.text);
    let conversation_of = |g: &Value| g["payload"]["data"]["conversation_id"].clone();
    let got = eventually(30, "both conversations delivered", || async {
        let got = receiver.received(2).await;
        got.iter()
            .any(|g| conversation_of(g) == second.body["conversation"]["id"])
            .then_some(got)
    })
    .await;
    let firsts = got
        .iter()
        .filter(|g| conversation_of(g) == first.body["conversation"]["id"])
        .count();
    assert_eq!(firsts, 1, "the event from before the crash, once: {got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
    drop(b);
}

/// With the default network rules, a private address is refused when saved, and a host name
/// that resolves to one is refused when sent: nothing reaches it, the log says why.
async fn private_destinations_are_refused_unless_allowed(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, |s| {
        guarded(s);
        quick_retries(s);
        s.webhooks.retry_window = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = app
        .post(
            "/api/v1/webhooks",
            &json!({"url": format!("http://127.0.0.1:{port}/"), "event_types": ["conversation.created"]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.code(), "destination_not_allowed");
    assert_eq!(r.body["error"]["field"], "url");
    let (endpoint, _) = add_endpoint(
        &app,
        &format!("http://localhost:{port}/hook"),
        &["conversation.created"],
    )
    .await;
    app.create(crate::helpers::conversation("Ava", 1)).await;
    let d = eventually(30, "the refused attempt", || async {
        let log = deliveries(&app, &endpoint).await;
        log.first().filter(|d| d["status"] == "failed").cloned()
    })
    .await;
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .starts_with("destination_not_allowed"),
        "{d}"
    );
    assert!(d["http_status"].is_null());
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing connected to the private address"
    );
}

/// The routes refuse what they cannot use with the right 4xx, and another workspace's key
/// sees none of it.
async fn webhook_routes_validate_and_stay_in_their_workspace(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    // A member key (not an admin's) reaches none of it.
    let r = app
        .post("/api/v1/keys", &json!({"name": "reader", "role": "member"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let member_key = r.body["secret"].as_str().unwrap().to_owned();
    for (method, path) in [("GET", "/api/v1/webhooks"), ("POST", "/api/v1/webhooks")] {
        let url = app.url(path);
        let req = if method == "GET" {
            reqwest::Client::new().get(url)
        } else {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"url": "https://x.example/", "event_types": ["message.created"]}))
        };
        let r = app.send(req.bearer_auth(&member_key)).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{method} {path}");
    }
    let bad = [
        (
            json!({"url": "ftp://x.example/", "event_types": ["message.created"]}),
            "url",
        ),
        (
            json!({"url": "https://u:p@x.example/", "event_types": ["message.created"]}),
            "url",
        ),
        (
            json!({"url": "https://x.example/#top", "event_types": ["message.created"]}),
            "url",
        ),
        (
            json!({"url": " https://x.example/", "event_types": ["message.created"]}),
            "url",
        ),
        (json!({"event_types": ["message.created"]}), "url"),
        (
            json!({"url": "https://x.example/", "event_types": []}),
            "event_types",
        ),
        (json!({"url": "https://x.example/"}), "event_types"),
        (
            json!({"url": "https://x.example/", "event_types": ["message.sent"]}),
            "event_types",
        ),
        (
            json!({"url": "https://x.example/", "event_types": ["message.created"], "description": "x".repeat(501)}),
            "description",
        ),
    ];
    for (body, field) in bad {
        let r = app.post("/api/v1/webhooks", &body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
    let r = app
        .post(
            "/api/v1/webhooks",
            &json!({"url": "https://x.example/", "event_types": ["message.created"], "colour": "red"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/webhooks"))
                .bearer_auth(&app.key)
                .body("{}"),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text);

    let (id, _) = add_endpoint(
        &app,
        "https://hooks.example/in?team=7",
        &["message.created", "message.created", "conversation.created"],
    )
    .await;
    let r = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(
        r.body["event_types"],
        json!(["conversation.created", "message.created"])
    );
    assert!(
        r.body.get("secret").is_none(),
        "never shown but on create and reveal"
    );
    let r = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            &json!({"enabled": false, "description": "paused", "url": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["enabled"].clone(), r.body["description"].clone()),
        (json!(false), json!("paused"))
    );
    assert_eq!(r.body["url"], "https://hooks.example/in?team=7");
    let r = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            &json!({"event_types": []}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].clone()),
        (422, json!("event_types"))
    );
    assert_eq!(app.get("/api/v1/webhooks/not-a-uuid").await.status, 400);
    let r = app
        .get(&format!("/api/v1/webhooks/{id}/deliveries?limit=0"))
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
    let r = app
        .get(&format!("/api/v1/webhooks/{id}/deliveries?page=2"))
        .await;
    assert_eq!(r.status, 400);
    let nobody = uuid::Uuid::now_v7();
    let r = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{nobody}/resend"),
            &json!({}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));

    let (_, other) = app.other_tenant("rival").await;
    let list = app.get_as("/api/v1/webhooks", &other).await;
    assert_eq!(list.body["data"], json!([]));
    for (method, path) in [
        ("GET", format!("/api/v1/webhooks/{id}")),
        ("PATCH", format!("/api/v1/webhooks/{id}")),
        ("DELETE", format!("/api/v1/webhooks/{id}")),
        ("GET", format!("/api/v1/webhooks/{id}/secret")),
        ("POST", format!("/api/v1/webhooks/{id}/secret")),
        ("GET", format!("/api/v1/webhooks/{id}/deliveries")),
    ] {
        let req = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth(&other)
            .json(&json!({"description": "mine now"}));
        let r = app.send(req).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
    }
    let mine = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(
        mine.body["description"], "paused",
        "untouched by the other key"
    );
    assert_eq!(
        app.delete(&format!("/api/v1/webhooks/{id}")).await.status,
        204
    );
    assert_eq!(app.get(&format!("/api/v1/webhooks/{id}")).await.status, 404);
}

/// The settings page is for admins: a member gets 403 on the page and on every form; a form
/// without the session's CSRF token is refused; an admin of another workspace cannot touch
/// this one's endpoint through the page's forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_page_is_for_admins_of_the_workspace() {
    use parley_core::UserRole;
    let app = TestApp::spawn().await;
    let (id, secret) = add_endpoint(&app, "https://hooks.example/in", &["message.created"]).await;
    let (admin, csrf) = app.dashboard_session(UserRole::Admin).await;
    let page = app.page("/settings/webhooks", &admin).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("https://hooks.example/in"));
    assert!(!page.text.contains(&secret), "the secret only on reveal");
    let shown = app
        .post_form(
            &format!("/settings/webhooks/{id}/secret"),
            &admin,
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(shown.status, 200);
    assert!(shown.text.contains(&secret));
    let forged = app
        .post_form(
            &format!("/settings/webhooks/{id}/delete"),
            &admin,
            &[("_csrf", "nope")],
        )
        .await;
    assert_eq!(forged.status, 403);

    let (member, member_csrf) = app.dashboard_session(UserRole::Member).await;
    assert_eq!(app.page("/settings/webhooks", &member).await.status, 403);
    for path in [
        "/settings/webhooks".to_owned(),
        format!("/settings/webhooks/{id}"),
        format!("/settings/webhooks/{id}/secret"),
        format!("/settings/webhooks/{id}/rotate"),
        format!("/settings/webhooks/{id}/delete"),
    ] {
        let r = app
            .post_form(
                &path,
                &member,
                &[("_csrf", &member_csrf), ("url", "https://x.example/")],
            )
            .await;
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.text.contains(&secret));
    }

    let (other, _) = app.other_tenant("rival").await;
    let (rival, rival_csrf) = app.session_in(other.id, UserRole::Admin).await;
    let page = app.page("/settings/webhooks", &rival).await;
    assert!(!page.text.contains("https://hooks.example/in"));
    for path in [
        format!("/settings/webhooks/{id}/secret"),
        format!("/settings/webhooks/{id}/rotate"),
        format!("/settings/webhooks/{id}/delete"),
    ] {
        let r = app
            .post_form(&path, &rival, &[("_csrf", &rival_csrf)])
            .await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert!(!r.text.contains(&secret));
    }
    let r = app
        .post_form(
            &format!("/settings/webhooks/{id}"),
            &rival,
            &[
                ("_csrf", &rival_csrf),
                ("url", "https://evil.example/"),
                ("event_types", "message.created"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let mine = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(mine.body["url"], "https://hooks.example/in", "untouched");
    let still = app.get(&format!("/api/v1/webhooks/{id}/secret")).await;
    assert_eq!(still.body["secret"], secret.as_str());
}

crate::both_backends!(
    every_delivery_verifies_with_the_standard_webhooks_library,
    a_receiver_that_fails_then_recovers_gets_it_later,
    a_delivery_that_keeps_failing_ends_failed,
    an_endpoint_that_answers_gone_is_disabled,
    delivered_once_across_a_restart,
    private_destinations_are_refused_unless_allowed,
    webhook_routes_validate_and_stay_in_their_workspace,
);
