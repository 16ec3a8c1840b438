//! The widget's browser voice call (issue 15) in Chromium: the fake microphone plays
//! `../shared/fixtures/audio/en_sentence_16k_mono.wav` (over and over, with the file's 0.38 s of
//! trailing silence between), the widget's voice-activity detection cuts it into utterances,
//! each goes to `POST /widget/v1/call`, the stub provider transcribes it and speaks the answer
//! (its 21.8 s WAV), which the widget plays; the next utterance starts while the answer plays
//! and stops it (barge-in), checked through the `<audio>` element's state. Then the call is
//! reviewed in the dashboard: every turn's audio, the visitor's and the spoken answer, is in
//! the waveform player and plays.

use std::time::Duration;

use parley_core::widget::{SpeechFormat, WidgetMode, WidgetRecord, WidgetSettings};
use parley_core::{AssistantId, Timestamp};
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::{TestApp, shared_dir};
use crate::widget::{host_site, in_widget, widget_has};

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_calls_the_assistant_and_the_call_is_reviewable() {
    let mic = shared_dir()
        .join("fixtures/audio/en_sentence_16k_mono.wav")
        .canonicalize()
        .unwrap();
    let Some(b) = Browser::start_with_args(
        false,
        &[
            format!("--use-file-for-fake-audio-capture={}", mic.display()),
            // Scripted clicks carry no user activation; a visitor's real click on "Start a voice
            // call" does, and lets the page play the answers.
            "--autoplay-policy=no-user-gesture-required".to_owned(),
        ],
    )
    .await
    else {
        return;
    };
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_transcript("Hello, this is a short test of the Parley voice pipeline.");
    // A model without a price entry and a reply with its usage: no tokenizer tables to load
    // (seconds in a debug build) on either side of the turn.
    stub.set_default(Reply::Text {
        content: "Happy to help: the pipeline hears you well.".into(),
        usage: Some(parley_core::pricing::Usage {
            prompt_tokens: 40,
            completion_tokens: 9,
        }),
        delay: Duration::ZERO,
    });
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme Shoes", "settings": {
                "provider": {"base_url": stub.base_url, "model": "stub-model", "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    let site = host_site(app.base.clone(), key.clone()).await;
    let mut settings = WidgetSettings {
        allowed_origins: vec![site.clone()],
        mode: WidgetMode::Voice,
        transcription_model: "whisper-1".into(),
        speech_model: "tts-1".into(),
        speech_voice: "nova".into(),
        speech_format: SpeechFormat::Wav,
        // The fixture's loop leaves 384 ms of silence between sentences and at most 160 ms
        // inside one: end a turn after 250 ms.
        call_end_silence_ms: 250,
        ..Default::default()
    };
    settings.validate().unwrap();
    app.state
        .store
        .widgets()
        .save_widget(&WidgetRecord {
            workspace_id: app.workspace.id,
            assistant_id: assistant,
            public_key: key.clone(),
            settings,
            updated_at: Timestamp::now(),
        })
        .await
        .unwrap();

    b.goto(&format!("{site}/")).await;
    widget_has(&b, "the launcher", ".launcher").await;
    b.js(&in_widget(
        "root.querySelector('.launcher').click(); return true",
    ))
    .await;
    widget_has(&b, "the call button", "form.compose .callb").await;
    assert_eq!(
        b.js(&in_widget(
            "return [!!root.querySelector('form.compose textarea'), !!root.querySelector('form.compose .rec')]"
        ))
        .await,
        json!([false, false]),
        "voice only with a call: the call button alone"
    );
    b.js(&in_widget(
        "root.querySelector('.callb').click(); return true",
    ))
    .await;
    widget_has(&b, "the call bar", ".call[data-state]").await;

    // The first utterance: both captions, then the spoken answer plays.
    let audio = "root.querySelector('audio.speech')";
    b.wait_up_to(
        "captions of both sides and the answer playing",
        &in_widget(&format!(
            "const u = root.querySelectorAll('.b.user'), a = root.querySelectorAll('.b.assistant'), s = {audio};
             return u.length >= 1 && u[0].textContent === '🎤 Hello, this is a short test of the Parley voice pipeline.'
               && a.length >= 2 && a[1].textContent.includes('the pipeline hears you well')
               && !!s && +(s.getAttribute('data-played') || 0) >= 1"
        )),
        Duration::from_secs(60),
    )
    .await;
    b.screenshot("widget-call-speaking").await;
    // Barge-in: the next sentence from the microphone stops the answer part-way (21.8 s long).
    b.wait_up_to(
        "the visitor's speech to stop the answer",
        &in_widget(&format!(
            "const s = {audio};
             return +(s.getAttribute('data-interrupted') || 0) >= 1 && s.paused && !s.ended
               && s.currentTime > 0 && s.currentTime < s.duration - 1"
        )),
        Duration::from_secs(60),
    )
    .await;
    let src = b.js(&in_widget(&format!("return {audio}.src"))).await;
    assert!(
        src.as_str().unwrap().contains("/widget/v1/speech?key="),
        "{src}"
    );
    // At least two turns, each with its answer.
    b.wait_up_to(
        "a second answered turn",
        &in_widget(
            "return root.querySelectorAll('.b.user:not(.pending)').length >= 2
               && root.querySelectorAll('.b.assistant').length >= 3",
        ),
        Duration::from_secs(60),
    )
    .await;
    b.screenshot("widget-call").await;
    b.js(&in_widget(
        "root.querySelector('.end-call').click(); return true",
    ))
    .await;
    widget_has(&b, "the call button again", "form.compose .callb").await;
    assert_eq!(
        b.js(&in_widget(&format!("return {audio}.paused"))).await,
        json!(true),
        "ending the call stops the answer"
    );
    assert!(
        b.console_errors().await.is_empty(),
        "{:?}",
        b.console_errors().await
    );

    // The record: one widget conversation of call turns and spoken answers.
    let conversation = b
        .js(&format!(
            "return JSON.parse(localStorage.getItem('parley:{key}')).conversation"
        ))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let mut items: Vec<Value> = Vec::new();
    for _ in 0..200 {
        let list = app
            .get(&format!(
                "/api/v1/conversations/{conversation}/messages?order=asc&per_page=100"
            ))
            .await;
        items = list.body["items"].as_array().cloned().unwrap_or_default();
        // Every turn sent so far is finished (the last may still be on its way at hang-up).
        let open = items.iter().any(|m| {
            m["meta"]["channel"]["type"] == "call"
                && !matches!(
                    m["meta"]["channel"]["details"]["turn"].as_str(),
                    Some("done" | "unanswered")
                )
        });
        if !open {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let turns: Vec<&Value> = items
        .iter()
        .filter(|m| m["meta"]["channel"]["type"] == "call")
        .collect();
    let spoken: Vec<&Value> = items
        .iter()
        .filter(|m| m["meta"]["channel"]["attachments"][0]["kind"] == "speech")
        .collect();
    assert!(turns.len() >= 2, "{items:?}");
    assert!(spoken.len() >= 2, "{items:?}");
    for t in &turns {
        let a = &t["meta"]["channel"]["attachments"][0];
        assert_eq!(a["mime_type"], "audio/wav", "the widget sends WAV: {t}");
        assert!(a["size_bytes"].as_u64().unwrap() > 16_000, "{t}");
    }
    // The provider heard real recordings from the microphone, one per turn.
    let uploads = stub.transcriptions();
    assert_eq!(uploads.len(), turns.len(), "{uploads:?}");
    assert!(uploads.iter().all(|(m, n)| m == "whisper-1" && *n > 16_000));

    // Reviewable in the dashboard: a player with its waveform (peak pairs drawn from the
    // server's peaks; fewer for a short utterance) for each side of each turn.
    let base = b.sign_in_new_admin(&app, PASSWORD).await;
    b.goto(&format!(
        "{base}/conversations?open={conversation}&tab=transcript"
    ))
    .await;
    let players = turns.len() + spoken.len();
    b.wait_for(
        "a waveform player per recording",
        &format!(
            "const p = [...document.querySelectorAll('.player')];
             return p.length === {players} && p.every(x => +(x.getAttribute('data-drawn') || 0) > 100)"
        ),
    )
    .await;
    assert_eq!(
        b.count(".player[data-label=\"Spoken answer\"]").await,
        spoken.len(),
        "the answers' audio is labelled"
    );
    let answer_audio = "document.querySelector('.player[data-label=\"Spoken answer\"] audio')";
    b.js("document.querySelector('.player[data-label=\"Spoken answer\"] .pl-play').click(); return true")
        .await;
    b.wait_for(
        "the spoken answer to play in the dashboard",
        &format!("return {answer_audio}.currentTime > 0.2 && !{answer_audio}.paused"),
    )
    .await;
    b.screenshot("widget-call-review").await;
    b.close().await;
}
