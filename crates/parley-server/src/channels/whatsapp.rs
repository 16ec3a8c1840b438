//! WhatsApp Business through Meta's Cloud API.
//!
//! **Webhook** (`/webhooks/whatsapp/{connection id}`): `GET` answers Meta's verification
//! handshake (`hub.mode=subscribe`, `hub.verify_token` equal to the connection's verify token,
//! echoing `hub.challenge`); `POST` deliveries must carry `X-Hub-Signature-256: sha256=<hex>`,
//! the HMAC-SHA256 of the raw body keyed with the app secret, compared in constant time
//! (missing: 401 `signature_missing`; wrong: 403 `signature_invalid`; both logged). A valid
//! delivery is stored as it came (raw body, connection, time received) in the durable inbox
//! (a `whatsapp.delivery` job, [`crate::jobs`]) before it is answered 200, and processed from
//! there: retried with backoff when processing fails, never stored twice, taken over by another
//! server or the next start after a crash.
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
//! **Connecting** proves ownership first ([`prove`], at the operator's Graph API): the access
//! token must read the phone number, and the number must belong to the given WhatsApp
//! Business Account. A connection's own `graph_base_url` is reached through the guarded client
//! ([`crate::net`]); without one it uses the operator's `whatsapp_graph_base_url`.
//!
//! **Quality and limits**: the sender's `quality_rating` and `messaging_limit_tier` are read
//! at connect time ([`prove`]) and updated by `phone_number_quality_update` changes;
//! a template outside the window to a customer not messaged so in the last 24 hours is
//! refused once the tier's limit of customers is used up ([`tier_limit`]).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use parley_core::channel::{
    Attachment, ChannelConnection, ChannelError, ChannelKind, ChannelMessageMeta, Delivery,
    DeliveryStatus,
};
use parley_core::chat_markup::{Markup, to_markup};
use parley_core::model::{AssistantRef, ConversationInput, Message, MessageInput, MessageMeta};
use parley_core::{Channel, ChannelConnectionId, ConversationId, Role, Timestamp, WorkspaceId};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{config_str, conversation_key, edit_config, edit_message, media, open_secret};
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest_with_jobs};
use crate::jobs::JobError;

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
    handshake(&st, &c, query, "WhatsApp")
}

/// Meta's webhook verification handshake for connection `c` (WhatsApp and Messenger alike):
/// 200 with `hub.challenge` as plain text when `hub.mode` is `subscribe` and
/// `hub.verify_token` is the connection's verify token (compared in constant time); 403
/// `verification_failed` otherwise. `platform` names it in the logs.
pub(crate) fn handshake(
    st: &AppState,
    c: &ChannelConnection,
    query: Option<String>,
    platform: &str,
) -> Result<Response, ApiError> {
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
    let expected = open_secret(st, c, "verify_token").map_err(ApiError::internal)?;
    let token_ok = token
        .as_deref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
    match (mode.as_deref(), challenge) {
        (Some("subscribe"), Some(challenge)) if token_ok => {
            tracing::info!(connection = %c.id, platform, "webhook verified");
            Ok((StatusCode::OK, challenge).into_response())
        }
        _ => {
            tracing::warn!(connection = %c.id, platform, "webhook verification refused");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "verification_failed",
                "hub.mode must be subscribe and hub.verify_token the connection's verify token",
            ))
        }
    }
}

/// `POST /webhooks/whatsapp/{id}`: a webhook delivery. 401 `signature_missing`, 403
/// `signature_invalid`, 400 `invalid_json`, 404 for an unknown connection, 500 when it cannot
/// be stored (Meta delivers it again); otherwise 200 once it is stored in the inbox, to be
/// processed in the background ([`process_delivery`]).
pub async fn webhook(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = connection(&st, &id).await?;
    check_delivery(&st, &c, &headers, &body, "WhatsApp")?;
    crate::jobs::enqueue_delivery(&st, crate::jobs::WHATSAPP_DELIVERY, &c, &body).await?;
    Ok(StatusCode::OK.into_response())
}

