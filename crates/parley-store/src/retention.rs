//! Retention and erasure (issue 16): each workspace's retention policy, the batched deletes a
//! retention run makes, the conversations of one contact (right-to-erasure requests), and the
//! generic **audit log** (who did what to what, with a JSON object of details).
//!
//! The one way a conversation is deleted is [`RetentionStore::delete_conversations`] (the
//! single delete, [`crate::ConversationStore::delete_conversation`], is a batch of one): in one transaction
//! per batch it removes the conversations, their messages (and with them the search index
//! entries of both backends), variables, insights, event log entries, queued jobs and tracker
//! links (and a tracker session no other conversation links to), and returns the storage keys
//! of the attachment files the messages named, for the server to forget and remove.

use async_trait::async_trait;
use parley_core::{ConversationId, ConversationStatus, MessageId, Timestamp, WorkspaceId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::Result;

/// The longest period a policy accepts, in days (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// A workspace's retention policy. Every period is in whole days and `None` keeps the data for
/// ever (the default: a workspace without a saved policy deletes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Delete conversations whose last message is older than this many days.
    pub conversation_days: Option<u32>,
    /// Only conversations with one of these statuses are deleted by age; empty = any status.
    pub conversation_statuses: Vec<ConversationStatus>,
    /// Remove the attachment files (images, audio, documents, recordings) of messages older
    /// than this many days; the messages and their text stay.
    pub attachment_days: Option<u32>,
    /// Delete tracker data (pageviews, events, triggers, and visits last updated before) older
    /// than this many days.
    pub tracker_days: Option<u32>,
    /// When the policy was last saved; `None` if it never was.
    pub updated_at: Option<Timestamp>,
}

impl RetentionPolicy {
    /// Whether any period is set.
    pub fn is_active(&self) -> bool {
        self.conversation_days.is_some()
            || self.attachment_days.is_some()
            || self.tracker_days.is_some()
    }

    /// The statuses as stored (`closed,archived`; empty = any).
    pub(crate) fn statuses_text(&self) -> String {
        self.conversation_statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The statuses from their stored text (unknown names are skipped).
    pub(crate) fn statuses_from(text: &str) -> Vec<ConversationStatus> {
        text.split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }
}

/// What a retention run counts, per kind of data. In a dry run: what would be deleted now
/// (tracker data by its own age only: a recent visit linked to an expiring conversation goes
/// with it in a real run, and is counted then).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionCounts {
    /// Conversations deleted.
    pub conversations: u64,
    /// Messages deleted with them.
    pub messages: u64,
    /// Messages whose attachment files were removed (their text kept).
    pub attachment_messages: u64,
    /// Attachment files removed (with the deleted conversations' files). Dry runs count only
    /// the files of the messages above that keep their text.
    pub attachment_files: u64,
    /// Tracker items (pageviews, events, triggers) deleted.
    pub tracker_items: u64,
    /// Tracker sessions (visits) deleted.
    pub tracker_sessions: u64,
}

impl RetentionCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &RetentionCounts) {
        self.conversations += other.conversations;
        self.messages += other.messages;
        self.attachment_messages += other.attachment_messages;
        self.attachment_files += other.attachment_files;
        self.tracker_items += other.tracker_items;
        self.tracker_sessions += other.tracker_sessions;
    }
}

/// What one [`RetentionStore::delete_conversations`] batch removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletedConversations {
    /// The conversations deleted (those of the batch that were in the workspace).
    pub conversations: Vec<ConversationId>,
    /// Their messages, all roles.
    pub messages: u64,
    /// The storage keys of the attachment files their messages named (`meta.channel
    /// .attachments[].storage_key`); the caller forgets and removes them.
    pub storage_keys: Vec<String>,
    /// Tracker items deleted with the visits no other conversation links to.
    pub tracker_items: u64,
    /// Those visits.
    pub tracker_sessions: u64,
}

/// How a right-to-erasure request names the contact. Matching is within one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactMatch {
    /// Conversations whose `contact` is exactly this (phone number, Telegram user, the
    /// widget's visitor session id).
    Contact(String),
    /// Conversations whose contact, or one of whose variables, equals this email address,
    /// ignoring ASCII case.
    Email(String),
    /// Conversations whose contact, or one of whose variables, is this phone number, compared
    /// on digits only (spaces, dashes, dots, brackets and `+` ignored). At least 5 digits.
    Phone(String),
}

/// The digits of a phone number (what [`ContactMatch::Phone`] compares).
pub fn phone_digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// An entry to write in the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// Who: `user:<uuid>`, `api_key:<uuid>`, `system` (a background job) or `cli`.
    pub actor: String,
    /// What, as `area.verb` (`retention.run`, `retention.policy_updated`, `contact.erased`).
    pub action: String,
    /// On what (`workspace`, `conversation:<uuid>`, `contact`): never personal data.
    pub target: String,
    /// The details, a JSON object whose shape depends on `action`; never personal data.
    pub details: Value,
}

/// A stored audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// UUIDv7: entries sort by id in the order they were written.
    pub id: Uuid,
    /// Who (see [`NewAuditEntry::actor`]).
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Details (a JSON object).
    pub details: Value,
    /// When it was written.
    pub at: Timestamp,
}

