//! [`InsightStore`] on PostgreSQL.

use async_trait::async_trait;
use parley_core::insights::ConversationInsight;
use parley_core::{ConversationId, Timestamp, WorkspaceId};

use super::PostgresStore;
use crate::insights::columns::{from_row, to_row};
use crate::insights::{InsightStore, StoredInsight};
use crate::{Result, StoreError};

#[async_trait]
impl InsightStore for PostgresStore {
    async fn save_insight(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
        insight: &ConversationInsight,
        analysed_at: Timestamp,
    ) -> Result<()> {
        let r = to_row(insight);
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "INSERT INTO conversation_insights (conversation, workspace_id, sentiment_label,
                     sentiment_score, sentiment_source, sentiment_shift, language, resolution,
                     first_response_ms, duration_ms, analysed_at)
                 SELECT c.pk, c.workspace_id, $3, $4, $5, $6, $7, $8, $9, $10, $11
                 FROM conversations c WHERE c.id = $1 AND c.workspace_id = $2
                 ON CONFLICT (conversation) DO UPDATE SET
                     sentiment_label = excluded.sentiment_label,
                     sentiment_score = excluded.sentiment_score,
                     sentiment_source = excluded.sentiment_source,
                     sentiment_shift = excluded.sentiment_shift,
                     language = excluded.language, resolution = excluded.resolution,
                     first_response_ms = excluded.first_response_ms,
                     duration_ms = excluded.duration_ms, analysed_at = excluded.analysed_at",
                &[
                    &conversation.0,
                    &workspace.0,
                    &r.0,
                    &r.1,
                    &r.2,
                    &r.3,
                    &r.4,
                    &r.5,
                    &r.6,
                    &r.7,
                    &analysed_at.0,
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "conversation",
            });
        }
        Ok(())
    }

    async fn insight(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
    ) -> Result<Option<StoredInsight>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT i.sentiment_label, i.sentiment_score, i.sentiment_source,
                        i.sentiment_shift, i.language, i.resolution, i.first_response_ms,
                        i.duration_ms, i.analysed_at
                 FROM conversations c JOIN conversation_insights i ON i.conversation = c.pk
                 WHERE c.id = $1 AND c.workspace_id = $2",
                &[&conversation.0, &workspace.0],
            )
            .await?;
        row.map(|r| {
            Ok(StoredInsight {
                insight: from_row((
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                ))?,
                analysed_at: Timestamp(r.get(8)),
            })
        })
        .transpose()
    }

    async fn stale_insights(
        &self,
        workspace: WorkspaceId,
        limit: u32,
    ) -> Result<Vec<ConversationId>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT c.id FROM conversations c
                 LEFT JOIN conversation_insights i ON i.conversation = c.pk
                 WHERE c.workspace_id = $1
                   AND (i.conversation IS NULL OR i.analysed_at < c.updated_at)
                 ORDER BY c.pk LIMIT $2",
                &[&workspace.0, &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(|r| ConversationId(r.get(0))).collect())
    }
}
