//! Retell and Vapi webhooks (issue 15): a voice platform's connection per assistant, each
//! delivery verified by the platform's scheme and stored in the durable inbox before the 200,
//! the call stored once (replays store nothing twice), Retell's `call_analyzed` added to the
//! conversation `call_ended` made, the recording downloaded from a fake platform on 127.0.0.1
//! (`../shared/fixtures/audio`, 503 first) with the transcript offsets of
//! `call_two_speakers_turns.json`, and the Calls filter.
//!
//! Retell's payloads are its OpenAPI documentation example
//! (`fixtures/voip/retell_openapi_call_object_example.json`) and the SDK's signature test
//! vector (`retell_sdk_test_webhook_signature.json`). No recorded Vapi report is published
//! under a license, so [`vapi_report`] builds one from Vapi's documented schema: the
//! `ServerMessageEndOfCallReport`, `Artifact`, `UserMessage` / `BotMessage` and `Analysis`
//! schemas of Vapi's OpenAPI document (`fern/apis/api/openapi.json` in the VapiAI/docs
//! repository, read at commit eabfa530011ea11c0387cafc424df7a105bf9de5), and its
//! server-authentication guide (`fern/server-url/server-authentication.mdx`) with the
//! `HMACAuthenticationPlan` schema for the signatures.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use crate::calls::{call_message, fake_platform, messages, segments};
use crate::channel_support::{eventually, fixture};
use crate::helpers::{Backend, Resp, TestApp};

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// When the test calls start (2026-11-30T10:00:00Z), in ms.
const START_MS: i64 = 1_764_496_800_000;

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `x-retell-signature` for `body` at `ts` ms, computed the way the fixture's `note` describes
/// Retell's SDK (checked against its test vector in `calls.rs`).
fn retell_signature(body: &str, key: &str, ts: i64) -> String {
    let ts = ts.to_string();
    format!(
        "v={ts},d={}",
        hmac_hex(key, &[body.as_bytes(), ts.as_bytes()])
    )
}

fn now_ms() -> i64 {
    parley_core::Timestamp::now().0
}

/// An app whose job retries are quick, with an assistant; (app, assistant id).
async fn rig(backend: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::spawn_on_with(backend, |s| {
        s.jobs.retry_first = Duration::from_millis(50);
        s.jobs.retry_max = Duration::from_millis(200);
    })
    .await?;
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Phone desk", "company": "Acme"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    Some((app, assistant))
}

/// Connects a voice platform to `assistant`; returns the connection's webhook path.
async fn connect(app: &TestApp, assistant: &str, body: Value) -> String {
    let r = app
        .post(&format!("/api/v1/assistants/{assistant}/channels"), &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.body["webhook_path"].as_str().unwrap().to_owned();
    assert_eq!(
        path,
        format!(
            "/webhooks/{}/{}",
            body["kind"].as_str().unwrap(),
            r.body["id"].as_str().unwrap()
        )
    );
    assert_eq!(r.body["inbox"]["pending"], 0);
    let shown = r.body["secrets"].to_string();
    for secret in [&body["api_key"], &body["server_secret"]] {
        if let Some(s) = secret.as_str() {
            assert!(!shown.contains(s), "only the hint is shown: {shown}");
        }
    }
    path
}

/// Posts a raw webhook body with `headers` (no API key).
async fn deliver(app: &TestApp, path: &str, body: &str, headers: &[(&str, String)]) -> Resp {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    app.send(req).await
}

/// Posts a Retell event signed now with `key`.
async fn retell(app: &TestApp, path: &str, body: &Value, key: &str) -> Resp {
    let text = body.to_string();
    let sig = retell_signature(&text, key, now_ms());
    deliver(app, path, &text, &[("x-retell-signature", sig)]).await
}

/// The workspace's conversations on channel voip (API list ids).
async fn calls(app: &TestApp) -> Vec<String> {
    app.list_ids("channel=voip").await
}

/// The one voip conversation, once the inbox worker stored it.
async fn the_call(app: &TestApp) -> String {
    eventually(30, "the call's conversation", || async {
        calls(app).await.into_iter().next()
    })
    .await
}

/// The audio fixture's turns as Retell `transcript_object` utterances: `agent` / `user`, each
/// word timed in seconds, the first starting at the turn's start and the last ending at its
/// end (words spread evenly between).
fn retell_utterances() -> Vec<Value> {
    segments()
        .iter()
        .map(|s| {
            let (start, end) = (
                s["start_ms"].as_f64().unwrap(),
                s["end_ms"].as_f64().unwrap(),
            );
            let words: Vec<&str> = s["text"].as_str().unwrap().split(' ').collect();
            let step = (end - start) / words.len() as f64;
            let timed: Vec<Value> = words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    json!({"word": w, "start": (start + step * i as f64) / 1000.0,
                           "end": (start + step * (i + 1) as f64) / 1000.0})
                })
                .collect();
            json!({"role": if s["speaker"] == "assistant" { "agent" } else { "user" },
                   "content": s["text"], "words": timed})
        })
        .collect()
}

