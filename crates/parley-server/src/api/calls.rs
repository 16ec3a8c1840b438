//! `POST /api/v1/calls`: a phone call from an AI voice platform, as one conversation on
//! channel `voip` (issue 15).
//!
//! The call becomes:
//! - a conversation whose `external_id` is the platform's call id (a call sent again finds it
//!   and stores nothing twice), `contact` the caller, `started_at`/`ended_at`/`end_reason` the
//!   call's, status `closed`, and the client's `sentiment` when given;
//! - a first `system` message (external id `call:<call_id>`) whose `meta.channel` is of type
//!   `call`: `details` hold `caller`, `callee`, `platform`, `direction`, `duration_ms`,
//!   `end_reason` and the platform's `analysis`; its attachment of kind `recording` is the
//!   recording (uploaded as base64, or downloaded from `recording_url` by the durable
//!   `voip.recording` job through the guarded client, with retries). The call's cost
//!   (`cost_nanousd`) is that message's client cost;
//! - one message per transcript segment (external id `<call_id>:<n>`), role `user`,
//!   `assistant` or `agent` as the speaker, `created_at` = start + `start_ms`, and the offsets
//!   in `meta.channel` (type `transcript`, `details.start_ms`/`details.end_ms`, milliseconds
//!   into the recording) so the player can highlight the turn being spoken.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parley_core::channel::{Attachment, ChannelMessageMeta};
use parley_core::model::{AssistantRef, ConversationInput, MessageInput, MessageMeta, Sentiment};
use parley_core::{Channel, ConversationStatus, Role, Timestamp, WorkspaceId};
use parley_store::MessageOutcome;
use parley_store::jobs::{IngestJob, NewJob};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiJson;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::channels::media;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest_with_jobs};

/// Largest offset into a recording, in ms (10 days).
pub const MAX_OFFSET_MS: u64 = 864_000_000;

/// Most transcript segments in one call.
pub const MAX_SEGMENTS: usize = 5000;

/// Who speaks a transcript segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The caller (the customer): role `user`.
    User,
    /// The AI voice assistant: role `assistant`.
    Assistant,
    /// A human agent the call was handed to: role `agent`.
    Agent,
}

/// One turn of a call's transcript.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Who speaks.
    pub speaker: Speaker,
    /// Where the turn starts, in ms from the start of the recording.
    pub start_ms: u64,
    /// Where it ends, in ms (at least `start_ms`).
    pub end_ms: u64,
    /// What was said (not empty).
    pub text: String,
}

/// An uploaded recording.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The file, base64 (standard alphabet, padded).
    pub data_base64: String,
    /// Its MIME type (`audio/wav`, `audio/mpeg`, `audio/ogg`, `audio/webm`, `audio/mp4`).
    pub mime_type: String,
}

/// The body of `POST /api/v1/calls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallInput {
    /// The platform's call id (1-200 characters): the conversation's `external_id`.
    pub call_id: String,
    /// The assistant that took the call.
    pub assistant: AssistantRef,
    /// The platform (`retell`, `vapi`, `twilio`, or any name), for display.
    #[serde(default)]
    pub platform: Option<String>,
    /// The caller's number or SIP address.
    #[serde(default)]
    pub caller: Option<String>,
    /// The number or address called.
    #[serde(default)]
    pub callee: Option<String>,
    /// `inbound` or `outbound`.
    #[serde(default)]
    pub direction: Option<String>,
    /// When the call started (RFC 3339).
    pub started_at: Timestamp,
    /// When it ended (RFC 3339; not before `started_at`).
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
    /// Why it ended, as the platform says (`customer-ended-call`, `agent_hangup`…).
    #[serde(default)]
    pub end_reason: Option<String>,
    /// The platform's cost of the call, in nano-USD.
    #[serde(default)]
    pub cost_nanousd: Option<i64>,
    /// A URL Parley downloads the recording from (http or https; checked against the SSRF
    /// rules of the guarded client).
    #[serde(default)]
    pub recording_url: Option<String>,
    /// The recording itself, instead of a URL.
    #[serde(default)]
    pub recording: Option<Upload>,
    /// Where the platform keeps a stereo recording (one speaker per channel; http or https),
    /// kept in the call's details as `stereo_recording_url`, not downloaded.
    #[serde(default)]
    pub stereo_recording_url: Option<String>,
    /// The platform's sentiment of the call (kept as the client's).
    #[serde(default)]
    pub sentiment: Option<Sentiment>,
    /// The platform's own analysis (any JSON object), kept as sent.
    #[serde(default)]
    pub analysis: Option<serde_json::Map<String, Value>>,
    /// The timed transcript.
    #[serde(default)]
    pub transcript: Vec<Segment>,
}

