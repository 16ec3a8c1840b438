//! Storage of assistants (the AI agents of a workspace) and their version history, reached
//! through [`crate::Store::assistants`]. The versioning rule itself is
//! [`parley_core::model::Assistant::next_version`]; both backends write its result with the
//! statements `sql.rs` builds.

use async_trait::async_trait;
use parley_core::model::{Assistant, AssistantVersion};
use parley_core::{AssistantId, WorkspaceId};

use crate::{NewAssistant, Result};

/// The record [`AssistantStore::create_assistant`] stores: a fresh id, version 1, name and
/// company trimmed, created and updated now.
pub(crate) fn new_assistant(input: &NewAssistant) -> Assistant {
    let now = parley_core::Timestamp::now();
    Assistant {
        id: AssistantId::new(),
        name: input.name.trim().to_owned(),
        company: input.company.trim().to_owned(),
        mode: input.mode,
        version: 1,
        settings: input.settings.clone(),
        created_at: now,
        updated_at: now,
    }
}

/// The assistant part of the store. Every method is scoped to one workspace.
#[async_trait]
pub trait AssistantStore: Send + Sync {
    /// Creates an assistant at version 1. Errors: `Conflict("assistant_exists")` when the
    /// workspace already has one with this name and company.
    async fn create_assistant(
        &self,
        workspace: WorkspaceId,
        input: &NewAssistant,
    ) -> Result<Assistant>;
    /// Makes a new version of an assistant (version + 1, kept in its history); a new name is
    /// copied onto its conversations (the list sorts and searches by it). `None` if it is not
    /// in the workspace. Errors: `Conflict("version_conflict")` when `expected_version` is given
    /// and is not the current version; `Conflict("assistant_exists")` for a name and company
    /// another assistant has.
    async fn update_assistant(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
        input: &NewAssistant,
        expected_version: Option<i64>,
    ) -> Result<Option<Assistant>>;
    /// An assistant's versions, newest first; `None` if it is not in the workspace.
    async fn assistant_versions(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
    ) -> Result<Option<Vec<AssistantVersion>>>;
    /// The workspace's assistants, by name.
    async fn list_assistants(&self, workspace: WorkspaceId) -> Result<Vec<Assistant>>;
    /// One assistant.
    async fn get_assistant(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
    ) -> Result<Option<Assistant>>;
}
