//! Live updates (issue 14): the server's one shared event reader and the event streams built
//! on the store's event log ([`parley_store::EventStore`]).
//!
//! Events are appended by the store in the transaction of the change that causes them. After
//! a commit the store wakes its subscribers; on PostgreSQL every server also LISTENs on
//! `parley_events` (and re-wakes after a reconnect, since notifications are lost while
//! disconnected). Each server runs **one reader** ([`start`]): at every wake-up it reads the
//! new rows of the log once, for every workspace (`events_since`, by id from where it stopped,
//! in pages of [`PAGE`]), and hands them as one [`Batch`] to every open stream of this server
//! through a `tokio::sync::broadcast` ([`EventHub`]). A stream keeps only the rows of its own
//! workspace that pass its filter ([`parley_store::EventFilter::matches`]), so N listeners cost
//! one query per wake-up, not N.
//!
//! Nothing is missed and nothing is seen twice: event ids grow in commit order, a batch names
//! the id range `(from, to]` it covers, and a stream remembers the id it has seen everything
//! up to. A stream that starts (from `Last-Event-ID`, or now), falls behind the broadcast
//! (lagged), or meets a batch that starts after its position, reads the gap itself from the
//! log (`events_after`, scoped to its workspace and filtered in SQL) and then follows the
//! batches again, skipping what it already has. No event of another workspace ever reaches a
//! stream: both paths check the workspace.
//!
//! Retention: a periodic task prunes events older than `[events] retention_ms` (default 1 h).
//! A resume point below the highest pruned id answers 410 `events_expired`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::{Stream, StreamExt as _};
use parley_core::{Timestamp, WorkspaceId};
use parley_store::{EventFilter, Store, StoredEvent};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::AppState;
use crate::error::ApiError;

/// Events one read of the log returns at most (the shared reader's and a stream's own).
pub const PAGE: u32 = 200;

/// Batches the broadcast holds for streams that are behind; one further behind reads the log
/// itself.
const BACKLOG: usize = 64;

/// One read of the shared reader: every event (of every workspace) with an id in `(from, to]`,
/// in id order.
#[derive(Debug)]
pub struct Batch {
    /// The reader's position before this read.
    pub from: i64,
    /// The id of the last event read (the reader's position after it).
    pub to: i64,
    /// The events.
    pub events: Vec<StoredEvent>,
}

/// The in-process fan-out: the shared reader's batches, and the shutdown signal that ends
/// every open stream.
#[derive(Debug)]
pub struct EventHub {
    batches: broadcast::Sender<Arc<Batch>>,
    /// The shared reader's position: every event up to it has been broadcast.
    position: AtomicI64,
    closed: watch::Sender<bool>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            batches: broadcast::channel(BACKLOG).0,
            position: AtomicI64::new(0),
            closed: watch::channel(false).0,
        }
    }
}

impl EventHub {
    /// Hands `batch` to every open stream and moves the reader's position to its end.
    fn publish(&self, batch: Batch) {
        self.position.fetch_max(batch.to, Ordering::SeqCst);
        let _ = self.batches.send(Arc::new(batch));
    }

    /// Ends every open stream (graceful shutdown: the server waits for open responses).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// How many streams of this server are open.
    pub fn listeners(&self) -> usize {
        self.batches.receiver_count()
    }
}

/// The hub's background tasks: the shared reader, and pruning.
pub struct EventTasks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl EventTasks {
    /// Stops the tasks.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Starts the shared reader ([`read_log`]) and the periodic pruning (every retention / 10, at
/// most every minute).
pub fn start(state: &AppState) -> EventTasks {
    let changes = state.store.events().subscribe();
    let reader = tokio::spawn(read_log(state.store.clone(), state.events.clone(), changes));
    let (store, retention) = (state.store.clone(), state.settings.events.retention);
    let prune = tokio::spawn(async move {
        let every = (retention / 10).min(Duration::from_secs(60));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let before = Timestamp(Timestamp::now().0 - retention.as_millis() as i64);
            match store.events().prune_before(before).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(pruned = n, "events: pruned the log"),
                Err(e) => tracing::warn!(error = %e, "events: pruning failed"),
            }
        }
    });
    EventTasks {
        tasks: vec![reader, prune],
    }
}

