//! The stored event log (issue 14, live updates): one row per change a listener may care
//! about, appended **in the same transaction** as the change that causes it (the ingest
//! transaction, a conversation patch, a delete, a message edit), so a committed change always
//! has its event and a rolled-back one never does.
//!
//! An event is `(id, workspace, type, conversation id, channel, assistant, created_at, data)`.
//! `id` is an integer that only grows, per database, in commit order (PostgreSQL: the appending
//! statement takes a transaction-scoped advisory lock first, see migration 0012), so "every event
//! after id N" is a complete answer at any moment and is the resume point of `Last-Event-ID`.
//! `data` is a small JSON object whose shape depends on the type (see [`EventType`]).
//!
//! Appending is internal to the backends' write transactions; readers go through
//! [`EventStore`]: [`EventStore::events_after`] (filtered in SQL, always scoped to one
//! workspace), [`EventStore::subscribe`] (a wake-up after a commit that appended events; on
//! PostgreSQL also after a `NOTIFY parley_events` from any server, and after the listening
//! connection reconnected), and [`EventStore::prune_before`] for retention.

use async_trait::async_trait;
use parley_core::{AssistantId, Channel, ConversationId, Timestamp, WorkspaceId};
use serde_json::{Value, json};

use crate::{IngestBatch, IngestOutcome, IngestTarget, MessageOutcome, Result};

/// The kinds of event, with the shape of their `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A conversation was created (by ingest). `data`: `{"status"}`.
    ConversationCreated,
    /// A conversation changed: messages were appended to an existing one (`{"fields":
    /// ["messages"]}`) or a patch changed fields (`{"fields": [...]}`, the patched field names
    /// other than `rating` and `variables`, which have events of their own; with `"status"`,
    /// the new status, when the patch set it).
    ConversationUpdated,
    /// A conversation was deleted, with its messages. `data`: `{}`.
    ConversationDeleted,
    /// A message was stored. `data`: `{"message_id", "role"}`.
    MessageCreated,
    /// A stored message changed: delivery status, edit or deletion mark, channel id.
    /// `data`: `{"message_id"}`.
    MessageUpdated,
    /// Variables were set (at creation or by a patch). `data`: `{"keys": [...]}`.
    VariablesUpdated,
    /// The rating was set or removed. `data`: `{"rating": 1..5 | null}`.
    RatingUpdated,
    /// The assistant asked for a human (its `hand_off` tool): the conversation "Needs a
    /// human". `data`: `{"reason"}`.
    HandoffRequested,
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [EventType; 8] = [
        EventType::ConversationCreated,
        EventType::ConversationUpdated,
        EventType::ConversationDeleted,
        EventType::MessageCreated,
        EventType::MessageUpdated,
        EventType::VariablesUpdated,
        EventType::RatingUpdated,
        EventType::HandoffRequested,
    ];

    /// The stored and wire name, e.g. `message.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ConversationCreated => "conversation.created",
            EventType::ConversationUpdated => "conversation.updated",
            EventType::ConversationDeleted => "conversation.deleted",
            EventType::MessageCreated => "message.created",
            EventType::MessageUpdated => "message.updated",
            EventType::VariablesUpdated => "variables.updated",
            EventType::RatingUpdated => "rating.updated",
            EventType::HandoffRequested => "handoff.requested",
        }
    }

    /// The type a name names, `None` for an unknown name.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its place in the log (grows in commit order; the SSE `id:`).
    pub id: i64,
    /// The workspace it belongs to.
    pub workspace_id: WorkspaceId,
    /// What happened.
    pub event_type: EventType,
    /// The conversation it is about.
    pub conversation_id: Option<ConversationId>,
    /// That conversation's channel.
    pub channel: Option<Channel>,
    /// That conversation's assistant.
    pub assistant_id: Option<AssistantId>,
    /// When it was appended (ms since the epoch, UTC).
    pub created_at: Timestamp,
    /// The type's small JSON object (see [`EventType`]).
    pub data: Value,
}

/// Which events a reader wants; every part given must match (empty lists match everything).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only events of this conversation.
    pub conversation: Option<ConversationId>,
    /// Only events of conversations on one of these channels.
    pub channels: Vec<Channel>,
    /// Only events of conversations handled by this assistant.
    pub assistant: Option<AssistantId>,
    /// Only events of these types.
    pub types: Vec<EventType>,
}

impl EventFilter {
    /// Whether `e` passes this filter, exactly as [`EventStore::events_after`] selects in SQL
    /// (the workspace is checked separately by the caller).
    pub fn matches(&self, e: &StoredEvent) -> bool {
        self.conversation
            .is_none_or(|c| e.conversation_id == Some(c))
            && self.assistant.is_none_or(|a| e.assistant_id == Some(a))
            && (self.channels.is_empty() || e.channel.is_some_and(|c| self.channels.contains(&c)))
            && (self.types.is_empty() || self.types.contains(&e.event_type))
    }
}

