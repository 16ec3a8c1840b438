//! The widget's conversation endpoints: config, start, send (streamed answer), messages after a
//! cursor, close and rating. See the [module docs](super) for the routes and errors.
//!
//! Idle timeout: the script ends a conversation itself after the widget's idle timeout; when the
//! visitor was gone meanwhile, the next request for it ends it on the server (end reason
//! `timeout`) and the visitor is asked for a rating.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Json, Response};
use parley_core::channel::{Attachment, ChannelMessageMeta};
use parley_core::model::{
    AssistantRef, ConversationInput, ConversationPatch, Message, MessageInput, MessageMeta, Rating,
    Variable,
};
use parley_core::query::TranscriptQuery;
use parley_core::widget::WidgetMode;
use parley_core::{Channel, ConversationStatus, MessageId, Role, Timestamp, VariableSource};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Recording, VisitorRequest, VisitorToken, WidgetBody, WidgetRequest};
use crate::AppState;
use crate::assistant::runtime::{self, TurnEvent};
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest};

/// Longest visitor message, in characters.
pub const MAX_VISITOR_MESSAGE_CHARS: usize = 4_000;
/// Longest rating comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1_000;
/// Largest voice message, in bytes (2 MiB: about two minutes of Opus audio at the bit rates
/// browsers record).
pub const MAX_VOICE_BYTES: usize = 2 * 1024 * 1024;
/// The audio types `POST /widget/v1/voice` accepts (the `Content-Type` without parameters such
/// as `;codecs=opus`): what browsers' `MediaRecorder` produces, and common uploads.
pub const VOICE_TYPES: [&str; 5] = [
    "audio/webm",
    "audio/ogg",
    "audio/mp4",
    "audio/mpeg",
    "audio/wav",
];
/// The text of a voice message no transcription model is configured for.
pub const VOICE_NOT_TRANSCRIBED: &str = "🎤 Voice message (not transcribed)";
/// The text of a voice message the provider failed to transcribe.
pub const VOICE_TRANSCRIPTION_FAILED: &str = "🎤 Voice message (the transcription failed)";

/// `GET /widget/v1/config`: what the script needs to draw the widget.
pub(super) async fn config(c: WidgetRequest) -> Json<Value> {
    let s = &c.widget.settings;
    Json(json!({
        "title": s.title,
        "greeting": s.greeting,
        "color": s.color,
        "text_color": s.text_color,
        "position": s.position.as_str(),
        "mode": s.mode.as_str(),
        "pre_chat": s.pre_chat,
        "idle_timeout_minutes": s.idle_timeout_minutes,
        "strings": s.strings,
        "tracking": s.tracking,
        "respect_dnt": s.respect_dnt,
        "voice_transcribed": !s.transcription_model.is_empty(),
        "max_voice_bytes": MAX_VOICE_BYTES,
        "call": s.call_enabled(),
        "call_end_silence_ms": s.call_end_silence_ms,
    }))
}

/// The body of `POST /widget/v1/conversations`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartInput {
    #[serde(default)]
    pre_chat: Map<String, Value>,
    /// The tracker token, to link the visit to the conversation.
    #[serde(default)]
    tracker: Option<String>,
}

/// `POST /widget/v1/conversations`: validates the pre-chat form and creates the conversation
/// (channel `widget`) with its values as `pre_chat` variables. 201 `{"conversation_id",
/// "visitor_token"}`.
pub(super) async fn start(
    State(st): State<AppState>,
    WidgetBody {
        widget: c,
        body: Json(input),
    }: WidgetBody<Json<StartInput>>,
) -> Result<Response, ApiError> {
    let variables = pre_chat_variables(&c.widget.settings, &input.pre_chat)?;
    let ws = c.widget.workspace_id;
    let assistant = st
        .store
        .assistants()
        .get_assistant(ws, c.widget.assistant_id)
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))?;
    let conversation_id = parley_core::ConversationId::new();
    let visitor = format!("visitor-{}", &conversation_id.to_string()[24..]);
    let request = IngestRequest::Create(Box::new(ConversationInput {
        id: Some(conversation_id),
        external_id: None,
        assistant: AssistantRef {
            id: Some(assistant.id),
            name: None,
            company: None,
        },
        channel: Channel::Widget,
        status: None,
        // The contact: the e-mail, else the name given in the form, else the visitor id.
        contact: Some(
            ["email", "name"]
                .iter()
                .find_map(|k| variables.iter().find(|v| v.key == *k))
                .map(|v| v.value.clone())
                .unwrap_or_else(|| visitor.clone()),
        ),
        session_id: Some(visitor),
        started_at: Some(Timestamp::now()),
        ended_at: None,
        end_reason: None,
        rating: None,
        sentiment: None,
        converted: None,
        variables,
        memory: None,
        assistant_version: Some(assistant.version),
        messages: Vec::new(),
    }));
    ingest(&st, ws, vec![request]).await?;
    if let Some(t) = input.tracker.as_deref() {
        super::tracker::link(&st, &c.widget, t, conversation_id).await;
    }
    let token = super::visitor_token(&st, &c.widget, conversation_id);
    Ok((
        StatusCode::CREATED,
        Json(json!({"conversation_id": conversation_id.to_string(), "visitor_token": token})),
    )
        .into_response())
}

