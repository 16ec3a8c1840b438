//! Attachments of channel messages: downloading them into Parley's attachment storage
//! (`<data_dir>/attachments/<workspace>/<uuid>`), with retries, and transcribing voice notes
//! through the assistant's OpenAI-compatible provider (`POST {base_url}/audio/transcriptions`,
//! multipart `file` + `model`) when the connection names a `transcription_model`, and
//! describing images with a vision-capable model of the same provider (`POST
//! {base_url}/chat/completions` with the image as a `data:` URL) when it names a
//! `vision_model`. The web widget's voice messages use the same storage and transcription
//! ([`store_attachment`], [`transcribe_with`]).
//!
//! **Attachment quota.** Every file stored is recorded in the store with its size
//! ([`parley_store::AttachmentStore`]), which keeps each workspace's usage as a counter;
//! `attachment_quota_bytes` (settings) bounds it. A widget voice message that would pass the
//! quota is refused ([`QuotaPolicy::Refuse`]); a WhatsApp or Telegram file is still kept and
//! flagged `over_quota` ([`QuotaPolicy::KeepAndFlag`]: losing a customer's photo or voice note
//! is worse than going over), up to twice the quota, past which it is not downloaded (the
//! message is stored with a `download_error`). Only files recorded for the workspace are ever
//! served or removed: a storage key in a message that Parley did not record there (an
//! imported or forged one) reaches nothing.

use std::path::PathBuf;

use parley_core::WorkspaceId;
use parley_core::channel::{Attachment, ChannelConnection};
use serde_json::Value;
use sha2::{Digest, Sha256};

use parley_store::Admission;

use crate::AppState;
use crate::assistant::provider::Endpoint;

/// Download attempts per attachment (the first and two retries).
pub const DOWNLOAD_ATTEMPTS: u32 = 3;
/// Largest attachment Parley keeps, in bytes (WhatsApp's own limit for documents is 100 MB).
pub const MAX_ATTACHMENT_BYTES: usize = 100 * 1024 * 1024;

/// A platform's way of fetching a file by its id.
pub trait Fetch {
    /// The file's bytes. Errors: a description of the failure, for the attachment's
    /// `download_error`.
    fn fetch(
        &self,
        media_id: &str,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, String>> + Send;
}

/// The attachment storage root: `<data_dir>/attachments`.
pub fn root(state: &AppState) -> PathBuf {
    state.settings.data_dir.join("attachments")
}

/// The file a stored attachment's `storage_key` names.
pub fn path_of(state: &AppState, storage_key: &str) -> PathBuf {
    root(state).join(storage_key)
}

/// Whether `storage_key` has the shape Parley gives the keys of workspace `ws`'s files:
/// `<ws>/<uuid>` (hyphenated). Anything else (`../secret.key`, another workspace's folder) is
/// never read or removed.
pub fn key_of_workspace(ws: WorkspaceId, storage_key: &str) -> bool {
    storage_key
        .strip_prefix(&format!("{ws}/"))
        .is_some_and(|file| file.len() == 36 && uuid::Uuid::try_parse(file).is_ok())
}

/// How a file that would pass the workspace's attachment quota is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPolicy {
    /// Refused ([`StoreFailure::QuotaExceeded`]): the web widget's voice messages.
    Refuse,
    /// Kept and flagged `over_quota` while the usage stays within twice the quota, refused
    /// past that: channel media (WhatsApp, Telegram), which the customer cannot resend.
    KeepAndFlag,
}

/// Why [`store_attachment`] stored nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The workspace's attachments would pass the quota (`attachment_quota_bytes`).
    QuotaExceeded {
        /// Bytes the workspace stores now.
        used: u64,
        /// The quota, in bytes.
        quota: u64,
    },
    /// The storage or its record could not be written (a description for the logs).
    Storage(String),
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreFailure::QuotaExceeded { used, quota } => write!(
                f,
                "attachment quota exceeded: the workspace stores {used} bytes of its {quota}"
            ),
            StoreFailure::Storage(e) => f.write_str(e),
        }
    }
}

/// Sends `req` (a platform's file download, with [`super::PLATFORM_TIMEOUT`]) and returns the
/// body. Errors: a description of a transport failure or a non-2xx status (`what: HTTP 404`),
/// for the attachment's `download_error`.
pub async fn fetch_bytes(req: reqwest::RequestBuilder, what: &str) -> Result<Vec<u8>, String> {
    let res = req
        .timeout(super::PLATFORM_TIMEOUT)
        .send()
        .await
        .map_err(crate::assistant::provider::describe)?;
    if !res.status().is_success() {
        return Err(format!("{what}: HTTP {}", res.status().as_u16()));
    }
    Ok(res
        .bytes()
        .await
        .map_err(crate::assistant::provider::describe)?
        .to_vec())
}

