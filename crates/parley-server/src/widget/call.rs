//! The browser voice call (issue 15): in a voice mode with a `transcription_model` and a
//! `speech_model` ([`parley_core::widget::WidgetSettings::call_enabled`]), the script listens
//! to the visitor (microphone, voice-activity detection in the browser), sends each utterance
//! here, and plays the assistant's spoken answer.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /widget/v1/call?client_id=ID` | one utterance (body: the audio, as for `/voice`); stored at once with its `widget.call_turn` job, then the turn's progress streams back (SSE `turn` events, then `done`) |
//! | `GET /widget/v1/call?turn=ID` | the same progress, once, as JSON (after a dropped stream) |
//! | `GET /widget/v1/speech?token=T` | a spoken answer's audio (the `speech_url` of a finished turn) |
//!
//! **A turn.** The utterance becomes a visitor message (role `user`, text `🎤 …` until it is
//! transcribed) whose `meta.channel` is `{"type": "call", "attachments": [the recording, kind
//! `voice`], "details": {"turn": stage}}`, written in one transaction with its job
//! ([`crate::jobs::CALL_TURN`]): an acknowledged utterance survives a crash, and a retry with the
//! same `client_id` stores nothing twice (it streams the stored turn's progress). The job, each
//! step of which is skipped when an earlier run did it:
//!
//! 1. transcribes the recording with the provider's `/audio/transcriptions` (stage `queued` →
//!    `transcribed`; the message's text becomes `🎤 {transcript}`);
//! 2. runs the assistant's turn for that message, at most once
//!    ([`crate::assistant::runtime::respond_to`]);
//! 3. speaks the answer with the provider's `/audio/speech` (the widget's `speech_model`,
//!    `speech_voice`, `speech_format`) and keeps the audio as the answer's
//!    `meta.channel.attachments[0]` (kind `speech`, with its waveform peaks), so the dashboard's
//!    player plays both sides of every turn (stage `done`; `unanswered` when the assistant does
//!    not answer here, such as a hybrid conversation a team member took over).
//!
//! **Progress** (`turn` events and the GET): `{"turn", "state", "caption", "answer",
//! "speech_url"}`, `state` one of `transcribing`, `answering`, `speaking` (the answer is being
//! spoken into audio), `done`, `unanswered`; `caption` and `answer` are visitor messages as
//! `GET /widget/v1/messages` shows them; `speech_url` (on `done`, when the answer was spoken)
//! is a path under `/widget/v1` carrying a sealed token for that one answer's audio
//! ([`SpeechToken`], valid [`SPEECH_TOKEN_TTL_MS`]), so the script can hand it to an `<audio>`
//! element, which streams it as it arrives.
//!
//! Errors, besides those of `POST /widget/v1/voice`: 403 `call_unavailable` (a voice widget
//! without a speech or transcription model), 422 `validation_failed` on `client_id` when it
//! names a message that is not a call turn, 404 `not_found` for a turn that is not the
//! visitor's, 401 `invalid_speech_token`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Json, Response};
use parley_core::channel::{Attachment, ChannelMessageMeta};
use parley_core::model::{Message, MessageInput, MessageMeta};
use parley_core::widget::{SpeechFormat, WidgetRecord};
use parley_core::{ConversationId, MessageId, Role, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::chat::{
    VOICE_TRANSCRIPTION_FAILED, all_messages, ensure_active, keep_recording, message_id,
    recording_of, sse, visitor_message,
};
use super::{Recording, VisitorRequest, VisitorToken, WidgetRequest, key_tag};
use crate::AppState;
use crate::channels::media::{self, QuotaPolicy, SpeechRequest, StoreFailure};
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest_with_jobs};
use crate::jobs::{CALL_TURN, JobError};

