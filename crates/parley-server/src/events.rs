//! Live updates (issue 14): the in-process hub and the event streams built on the store's
//! event log ([`parley_store::EventStore`]).
//!
//! Events are appended by the store in the transaction of the change that causes them. After
//! a commit the store wakes its subscribers; on PostgreSQL every server also LISTENs on
//! `parley_events` (and re-wakes after a reconnect, since notifications are lost while
//! disconnected). [`EventHub`] turns that wake-up into a `tokio::sync::broadcast` that every
//! open stream of this server holds. The hub only says "something new": a stream always reads
//! the log by id from where it stopped (`events_after`, filtered and scoped to its workspace in
//! SQL), so nothing is missed, nothing is seen twice, and no event of another workspace ever
//! reaches it. A stream that falls behind the broadcast simply reads again.
//!
//! Retention: a periodic task prunes events older than `[events] retention_ms` (default 1 h).
//! A resume point below the highest pruned id answers 410 `events_expired`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::Stream;
use parley_core::{Timestamp, WorkspaceId};
use parley_store::{EventFilter, Store, StoredEvent};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::AppState;
use crate::error::ApiError;

/// Events one read of the log returns at most.
const PAGE: u32 = 200;

/// The in-process fan-out: woken after every commit that appended events (and on PostgreSQL
/// by the `LISTEN` connection), closed at shutdown so open streams end.
#[derive(Debug)]
pub struct EventHub {
    wake: broadcast::Sender<()>,
    closed: watch::Sender<bool>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            wake: broadcast::channel(16).0,
            closed: watch::channel(false).0,
        }
    }
}

impl EventHub {
    /// Wakes every open stream (they read the log again).
    pub fn wake(&self) {
        let _ = self.wake.send(());
    }

    /// Ends every open stream (graceful shutdown: the server waits for open responses).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// How many streams of this server are open.
    pub fn listeners(&self) -> usize {
        self.wake.receiver_count()
    }
}

/// The hub's background tasks: forwarding the store's wake-ups, and pruning.
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

/// Starts forwarding the store's wake-ups to the hub and the periodic pruning (every
/// retention / 10, at most every minute).
pub fn start(state: &AppState) -> EventTasks {
    let mut changes = state.store.events().subscribe();
    let hub = state.events.clone();
    let forward = tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            hub.wake();
        }
    });
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
        tasks: vec![forward, prune],
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

/// The events of `workspace` matching `filter` after id `after`, as they are committed, until
/// the client goes away, the server shuts down, or the store fails (then the stream ends and
/// the client resumes with `Last-Event-ID`).
pub fn stream(
    state: &AppState,
    workspace: WorkspaceId,
    filter: EventFilter,
    after: i64,
) -> impl Stream<Item = Event> + Send + 'static {
    struct Follow {
        store: Arc<dyn Store>,
        wake: broadcast::Receiver<()>,
        closed: watch::Receiver<bool>,
        workspace: WorkspaceId,
        filter: EventFilter,
        after: i64,
        ready: VecDeque<StoredEvent>,
    }
    // Subscribed before the first read: a commit between the read and the wait still wakes it.
    let follow = Follow {
        store: state.store.clone(),
        wake: state.events.wake.subscribe(),
        closed: state.events.closed.subscribe(),
        workspace,
        filter,
        after,
        ready: VecDeque::new(),
    };
    futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if *f.closed.borrow() {
                return None;
            }
            if let Some(e) = f.ready.pop_front() {
                return Some((sse_event(&e), f));
            }
            match f
                .store
                .events()
                .events_after(f.workspace, f.after, &f.filter, PAGE)
                .await
            {
                Ok(page) if !page.is_empty() => {
                    f.after = page.last().map_or(f.after, |e| e.id);
                    f.ready.extend(page);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "events: reading the log failed; ending the stream");
                    return None;
                }
            }
            tokio::select! {
                r = f.wake.recv() => match r {
                    Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = f.closed.changed() => return None,
            }
        }
    })
}
