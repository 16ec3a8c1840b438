//! Facebook Messenger through Meta's Messenger Platform: a Facebook Page connected to an
//! assistant.
//!
//! **Webhook** (`/webhooks/messenger/{connection id}`): `GET` answers Meta's verification
//! handshake and `POST` deliveries must carry `X-Hub-Signature-256` (HMAC-SHA256 of the raw
//! body with the app secret), exactly as WhatsApp's ([`super::meta::handshake`],
//! [`super::meta::check_delivery`]). A valid delivery is stored in the durable inbox (a
//! `messenger.delivery` job, [`crate::jobs`]) before it is answered 200 and processed from
//! there ([`process_delivery`]). A body is `{"object": "page", "entry": [{"id": PAGE_ID,
//! "time", "messaging": [EVENT...]}]}`; an entry for another Page of the same Meta app (one
//! callback URL serves all of an app's Pages) goes to that Page's connection when it is in the
//! same workspace, and is ignored otherwise.
//!
//! **Events** (`entry[].messaging[]`), each with `sender.id` and `recipient.id` (the customer's
//! page-scoped id, PSID, and the Page's id):
//! - `message`: a `user` message whose `external_id` is its `mid` (a redelivery stores nothing
//!   twice): text, quick replies (`quick_reply.payload` kept in `meta.channel.details`),
//!   attachments (`image`, `audio`, `video`, `file` downloaded from `payload.url` into the
//!   attachment store through the guarded client, retried, only from the operator's
//!   `messenger_media_hosts`; `location`, `fallback` links and stickers recorded). Answered by
//!   the assistant, except stickers.
//! - `message` with `is_echo`: a message the Page sent. Parley's own sends carry `metadata:
//!   "parley:{message id}"` and their echo only confirms the stored message's `mid`; any other
//!   echo (sent from the Page inbox or another app) is stored as an `agent` message (`meta.channel.
//!   type` `echo`, with `app_id`), never answered, and counts as the team writing (a hybrid
//!   assistant is taken over, as a team reply does).
//! - `postback` (a button; its `title`, else its `payload`, is the text; answered) and
//!   `reaction` (recorded, not answered). Neither always carries a `mid`: their `external_id`
//!   is then made from the customer, the time and the payload, equally stable across
//!   redeliveries.
//! - `delivery` (`mids[]`, `watermark`) and `read` (`watermark`): the delivery of the messages
//!   Parley sent moves to `delivered` / `read` ([`super::delivery::advance`]: only ever forward): the
//!   named `mids`, and every message sent at or before the watermark.
//! - Others (`optin`, `referral`, `account_linking`, handover...) are logged and skipped.
//!
//! **Sending** (`POST {messenger_graph_base_url}/me/messages` with the Page access token):
//! `messaging_type: RESPONSE` inside the 24-hour standard messaging window that opens with the
//! customer's last message; outside it only with a message tag the team chooses
//! ([`MessageTag`]: `messaging_type: MESSAGE_TAG`; `HUMAN_AGENT` is itself limited to 7 days),
//! otherwise refused before Meta is called (`window_closed`). Texts longer than Messenger's
//! 2,000 characters go as several messages. The Graph API's errors (`code`, `type`,
//! `error_subcode`, `message`) are recorded on the message.
//!
//! **Connecting** proves ownership first ([`prove`]): `GET /me?fields=id,name` with the Page
//! access token must name the Page (a Page token's `/me` is its Page; a Page's public fields
//! are readable with any token, so asking for the Page itself would prove nothing).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use parley_core::channel::{
    Attachment, ChannelConnection, ChannelError, ChannelKind, ChannelMessageMeta, Delivery,
    DeliveryStatus,
};
use parley_core::chat_markup::{Markup, to_markup};
use parley_core::model::{AssistantRef, ConversationInput, Message, MessageInput};
use parley_core::{Channel, ConversationId, Role, Timestamp};
use serde_json::{Number, Value, json};

pub mod payload;

use self::payload::{Event, Me, SendAnswer, Webhook};
use super::WithRaw;
use super::delivery::{Outgoing, advance, record_send};
use super::meta::{GraphError, GraphErrorBody};
use super::{conversation_key, edit_message, media, meta};
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest_with_jobs};
use crate::jobs::JobError;

/// Meta's Graph API, the default `messenger_graph_base_url`.
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.facebook.com/v21.0";
/// Messenger's standard messaging window after the customer's last message, in ms (24 h).
pub const WINDOW_MS: i64 = super::WINDOW_MS;
/// How long after the customer's last message the `HUMAN_AGENT` tag may be used, in ms (7 days).
pub const HUMAN_AGENT_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// Longest text of one Send API message, in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// The `metadata` prefix of Parley's sends, followed by the stored message's id: how an echo
/// of Parley's own message is recognised.
pub const METADATA_PREFIX: &str = "parley:";