/// Checks a Meta webhook delivery of connection `c` (WhatsApp and Messenger alike): its
/// `X-Hub-Signature-256` against the raw body with the connection's app secret (401
/// `signature_missing`, 403 `signature_invalid`, both logged), then that the body is JSON (400
/// `invalid_json`). `platform` names it in the logs.
pub(crate) fn check_delivery(
    st: &AppState,
    c: &ChannelConnection,
    headers: &HeaderMap,
    body: &[u8],
    platform: &str,
) -> Result<(), ApiError> {
    let app_secret = open_secret(st, c, "app_secret").map_err(ApiError::internal)?;
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(&app_secret, body, header) {
        tracing::warn!(connection = %c.id, platform, reason = ?e, bytes = body.len(),
            "refused a webhook delivery with a bad signature");
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
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not JSON",
        ));
    }
    Ok(())
}

/// Processes one stored delivery (the `whatsapp.delivery` job; `body` is the raw body):
/// every change's statuses, then its messages, in order. Errors: `Retry` when the store
/// fails (what was stored is recognised on the next run), `Permanent` for a body that is not
/// JSON.
pub async fn process_delivery(
    state: &AppState,
    c: &ChannelConnection,
    body: &str,
) -> Result<(), JobError> {
    let payload: Value = serde_json::from_str(body)
        .map_err(|e| JobError::Permanent(format!("the delivery is not JSON: {e}")))?;
    process(state, c, &payload).await
}

async fn process(state: &AppState, c: &ChannelConnection, payload: &Value) -> Result<(), JobError> {
    let changes = payload["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["changes"].as_array().into_iter().flatten());
    for change in changes {
        if change["field"] == "phone_number_quality_update" {
            apply_quality(state, c, &change["value"]).await?;
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
            apply_status(state, c, status).await?;
        }
        for message in value["messages"].as_array().into_iter().flatten() {
            let name = value["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|ct| ct["wa_id"] == message["from"])
                .and_then(|ct| ct["profile"]["name"].as_str());
            receive(state, c, message, name).await?;
        }
    }
    Ok(())
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

/// Stores one inbound message (downloading its media first) and, in the same transaction, the
/// follow-up jobs: the assistant's answer when it calls for one, a later download of each file
/// that failed every attempt. A message stored already (an earlier run of the same delivery,
/// or Meta's redelivery) is not stored or answered again; only its edit or deletion mark is
/// made sure of. Errors: the store's.
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
    let mut t = translate(message);
    let refers_to = t.meta.refers_to.clone();
    let kind = t.meta.kind.clone();
    let mark = || async {
        match (&refers_to, kind.as_str()) {
            (Some(original), "edit" | "revoke") => {
                mark_original(state, ws, original, wamid, kind == "revoke").await
            }
            _ => Ok(()),
        }
    };
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
        return mark().await;
    }
    let mut jobs = Vec::new();
    for (i, a) in t.meta.attachments.iter_mut().enumerate() {
        if !download_attachment(state, c, a).await {
            jobs.push(crate::jobs::media_job(0, c, i, state));
        }
        media::add_media_text(state, c, a, &mut t.content).await;
    }
    if t.answer {
        jobs.push(crate::jobs::answer_job(
            0,
            ws,
            Some(c.id),
            json!({ "to": from }),
        ));
    }
    let contact = match name {
        Some(n) if !n.is_empty() => format!("{n} (+{from})"),
        _ => format!("+{from}"),
    };
    let created_at = unix_time(&message["timestamp"]).unwrap_or_else(Timestamp::now);
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
        ..super::new_conversation(Channel::Whatsapp)
    };
    ingest_with_jobs(
        state,
        ws,
        vec![IngestRequest::Create(Box::new(input))],
        jobs,
    )
    .await?;
    mark().await
}

