//! [`RetentionStore`] on PostgreSQL. Each batch is one short transaction, so writers on any
//! server wait at most for one batch's row locks.

use async_trait::async_trait;
use parley_core::{ConversationId, ConversationStatus, MessageId, Timestamp, WorkspaceId};
use uuid::Uuid;

use super::PostgresStore;
use crate::Result;
use crate::retention::{
    AuditEntry, ContactMatch, DeletedConversations, NewAuditEntry, RetentionPolicy, RetentionStore,
    phone_digits, storage_keys_of,
};

fn days(v: Option<i32>) -> Option<u32> {
    v.and_then(|d| u32::try_from(d).ok())
}

fn db_days(v: Option<u32>) -> Option<i32> {
    v.map(|d| i32::try_from(d).unwrap_or(i32::MAX))
}

fn status_names(statuses: &[ConversationStatus]) -> Vec<String> {
    statuses.iter().map(|s| s.as_str().to_owned()).collect()
}

const FILES_BEFORE: &str = "SELECT c.id, m.id, m.meta FROM messages m
    JOIN conversations c ON c.pk = m.conversation
    WHERE c.workspace_id = $1 AND m.created_at < $2 AND m.meta LIKE '%\"storage_key\"%'
    ORDER BY m.created_at, m.pk";

impl PostgresStore {
    async fn files_before(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        limit: Option<u32>,
    ) -> Result<Vec<(ConversationId, MessageId, u64)>> {
        let sql = match limit {
            Some(l) => format!("{FILES_BEFORE} LIMIT {l}"),
            None => FILES_BEFORE.to_owned(),
        };
        let client = self.pool.get().await?;
        let rows = client.query(&sql, &[&ws.0, &before.0]).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let meta: Option<String> = r.get(2);
                let files = storage_keys_of(meta.as_deref()).len() as u64;
                (files > 0).then(|| (ConversationId(r.get(0)), MessageId(r.get(1)), files))
            })
            .collect())
    }
}

