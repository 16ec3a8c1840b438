//! [`InsightStore`] on PostgreSQL.

use async_trait::async_trait;
use parley_core::insights::ConversationInsight;
use parley_core::{AssistantId, ConversationId, Timestamp, WorkspaceId};

use super::PostgresStore;
use crate::insights::columns::{from_row, phrases_from, phrases_json, to_row, topic_from};
use crate::insights::{
    AssistantTotals, ChangedConversation, InsightCursor, InsightStore, InsightTotals,
    InsightWindow, StoredInsight, TOTAL_COLUMNS, TopicSample, TopicSet, merge, plan_sql,
    totals_from, totals_sql, totals_sql_by,
};
use crate::insights::{DAY_MS, FIGURE_ROLLUPS, InsightGrouping, TOPIC_ROLLUPS};
use crate::{Result, StoreError};
use parley_core::topics::Topic;

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
                     first_response_ms, duration_ms, analysed_at, key_phrases, topic,
                     r_hour, r_channel, r_assistant_id,
                     r_assistant_version, r_messages, r_rating, r_prompt_tokens,
                     r_completion_tokens, r_cost_nanousd, r_label)
                 SELECT c.pk, c.workspace_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                     c.started_at - mod(c.started_at, 3600000), c.channel, c.assistant_id,
                     c.assistant_version, c.message_count, c.rating, c.prompt_tokens,
                     c.completion_tokens, c.cost_nanousd, COALESCE(c.sentiment, $3)
                 FROM conversations c WHERE c.id = $1 AND c.workspace_id = $2
                 ON CONFLICT (conversation) DO UPDATE SET
                     sentiment_label = excluded.sentiment_label,
                     sentiment_score = excluded.sentiment_score,
                     sentiment_source = excluded.sentiment_source,
                     sentiment_shift = excluded.sentiment_shift,
                     language = excluded.language, resolution = excluded.resolution,
                     first_response_ms = excluded.first_response_ms,
                     duration_ms = excluded.duration_ms, analysed_at = excluded.analysed_at,
                     key_phrases = excluded.key_phrases, topic = excluded.topic,
                     r_hour = excluded.r_hour, r_channel = excluded.r_channel,
                     r_assistant_id = excluded.r_assistant_id,
                     r_assistant_version = excluded.r_assistant_version,
                     r_messages = excluded.r_messages, r_rating = excluded.r_rating,
                     r_prompt_tokens = excluded.r_prompt_tokens,
                     r_completion_tokens = excluded.r_completion_tokens,
                     r_cost_nanousd = excluded.r_cost_nanousd, r_label = excluded.r_label",
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
                    &r.8,
                    &r.9,
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
                        i.duration_ms, i.key_phrases, i.topic, i.analysed_at
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
                    r.get(8),
                    r.get(9),
                ))?,
                analysed_at: Timestamp(r.get(10)),
            })
        })
        .transpose()
    }

    async fn insights_of(
        &self,
        workspace: WorkspaceId,
        conversations: &[ConversationId],
    ) -> Result<Vec<(ConversationId, StoredInsight)>> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<uuid::Uuid> = conversations.iter().map(|c| c.0).collect();
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT c.id, i.sentiment_label, i.sentiment_score, i.sentiment_source,
                        i.sentiment_shift, i.language, i.resolution, i.first_response_ms,
                        i.duration_ms, i.key_phrases, i.topic, i.analysed_at
                 FROM conversations c JOIN conversation_insights i ON i.conversation = c.pk
                 WHERE c.workspace_id = $1 AND c.id = ANY($2)",
                &[&workspace.0, &ids],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    ConversationId(r.get(0)),
                    StoredInsight {
                        insight: from_row((
                            r.get(1),
                            r.get(2),
                            r.get(3),
                            r.get(4),
                            r.get(5),
                            r.get(6),
                            r.get(7),
                            r.get(8),
                            r.get(9),
                            r.get(10),
                        ))?,
                        analysed_at: Timestamp(r.get(11)),
                    },
                ))
            })
            .collect()
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

    async fn insight_watermark(&self, workspace: WorkspaceId) -> Result<InsightCursor> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT updated_at, pk FROM insight_watermarks WHERE workspace_id = $1",
                &[&workspace.0],
            )
            .await?;
        Ok(row.map_or(InsightCursor::START, |r| InsightCursor {
            updated_at: r.get(0),
            pk: r.get(1),
        }))
    }

    async fn claim_insight_watermark(
        &self,
        workspace: WorkspaceId,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<InsightCursor>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "INSERT INTO insight_watermarks
                     (workspace_id, updated_at, pk, claimed_by, claimed_until)
                 VALUES ($1, $2, $2, $3, $4)
                 ON CONFLICT (workspace_id) DO UPDATE SET
                     claimed_by = excluded.claimed_by,
                     claimed_until = excluded.claimed_until
                 WHERE insight_watermarks.claimed_until < $5
                    OR insight_watermarks.claimed_by = excluded.claimed_by
                 RETURNING updated_at, pk",
                &[&workspace.0, &i64::MIN, &worker, &until.0, &now.0],
            )
            .await?;
        Ok(row.map(|r| InsightCursor {
            updated_at: r.get(0),
            pk: r.get(1),
        }))
    }

    async fn changed_conversations(
        &self,
        workspace: WorkspaceId,
        after: InsightCursor,
        limit: u32,
    ) -> Result<Vec<ChangedConversation>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT c.id, c.updated_at, c.pk,
                        i.conversation IS NULL OR i.analysed_at < c.updated_at
                 FROM conversations c
                 LEFT JOIN conversation_insights i ON i.conversation = c.pk
                 WHERE c.workspace_id = $1 AND (c.updated_at, c.pk) > ($2, $3)
                 ORDER BY c.updated_at, c.pk LIMIT $4",
                &[
                    &workspace.0,
                    &after.updated_at,
                    &after.pk,
                    &i64::from(limit),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ChangedConversation {
                id: ConversationId(r.get(0)),
                cursor: InsightCursor {
                    updated_at: r.get(1),
                    pk: r.get(2),
                },
                stale: r.get(3),
            })
            .collect())
    }

    async fn advance_insight_watermark(
        &self,
        workspace: WorkspaceId,
        worker: &str,
        to: InsightCursor,
        until: Timestamp,
    ) -> Result<bool> {
        let client = self.pool.get().await?;
        // Every SET expression sees the old row, so both CASEs compare with the old mark.
        let n = client
            .execute(
                "UPDATE insight_watermarks SET
                     updated_at = CASE WHEN ($3::bigint, $4::bigint) > (updated_at, pk) THEN $3
                                  ELSE updated_at END,
                     pk = CASE WHEN ($3::bigint, $4::bigint) > (updated_at, pk) THEN $4
                          ELSE pk END,
                     claimed_until = $5
                 WHERE workspace_id = $1 AND claimed_by = $2",
                &[&workspace.0, &worker, &to.updated_at, &to.pk, &until.0],
            )
            .await?;
        Ok(n == 1)
    }

    async fn release_insight_watermark(&self, workspace: WorkspaceId, worker: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE insight_watermarks SET claimed_by = NULL, claimed_until = 0
                 WHERE workspace_id = $1 AND claimed_by = $2",
                &[&workspace.0, &worker],
            )
            .await?;
        Ok(())
    }

    async fn insight_totals(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<InsightTotals> {
        let parts = plan_sql(
            window,
            DAY_MS,
            &totals_sql(ph, TEXT, UUID),
            FIGURE_ROLLUPS,
            false,
            |_| Vec::new(),
            ph,
            (TEXT, UUID),
        );
        let rows = self.grouped(workspace, parts).await?;
        Ok(merge(rows.iter().map(|r| ((), totals_at(r, 0))), false)
            .into_iter()
            .next()
            .map(|(_, t)| t)
            .unwrap_or_default())
    }

    async fn insight_groups(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
        grouping: InsightGrouping,
    ) -> Result<Vec<(i64, InsightTotals)>> {
        // bigint arithmetic keeps the key a bigint.
        let scan = format!("({})::bigint", grouping.key_sql("c.started_at"));
        let parts = plan_sql(
            window,
            grouping.grain(),
            &totals_sql_by(ph, TEXT, UUID, &[&scan]),
            FIGURE_ROLLUPS,
            false,
            |at| vec![format!("({})::bigint", grouping.key_sql(at))],
            ph,
            (TEXT, UUID),
        );
        let rows = self.grouped(workspace, parts).await?;
        Ok(merge(
            rows.iter().map(|r| (r.get(0), totals_at(r, 1))),
            true,
        ))
    }

    async fn insight_assistants(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<Vec<AssistantTotals>> {
        let parts = plan_sql(
            window,
            DAY_MS,
            &totals_sql_by(ph, TEXT, UUID, &["c.assistant_id", "c.assistant_version"]),
            FIGURE_ROLLUPS,
            true,
            |_| vec!["r.assistant_id".into(), "NULLIF(r.version, -1)".into()],
            ph,
            (TEXT, UUID),
        );
        let rows = self.grouped(workspace, parts).await?;
        let keyed = rows.iter().map(|r| {
            let assistant = r.get::<_, Option<uuid::Uuid>>(0).map(AssistantId);
            ((assistant, r.get::<_, Option<i64>>(1)), totals_at(r, 2))
        });
        Ok(merge(keyed, true)
            .into_iter()
            .map(|((assistant, version), totals)| AssistantTotals {
                assistant,
                version,
                totals,
            })
            .collect())
    }

    async fn topic_sample(&self, workspace: WorkspaceId, limit: u32) -> Result<Vec<TopicSample>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT c.id, i.key_phrases, i.topic
                 FROM conversation_insights i JOIN conversations c ON c.pk = i.conversation
                 WHERE i.workspace_id = $1 AND i.key_phrases IS NOT NULL
                 ORDER BY c.started_at DESC, c.pk DESC LIMIT $2",
                &[&workspace.0, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TopicSample {
                    id: ConversationId(r.get(0)),
                    key_phrases: phrases_from("conversation_insights.key_phrases", r.get(1))?,
                    topic: r.get(2),
                })
            })
            .collect()
    }

    async fn save_topics(
        &self,
        workspace: WorkspaceId,
        topics: &[Topic],
        assignments: &[(ConversationId, Option<String>)],
        learned_at: Timestamp,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM workspace_topics WHERE workspace_id = $1",
            &[&workspace.0],
        )
        .await?;
        let keys: Vec<&str> = topics.iter().map(|t| t.key.as_str()).collect();
        let phrases: Vec<String> = topics.iter().map(|t| phrases_json(&t.phrases)).collect();
        let counts: Vec<i64> = topics.iter().map(|t| t.conversations as i64).collect();
        tx.execute(
            "INSERT INTO workspace_topics (workspace_id, position, topic, phrases, conversations)
             SELECT $1, (n - 1)::integer, t, p, k
             FROM unnest($2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS x(t, p, k, n)",
            &[&workspace.0, &keys, &phrases, &counts],
        )
        .await?;
        let ids: Vec<uuid::Uuid> = assignments.iter().map(|(id, _)| id.0).collect();
        let to: Vec<Option<&str>> = assignments.iter().map(|(_, t)| t.as_deref()).collect();
        tx.execute(
            "UPDATE conversation_insights i SET topic = a.topic
             FROM unnest($2::uuid[], $3::text[]) AS a(id, topic)
             JOIN conversations c ON c.id = a.id AND c.workspace_id = $1
             WHERE i.conversation = c.pk AND i.workspace_id = $1",
            &[&workspace.0, &ids, &to],
        )
        .await?;
        tx.execute(
            "UPDATE conversation_insights SET topic = NULL
             WHERE workspace_id = $1 AND topic IS NOT NULL AND NOT (topic = ANY($2))",
            &[&workspace.0, &keys],
        )
        .await?;
        tx.execute(
            "INSERT INTO topic_learning (workspace_id, learned_at) VALUES ($1, $2)
             ON CONFLICT (workspace_id) DO UPDATE SET learned_at = excluded.learned_at",
            &[&workspace.0, &learned_at.0],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn topics(&self, workspace: WorkspaceId) -> Result<TopicSet> {
        let client = self.pool.get().await?;
        let times = client
            .query_opt(
                "SELECT learned_at, changed_at FROM topic_learning WHERE workspace_id = $1",
                &[&workspace.0],
            )
            .await?;
        let rows = client
            .query(
                "SELECT topic, phrases, conversations FROM workspace_topics
                 WHERE workspace_id = $1 ORDER BY position",
                &[&workspace.0],
            )
            .await?;
        let topics = rows
            .iter()
            .map(|r| topic_from(r.get(0), r.get(1), r.get(2)))
            .collect::<Result<Vec<_>>>()?;
        let (learned_at, changed_at) = times.map_or((0, 0), |r| (r.get(0), r.get(1)));
        Ok(TopicSet {
            topics,
            learned_at,
            changed_at,
        })
    }

    async fn note_topic_change(&self, workspace: WorkspaceId, at: Timestamp) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO topic_learning (workspace_id, changed_at) VALUES ($1, $2)
                 ON CONFLICT (workspace_id) DO UPDATE SET changed_at = excluded.changed_at",
                &[&workspace.0, &at.0],
            )
            .await?;
        Ok(())
    }

    async fn insight_topics(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<Vec<(String, InsightTotals)>> {
        let parts = plan_sql(
            window,
            DAY_MS,
            &totals_sql_by(ph, TEXT, UUID, &["i.topic"]),
            TOPIC_ROLLUPS,
            false,
            |_| vec!["NULLIF(r.topic, '')".into()],
            ph,
            (TEXT, UUID),
        );
        let rows = self.grouped(workspace, parts).await?;
        let keyed = rows
            .iter()
            .map(|r| (r.get::<_, Option<String>>(0), totals_at(r, 1)));
        Ok(merge(keyed, true)
            .into_iter()
            .filter_map(|(k, t)| k.map(|k| (k, t)))
            .collect())
    }
}

/// PostgreSQL's placeholder `n`.
fn ph(n: u8) -> String {
    format!("${n}")
}
/// The casts that type the optional channel and assistant parameters.
const TEXT: &str = "::text";
const UUID: &str = "::uuid";

impl PostgresStore {
    /// Runs each part of a [`plan_sql`] over its bounds (the five parameters bound), all parts'
    /// rows in one list, in one snapshot (a repeatable-read transaction).
    async fn grouped(
        &self,
        workspace: WorkspaceId,
        parts: Vec<(InsightWindow, String)>,
    ) -> Result<Vec<tokio_postgres::Row>> {
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut out = Vec::new();
        for (w, sql) in &parts {
            let channel = w.channel.map(|c| c.as_str().to_owned());
            let assistant = w.assistant.map(|a| a.0);
            let st = tx.prepare_cached(sql).await?;
            out.extend(
                tx.query(
                    &st,
                    &[&workspace.0, &w.from.0, &w.to.0, &channel, &assistant],
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// The [`TOTAL_COLUMNS`] columns from `at` on as totals.
fn totals_at(r: &tokio_postgres::Row, at: usize) -> InsightTotals {
    let mut v = [0i64; TOTAL_COLUMNS];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(at + i);
    }
    totals_from(v)
}
