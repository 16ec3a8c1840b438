//! Parley's conversation store.
//!
//! [`Store`] is the one interface the server uses for everything it keeps: workspaces, API keys,
//! assistants, conversations, messages and variables. It is object-safe (`Arc<dyn Store>`) and
//! speaks only in `parley_core` types, so the backends are interchangeable: [`sqlite`] (the
//! embedded default) and [`postgres`] (the path to scale). [`open`] picks the backend from the database URL's
//! scheme.
//!
//! Guarantees every backend gives (checked by the conformance tests in `tests/`):
//! - every query is scoped to one workspace; no id from another workspace is ever found;
//! - [`Store::ingest`] is atomic over all its batches, de-duplicates messages by `id` and by
//!   `external_id` within a conversation, and keeps the conversation's counters (message count,
//!   tokens, cost, last message, last inbound time) and the workspace's conversation count in
//!   the same transaction;
//! - an acknowledged write is durable (SQLite: WAL with `synchronous=FULL`, group commit);
//! - deleting a conversation removes its messages, variables, search index entries and linked
//!   tracker session (pageviews, events, triggers) in one transaction.

use std::fmt;

use async_trait::async_trait;
use parley_core::assistant::AssistantSettings;
use parley_core::model::{
    AssistantRef, ConversationDetail, ConversationExport, ConversationPatch, ConversationSummary,
    Message, MessageMeta, Rating, Sentiment, Variable,
};
use parley_core::pricing::{CostSource, Usage};
use parley_core::query::{ConversationFilter, ListQuery, TranscriptQuery};
use parley_core::search::Snippet;
use parley_core::{
    AssistantMode, Channel, ConversationId, ConversationStatus, MessageId, Role, Timestamp,
    WorkspaceId,
};
use serde::Serialize;

pub mod assistants;
pub mod attachments;
pub mod auth;
pub mod bulk;
mod channels;
mod counters;
pub mod events;
pub mod insights;
pub mod jobs;
mod migrate;
pub mod postgres;
pub mod retention;
pub mod scoped_ids;
pub mod settings;
mod sql;
pub mod sqlite;
pub mod sqlite_file;
pub mod testing;
pub mod transfer;
pub mod webhooks;
pub mod widgets;
pub mod workspaces;

pub use assistants::AssistantStore;
pub use attachments::{Admission, AttachmentStore, AttachmentUsage};
pub use auth::{AuthStore, NewSession, SessionRecord};
pub use bulk::{BulkAction, BulkState, BulkStore, NewBulkAction};
pub use channels::{ChannelStore, ConfigEdit, MessageEdit};
pub use events::{EventFilter, EventStore, EventType, StoredEvent};
pub use insights::{
    AssistantTotals, ChangedConversation, InsightCursor, InsightGrouping, InsightStore,
    InsightTotals, InsightWindow, StoredInsight, TopicSample, TopicSet,
};
pub use jobs::JobStore;
pub use retention::{
    AuditEntry, ContactMatch, DeletedConversations, NewAuditEntry, RetentionCounts,
    RetentionPolicy, RetentionStore,
};
pub use settings::{Invite, NewInvite, SettingsStore, WorkspaceSettings};
pub use transfer::TransferStore;
pub use webhooks::WebhookStore;
pub use widgets::WidgetStore;
pub use workspaces::WorkspaceStore;

