//! [`AssistantStore`] on SQLite: reads on the reader pool, writes on the writer connection.

use async_trait::async_trait;
use parley_core::model::{Assistant, AssistantVersion};
use parley_core::{AssistantId, WorkspaceId};

use super::SqliteStore;
use crate::{AssistantStore, NewAssistant, Result};

#[async_trait]
impl AssistantStore for SqliteStore {
    async fn create_assistant(
        &self,
        workspace: WorkspaceId,
        input: &NewAssistant,
    ) -> Result<Assistant> {
        let input = input.clone();
        self.write(move |c| super::write::create_assistant(c, workspace, &input))
            .await
    }

    async fn update_assistant(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
        input: &NewAssistant,
        expected_version: Option<i64>,
    ) -> Result<Option<Assistant>> {
        let input = input.clone();
        self.write(move |c| {
            super::write::update_assistant(c, workspace, id, &input, expected_version)
        })
        .await
    }

    async fn assistant_versions(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
    ) -> Result<Option<Vec<AssistantVersion>>> {
        self.read(move |c| super::read::assistant_versions(c, workspace, id))
            .await
    }

    async fn list_assistants(&self, workspace: WorkspaceId) -> Result<Vec<Assistant>> {
        self.read(move |c| super::read::list_assistants(c, workspace))
            .await
    }

    async fn get_assistant(
        &self,
        workspace: WorkspaceId,
        id: AssistantId,
    ) -> Result<Option<Assistant>> {
        self.read(move |c| super::read::get_assistant(c, workspace, id))
            .await
    }
}
