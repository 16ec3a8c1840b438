//! WhatsApp Business through Meta's Cloud API.
//!
//! **Webhook** (`/webhooks/whatsapp/{connection id}`): `GET` answers Meta's verification
//! handshake (`hub.mode=subscribe`, `hub.verify_token` equal to the connection's verify token,
//! echoing `hub.challenge`); `POST` deliveries must carry `X-Hub-Signature-256: sha256=<hex>`,
//! the HMAC-SHA256 of the raw body keyed with the app secret, compared in constant time
//! (missing: 401 `signature_missing`; wrong: 403 `signature_invalid`; both logged). A valid
//! delivery is answered 200 at once and processed in a background task.
//!
//! **Inbound** (`entry[].changes[].value.messages[]`): every message type becomes a `user`
//! message whose `external_id` is its `wamid`, so a redelivered webhook stores nothing twice;
//! its type, the type's object, the reply context and any errors go to `meta.channel`. Text,
//! media, location, contacts, interactive and template-button replies and orders get an answer
//! from the assistant; reactions, edits, deletions, system notices and unsupported types are
//! recorded without one (edits and deletions also mark the original message).
//!
//! **Statuses** (`value.statuses[]`): `sent`, `delivered`, `read`, `played`, `failed` (with
//! `errors[]`) update `meta.channel.delivery` of the message Parley sent with that `wamid`,
//! only ever forward ([`DeliveryStatus::rank`]).
//!
//! **Sending** (`POST {graph_base_url}/{phone_number_id}/messages` with the access token):
//! free-form text only inside the 24-hour window that opens with the customer's last message
//! ([`window_closes_at`]); outside it Parley refuses before calling Meta and only templates go
//! out. Send failures (e.g. 131047) are recorded on the message.
//!
//! **Quality and limits**: the sender's `quality_rating` and `messaging_limit_tier` are read
//! at connect time ([`fetch_quality`]) and updated by `phone_number_quality_update` changes;
//! a template outside the window to a customer not messaged so in the last 24 hours is
//! refused once the tier's limit of customers is used up ([`tier_limit`]).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use parley_core::channel::{
    Attachment, ChannelConnection, ChannelError, ChannelKind, ChannelMessageMeta, Delivery,
    DeliveryStatus,
};
use parley_core::model::{AssistantRef, ConversationInput, Message, MessageInput, MessageMeta};
use parley_core::{Channel, ChannelConnectionId, ConversationId, Role, Timestamp, WorkspaceId};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{MESSAGE_UPDATES, config_str, conversation_key, media, open_secret};
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest};

/// Meta's Graph API, the default `graph_base_url` of a connection.
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.facebook.com/v21.0";
/// How long after the customer's last message free-form replies are allowed, in ms (24 h).
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// `sha256=<hex>`: the `X-Hub-Signature-256` value Meta sends for `body` signed with
/// `app_secret`.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    Missing,
    /// Not `sha256=` followed by 64 hex digits, or not the body's HMAC.
    Invalid,
}

/// Checks `header` (`sha256=<hex>`) against the HMAC-SHA256 of `body` keyed with `app_secret`,
/// in constant time.
pub fn verify_signature(
    app_secret: &str,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let digest = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(unhex)
        .ok_or(SignatureError::Invalid)?;
    let mut mac =
        HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&digest)
        .map_err(|_| SignatureError::Invalid)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// When free-form replies stop being allowed: 24 h after the customer's last message; `None`
/// when the customer never wrote.
pub fn window_closes_at(last_inbound_at: Option<Timestamp>) -> Option<Timestamp> {
    last_inbound_at.map(|t| t.add_millis(WINDOW_MS))
}

/// Whether the 24-hour window is open at `now`.
pub fn window_open(last_inbound_at: Option<Timestamp>, now: Timestamp) -> bool {
    window_closes_at(last_inbound_at).is_some_and(|end| now < end)
}

async fn connection(state: &AppState, id: &str) -> Result<ChannelConnection, ApiError> {
    let id: ChannelConnectionId = id.parse().map_err(|_| ApiError::not_found("connection"))?;
    state
        .store
        .channels()
        .channel_by_id(id)
        .await?
        .filter(|c| c.kind == ChannelKind::Whatsapp)
        .ok_or_else(|| ApiError::not_found("connection"))
}