/// The text of an utterance not transcribed yet.
pub const TURN_PENDING: &str = "🎤 …";
/// `meta.channel.type` of a call turn (the visitor's utterance).
pub const CALL_TURN_TYPE: &str = "call";
/// Attachment kind (and `meta.channel.type`) of a spoken answer.
pub const SPEECH_KIND: &str = "speech";
/// How long a [`SpeechToken`] is valid, in milliseconds (an hour).
pub const SPEECH_TOKEN_TTL_MS: i64 = 3_600_000;
/// Claims of a `widget.call_turn` job (provider failures are retried; after the last, the turn
/// ends with what it has: a failure text, an answer without audio).
pub const CALL_TURN_ATTEMPTS: u32 = 4;
/// The longest a `POST /widget/v1/call` stream waits for its turn to finish; the script then
/// asks `GET /widget/v1/call`.
pub const STREAM_LIMIT: Duration = Duration::from_secs(120);

/// The capability to fetch one spoken answer (sealed with the server's key, so visitors can
/// neither forge nor alter it): workspace, assistant, conversation, message, the widget key it
/// was issued under ([`key_tag`]) and its expiry (unix ms).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpeechToken {
    /// Token format (`speech`).
    pub t: String,
    /// Workspace.
    pub w: parley_core::WorkspaceId,
    /// Assistant.
    pub a: parley_core::AssistantId,
    /// Conversation.
    pub c: ConversationId,
    /// The answer message.
    pub m: MessageId,
    /// The widget key's fingerprint.
    pub k: String,
    /// Expiry, unix milliseconds.
    pub x: i64,
}

/// The stage a call turn's message records (`meta.channel.details.turn`).
fn stage_of(m: &Message) -> &str {
    m.meta
        .channel
        .as_ref()
        .and_then(|c| c.details.as_ref())
        .and_then(|d| d["turn"].as_str())
        .unwrap_or("queued")
}

fn is_call_turn(m: &Message) -> bool {
    m.role == Role::User
        && m.meta
            .channel
            .as_ref()
            .is_some_and(|c| c.kind == CALL_TURN_TYPE)
}

/// The index of a message's stored spoken answer among its attachments.
fn speech_index(m: &Message) -> Option<usize> {
    m.meta
        .channel
        .as_ref()?
        .attachments
        .iter()
        .position(|a| a.kind == SPEECH_KIND && a.storage_key.is_some())
}

/// The turn's progress without its `speech_url` (see the module docs); `None` when `turn` is
/// not a call turn of the visitor's conversation.
async fn progress(
    st: &AppState,
    t: &VisitorToken,
    turn: MessageId,
) -> Result<Option<(Value, Option<MessageId>)>, ApiError> {
    let Some(list) = all_messages(st, t).await? else {
        return Ok(None);
    };
    let Some(m) = list.iter().find(|m| m.id == turn && is_call_turn(m)) else {
        return Ok(None);
    };
    let answer = list
        .iter()
        .find(|a| a.role == Role::Assistant && a.meta.in_reply_to == Some(turn));
    let spoken = answer.filter(|a| speech_index(a).is_some()).map(|a| a.id);
    let state = match (stage_of(m), answer) {
        ("queued", _) => "transcribing",
        ("unanswered", _) => "unanswered",
        ("done", _) => "done",
        (_, None) => "answering",
        (_, Some(_)) => "speaking",
    };
    Ok(Some((
        json!({
            "turn": turn.to_string(),
            "state": state,
            "caption": visitor_message(m),
            "answer": answer.map(visitor_message),
        }),
        spoken,
    )))
}

/// `view` with its `speech_url` (a fresh token for `spoken`, or null).
fn with_speech_url(
    st: &AppState,
    widget: &WidgetRecord,
    t: &VisitorToken,
    mut view: Value,
    spoken: Option<MessageId>,
) -> Value {
    let url = spoken.filter(|_| view["state"] == "done").map(|m| {
        let token = super::seal_token(
            st,
            &SpeechToken {
                t: "speech".into(),
                w: t.w,
                a: t.a,
                c: t.c,
                m,
                k: key_tag(&widget.public_key),
                x: Timestamp::now().0 + SPEECH_TOKEN_TTL_MS,
            },
        );
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("key", &widget.public_key)
            .append_pair("token", &token)
            .finish();
        format!("/widget/v1/speech?{q}")
    });
    view["speech_url"] = json!(url);
    view
}

