//! Keeping each conversation's insights (issue 13) current, off the request path.
//!
//! **How changed conversations are found.** Every change to a conversation stamps its
//! `updated_at`. The analyser walks each workspace's conversations in `(updated_at, pk)` order
//! (an index range scan, `conversations_by_updated`) past a stored watermark
//! ([`parley_store::InsightCursor`]), analyses the ones whose insight is missing or older than
//! their `updated_at` with [`parley_core::insights::analyse`], stores the results and moves the
//! watermark. This was chosen over a job row per change because it adds nothing to the write
//! path but one index entry (ingest writes no extra row, and a burst of messages to one
//! conversation is analysed once), and it is durable without one: the watermark only moves
//! after the insights before it are stored, so a crash leaves the work to be found again on
//! restart, and re-analysing is idempotent.
//!
//! **Commits that land late.** A writer stamps `updated_at` before its transaction commits, so
//! a row can appear behind rows already scanned. The stored watermark therefore never moves past
//! `now - LAG_MS` ([`LAG_MS`]); rows in that window are looked at again by the next pass (and
//! skipped when their insight is current). A server whose clock is more than [`LAG_MS`] behind
//! the others can still be missed until the conversation changes again.
//!
//! **Several servers (PostgreSQL).** The watermark row carries a lease (`claimed_by`,
//! `claimed_until`, [`LEASE_MS`]) taken with one conditional upsert, so one server analyses a
//! workspace at a time and another takes over when it dies; an idle workspace costs a pass two
//! reads and no write.
//!
//! **Topics.** Each analysis stores the conversation's key phrases and gives it the workspace's
//! topic they match ([`parley_core::topics::topic_of`]); the topics themselves are learned again
//! ([`learn_topics`], from the [`TOPIC_SAMPLE`] most recently started conversations) at the end
//! of a pass when analyses stored key phrases since they were last learned, at most every
//! [`TOPICS_EVERY_MS`] in the background and at once by `parley analyse`. Learning re-assigns the
//! sampled conversations and clears the topic of any other whose topic is gone, so every stored
//! topic is one of the workspace's current ones.
//!
//! **When.** [`start`] runs a pass over every workspace when an ingest commits (woken through
//! [`crate::jobs::Jobs::wake_insights`], after [`SETTLE`] so a burst is one pass) and every
//! [`PERIOD`] (changes by other servers, patches, ratings). `parley analyse` runs the same pass
//! ([`analyse_changed`]) as a backfill. `[jobs] insights = false` turns the background analyser
//! off (then only `parley analyse` computes insights).
//!
//! **Per workspace.** A workspace whose settings turn analysis off (`analysis_enabled`, the
//! Settings page's Analysis section, issue 16) is skipped by every pass, `parley analyse`
//! included: its watermark stays where it was, so turning analysis back on analyses every
//! conversation changed meanwhile.

use std::time::Duration;

use parley_core::insights::analyse;
use parley_core::topics::topic_of;
use parley_core::{ConversationId, Timestamp, WorkspaceId};
use parley_store::{InsightCursor, Store, StoreError};
use tokio::sync::watch;

use crate::AppState;

/// Conversations read, analysed and stored per round.
pub const BATCH: u32 = 500;
/// How far (ms) behind the clock the stored watermark stays, for commits that land after rows
/// stamped later than theirs.
pub const LAG_MS: i64 = 10_000;
/// How long (ms) a workspace's analysis lease lasts without renewal (renewed every round).
pub const LEASE_MS: i64 = 60_000;
/// The longest the background analyser waits between passes.
pub const PERIOD: Duration = Duration::from_secs(5);
/// How long a wake-up waits for more commits before the pass starts.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Threads the background analyser analyses on: one, so ingest keeps the other cores
/// (`parley analyse` uses every core).
pub const BACKGROUND_THREADS: usize = 1;

/// The most conversations (the most recently started) topics are learned from.
pub const TOPIC_SAMPLE: u32 = 20_000;
/// How often (ms) the background analyser learns a workspace's topics again while its
/// conversations keep changing.
pub const TOPICS_EVERY_MS: i64 = 60_000;

/// What one pass over a workspace did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// This many conversations were analysed (0: nothing was stale).
    Analysed(u64),
    /// Another worker holds the workspace's lease; nothing was done.
    Busy,
    /// The workspace's settings turn analysis off; nothing was done.
    Disabled,
}