/// The pre-chat form's values as `pre_chat` variables, each field checked by the widget's form
/// ([`parley_core::widget::PreChatField::check`]).
/// Errors: 422 `validation_failed` on `pre_chat.<key>` (a value the field refuses, a key that
/// is not a field of the form).
fn pre_chat_variables(
    settings: &parley_core::widget::WidgetSettings,
    form: &Map<String, Value>,
) -> Result<Vec<Variable>, ApiError> {
    let invalid = |key: &str, message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
        .with_field(format!("pre_chat.{key}"))
    };
    let mut variables = Vec::new();
    for f in &settings.pre_chat {
        let value = form.get(&f.key).and_then(Value::as_str);
        if let Some(v) = f.check(value).map_err(|m| invalid(&f.key, m))? {
            variables.push(Variable {
                key: f.key.clone(),
                value: v,
                source: VariableSource::PreChat,
            });
        }
    }
    if let Some(k) = form
        .keys()
        .find(|k| !settings.pre_chat.iter().any(|f| &f.key == *k))
    {
        return Err(invalid(
            k,
            format!("{k:?} is not a field of this widget's form"),
        ));
    }
    Ok(variables)
}

/// Ends a conversation that has been idle longer than the widget's idle timeout (end reason
/// `timeout`), so a visitor who comes back to it is asked for a rating instead of writing into
/// a stale conversation. Returns the status after the check.
async fn expire_if_idle(
    st: &AppState,
    c: &WidgetRequest,
    t: &VisitorToken,
    summary: &parley_core::model::ConversationSummary,
) -> Result<ConversationStatus, ApiError> {
    let minutes = i64::from(c.widget.settings.idle_timeout_minutes);
    let now = Timestamp::now();
    // Idle since the last message, or since the start when nothing was written yet.
    let last = if summary.message_count > 0 {
        summary.last_message_at.0
    } else {
        summary.started_at.0
    };
    if summary.status != ConversationStatus::Active
        || minutes == 0
        || now.0 - last <= minutes * 60_000
    {
        return Ok(summary.status);
    }
    let patch = ConversationPatch {
        status: Some(ConversationStatus::Closed),
        ended_at: Some(Some(now)),
        end_reason: Some(Some("timeout".to_owned())),
        ..Default::default()
    };
    st.store
        .conversations()
        .update_conversation(t.w, t.c, &patch)
        .await?;
    Ok(ConversationStatus::Closed)
}

/// A message as the visitor sees it.
pub(super) fn visitor_message(m: &Message) -> Value {
    json!({
        "id": m.id.to_string(),
        "client_id": m.external_id.as_deref().and_then(|e| e.strip_prefix("widget:")),
        "role": m.role.as_str(),
        "content": m.content,
        "created_at": m.created_at.to_rfc3339(),
        "failed": m.meta.error.is_some(),
    })
}

/// Every visible message of the conversation, oldest first.
pub(super) async fn all_messages(
    st: &AppState,
    t: &VisitorToken,
) -> Result<Option<Vec<Message>>, ApiError> {
    let mut out = Vec::new();
    for page in 1.. {
        let p = st
            .store
            .conversations()
            .list_messages(
                t.w,
                t.c,
                &TranscriptQuery {
                    page,
                    per_page: 200,
                    newest_first: false,
                    include_hidden: false,
                },
            )
            .await?;
        let Some(p) = p else { return Ok(None) };
        let n = p.items.len();
        out.extend(p.items);
        if n < 200 || page >= 50 {
            break;
        }
    }
    Ok(Some(out))
}

