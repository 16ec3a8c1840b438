//! Phone calls (issue 15): `POST /api/v1/calls` with a timed transcript and a recording
//! downloaded from a fake voice platform on 127.0.0.1 (serving `../shared/fixtures/audio`), the
//! recording's waveform peaks on the dashboard route, idempotency by call id, validation and
//! workspace isolation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::channel_support::eventually;
use crate::helpers::{Backend, TestApp, shared_dir};

/// A voice platform's recording storage: `GET /recordings/{file}` serves a fixture from
/// `../shared/fixtures/audio`; the first request of each file answers 503 (the download is
/// retried by the job queue). Returns (base URL, requests served).
pub(crate) async fn fake_platform() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    async fn recording(
        State(hits): State<Arc<AtomicUsize>>,
        Path(file): Path<String>,
    ) -> axum::response::Response {
        if hits.fetch_add(1, Ordering::SeqCst) == 0 {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let path = shared_dir().join("fixtures/audio").join(&file);
        match std::fs::read(path) {
            Ok(b) => ([("content-type", "audio/mpeg")], b).into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/recordings/{file}", axum::routing::get(recording))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

/// The four turns of `call_two_speakers_turns.json` as transcript segments (agent = the
/// assistant, caller = the user).
pub(crate) fn segments() -> Vec<Value> {
    let turns: Value = serde_json::from_slice(
        &std::fs::read(shared_dir().join("fixtures/audio/call_two_speakers_turns.json")).unwrap(),
    )
    .unwrap();
    turns["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            json!({
                "speaker": if t["speaker"] == "agent" { "assistant" } else { "user" },
                "start_ms": t["start_ms"], "end_ms": t["end_ms"], "text": t["text"],
            })
        })
        .collect()
}

/// A generic `POST /api/v1/calls` body for call `id`: the audio fixture's turns, a cost of
/// 42,000,000 nano-USD, 21,833 ms, `customer-ended-call` and an analysis.
pub(crate) fn call(id: &str) -> Value {
    json!({
        "call_id": id, "assistant": {"name": "Phone desk"}, "platform": "generic",
        "caller": "+15550001111", "callee": "+15550002222", "direction": "inbound",
        "started_at": "2026-11-30T10:00:00Z", "ended_at": "2026-11-30T10:00:21.833Z",
        "end_reason": "customer-ended-call", "cost_nanousd": 42_000_000,
        "sentiment": {"label": "positive"},
        "analysis": {"summary": "Order status asked", "call_successful": true},
        "transcript": segments(),
    })
}