/// A Retell webhook body for call `id` from the documentation example's call object, with the
/// audio fixture's timeline and recording: `call_ended` (without `call_analysis`, as Retell's
/// webhook docs say) or `call_analyzed` (with it).
fn retell_event(id: &str, recording: &str, analyzed: bool) -> Value {
    let mut call =
        fixture("voip", "retell_openapi_call_object_example.json")["V2PhoneCallResponse"].clone();
    call["call_id"] = json!(id);
    call["call_status"] = json!("ended");
    call["start_timestamp"] = json!(START_MS);
    call["end_timestamp"] = json!(START_MS + 21_833);
    call["duration_ms"] = json!(21_833);
    call["disconnection_reason"] = json!("user_hangup");
    call["recording_url"] = json!(recording);
    call["transcript_object"] = json!(retell_utterances());
    if !analyzed {
        call.as_object_mut().unwrap().remove("call_analysis");
    }
    json!({"event": if analyzed { "call_analyzed" } else { "call_ended" }, "call": call})
}

/// Checks that the call's turns are the audio fixture's, with their offsets, once.
async fn turns_match_the_fixture(app: &TestApp, id: &str) -> Vec<Value> {
    let ms = messages(app, id).await;
    let turns: Vec<&Value> = ms
        .iter()
        .filter(|m| m["meta"]["channel"]["type"] == "transcript")
        .collect();
    let expected = segments();
    assert_eq!(turns.len(), expected.len(), "each turn once: {ms:?}");
    for (m, s) in turns.iter().zip(&expected) {
        let d = &m["meta"]["channel"]["details"];
        assert_eq!(
            (&d["start_ms"], &d["end_ms"]),
            (&s["start_ms"], &s["end_ms"])
        );
        assert_eq!(m["content"], s["text"]);
        assert_eq!(m["role"], s["speaker"]);
    }
    ms
}

/// Waits for the call's recording; returns its attachment.
async fn recording(app: &TestApp, id: &str) -> Value {
    eventually(60, "the recording", || async {
        let a = call_message(&messages(app, id).await)["meta"]["channel"]["attachments"][0].clone();
        a["storage_key"].is_string().then_some(a)
    })
    .await
}

/// Waits until the webhook inbox has no pending or running delivery.
async fn inbox_drained(app: &TestApp) {
    eventually(30, "the inbox to drain", || async {
        let stats = app.state.store.jobs().queue_stats().await.unwrap();
        let busy = stats.iter().any(|s| {
            s.kind.ends_with(".delivery") && s.state != parley_store::jobs::JobState::Failed
        });
        (!busy).then_some(())
    })
    .await
}