fn finished(view: &Value) -> bool {
    matches!(view["state"].as_str(), Some("done" | "unanswered"))
}

/// `POST /widget/v1/call?key=&client_id=ID`: one utterance of the visitor's call (see the
/// module docs). The body and its checks are those of `POST /widget/v1/voice`. 200 with an
/// event stream: `turn` (the progress, each time it changes), `error` `{"message"}`, `done`.
pub(super) async fn post_call(
    State(st): State<AppState>,
    VisitorRequest {
        widget: c,
        token: t,
        body: rec,
    }: VisitorRequest<Recording>,
) -> Result<Response, ApiError> {
    let client_id = recording_of(&c, &rec)?;
    if !c.widget.settings.call_enabled() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "call_unavailable",
            "this widget offers no voice call: it needs a transcription model and a speech model",
        ));
    }
    ensure_active(&st, &c, &t).await?;
    let external_id = format!("widget:{client_id}");
    let known = all_messages(&st, &t)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?
        .into_iter()
        .find(|m| m.external_id.as_deref() == Some(external_id.as_str()));
    let turn = match known {
        Some(m) if is_call_turn(&m) => m.id,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "client_id names a message that is not a call turn",
            )
            .with_field("client_id"));
        }
        None => store_turn(&st, &c, &t, &client_id, rec).await?,
    };
    Ok(stream_progress(st, c, t, turn))
}