/// A Messenger message tag: what lets a Page write outside the 24-hour standard messaging
/// window (Meta's list; each has a policy the team is responsible for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageTag {
    /// A person answering the customer's request, up to 7 days after their last message.
    HumanAgent,
    /// A change to the customer's account or application.
    AccountUpdate,
    /// A reminder or update about an event the customer registered for.
    ConfirmedEventUpdate,
    /// An update about a purchase the customer made.
    PostPurchaseUpdate,
}

impl MessageTag {
    /// Every tag, in the order the dashboard offers them.
    pub const ALL: [MessageTag; 4] = [
        MessageTag::HumanAgent,
        MessageTag::AccountUpdate,
        MessageTag::ConfirmedEventUpdate,
        MessageTag::PostPurchaseUpdate,
    ];

    /// The wire name (`HUMAN_AGENT`...).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageTag::HumanAgent => "HUMAN_AGENT",
            MessageTag::AccountUpdate => "ACCOUNT_UPDATE",
            MessageTag::ConfirmedEventUpdate => "CONFIRMED_EVENT_UPDATE",
            MessageTag::PostPurchaseUpdate => "POST_PURCHASE_UPDATE",
        }
    }

    /// Parses a wire name. Errors: any other text, with the accepted names.
    pub fn parse(s: &str) -> Result<MessageTag, String> {
        MessageTag::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown message tag {s:?}; expected one of {}",
                    MessageTag::ALL.map(MessageTag::as_str).join(", ")
                )
            })
    }
}

/// Whether a message may go to the customer at `now` (their last message at
/// `last_inbound_at`) with `tag`: without one inside the 24-hour window; with `HUMAN_AGENT`
/// within 7 days; with the other tags at any time. Errors: why not (`window_closed`'s message).
pub fn may_send(
    last_inbound_at: Option<Timestamp>,
    now: Timestamp,
    tag: Option<MessageTag>,
) -> Result<(), String> {
    let within = |ms: i64| last_inbound_at.is_some_and(|t| now < t.add_millis(ms));
    match tag {
        None if within(WINDOW_MS) => Ok(()),
        None => Err(match last_inbound_at {
            Some(t) => format!(
                "Messenger's 24-hour standard messaging window closed at {}: choose a message tag (e.g. HUMAN_AGENT) to write outside it",
                t.add_millis(WINDOW_MS).to_rfc3339()
            ),
            None => "the customer has not written yet: choose a message tag to write first".into(),
        }),
        Some(MessageTag::HumanAgent) if within(HUMAN_AGENT_WINDOW_MS) => Ok(()),
        Some(MessageTag::HumanAgent) => Err(
            "the HUMAN_AGENT tag is allowed for 7 days after the customer's last message, which have passed".into(),
        ),
        Some(_) => Ok(()),
    }
}

/// When the 24-hour window closes; `None` when the customer never wrote.
pub fn window_closes_at(last_inbound_at: Option<Timestamp>) -> Option<Timestamp> {
    last_inbound_at.map(|t| t.add_millis(WINDOW_MS))
}

/// `GET /webhooks/messenger/{id}`: Meta's verification handshake ([`meta::handshake`]);
/// 404 for an unknown connection.
pub async fn verify(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let c = super::webhook_connection(&st, ChannelKind::Messenger, &id).await?;
    meta::handshake(&st, &c, query, "Messenger")
}

/// `POST /webhooks/messenger/{id}`: a webhook delivery. 401 `signature_missing`, 403
/// `signature_invalid`, 400 `invalid_json`, 404 for an unknown connection, 500 when it cannot
/// be stored (Meta delivers it again); otherwise 200 once it is stored in the inbox.
pub async fn webhook(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = super::webhook_connection(&st, ChannelKind::Messenger, &id).await?;
    meta::check_delivery(&st, &c, &headers, &body, "Messenger")?;
    super::accept_delivery(&st, crate::jobs::MESSENGER_DELIVERY, &c, &body).await
}

