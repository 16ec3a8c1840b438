//! Response layers every route shares (installed by [`crate::app`]).
//!
//! - [`fuse_streamed_bodies`]: a streamed body answers "no more frames" forever once it has
//!   ended. tower-http's `CompressionLayer` (0.6, and 0.7 up to at least 0.7.1; tower-http issue
//!   #732) polls the body it compresses once more after that body has ended, and a body built
//!   from a `futures_util::stream::unfold` (the export, the event streams) panics when polled
//!   again ("Unfold must not be polled after it returned `Poll::Ready(None)`"): the connection
//!   died and gzip clients got a truncated download. Fusing the body at the one place every
//!   response passes fixes it for every streamed route, present and future.
//! - [`uniform_errors`]: every error answer is `{"error": {"code", "message"}}` (see
//!   [`crate::error`]), including those that Parley's handlers never see: axum's 404 for an
//!   unknown route and 405 for a wrong method (empty bodies), and the plain-text rejections of
//!   its extractors (413 over a body limit, 415 without the right `Content-Type`, 400 and 422
//!   for a body or query that does not parse). Dashboard pages asked for by a browser (the
//!   request accepts `text/html`) get the same code and message as an HTML page instead.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::error::ApiError;

/// A body that, once its inner body has ended (or failed), answers `None` without polling it
/// again.
struct Fused {
    inner: Body,
    done: bool,
}

impl http_body::Body for Fused {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

/// Wraps every streamed response body (one without an exact length) so that it is never polled
/// after its end; bodies of a known length are left as they are.
pub async fn fuse_streamed_bodies(res: Response) -> Response {
    if http_body::Body::size_hint(res.body()).exact().is_some() {
        return res;
    }
    res.map(|inner| Body::new(Fused { inner, done: false }))
}

/// Marks a response whose body goes to the client as it is, even an error: the gateway passes a
/// provider's answers through unchanged. [`uniform_errors`] leaves such responses alone.
#[derive(Debug, Clone, Copy)]
pub struct Verbatim;

/// Paths that always answer errors as JSON: the API, the gateway, webhooks, the widget's public
/// endpoints and the machine-readable documents. Every other path belongs to the dashboard.
const JSON_ONLY_PREFIXES: &[&str] = &[
    "/api/",
    "/v1/",
    "/webhooks/",
    "/widget/",
    "/widget.js",
    "/widget-preview.js",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Whether `path` is one of [`JSON_ONLY_PREFIXES`] (or exactly one of their roots, such as
/// `/api` or `/v1`).
fn json_only(path: &str) -> bool {
    JSON_ONLY_PREFIXES
        .iter()
        .any(|p| path.starts_with(p) || p.strip_suffix('/').is_some_and(|root| path == root))
}

/// Whether the request's `Accept` header names `text/html` (what browsers send for pages and
/// forms; `fetch` and API clients do not).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
        })
}

/// The stable code for an error status that no handler gave a code of its own.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "body_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "validation_failed",
        429 => "rate_limited",
        501 => "not_implemented",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        500..=599 => "internal",
        _ => "request_failed",
    }
}

/// The message when the response carried no usable text of its own.
fn default_message(status: StatusCode) -> String {
    match status.as_u16() {
        404 => "no such route".to_owned(),
        405 => "this route does not accept this method; the Allow header lists those it does"
            .to_owned(),
        413 => "the request body is too large".to_owned(),
        415 => "the request body's Content-Type is not one this route accepts".to_owned(),
        502 | 504 => "an upstream service did not answer; try again later".to_owned(),
        503 => "the service is unavailable; try again later".to_owned(),
        500..=599 => "internal error; the server log has details".to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    }
}

/// Longest body text of a rewritten error that is kept as its message, in bytes.
const MAX_MESSAGE_BYTES: usize = 1024;

/// Rewrites error answers that are not already JSON (or, on a dashboard page, HTML) into
/// Parley's error form; see the module docs. The status and headers (`Allow`, `Retry-After`,
/// CORS...) are kept. The message is the plain text the response carried (axum's rejections
/// say what was wrong with the request) when it is short, except for 5xx, whose text is never
/// shown.
pub async fn uniform_errors(req: Request, next: Next) -> Response {
    let json_only = json_only(req.uri().path());
    let html_page = !json_only && accepts_html(req.headers());
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.extensions().get::<Verbatim>().is_some()
    {
        return res;
    }
    let mime = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let is_json = mime == "application/json" || mime.ends_with("+json");
    if is_json || (!json_only && mime == "text/html") {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = match axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await {
        Ok(bytes) if mime.is_empty() || mime == "text/plain" => {
            String::from_utf8(bytes.to_vec()).unwrap_or_default()
        }
        _ => String::new(),
    };
    let text = text.trim();
    let message = if status.is_server_error() || text.is_empty() {
        default_message(status)
    } else {
        text.to_owned()
    };
    let code = code_for(status);
    let mut fresh = if html_page {
        let title = status.canonical_reason().unwrap_or("Error");
        let mut page =
            crate::dashboard::error_page(status, title, &format!("{message} (error code: {code})"));
        page.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(crate::dashboard::CSP),
        );
        page
    } else {
        ApiError::new(status, code, message).into_response()
    };
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh
                .headers_mut()
                .entry(name)
                .or_insert_with(|| value.clone());
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_sorted_into_json_only_and_dashboard() {
        for p in [
            "/api/v1/x",
            "/api",
            "/v1/models",
            "/webhooks/telegram/1",
            "/widget/v1/config",
            "/widget.js",
            "/healthz",
        ] {
            assert!(json_only(p), "{p}");
        }
        for p in [
            "/",
            "/login",
            "/conversations",
            "/assets/app.css",
            "/apix",
            "/v10",
        ] {
            assert!(!json_only(p), "{p}");
        }
    }

    #[test]
    fn browsers_accept_html() {
        let mut h = HeaderMap::new();
        assert!(!accepts_html(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(accepts_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!accepts_html(&h));
    }
}