fn audit_from_row(r: &tokio_postgres::Row) -> AuditEntry {
    let details: String = r.get(4);
    AuditEntry {
        id: r.get(0),
        actor: r.get(1),
        action: r.get(2),
        target: r.get(3),
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        at: Timestamp(r.get(5)),
    }
}

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn retention_policy(&self, workspace: WorkspaceId) -> Result<RetentionPolicy> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT conversation_days, conversation_statuses, attachment_days, tracker_days,
                        updated_at
                   FROM retention_policies WHERE workspace_id = $1",
                &[&workspace.0],
            )
            .await?;
        Ok(row
            .map(|r| RetentionPolicy {
                conversation_days: days(r.get(0)),
                conversation_statuses: RetentionPolicy::statuses_from(r.get(1)),
                attachment_days: days(r.get(2)),
                tracker_days: days(r.get(3)),
                updated_at: Some(Timestamp(r.get(4))),
            })
            .unwrap_or_default())
    }

    async fn save_retention_policy(
        &self,
        workspace: WorkspaceId,
        policy: &RetentionPolicy,
        at: Timestamp,
    ) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO retention_policies (workspace_id, conversation_days,
                     conversation_statuses, attachment_days, tracker_days, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (workspace_id) DO UPDATE SET
                     conversation_days = excluded.conversation_days,
                     conversation_statuses = excluded.conversation_statuses,
                     attachment_days = excluded.attachment_days,
                     tracker_days = excluded.tracker_days,
                     updated_at = excluded.updated_at",
                &[
                    &workspace.0,
                    &db_days(policy.conversation_days),
                    &policy.statuses_text(),
                    &db_days(policy.attachment_days),
                    &db_days(policy.tracker_days),
                    &at.0,
                ],
            )
            .await?;
        Ok(())
    }

    async fn workspaces_with_retention(&self) -> Result<Vec<WorkspaceId>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT workspace_id FROM retention_policies
                  WHERE conversation_days IS NOT NULL OR attachment_days IS NOT NULL
                     OR tracker_days IS NOT NULL",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| WorkspaceId(r.get(0))).collect())
    }

    async fn expired_conversations(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        statuses: &[ConversationStatus],
        limit: u32,
    ) -> Result<Vec<ConversationId>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id FROM conversations
                  WHERE workspace_id = $1 AND last_message_at < $2
                    AND (cardinality($3::text[]) = 0 OR status = ANY($3))
                  ORDER BY last_message_at, id LIMIT $4",
                &[
                    &workspace.0,
                    &before.0,
                    &status_names(statuses),
                    &i64::from(limit),
                ],
            )
            .await?;
        Ok(rows.iter().map(|r| ConversationId(r.get(0))).collect())
    }

    async fn count_expired_conversations(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        statuses: &[ConversationStatus],
    ) -> Result<(u64, u64)> {
        let client = self.pool.get().await?;
        let r = client
            .query_one(
                "SELECT count(*), coalesce(sum(stored_message_count), 0)::bigint
                   FROM conversations
                  WHERE workspace_id = $1 AND last_message_at < $2
                    AND (cardinality($3::text[]) = 0 OR status = ANY($3))",
                &[&workspace.0, &before.0, &status_names(statuses)],
            )
            .await?;
        let (n, m): (i64, i64) = (r.get(0), r.get(1));
        Ok((n.max(0) as u64, m.max(0) as u64))
    }

    async fn delete_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
    ) -> Result<DeletedConversations> {
        let out = super::write::delete_conversations(&self.pool, workspace, ids).await?;
        if !out.conversations.is_empty() {
            self.events.bump();
        }
        Ok(out)
    }

    async fn messages_with_files_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<(ConversationId, MessageId, u64)>> {
        self.files_before(workspace, before, Some(limit)).await
    }

    async fn count_messages_with_files_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
    ) -> Result<(u64, u64)> {
        let all = self.files_before(workspace, before, None).await?;
        Ok((all.len() as u64, all.iter().map(|m| m.2).sum()))
    }

    async fn delete_tracker_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> Result<(u64, u64)> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let limit = i64::from(limit);
        let items = tx
            .execute(
                "DELETE FROM tracker_items WHERE id IN (
                     SELECT i.id FROM tracker_items i
                       JOIN tracker_sessions s ON s.id = i.session_id
                      WHERE s.workspace_id = $1 AND i.at < $2 LIMIT $3)",
                &[&workspace.0, &before.0, &limit],
            )
            .await?;
        let sessions: Vec<Uuid> = tx
            .query(
                "SELECT id FROM tracker_sessions WHERE workspace_id = $1 AND updated_at < $2
                  ORDER BY id LIMIT $3 FOR UPDATE",
                &[&workspace.0, &before.0, &limit],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let extra = tx
            .execute(
                "DELETE FROM tracker_items WHERE session_id = ANY($1)",
                &[&sessions],
            )
            .await?;
        tx.execute(
            "DELETE FROM tracker_links WHERE session_id = ANY($1)",
            &[&sessions],
        )
        .await?;
        tx.execute(
            "DELETE FROM tracker_sessions WHERE id = ANY($1)",
            &[&sessions],
        )
        .await?;
        tx.commit().await?;
        Ok((items + extra, sessions.len() as u64))
    }

    async fn count_tracker_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
    ) -> Result<(u64, u64)> {
        let client = self.pool.get().await?;
        let r = client
            .query_one(
                "SELECT
                   (SELECT count(*) FROM tracker_items i
                      JOIN tracker_sessions s ON s.id = i.session_id
                     WHERE s.workspace_id = $1 AND (i.at < $2 OR s.updated_at < $2)),
                   (SELECT count(*) FROM tracker_sessions
                     WHERE workspace_id = $1 AND updated_at < $2)",
                &[&workspace.0, &before.0],
            )
            .await?;
        let (i, s): (i64, i64) = (r.get(0), r.get(1));
        Ok((i.max(0) as u64, s.max(0) as u64))
    }

    async fn contact_conversations(
        &self,
        workspace: WorkspaceId,
        contact: &ContactMatch,
        limit: u32,
    ) -> Result<Vec<ConversationId>> {
        // Digits only, in SQL.
        let digits = |col: &str| format!("regexp_replace({col}, '[^0-9]', '', 'g')");
        let (sql, value) = match contact {
            ContactMatch::Contact(v) => (
                "SELECT id FROM conversations WHERE workspace_id = $1 AND contact = $2
                  ORDER BY id LIMIT $3"
                    .to_owned(),
                v.clone(),
            ),
            ContactMatch::Email(v) => (
                "SELECT id FROM conversations c WHERE workspace_id = $1 AND (lower(contact) = $2
                   OR EXISTS (SELECT 1 FROM variables v
                               WHERE v.conversation = c.pk AND lower(v.value) = $2))
                  ORDER BY id LIMIT $3"
                    .to_owned(),
                v.to_ascii_lowercase(),
            ),
            ContactMatch::Phone(v) => (
                format!(
                    "SELECT id FROM conversations c WHERE workspace_id = $1 AND ({} = $2
                       OR EXISTS (SELECT 1 FROM variables v
                                   WHERE v.conversation = c.pk AND {} = $2))
                      ORDER BY id LIMIT $3",
                    digits("contact"),
                    digits("v.value")
                ),
                phone_digits(v),
            ),
        };
        let client = self.pool.get().await?;
        let rows = client
            .query(&sql, &[&workspace.0, &value, &i64::from(limit)])
            .await?;
        Ok(rows.iter().map(|r| ConversationId(r.get(0))).collect())
    }

    async fn append_audit(
        &self,
        workspace: WorkspaceId,
        entry: &NewAuditEntry,
    ) -> Result<AuditEntry> {
        let e = AuditEntry {
            id: Uuid::now_v7(),
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            target: entry.target.clone(),
            details: entry.details.clone(),
            at: Timestamp::now(),
        };
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO audit_log (id, workspace_id, actor, action, target, details, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &e.id,
                    &workspace.0,
                    &e.actor,
                    &e.action,
                    &e.target,
                    &e.details.to_string(),
                    &e.at.0,
                ],
            )
            .await?;
        Ok(e)
    }

    async fn audit_log(
        &self,
        workspace: WorkspaceId,
        action: Option<&str>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, actor, action, target, details, at FROM audit_log
                  WHERE workspace_id = $1 AND ($2::text IS NULL OR action = $2)
                    AND ($3::uuid IS NULL OR id < $3)
                  ORDER BY id DESC LIMIT $4",
                &[&workspace.0, &action, &before, &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(audit_from_row).collect())
    }
}