/// Stores an utterance (its audio, then its message with the `widget.call_turn` job in one
/// transaction); returns the message id (the stored one when a concurrent retry won).
async fn store_turn(
    st: &AppState,
    c: &WidgetRequest,
    t: &VisitorToken,
    client_id: &str,
    rec: Recording,
) -> Result<MessageId, ApiError> {
    let s = &c.widget.settings;
    let mut attachment = Attachment {
        kind: "voice".into(),
        media_id: client_id.to_owned(),
        mime_type: Some(rec.mime),
        ..Default::default()
    };
    keep_recording(st, t.w, &mut attachment, &rec.bytes, "voice").await?;
    let orphan = attachment.storage_key.clone();
    let message = MessageInput {
        id: None,
        external_id: Some(format!("widget:{client_id}")),
        role: Role::User,
        content: TURN_PENDING.to_owned(),
        created_at: Some(Timestamp::now()),
        model: None,
        usage: None,
        cost_nanousd: None,
        meta: MessageMeta {
            channel: Some(ChannelMessageMeta {
                kind: CALL_TURN_TYPE.into(),
                attachments: vec![attachment],
                details: Some(json!({"turn": "queued"})),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    let mut job = parley_store::jobs::NewJob::new(
        CALL_TURN,
        json!({
            "transcription_model": s.transcription_model,
            "speech": {"model": s.speech_model, "voice": s.speech_voice,
                       "format": s.speech_format.as_str()},
        })
        .to_string(),
        CALL_TURN_ATTEMPTS,
    );
    job.workspace_id = Some(t.w);
    let outcome = ingest_with_jobs(
        st,
        t.w,
        vec![IngestRequest::Append {
            conversation: t.c,
            messages: vec![message],
        }],
        vec![parley_store::jobs::IngestJob { batch: 0, job }],
    )
    .await;
    let outcome = match outcome {
        Ok(mut o) => o.remove(0),
        Err(e) => {
            if let Some(key) = orphan {
                media::remove_attachments(st, t.w, &[key]).await;
            }
            return Err(e);
        }
    };
    match outcome.messages.first() {
        Some(parley_store::MessageOutcome::Stored { id }) => Ok(*id),
        Some(parley_store::MessageOutcome::Duplicate { id }) => {
            if let Some(key) = orphan {
                media::remove_attachments(st, t.w, &[key]).await;
            }
            Ok(*id)
        }
        _ => Err(ApiError::internal("message neither stored nor found")),
    }
}

/// The event stream of a turn's progress (see [`post_call`]): re-read after every commit the
/// store announces (and every second), sent when it changed, until the turn is finished, the
/// visitor went away or [`STREAM_LIMIT`] passed.
fn stream_progress(st: AppState, c: WidgetRequest, t: VisitorToken, turn: MessageId) -> Response {
    let (out, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let widget = c.widget.clone();
    let metrics = st.metrics.clone();
    tokio::spawn(async move {
        let mut wake = st.store.events().subscribe();
        let deadline = tokio::time::Instant::now() + STREAM_LIMIT;
        let mut last = Value::Null;
        loop {
            match progress(&st, &t, turn).await {
                Ok(Some((view, spoken))) => {
                    if view != last {
                        let done = finished(&view);
                        let sent = with_speech_url(&st, &widget, &t, view.clone(), spoken);
                        if out.send(sse("turn", sent)).is_err() {
                            return;
                        }
                        last = view;
                        if done {
                            break;
                        }
                    }
                }
                Ok(None) => {
                    let _ = out.send(sse("error", json!({"message": "the turn is gone"})));
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "could not read a call turn");
                    let _ = out.send(sse(
                        "error",
                        json!({"message": "the call could not be followed"}),
                    ));
                    break;
                }
            }
            if out.is_closed() {
                return;
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let _ = out.send(sse("done", json!({})));
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let mut res = crate::sse::respond(
        &metrics,
        crate::metrics::StreamKind::WidgetChat,
        stream,
        crate::sse::KEEP_ALIVE,
    );
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// `GET /widget/v1/call?key=&turn=ID`: a turn's progress (see the module docs) as JSON.
/// Errors: 400 `invalid_parameter` (`turn` not a message id), 404 for a turn that is not a call
/// turn of the visitor's conversation.
pub(super) async fn get_call(
    State(st): State<AppState>,
    VisitorRequest {
        widget: c,
        token: t,
        ..
    }: VisitorRequest,
) -> Result<Json<Value>, ApiError> {
    let raw = c.param("turn").unwrap_or_default();
    let turn = message_id(&raw).ok_or_else(|| {
        ApiError::bad_param(
            "turn",
            format!("turn must be a message id (a UUID), got {raw:?}"),
        )
    })?;
    let (view, spoken) = progress(&st, &t, turn)
        .await?
        .ok_or_else(|| ApiError::not_found("call turn"))?;
    Ok(Json(with_speech_url(&st, &c.widget, &t, view, spoken)))
}

/// `GET /widget/v1/speech?key=&token=T`: the audio of one spoken answer (the `speech_url` of
/// a finished turn), with its MIME type. The script's `<audio>` element asks with
/// `crossorigin="anonymous"`, so the request carries the page's `Origin` and is checked like
/// every widget request. Errors: 401 `invalid_speech_token` (missing, forged, expired, for
/// another widget or issued under a replaced key), 404 when the answer or its audio is gone.
pub(super) async fn speech(
    State(st): State<AppState>,
    c: WidgetRequest,
) -> Result<Response, ApiError> {
    let token = c.param("token").unwrap_or_default();
    let Some(tok) = super::open_token::<SpeechToken>(&st, &token).filter(|tok| {
        tok.t == "speech"
            && tok.w == c.widget.workspace_id
            && tok.a == c.widget.assistant_id
            && tok.k == key_tag(&c.widget.public_key)
            && tok.x > Timestamp::now().0
    }) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_speech_token",
            "this answer's audio link is not valid (or has expired): ask for the turn again",
        ));
    };
    let export = st
        .store
        .conversations()
        .export_conversations(tok.w, &[tok.c])
        .await?
        .pop();
    let index = export
        .and_then(|e| e.messages.into_iter().find(|m| m.id == tok.m))
        .and_then(|m| speech_index(&m))
        .ok_or_else(|| ApiError::not_found("spoken answer"))?;
    let (a, bytes) = media::read(&st, tok.w, tok.c, tok.m, index).await?;
    let mime = a.mime_type.unwrap_or_else(|| "audio/mpeg".into());
    let mut res = bytes.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

/// The job's settings, as [`store_turn`] wrote them.
#[derive(Deserialize)]
struct TurnPayload {
    transcription_model: String,
    speech: SpeechPayload,
}

#[derive(Deserialize)]
struct SpeechPayload {
    model: String,
    voice: String,
    format: String,
}

/// Sets a call turn's stage (`meta.channel.details.turn`), with `extra` keys beside it.
async fn set_stage(
    st: &AppState,
    ws: parley_core::WorkspaceId,
    message: MessageId,
    stage: &'static str,
    extra: Value,
) -> Result<(), JobError> {
    crate::channels::edit_message(st, ws, message, None, move |_, meta| {
        let Some(ch) = meta.channel.as_mut() else {
            return (false, ());
        };
        let mut d = ch.details.take().unwrap_or_else(|| json!({}));
        d["turn"] = json!(stage);
        if let (Some(d), Value::Object(extra)) = (d.as_object_mut(), extra) {
            d.extend(extra);
        }
        ch.details = Some(d);
        (true, ())
    })
    .await?;
    Ok(())
}

/// The `widget.call_turn` job ([`crate::jobs::CALL_TURN`]): transcribes the utterance, has the
/// assistant answer it and speaks the answer (see the module docs). Each step is skipped when
/// an earlier run did it, so a run after a crash finishes the turn without doing anything
/// twice. Errors: `Retry` for store failures and, while attempts remain, provider failures.
pub async fn run_turn(st: &AppState, job: &parley_store::jobs::Job) -> Result<(), JobError> {
    use crate::assistant::runtime::{TurnOutcome, respond_to};
    let (Some(ws), Some(conversation), Some(turn)) =
        (job.workspace_id, job.conversation_id, job.message_id)
    else {
        return Err(JobError::Permanent("the job names no message".into()));
    };
    let payload: TurnPayload = serde_json::from_str(&job.payload)
        .map_err(|e| JobError::Permanent(format!("the job's payload: {e}")))?;
    let last = job.attempts >= job.max_attempts;
    let Some(export) = st
        .store
        .conversations()
        .export_conversations(ws, &[conversation])
        .await?
        .pop()
    else {
        return Ok(());
    };
    let assistant = export.detail.summary.assistant.id;
    let Some(m) = export.messages.iter().find(|m| m.id == turn) else {
        return Ok(());
    };
    let stage = stage_of(m).to_owned();
    if stage == "done" || stage == "unanswered" {
        return Ok(());
    }
    if stage == "queued" {
        let Some(mut recording) = m
            .meta
            .channel
            .as_ref()
            .and_then(|c| c.attachments.first().cloned())
        else {
            return Err(JobError::Permanent("the turn has no recording".into()));
        };
        let text = media::transcribe_with(
            st,
            ws,
            assistant,
            &payload.transcription_model,
            &mut recording,
        )
        .await
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
        if text.is_none() && !last {
            return Err(JobError::Retry("the transcription failed".into()));
        }
        let content = text
            .map(|t| format!("🎤 {t}"))
            .unwrap_or_else(|| VOICE_TRANSCRIPTION_FAILED.to_owned());
        crate::channels::edit_message(st, ws, turn, None, move |text, meta| {
            let Some(ch) = meta.channel.as_mut() else {
                return (false, ());
            };
            if ch.details.as_ref().and_then(|d| d["turn"].as_str()) != Some("queued") {
                return (false, ());
            }
            *text = content;
            if let Some(slot) = ch.attachments.first_mut() {
                *slot = recording;
            }
            ch.details = Some(json!({"turn": "transcribed"}));
            (true, ())
        })
        .await?;
    }
    let answer = match respond_to(st, ws, conversation, Some(turn)).await {
        Ok(TurnOutcome::Answered(m) | TurnOutcome::Failed(m) | TurnOutcome::AlreadyAnswered(m)) => {
            m
        }
        Ok(TurnOutcome::NotAnswering(why)) => {
            tracing::debug!(%conversation, why, "no answer to a call turn");
            return set_stage(st, ws, turn, "unanswered", json!({})).await;
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if speech_index(&answer).is_some() || payload.speech.model.is_empty() {
        return set_stage(
            st,
            ws,
            turn,
            "done",
            json!({"answer": answer.id.to_string()}),
        )
        .await;
    }
    let speech = SpeechRequest {
        model: payload.speech.model,
        voice: payload.speech.voice,
        format: SpeechFormat::parse(&payload.speech.format).unwrap_or_default(),
    };
    let text = spoken_text(&answer.content);
    let audio = match media::synthesize_speech(st, ws, assistant, &speech, &text).await {
        Ok(a) => a,
        Err(e) if !last => return Err(JobError::Retry(format!("speech: {e}"))),
        Err(e) => {
            tracing::warn!(%conversation, error = %e, "an answer was not spoken");
            return set_stage(
                st,
                ws,
                turn,
                "done",
                json!({"answer": answer.id.to_string(), "speech_error": e}),
            )
            .await;
        }
    };
    let mut a = Attachment {
        kind: SPEECH_KIND.into(),
        media_id: format!("speech-{}", answer.id),
        mime_type: Some(speech.format.mime_type().into()),
        ..Default::default()
    };
    match media::store_attachment(st, ws, &mut a, &audio, QuotaPolicy::Refuse).await {
        Ok(()) => {}
        Err(e @ StoreFailure::QuotaExceeded { .. }) => {
            tracing::warn!(workspace = %ws, "a spoken answer was not kept: {e}");
            return set_stage(
                st,
                ws,
                turn,
                "done",
                json!({"answer": answer.id.to_string(), "speech_error": e.to_string()}),
            )
            .await;
        }
        Err(e) => return Err(JobError::Retry(e.to_string())),
    }
    let key = a.storage_key.clone();
    let kept = crate::channels::edit_message(st, ws, answer.id, None, move |_, meta| {
        let ch = meta.channel.get_or_insert_with(|| ChannelMessageMeta {
            kind: SPEECH_KIND.into(),
            ..Default::default()
        });
        if ch.attachments.iter().any(|x| x.kind == SPEECH_KIND) {
            return (false, false);
        }
        ch.attachments.push(a);
        (true, true)
    })
    .await?;
    if kept != Some(true)
        && let Some(key) = key
    {
        media::remove_attachments(st, ws, &[key]).await;
    }
    set_stage(
        st,
        ws,
        turn,
        "done",
        json!({"answer": answer.id.to_string()}),
    )
    .await
}

/// The text to speak for an answer written in markdown: without emphasis, code and heading
/// marks, links as their text.
pub fn spoken_text(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut chars = markdown.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' | '_' | '`' | '#' => {}
            '[' => {
                // `[text](url)`: keep the text, drop the url.
                let mut label = String::new();
                for n in chars.by_ref() {
                    if n == ']' {
                        break;
                    }
                    label.push(n);
                }
                out.push_str(&label);
                if chars.peek() == Some(&'(') {
                    for n in chars.by_ref() {
                        if n == ')' {
                            break;
                        }
                    }
                }
            }
            _ => out.push(ch),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::spoken_text;

    #[test]
    fn markdown_is_spoken_as_plain_text() {
        assert_eq!(
            spoken_text(
                "Yes — **free shipping** from `€50`.\n\n- see [our page](https://x.test/p)"
            ),
            "Yes — free shipping from €50. - see our page"
        );
        assert_eq!(spoken_text("Plain."), "Plain.");
    }
}