/// A stored attachment and the path of its file (not read): attachment `index` (0-based, in
/// `meta.channel.attachments`) of message `message` in `conversation` of workspace `ws`.
/// Errors: 404 for an unknown conversation, message or attachment, or one not downloaded.
pub async fn locate(
    state: &AppState,
    ws: WorkspaceId,
    conversation: parley_core::ConversationId,
    message: parley_core::MessageId,
    index: usize,
) -> Result<(Attachment, PathBuf), crate::error::ApiError> {
    use crate::error::ApiError;
    let export = super::export_one(state, ws, conversation)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let a = export
        .messages
        .into_iter()
        .find(|m| m.id == message)
        .ok_or_else(|| ApiError::not_found("message"))?
        .meta
        .channel
        .and_then(|c| c.attachments.into_iter().nth(index))
        .ok_or_else(|| ApiError::not_found("attachment"))?;
    let key = a
        .storage_key
        .as_deref()
        .ok_or_else(|| ApiError::not_found("attachment (not downloaded)"))?;
    if !key_of_workspace(ws, key) {
        return Err(ApiError::not_found("attachment file"));
    }
    let path = path_of(state, key);
    Ok((a, path))
}

/// A stored attachment and its bytes: attachment `index` (0-based, in
/// `meta.channel.attachments`) of message `message` in `conversation` of workspace `ws`.
/// Errors: 404 for an unknown conversation, message or attachment, or one not downloaded.
pub async fn read(
    state: &AppState,
    ws: WorkspaceId,
    conversation: parley_core::ConversationId,
    message: parley_core::MessageId,
    index: usize,
) -> Result<(Attachment, Vec<u8>), crate::error::ApiError> {
    let (a, path) = locate(state, ws, conversation, message, index).await?;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|_| crate::error::ApiError::not_found("attachment file"))?;
    Ok((a, bytes))
}

/// Whether a browser may show a file of MIME type `mime` inline in the dashboard: raster
/// images, audio and video. Anything else (SVG, HTML, PDF, documents) is served as a download,
/// so a file a customer sent can never run in a reviewer's browser.
pub fn inline_safe(mime: &str) -> bool {
    let mime = mime.split(';').next().unwrap_or_default().trim();
    matches!(
        mime,
        "image/jpeg" | "image/png" | "image/gif" | "image/webp"
    ) || mime.starts_with("audio/")
        || mime.starts_with("video/")
}

/// Downloads `a` with `fetch`, up to [`DOWNLOAD_ATTEMPTS`] times (the one retry policy,
/// [`crate::retry::DOWNLOAD`]), and stores it; fills `storage_key`, `size_bytes`, `sha256` and
/// `download_attempts` (this round's attempts added to earlier ones), or `download_error` when
/// every attempt failed (the message is stored anyway, and a `media.download` job tries again
/// later: [`download_later`]). Returns whether the file is stored.
pub async fn download(
    state: &AppState,
    ws: WorkspaceId,
    a: &mut Attachment,
    fetch: &impl Fetch,
) -> bool {
    use backon::Retryable as _;
    if a.media_id.is_empty() {
        a.download_error = Some("the message names no media id".into());
        return false;
    }
    /// A failed attempt; `retry` false for one that would fail the same way again.
    struct Failed {
        error: String,
        retry: bool,
    }
    let before = a.download_attempts;
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let media_id = a.media_id.clone();
    let stored = (|| async {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = fetch
            .fetch(&media_id)
            .await
            .map_err(|error| Failed { error, retry: true })?;
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(Failed {
                error: format!("larger than {MAX_ATTACHMENT_BYTES} bytes"),
                retry: false,
            });
        }
        let mut stored = a.clone();
        match store_attachment(state, ws, &mut stored, &bytes, QuotaPolicy::KeepAndFlag).await {
            Ok(()) => Ok(stored),
            // Past twice the quota: trying again cannot help (the message is kept).
            Err(e @ StoreFailure::QuotaExceeded { .. }) => {
                tracing::warn!(media_id = %media_id, workspace = %ws, "{e}: not downloaded");
                Err(Failed {
                    error: e.to_string(),
                    retry: false,
                })
            }
            Err(e) => Err(Failed {
                error: e.to_string(),
                retry: true,
            }),
        }
    })
    .retry(crate::retry::DOWNLOAD.builder())
    .sleep(tokio::time::sleep)
    .when(|f: &Failed| f.retry)
    .notify(|f: &Failed, _| {
        tracing::warn!(media_id = %a.media_id, error = %f.error, "media download failed; retrying");
    })
    .await;
    let made = attempts.into_inner();
    match stored {
        Ok(s) => {
            *a = s;
            a.download_error = None;
            a.download_attempts = before + made;
            true
        }
        Err(f) => {
            tracing::warn!(media_id = %a.media_id, attempts = made, error = %f.error, "media download failed");
            a.download_error = Some(f.error);
            a.download_attempts = before + made;
            false
        }
    }
}

