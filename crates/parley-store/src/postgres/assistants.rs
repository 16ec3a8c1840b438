//! [`AssistantStore`] on PostgreSQL.

use async_trait::async_trait;
use parley_core::model::{Assistant, AssistantVersion};
use parley_core::{AssistantId, WorkspaceId};

use super::PostgresStore;
use crate::{AssistantStore, NewAssistant, Result};

#[async_trait]
impl AssistantStore for PostgresStore {
    async fn create_assistant(
        &self,
        workspace: WorkspaceId,
        input: &NewAssistant,
    ) -> Result<Assistant> {
        super::write::create_assistant(&self.pool, workspace, input).await
    }

    async fn update_assistant(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
        input: &NewAssistant,
        expected_version: Option<i64>,
    ) -> Result<Option<Assistant>> {
        super::write::update_assistant(&self.pool, workspace, id, input, expected_version).await
    }

    async fn assistant_versions(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
    ) -> Result<Option<Vec<AssistantVersion>>> {
        super::read::assistant_versions(&self.pool, workspace, id).await
    }

    async fn list_assistants(&self, workspace: WorkspaceId) -> Result<Vec<Assistant>> {
        super::read::list_assistants(&self.pool, workspace).await
    }

    async fn get_assistant(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
    ) -> Result<Option<Assistant>> {
        super::read::get_assistant(&self.pool, workspace, id).await
    }
}