/// The `voip.recording` job ([`crate::jobs::VOIP_RECORDING`]) payload: where to download the
/// recording of the job's call message from.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct RecordingJob {
    /// The recording's URL.
    pub url: String,
    /// The voice platform's connection the call came through, when it came through one: a
    /// Twilio connection's credentials are sent to Twilio's API host (and only there), and
    /// its `transcription_model` transcribes the recording once downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<parley_core::ChannelConnectionId>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        message,
    )
    .with_field(field)
}

/// A message of `role` saying `content`, everything else unset.
fn message(role: Role, content: String) -> MessageInput {
    MessageInput {
        id: None,
        external_id: None,
        role,
        content,
        created_at: None,
        model: None,
        usage: None,
        cost_nanousd: None,
        meta: MessageMeta::default(),
    }
}

/// Checks a call. Errors: 422 `validation_failed` naming the first field that breaks a rule.
pub fn validate(c: &CallInput) -> Result<(), ApiError> {
    let id = c.call_id.trim();
    if id.is_empty() || id.chars().count() > 200 {
        return Err(invalid("call_id", "call_id must be 1-200 characters"));
    }
    for (field, v) in [
        ("platform", &c.platform),
        ("caller", &c.caller),
        ("callee", &c.callee),
        ("direction", &c.direction),
        ("end_reason", &c.end_reason),
    ] {
        if let Some(v) = v
            && (v.contains('\0') || v.chars().count() > 200)
        {
            return Err(invalid(
                field,
                format!("{field}: at most 200 characters, no NUL"),
            ));
        }
    }
    if let Some(a) = &c.analysis
        && serde_json::to_string(a)
            .unwrap_or_default()
            .contains("\\u0000")
    {
        return Err(invalid("analysis", "analysis holds a NUL character"));
    }
    if let Some(end) = c.ended_at
        && end.as_millis() < c.started_at.as_millis()
    {
        return Err(invalid("ended_at", "ended_at is before started_at"));
    }
    if c.cost_nanousd.is_some_and(|n| n < 0) {
        return Err(invalid("cost_nanousd", "cost_nanousd must not be negative"));
    }
    if c.recording_url.is_some() && c.recording.is_some() {
        return Err(invalid(
            "recording",
            "give recording_url or recording, not both",
        ));
    }
    for (field, u) in [
        ("recording_url", &c.recording_url),
        ("stereo_recording_url", &c.stereo_recording_url),
    ] {
        if let Some(u) = u {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && u.len() <= 2000 => {}
                _ => {
                    return Err(invalid(
                        field,
                        format!("{field} must be an http(s) URL of at most 2000 characters"),
                    ));
                }
            }
        }
    }
    if let Some(r) = &c.recording
        && !r.mime_type.to_ascii_lowercase().starts_with("audio/")
    {
        return Err(invalid(
            "recording.mime_type",
            "the recording must be audio/*",
        ));
    }
    if c.transcript.len() > MAX_SEGMENTS {
        return Err(invalid(
            "transcript",
            format!("at most {MAX_SEGMENTS} segments"),
        ));
    }
    for (i, s) in c.transcript.iter().enumerate() {
        if s.end_ms > MAX_OFFSET_MS {
            return Err(invalid(
                &format!("transcript[{i}].end_ms"),
                format!("offsets are at most {MAX_OFFSET_MS} ms"),
            ));
        }
        if s.end_ms < s.start_ms {
            return Err(invalid(
                &format!("transcript[{i}].end_ms"),
                "end_ms is before start_ms",
            ));
        }
        if s.text.trim().is_empty() {
            return Err(invalid(&format!("transcript[{i}].text"), "text is empty"));
        }
    }
    Ok(())
}

