//! Bulk actions on conversations (issue 14), reached through [`crate::Store::bulk`]: the record
//! of one bulk request (its work list, progress and state), kept after it finished, and the
//! batched conversation patch the work runs in. Deleting goes through
//! [`crate::RetentionStore::delete_conversations`], the one delete path.
//!
//! A record is written together with the job that works through it
//! ([`BulkStore::create_bulk`]), in one transaction, so an acknowledged request runs even after
//! a crash. Its `idempotency_key` is unique per workspace: a retried request finds the first
//! record instead of writing a second one.

use async_trait::async_trait;
use parley_core::model::ConversationPatch;
use parley_core::{ConversationId, Timestamp, WorkspaceId};
use uuid::Uuid;

use crate::Result;
use crate::jobs::NewJob;

/// Where a bulk action is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BulkState {
    /// Written, not started.
    Queued,
    /// Some batches done.
    Running,
    /// Every selected conversation worked through.
    Done,
    /// Stopped on an error (`error` says which); the batches done stay done.
    Failed,
}

impl BulkState {
    /// `queued`, `running`, `done` or `failed`, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkState::Queued => "queued",
            BulkState::Running => "running",
            BulkState::Done => "done",
            BulkState::Failed => "failed",
        }
    }

    /// The state a stored text names.
    pub fn parse(s: &str) -> Option<BulkState> {
        match s {
            "queued" => Some(BulkState::Queued),
            "running" => Some(BulkState::Running),
            "done" => Some(BulkState::Done),
            "failed" => Some(BulkState::Failed),
            _ => None,
        }
    }

    /// Whether nothing more will happen.
    pub fn finished(self) -> bool {
        matches!(self, BulkState::Done | BulkState::Failed)
    }
}

/// A bulk action to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBulkAction {
    /// Its id (UUIDv7; the id of the job that runs it, when there is one).
    pub id: Uuid,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who asked, as the audit log names it (`user:<id>`, `api_key:<id>`).
    pub actor: String,
    /// `close`, `archive`, `reopen`, `assign` or `delete`.
    pub action: String,
    /// The action's parameters, JSON (`{"end_reason"}`, `{"assignee_id"}`, `{}`).
    pub params: String,
    /// The selection as requested, JSON (`{"ids": n}` or `{"filter": {...}}`).
    pub selection: String,
    /// The conversations selected when the request came, in the order they are worked through.
    pub ids: Vec<ConversationId>,
    /// The client's idempotency key, if it sent one (at most one record per key and workspace).
    pub idempotency_key: Option<String>,
    /// Now.
    pub created_at: Timestamp,
}

/// A recorded bulk action.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkAction {
    /// Its id.
    pub id: Uuid,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who asked.
    pub actor: String,
    /// The action.
    pub action: String,
    /// The action's parameters (JSON).
    pub params: String,
    /// The selection as requested (JSON).
    pub selection: String,
    /// The work list (empty unless asked for: see [`BulkStore::bulk_action`]).
    pub ids: Vec<ConversationId>,
    /// Conversations selected.
    pub total: u64,
    /// Conversations worked through so far (the first `done` of `ids`).
    pub done: u64,
    /// Of those, how many were still there and changed (or were deleted).
    pub affected: u64,
    /// Its state.
    pub state: BulkState,
    /// Why it failed.
    pub error: Option<String>,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// When it was requested.
    pub created_at: Timestamp,
    /// When its progress last changed.
    pub updated_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
}

/// Bulk action records and the batched patch, scoped to one workspace (progress updates come
/// from the job, which names the record).
#[async_trait]
pub trait BulkStore: Send + Sync {
    /// Records `bulk` (state `queued`) and, in the same transaction, enqueues `job` when there
    /// is one. Returns the record and `true`; or, when `bulk.idempotency_key` is already used
    /// in the workspace, the earlier record and `false` (nothing written).
    async fn create_bulk(
        &self,
        bulk: &NewBulkAction,
        job: Option<&NewJob>,
    ) -> Result<(BulkAction, bool)>;

    /// The record `id` of the workspace, with its work list when `with_ids`; `None` if it is
    /// not the workspace's.
    async fn bulk_action(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        with_ids: bool,
    ) -> Result<Option<BulkAction>>;

    /// Records progress: `done` and `affected` so far, the state and, for `failed`, the error;
    /// a finished state sets `finished_at`.
    async fn record_bulk_progress(
        &self,
        id: Uuid,
        done: u64,
        affected: u64,
        state: BulkState,
        error: Option<&str>,
    ) -> Result<()>;

    /// Applies `patch` to the workspace's conversations among `ids`, in one transaction, with
    /// the events a single patch writes; returns the ids that were there. The rows are locked
    /// in id order (two batches cannot deadlock). Errors: `Backend` for a patch that changes
    /// memory or variables (not a bulk change); the store's.
    async fn update_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
        patch: &ConversationPatch,
    ) -> Result<Vec<ConversationId>>;
}

/// Refuses what a bulk patch may not carry (memory and variables are per conversation).
pub(crate) fn check_bulk_patch(patch: &ConversationPatch) -> Result<()> {
    if patch.memory.is_some() || patch.variables.is_some() {
        return Err(crate::StoreError::backend(
            "a bulk patch changes no memory or variables",
        ));
    }
    Ok(())
}

/// The work list as stored (a JSON array of ids).
pub(crate) fn ids_text(ids: &[ConversationId]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// The work list a stored text holds.
pub(crate) fn ids_of(text: &str) -> Vec<ConversationId> {
    serde_json::from_str(text).unwrap_or_default()
}
