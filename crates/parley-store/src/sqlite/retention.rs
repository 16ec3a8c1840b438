//! [`RetentionStore`] on SQLite. Each batch is one write transaction on the single writer, so
//! other writes wait for one batch at a time, never for a whole retention run.

use async_trait::async_trait;
use parley_core::{ConversationId, ConversationStatus, MessageId, Timestamp, WorkspaceId};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use uuid::Uuid;

use super::SqliteStore;
use crate::Result;
use crate::retention::{
    AuditEntry, ContactMatch, DeletedConversations, NewAuditEntry, RetentionPolicy, RetentionStore,
    phone_digits, storage_keys_of,
};

fn days(v: Option<i64>) -> Option<u32> {
    v.and_then(|d| u32::try_from(d).ok())
}

/// `AND status IN (...)` for the statuses (none: any), with its parameters from `?{first}`.
fn status_clause(statuses: &[ConversationStatus], first: usize) -> (String, Vec<SqlValue>) {
    if statuses.is_empty() {
        return (String::new(), Vec::new());
    }
    let marks: Vec<String> = (0..statuses.len())
        .map(|i| format!("?{}", first + i))
        .collect();
    (
        format!(" AND status IN ({})", marks.join(", ")),
        statuses
            .iter()
            .map(|s| SqlValue::Text(s.as_str().to_owned()))
            .collect(),
    )
}

fn expired(
    c: &Connection,
    ws: WorkspaceId,
    before: Timestamp,
    statuses: &[ConversationStatus],
    limit: u32,
) -> Result<Vec<ConversationId>> {
    let (clause, extra) = status_clause(statuses, 4);
    let sql = format!(
        "SELECT id FROM conversations WHERE workspace_id = ?1 AND last_message_at < ?2{clause}
         ORDER BY last_message_at, id LIMIT ?3"
    );
    let mut p: Vec<SqlValue> = vec![
        SqlValue::Blob(ws.as_bytes().to_vec()),
        SqlValue::Integer(before.0),
        SqlValue::Integer(i64::from(limit)),
    ];
    p.extend(extra);
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(p), |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.extend(ConversationId::from_slice(&r?));
    }
    Ok(out)
}

fn count_expired(
    c: &Connection,
    ws: WorkspaceId,
    before: Timestamp,
    statuses: &[ConversationStatus],
) -> Result<(u64, u64)> {
    let (clause, extra) = status_clause(statuses, 3);
    let sql = format!(
        "SELECT count(*), coalesce(sum(stored_message_count), 0) FROM conversations
          WHERE workspace_id = ?1 AND last_message_at < ?2{clause}"
    );
    let mut p: Vec<SqlValue> = vec![
        SqlValue::Blob(ws.as_bytes().to_vec()),
        SqlValue::Integer(before.0),
    ];
    p.extend(extra);
    let (n, m): (i64, i64) = c
        .prepare_cached(&sql)?
        .query_row(params_from_iter(p), |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((n.max(0) as u64, m.max(0) as u64))
}

const FILES_BEFORE: &str = "SELECT c.id, m.id, m.meta FROM messages m
    JOIN conversations c ON c.pk = m.conversation
    WHERE c.workspace_id = ?1 AND m.created_at < ?2 AND m.meta LIKE '%\"storage_key\"%'
    ORDER BY m.created_at, m.pk";

fn files_before(
    c: &Connection,
    ws: WorkspaceId,
    before: Timestamp,
    limit: Option<u32>,
) -> Result<Vec<(ConversationId, MessageId, u64)>> {
    let sql = match limit {
        Some(l) => format!("{FILES_BEFORE} LIMIT {l}"),
        None => FILES_BEFORE.to_owned(),
    };
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params![ws.as_bytes(), before.0], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (conv, msg, meta) = r?;
        let files = storage_keys_of(meta.as_deref()).len() as u64;
        if let (Some(conv), Some(msg), true) = (
            ConversationId::from_slice(&conv),
            MessageId::from_slice(&msg),
            files > 0,
        ) {
            out.push((conv, msg, files));
        }
    }
    Ok(out)
}