/// The call's length in ms: `ended_at - started_at`, else the end of the last segment.
pub fn duration_ms(c: &CallInput) -> Option<u64> {
    c.ended_at
        .map(|e| (e.as_millis() - c.started_at.as_millis()).max(0) as u64)
        .or_else(|| c.transcript.iter().map(|s| s.end_ms).max())
}

/// "1:05" for 65,000 ms (hours when there are any: "1:02:03").
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The `details` of a call's `call` message: `caller`, `callee`, `platform`, `direction`,
/// `duration_ms`, `end_reason`, `stereo_recording_url` (each `null` when unknown) and the
/// platform's `analysis` when it sent one.
pub fn call_details(c: &CallInput) -> Value {
    let mut details = json!({
        "caller": c.caller, "callee": c.callee, "platform": c.platform,
        "direction": c.direction, "duration_ms": duration_ms(c), "end_reason": c.end_reason,
        "stereo_recording_url": c.stereo_recording_url,
    });
    if let Some(a) = &c.analysis {
        details["analysis"] = Value::Object(a.clone());
    }
    details
}

/// The conversation a call becomes (see the [module docs](self)). `recording` is the
/// recording attachment (stored already for an upload, to be downloaded for a URL).
pub fn to_conversation(c: &CallInput, recording: Option<Attachment>) -> ConversationInput {
    let id = c.call_id.trim();
    let duration = duration_ms(c);
    let details = call_details(c);
    let who = c.caller.as_deref().unwrap_or("unknown caller");
    let mut notice = format!("📞 Call from {who}");
    if let Some(to) = &c.callee {
        notice.push_str(&format!(" to {to}"));
    }
    if let Some(d) = duration {
        notice.push_str(&format!(" ({})", clock(d)));
    }
    let mut messages = vec![MessageInput {
        external_id: Some(format!("call:{id}")),
        cost_nanousd: c.cost_nanousd,
        created_at: Some(c.started_at),
        meta: MessageMeta {
            channel: Some(ChannelMessageMeta {
                kind: "call".into(),
                details: Some(details),
                attachments: recording.into_iter().collect(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..message(Role::System, notice)
    }];
    for (n, s) in c.transcript.iter().enumerate() {
        let role = match s.speaker {
            Speaker::User => Role::User,
            Speaker::Assistant => Role::Assistant,
            Speaker::Agent => Role::Agent,
        };
        messages.push(MessageInput {
            external_id: Some(format!("{id}:{n}")),
            created_at: Some(c.started_at.add_millis(s.start_ms as i64)),
            meta: MessageMeta {
                channel: Some(ChannelMessageMeta {
                    kind: "transcript".into(),
                    details: Some(json!({"start_ms": s.start_ms, "end_ms": s.end_ms})),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..message(role, s.text.trim().to_owned())
        });
    }
    ConversationInput {
        external_id: Some(id.to_owned()),
        status: Some(ConversationStatus::Closed),
        contact: c.caller.clone(),
        started_at: Some(c.started_at),
        ended_at: c.ended_at,
        end_reason: c.end_reason.clone(),
        sentiment: c.sentiment.clone(),
        messages,
        assistant: c.assistant.clone(),
        ..ConversationInput::for_assistant(None, Channel::Voip)
    }
}

/// Stores a call (see the [module docs](self)): the conversation and its messages in one
/// transaction, with the `voip.recording` job when the recording is to be downloaded.
/// Returns (created, conversation id). Errors: as [`crate::ingest::ingest`]; 413 for an upload
/// over [`media::MAX_ATTACHMENT_BYTES`]; 422 for an upload that is not valid base64 or would
/// pass the attachment quota.
pub async fn store_call(
    st: &AppState,
    ws: WorkspaceId,
    c: &CallInput,
) -> Result<(bool, parley_core::ConversationId), ApiError> {
    store_call_as(st, ws, c, c.call_id.trim(), None).await
}

/// The `voip.recording` job for `url`, of workspace `ws`, through connection `via`.
fn recording_job(
    ws: WorkspaceId,
    url: &str,
    via: Option<parley_core::ChannelConnectionId>,
) -> NewJob {
    let payload = RecordingJob {
        url: url.to_owned(),
        connection: via,
    };
    let mut job = NewJob::new(
        crate::jobs::VOIP_RECORDING,
        serde_json::to_string(&payload).unwrap_or_default(),
        crate::jobs::MEDIA_DOWNLOAD_ATTEMPTS,
    );
    job.workspace_id = Some(ws);
    job
}

/// [`store_call`] with the conversation's `external_id` set to `key` instead of the call id
/// (a call from a voice platform's webhook is keyed by its connection, see
/// [`crate::channels::conversation_key`]) and the recording downloaded through connection
/// `via` ([`RecordingJob::connection`]).
pub async fn store_call_as(
    st: &AppState,
    ws: WorkspaceId,
    c: &CallInput,
    key: &str,
    via: Option<parley_core::ChannelConnectionId>,
) -> Result<(bool, parley_core::ConversationId), ApiError> {
    validate(c)?;
    let mut recording = None;
    let mut uploaded_key = None;
    if let Some(up) = &c.recording {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(up.data_base64.trim())
            .map_err(|_| invalid("recording.data_base64", "not valid base64"))?;
        if bytes.len() > media::MAX_ATTACHMENT_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the recording is too large",
            ));
        }
        let mut a = recording_attachment("upload", Some(up.mime_type.clone()));
        media::store_attachment(st, ws, &mut a, &bytes, media::QuotaPolicy::Refuse)
            .await
            .map_err(|e| match e {
                media::StoreFailure::QuotaExceeded { .. } => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "quota_exceeded",
                    e.to_string(),
                ),
                media::StoreFailure::Storage(s) => ApiError::internal(&s),
            })?;
        uploaded_key = a.storage_key.clone();
        recording = Some(a);
    } else if let Some(u) = &c.recording_url {
        recording = Some(recording_attachment(u, None));
    }
    let jobs = match &c.recording_url {
        Some(url) => vec![IngestJob {
            batch: 0,
            job: recording_job(ws, url, via),
        }],
        None => Vec::new(),
    };
    let mut input = to_conversation(c, recording);
    input.external_id = Some(key.to_owned());
    let out = ingest_with_jobs(st, ws, vec![IngestRequest::Create(Box::new(input))], jobs).await;
    let out = match out {
        Ok(mut o) => o.remove(0),
        Err(e) => {
            if let Some(k) = uploaded_key {
                media::remove_attachments(st, ws, &[k]).await;
            }
            return Err(e);
        }
    };
    // A call sent again: its recording message was there already, so the upload is not kept.
    let call_message_new = matches!(out.messages.first(), Some(MessageOutcome::Stored { .. }));
    if !call_message_new && let Some(k) = uploaded_key {
        media::remove_attachments(st, ws, &[k]).await;
    }
    Ok((out.created, out.conversation_id))
}

/// The `call` message of conversation `id` (a hidden system message among its first few
/// messages), or `None` when the conversation is not a call or not in the workspace.
/// Errors: the store's.
pub async fn call_message(
    st: &AppState,
    ws: WorkspaceId,
    id: parley_core::ConversationId,
) -> Result<Option<parley_core::model::Message>, parley_store::StoreError> {
    let first = st
        .store
        .conversations()
        .list_messages(
            ws,
            id,
            &parley_core::query::TranscriptQuery {
                page: 1,
                per_page: 5,
                newest_first: false,
                include_hidden: true,
            },
        )
        .await?;
    Ok(first.and_then(|p| {
        p.items
            .into_iter()
            .find(|m| m.meta.channel.as_ref().is_some_and(|c| c.kind == "call"))
    }))
}

/// Brings a call stored before up to date with what the platform sent since (Retell's
/// `call_analyzed` after `call_ended`, or the same report again): every known field of the
/// call message's [`call_details`] that `c` has (not `null`) replaces the stored one, and the
/// conversation takes `c`'s sentiment, end time and end reason when they are given and
/// differ. Transcript turns and the recording are never touched here (the ingest that ran
/// before stored any new turn). Idempotent: a second run changes nothing. Errors: the store's.
pub async fn update_call(
    st: &AppState,
    ws: WorkspaceId,
    id: parley_core::ConversationId,
    c: &CallInput,
) -> Result<(), ApiError> {
    if let Some(m) = call_message(st, ws, id).await? {
        let Value::Object(fresh) = call_details(c) else {
            return Ok(());
        };
        crate::channels::edit_message(st, ws, m.id, None, move |_, meta| {
            let Some(ch) = meta.channel.as_mut() else {
                return (false, ());
            };
            let details = ch.details.get_or_insert_with(|| json!({}));
            let Some(stored) = details.as_object_mut() else {
                return (false, ());
            };
            let mut changed = false;
            for (k, v) in fresh {
                if !v.is_null() && stored.get(&k) != Some(&v) {
                    stored.insert(k, v);
                    changed = true;
                }
            }
            (changed, ())
        })
        .await?;
    }
    let Some(now) = st.store.conversations().get_conversation(ws, id).await? else {
        return Ok(());
    };
    let s = &now.summary;
    let mut patch = parley_core::model::ConversationPatch::default();
    if let Some(x) = &c.sentiment
        && s.sentiment.as_ref() != Some(x)
    {
        patch.sentiment = Some(Some(x.clone()));
    }
    if c.ended_at.is_some() && s.ended_at != c.ended_at {
        patch.ended_at = Some(c.ended_at);
    }
    if c.end_reason.is_some() && s.end_reason != c.end_reason {
        patch.end_reason = Some(c.end_reason.clone());
    }
    if !patch.is_empty() {
        st.store
            .conversations()
            .update_conversation(ws, id, &patch)
            .await?;
    }
    Ok(())
}

/// Gives a call stored before without a recording (Twilio's status callback came before its
/// recording's) the recording of `c`, and writes the `voip.recording` job that downloads it
/// through connection `via`. Nothing happens when `c` has no `recording_url` or the stored
/// call has a recording already, so a replay writes no second job (two deliveries at the same
/// moment may both write one: the second run finds the recording stored and ends). Errors:
/// the store's.
pub async fn add_recording(
    st: &AppState,
    ws: WorkspaceId,
    id: parley_core::ConversationId,
    c: &CallInput,
    via: Option<parley_core::ChannelConnectionId>,
) -> Result<(), ApiError> {
    let (Some(url), Some(m)) = (&c.recording_url, call_message(st, ws, id).await?) else {
        return Ok(());
    };
    if m.meta
        .channel
        .as_ref()
        .is_none_or(|ch| !ch.attachments.is_empty())
    {
        return Ok(());
    }
    // The job first: a crash before the attachment is written leaves a job that finds no
    // recording to fetch and ends, and the platform's retry (or the inbox's) comes here again.
    let mut job = recording_job(ws, url, via);
    job.conversation_id = Some(id);
    job.message_id = Some(m.id);
    st.store.jobs().enqueue(&job).await?;
    let attachment = recording_attachment(url, None);
    crate::channels::edit_message(st, ws, m.id, None, move |_, meta| {
        match meta.channel.as_mut() {
            Some(ch) if ch.attachments.is_empty() => {
                ch.attachments.push(attachment);
                (true, ())
            }
            _ => (false, ()),
        }
    })
    .await?;
    st.jobs.wake();
    Ok(())
}

/// A recording attachment not yet stored (`media_id` = where it comes from).
fn recording_attachment(source: &str, mime: Option<String>) -> Attachment {
    Attachment {
        kind: "recording".into(),
        media_id: source.to_owned(),
        mime_type: mime,
        file_name: None,
        size_bytes: None,
        sha256: None,
        storage_key: None,
        transcript: None,
        description: None,
        download_attempts: 0,
        download_error: None,
        over_quota: false,
        removed_at: None,
    }
}

/// `POST /api/v1/calls`: 201 with `{"created": true, "conversation": …}` for a new call, 200
/// with the stored one for a call id sent before (nothing is stored twice).
pub(super) async fn create(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(input): ApiJson<CallInput>,
) -> Result<Response, ApiError> {
    let (created, id) = store_call(&st, auth.workspace, &input).await?;
    let detail = st
        .store
        .conversations()
        .get_conversation(auth.workspace, id)
        .await?
        .ok_or_else(|| ApiError::internal("conversation vanished after ingest"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"created": created, "conversation": detail})),
    )
        .into_response())
}

