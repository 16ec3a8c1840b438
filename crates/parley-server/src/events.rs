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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use parley_core::{AssistantId, ConversationId, Timestamp, WorkspaceId};
use parley_store::{EventFilter, Store, StoredEvent};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::AppState;
use crate::error::ApiError;

/// Events one read of the log returns at most (the shared reader's and a stream's own).
pub const PAGE: u32 = 200;

/// Batches the broadcast holds for streams that are behind; one further behind reads the log
/// itself. At the light load's pace (a read per commit, every 10-20 ms) that is seconds of
/// slack, at a heavy one's (reads up to [`PAGE`] events, a few a second) much more. Batches are
/// shared, so the backlog costs memory once (at most this many pages), not per stream.
const BACKLOG: usize = 128;

/// One read of the shared reader: every event (of every workspace) with an id in `(from, to]`,
/// in id order, and their SSE frames, encoded at most once for all the server's streams.
#[derive(Debug)]
pub struct Batch {
    /// The reader's position before this read.
    pub from: i64,
    /// The id of the last event read (the reader's position after it).
    pub to: i64,
    /// The events.
    pub events: Vec<StoredEvent>,
    /// Their frames, encoded by the first stream that writes any of them.
    frames: OnceLock<Frames>,
}

impl Batch {
    /// A batch of `events` covering `(from, to]`.
    pub fn new(from: i64, to: i64, events: Vec<StoredEvent>) -> Batch {
        Batch {
            from,
            to,
            events,
            frames: OnceLock::new(),
        }
    }