/// The shared reader: from the newest event at start, at every wake-up of the store reads
/// every new event (all workspaces, pages of [`PAGE`]) and publishes each page as a [`Batch`].
/// A failed read is retried after a pause (100 ms, doubling up to 5 s) without waiting for the
/// next commit; streams wait meanwhile and lose nothing (they are behind, not past, the gap).
async fn read_log(store: Arc<dyn Store>, hub: Arc<EventHub>, mut changes: watch::Receiver<u64>) {
    let mut backoff = Duration::from_millis(100);
    let mut position = loop {
        match store.events().latest_event_id().await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!(error = %e, "events: reading the log's position failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    hub.position.fetch_max(position, Ordering::SeqCst);
    loop {
        match store.events().events_since(position, PAGE).await {
            Ok(page) if !page.is_empty() => {
                backoff = Duration::from_millis(100);
                let full = page.len() >= PAGE as usize;
                let to = page.last().map_or(position, |e| e.id);
                hub.publish(Batch {
                    from: position,
                    to,
                    events: page,
                });
                position = to;
                if full {
                    continue;
                }
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "events: the shared reader's read failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// An event as the streams send it: `{id, type, workspace, conversation_id, channel,
/// assistant_id, created_at, data}` (`created_at` RFC 3339; `data` per type, see README "Live
/// events").
pub fn event_json(e: &StoredEvent) -> Value {
    json!({
        "id": e.id,
        "type": e.event_type.as_str(),
        "workspace": e.workspace_id,
        "conversation_id": e.conversation_id,
        "channel": e.channel.map(|c| c.as_str()),
        "assistant_id": e.assistant_id,
        "created_at": e.created_at,
        "data": e.data,
    })
}

/// The SSE frame of an event: `id:` its id, `event:` its type, `data:` [`event_json`].
pub fn sse_event(e: &StoredEvent) -> Event {
    crate::sse::json_event(e.event_type.as_str(), &event_json(e)).id(e.id.to_string())
}

/// Where a stream starts: after `resume` (a `Last-Event-ID`), or after the newest event now.
/// Errors: 410 `events_expired` when events after `resume` were already pruned; 400
/// `invalid_last_event_id` for a negative id.
pub async fn start_after(store: &dyn Store, resume: Option<i64>) -> Result<i64, ApiError> {
    match resume {
        None => Ok(store.events().latest_event_id().await?),
        Some(id) if id < 0 => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_last_event_id",
            "Last-Event-ID must be an event id (a non-negative integer)",
        )),
        Some(id) => {
            if id < store.events().pruned_through().await? {
                return Err(ApiError::new(
                    axum::http::StatusCode::GONE,
                    "events_expired",
                    "events after this Last-Event-ID are older than the retention window and \
                     gone; reload the state you need and reconnect without Last-Event-ID",
                ));
            }
            Ok(id)
        }
    }
}

/// The events of `workspace` matching `filter` after id `after`, as they are committed, as
/// SSE frames ([`sse_event`]); see [`follow`].
pub fn stream(
    state: &AppState,
    workspace: WorkspaceId,
    filter: EventFilter,
    after: i64,
) -> impl Stream<Item = Event> + Send + 'static {
    follow(state, workspace, filter, after).map(|e| sse_event(&e))
}

/// The events of `workspace` matching `filter` after id `after`, in id order, as they are
/// committed, until the client goes away, the server shuts down, or the store fails while the
/// stream reads a gap itself (then the stream ends and the client resumes with
/// `Last-Event-ID`). Fed by the shared reader's batches; reads the log itself only for a gap
/// (see the [module docs](self)).
pub fn follow(
    state: &AppState,
    workspace: WorkspaceId,
    filter: EventFilter,
    after: i64,
) -> impl Stream<Item = StoredEvent> + Send + 'static {
    struct Follow {
        store: Arc<dyn Store>,
        batches: broadcast::Receiver<Arc<Batch>>,
        closed: watch::Receiver<bool>,
        workspace: WorkspaceId,
        filter: EventFilter,
        /// Every matching event up to this id has been queued.
        after: i64,
        /// Read the log from `after` before following the batches again.
        gap: bool,
        /// Once the gap is read to its end, everything up to this id is in hand too.
        gap_to: i64,
        ready: VecDeque<StoredEvent>,
    }
    // Subscribed before the reader's position is read and before the first read of the log,
    // so a batch published meanwhile is received, and one published before is covered by the
    // read (which comes after it).
    let batches = state.events.batches.subscribe();
    let gap_to = state.events.position.load(Ordering::SeqCst);
    let follow = Follow {
        store: state.store.clone(),
        batches,
        closed: state.events.closed.subscribe(),
        workspace,
        filter,
        after,
        gap: true,
        gap_to,
        ready: VecDeque::new(),
    };
    futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if *f.closed.borrow() {
                return None;
            }
            if let Some(e) = f.ready.pop_front() {
                return Some((e, f));
            }
            if f.gap {
                match f
                    .store
                    .events()
                    .events_after(f.workspace, f.after, &f.filter, PAGE)
                    .await
                {
                    Ok(page) => {
                        let full = page.len() >= PAGE as usize;
                        f.after = page.last().map_or(f.after, |e| e.id);
                        f.ready.extend(page);
                        if !full {
                            // Read to the end: everything committed up to `gap_to` was in it.
                            f.gap = false;
                            f.after = f.after.max(f.gap_to);
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "events: reading the log failed; ending the stream");
                        return None;
                    }
                }
            }
            tokio::select! {
                r = f.batches.recv() => match r {
                    Ok(b) if b.from > f.after => {
                        // Events between our position and the batch's start: read them.
                        f.gap = true;
                        f.gap_to = b.to;
                    }
                    Ok(b) => {
                        let (ws, after) = (f.workspace, f.after);
                        f.ready.extend(
                            b.events
                                .iter()
                                .filter(|e| e.id > after && e.workspace_id == ws && f.filter.matches(e))
                                .cloned(),
                        );
                        f.after = f.after.max(b.to);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        f.gap = true;
                        f.gap_to = f.after;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = f.closed.changed() => return None,
            }
        }
    })
}
