//! [`ConversationStore`] on PostgreSQL: each write in its own transaction.

use async_trait::async_trait;
use parley_core::model::{ConversationDetail, ConversationExport, ConversationPatch};
use parley_core::query::{ConversationFilter, ListQuery, TranscriptQuery};
use parley_core::{ConversationId, WorkspaceId};

use super::{PostgresStore, read, write};
use crate::{
    ConversationCount, ConversationPage, ConversationStore, IngestBatch, IngestOutcome,
    MessagePage, Result,
};

#[async_trait]
impl ConversationStore for PostgresStore {
    async fn ingest(
        &self,
        workspace: WorkspaceId,
        batches: Vec<IngestBatch>,
    ) -> Result<Vec<IngestOutcome>> {
        let out = write::ingest(&self.pool, workspace, batches).await?;
        self.events.bump();
        Ok(out)
    }

    async fn update_conversation(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
        patch: &ConversationPatch,
    ) -> Result<Option<ConversationDetail>> {
        if !write::update_conversation(&self.pool, workspace, id, patch).await? {
            return Ok(None);
        }
        self.events.bump();
        read::get_conversation(&self.pool, workspace, id).await
    }

    async fn delete_conversation(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
    ) -> Result<bool> {
        crate::conversations::delete_one(self, workspace, id).await
    }

    async fn list_conversations(
        &self,
        workspace: WorkspaceId,
        query: &ListQuery,
    ) -> Result<ConversationPage> {
        read::list_conversations(
            &self.pool,
            workspace,
            query,
            self.options.search_probe_limit,
            self.options.search_bounded_walk,
        )
        .await
    }

    async fn count_conversations(
        &self,
        workspace: WorkspaceId,
        filter: &ConversationFilter,
    ) -> Result<ConversationCount> {
        read::count_conversations(
            &self.pool,
            workspace,
            filter,
            self.options.search_probe_limit,
        )
        .await
    }

    async fn conversation_total(&self, workspace: WorkspaceId) -> Result<u64> {
        read::conversation_total(&self.pool, workspace).await
    }

    async fn get_conversation(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
    ) -> Result<Option<ConversationDetail>> {
        read::get_conversation(&self.pool, workspace, id).await
    }

    async fn list_messages(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
        query: &TranscriptQuery,
    ) -> Result<Option<MessagePage>> {
        read::list_messages(&self.pool, workspace, id, query).await
    }

    async fn export_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
    ) -> Result<Vec<ConversationExport>> {
        read::export_conversations(&self.pool, workspace, ids).await
    }
}