/// `GET /widget/v1/messages?key=&after=ID`: the visitor's messages after message `after` (all
/// without it), with the conversation's status and rating. The script calls it after a
/// dropped stream or a page load, and merges by id, so nothing is lost or shown twice.
pub(super) async fn messages(
    State(st): State<AppState>,
    VisitorRequest {
        widget: c,
        token: t,
        ..
    }: VisitorRequest,
) -> Result<Json<Value>, ApiError> {
    // `after` is a message id (a UUID) or absent; anything else is the caller's mistake, said so
    // rather than silently answering the whole transcript.
    let after = match c.param("after") {
        None => None,
        Some(v) => Some(message_id(&v).ok_or_else(|| {
            ApiError::bad_param(
                "after",
                format!("after must be a message id (a UUID), got {v:?}"),
            )
        })?),
    };
    Ok(Json(transcript(&st, &c, &t, after).await?))
}

/// A message id in the hyphenated form only, as the document's `format: uuid` (RFC 9562) has
/// it; `None` for anything else.
pub(super) fn message_id(v: &str) -> Option<MessageId> {
    v.parse().ok().filter(|_| v.len() == 36)
}

/// What `GET /widget/v1/messages` answers (and the live stream's first `snapshot` event):
/// `{"messages": [...], "status", "rated"}`, the visible messages after message `after` (all
/// without it), after ending the conversation if it sat idle past the widget's timeout.
/// Errors: 404 `not_found` when the conversation is gone, a store error.
pub(super) async fn transcript(
    st: &AppState,
    c: &WidgetRequest,
    t: &VisitorToken,
    after: Option<MessageId>,
) -> Result<Value, ApiError> {
    let (detail, list) = match tokio::try_join!(
        async { Ok::<_, ApiError>(st.store.conversations().get_conversation(t.w, t.c).await?) },
        all_messages(st, t)
    )? {
        (Some(d), Some(l)) => (d, l),
        _ => return Err(ApiError::not_found("conversation")),
    };
    let start = after
        .and_then(|a| list.iter().position(|m| m.id == a).map(|i| i + 1))
        .unwrap_or(0);
    let items: Vec<Value> = list[start..].iter().map(visitor_message).collect();
    let s = &detail.summary;
    let status = expire_if_idle(st, c, t, s).await?;
    Ok(json!({
        "messages": items,
        "status": status.as_str(),
        "rated": s.rating.is_some(),
    }))
}

/// The body of `POST /widget/v1/messages`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendInput {
    /// The script's id for this message (idempotency: a resend is not stored twice).
    client_id: String,
    content: String,
}

/// One event of the answer stream (see [`crate::sse`]).
pub(super) fn sse(event: &str, data: Value) -> Event {
    crate::sse::json_event(event, &data)
}

/// `POST /widget/v1/messages`: stores the visitor's message (once per `client_id`) and streams
/// the answer as server-sent events: `message` (a stored visible message, the visitor's first),
/// `delta` `{"text"}`, `error` `{"message"}`, `done` `{}`. A repeated `client_id` streams the
/// stored message and `done` without a new answer (the script then fetches what follows).
pub(super) async fn send(
    State(st): State<AppState>,
    VisitorRequest {
        widget: c,
        token: t,
        body: Json(input),
    }: VisitorRequest<Json<SendInput>>,
) -> Result<Response, ApiError> {
    let content = input.content.trim().to_owned();
    if content.is_empty() || content.chars().count() > MAX_VISITOR_MESSAGE_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("write a message of 1 to {MAX_VISITOR_MESSAGE_CHARS} characters"),
        )
        .with_field("content"));
    }
    let client_id = input.client_id.trim();
    check_client_id(client_id)?;
    ensure_active(&st, &c, &t).await?;
    let message = MessageInput {
        id: None,
        external_id: Some(format!("widget:{client_id}")),
        role: Role::User,
        content,
        created_at: Some(Timestamp::now()),
        model: None,
        usage: None,
        cost_nanousd: None,
        meta: Default::default(),
    };
    store_and_answer(st, &t, message, None).await
}

/// Checks a message's client id: 1-64 ASCII letters, digits, `-` and `_`.
/// Errors: 422 `validation_failed` on `client_id`.
pub(super) fn check_client_id(client_id: &str) -> Result<(), ApiError> {
    if client_id.is_empty()
        || client_id.len() > 64
        || !client_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "client_id: 1-64 characters of letters, digits, - and _",
        )
        .with_field("client_id"));
    }
    Ok(())
}