/// The event log part of the store, reached through [`crate::Store::events`].
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Up to `limit` events of `workspace` with an id above `after_id` that match `filter`,
    /// in id order.
    async fn events_after(
        &self,
        workspace: WorkspaceId,
        after_id: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;
    /// Up to `limit` events of **every** workspace with an id above `after_id`, in id order: the
    /// read of a server's one shared event reader, which fans them out to its listeners and
    /// applies each listener's workspace and [`EventFilter`] in memory ([`EventFilter::matches`]).
    async fn events_since(&self, after_id: i64, limit: u32) -> Result<Vec<StoredEvent>>;
    /// The highest id in the log (of any workspace; 0 when none was ever appended): where a
    /// listener without a resume point starts.
    async fn latest_event_id(&self) -> Result<i64>;
    /// The highest id pruned so far (0 when none): a resume point below it may have missed
    /// events that are gone.
    async fn pruned_through(&self) -> Result<i64>;
    /// Deletes the events appended before `before` (ms since the epoch), except those an
    /// enabled outgoing webhook endpoint of their workspace has not taken yet (the retention
    /// hold, see [`crate::webhooks`]); returns how many.
    async fn prune_before(&self, before: Timestamp) -> Result<u64>;
    /// A wake-up that changes after every commit of this store that appended events (and on
    /// PostgreSQL after a notification from any server sharing the database, or a reconnect of
    /// the listening connection, after which notifications may have been lost). It only says
    /// "read the log again"; its value means nothing.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// An event to append, before the backend adds the workspace, channel and assistant from the
/// conversation row (in the same statement, so no extra round trip).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingEvent {
    pub event_type: EventType,
    pub conversation: ConversationId,
    pub data: String,
}

impl PendingEvent {
    fn new(event_type: EventType, conversation: ConversationId, data: Value) -> Self {
        PendingEvent {
            event_type,
            conversation,
            data: data.to_string(),
        }
    }
}

/// The events of one ingest call, in order: per batch, `conversation.created` (with
/// `variables.updated` / `rating.updated` when the new conversation carries them) or
/// `conversation.updated` when an existing one got messages, then one `message.created` per
/// stored message (duplicates and skipped messages have none).
pub(crate) fn ingest_events(
    batches: &[IngestBatch],
    outcomes: &[IngestOutcome],
) -> Vec<PendingEvent> {
    let mut out = Vec::new();
    for (batch, outcome) in batches.iter().zip(outcomes) {
        let conv = outcome.conversation_id;
        let stored: Vec<(usize, parley_core::MessageId)> = outcome
            .messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m {
                MessageOutcome::Stored { id } => Some((i, *id)),
                _ => None,
            })
            .collect();
        if outcome.created {
            let status = match &batch.target {
                IngestTarget::New(nc) => nc.status.as_str(),
                IngestTarget::Existing(_) => "active",
            };
            out.push(PendingEvent::new(
                EventType::ConversationCreated,
                conv,
                json!({ "status": status }),
            ));
            if let IngestTarget::New(nc) = &batch.target {
                if !nc.variables.is_empty() {
                    let keys: Vec<&str> = nc.variables.iter().map(|v| v.key.as_str()).collect();
                    out.push(PendingEvent::new(
                        EventType::VariablesUpdated,
                        conv,
                        json!({ "keys": keys }),
                    ));
                }
                if let Some((r, _)) = &nc.rating {
                    out.push(PendingEvent::new(
                        EventType::RatingUpdated,
                        conv,
                        json!({ "rating": r.score }),
                    ));
                }
            }
        } else if !stored.is_empty() {
            out.push(PendingEvent::new(
                EventType::ConversationUpdated,
                conv,
                json!({ "fields": ["messages"] }),
            ));
        }
        // Transcript order: the backends store a batch's messages ordered by time (stable).
        let mut stored = stored;
        stored.sort_by_key(|&(i, _)| batch.messages.get(i).map(|m| m.created_at));
        for (i, id) in stored {
            let role = batch.messages.get(i).map(|m| m.role.as_str());
            out.push(PendingEvent::new(
                EventType::MessageCreated,
                conv,
                json!({ "message_id": id, "role": role }),
            ));
        }
    }
    out
}