/// The `voip.recording` job: downloads the recording of the job's call (its `call` message's
/// `recording` attachment) from the payload's URL through the guarded client, stores it (with
/// its waveform) and records it on the message. A recording stored meanwhile, or a call
/// deleted meanwhile, ends the job. Errors: `Retry` while attempts remain (the failure is
/// kept in the attachment's `download_error`), `Permanent` after the last one or for a URL
/// the SSRF rules refuse.
pub async fn download_recording(
    state: &AppState,
    job: &parley_store::jobs::Job,
) -> Result<(), crate::jobs::JobError> {
    use crate::jobs::JobError;
    let (Some(ws), Some(conversation)) = (job.workspace_id, job.conversation_id) else {
        return Err(JobError::Permanent("the job names no call".into()));
    };
    let payload: RecordingJob = serde_json::from_str(&job.payload)
        .map_err(|e| JobError::Permanent(format!("bad payload: {e}")))?;
    let Some(export) = state
        .store
        .conversations()
        .export_conversations(ws, &[conversation])
        .await?
        .pop()
    else {
        return Ok(());
    };
    let Some(call) = export
        .messages
        .into_iter()
        .find(|m| m.meta.channel.as_ref().is_some_and(|ch| ch.kind == "call"))
    else {
        return Ok(());
    };
    let message = call.id;
    let Some(mut a) = call
        .meta
        .channel
        .as_ref()
        .and_then(|ch| ch.attachments.first().cloned())
    else {
        // A recording given to a call stored before ([`add_recording`]) is attached just
        // after its job is written.
        return Err(JobError::Retry("the recording is not attached yet".into()));
    };
    if a.storage_key.is_some() {
        return Ok(());
    }
    let last = job.attempts >= job.max_attempts;
    let via = match payload.connection {
        Some(id) => state.store.channels().channel_by_id(id).await?,
        None => None,
    };
    let fetched = match state.net.request(reqwest::Method::GET, &payload.url) {
        Err(refused) => Err((refused.to_string(), false)),
        Ok(req) => {
            let req = match via
                .as_ref()
                .map(|c| platform_credentials(state, c, &payload.url))
            {
                Some(Some((user, password))) => req.basic_auth(user, Some(password)),
                _ => req,
            };
            media::fetch_bytes(req, "recording")
                .await
                .map_err(|e| (e, true))
        }
    };
    let mut outcome = match fetched {
        Ok(bytes) if bytes.len() > media::MAX_ATTACHMENT_BYTES => {
            Err(("the recording is too large".to_owned(), false))
        }
        Ok(bytes) => {
            if a.mime_type.is_none() {
                a.mime_type = Some(sniff_mime(&bytes).to_owned());
            }
            media::store_attachment(state, ws, &mut a, &bytes, media::QuotaPolicy::KeepAndFlag)
                .await
                .map_err(|e| (e.to_string(), true))
        }
        Err(e) => Err(e),
    };
    let mut transcript = None;
    if outcome.is_ok()
        && let Some(c) = &via
        && let Some(model) = crate::channels::config_str(c, "transcription_model")
    {
        transcript = media::transcribe_with(state, ws, c.assistant_id, model, &mut a).await;
    }
    a.download_attempts += 1;
    if let Err((e, retry)) = &mut outcome {
        if last || !*retry {
            *retry = false;
            *e = format!("{e} (gave up after {} attempts)", a.download_attempts);
        }
        a.download_error = Some(e.clone());
    } else {
        a.download_error = None;
    }
    let stored_key = a.storage_key.clone();
    let written = crate::channels::edit_message(state, ws, message, None, move |_, meta| {
        let Some(slot) = meta
            .channel
            .as_mut()
            .and_then(|ch| ch.attachments.get_mut(0))
        else {
            return (false, false);
        };
        if slot.storage_key.is_some() {
            return (false, false);
        }
        *slot = a;
        (true, true)
    })
    .await?;
    if written != Some(true)
        && let Some(k) = stored_key
    {
        // Stored by another run meanwhile: this copy is not needed.
        media::remove_attachments(state, ws, &[k]).await;
    }
    if written == Some(true)
        && let Some(text) = transcript
    {
        add_transcript(state, ws, conversation, &call, text).await?;
    }
    match outcome {
        Ok(()) => Ok(()),
        Err((e, true)) => Err(JobError::Retry(e)),
        Err((e, false)) => Err(JobError::Permanent(e)),
    }
}

