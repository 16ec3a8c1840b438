//! Outgoing webhooks (issue 16), signed per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>, "Signature scheme"):
//!
//! - each request is a `POST` of `application/json` `{"type", "timestamp", "data"}`: the event
//!   type (`message.created`…), the event's time (RFC 3339) and the event's fields with the
//!   conversation's id, channel and assistant (see [`body`]);
//! - headers `webhook-id` (`msg_` and the delivery id: the same on every attempt, so a receiver
//!   can drop duplicates), `webhook-timestamp` (the attempt's Unix time in seconds) and
//!   `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed
//!   with the base64-decoded part of the endpoint's secret after `whsec_` (see [`sign`]).
//!
//! **Where deliveries come from.** The event log is the outbox (every change writes its events
//! in its own transaction). The sender ([`start`]) takes each enabled endpoint's new events
//! into delivery rows and moves the endpoint's cursor, in one transaction
//! ([`parley_store::WebhookStore::take`]); then it claims due deliveries with a lease and sends
//! them through the guarded client ([`crate::net`]: an endpoint may not reach private networks
//! unless the operator allows it). A 2xx answer is success; anything else (another status, a
//! timeout, a refused destination) is retried with exponential backoff and jitter
//! ([`crate::retry::Policy`], `[webhooks]` settings) until `retry_window` (24 h) after the event,
//! then `failed`. A `410 Gone` answer fails the delivery at once and disables the endpoint
//! (written in the audit log as `webhook.disabled`); an admin enables it again from Settings.
//! "Send again" makes a delivery pending again with a fresh window.
//!
//! **Crashes.** An event committed before a crash is taken after the restart (the log's
//! retention keeps events an enabled endpoint has not taken). A crash during a send leaves the
//! delivery leased; the lease runs out and it is sent again (at least once; the same
//! `webhook-id`).
//!
//! **Test hook.** With `webhooks` in `PARLEY_TEST_HOLD_JOBS` ([`crate::jobs::HOLD_ENV`]) the
//! sender never starts, so a test can kill the server with events not yet taken.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use parley_core::{Timestamp, WorkspaceId};
use parley_store::webhooks::{
    CONVERSATION_ENDED, DeliveryAttempt, DeliveryStatus, NewWebhookDelivery, WEBHOOK_EVENT_TYPES,
    WebhookDelivery, WebhookEndpoint, WebhookEndpointPatch, log_types,
};
use parley_store::{EventFilter, EventType, StoredEvent};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::retry::Policy;

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// Most endpoints one workspace may have.
pub const MAX_ENDPOINTS: usize = 20;
/// Longest endpoint URL, in bytes.
pub const MAX_URL_LEN: usize = 2_000;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 500;
/// Most bytes of an answer's body kept in the delivery log.
pub const EXCERPT_BYTES: usize = 1_024;
/// Events taken for one endpoint at a time.
const TAKE_PAGE: u32 = 200;
/// Deliveries one server sends at once.
const SENDERS: usize = 8;
/// The longest the sender sleeps before looking for new events and due retries.
const POLL: Duration = Duration::from_millis(500);

/// The sender's wake-up, shared through [`AppState`]: rung after "send again" (new events wake
/// it through the event log's own signal).
#[derive(Debug, Default)]
pub struct WebhookSignal(Notify);

impl WebhookSignal {
    /// Wakes this server's sender.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
/// Errors: the system's random source failed.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("whsec_{}", B64.encode(bytes)))
}

