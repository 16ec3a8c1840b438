//! The widget's conversation endpoints: config, start, send (streamed answer), messages after a
//! cursor, close and rating. See the [module docs](super) for the routes and errors.
//!
//! Idle timeout: the script ends a conversation itself after the widget's idle timeout; when the
//! visitor was gone meanwhile, the next request for it ends it on the server (end reason
//! `timeout`) and the visitor is asked for a rating.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::Event;
use axum::response::{Json, Response};
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

use super::{Checked, Peer, VisitorToken, check, visitor_hint, visitor_of};
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

/// Parses a JSON body, answering errors with the request's CORS headers.
fn parse<T: serde::de::DeserializeOwned>(c: &Checked, body: &[u8]) -> Result<T, Box<Response>> {
    crate::body::parse_json(body).map_err(|e| Box::new(c.answer(e)))
}

/// What every visitor request with a body starts with: the key, origin and rate checks
/// ([`check`]), the body (at most `limit` bytes) and the visitor's token ([`visitor_of`]).
/// `Err` is the response to send as it is.
pub(super) async fn visitor_request(
    st: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<(Checked, VisitorToken, Bytes), Response> {
    let hint = visitor_hint(st, headers);
    let c = check(st, query, headers, peer, hint).await?;
    let body = match body {
        Ok(b) => b,
        Err(e) => return Err(c.answer(super::body_error_for(e, limit))),
    };
    match visitor_of(st, headers, &c.widget) {
        Ok(t) => Ok((c, t, body)),
        Err(e) => Err(c.answer(e)),
    }
}

/// `GET /widget/v1/config`: what the script needs to draw the widget.
pub(super) async fn config(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Peer(peer): Peer,
) -> Response {
    let c = match check(&st, q.as_deref(), &headers, peer, None).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let s = &c.widget.settings;
    c.answer(Json(json!({
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
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartInput {
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
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Peer(peer): Peer,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let c = match check(&st, q.as_deref(), &headers, peer, None).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return c.answer(super::body_error(e)),
    };
    let input: StartInput = match parse(&c, &body) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let settings = &c.widget.settings;
    let mut variables = Vec::new();
    for f in &settings.pre_chat {
        let value = input.pre_chat.get(&f.key).and_then(Value::as_str);
        match f.check(value) {
            Ok(Some(v)) => variables.push(Variable {
                key: f.key.clone(),
                value: v,
                source: VariableSource::PreChat,
            }),
            Ok(None) => {}
            Err(message) => {
                return c.answer(
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_failed",
                        message,
                    )
                    .with_field(format!("pre_chat.{}", f.key)),
                );
            }
        }
    }
    if let Some(k) = input
        .pre_chat
        .keys()
        .find(|k| !settings.pre_chat.iter().any(|f| &f.key == *k))
    {
        return c.answer(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("{k:?} is not a field of this widget's form"),
            )
            .with_field(format!("pre_chat.{k}")),
        );
    }
    let ws = c.widget.workspace_id;
    let assistant = match st
        .store
        .assistants()
        .get_assistant(ws, c.widget.assistant_id)
        .await
    {
        Ok(Some(a)) => a,
        Ok(None) => return c.answer(ApiError::not_found("assistant")),
        Err(e) => return c.answer(ApiError::from(e)),
    };
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
    if let Err(e) = ingest(&st, ws, vec![request]).await {
        return c.answer(e);
    }
    if let Some(t) = input.tracker.as_deref() {
        super::tracker::link(&st, &c.widget, t, conversation_id).await;
    }
    let token = super::visitor_token(&st, &c.widget, conversation_id);
    c.answer((
        StatusCode::CREATED,
        Json(json!({"conversation_id": conversation_id.to_string(), "visitor_token": token})),
    ))
}

/// Ends a conversation that has been idle longer than the widget's idle timeout (end reason
/// `timeout`), so a visitor who comes back to it is asked for a rating instead of writing into
/// a stale conversation. Returns the status after the check.
async fn expire_if_idle(
    st: &AppState,
    c: &Checked,
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
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Peer(peer): Peer,
) -> Response {
    let (c, t) = match super::visitor_get(&st, q.as_deref(), &headers, peer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // `after` is a message id (a UUID) or absent; anything else is the caller's mistake, said so
    // rather than silently answering the whole transcript.
    let after: Option<MessageId> =
        match form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "after")
        {
            None => None,
            // The hyphenated form only, as the document's `format: uuid` (RFC 9562) has it.
            Some((_, v)) => match v.parse().ok().filter(|_| v.len() == 36) {
                Some(id) => Some(id),
                None => {
                    return c.answer(ApiError::bad_param(
                        "after",
                        format!("after must be a message id (a UUID), got {v:?}"),
                    ));
                }
            },
        };
    match transcript(&st, &c, &t, after).await {
        Ok(v) => c.answer(Json(v)),
        Err(e) => c.answer(e),
    }
}

/// What `GET /widget/v1/messages` answers (and the live stream's first `snapshot` event):
/// `{"messages": [...], "status", "rated"}`, the visible messages after message `after` (all
/// without it), after ending the conversation if it sat idle past the widget's timeout.
/// Errors: 404 `not_found` when the conversation is gone, a store error.
pub(super) async fn transcript(
    st: &AppState,
    c: &Checked,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendInput {
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
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Peer(peer): Peer,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (c, t, body) = match visitor_request(
        &st,
        q.as_deref(),
        &headers,
        peer,
        body,
        super::MAX_BODY_BYTES,
    )
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let input: SendInput = match parse(&c, &body) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let content = input.content.trim().to_owned();
    if content.is_empty() || content.chars().count() > MAX_VISITOR_MESSAGE_CHARS {
        return c.answer(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("write a message of 1 to {MAX_VISITOR_MESSAGE_CHARS} characters"),
            )
            .with_field("content"),
        );
    }
    let client_id = input.client_id.trim();
    if let Err(r) = check_client_id(&c, client_id) {
        return *r;
    }
    if let Err(r) = ensure_active(&st, &c, &t).await {
        return *r;
    }
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
    store_and_answer(st, &c, &t, message, None).await
}

/// Checks a message's client id: 1-64 ASCII letters, digits, `-` and `_`.
/// Errors: 422 `validation_failed` on `client_id`, with the request's CORS headers.
pub(super) fn check_client_id(c: &Checked, client_id: &str) -> Result<(), Box<Response>> {
    if client_id.is_empty()
        || client_id.len() > 64
        || !client_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(Box::new(
            c.answer(
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "client_id: 1-64 characters of letters, digits, - and _",
                )
                .with_field("client_id"),
            ),
        ));
    }
    Ok(())
}

/// Checks that the visitor's conversation is still active (ending it first when it has been
/// idle too long). Errors: 409 `conversation_closed`, 404 for a conversation that is gone, the
/// store's.
pub(super) async fn ensure_active(
    st: &AppState,
    c: &Checked,
    t: &VisitorToken,
) -> Result<(), Box<Response>> {
    let status = match st.store.conversations().get_conversation(t.w, t.c).await {
        Ok(Some(d)) => expire_if_idle(st, c, t, &d.summary).await,
        Ok(None) => Err(ApiError::not_found("conversation")),
        Err(e) => Err(ApiError::from(e)),
    };
    match status {
        Ok(ConversationStatus::Active) => Ok(()),
        Ok(_) => Err(Box::new(c.answer(ApiError::new(
            StatusCode::CONFLICT,
            "conversation_closed",
            "this conversation has ended: start a new one",
        )))),
        Err(e) => Err(Box::new(c.answer(e))),
    }
}

/// Stores the visitor's `message` (once per external id: a resend finds the stored one) and
/// answers with the event stream described at [`send`]: the stored message, then the
/// assistant's answer for a fresh message, or `done` `{"duplicate": true}` for a resend.
/// `orphan` names an attachment file written for this message, removed when the message turns
/// out to be a duplicate.
async fn store_and_answer(
    st: AppState,
    c: &Checked,
    t: &VisitorToken,
    message: MessageInput,
    orphan: Option<String>,
) -> Response {
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
            return c.answer(e);
        }
    };
    let (stored_id, fresh) = match outcome.messages.first() {
        Some(parley_store::MessageOutcome::Stored { id }) => (*id, true),
        Some(parley_store::MessageOutcome::Duplicate { id }) => (*id, false),
        _ => return c.answer(ApiError::internal("message neither stored nor found")),
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
    c.answer(res)
}

