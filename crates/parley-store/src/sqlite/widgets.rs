//! Widgets and tracker sessions in SQLite (migration 0007): JSON documents beside the columns
//! they are looked up by.

use async_trait::async_trait;
use parley_core::widget::{
    TrackerItem, TrackerRecord, TrackerSession, WidgetRecord, WidgetSettings,
};
use parley_core::{AssistantId, ConversationId, Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::SqliteStore;
use crate::sql::Dialect;
use crate::{Result, StoreError, WidgetStore};

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::backend(format!("stored JSON: {e}"))
}

/// A widget row: workspace, assistant, key, settings JSON, update time.
type WidgetRow = (Vec<u8>, Vec<u8>, String, String, i64);

fn widget_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WidgetRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn build_widget(row: WidgetRow) -> Result<WidgetRecord> {
    let (ws, assistant, public_key, settings, updated_at) = row;
    let settings: WidgetSettings = serde_json::from_str(&settings).map_err(json_err)?;
    Ok(WidgetRecord {
        workspace_id: WorkspaceId::from_slice(&ws).ok_or_else(|| StoreError::backend("bad id"))?,
        assistant_id: AssistantId::from_slice(&assistant)
            .ok_or_else(|| StoreError::backend("bad id"))?,
        public_key,
        settings,
        updated_at: Timestamp(updated_at),
    })
}

const WIDGET_COLS: &str = "workspace_id, assistant_id, public_key, settings, updated_at";

pub(super) fn widget_for_assistant(
    c: &Connection,
    ws: WorkspaceId,
    assistant: AssistantId,
) -> Result<Option<WidgetRecord>> {
    c.prepare_cached(&format!(
        "SELECT {WIDGET_COLS} FROM widgets WHERE workspace_id = ?1 AND assistant_id = ?2"
    ))?
    .query_row(
        params![ws.as_bytes(), assistant.as_bytes()],
        widget_from_row,
    )
    .optional()?
    .map(build_widget)
    .transpose()
}

pub(super) fn widget_by_key(c: &Connection, key: &str) -> Result<Option<WidgetRecord>> {
    c.prepare_cached(&format!(
        "SELECT {WIDGET_COLS} FROM widgets WHERE public_key = ?1"
    ))?
    .query_row([key], widget_from_row)
    .optional()?
    .map(build_widget)
    .transpose()
}

pub(super) fn save_widget(c: &Connection, w: &WidgetRecord) -> Result<()> {
    put_widget(c, w, true)
}

/// [`crate::WidgetStore::create_widget`]: inserts unless the assistant has a widget, then reads it.
pub(super) fn create_widget(c: &Connection, w: &WidgetRecord) -> Result<WidgetRecord> {
    put_widget(c, w, false)?;
    widget_for_assistant(c, w.workspace_id, w.assistant_id)?
        .ok_or(StoreError::NotFound { what: "widget" })
}

/// Inserts the widget; an existing widget of the assistant is replaced when `replace`, kept
/// otherwise.
fn put_widget(c: &Connection, w: &WidgetRecord, replace: bool) -> Result<()> {
    let exists: Option<i64> = c
        .prepare_cached("SELECT 1 FROM assistants WHERE id = ?1 AND workspace_id = ?2")?
        .query_row(
            params![w.assistant_id.as_bytes(), w.workspace_id.as_bytes()],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::NotFound { what: "assistant" });
    }
    let settings = serde_json::to_string(&w.settings).map_err(json_err)?;
    c.prepare_cached(&crate::widgets::put_widget_sql(Dialect::Sqlite, replace))?
        .execute(params![
            w.assistant_id.as_bytes(),
            w.workspace_id.as_bytes(),
            w.public_key,
            settings,
            w.updated_at.0
        ])
        .map_err(|e| match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                StoreError::Conflict {
                    code: "widget_key_taken",
                    message: "another widget has this key".into(),
                }
            }
            _ => e.into(),
        })?;
    Ok(())
}