/// What a store operation can fail with.
#[derive(Debug)]
pub enum StoreError {
    /// A record the operation needs does not exist in the workspace (`what` names its kind).
    NotFound {
        /// `"conversation"`, `"assistant"`, `"workspace"`...
        what: &'static str,
    },
    /// The write conflicts with existing data (a duplicate name, an id taken elsewhere).
    Conflict {
        /// Stable snake_case code for the API (`assistant_exists`, `id_conflict`).
        code: &'static str,
        /// Human explanation, safe to show to the caller.
        message: String,
    },
    /// The database failed or is unreachable. `message` is for logs, never for API callers;
    /// `source` is the driver's error when there is one (see [`std::error::Error::source`]).
    Backend {
        /// What failed, for logs.
        message: String,
        /// The underlying error (rusqlite, tokio-postgres, the pool), when there is one.
        source: Option<ErrorSource>,
    },
    /// A transaction lost to a concurrent one and was rolled back whole: PostgreSQL SQLSTATE
    /// `40001` (serialization_failure) or `40P01` (deadlock_detected). Running the same
    /// operation again may succeed; the stores retry their own transactions a few times before
    /// returning this.
    Retryable {
        /// What failed, for logs.
        message: String,
        /// The underlying error, when there is one.
        source: Option<ErrorSource>,
    },
}

/// The underlying error of a [`StoreError`].
pub type ErrorSource = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    /// A backend failure described by `e` (no underlying error kept).
    pub fn backend(e: impl fmt::Display) -> Self {
        StoreError::Backend {
            message: e.to_string(),
            source: None,
        }
    }

    /// A backend failure caused by the driver error `e`, kept as the source.
    pub fn from_source(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend {
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }

    /// Whether running the failed operation again may succeed ([`StoreError::Retryable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable { .. })
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound { what } => write!(f, "{what} not found"),
            StoreError::Conflict { message, .. } => f.write_str(message),
            StoreError::Backend { message, .. } => write!(f, "database error: {message}"),
            StoreError::Retryable { message, .. } => {
                write!(f, "database error (may be retried): {message}")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Backend { source, .. } | StoreError::Retryable { source, .. } => source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

/// Store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A conversation to create, fully resolved by the ingest path (defaults applied, times set).
#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    /// Its id: fresh, or the one an export carried.
    pub id: ConversationId,
    /// Whether `id` came from the client (an export): if a conversation with this id exists in
    /// the workspace, it is the target instead of a new one.
    pub id_from_client: bool,
    /// The client's id, unique per workspace.
    pub external_id: Option<String>,
    /// Who handles it: by id, or by name + company (created when missing).
    pub assistant: AssistantRef,
    /// Channel.
    pub channel: Channel,
    /// Status.
    pub status: ConversationStatus,
    /// Contact.
    pub contact: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// Start time.
    pub started_at: Timestamp,
    /// End time.
    pub ended_at: Option<Timestamp>,
    /// End reason.
    pub end_reason: Option<String>,
    /// Rating with its time.
    pub rating: Option<(Rating, Timestamp)>,
    /// Sentiment.
    pub sentiment: Option<Sentiment>,
    /// Converted flag.
    pub converted: Option<bool>,
    /// Variables.
    pub variables: Vec<Variable>,
    /// Memory object.
    pub memory: serde_json::Map<String, serde_json::Value>,
    /// The assistant version that handles it, when Parley's runtime does.
    pub assistant_version: Option<i64>,
}

/// A message to store, validated and priced by the ingest path.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Its id: fresh, or the one an export carried.
    pub id: MessageId,
    /// Whether `id` came from the client: a message with this id already in the conversation is
    /// a duplicate.
    pub id_from_client: bool,
    /// The channel's own message id.
    pub external_id: Option<String>,
    /// Role.
    pub role: Role,
    /// Text.
    pub content: String,
    /// Time written.
    pub created_at: Timestamp,
    /// Model.
    pub model: Option<String>,
    /// Tokens.
    pub usage: Option<Usage>,
    /// Cost in nano-USD.
    pub cost_nanousd: Option<i64>,
    /// Where the cost came from.
    pub cost_source: Option<CostSource>,
    /// How it was produced (stored only when not empty).
    pub meta: MessageMeta,
}

/// An assistant to create or a new version of one: everything but its id, version and times.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAssistant {
    /// Display name (trimmed), unique per workspace together with `company`.
    pub name: String,
    /// Company (trimmed), empty when none.
    pub company: String,
    /// Mode.
    pub mode: AssistantMode,
    /// Settings, with any provider key already sealed.
    pub settings: AssistantSettings,
}