/// Marks the message a customer edited (`edited_by`) or deleted (`deleted`), as one atomic
/// edit (a status arriving at the same time on another server is not lost). Marking it again
/// changes nothing.
async fn mark_original(
    state: &AppState,
    ws: WorkspaceId,
    original: &str,
    by: &str,
    deleted: bool,
) -> Result<(), ApiError> {
    let Some((_, m)) = state
        .store
        .channels()
        .message_by_external_id(ws, original)
        .await?
    else {
        return Ok(());
    };
    let by = by.to_owned();
    edit_message(state, ws, m.id, None, move |_, meta| {
        let ch = meta.channel.get_or_insert_with(Default::default);
        if deleted {
            ch.deleted = true;
        } else {
            ch.edited_by = Some(by);
        }
        (true, ())
    })
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
    let delivery = Delivery {
        status: new,
        at: unix_time(&status["timestamp"]).unwrap_or_else(Timestamp::now),
        errors: status["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(graph_error)
            .collect(),
    };
    // Read, compare and write as one step: two servers applying two statuses of one message at
    // once cannot move it backwards.
    edit_message(state, ws, m.id, None, move |_, meta| {
        let ch = meta.channel.get_or_insert_with(|| ChannelMessageMeta {
            kind: "text".into(),
            ..Default::default()
        });
        (advance(&mut ch.delivery, delivery), ())
    })
    .await?;
    Ok(())
}

/// Sets `current` to `new` when it moves the delivery forward ([`DeliveryStatus::rank`]: a
/// status never moves back, whatever order the callbacks arrive in); returns whether it did.
pub fn advance(current: &mut Option<Delivery>, new: Delivery) -> bool {
    if current
        .as_ref()
        .is_some_and(|d| d.status.rank() >= new.status.rank())
    {
        return false;
    }
    *current = Some(new);
    true
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
    tracing::info!(connection = %c.id, event = %value["event"], limit = %value["current_limit"],
        "WhatsApp sender quality update");
    let (event, limit) = (value["event"].clone(), value["current_limit"].clone());
    edit_config(state, c.workspace_id, c.id, move |config| {
        if event.is_string() {
            config.insert("quality_event".into(), event);
        }
        if limit.is_string() {
            config.insert("messaging_limit_tier".into(), limit);
        }
        config.insert("quality_updated_at".into(), json!(Timestamp::now()));
        (true, ())
    })
    .await?;
    Ok(())
}

/// Most pages of `GET /{waba-id}/phone_numbers` read while looking for a number (100 numbers
/// a page).
const MAX_NUMBER_PAGES: usize = 20;

/// A Graph API `GET` at the operator's Graph API (`whatsapp_graph_base_url`, trusted) with
/// `token`: the answer's JSON, or the [`super::Proof`] that stops the proof.
async fn graph_get(state: &AppState, path: &str, token: &str) -> Result<Value, super::Proof> {
    let url = format!(
        "{}/{path}",
        state.settings.whatsapp_graph_base_url.trim_end_matches('/')
    );
    let res = state
        .net
        .trusted()
        .get(url)
        .bearer_auth(token)
        .timeout(super::PLATFORM_TIMEOUT)
        .send()
        .await
        .map_err(|e| super::Proof::Unreachable(crate::assistant::provider::describe(e)))?;
    let status = res.status();
    let answer: Value = res.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(answer)
    } else if status.is_server_error() {
        Err(super::Proof::Unreachable(format!(
            "the Graph API failed (HTTP {})",
            status.as_u16()
        )))
    } else {
        let e = graph_error(&answer["error"]);
        Err(super::Proof::Refused(format!(
            "{} ({})",
            e.message.unwrap_or(e.title),
            e.code
        )))
    }
}

