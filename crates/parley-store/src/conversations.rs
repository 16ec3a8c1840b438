//! Storage of conversations and their messages, reached through
//! [`crate::Store::conversations`]: the one ingest write (atomic over its batches,
//! de-duplicating messages and keeping the counters in the same transaction), patches, the
//! delete, the list with its search and counts, transcripts and exports. The shapes a batch is
//! made of ([`NewConversation`], [`NewMessage`]) are built by the server's ingest path, which
//! applies defaults, validates and prices before anything reaches the store.

use async_trait::async_trait;
use parley_core::model::{
    AssistantRef, ConversationDetail, ConversationExport, ConversationPatch, ConversationSummary,
    Message, MessageMeta, Rating, Sentiment, Variable,
};
use parley_core::pricing::{CostSource, Usage};
use parley_core::query::{ConversationFilter, ListQuery, TranscriptQuery};
use parley_core::search::Snippet;
use parley_core::{
    Channel, ConversationId, ConversationStatus, MessageId, Role, Timestamp, WorkspaceId,
};
use serde::Serialize;

use crate::Result;

/// [`ConversationStore::delete_conversation`] for every backend: a batch of one of the one
/// delete path, [`crate::RetentionStore::delete_conversations`]. True if it was in the workspace.
pub(crate) async fn delete_one(
    retention: &dyn crate::RetentionStore,
    workspace: WorkspaceId,
    id: ConversationId,
) -> Result<bool> {
    let batch = retention.delete_conversations(workspace, &[id]).await?;
    Ok(!batch.conversations.is_empty())
}

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

/// The conversation part of the store. Every method is scoped to one workspace.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Writes batches atomically: either every batch is applied or none. See [`IngestTarget`]
    /// and [`MessageOutcome`] for the de-duplication rules. Errors: `NotFound("conversation")`
    /// for an `Existing` target not in the workspace, `NotFound("assistant")` for an unknown
    /// assistant id, `Conflict("id_conflict")` for a client message id of another conversation
    /// of the workspace. Client ids that another workspace uses are stored under stand-ins
    /// (see [`crate::scoped_ids`]), never refused.
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
    /// of one of [`crate::RetentionStore::delete_conversations`] (the one delete path). Its
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
}