/// Processes one stored delivery (the `messenger.delivery` job; `body` is the raw body, a
/// [`Webhook`]): every entry's events, in order. Errors: `Retry` when the store fails (what was
/// stored is recognised on the next run), `Permanent` for a body that is not JSON or not of the
/// webhook's shape.
pub async fn process_delivery(
    state: &AppState,
    c: &ChannelConnection,
    body: &str,
) -> Result<(), JobError> {
    let payload: Webhook = super::parse_delivery(body, "delivery")?;
    if payload.object.as_deref() != Some("page") {
        tracing::debug!(object = ?payload.object, "ignoring a Messenger delivery that is not for a page");
        return Ok(());
    }
    for entry in &payload.entry {
        let routed;
        let c = match &entry.id.0 {
            Some(page) if *page != c.external_key => {
                match meta::same_app_sender(state, c, page).await {
                    Some(other) => {
                        routed = other;
                        &routed
                    }
                    None => {
                        tracing::warn!(connection = %c.id, page,
                        "a Messenger entry for a Page not connected through this app reached this webhook; ignored");
                        continue;
                    }
                }
            }
            _ => c,
        };
        for event in &entry.messaging {
            handle_event(state, c, event).await?;
        }
    }
    Ok(())
}

async fn handle_event(
    state: &AppState,
    c: &ChannelConnection,
    event: &WithRaw<Event>,
) -> Result<(), ApiError> {
    let id = |p: &Option<payload::Party>| p.as_ref().and_then(|p| p.id.0.clone());
    let (sender, recipient) = (id(&event.sender), id(&event.recipient));
    // The customer is whichever side is not the Page (an echo goes from the Page to them).
    let customer = match (sender, recipient) {
        (Some(s), r) if s != c.external_key => Some(s).or(r),
        (_, Some(r)) if r != c.external_key => Some(r),
        _ => None,
    };
    let Some(customer) = customer else {
        tracing::debug!("a Messenger event without a customer (an opt-in by user_ref?); skipped");
        return Ok(());
    };
    let at = event
        .timestamp
        .as_ref()
        .and_then(Number::as_i64)
        .filter(|t| *t > 0)
        .map(Timestamp);
    if let Some(message) = &event.message {
        if message.is_echo == Some(true) {
            return echo(state, c, &customer, at, message).await;
        }
        return receive(state, c, &customer, at, translate_message(message)).await;
    }
    let translated = match (&event.postback, &event.reaction) {
        (Some(p), _) => Some(translate_postback(event, p, &customer)),
        (None, Some(r)) => Some(translate_reaction(event, r, &customer)),
        (None, None) => None,
    };
    if let Some(t) = translated {
        return receive(state, c, &customer, at, t).await;
    }
    if let Some(d) = &event.delivery {
        let watermark = d.watermark.map(Timestamp);
        let mids = d.mids.clone().unwrap_or_default();
        return receipt(
            state,
            c,
            &customer,
            DeliveryStatus::Delivered,
            &mids,
            watermark,
        )
        .await;
    }
    if let Some(r) = &event.read {
        let watermark = r.watermark.map(Timestamp);
        return receipt(state, c, &customer, DeliveryStatus::Read, &[], watermark).await;
    }
    let kind = event
        .raw
        .as_object()
        .and_then(|o| {
            o.keys()
                .find(|k| !matches!(k.as_str(), "sender" | "recipient" | "timestamp"))
        })
        .cloned()
        .unwrap_or_default();
    tracing::debug!(kind, "ignoring a Messenger event Parley does not record");
    Ok(())
}

/// What an event becomes: its `external_id`, text, `meta.channel`, and whether the assistant
/// answers it. `None` external id: the event cannot be recognised again, so it is skipped.
struct Translated {
    external_id: Option<String>,
    content: String,
    meta: ChannelMessageMeta,
    answer: bool,
}

/// The attachment types Parley downloads, and the [`Attachment::kind`] each is kept as.
fn downloaded_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "image" => "image",
        "audio" => "audio",
        "video" => "video",
        "file" => "document",
        _ => return None,
    })
}