/// Proves that `token` controls phone number `phone_number_id` of WhatsApp Business Account
/// `business_account_id`, at the operator's Graph API (never a URL a workspace gave, which
/// could answer anything): `GET /{phone-number-id}` must succeed and name that number, and
/// the number must be one of `GET /{business-account-id}/phone_numbers` (paged by the
/// `after` cursor). On success also returns the number's `quality_rating` and
/// `messaging_limit_tier` (GREEN, YELLOW, RED, UNKNOWN; TIER_250...) for the connection's
/// config.
pub async fn prove(
    state: &AppState,
    phone_number_id: &str,
    business_account_id: &str,
    token: &str,
) -> (super::Proof, serde_json::Map<String, Value>) {
    let mut quality = serde_json::Map::new();
    let number = match graph_get(
        state,
        &format!("{phone_number_id}?fields=id,display_phone_number,verified_name,quality_rating,messaging_limit_tier"),
        token,
    )
    .await
    {
        Ok(n) => n,
        Err(p) => return (p, quality),
    };
    if number["id"].as_str() != Some(phone_number_id) {
        return (
            super::Proof::Refused(format!(
                "the Graph API does not know phone number id {phone_number_id}"
            )),
            quality,
        );
    }
    for key in ["quality_rating", "messaging_limit_tier"] {
        if let Some(v) = number[key].as_str() {
            quality.insert(key.into(), json!(v));
        }
    }
    let mut after: Option<String> = None;
    for _ in 0..MAX_NUMBER_PAGES {
        let mut path = format!("{business_account_id}/phone_numbers?fields=id&limit=100");
        if let Some(cursor) = &after {
            path.push_str("&after=");
            path.extend(form_urlencoded::byte_serialize(cursor.as_bytes()));
        }
        let page = match graph_get(state, &path, token).await {
            Ok(p) => p,
            Err(p) => return (p, quality),
        };
        let listed = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["id"].as_str() == Some(phone_number_id));
        if listed {
            return (super::Proof::Proven, quality);
        }
        after = page["paging"]["cursors"]["after"]
            .as_str()
            .filter(|_| page["paging"]["next"].is_string())
            .map(str::to_owned);
        if after.is_none() {
            break;
        }
    }
    (
        super::Proof::Refused(format!(
            "phone number id {phone_number_id} is not one of WhatsApp Business Account {business_account_id}'s numbers"
        )),
        quality,
    )
}

/// Checks that a connection's own `graph_base_url` reaches a Graph API that knows the number
/// (`GET {graph}/{phone-number-id}?fields=id` through the guarded client). Errors: 422
/// `destination_not_allowed` or `graph_rejected`, field `graph_base_url`.
pub async fn probe_graph(
    state: &AppState,
    graph: &str,
    phone_number_id: &str,
    token: &str,
) -> Result<(), ApiError> {
    let url = format!("{graph}/{phone_number_id}?fields=id");
    let not_allowed = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::net::CODE,
            format!("graph_base_url: {}", crate::net::MESSAGE),
        )
        .with_field("graph_base_url")
    };
    let client = state
        .net
        .platform_client(&url, &state.settings.whatsapp_graph_base_url)
        .map_err(|_| not_allowed())?;
    let res = client
        .get(url)
        .bearer_auth(token)
        .timeout(super::PLATFORM_TIMEOUT)
        .send()
        .await;
    let status = match res {
        Ok(r) => r.status(),
        Err(e) if crate::net::refusal(&e).is_some() => return Err(not_allowed()),
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "graph_rejected",
                format!(
                    "graph_base_url: could not reach it: {}",
                    crate::assistant::provider::describe(e)
                ),
            )
            .with_field("graph_base_url"));
        }
    };
    if !status.is_success() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "graph_rejected",
            format!(
                "graph_base_url: the Graph API there answered HTTP {} for this number",
                status.as_u16()
            ),
        )
        .with_field("graph_base_url"));
    }
    Ok(())
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
    let now = Timestamp::now();
    let customer = to.to_owned();
    // The count and the new entry are one atomic edit: servers sending at once never exceed
    // the limit between them.
    let refused = edit_config(state, c.workspace_id, c.id, move |config| {
        let mut recent: serde_json::Map<String, Value> = config
            .get("business_initiated")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        recent.retain(|_, at| at.as_i64().is_some_and(|t| now.0 - t < WINDOW_MS));
        let tier = config
            .get("messaging_limit_tier")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(limit) = tier_limit(&tier)
            && !recent.contains_key(&customer)
            && recent.len() as u64 >= limit
        {
            return (false, Some((tier, limit)));
        }
        recent.insert(customer, json!(now.0));
        config.insert("business_initiated".into(), Value::Object(recent));
        (true, None)
    })
    .await
    .map_err(store_error)?
    .flatten();
    match refused {
        Some((tier, limit)) => Err(ChannelError {
            code: 0,
            title: "messaging_limit_reached".into(),
            message: Some(format!(
                "this sender's messaging limit ({tier}: {limit} customers in 24 hours) is reached; Parley stopped before exceeding it"
            )),
        }),
        None => Ok(()),
    }
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

