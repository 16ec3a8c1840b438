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
//! - [`gateway`]: `POST /v1/chat/completions` and `GET /v1/models`;
//! - [`stub_provider`]: a stand-in OpenAI-compatible server on 127.0.0.1, for tests and the
//!   benchmark harness.

pub mod gateway;
pub mod provider;
pub mod runtime;
pub mod stub_provider;
pub mod tokens;

use parley_core::model::{Assistant, AssistantInput, AssistantPatch};
use parley_core::validate::{self, Invalid};
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

fn apply_settings(
    state: &AppState,
    current: &parley_core::assistant::AssistantSettings,
    input: &parley_core::assistant::AssistantSettingsInput,
) -> Result<parley_core::assistant::AssistantSettings, Invalid> {
    let secrets = state.secrets.clone();
    current.apply(input, &move |plain| Ok(secrets.seal_provider_key(plain)))
}
