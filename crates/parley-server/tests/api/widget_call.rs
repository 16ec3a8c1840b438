//! The widget's browser voice call (issue 15): `POST /widget/v1/call` (one utterance, stored
//! with its durable turn job, the turn's progress streamed back), `GET /widget/v1/call` and
//! `GET /widget/v1/speech`, against the stub provider's `/audio/transcriptions` and
//! `/audio/speech` (which answer with the recordings of `../shared/fixtures/audio`). Checked:
//! a turn end to end (caption, answer, spoken audio stored with its waveform and served), a
//! retry storing and calling nothing twice, the checks and their 4xx, and that a visitor
//! reaches only their own call.

use parley_core::widget::{SpeechFormat, WidgetMode, WidgetRecord, WidgetSettings};
use parley_core::{AssistantId, Timestamp};
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::helpers::{Backend, Resp, TestApp, shared_dir};

crate::both_backends!(
    a_call_turn_is_transcribed_answered_and_spoken_once,
    a_visitor_reaches_only_their_own_call
);

pub(crate) const SITE: &str = "http://site.test:8000";

fn audio(name: &str) -> Vec<u8> {
    std::fs::read(shared_dir().join("fixtures/audio").join(name)).unwrap()
}

/// An assistant on `stub` with a voice-only widget for [`SITE`] that offers the call (speech
/// as WAV); returns (assistant id, widget key).
async fn call_widget(app: &TestApp, stub: &StubProvider, name: &str) -> (AssistantId, String) {
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": name, "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini", "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    let mut settings = WidgetSettings {
        allowed_origins: vec![SITE.into()],
        mode: WidgetMode::Voice,
        transcription_model: "whisper-1".into(),
        speech_model: "tts-1".into(),
        speech_voice: "nova".into(),
        speech_format: SpeechFormat::Wav,
        ..Default::default()
    };
    settings.validate().unwrap();
    app.state
        .store
        .widgets()
        .save_widget(&WidgetRecord {
            workspace_id: app.workspace.id,
            assistant_id: id,
            public_key: key.clone(),
            settings,
            updated_at: Timestamp::now(),
        })
        .await
        .unwrap();
    (id, key)
}

/// Starts a visitor's conversation: (conversation id, visitor token).
pub(crate) async fn start(app: &TestApp, key: &str) -> (String, String) {
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/widget/v1/conversations?key={key}")))
                .header("origin", SITE)
                .json(&json!({})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["conversation_id"].as_str().unwrap().to_owned(),
        r.body["visitor_token"].as_str().unwrap().to_owned(),
    )
}

/// `POST /widget/v1/call` from [`SITE`].
async fn send_turn(
    app: &TestApp,
    key: &str,
    token: Option<&str>,
    client_id: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Resp {
    let mut req = app
        .client
        .post(app.url(&format!("/widget/v1/call?key={key}&client_id={client_id}")))
        .header("origin", SITE)
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.header("x-parley-visitor", t);
    }
    app.send(req).await
}

/// The `turn` events of a call stream, and whether it ended with `done`.
fn turn_events(text: &str) -> (Vec<Value>, bool) {
    let mut turns = Vec::new();
    let mut done = false;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut ev = "";
        let mut data = Value::Null;
        for l in block.lines() {
            if let Some(e) = l.strip_prefix("event: ") {
                ev = e;
            } else if let Some(d) = l.strip_prefix("data: ") {
                data = serde_json::from_str(d).unwrap();
            }
        }
        match ev {
            "turn" => turns.push(data),
            "done" => done = true,
            "error" => panic!("an error event: {data}"),
            _ => {}
        }
    }
    (turns, done)
}

/// `GET /widget/v1/call?turn=` from [`SITE`].
async fn progress(app: &TestApp, key: &str, token: &str, turn: &str) -> Resp {
    app.send(
        app.client
            .get(app.url(&format!("/widget/v1/call?key={key}&turn={turn}")))
            .header("origin", SITE)
            .header("x-parley-visitor", token),
    )
    .await
}

/// The bytes of a `speech_url` (a path under the server), fetched from [`SITE`]: (status,
/// content type, bytes).
async fn fetch_speech(app: &TestApp, url: &str) -> (u16, String, Vec<u8>) {
    let res = app
        .client
        .get(app.url(url))
        .header("origin", SITE)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let mime = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, mime, res.bytes().await.unwrap().to_vec())
}