/// The checks of a recorded upload (`POST /widget/v1/voice` and `/call`): a voice mode, the
/// `client_id` query parameter, the declared audio type and the bytes really being that
/// container. Returns (client id, MIME type without parameters). Errors (answered with the
/// request's CORS headers): 403 `voice_disabled`, 422 `validation_failed` (`client_id`, an
/// empty body), 415 `unsupported_audio_type` / `audio_content_mismatch`.
pub(super) fn recording_of(
    c: &Checked,
    q: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, String), Box<Response>> {
    if c.widget.settings.mode == WidgetMode::Chat {
        return Err(Box::new(c.answer(ApiError::new(
            StatusCode::FORBIDDEN,
            "voice_disabled",
            "this widget takes text only: voice messages are off in its settings",
        ))));
    }
    let client_id = form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    check_client_id(c, &client_id)?;
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !VOICE_TYPES.contains(&mime.as_str()) {
        return Err(Box::new(c.answer(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_audio_type",
            format!(
                "send the recording as one of {} (got {:?})",
                VOICE_TYPES.join(", "),
                mime
            ),
        ))));
    }
    if body.is_empty() {
        return Err(Box::new(
            c.answer(
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "the recording is empty",
                )
                .with_field("body"),
            ),
        ));
    }
    if !parley_core::audio::matches_declared(&mime, body) {
        return Err(Box::new(
            c.answer(
                ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "audio_content_mismatch",
                    format!(
                        "the recording is not {mime}: expected {}",
                        parley_core::audio::expected_signature(&mime)
                    ),
                )
                .with_field("body"),
            ),
        ));
    }
    Ok((client_id, mime))
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
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Peer(peer): Peer,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (c, t, body) =
        match visitor_request(&st, q.as_deref(), &headers, peer, body, MAX_VOICE_BYTES).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let (client_id, mime) = match recording_of(&c, q.as_deref(), &headers, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Err(r) = ensure_active(&st, &c, &t).await {
        return *r;
    }
    let external_id = format!("widget:{client_id}");
    // A resend of a stored recording: answer from the record, without storing the audio or
    // calling the provider again.
    let known = match all_messages(&st, &t).await {
        Ok(Some(list)) => list
            .into_iter()
            .any(|m| m.external_id.as_deref() == Some(external_id.as_str())),
        Ok(None) => return c.answer(ApiError::not_found("conversation")),
        Err(e) => return c.answer(e),
    };
    let mut attachment = Attachment {
        kind: "voice".into(),
        media_id: client_id.clone(),
        mime_type: Some(mime),
        ..Default::default()
    };
    let mut orphan = None;
    let content = if known {
        VOICE_NOT_TRANSCRIBED.to_owned()
    } else {
        use crate::channels::media::{QuotaPolicy, StoreFailure, store_attachment};
        match store_attachment(&st, t.w, &mut attachment, &body, QuotaPolicy::Refuse).await {
            Ok(()) => {}
            Err(e @ StoreFailure::QuotaExceeded { .. }) => {
                tracing::warn!(workspace = %t.w, "widget voice message refused: {e}");
                return c.answer(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "attachment_quota_exceeded",
                    "this site cannot take more voice messages right now: type your message instead",
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "widget voice message not stored");
                return c.answer(ApiError::internal(e.to_string()));
            }
        }
        orphan = attachment.storage_key.clone();
        let model = c.widget.settings.transcription_model.clone();
        if model.is_empty() {
            VOICE_NOT_TRANSCRIBED.to_owned()
        } else {
            match crate::channels::media::transcribe_with(&st, t.w, t.a, &model, &mut attachment)
                .await
                .map(|text| text.trim().to_owned())
            {
                Some(text) if !text.is_empty() => format!("🎤 {text}"),
                _ => VOICE_TRANSCRIPTION_FAILED.to_owned(),
            }
        }
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
    store_and_answer(st, &c, &t, message, orphan).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseInput {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /widget/v1/close`: ends the conversation (`reason` `visitor_closed`, the default, or
/// `timeout`). Closing a closed conversation changes nothing. 200 `{"status": "closed"}`.
pub(super) async fn close(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Peer(peer): Peer,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (c, t, body) = match visitor_request(
        &st,
        q.as_deref(),
        &headers,
        peer,
        body,
        super::MAX_BODY_BYTES,
    )
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let input: CloseInput = if body.is_empty() {
        CloseInput { reason: None }
    } else {
        match parse(&c, &body) {
            Ok(i) => i,
            Err(r) => return *r,
        }
    };
    let reason = match input.reason.as_deref() {
        None | Some("visitor_closed") => "visitor_closed",
        Some("timeout") => "timeout",
        Some(_) => {
            return c.answer(
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "reason: visitor_closed or timeout",
                )
                .with_field("reason"),
            );
        }
    };
    match st.store.conversations().get_conversation(t.w, t.c).await {
        Ok(Some(d)) if d.summary.status != ConversationStatus::Active => {
            return c.answer(Json(json!({"status": d.summary.status.as_str()})));
        }
        Ok(Some(_)) => {}
        Ok(None) => return c.answer(ApiError::not_found("conversation")),
        Err(e) => return c.answer(ApiError::from(e)),
    }
    let patch = ConversationPatch {
        status: Some(ConversationStatus::Closed),
        ended_at: Some(Some(Timestamp::now())),
        end_reason: Some(Some(reason.to_owned())),
        ..Default::default()
    };
    match st
        .store
        .conversations()
        .update_conversation(t.w, t.c, &patch)
        .await
    {
        Ok(_) => c.answer(Json(json!({"status": "closed"}))),
        Err(e) => c.answer(ApiError::from(e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateInput {
    #[serde(deserialize_with = "parley_core::model::int::exact")]
    score: u8,
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /widget/v1/rating`: the visitor's 1-5 rating with an optional comment (up to
/// [`MAX_COMMENT_CHARS`]); a later rating replaces an earlier one. 200 `{"rated": true}`.
pub(super) async fn rate(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Peer(peer): Peer,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (c, t, body) = match visitor_request(
        &st,
        q.as_deref(),
        &headers,
        peer,
        body,
        super::MAX_BODY_BYTES,
    )
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let input: RateInput = match parse(&c, &body) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    if !(1..=5).contains(&input.score) {
        return c.answer(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "score: 1 to 5",
            )
            .with_field("score"),
        );
    }
    let comment = input
        .comment
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if comment
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_COMMENT_CHARS)
    {
        return c.answer(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("comment: at most {MAX_COMMENT_CHARS} characters"),
            )
            .with_field("comment"),
        );
    }
    let patch = ConversationPatch {
        rating: Some(Some(Rating {
            score: input.score,
            comment,
            rated_at: Some(Timestamp::now()),
        })),
        ..Default::default()
    };
    match st
        .store
        .conversations()
        .update_conversation(t.w, t.c, &patch)
        .await
    {
        Ok(_) => c.answer(Json(json!({"rated": true}))),
        Err(e) => c.answer(ApiError::from(e)),
    }
}