/// The Retell fixtures through the webhook: the SDK's test vector body is accepted when signed
/// now with its key (its own signature is five minutes stale by now, so refused), refused
/// without a signature, with the wrong key, tampered or malformed; the documentation call
/// object is accepted as `call_analyzed` and stored with its turn's offsets, sentiment,
/// summary and cost.
async fn retell_fixtures_are_accepted_signed_and_refused_otherwise(backend: Backend) {
    let Some((app, assistant)) = rig(backend).await else {
        return;
    };
    let v = fixture("voip", "retell_sdk_test_webhook_signature.json");
    let key = v["api_key"].as_str().unwrap();
    let path = connect(&app, &assistant, json!({"kind": "retell", "api_key": key})).await;
    let body = v["body"].as_str().unwrap();
    assert_eq!(
        retell_signature(body, key, v["timestamp_ms"].as_i64().unwrap()),
        v["expected_signature"].as_str().unwrap(),
        "the test signs as the SDK does"
    );

    let signed = retell_signature(body, key, now_ms());
    let r = deliver(&app, &path, body, &[("x-retell-signature", signed.clone())]).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = deliver(&app, &path, body, &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "signature_missing"),
        "{}",
        r.text
    );
    let refused: Vec<(String, String)> = [
        (
            "the vector's own, stale signature",
            v["expected_signature"].as_str().unwrap().to_owned(),
        ),
        (
            "the wrong key",
            retell_signature(
                body,
                v["wrong_api_key_rejected"].as_str().unwrap(),
                now_ms(),
            ),
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b))
    .chain(
        v["malformed_signatures_rejected"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s.as_str().unwrap().is_empty())
            .map(|s| ("malformed".to_owned(), s.as_str().unwrap().to_owned())),
    )
    .collect();
    for (why, sig) in refused {
        let r = deliver(&app, &path, body, &[("x-retell-signature", sig)]).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "signature_invalid"),
            "{why}: {}",
            r.text
        );
        assert!(r.body["error"]["message"].is_string());
    }
    let tampered = v["tampered_body_rejected"].as_str().unwrap();
    let r = deliver(&app, &path, tampered, &[("x-retell-signature", signed)]).await;
    assert_eq!((r.status, r.code()), (401, "signature_invalid"));

    // The SDK's body names no call: accepted, and nothing stored.
    inbox_drained(&app).await;
    assert!(calls(&app).await.is_empty());

    // The documentation example, as Retell sends it after the analysis.
    let example = fixture("voip", "retell_openapi_call_object_example.json");
    let event = json!({"event": "call_analyzed", "call": example["V2PhoneCallResponse"]});
    let r = deliver(&app, &path, &event.to_string(), &[]).await;
    assert_eq!(r.status, 401, "unsigned: refused");
    inbox_drained(&app).await;
    assert!(
        calls(&app).await.is_empty(),
        "nothing stored for a refused delivery"
    );
    let r = retell(&app, &path, &event, key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = the_call(&app).await;
    let c = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(c.body["channel"], "voip");
    assert_eq!(c.body["contact"], "+12137771234");
    assert_eq!(
        c.body["sentiment"]["label"], "positive",
        "user_sentiment Positive"
    );
    assert_eq!(
        c.body["assistant"]["id"],
        assistant.as_str(),
        "the connection's assistant"
    );
    let ms = messages(&app, &id).await;
    let turn = &ms[1];
    assert_eq!(turn["content"], "hi how are you doing?");
    assert_eq!(turn["meta"]["channel"]["details"]["start_ms"], 700);
    assert_eq!(turn["meta"]["channel"]["details"]["end_ms"], 1300);
    let cm = call_message(&ms);
    assert_eq!(cm["cost_nanousd"], 700_000_000, "combined_cost 70 cents");
    let d = &cm["meta"]["channel"]["details"];
    assert_eq!(d["platform"], "retell");
    assert!(
        d["analysis"]["call_summary"]
            .as_str()
            .unwrap()
            .contains("appointment")
    );
    assert_eq!(d["analysis"]["call_successful"], true);
}