/// Where an ingest batch's messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestTarget {
    /// A conversation to create, unless its `id` or `external_id` already exists in the
    /// workspace, in which case that one is the target.
    New(Box<NewConversation>),
    /// An existing conversation of the workspace.
    Existing(ConversationId),
}

/// One unit of ingestion: a target conversation and messages to append to it.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestBatch {
    /// The conversation.
    pub target: IngestTarget,
    /// Messages to append, in order.
    pub messages: Vec<NewMessage>,
}

/// What happened to one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MessageOutcome {
    /// Stored under this id.
    Stored {
        /// The new message's id.
        id: MessageId,
    },
    /// Already stored (same `id` or `external_id`): nothing written.
    Duplicate {
        /// The id of the message already stored.
        id: MessageId,
    },
    /// Not stored: the conversation already existed and the message carries neither `id` nor
    /// `external_id`, so Parley cannot tell whether it is a repeat.
    Skipped,
}

/// What one ingest batch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// The conversation written to.
    pub conversation_id: ConversationId,
    /// Whether it was created by this batch.
    pub created: bool,
    /// One entry per input message, in input order.
    pub messages: Vec<MessageOutcome>,
}

impl IngestOutcome {
    /// How many messages were newly stored.
    pub fn stored(&self) -> usize {
        self.messages
            .iter()
            .filter(|m| matches!(m, MessageOutcome::Stored { .. }))
            .count()
    }
}

/// Where a search term matched a listed conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchMatch {
    /// `content`, `session_id`, `contact` or `assistant_name`.
    pub field: &'static str,
    /// The matching message (the most recent one), when `field` is `content`.
    pub message_id: Option<MessageId>,
    /// The text around the match.
    pub snippet: Snippet,
}

/// A conversation in a list, with where a search matched it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedConversation {
    /// The row.
    #[serde(flatten)]
    pub conversation: ConversationSummary,
    /// Present when the list was searched (`q`).
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub search_match: Option<SearchMatch>,
}

/// One page of the conversation list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationPage {
    /// The rows.
    pub items: Vec<ListedConversation>,
    /// The cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A count of conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConversationCount {
    /// The number.
    pub count: u64,
    /// False when counting stopped at a cap (a search matching very many conversations):
    /// the true count is at least `count`.
    pub exact: bool,
}

/// One page of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessagePage {
    /// Messages in the requested order.
    pub items: Vec<Message>,
    /// 1-based page number.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
    /// Messages the query counts (visible ones, or all with `include=all`).
    pub total: i64,
    /// Number of pages.
    pub total_pages: i64,
}

/// How many conversations a search probes the full-text index for before it switches to
/// walking the list in sort order (a common term matches early rows anyway).
pub const SEARCH_PROBE_LIMIT: usize = 10_000;

/// Counting a search whose term is too common for the index probe stops here and reports
/// `exact: false` (an exact count of a common term would read most of the database).
pub const SEARCH_COUNT_CAP: u64 = 1_000;

