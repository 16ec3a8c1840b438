//! `GET /conversations/{id}/messages/{message_id}/attachments/{index}`: a channel message's
//! stored file (an image, voice note, video or document a customer sent on WhatsApp or
//! Telegram) for a signed-in reviewer of the same workspace. Raster images, audio and video are
//! served inline so the transcript can show and play them; every other type is a download
//! (`Content-Disposition: attachment`), so a file a customer sent never renders as a page of
//! the dashboard's origin.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error_page;
use crate::AppState;
use crate::auth::Session;
use crate::channels::media;

/// The file, or a 404 page for an unknown conversation, message or attachment, one of
/// another workspace, or one not downloaded.
pub(super) async fn attachment(
    State(st): State<AppState>,
    session: Session,
    headers: axum::http::HeaderMap,
    Path((id, message, index)): Path<(String, String, String)>,
) -> Response {
    let not_found = || error_page(StatusCode::NOT_FOUND, "Not found", "No such attachment.");
    let (Ok(id), Ok(message), Ok(index)) = (id.parse(), message.parse(), index.parse()) else {
        return not_found();
    };
    let Ok((a, bytes)) = media::read(&st, session.user.workspace_id, id, message, index).await
    else {
        return not_found();
    };
    let mime = a
        .mime_type
        .filter(|m| HeaderValue::from_str(m).is_ok())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let disposition = if media::inline_safe(&mime) {
        "inline".to_owned()
    } else {
        let name: String = a
            .file_name
            .unwrap_or_else(|| format!("{}-{index}", a.kind))
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._- ".contains(*c))
            .collect();
        format!("attachment; filename=\"{name}\"")
    };
    // One byte range (RFC 9110 §14): the audio player seeks in a recording by asking for the
    // part it needs; browsers cannot seek in media served without ranges.
    let total = bytes.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| byte_range(v, total));
    let mut res = match range {
        Some((start, end)) => (
            StatusCode::PARTIAL_CONTENT,
            [
                (header::CONTENT_TYPE, mime),
                (header::CONTENT_DISPOSITION, disposition),
                (
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{total}"),
                ),
            ],
            bytes[start as usize..=end as usize].to_vec(),
        )
            .into_response(),
        None => (
            [
                (header::CONTENT_TYPE, mime),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            bytes,
        )
            .into_response(),
    };
    res.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Stored files never change: the browser may keep them for the session's life.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    res
}

/// `GET /conversations/{id}/messages/{message_id}/attachments/{index}/peaks`: the waveform and
/// duration of a stored audio attachment ([`crate::peaks::Peaks`] as JSON) for the player, for
/// a signed-in reviewer of the same workspace. Computed and kept beside the file on first use
/// when the file was stored before peaks existed. Errors: 404 (`{"error":…}`) for an unknown
/// conversation, message or attachment, one of another workspace, one not downloaded, or one
/// that is not audio.
pub(super) async fn peaks(
    State(st): State<AppState>,
    session: Session,
    Path((id, message, index)): Path<(String, String, String)>,
) -> Response {
    use crate::error::ApiError;
    let (Ok(id), Ok(message), Ok(index)) = (id.parse(), message.parse(), index.parse()) else {
        return ApiError::not_found("attachment").into_response();
    };
    let (a, path) = match media::locate(&st, session.user.workspace_id, id, message, index).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    if !crate::peaks::is_audio(&a.kind, a.mime_type.as_deref()) {
        return ApiError::not_found("audio attachment").into_response();
    }
    match crate::peaks::load_or_compute(&path, a.mime_type.as_deref()).await {
        Ok(p) => {
            let mut res = axum::Json(p).into_response();
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            );
            res
        }
        Err(_) => ApiError::not_found("attachment file").into_response(),
    }
}

/// The inclusive byte range a `Range: bytes=…` header asks for in a file of `total` bytes:
/// `start-end`, `start-` or `-suffix` (one range only; several, or one outside the file, give
/// `None` and the whole file is sent).
fn byte_range(header: &str, total: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (total.saturating_sub(n), total - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            total - 1
        } else {
            b.parse::<u64>().ok()?.min(total - 1)
        };
        (start, end)
    };
    (start <= end && end < total).then_some((start, end))
}