/// Checks that the visitor's conversation is still active (ending it first when it has been
/// idle too long). Errors: 409 `conversation_closed`, 404 for a conversation that is gone, the
/// store's.
pub(super) async fn ensure_active(
    st: &AppState,
    c: &WidgetRequest,
    t: &VisitorToken,
) -> Result<(), ApiError> {
    let d = st
        .store
        .conversations()
        .get_conversation(t.w, t.c)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    match expire_if_idle(st, c, t, &d.summary).await? {
        ConversationStatus::Active => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conversation_closed",
            "this conversation has ended: start a new one",
        )),
    }
}

/// Stores the visitor's `message` (once per external id: a resend finds the stored one) and
/// answers with the event stream described at [`send`]: the stored message, then the
/// assistant's answer for a fresh message, or `done` `{"duplicate": true}` for a resend.
/// `orphan` names an attachment file written for this message, removed when the message turns
/// out to be a duplicate.
async fn store_and_answer(
    st: AppState,
    t: &VisitorToken,
    message: MessageInput,
    orphan: Option<String>,
) -> Result<Response, ApiError> {
    let outcome = match ingest(
        &st,
        t.w,
        vec![IngestRequest::Append {
            conversation: t.c,
            messages: vec![message],
        }],
    )
    .await
    {
        Ok(mut o) => o.remove(0),
        Err(e) => {
            if let Some(key) = orphan {
                crate::channels::media::remove_attachments(&st, t.w, &[key]).await;
            }
            return Err(e);
        }
    };
    let (stored_id, fresh) = match outcome.messages.first() {
        Some(parley_store::MessageOutcome::Stored { id }) => (*id, true),
        Some(parley_store::MessageOutcome::Duplicate { id }) => (*id, false),
        _ => return Err(ApiError::internal("message neither stored nor found")),
    };
    if let (false, Some(key)) = (fresh, orphan) {
        crate::channels::media::remove_attachments(&st, t.w, &[key]).await;
    }
    let stored = all_messages(&st, t)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.into_iter().find(|m| m.id == stored_id));

    let (out, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    if let Some(m) = &stored {
        let _ = out.send(sse("message", visitor_message(m)));
    }
    let metrics = st.metrics.clone();
    if fresh {
        let (ws, conversation) = (t.w, t.c);
        tokio::spawn(async move {
            let (events, mut turn_events) = tokio::sync::mpsc::unbounded_channel::<TurnEvent>();
            let turn = {
                let st = st.clone();
                tokio::spawn(
                    async move { runtime::respond(&st, ws, conversation, Some(events)).await },
                )
            };
            while let Some(e) = turn_events.recv().await {
                let bytes = match e {
                    TurnEvent::Delta(text) => sse("delta", json!({"text": text})),
                    TurnEvent::Stored(m) if matches!(m.role, Role::Assistant | Role::Agent) => {
                        sse("message", visitor_message(&m))
                    }
                    _ => continue,
                };
                let _ = out.send(bytes);
            }
            match turn.await {
                Ok(Ok(runtime::TurnOutcome::NotAnswering(_))) | Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e.message, "widget turn failed");
                    let _ = out.send(sse(
                        "error",
                        json!({"message": "the assistant could not answer"}),
                    ));
                }
                Err(e) => {
                    tracing::error!(error = %e, "widget turn panicked");
                    let _ = out.send(sse(
                        "error",
                        json!({"message": "the assistant could not answer"}),
                    ));
                }
            }
            let _ = out.send(sse("done", json!({})));
        });
    } else {
        let _ = out.send(sse("done", json!({"duplicate": true})));
        drop(out);
    }
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
    Ok(res)
}

/// The checks of a recorded upload (`POST /widget/v1/voice` and `/call`): a voice mode, the
/// `client_id` query parameter, the declared audio type and the bytes really being that
/// container. Returns the client id. Errors: 403 `voice_disabled`, 422 `validation_failed`
/// (`client_id`, an empty body), 415 `unsupported_audio_type` / `audio_content_mismatch`.
pub(super) fn recording_of(c: &WidgetRequest, rec: &Recording) -> Result<String, ApiError> {
    if c.widget.settings.mode == WidgetMode::Chat {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "voice_disabled",
            "this widget takes text only: voice messages are off in its settings",
        ));
    }
    let client_id = c
        .param("client_id")
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    check_client_id(&client_id)?;
    let mime = &rec.mime;
    if !VOICE_TYPES.contains(&mime.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_audio_type",
            format!(
                "send the recording as one of {} (got {:?})",
                VOICE_TYPES.join(", "),
                mime
            ),
        ));
    }
    if rec.bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "the recording is empty",
        )
        .with_field("body"));
    }
    if !parley_core::audio::matches_declared(mime, &rec.bytes) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "audio_content_mismatch",
            format!(
                "the recording is not {mime}: expected {}",
                parley_core::audio::expected_signature(mime)
            ),
        )
        .with_field("body"));
    }
    Ok(client_id)
}

