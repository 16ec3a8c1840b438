//! `/api/v1/assistants`: create, read, change (each change a new version) and list versions;
//! `/api/v1/providers`: the operator's providers an assistant may pick by name. Outputs never
//! carry a provider key (a sealed key shows only its hint) nor an operator provider's URL.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_core::AssistantId;
use parley_core::model::{AssistantInput, AssistantPatch};
use serde_json::json;

use super::ApiJson;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

fn parse_id(id: &str) -> Result<AssistantId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("assistant"))
}

/// `GET /api/v1/assistants`: `{"items": [...]}`, by name.
pub(super) async fn list(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
) -> Result<Response, ApiError> {
    let items: Vec<_> = st
        .store
        .assistants()
        .list_assistants(auth.workspace)
        .await?
        .iter()
        .map(|a| a.redacted())
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// `POST /api/v1/assistants`: 201 with the assistant at version 1; 409 `assistant_exists` when
/// the name and company are taken; 422 naming an invalid field.
pub(super) async fn create(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(input): ApiJson<AssistantInput>,
) -> Result<Response, ApiError> {
    let a = crate::assistant::create(&st, auth.workspace, &input).await?;
    Ok((StatusCode::CREATED, Json(a.redacted())).into_response())
}

/// `GET /api/v1/assistants/{id}`: the assistant at its current version; 404 if not in the
/// workspace.
pub(super) async fn detail(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let a = st
        .store
        .assistants()
        .get_assistant(auth.workspace, parse_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))?;
    Ok(Json(a.redacted()).into_response())
}

/// `PATCH /api/v1/assistants/{id}`: a new version with the given fields changed; 409
/// `version_conflict` when `version` is given and stale.
pub(super) async fn update(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<AssistantPatch>,
) -> Result<Response, ApiError> {
    let a = crate::assistant::update(&st, auth.workspace, parse_id(&id)?, &patch).await?;
    Ok(Json(a.redacted()).into_response())
}

/// `GET /api/v1/assistants/{id}/versions`: `{"items": [...]}`, newest first.
pub(super) async fn versions(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut items = st
        .store
        .assistants()
        .assistant_versions(auth.workspace, parse_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))?;
    for v in &mut items {
        v.settings = v.settings.redacted();
    }
    Ok(Json(json!({ "items": items })).into_response())
}

/// `GET /api/v1/providers`: the operator's LLM providers a workspace may pick by `name`
/// (`settings.provider.name`), by name: `{"items": [{"name", "label", "models",
/// "default_model"}]}`; `models` empty means any model. Their URLs and keys are the
/// operator's and are not shown.
pub(super) async fn providers(
    State(st): State<AppState>,
    _auth: ApiKeyAuth,
) -> Result<Response, ApiError> {
    let items: Vec<_> = st
        .settings
        .providers
        .iter()
        .map(|(name, p)| {
            json!({
                "name": name,
                "label": p.label.clone().unwrap_or_else(|| name.clone()),
                "models": p.models,
                "default_model": p.fallback_model(),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}
