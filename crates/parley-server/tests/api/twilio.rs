//! Twilio calls (issue 15): a Twilio connection per assistant, its status callback and
//! RecordingStatusCallback verified by `X-Twilio-Signature` over the operator's
//! `public_base_url` (not the address the test reaches the server at), one conversation per
//! `CallSid` whichever callback comes first, replays storing nothing twice, the recording
//! downloaded from a fake Twilio API on 127.0.0.1 (serving `../shared/fixtures/audio`, which
//! demands the account's basic auth) and transcribed by the stub provider into one caller
//! message. A recording on another host gets no credentials.
//!
//! Twilio publishes no recorded callback body under a license (see the fixtures' README), so
//! the bodies are built from the parameter lists of Twilio's docs (call status callbacks;
//! recording status callback parameters). The signature of the test requests is computed here
//! with `hmac` + `sha1` as the fixture's note describes the scheme; the validator itself is
//! checked against twilio-python's vectors in the server's unit tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use parley_testkit::stub_provider::StubProvider;
use serde_json::{Value, json};

use crate::calls::{call_message, messages};
use crate::channel_support::eventually;
use crate::helpers::{Backend, Resp, TestApp, shared_dir};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-5678";
const PUBLIC: &str = "https://parley.example.com";
const CALL: &str = "CA11112222333344445555666677778888";

/// The Authorization header of every request a fake server received.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// A fake Twilio REST API on 127.0.0.1: `GET /2010-04-01/Accounts/{sid}/Recordings/{RE}.wav`
/// answers the fixture WAV with the account's basic auth and 401 without; `GET
/// /elsewhere/{file}` (another host, as far as the credentials go: it runs on its own port)
/// answers the fixture MP3 to anyone. (Twilio base, other base, headers seen by each.)
async fn fake_twilio() -> (String, String, Seen, Seen) {
    async fn api(
        State(seen): State<Seen>,
        Path((sid, file)): Path<(String, String)>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        seen.lock().unwrap().push(auth.clone());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
        );
        if sid != SID || auth.as_deref() != Some(expected.as_str()) {
            return (StatusCode::UNAUTHORIZED, "authenticate").into_response();
        }
        if !file.ends_with(".wav") {
            return StatusCode::NOT_FOUND.into_response();
        }
        let wav = std::fs::read(shared_dir().join("fixtures/audio/call_two_speakers_8k_mono.wav"));
        ([("content-type", "audio/x-wav")], wav.unwrap()).into_response()
    }
    async fn elsewhere(State(seen): State<Seen>, headers: HeaderMap) -> axum::response::Response {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        seen.lock().unwrap().push(auth);
        let mp3 = std::fs::read(shared_dir().join("fixtures/audio/call_two_speakers_8k_mono.mp3"));
        ([("content-type", "audio/mpeg")], mp3.unwrap()).into_response()
    }
    let (twilio_seen, other_seen): (Seen, Seen) = Default::default();
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Recordings/{file}",
            axum::routing::get(api),
        )
        .with_state(twilio_seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let twilio = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let other_app = axum::Router::new()
        .route("/elsewhere/{file}", axum::routing::get(elsewhere))
        .with_state(other_seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, other_app).await });
    (twilio, other, twilio_seen, other_seen)
}