/// `GET /webhooks/whatsapp/{id}`: Meta's verification handshake. 200 with `hub.challenge` as
/// plain text when `hub.mode` is `subscribe` and `hub.verify_token` is the connection's; 403
/// `verification_failed` otherwise; 404 for an unknown connection.
pub async fn verify(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let c = connection(&st, &id).await?;
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "hub.mode" => mode = Some(v.into_owned()),
            "hub.verify_token" => token = Some(v.into_owned()),
            "hub.challenge" => challenge = Some(v.into_owned()),
            _ => {}
        }
    }
    let expected = open_secret(&st, &c, "verify_token").map_err(ApiError::internal)?;
    let token_ok = token
        .as_deref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
    match (mode.as_deref(), challenge) {
        (Some("subscribe"), Some(challenge)) if token_ok => {
            tracing::info!(connection = %c.id, "WhatsApp webhook verified");
            Ok((StatusCode::OK, challenge).into_response())
        }
        _ => {
            tracing::warn!(connection = %c.id, "WhatsApp webhook verification refused");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "verification_failed",
                "hub.mode must be subscribe and hub.verify_token the connection's verify token",
            ))
        }
    }
}

/// `POST /webhooks/whatsapp/{id}`: a webhook delivery. 401 `signature_missing`, 403
/// `signature_invalid`, 400 `invalid_json`, 404 for an unknown connection; otherwise 200 at
/// once, the delivery being processed in the background.
pub async fn webhook(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = connection(&st, &id).await?;
    let app_secret = open_secret(&st, &c, "app_secret").map_err(ApiError::internal)?;
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(&app_secret, &body, header) {
        tracing::warn!(connection = %c.id, reason = ?e, bytes = body.len(),
            "refused a WhatsApp webhook delivery with a bad signature");
        return Err(match e {
            SignatureError::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "signature_missing",
                "X-Hub-Signature-256 is required",
            ),
            SignatureError::Invalid => ApiError::new(
                StatusCode::FORBIDDEN,
                "signature_invalid",
                "X-Hub-Signature-256 does not match the body",
            ),
        });
    }
    let payload: Value = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not JSON",
        )
    })?;
    tokio::spawn(async move { process(&st, &c, &payload).await });
    Ok(StatusCode::OK.into_response())
}