pub(crate) async fn messages(app: &TestApp, conversation: &str) -> Vec<Value> {
    let r = app
        .get(&format!(
            "/api/v1/conversations/{conversation}/messages?per_page=200&order=asc&include=all"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("messages: {}", r.text))
}

/// Asserts that the stored attachment `a` (its API shape) has its waveform peaks kept beside
/// its file.
pub(crate) fn assert_peaks_beside(app: &TestApp, a: &Value) {
    let file = app
        .state
        .settings
        .data_dir
        .join("attachments")
        .join(a["storage_key"].as_str().unwrap());
    assert!(
        std::fs::metadata(parley_server::peaks::sidecar_of(&file)).is_ok(),
        "peaks kept beside the recording {}",
        file.display()
    );
}

/// The call message (type `call`) of a conversation.
pub(crate) fn call_message(ms: &[Value]) -> Value {
    ms.iter()
        .find(|m| m["meta"]["channel"]["type"] == "call")
        .cloned()
        .expect("a call message")
}

async fn a_call_is_stored_with_its_transcript_recording_and_peaks(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, |s| {
        s.jobs.retry_first = Duration::from_millis(50);
        s.jobs.retry_max = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let (platform, hits) = fake_platform().await;
    let mut body = call("call-001");
    body["recording_url"] = json!(format!(
        "{platform}/recordings/call_two_speakers_8k_mono.mp3"
    ));
    let r = app.post("/api/v1/calls", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = &r.body["conversation"];
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["channel"], "voip");
    assert_eq!(c["status"], "closed");
    assert_eq!(c["external_id"], "call-001");
    assert_eq!(c["contact"], "+15550001111");
    assert_eq!(c["end_reason"], "customer-ended-call");
    assert_eq!(c["sentiment"]["label"], "positive", "{c}");
    assert_eq!(
        c["has_voice"], true,
        "a call with a recording is not text-only: {c}"
    );

    // Each turn is a message with its offset into the recording, at start + offset.
    let ms = messages(&app, &id).await;
    let turns: Vec<&Value> = ms
        .iter()
        .filter(|m| m["meta"]["channel"]["type"] == "transcript")
        .collect();
    let expected = segments();
    assert_eq!(turns.len(), expected.len());
    for (m, s) in turns.iter().zip(&expected) {
        let d = &m["meta"]["channel"]["details"];
        assert_eq!(d["start_ms"], s["start_ms"]);
        assert_eq!(d["end_ms"], s["end_ms"]);
        assert_eq!(m["content"], s["text"]);
        assert_eq!(m["role"], s["speaker"]);
        let at = parley_core::Timestamp::parse_rfc3339(m["created_at"].as_str().unwrap()).unwrap();
        let start = parley_core::Timestamp::parse_rfc3339("2026-11-30T10:00:00Z").unwrap();
        assert_eq!(
            (at.as_millis() - start.as_millis()) as u64,
            s["start_ms"].as_u64().unwrap()
        );
    }
    assert_eq!(turns[1]["content"], expected[1]["text"]);
    assert_eq!(
        expected[1]["start_ms"], 5318,
        "the fixture's second turn (README)"
    );
    let cm = call_message(&ms);
    assert_eq!(cm["cost_nanousd"], 42_000_000);
    assert_eq!(cm["meta"]["channel"]["details"]["duration_ms"], 21833);
    assert_eq!(
        cm["meta"]["channel"]["details"]["analysis"]["call_successful"],
        true
    );

    // The recording arrives through the job queue (the first download failed with 503).
    let a = eventually(60, "the recording", || async {
        let ms = messages(&app, &id).await;
        let a = call_message(&ms)["meta"]["channel"]["attachments"][0].clone();
        a["storage_key"].is_string().then_some(a)
    })
    .await;
    assert_eq!(a["kind"], "recording");
    assert_eq!(a["mime_type"], "audio/mpeg");
    assert!(hits.load(Ordering::SeqCst) >= 2, "retried after the 503");
    crate::calls::assert_peaks_beside(&app, &a);

    // The dashboard reads its waveform.
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Member).await;
    let mid = call_message(&messages(&app, &id).await)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let peaks_path = format!("/conversations/{id}/messages/{mid}/attachments/0/peaks");
    let p = app.page(&peaks_path, &cookie).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.body["decoded"], true);
    let ms_len = p.body["duration_ms"].as_u64().unwrap();
    assert!(ms_len.abs_diff(21833) <= 150, "{ms_len}");
    assert_eq!(p.body["peaks"].as_array().unwrap().len(), 2000);

    // Sending the call again stores nothing twice and downloads nothing again.
    let files_before = app
        .state
        .store
        .attachments()
        .attachment_usage(app.workspace.id)
        .await
        .unwrap()
        .files;
    let again = app.post("/api/v1/calls", &body).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["created"], false);
    assert_eq!(again.body["conversation"]["id"], id.as_str());
    assert_eq!(messages(&app, &id).await.len(), ms.len());
    let files_after = app
        .state
        .store
        .attachments()
        .attachment_usage(app.workspace.id)
        .await
        .unwrap()
        .files;
    assert_eq!((files_before, files_after), (1, 1));

    // Another workspace sees neither the call nor its waveform.
    let (_, other_key) = app.other_tenant("other").await;
    let r = app
        .get_as(&format!("/api/v1/conversations/{id}"), &other_key)
        .await;
    assert_eq!(r.status, 404);
    let mut theirs = call("call-001");
    theirs["assistant"] = json!({"name": "Their desk"});
    let r = app.post_as("/api/v1/calls", &theirs, &other_key).await;
    assert_eq!(
        r.status, 201,
        "the same call id in another workspace is its own call"
    );
    assert_ne!(r.body["conversation"]["id"], id.as_str());
}