    fn frames(&self) -> &Frames {
        self.frames.get_or_init(|| Frames::encode(&self.events))
    }
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
    let reader = tokio::spawn(read_log(
        state.store.clone(),
        state.events.clone(),
        changes,
        Pace {
            every: state.settings.events.read_every,
            max: state.settings.events.read_every_max,
        },
    ));
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
///
/// Pacing (`[events] read_every_ms`, `read_every_max_ms`): after a read that found `n` events
/// the next read waits until `every × n` after it (at least `every`, at most `max`); a
/// wake-up sooner than that waits for the rest, and the commits meanwhile come as one batch.
/// Each batch wakes every stream and costs every listener a socket write, so the fan-out is
/// paid per batch, not per event: a quiet log (a commit now and then) is read at once and
/// every few ms, while a busy one (many events per read) is read at most `1 / max` times a
/// second in batches of up to [`PAGE`]: fewer wake-ups and writes under a heavy ingest, at the
/// price of up to `max` more delay for its events. A full page is followed by the next at
/// once. Measured (BENCHMARKS.md, "Live updates"): with 1,000 listeners, reading at every
/// commit halved ingest against a 25 ms pace, and a longer pace gained nothing more (the
/// bytes, the same for every listener, then dominate).
async fn read_log(
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    mut changes: watch::Receiver<u64>,
    pace: Pace,
) {
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
    let mut last_read;
    let mut found;
    loop {
        last_read = tokio::time::Instant::now();
        match store.events().events_since(position, PAGE).await {
            Ok(page) if !page.is_empty() => {
                backoff = Duration::from_millis(100);
                found = page.len();
                let full = page.len() >= PAGE as usize;
                let to = page.last().map_or(position, |e| e.id);
                hub.publish(Batch::new(position, to, page));
                position = to;
                if full {
                    continue;
                }
            }
            Ok(_) => {
                backoff = Duration::from_millis(100);
                found = 0;
            }
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
        tokio::time::sleep_until(last_read + pace.wait(found)).await;
    }
}

/// The shared reader's pacing (see [`read_log`]).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The wait per event the last read found (and the least wait).
    pub every: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Pace {
    /// How long after a read that found `found` events the next one may start: `every ×
    /// found`, at least `every`, at most `max` (never below `every`).
    pub fn wait(&self, found: usize) -> Duration {
        let n = u32::try_from(found.max(1)).unwrap_or(u32::MAX);
        self.every.saturating_mul(n).min(self.max).max(self.every)
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

/// [`event_json`]'s shape, borrowed: serialised straight into a frame without building (and
/// cloning `data` into) a [`Value`] first. Same fields in the same order.
#[derive(Serialize)]
struct EventJson<'a> {
    id: i64,
    #[serde(rename = "type")]
    event_type: &'a str,
    workspace: WorkspaceId,
    conversation_id: Option<ConversationId>,
    channel: Option<&'a str>,
    assistant_id: Option<AssistantId>,
    created_at: Timestamp,
    data: &'a Value,
}

/// Appends the SSE frame of `e` to `buf`: `event:` its type, `data:` [`event_json`] as compact
/// JSON (one line: compact JSON escapes every line break), `id:` its id, then the blank line
/// that ends an event. Byte for byte what `axum`'s `Event::default().event(..).data(..).id(..)`
/// wrote for these streams before frames were shared.
fn write_frame(buf: &mut BytesMut, e: &StoredEvent) {
    let start = buf.len();
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(e.event_type.as_str().as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    let json = EventJson {
        id: e.id,
        event_type: e.event_type.as_str(),
        workspace: e.workspace_id,
        conversation_id: e.conversation_id,
        channel: e.channel.map(|c| c.as_str()),
        assistant_id: e.assistant_id,
        created_at: e.created_at,
        data: &e.data,
    };
    if let Err(err) = serde_json::to_writer((&mut *buf).writer(), &json) {
        // Only maps with non-string keys fail, and a `Value` has none; never half a frame.
        tracing::error!(error = %err, id = e.id, "events: an event did not serialise; skipped");
        buf.truncate(start);
        return;
    }
    buf.extend_from_slice(b"\nid: ");
    buf.extend_from_slice(e.id.to_string().as_bytes());
    buf.extend_from_slice(b"\n\n");
}

/// The SSE frame of one event (see [`write_frame`]), for an event a stream read itself.
pub fn frame(e: &StoredEvent) -> Bytes {
    let mut buf = BytesMut::with_capacity(512);
    write_frame(&mut buf, e);
    buf.freeze()
}

/// A batch's events as SSE frames, encoded once (by the first stream that needs them) and
/// shared by every stream of the server.
#[derive(Debug)]
struct Frames {
    /// Per workspace, the frames of its events in the batch, in id order, one after another:
    /// what an unfiltered stream of that workspace writes for the whole batch.
    blocks: HashMap<WorkspaceId, Bytes>,
    /// Per event (by its index in [`Batch::events`]), its frame: a slice of its workspace's
    /// block (no copy).
    each: Vec<Bytes>,
}

impl Frames {
    fn encode(events: &[StoredEvent]) -> Frames {
        let mut bufs: HashMap<WorkspaceId, BytesMut> = HashMap::new();
        let mut spans = Vec::with_capacity(events.len());
        for e in events {
            let buf = bufs.entry(e.workspace_id).or_default();
            let start = buf.len();
            write_frame(buf, e);
            spans.push((e.workspace_id, start, buf.len()));
        }
        let blocks: HashMap<WorkspaceId, Bytes> =
            bufs.into_iter().map(|(w, b)| (w, b.freeze())).collect();
        let each = spans
            .into_iter()
            .map(|(w, from, to)| {
                blocks
                    .get(&w)
                    .map_or_else(Bytes::new, |b| b.slice(from..to))
            })
            .collect();
        Frames { blocks, each }
    }
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
/// SSE frames ([`frame`]), for a `text/event-stream` body ([`crate::sse::respond_frames`]); see
/// [`follow`] for what it delivers and when it ends. The frames of the shared reader's batches
/// are encoded once for every stream of the server and shared (reference-counted bytes); an
/// unfiltered stream writes a whole batch's events of its workspace as one chunk. Only events a
/// stream reads from the log itself (its start, or catching up) are encoded for it alone.
pub fn stream(
    state: &AppState,
    workspace: WorkspaceId,
    filter: EventFilter,
    after: i64,
) -> impl Stream<Item = Bytes> + Send + 'static {
    pieces(state, workspace, filter, after).filter_map(move |p| {
        let bytes = match p {
            Piece::Read(e) => frame(&e),
            Piece::Shared(batch, Pick::All) => batch
                .frames()
                .blocks
                .get(&workspace)
                .cloned()
                .unwrap_or_default(),
            Piece::Shared(batch, Pick::Some(picked)) => {
                let each = &batch.frames().each;
                match picked.as_slice() {
                    [one] => each[*one as usize].clone(),
                    _ => {
                        let mut buf = BytesMut::new();
                        for &i in &picked {
                            buf.extend_from_slice(&each[i as usize]);
                        }
                        buf.freeze()
                    }
                }
            }
        };
        std::future::ready((!bytes.is_empty()).then_some(bytes))
    })
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
    pieces(state, workspace, filter, after).flat_map(move |p| {
        let events: Vec<StoredEvent> = match p {
            Piece::Read(e) => vec![e],
            Piece::Shared(batch, Pick::All) => batch
                .events
                .iter()
                .filter(|e| e.workspace_id == workspace)
                .cloned()
                .collect(),
            Piece::Shared(batch, Pick::Some(picked)) => picked
                .iter()
                .map(|&i| batch.events[i as usize].clone())
                .collect(),
        };
        futures_util::stream::iter(events)
    })
}

/// What a stream has in hand to deliver.
enum Piece {
    /// An event it read from the log itself.
    Read(StoredEvent),
    /// Events of a shared batch.
    Shared(Arc<Batch>, Pick),
}

/// Which events of a shared batch a stream delivers.
enum Pick {
    /// Every event of its workspace (an unfiltered stream that has none of the batch yet).
    All,
    /// These (indexes into [`Batch::events`], in order; never empty).
    Some(Vec<u32>),
}

/// The state machine behind [`stream`] and [`follow`]: what a stream of `workspace` and
/// `filter` after id `after` has to deliver, in id order, batch by batch.
fn pieces(
    state: &AppState,
    workspace: WorkspaceId,
    filter: EventFilter,
    after: i64,
) -> impl Stream<Item = Piece> + Send + 'static {
    struct Follow {
        store: Arc<dyn Store>,
        batches: broadcast::Receiver<Arc<Batch>>,
        closed: watch::Receiver<bool>,
        workspace: WorkspaceId,
        filter: EventFilter,
        /// The filter lets everything through.
        unfiltered: bool,
        /// Every matching event up to this id has been queued.
        after: i64,
        /// Read the log from `after` before following the batches again.
        gap: bool,
        /// Once the gap is read to its end, everything up to this id is in hand too.
        gap_to: i64,
        ready: VecDeque<Piece>,
    }
    // Subscribed before the reader's position is read and before the first read of the log,
    // so a batch published meanwhile is received, and one published before is covered by the
    // read (which comes after it). A stream that starts at or past the reader's position has
    // nothing to read: every event after it comes in a batch received from now on (one that
    // starts past it is a gap, below).
    let batches = state.events.batches.subscribe();
    let gap_to = state.events.position.load(Ordering::SeqCst);
    let follow = Follow {
        store: state.store.clone(),
        batches,
        closed: state.events.closed.subscribe(),
        workspace,
        unfiltered: filter == EventFilter::default(),
        filter,
        after,
        gap: after < gap_to,
        gap_to,
        ready: VecDeque::new(),
    };
    futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if *f.closed.borrow() {
                return None;
            }
            if let Some(p) = f.ready.pop_front() {
                return Some((p, f));
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
                        f.ready.extend(page.into_iter().map(Piece::Read));
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
                        f.after = f.after.max(b.to);
                        if f.unfiltered && after == b.from {
                            if b.events.iter().any(|e| e.workspace_id == ws) {
                                f.ready.push_back(Piece::Shared(b, Pick::All));
                            }
                        } else {
                            let picked: Vec<u32> = b
                                .events
                                .iter()
                                .enumerate()
                                .filter(|(_, e)| {
                                    e.id > after && e.workspace_id == ws && f.filter.matches(e)
                                })
                                .map(|(i, _)| i as u32)
                                .collect();
                            if !picked.is_empty() {
                                f.ready.push_back(Piece::Shared(b, Pick::Some(picked)));
                            }
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use parley_core::Channel;
    use parley_store::EventType;

    fn event(id: i64, workspace: WorkspaceId, data: Value) -> StoredEvent {
        StoredEvent {
            id,
            workspace_id: workspace,
            event_type: EventType::MessageCreated,
            conversation_id: Some(ConversationId::new()),
            channel: Some(Channel::Widget),
            assistant_id: None,
            created_at: Timestamp(1_764_806_400_123),
            data,
        }
    }

    /// The frame is what the streams sent before frames were shared: `event:`, `data:` (the
    /// event's JSON, compact, on one line even when a string holds line breaks), `id:`.
    #[test]
    fn a_frame_is_the_event_json_on_one_data_line() {
        let e = event(
            42,
            WorkspaceId::new(),
            json!({"message_id": "m1", "role": "user", "note": "two\nlines\r\nand \"quotes\""}),
        );
        let got = String::from_utf8(frame(&e).to_vec()).unwrap();
        let want = format!(
            "event: message.created\ndata: {}\nid: 42\n\n",
            event_json(&e)
        );
        assert_eq!(got, want);
        assert_eq!(
            got.matches('\n').count(),
            4,
            "one line per field and the blank line"
        );
    }

    /// Each workspace's block is its events' frames in id order and nothing of another
    /// workspace; each event's own frame is its slice of that block.
    /// A quiet log is read every `every`; the more a read found, the longer the next waits,
    /// up to `max`.
    #[test]
    fn the_reader_waits_longer_the_more_it_found() {
        let ms = Duration::from_millis;
        let pace = Pace {
            every: ms(10),
            max: ms(250),
        };
        assert_eq!(pace.wait(0), ms(10));
        assert_eq!(pace.wait(1), ms(10));
        assert_eq!(pace.wait(2), ms(20));
        assert_eq!(pace.wait(25), ms(250));
        assert_eq!(pace.wait(200), ms(250));
        let off = Pace {
            every: Duration::ZERO,
            max: ms(250),
        };
        assert_eq!(off.wait(200), Duration::ZERO);
        let flat = Pace {
            every: ms(30),
            max: ms(10),
        };
        assert_eq!(flat.wait(5), ms(30), "never below every");
    }

    #[test]
    fn a_batch_is_encoded_once_per_workspace() {
        let (a, b) = (WorkspaceId::new(), WorkspaceId::new());
        let events = vec![
            event(1, a, json!({"n": 1})),
            event(2, b, json!({"n": 2})),
            event(3, a, json!({"n": 3})),
        ];
        let batch = Batch::new(0, 3, events.clone());
        let f = batch.frames();
        assert!(std::ptr::eq(f, batch.frames()), "encoded once");
        let block_a = [frame(&events[0]), frame(&events[2])].concat();
        assert_eq!(f.blocks[&a].as_ref(), block_a.as_slice());
        assert_eq!(f.blocks[&b].as_ref(), frame(&events[1]).as_ref());
        assert_eq!(f.blocks.len(), 2);
        for (e, each) in events.iter().zip(&f.each) {
            assert_eq!(each.as_ref(), frame(e).as_ref());
        }
    }
}