/// `X-Twilio-Signature` for a form POST to `url`: base64 HMAC-SHA1 keyed by the auth token
/// over the URL and each sorted parameter's name and value.
fn sign(url: &str, params: &[(&str, String)], token: &str) -> String {
    let mut sorted: Vec<_> = params.to_vec();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (n, v) in sorted {
        mac.update(n.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts `params` form-encoded to `path`, with `signature` when given.
async fn post_form(
    app: &TestApp,
    path: &str,
    params: &[(&str, String)],
    signature: Option<String>,
) -> Resp {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(s) = signature {
        req = req.header("x-twilio-signature", s);
    }
    app.send(req).await
}

/// Posts `params` signed as Twilio signs a callback to `{PUBLIC}{path}`.
async fn callback(app: &TestApp, path: &str, params: &[(&str, String)]) -> Resp {
    let sig = sign(&format!("{PUBLIC}{path}"), params, TOKEN);
    post_form(app, path, params, Some(sig)).await
}

fn status_callback() -> Vec<(&'static str, String)> {
    [
        ("AccountSid", SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", CALL),
        ("CallStatus", "completed"),
        ("CallDuration", "22"),
        ("Direction", "inbound"),
        ("From", "+15550001111"),
        ("To", "+15550002222"),
        ("Caller", "+15550001111"),
        ("Called", "+15550002222"),
        ("SequenceNumber", "3"),
        ("Timestamp", "Sun, 30 Nov 2025 10:00:22 +0000"),
    ]
    .map(|(k, v)| (k, v.to_owned()))
    .to_vec()
}

fn recording_callback(call: &str, url: &str) -> Vec<(&'static str, String)> {
    [
        ("AccountSid", SID),
        ("CallSid", call),
        ("RecordingSid", "RE99998888777766665555444433332222"),
        ("RecordingUrl", url),
        ("RecordingStatus", "completed"),
        ("RecordingDuration", "22"),
        ("RecordingChannels", "1"),
        ("RecordingStartTime", "Sun, 30 Nov 2025 10:00:00 +0000"),
        ("RecordingSource", "StartCallRecordingAPI"),
        ("RecordingTrack", "both"),
        ("ErrorCode", "0"),
    ]
    .map(|(k, v)| (k, v.to_owned()))
    .to_vec()
}

/// An app pointed at the fake Twilio with a public base URL, an assistant on `stub`, and a
/// Twilio connection with a transcription model; (app, webhook path, assistant id).
async fn rig(
    backend: Backend,
    twilio: &str,
    stub: &StubProvider,
) -> Option<(TestApp, String, String)> {
    let twilio = twilio.to_owned();
    let app = TestApp::spawn_on_with(backend, move |s| {
        s.jobs.retry_first = Duration::from_millis(50);
        s.jobs.retry_max = Duration::from_millis(200);
        s.public_base_url = Some(PUBLIC.into());
        s.twilio_api_base_url = twilio;
    })
    .await?;
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Twilio desk", "settings": {"provider": {"base_url": stub.base_url,
                "model": "gpt-4o-mini", "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/assistants/{assistant}/channels"),
            &json!({"kind": "twilio", "account_sid": SID, "auth_token": TOKEN,
                    "transcription_model": "whisper-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        !r.text.contains(TOKEN),
        "the token is never shown: {}",
        r.text
    );
    assert_eq!(r.body["config"]["account_sid"], SID, "{}", r.text);
    let path = format!("/webhooks/twilio/{}", r.body["id"].as_str().unwrap());
    Some((app, path, assistant))
}

async fn calls(app: &TestApp) -> Vec<String> {
    app.list_ids("channel=voip").await
}

/// Both callbacks, status first: verified, one conversation with the call's details, the
/// recording fetched with the account's credentials and transcribed into one caller message;
/// wrong, missing or Host-based signatures refused; replays store nothing twice.
async fn twilio_callbacks_make_one_verified_call(backend: Backend) {
    let (twilio, other, twilio_seen, other_seen) = fake_twilio().await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_transcript("Hello, I am calling about my order. It ships tomorrow.");
    let Some((app, path, assistant)) = rig(backend, &twilio, &stub).await else {
        return;
    };
    let status = status_callback();

    // Refused: no signature, another token, a tampered body, and the signature of the URL the
    // request really reached (its Host), which is not the public one.
    let r = post_form(&app, &path, &status, None).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "signature_missing"),
        "{}",
        r.text
    );
    let wrong = sign(&format!("{PUBLIC}{path}"), &status, "another-token");
    let r = post_form(&app, &path, &status, Some(wrong)).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "signature_invalid"),
        "{}",
        r.text
    );
    let good = sign(&format!("{PUBLIC}{path}"), &status, TOKEN);
    let mut tampered = status.clone();
    tampered[6].1 = "+15559990000".into();
    let r = post_form(&app, &path, &tampered, Some(good)).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "signature_invalid"),
        "{}",
        r.text
    );
    let host_based = sign(&app.url(&path), &status, TOKEN);
    let r = post_form(&app, &path, &status, Some(host_based)).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "signature_invalid"),
        "{}",
        r.text
    );
    assert!(calls(&app).await.is_empty(), "nothing refused is stored");

    // A non-final status is acknowledged and not stored.
    let mut ringing = status.clone();
    ringing[3].1 = "ringing".into();
    assert_eq!(callback(&app, &path, &ringing).await.status, 204);

    // The status callback twice, then the recording's (its replays come below: two copies
    // of one callback processed at the same moment may both fetch the file, see
    // `parley_server::api::calls::add_recording`).
    let url =
        format!("{twilio}/2010-04-01/Accounts/{SID}/Recordings/RE99998888777766665555444433332222");
    let recording = recording_callback(CALL, &url);
    for params in [&status, &status] {
        let r = callback(&app, &path, params).await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let id = eventually(30, "the call", || async {
        calls(&app).await.into_iter().next()
    })
    .await;
    let r = callback(&app, &path, &recording).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let transcript = eventually(60, "the recording's transcript", || async {
        let ms = messages(&app, &id).await;
        ms.iter()
            .find(|m| m["meta"]["channel"]["type"] == "transcript")
            .cloned()
    })
    .await;
    assert_eq!(transcript["role"], "user");
    assert_eq!(
        transcript["content"],
        "Hello, I am calling about my order. It ships tomorrow."
    );
    let d = &transcript["meta"]["channel"]["details"];
    assert_eq!(
        (&d["start_ms"], &d["end_ms"]),
        (&json!(0), &json!(22000)),
        "{d}"
    );

    let ms = messages(&app, &id).await;
    let call = call_message(&ms);
    let details = &call["meta"]["channel"]["details"];
    assert_eq!(details["platform"], "twilio");
    assert_eq!(details["caller"], "+15550001111");
    assert_eq!(details["callee"], "+15550002222");
    assert_eq!(details["direction"], "inbound");
    assert_eq!(details["duration_ms"], 22000);
    assert_eq!(
        details["analysis"]["recording_sid"],
        "RE99998888777766665555444433332222"
    );
    let a = &call["meta"]["channel"]["attachments"][0];
    assert_eq!(a["kind"], "recording");
    assert_eq!(a["mime_type"], "audio/wav");
    assert_eq!(a["transcript"], transcript["content"]);
    crate::calls::assert_peaks_beside(&app, a);
    let r = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(r.body["end_reason"], "completed", "{}", r.text);
    assert_eq!(r.body["contact"], "+15550001111", "{}", r.text);

    // The fake Twilio saw only the account's credentials, and was asked once.
    let seen = twilio_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].as_deref().unwrap().starts_with("Basic "));
    assert_eq!(stub.transcriptions().len(), 1);
    assert_eq!(stub.transcription_files(), vec!["voice.wav".to_owned()]);

    // Every delivery again: nothing stored twice, nothing fetched again.
    for params in [&recording, &status, &recording] {
        assert_eq!(callback(&app, &path, params).await.status, 204);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(messages(&app, &id).await.len(), ms.len());
    assert_eq!(calls(&app).await.len(), 1);
    assert_eq!(twilio_seen.lock().unwrap().len(), 1);

    // A recording on another host (recording first, no status callback): fetched without the
    // account's credentials.
    let elsewhere = format!("{other}/elsewhere/call.mp3");
    let r = callback(&app, &path, &recording_callback("CA0000", &elsewhere)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    eventually(60, "the second call's recording", || async {
        let ids = calls(&app).await;
        let second = ids.into_iter().find(|c| *c != id)?;
        let a = call_message(&messages(&app, &second).await)["meta"]["channel"]["attachments"][0]
            .clone();
        a["storage_key"].is_string().then_some(())
    })
    .await;
    let seen = other_seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(Option::is_none),
        "{seen:?}"
    );

    // The assistant's page offers the Twilio form and shows the URL to give Twilio: on the
    // public base URL, not the address this page was reached at.
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Admin).await;
    let page = app.page(&format!("/assistants/{assistant}"), &cookie).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"connect-twilio\""));
    assert!(
        page.text.contains(&format!("{PUBLIC}{path}")),
        "{}",
        page.text
    );
    assert!(!page.text.contains(TOKEN));
}