/// Processes one verified delivery: every change's statuses, then its messages, in order.
pub async fn process(state: &AppState, c: &ChannelConnection, payload: &Value) {
    let changes = payload["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["changes"].as_array().into_iter().flatten());
    for change in changes {
        if change["field"] == "phone_number_quality_update" {
            if let Err(e) = apply_quality(state, c, &change["value"]).await {
                tracing::error!(error = %e, "could not record a WhatsApp quality update");
            }
            continue;
        }
        if change["field"] != "messages" {
            tracing::debug!(field = %change["field"], "ignoring a WhatsApp change");
            continue;
        }
        let value = &change["value"];
        let routed;
        let c = match value["metadata"]["phone_number_id"].as_str() {
            Some(number) if number != c.external_key => {
                match same_app_number(state, c, number).await {
                    Some(other) => {
                        routed = other;
                        &routed
                    }
                    None => {
                        tracing::warn!(connection = %c.id, phone_number_id = number,
                        "a WhatsApp change for a phone number not connected through this app reached this webhook; ignored");
                        continue;
                    }
                }
            }
            _ => c,
        };
        for status in value["statuses"].as_array().into_iter().flatten() {
            if let Err(e) = apply_status(state, c, status).await {
                tracing::error!(error = %e, "could not apply a WhatsApp status");
            }
        }
        for message in value["messages"].as_array().into_iter().flatten() {
            let name = value["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|ct| ct["wa_id"] == message["from"])
                .and_then(|ct| ct["profile"]["name"].as_str());
            if let Err(e) = receive(state, c, message, name).await {
                tracing::error!(error = %e, "could not store a WhatsApp message");
            }
        }
    }
}

/// The connection of WhatsApp number `number` when it belongs to the same Meta app as `c`
/// (same workspace, same app secret): Meta sends every number of an app to the app's one
/// callback URL, so a delivery that arrived at `c`'s webhook (its signature checked with that
/// app's secret) may be for another connected number of the app. `None` for a number that is
/// not connected, or connected through another app or workspace.
async fn same_app_number(
    state: &AppState,
    c: &ChannelConnection,
    number: &str,
) -> Option<ChannelConnection> {
    let other = state
        .store
        .channels()
        .channel_by_key(ChannelKind::Whatsapp, number)
        .await
        .ok()
        .flatten()?;
    let same_app = other.workspace_id == c.workspace_id
        && open_secret(state, &other, "app_secret").ok()?
            == open_secret(state, c, "app_secret").ok()?;
    same_app.then_some(other)
}

/// A unix time in seconds as WhatsApp sends it (a string), in ms.
fn unix_time(v: &Value) -> Option<Timestamp> {
    let secs = match v {
        Value::String(s) => s.parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    Some(Timestamp(secs.checked_mul(1000)?))
}

/// What an inbound message becomes: its text, its `meta.channel`, whether the assistant
/// answers it, and the role it is stored with.
struct Translated {
    content: String,
    meta: ChannelMessageMeta,
    answer: bool,
    role: Role,
}

const MEDIA_TYPES: &[&str] = &["image", "audio", "video", "document", "sticker"];

fn translate(message: &Value) -> Translated {
    let kind = message["type"].as_str().unwrap_or("unknown").to_owned();
    let body = &message[kind.as_str()];
    let mut details = serde_json::Map::new();
    for key in [kind.as_str(), "context", "referral", "errors"] {
        if let Some(v) = message.get(key).filter(|v| !v.is_null()) {
            details.insert(key.to_owned(), v.clone());
        }
    }
    let mut meta = ChannelMessageMeta {
        kind: kind.clone(),
        details: (!details.is_empty()).then_some(Value::Object(details)),
        refers_to: message["context"]["id"].as_str().map(str::to_owned),
        ..Default::default()
    };
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let (content, answer, role) = match kind.as_str() {
        "text" => (s(&body["body"]), true, Role::User),
        k if MEDIA_TYPES.contains(&k) => {
            let voice = k == "audio" && body["voice"] == true;
            let media_kind = if voice { "voice" } else { k };
            meta.attachments.push(Attachment {
                kind: media_kind.to_owned(),
                media_id: s(&body["id"]),
                mime_type: body["mime_type"].as_str().map(str::to_owned),
                file_name: body["filename"].as_str().map(str::to_owned),
                ..Default::default()
            });
            let text = match body["caption"].as_str() {
                Some(c) if !c.is_empty() => c.to_owned(),
                _ => format!("[{}]", media_label(media_kind)),
            };
            (text, k != "sticker", Role::User)
        }
        "location" => {
            let mut text = String::from("📍 ");
            for part in [&body["name"], &body["address"]] {
                if let Some(p) = part.as_str() {
                    text.push_str(p);
                    text.push_str(", ");
                }
            }
            text.push_str(&format!("{}, {}", body["latitude"], body["longitude"]));
            (text, true, Role::User)
        }
        "contacts" => {
            let people: Vec<String> = body
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let phones: Vec<&str> = p["phones"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|ph| ph["phone"].as_str())
                        .collect();
                    format!(
                        "{} ({})",
                        p["name"]["formatted_name"].as_str().unwrap_or("?"),
                        phones.join(", ")
                    )
                })
                .collect();
            (
                format!("Shared contacts: {}", people.join("; ")),
                true,
                Role::User,
            )
        }
        "interactive" => {
            let reply_type = body["type"].as_str().unwrap_or("");
            match body[reply_type]["title"].as_str() {
                Some(title) => (title.to_owned(), true, Role::User),
                None => (
                    "[interactive message without content]".to_owned(),
                    false,
                    Role::User,
                ),
            }
        }
        "button" => (s(&body["text"]), true, Role::User),
        "reaction" => {
            meta.refers_to = body["message_id"].as_str().map(str::to_owned);
            match body["emoji"].as_str().filter(|e| !e.is_empty()) {
                Some(e) => (format!("Reacted {e}"), false, Role::User),
                None => ("Removed a reaction".to_owned(), false, Role::User),
            }
        }
        "order" => {
            let items: Vec<String> = body["product_items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    format!(
                        "{} × {} ({} {})",
                        i["quantity"],
                        i["product_retailer_id"].as_str().unwrap_or("?"),
                        i["item_price"],
                        i["currency"].as_str().unwrap_or("")
                    )
                })
                .collect();
            (format!("Order: {}", items.join(", ")), true, Role::User)
        }
        "edit" => {
            meta.refers_to = body["original_message_id"].as_str().map(str::to_owned);
            let inner = translate(&body["message"]);
            meta.attachments = inner.meta.attachments;
            (format!("[edited] {}", inner.content), false, Role::User)
        }
        "revoke" => {
            meta.refers_to = body["original_message_id"].as_str().map(str::to_owned);
            ("[deleted a message]".to_owned(), false, Role::User)
        }
        // Notices about the customer (a changed number): kept, hidden from the transcript.
        "system" => (s(&body["body"]), false, Role::System),
        other => {
            let why = message["errors"][0]["error_data"]["details"]
                .as_str()
                .or(message["errors"][0]["title"].as_str())
                .unwrap_or("not supported by Parley");
            (
                format!("[unsupported message type {other:?}: {why}]"),
                false,
                Role::User,
            )
        }
    };
    Translated {
        content,
        meta,
        answer,
        role,
    }
}

