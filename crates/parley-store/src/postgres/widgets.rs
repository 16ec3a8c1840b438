//! Widgets and tracker sessions in PostgreSQL (migration 0006): JSON documents beside the
//! columns they are looked up by.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use parley_core::widget::{
    TrackerItem, TrackerRecord, TrackerSession, WidgetRecord, WidgetSettings,
};
use parley_core::{AssistantId, ConversationId, Timestamp, WorkspaceId};
use uuid::Uuid;

use super::PostgresStore;
use super::is_unique_violation;
use crate::sql::Dialect;
use crate::{Result, StoreError, WidgetStore};

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::backend(format!("stored JSON: {e}"))
}

const WIDGET_COLS: &str = "workspace_id, assistant_id, public_key, settings, updated_at";

fn build_widget(r: &tokio_postgres::Row) -> Result<WidgetRecord> {
    let settings: String = r.get(3);
    let settings: WidgetSettings = serde_json::from_str(&settings).map_err(json_err)?;
    Ok(WidgetRecord {
        workspace_id: WorkspaceId(r.get(0)),
        assistant_id: AssistantId(r.get(1)),
        public_key: r.get(2),
        settings,
        updated_at: Timestamp(r.get(4)),
    })
}

pub(super) async fn widget_for_assistant(
    pool: &Pool,
    ws: WorkspaceId,
    assistant: AssistantId,
) -> Result<Option<WidgetRecord>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {WIDGET_COLS} FROM widgets WHERE workspace_id = $1 AND assistant_id = $2"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&ws.0, &assistant.0])
        .await?
        .map(|r| build_widget(&r))
        .transpose()
}

pub(super) async fn widget_by_key(pool: &Pool, key: &str) -> Result<Option<WidgetRecord>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {WIDGET_COLS} FROM widgets WHERE public_key = $1"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&key])
        .await?
        .map(|r| build_widget(&r))
        .transpose()
}

pub(super) async fn save_widget(pool: &Pool, w: &WidgetRecord) -> Result<()> {
    put_widget(pool, w, true).await
}

/// [`crate::WidgetStore::create_widget`]: inserts unless the assistant has a widget, then reads it.
pub(super) async fn create_widget(pool: &Pool, w: &WidgetRecord) -> Result<WidgetRecord> {
    put_widget(pool, w, false).await?;
    widget_for_assistant(pool, w.workspace_id, w.assistant_id)
        .await?
        .ok_or(StoreError::NotFound { what: "widget" })
}

/// Inserts the widget; an existing widget of the assistant is replaced when `replace`, kept
/// otherwise.
async fn put_widget(pool: &Pool, w: &WidgetRecord, replace: bool) -> Result<()> {
    let client = pool.get().await?;
    let found = client
        .query_opt(
            "SELECT 1 FROM assistants WHERE id = $1 AND workspace_id = $2",
            &[&w.assistant_id.0, &w.workspace_id.0],
        )
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound { what: "assistant" });
    }
    let settings = serde_json::to_string(&w.settings).map_err(json_err)?;
    client
        .execute(
            &crate::widgets::put_widget_sql(Dialect::Postgres, replace),
            &[
                &w.assistant_id.0,
                &w.workspace_id.0,
                &w.public_key,
                &settings,
                &w.updated_at.0,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    code: "widget_key_taken",
                    message: "another widget has this key".into(),
                }
            } else {
                e.into()
            }
        })?;
    Ok(())
}

pub(super) async fn save_tracker_session(pool: &Pool, s: &TrackerSession) -> Result<()> {
    let ws = s
        .workspace_id
        .ok_or_else(|| StoreError::backend("tracker session without workspace"))?;
    let data = serde_json::to_string(s).map_err(json_err)?;
    let client = pool.get().await?;
    // The update applies only within the workspace; a row of another workspace makes the
    // insert conflict and nothing change.
    let n = client
        .execute(
            "INSERT INTO tracker_sessions (id, workspace_id, data, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at
             WHERE tracker_sessions.workspace_id = excluded.workspace_id",
            &[&s.id, &ws.0, &data, &Timestamp::now().0],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::Conflict {
            code: "tracker_session_taken",
            message: "this session id belongs elsewhere".into(),
        });
    }
    Ok(())
}

pub(super) async fn link_tracker_session(
    pool: &Pool,
    ws: WorkspaceId,
    session: Uuid,
    conversation: ConversationId,
) -> Result<()> {
    let client = pool.get().await?;
    let owned = client
        .query_opt(
            "SELECT 1 FROM tracker_sessions WHERE id = $1 AND workspace_id = $2",
            &[&session, &ws.0],
        )
        .await?;
    if owned.is_none() {
        return Err(StoreError::NotFound {
            what: "tracker session",
        });
    }
    client
        .execute(
            "INSERT INTO tracker_links (conversation_id, session_id) VALUES ($1, $2)
             ON CONFLICT (conversation_id) DO UPDATE SET session_id = excluded.session_id",
            &[&conversation.0, &session],
        )
        .await?;
    Ok(())
}

