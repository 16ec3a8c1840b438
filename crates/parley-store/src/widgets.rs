//! Storage of website widgets and of the visitor tracker, reached through
//! [`crate::Store::widgets`]. A widget belongs to one assistant and is found by its public key
//! (the key is the credential, so that look-up spans workspaces); tracker sessions, and their
//! pageviews, events and triggers, are scoped to a workspace and linked to the conversations
//! they led to. The record shapes are in [`parley_core::widget`].

use async_trait::async_trait;
use parley_core::widget::{TrackerItem, TrackerRecord, TrackerSession, WidgetRecord};
use parley_core::{AssistantId, ConversationId, WorkspaceId};

use crate::Result;
use crate::sql::Dialect;

/// The statement that stores a widget, with the dialect's placeholders for assistant id,
/// workspace id, public key, settings JSON and update time (in that order): it replaces the
/// assistant's widget when `replace`, else leaves an existing one alone. A public key another
/// widget has fails its unique index (`widget_key_taken` in both backends).
pub(crate) fn put_widget_sql(dialect: Dialect, replace: bool) -> String {
    let on_conflict = if replace {
        "DO UPDATE SET public_key = excluded.public_key,
             settings = excluded.settings, updated_at = excluded.updated_at"
    } else {
        "DO NOTHING"
    };
    let p = |i: u8| match dialect {
        Dialect::Sqlite => format!("?{i}"),
        Dialect::Postgres => format!("${i}"),
    };
    format!(
        "INSERT INTO widgets (assistant_id, workspace_id, public_key, settings, updated_at)
         VALUES ({}, {}, {}, {}, {})
         ON CONFLICT (assistant_id) {on_conflict}",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5)
    )
}

/// The widget and tracker part of the store.
#[async_trait]
pub trait WidgetStore: Send + Sync {
    /// The assistant's widget, if one was saved.
    async fn widget_for_assistant(
        &self,
        workspace: WorkspaceId,
        assistant: AssistantId,
    ) -> Result<Option<WidgetRecord>>;
    /// The widget whose public key is `public_key` (any workspace: the key is the credential).
    async fn widget_by_key(&self, public_key: &str) -> Result<Option<WidgetRecord>>;
    /// Creates or replaces the assistant's widget (key and settings).
    /// Errors: `NotFound` for an assistant outside the workspace; `Conflict("widget_key_taken")`
    /// if another widget has the key.
    async fn save_widget(&self, widget: &WidgetRecord) -> Result<()>;
    /// Stores `widget` unless the assistant has one already, and returns the assistant's
    /// stored widget either way: the first visit to the widget settings page keeps the key it
    /// shows, even when two visits race. Errors: as [`WidgetStore::save_widget`].
    async fn create_widget(&self, widget: &WidgetRecord) -> Result<WidgetRecord>;
    /// Creates or replaces a tracker session (by id, within the workspace; a session of another
    /// workspace with the same id is left alone and `Conflict("tracker_session_taken")` returned).
    async fn save_tracker_session(&self, session: &TrackerSession) -> Result<()>;
    /// A tracker session of the workspace.
    async fn tracker_session(
        &self,
        workspace: WorkspaceId,
        id: uuid::Uuid,
    ) -> Result<Option<TrackerSession>>;
    /// Links a widget conversation to the visit it came from (replacing an earlier link of that
    /// conversation). Errors: `NotFound` when the session is not the workspace's.
    async fn link_tracker_session(
        &self,
        workspace: WorkspaceId,
        session: uuid::Uuid,
        conversation: ConversationId,
    ) -> Result<()>;
    /// Creates or replaces a pageview, event or trigger (by id) of a session of the workspace.
    /// Errors: `NotFound` when the session is not the workspace's.
    async fn save_tracker_item(&self, workspace: WorkspaceId, item: &TrackerItem) -> Result<()>;
    /// The tracker session linked to a conversation, with its items (oldest first; at most
    /// 1,000). Deleting the conversation removes the link, and the session with its items once
    /// no other conversation links to it.
    async fn tracker_for_conversation(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
    ) -> Result<Option<TrackerRecord>>;
}