fn delete_tracker(
    c: &Connection,
    ws: WorkspaceId,
    before: Timestamp,
    limit: u32,
) -> Result<(u64, u64)> {
    let items = c
        .prepare_cached(
            "DELETE FROM tracker_items WHERE id IN (
                 SELECT i.id FROM tracker_items i
                   JOIN tracker_sessions s ON s.id = i.session_id
                  WHERE s.workspace_id = ?1 AND i.at < ?2 LIMIT ?3)",
        )?
        .execute(params![ws.as_bytes(), before.0, limit])? as u64;
    let sessions: Vec<Vec<u8>> = c
        .prepare_cached(
            "SELECT id FROM tracker_sessions WHERE workspace_id = ?1 AND updated_at < ?2 LIMIT ?3",
        )?
        .query_map(params![ws.as_bytes(), before.0, limit], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut extra_items = 0;
    for s in &sessions {
        extra_items += c
            .prepare_cached("DELETE FROM tracker_items WHERE session_id = ?1")?
            .execute([s])? as u64;
        c.prepare_cached("DELETE FROM tracker_links WHERE session_id = ?1")?
            .execute([s])?;
        c.prepare_cached("DELETE FROM tracker_sessions WHERE id = ?1")?
            .execute([s])?;
    }
    Ok((items + extra_items, sessions.len() as u64))
}

