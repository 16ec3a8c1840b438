//! Outgoing webhooks (issue 16): a workspace's endpoints and the deliveries made to them.
//!
//! **The outbox is the event log.** Every change already appends its events
//! ([`crate::events`]) in its own transaction. Each endpoint keeps a `cursor`, the highest event
//! id it has *taken*; [`WebhookStore::take`] writes the deliveries of the events after it and
//! moves the cursor in one transaction, only if the cursor is still where the caller read it
//! (so two servers taking at once never both write the same events; `UNIQUE (endpoint_id,
//! event_id, event_type)` backs that up). The event log's pruning keeps every event an enabled endpoint of
//! its workspace has not taken yet (the retention hold), so a server that was down for longer
//! than `[events] retention_ms` still delivers what happened meanwhile.
//!
//! **Deliveries** are rows with their JSON body fixed when the event was taken, a status
//! (`pending`, `succeeded`, `failed`), the attempts so far, the next attempt's time, the
//! deadline after which no attempt starts (`retry_until`), and the last attempt's HTTP status,
//! time in ms and the first KiB of its answer. [`WebhookStore::claim_deliveries`] hands due ones
//! to one server with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several servers never
//! send the same delivery at once; a server that dies loses its lease); the attempt is counted
//! when claimed, so a crash mid-send is counted too. [`WebhookStore::record_attempt`] writes the
//! outcome only while the lease is still the caller's.
//!
//! Every method taking a workspace is scoped to it: an endpoint or delivery of another
//! workspace behaves as if it did not exist.

use async_trait::async_trait;
use parley_core::{Timestamp, WorkspaceId};
use uuid::Uuid;

use crate::Result;
use crate::events::EventType;

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being sent).
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Every attempt until `retry_until` failed; kept for the log and "send again".
    Failed,
}

impl DeliveryStatus {
    /// `pending`, `succeeded` or `failed`, as stored and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The status a stored text names.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// An endpoint of a workspace: where its events are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    /// Its id (UUIDv7).
    pub id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: WorkspaceId,
    /// Where deliveries are POSTed (http or https; checked by the server's guarded client).
    pub url: String,
    /// Free text shown in the dashboard (may be empty).
    pub description: String,
    /// The event types it receives, names from [`WEBHOOK_EVENT_TYPES`] (never empty).
    pub event_types: Vec<String>,
    /// Whether events are taken and sent. A disabled endpoint takes nothing; enabling it again
    /// starts from the events appended after that moment.
    pub enabled: bool,
    /// The `whsec_…` signing secret, sealed by the server (the store never sees it in clear).
    pub secret_sealed: String,
    /// The highest event id taken.
    pub cursor: i64,
    /// When it was created (ms since the epoch, UTC).
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookEndpointPatch {
    /// A new URL.
    pub url: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// New event types (not empty; names from [`WEBHOOK_EVENT_TYPES`]).
    pub event_types: Option<Vec<String>>,
    /// Enable or disable. Enabling a disabled endpoint moves its cursor to the log's latest
    /// event (given in `cursor` by the caller).
    pub enabled: Option<bool>,
    /// A rotated secret, sealed.
    pub secret_sealed: Option<String>,
    /// A new cursor (with `enabled: Some(true)` on a disabled endpoint).
    pub cursor: Option<i64>,
}

/// A delivery to write when taking an event.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhookDelivery {
    /// Its id (UUIDv7; the `webhook-id` header is derived from it).
    pub id: Uuid,
    /// The event it carries.
    pub event_id: i64,
    /// That event's type name (`message.created`, or `conversation.ended`).
    pub event_type: String,
    /// The JSON body to POST, fixed now.
    pub body: String,
}