fn media_label(kind: &str) -> &'static str {
    match kind {
        "image" => "image",
        "voice" => "voice message",
        "audio" => "audio",
        "video" => "video",
        "document" => "document",
        "sticker" => "sticker",
        _ => "file",
    }
}

/// Stores one inbound message (downloading its media first) and, when it calls for one,
/// answers it.
async fn receive(
    state: &AppState,
    c: &ChannelConnection,
    message: &Value,
    name: Option<&str>,
) -> Result<(), ApiError> {
    let (Some(from), Some(wamid)) = (message["from"].as_str(), message["id"].as_str()) else {
        tracing::warn!("a WhatsApp message without from or id; skipped");
        return Ok(());
    };
    let ws = c.workspace_id;
    // A redelivery: the message is stored already (the ingest would skip it too, but this
    // spares the media download).
    if state
        .store
        .channels()
        .message_by_external_id(ws, wamid)
        .await?
        .is_some()
    {
        tracing::debug!(wamid, "WhatsApp message already stored");
        return Ok(());
    }
    let mut t = translate(message);
    let token = open_secret(state, c, "access_token").map_err(ApiError::internal)?;
    for a in &mut t.meta.attachments {
        let fetch = WhatsappMedia {
            state,
            graph: graph_base(c),
            token: &token,
        };
        media::download(state, ws, a, &fetch).await;
        if let Some(text) = media::transcribe_if_configured(state, c, a).await {
            t.content = format!("🎤 {text}");
        }
        if let Some(text) = media::describe_if_configured(state, c, a).await {
            t.content = format!("{}\n🖼 {text}", t.content);
        }
    }
    let contact = match name {
        Some(n) if !n.is_empty() => format!("{n} (+{from})"),
        _ => format!("+{from}"),
    };
    let created_at = unix_time(&message["timestamp"]).unwrap_or_else(Timestamp::now);
    let refers_to = t.meta.refers_to.clone();
    let kind = t.meta.kind.clone();
    let input = ConversationInput {
        external_id: Some(conversation_key(c, from)),
        assistant: AssistantRef {
            id: Some(c.assistant_id),
            name: None,
            company: None,
        },
        contact: Some(contact),
        session_id: Some(format!("wa-{from}")),
        messages: vec![MessageInput {
            id: None,
            external_id: Some(wamid.to_owned()),
            role: t.role,
            content: t.content,
            created_at: Some(created_at),
            model: None,
            usage: None,
            cost_nanousd: None,
            meta: MessageMeta {
                channel: Some(t.meta),
                ..Default::default()
            },
        }],
        ..new_conversation(Channel::Whatsapp)
    };
    let outcome = ingest(state, ws, vec![IngestRequest::Create(Box::new(input))])
        .await?
        .pop()
        .expect("one batch, one outcome");
    if outcome.stored() == 0 {
        return Ok(());
    }
    if let (Some(original), "edit" | "revoke") = (refers_to, kind.as_str()) {
        mark_original(state, ws, &original, wamid, kind == "revoke").await?;
    }
    if t.answer {
        let conversation = outcome.conversation_id;
        let to = from.to_owned();
        super::answer_and_send(state, ws, conversation, |m| async move {
            if let Err(e) = reply(state, c, conversation, &to, &m).await {
                tracing::warn!(error = %e, "WhatsApp reply not sent");
            }
        })
        .await;
    }
    Ok(())
}