/// The storage interface. Every method but the workspace and key lookups is scoped to one
/// workspace; ids of other workspaces behave as if they did not exist.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Channel connections and channel message updates (WhatsApp, Telegram): see
    /// [`ChannelStore`].
    fn channels(&self) -> &dyn ChannelStore;

    /// The durable job queue, leases and shared rate-limit windows: see [`JobStore`].
    fn jobs(&self) -> &dyn JobStore;
    /// The record of stored attachment files and each workspace's usage (the attachment
    /// quota): see [`AttachmentStore`].
    fn attachments(&self) -> &dyn AttachmentStore;
    /// The workspace's assistants and their version history: see [`AssistantStore`].
    fn assistants(&self) -> &dyn AssistantStore;
    /// The computed insights of each conversation (issue 13): see [`InsightStore`].
    fn insights(&self) -> &dyn InsightStore;
    /// The event log (live updates): reads, wake-ups and retention.
    fn events(&self) -> &dyn EventStore;
    /// Workspace settings, invites, members' roles and API key roles (issue 16): see
    /// [`SettingsStore`].
    fn settings(&self) -> &dyn SettingsStore;
    /// Outgoing webhook endpoints and their deliveries (issue 16): see [`WebhookStore`].
    fn webhooks(&self) -> &dyn WebhookStore;
    /// Retention policies, the one conversation delete path, erasure look-ups and the audit
    /// log (issue 16): see [`RetentionStore`].
    fn retention(&self) -> &dyn RetentionStore;
    /// Bulk action records and the batched conversation patch (issue 14): see [`BulkStore`].
    fn bulk(&self) -> &dyn BulkStore;
    /// Workspaces (the tenants) and their API keys: see [`WorkspaceStore`].
    fn workspaces(&self) -> &dyn WorkspaceStore;
    /// `parley migrate-store`: whole records with their hashes out of one store and verbatim
    /// into another: see [`TransferStore`].
    fn transfer(&self) -> &dyn TransferStore;
    /// Website widgets (one per assistant, found by public key) and the visitor tracker's
    /// sessions, pageviews, events and triggers: see [`WidgetStore`].
    fn widgets(&self) -> &dyn WidgetStore;
    /// Dashboard users, sign-in sessions and the sign-in failure counts that rate-limit
    /// sign-in: see [`AuthStore`].
    fn auth(&self) -> &dyn AuthStore;

    /// Writes batches atomically: either every batch is applied or none. See [`IngestTarget`]
    /// and [`MessageOutcome`] for the de-duplication rules. Errors: `NotFound("conversation")`
    /// for an `Existing` target not in the workspace, `NotFound("assistant")` for an unknown
    /// assistant id, `Conflict("id_conflict")` for a client message id of another conversation
    /// of the workspace. Client ids that another workspace uses are stored under stand-ins
    /// (see [`scoped_ids`]), never refused.
    async fn ingest(
        &self,
        workspace: WorkspaceId,
        batches: Vec<IngestBatch>,
    ) -> Result<Vec<IngestOutcome>>;

    /// Applies a patch; returns the updated record, or `None` if the conversation is not in
    /// the workspace.
    async fn update_conversation(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
        patch: &ConversationPatch,
    ) -> Result<Option<ConversationDetail>>;

    /// Deletes a conversation with everything that belongs to it, in one transaction: a batch
    /// of one of [`RetentionStore::delete_conversations`] (the one delete path). Its
    /// attachment files are not removed here: the server's `media::delete_conversation` does
    /// that with the keys the batch returns. Returns false if it was not in the workspace.
    async fn delete_conversation(&self, workspace: WorkspaceId, id: ConversationId)
    -> Result<bool>;

    /// One page of the list.
    async fn list_conversations(
        &self,
        workspace: WorkspaceId,
        query: &ListQuery,
    ) -> Result<ConversationPage>;
    /// How many conversations match the filter.
    async fn count_conversations(
        &self,
        workspace: WorkspaceId,
        filter: &ConversationFilter,
    ) -> Result<ConversationCount>;
    /// The workspace's conversation count, read from the maintained counter (no scan).
    async fn conversation_total(&self, workspace: WorkspaceId) -> Result<u64>;
    /// A conversation's full record.
    async fn get_conversation(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
    ) -> Result<Option<ConversationDetail>>;
    /// A page of a conversation's transcript; `None` if the conversation is not in the
    /// workspace. A page past the end is empty.
    async fn list_messages(
        &self,
        workspace: WorkspaceId,
        id: ConversationId,
        query: &TranscriptQuery,
    ) -> Result<Option<MessagePage>>;
    /// Full records with all messages (oldest first) for export, in the order of `ids`;
    /// ids not in the workspace are left out.
    async fn export_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
    ) -> Result<Vec<ConversationExport>>;

    /// What the connection pool (and, on SQLite, the write-ahead log) looks like now, for
    /// `/metrics`. Cheap: reads counters and one file size, never the database.
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }

    /// Makes the store tidy for a clean stop, after the last request was answered: SQLite
    /// checkpoints its write-ahead log into the database and truncates it to zero bytes (so a
    /// restart finds no log to replay); PostgreSQL does nothing. The store stays usable.
    /// Errors: the final checkpoint failed (the log is kept; nothing is lost).
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// A snapshot of a store's connection use (see [`Store::pool_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Most connections the pool opens (PostgreSQL: the pool size; SQLite: read connections).
    pub max: u64,
    /// Connections open now (PostgreSQL); SQLite: read connections opened so far.
    pub size: u64,
    /// Open connections not in use now.
    pub available: u64,
    /// Requests waiting for a connection (PostgreSQL) or for a read slot (SQLite).
    pub waiting: u64,
    /// SQLite: write jobs queued for the single writer, not yet taken into a group commit.
    pub writer_queue: Option<u64>,
    /// SQLite: the size of the `-wal` file beside the database, in bytes (0 when absent).
    pub wal_bytes: Option<u64>,
}