/// The events of a conversation patch: `conversation.updated` for the fields other than
/// rating and variables, `rating.updated`, `variables.updated`. None for an empty patch.
pub(crate) fn patch_events(
    conversation: ConversationId,
    p: &parley_core::model::ConversationPatch,
) -> Vec<PendingEvent> {
    let mut fields = Vec::new();
    if p.status.is_some() {
        fields.push("status");
    }
    if p.ended_at.is_some() {
        fields.push("ended_at");
    }
    if p.end_reason.is_some() {
        fields.push("end_reason");
    }
    if p.sentiment.is_some() {
        fields.push("sentiment");
    }
    if p.converted.is_some() {
        fields.push("converted");
    }
    if p.contact.is_some() {
        fields.push("contact");
    }
    if p.memory.is_some() {
        fields.push("memory");
    }
    if p.taken_over.is_some() {
        fields.push("taken_over_at");
    }
    if p.handoff.is_some() {
        fields.push("handoff");
    }
    if p.assignee.is_some() {
        fields.push("assignee_id");
    }
    let mut out = Vec::new();
    if !fields.is_empty() {
        let mut data = json!({ "fields": fields });
        // The new status, so a reader can tell a conversation ending (outgoing webhooks'
        // `conversation.ended`) without reading the conversation.
        if let Some(s) = p.status {
            data["status"] = json!(s.as_str());
        }
        out.push(PendingEvent::new(
            EventType::ConversationUpdated,
            conversation,
            data,
        ));
    }
    if let Some(rating) = &p.rating {
        out.push(PendingEvent::new(
            EventType::RatingUpdated,
            conversation,
            json!({ "rating": rating.as_ref().map(|r| r.score) }),
        ));
    }
    if let Some(Some(h)) = &p.handoff {
        out.push(PendingEvent::new(
            EventType::HandoffRequested,
            conversation,
            json!({ "reason": h.reason }),
        ));
    }
    if let Some(vars) = &p.variables {
        let keys: Vec<&str> = vars.iter().map(|v| v.key.as_str()).collect();
        out.push(PendingEvent::new(
            EventType::VariablesUpdated,
            conversation,
            json!({ "keys": keys }),
        ));
    }
    out
}

/// The event of a deleted conversation (appended before its row goes).
pub(crate) fn deleted_event(conversation: ConversationId) -> PendingEvent {
    PendingEvent::new(EventType::ConversationDeleted, conversation, json!({}))
}

/// The `data` of `message.updated`.
pub(crate) fn message_updated_data(message: parley_core::MessageId) -> String {
    json!({ "message_id": message }).to_string()
}

/// Reads back a stored row's text columns; an unknown type or bad JSON is a backend error.
pub(crate) fn decode(event_type: &str, data: &str) -> Result<(EventType, Value)> {
    let t = EventType::parse(event_type)
        .ok_or_else(|| crate::StoreError::backend(format!("events.type holds {event_type:?}")))?;
    let v = serde_json::from_str(data).map_err(crate::StoreError::backend)?;
    Ok((t, v))
}

/// The wake-up a backend bumps after a commit that appended events.
#[derive(Debug)]
pub(crate) struct EventSignal(tokio::sync::watch::Sender<u64>);

impl Default for EventSignal {
    fn default() -> Self {
        EventSignal(tokio::sync::watch::channel(0).0)
    }
}

impl EventSignal {
    /// Wakes every subscriber.
    pub(crate) fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A new subscriber.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The columns a reader selects, in [`StoredEvent`] order.
pub(crate) const EVENT_COLS: &str =
    "id, workspace_id, type, conversation_id, channel, assistant_id, created_at, data";

/// The query of [`EventStore::events_after`] (one workspace) and [`EventStore::events_since`]
/// (`workspace` `None`: all of them), shared by both dialects.
pub(crate) fn events_after_sql(
    dialect: crate::sql::Dialect,
    workspace: Option<WorkspaceId>,
    after_id: i64,
    filter: &EventFilter,
    limit: u32,
) -> crate::sql::Sql {
    use crate::sql::{Param, Sql};
    let mut q = Sql::new(dialect, format!("SELECT {EVENT_COLS} FROM events WHERE "));
    let after = q.bind(Param::Int(after_id));
    q.push(&format!("id > {after}"));
    if let Some(w) = workspace {
        let ws = q.bind(Param::Uuid(w.0));
        q.push(&format!(" AND workspace_id = {ws}"));
    }
    if let Some(c) = filter.conversation {
        let p = q.bind(Param::Uuid(c.0));
        q.push(&format!(" AND conversation_id = {p}"));
    }
    if let Some(a) = filter.assistant {
        let p = q.bind(Param::Uuid(a.0));
        q.push(&format!(" AND assistant_id = {p}"));
    }
    q.in_list("channel", &filter.channels, |c| {
        Param::Text(c.as_str().to_owned())
    });
    q.in_list("type", &filter.types, |t| {
        Param::Text(t.as_str().to_owned())
    });
    let lim = q.bind(Param::Int(i64::from(limit.max(1))));
    q.push(&format!(" ORDER BY id LIMIT {lim}"));
    q
}