fn translate_message(message: &WithRaw<payload::Message>) -> Translated {
    let text = message.text.clone().unwrap_or_default();
    let mut details = serde_json::Map::new();
    for key in ["quick_reply", "reply_to", "tags", "sticker_id", "app_id"] {
        if let Some(v) = message.raw.get(key).filter(|v| !v.is_null()) {
            details.insert(key.to_owned(), v.clone());
        }
    }
    let mut attachments = Vec::new();
    let mut labels = Vec::new();
    let mut answer = true;
    let sticker = message.is_sticker();
    for a in message.attachments.iter().flatten() {
        let kind = a.kind.as_deref().unwrap_or("unknown");
        let payload = a.payload.as_ref();
        let raw_payload = || payload.map_or(Value::Null, |p| p.raw.clone());
        if let Some(k) = downloaded_kind(kind) {
            let k = if sticker { "sticker" } else { k };
            attachments.push(Attachment {
                kind: k.to_owned(),
                media_id: payload.and_then(|p| p.url.clone()).unwrap_or_default(),
                ..Default::default()
            });
            labels.push(format!("[{}]", media_label(k)));
        } else if kind == "location" {
            let c = payload
                .and_then(|p| p.coordinates.clone())
                .unwrap_or_default();
            let shown = |n: Option<Number>| n.map_or_else(|| "null".to_owned(), |n| n.to_string());
            labels.push(format!("📍 {}, {}", shown(c.lat), shown(c.long)));
            details.insert("location".into(), raw_payload());
        } else if kind == "fallback" {
            // A shared link: recorded, never fetched.
            let title = a.title.as_deref().unwrap_or_default();
            let url = a
                .url
                .as_deref()
                .or(a.url_upper.as_deref())
                .or(payload.and_then(|p| p.url.as_deref()))
                .unwrap_or_default();
            labels.push(format!("🔗 {title} {url}").trim().to_owned());
            details.insert("fallback".into(), a.raw.clone());
        } else {
            labels.push(format!("[{kind} attachment]"));
            details.insert(kind.to_owned(), raw_payload());
        }
    }
    if sticker {
        answer = false;
    }
    let kind = if message.quick_reply.as_ref().is_some_and(Value::is_object) {
        "quick_reply"
    } else if sticker {
        "sticker"
    } else if labels.iter().any(|l| l.starts_with("📍")) && attachments.is_empty() {
        "location"
    } else if !labels.is_empty() {
        "attachments"
    } else {
        "text"
    };
    let content = match (text.is_empty(), labels.is_empty()) {
        (false, _) => text,
        (true, false) => labels.join(" "),
        (true, true) => {
            answer = false;
            "[message without content]".to_owned()
        }
    };
    Translated {
        external_id: message.mid.clone(),
        content,
        meta: ChannelMessageMeta {
            kind: kind.to_owned(),
            details: (!details.is_empty()).then_some(Value::Object(details)),
            refers_to: message.reply_to.as_ref().and_then(|r| r.mid.clone()),
            attachments,
            ..Default::default()
        },
        answer,
    }
}

fn media_label(kind: &str) -> &'static str {
    match kind {
        "image" => "image",
        "audio" => "audio",
        "video" => "video",
        "sticker" => "sticker",
        _ => "file",
    }
}

