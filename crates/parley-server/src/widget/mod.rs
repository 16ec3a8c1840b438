//! The embeddable web widget's public side: the script (`GET /widget.js`) and the endpoints it
//! calls under `/widget/v1`, for website visitors (no account, no API key).
//!
//! Every `/widget/v1` request names the assistant's public widget key (`?key=pk_...`) and must
//! come from one of the widget's allowed origins (the browser's `Origin` header, checked on the
//! request itself and answered with CORS headers for that origin only). Requests are counted per
//! key and per visitor ([`RateLimits`]), bodies are limited to [`MAX_BODY_BYTES`], and a visitor
//! reaches only their own conversation: the `X-Parley-Visitor` token returned when it starts is
//! sealed with the server's secret key (see [`crate::secrets`]) and names the workspace,
//! assistant, conversation and the widget key it was issued under; a token for anything else,
//! or from before the key was replaced, is refused.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /widget.js` | the script (no checks: it is public) |
//! | `GET /widget/v1/config` | the widget's public settings (title, colours, strings, pre-chat form) |
//! | `POST /widget/v1/conversations` | start: `{"pre_chat": {key: value}, "tracker"?}` → `{"conversation_id", "visitor_token"}` |
//! | `POST /widget/v1/messages` | send `{"client_id", "content"}`; the answer streams back (SSE) |
//! | `POST /widget/v1/voice?client_id=ID` | voice modes only: send a recording (body: the audio, up to 2 MiB, `Content-Type` `audio/webm`, `audio/ogg`, `audio/mp4`, `audio/mpeg` or `audio/wav`, and really that container); counted against the workspace's attachment quota; transcribed when the widget names a `transcription_model`; the answer streams back (SSE) |
//! | `POST /widget/v1/call?client_id=ID` | voice call: one utterance (body as for `/voice`), stored with its durable turn job; the turn's progress streams back (SSE); see [`call`] |
//! | `GET /widget/v1/call?turn=ID` | a call turn's progress (after a dropped stream) |
//! | `GET /widget/v1/speech?token=T` | a spoken answer's audio (the token comes with the turn's progress) |
//! | `GET /widget/v1/messages?after=ID` | the visitor's messages after a message id (reconnect) |
//! | `GET /widget/v1/stream?visitor=TOKEN` | the visitor's conversation live (SSE: `snapshot`, `message`, `status`); see [`live`] |
//! | `POST /widget/v1/close` | end the conversation `{"reason"?: "visitor_closed" \| "timeout"}` |
//! | `POST /widget/v1/rating` | `{"score": 1-5, "comment"?}` |
//! | `POST /widget/v1/track/session` | start or resume a tracker session (see [`tracker`]) |
//! | `POST /widget/v1/track` | record pageviews, events, triggers |
//!
//! Errors are `{"error": {"code", "message"}}`: 401 `unknown_widget_key` (unknown or revoked
//! key, nothing else said), 403 `widget_disabled`, 403 `origin_not_allowed`, 401
//! `invalid_visitor_token`, 429 `rate_limited` (with `Retry-After`), 413 `body_too_large`,
//! 422 `validation_failed`, 409 `conversation_closed`; for voice also 403 `voice_disabled`,
//! 413 `attachment_quota_exceeded`, 415 `unsupported_audio_type` and `audio_content_mismatch`;
//! for calls also 403 `call_unavailable` and 401 `invalid_speech_token`.

pub mod call;
pub mod chat;
mod extract;
pub mod live;
pub mod tracker;
pub mod ua;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parley_core::widget::WidgetRecord;
use parley_core::{AssistantId, ConversationId, WorkspaceId};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;
pub(crate) use extract::{Recording, VisitorRequest, WidgetBody, WidgetRequest};