/// One pass over `workspace` as `worker`: analyses every conversation changed past the
/// watermark whose insight is missing or stale, [`BATCH`] at a time on up to `threads`
/// blocking threads, calling `progress(done)`
/// after each round, and moves the watermark; then learns the topics again when key phrases
/// changed since they were learned `topics_every_ms` or more ago. A conversation changed while
/// it is analysed is stale again and is picked up by the next pass. Errors: the store's.
pub async fn analyse_changed(
    store: &dyn Store,
    workspace: WorkspaceId,
    worker: &str,
    topics_every_ms: i64,
    threads: usize,
    mut progress: impl FnMut(u64),
) -> Result<Pass, StoreError> {
    if !store
        .settings()
        .workspace_settings(workspace)
        .await?
        .analysis_enabled
    {
        return Ok(Pass::Disabled);
    }
    let insights = store.insights();
    // Read-only first, so an idle workspace costs no write.
    let mark = insights.insight_watermark(workspace).await?;
    let first = insights
        .changed_conversations(workspace, mark, BATCH)
        .await?;
    if first.len() < BATCH as usize
        && !first.iter().any(|c| c.stale)
        && !topics_due(store, workspace, topics_every_ms).await?
    {
        return Ok(Pass::Analysed(0));
    }
    let lease = || Timestamp(Timestamp::now().0.saturating_add(LEASE_MS));
    let Some(mut scan) = insights
        .claim_insight_watermark(workspace, worker, Timestamp::now(), lease())
        .await?
    else {
        return Ok(Pass::Busy);
    };
    let mut done = 0u64;
    let result = async {
        loop {
            // Taken before the scan: every commit stamped before `seen - LAG_MS` is visible to it.
            let seen = Timestamp::now();
            let rows = insights
                .changed_conversations(workspace, scan, BATCH)
                .await?;
            let stale: Vec<ConversationId> =
                rows.iter().filter(|c| c.stale).map(|c| c.id).collect();
            if !stale.is_empty() {
                done += analyse_some(store, workspace, &stale, threads).await?;
                progress(done);
            }
            let Some(last) = rows.last() else {
                return Ok(());
            };
            scan = last.cursor;
            let cap = InsightCursor {
                updated_at: seen.0.saturating_sub(LAG_MS + 1),
                pk: i64::MAX,
            };
            if !insights
                .advance_insight_watermark(workspace, worker, scan.min(cap), lease())
                .await?
            {
                // The lease ran out and another worker took it: it carries on from the mark.
                return Ok(());
            }
            if rows.len() < BATCH as usize {
                return Ok(());
            }
        }
    }
    .await;
    let result = match result {
        Ok(()) => topics_after(store, workspace, done, topics_every_ms).await,
        e => e,
    };
    let released = insights.release_insight_watermark(workspace, worker).await;
    result.and(released).map(|()| Pass::Analysed(done))
}

/// Whether the workspace's topics are due to be learned again: key phrases changed after they
/// were learned, and that was `every_ms` or more ago.
async fn topics_due(
    store: &dyn Store,
    workspace: WorkspaceId,
    every_ms: i64,
) -> Result<bool, StoreError> {
    let set = store.insights().topics(workspace).await?;
    Ok(set.changed_at > set.learned_at
        && Timestamp::now().0.saturating_sub(set.learned_at) >= every_ms)
}

/// The end of a pass that analysed `done` conversations: records the change and learns the
/// topics when they are due.
async fn topics_after(
    store: &dyn Store,
    workspace: WorkspaceId,
    done: u64,
    every_ms: i64,
) -> Result<(), StoreError> {
    if done > 0 {
        store
            .insights()
            .note_topic_change(workspace, Timestamp::now())
            .await?;
    }
    if topics_due(store, workspace, every_ms).await? {
        learn_topics(store, workspace).await?;
    }
    Ok(())
}

/// Learns the workspace's topics from its [`TOPIC_SAMPLE`] most recently started analysed
/// conversations, stores them and re-assigns the sampled conversations whose topic changed;
/// returns the topics. Errors: the store's.
pub async fn learn_topics(
    store: &dyn Store,
    workspace: WorkspaceId,
) -> Result<Vec<parley_core::topics::Topic>, StoreError> {
    let insights = store.insights();
    let sample = insights.topic_sample(workspace, TOPIC_SAMPLE).await?;
    let docs: Vec<Vec<String>> = sample.iter().map(|s| s.key_phrases.clone()).collect();
    let topics = parley_core::topics::learn_topics(&docs, parley_core::topics::MAX_TOPICS);
    let changes: Vec<(ConversationId, Option<String>)> = sample
        .iter()
        .filter_map(|s| {
            let now = topic_of(&s.key_phrases, &topics).map(|t| t.key.clone());
            (now != s.topic).then_some((s.id, now))
        })
        .collect();
    insights
        .save_topics(workspace, &topics, &changes, Timestamp::now())
        .await?;
    Ok(topics)
}