fn session_workspace(c: &Connection, id: Uuid) -> Result<Option<Vec<u8>>> {
    Ok(
        c.prepare_cached("SELECT workspace_id FROM tracker_sessions WHERE id = ?1")?
            .query_row([id.as_bytes()], |r| r.get(0))
            .optional()?,
    )
}

pub(super) fn save_tracker_session(c: &Connection, s: &TrackerSession) -> Result<()> {
    let ws = s
        .workspace_id
        .ok_or_else(|| StoreError::backend("tracker session without workspace"))?;
    if let Some(owner) = session_workspace(c, s.id)?
        && owner != ws.as_bytes()
    {
        return Err(StoreError::Conflict {
            code: "tracker_session_taken",
            message: "this session id belongs elsewhere".into(),
        });
    }
    let data = serde_json::to_string(s).map_err(json_err)?;
    c.prepare_cached(
        "INSERT INTO tracker_sessions (id, workspace_id, data, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
    )?
    .execute(params![
        s.id.as_bytes(),
        ws.as_bytes(),
        data,
        Timestamp::now().0
    ])?;
    Ok(())
}

pub(super) fn link_tracker_session(
    c: &Connection,
    ws: WorkspaceId,
    session: Uuid,
    conversation: ConversationId,
) -> Result<()> {
    match session_workspace(c, session)? {
        Some(owner) if owner == ws.as_bytes() => {}
        _ => {
            return Err(StoreError::NotFound {
                what: "tracker session",
            });
        }
    }
    c.prepare_cached(
        "INSERT INTO tracker_links (conversation_id, session_id) VALUES (?1, ?2)
         ON CONFLICT (conversation_id) DO UPDATE SET session_id = excluded.session_id",
    )?
    .execute(params![conversation.as_bytes(), session.as_bytes()])?;
    Ok(())
}