/// The Graph API base of a connection: its own `graph_base_url`, else the operator's
/// (`whatsapp_graph_base_url`).
fn graph_base(state: &AppState, c: &ChannelConnection) -> String {
    config_str(c, "graph_base_url")
        .unwrap_or(&state.settings.whatsapp_graph_base_url)
        .trim_end_matches('/')
        .to_owned()
}

/// A platform failure for a URL the guard refused (code 0, title `destination_not_allowed`).
fn refused_error() -> ChannelError {
    ChannelError {
        code: 0,
        title: crate::net::CODE.into(),
        message: Some(crate::net::MESSAGE.into()),
    }
}

/// Sends a Graph API `messages` request; returns the new message's `wamid`.
/// Errors: the Graph API's error object, or code 0 when it could not be reached.
async fn graph_send(
    state: &AppState,
    c: &ChannelConnection,
    body: &Value,
) -> Result<String, ChannelError> {
    let url = format!("{}/{}/messages", graph_base(state, c), c.external_key);
    let answer = graph_call(state, c, url, Some(body)).await?;
    answer["messages"][0]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ChannelError {
            code: 0,
            title: "unexpected_answer".into(),
            message: Some("the Graph API answer carries no messages[0].id".into()),
        })
}

/// One Graph API request of connection `c` with its access token, through the guarded client:
/// a POST of `body`, or a GET without one; returns the JSON answer. Errors: the Graph API's
/// error object; code 0 when the connection's token cannot be opened, the guard refuses the
/// address, or the Graph API could not be reached.
async fn graph_call(
    state: &AppState,
    c: &ChannelConnection,
    url: String,
    body: Option<&Value>,
) -> Result<Value, ChannelError> {
    let token = open_secret(state, c, "access_token").map_err(|e| ChannelError {
        code: 0,
        title: "connection_unusable".into(),
        message: Some(e),
    })?;
    let client = state
        .net
        .platform_client(&url, &state.settings.whatsapp_graph_base_url)
        .map_err(|_| refused_error())?;
    let request = match body {
        Some(b) => client.post(url).json(b),
        None => client.get(url),
    };
    let res = request
        .bearer_auth(token)
        .timeout(super::PLATFORM_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            if crate::net::refusal(&e).is_some() {
                return refused_error();
            }
            ChannelError {
                code: 0,
                title: "graph_unreachable".into(),
                message: Some(crate::assistant::provider::describe(e)),
            }
        })?;
    let status = res.status();
    let answer: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(graph_error(&answer["error"]));
    }
    Ok(answer)
}

/// Records the outcome of a send on the stored message: the platform's message id (WhatsApp
/// `wamid`, Messenger `mid`) and `accepted`, or `failed` with the error; `kind` and `details`
/// become its `meta.channel` type and details.
pub(crate) async fn record_send(
    state: &AppState,
    ws: WorkspaceId,
    m: &Message,
    kind: &str,
    details: Option<Value>,
    result: &Result<String, ChannelError>,
) -> Result<(), ApiError> {
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
    let kind = kind.to_owned();
    // A status callback may have moved the delivery on already (on another server): it is
    // kept when it is further along.
    edit_message(state, ws, m.id, wamid, move |_, meta| {
        let ch = meta.channel.get_or_insert_with(Default::default);
        ch.kind = kind;
        ch.details = details;
        advance(&mut ch.delivery, delivery);
        (true, ())
    })
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
            // Markdown as WhatsApp's own formatting (`*bold*`, `_italic_`...).
            "text": {"preview_url": false, "body": to_markup(&m.content, Markup::WhatsApp)},
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

/// An approved message template of a WhatsApp Business Account, as the template picker shows
/// it: Meta's `name`, `language`, `category`, the body's text and how many `{{n}}` parameters
/// the body takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateInfo {
    /// The template's name.
    pub name: String,
    /// Its language code (`en_US`).
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// The `BODY` component's text, with its `{{1}}`, `{{2}}`... placeholders.
    pub body: String,
    /// How many body parameters it takes (the highest `{{n}}`).
    pub parameters: usize,
}