/// Transcribes a voice note or audio file and describes an image, as the connection is
/// configured to ([`transcribe_if_configured`], [`describe_if_configured`]), and puts the text
/// into the message's `content`: `🎤 transcript` in place of it, `🖼 description` on a line
/// after it.
pub async fn add_media_text(
    state: &AppState,
    c: &ChannelConnection,
    a: &mut Attachment,
    content: &mut String,
) {
    let transcript = transcribe_if_configured(state, c, a).await;
    let description = describe_if_configured(state, c, a).await;
    apply_media_text(content, transcript.as_deref(), description.as_deref());
}

/// The rule of [`add_media_text`]: `🎤 transcript` replaces the text, `🖼 description` goes on
/// a line after it.
fn apply_media_text(content: &mut String, transcript: Option<&str>, description: Option<&str>) {
    if let Some(t) = transcript {
        *content = format!("🎤 {t}");
    }
    if let Some(d) = description {
        *content = format!("{content}\n🖼 {d}");
    }
}

/// The `media.download` job ([`crate::jobs::MEDIA_DOWNLOAD`]): downloads attachment `index`
/// (the payload's) of the job's message again through connection `c`, transcribes or
/// describes it as configured, and records the outcome on the message (one atomic edit). A
/// file stored meanwhile, or a message or conversation deleted meanwhile, ends the job.
/// Errors: `Retry` while attempts remain; `Permanent` after the last one, whose error is
/// recorded on the attachment (`download_error`, "gave up after N attempts").
pub async fn download_later(
    state: &AppState,
    c: &ChannelConnection,
    job: &parley_store::jobs::Job,
) -> Result<(), crate::jobs::JobError> {
    use crate::jobs::JobError;
    let (Some(ws), Some(conversation), Some(message)) =
        (job.workspace_id, job.conversation_id, job.message_id)
    else {
        return Err(JobError::Permanent("the job names no message".into()));
    };
    let payload: Value = serde_json::from_str(&job.payload).unwrap_or(Value::Null);
    let Some(index) = payload["index"].as_u64().map(|i| i as usize) else {
        return Err(JobError::Permanent("the job names no attachment".into()));
    };
    let Some(export) = super::export_one(state, ws, conversation).await? else {
        return Ok(());
    };
    let Some(mut a) = export
        .messages
        .into_iter()
        .find(|m| m.id == message)
        .and_then(|m| m.meta.channel)
        .and_then(|ch| ch.attachments.into_iter().nth(index))
    else {
        return Ok(());
    };
    if a.storage_key.is_some() {
        return Ok(());
    }
    // Call recordings come by URL (the `voip.recording` job), never by platform media id.
    let Some(stored) = super::download_again(state, c, &mut a).await else {
        return Err(JobError::Permanent(
            "a voice platform's connection has no media to download".into(),
        ));
    };
    let last = job.attempts >= job.max_attempts;
    let (mut transcript, mut description) = (None, None);
    if stored {
        transcript = transcribe_if_configured(state, c, &mut a).await;
        description = describe_if_configured(state, c, &mut a).await;
    } else if last {
        a.download_error = Some(format!(
            "{} (gave up after {} attempts)",
            a.download_error.as_deref().unwrap_or("download failed"),
            a.download_attempts
        ));
    }
    let error = a.download_error.clone();
    super::edit_message(state, ws, message, None, move |content, meta| {
        let Some(slot) = meta
            .channel
            .as_mut()
            .and_then(|ch| ch.attachments.get_mut(index))
        else {
            return (false, ());
        };
        if slot.storage_key.is_some() {
            return (false, ());
        }
        *slot = a;
        apply_media_text(content, transcript.as_deref(), description.as_deref());
        (true, ())
    })
    .await?;
    match (stored, last) {
        (true, _) => Ok(()),
        (false, false) => Err(JobError::Retry(error.unwrap_or_default())),
        (false, true) => Err(JobError::Permanent(error.unwrap_or_default())),
    }
}