/// A conversation input with nothing but the channel set.
pub(crate) fn new_conversation(channel: Channel) -> ConversationInput {
    ConversationInput {
        id: None,
        external_id: None,
        assistant: AssistantRef {
            id: None,
            name: None,
            company: None,
        },
        channel,
        status: None,
        contact: None,
        session_id: None,
        started_at: None,
        ended_at: None,
        end_reason: None,
        rating: None,
        sentiment: None,
        converted: None,
        variables: Vec::new(),
        memory: None,
        assistant_version: None,
        messages: Vec::new(),
    }
}

/// Marks the message a customer edited (`edited_by`) or deleted (`deleted`).
async fn mark_original(
    state: &AppState,
    ws: WorkspaceId,
    original: &str,
    by: &str,
    deleted: bool,
) -> Result<(), ApiError> {
    let _guard = MESSAGE_UPDATES.lock().await;
    let Some((_, m)) = state
        .store
        .channels()
        .message_by_external_id(ws, original)
        .await?
    else {
        return Ok(());
    };
    let mut meta = m.meta.clone();
    let ch = meta.channel.get_or_insert_with(Default::default);
    if deleted {
        ch.deleted = true;
    } else {
        ch.edited_by = Some(by.to_owned());
    }
    state
        .store
        .channels()
        .update_message_channel(ws, m.id, None, &meta)
        .await?;
    Ok(())
}