/// Analyses and stores the conversations `ids` of `workspace`; returns how many still
/// existed. Errors: the store's.
async fn analyse_some(
    store: &dyn Store,
    workspace: WorkspaceId,
    ids: &[ConversationId],
    threads: usize,
) -> Result<u64, StoreError> {
    let records = store
        .conversations()
        .export_conversations(workspace, ids)
        .await?;
    let n = records.len() as u64;
    let topics = std::sync::Arc::new(store.insights().topics(workspace).await?.topics);
    let now = Timestamp::now();
    // The analysis is CPU work (VADER, YAKE): off the async threads, on `threads` of the
    // blocking pool.
    let per = records.len().div_ceil(threads.max(1)).max(1);
    let mut chunks = Vec::new();
    let mut records = records;
    while !records.is_empty() {
        let rest = records.split_off(per.min(records.len()));
        chunks.push(std::mem::replace(&mut records, rest));
    }
    let tasks = chunks.into_iter().map(|chunk| {
        let topics = topics.clone();
        tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|r| {
                    let mut insight = analyse(&r.detail.summary, &r.messages, now);
                    insight.topic = topic_of(&insight.key_phrases, &topics).map(|t| t.key.clone());
                    // Never older than the change it reflects, so the conversation is not
                    // stale after it even when the record's clock ran ahead of this one.
                    let at = Timestamp(now.0.max(r.detail.updated_at.0));
                    (r.detail.summary.id, insight, at)
                })
                .collect::<Vec<_>>()
        })
    });
    let mut analysed = Vec::new();
    for done in futures_util::future::join_all(tasks).await {
        analysed.extend(
            done.map_err(|e| StoreError::backend(format!("an analysis task failed: {e}")))?,
        );
    }
    let saves = analysed.into_iter().map(|(id, insight, at)| {
        async move {
            match store
                .insights()
                .save_insight(workspace, id, &insight, at)
                .await
            {
                // Deleted since it was listed: nothing to keep.
                Err(StoreError::NotFound { .. }) => Ok(()),
                other => other,
            }
        }
    });
    // Concurrently, so SQLite commits the round as one group.
    for r in futures_util::future::join_all(saves).await {
        r?;
    }
    Ok(n)
}

/// [`analyse_changed`] as a worker of its own on every core (`parley analyse`, tests): returns how many
/// conversations were analysed. Errors: the store's; `Conflict` `analysis_busy` when a server
/// is analysing the workspace right now (try again when it is done); `Conflict`
/// `analysis_disabled` when the workspace's settings turn analysis off.
pub async fn analyse_stale(
    store: &dyn Store,
    workspace: WorkspaceId,
    progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let worker = format!("analyse-{}", uuid::Uuid::now_v7().simple());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match analyse_changed(store, workspace, &worker, 0, cores, progress).await? {
        Pass::Analysed(n) => Ok(n),
        Pass::Busy => Err(StoreError::Conflict {
            code: "analysis_busy",
            message: "a server is analysing this workspace now; try again shortly".into(),
        }),
        Pass::Disabled => Err(StoreError::Conflict {
            code: "analysis_disabled",
            message: "analysis is turned off in this workspace's settings".into(),
        }),
    }
}

/// The running background analyser; [`Analyser::stop`] ends it.
pub struct Analyser {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Analyser {
    /// Stops it, abandoning a pass midway (its work is found again on the next start).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the insights analyser ended badly");
        }
    }
}

/// Starts the background analyser (see the module docs); `None` when `[jobs] insights` is
/// off.
pub fn start(state: AppState) -> Option<Analyser> {
    if !state.jobs.settings.insights {
        return None;
    }
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(state, stopped));
    Some(Analyser { stop, task })
}

async fn run(state: AppState, mut stopped: watch::Receiver<bool>) {
    let worker = state.jobs.worker.clone();
    let store = state.store.as_ref();
    while !*stopped.borrow() {
        match store.workspaces().list_workspaces().await {
            Ok(list) => {
                for ws in list {
                    tokio::select! {
                        r = analyse_changed(store, ws.id, &worker, TOPICS_EVERY_MS, BACKGROUND_THREADS, |_| {}) => match r {
                            Ok(Pass::Analysed(0) | Pass::Busy | Pass::Disabled) => {}
                            Ok(Pass::Analysed(n)) => {
                                tracing::debug!(workspace = %ws.slug, conversations = n, "analysed");
                            }
                            Err(e) => tracing::warn!(error = %e, workspace = %ws.slug,
                                                     "could not analyse conversations"),
                        },
                        _ = stopped.changed() => {
                            // Give the lease back at once, so the next start need not wait.
                            let _ = store.insights().release_insight_watermark(ws.id, &worker).await;
                            return;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list workspaces to analyse"),
        }
        tokio::select! {
            _ = state.jobs.insights_woken() => tokio::time::sleep(SETTLE).await,
            _ = tokio::time::sleep(PERIOD) => {}
            _ = stopped.changed() => {}
        }
    }
}