/// The widget script, served at `/widget.js`.
pub const WIDGET_JS: &str = include_str!("../../assets/widget.js");
/// The dashboard's live-preview glue for the widget settings page.
pub const WIDGET_PREVIEW_JS: &str = include_str!("../../assets/widget-preview.js");
/// Largest request body a widget endpoint accepts, in bytes (16 KiB); voice messages have
/// their own limit ([`chat::MAX_VOICE_BYTES`]).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The header carrying the visitor token.
pub const VISITOR_HEADER: &str = "x-parley-visitor";
/// The header carrying the tracker token.
pub const TRACKER_HEADER: &str = "x-parley-tracker";

/// Requests allowed per minute, per widget key and per visitor. Adjustable at run time (tests
/// lower them).
///
/// On PostgreSQL the counts live in the database (fixed one-minute windows,
/// [`parley_store::JobStore::count_hits`]), so servers sharing it count together: a visitor
/// over the limit on one server is limited on every other. On SQLite (one server) they stay in
/// this server's memory, in `governor`'s GCRA limiters (a full minute's allowance as a burst,
/// refilled evenly over the minute).
pub struct RateLimits {
    /// Requests per minute for one widget key, all visitors together (default 600).
    pub per_key: AtomicU32,
    /// Requests per minute for one visitor (their conversation, else their IP address; default
    /// 60).
    pub per_visitor: AtomicU32,
    memory: Mutex<MemoryLimits>,
}

/// The in-memory limiters, each with the per-minute limit it was built for (rebuilt when the
/// limit changes).
#[derive(Default)]
struct MemoryLimits {
    per_key: Option<(u32, governor::DefaultKeyedRateLimiter<String>)>,
    per_visitor: Option<(u32, governor::DefaultKeyedRateLimiter<String>)>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_key", &self.per_key)
            .field("per_visitor", &self.per_visitor)
            .finish_non_exhaustive()
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_key: AtomicU32::new(600),
            per_visitor: AtomicU32::new(60),
            memory: Mutex::default(),
        }
    }
}

/// Keyed limiters forget idle keys past this many (memory stays bounded).
const MAX_TRACKED: usize = 100_000;

impl RateLimits {
    /// Counts one request of widget key `key` from `visitor`; false when either the key or the
    /// visitor is over its per-minute limit. A database failure lets the request through
    /// (logged): limits protect the service, they are not worth refusing visitors over.
    async fn allow(&self, st: &AppState, key: &str, visitor: &str) -> bool {
        let (per_key, per_visitor) = (
            self.per_key.load(Ordering::Relaxed),
            self.per_visitor.load(Ordering::Relaxed),
        );
        let (key_subject, visitor_subject) = (format!("k:{key}"), format!("v:{key}:{visitor}"));
        if st.store.backend() == "postgres" {
            let minute = parley_core::Timestamp::now().0 / 60_000 * 60_000;
            return match st
                .store
                .jobs()
                .count_hits(&[key_subject, visitor_subject], minute, minute - 120_000)
                .await
            {
                Ok(counts) => {
                    counts.first().is_none_or(|&n| n <= u64::from(per_key))
                        && counts.get(1).is_none_or(|&n| n <= u64::from(per_visitor))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not count a widget request; allowed");
                    true
                }
            };
        }
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let ok_key = governed(&mut memory.per_key, per_key, key_subject);
        let ok_visitor = governed(&mut memory.per_visitor, per_visitor, visitor_subject);
        ok_key && ok_visitor
    }
}

/// One request of `subject` against `limiter` (built, or rebuilt, for `per_minute`).
fn governed(
    limiter: &mut Option<(u32, governor::DefaultKeyedRateLimiter<String>)>,
    per_minute: u32,
    subject: String,
) -> bool {
    let Some(quota) = std::num::NonZeroU32::new(per_minute).map(governor::Quota::per_minute) else {
        return false;
    };
    if limiter.as_ref().is_none_or(|(n, _)| *n != per_minute) {
        *limiter = Some((per_minute, governor::RateLimiter::keyed(quota)));
    }
    let (_, l) = limiter.as_ref().expect("set above");
    if l.len() > MAX_TRACKED {
        l.retain_recent();
    }
    l.check_key(&subject).is_ok()
}