/// Applies one `statuses[]` entry to the message Parley sent with that `wamid`, if it moves
/// its delivery forward.
async fn apply_status(
    state: &AppState,
    c: &ChannelConnection,
    status: &Value,
) -> Result<(), ApiError> {
    let (Some(wamid), Some(new)) = (
        status["id"].as_str(),
        status["status"].as_str().and_then(DeliveryStatus::parse),
    ) else {
        tracing::debug!(status = %status["status"], "ignoring an unknown WhatsApp status");
        return Ok(());
    };
    let ws = c.workspace_id;
    let _guard = MESSAGE_UPDATES.lock().await;
    let Some((_, m)) = state
        .store
        .channels()
        .message_by_external_id(ws, wamid)
        .await?
    else {
        tracing::debug!(
            wamid,
            "a WhatsApp status for a message Parley does not know"
        );
        return Ok(());
    };
    let mut meta = m.meta.clone();
    let ch = meta.channel.get_or_insert_with(|| ChannelMessageMeta {
        kind: "text".into(),
        ..Default::default()
    });
    if ch
        .delivery
        .as_ref()
        .is_some_and(|d| d.status.rank() >= new.rank())
    {
        return Ok(());
    }
    ch.delivery = Some(Delivery {
        status: new,
        at: unix_time(&status["timestamp"]).unwrap_or_else(Timestamp::now),
        errors: status["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(graph_error)
            .collect(),
    });
    state
        .store
        .channels()
        .update_message_channel(ws, m.id, None, &meta)
        .await?;
    Ok(())
}

/// The number of customers a sender may start conversations with in 24 hours, for a
/// `messaging_limit_tier` / `current_limit` value (`TIER_250`, `TIER_1K`, `TIER_10K`,
/// `TIER_100K`, `TIER_UNLIMITED`...); `None` for no limit or an unknown tier.
pub fn tier_limit(tier: &str) -> Option<u64> {
    let n = tier.strip_prefix("TIER_")?;
    let (digits, factor) = match n.strip_suffix('K') {
        Some(d) => (d, 1000),
        None => (n, 1),
    };
    digits.parse::<u64>().ok().map(|d| d * factor)
}

/// Records a `phone_number_quality_update` change (`{"display_phone_number", "event",
/// "current_limit"}`) on the connection: `quality_event`, `messaging_limit_tier`,
/// `quality_updated_at`.
async fn apply_quality(
    state: &AppState,
    c: &ChannelConnection,
    value: &Value,
) -> Result<(), ApiError> {
    let _guard = MESSAGE_UPDATES.lock().await;
    let Some(mut current) = state
        .store
        .channels()
        .get_channel(c.workspace_id, c.id)
        .await?
    else {
        return Ok(());
    };
    if let Some(event) = value["event"].as_str() {
        current.config.insert("quality_event".into(), json!(event));
    }
    if let Some(limit) = value["current_limit"].as_str() {
        current
            .config
            .insert("messaging_limit_tier".into(), json!(limit));
    }
    current
        .config
        .insert("quality_updated_at".into(), json!(Timestamp::now()));
    tracing::info!(connection = %c.id, event = %value["event"], limit = %value["current_limit"],
        "WhatsApp sender quality update");
    state
        .store
        .channels()
        .update_channel_config(c.workspace_id, c.id, &current.config)
        .await?;
    Ok(())
}

/// Reads the sender's `quality_rating` (GREEN, YELLOW, RED, UNKNOWN) and
/// `messaging_limit_tier` from the Graph API (`GET /{phone-number-id}?fields=...`) into
/// `config`. Best effort: a failure is logged and leaves them unset.
pub async fn fetch_quality(
    state: &AppState,
    graph: &str,
    phone_number_id: &str,
    token: &str,
    config: &mut serde_json::Map<String, Value>,
) {
    let res = state
        .http
        .get(format!(
            "{graph}/{phone_number_id}?fields=quality_rating,messaging_limit_tier"
        ))
        .bearer_auth(token)
        .timeout(super::PLATFORM_TIMEOUT)
        .send()
        .await;
    let answer: Value = match res {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        Ok(r) => {
            tracing::warn!(
                status = r.status().as_u16(),
                "could not read the sender's quality rating"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %crate::assistant::provider::describe(e),
                "could not read the sender's quality rating");
            return;
        }
    };
    for key in ["quality_rating", "messaging_limit_tier"] {
        if let Some(v) = answer[key].as_str() {
            config.insert(key.into(), json!(v));
        }
    }
}

/// Counts a business-initiated send (a template outside the 24-hour window) to `to` against
/// the sender's messaging limit: the distinct customers messaged so in the last 24 hours
/// (kept in the connection's `business_initiated` config, `{customer: unix ms}`). Errors:
/// `messaging_limit_reached` (code 0) when `to` is a new customer and the limit is used up;
/// nothing is counted then.
async fn count_business_initiated(
    state: &AppState,
    c: &ChannelConnection,
    to: &str,
) -> Result<(), ChannelError> {
    let store_error = |e: parley_store::StoreError| ChannelError {
        code: 0,
        title: "store_failed".into(),
        message: Some(e.to_string()),
    };
    let _guard = MESSAGE_UPDATES.lock().await;
    let Some(mut current) = state
        .store
        .channels()
        .get_channel(c.workspace_id, c.id)
        .await
        .map_err(store_error)?
    else {
        return Ok(());
    };
    let now = Timestamp::now();
    let mut recent: serde_json::Map<String, Value> = current
        .config
        .get("business_initiated")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    recent.retain(|_, at| at.as_i64().is_some_and(|t| now.0 - t < WINDOW_MS));
    let tier = config_str(&current, "messaging_limit_tier").unwrap_or("");
    if let Some(limit) = tier_limit(tier)
        && !recent.contains_key(to)
        && recent.len() as u64 >= limit
    {
        return Err(ChannelError {
            code: 0,
            title: "messaging_limit_reached".into(),
            message: Some(format!(
                "this sender's messaging limit ({tier}: {limit} customers in 24 hours) is reached; Parley stopped before exceeding it"
            )),
        });
    }
    recent.insert(to.to_owned(), json!(now.0));
    current
        .config
        .insert("business_initiated".into(), Value::Object(recent));
    state
        .store
        .channels()
        .update_channel_config(c.workspace_id, c.id, &current.config)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// A Graph API error object (`{"code", "title", "message", "error_data": {"details"}}`, or
/// the `error` of an HTTP error body with `type`) as a [`ChannelError`].
pub fn graph_error(e: &Value) -> ChannelError {
    ChannelError {
        code: e["code"].as_i64().unwrap_or(0),
        title: e["title"]
            .as_str()
            .or(e["type"].as_str())
            .or(e["message"].as_str())
            .unwrap_or("unknown error")
            .to_owned(),
        message: e["error_data"]["details"]
            .as_str()
            .or(e["message"].as_str())
            .map(str::to_owned),
    }
}

fn graph_base(c: &ChannelConnection) -> String {
    config_str(c, "graph_base_url")
        .unwrap_or(DEFAULT_GRAPH_BASE_URL)
        .trim_end_matches('/')
        .to_owned()
}

/// Sends a Graph API `messages` request; returns the new message's `wamid`.
/// Errors: the Graph API's error object, or code 0 when it could not be reached.
async fn graph_send(
    state: &AppState,
    c: &ChannelConnection,
    body: &Value,
) -> Result<String, ChannelError> {
    let token = open_secret(state, c, "access_token").map_err(|e| ChannelError {
        code: 0,
        title: "connection_unusable".into(),
        message: Some(e),
    })?;
    let url = format!("{}/{}/messages", graph_base(c), c.external_key);
    let res = state
        .http
        .post(url)
        .bearer_auth(token)
        .timeout(super::PLATFORM_TIMEOUT)
        .json(body)
        .send()
        .await
        .map_err(|e| ChannelError {
            code: 0,
            title: "graph_unreachable".into(),
            message: Some(crate::assistant::provider::describe(e)),
        })?;
    let status = res.status();
    let answer: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(graph_error(&answer["error"]));
    }
    answer["messages"][0]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ChannelError {
            code: 0,
            title: "unexpected_answer".into(),
            message: Some("the Graph API answer carries no messages[0].id".into()),
        })
}

