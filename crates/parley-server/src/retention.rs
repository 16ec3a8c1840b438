//! Retention and right-to-erasure (issue 16), shared by the API (`api/retention.rs`), the
//! dashboard (`/settings/retention`, the panel's "Delete everything about this contact"), the
//! CLI (`parley retention run`) and the background job started by `serve`.
//!
//! - **The one delete path**: [`delete_conversations`] removes a batch of conversations
//!   through [`parley_store::RetentionStore::delete_conversations`] (rows, messages, search
//!   index, variables, insights, events, queued jobs, tracker links and orphaned visits, in
//!   one transaction), then forgets and removes their attachment files. The API's and the
//!   dashboard's single delete (`channels::media::delete_conversation`) are batches of one.
//! - **A run** ([`run`]) applies a workspace's policy in batches of [`BATCH`]: conversations
//!   by the age of their last message (optionally only closed / archived ones), then the
//!   files of old messages (the message and its text stay; the attachment is marked
//!   `removed_at`, and the panel says so), then tracker items and visits. Each batch is its
//!   own short transaction, so writes go on between batches. One server at a time works on
//!   a workspace: the lease `retention:<workspace id>` (renewed after each batch). A dry run
//!   counts what a run would delete and changes nothing. Every manual run, and every
//!   background run that deleted something, is written to the audit log (`retention.run`).
//! - **Erasure** ([`erase_contact`]) deletes every conversation of one contact through the
//!   same path and records `contact.erased` in the audit log with counts only (the contact's
//!   identifier is personal data and is not kept).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_core::{ConversationId, MessageId, Timestamp, WorkspaceId};
use parley_store::retention::cutoff;
use parley_store::{
    ContactMatch, DeletedConversations, NewAuditEntry, RetentionCounts, RetentionPolicy, StoreError,
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::AppState;
use crate::channels::media::remove_attachments;

/// Conversations (or messages, or tracker rows) per transaction.
pub const BATCH: u32 = 500;
/// How long a run's lease lasts without renewal, in ms (renewed after every batch).
pub const LEASE_MS: i64 = 5 * 60_000;
/// How often the background job applies every workspace's policy.
pub const PERIOD: Duration = Duration::from_secs(3600);
/// How long after `serve` starts the background job's first pass begins.
pub const FIRST_PASS: Duration = Duration::from_secs(60);

/// What one run did (or, in a dry run, would do), as `GET /api/v1/audit-log` shows it in the
/// entry's `details` and `POST /api/v1/retention/run` answers.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionRun {
    /// The policy applied.
    pub policy: RetentionPolicy,
    /// What was deleted (dry run: what would be).
    pub counts: RetentionCounts,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// When the run started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
}

/// Who acted, as the audit log's `actor` says it.
pub fn user_actor(user: parley_core::UserId) -> String {
    format!("user:{user}")
}

/// The audit log actor of an API key.
pub fn api_key_actor(key: parley_core::ApiKeyId) -> String {
    format!("api_key:{key}")
}

/// Deletes the workspace's conversations among `ids` (the one delete path: see the module
/// doc), then forgets and removes the files their messages kept. Errors: the store's; a file
/// that cannot be removed is logged, not an error.
pub async fn delete_conversations(
    state: &AppState,
    ws: WorkspaceId,
    ids: &[ConversationId],
) -> Result<DeletedConversations, StoreError> {
    let deleted = state
        .store
        .retention()
        .delete_conversations(ws, ids)
        .await?;
    remove_attachments(state, ws, &deleted.storage_keys).await;
    Ok(deleted)
}

/// Removes the stored files of one message (keeping its text, transcripts and descriptions),
/// marking each attachment `removed_at`. Returns how many files it named.
async fn strip_message_files(
    state: &AppState,
    ws: WorkspaceId,
    message: MessageId,
    at: Timestamp,
) -> Result<u64, StoreError> {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let taken = keys.clone();
    state
        .store
        .channels()
        .edit_message(
            ws,
            message,
            None,
            Box::new(move |_text, meta| {
                let Some(ch) = meta.channel.as_mut() else {
                    return false;
                };
                let mut out = taken.lock().expect("keys");
                for a in &mut ch.attachments {
                    if let Some(k) = a.storage_key.take() {
                        out.push(k);
                        a.removed_at = Some(at);
                    }
                }
                !out.is_empty()
            }),
        )
        .await?;
    let keys = std::mem::take(&mut *keys.lock().expect("keys"));
    remove_attachments(state, ws, &keys).await;
    Ok(keys.len() as u64)
}