/// A stable id for an event without a `mid`: what it is, who, when, and its payload (`raw`,
/// the event's object as it came).
fn synthetic_id(what: &str, customer: &str, event: &Event, raw: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(raw.to_string().as_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let at = event
        .timestamp
        .as_ref()
        .map_or_else(|| "null".to_owned(), Number::to_string);
    format!("{what}:{customer}:{at}:{short}")
}

fn translate_postback(event: &Event, p: &WithRaw<payload::Postback>, customer: &str) -> Translated {
    let content = p
        .title
        .as_deref()
        .or(p.payload.as_deref())
        .filter(|t| !t.is_empty())
        .unwrap_or("[button]")
        .to_owned();
    Translated {
        external_id: Some(
            p.mid
                .clone()
                .unwrap_or_else(|| synthetic_id("postback", customer, event, &p.raw)),
        ),
        content,
        meta: ChannelMessageMeta {
            kind: "postback".into(),
            details: Some(json!({ "postback": p.raw })),
            ..Default::default()
        },
        answer: true,
    }
}

fn translate_reaction(event: &Event, r: &WithRaw<payload::Reaction>, customer: &str) -> Translated {
    let content = match (r.action.as_deref(), r.emoji.as_deref()) {
        (Some("unreact"), _) => "Removed a reaction".to_owned(),
        (_, Some(e)) if !e.is_empty() => format!("Reacted {e}"),
        _ => format!("Reacted {}", r.reaction.as_deref().unwrap_or("")),
    };
    Translated {
        external_id: Some(synthetic_id("reaction", customer, event, &r.raw)),
        content,
        meta: ChannelMessageMeta {
            kind: "reaction".into(),
            details: Some(json!({ "reaction": r.raw })),
            refers_to: r.mid.clone(),
            ..Default::default()
        },
        answer: false,
    }
}

/// The conversation input of one message from or to `customer` on `c`.
fn conversation_input(
    c: &ChannelConnection,
    customer: &str,
    message: MessageInput,
) -> ConversationInput {
    ConversationInput {
        external_id: Some(conversation_key(c, customer)),
        assistant: AssistantRef {
            id: Some(c.assistant_id),
            name: None,
            company: None,
        },
        contact: Some(format!("Messenger user {customer}")),
        session_id: Some(format!("fb-{customer}")),
        messages: vec![message],
        ..super::new_conversation(Channel::Messenger)
    }
}

/// Stores one customer event (downloading its files first) and, in the same transaction, the
/// follow-up jobs (the answer; later downloads of files that failed every attempt). An event
/// stored already stores nothing and is not answered again. Errors: the store's.
async fn receive(
    state: &AppState,
    c: &ChannelConnection,
    customer: &str,
    at: Option<Timestamp>,
    mut t: Translated,
) -> Result<(), ApiError> {
    let Some(external_id) = t.external_id.clone() else {
        tracing::warn!("a Messenger message without a mid; skipped");
        return Ok(());
    };
    let ws = c.workspace_id;
    if state
        .store
        .channels()
        .message_by_external_id(ws, &external_id)
        .await?
        .is_some()
    {
        tracing::debug!(mid = external_id, "Messenger message already stored");
        return Ok(());
    }
    let answer = t.answer.then_some(customer);
    let jobs = super::inbound_jobs(state, c, &mut t.meta.attachments, &mut t.content, answer).await;
    let created_at = Some(at.unwrap_or_else(Timestamp::now));
    let message = super::channel_message(external_id, Role::User, t.content, created_at, t.meta);
    ingest_with_jobs(
        state,
        ws,
        vec![IngestRequest::Create(Box::new(conversation_input(
            c, customer, message,
        )))],
        jobs,
    )
    .await?;
    Ok(())
}

/// A message the Page sent (`is_echo`). Parley's own (its `metadata`) only confirms the stored
/// message's `mid`; any other is stored once as an `agent` message, not answered, and counts as
/// the team writing. Errors: the store's.
async fn echo(
    state: &AppState,
    c: &ChannelConnection,
    customer: &str,
    at: Option<Timestamp>,
    message: &WithRaw<payload::Message>,
) -> Result<(), ApiError> {
    let ws = c.workspace_id;
    let Some(mid) = message.mid.as_deref() else {
        return Ok(());
    };
    if message
        .metadata
        .as_deref()
        .is_some_and(|m| m.starts_with(METADATA_PREFIX))
    {
        // Parley's own send, stored already: its mid is recorded from the Send API's answer
        // (the echo may come first, so it is recognised by its metadata, not its mid).
        tracing::debug!(mid, "echo of a message Parley sent");
        return Ok(());
    }
    if state
        .store
        .channels()
        .message_by_external_id(ws, mid)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let mut t = translate_message(message);
    t.meta.kind = "echo".into();
    let mut details = t
        .meta
        .details
        .take()
        .and_then(|d| d.as_object().cloned())
        .unwrap_or_default();
    details.insert("is_echo".into(), json!(true));
    t.meta.details = Some(Value::Object(details));
    // Files the Page sent are kept as links: Parley did not receive them from the customer.
    let mut input = super::channel_message(
        mid.to_owned(),
        Role::Agent,
        t.content,
        Some(at.unwrap_or_else(Timestamp::now)),
        t.meta,
    );
    input.meta.author = Some(parley_core::model::Author {
        user_id: None,
        name: "Facebook Page".into(),
    });
    let outcome = ingest_with_jobs(
        state,
        ws,
        vec![IngestRequest::Create(Box::new(conversation_input(
            c, customer, input,
        )))],
        Vec::new(),
    )
    .await?;
    // Someone other than the assistant wrote from the Page: as a team reply, it takes a
    // hybrid assistant's conversation over.
    if let Some(o) = outcome.first().filter(|o| o.stored() > 0)
        && let Some(d) = state
            .store
            .conversations()
            .get_conversation(ws, o.conversation_id)
            .await?
    {
        crate::team::mark_team_message(state, ws, &d).await?;
    }
    Ok(())
}

/// Applies a `delivery` or `read` receipt of `customer` to the messages Parley sent them: the
/// ones named in `mids`, and every one sent at or before `watermark`. Only messages Parley sent
/// successfully (delivery `accepted` or `sent`, or further along) move, and only forward.
async fn receipt(
    state: &AppState,
    c: &ChannelConnection,
    customer: &str,
    status: DeliveryStatus,
    mids: &[String],
    watermark: Option<Timestamp>,
) -> Result<(), ApiError> {
    let ws = c.workspace_id;
    let at = watermark.unwrap_or_else(Timestamp::now);
    let mut targets: Vec<parley_core::MessageId> = Vec::new();
    for mid in mids {
        if let Some((_, m)) = state
            .store
            .channels()
            .message_by_external_id(ws, mid)
            .await?
        {
            targets.push(m.id);
        }
    }
    if let Some(mark) = watermark
        && let Some(id) = state
            .store
            .channels()
            .conversation_by_external_id(ws, &conversation_key(c, customer))
            .await?
        && let Some(export) = super::export_one(state, ws, id).await?
    {
        targets.extend(
            export
                .messages
                .iter()
                .filter(|m| sent_by_parley(m) && m.created_at <= mark)
                .map(|m| m.id),
        );
    }
    targets.sort();
    targets.dedup();
    for id in targets {
        let delivery = Delivery {
            status,
            at,
            errors: vec![],
        };
        edit_message(state, ws, id, None, move |_, meta| {
            let Some(ch) = meta.channel.as_mut() else {
                return (false, ());
            };
            // A failed send was never delivered, whatever a watermark says.
            if ch
                .delivery
                .as_ref()
                .is_none_or(|d| d.status == DeliveryStatus::Failed)
            {
                return (false, ());
            }
            (advance(&mut ch.delivery, delivery), ())
        })
        .await?;
    }
    Ok(())
}

/// Whether `m` is a message Parley sent to the customer (an answer or a team reply with a
/// delivery that did not fail).
fn sent_by_parley(m: &Message) -> bool {
    matches!(m.role, Role::Assistant | Role::Agent)
        && m.meta
            .channel
            .as_ref()
            .and_then(|c| c.delivery.as_ref())
            .is_some_and(|d| d.status != DeliveryStatus::Failed)
}

/// The pieces a text goes out as: at most [`MAX_TEXT_CHARS`] characters each, cut after a
/// line break or a space where one is near the limit.
pub fn split_text(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest: Vec<char> = text.chars().collect();
    while rest.len() > MAX_TEXT_CHARS {
        let window = &rest[..MAX_TEXT_CHARS];
        let cut = window
            .iter()
            .rposition(|c| *c == '\n')
            .or_else(|| window.iter().rposition(|c| c.is_whitespace()))
            .filter(|i| *i >= MAX_TEXT_CHARS / 2)
            .map_or(MAX_TEXT_CHARS, |i| i + 1);
        out.push(rest[..cut].iter().collect::<String>().trim_end().to_owned());
        rest.drain(..cut);
    }
    let last: String = rest.into_iter().collect();
    if !last.trim().is_empty() || out.is_empty() {
        out.push(last);
    }
    out
}

/// A Graph API error object (`{"message", "type", "code", "error_subcode", "fbtrace_id"}`) as
/// a [`ChannelError`]: Meta's `code`, its `type` as the title, its message with the subcode.
pub fn graph_error(e: &GraphError) -> ChannelError {
    let message = e.message.as_deref().map(|m| match e.error_subcode {
        Some(sub) => format!("{m} (subcode {sub})"),
        None => m.to_owned(),
    });
    ChannelError {
        code: e.code.unwrap_or(0),
        title: e
            .kind
            .as_deref()
            .or(e.message.as_deref())
            .unwrap_or("unknown error")
            .to_owned(),
        message,
    }
}

fn graph_base(state: &AppState) -> String {
    state
        .settings
        .messenger_graph_base_url
        .trim_end_matches('/')
        .to_owned()
}

/// One Send API call (`POST /me/messages`) with the Page access token; returns the new
/// message's `mid`. Errors: the Graph API's error; code 0 when it could not be reached or the
/// token cannot be opened.
async fn send_api(
    state: &AppState,
    c: &ChannelConnection,
    body: &Value,
) -> Result<String, ChannelError> {
    let token = super::send_secret(state, c, "access_token")?;
    let url = format!("{}/me/messages", graph_base(state));
    // The operator's Graph API: trusted (nothing here came from a workspace).
    let res = state
        .net
        .trusted()
        .post(url)
        .bearer_auth(token)
        .json(body)
        .timeout(super::PLATFORM_TIMEOUT)
        .send()
        .await
        .map_err(|e| ChannelError {
            code: 0,
            title: "graph_unreachable".into(),
            message: Some(crate::assistant::provider::describe(e)),
        })?;
    if !res.status().is_success() {
        return Err(graph_error(
            &meta::answer::<GraphErrorBody>(res).await.error,
        ));
    }
    meta::answer::<SendAnswer>(res)
        .await
        .message_id
        .ok_or_else(|| ChannelError {
            code: 0,
            title: "unexpected_answer".into(),
            message: Some("the Send API answer carries no message_id".into()),
        })
}

/// Sends stored message `m` (an answer or a team reply) to customer `to` of conversation
/// `conversation`, as [`may_send`] allows with `tag`, and records the outcome on it (its first
/// `mid`, `accepted`; or `failed` with the error, `window_closed` when Parley refused before
/// calling Meta). Errors: the send's failure (also recorded).
pub async fn reply(
    state: &AppState,
    c: &ChannelConnection,
    conversation: ConversationId,
    to: &str,
    m: &Message,
    tag: Option<MessageTag>,
) -> Result<String, ChannelError> {
    let ws = c.workspace_id;
    let last_inbound = crate::channels::delivery::last_inbound_at(state, ws, conversation).await;
    let result = match may_send(last_inbound, Timestamp::now(), tag) {
        Err(why) => Err(ChannelError {
            code: 0,
            title: "window_closed".into(),
            message: Some(why),
        }),
        Ok(()) => {
            // Messenger shows WhatsApp's `*bold*` / `_italic_` / `~strike~` marks too.
            let text = to_markup(&m.content, Markup::WhatsApp);
            let mut first: Option<Result<String, ChannelError>> = None;
            for piece in split_text(&text) {
                let mut body = json!({
                    "recipient": {"id": to},
                    "messaging_type": if tag.is_some() { "MESSAGE_TAG" } else { "RESPONSE" },
                    "message": {"text": piece, "metadata": format!("{METADATA_PREFIX}{}", m.id)},
                });
                if let Some(t) = tag {
                    body["tag"] = json!(t.as_str());
                }
                let sent = send_api(state, c, &body).await;
                let failed = sent.is_err();
                if first.is_none() || failed {
                    first = Some(sent);
                }
                if failed {
                    break;
                }
            }
            first.unwrap_or_else(|| {
                Err(ChannelError {
                    code: 0,
                    title: "empty_message".into(),
                    message: Some("nothing to send".into()),
                })
            })
        }
    };
    let details = tag.map(|t| json!({ "message_tag": t.as_str() }));
    let out = Outgoing {
        platform: "Messenger",
        kind: Some("text"),
        details,
        status: DeliveryStatus::Accepted,
    };
    record_send(state, ws, m, out, &result).await;
    result
}

/// How an attachment's download went.
pub(crate) enum Download {
    /// In the attachment store.
    Stored,
    /// Every attempt failed: a later `media.download` job tries again.
    Failed,
    /// Its URL is not on an allowed host (or there is none): recorded, never fetched.
    NotAllowed,
}

impl Download {
    /// Whether a later `media.download` job should try again.
    pub(crate) fn retry(&self) -> bool {
        matches!(self, Download::Failed)
    }
}

/// Whether `url` is an http(s) URL on one of the operator's `messenger_media_hosts` (the host
/// itself or a subdomain).
pub fn media_host_allowed(state: &AppState, url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let Some(host) = u.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    matches!(u.scheme(), "http" | "https")
        && state.settings.messenger_media_hosts.iter().any(|h| {
            host == *h
                || host
                    .strip_suffix(h.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        })
}

/// Downloads attachment `a` of a message that came through `c`, from its URL when that is on
/// an allowed host.
pub(crate) async fn download_attachment(
    state: &AppState,
    c: &ChannelConnection,
    a: &mut Attachment,
) -> Download {
    if !media_host_allowed(state, &a.media_id) {
        a.download_error = Some(
            "not downloaded: the URL is not on one of the server's messenger_media_hosts".into(),
        );
        return Download::NotAllowed;
    }
    if media::download(state, c.workspace_id, a, &MessengerMedia { state }).await {
        Download::Stored
    } else {
        Download::Failed
    }
}

/// Messenger files are fetched from their `payload.url` (Meta's CDN, no token), through the
/// guarded client.
struct MessengerMedia<'a> {
    state: &'a AppState,
}

impl media::Fetch for MessengerMedia<'_> {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let client = self
            .state
            .net
            .client_for(url)
            .map_err(|r| format!("attachment download: {}: {r}", crate::net::CODE))?;
        media::fetch_bytes(client.get(url), "attachment download").await
    }
}

