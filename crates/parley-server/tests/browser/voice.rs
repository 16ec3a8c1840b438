//! The audio player (issue 15) in Chromium: WhatsApp-style voice notes (Ogg/Opus and
//! WebM/Opus from `../shared/fixtures/audio`), a Vapi call (its `end-of-call-report` through
//! the webhook, the MP3 recording downloaded from a fake platform on 127.0.0.1) and a phone
//! call sent to `POST /api/v1/calls` (WAV upload) each show a waveform from the server's
//! peaks; play, speed, skip, seek, keyboard and auto-advance are checked through the media
//! elements' `currentTime` / `playbackRate`; the call player highlights and seeks to
//! transcript turns; the Calls quick filter lists the calls and voice conversations only; the
//! phone layout works.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::{TestApp, shared_dir};

const PASSWORD: &str = "correct horse battery";

fn audio(name: &str) -> Vec<u8> {
    std::fs::read(shared_dir().join("fixtures/audio").join(name)).unwrap()
}

/// A WhatsApp conversation with two voice notes, stored as the channel code stores them.
async fn voice_notes(app: &TestApp) -> String {
    let mut attachments = Vec::new();
    for (name, mime) in [
        ("en_sentence_16k_mono.opus", "audio/ogg"),
        ("en_sentence_16k_mono.webm", "audio/webm"),
    ] {
        let mut a: parley_core::channel::Attachment = serde_json::from_value(json!({
            "kind": "voice", "media_id": name, "mime_type": mime,
        }))
        .unwrap();
        parley_server::channels::media::store_attachment(
            &app.state,
            app.workspace.id,
            &mut a,
            &audio(name),
            parley_server::channels::media::QuotaPolicy::Refuse,
        )
        .await
        .unwrap();
        attachments.push(a);
    }
    let msgs: Vec<Value> = attachments
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({"role": "user", "content": "[voice]", "external_id": format!("wamid.v{i}"),
                   "created_at": format!("2026-11-30T09:00:0{i}Z"),
                   "meta": {"channel": {"type": "audio", "attachments": [a]}}})
        })
        .collect();
    app.create(json!({"assistant": {"name": "Ava"}, "channel": "whatsapp",
                      "contact": "+4917055", "messages": msgs}))
        .await
}