/// Stores `bytes` in the attachment storage as `<workspace>/<uuid v7>`, recorded against the
/// workspace's attachment quota (`attachment_quota_bytes`; 0 = none) under `policy`, and fills
/// `a`'s `storage_key`, `size_bytes`, `sha256` (lowercase hex) and `over_quota`. Used for
/// channel downloads and for the widget's voice messages.
/// Errors: [`StoreFailure::QuotaExceeded`] (nothing written); [`StoreFailure::Storage`] when
/// the record or the file cannot be written (a description starting with `attachment
/// storage:`). `a` is then unchanged.
pub async fn store_attachment(
    state: &AppState,
    ws: WorkspaceId,
    a: &mut Attachment,
    bytes: &[u8],
    policy: QuotaPolicy,
) -> Result<(), StoreFailure> {
    let quota = state.settings.attachment_quota_bytes;
    let limit = match (quota, policy) {
        (0, _) => None,
        (q, QuotaPolicy::Refuse) => Some(q),
        (q, QuotaPolicy::KeepAndFlag) => Some(q.saturating_mul(2)),
    };
    let key = format!("{ws}/{}", uuid::Uuid::now_v7());
    let storage =
        |e: &dyn std::fmt::Display| StoreFailure::Storage(format!("attachment storage: {e}"));
    let size = bytes.len() as u64;
    let used = match state
        .store
        .attachments()
        .record_attachment(ws, &key, size, limit, parley_core::Timestamp::now())
        .await
        .map_err(|e| storage(&e))?
    {
        Admission::Recorded(usage) => usage.bytes,
        Admission::OverLimit(usage) => {
            return Err(StoreFailure::QuotaExceeded {
                used: usage.bytes,
                quota,
            });
        }
    };
    let path = path_of(state, &key);
    let written = async {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&path, bytes).await
    }
    .await;
    if let Err(e) = written {
        if let Err(f) = state
            .store
            .attachments()
            .forget_attachments(ws, &[key])
            .await
        {
            tracing::warn!(error = %f, "could not forget an attachment that was not written");
        }
        return Err(storage(&e));
    }
    if crate::peaks::is_audio(&a.kind, a.mime_type.as_deref()) {
        // The player's waveform, computed once while the bytes are at hand.
        let peaks = crate::peaks::compute_blocking(bytes.to_vec(), a.mime_type.as_deref()).await;
        crate::peaks::write_sidecar(&path, &peaks).await;
    }
    a.storage_key = Some(key);
    a.size_bytes = Some(size);
    a.sha256 = Some(
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    );
    a.over_quota = quota > 0 && used > quota;
    if a.over_quota {
        tracing::warn!(workspace = %ws, used, quota, "attachment stored over the workspace's quota");
    }
    Ok(())
}

/// Removes stored attachments of workspace `ws`: forgets their records (and their bytes in the
/// workspace's usage), then removes the files of the keys that were the workspace's records;
/// other keys are left alone. Failures are logged, not returned.
pub async fn remove_attachments(state: &AppState, ws: WorkspaceId, storage_keys: &[String]) {
    if storage_keys.is_empty() {
        return;
    }
    let forgotten = match state
        .store
        .attachments()
        .forget_attachments(ws, storage_keys)
        .await
    {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "could not forget attachments; their files stay");
            return;
        }
    };
    for key in forgotten {
        let path = path_of(state, &key);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::warn!(key, error = %e, "could not remove an attachment");
        }
        // Its waveform, when it is audio (absent otherwise).
        let _ = tokio::fs::remove_file(crate::peaks::sidecar_of(&path)).await;
    }
}

/// Transcribes a downloaded voice note or audio file when the connection names a
/// `transcription_model` and the assistant has a provider; stores the text on the attachment
/// and returns it. Failures are logged and leave the attachment untranscribed.
pub async fn transcribe_if_configured(
    state: &AppState,
    c: &ChannelConnection,
    a: &mut Attachment,
) -> Option<String> {
    if !matches!(a.kind.as_str(), "voice" | "audio") {
        return None;
    }
    let model = super::config_str(c, "transcription_model")?.to_owned();
    transcribe_with(state, c.workspace_id, c.assistant_id, &model, a).await
}