pub(super) fn tracker_session(
    c: &Connection,
    ws: WorkspaceId,
    id: Uuid,
) -> Result<Option<TrackerSession>> {
    c.prepare_cached("SELECT data FROM tracker_sessions WHERE id = ?1 AND workspace_id = ?2")?
        .query_row(params![id.as_bytes(), ws.as_bytes()], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
        .map(|d| serde_json::from_str(&d).map_err(json_err))
        .transpose()
}

pub(super) fn save_tracker_item(c: &Connection, ws: WorkspaceId, item: &TrackerItem) -> Result<()> {
    match session_workspace(c, item.session_id)? {
        Some(owner) if owner == ws.as_bytes() => {}
        _ => {
            return Err(StoreError::NotFound {
                what: "tracker session",
            });
        }
    }
    // An item id already used by another session is not taken over.
    let owner: Option<Vec<u8>> = c
        .prepare_cached("SELECT session_id FROM tracker_items WHERE id = ?1")?
        .query_row([item.id.as_bytes()], |r| r.get(0))
        .optional()?;
    if owner.is_some_and(|o| o != item.session_id.as_bytes()) {
        return Err(StoreError::Conflict {
            code: "tracker_item_taken",
            message: "this item id belongs to another session".into(),
        });
    }
    let data = serde_json::to_string(item).map_err(json_err)?;
    c.prepare_cached(
        "INSERT INTO tracker_items (id, session_id, at, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET data = excluded.data",
    )?
    .execute(params![
        item.id.as_bytes(),
        item.session_id.as_bytes(),
        item.at.0,
        data
    ])?;
    Ok(())
}

pub(super) fn tracker_for_conversation(
    c: &Connection,
    ws: WorkspaceId,
    conversation: ConversationId,
) -> Result<Option<TrackerRecord>> {
    let row: Option<(Vec<u8>, String)> = c
        .prepare_cached(
            "SELECT s.id, s.data FROM tracker_links l JOIN tracker_sessions s ON s.id = l.session_id
              WHERE l.conversation_id = ?1 AND s.workspace_id = ?2",
        )?
        .query_row(params![conversation.as_bytes(), ws.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((id, data)) = row else {
        return Ok(None);
    };
    let session: TrackerSession = serde_json::from_str(&data).map_err(json_err)?;
    let mut stmt = c.prepare_cached(
        "SELECT data FROM tracker_items WHERE session_id = ?1 ORDER BY at, id LIMIT 1000",
    )?;
    let items = stmt
        .query_map([id], |r| r.get::<_, String>(0))?
        .map(|d| {
            d.map_err(StoreError::from)
                .and_then(|d| serde_json::from_str(&d).map_err(json_err))
        })
        .collect::<Result<Vec<TrackerItem>>>()?;
    Ok(Some(TrackerRecord { session, items }))
}

/// Removes a conversation's link to its visit, and the visit with its items when no other
/// conversation links to it (called inside the conversation's deletion).
/// Returns the (items, sessions) deleted.
pub(super) fn delete_for_conversation(
    c: &Connection,
    conversation: ConversationId,
) -> Result<(u64, u64)> {
    let session: Option<Vec<u8>> = c
        .prepare_cached("SELECT session_id FROM tracker_links WHERE conversation_id = ?1")?
        .query_row([conversation.as_bytes()], |r| r.get(0))
        .optional()?;
    let Some(session) = session else {
        return Ok((0, 0));
    };
    c.prepare_cached("DELETE FROM tracker_links WHERE conversation_id = ?1")?
        .execute([conversation.as_bytes()])?;
    let others: i64 = c
        .prepare_cached("SELECT count(*) FROM tracker_links WHERE session_id = ?1")?
        .query_row([&session], |r| r.get(0))?;
    if others > 0 {
        return Ok((0, 0));
    }
    let items = c
        .prepare_cached("DELETE FROM tracker_items WHERE session_id = ?1")?
        .execute([&session])?;
    let sessions = c
        .prepare_cached("DELETE FROM tracker_sessions WHERE id = ?1")?
        .execute([&session])?;
    Ok((items as u64, sessions as u64))
}

#[async_trait]
impl WidgetStore for SqliteStore {
    async fn widget_for_assistant(
        &self,
        workspace: WorkspaceId,
        assistant: AssistantId,
    ) -> Result<Option<WidgetRecord>> {
        self.read(move |c| widget_for_assistant(c, workspace, assistant))
            .await
    }

    async fn widget_by_key(&self, public_key: &str) -> Result<Option<WidgetRecord>> {
        let key = public_key.to_owned();
        self.read(move |c| widget_by_key(c, &key)).await
    }

    async fn save_widget(&self, w: &WidgetRecord) -> Result<()> {
        let w = w.clone();
        self.write(move |c| save_widget(c, &w)).await
    }

    async fn create_widget(&self, w: &WidgetRecord) -> Result<WidgetRecord> {
        let w = w.clone();
        self.write(move |c| create_widget(c, &w)).await
    }

    async fn save_tracker_session(&self, s: &TrackerSession) -> Result<()> {
        let s = s.clone();
        self.write(move |c| save_tracker_session(c, &s)).await
    }

    async fn tracker_session(
        &self,
        workspace: WorkspaceId,
        id: uuid::Uuid,
    ) -> Result<Option<TrackerSession>> {
        self.read(move |c| tracker_session(c, workspace, id)).await
    }

    async fn link_tracker_session(
        &self,
        workspace: WorkspaceId,
        session: uuid::Uuid,
        conversation: ConversationId,
    ) -> Result<()> {
        self.write(move |c| link_tracker_session(c, workspace, session, conversation))
            .await
    }

    async fn save_tracker_item(&self, workspace: WorkspaceId, item: &TrackerItem) -> Result<()> {
        let item = item.clone();
        self.write(move |c| save_tracker_item(c, workspace, &item))
            .await
    }

    async fn tracker_for_conversation(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
    ) -> Result<Option<TrackerRecord>> {
        self.read(move |c| tracker_for_conversation(c, workspace, conversation))
            .await
    }
}
