//! Assistants that talk: their settings, the LLM runtime that answers customers, and the
//! OpenAI-compatible gateway that records any app's conversations.
//!
//! - this module: creating and changing assistants (every change a new version), shared by the
//!   API and the dashboard;
//! - [`provider`]: the client for OpenAI-compatible chat completions endpoints (streaming,
//!   retries, error classification);
//! - [`tokens`]: token counts with a real tokenizer, for estimates and the context window;
//! - [`runtime`]: one assistant turn — history, the memory tool, storing the answer through
//!   [`crate::ingest`];
//! - [`gateway`]: `POST /v1/chat/completions` and `GET /v1/models`.
//!
//! The stand-in provider the tests and the benchmark use lives in `parley-testkit`.

pub mod gateway;
pub mod provider;
pub mod runtime;
pub mod tokens;

use parley_core::model::{Assistant, AssistantInput, AssistantPatch};
use parley_core::validate;
use parley_core::{AssistantId, WorkspaceId};
use parley_store::NewAssistant;

use crate::AppState;
use crate::error::ApiError;

/// Creates an assistant at version 1, sealing any provider key given.
/// Errors: 422 `validation_failed` naming the field; 409 `assistant_exists`.
pub async fn create(
    state: &AppState,
    workspace: WorkspaceId,
    input: &AssistantInput,
) -> Result<Assistant, ApiError> {
    validate::assistant(input)?;
    let settings = Default::default();
    let settings = apply_settings(state, &settings, &input.settings)?;
    Ok(state
        .store
        .assistants()
        .create_assistant(
            workspace,
            &NewAssistant {
                name: input.name.trim().to_owned(),
                company: input.company.trim().to_owned(),
                mode: input.mode,
                settings,
            },
        )
        .await?)
}

/// Applies a patch as a new version. Errors: 404 for an assistant not in the workspace; 422
/// naming the field; 409 `version_conflict` when `patch.version` is not current; 409
/// `assistant_exists` for a taken name and company.
pub async fn update(
    state: &AppState,
    workspace: WorkspaceId,
    id: AssistantId,
    patch: &AssistantPatch,
) -> Result<Assistant, ApiError> {
    let current = state
        .store
        .assistants()
        .get_assistant(workspace, id)
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))?;
    let input = AssistantInput {
        name: patch.name.clone().unwrap_or_else(|| current.name.clone()),
        company: patch
            .company
            .clone()
            .unwrap_or_else(|| current.company.clone()),
        mode: patch.mode.unwrap_or(current.mode),
        settings: Default::default(),
    };
    validate::assistant(&input)?;
    let settings = match &patch.settings {
        Some(s) => apply_settings(state, &current.settings, s)?,
        None => current.settings.clone(),
    };
    state
        .store
        .assistants()
        .update_assistant(
            workspace,
            id,
            &NewAssistant {
                name: input.name.trim().to_owned(),
                company: input.company.trim().to_owned(),
                mode: input.mode,
                settings,
            },
            patch.version,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))
}

/// `input` applied to `current` (keys sealed, a `name` checked against the operator's
/// providers). Errors: 422 `validation_failed` naming the field; 422 `destination_not_allowed`
/// for a workspace's own base URL whose host is an IP literal the server does not connect to
/// (a host name is checked when it is resolved, at each call: see [`crate::net`]).
fn apply_settings(
    state: &AppState,
    current: &parley_core::assistant::AssistantSettings,
    input: &parley_core::assistant::AssistantSettingsInput,
) -> Result<parley_core::assistant::AssistantSettings, ApiError> {
    let secrets = state.secrets.clone();
    let settings = current.apply(
        input,
        &move |plain| Ok(secrets.seal_provider_key(plain)),
        &state.settings.providers,
    )?;
    if let Some(p) = &settings.provider
        && p.name.is_none()
        && let Err(refused) = state.net.client_for(&p.base_url)
    {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            crate::net::CODE,
            format!("settings.provider.base_url: {refused}"),
        )
        .with_field("settings.provider.base_url"));
    }
    Ok(settings)
}

/// Logs, once at start-up, every assistant whose stored key is a server environment variable
/// (settings saved before operator providers): those whose URL and variable match an operator
/// provider are served by it (info); the others need a provider and no longer answer (warn).
/// See "Providers and outgoing requests" in the README. Store errors are logged.
pub async fn log_legacy_providers(state: &AppState) {
    use parley_core::assistant::{ProviderKey, ProviderRoute};
    let workspaces = match state.store.workspaces().list_workspaces().await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "could not list workspaces to check assistants' providers");
            return;
        }
    };
    for ws in workspaces {
        let Ok(assistants) = state.store.assistants().list_assistants(ws.id).await else {
            continue;
        };
        for a in assistants {
            let Some(p) = &a.settings.provider else {
                continue;
            };
            let ProviderKey::Env { name: var } = &p.api_key else {
                continue;
            };
            match p.route(&state.settings.providers) {
                ProviderRoute::Operator { name, .. } => tracing::info!(
                    workspace = %ws.slug, assistant = %a.name, variable = %var, provider = name,
                    "an assistant's legacy environment key matches an operator provider; it is served by that provider"
                ),
                _ => tracing::warn!(
                    workspace = %ws.slug, assistant = %a.name, variable = %var,
                    "an assistant's legacy environment key matches no operator provider: it needs a provider and no longer answers"
                ),
            }
        }
    }
}