async fn an_uploaded_opus_recording_gets_its_waveform(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let bytes =
        std::fs::read(shared_dir().join("fixtures/audio/en_sentence_16k_mono.opus")).unwrap();
    let mut body = call("call-upload");
    body["transcript"] = json!([{"speaker": "user", "start_ms": 0, "end_ms": 3670,
        "text": "Hello, this is a short test of the Parley voice pipeline."}]);
    body["recording"] = json!({
        "data_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "mime_type": "audio/ogg",
    });
    let r = app.post("/api/v1/calls", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let cm = call_message(&messages(&app, &id).await);
    assert!(cm["meta"]["channel"]["attachments"][0]["storage_key"].is_string());
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Member).await;
    let path = format!(
        "/conversations/{id}/messages/{}/attachments/0/peaks",
        cm["id"].as_str().unwrap()
    );
    let p = app.page(&path, &cookie).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.body["decoded"], true, "{}", p.text);
    assert!(p.body["duration_ms"].as_u64().unwrap().abs_diff(3670) <= 150);

    // The recording is served in byte ranges, so the player can seek in it.
    let file = path.trim_end_matches("/peaks");
    let part = app
        .send(
            app.client
                .get(app.url(file))
                .header("cookie", &cookie)
                .header("range", "bytes=100-199"),
        )
        .await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.headers["content-range"],
        format!("bytes 100-199/{}", bytes.len())
    );
    assert_eq!(part.headers["accept-ranges"], "bytes");
    let whole = app.page(file, &cookie).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.headers["accept-ranges"], "bytes");
    let past = app
        .send(
            app.client
                .get(app.url(file))
                .header("cookie", &cookie)
                .header("range", format!("bytes={}-", bytes.len() + 10)),
        )
        .await;
    assert_eq!(
        past.status, 200,
        "a range outside the file gets the whole file"
    );

    // The upload of a replay is not kept.
    let again = app.post("/api/v1/calls", &body).await;
    assert_eq!(again.status, 200, "{}", again.text);
    let usage = app
        .state
        .store
        .attachments()
        .attachment_usage(app.workspace.id)
        .await
        .unwrap();
    assert_eq!(usage.files, 1);

    // A reviewer of another workspace gets a 404 for the waveform.
    let (other, _) = app.other_tenant("other").await;
    let email = format!("{}@example.com", uuid::Uuid::now_v7().simple());
    let user = app
        .state
        .store
        .auth()
        .create_user(
            other.id,
            &email,
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
            user_id: user.id,
            csrf_token: parley_server::auth::session::random_token(),
            created_at: now,
            expires_at: now.add_millis(3_600_000),
        })
        .await
        .unwrap();
    let p = app.page(&path, &format!("parley_session={token}")).await;
    assert_eq!(p.status, 404, "{}", p.text);
}

async fn invalid_calls_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let cases = [
        ("transcript[0].end_ms", {
            let mut b = call("bad-1");
            b["transcript"][0]["end_ms"] = json!(0);
            b["transcript"][0]["start_ms"] = json!(10);
            b
        }),
        ("ended_at", {
            let mut b = call("bad-2");
            b["ended_at"] = json!("2026-11-30T09:00:00Z");
            b
        }),
        ("recording", {
            let mut b = call("bad-3");
            b["recording_url"] = json!("https://example.com/r.mp3");
            b["recording"] = json!({"data_base64": "AAAA", "mime_type": "audio/wav"});
            b
        }),
        ("recording_url", {
            let mut b = call("bad-4");
            b["recording_url"] = json!("file:///etc/passwd");
            b
        }),
        ("call_id", {
            let mut b = call("x");
            b["call_id"] = json!("  ");
            b
        }),
        ("transcript[1].text", {
            let mut b = call("bad-6");
            b["transcript"][1]["text"] = json!(" ");
            b
        }),
    ];
    for (field, body) in cases {
        let r = app.post("/api/v1/calls", &body).await;
        assert_eq!(r.status, 422, "{field}: {}", r.text);
        assert_eq!(r.code(), "validation_failed");
        assert_eq!(r.body["error"]["field"], field, "{}", r.text);
    }
    let mut b = call("bad-7");
    b["transcript"][0]["speaker"] = json!("robot");
    let r = app.post("/api/v1/calls", &b).await;
    assert!(r.status == 400 || r.status == 422, "{}", r.text);
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/calls"))
                .json(&call("no-key")),
        )
        .await;
    assert_eq!(r.status, 401);
    let list = app.get("/api/v1/conversations?channel=voip").await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        list.text
    );
}