/// Proves that `token` is Page `page_id`'s access token, at the operator's Graph API
/// (`messenger_graph_base_url`): `GET /me?fields=id,name` must answer that Page. On success
/// also returns the Page's name (for the connection's `page_name`).
pub async fn prove(state: &AppState, page_id: &str, token: &str) -> (super::Proof, Option<String>) {
    let url = format!("{}/me?fields=id,name", graph_base(state));
    let res = match state
        .net
        .trusted()
        .get(url)
        .bearer_auth(token)
        .timeout(super::PLATFORM_TIMEOUT)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return (
                super::Proof::Unreachable(crate::assistant::provider::describe(e)),
                None,
            );
        }
    };
    let status = res.status();
    if status.is_server_error() {
        return (
            super::Proof::Unreachable(format!("the Graph API failed (HTTP {})", status.as_u16())),
            None,
        );
    }
    if !status.is_success() {
        let e = graph_error(&meta::answer::<GraphErrorBody>(res).await.error);
        return (
            super::Proof::Refused(format!("{} ({})", e.message.unwrap_or(e.title), e.code)),
            None,
        );
    }
    let me: Me = meta::answer(res).await;
    if me.id.0.as_deref() != Some(page_id) {
        return (
            super::Proof::Refused(format!(
                "this access token is not Page {page_id}'s: a Page access token of that Page is needed"
            )),
            None,
        );
    }
    (super::Proof::Proven, me.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn postback(event: &Value, customer: &str) -> Translated {
        let e: WithRaw<Event> = read(event.clone());
        translate_postback(&e, e.postback.as_ref().unwrap(), customer)
    }

    #[test]
    fn tags_parse_by_their_wire_names() {
        for t in MessageTag::ALL {
            assert_eq!(MessageTag::parse(t.as_str()), Ok(t));
        }
        assert!(MessageTag::parse("human_agent").is_err());
        assert!(MessageTag::parse("NON_PROMOTIONAL_SUBSCRIPTION").is_err());
    }

    #[test]
    fn the_window_and_the_tags_decide_what_may_go() {
        let t = Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        let hour = 3600 * 1000;
        assert!(may_send(Some(t), t.add_millis(WINDOW_MS - 1), None).is_ok());
        assert!(may_send(Some(t), t.add_millis(WINDOW_MS), None).is_err());
        assert!(may_send(None, t, None).is_err());
        let human = Some(MessageTag::HumanAgent);
        assert!(may_send(Some(t), t.add_millis(48 * hour), human).is_ok());
        assert!(may_send(Some(t), t.add_millis(HUMAN_AGENT_WINDOW_MS), human).is_err());
        let update = Some(MessageTag::PostPurchaseUpdate);
        assert!(may_send(Some(t), t.add_millis(30 * 24 * hour), update).is_ok());
        assert!(may_send(None, t, update).is_ok());
    }

    #[test]
    fn long_texts_are_split_at_the_limit_on_a_space() {
        assert_eq!(split_text("hello"), vec!["hello".to_owned()]);
        let word = "abcd ".repeat(1000); // 5,000 characters
        let parts = split_text(&word);
        assert!(parts.len() == 3, "{}", parts.len());
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
        assert_eq!(parts.concat().replace(' ', ""), word.replace(' ', ""));
        // No space at all: cut at the limit.
        let solid = "é".repeat(MAX_TEXT_CHARS + 1);
        let parts = split_text(&solid);
        assert_eq!(parts[0].chars().count(), MAX_TEXT_CHARS);
        assert_eq!(parts[1], "é");
    }

    #[test]
    fn graph_errors_keep_their_code_type_and_subcode() {
        let e = graph_error(
            &serde_json::from_value(
                json!({"message": "(#10) This message is sent outside of allowed window.",
            "type": "OAuthException", "code": 10, "error_subcode": 2018278, "fbtrace_id": "x"}),
            )
            .unwrap(),
        );
        assert_eq!(e.code, 10);
        assert_eq!(e.title, "OAuthException");
        assert_eq!(
            e.message.as_deref(),
            Some("(#10) This message is sent outside of allowed window. (subcode 2018278)")
        );
    }

    #[test]
    fn messages_translate_by_their_content() {
        let t = translate_message(&read(json!({"mid": "m1", "text": "Action",
            "quick_reply": {"payload": "PICK_ACTION"}})));
        assert_eq!(
            (t.meta.kind.as_str(), t.content.as_str(), t.answer),
            ("quick_reply", "Action", true)
        );
        assert_eq!(
            t.meta.details.unwrap()["quick_reply"]["payload"],
            "PICK_ACTION"
        );
        let t = translate_message(&read(json!({"mid": "m2", "attachments": [
            {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/a.jpg"}},
            {"type": "file", "payload": {"url": "https://cdn.fbsbx.com/b.pdf"}}]})));
        assert_eq!(t.content, "[image] [file]");
        assert_eq!(t.meta.attachments.len(), 2);
        assert_eq!(t.meta.attachments[1].kind, "document");
        let t = translate_message(&read(
            json!({"mid": "m3", "sticker_id": 369239263222822_i64,
            "attachments": [{"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/s.png"}}]}),
        ));
        assert_eq!((t.meta.kind.as_str(), t.answer), ("sticker", false));
        let t = translate_message(&read(json!({"mid": "m4", "attachments": [
            {"type": "location", "payload": {"coordinates": {"lat": 1.5, "long": -2.25}}}]})));
        assert_eq!(
            (t.meta.kind.as_str(), t.content.as_str()),
            ("location", "📍 1.5, -2.25")
        );
    }

    #[test]
    fn events_without_a_mid_get_a_stable_id() {
        let e = json!({"timestamp": 1472028006107_i64, "postback": {"payload": "X"}});
        let a = postback(&e, "u1").external_id;
        assert_eq!(a, postback(&e, "u1").external_id);
        assert_ne!(a, postback(&e, "u2").external_id);
        let other = json!({"timestamp": 1472028006107_i64, "postback": {"payload": "Y"}});
        assert_ne!(a, postback(&other, "u1").external_id);
    }
}