/// `POST /widget/v1/voice?key=&client_id=ID`: a recorded voice message. The body is the audio
/// itself (at most [`MAX_VOICE_BYTES`]), its `Content-Type` one of [`VOICE_TYPES`] (parameters
/// such as `;codecs=opus` allowed); `client_id` makes it idempotent as for text.
///
/// The audio is kept in the attachment storage (see [`crate::channels::media`]) as the
/// message's `meta.channel.attachments[0]` (kind `voice`; `meta.channel.type` `voice`), so the
/// API's attachment download serves it. With the widget's `transcription_model` set, the
/// assistant's provider transcribes it (`/audio/transcriptions`) and the message's text is
/// `🎤 {transcript}` (searchable like any message); without one, or when the provider fails,
/// the text is [`VOICE_NOT_TRANSCRIBED`] or [`VOICE_TRANSCRIPTION_FAILED`]. Either way the
/// assistant is asked, as for a text message (it sees that text, so without a transcript it
/// can ask the visitor to write instead), and the answer streams back as for
/// `POST /widget/v1/messages`. A repeated `client_id` streams the stored message and `done`
/// `{"duplicate": true}`, without storing or transcribing the audio again.
///
/// Only widgets in a voice mode (`voice_and_chat`, `voice`) take recordings, and the bytes must
/// be the declared container ([`parley_core::audio::matches_declared`]: WebM/Matroska, Ogg,
/// MP4, MPEG audio, RIFF/WAVE). The recording counts against the workspace's attachment quota
/// (`attachment_quota_bytes`); one that would pass it is refused.
///
/// Errors, besides the common ones: 403 `voice_disabled` (a chat-only widget), 413
/// `body_too_large`, 413 `attachment_quota_exceeded` (the workspace's attachments would pass
/// its quota: the content is larger than Parley will store for it now, RFC 9110 §15.5.14;
/// waiting does not help, so not 429), 415 `unsupported_audio_type`, 415
/// `audio_content_mismatch` (the bytes are not the declared type: RFC 9110 §15.5.16 covers
/// "inspecting the data directly"), 422 `validation_failed` (`client_id`, or an empty body),
/// 409 `conversation_closed`, 500 when the attachment storage cannot be written.
pub(super) async fn voice(
    State(st): State<AppState>,
    VisitorRequest {
        widget: c,
        token: t,
        body: rec,
    }: VisitorRequest<Recording>,
) -> Result<Response, ApiError> {
    let client_id = recording_of(&c, &rec)?;
    ensure_active(&st, &c, &t).await?;
    let external_id = format!("widget:{client_id}");
    // A resend of a stored recording: answer from the record, without storing the audio or
    // calling the provider again.
    let known = all_messages(&st, &t)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?
        .into_iter()
        .any(|m| m.external_id.as_deref() == Some(external_id.as_str()));
    let mut attachment = Attachment {
        kind: "voice".into(),
        media_id: client_id.clone(),
        mime_type: Some(rec.mime),
        ..Default::default()
    };
    let mut orphan = None;
    let content = if known {
        VOICE_NOT_TRANSCRIBED.to_owned()
    } else {
        keep_recording(&st, t.w, &mut attachment, &rec.bytes, "voice messages").await?;
        orphan = attachment.storage_key.clone();
        transcript_text(&st, &c, &t, &mut attachment).await
    };
    let message = MessageInput {
        id: None,
        external_id: Some(external_id),
        role: Role::User,
        content,
        created_at: Some(Timestamp::now()),
        model: None,
        usage: None,
        cost_nanousd: None,
        meta: MessageMeta {
            channel: Some(ChannelMessageMeta {
                kind: "voice".into(),
                attachments: vec![attachment],
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    store_and_answer(st, &t, message, orphan).await
}

/// Keeps a visitor's recording in the attachment storage (see [`crate::channels::media`]),
/// counted against the workspace's quota; `what` names the recordings in the refusal (`voice
/// messages`). Errors: 413 `attachment_quota_exceeded`, 500 when the storage cannot be
/// written.
pub(super) async fn keep_recording(
    st: &AppState,
    ws: parley_core::WorkspaceId,
    attachment: &mut Attachment,
    bytes: &[u8],
    what: &str,
) -> Result<(), ApiError> {
    use crate::channels::media::{QuotaPolicy, StoreFailure, store_attachment};
    match store_attachment(st, ws, attachment, bytes, QuotaPolicy::Refuse).await {
        Ok(()) => Ok(()),
        Err(e @ StoreFailure::QuotaExceeded { .. }) => {
            tracing::warn!(workspace = %ws, "widget {what} refused: {e}");
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "attachment_quota_exceeded",
                format!("this site cannot take more {what} right now: type your message instead"),
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "widget {what} not stored");
            Err(ApiError::internal(e.to_string()))
        }
    }
}

/// A voice message's text: `🎤 {transcript}` by the widget's `transcription_model`, else
/// [`VOICE_NOT_TRANSCRIBED`] (no model) or [`VOICE_TRANSCRIPTION_FAILED`].
async fn transcript_text(
    st: &AppState,
    c: &WidgetRequest,
    t: &VisitorToken,
    attachment: &mut Attachment,
) -> String {
    let model = &c.widget.settings.transcription_model;
    if model.is_empty() {
        return VOICE_NOT_TRANSCRIBED.to_owned();
    }
    match crate::channels::media::transcribe_with(st, t.w, t.a, model, attachment)
        .await
        .map(|text| text.trim().to_owned())
    {
        Some(text) if !text.is_empty() => format!("🎤 {text}"),
        _ => VOICE_TRANSCRIPTION_FAILED.to_owned(),
    }
}

/// The body of `POST /widget/v1/close` (optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CloseInput {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /widget/v1/close`: ends the conversation (`reason` `visitor_closed`, the default, or
/// `timeout`). Closing a closed conversation changes nothing. 200 `{"status": "closed"}`.
pub(super) async fn close(
    State(st): State<AppState>,
    VisitorRequest { token: t, body, .. }: VisitorRequest<Option<Json<CloseInput>>>,
) -> Result<Json<Value>, ApiError> {
    let reason = match body.and_then(|Json(i)| i.reason).as_deref() {
        None | Some("visitor_closed") => "visitor_closed",
        Some("timeout") => "timeout",
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "reason: visitor_closed or timeout",
            )
            .with_field("reason"));
        }
    };
    let d = st
        .store
        .conversations()
        .get_conversation(t.w, t.c)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    if d.summary.status != ConversationStatus::Active {
        return Ok(Json(json!({"status": d.summary.status.as_str()})));
    }
    let patch = ConversationPatch {
        status: Some(ConversationStatus::Closed),
        ended_at: Some(Some(Timestamp::now())),
        end_reason: Some(Some(reason.to_owned())),
        ..Default::default()
    };
    st.store
        .conversations()
        .update_conversation(t.w, t.c, &patch)
        .await?;
    Ok(Json(json!({"status": "closed"})))
}

/// The body of `POST /widget/v1/rating`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateInput {
    #[serde(deserialize_with = "parley_core::model::int::exact")]
    score: u8,
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /widget/v1/rating`: the visitor's 1-5 rating with an optional comment (up to
/// [`MAX_COMMENT_CHARS`]); a later rating replaces an earlier one. 200 `{"rated": true}`.
pub(super) async fn rate(
    State(st): State<AppState>,
    VisitorRequest {
        token: t,
        body: Json(input),
        ..
    }: VisitorRequest<Json<RateInput>>,
) -> Result<Json<Value>, ApiError> {
    if !(1..=5).contains(&input.score) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "score: 1 to 5",
        )
        .with_field("score"));
    }
    let comment = input
        .comment
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if comment
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("comment: at most {MAX_COMMENT_CHARS} characters"),
        )
        .with_field("comment"));
    }
    let patch = ConversationPatch {
        rating: Some(Some(Rating {
            score: input.score,
            comment,
            rated_at: Some(Timestamp::now()),
        })),
        ..Default::default()
    };
    st.store
        .conversations()
        .update_conversation(t.w, t.c, &patch)
        .await?;
    Ok(Json(json!({"rated": true})))
}
