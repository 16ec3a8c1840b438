//! What several Parley servers share besides the data (DESIGN.md section 7): the durable job
//! queue that background work runs from, the leases that serialise work on one thing (an
//! assistant's turn on a conversation), and the rate-limit windows counted across servers.
//!
//! **Jobs.** A job is a row: `kind`, `payload` (text; a webhook delivery keeps its raw body
//! here), `state` (`queued`, `running`, `failed`), `attempts` / `max_attempts`, `run_after`
//! (unix ms), a lease (`locked_by`, `locked_until`), `last_error`, and optional references
//! (workspace, channel connection, conversation, message). A job is written in the same
//! transaction as the change that caused it ([`JobStore::enqueue`] on its own for a webhook
//! delivery, [`JobStore::ingest_with_jobs`] together with the messages it follows up on), so a
//! crash delays it and never loses it. [`JobStore::claim`] hands due jobs to one worker: on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so servers sharing the database never take the
//! same job; on SQLite in the single writer. Claiming counts an attempt and sets a lease; a
//! worker renews the lease while it works ([`JobStore::renew`]); a job whose lease ran out
//! (its server died) is due again. A finished job is deleted; a failed one stays, visible.
//!
//! **Leases** ([`JobStore::try_lease`]) are named locks with an expiry: held by one holder at
//! a time, free again when released or expired (a crashed holder does not block for ever).
//!
//! **Rate windows** ([`JobStore::count_hits`]) count requests per subject in fixed windows.

use async_trait::async_trait;
use parley_core::{ChannelConnectionId, ConversationId, MessageId, Timestamp, WorkspaceId};
use uuid::Uuid;

use crate::{IngestBatch, IngestOutcome, Result};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for `run_after`.
    Queued,
    /// Claimed by a worker whose lease has not run out.
    Running,
    /// Gave up (after `max_attempts`, or a permanent error); kept for the operator.
    Failed,
}

impl JobState {
    /// `queued`, `running` or `failed`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Failed => "failed",
        }
    }

    /// The state a stored text names.
    pub fn parse(s: &str) -> Option<JobState> {
        match s {
            "queued" => Some(JobState::Queued),
            "running" => Some(JobState::Running),
            "failed" => Some(JobState::Failed),
            _ => None,
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Its id (UUIDv7).
    pub id: Uuid,
    /// What to do, e.g. `whatsapp.delivery` (the server's job kinds).
    pub kind: String,
    /// The job's input: text the kind's handler reads (JSON, or a webhook's raw body).
    pub payload: String,
    /// The workspace it belongs to, when it belongs to one.
    pub workspace_id: Option<WorkspaceId>,
    /// The channel connection it came through (webhook deliveries: the connection's inbox).
    pub connection_id: Option<ChannelConnectionId>,
    /// The conversation it works on ([`JobStore::ingest_with_jobs`] fills it in).
    pub conversation_id: Option<ConversationId>,
    /// The message it follows up on ([`JobStore::ingest_with_jobs`] fills it in).
    pub message_id: Option<MessageId>,
    /// Not before this time.
    pub run_after: Timestamp,
    /// Claims before the job is given up (at least 1).
    pub max_attempts: u32,
}

impl NewJob {
    /// A job of `kind` with `payload`, due now, with a fresh id and `max_attempts` claims.
    pub fn new(kind: &str, payload: String, max_attempts: u32) -> NewJob {
        NewJob {
            id: Uuid::now_v7(),
            kind: kind.to_owned(),
            payload,
            workspace_id: None,
            connection_id: None,
            conversation_id: None,
            message_id: None,
            run_after: Timestamp::now(),
            max_attempts: max_attempts.max(1),
        }
    }
}

/// A claimed job, as a worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its id.
    pub id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Its input.
    pub payload: String,
    /// Its workspace.
    pub workspace_id: Option<WorkspaceId>,
    /// Its channel connection.
    pub connection_id: Option<ChannelConnectionId>,
    /// Its conversation.
    pub conversation_id: Option<ConversationId>,
    /// Its message.
    pub message_id: Option<MessageId>,
    /// Claims so far, this one included (1 on the first run).
    pub attempts: u32,
    /// Claims allowed.
    pub max_attempts: u32,
    /// The error of the previous attempt, if any.
    pub last_error: Option<String>,
    /// When it was enqueued (a webhook delivery: when it was received).
    pub created_at: Timestamp,
}

/// A job to write with an ingest ([`JobStore::ingest_with_jobs`]): enqueued, in the same
/// transaction, only when the last message of batch `batch` (in input order) is newly stored,
/// with `conversation_id` and `message_id` set to that batch's conversation and message.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestJob {
    /// Index of the batch in the ingest call.
    pub batch: usize,
    /// The job.
    pub job: NewJob,
}

/// How many jobs of one kind are in one state, and the oldest of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The kind.
    pub kind: String,
    /// The state.
    pub state: JobState,
    /// How many.
    pub count: u64,
    /// When the oldest of them was enqueued.
    pub oldest_created_at: Timestamp,
}