/// Transcribes a stored voice or audio attachment with `model` through the provider of
/// `assistant` (`POST {base_url}/audio/transcriptions`); stores the text on the attachment
/// and returns it. `None` when the assistant has no usable provider, the file is not stored,
/// or the provider fails (logged). Used by the channels and by the widget's voice messages.
pub async fn transcribe_with(
    state: &AppState,
    ws: WorkspaceId,
    assistant: parley_core::AssistantId,
    model: &str,
    a: &mut Attachment,
) -> Option<String> {
    let key = a.storage_key.clone()?;
    let assistant = state
        .store
        .assistants()
        .get_assistant(ws, assistant)
        .await
        .ok()
        .flatten()?;
    let endpoint = usable_endpoint(state, &assistant, model)?;
    let bytes = tokio::fs::read(path_of(state, &key)).await.ok()?;
    match transcribe(&endpoint, model, a, bytes).await {
        Ok(text) => {
            a.transcript = Some(text.clone());
            Some(text)
        }
        Err(e) => {
            tracing::warn!(media_id = %a.media_id, error = %e, "transcription failed");
            None
        }
    }
}

/// The assistant's provider, resolved, when it may be asked for `model` (an operator provider
/// allows only its listed models, for transcription and vision as for chat). `None` (logged)
/// otherwise.
fn usable_endpoint(
    state: &AppState,
    assistant: &parley_core::model::Assistant,
    model: &str,
) -> Option<Endpoint> {
    let endpoint = match Endpoint::resolve(assistant.settings.provider.as_ref()?, state) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(assistant = %assistant.id, error = %e, "media not transcribed or described");
            return None;
        }
    };
    if !endpoint.allows(model) {
        tracing::warn!(assistant = %assistant.id, model,
            "the operator's provider does not offer this model; media not transcribed or described");
        return None;
    }
    Some(endpoint)
}

/// Describes a downloaded image when the connection names a `vision_model` and the assistant
/// has a provider; stores the text on the attachment and returns it. Failures are logged and
/// leave the attachment undescribed.
pub async fn describe_if_configured(
    state: &AppState,
    c: &ChannelConnection,
    a: &mut Attachment,
) -> Option<String> {
    if a.kind != "image" {
        return None;
    }
    let model = super::config_str(c, "vision_model")?.to_owned();
    let key = a.storage_key.clone()?;
    let assistant = state
        .store
        .assistants()
        .get_assistant(c.workspace_id, c.assistant_id)
        .await
        .ok()
        .flatten()?;
    let endpoint = usable_endpoint(state, &assistant, &model)?;
    let bytes = tokio::fs::read(path_of(state, &key)).await.ok()?;
    match describe(state, &endpoint, &model, a, &bytes).await {
        Ok(text) => {
            a.description = Some(text.clone());
            Some(text)
        }
        Err(e) => {
            tracing::warn!(media_id = %a.media_id, error = %e, "image description failed");
            None
        }
    }
}

/// Asks the vision model for a short description of the image (non-streamed chat completion).
async fn describe(
    state: &AppState,
    endpoint: &Endpoint,
    model: &str,
    a: &Attachment,
    bytes: &[u8],
) -> Result<String, String> {
    use base64::Engine as _;
    let mime = a.mime_type.as_deref().unwrap_or("image/jpeg");
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    let body = serde_json::json!({
        "model": model,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe this image a customer sent, in one or two sentences, for the support team."},
            {"type": "image_url", "image_url": {"url": format!("data:{mime};base64,{data}")}}
        ]}],
    });
    let res = endpoint
        .request(reqwest::Method::POST, "chat/completions")
        .timeout(state.settings.provider_timeout.max(super::PLATFORM_TIMEOUT))
        .json(&body)
        .send()
        .await
        .map_err(crate::assistant::provider::describe)?;
    let answer = provider_answer(res).await?;
    answer["choices"][0]["message"]["content"]
        .as_str()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the answer has no text".to_owned())
}

/// The JSON answer of an OpenAI-compatible endpoint. Errors: a body that is not JSON; for an
/// HTTP error, `HTTP {status}: {error.message}`.
async fn provider_answer(res: reqwest::Response) -> Result<Value, String> {
    let status = res.status();
    let answer: Value = res.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "HTTP {}: {}",
            status.as_u16(),
            answer["error"]["message"]
        ));
    }
    Ok(answer)
}

