//! [`ConversationStore`] on SQLite: the ingest and patches on the writer connection (each wakes
//! the event listeners), reads on the reader pool with the backend's search tuning.

use async_trait::async_trait;
use parley_core::model::{ConversationDetail, ConversationExport, ConversationPatch};
use parley_core::query::{ConversationFilter, ListQuery, TranscriptQuery};
use parley_core::{ConversationId, WorkspaceId};

use super::{SqliteStore, read, write};
use crate::{
    ConversationCount, ConversationPage, ConversationStore, IngestBatch, IngestOutcome,
    MessagePage, Result,
};

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn ingest(
        &self,
        workspace: WorkspaceId,
        batches: Vec<IngestBatch>,
    ) -> Result<Vec<IngestOutcome>> {
        let out = self
            .write(move |c| write::ingest(c, workspace, batches))
            .await?;
        self.events.bump();
        Ok(out)
    }

    async fn update_conversation(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
        patch: &ConversationPatch,
    ) -> Result<Option<ConversationDetail>> {
        let patch = patch.clone();
        let out = self
            .write(move |c| {
                if !write::update_conversation(c, workspace, id, &patch)? {
                    return Ok(None);
                }
                read::get_conversation(c, workspace, id)
            })
            .await?;
        if out.is_some() {
            self.events.bump();
        }
        Ok(out)
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
        let query = query.clone();
        let (probe, walk) = (
            self.readers.options.search_probe_limit,
            self.readers.options.search_bounded_walk,
        );
        self.read(move |c| read::list_conversations(c, workspace, &query, probe, walk))
            .await
    }

    async fn count_conversations(
        &self,
        workspace: WorkspaceId,
        filter: &ConversationFilter,
    ) -> Result<ConversationCount> {
        let filter = filter.clone();
        let probe = self.readers.options.search_probe_limit;
        self.read(move |c| read::count_conversations(c, workspace, &filter, probe))
            .await
    }

    async fn conversation_total(&self, workspace: WorkspaceId) -> Result<u64> {
        self.read(move |c| read::conversation_total(c, workspace))
            .await
    }

    async fn get_conversation(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
    ) -> Result<Option<ConversationDetail>> {
        self.read(move |c| read::get_conversation(c, workspace, id))
            .await
    }

    async fn list_messages(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
        query: &TranscriptQuery,
    ) -> Result<Option<MessagePage>> {
        let query = *query;
        self.read(move |c| read::list_messages(c, workspace, id, &query))
            .await
    }

    async fn export_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
    ) -> Result<Vec<ConversationExport>> {
        let ids = ids.to_vec();
        self.read(move |c| read::export_conversations(c, workspace, &ids))
            .await
    }
}
