//! Parley's conversation store.
//!
//! [`Store`] is the one interface the server uses for everything it keeps. It is object-safe
//! (`Arc<dyn Store>`) and speaks only in `parley_core` types, so the backends are
//! interchangeable: [`sqlite`] (the embedded default) and [`postgres`] (the path to scale).
//! [`open`] picks the backend from the database URL's scheme.
//!
//! `Store` itself only names the backend, reports pool use and closes; everything kept is
//! reached through one trait per concern, each in its own file here with `sqlite/<area>.rs`
//! and `postgres/<area>.rs` beside it: [`Store::workspaces`] (workspaces, API keys),
//! [`Store::conversations`], [`Store::assistants`], [`Store::auth`] (users, sessions, sign-in
//! limits), [`Store::widgets`] (widgets, tracker), [`Store::transfer`] (migrate-store),
//! [`Store::channels`], [`Store::jobs`], [`Store::attachments`], [`Store::insights`],
//! [`Store::events`], [`Store::settings`], [`Store::webhooks`], [`Store::retention`] and
//! [`Store::bulk`].
//!
//! Guarantees every backend gives (checked by the conformance tests in `tests/`):
//! - every query is scoped to one workspace; no id from another workspace is ever found;
//! - [`ConversationStore::ingest`] is atomic over all its batches, de-duplicates messages by
//!   `id` and by `external_id` within a conversation, and keeps the conversation's counters
//!   (message count, tokens, cost, last message, last inbound time) and the workspace's
//!   conversation count in the same transaction;
//! - an acknowledged write is durable (SQLite: WAL with `synchronous=FULL`, group commit);
//! - deleting a conversation removes its messages, variables, search index entries and linked
//!   tracker session (pageviews, events, triggers) in one transaction.

use std::fmt;

use async_trait::async_trait;
use parley_core::assistant::AssistantSettings;
use parley_core::{AssistantMode, Role};

/// The concern accessors of [`Store`] for a backend type that implements every concern trait
/// itself (both backends do): each returns `self`. One list, so a new concern is added to both
/// backends at once.
macro_rules! concern_accessors {
    () => {
        fn workspaces(&self) -> &dyn $crate::WorkspaceStore {
            self
        }
        fn conversations(&self) -> &dyn $crate::ConversationStore {
            self
        }
        fn assistants(&self) -> &dyn $crate::AssistantStore {
            self
        }
        fn auth(&self) -> &dyn $crate::AuthStore {
            self
        }
        fn widgets(&self) -> &dyn $crate::WidgetStore {
            self
        }
        fn transfer(&self) -> &dyn $crate::TransferStore {
            self
        }
        fn channels(&self) -> &dyn $crate::ChannelStore {
            self
        }
        fn jobs(&self) -> &dyn $crate::JobStore {
            self
        }
        fn attachments(&self) -> &dyn $crate::AttachmentStore {
            self
        }
        fn insights(&self) -> &dyn $crate::InsightStore {
            self
        }
        fn events(&self) -> &dyn $crate::EventStore {
            self
        }
        fn settings(&self) -> &dyn $crate::SettingsStore {
            self
        }
        fn webhooks(&self) -> &dyn $crate::WebhookStore {
            self
        }
        fn retention(&self) -> &dyn $crate::RetentionStore {
            self
        }
        fn bulk(&self) -> &dyn $crate::BulkStore {
            self
        }
    };
}

pub mod assistants;
pub mod attachments;
pub mod auth;
pub mod bulk;
mod channels;
pub mod conversations;
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
pub use conversations::{
    ConversationCount, ConversationPage, ConversationStore, IngestBatch, IngestOutcome,
    IngestTarget, ListedConversation, MessageOutcome, MessagePage, NewConversation, NewMessage,
    SEARCH_COUNT_CAP, SEARCH_PROBE_LIMIT, SearchMatch,
};
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

/// Maps a driver error to `Conflict { code, message }` when `is_unique` says it broke a unique
/// index, else to the backend error it converts to: what both backends' `conflict_on_unique`
/// hand to `map_err`.
pub(crate) fn conflict_on_unique<E: Into<StoreError>>(
    is_unique: fn(&E) -> bool,
    code: &'static str,
    message: impl FnOnce() -> String,
) -> impl FnOnce(E) -> StoreError {
    move |e| {
        if is_unique(&e) {
            StoreError::Conflict {
                code,
                message: message(),
            }
        } else {
            e.into()
        }
    }
}

/// Store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
    /// Conversations and their messages: the one ingest write, patches, the delete, the list
    /// and its counts, transcripts and exports: see [`ConversationStore`].
    fn conversations(&self) -> &dyn ConversationStore;
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