/// What a dry run of `policy` would delete now.
async fn preview(
    state: &AppState,
    ws: WorkspaceId,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<RetentionCounts, StoreError> {
    let r = state.store.retention();
    let mut c = RetentionCounts::default();
    if let Some(d) = policy.conversation_days {
        (c.conversations, c.messages) = r
            .count_expired_conversations(ws, cutoff(now, d), &policy.conversation_statuses)
            .await?;
    }
    if let Some(d) = policy.attachment_days {
        (c.attachment_messages, c.attachment_files) = r
            .count_messages_with_files_before(ws, cutoff(now, d))
            .await?;
    }
    if let Some(d) = policy.tracker_days {
        (c.tracker_items, c.tracker_sessions) = r.count_tracker_before(ws, cutoff(now, d)).await?;
    }
    Ok(c)
}

/// Applies `policy` in batches, renewing the lease `lease` for `holder` after each one.
async fn apply(
    state: &AppState,
    ws: WorkspaceId,
    policy: &RetentionPolicy,
    now: Timestamp,
    lease: &str,
    holder: &str,
) -> Result<RetentionCounts, StoreError> {
    let r = state.store.retention();
    let renew = || async {
        let t = Timestamp::now();
        let ok = state
            .store
            .jobs()
            .try_lease(lease, holder, t, Timestamp(t.0 + LEASE_MS))
            .await?;
        if ok { Ok(()) } else { Err(busy()) }
    };
    let mut c = RetentionCounts::default();
    if let Some(d) = policy.conversation_days {
        let before = cutoff(now, d);
        loop {
            let ids = r
                .expired_conversations(ws, before, &policy.conversation_statuses, BATCH)
                .await?;
            if ids.is_empty() {
                break;
            }
            let done = delete_conversations(state, ws, &ids).await?;
            c.conversations += done.conversations.len() as u64;
            c.messages += done.messages;
            c.attachment_files += done.storage_keys.len() as u64;
            c.tracker_items += done.tracker_items;
            c.tracker_sessions += done.tracker_sessions;
            renew().await?;
            if done.conversations.is_empty() || ids.len() < BATCH as usize {
                break;
            }
        }
    }
    if let Some(d) = policy.attachment_days {
        let before = cutoff(now, d);
        loop {
            let messages = r.messages_with_files_before(ws, before, BATCH).await?;
            if messages.is_empty() {
                break;
            }
            let mut stripped = 0;
            for (_, m, _) in &messages {
                let n = strip_message_files(state, ws, *m, now).await?;
                if n > 0 {
                    stripped += 1;
                    c.attachment_files += n;
                }
            }
            c.attachment_messages += stripped;
            renew().await?;
            if stripped == 0 || messages.len() < BATCH as usize {
                break;
            }
        }
    }
    if let Some(d) = policy.tracker_days {
        let before = cutoff(now, d);
        loop {
            let (items, sessions) = r.delete_tracker_before(ws, before, BATCH).await?;
            c.tracker_items += items;
            c.tracker_sessions += sessions;
            renew().await?;
            if items == 0 && sessions == 0 {
                break;
            }
        }
    }
    Ok(c)
}

fn busy() -> StoreError {
    StoreError::Conflict {
        code: "retention_busy",
        message: "a retention run is already working on this workspace; try again shortly".into(),
    }
}

/// Runs the workspace's saved policy now (or, with `dry_run`, counts what it would delete),
/// and records the run in the audit log as `actor` (unless `log_if_empty` is false and the
/// run deleted nothing). Errors: `Conflict("retention_busy")` while another run holds the
/// workspace's lease; the store's.
pub async fn run(
    state: &AppState,
    ws: WorkspaceId,
    dry_run: bool,
    actor: &str,
    log_if_empty: bool,
) -> Result<RetentionRun, StoreError> {
    let policy = state.store.retention().retention_policy(ws).await?;
    let started_at = Timestamp::now();
    let counts = if dry_run {
        preview(state, ws, &policy, started_at).await?
    } else {
        let lease = format!("retention:{ws}");
        let holder = format!("{}:{}", state.jobs.worker, uuid::Uuid::now_v7().simple());
        let jobs = state.store.jobs();
        if !jobs
            .try_lease(
                &lease,
                &holder,
                started_at,
                Timestamp(started_at.0 + LEASE_MS),
            )
            .await?
        {
            return Err(busy());
        }
        let applied = apply(state, ws, &policy, started_at, &lease, &holder).await;
        let released = jobs.release_lease(&lease, &holder).await;
        let counts = applied?;
        released?;
        counts
    };
    let out = RetentionRun {
        policy,
        counts,
        dry_run,
        started_at,
        finished_at: Timestamp::now(),
    };
    if log_if_empty || counts != RetentionCounts::default() {
        state
            .store
            .retention()
            .append_audit(
                ws,
                &NewAuditEntry {
                    actor: actor.to_owned(),
                    action: "retention.run".into(),
                    target: "workspace".into(),
                    details: serde_json::to_value(&out).unwrap_or_default(),
                },
            )
            .await?;
    }
    Ok(out)
}

/// What [`erase_contact`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Erasure {
    /// Conversations deleted (with their variables, insights, events and tracker visits).
    pub conversations: u64,
    /// Their messages.
    pub messages: u64,
    /// Attachment files removed.
    pub attachment_files: u64,
}