/// `POST {base_url}/audio/transcriptions` (OpenAI-compatible), multipart form with `model` and
/// `file`; returns the answer's `text`.
async fn transcribe(
    endpoint: &Endpoint,
    model: &str,
    a: &Attachment,
    bytes: Vec<u8>,
) -> Result<String, String> {
    let mime = a.mime_type.as_deref().unwrap_or("audio/ogg");
    // Providers tell the format by the file name's extension.
    let ext = match mime.split(';').next().unwrap_or("").trim() {
        m if m.contains("mpeg") || m.contains("mp3") => "mp3",
        "audio/webm" => "webm",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "audio/aac" => "m4a",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        _ => "ogg",
    };
    // reqwest's multipart encoder (RFC 7578) writes the boundary and part headers.
    let file = reqwest::multipart::Part::bytes(bytes)
        .file_name(format!("voice.{ext}"))
        .mime_str(mime)
        .map_err(|e| format!("media type {mime:?}: {e}"))?;
    let form = reqwest::multipart::Form::new()
        .text("model", model.to_owned())
        .part("file", file);
    let res = endpoint
        .request(reqwest::Method::POST, "audio/transcriptions")
        .timeout(super::PLATFORM_TIMEOUT)
        .multipart(form)
        .send()
        .await
        .map_err(crate::assistant::provider::describe)?;
    let answer = provider_answer(res).await?;
    answer["text"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the answer has no text".to_owned())
}

/// Longest text sent to `/audio/speech` in one request, in characters (OpenAI's limit for
/// `input`); a longer answer is spoken up to there.
pub const MAX_SPEECH_INPUT_CHARS: usize = 4096;

/// What to speak and how: the provider's text-to-speech `model`, its `voice` and the audio
/// `format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechRequest {
    /// The text-to-speech model (`tts-1`...).
    pub model: String,
    /// The voice (`alloy`...).
    pub voice: String,
    /// The audio format asked for (`response_format`).
    pub format: parley_core::widget::SpeechFormat,
}

/// Speaks `text` through the provider of `assistant` (`POST {base_url}/audio/speech`, JSON
/// `{"model", "input", "voice", "response_format"}`, answered with the audio bytes; OpenAI's
/// text-to-speech API, which OpenAI-compatible servers follow). The provider's URL is the
/// tenant's, so the request goes through the guarded client like every provider call.
/// Errors: a description for the logs (no usable provider or model, a transport failure, a
/// non-2xx status, an empty or oversized body, or bytes that are not the asked format).
pub async fn synthesize_speech(
    state: &AppState,
    ws: WorkspaceId,
    assistant: parley_core::AssistantId,
    speech: &SpeechRequest,
    text: &str,
) -> Result<Vec<u8>, String> {
    let assistant = state
        .store
        .assistants()
        .get_assistant(ws, assistant)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the assistant is gone")?;
    let endpoint = usable_endpoint(state, &assistant, &speech.model)
        .ok_or("the assistant has no provider offering the speech model")?;
    let input: String = text.chars().take(MAX_SPEECH_INPUT_CHARS).collect();
    let res = endpoint
        .request(reqwest::Method::POST, "audio/speech")
        .timeout(super::PLATFORM_TIMEOUT)
        .json(&serde_json::json!({
            "model": speech.model,
            "input": input,
            "voice": speech.voice,
            "response_format": speech.format.as_str(),
        }))
        .send()
        .await
        .map_err(crate::assistant::provider::describe)?;
    let status = res.status();
    let bytes = res
        .bytes()
        .await
        .map_err(crate::assistant::provider::describe)?;
    if !status.is_success() {
        let why: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        return Err(format!(
            "HTTP {}: {}",
            status.as_u16(),
            why["error"]["message"]
        ));
    }
    if bytes.is_empty() || bytes.len() > MAX_ATTACHMENT_BYTES {
        return Err(format!("the provider sent {} bytes of speech", bytes.len()));
    }
    let mime = speech.format.mime_type();
    if !parley_core::audio::matches_declared(mime, &bytes) {
        return Err(format!("the provider's speech is not {mime}"));
    }
    Ok(bytes.to_vec())
}

/// Deletes a conversation with its stored attachments (DESIGN.md section 4: deleting a
/// conversation deletes its blobs): a batch of one of [`crate::retention::delete_conversations`],
/// the one delete path. Returns false if it was not in the workspace. Errors: the store's; a
/// file that cannot be removed is logged, not an error.
pub async fn delete_conversation(
    state: &AppState,
    ws: WorkspaceId,
    id: parley_core::ConversationId,
) -> Result<bool, parley_store::StoreError> {
    let done = crate::retention::delete_conversations(state, ws, &[id]).await?;
    Ok(!done.conversations.is_empty())
}
