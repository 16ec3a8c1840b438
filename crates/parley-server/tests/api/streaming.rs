//! Every streamed response arrives whole, with and without HTTP compression: the export (JSONL
//! and CSV, small and the whole SGD train set), the Test Chat and widget chat event streams, and
//! the gateway's streamed chat completions. Each is fetched once with `Accept-Encoding:
//! identity` and once with `Accept-Encoding: gzip` (what curl `--compressed`, Python requests,
//! httpx and browsers send); the gzip body is decompressed and compared with the plain one.

use std::io::Read;

use parley_core::UserRole;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, fixture, shared_dir};

crate::both_backends!(
    exports_arrive_whole_with_and_without_gzip,
    small_and_empty_exports_arrive_whole_under_gzip,
    event_streams_arrive_whole_with_and_without_gzip,
);

/// A response read to its end: status, headers and the body as the client sees it after
/// undoing any `Content-Encoding`.
struct Fetched {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// The body, decompressed when the server compressed it.
    body: Vec<u8>,
    /// Whether the server sent it gzip-compressed.
    gzipped: bool,
}

impl Fetched {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// Sends `req` asking for gzip (or for no encoding at all) and reads the whole body. Panics
/// when the body is cut off (a broken chunked or gzip stream), which is the defect under test.
async fn fetch(req: reqwest::RequestBuilder, gzip: bool) -> Fetched {
    let res = req
        .header(
            reqwest::header::ACCEPT_ENCODING,
            if gzip { "gzip" } else { "identity" },
        )
        .send()
        .await
        .expect("the request reaches the server");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let raw = res
        .bytes()
        .await
        .expect("the body arrives whole (no connection cut mid-stream)");
    let gzipped = headers
        .get(reqwest::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let body = if gzipped {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("a complete gzip stream");
        out
    } else {
        raw.to_vec()
    };
    Fetched {
        status,
        headers,
        body,
        gzipped,
    }
}

/// `path` fetched from the API plain and gzip-compressed; asserts both are 200, that the second
/// really was compressed, and that both carry the same bytes. Returns the plain body.
async fn same_with_and_without_gzip(app: &TestApp, path: &str) -> Fetched {
    let get = || app.client.get(app.url(path)).bearer_auth(&app.key);
    let plain = fetch(get(), false).await;
    assert_eq!(plain.status, 200, "{path}: {}", plain.text());
    assert!(!plain.gzipped, "{path}: identity was asked for");
    let gz = fetch(get(), true).await;
    assert_eq!(gz.status, 200, "{path}");
    assert!(
        gz.gzipped,
        "{path}: the export is compressed when gzip is accepted"
    );
    assert_eq!(
        gz.body.len(),
        plain.body.len(),
        "{path}: as many bytes under gzip as without"
    );
    assert!(gz.body == plain.body, "{path}: the same bytes under gzip");
    plain
}

fn csv_records(text: &str) -> usize {
    let mut n = 0;
    for record in csv::Reader::from_reader(text.as_bytes()).records() {
        record.expect("a well-formed CSV record");
        n += 1;
    }
    n
}

/// The whole SGD train set (1,891 dialogues, over 6 MB of JSONL) exported with and without
/// gzip, as JSONL and CSV.
async fn exports_arrive_whole_with_and_without_gzip(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let job = parley_server::import::ImportJob {
        paths: vec![shared_dir().join("datasets/sgd-schema-guided-dialogue/train")],
        sgd: true,
        sgd_options: Default::default(),
        from_line: 1,
    };
    let summary = parley_server::import::run(&app.state, app.workspace.id, &job)
        .await
        .unwrap();
    let total = summary.conversations_created as usize;
    assert!(total > 1000, "the train set imported: {summary:?}");

    let jsonl = same_with_and_without_gzip(&app, "/api/v1/export").await;
    assert!(
        jsonl.body.len() > 4 << 20,
        "a large export: {} bytes",
        jsonl.body.len()
    );
    let lines: Vec<&str> = jsonl.text().lines().collect();
    assert_eq!(lines.len(), total, "one line per conversation");
    for line in [lines[0], lines[lines.len() - 1]] {
        let v: Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(v["messages"].as_array().is_some_and(|m| !m.is_empty()));
    }

    let csv = same_with_and_without_gzip(&app, "/api/v1/export?format=csv").await;
    assert_eq!(csv_records(csv.text()), total, "one row per conversation");
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
}

/// One conversation (the case that arrived as 0 bytes) and an export matching nothing.
async fn small_and_empty_exports_arrive_whole_under_gzip(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let id = app
        .create(json!({"assistant": {"name": "Ava"}, "channel": "telegram", "contact": "Ana",
                       "messages": [{"role": "user", "content": "Grüße ✓", "created_at": "2026-11-01T10:00:00Z"}]}))
        .await;
    let one = same_with_and_without_gzip(&app, "/api/v1/export").await;
    let line: Value = serde_json::from_str(one.text().trim_end()).unwrap();
    assert_eq!(line["id"], id.as_str());
    assert_eq!(line["messages"][0]["content"], "Grüße ✓");
    let one_csv = same_with_and_without_gzip(&app, "/api/v1/export?format=csv").await;
    assert_eq!(csv_records(one_csv.text()), 1);

    let none = same_with_and_without_gzip(&app, "/api/v1/export?channel=whatsapp").await;
    assert!(none.body.is_empty());
    let header_only =
        same_with_and_without_gzip(&app, "/api/v1/export?format=csv&channel=whatsapp").await;
    assert_eq!(csv_records(header_only.text()), 0);
}

/// Server-sent events as (event, data).
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let mut ev = String::new();
            let mut data = String::new();
            for l in b.lines() {
                if let Some(e) = l.strip_prefix("event: ") {
                    ev = e.to_owned();
                } else if let Some(d) = l.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (
                ev,
                serde_json::from_str(&data).unwrap_or(Value::String(data)),
            )
        })
        .collect()
}