/// The name of a [`ContactMatch`]'s kind, as the audit log records it (never the value).
pub fn match_kind(m: &ContactMatch) -> &'static str {
    match m {
        ContactMatch::Contact(_) => "contact",
        ContactMatch::Email(_) => "email",
        ContactMatch::Phone(_) => "phone",
    }
}

/// Deletes everything about one contact in the workspace (every conversation the match finds,
/// through the one delete path, in batches) and records `contact.erased` in the audit log
/// as `actor`, with `via` (`api`, `dashboard`) and the counts. Erasing a contact with nothing
/// left is not an error (a retried request answers zeros). Errors: the store's.
pub async fn erase_contact(
    state: &AppState,
    ws: WorkspaceId,
    contact: &ContactMatch,
    actor: &str,
    via: &str,
) -> Result<Erasure, StoreError> {
    let mut out = Erasure::default();
    loop {
        let ids = state
            .store
            .retention()
            .contact_conversations(ws, contact, BATCH)
            .await?;
        if ids.is_empty() {
            break;
        }
        let done = delete_conversations(state, ws, &ids).await?;
        out.conversations += done.conversations.len() as u64;
        out.messages += done.messages;
        out.attachment_files += done.storage_keys.len() as u64;
        if done.conversations.is_empty() {
            break;
        }
    }
    state
        .store
        .retention()
        .append_audit(
            ws,
            &NewAuditEntry {
                actor: actor.to_owned(),
                action: "contact.erased".into(),
                target: "contact".into(),
                details: json!({
                    "matched_by": match_kind(contact),
                    "via": via,
                    "conversations": out.conversations,
                    "messages": out.messages,
                    "attachment_files": out.attachment_files,
                }),
            },
        )
        .await?;
    Ok(out)
}

/// The running background job; [`Retention::stop`] ends it.
pub struct Retention {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Retention {
    /// Stops it, abandoning a run between batches (what is left is found on the next pass).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the retention job ended badly");
        }
    }
}

/// Starts the background job: every [`PERIOD`] (the first pass [`FIRST_PASS`] after start),
/// each workspace with a policy is run as actor `system`.
pub fn start(state: AppState) -> Retention {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut wait = FIRST_PASS;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => return,
            }
            wait = PERIOD;
            let list = match state.store.retention().workspaces_with_retention().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list the workspaces with retention");
                    continue;
                }
            };
            for ws in list {
                tokio::select! {
                    r = run(&state, ws, false, "system", false) => match r {
                        Ok(run) if run.counts != RetentionCounts::default() => {
                            tracing::info!(workspace = %ws, counts = ?run.counts, "retention applied");
                        }
                        Ok(_) => {}
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => tracing::warn!(error = %e, workspace = %ws, "retention run failed"),
                    },
                    _ = stopped.changed() => return,
                }
            }
        }
    });
    Retention { stop, task }
}