fn count_tracker(c: &Connection, ws: WorkspaceId, before: Timestamp) -> Result<(u64, u64)> {
    let (items, sessions): (i64, i64) = c
        .prepare_cached(
            "SELECT
               (SELECT count(*) FROM tracker_items i JOIN tracker_sessions s ON s.id = i.session_id
                 WHERE s.workspace_id = ?1 AND (i.at < ?2 OR s.updated_at < ?2)),
               (SELECT count(*) FROM tracker_sessions WHERE workspace_id = ?1 AND updated_at < ?2)",
        )?
        .query_row(params![ws.as_bytes(), before.0], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok((items.max(0) as u64, sessions.max(0) as u64))
}

fn contact_conversations(
    c: &Connection,
    ws: WorkspaceId,
    contact: &ContactMatch,
    limit: u32,
) -> Result<Vec<ConversationId>> {
    // Digits only, in SQL: the separators a phone number is written with.
    const DIGITS: &str = "replace(replace(replace(replace(replace(replace({}, ' ', ''), '-', ''), '.', ''), '(', ''), ')', ''), '+', '')";
    let digits = |col: &str| DIGITS.replace("{}", col);
    let (sql, value) = match contact {
        ContactMatch::Contact(v) => (
            "SELECT id FROM conversations WHERE workspace_id = ?1 AND contact = ?2
              ORDER BY id LIMIT ?3"
                .to_owned(),
            v.clone(),
        ),
        ContactMatch::Email(v) => (
            "SELECT id FROM conversations c WHERE workspace_id = ?1 AND (lower(contact) = ?2
               OR EXISTS (SELECT 1 FROM variables v WHERE v.conversation = c.pk AND lower(v.value) = ?2))
              ORDER BY id LIMIT ?3"
                .to_owned(),
            v.to_ascii_lowercase(),
        ),
        ContactMatch::Phone(v) => (
            format!(
                "SELECT id FROM conversations c WHERE workspace_id = ?1 AND ({} = ?2
                   OR EXISTS (SELECT 1 FROM variables v WHERE v.conversation = c.pk AND {} = ?2))
                  ORDER BY id LIMIT ?3",
                digits("contact"),
                digits("v.value")
            ),
            phone_digits(v),
        ),
    };
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params![ws.as_bytes(), value, limit], |r| {
        r.get::<_, Vec<u8>>(0)
    })?;
    let mut out = Vec::new();
    for r in rows {
        out.extend(ConversationId::from_slice(&r?));
    }
    Ok(out)
}

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let id: Vec<u8> = r.get(0)?;
    let details: String = r.get(4)?;
    Ok(AuditEntry {
        id: Uuid::from_slice(&id).unwrap_or_default(),
        actor: r.get(1)?,
        action: r.get(2)?,
        target: r.get(3)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        at: Timestamp(r.get(5)?),
    })
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn retention_policy(&self, workspace: WorkspaceId) -> Result<RetentionPolicy> {
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT conversation_days, conversation_statuses, attachment_days,
                            tracker_days, updated_at
                       FROM retention_policies WHERE workspace_id = ?1",
                )?
                .query_row([workspace.as_bytes()], |r| {
                    Ok(RetentionPolicy {
                        conversation_days: days(r.get(0)?),
                        conversation_statuses: RetentionPolicy::statuses_from(
                            &r.get::<_, String>(1)?,
                        ),
                        attachment_days: days(r.get(2)?),
                        tracker_days: days(r.get(3)?),
                        updated_at: Some(Timestamp(r.get(4)?)),
                    })
                })
                .optional()?;
            Ok(row.unwrap_or_default())
        })
        .await
    }

    async fn save_retention_policy(
        &self,
        workspace: WorkspaceId,
        policy: &RetentionPolicy,
        at: Timestamp,
    ) -> Result<()> {
        let p = policy.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO retention_policies (workspace_id, conversation_days,
                     conversation_statuses, attachment_days, tracker_days, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (workspace_id) DO UPDATE SET
                     conversation_days = excluded.conversation_days,
                     conversation_statuses = excluded.conversation_statuses,
                     attachment_days = excluded.attachment_days,
                     tracker_days = excluded.tracker_days,
                     updated_at = excluded.updated_at",
            )?
            .execute(params![
                workspace.as_bytes(),
                p.conversation_days,
                p.statuses_text(),
                p.attachment_days,
                p.tracker_days,
                at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn workspaces_with_retention(&self) -> Result<Vec<WorkspaceId>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT workspace_id FROM retention_policies
                  WHERE conversation_days IS NOT NULL OR attachment_days IS NOT NULL
                     OR tracker_days IS NOT NULL",
            )?;
            let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.extend(WorkspaceId::from_slice(&r?));
            }
            Ok(out)
        })
        .await
    }

    async fn expired_conversations(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        statuses: &[ConversationStatus],
        limit: u32,
    ) -> Result<Vec<ConversationId>> {
        let statuses = statuses.to_vec();
        self.read(move |c| expired(c, workspace, before, &statuses, limit))
            .await
    }

    async fn count_expired_conversations(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        statuses: &[ConversationStatus],
    ) -> Result<(u64, u64)> {
        let statuses = statuses.to_vec();
        self.read(move |c| count_expired(c, workspace, before, &statuses))
            .await
    }

    async fn delete_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
    ) -> Result<DeletedConversations> {
        let ids = ids.to_vec();
        let out = self
            .write(move |c| {
                let mut out = DeletedConversations::default();
                for id in ids {
                    super::write::delete_one_conversation(c, workspace, id, &mut out)?;
                }
                Ok(out)
            })
            .await?;
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
        self.read(move |c| files_before(c, workspace, before, Some(limit)))
            .await
    }

    async fn count_messages_with_files_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
    ) -> Result<(u64, u64)> {
        let all = self
            .read(move |c| files_before(c, workspace, before, None))
            .await?;
        Ok((all.len() as u64, all.iter().map(|m| m.2).sum()))
    }

    async fn delete_tracker_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> Result<(u64, u64)> {
        self.write(move |c| delete_tracker(c, workspace, before, limit))
            .await
    }

    async fn count_tracker_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
    ) -> Result<(u64, u64)> {
        self.read(move |c| count_tracker(c, workspace, before))
            .await
    }

    async fn contact_conversations(
        &self,
        workspace: WorkspaceId,
        contact: &ContactMatch,
        limit: u32,
    ) -> Result<Vec<ConversationId>> {
        let contact = contact.clone();
        self.read(move |c| contact_conversations(c, workspace, &contact, limit))
            .await
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
        let row = e.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO audit_log (id, workspace_id, actor, action, target, details, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                row.id.as_bytes(),
                workspace.as_bytes(),
                row.actor,
                row.action,
                row.target,
                row.details.to_string(),
                row.at.0
            ])?;
            Ok(())
        })
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
        let action = action.map(str::to_owned);
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, actor, action, target, details, at FROM audit_log
                  WHERE workspace_id = ?1 AND (?2 IS NULL OR action = ?2)
                    AND (?3 IS NULL OR id < ?3)
                  ORDER BY id DESC LIMIT ?4",
            )?;
            let rows = st.query_map(
                params![
                    workspace.as_bytes(),
                    action,
                    before.map(|b| b.as_bytes().to_vec()),
                    limit
                ],
                audit_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