/// What the widget endpoints share beyond [`AppState`].
#[derive(Debug, Default)]
pub struct WidgetState {
    /// The rate limits and their counters.
    pub limits: RateLimits,
    /// The GeoIP database, when one is configured (`geoip_db`); without one, visitors' country
    /// and city stay empty.
    pub geoip: Option<tracker::GeoIp>,
}

impl WidgetState {
    /// The state for `settings`: default rate limits, and the GeoIP database if configured.
    /// Errors: the configured GeoIP file cannot be opened.
    pub fn open(settings: &crate::config::Settings) -> Result<WidgetState, String> {
        Ok(WidgetState {
            limits: RateLimits::default(),
            geoip: match &settings.geoip_db {
                Some(path) => Some(tracker::GeoIp::open(path)?),
                None => None,
            },
        })
    }
}

/// Every `/widget/v1` route (method, path), as `openapi.json` documents them (security
/// `widgetKey`); a test keeps the document, this list and the router in step.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/widget/v1/config"),
    ("POST", "/widget/v1/conversations"),
    ("POST", "/widget/v1/messages"),
    ("GET", "/widget/v1/messages"),
    ("GET", "/widget/v1/stream"),
    ("POST", "/widget/v1/voice"),
    ("POST", "/widget/v1/call"),
    ("GET", "/widget/v1/call"),
    ("GET", "/widget/v1/speech"),
    ("POST", "/widget/v1/close"),
    ("POST", "/widget/v1/rating"),
    ("POST", "/widget/v1/track/session"),
    ("POST", "/widget/v1/track"),
];

/// The routes: `/widget.js` and `/widget/v1/...`.
pub fn router(state: &AppState) -> Router<AppState> {
    let api = Router::new()
        .route("/config", get(chat::config))
        .route("/conversations", post(chat::start))
        .route("/messages", post(chat::send).get(chat::messages))
        .route(
            "/stream",
            get(live::stream).route_layer(middleware::map_request(live::visitor_from_query)),
        )
        .route(
            "/voice",
            post(chat::voice).layer(DefaultBodyLimit::max(chat::MAX_VOICE_BYTES)),
        )
        .route(
            "/call",
            post(call::post_call)
                .layer(DefaultBodyLimit::max(chat::MAX_VOICE_BYTES))
                .get(call::get_call),
        )
        .route("/speech", get(call::speech))
        .route("/close", post(chat::close))
        .route("/rating", post(chat::rate))
        .route("/track/session", post(tracker::session))
        .route("/track", post(tracker::track))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(middleware::from_fn_with_state(state.clone(), preflight));
    Router::new()
        .route("/widget.js", get(script))
        .route("/widget-preview.js", get(preview_script))
        .nest("/widget/v1", api)
}

async fn script() -> Response {
    let mut res = WIDGET_JS.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

async fn preview_script() -> Response {
    let mut res = WIDGET_PREVIEW_JS.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    res
}

/// Answers CORS preflights (`OPTIONS`): 204 with the CORS headers when the key exists and the
/// origin is allowed, 403 otherwise. Other requests pass through, and their answer gets the
/// CORS headers of the origin [`WidgetRequest`] allowed, if it did (see [`extract`]).
async fn preflight(
    axum::extract::State(st): axum::extract::State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::OPTIONS {
        let slot = extract::AllowedOrigin::default();
        req.extensions_mut().insert(slot.clone());
        let mut res = next.run(req).await;
        if let Some(origin) = slot.0.get() {
            cors(&mut res, origin);
        }
        return res;
    }
    let key = key_param(req.uri().query());
    let origin = origin_of(req.headers());
    let widget = match st.store.widgets().widget_by_key(&key).await {
        Ok(w) => w,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match (widget, origin) {
        (Some(w), Some(o)) if w.settings.allows(&o) => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            cors(&mut res, &o);
            let h = res.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type, x-parley-visitor, x-parley-tracker"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            res
        }
        _ => StatusCode::FORBIDDEN.into_response(),
    }
}
/// The `key` query parameter (empty when absent).
fn key_param(query: Option<&str>) -> String {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn origin_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Adds the CORS headers for `origin` (already checked) to `res`.
fn cors(res: &mut Response, origin: &str) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
}

/// The error for a body that could not be read: 413 `body_too_large` over the route's limit of
/// `limit` bytes, else 400 `invalid_body`.
pub(crate) fn body_error_for(
    e: axum::extract::rejection::BytesRejection,
    limit: usize,
) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the request body could not be read",
        )
    }
}

