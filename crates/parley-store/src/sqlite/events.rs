//! [`EventStore`] on SQLite, and the appends the write transactions make (on the writer
//! connection, inside the caller's savepoint).

use async_trait::async_trait;
use parley_core::{AssistantId, ConversationId, MessageId, Timestamp, WorkspaceId};
use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::events::{EventFilter, EventStore, PendingEvent, StoredEvent};
use crate::sql::Dialect;
use crate::{Result, StoreError};

/// Appends `events` of `workspace`'s conversations; the workspace, channel and assistant come
/// from each conversation's row in the same statement.
pub(super) fn append(
    c: &Connection,
    workspace: WorkspaceId,
    events: &[PendingEvent],
    now: Timestamp,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut stmt = c.prepare_cached(
        "INSERT INTO events (workspace_id, type, conversation_id, channel, assistant_id, created_at, data)
         SELECT workspace_id, ?1, id, channel, assistant_id, ?2, ?3
           FROM conversations WHERE id = ?4 AND workspace_id = ?5",
    )?;
    for e in events {
        stmt.execute(params![
            e.event_type.as_str(),
            now.0,
            e.data,
            e.conversation.as_bytes(),
            workspace.as_bytes()
        ])?;
    }
    Ok(())
}

/// Appends `message.updated` for a message of the workspace.
pub(super) fn append_message_updated(
    c: &Connection,
    workspace: WorkspaceId,
    message: MessageId,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO events (workspace_id, type, conversation_id, channel, assistant_id, created_at, data)
         SELECT c.workspace_id, 'message.updated', c.id, c.channel, c.assistant_id, ?1, ?2
           FROM messages m JOIN conversations c ON c.pk = m.conversation
          WHERE m.id = ?3 AND c.workspace_id = ?4",
    )?
    .execute(params![
        Timestamp::now().0,
        crate::events::message_updated_data(message),
        message.as_bytes(),
        workspace.as_bytes()
    ])?;
    Ok(())
}

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredEvent>> {
    let ws: Vec<u8> = r.get(1)?;
    let t: String = r.get(2)?;
    let conv: Option<Vec<u8>> = r.get(3)?;
    let channel: Option<String> = r.get(4)?;
    let assistant: Option<Vec<u8>> = r.get(5)?;
    let data: String = r.get(7)?;
    let id: i64 = r.get(0)?;
    let created_at: i64 = r.get(6)?;
    Ok((|| {
        let (event_type, data) = crate::events::decode(&t, &data)?;
        Ok(StoredEvent {
            id,
            workspace_id: WorkspaceId::from_slice(&ws)
                .ok_or_else(|| StoreError::backend("bad events.workspace_id"))?,
            event_type,
            conversation_id: conv.as_deref().and_then(ConversationId::from_slice),
            channel: channel.as_deref().and_then(|c| c.parse().ok()),
            assistant_id: assistant.as_deref().and_then(AssistantId::from_slice),
            created_at: Timestamp(created_at),
            data,
        })
    })())
}

impl SqliteStore {
    /// [`EventStore::events_after`] (one workspace) or [`EventStore::events_since`] (`None`).
    async fn read_events(
        &self,
        workspace: Option<WorkspaceId>,
        after_id: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let sql =
            crate::events::events_after_sql(Dialect::Sqlite, workspace, after_id, filter, limit);
        self.read(move |c| {
            super::read::query_rows(c, &sql, event_from_row)?
                .into_iter()
                .collect()
        })
        .await
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn events_after(
        &self,
        workspace: WorkspaceId,
        after_id: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        self.read_events(Some(workspace), after_id, filter, limit)
            .await
    }

    async fn events_since(&self, after_id: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        self.read_events(None, after_id, &EventFilter::default(), limit)
            .await
    }

    async fn latest_event_id(&self) -> Result<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT max(coalesce((SELECT max(id) FROM events), 0),
                            (SELECT pruned_through FROM event_log_state))",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn pruned_through(&self) -> Result<i64> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT pruned_through FROM event_log_state", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn prune_before(&self, before: Timestamp) -> Result<u64> {
        self.write(move |c| {
            c.execute(
                "UPDATE event_log_state SET pruned_through = max(pruned_through,
                     coalesce((SELECT max(id) FROM events WHERE created_at < ?1 AND NOT EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.enabled = 1 AND w.workspace_id = events.workspace_id AND w.cursor < events.id)), 0))",
                [before.0],
            )?;
            let n = c.execute("DELETE FROM events WHERE created_at < ?1 AND NOT EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.enabled = 1 AND w.workspace_id = events.workspace_id AND w.cursor < events.id)", [before.0])?;
            Ok(n as u64)
        })
        .await
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.subscribe()
    }
}