/// Options for [`open_with`] that apply to one backend only.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// SQLite: the write-ahead log's cap in bytes (default 64 MiB): it is checkpointed and
    /// truncated once it passes a quarter of it (waiting longer for readers past half), and a
    /// log that SQLite restarts is cut back to it.
    pub sqlite_wal_max_bytes: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            sqlite_wal_max_bytes: sqlite::DEFAULT_WAL_MAX_BYTES,
        }
    }
}

/// Longest `last_message_preview`, in characters.
const PREVIEW_CHARS: usize = 200;

/// The list's preview of a message: its text on one line, without markdown syntax for assistant
/// and agent messages (which are markdown), cut at 200 characters with `…`.
pub(crate) fn preview(role: Role, content: &str) -> String {
    let flat: String = if matches!(role, Role::Assistant | Role::Agent) {
        parley_core::markdown::to_plain_text(content)
    } else {
        content.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    match flat.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Opens the store a database URL names: `sqlite://PATH` (or a bare path ending in `.db`), or
/// `postgres://` / `postgresql://` (libpq URL syntax).
/// Errors: an unknown scheme, or the database cannot be opened or migrated.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    open_with(url, &OpenOptions::default()).await
}

/// [`open`] with backend options. Errors: as [`open`].
pub async fn open_with(url: &str, opts: &OpenOptions) -> Result<std::sync::Arc<dyn Store>> {
    let sqlite_options = || sqlite::SqliteOptions {
        wal_max_bytes: opts.sqlite_wal_max_bytes,
        ..Default::default()
    };
    if let Some(path) = sqlite_path(url) {
        let store = sqlite::SqliteStore::open(path, sqlite_options()).await?;
        return Ok(std::sync::Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store =
            postgres::PostgresStore::open(url, postgres::PostgresOptions::default()).await?;
        return Ok(std::sync::Arc::new(store));
    }
    Err(StoreError::backend(format!(
        "unsupported database URL {:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
        redact_url(url)
    )))
}

/// The database file a SQLite URL names (`sqlite://PATH`, `sqlite:PATH`, or a bare path ending
/// in `.db`); `None` for any other URL.
pub fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .or_else(|| (url.ends_with(".db") && !url.contains("://")).then_some(url))
}

/// A database URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://parley:s3cret@db:5432/parley"),
            "postgres://parley:***@db:5432/parley"
        );
        assert_eq!(
            super::redact_url("sqlite://./parley-data/parley.db"),
            "sqlite://./parley-data/parley.db"
        );
    }
}
