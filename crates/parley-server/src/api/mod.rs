//! The JSON API, version 1, under `/api/v1` (DESIGN.md section 5): resources in plural nouns,
//! snake_case fields, RFC 3339 times, errors as `{"error": {"code", "message"}}`. Every route
//! here requires an API key ([`ApiKeyAuth`](crate::auth::ApiKeyAuth)). The OpenAPI document
//! (`openapi.json`, served at `/openapi.json`) describes every route in [`ROUTES`]; a test keeps
//! the two in step.

mod assistants;
pub mod calls;
pub(crate) mod channels;
pub(crate) mod conversations;
mod events;
mod export;
pub(crate) mod insights;
pub(crate) mod retention;
mod settings;
pub mod team;
mod transfer;
mod webhooks;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::AppState;
pub(crate) use crate::body::parse_json;
use crate::error::ApiError;
pub(crate) use conversations::with_list_insight;
pub(crate) use export::{download, parse_finetune, parse_transcript_format, transcript_file};

/// The OpenAPI 3.1 document of the API.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Every API route: (method, path as in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/conversations"),
    ("POST", "/api/v1/conversations"),
    ("GET", "/api/v1/conversations/count"),
    ("POST", "/api/v1/conversations/bulk"),
    ("GET", "/api/v1/conversations/bulk/{id}"),
    ("GET", "/api/v1/conversations/export"),
    ("GET", "/api/v1/conversations/finetune"),
    ("GET", "/api/v1/conversations/finetune/estimate"),
    ("GET", "/api/v1/conversations/{id}/transcript"),
    ("GET", "/api/v1/insights/summary"),
    ("GET", "/api/v1/insights/timeseries"),
    ("GET", "/api/v1/insights/heatmap"),
    ("GET", "/api/v1/insights/assistants"),
    ("GET", "/api/v1/insights/topics"),
    ("GET", "/api/v1/conversations/{id}"),
    ("PATCH", "/api/v1/conversations/{id}"),
    ("DELETE", "/api/v1/conversations/{id}"),
    ("GET", "/api/v1/conversations/{id}/messages"),
    ("POST", "/api/v1/conversations/{id}/messages"),
    ("DELETE", "/api/v1/conversations/{id}/rating"),
    ("GET", "/api/v1/assistants"),
    ("POST", "/api/v1/assistants"),
    ("GET", "/api/v1/assistants/{id}"),
    ("PATCH", "/api/v1/assistants/{id}"),
    ("GET", "/api/v1/assistants/{id}/versions"),
    ("GET", "/api/v1/providers"),
    ("GET", "/api/v1/assistants/{id}/channels"),
    ("POST", "/api/v1/assistants/{id}/channels"),
    ("GET", "/api/v1/channels/{id}"),
    ("DELETE", "/api/v1/channels/{id}"),
    ("POST", "/api/v1/conversations/{id}/channel-messages"),
    ("GET", "/api/v1/conversations/{id}/channel"),
    ("POST", "/api/v1/conversations/{id}/replies"),
    ("POST", "/api/v1/conversations/{id}/takeover"),
    ("POST", "/api/v1/conversations/{id}/handback"),
    ("PUT", "/api/v1/conversations/{id}/assignee"),
    ("GET", "/api/v1/conversations/{id}/templates"),
    (
        "GET",
        "/api/v1/conversations/{id}/messages/{message_id}/attachments/{index}",
    ),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/webhooks"),
    ("POST", "/api/v1/webhooks"),
    ("GET", "/api/v1/webhooks/{id}"),
    ("PATCH", "/api/v1/webhooks/{id}"),
    ("DELETE", "/api/v1/webhooks/{id}"),
    ("GET", "/api/v1/webhooks/{id}/secret"),
    ("POST", "/api/v1/webhooks/{id}/secret"),
    ("GET", "/api/v1/webhooks/{id}/deliveries"),
    (
        "POST",
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/resend",
    ),
    ("POST", "/api/v1/calls"),
    ("GET", "/api/v1/members"),
    ("PATCH", "/api/v1/members/{id}"),
    ("DELETE", "/api/v1/members/{id}"),
    ("GET", "/api/v1/invites"),
    ("POST", "/api/v1/invites"),
    ("DELETE", "/api/v1/invites/{id}"),
    ("GET", "/api/v1/keys"),
    ("POST", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{id}"),
    ("GET", "/api/v1/settings"),
    ("PATCH", "/api/v1/settings"),
    ("POST", "/api/v1/import"),
    ("GET", "/api/v1/export"),
    ("GET", "/api/v1/retention"),
    ("PUT", "/api/v1/retention"),
    ("POST", "/api/v1/retention/run"),
    ("GET", "/api/v1/audit-log"),
    ("POST", "/api/v1/contacts/erase"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
];

/// A query value as the integer text it denotes: JSON Schema's integers include `5620.0` (a
/// number with a zero fraction), so `"5620.0"` reads as `"5620"`; anything else is unchanged.
pub(crate) fn integer_text(v: &str) -> &str {
    v.strip_suffix(".0")
        .filter(|w| !w.is_empty() && !w.contains('.'))
        .unwrap_or(v)
}

/// The `/api/v1` router.
pub fn router(state: &AppState) -> Router<AppState> {
    let import_limit = state.settings.max_import_bytes;
    Router::new()
        .route(
            "/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route("/conversations/count", get(conversations::count))
        .route("/conversations/bulk", post(conversations::bulk))
        .route(
            "/conversations/bulk/{id}",
            get(conversations::bulk_progress),
        )
        .route("/conversations/export", get(export::list))
        .route("/conversations/finetune", get(export::finetune))
        .route(
            "/conversations/finetune/estimate",
            get(export::finetune_estimate),
        )
        .route("/conversations/{id}/transcript", get(export::transcript))
        .route("/events", get(events::stream))
        .route(
            "/retention",
            get(retention::get_policy).put(retention::put_policy),
        )
        .route("/retention/run", post(retention::run))
        .route("/audit-log", get(retention::audit_log))
        .route("/contacts/erase", post(retention::erase))
        .route("/insights/summary", get(insights::summary))
        .route("/insights/timeseries", get(insights::timeseries))
        .route("/insights/heatmap", get(insights::heatmap))
        .route("/insights/assistants", get(insights::assistants))
        .route("/insights/topics", get(insights::topics))
        .route(
            "/conversations/{id}",
            get(conversations::detail)
                .patch(conversations::update)
                .delete(conversations::delete),
        )
        .route(
            "/conversations/{id}/messages",
            get(conversations::messages).post(conversations::append),
        )
        .route(
            "/conversations/{id}/rating",
            axum::routing::delete(conversations::delete_rating),
        )
        .route(
            "/assistants",
            get(assistants::list).post(assistants::create),
        )
        .route(
            "/assistants/{id}",
            get(assistants::detail).patch(assistants::update),
        )
        .route("/assistants/{id}/versions", get(assistants::versions))
        .route("/providers", get(assistants::providers))
        .route(
            "/assistants/{id}/channels",
            get(channels::list).post(channels::create),
        )
        .route(
            "/channels/{id}",
            get(channels::detail).delete(channels::delete),
        )
        .route("/conversations/{id}/channel-messages", post(channels::send))
        .route("/conversations/{id}/replies", post(team::reply))
        .route("/conversations/{id}/takeover", post(team::take_over))
        .route("/conversations/{id}/handback", post(team::hand_back))
        .route(
            "/conversations/{id}/assignee",
            axum::routing::put(team::assign),
        )
        .route("/conversations/{id}/templates", get(team::templates))
        .route(
            "/conversations/{id}/channel",
            get(channels::conversation_channel),
        )
        .route(
            "/conversations/{id}/messages/{message_id}/attachments/{index}",
            get(channels::attachment),
        )
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/webhooks/{id}",
            get(webhooks::detail)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/webhooks/{id}/secret",
            get(webhooks::reveal).post(webhooks::rotate),
        )
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/webhooks/{id}/deliveries/{delivery_id}/resend",
            post(webhooks::resend),
        )
        .route("/calls", post(calls::create))
        .route("/members", get(settings::members))
        .route(
            "/members/{id}",
            axum::routing::patch(settings::update_member).delete(settings::remove_member),
        )
        .route(
            "/invites",
            get(settings::invites).post(settings::create_invite),
        )
        .route(
            "/invites/{id}",
            axum::routing::delete(settings::delete_invite),
        )
        .route("/keys", get(settings::keys).post(settings::create_key))
        .route("/keys/{id}", axum::routing::delete(settings::revoke_key))
        .route(
            "/settings",
            get(settings::settings).patch(settings::update_settings),
        )
        .route(
            "/import",
            post(transfer::import).layer(DefaultBodyLimit::max(import_limit)),
        )
        .route("/export", get(transfer::export))
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .fallback(|| async { ApiError::not_found("route") })
}