/// The client address (behind trusted proxies, the forwarded one): see [`crate::client_addr`].
pub(crate) use crate::client_addr::ClientIp as Peer;

/// What a visitor token says (sealed, so visitors cannot forge or alter it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct VisitorToken {
    /// Token format.
    pub t: String,
    /// Workspace.
    pub w: WorkspaceId,
    /// Assistant.
    pub a: AssistantId,
    /// Conversation.
    pub c: ConversationId,
    /// The widget key it was issued under ([`key_tag`]): replacing the key revokes the token.
    pub k: String,
}

impl VisitorToken {
    /// Whether the token was issued for `widget` under its current key.
    pub(crate) fn is_for(&self, widget: &WidgetRecord) -> bool {
        self.t == "visitor"
            && self.w == widget.workspace_id
            && self.a == widget.assistant_id
            && self.k == key_tag(&widget.public_key)
    }
}

/// A short fingerprint of a widget's public key (the first 16 hex digits of its SHA-256), sealed
/// into the tokens issued under it, so that the tokens stop working when the key is replaced.
/// (The key itself is public; the fingerprint only keeps the tokens short.)
pub(crate) fn key_tag(public_key: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(public_key.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The visitor token for `conversation` on `widget`, as `POST /widget/v1/conversations` returns
/// it (a conversation created another way, such as an import, can be handed to a visitor).
pub fn visitor_token(st: &AppState, widget: &WidgetRecord, conversation: ConversationId) -> String {
    seal_token(
        st,
        &VisitorToken {
            t: "visitor".into(),
            w: widget.workspace_id,
            a: widget.assistant_id,
            c: conversation,
            k: key_tag(&widget.public_key),
        },
    )
}

/// Seals a token for `value` (JSON) with the server's secret key.
pub(crate) fn seal_token<T: Serialize>(st: &AppState, value: &T) -> String {
    st.secrets
        .seal(&serde_json::to_string(value).unwrap_or_default())
}

/// Opens a sealed token. `None` when it was not sealed by this server's key or is malformed.
pub(crate) fn open_token<T: serde::de::DeserializeOwned>(st: &AppState, token: &str) -> Option<T> {
    if token.len() > 1024 {
        return None;
    }
    let plain = st.secrets.open(token).ok()?;
    serde_json::from_str(&plain).ok()
}

/// The visitor token in the request, if it is valid for `widget`.
/// Errors: 401 `invalid_visitor_token` (missing, forged, for another widget, or issued under a
/// key that has since been replaced).
pub(crate) fn visitor_of(
    st: &AppState,
    headers: &HeaderMap,
    widget: &WidgetRecord,
) -> Result<VisitorToken, ApiError> {
    headers
        .get(VISITOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| open_token::<VisitorToken>(st, t))
        .filter(|t| t.is_for(widget))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_visitor_token",
                "start a conversation first: the visitor token is missing or not valid for this widget",
            )
        })
}

/// The conversation a request's visitor token names, without checking the widget (used only to
/// pick the rate-limit subject before the key is checked).
pub(crate) fn visitor_hint(st: &AppState, headers: &HeaderMap) -> Option<String> {
    headers
        .get(VISITOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| open_token::<VisitorToken>(st, t))
        .map(|t| t.c.to_string())
}

/// A fresh public widget key: `pk_` and 32 random base62 characters.
/// Errors: the operating system's random source fails.
pub fn new_public_key() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let s: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    Ok(format!("pk_{s}"))
}