/// A channel connection's inbox: its webhook deliveries not yet processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboxStats {
    /// Deliveries waiting or being processed (`queued` or `running`).
    pub pending: u64,
    /// Deliveries given up (`failed`), kept for the operator.
    pub failed: u64,
    /// When the oldest pending delivery was received.
    pub oldest_pending_at: Option<Timestamp>,
}

/// The queue, leases and rate windows, reached through [`crate::Store::jobs`]. Jobs are not
/// scoped to a workspace (webhook deliveries arrive before one is known); only the workers
/// read them.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Stores a job, durably, before returning. Errors: `Conflict("job_exists")` for an id
    /// already stored.
    async fn enqueue(&self, job: &NewJob) -> Result<()>;

    /// [`crate::ConversationStore::ingest`], enqueueing `jobs` in the same transaction (see
    /// [`IngestJob`]). Errors: those of ingest; an `IngestJob` naming a batch that is not
    /// there is ignored.
    async fn ingest_with_jobs(
        &self,
        workspace: WorkspaceId,
        batches: Vec<IngestBatch>,
        jobs: Vec<IngestJob>,
    ) -> Result<Vec<IngestOutcome>>;

    /// Claims up to `limit` due jobs for `worker`, oldest due first: `queued` ones whose
    /// `run_after` is at or before `now`, and `running` ones whose lease ran out before `now`.
    /// Each gets `attempts + 1` and the lease (`worker`, `lease_until`). Several servers may
    /// claim at once; each job goes to one of them.
    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Job>>;

    /// Extends `worker`'s lease on a job to `lease_until`. False when the job is no longer
    /// `worker`'s (its lease ran out and another worker took it, or it is gone).
    async fn renew(&self, id: Uuid, worker: &str, lease_until: Timestamp) -> Result<bool>;

    /// Deletes a finished job. False when it is no longer `worker`'s.
    async fn complete(&self, id: Uuid, worker: &str) -> Result<bool>;

    /// Puts a job back in the queue until `run_after`, with `error` as its `last_error`.
    /// False when it is no longer `worker`'s.
    async fn retry_later(
        &self,
        id: Uuid,
        worker: &str,
        run_after: Timestamp,
        error: &str,
    ) -> Result<bool>;

    /// Gives a job up: `failed` with `error`, kept for the operator. False when it is no
    /// longer `worker`'s.
    async fn fail(&self, id: Uuid, worker: &str, error: &str) -> Result<bool>;

    /// Puts every `running` job of `worker` back in the queue, due now, its attempt not
    /// counted (a worker stopping cleanly hands over what it did not finish). Returns how many.
    async fn release(&self, worker: &str) -> Result<u64>;

    /// Puts every `running` job back in the queue, due now (SQLite: the one server starting
    /// takes back what its previous run left; never used on a shared database). Returns how
    /// many.
    async fn requeue_running(&self) -> Result<u64>;

    /// Counts per kind and state, with the oldest job of each.
    async fn queue_stats(&self) -> Result<Vec<QueueStats>>;

    /// The inbox of connection `connection` of `workspace`: its webhook deliveries (jobs with
    /// that connection whose kind ends in `.delivery`) pending and failed.
    async fn inbox_stats(
        &self,
        workspace: WorkspaceId,
        connection: ChannelConnectionId,
    ) -> Result<InboxStats>;

    /// Takes or renews the lease `name` for `holder` until `until`: true when it was free
    /// (never taken, released, or expired before `now`) or already `holder`'s.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;

    /// Releases `holder`'s lease `name` (nothing happens when it is not `holder`'s).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// Counts one hit for each subject in the window starting at `window_start` (unix ms) and
    /// returns each subject's count in that window, in order; windows that started before
    /// `forget_before` are deleted on the way. The count is not fsynced on PostgreSQL
    /// (`synchronous_commit = off`): a crash may forget the last hits, which a limit allows.
    async fn count_hits(
        &self,
        subjects: &[String],
        window_start: i64,
        forget_before: i64,
    ) -> Result<Vec<u64>>;
}

/// Columns of a job, in the order the backends read them.
pub(crate) const JOB_COLS: &str = "id, kind, payload, workspace_id, connection_id, \
    conversation_id, message_id, attempts, max_attempts, last_error, created_at";

/// The jobs of `jobs` due for an ingest whose outcomes are `outcomes` (see [`IngestJob`]),
/// with their conversation and message filled in.
pub(crate) fn due_after_ingest(
    batches_len: usize,
    outcomes: &[IngestOutcome],
    jobs: Vec<IngestJob>,
) -> Vec<NewJob> {
    jobs.into_iter()
        .filter(|j| j.batch < batches_len)
        .filter_map(|mut j| {
            let outcome = outcomes.get(j.batch)?;
            match outcome.messages.last()? {
                crate::MessageOutcome::Stored { id } => {
                    j.job.conversation_id = Some(outcome.conversation_id);
                    j.job.message_id = Some(*id);
                    Some(j.job)
                }
                _ => None,
            }
        })
        .collect()
}