/// Reads a request body, mapping the limit to 413 `body_too_large`.
pub(crate) async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the request body could not be read",
            )
        }
    })
}

/// A JSON request body. Requires `Content-Type: application/json` (415 otherwise); see
/// `parse_json` for the other errors.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let mime = ct.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = read_body(req).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Query parameters, parsed strictly: an unknown parameter is an error (so a typo such as
/// `?chanel=` is reported instead of silently returning everything).
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a raw query string, accepting only `allowed` names.
    /// Errors: 400 `invalid_parameter` naming the unknown parameter.
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_param(
                    k,
                    format!(
                        "unknown query parameter {k:?}; this route accepts: {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(Params { pairs })
    }

    /// Parses a raw query string accepting every name (for dashboard routes, whose query is
    /// the list view's URL state plus a few names of their own).
    pub(crate) fn lenient(raw: Option<&str>) -> Params {
        Params {
            pairs: form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// Parameters from name/value pairs (a JSON filter object's, see [`crate::bulk`]), checked
    /// as [`Params::parse`] checks a query. Errors: 400 `invalid_parameter` for a name not in
    /// `allowed`.
    pub(crate) fn from_pairs(
        pairs: Vec<(String, String)>,
        allowed: &[&str],
    ) -> Result<Params, ApiError> {
        let raw = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        Params::parse(Some(&raw), allowed)
    }

    /// The last non-empty value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// Every value of `name`, repeated or comma-separated, trimmed, empty ones dropped.
    pub(crate) fn list(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// `name` as an integer in `range`, or `default` when absent.
    pub(crate) fn int(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u32>,
        default: u32,
    ) -> Result<u32, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => integer_text(v)
                .parse::<u32>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    ApiError::bad_param(
                        name,
                        format!(
                            "{name} must be an integer from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        }
    }
}

/// Parses a path id. Errors: 400 `invalid_id`.
pub(crate) fn path_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("{text:?} is not a valid {what} id (a UUID)"),
        )
    })
}
