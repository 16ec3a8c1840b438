//! What WhatsApp and Messenger share as Meta platforms: the webhook verification handshake,
//! the `X-Hub-Signature-256` check of a delivery, routing a delivery to another sender of the
//! same Meta app, and the Graph API's error object.
//!
//! Sources: Meta's "Getting Started with Webhooks" (verification requests, validating payloads:
//! <https://developers.facebook.com/docs/graph-api/webhooks/getting-started>) and "Handling
//! Errors" (<https://developers.facebook.com/docs/graph-api/guides/error-handling>).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use parley_core::channel::ChannelConnection;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::open_secret;
use crate::AppState;
use crate::error::ApiError;

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// `sha256=<hex>`: the `X-Hub-Signature-256` value Meta sends for `body` signed with
/// `app_secret`.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    Missing,
    /// Not `sha256=` followed by 64 hex digits, or not the body's HMAC.
    Invalid,
}

/// Checks `header` (`sha256=<hex>`) against the HMAC-SHA256 of `body` keyed with `app_secret`,
/// in constant time.
pub fn verify_signature(
    app_secret: &str,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let digest = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(unhex)
        .ok_or(SignatureError::Invalid)?;
    let mut mac =
        HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&digest)
        .map_err(|_| SignatureError::Invalid)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Meta's webhook verification handshake for connection `c` (WhatsApp and Messenger alike):
/// 200 with `hub.challenge` as plain text when `hub.mode` is `subscribe` and
/// `hub.verify_token` is the connection's verify token (compared in constant time); 403
/// `verification_failed` otherwise. `platform` names it in the logs.
pub(crate) fn handshake(
    st: &AppState,
    c: &ChannelConnection,
    query: Option<String>,
    platform: &str,
) -> Result<Response, ApiError> {
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "hub.mode" => mode = Some(v.into_owned()),
            "hub.verify_token" => token = Some(v.into_owned()),
            "hub.challenge" => challenge = Some(v.into_owned()),
            _ => {}
        }
    }
    let expected = open_secret(st, c, "verify_token").map_err(ApiError::internal)?;
    let token_ok = token
        .as_deref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
    match (mode.as_deref(), challenge) {
        (Some("subscribe"), Some(challenge)) if token_ok => {
            tracing::info!(connection = %c.id, platform, "webhook verified");
            Ok((StatusCode::OK, challenge).into_response())
        }
        _ => {
            tracing::warn!(connection = %c.id, platform, "webhook verification refused");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "verification_failed",
                "hub.mode must be subscribe and hub.verify_token the connection's verify token",
            ))
        }
    }
}

/// Checks a Meta webhook delivery of connection `c` (WhatsApp and Messenger alike): its
/// `X-Hub-Signature-256` against the raw body with the connection's app secret (401
/// `signature_missing`, 403 `signature_invalid`, both logged), then that the body is JSON (400
/// `invalid_json`). `platform` names it in the logs.
pub(crate) fn check_delivery(
    st: &AppState,
    c: &ChannelConnection,
    headers: &HeaderMap,
    body: &[u8],
    platform: &str,
) -> Result<(), ApiError> {
    let app_secret = open_secret(st, c, "app_secret").map_err(ApiError::internal)?;
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(&app_secret, body, header) {
        tracing::warn!(connection = %c.id, platform, reason = ?e, bytes = body.len(),
            "refused a webhook delivery with a bad signature");
        return Err(match e {
            SignatureError::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "signature_missing",
                "X-Hub-Signature-256 is required",
            ),
            SignatureError::Invalid => ApiError::new(
                StatusCode::FORBIDDEN,
                "signature_invalid",
                "X-Hub-Signature-256 does not match the body",
            ),
        });
    }
    super::check_json(body)
}

/// The connection of sender `key` (a WhatsApp phone number id, a Page id) of `c`'s kind when
/// it belongs to the same Meta app as `c` (same workspace, same app secret): Meta sends every
/// sender of an app to the app's one callback URL, so a delivery that arrived at `c`'s webhook
/// (its signature checked with that app's secret) may be for another connected sender of the
/// app. `None` for a sender that is not connected, or connected through another app or
/// workspace.
pub(crate) async fn same_app_sender(
    state: &AppState,
    c: &ChannelConnection,
    key: &str,
) -> Option<ChannelConnection> {
    let other = state
        .store
        .channels()
        .channel_by_key(c.kind, key)
        .await
        .ok()
        .flatten()?;
    let same_app = other.workspace_id == c.workspace_id
        && open_secret(state, &other, "app_secret").ok()?
            == open_secret(state, c, "app_secret").ok()?;
    same_app.then_some(other)
}

/// A Graph API error object: the `error` of an HTTP error body (`{"message", "type", "code",
/// "error_subcode", "fbtrace_id"}`), or an element of a WhatsApp webhook's `errors[]` (`{"code",
/// "title", "message", "error_data": {"details"}}`). Source: Meta's "Handling Errors"
/// (<https://developers.facebook.com/docs/graph-api/guides/error-handling>) and the WhatsApp
/// Cloud API's error codes
/// (<https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes>).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GraphError {
    /// Meta's error code (`131047`, `190`...).
    pub code: Option<i64>,
    /// A short title (WhatsApp).
    pub title: Option<String>,
    /// The description.
    pub message: Option<String>,
    /// The error type (`OAuthException`), in HTTP error bodies.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The subcode that narrows `code` down.
    pub error_subcode: Option<i64>,
    /// `{"details"}`: WhatsApp's explanation.
    pub error_data: Option<GraphErrorData>,
}

/// `error_data` of a [`GraphError`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GraphErrorData {
    /// What went wrong, in words.
    pub details: Option<String>,
}

/// A Graph API HTTP error body: `{"error": {...}}` ([`GraphError`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GraphErrorBody {
    /// The error object.
    #[serde(default)]
    pub error: GraphError,
}

/// The JSON answer of a platform API, read into `T`; `T::default()` for a body that is not JSON
/// or not of `T`'s shape (then every field reads as missing, as the callers expect of a broken
/// answer).
pub(crate) async fn answer<T: serde::de::DeserializeOwned + Default>(res: reqwest::Response) -> T {
    match res.bytes().await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => T::default(),
    }
}
