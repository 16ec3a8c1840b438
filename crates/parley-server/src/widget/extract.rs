//! The widget endpoints' extractors: [`WidgetRequest`] (the public key, the origin, the switch
//! and the rate limits checked) and [`VisitorRequest`] (that, the visitor token and the body).
//!
//! CORS: the router's middleware ([`super::router`]) puts an empty [`AllowedOrigin`] slot in
//! every `/widget/v1` request; [`WidgetRequest`] fills it once the origin is allowed, and the
//! middleware then adds that origin's CORS headers to whatever the request is answered with
//! (the handler's answer, an error it returned, a later extractor's rejection). A request
//! refused before its origin is known (unknown key, origin not allowed) gets none.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use parley_core::widget::WidgetRecord;
use serde::de::DeserializeOwned;

use super::{MAX_BODY_BYTES, Peer, VisitorToken, body_error_for, key_param, origin_of};
use crate::AppState;
use crate::error::ApiError;

/// The allowed origin of the request being answered, set by [`WidgetRequest`] and read by the
/// router's middleware to add the CORS headers (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedOrigin(pub Arc<OnceLock<String>>);

/// A `/widget/v1` request that passed the checks every widget request starts with: a known
/// public key (`?key=pk_...`), an allowed `Origin`, the widget switched on, and the per-key and
/// per-visitor rate limits ([`super::RateLimits`]; as an extractor it counts the visitor by
/// the client address, see [`WidgetRequest::check`] for other subjects).
///
/// Rejections (as they are answered): 401 `unknown_widget_key`, 403 `origin_not_allowed`, 403
/// `widget_disabled`, 429 `rate_limited` with `Retry-After: 60`; a store failure is 500.
#[derive(Debug)]
pub(crate) struct WidgetRequest {
    /// The widget the key names.
    pub widget: WidgetRecord,
    /// The request's query string (`key` and the route's own parameters), raw.
    query: Option<String>,
}

impl WidgetRequest {
    /// The checks of [`WidgetRequest`], counting the request against `visitor` (a conversation
    /// or tracker session id) when known, else against the client address.
    pub(crate) async fn check(
        parts: &mut Parts,
        st: &AppState,
        visitor: Option<String>,
    ) -> Result<WidgetRequest, Response> {
        let key = key_param(parts.uri.query());
        if !key.starts_with("pk_") || key.len() > 64 {
            return Err(unknown_key());
        }
        let widget = match st.store.widgets().widget_by_key(&key).await {
            Ok(Some(w)) => w,
            Ok(None) => return Err(unknown_key()),
            Err(e) => return Err(ApiError::from(e).into_response()),
        };
        let Some(origin) = origin_of(&parts.headers).filter(|o| widget.settings.allows(o)) else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this site is not allowed to use this widget: add its origin to the widget's allowed origins",
            )
            .into_response());
        };
        if let Some(slot) = parts.extensions.get::<AllowedOrigin>() {
            let _ = slot.0.set(origin);
        }
        if !widget.settings.enabled {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "widget_disabled",
                "this widget is switched off",
            )
            .into_response());
        }
        let visitor = match visitor {
            Some(v) => v,
            None => {
                let Ok(Peer(peer)) = Peer::from_request_parts(parts, st).await;
                peer.map_or_else(|| "unknown".into(), |p| p.to_string())
            }
        };
        if !st.widget.limits.allow(st, &key, &visitor).await {
            let mut res = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests: wait a minute and try again",
            )
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return Err(res);
        }
        Ok(WidgetRequest {
            widget,
            query: parts.uri.query().map(str::to_owned),
        })
    }

    /// The query parameter `name` (the first one), decoded; `None` when absent.
    pub(crate) fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl FromRequestParts<AppState> for WidgetRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        WidgetRequest::check(parts, st, None).await
    }
}

fn unknown_key() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unknown_widget_key",
        "this widget key is unknown or has been revoked",
    )
    .into_response()
}

/// A widget request body: read (up to the route's limit) and parsed by [`VisitorRequest`] and
/// [`WidgetBody`]. Implemented for `()` (no body read), [`Bytes`] (as sent), [`Json<T>`] (a
/// JSON object), `Option<Json<T>>` (an empty body is `None`) and [`Recording`] (raw audio).
pub(crate) trait FromWidgetBody: Sized {
    /// The route's body limit in bytes (its `DefaultBodyLimit`), named in the 413 message.
    const LIMIT: usize = MAX_BODY_BYTES;
    /// Whether the body is read at all (`false` for the bodiless `GET` routes).
    const READ: bool = true;
    /// The value of `body`, sent with `headers`.
    /// Errors: the JSON errors of [`crate::body::parse_json`] (400 `invalid_json`, 422
    /// `validation_failed`).
    fn parse(headers: &HeaderMap, body: Bytes) -> Result<Self, ApiError>;
}