/// Retell's `x-retell-signature` test vector (`fixtures/voip/retell_sdk_test_webhook_signature.json`,
/// from Retell's SDK tests): valid within 5 minutes, refused outside, with a tampered body, a
/// wrong key, or any of the SDK's malformed headers.
#[test]
fn retell_signatures_are_checked_as_the_sdk_does() {
    use parley_server::api::calls::retell::signature_valid;
    let v: Value = serde_json::from_slice(
        &std::fs::read(shared_dir().join("fixtures/voip/retell_sdk_test_webhook_signature.json"))
            .unwrap(),
    )
    .unwrap();
    let body = v["body"].as_str().unwrap().as_bytes();
    let key = v["api_key"].as_str().unwrap();
    let sig = v["expected_signature"].as_str().unwrap();
    for now in v["valid_at_now_ms"].as_array().unwrap() {
        assert!(
            signature_valid(body, sig, key, now.as_i64().unwrap()),
            "at {now}"
        );
    }
    for now in v["invalid_at_now_ms"].as_array().unwrap() {
        assert!(
            !signature_valid(body, sig, key, now.as_i64().unwrap()),
            "at {now}"
        );
    }
    let at = v["timestamp_ms"].as_i64().unwrap();
    assert!(!signature_valid(
        v["tampered_body_rejected"].as_str().unwrap().as_bytes(),
        sig,
        key,
        at
    ));
    assert!(!signature_valid(
        body,
        sig,
        v["wrong_api_key_rejected"].as_str().unwrap(),
        at
    ));
    for bad in v["malformed_signatures_rejected"].as_array().unwrap() {
        assert!(
            !signature_valid(body, bad.as_str().unwrap(), key, at),
            "{bad}"
        );
    }
}

/// Retell's call object (`fixtures/voip/retell_openapi_call_object_example.json`, the
/// documentation example of its API reference) as a `call_analyzed` body maps to a call whose
/// turns carry the words' offsets, with the analysis's sentiment, the cost in nano-USD and
/// the recording URL; stored through the calls path it is idempotent.
async fn a_retell_call_object_becomes_a_call(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let f: Value = serde_json::from_slice(
        &std::fs::read(shared_dir().join("fixtures/voip/retell_openapi_call_object_example.json"))
            .unwrap(),
    )
    .unwrap();
    let body = json!({"event": "call_analyzed", "call": f["V2PhoneCallResponse"]});
    let assistant: parley_core::model::AssistantRef =
        serde_json::from_value(json!({"name": "Retell desk"})).unwrap();
    let mut c = parley_server::api::calls::retell::call_input(&body, assistant).unwrap();
    assert_eq!(c.call_id, "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6");
    assert_eq!(c.caller.as_deref(), Some("+12137771234"));
    assert_eq!(c.started_at.0, 1703302407333);
    assert_eq!(c.ended_at.map(|t| t.0), Some(1703302428855));
    assert_eq!(c.cost_nanousd, Some(700_000_000), "70 cents");
    assert_eq!(c.transcript.len(), 1);
    assert_eq!(
        (c.transcript[0].start_ms, c.transcript[0].end_ms),
        (700, 1300)
    );
    assert_eq!(
        c.sentiment.as_ref().map(|s| s.label.as_str()),
        Some("positive")
    );
    assert!(
        c.recording_url
            .as_deref()
            .unwrap()
            .ends_with("recording.wav")
    );
    // The recording host is not reachable from here: store the call without it.
    c.recording_url = None;
    let ws = app.workspace.id;
    let (created, id) = parley_server::api::calls::store_call(&app.state, ws, &c)
        .await
        .unwrap();
    assert!(created);
    let (again, id2) = parley_server::api::calls::store_call(&app.state, ws, &c)
        .await
        .unwrap();
    assert!(!again);
    assert_eq!(id, id2);
    let ms = messages(&app, &id.to_string()).await;
    assert_eq!(ms.len(), 2, "the call message and one turn, once");
    assert_eq!(
        ms[1]["role"], "assistant",
        "Retell's agent is the AI assistant"
    );
    let r = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(r.body["sentiment"]["label"], "positive");
}

crate::both_backends!(
    a_retell_call_object_becomes_a_call,
    a_call_is_stored_with_its_transcript_recording_and_peaks,
    an_uploaded_opus_recording_gets_its_waveform,
    invalid_calls_are_refused,
);