/// The retention part of the store, reached through [`crate::Store::retention`]. Every method
/// but [`RetentionStore::workspaces_with_retention`] is scoped to one workspace.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// The workspace's policy (the default, which keeps everything, if none was saved).
    async fn retention_policy(&self, workspace: WorkspaceId) -> Result<RetentionPolicy>;
    /// Saves the workspace's policy (its `updated_at` becomes `at`). Periods must be within
    /// 1..=[`MAX_RETENTION_DAYS`] (the API checks; the store stores what it is given).
    async fn save_retention_policy(
        &self,
        workspace: WorkspaceId,
        policy: &RetentionPolicy,
        at: Timestamp,
    ) -> Result<()>;
    /// The workspaces whose policy sets at least one period.
    async fn workspaces_with_retention(&self) -> Result<Vec<WorkspaceId>>;
    /// Up to `limit` conversations whose last message is before `before` and whose status is
    /// one of `statuses` (any if empty), oldest first.
    async fn expired_conversations(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        statuses: &[ConversationStatus],
        limit: u32,
    ) -> Result<Vec<ConversationId>>;
    /// How many conversations [`RetentionStore::expired_conversations`] would find without a
    /// limit, and how many messages they hold.
    async fn count_expired_conversations(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        statuses: &[ConversationStatus],
    ) -> Result<(u64, u64)>;
    /// Deletes the workspace's conversations among `ids` with everything that belongs to them
    /// (see the module doc), in one transaction; ids of other workspaces or unknown ones are
    /// skipped. Writes a `conversation.deleted` event for each.
    async fn delete_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
    ) -> Result<DeletedConversations>;
    /// Up to `limit` messages created before `before` that still name a stored attachment
    /// file, oldest first, with their conversation, and the number of stored files each names.
    async fn messages_with_files_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<(ConversationId, MessageId, u64)>>;
    /// How many messages [`RetentionStore::messages_with_files_before`] would find without a
    /// limit, and how many stored files they name.
    async fn count_messages_with_files_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
    ) -> Result<(u64, u64)>;
    /// Deletes up to `limit` tracker items recorded before `before`, then up to `limit`
    /// tracker sessions last updated before it (with their remaining items and their links to
    /// conversations), in one transaction. Returns `(items, sessions)` deleted; `(0, 0)` when
    /// nothing is left to delete.
    async fn delete_tracker_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> Result<(u64, u64)>;
    /// How many tracker items and sessions [`RetentionStore::delete_tracker_before`] would
    /// delete in all (items: only those recorded before `before`).
    async fn count_tracker_before(
        &self,
        workspace: WorkspaceId,
        before: Timestamp,
    ) -> Result<(u64, u64)>;
    /// Up to `limit` conversations of the contact, oldest first.
    async fn contact_conversations(
        &self,
        workspace: WorkspaceId,
        contact: &ContactMatch,
        limit: u32,
    ) -> Result<Vec<ConversationId>>;
    /// Writes an entry in the workspace's audit log (its id and time are made here).
    async fn append_audit(
        &self,
        workspace: WorkspaceId,
        entry: &NewAuditEntry,
    ) -> Result<AuditEntry>;
    /// The workspace's audit log, newest first: up to `limit` entries older than the entry
    /// `before` (a previous page's last id), with `action` only when given.
    async fn audit_log(
        &self,
        workspace: WorkspaceId,
        action: Option<&str>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>>;
}

/// The storage keys a message's stored meta names (`channel.attachments[].storage_key`).
pub(crate) fn storage_keys_of(meta: Option<&str>) -> Vec<String> {
    let Some(meta) = meta.filter(|m| m.contains("\"storage_key\"")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<Value>(meta) else {
        return Vec::new();
    };
    v.pointer("/channel/attachments")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| a.get("storage_key").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The cutoff `days` days before `now`.
pub fn cutoff(now: Timestamp, days: u32) -> Timestamp {
    Timestamp(now.0 - i64::from(days) * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_channel_attachments_only() {
        let meta = r#"{"channel":{"type":"image","attachments":[{"kind":"image","media_id":"m","storage_key":"a/b"},{"kind":"audio","media_id":"n"}]},"storage_key":"x"}"#;
        assert_eq!(storage_keys_of(Some(meta)), vec!["a/b".to_owned()]);
        assert!(storage_keys_of(Some("{}")).is_empty());
        assert!(storage_keys_of(None).is_empty());
        assert!(storage_keys_of(Some("{\"storage_key\": not json")).is_empty());
    }

    #[test]
    fn statuses_round_trip_through_their_text() {
        let p = RetentionPolicy {
            conversation_statuses: vec![ConversationStatus::Closed, ConversationStatus::Archived],
            ..Default::default()
        };
        assert_eq!(p.statuses_text(), "closed,archived");
        assert_eq!(
            RetentionPolicy::statuses_from("closed,archived,bogus"),
            p.conversation_statuses
        );
        assert!(RetentionPolicy::statuses_from("").is_empty());
    }

    #[test]
    fn phone_digits_drop_punctuation() {
        assert_eq!(phone_digits("+49 (151) 234-56.78"), "491512345678");
    }
}