/// Records the outcome of a send on the stored message: its `wamid` and `accepted`, or
/// `failed` with the error.
async fn record_send(
    state: &AppState,
    ws: WorkspaceId,
    m: &Message,
    kind: &str,
    details: Option<Value>,
    result: &Result<String, ChannelError>,
) -> Result<(), ApiError> {
    let mut meta = m.meta.clone();
    let (wamid, delivery) = match result {
        Ok(w) => (
            Some(w.as_str()),
            Delivery {
                status: DeliveryStatus::Accepted,
                at: Timestamp::now(),
                errors: vec![],
            },
        ),
        Err(e) => (
            None,
            Delivery {
                status: DeliveryStatus::Failed,
                at: Timestamp::now(),
                errors: vec![e.clone()],
            },
        ),
    };
    meta.channel = Some(ChannelMessageMeta {
        kind: kind.to_owned(),
        details,
        delivery: Some(delivery),
        ..Default::default()
    });
    let _guard = MESSAGE_UPDATES.lock().await;
    state
        .store
        .channels()
        .update_message_channel(ws, m.id, wamid, &meta)
        .await?;
    Ok(())
}

/// The refusal of a free-form send outside the 24-hour window (recorded on the message with
/// code 0 before Meta is called).
fn window_closed_error(last_inbound_at: Option<Timestamp>) -> ChannelError {
    ChannelError {
        code: 0,
        title: "window_closed".into(),
        message: Some(match window_closes_at(last_inbound_at) {
            Some(end) => format!(
                "the 24-hour window closed at {}: only an approved template can be sent",
                end.to_rfc3339()
            ),
            None => {
                "the customer has not written yet: only an approved template can be sent".to_owned()
            }
        }),
    }
}

/// Sends a stored assistant (or agent) message to the customer as free-form text, if the
/// 24-hour window is open, and records the outcome on it. Errors: the send's failure (also
/// recorded on the message).
pub async fn reply(
    state: &AppState,
    c: &ChannelConnection,
    conversation: ConversationId,
    to: &str,
    m: &Message,
) -> Result<String, ChannelError> {
    let ws = c.workspace_id;
    let last_inbound = state
        .store
        .get_conversation(ws, conversation)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.last_inbound_at);
    let result = if window_open(last_inbound, Timestamp::now()) {
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"preview_url": false, "body": m.content},
        });
        graph_send(state, c, &body).await
    } else {
        Err(window_closed_error(last_inbound))
    };
    if let Err(e) = record_send(state, ws, m, "text", None, &result).await {
        tracing::error!(error = %e, "could not record a WhatsApp send");
    }
    result
}