/// A phone call with its WAV recording uploaded and the fixture's four timed turns.
async fn phone_call(app: &TestApp) -> String {
    let turns: Value = serde_json::from_slice(&audio("call_two_speakers_turns.json")).unwrap();
    let transcript: Vec<Value> = turns["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            json!({"speaker": if t["speaker"] == "agent" { "assistant" } else { "user" },
                        "start_ms": t["start_ms"], "end_ms": t["end_ms"], "text": t["text"]})
        })
        .collect();
    let r = app
        .post(
            "/api/v1/calls",
            &json!({"call_id": "browser-call", "assistant": {"name": "Phone desk"},
                "caller": "+15550001111", "callee": "+15550002222",
                "started_at": "2026-11-30T10:00:00Z", "ended_at": "2026-11-30T10:00:21.833Z",
                "recording": {"data_base64": base64::engine::general_purpose::STANDARD
                    .encode(audio("call_two_speakers_8k_mono.wav")), "mime_type": "audio/wav"},
                "transcript": transcript}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["conversation"]["id"].as_str().unwrap().to_owned()
}

/// A Vapi call: a Vapi connection of a new assistant, and an `end-of-call-report` (the shape
/// of Vapi's documented schema, as in the API tests' `voip_webhooks.rs`) with the fixture's
/// four turns, whose MP3 recording a fake platform on 127.0.0.1 serves. Returns the
/// conversation once its recording is stored.
async fn vapi_call(app: &TestApp) -> String {
    let app_router = axum::Router::new().route(
        "/call.mp3",
        axum::routing::get(|| async {
            (
                [("content-type", "audio/mpeg")],
                audio("call_two_speakers_8k_mono.mp3"),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let platform = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app_router).await });
    let r = app
        .post("/api/v1/assistants", &json!({"name": "Vapi desk"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/assistants/{assistant}/channels"),
            &json!({"kind": "vapi", "server_secret": "browser-secret-1234"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.body["webhook_path"].as_str().unwrap().to_owned();
    let turns: Value = serde_json::from_slice(&audio("call_two_speakers_turns.json")).unwrap();
    let start = 1_764_496_800_000_i64;
    let messages: Vec<Value> = turns["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let (a, z) = (
                t["start_ms"].as_i64().unwrap(),
                t["end_ms"].as_i64().unwrap(),
            );
            json!({"role": if t["speaker"] == "agent" { "bot" } else { "user" },
                   "message": t["text"], "time": start + a, "endTime": start + z,
                   "secondsFromStart": a as f64 / 1000.0, "duration": (z - a) as f64 / 1000.0})
        })
        .collect();
    let report = json!({"message": {"type": "end-of-call-report",
        "startedAt": "2026-11-30T10:00:00.000Z", "endedAt": "2026-11-30T10:00:21.833Z",
        "endedReason": "customer-ended-call", "cost": 0.0842,
        "customer": {"number": "+15550003333"}, "phoneNumber": {"number": "+15550002222"},
        "analysis": {"summary": "Order status asked."},
        "artifact": {"messages": messages, "recordingUrl": format!("{platform}/call.mp3")},
        "call": {"id": "vapi-browser-call", "type": "inboundPhoneCall"}}});
    let r = app
        .send(
            app.client
                .post(app.url(&path))
                .header("x-vapi-secret", "browser-secret-1234")
                .json(&report),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for _ in 0..600 {
        let ids = app.list_ids("channel=voip&q=%2B15550003333").await;
        if let Some(id) = ids.first() {
            let r = app
                .get(&format!(
                    "/api/v1/conversations/{id}/messages?include=all&order=asc"
                ))
                .await;
            if r.body["items"][0]["meta"]["channel"]["attachments"][0]["storage_key"].is_string() {
                return id.clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the Vapi call and its recording were not stored");
}

async fn num(b: &Browser, script: &str) -> f64 {
    b.js(script).await.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_notes_and_a_call_play_in_the_waveform_player() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let notes = voice_notes(&app).await;
    let call = phone_call(&app).await;
    let vapi = vapi_call(&app).await;
    let text = app
        .create(json!({"assistant": {"name": "Ava"}, "channel": "widget",
                       "messages": [{"role": "user", "content": "Just text"}]}))
        .await;
    let base = b.sign_in_new_admin(&app, PASSWORD).await;

    // Voice notes: two players, each with its waveform drawn from the server's peaks.
    b.goto(&format!("{base}/conversations?open={notes}&tab=transcript"))
        .await;
    b.wait_for(
        "two waveforms",
        "return document.querySelectorAll('.player[data-drawn=\"1000\"]').length === 2",
    )
    .await;
    assert_eq!(
        b.count(".bubble audio[controls]").await,
        0,
        "no bare audio controls"
    );
    let lit = b
        .js(
            "const c = document.querySelector('.player .pl-wave'); const d = c.getContext('2d')
                 .getImageData(0, 0, c.width, c.height).data; let n = 0;
             for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n",
        )
        .await;
    assert!(
        lit.as_u64().unwrap() > 500,
        "the waveform is painted: {lit}"
    );
    b.screenshot("voice-notes").await;

    let a0 = "document.querySelectorAll('.player audio')[0]";
    let a1 = "document.querySelectorAll('.player audio')[1]";
    b.click(".player .pl-play").await;
    b.wait_for("playback", &format!("return {a0}.currentTime > 0.2"))
        .await;
    b.click(".player .pl-speed").await;
    assert_eq!(num(&b, &format!("return {a0}.playbackRate")).await, 1.5);
    assert_eq!(
        b.js(&format!("return {a0}.preservesPitch")).await,
        json!(true)
    );
    b.click(".player .pl-back").await;
    assert!(
        num(&b, &format!("return {a0}.currentTime")).await < 0.5,
        "back to the start"
    );
    // +5 s past the end of a 3.7 s note: it ends and the next one plays, at the same speed.
    b.click(".player .pl-fwd").await;
    b.wait_for(
        "auto-advance",
        &format!("return {a0}.ended && !{a1}.paused && {a1}.currentTime > 0"),
    )
    .await;
    assert_eq!(num(&b, &format!("return {a1}.playbackRate")).await, 1.5);
    // Keyboard: [ and ] change the speed, space pauses.
    b.js("const p = document.querySelectorAll('.player')[1]; p.focus();
          for (const k of [']', ']', '[']) p.dispatchEvent(new KeyboardEvent('keydown', {key: k, bubbles: true}));
          p.dispatchEvent(new KeyboardEvent('keydown', {key: ' ', bubbles: true})); return true")
        .await;
    assert_eq!(num(&b, &format!("return {a1}.playbackRate")).await, 1.5);
    assert_eq!(b.js(&format!("return {a1}.paused")).await, json!(true));
    // Click on the waveform, halfway: the position follows.
    b.js("const c = document.querySelectorAll('.player .pl-wave')[1]; const r = c.getBoundingClientRect();
          const e = {clientX: r.left + r.width / 2, clientY: r.top + 5, bubbles: true, pointerId: 1};
          c.dispatchEvent(new PointerEvent('pointerdown', e)); c.dispatchEvent(new PointerEvent('pointerup', e));
          return true")
        .await;
    let t = num(&b, &format!("return {a1}.currentTime")).await;
    assert!((t - 3.67 / 2.0).abs() < 0.35, "seeked to the middle: {t}");

    // The Calls quick filter: the calls and the voice notes, not the text conversation.
    b.goto(&format!("{base}/conversations")).await;
    b.click("#quick-calls").await;
    b.wait_for(
        "the Calls filter",
        "return location.search.includes('calls=true') && !!document.querySelector('.chip')",
    )
    .await;
    let listed = b
        .js("return [...document.querySelectorAll('tr.row[data-id]')].map(r => r.dataset.id)")
        .await;
    let listed: Vec<String> = serde_json::from_value(listed).unwrap();
    for id in [&notes, &call, &vapi] {
        assert!(listed.contains(id), "{id} listed: {listed:?}");
    }
    assert!(!listed.contains(&text), "text-only left out: {listed:?}");
    b.screenshot("voice-calls-filter").await;

    // The Vapi call (MP3 downloaded through the webhook's job): a conversation player at the
    // top; clicking a turn seeks there and highlights it.
    b.goto(&format!("{base}/conversations?open={vapi}&tab=transcript"))
        .await;
    b.wait_for(
        "the call's waveform",
        "return !!document.querySelector('.call-player[data-drawn=\"1000\"]')",
    )
    .await;
    assert_eq!(b.count(".msg[data-start-ms]").await, 4);
    b.click(".msg[data-start-ms=\"11345\"] .bubble").await;
    let ca = "document.querySelector('.call-player audio')";
    b.wait_for(
        "the third turn to play",
        &format!("return {ca}.currentTime >= 11.3 && !{ca}.paused"),
    )
    .await;
    b.wait_for(
        "the spoken turn highlighted",
        "return document.querySelector('.msg.speaking')?.dataset.startMs === '11345'",
    )
    .await;
    b.screenshot("voice-call").await;
    b.js(&format!("{ca}.pause(); return true")).await;
    // Its speed and skip work too.
    b.click(".call-player .pl-speed").await;
    assert_eq!(num(&b, &format!("return {ca}.playbackRate")).await, 1.5);
    let before = num(&b, &format!("return {ca}.currentTime")).await;
    b.click(".call-player .pl-fwd").await;
    let after = num(&b, &format!("return {ca}.currentTime")).await;
    assert!(
        (after - before - 5.0).abs() < 0.3,
        "+5 s: {before} -> {after}"
    );
    assert!(
        b.console_errors().await.is_empty(),
        "{:?}",
        b.console_errors().await
    );
    b.close().await;

    // The phone layout: the call player fits the screen and still plays.
    let Some(p) = Browser::start(true).await else {
        return;
    };
    p.sign_in(&base, "admin@example.com", PASSWORD).await;
    p.goto(&format!("{base}/conversations?open={call}&tab=transcript"))
        .await;
    p.wait_for(
        "the call's waveform on a phone",
        "return !!document.querySelector('.call-player[data-drawn=\"1000\"]')",
    )
    .await;
    let fits = p
        .js(
            "const r = document.querySelector('.call-player').getBoundingClientRect();
             return r.width > 200 && r.right <= document.documentElement.clientWidth + 1",
        )
        .await;
    assert_eq!(fits, json!(true));
    p.click(".call-player .pl-play").await;
    p.wait_for(
        "playback on a phone",
        &format!("return {ca}.currentTime > 0.2"),
    )
    .await;
    p.screenshot("voice-call-phone").await;
    p.close().await;
}