/// The `webhook-signature` value for one attempt: `v1,` and the base64 HMAC-SHA256 of
/// `{msg_id}.{timestamp}.{body}`, keyed with the base64-decoded text after `whsec_` (Parley's
/// secrets always decode; any other text is used as its raw bytes).
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> String {
    let text = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = B64
        .decode(text)
        .unwrap_or_else(|_| text.as_bytes().to_vec());
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-id` of a delivery: `msg_` and its id's 32 hex digits.
pub fn message_id(delivery: Uuid) -> String {
    format!("msg_{}", delivery.simple())
}

/// The JSON body of `event` sent as type `as_type`: `{"type", "timestamp" (the event's time,
/// RFC 3339), "data": {"event_id", "conversation_id", "channel", "assistant_id", and the
/// event's own fields (README "Live events")}}`.
pub fn body(event: &StoredEvent, as_type: &str) -> String {
    let mut data = Map::new();
    data.insert("event_id".into(), json!(event.id));
    data.insert("conversation_id".into(), json!(event.conversation_id));
    data.insert("channel".into(), json!(event.channel.map(|c| c.as_str())));
    data.insert("assistant_id".into(), json!(event.assistant_id));
    if let Value::Object(own) = &event.data {
        for (k, v) in own {
            data.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    json!({
        "type": as_type,
        "timestamp": event.created_at.to_rfc3339(),
        "data": data,
    })
    .to_string()
}

/// The deliveries of `events` for an endpoint subscribed to `types`: one per event of a
/// subscribed type, and a `conversation.ended` for a `conversation.updated` that set the status
/// to `closed` when that is subscribed.
pub fn deliveries_for(types: &[String], events: &[StoredEvent]) -> Vec<NewWebhookDelivery> {
    let wants = |t: &str| types.iter().any(|s| s == t);
    let mut out = Vec::new();
    for e in events {
        let name = e.event_type.as_str();
        let mut push = |t: &str| {
            out.push(NewWebhookDelivery {
                id: Uuid::now_v7(),
                event_id: e.id,
                event_type: t.to_owned(),
                body: body(e, t),
            })
        };
        if wants(name) {
            push(name);
        }
        if e.event_type == EventType::ConversationUpdated
            && e.data["status"] == "closed"
            && wants(CONVERSATION_ENDED)
        {
            push(CONVERSATION_ENDED);
        }
    }
    out
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("{field}: {}", message.into()),
    )
    .with_field(field)
}

/// Checks an endpoint URL: http(s), at most [`MAX_URL_LEN`] bytes, no spaces or control
/// characters, no user name, password or fragment, and (for an IP literal) an address the
/// guarded client may reach. Returns it as given. Errors: 422 `validation_failed`, or 422 `destination_not_allowed` (both with
/// `field`).
pub fn check_url(state: &AppState, url: &str, field: &str) -> Result<String, ApiError> {
    if url.trim().is_empty() {
        return Err(invalid(field, "is required"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            field,
            "may not contain spaces or control characters",
        ));
    }
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .unwrap_or("");
    if authority.contains(['@', '\\']) {
        return Err(invalid(field, "may not carry a user name or password"));
    }
    if url.len() > MAX_URL_LEN {
        return Err(invalid(
            field,
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let parsed = url::Url::parse(url).map_err(|_| invalid(field, "is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(field, "must be an http:// or https:// URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(field, "may not carry a user name or password"));
    }
    if parsed.fragment().is_some() || url.contains('#') {
        return Err(invalid(field, "may not have a #fragment"));
    }
    if let Err(e) = state.net.client_for(url) {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "destination_not_allowed",
            format!(
                "{field}: this server may not send requests there ({})",
                e.reason
            ),
        )
        .with_field(field));
    }
    Ok(url.to_owned())
}

/// Checks a list of event type names: not empty, each one of [`WEBHOOK_EVENT_TYPES`]; returns
/// them without repeats, in the documented order. Errors: 422 naming `field`.
pub fn check_types(types: &[String], field: &str) -> Result<Vec<String>, ApiError> {
    if types.is_empty() {
        return Err(invalid(field, "choose at least one event type"));
    }
    for t in types {
        if !WEBHOOK_EVENT_TYPES.contains(&t.as_str()) {
            return Err(invalid(
                field,
                format!(
                    "{t:?} is not an event type (one of {})",
                    WEBHOOK_EVENT_TYPES.join(", ")
                ),
            ));
        }
    }
    Ok(WEBHOOK_EVENT_TYPES
        .iter()
        .filter(|k| types.iter().any(|t| t == *k))
        .map(|k| (*k).to_owned())
        .collect())
}

/// Checks a description: at most [`MAX_DESCRIPTION`] characters, no NUL. Returns it trimmed.
pub fn check_description(d: &str, field: &str) -> Result<String, ApiError> {
    let d = d.trim();
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(
            field,
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if d.contains('\0') {
        return Err(invalid(field, "may not contain a NUL character"));
    }
    Ok(d.to_owned())
}

/// Creates an endpoint of `workspace` from checked values; returns it with its secret in clear
/// (shown once now, and again on "reveal"). It receives the events appended from now on.
/// Errors: 409 `too_many_webhooks` past [`MAX_ENDPOINTS`]; store errors.
pub async fn create(
    state: &AppState,
    workspace: WorkspaceId,
    url: String,
    description: String,
    event_types: Vec<String>,
    enabled: bool,
) -> Result<(WebhookEndpoint, String), ApiError> {
    let store = state.store.webhooks();
    if store.list_webhooks(workspace).await?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "too_many_webhooks",
            format!("a workspace may have at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let secret = new_secret().map_err(ApiError::internal)?;
    let now = Timestamp::now();
    let endpoint = WebhookEndpoint {
        id: Uuid::now_v7(),
        workspace_id: workspace,
        url,
        description,
        event_types,
        enabled,
        secret_sealed: state.secrets.seal(&secret),
        cursor: state.store.events().latest_event_id().await?,
        created_at: now,
        updated_at: now,
    };
    store.create_webhook(&endpoint).await?;
    Ok((endpoint, secret))
}

/// Applies a checked patch; enabling a disabled endpoint starts it at the log's latest event.
/// Errors: 404 for an endpoint not in the workspace.
pub async fn update(
    state: &AppState,
    workspace: WorkspaceId,
    id: Uuid,
    mut patch: WebhookEndpointPatch,
) -> Result<WebhookEndpoint, ApiError> {
    if patch.enabled == Some(true) {
        patch.cursor = Some(state.store.events().latest_event_id().await?);
    }
    state
        .store
        .webhooks()
        .update_webhook(workspace, id, &patch, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// A new secret for the endpoint; the old one stops signing at once. Returns it in clear.
pub async fn rotate(
    state: &AppState,
    workspace: WorkspaceId,
    id: Uuid,
) -> Result<String, ApiError> {
    let secret = new_secret().map_err(ApiError::internal)?;
    let patch = WebhookEndpointPatch {
        secret_sealed: Some(state.secrets.seal(&secret)),
        ..Default::default()
    };
    update(state, workspace, id, patch).await?;
    Ok(secret)
}

/// The endpoint's secret in clear. Errors: 500 when it cannot be opened (another secret key).
pub fn reveal(state: &AppState, endpoint: &WebhookEndpoint) -> Result<String, ApiError> {
    state
        .secrets
        .open(&endpoint.secret_sealed)
        .map_err(|_| ApiError::internal("a webhook secret could not be opened"))
}

/// "Send again": the delivery is pending again, due now, with a fresh retry window.
/// Errors: 404 (no such delivery of that endpoint), 409 `delivery_in_flight`.
pub async fn resend(
    state: &AppState,
    workspace: WorkspaceId,
    endpoint: Uuid,
    delivery: Uuid,
) -> Result<WebhookDelivery, ApiError> {
    let now = Timestamp::now();
    let until = now.add_millis(state.settings.webhooks.retry_window.as_millis() as i64);
    let d = state
        .store
        .webhooks()
        .resend_delivery(workspace, endpoint, delivery, now, until)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    state.webhook_signal.wake();
    Ok(d)
}

/// An endpoint as the API shows it (never its secret): `{id, url, description, event_types,
/// enabled, created_at, updated_at}`.
pub fn endpoint_json(e: &WebhookEndpoint) -> Value {
    json!({
        "id": e.id,
        "url": e.url,
        "description": e.description,
        "event_types": e.event_types,
        "enabled": e.enabled,
        "created_at": e.created_at.to_rfc3339(),
        "updated_at": e.updated_at.to_rfc3339(),
    })
}

/// A delivery as the API shows it: `{id, message_id, event_id, event_type, status, attempts,
/// next_attempt_at, retry_until, last_attempt_at, http_status, response_ms, response_excerpt,
/// error, created_at, payload}` (times RFC 3339 or null; `payload` the JSON sent).
pub fn delivery_json(d: &WebhookDelivery) -> Value {
    let t = |t: Option<Timestamp>| t.map(|t| t.to_rfc3339());
    json!({
        "id": d.id,
        "message_id": message_id(d.id),
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "next_attempt_at": t(d.next_attempt_at),
        "retry_until": d.retry_until.to_rfc3339(),
        "last_attempt_at": t(d.last_attempt_at),
        "http_status": d.http_status,
        "response_ms": d.response_ms,
        "response_excerpt": d.response_excerpt,
        "error": d.error,
        "created_at": d.created_at.to_rfc3339(),
        "payload": serde_json::from_str::<Value>(&d.body).unwrap_or(Value::Null),
    })
}

/// The running sender; [`WebhookTasks::stop`] ends it.
pub struct WebhookTasks {
    task: tokio::task::JoinHandle<()>,
}

impl WebhookTasks {
    /// Stops the sender. Deliveries in flight keep their lease and are sent again after it.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Starts this server's sender (see the module docs).
pub fn start(state: AppState) -> WebhookTasks {
    WebhookTasks {
        task: tokio::spawn(run(state)),
    }
}

async fn run(state: AppState) {
    state.jobs.hold_at("webhooks").await;
    let mut changes = state.store.events().subscribe();
    let mut sending: JoinSet<()> = JoinSet::new();
    loop {
        if let Err(e) = take_all(&state).await {
            tracing::warn!(error = %e, "webhooks: could not take new events");
        }
        let free = SENDERS.saturating_sub(sending.len());
        if free > 0 {
            let now = Timestamp::now();
            let lease = state.settings.webhooks.timeout * 2 + Duration::from_secs(5);
            match state
                .store
                .webhooks()
                .claim_deliveries(
                    &state.jobs.worker,
                    now,
                    now.add_millis(lease.as_millis() as i64),
                    free,
                )
                .await
            {
                Ok(list) => {
                    for d in list {
                        sending.spawn(send_one(state.clone(), d));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: could not claim deliveries"),
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = state.webhook_signal.0.notified() => {}
            Some(_) = sending.join_next(), if !sending.is_empty() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Takes the new events of every enabled endpoint into deliveries.
async fn take_all(state: &AppState) -> Result<(), parley_store::StoreError> {
    let endpoints = state.store.webhooks().enabled_webhooks().await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let events = state.store.events();
    for ep in endpoints {
        // Read the latest id first: every event at or below it is committed (ids are handed
        // out in commit order), so a page that is not full covers everything up to it.
        let latest = events.latest_event_id().await?;
        let filter = EventFilter {
            types: log_types(&ep.event_types),
            ..Default::default()
        };
        if filter.types.is_empty() {
            continue;
        }
        let page = events
            .events_after(ep.workspace_id, ep.cursor, &filter, TAKE_PAGE)
            .await?;
        let last = page.last().map(|e| e.id).unwrap_or(ep.cursor);
        let to = if page.len() == TAKE_PAGE as usize {
            last
        } else {
            last.max(latest)
        };
        if to <= ep.cursor {
            continue;
        }
        let deliveries = deliveries_for(&ep.event_types, &page);
        let now = Timestamp::now();
        let until = now.add_millis(state.settings.webhooks.retry_window.as_millis() as i64);
        state
            .store
            .webhooks()
            .take(ep.id, ep.cursor, to, &deliveries, now, until)
            .await?;
    }
    Ok(())
}

/// The first [`EXCERPT_BYTES`] of `bytes` as text, cut at a character boundary.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]);
    let mut end = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// What one attempt got back.
struct Answer {
    status: Option<u16>,
    excerpt: Option<String>,
    error: Option<String>,
}

/// One POST of the delivery to its endpoint (the guarded client, the `[webhooks]` timeout).
async fn post(state: &AppState, url: &str, secret: &str, d: &WebhookDelivery) -> Answer {
    let id = message_id(d.id);
    let ts = Timestamp::now().0 / 1000;
    let req = match state.net.request(reqwest::Method::POST, url) {
        Ok(r) => r,
        Err(e) => {
            return Answer {
                status: None,
                excerpt: None,
                error: Some(format!("destination_not_allowed: {}", e.reason)),
            };
        }
    };
    let timeout = state.settings.webhooks.timeout;
    let sent = req
        .timeout(timeout)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("Parley-Webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(secret, &id, ts, &d.body))
        .body(d.body.clone())
        .send()
        .await;
    let mut res = match sent {
        Ok(r) => r,
        Err(e) => {
            let error = match crate::net::refusal(&e) {
                Some(r) => format!("destination_not_allowed: {}", r.reason),
                None if e.is_timeout() => format!("no answer within {} ms", timeout.as_millis()),
                None if e.is_connect() => "could not connect".to_owned(),
                None => "the request failed".to_owned(),
            };
            return Answer {
                status: None,
                excerpt: None,
                error: Some(error),
            };
        }
    };
    let status = res.status().as_u16();
    let mut buf: Vec<u8> = Vec::new();
    // Read at most a little more than the excerpt, within the timeout; the rest is dropped.
    let _ = tokio::time::timeout(timeout, async {
        while buf.len() < EXCERPT_BYTES {
            match res.chunk().await {
                Ok(Some(c)) => buf.extend_from_slice(&c),
                _ => break,
            }
        }
    })
    .await;
    Answer {
        status: Some(status),
        excerpt: Some(excerpt(&buf)),
        error: (!(200..300).contains(&status)).then(|| format!("HTTP {status}")),
    }
}

async fn send_one(state: AppState, d: WebhookDelivery) {
    let store = state.store.webhooks();
    let endpoint = match store.get_webhook(d.workspace_id, d.endpoint_id).await {
        Ok(Some(e)) => e,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "webhooks: could not read an endpoint");
            return;
        }
    };
    let started = Instant::now();
    let answer = match reveal(&state, &endpoint) {
        Ok(secret) => post(&state, &endpoint.url, &secret, &d).await,
        Err(_) => Answer {
            status: None,
            excerpt: None,
            error: Some("the endpoint's secret could not be opened".into()),
        },
    };
    let response_ms = started.elapsed().as_millis() as i64;
    let now = Timestamp::now();
    let ok = answer.error.is_none();
    // 410 Gone: the receiver says the endpoint no longer exists (the Standard Webhooks
    // specification's "Endpoint disabling" advice); no retry, and the endpoint is disabled.
    let gone = answer.status == Some(410);
    let (status, next) = if ok {
        (DeliveryStatus::Succeeded, None)
    } else if gone {
        (DeliveryStatus::Failed, None)
    } else {
        let policy = Policy {
            attempts: u32::MAX,
            first: state.settings.webhooks.retry_first,
            max: state.settings.webhooks.retry_max,
            jitter: true,
        };
        let wait = policy
            .delay(d.attempts.max(1))
            .unwrap_or(state.settings.webhooks.retry_max);
        let at = now.add_millis(wait.as_millis() as i64);
        if at.0 > d.retry_until.0 {
            (DeliveryStatus::Failed, None)
        } else {
            (DeliveryStatus::Pending, Some(at))
        }
    };
    tracing::debug!(delivery = %d.id, endpoint = %endpoint.id, status = status.as_str(),
        http_status = answer.status, error = answer.error.as_deref(), "webhooks: attempt");
    let attempt = DeliveryAttempt {
        status,
        next_attempt_at: next,
        attempted_at: now,
        http_status: answer.status,
        response_ms,
        response_excerpt: answer.excerpt,
        error: answer.error,
    };
    match store
        .record_attempt(d.id, &state.jobs.worker, &attempt)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(delivery = %d.id, "webhooks: lost a delivery's lease"),
        Err(e) => tracing::warn!(error = %e, "webhooks: could not record an attempt"),
    }
    if gone && let Err(e) = disable_gone(&state, &endpoint, d.id).await {
        tracing::warn!(error = %e, endpoint = %endpoint.id, "webhooks: could not disable an endpoint");
    }
}

/// Disables an endpoint that answered 410 Gone and writes `webhook.disabled` in the workspace's
/// audit log (actor `system`, details `{endpoint, reason, delivery}`; the URL is not written,
/// it may hold a token). Its other pending deliveries stay pending and go out if an admin
/// enables it again. Errors: the store's.
async fn disable_gone(
    state: &AppState,
    endpoint: &WebhookEndpoint,
    delivery: uuid::Uuid,
) -> Result<(), parley_store::StoreError> {
    if !endpoint.enabled {
        return Ok(());
    }
    let ws = endpoint.workspace_id;
    let patch = WebhookEndpointPatch {
        enabled: Some(false),
        ..WebhookEndpointPatch::default()
    };
    state
        .store
        .webhooks()
        .update_webhook(ws, endpoint.id, &patch, Timestamp::now())
        .await?;
    tracing::warn!(endpoint = %endpoint.id, "webhooks: the endpoint answered 410 Gone; disabled");
    state
        .store
        .retention()
        .append_audit(
            ws,
            &parley_store::NewAuditEntry {
                actor: "system".into(),
                action: "webhook.disabled".into(),
                target: format!("webhook:{}", endpoint.id),
                details: json!({
                    "endpoint": endpoint.id,
                    "reason": "the endpoint answered HTTP 410 Gone",
                    "delivery": delivery,
                }),
            },
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's example (its README, "Signature scheme"), as
    /// the reference libraries test it.
    #[test]
    fn signs_like_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_fresh_and_decode_to_32_bytes() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        let raw = B64.decode(a.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn excerpts_stop_at_a_kibibyte_on_a_character_boundary() {
        let long = "é".repeat(1_000);
        let e = excerpt(long.as_bytes());
        assert!(
            e.len() <= EXCERPT_BYTES && e.len() >= EXCERPT_BYTES - 3,
            "{}",
            e.len()
        );
        assert!(e.chars().all(|c| c == 'é'));
        assert_eq!(excerpt(b"ok"), "ok");
    }

    #[test]
    fn a_closing_patch_also_yields_conversation_ended() {
        let e = StoredEvent {
            id: 7,
            workspace_id: WorkspaceId::new(),
            event_type: EventType::ConversationUpdated,
            conversation_id: None,
            channel: None,
            assistant_id: None,
            created_at: Timestamp(0),
            data: json!({"fields": ["status"], "status": "closed"}),
        };
        let both = deliveries_for(
            &["conversation.updated".into(), CONVERSATION_ENDED.into()],
            std::slice::from_ref(&e),
        );
        let types: Vec<&str> = both.iter().map(|d| d.event_type.as_str()).collect();
        assert_eq!(types, ["conversation.updated", CONVERSATION_ENDED]);
        let body: Value = serde_json::from_str(&both[1].body).unwrap();
        assert_eq!(body["type"], CONVERSATION_ENDED);
        assert_eq!(body["data"]["event_id"], 7);
        let reopened = StoredEvent {
            data: json!({"fields": ["status"], "status": "active"}),
            ..e
        };
        assert!(deliveries_for(&[CONVERSATION_ENDED.into()], &[reopened]).is_empty());
    }
}