/// One utterance (the fixture sentence as WAV) runs the whole turn: the stream reports each
/// stage and ends `done` with both captions and the answer's audio; the visitor's recording
/// and the spoken answer are stored as attachments with their waveform peaks; a retry with
/// the same client id stores, transcribes and speaks nothing again.
async fn a_call_turn_is_transcribed_answered_and_spoken_once(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text("Yes, the *Roadster* comes in size 42."));
    let (_, key) = call_widget(&app, &stub, "Caller").await;
    let cfg = app
        .send(
            app.client
                .get(app.url(&format!("/widget/v1/config?key={key}")))
                .header("origin", SITE),
        )
        .await;
    assert_eq!(cfg.body["call"], true, "{}", cfg.text);
    assert_eq!(cfg.body["call_end_silence_ms"], 700);
    let (conversation, token) = start(&app, &key).await;

    let sentence = audio("en_sentence_16k_mono.wav");
    let r = send_turn(
        &app,
        &key,
        Some(&token),
        "turn1",
        "audio/wav",
        sentence.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.headers["access-control-allow-origin"], SITE,
        "CORS for the site"
    );
    let (turns, done) = turn_events(&r.text);
    assert!(done, "{}", r.text);
    let last = turns.last().unwrap();
    assert_eq!(last["state"], "done", "{}", r.text);
    assert_eq!(
        last["caption"]["content"], "🎤 Hello, this is a short test of the Parley voice pipeline.",
        "the stub knows the fixture's words: {last}"
    );
    assert_eq!(last["caption"]["client_id"], "turn1");
    assert_eq!(last["caption"]["role"], "user");
    assert_eq!(last["answer"]["role"], "assistant");
    assert_eq!(
        last["answer"]["content"],
        "Yes, the *Roadster* comes in size 42."
    );
    let turn = last["turn"].as_str().unwrap().to_owned();
    assert_eq!(last["caption"]["id"], turn.as_str());
    // Every state reported is one of the documented ones, in their order.
    let order = ["transcribing", "answering", "speaking", "done"];
    let seen: Vec<usize> = turns
        .iter()
        .map(|t| {
            order
                .iter()
                .position(|s| t["state"] == *s)
                .unwrap_or_else(|| panic!("unknown state in {t}"))
        })
        .collect();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    // The provider was asked once for each: the transcription (the WAV as it was sent) and
    // the speech of the answer as plain text, with the widget's model, voice and format.
    assert_eq!(
        stub.transcriptions(),
        vec![("whisper-1".to_owned(), sentence.len())]
    );
    assert_eq!(stub.transcription_files(), vec!["voice.wav".to_owned()]);
    let speeches = stub.speeches();
    assert_eq!(speeches.len(), 1, "{speeches:?}");
    assert_eq!(
        speeches[0],
        json!({"model": "tts-1", "input": "Yes, the Roadster comes in size 42.",
               "voice": "nova", "response_format": "wav"})
    );

    // The spoken answer is served to the site: the stub's WAV, as it was spoken.
    let url = last["speech_url"].as_str().expect("a speech url");
    assert!(url.starts_with("/widget/v1/speech?key="), "{url}");
    let (status, mime, bytes) = fetch_speech(&app, url).await;
    assert_eq!((status, mime.as_str()), (200, "audio/wav"));
    assert!(
        bytes == audio("call_two_speakers_8k_mono.wav"),
        "the spoken answer is the provider's audio"
    );
    // The GET answers the same progress.
    let p = progress(&app, &key, &token, &turn).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.body["state"], "done");
    assert_eq!(p.body["answer"]["id"], last["answer"]["id"]);
    assert!(p.body["speech_url"].is_string());

    // The record: the visitor's turn with its recording and transcript, the answer with its
    // audio; both files stored with their waveform peaks beside them.
    let list = app
        .get(&format!(
            "/api/v1/conversations/{conversation}/messages?order=asc"
        ))
        .await;
    let items = list.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{}", list.text);
    let (user, answer) = (&items[0], &items[1]);
    assert_eq!(user["meta"]["channel"]["type"], "call", "{user}");
    assert_eq!(user["meta"]["channel"]["details"]["turn"], "done");
    let rec = &user["meta"]["channel"]["attachments"][0];
    assert_eq!(rec["kind"], "voice");
    assert_eq!(rec["mime_type"], "audio/wav");
    assert_eq!(
        rec["transcript"],
        "Hello, this is a short test of the Parley voice pipeline."
    );
    assert_eq!(answer["meta"]["in_reply_to"], turn.as_str(), "{answer}");
    let spoken = &answer["meta"]["channel"]["attachments"][0];
    assert_eq!(spoken["kind"], "speech", "{answer}");
    assert_eq!(spoken["mime_type"], "audio/wav");
    for a in [rec, spoken] {
        let file = app
            .state
            .settings
            .data_dir
            .join("attachments")
            .join(a["storage_key"].as_str().unwrap());
        let peaks: Value = serde_json::from_slice(
            &std::fs::read(parley_server::peaks::sidecar_of(&file)).expect("peaks beside it"),
        )
        .unwrap();
        assert!(peaks["duration_ms"].as_u64().unwrap() > 3000, "{peaks}");
    }
    let usage = app
        .state
        .store
        .attachments()
        .attachment_usage(app.workspace.id)
        .await
        .unwrap();
    assert_eq!(usage.files, 2);

    // A retry of the same utterance: the stored turn's progress, nothing new anywhere.
    let again = send_turn(&app, &key, Some(&token), "turn1", "audio/wav", sentence).await;
    assert_eq!(again.status, 200, "{}", again.text);
    let (turns, done) = turn_events(&again.text);
    assert!(done);
    assert_eq!(turns.len(), 1, "{}", again.text);
    assert_eq!(turns[0]["turn"], turn.as_str());
    assert_eq!(turns[0]["state"], "done");
    assert_eq!(stub.transcriptions().len(), 1);
    assert_eq!(stub.speeches().len(), 1);
    assert_eq!(stub.requests().len(), 1, "the assistant answered once");
    let list = app
        .get(&format!("/api/v1/conversations/{conversation}/messages"))
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    let usage = app
        .state
        .store
        .attachments()
        .attachment_usage(app.workspace.id)
        .await
        .unwrap();
    assert_eq!(usage.files, 2, "the retry's audio was not kept");
}