/// A Retell call end to end: `call_ended` makes the conversation with the fixture's turns and
/// offsets, and its recording is downloaded through the job queue (after a 503) with its
/// waveform; `call_analyzed` then adds the analysis, summary and sentiment to the same
/// conversation without a second turn; replaying both stores nothing twice; a call cannot be
/// answered through the platform; `call_started` is acknowledged and stores nothing.
async fn a_retell_call_is_stored_once_and_its_analysis_added(backend: Backend) {
    let Some((app, assistant)) = rig(backend).await else {
        return;
    };
    let key = "key_0123456789abcdef";
    let path = connect(&app, &assistant, json!({"kind": "retell", "api_key": key})).await;
    let (platform, hits) = fake_platform().await;
    let url = format!("{platform}/recordings/call_two_speakers_8k_mono.wav");

    let mut started = retell_event("call-r1", &url, false);
    started["event"] = json!("call_started");
    let r = retell(&app, &path, &started, key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    inbox_drained(&app).await;
    assert!(calls(&app).await.is_empty(), "call_started stores nothing");

    let ended = retell_event("call-r1", &url, false);
    let r = retell(&app, &path, &ended, key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = the_call(&app).await;
    let ms = turns_match_the_fixture(&app, &id).await;
    let c = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(c.body["end_reason"], "user_hangup");
    assert!(
        c.body["sentiment"].is_null(),
        "not analysed yet: {}",
        c.text
    );
    let a = recording(&app, &id).await;
    assert_eq!(a["mime_type"], "audio/wav");
    assert!(hits.load(Ordering::SeqCst) >= 2, "retried after the 503");
    crate::calls::assert_peaks_beside(&app, &a);

    let analyzed = retell_event("call-r1", &url, true);
    let r = retell(&app, &path, &analyzed, key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = eventually(30, "the analysis", || async {
        let c = app.get(&format!("/api/v1/conversations/{id}")).await;
        (!c.body["sentiment"].is_null()).then_some(c)
    })
    .await;
    assert_eq!(c.body["sentiment"]["label"], "positive");
    let after = turns_match_the_fixture(&app, &id).await;
    assert_eq!(after.len(), ms.len(), "call_analyzed stores no turn twice");
    let d = &call_message(&after)["meta"]["channel"]["details"];
    assert!(
        d["analysis"]["call_summary"]
            .as_str()
            .unwrap()
            .contains("appointment")
    );
    assert_eq!(d["end_reason"], "user_hangup");
    assert_eq!(d["duration_ms"], 21_833);

    // Replays (Retell retries a webhook that timed out): nothing is stored twice, the
    // analysis stays.
    for body in [&ended, &analyzed, &ended] {
        let r = retell(&app, &path, body, key).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    inbox_drained(&app).await;
    assert_eq!(calls(&app).await, vec![id.clone()], "one conversation");
    let replayed = messages(&app, &id).await;
    assert_eq!(replayed.len(), ms.len());
    assert!(call_message(&replayed)["meta"]["channel"]["details"]["analysis"].is_object());
    let usage = app
        .state
        .store
        .attachments()
        .attachment_usage(app.workspace.id)
        .await
        .unwrap();
    assert_eq!(usage.files, 1, "the recording downloaded once");

    // A caller cannot be written to through the platform.
    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/channel-messages"),
            &json!({"text": "hi"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "not_a_channel_conversation"),
        "{}",
        r.text
    );
}

/// A Vapi `end-of-call-report` for call `id`, built from Vapi's documented schema (see the
/// module docs): `artifact.messages` are the audio fixture's turns (`bot` / `user`, with
/// `secondsFromStart`, epoch-ms `time` / `endTime` and `duration`), plus a `system` message
/// and a tool call that are not turns; `recordingUrl`, `stereoRecordingUrl`, `cost` (USD),
/// `costs`, `endedReason`, `analysis`, `startedAt` / `endedAt`, `customer`, `phoneNumber` and
/// the `call`.
fn vapi_report(id: &str, recording: &str, stereo: &str) -> Value {
    let mut turns = vec![
        json!({"role": "system", "message": "You are Acme's phone assistant.", "time": START_MS,
               "secondsFromStart": 0}),
    ];
    for s in segments() {
        let (start, end) = (
            s["start_ms"].as_i64().unwrap(),
            s["end_ms"].as_i64().unwrap(),
        );
        turns.push(json!({
            "role": if s["speaker"] == "assistant" { "bot" } else { "user" },
            "message": s["text"],
            "time": START_MS + start, "endTime": START_MS + end,
            "secondsFromStart": start as f64 / 1000.0,
            "duration": (end - start) as f64 / 1000.0,
        }));
    }
    turns.insert(
        3,
        json!({"role": "tool_calls", "message": "", "time": START_MS + 11_000,
               "secondsFromStart": 11.0, "toolCalls": [{"id": "t1", "type": "function",
               "function": {"name": "lookup_order", "arguments": "{}"}}]}),
    );
    json!({"message": {
        "type": "end-of-call-report",
        "timestamp": START_MS + 23_000,
        "startedAt": "2026-11-30T10:00:00.000Z",
        "endedAt": "2026-11-30T10:00:21.833Z",
        "endedReason": "customer-ended-call",
        "cost": 0.0842,
        "costs": [{"type": "transport", "cost": 0.01}, {"type": "model", "cost": 0.0742}],
        "customer": {"number": "+15550001111"},
        "phoneNumber": {"number": "+15550002222"},
        "analysis": {"summary": "The caller asked where their order is; it arrives tomorrow.",
                     "structuredData": {"order_found": true}, "successEvaluation": "true"},
        "artifact": {
            "messages": turns,
            "transcript": "AI: Thanks for calling Parley support...",
            "recordingUrl": recording,
            "stereoRecordingUrl": stereo,
        },
        "call": {"id": id, "type": "inboundPhoneCall", "status": "ended",
                 "startedAt": "2026-11-30T10:00:00.000Z"},
    }})
}

/// A Vapi call end to end, with every documented way to authenticate: accepted with
/// `X-Vapi-Secret`, a Bearer token, or an HMAC-SHA256 signature (with and without
/// `x-timestamp`, hex or base64); refused without any (401 `signature_missing`) or with a
/// wrong one (401 `signature_invalid`); other server messages acknowledged and not stored.
/// The report becomes one conversation whose turns carry the fixture's offsets, with the cost,
/// end reason, analysis and stereo URL kept and the MP3 recording downloaded; replays store
/// nothing twice.
async fn a_vapi_report_is_verified_and_stored_once(backend: Backend) {
    let Some((app, assistant)) = rig(backend).await else {
        return;
    };
    let secret = "vapi-secret-0123456789";
    let path = connect(
        &app,
        &assistant,
        json!({"kind": "vapi", "server_secret": secret}),
    )
    .await;
    let (platform, hits) = fake_platform().await;
    let report = vapi_report(
        "vapi-call-1",
        &format!("{platform}/recordings/call_two_speakers_8k_mono.mp3"),
        &format!("{platform}/recordings/stereo.wav"),
    );
    let body = report.to_string();

    let r = deliver(&app, &path, &body, &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "signature_missing"),
        "{}",
        r.text
    );
    let wrong_hmac = hmac_hex("another-secret", &[body.as_bytes()]);
    let now_s = (now_ms() / 1000).to_string();
    let stale_s = (now_ms() / 1000 - 3600).to_string();
    let stale_sig = hmac_hex(secret, &[stale_s.as_bytes(), b".", body.as_bytes()]);
    for (why, headers) in [
        (
            "a wrong X-Vapi-Secret",
            vec![("x-vapi-secret", "nope".to_owned())],
        ),
        (
            "a wrong bearer token",
            vec![("authorization", "Bearer nope".to_owned())],
        ),
        ("a wrong key's HMAC", vec![("x-signature", wrong_hmac)]),
        (
            "an HMAC an hour old",
            vec![("x-signature", stale_sig), ("x-timestamp", stale_s.clone())],
        ),
    ] {
        let r = deliver(&app, &path, &body, &headers).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "signature_invalid"),
            "{why}: {}",
            r.text
        );
    }
    inbox_drained(&app).await;
    assert!(
        calls(&app).await.is_empty(),
        "nothing stored for refused deliveries"
    );

    // A status update is acknowledged, not stored.
    let status = json!({"message": {"type": "status-update", "status": "in-progress",
                                    "call": {"id": "vapi-call-1"}}})
    .to_string();
    let r = deliver(
        &app,
        &path,
        &status,
        &[("x-vapi-secret", secret.to_owned())],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({}));

    let r = deliver(&app, &path, &body, &[("x-vapi-secret", secret.to_owned())]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = the_call(&app).await;
    let ms = turns_match_the_fixture(&app, &id).await;
    let c = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(c.body["contact"], "+15550001111");
    assert_eq!(c.body["end_reason"], "customer-ended-call");
    assert_eq!(c.body["has_voice"], true);
    let cm = call_message(&ms);
    assert_eq!(cm["cost_nanousd"], 84_200_000, "$0.0842");
    let d = &cm["meta"]["channel"]["details"];
    assert_eq!(d["platform"], "vapi");
    assert_eq!(d["direction"], "inbound");
    assert_eq!(d["callee"], "+15550002222");
    assert_eq!(d["end_reason"], "customer-ended-call");
    assert_eq!(d["duration_ms"], 21_833);
    assert_eq!(d["analysis"]["structuredData"]["order_found"], true);
    assert!(
        d["analysis"]["summary"]
            .as_str()
            .unwrap()
            .contains("tomorrow")
    );
    assert!(
        d["stereo_recording_url"]
            .as_str()
            .unwrap()
            .ends_with("/recordings/stereo.wav")
    );
    let a = recording(&app, &id).await;
    assert_eq!(a["mime_type"], "audio/mpeg");
    assert!(hits.load(Ordering::SeqCst) >= 2, "retried after the 503");

    // Replays, each authenticated another documented way: nothing stored twice.
    let ts = now_s.clone();
    let sig_ts = hmac_hex(secret, &[ts.as_bytes(), b".", body.as_bytes()]);
    let sig_plain = hmac_hex(secret, &[body.as_bytes()]);
    let raw: Vec<u8> = (0..sig_plain.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&sig_plain[i..i + 2], 16).unwrap())
        .collect();
    let sig_b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    for (why, headers) in [
        (
            "a bearer token",
            vec![("authorization", format!("Bearer {secret}"))],
        ),
        (
            "HMAC over {timestamp}.{body}",
            vec![("x-signature", sig_ts), ("x-timestamp", ts)],
        ),
        (
            "HMAC over the body, prefixed",
            vec![("x-vapi-signature", format!("sha256={sig_plain}"))],
        ),
        ("HMAC in base64", vec![("x-signature", sig_b64)]),
    ] {
        let r = deliver(&app, &path, &body, &headers).await;
        assert_eq!(r.status, 200, "{why}: {}", r.text);
    }
    inbox_drained(&app).await;
    assert_eq!(calls(&app).await, vec![id.clone()]);
    assert_eq!(messages(&app, &id).await.len(), ms.len(), "nothing twice");
    let usage = app
        .state
        .store
        .attachments()
        .attachment_usage(app.workspace.id)
        .await
        .unwrap();
    assert_eq!(usage.files, 1);
}

/// Connections: each platform's secret is required and sealed (only its hint is shown), the
/// other kinds' fields are refused, an unknown connection's webhook is 404, a connection's
/// webhook stores into its own workspace only, and a removed connection's webhook is 404.
async fn voip_connections_are_validated_and_scoped(backend: Backend) {
    let Some((app, assistant)) = rig(backend).await else {
        return;
    };
    let url = format!("/api/v1/assistants/{assistant}/channels");
    for (body, field) in [
        (json!({"kind": "retell"}), "api_key"),
        (
            json!({"kind": "vapi", "server_secret": "  "}),
            "server_secret",
        ),
        (
            json!({"kind": "vapi", "server_secret": "s3cret-s3cret", "api_key": "k"}),
            "api_key",
        ),
        (
            json!({"kind": "retell", "api_key": "k", "bot_token": "1:x"}),
            "bot_token",
        ),
        (
            json!({"kind": "whatsapp", "server_secret": "x"}),
            "server_secret",
        ),
    ] {
        let r = app.post(&url, &body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
    let r = app.post(&url, &json!({"kind": "sip"})).await;
    assert_eq!(r.status, 422, "{}", r.text);

    let path = connect(
        &app,
        &assistant,
        json!({"kind": "vapi", "server_secret": "ours-0123456789"}),
    )
    .await;
    let r = app.get(&url).await;
    assert_eq!(r.body["items"][0]["kind"], "vapi");
    assert_eq!(r.body["items"][0]["secrets"]["server_secret"], "…6789");

    let r = deliver(
        &app,
        "/webhooks/vapi/0190f8a8-0000-7000-8000-000000000000",
        "{}",
        &[("x-vapi-secret", "ours-0123456789".to_owned())],
    )
    .await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.text);
    let retell_path = path.replace("/vapi/", "/retell/");
    let r = deliver(&app, &retell_path, "{}", &[]).await;
    assert_eq!(r.status, 404, "a Vapi connection is not a Retell one");

    // Another workspace's connection with the same secret stores into that workspace.
    let (_, other_key) = app.other_tenant("other").await;
    let r = app
        .post_as(
            "/api/v1/assistants",
            &json!({"name": "Their desk"}),
            &other_key,
        )
        .await;
    let theirs = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post_as(
            &format!("/api/v1/assistants/{theirs}/channels"),
            &json!({"kind": "vapi", "server_secret": "ours-0123456789"}),
            &other_key,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let their_path = r.body["webhook_path"].as_str().unwrap().to_owned();
    let mut report = vapi_report(
        "shared-id",
        "http://127.0.0.1:9/none.wav",
        "http://127.0.0.1:9/s.wav",
    );
    report["message"]["artifact"]
        .as_object_mut()
        .unwrap()
        .remove("recordingUrl");
    report["message"]["artifact"]
        .as_object_mut()
        .unwrap()
        .remove("stereoRecordingUrl");
    let r = deliver(
        &app,
        &their_path,
        &report.to_string(),
        &[("x-vapi-secret", "ours-0123456789".to_owned())],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = eventually(30, "their call", || async {
        let r = app
            .get_as("/api/v1/conversations?channel=voip", &other_key)
            .await;
        (!r.body["items"].as_array().unwrap().is_empty()).then_some(r)
    })
    .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert!(calls(&app).await.is_empty(), "not in our workspace");

    // Disconnected: the webhook is gone.
    let id = path.rsplit('/').next().unwrap();
    let r = app.delete(&format!("/api/v1/channels/{id}")).await;
    assert_eq!(r.status, 204);
    let r = deliver(
        &app,
        &path,
        "{}",
        &[("x-vapi-secret", "ours-0123456789".to_owned())],
    )
    .await;
    assert_eq!(r.status, 404);
}

/// `calls=true` on the list and the count: conversations on channel `voip`, or with voice
/// (a voice note on another channel); text conversations are left out. `calls=maybe` is 400.
async fn the_calls_filter_keeps_calls_and_voice(backend: Backend) {
    let Some((app, _)) = rig(backend).await else {
        return;
    };
    let call = app
        .post(
            "/api/v1/calls",
            &json!({"call_id": "c-1", "assistant": {"name": "Phone desk", "company": "Acme"},
                    "started_at": "2026-11-30T10:00:00Z",
                    "transcript": [{"speaker": "user", "start_ms": 0, "end_ms": 900, "text": "Hello?"}]}),
        )
        .await;
    assert_eq!(call.status, 201, "{}", call.text);
    let call_id = call.body["conversation"]["id"].as_str().unwrap().to_owned();
    let voice = app
        .create(
            json!({"assistant": {"name": "Ava"}, "channel": "widget", "messages": [
            {"role": "user", "content": "[voice note]", "meta": {"channel": {"type": "voice",
             "attachments": [{"kind": "voice", "media_id": "v1", "mime_type": "audio/ogg"}]}}},
            {"role": "assistant", "content": "Got it."}]}),
        )
        .await;
    let text = app
        .create(
            json!({"assistant": {"name": "Ava"}, "channel": "widget", "messages": [
            {"role": "user", "content": "Hi"}]}),
        )
        .await;
    let mut ids = app.list_ids("calls=true").await;
    ids.sort();
    let mut expected = vec![call_id.clone(), voice.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(!ids.contains(&text));
    let r = app.get("/api/v1/conversations/count?calls=true").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["count"], 2, "{}", r.text);
    assert_eq!(app.list_ids("calls=false").await.len(), 3);
    assert_eq!(app.list_ids("calls=true&channel=voip").await, vec![call_id]);
    let r = app.get("/api/v1/conversations?calls=maybe").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_parameter"),
        "{}",
        r.text
    );

    // The dashboard's quick filter: a Calls button, the URL, and a chip.
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Member).await;
    let page = app.page("/conversations?calls=true", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"quick-calls\""));
    assert!(page.text.contains("aria-pressed=\"true\""));
    assert!(page.text.contains("<span class=\"chip-kind\">Calls</span>"));
    assert!(page.text.contains(&voice) && !page.text.contains(&text));
}

/// What the calls story expects of one call: the end of its conversation's external id, the
/// cost (nano-USD), duration (ms), end reason, a key of its analysis (empty: none), and
/// whether it has the audio fixture's turns.
type Expected = (
    &'static str,
    Option<i64>,
    i64,
    &'static str,
    &'static str,
    bool,
);

/// The calls story, the same checks for every way a call comes in: `POST /api/v1/calls`,
/// Retell's `call_analyzed`, Vapi's `end-of-call-report` and Twilio's callbacks. Each call
/// keeps its turns' offsets (`start_ms` / `end_ms` of the audio fixture; Twilio sends no
/// turns), its cost on the call message (nano-USD), its duration and end reason in the call's
/// details and on the conversation, and the platform's analysis; delivering everything again
/// stores nothing twice.
async fn every_way_in_keeps_a_calls_offsets_cost_and_analysis(backend: Backend) {
    let (platform, _) = fake_platform().await;
    let app = TestApp::spawn_on_with(backend, |s| {
        s.jobs.retry_first = Duration::from_millis(50);
        s.jobs.retry_max = Duration::from_millis(200);
        s.public_base_url = Some("https://parley.example.com".into());
    })
    .await;
    let Some(app) = app else {
        return;
    };
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Phone desk", "company": "Acme"}),
        )
        .await;
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let (retell_key, vapi_secret) = ("key_story_0123456789", "vapi-story-secret-0123");
    let twilio_token = "twilio-story-token-0123";
    let retell_path = connect(
        &app,
        &assistant,
        json!({"kind": "retell", "api_key": retell_key}),
    )
    .await;
    let vapi_path = connect(
        &app,
        &assistant,
        json!({"kind": "vapi", "server_secret": vapi_secret}),
    )
    .await;
    let twilio_path = connect(
        &app,
        &assistant,
        json!({"kind": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef",
               "auth_token": twilio_token}),
    )
    .await;
    let recording = |file: &str| format!("{platform}/recordings/{file}");
    let generic = crate::calls::call("story-generic");
    let retell_body = retell_event(
        "story-retell",
        &recording("call_two_speakers_8k_mono.wav"),
        true,
    );
    let vapi_body = vapi_report(
        "story-vapi",
        &recording("call_two_speakers_8k_mono.mp3"),
        &recording("stereo.wav"),
    )
    .to_string();
    let twilio_form: Vec<(String, String)> = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", "CAstory"),
        ("CallStatus", "completed"),
        ("CallDuration", "22"),
        ("Direction", "inbound"),
        ("From", "+15550001111"),
        ("To", "+15550002222"),
        ("Timestamp", "Sun, 30 Nov 2025 10:00:22 +0000"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    let twilio_sig = parley_server::channels::voip::twilio::signature(
        &format!("https://parley.example.com{twilio_path}"),
        &twilio_form,
        twilio_token,
    );
    let twilio_body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(twilio_form.iter())
        .finish();
    let deliver_all = || async {
        let r = app.post("/api/v1/calls", &generic).await;
        assert!(matches!(r.status, 200 | 201), "{}", r.text);
        assert_eq!(
            retell(&app, &retell_path, &retell_body, retell_key)
                .await
                .status,
            200
        );
        let r = deliver(
            &app,
            &vapi_path,
            &vapi_body,
            &[("x-vapi-secret", vapi_secret.to_owned())],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = app
            .send(
                app.client
                    .post(app.url(&twilio_path))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", twilio_sig.clone())
                    .body(twilio_body.clone()),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    };
    deliver_all().await;
    let fixture_cost = fixture("voip", "retell_openapi_call_object_example.json")
        ["V2PhoneCallResponse"]["call_cost"]["combined_cost"]
        .as_f64()
        .unwrap();
    let expected: [Expected; 4] = [
        (
            "story-generic",
            Some(42_000_000),
            21_833,
            "customer-ended-call",
            "summary",
            true,
        ),
        (
            "story-retell",
            Some((fixture_cost * 1e7).round() as i64),
            21_833,
            "user_hangup",
            "call_summary",
            true,
        ),
        (
            "story-vapi",
            Some(84_200_000),
            21_833,
            "customer-ended-call",
            "structuredData",
            true,
        ),
        ("CAstory", None, 22_000, "completed", "", false),
    ];
    let find = |ext: &'static str| {
        let app = &app;
        async move {
            eventually(30, ext, || async {
                let r = app.get("/api/v1/conversations?channel=voip&limit=50").await;
                r.body["items"].as_array()?.iter().find_map(|c| {
                    c["external_id"]
                        .as_str()
                        .filter(|e| e.ends_with(ext))
                        .map(|_| c["id"].as_str().unwrap().to_owned())
                })
            })
            .await
        }
    };
    let mut counts = Vec::new();
    for (ext, cost, duration, end, analysis, turns) in expected {
        let id = find(ext).await;
        let ms = if turns {
            turns_match_the_fixture(&app, &id).await
        } else {
            messages(&app, &id).await
        };
        let cm = call_message(&ms);
        assert_eq!(cm["cost_nanousd"].as_i64(), cost, "{ext}: {cm}");
        let d = &cm["meta"]["channel"]["details"];
        assert_eq!(d["duration_ms"], duration, "{ext}: {d}");
        assert_eq!(d["end_reason"], end, "{ext}: {d}");
        if !analysis.is_empty() {
            assert!(!d["analysis"][analysis].is_null(), "{ext}: {d}");
        }
        let c = app.get(&format!("/api/v1/conversations/{id}")).await;
        assert_eq!(c.body["end_reason"], end, "{ext}");
        counts.push((id, ms.len()));
    }

    // Everything again: the same conversations, no message twice.
    deliver_all().await;
    inbox_drained(&app).await;
    assert_eq!(calls(&app).await.len(), 4);
    for (id, n) in counts {
        assert_eq!(messages(&app, &id).await.len(), n, "{id}");
    }
}

crate::both_backends!(
    every_way_in_keeps_a_calls_offsets_cost_and_analysis,
    retell_fixtures_are_accepted_signed_and_refused_otherwise,
    a_retell_call_is_stored_once_and_its_analysis_added,
    a_vapi_report_is_verified_and_stored_once,
    voip_connections_are_validated_and_scoped,
    the_calls_filter_keeps_calls_and_voice,
);