/// A template to send outside the window: `{"name", "language", "parameters": [text...]}`
/// (body parameters, in order).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The approved template's name.
    pub name: String,
    /// Its language code (`en_US`).
    pub language: String,
    /// Values of the body's `{{1}}`, `{{2}}`... in order.
    #[serde(default)]
    pub parameters: Vec<String>,
}

/// The Graph API `template` object for `t`.
pub fn template_body(t: &Template) -> Value {
    let mut template = json!({"name": t.name, "language": {"code": t.language}});
    if !t.parameters.is_empty() {
        let params: Vec<Value> = t
            .parameters
            .iter()
            .map(|p| json!({"type": "text", "text": p}))
            .collect();
        template["components"] = json!([{"type": "body", "parameters": params}]);
    }
    template
}

/// Sends a template to the customer (allowed whatever the window; `last_inbound_at` is the
/// customer's last message time) and records the outcome on the stored message `m`. Outside
/// the window it counts against the sender's messaging limit ([`tier_limit`]). Errors: the
/// Graph API's error; `messaging_limit_reached` before Meta is called.
pub async fn send_template(
    state: &AppState,
    c: &ChannelConnection,
    to: &str,
    last_inbound_at: Option<Timestamp>,
    m: &Message,
    t: &Template,
) -> Result<String, ChannelError> {
    let body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template_body(t),
    });
    // A template outside the window starts a business-initiated conversation, which counts
    // against the sender's messaging limit.
    let result = if window_open(last_inbound_at, Timestamp::now()) {
        graph_send(state, c, &body).await
    } else {
        match count_business_initiated(state, c, to).await {
            Ok(()) => graph_send(state, c, &body).await,
            Err(e) => Err(e),
        }
    };
    let details = serde_json::to_value(t).ok();
    if let Err(e) = record_send(state, c.workspace_id, m, "template", details, &result).await {
        tracing::error!(error = %e, "could not record a WhatsApp send");
    }
    result
}

/// Media download through the Graph API: `GET /{media-id}` gives a short-lived URL, fetched
/// with the same bearer token.
struct WhatsappMedia<'a> {
    state: &'a AppState,
    graph: String,
    token: &'a str,
}

impl media::Fetch for WhatsappMedia<'_> {
    async fn fetch(&self, media_id: &str) -> Result<Vec<u8>, String> {
        let http = &self.state.http;
        let info = http
            .get(format!("{}/{}", self.graph, media_id))
            .bearer_auth(self.token)
            .timeout(super::PLATFORM_TIMEOUT)
            .send()
            .await
            .map_err(crate::assistant::provider::describe)?;
        let status = info.status();
        let info: Value = info.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let e = graph_error(&info["error"]);
            return Err(format!("GET /{media_id}: {} {}", e.code, e.title));
        }
        let url = info["url"]
            .as_str()
            .ok_or_else(|| format!("GET /{media_id}: no url in the answer"))?;
        media::fetch_bytes(http.get(url).bearer_auth(self.token), "media download").await
    }
}

/// Pause before the `attempt`-th retry of a download (1-based).
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(250 * u64::from(attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_exact_body_and_secret() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let sig = sign("app-secret", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(verify_signature("app-secret", body, Some(&sig)), Ok(()));
        assert_eq!(
            verify_signature("other", body, Some(&sig)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_signature("app-secret", b"{}", Some(&sig)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_signature("app-secret", body, Some("sha256=zz")),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_signature("app-secret", body, None),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn tiers_give_the_daily_limit() {
        assert_eq!(tier_limit("TIER_250"), Some(250));
        assert_eq!(tier_limit("TIER_1K"), Some(1_000));
        assert_eq!(tier_limit("TIER_100K"), Some(100_000));
        assert_eq!(tier_limit("TIER_UNLIMITED"), None);
        assert_eq!(tier_limit(""), None);
    }

    #[test]
    fn the_window_is_24_hours_from_the_last_inbound_message() {
        let t = Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        assert!(window_open(Some(t), t.add_millis(WINDOW_MS - 1)));
        assert!(!window_open(Some(t), t.add_millis(WINDOW_MS)));
        assert!(!window_open(None, t));
    }
}