/// The connection's input is validated, and without `public_base_url` no Twilio callback can
/// be verified: 503.
async fn twilio_connections_are_validated_and_need_a_public_url(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = app
        .post("/api/v1/assistants", &json!({"name": "Twilio desk"}))
        .await;
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let connect = |body: Value| {
        let app = &app;
        let assistant = assistant.clone();
        async move {
            app.post(&format!("/api/v1/assistants/{assistant}/channels"), &body)
                .await
        }
    };
    for (body, field) in [
        (
            json!({"kind": "twilio", "auth_token": TOKEN}),
            "account_sid",
        ),
        (
            json!({"kind": "twilio", "account_sid": "AC123", "auth_token": TOKEN}),
            "account_sid",
        ),
        (json!({"kind": "twilio", "account_sid": SID}), "auth_token"),
        (
            json!({"kind": "twilio", "account_sid": SID, "auth_token": TOKEN, "api_key": "x"}),
            "api_key",
        ),
        (
            json!({"kind": "vapi", "server_secret": "a-secret-1234", "auth_token": TOKEN}),
            "auth_token",
        ),
    ] {
        let r = connect(body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "validation_failed"),
            "{body}: {}",
            r.text
        );
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
    let r = connect(json!({"kind": "twilio", "account_sid": SID, "auth_token": TOKEN})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let path = format!("/webhooks/twilio/{}", r.body["id"].as_str().unwrap());
    let r = callback(&app, &path, &status_callback()).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "public_base_url_missing"),
        "{}",
        r.text
    );
    let r = callback(
        &app,
        "/webhooks/twilio/not-a-connection",
        &status_callback(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
}

crate::both_backends!(
    twilio_callbacks_make_one_verified_call,
    twilio_connections_are_validated_and_need_a_public_url,
);