/// The highest `{{n}}` placeholder in a template body (0 without any).
pub fn placeholder_count(body: &str) -> usize {
    let mut max = 0;
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find("}}")
            && let Ok(n) = rest[..end].trim().parse::<usize>()
        {
            max = max.max(n);
        }
    }
    max
}

/// The APPROVED message templates of the connection's WhatsApp Business Account, from the
/// Graph API (`GET /{business_account_id}/message_templates`, first 100, through the guarded
/// client), sorted by name and language. Errors: the Graph API's error, or code 0 when it could
/// not be reached.
pub async fn approved_templates(
    state: &AppState,
    c: &ChannelConnection,
) -> Result<Vec<TemplateInfo>, ChannelError> {
    let waba = config_str(c, "business_account_id").unwrap_or_default();
    let url = format!(
        "{}/{waba}/message_templates?fields=name,language,status,category,components&limit=100",
        graph_base(state, c)
    );
    let answer = graph_call(state, c, url, None).await?;
    let mut out: Vec<TemplateInfo> = answer["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|t| t["status"].as_str() == Some("APPROVED"))
        .filter_map(|t| {
            let body = t["components"]
                .as_array()?
                .iter()
                .find(|c| c["type"].as_str() == Some("BODY"))
                .and_then(|c| c["text"].as_str())
                .unwrap_or_default()
                .to_owned();
            Some(TemplateInfo {
                name: t["name"].as_str()?.to_owned(),
                language: t["language"].as_str()?.to_owned(),
                category: t["category"].as_str().unwrap_or_default().to_owned(),
                parameters: placeholder_count(&body),
                body,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.language).cmp(&(&b.name, &b.language)));
    Ok(out)
}

/// Downloads attachment `a` of a message that came through `c` ([`media::download`]); false
/// when it is not stored (the error is on `a`).
pub(crate) async fn download_attachment(
    state: &AppState,
    c: &ChannelConnection,
    a: &mut Attachment,
) -> bool {
    let token = match open_secret(state, c, "access_token") {
        Ok(t) => t,
        Err(e) => {
            a.download_error = Some(format!("the connection is unusable: {e}"));
            return false;
        }
    };
    let fetch = WhatsappMedia {
        state,
        graph: graph_base(state, c),
        token: &token,
    };
    media::download(state, c.workspace_id, a, &fetch).await
}

/// Media download through the Graph API: `GET /{media-id}` gives a short-lived URL, fetched
/// with the same bearer token through the guarded client ([`crate::net`]).
struct WhatsappMedia<'a> {
    state: &'a AppState,
    graph: String,
    token: &'a str,
}

impl media::Fetch for WhatsappMedia<'_> {
    async fn fetch(&self, media_id: &str) -> Result<Vec<u8>, String> {
        let net = &self.state.net;
        let info_url = format!("{}/{}", self.graph, media_id);
        let info = net
            .platform_client(&info_url, &self.state.settings.whatsapp_graph_base_url)
            .map_err(|r| format!("GET /{media_id}: {}: {r}", crate::net::CODE))?
            .get(info_url)
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
        // The URL is the platform's answer, not Parley's configuration: always guarded.
        let client = net
            .client_for(url)
            .map_err(|r| format!("media download: {}: {r}", crate::net::CODE))?;
        media::fetch_bytes(client.get(url).bearer_auth(self.token), "media download").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_takes_as_many_parameters_as_its_highest_placeholder() {
        assert_eq!(placeholder_count("Hi {{1}}, order {{2}} shipped"), 2);
        assert_eq!(placeholder_count("{{ 3 }} then {{1}}"), 3);
        assert_eq!(placeholder_count("No parameters, {{name}} is not one"), 0);
        assert_eq!(placeholder_count("unclosed {{1"), 0);
        assert_eq!(placeholder_count(""), 0);
    }

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