/// The call endpoints' checks, each with its status and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_turns_are_checked() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    let (_, key) = call_widget(&app, &stub, "Checked").await;
    let (_, token) = start(&app, &key).await;
    let wav = audio("en_sentence_16k_mono.wav");
    let code = |r: &Resp| {
        (
            r.status,
            r.body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };

    let r = send_turn(&app, &key, None, "a1", "audio/wav", wav.clone()).await;
    assert_eq!(
        code(&r),
        (401, "invalid_visitor_token".into()),
        "{}",
        r.text
    );
    let r = send_turn(
        &app,
        "pk_unknown",
        Some(&token),
        "a1",
        "audio/wav",
        wav.clone(),
    )
    .await;
    assert_eq!(code(&r), (401, "unknown_widget_key".into()), "{}", r.text);
    let r = send_turn(
        &app,
        &key,
        Some(&token),
        "bad id!",
        "audio/wav",
        wav.clone(),
    )
    .await;
    assert_eq!(code(&r), (422, "validation_failed".into()), "{}", r.text);
    assert_eq!(r.body["error"]["field"], "client_id");
    let r = send_turn(&app, &key, Some(&token), "a1", "text/plain", wav.clone()).await;
    assert_eq!(
        code(&r),
        (415, "unsupported_audio_type".into()),
        "{}",
        r.text
    );
    let r = send_turn(&app, &key, Some(&token), "a1", "audio/ogg", wav.clone()).await;
    assert_eq!(
        code(&r),
        (415, "audio_content_mismatch".into()),
        "{}",
        r.text
    );
    let r = send_turn(&app, &key, Some(&token), "a1", "audio/wav", Vec::new()).await;
    assert_eq!(code(&r), (422, "validation_failed".into()), "{}", r.text);
    let too_big = vec![0u8; 2 * 1024 * 1024 + 1];
    let r = send_turn(&app, &key, Some(&token), "a1", "audio/wav", too_big).await;
    assert_eq!(code(&r), (413, "body_too_large".into()), "{}", r.text);
    // A client id already used by a text message is not a call turn.
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/widget/v1/messages?key={key}")))
                .header("origin", SITE)
                .header("x-parley-visitor", &token)
                .json(&json!({"client_id": "t1", "content": "Hello"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send_turn(&app, &key, Some(&token), "t1", "audio/wav", wav.clone()).await;
    assert_eq!(code(&r), (422, "validation_failed".into()), "{}", r.text);
    // Progress and speech.
    let r = progress(&app, &key, &token, "not-a-uuid").await;
    assert_eq!(code(&r), (400, "invalid_parameter".into()), "{}", r.text);
    let r = progress(&app, &key, &token, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(code(&r), (404, "not_found".into()), "{}", r.text);
    for token in ["", "forged", &"x".repeat(2000)] {
        let (status, _, body) =
            fetch_speech(&app, &format!("/widget/v1/speech?key={key}&token={token}")).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("invalid_speech_token")),
            "{body}"
        );
    }
    // Nothing was stored by the refused requests.
    assert_eq!(stub.transcriptions().len(), 0);

    // A voice widget without a speech model offers no call; a chat widget no voice at all.
    let mut w = app
        .state
        .store
        .widgets()
        .widget_by_key(&key)
        .await
        .unwrap()
        .unwrap();
    w.settings.speech_model.clear();
    app.state.store.widgets().save_widget(&w).await.unwrap();
    let r = send_turn(&app, &key, Some(&token), "a2", "audio/wav", wav.clone()).await;
    assert_eq!(code(&r), (403, "call_unavailable".into()), "{}", r.text);
    w.settings.mode = WidgetMode::Chat;
    app.state.store.widgets().save_widget(&w).await.unwrap();
    let r = send_turn(&app, &key, Some(&token), "a2", "audio/wav", wav.clone()).await;
    assert_eq!(code(&r), (403, "voice_disabled".into()), "{}", r.text);
    // A closed conversation takes no more turns.
    w.settings.mode = WidgetMode::Voice;
    w.settings.speech_model = "tts-1".into();
    app.state.store.widgets().save_widget(&w).await.unwrap();
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/widget/v1/close?key={key}")))
                .header("origin", SITE)
                .header("x-parley-visitor", &token)
                .json(&json!({})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send_turn(&app, &key, Some(&token), "a3", "audio/wav", wav).await;
    assert_eq!(code(&r), (409, "conversation_closed".into()), "{}", r.text);
}

/// Two visitors of one widget, and a visitor of another workspace's widget: each reaches only
/// their own turns; a turn's audio link works for its widget only; the same client id in two
/// conversations is two turns.
async fn a_visitor_reaches_only_their_own_call(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let (_, key) = call_widget(&app, &stub, "Shared desk").await;
    let (conv_a, token_a) = start(&app, &key).await;
    let (conv_b, token_b) = start(&app, &key).await;
    let wav = audio("en_sentence_16k_mono.wav");
    let r = send_turn(&app, &key, Some(&token_a), "same", "audio/wav", wav.clone()).await;
    let (turns, _) = turn_events(&r.text);
    let a = turns.last().unwrap().clone();
    assert_eq!(a["state"], "done", "{}", r.text);
    let turn_a = a["turn"].as_str().unwrap();

    // Visitor B cannot read A's turn, and B's same client id is B's own new turn.
    let r = progress(&app, &key, &token_b, turn_a).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = send_turn(&app, &key, Some(&token_b), "same", "audio/wav", wav.clone()).await;
    let (turns, _) = turn_events(&r.text);
    let b = turns.last().unwrap().clone();
    assert_ne!(b["turn"], a["turn"]);
    assert_eq!(stub.transcriptions().len(), 2);
    for (conversation, n) in [(&conv_a, 2), (&conv_b, 2)] {
        let list = app
            .get(&format!("/api/v1/conversations/{conversation}/messages"))
            .await;
        assert_eq!(
            list.body["items"].as_array().unwrap().len(),
            n,
            "{}",
            list.text
        );
    }

    // Another workspace's widget: its visitor and its key reach none of this.
    let other_ws = app
        .state
        .store
        .workspaces()
        .create_workspace("globex", "Globex")
        .await
        .unwrap();
    let other_key = parley_server::widget::new_public_key().unwrap();
    let mut settings = WidgetSettings {
        allowed_origins: vec![SITE.into()],
        mode: WidgetMode::Voice,
        transcription_model: "whisper-1".into(),
        speech_model: "tts-1".into(),
        ..Default::default()
    };
    settings.validate().unwrap();
    let other_assistant = app
        .state
        .store
        .assistants()
        .create_assistant(
            other_ws.id,
            &parley_store::NewAssistant {
                name: "Globex desk".into(),
                company: String::new(),
                mode: parley_core::AssistantMode::Active,
                settings: Default::default(),
            },
        )
        .await
        .unwrap();
    app.state
        .store
        .widgets()
        .save_widget(&WidgetRecord {
            workspace_id: other_ws.id,
            assistant_id: other_assistant.id,
            public_key: other_key.clone(),
            settings,
            updated_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let (_, token_c) = start(&app, &other_key).await;
    let r = progress(&app, &other_key, &token_c, turn_a).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // A's visitor token under the other key is refused.
    let r = progress(&app, &other_key, &token_a, turn_a).await;
    assert_eq!(r.status, 401, "{}", r.text);
    // A's audio link under the other widget's key is refused; under its own key it plays.
    let url = a["speech_url"].as_str().unwrap();
    let foreign = url.replace(&key, &other_key);
    let (status, _, _) = fetch_speech(&app, &foreign).await;
    assert_eq!(status, 401);
    let (status, _, _) = fetch_speech(&app, url).await;
    assert_eq!(status, 200);
    // Replacing the widget's key revokes the links issued under it.
    let mut w = app
        .state
        .store
        .widgets()
        .widget_by_key(&key)
        .await
        .unwrap()
        .unwrap();
    let new_key = parley_server::widget::new_public_key().unwrap();
    w.public_key = new_key.clone();
    app.state.store.widgets().save_widget(&w).await.unwrap();
    let (status, _, _) = fetch_speech(&app, &url.replace(&key, &new_key)).await;
    assert_eq!(status, 401);
}
