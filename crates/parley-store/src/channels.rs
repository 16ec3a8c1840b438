//! Storage of messaging channels (issue 7): connections of WhatsApp senders and Telegram bots
//! to assistants, and the updates a channel makes to messages after they were ingested
//! (delivery statuses, the platform id of a reply Parley sent, edits and deletions). Messages
//! themselves still enter only through [`crate::ConversationStore::ingest`].

use async_trait::async_trait;
use parley_core::channel::{ChannelConnection, ChannelKind};
use parley_core::model::{Message, MessageMeta};
use parley_core::{AssistantId, ChannelConnectionId, ConversationId, MessageId, WorkspaceId};

use crate::Result;

/// An edit of a stored message ([`ChannelStore::edit_message`]): changes its text and meta in
/// place and says whether to write them (false leaves the message as it was).
pub type MessageEdit = Box<dyn FnOnce(&mut String, &mut MessageMeta) -> bool + Send + 'static>;

/// An edit of a connection's config ([`ChannelStore::edit_channel_config`]): changes it in
/// place and says whether to write it.
pub type ConfigEdit =
    Box<dyn FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> bool + Send + 'static>;

/// The channel part of the store, reached through [`crate::Store::channels`]. Every method but
/// [`ChannelStore::channel_by_id`] (webhooks, which carry no workspace) is scoped to one
/// workspace.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Stores a new connection. Errors: `NotFound("assistant")` when its assistant is not in
    /// its workspace; `Conflict("channel_exists")` when a connection of the same kind and
    /// external key (phone number id, bot id) exists anywhere on this server.
    async fn create_channel(&self, connection: &ChannelConnection) -> Result<()>;
    /// The workspace's connections, oldest first; only `assistant`'s when given.
    async fn list_channels(
        &self,
        workspace: WorkspaceId,
        assistant: Option<AssistantId>,
    ) -> Result<Vec<ChannelConnection>>;
    /// One connection of the workspace.
    async fn get_channel(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
    ) -> Result<Option<ChannelConnection>>;
    /// A connection by id alone, whatever its workspace: for webhooks, whose URL names the
    /// connection and which authenticate with its secrets.
    async fn channel_by_id(&self, id: ChannelConnectionId) -> Result<Option<ChannelConnection>>;
    /// The connection of `kind` with this external key, whatever its workspace.
    async fn channel_by_key(
        &self,
        kind: ChannelKind,
        external_key: &str,
    ) -> Result<Option<ChannelConnection>>;
    /// Replaces a connection's (non-secret) config: the platform's state Parley keeps there,
    /// such as WhatsApp's quality rating, messaging limit and recent business-initiated sends.
    /// False if it is not in the workspace.
    async fn update_channel_config(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool>;
    /// Disconnects; the conversations it brought stay. False if it was not in the workspace.
    async fn delete_channel(&self, workspace: WorkspaceId, id: ChannelConnectionId)
    -> Result<bool>;
    /// The message of the workspace with this channel id (`external_id`), with its
    /// conversation; the most recent one if several conversations hold that id.
    async fn message_by_external_id(
        &self,
        workspace: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<(ConversationId, Message)>>;
    /// The conversation of the workspace whose `external_id` is this (a channel conversation's
    /// `{kind}:{connection}:{customer}` key), if any: how a platform's receipt that names the
    /// customer but no message (Messenger's `read` watermark) finds its conversation.
    async fn conversation_by_external_id(
        &self,
        workspace: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<ConversationId>>;
    /// Replaces a stored message's meta, and sets its `external_id` when `external_id` is
    /// given (the platform's id of a reply Parley sent). False if the message is not in the
    /// workspace. Errors: `Conflict("external_id_taken")` when another message of the
    /// conversation has that external id.
    async fn update_message_channel(
        &self,
        workspace: WorkspaceId,
        message: MessageId,
        external_id: Option<&str>,
        meta: &MessageMeta,
    ) -> Result<bool>;
    /// Reads, edits and writes a stored message's text and meta as one step that no other
    /// edit interleaves with, whichever server makes it (PostgreSQL: the message row is
    /// locked, `SELECT ... FOR UPDATE`; SQLite: the single writer), and sets its
    /// `external_id` when `external_id` is given and the edit writes. Read-modify-write
    /// updates that must not lose each other's change (delivery statuses that only move
    /// forward, edit and deletion marks) go through here. Returns whether it wrote: false
    /// when the message is not in the workspace or `edit` declined. A changed text is
    /// re-indexed for search. Errors: `Conflict("external_id_taken")` as
    /// [`ChannelStore::update_message_channel`].
    async fn edit_message(
        &self,
        workspace: WorkspaceId,
        message: MessageId,
        external_id: Option<&str>,
        edit: MessageEdit,
    ) -> Result<bool>;
    /// Reads, edits and writes a connection's config as one step (as
    /// [`ChannelStore::edit_message`]): for state kept there that several servers update
    /// (WhatsApp's quality rating, the customers of business-initiated sends). Returns whether
    /// it wrote: false when the connection is not in the workspace or `edit` declined.
    async fn edit_channel_config(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
        edit: ConfigEdit,
    ) -> Result<bool>;
}

/// The stored text of a connection's secrets.
pub(crate) fn secrets_text(c: &ChannelConnection) -> String {
    serde_json::to_string(&c.secrets).unwrap_or_else(|_| "{}".to_owned())
}

/// The stored text of a connection's config.
pub(crate) fn config_text(c: &ChannelConnection) -> String {
    serde_json::to_string(&c.config).unwrap_or_else(|_| "{}".to_owned())
}

/// Columns of a connection, in the order the backends read them.
pub(crate) const CHANNEL_COLS: &str =
    "id, workspace_id, assistant_id, kind, external_key, config, secrets, created_at";
