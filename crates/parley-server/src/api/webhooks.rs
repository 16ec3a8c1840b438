//! Outgoing webhook endpoints (issue 16; see [`crate::webhooks`]), for the API key's workspace:
//!
//! - `GET /api/v1/webhooks`, `POST /api/v1/webhooks` (201, with the `secret`);
//! - `GET`, `PATCH`, `DELETE /api/v1/webhooks/{id}`;
//! - `GET /api/v1/webhooks/{id}/secret` (reveal), `POST /api/v1/webhooks/{id}/secret`
//!   (rotate: a new secret, the old one stops signing at once);
//! - `GET /api/v1/webhooks/{id}/deliveries` (the delivery log, newest first, `limit`,
//!   `before`);
//! - `POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/resend` ("send again").
//!
//! Every route needs an `admin` API key of the workspace (a `member` key gets 403 `forbidden`:
//! an endpoint's secret and the payloads it receives are an administrator's); the dashboard
//! page is for admins only.
//! An endpoint or delivery of another workspace answers 404.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_store::webhooks::WebhookEndpointPatch;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{ApiJson, Params, path_id};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::webhooks::{self, check_description, check_types, check_url};

/// `POST /api/v1/webhooks` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed (http or https).
    #[serde(default)]
    pub url: Option<String>,
    /// Free text (at most 500 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// The event types to receive (at least one).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Whether to send (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /api/v1/webhooks/{id}` body: every field optional (`null` = unchanged).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchWebhook {
    /// A new URL.
    #[serde(default)]
    pub url: Option<String>,
    /// A new description (`""` clears it).
    #[serde(default)]
    pub description: Option<String>,
    /// New event types (at least one).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Enable or disable; enabling a disabled endpoint sends the events from then on.
    #[serde(default)]
    pub enabled: Option<bool>,
}

fn webhook_id(text: &str) -> Result<Uuid, ApiError> {
    path_id(text, "webhook")
}

async fn endpoint(
    st: &AppState,
    auth: &ApiKeyAuth,
    id: &str,
) -> Result<parley_store::webhooks::WebhookEndpoint, ApiError> {
    st.store
        .webhooks()
        .get_webhook(auth.workspace, webhook_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// `GET /api/v1/webhooks`: `{"data": [endpoint...]}`, oldest first.
pub(super) async fn list(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    let list = st.store.webhooks().list_webhooks(auth.workspace).await?;
    let data: Vec<_> = list.iter().map(webhooks::endpoint_json).collect();
    Ok(Json(json!({ "data": data })).into_response())
}

/// `POST /api/v1/webhooks`: 201 with the endpoint and its `secret` (`whsec_…`). Errors: 422
/// `validation_failed` / `destination_not_allowed` naming the field; 409 `too_many_webhooks`.
pub(super) async fn create(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(input): ApiJson<CreateWebhook>,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    let url = check_url(&st, input.url.as_deref().unwrap_or(""), "url")?;
    let description = check_description(input.description.as_deref().unwrap_or(""), "description")?;
    let types = check_types(input.event_types.as_deref().unwrap_or(&[]), "event_types")?;
    let (e, secret) = webhooks::create(
        &st,
        auth.workspace,
        url,
        description,
        types,
        input.enabled.unwrap_or(true),
    )
    .await?;
    let mut body = webhooks::endpoint_json(&e);
    body["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/v1/webhooks/{id}`.
pub(super) async fn detail(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    let e = endpoint(&st, &auth, &id).await?;
    Ok(Json(webhooks::endpoint_json(&e)).into_response())
}

/// `PATCH /api/v1/webhooks/{id}`: the endpoint after the change.
pub(super) async fn update(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<PatchWebhook>,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    let id = webhook_id(&id)?;
    let patch = WebhookEndpointPatch {
        url: input
            .url
            .as_deref()
            .map(|u| check_url(&st, u, "url"))
            .transpose()?,
        description: input
            .description
            .as_deref()
            .map(|d| check_description(d, "description"))
            .transpose()?,
        event_types: input
            .event_types
            .as_deref()
            .map(|t| check_types(t, "event_types"))
            .transpose()?,
        enabled: input.enabled,
        ..Default::default()
    };
    let e = webhooks::update(&st, auth.workspace, id, patch).await?;
    Ok(Json(webhooks::endpoint_json(&e)).into_response())
}

/// `DELETE /api/v1/webhooks/{id}`: 204; its deliveries go with it.
pub(super) async fn delete(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    if st
        .store
        .webhooks()
        .delete_webhook(auth.workspace, webhook_id(&id)?)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

/// `GET /api/v1/webhooks/{id}/secret`: `{"secret"}`.
pub(super) async fn reveal(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    let e = endpoint(&st, &auth, &id).await?;
    Ok(Json(json!({ "secret": webhooks::reveal(&st, &e)? })).into_response())
}

/// `POST /api/v1/webhooks/{id}/secret`: a new secret, `{"secret"}`.
pub(super) async fn rotate(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    let secret = webhooks::rotate(&st, auth.workspace, webhook_id(&id)?).await?;
    Ok(Json(json!({ "secret": secret })).into_response())
}

/// `GET /api/v1/webhooks/{id}/deliveries?limit=&before=`: `{"data": [delivery...],
/// "next_before"}` newest first (`limit` 1-100, default 50; `before` a delivery id from
/// `next_before`).
pub(super) async fn deliveries(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    let p = Params::parse(raw.as_deref(), &["limit", "before"])?;
    let limit = p.int("limit", 1..=100, 50)?;
    let before =
        match p.get("before") {
            None => None,
            Some(b) => Some(b.parse::<Uuid>().map_err(|_| {
                ApiError::bad_param("before", "before must be a delivery id (a UUID)")
            })?),
        };
    let e = endpoint(&st, &auth, &id).await?;
    let list = st
        .store
        .webhooks()
        .list_deliveries(auth.workspace, e.id, before, limit)
        .await?;
    let next = (list.len() == limit as usize)
        .then(|| list.last().map(|d| d.id))
        .flatten();
    let data: Vec<_> = list.iter().map(webhooks::delivery_json).collect();
    Ok(Json(json!({ "data": data, "next_before": next })).into_response())
}

/// `POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/resend`: 202 with the delivery, pending
/// and due now. Errors: 404; 409 `delivery_in_flight`.
pub(super) async fn resend(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    auth.require_admin("manage outgoing webhooks")?;
    let endpoint = webhook_id(&id)?;
    let delivery: Uuid = path_id(&delivery, "delivery")?;
    let d = webhooks::resend(&st, auth.workspace, endpoint, delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(webhooks::delivery_json(&d))).into_response())
}