/// The HTTP basic auth credentials (account SID, auth token) to fetch `url` with through
/// connection `c`: only for a Twilio connection, and only when `url` has the scheme, host and
/// port of Twilio's API (`twilio_api_base_url`), so a recording URL elsewhere never receives
/// them. `None` otherwise, or when the connection's secret cannot be opened (logged).
fn platform_credentials(
    state: &AppState,
    c: &parley_core::channel::ChannelConnection,
    url: &str,
) -> Option<(String, String)> {
    if c.kind != parley_core::channel::ChannelKind::Twilio {
        return None;
    }
    let (Ok(target), Ok(api)) = (
        url::Url::parse(url),
        url::Url::parse(&state.settings.twilio_api_base_url),
    ) else {
        return None;
    };
    if target.origin() != api.origin() {
        return None;
    }
    let sid = crate::channels::config_str(c, "account_sid")?.to_owned();
    match crate::channels::open_secret(state, c, "auth_token") {
        Ok(token) => Some((sid, token)),
        Err(e) => {
            tracing::warn!(connection = %c.id, error = %e, "the Twilio auth token cannot be opened");
            None
        }
    }
}

/// Adds the speech-to-text `text` of the recording of `call` (the call message) to
/// `conversation` as one `user` message spanning the recording (`start_ms` 0, `end_ms` the
/// call's `duration_ms`), external id `{call message's external id}:transcript`, so a second
/// run stores nothing twice. The provider's answer has no speaker separation, so the whole
/// call is one caller message. Errors: the store's.
async fn add_transcript(
    state: &AppState,
    ws: WorkspaceId,
    conversation: parley_core::ConversationId,
    call: &parley_core::model::Message,
    text: String,
) -> Result<(), ApiError> {
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Ok(());
    }
    let end_ms = call
        .meta
        .channel
        .as_ref()
        .and_then(|ch| ch.details.as_ref())
        .and_then(|d| d["duration_ms"].as_u64())
        .unwrap_or(0);
    let external = format!(
        "{}:transcript",
        call.external_id.as_deref().unwrap_or("call")
    );
    let m = MessageInput {
        external_id: Some(external),
        created_at: Some(call.created_at),
        meta: MessageMeta {
            channel: Some(ChannelMessageMeta {
                kind: "transcript".into(),
                details: Some(json!({"start_ms": 0, "end_ms": end_ms, "speakers": "unseparated"})),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..message(Role::User, text)
    };
    crate::ingest::ingest(
        state,
        ws,
        vec![IngestRequest::Append {
            conversation,
            messages: vec![m],
        }],
    )
    .await?;
    Ok(())
}

/// The MIME type of a downloaded recording from its first bytes (the platforms serve WAV and
/// MP3 mostly); `application/octet-stream` when it is none of the audio types Parley knows.
pub fn sniff_mime(bytes: &[u8]) -> &'static str {
    for m in [
        "audio/wav",
        "audio/ogg",
        "audio/webm",
        "audio/mp4",
        "audio/mpeg",
    ] {
        if parley_core::audio::matches_declared(m, bytes) {
            return m;
        }
    }
    "application/octet-stream"
}

/// Retell's signature check and call mapping, which live with the Retell webhook
/// ([`crate::channels::voip`]).
pub use crate::channels::voip::retell;