impl FromWidgetBody for () {
    const READ: bool = false;
    fn parse(_: &HeaderMap, _: Bytes) -> Result<(), ApiError> {
        Ok(())
    }
}

impl FromWidgetBody for Bytes {
    fn parse(_: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
        Ok(body)
    }
}

impl<T: DeserializeOwned> FromWidgetBody for Json<T> {
    fn parse(_: &HeaderMap, body: Bytes) -> Result<Self, ApiError> {
        crate::body::parse_json(&body).map(Json)
    }
}

impl<T: DeserializeOwned> FromWidgetBody for Option<Json<T>> {
    fn parse(_: &HeaderMap, body: Bytes) -> Result<Self, ApiError> {
        if body.is_empty() {
            Ok(None)
        } else {
            crate::body::parse_json(&body).map(|v| Some(Json(v)))
        }
    }
}

/// A recorded upload (`POST /widget/v1/voice`, `/call`): the audio bytes (up to
/// [`super::chat::MAX_VOICE_BYTES`]) and the declared MIME type (the `Content-Type` without
/// parameters, lowercase; empty when absent). Checked by [`super::chat::recording_of`].
#[derive(Debug)]
pub(crate) struct Recording {
    /// The audio.
    pub bytes: Bytes,
    /// The declared MIME type, e.g. `audio/webm`.
    pub mime: String,
}

impl FromWidgetBody for Recording {
    const LIMIT: usize = super::chat::MAX_VOICE_BYTES;
    fn parse(headers: &HeaderMap, bytes: Bytes) -> Result<Self, ApiError> {
        let mime = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        Ok(Recording { bytes, mime })
    }
}

/// Reads and parses the body of `req` as `T`. Errors: 413 `body_too_large` over `T::LIMIT`,
/// 400 `invalid_body`, then `T`'s parse errors.
pub(crate) async fn body_of<T: FromWidgetBody>(req: Request, st: &AppState) -> Result<T, ApiError> {
    if !T::READ {
        return T::parse(req.headers(), Bytes::new());
    }
    let headers = req.headers().clone();
    let bytes = Bytes::from_request(req, st)
        .await
        .map_err(|e| body_error_for(e, T::LIMIT))?;
    T::parse(&headers, bytes)
}

/// A widget request with a body but no visitor yet (`POST /widget/v1/conversations`, the
/// tracker): the [`WidgetRequest`] checks, then the body as `T` ([`FromWidgetBody`]).
/// Rejections: those of [`WidgetRequest`], then 413 `body_too_large`, 400 `invalid_body`, 400
/// `invalid_json`, 422 `validation_failed`.
#[derive(Debug)]
pub(crate) struct WidgetBody<T> {
    /// The checked request.
    pub widget: WidgetRequest,
    /// The body.
    pub body: T,
}

impl<T: FromWidgetBody + Send> FromRequest<AppState> for WidgetBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let widget = WidgetRequest::from_request_parts(&mut parts, st).await?;
        let body = body_of(Request::from_parts(parts, body), st)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(WidgetBody { widget, body })
    }
}

/// A request of a visitor with a conversation: the [`WidgetRequest`] checks (counted per
/// conversation), the body read as `T` ([`FromWidgetBody`]; `()` reads none), and the visitor
/// token of the `X-Parley-Visitor` header ([`super::visitor_of`]).
///
/// Rejections, in this order: those of [`WidgetRequest`], 413 `body_too_large` / 400
/// `invalid_body` (the body could not be read), 401 `invalid_visitor_token`, then the body's
/// parse errors (400 `invalid_json`, 422 `validation_failed`).
#[derive(Debug)]
pub(crate) struct VisitorRequest<T = ()> {
    /// The checked request.
    pub widget: WidgetRequest,
    /// The visitor's (valid) token: workspace, assistant and conversation.
    pub token: VisitorToken,
    /// The body.
    pub body: T,
}

impl<T: FromWidgetBody + Send> FromRequest<AppState> for VisitorRequest<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let hint = super::visitor_hint(st, &parts.headers);
        let widget = WidgetRequest::check(&mut parts, st, hint).await?;
        let token = super::visitor_of(st, &parts.headers, &widget.widget);
        let headers = parts.headers.clone();
        let bytes = if T::READ {
            Bytes::from_request(Request::from_parts(parts, body), st)
                .await
                .map_err(|e| body_error_for(e, T::LIMIT).into_response())?
        } else {
            Bytes::new()
        };
        let token = token.map_err(IntoResponse::into_response)?;
        let body = T::parse(&headers, bytes).map_err(IntoResponse::into_response)?;
        Ok(VisitorRequest {
            widget,
            token,
            body,
        })
    }
}