/// Checks an answer's event stream (Test Chat or widget): 200, `text/event-stream`, sent
/// uncompressed (so no event waits in the compressor), every `delta` of [`ANSWER`] there and
/// `done` last. Returns the event names in order.
fn whole_event_stream(f: Fetched, gzip: bool) -> Vec<String> {
    assert_eq!(f.status, 200, "{}", f.text());
    assert!(
        f.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(!f.gzipped, "event streams are sent uncompressed");
    let events = sse_events(f.text());
    let text: String = events
        .iter()
        .filter(|(e, _)| e == "delta")
        .filter_map(|(_, d)| d["text"].as_str())
        .collect();
    assert_eq!(text, ANSWER, "gzip {gzip}: every delta arrived");
    let names: Vec<String> = events.into_iter().map(|(e, _)| e).collect();
    assert_eq!(names.last().map(String::as_str), Some("done"));
    names
}

const SITE: &str = "http://site.test:8000";
const ANSWER: &str = "Hello Ana! Your order **A-1001** ships tomorrow.";

/// Test Chat, the widget chat and the gateway's streamed completion, each asked for with and
/// without gzip: every event arrives, in order, and ends with the last one.
async fn event_streams_arrive_whole_with_and_without_gzip(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text(ANSWER));
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();

    // Test Chat (dashboard session).
    let session = app.dashboard_session(UserRole::Member).await;
    let mut runs = Vec::new();
    for gzip in [false, true] {
        let req = app
            .client
            .post(app.url("/test-chat/send"))
            .header("cookie", &session.0)
            .header("x-csrf-token", &session.1)
            .json(&json!({"assistant": assistant, "content": "Where is my order?"}));
        runs.push(whole_event_stream(fetch(req, gzip).await, gzip));
    }
    assert_eq!(runs[0], runs[1], "the same events with and without gzip");

    // The widget chat (a visitor on an allowed origin).
    let key = app.widget_for(assistant.parse().unwrap(), SITE).await;
    let widget = |path: &str| {
        app.client
            .post(app.url(&format!("{path}?key={key}")))
            .header("origin", SITE)
    };
    let started = app
        .send(widget("/widget/v1/conversations").json(&json!({"pre_chat": {}})))
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    let token = started.body["visitor_token"].as_str().unwrap().to_owned();
    let mut runs = Vec::new();
    for (i, gzip) in [false, true].into_iter().enumerate() {
        let req = widget("/widget/v1/messages")
            .header("x-parley-visitor", &token)
            .json(&json!({"client_id": format!("m{i}"), "content": "Hi"}));
        runs.push(whole_event_stream(fetch(req, gzip).await, gzip));
    }
    assert_eq!(runs[0], runs[1], "the same events with and without gzip");

    // The gateway passes the provider's stream through: every recorded chunk arrives.
    let recorded = fixture("openai_python_stream_text_with_usage.json")["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let data_lines = |t: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    };
    for gzip in [false, true] {
        stub.push(Reply::recorded_stream(&recorded));
        let req = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&app.key)
            .json(&json!({"model": "gpt-4o-mini", "stream": true,
                          "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "Hello"}]}));
        let f = fetch(req, gzip).await;
        assert_eq!(f.status, 200, "{}", f.text());
        assert_eq!(
            data_lines(f.text()),
            data_lines(&recorded),
            "gzip {gzip}: the stream is passed through whole"
        );
    }
}
