//! [`InsightStore`] on SQLite.

use async_trait::async_trait;
use parley_core::insights::ConversationInsight;
use parley_core::{AssistantId, ConversationId, Timestamp, WorkspaceId};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
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
                     first_response_ms, duration_ms, analysed_at, key_phrases, topic,
                     r_hour, r_channel, r_assistant_id,
                     r_assistant_version, r_messages, r_rating, r_prompt_tokens,
                     r_completion_tokens, r_cost_nanousd, r_label)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                     c.started_at - c.started_at % 3600000, c.channel, c.assistant_id,
                     c.assistant_version, c.message_count, c.rating, c.prompt_tokens,
                     c.completion_tokens, c.cost_nanousd, COALESCE(c.sentiment, ?3)
                 FROM conversations c WHERE c.pk = ?1
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
                analysed_at.0,
                r.8,
                r.9
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
                            i.duration_ms, i.key_phrases, i.topic, i.analysed_at
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
                                r.get(8)?,
                                r.get(9)?,
                            ),
                            r.get::<_, i64>(10)?,
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

    async fn insights_of(
        &self,
        workspace: WorkspaceId,
        conversations: &[ConversationId],
    ) -> Result<Vec<(ConversationId, StoredInsight)>> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Vec<u8>> = conversations
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect();
        self.read(move |c| {
            let marks: Vec<String> = (0..ids.len()).map(|n| format!("?{}", n + 2)).collect();
            let mut st = c.prepare(&format!(
                "SELECT c.id, i.sentiment_label, i.sentiment_score, i.sentiment_source,
                        i.sentiment_shift, i.language, i.resolution, i.first_response_ms,
                        i.duration_ms, i.key_phrases, i.topic, i.analysed_at
                 FROM conversations c JOIN conversation_insights i ON i.conversation = c.pk
                 WHERE c.workspace_id = ?1 AND c.id IN ({})",
                marks.join(", ")
            ))?;
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![workspace.as_bytes()];
            values.extend(ids.iter().map(|b| b as &dyn rusqlite::ToSql));
            let rows = st
                .query_map(values.as_slice(), |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        (
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                            r.get(10)?,
                        ),
                        r.get::<_, i64>(11)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(id, row, at)| {
                    let id = ConversationId::from_slice(&id)
                        .ok_or_else(|| StoreError::backend("a conversation id is not 16 bytes"))?;
                    Ok((
                        id,
                        StoredInsight {
                            insight: from_row(row)?,
                            analysed_at: Timestamp(at),
                        },
                    ))
                })
                .collect()
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

    async fn insight_watermark(&self, workspace: WorkspaceId) -> Result<InsightCursor> {
        self.read(move |c| {
            let row: Option<(i64, i64)> = c
                .prepare_cached(
                    "SELECT updated_at, pk FROM insight_watermarks WHERE workspace_id = ?1",
                )?
                .query_row(params![workspace.as_bytes()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            Ok(
                row.map_or(InsightCursor::START, |(updated_at, pk)| InsightCursor {
                    updated_at,
                    pk,
                }),
            )
        })
        .await
    }

    async fn claim_insight_watermark(
        &self,
        workspace: WorkspaceId,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<InsightCursor>> {
        let worker = worker.to_owned();
        self.write(move |c| {
            let row: Option<(i64, i64)> = c
                .prepare_cached(
                    "INSERT INTO insight_watermarks
                         (workspace_id, updated_at, pk, claimed_by, claimed_until)
                     VALUES (?1, ?2, ?2, ?3, ?4)
                     ON CONFLICT (workspace_id) DO UPDATE SET
                         claimed_by = excluded.claimed_by,
                         claimed_until = excluded.claimed_until
                     WHERE insight_watermarks.claimed_until < ?5
                        OR insight_watermarks.claimed_by = excluded.claimed_by
                     RETURNING updated_at, pk",
                )?
                .query_row(
                    params![workspace.as_bytes(), i64::MIN, worker, until.0, now.0],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(row.map(|(updated_at, pk)| InsightCursor { updated_at, pk }))
        })
        .await
    }

    async fn changed_conversations(
        &self,
        workspace: WorkspaceId,
        after: InsightCursor,
        limit: u32,
    ) -> Result<Vec<ChangedConversation>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT c.id, c.updated_at, c.pk,
                        i.conversation IS NULL OR i.analysed_at < c.updated_at
                 FROM conversations c INDEXED BY conversations_by_updated
                 LEFT JOIN conversation_insights i ON i.conversation = c.pk
                 WHERE c.workspace_id = ?1 AND c.updated_at >= ?2
                   AND (c.updated_at > ?2 OR c.pk > ?3)
                 ORDER BY c.updated_at, c.pk LIMIT ?4",
            )?;
            let rows = st
                .query_map(
                    params![
                        workspace.as_bytes(),
                        after.updated_at,
                        after.pk,
                        i64::from(limit)
                    ],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, bool>(3)?,
                        ))
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(id, updated_at, pk, stale)| {
                    Ok(ChangedConversation {
                        id: ConversationId::from_slice(&id).ok_or_else(|| {
                            StoreError::backend("a conversation id is not 16 bytes")
                        })?,
                        cursor: InsightCursor { updated_at, pk },
                        stale,
                    })
                })
                .collect()
        })
        .await
    }

    async fn advance_insight_watermark(
        &self,
        workspace: WorkspaceId,
        worker: &str,
        to: InsightCursor,
        until: Timestamp,
    ) -> Result<bool> {
        let worker = worker.to_owned();
        self.write(move |c| {
            // Every SET expression sees the old row, so both CASEs compare with the old mark.
            let n = c
                .prepare_cached(
                    "UPDATE insight_watermarks SET
                         updated_at = CASE WHEN (?3, ?4) > (updated_at, pk) THEN ?3
                                      ELSE updated_at END,
                         pk = CASE WHEN (?3, ?4) > (updated_at, pk) THEN ?4 ELSE pk END,
                         claimed_until = ?5
                     WHERE workspace_id = ?1 AND claimed_by = ?2",
                )?
                .execute(params![
                    workspace.as_bytes(),
                    worker,
                    to.updated_at,
                    to.pk,
                    until.0
                ])?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_insight_watermark(&self, workspace: WorkspaceId, worker: &str) -> Result<()> {
        let worker = worker.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE insight_watermarks SET claimed_by = NULL, claimed_until = 0
                 WHERE workspace_id = ?1 AND claimed_by = ?2",
            )?
            .execute(params![workspace.as_bytes(), worker])?;
            Ok(())
        })
        .await
    }

    async fn insight_totals(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<InsightTotals> {
        let parts = plan_sql(
            window,
            DAY_MS,
            &totals_sql(ph, "", ""),
            FIGURE_ROLLUPS,
            false,
            |_| Vec::new(),
            ph,
            ("", ""),
        );
        let rows = self
            .grouped(workspace, parts, |r| Ok(((), totals_at(r, 0)?)))
            .await?;
        Ok(merge(rows, false)
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
        let parts = plan_sql(
            window,
            grouping.grain(),
            &totals_sql_by(ph, "", "", &[&grouping.key_sql("c.started_at")]),
            FIGURE_ROLLUPS,
            false,
            |at| vec![grouping.key_sql(at)],
            ph,
            ("", ""),
        );
        let rows = self
            .grouped(workspace, parts, |r| Ok((r.get(0)?, totals_at(r, 1)?)))
            .await?;
        Ok(merge(rows, true))
    }

    async fn insight_assistants(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<Vec<AssistantTotals>> {
        let parts = plan_sql(
            window,
            DAY_MS,
            &totals_sql_by(ph, "", "", &["c.assistant_id", "c.assistant_version"]),
            FIGURE_ROLLUPS,
            true,
            |_| vec!["r.assistant_id".into(), "NULLIF(r.version, -1)".into()],
            ph,
            ("", ""),
        );
        let rows = self
            .grouped(workspace, parts, |r| {
                let assistant = match r.get::<_, Option<Vec<u8>>>(0)? {
                    None => None,
                    Some(b) => Some(AssistantId::from_slice(&b).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Blob,
                            "conversations.assistant_id is not a UUID".into(),
                        )
                    })?),
                };
                Ok(((assistant, r.get::<_, Option<i64>>(1)?), totals_at(r, 2)?))
            })
            .await?;
        Ok(merge(rows, true)
            .into_iter()
            .map(|((assistant, version), totals)| AssistantTotals {
                assistant,
                version,
                totals,
            })
            .collect())
    }

    async fn topic_sample(&self, workspace: WorkspaceId, limit: u32) -> Result<Vec<TopicSample>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT c.id, i.key_phrases, i.topic
                 FROM conversation_insights i JOIN conversations c ON c.pk = i.conversation
                 WHERE i.workspace_id = ?1 AND i.key_phrases IS NOT NULL
                 ORDER BY c.started_at DESC, c.pk DESC LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![workspace.as_bytes(), i64::from(limit)], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(id, phrases, topic)| {
                    Ok(TopicSample {
                        id: ConversationId::from_slice(&id).ok_or_else(|| {
                            StoreError::backend("a conversation id is not 16 bytes")
                        })?,
                        key_phrases: phrases_from("conversation_insights.key_phrases", &phrases)?,
                        topic,
                    })
                })
                .collect()
        })
        .await
    }

    async fn save_topics(
        &self,
        workspace: WorkspaceId,
        topics: &[Topic],
        assignments: &[(ConversationId, Option<String>)],
        learned_at: Timestamp,
    ) -> Result<()> {
        let topics = topics.to_vec();
        let assignments = assignments.to_vec();
        self.write(move |c| {
            let ws = workspace.as_bytes();
            c.prepare_cached("DELETE FROM workspace_topics WHERE workspace_id = ?1")?
                .execute(params![ws])?;
            let mut add = c.prepare_cached(
                "INSERT INTO workspace_topics (workspace_id, position, topic, phrases, conversations)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (n, t) in topics.iter().enumerate() {
                add.execute(params![
                    ws,
                    n as i64,
                    t.key,
                    phrases_json(&t.phrases),
                    t.conversations as i64
                ])?;
            }
            let mut set = c.prepare_cached(
                "UPDATE conversation_insights SET topic = ?1
                 WHERE workspace_id = ?2
                   AND conversation = (SELECT pk FROM conversations
                                       WHERE id = ?3 AND workspace_id = ?2)",
            )?;
            for (id, topic) in &assignments {
                set.execute(params![topic, ws, id.as_bytes()])?;
            }
            c.prepare_cached(
                "UPDATE conversation_insights SET topic = NULL
                 WHERE workspace_id = ?1 AND topic IS NOT NULL
                   AND topic NOT IN (SELECT topic FROM workspace_topics WHERE workspace_id = ?1)",
            )?
            .execute(params![ws])?;
            c.prepare_cached(
                "INSERT INTO topic_learning (workspace_id, learned_at) VALUES (?1, ?2)
                 ON CONFLICT (workspace_id) DO UPDATE SET learned_at = excluded.learned_at",
            )?
            .execute(params![ws, learned_at.0])?;
            Ok(())
        })
        .await
    }

    async fn topics(&self, workspace: WorkspaceId) -> Result<TopicSet> {
        self.read(move |c| {
            let ws = workspace.as_bytes();
            let (learned_at, changed_at) = c
                .prepare_cached(
                    "SELECT learned_at, changed_at FROM topic_learning WHERE workspace_id = ?1",
                )?
                .query_row(params![ws], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .unwrap_or((0, 0));
            let mut st = c.prepare_cached(
                "SELECT topic, phrases, conversations FROM workspace_topics
                 WHERE workspace_id = ?1 ORDER BY position",
            )?;
            let rows = st
                .query_map(params![ws], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let topics = rows
                .into_iter()
                .map(|(key, phrases, n)| topic_from(key, &phrases, n))
                .collect::<Result<Vec<_>>>()?;
            Ok(TopicSet {
                topics,
                learned_at,
                changed_at,
            })
        })
        .await
    }

    async fn note_topic_change(&self, workspace: WorkspaceId, at: Timestamp) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO topic_learning (workspace_id, changed_at) VALUES (?1, ?2)
                 ON CONFLICT (workspace_id) DO UPDATE SET changed_at = excluded.changed_at",
            )?
            .execute(params![workspace.as_bytes(), at.0])?;
            Ok(())
        })
        .await
    }

    async fn insight_topics(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<Vec<(String, InsightTotals)>> {
        let parts = plan_sql(
            window,
            DAY_MS,
            &totals_sql_by(ph, "", "", &["i.topic"]),
            TOPIC_ROLLUPS,
            false,
            |_| vec!["NULLIF(r.topic, '')".into()],
            ph,
            ("", ""),
        );
        let rows = self
            .grouped(workspace, parts, |r| {
                Ok((r.get::<_, Option<String>>(0)?, totals_at(r, 1)?))
            })
            .await?;
        Ok(merge(rows, true)
            .into_iter()
            .filter_map(|(k, t)| k.map(|k| (k, t)))
            .collect())
    }
}

/// SQLite's placeholder `n`.
fn ph(n: u8) -> String {
    format!("?{n}")
}

impl SqliteStore {
    /// Runs each part of a [`plan_sql`] over its bounds (the five parameters bound) and maps
    /// each row with `row`, all parts' rows in one list.
    async fn grouped<T: Send + 'static>(
        &self,
        workspace: WorkspaceId,
        parts: Vec<(InsightWindow, String)>,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.read(move |c| {
            let mut out = Vec::new();
            for (w, sql) in &parts {
                let mut st = c.prepare_cached(sql)?;
                let rows = st.query_map(
                    params![
                        workspace.as_bytes(),
                        w.from.0,
                        w.to.0,
                        w.channel.map(|ch| ch.as_str()),
                        w.assistant.map(|a| a.as_bytes().to_vec()),
                    ],
                    row,
                )?;
                for r in rows {
                    out.push(r?);
                }
            }
            Ok(out)
        })
        .await
    }
}
/// The [`TOTAL_COLUMNS`] columns from `at` on as totals.
fn totals_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<InsightTotals> {
    let mut v = [0i64; TOTAL_COLUMNS];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(at + i)?;
    }
    Ok(totals_from(v))
}