/// One delivery, as the log and the sender see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    /// Its id.
    pub id: Uuid,
    /// The endpoint it goes to.
    pub endpoint_id: Uuid,
    /// The endpoint's workspace.
    pub workspace_id: WorkspaceId,
    /// The event it carries.
    pub event_id: i64,
    /// The event's type name.
    pub event_type: String,
    /// The JSON body.
    pub body: String,
    /// Where it is in its life.
    pub status: DeliveryStatus,
    /// Attempts started so far (a claim counts one).
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// No attempt starts after this time; then it is `failed`.
    pub retry_until: Timestamp,
    /// When the last attempt ended.
    pub last_attempt_at: Option<Timestamp>,
    /// The last attempt's HTTP status (none when no answer came).
    pub http_status: Option<u16>,
    /// How long the last attempt took, in ms.
    pub response_ms: Option<i64>,
    /// The first KiB of the last answer's body (UTF-8, cut at a character boundary).
    pub response_excerpt: Option<String>,
    /// Why the last attempt failed, when it did (a status, a timeout, a refused destination).
    pub error: Option<String>,
    /// When the event was taken.
    pub created_at: Timestamp,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    /// The status after it: `succeeded`, `pending` (another attempt at `next_attempt_at`) or
    /// `failed`.
    pub status: DeliveryStatus,
    /// The next attempt's time, when `pending`.
    pub next_attempt_at: Option<Timestamp>,
    /// When it ended.
    pub attempted_at: Timestamp,
    /// The HTTP status, if an answer came.
    pub http_status: Option<u16>,
    /// Its duration in ms.
    pub response_ms: i64,
    /// The first KiB of the answer.
    pub response_excerpt: Option<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Endpoints and deliveries, reached through [`crate::Store::webhooks`].
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint (its `cursor` is where it starts: the log's latest event).
    async fn create_webhook(&self, endpoint: &WebhookEndpoint) -> Result<()>;
    /// The workspace's endpoints, oldest first.
    async fn list_webhooks(&self, workspace: WorkspaceId) -> Result<Vec<WebhookEndpoint>>;
    /// One endpoint of the workspace.
    async fn get_webhook(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
    ) -> Result<Option<WebhookEndpoint>>;
    /// Applies `patch`; the endpoint after it, or `None` when there is no such endpoint. A
    /// patch's `cursor` is applied only when it enables an endpoint that was disabled.
    async fn update_webhook(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        patch: &WebhookEndpointPatch,
        now: Timestamp,
    ) -> Result<Option<WebhookEndpoint>>;
    /// Deletes an endpoint and its deliveries; false when there was none.
    async fn delete_webhook(&self, workspace: WorkspaceId, id: Uuid) -> Result<bool>;
    /// Every enabled endpoint of every workspace (the sender's list of what to take for).
    async fn enabled_webhooks(&self) -> Result<Vec<WebhookEndpoint>>;
    /// Writes `deliveries` (pending, due `now`, no attempt after `retry_until`) and moves the
    /// endpoint's cursor from `from` to `to`, in one transaction, only if its cursor is still
    /// `from` and it is enabled. False (nothing written) otherwise.
    async fn take(
        &self,
        endpoint: Uuid,
        from: i64,
        to: i64,
        deliveries: &[NewWebhookDelivery],
        now: Timestamp,
        retry_until: Timestamp,
    ) -> Result<bool>;
    /// Claims up to `limit` due pending deliveries of enabled endpoints for `worker`: their
    /// `next_attempt_at` is at or before `now` and no other lease runs. Each gets `attempts + 1`
    /// and the lease until `lease_until`. Each delivery goes to one claimer.
    async fn claim_deliveries(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>>;
    /// Records an attempt's outcome and ends the lease. False when the lease is no longer
    /// `worker`'s.
    async fn record_attempt(
        &self,
        delivery: Uuid,
        worker: &str,
        attempt: &DeliveryAttempt,
    ) -> Result<bool>;
    /// The endpoint's deliveries, newest first, older than `before` (a delivery id) when
    /// given; at most `limit`.
    async fn list_deliveries(
        &self,
        workspace: WorkspaceId,
        endpoint: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>>;
    /// "Send again": the delivery is pending again, due `now`, with attempts allowed until
    /// `retry_until`. `None` when there is no such delivery of that endpoint. Errors:
    /// `Conflict("delivery_in_flight")` while a server is sending it.
    async fn resend_delivery(
        &self,
        workspace: WorkspaceId,
        endpoint: Uuid,
        delivery: Uuid,
        now: Timestamp,
        retry_until: Timestamp,
    ) -> Result<Option<WebhookDelivery>>;
}

/// The event type an endpoint may subscribe to that is not in the log itself: derived from a
/// `conversation.updated` whose patch set the status to `closed` (its `data.status`).
pub const CONVERSATION_ENDED: &str = "conversation.ended";

/// Every event type an endpoint may subscribe to: the event log's ([`EventType::ALL`]) and
/// [`CONVERSATION_ENDED`].
pub const WEBHOOK_EVENT_TYPES: [&str; 9] = [
    "conversation.created",
    "conversation.updated",
    CONVERSATION_ENDED,
    "conversation.deleted",
    "message.created",
    "message.updated",
    "variables.updated",
    "rating.updated",
    "handoff.requested",
];

/// The log's event types to read for an endpoint subscribed to `types`
/// ([`CONVERSATION_ENDED`] is read from `conversation.updated`).
pub fn log_types(types: &[String]) -> Vec<EventType> {
    let mut out: Vec<EventType> = Vec::new();
    for t in types {
        let log = if t == CONVERSATION_ENDED {
            Some(EventType::ConversationUpdated)
        } else {
            EventType::parse(t)
        };
        if let Some(l) = log
            && !out.contains(&l)
        {
            out.push(l);
        }
    }
    out
}

/// The stored form of an endpoint's event types: a JSON array of names.
pub(crate) fn types_json(types: &[String]) -> String {
    serde_json::to_string(types).unwrap_or_else(|_| "[]".into())
}

/// Reads back [`types_json`].
pub(crate) fn parse_types(text: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(text).unwrap_or_default()
}

/// The columns of [`WebhookEndpoint`], in field order.
pub(crate) const ENDPOINT_COLS: &str = "id, workspace_id, url, description, event_types, enabled, secret, cursor, created_at, updated_at";

/// The columns of [`WebhookDelivery`], in field order.
pub(crate) const DELIVERY_COLS: &str = "id, endpoint_id, workspace_id, event_id, event_type, body, status, attempts, next_attempt_at, retry_until, last_attempt_at, http_status, response_ms, response_excerpt, error, created_at";

/// The status text of a stored row; an unknown one is a backend error.
pub(crate) fn status_of(s: &str) -> Result<DeliveryStatus> {
    DeliveryStatus::parse(s)
        .ok_or_else(|| crate::StoreError::backend(format!("webhook_deliveries.status holds {s:?}")))
}

/// The error of a "send again" while a server holds the delivery.
pub(crate) fn in_flight() -> crate::StoreError {
    crate::StoreError::Conflict {
        code: "delivery_in_flight",
        message: "the delivery is being sent right now; try again in a moment".into(),
    }
}