pub(super) async fn tracker_session(
    pool: &Pool,
    ws: WorkspaceId,
    id: Uuid,
) -> Result<Option<TrackerSession>> {
    let client = pool.get().await?;
    client
        .query_opt(
            "SELECT data FROM tracker_sessions WHERE id = $1 AND workspace_id = $2",
            &[&id, &ws.0],
        )
        .await?
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(json_err))
        .transpose()
}

pub(super) async fn save_tracker_item(
    pool: &Pool,
    ws: WorkspaceId,
    item: &TrackerItem,
) -> Result<()> {
    let client = pool.get().await?;
    let owned = client
        .query_opt(
            "SELECT 1 FROM tracker_sessions WHERE id = $1 AND workspace_id = $2",
            &[&item.session_id, &ws.0],
        )
        .await?;
    if owned.is_none() {
        return Err(StoreError::NotFound {
            what: "tracker session",
        });
    }
    let data = serde_json::to_string(item).map_err(json_err)?;
    let n = client
        .execute(
            "INSERT INTO tracker_items (id, session_id, at, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data
             WHERE tracker_items.session_id = excluded.session_id",
            &[&item.id, &item.session_id, &item.at.0, &data],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::Conflict {
            code: "tracker_item_taken",
            message: "this item id belongs to another session".into(),
        });
    }
    Ok(())
}

pub(super) async fn tracker_for_conversation(
    pool: &Pool,
    ws: WorkspaceId,
    conversation: ConversationId,
) -> Result<Option<TrackerRecord>> {
    let client = pool.get().await?;
    let Some(row) = client
        .query_opt(
            "SELECT s.id, s.data FROM tracker_links l JOIN tracker_sessions s ON s.id = l.session_id
              WHERE l.conversation_id = $1 AND s.workspace_id = $2",
            &[&conversation.0, &ws.0],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: Uuid = row.get(0);
    let session: TrackerSession = serde_json::from_str(row.get::<_, &str>(1)).map_err(json_err)?;
    let items = client
        .query(
            "SELECT data FROM tracker_items WHERE session_id = $1 ORDER BY at, id LIMIT 1000",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(json_err))
        .collect::<Result<Vec<TrackerItem>>>()?;
    Ok(Some(TrackerRecord { session, items }))
}

/// Removes a conversation's link to its visit, and the visit with its items when no other
/// conversation links to it (inside the conversation's deletion's transaction). Returns the
/// (items, sessions) deleted.
pub(super) async fn delete_for_conversation(
    tx: &deadpool_postgres::Transaction<'_>,
    conversation: ConversationId,
) -> Result<(u64, u64)> {
    let Some(row) = tx
        .query_opt(
            "DELETE FROM tracker_links WHERE conversation_id = $1 RETURNING session_id",
            &[&conversation.0],
        )
        .await?
    else {
        return Ok((0, 0));
    };
    let session: Uuid = row.get(0);
    let others = tx
        .query_opt(
            "SELECT 1 FROM tracker_links WHERE session_id = $1 LIMIT 1",
            &[&session],
        )
        .await?;
    if others.is_some() {
        return Ok((0, 0));
    }
    let items = tx
        .execute(
            "DELETE FROM tracker_items WHERE session_id = $1",
            &[&session],
        )
        .await?;
    let sessions = tx
        .execute("DELETE FROM tracker_sessions WHERE id = $1", &[&session])
        .await?;
    Ok((items, sessions))
}

#[async_trait]
impl WidgetStore for PostgresStore {
    async fn widget_for_assistant(
        &self,
        workspace: WorkspaceId,
        assistant: AssistantId,
    ) -> Result<Option<WidgetRecord>> {
        widget_for_assistant(&self.pool, workspace, assistant).await
    }

    async fn widget_by_key(&self, public_key: &str) -> Result<Option<WidgetRecord>> {
        widget_by_key(&self.pool, public_key).await
    }

    async fn save_widget(&self, w: &WidgetRecord) -> Result<()> {
        save_widget(&self.pool, w).await
    }

    async fn create_widget(&self, w: &WidgetRecord) -> Result<WidgetRecord> {
        create_widget(&self.pool, w).await
    }

    async fn save_tracker_session(&self, s: &TrackerSession) -> Result<()> {
        save_tracker_session(&self.pool, s).await
    }

    async fn tracker_session(
        &self,
        workspace: WorkspaceId,
        id: uuid::Uuid,
    ) -> Result<Option<TrackerSession>> {
        tracker_session(&self.pool, workspace, id).await
    }

    async fn link_tracker_session(
        &self,
        workspace: WorkspaceId,
        session: uuid::Uuid,
        conversation: ConversationId,
    ) -> Result<()> {
        link_tracker_session(&self.pool, workspace, session, conversation).await
    }

    async fn save_tracker_item(&self, workspace: WorkspaceId, item: &TrackerItem) -> Result<()> {
        save_tracker_item(&self.pool, workspace, item).await
    }

    async fn tracker_for_conversation(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
    ) -> Result<Option<TrackerRecord>> {
        tracker_for_conversation(&self.pool, workspace, conversation).await
    }
}
