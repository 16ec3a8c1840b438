//! Attachments of channel messages: downloading them into Parley's attachment storage
//! (`<data_dir>/attachments/<workspace>/<uuid>`), with retries, and transcribing voice notes
//! through the assistant's OpenAI-compatible provider (`POST {base_url}/audio/transcriptions`,
//! multipart `file` + `model`) when the connection names a `transcription_model`, and
//! describing images with a vision-capable model of the same provider (`POST
//! {base_url}/chat/completions` with the image as a `data:` URL) when it names a
//! `vision_model`. The web widget's voice messages use the same storage and transcription
//! ([`store_attachment`], [`transcribe_with`]).

use std::path::PathBuf;

use parley_core::WorkspaceId;
use parley_core::channel::{Attachment, ChannelConnection};
use serde_json::Value;
use sha2::{Digest, Sha256};

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
    use crate::error::ApiError;
    let export = state
        .store
        .export_conversations(ws, &[conversation])
        .await?
        .pop()
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
    let bytes = tokio::fs::read(path_of(state, key))
        .await
        .map_err(|_| ApiError::not_found("attachment file"))?;
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

/// Downloads `a` with `fetch`, up to [`DOWNLOAD_ATTEMPTS`] times (waiting
/// [`super::whatsapp::retry_delay`] between attempts), and stores it; fills `storage_key`,
/// `size_bytes`, `sha256` and `download_attempts`, or `download_error` when every attempt
/// failed (the message is stored anyway).
pub async fn download(state: &AppState, ws: WorkspaceId, a: &mut Attachment, fetch: &impl Fetch) {
    if a.media_id.is_empty() {
        a.download_error = Some("the message names no media id".into());
        return;
    }
    for attempt in 1..=DOWNLOAD_ATTEMPTS {
        a.download_attempts = attempt;
        let result = match fetch.fetch(&a.media_id).await {
            Ok(bytes) if bytes.len() > MAX_ATTACHMENT_BYTES => {
                a.download_error = Some(format!("larger than {MAX_ATTACHMENT_BYTES} bytes"));
                return;
            }
            Ok(bytes) => store_attachment(state, ws, a, &bytes).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                a.download_error = None;
                return;
            }
            Err(e) => {
                tracing::warn!(media_id = %a.media_id, attempt, error = %e, "media download failed");
                a.download_error = Some(e);
                if attempt < DOWNLOAD_ATTEMPTS {
                    tokio::time::sleep(super::whatsapp::retry_delay(attempt)).await;
                }
            }
        }
    }
}

/// Stores `bytes` in the attachment storage as `<workspace>/<uuid v7>` and fills `a`'s
/// `storage_key`, `size_bytes` and `sha256` (lowercase hex). Used for channel downloads and
/// for the widget's voice messages. Errors: the directory or file cannot be written (a
/// description starting with `attachment storage:`); `a` is then unchanged.
pub async fn store_attachment(
    state: &AppState,
    ws: WorkspaceId,
    a: &mut Attachment,
    bytes: &[u8],
) -> Result<(), String> {
    let key = format!("{ws}/{}", uuid::Uuid::now_v7());
    let path = path_of(state, &key);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("attachment storage: {e}"))?;
    }
    tokio::fs::write(&path, bytes)
        .await
        .map_err(|e| format!("attachment storage: {e}"))?;
    a.storage_key = Some(key);
    a.size_bytes = Some(bytes.len() as u64);
    a.sha256 = Some(
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    );
    Ok(())
}

/// Removes a stored attachment's file (`storage_key`); a failure is logged, not returned.
pub async fn remove_attachment(state: &AppState, storage_key: &str) {
    if let Err(e) = tokio::fs::remove_file(path_of(state, storage_key)).await {
        tracing::warn!(key = storage_key, error = %e, "could not remove an attachment");
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
        .get_assistant(ws, assistant)
        .await
        .ok()
        .flatten()?;
    let endpoint = Endpoint::resolve(assistant.settings.provider.as_ref()?, &state.secrets).ok()?;
    let bytes = tokio::fs::read(path_of(state, &key)).await.ok()?;
    match transcribe(state, &endpoint, model, a, bytes).await {
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
        .get_assistant(c.workspace_id, c.assistant_id)
        .await
        .ok()
        .flatten()?;
    let endpoint = Endpoint::resolve(assistant.settings.provider.as_ref()?, &state.secrets).ok()?;
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
        .request(&state.http, reqwest::Method::POST, "chat/completions")
        .timeout(state.settings.provider_timeout.max(super::PLATFORM_TIMEOUT))
        .json(&body)
        .send()
        .await
        .map_err(crate::assistant::provider::describe)?;
    let status = res.status();
    let answer: Value = res.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "HTTP {}: {}",
            status.as_u16(),
            answer["error"]["message"]
        ));
    }
    answer["choices"][0]["message"]["content"]
        .as_str()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the answer has no text".to_owned())
}

/// `POST {base_url}/audio/transcriptions` (OpenAI-compatible), multipart form with `model` and
/// `file`; returns the answer's `text`.
async fn transcribe(
    state: &AppState,
    endpoint: &Endpoint,
    model: &str,
    a: &Attachment,
    bytes: Vec<u8>,
) -> Result<String, String> {
    let boundary = format!("parley-{}", uuid::Uuid::now_v7().simple());
    let mime = a.mime_type.as_deref().unwrap_or("audio/ogg");
    // Providers tell the format by the file name's extension.
    let ext = match mime.split(';').next().unwrap_or("").trim() {
        m if m.contains("mpeg") || m.contains("mp3") => "mp3",
        "audio/webm" => "webm",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "audio/aac" => "m4a",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        _ => "ogg",
    };
    let mut body = Vec::with_capacity(bytes.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"voice.{ext}\"\r\n\
             Content-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let res = endpoint
        .request(&state.http, reqwest::Method::POST, "audio/transcriptions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .timeout(super::PLATFORM_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(crate::assistant::provider::describe)?;
    let status = res.status();
    let answer: Value = res.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "HTTP {}: {}",
            status.as_u16(),
            answer["error"]["message"]
        ));
    }
    answer["text"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the answer has no text".to_owned())
}

/// Deletes a conversation with its stored attachments (DESIGN.md section 4: deleting a
/// conversation deletes its blobs): the record first, in its one transaction, then the files
/// its channel messages kept. Returns false if it was not in the workspace. Errors: the
/// store's; a file that cannot be removed is logged, not an error.
pub async fn delete_conversation(
    state: &AppState,
    ws: WorkspaceId,
    id: parley_core::ConversationId,
) -> Result<bool, parley_store::StoreError> {
    let mut keys = Vec::new();
    let summary = state.store.get_conversation(ws, id).await?;
    if summary.as_ref().is_some_and(|d| {
        matches!(
            d.summary.channel,
            parley_core::Channel::Whatsapp
                | parley_core::Channel::Telegram
                | parley_core::Channel::Widget
        )
    }) {
        for export in state.store.export_conversations(ws, &[id]).await? {
            for m in export.messages {
                for a in m.meta.channel.into_iter().flat_map(|c| c.attachments) {
                    keys.extend(a.storage_key);
                }
            }
        }
    }
    if !state.store.delete_conversation(ws, id).await? {
        return Ok(false);
    }
    for key in keys {
        remove_attachment(state, &key).await;
    }
    Ok(true)
}
