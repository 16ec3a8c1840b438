//! [`InsightStore`] on SQLite.

use async_trait::async_trait;
use parley_core::insights::ConversationInsight;
use parley_core::{ConversationId, Timestamp, WorkspaceId};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::insights::columns::{from_row, to_row};
use crate::insights::{InsightStore, StoredInsight};
use crate::{Result, StoreError};

#[async_trait]
impl InsightStore for SqliteStore {
    async fn save_insight(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
        insight: &ConversationInsight,
        analysed_at: Timestamp,
    ) -> Result<()> {
        let r = to_row(insight);
        self.write(move |c| {
            let pk: Option<i64> = c
                .prepare_cached("SELECT pk FROM conversations WHERE id = ?1 AND workspace_id = ?2")?
                .query_row(
                    params![conversation.as_bytes(), workspace.as_bytes()],
                    |r| r.get(0),
                )
                .optional()?;
            let pk = pk.ok_or(StoreError::NotFound {
                what: "conversation",
            })?;
            c.prepare_cached(
                "INSERT INTO conversation_insights (conversation, workspace_id, sentiment_label,
                     sentiment_score, sentiment_source, sentiment_shift, language, resolution,
                     first_response_ms, duration_ms, analysed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (conversation) DO UPDATE SET
                     sentiment_label = excluded.sentiment_label,
                     sentiment_score = excluded.sentiment_score,
                     sentiment_source = excluded.sentiment_source,
                     sentiment_shift = excluded.sentiment_shift,
                     language = excluded.language, resolution = excluded.resolution,
                     first_response_ms = excluded.first_response_ms,
                     duration_ms = excluded.duration_ms, analysed_at = excluded.analysed_at",
            )?
            .execute(params![
                pk,
                workspace.as_bytes(),
                r.0,
                r.1,
                r.2,
                r.3,
                r.4,
                r.5,
                r.6,
                r.7,
                analysed_at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn insight(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
    ) -> Result<Option<StoredInsight>> {
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT i.sentiment_label, i.sentiment_score, i.sentiment_source,
                            i.sentiment_shift, i.language, i.resolution, i.first_response_ms,
                            i.duration_ms, i.analysed_at
                     FROM conversations c JOIN conversation_insights i ON i.conversation = c.pk
                     WHERE c.id = ?1 AND c.workspace_id = ?2",
                )?
                .query_row(
                    params![conversation.as_bytes(), workspace.as_bytes()],
                    |r| {
                        Ok((
                            (
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                                r.get(6)?,
                                r.get(7)?,
                            ),
                            r.get::<_, i64>(8)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(r, at)| {
                Ok(StoredInsight {
                    insight: from_row(r)?,
                    analysed_at: Timestamp(at),
                })
            })
            .transpose()
        })
        .await
    }

    async fn stale_insights(
        &self,
        workspace: WorkspaceId,
        limit: u32,
    ) -> Result<Vec<ConversationId>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT c.id FROM conversations c
                 LEFT JOIN conversation_insights i ON i.conversation = c.pk
                 WHERE c.workspace_id = ?1
                   AND (i.conversation IS NULL OR i.analysed_at < c.updated_at)
                 ORDER BY c.pk LIMIT ?2",
            )?;
            let ids = st
                .query_map(params![workspace.as_bytes(), i64::from(limit)], |r| {
                    r.get::<_, Vec<u8>>(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            ids.iter()
                .map(|b| {
                    ConversationId::from_slice(b)
                        .ok_or_else(|| StoreError::backend("a conversation id is not 16 bytes"))
                })
                .collect()
        })
        .await
    }
}
