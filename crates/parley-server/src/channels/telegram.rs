//! Telegram bots through the Bot API.
//!
//! **Connecting** first proves the token controls the bot ([`prove`]: `getMe` at the
//! operator's Bot API must report the bot id the token starts with), then calls `setWebhook`
//! (`{api_base_url}/bot{token}/setWebhook`) with the URL
//! `{public_base_url}/webhooks/telegram/{connection id}`, a random `secret_token` and
//! `allowed_updates` = message, edited_message, callback_query. A connection's own
//! `api_base_url` (a local Bot API server) is reached through the guarded client
//! ([`crate::net`]); without one it uses the operator's `telegram_api_base_url`.
//!
//! **Webhook** (`POST /webhooks/telegram/{id}`): every delivery must carry
//! `X-Telegram-Bot-Api-Secret-Token` equal to that secret (constant-time compare; missing:
//! 401 `secret_missing`, wrong: 403 `secret_invalid`, both logged). It is stored as it came
//! in the durable inbox (a `telegram.delivery` job, [`crate::jobs`]) before it is answered
//! 200, and processed from there (retried with backoff, taken over after a crash). Each update becomes one message whose `external_id` is its
//! `update_id`, so redelivered updates store nothing twice; the conversation is the chat's.
//! Text, captions, photos (the largest size), voice notes, audio, documents, videos and
//! stickers are handled, files downloaded with `getFile`; edited messages are recorded as
//! `[edited] ...` without an answer, and mark the original (`edited_by`); other updates (callback queries, inline queries) are
//! recorded as unsupported.
//!
//! **Replies** go out with `sendMessage`, split into parts of at most 4,096 characters (UTF-16
//! code units, as Telegram counts), honouring `parameters.retry_after` of a 429 answer up to
//! [`MAX_RETRY_AFTER`].

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use parley_core::channel::{
    Attachment, ChannelConnection, ChannelError, ChannelKind, ChannelMessageMeta, DeliveryStatus,
};
use parley_core::chat_markup::{Markup, to_markup};
use parley_core::model::{AssistantRef, Message};
use parley_core::{Channel, ConversationId, Role, Timestamp, WorkspaceId};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

pub mod payload;

use self::payload::{Envelope, Update, User};
use super::delivery::{Outgoing, record_send};
use super::{config_str, conversation_key, edit_message, media, open_secret};
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest_with_jobs};
use crate::jobs::JobError;

/// Telegram's Bot API, the default `api_base_url`.
pub const DEFAULT_API_BASE_URL: &str = "https://api.telegram.org";
/// Longest text of one message, in UTF-16 code units.
pub const MAX_MESSAGE_UNITS: usize = 4096;
/// Longest `retry_after` Parley waits for; a longer one fails the send (recorded).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Most attempts per part when Telegram keeps answering 429.
pub const MAX_SEND_ATTEMPTS: u32 = 3;

/// The bot's id: the digits before `:` in a token `123456789:AAH...`; `None` for anything
/// that is not shaped like a token.
pub fn bot_id(token: &str) -> Option<&str> {
    let (id, secret) = token.split_once(':')?;
    let ok = !id.is_empty()
        && id.len() <= 20
        && id.bytes().all(|b| b.is_ascii_digit())
        && secret.len() >= 20
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(id)
}

/// The Bot API base of a connection: its own `api_base_url`, else the operator's
/// (`telegram_api_base_url`).
fn api_base(state: &AppState, c: &ChannelConnection) -> String {
    config_str(c, "api_base_url")
        .unwrap_or(&state.settings.telegram_api_base_url)
        .trim_end_matches('/')
        .to_owned()
}

/// A Bot API answer that is not `ok`: `{"ok": false, "error_code", "description",
/// "parameters": {"retry_after"}}`.
#[derive(Debug, Clone)]
struct BotError {
    error: ChannelError,
    retry_after: Option<u64>,
}

fn bot_error(status: u16, body: &Envelope) -> BotError {
    BotError {
        error: ChannelError {
            code: body.error_code.unwrap_or(i64::from(status)),
            title: body
                .description
                .clone()
                .unwrap_or_else(|| "Telegram refused the request".to_owned()),
            message: None,
        },
        retry_after: body.parameters.as_ref().and_then(|p| p.retry_after),
    }
}

/// A failure to reach the Bot API at all (code 0): `title` is `telegram_unreachable`, or
/// `destination_not_allowed` when the guard refused the connection's `api_base_url`.
fn unreachable(title: &str, message: String) -> BotError {
    BotError {
        error: ChannelError {
            code: 0,
            title: title.into(),
            message: Some(message),
        },
        retry_after: None,
    }
}

/// Calls a Bot API method at `api` (the operator's Bot API with the trusted client, anything
/// else through the guarded one: see [`crate::net::Net::platform_client`]); returns its
/// `result` read into `T` (its default when the result is not of that shape).
async fn call<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    api: &str,
    token: &str,
    method: &str,
    body: &Value,
) -> Result<T, BotError> {
    let url = format!("{api}/bot{token}/{method}");
    let client = state
        .net
        .platform_client(&url, &state.settings.telegram_api_base_url)
        .map_err(|r| unreachable(crate::net::CODE, r.to_string()))?;
    let res = client
        .post(url)
        .timeout(super::PLATFORM_TIMEOUT)
        .json(body)
        .send()
        .await
        .map_err(|e| {
            let title = if crate::net::refusal(&e).is_some() {
                crate::net::CODE
            } else {
                "telegram_unreachable"
            };
            unreachable(title, crate::assistant::provider::describe(e))
        })?;
    let status = res.status().as_u16();
    let answer: Envelope = super::meta::answer(res).await;
    if answer.ok == Some(true) {
        Ok(answer
            .result
            .and_then(|r| T::deserialize(r).ok())
            .unwrap_or_default())
    } else {
        Err(bot_error(status, &answer))
    }
}

/// Proves that `token` controls the bot it names: `getMe` at the operator's Bot API
/// (`telegram_api_base_url`, never a URL a workspace gave, which could answer anything) must
/// accept the token and report the bot id the token starts with.
pub async fn prove(state: &AppState, token: &str) -> super::Proof {
    let api = state.settings.telegram_api_base_url.trim_end_matches('/');
    match call::<User>(state, api, token, "getMe", &json!({})).await {
        Ok(me) => {
            let claimed = bot_id(token).unwrap_or_default();
            let reported = me.id.map(|id| id.to_string());
            if reported.as_deref() == Some(claimed) && me.is_bot != Some(false) {
                super::Proof::Proven
            } else {
                super::Proof::Refused(format!(
                    "Telegram reports this token's bot as {}, not {claimed}",
                    shown(me.id)
                ))
            }
        }
        Err(e) if e.error.code == 0 => super::Proof::Unreachable(e.error.to_string()),
        Err(e) => super::Proof::Refused(format!("getMe: {}", e.error.title)),
    }
}

/// Registers the connection's webhook with Telegram. Errors: 422 `telegram_rejected` with
/// Telegram's description; 422 `destination_not_allowed` (field `api_base_url`) when the
/// connection's own Bot API URL is one the server does not connect to; 502
/// `telegram_unreachable`.
pub async fn set_webhook(
    state: &AppState,
    c: &ChannelConnection,
    token: &str,
    secret: &str,
) -> Result<(), ApiError> {
    let url = format!(
        "{}/webhooks/telegram/{}",
        config_str(c, "public_base_url").unwrap_or_default(),
        c.id
    );
    let body = json!({
        "url": url,
        "secret_token": secret,
        "allowed_updates": ["message", "edited_message", "callback_query"],
    });
    match call::<Value>(state, &api_base(state, c), token, "setWebhook", &body).await {
        Ok(_) => Ok(()),
        Err(e) if e.error.title == crate::net::CODE => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::net::CODE,
            format!("api_base_url: {}", crate::net::MESSAGE),
        )
        .with_field("api_base_url")),
        Err(e) if e.error.code == 0 => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "telegram_unreachable",
            format!("could not reach the Bot API: {}", e.error),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "telegram_rejected",
            format!("Telegram refused the webhook: {}", e.error.title),
        )
        .with_field("bot_token")),
    }
}

/// Asks Telegram to stop sending updates (best effort, when a connection is removed).
pub async fn delete_webhook(state: &AppState, c: &ChannelConnection) {
    let Ok(token) = open_secret(state, c, "bot_token") else {
        return;
    };
    if let Err(e) = call::<Value>(
        state,
        &api_base(state, c),
        &token,
        "deleteWebhook",
        &json!({}),
    )
    .await
    {
        tracing::warn!(connection = %c.id, error = %e.error, "deleteWebhook failed");
    }
}

/// `POST /webhooks/telegram/{id}`: an update. 401 `secret_missing`, 403 `secret_invalid`, 400
/// `invalid_json`, 404 for an unknown connection, 500 when it cannot be stored (Telegram
/// delivers it again); otherwise 200 once it is stored in the inbox, to be processed in the
/// background ([`process_delivery`]).
pub async fn webhook(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = super::webhook_connection(&st, ChannelKind::Telegram, &id).await?;
    let expected = open_secret(&st, &c, "webhook_secret").map_err(ApiError::internal)?;
    match headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
    {
        None => {
            tracing::warn!(connection = %c.id, "refused a Telegram update without the secret token");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "secret_missing",
                "X-Telegram-Bot-Api-Secret-Token is required",
            ));
        }
        Some(given) if !bool::from(given.ct_eq(expected.as_bytes())) => {
            tracing::warn!(connection = %c.id, "refused a Telegram update with a wrong secret token");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "secret_invalid",
                "X-Telegram-Bot-Api-Secret-Token is wrong",
            ));
        }
        Some(_) => {}
    }
    super::check_json(&body)?;
    super::accept_delivery(&st, crate::jobs::TELEGRAM_DELIVERY, &c, &body).await
}

/// Processes one stored update (the `telegram.delivery` job; `body` is the raw body, an
/// [`Update`]). Errors: `Retry` when the store fails (what was stored is recognised on the next
/// run), `Permanent` for a body that is not JSON or not of an update's shape.
pub async fn process_delivery(
    state: &AppState,
    c: &ChannelConnection,
    body: &str,
) -> Result<(), JobError> {
    let update: Update = super::parse_delivery(body, "update")?;
    Ok(process(state, c, &update).await?)
}

/// "First Last (@username)" of a Telegram `User` or `Chat`.
fn display_name(u: &User) -> String {
    let mut name = [u.first_name.as_deref(), u.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() {
        name = u.title.clone().unwrap_or_default();
    }
    match u.username.as_deref() {
        Some(handle) if name.is_empty() => format!("@{handle}"),
        Some(handle) => format!("{name} (@{handle})"),
        None if name.is_empty() => format!("user {}", shown(u.id)),
        None => name,
    }
}

/// An id as the Bot API wrote it; `null` when it was left out.
fn shown(id: Option<i64>) -> String {
    id.map_or_else(|| "null".to_owned(), |i| i.to_string())
}

/// The file a message carries, as an attachment (the largest photo size).
fn attachment_of(m: &payload::Message) -> Option<Attachment> {
    let (kind, file_id, mime_type, file_name) = if let Some(sizes) = &m.photo {
        let p = sizes.iter().max_by_key(|p| {
            p.file_size
                .unwrap_or(p.width.unwrap_or(0) * p.height.unwrap_or(0))
        })?;
        ("image", p.file_id.clone(), None, None)
    } else {
        let (kind, f) = [
            ("voice", &m.voice),
            ("audio", &m.audio),
            ("document", &m.document),
            ("video", &m.video),
            ("sticker", &m.sticker),
        ]
        .into_iter()
        .find_map(|(k, f)| f.as_ref().map(|f| (k, f)))?;
        (
            kind,
            f.file_id.clone(),
            f.mime_type.clone(),
            f.file_name.clone(),
        )
    };
    Some(Attachment {
        kind: kind.to_owned(),
        media_id: file_id.unwrap_or_default(),
        mime_type,
        file_name,
        ..Default::default()
    })
}

/// What an update is about, for [`process`]: its kind's name, the object as it came, the
/// message when it is one (new or edited), who sent it and in which chat, and the callback
/// data of a button press.
struct Inbound<'a> {
    kind: &'a str,
    raw: &'a Value,
    message: Option<&'a payload::Message>,
    edited: bool,
    chat: Option<&'a User>,
    from: Option<&'a User>,
    data: Option<&'a str>,
}

impl<'a> Inbound<'a> {
    fn of(update: &'a Update) -> Option<Inbound<'a>> {
        let message = |kind, m: &'a super::WithRaw<payload::Message>, edited| Inbound {
            kind,
            raw: &m.raw,
            message: Some(&m.parsed),
            edited,
            chat: m.chat.as_ref(),
            from: m.from.as_ref(),
            data: None,
        };
        if let Some(m) = &update.message {
            return Some(message("message", m, false));
        }
        if let Some(m) = &update.edited_message {
            return Some(message("edited_message", m, true));
        }
        // Of the other kinds, the first by name (an update carries one).
        let other = update.other.iter().next();
        match (&update.callback_query, other) {
            (Some(q), o) if o.is_none_or(|(name, _)| name.as_str() > "callback_query") => {
                Some(Inbound {
                    kind: "callback_query",
                    raw: &q.raw,
                    message: None,
                    edited: false,
                    chat: None,
                    from: q.from.as_ref(),
                    data: q.data.as_deref(),
                })
            }
            (_, Some((name, o))) => Some(Inbound {
                kind: name,
                raw: &o.raw,
                message: None,
                edited: false,
                chat: o.chat.as_ref(),
                from: o.from.as_ref(),
                data: o.raw.get("data").and_then(Value::as_str),
            }),
            (_, None) => None,
        }
    }
}

/// The stored message's channel details for update `u` (kind, the message it refers to,
/// details from the raw object, its attachment) and its text or caption.
fn meta_of(u: &Inbound<'_>) -> (ChannelMessageMeta, Option<String>) {
    let (kind, edited, m) = (u.kind, u.edited, u.message);
    let message_id = m.and_then(|m| m.message_id);
    let mut meta = ChannelMessageMeta {
        kind: if edited { "edited".into() } else { kind.into() },
        refers_to: m
            .and_then(|m| m.reply_to_message.as_ref()?.message_id)
            .or(if edited { message_id } else { None })
            .map(|id| id.to_string()),
        ..Default::default()
    };
    let text = m.and_then(|m| m.text.clone().or(m.caption.clone()));
    if let Some(m) = m {
        let mut details = serde_json::Map::new();
        details.insert(
            "message_id".into(),
            u.raw.get("message_id").cloned().unwrap_or(Value::Null),
        );
        for k in ["forward_from", "forward_from_chat", "entities", "sticker"] {
            if let Some(v) = u.raw.get(k) {
                details.insert(k.into(), v.clone());
            }
        }
        meta.details = Some(Value::Object(details));
        if let Some(a) = attachment_of(m) {
            if meta.kind == "message" {
                meta.kind = a.kind.clone();
            }
            meta.attachments.push(a);
        } else if meta.kind == "message" {
            meta.kind = "text".into();
        }
    } else {
        meta.details = Some(u.raw.clone());
    }
    (meta, text)
}

/// Downloads the attachments of `meta` (a `media.download` job for each that failed) and
/// transcribes / describes them when the connection asks for it, adding that to `text`.
/// Returns the jobs.
async fn fetch_media(
    state: &AppState,
    c: &ChannelConnection,
    meta: &mut ChannelMessageMeta,
    text: &mut Option<String>,
) -> Vec<parley_store::jobs::IngestJob> {
    let mut jobs = Vec::new();
    for (i, a) in meta.attachments.iter_mut().enumerate() {
        if !download_attachment(state, c, a).await {
            jobs.push(crate::jobs::media_job(0, c, i, state));
        }
        if let Some(t) = media::transcribe_if_configured(state, c, a).await {
            *text = Some(format!("🎤 {t}"));
        }
        if let Some(d) = media::describe_if_configured(state, c, a).await {
            let shown = text.take().unwrap_or_else(|| "[image]".to_owned());
            *text = Some(format!("{shown}\n🖼 {d}"));
        }
    }
    jobs
}

/// The stored text of update `u`: its text (marked when edited), else its attachment's kind,
/// else a note naming an update kind Parley does not store as a message.
fn content_of(u: &Inbound<'_>, meta: &ChannelMessageMeta, text: Option<String>) -> String {
    match (u.message.is_some(), u.edited, text) {
        (true, false, Some(t)) => t,
        (true, true, Some(t)) => format!("[edited] {t}"),
        (true, _, None) => match meta.attachments.first() {
            Some(a) => format!("[{}]", a.kind),
            None => "[unsupported message]".to_owned(),
        },
        (false, _, _) => format!(
            "[unsupported Telegram update {}{}]",
            u.kind,
            u.data.map(|d| format!(": {d}")).unwrap_or_default()
        ),
    }
}

/// Stores one update, with the follow-up jobs in the same transaction: the answer when it is
/// a new customer message, a later download of a file that failed every attempt. An update
/// stored already is not stored or answered again; only its edit mark is made sure of.
async fn process(state: &AppState, c: &ChannelConnection, update: &Update) -> Result<(), ApiError> {
    let Some(update_id) = update.update_id else {
        tracing::warn!("a Telegram update without update_id; skipped");
        return Ok(());
    };
    let Some(u) = Inbound::of(update) else {
        tracing::warn!(
            update_id,
            kind = "unknown",
            "a Telegram update without chat or sender; skipped"
        );
        return Ok(());
    };
    let (kind, edited) = (u.kind, u.edited);
    let is_message = u.message.is_some();
    // The conversation is the chat's; updates without a chat (callback and inline queries)
    // belong to their sender's private chat.
    let who = match u.chat {
        Some(chat) => Some(chat),
        None => u.from,
    };
    let Some((chat_id, who)) = who.and_then(|w| Some((w.id?, w))) else {
        tracing::warn!(
            update_id,
            kind,
            "a Telegram update without chat or sender; skipped"
        );
        return Ok(());
    };
    let chat = chat_id.to_string();
    let external_id = update_id.to_string();
    let ws = c.workspace_id;
    let conversation_ref = conversation_key(c, &chat);
    let m = u.message;
    let message_id = m.and_then(|m| m.message_id);
    let (mut meta, mut text) = meta_of(&u);
    let original = message_id.filter(|_| edited);
    // A redelivered update: stored already; spare the download.
    if let Some((conversation, existing)) =
        find_in_conversation(state, c, &conversation_ref, &external_id).await?
    {
        tracing::debug!(update_id, %existing, "Telegram update already stored");
        if let Some(original) = original {
            mark_edited(state, ws, conversation, original, &external_id).await?;
        }
        return Ok(());
    }
    let mut jobs = fetch_media(state, c, &mut meta, &mut text).await;
    let content = content_of(&u, &meta, text);
    let answer = is_message && !edited && meta.kind != "sticker";
    let mut input = super::new_conversation(Channel::Telegram);
    input.external_id = Some(conversation_ref);
    input.assistant = AssistantRef {
        id: Some(c.assistant_id),
        name: None,
        company: None,
    };
    input.contact = Some(display_name(who));
    input.session_id = Some(format!("tg-{chat}"));
    let created_at = m
        .and_then(|m| m.edit_date.or(m.date))
        .map(|s| Timestamp(s * 1000));
    input.messages = vec![super::channel_message(
        external_id.clone(),
        Role::User,
        content,
        created_at,
        meta,
    )];
    if answer {
        jobs.push(crate::jobs::answer_job(
            0,
            ws,
            Some(c.id),
            json!({ "chat": chat }),
        ));
    }
    let outcome = ingest_with_jobs(
        state,
        ws,
        vec![IngestRequest::Create(Box::new(input))],
        jobs,
    )
    .await?
    .pop()
    .expect("one batch, one outcome");
    if let Some(original) = original {
        mark_edited(state, ws, outcome.conversation_id, original, &external_id).await?;
    }
    Ok(())
}

/// Downloads attachment `a` of a message that came through `c` with `getFile`
/// ([`media::download`]); false when it is not stored (the error is on `a`).
pub(crate) async fn download_attachment(
    state: &AppState,
    c: &ChannelConnection,
    a: &mut Attachment,
) -> bool {
    let Some(token) = super::download_secret(state, c, "bot_token", a) else {
        return false;
    };
    let fetch = TelegramFile {
        state,
        api: api_base(state, c),
        token: &token,
    };
    media::download(state, c.workspace_id, a, &fetch).await
}

/// The conversation and id of the message with `external_id` in the conversation
/// `conversation_ref`, if any.
async fn find_in_conversation(
    state: &AppState,
    c: &ChannelConnection,
    conversation_ref: &str,
    external_id: &str,
) -> Result<Option<(ConversationId, parley_core::MessageId)>, ApiError> {
    let found = state
        .store
        .channels()
        .message_by_external_id(c.workspace_id, external_id)
        .await?;
    let Some((conversation, m)) = found else {
        return Ok(None);
    };
    let same = state
        .store
        .conversations()
        .get_conversation(c.workspace_id, conversation)
        .await?
        .is_some_and(|d| d.summary.external_id.as_deref() == Some(conversation_ref));
    Ok(same.then_some((conversation, m.id)))
}

/// Splits `text` into parts of at most `max` UTF-16 code units, cutting after the last line
/// break (else space) of a part when there is one in its second half.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut units = 0;
        let mut end = rest.len();
        for (i, ch) in rest.char_indices() {
            units += ch.len_utf16();
            if units > max {
                end = i;
                break;
            }
        }
        if end < rest.len() {
            let head = &rest[..end];
            let cut = head
                .rfind('\n')
                .or_else(|| head.rfind(' '))
                .filter(|&i| i >= end / 2)
                .map(|i| i + 1);
            end = cut.unwrap_or(end);
        }
        parts.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    parts
}

/// Sends a stored message to the chat with `sendMessage` (in parts when long) and records the
/// outcome on it: the first part's `message_id` as `external_id` (`out:{id}`) and `sent`, or
/// `failed` with Telegram's error. Errors: the failure.
pub async fn reply(
    state: &AppState,
    c: &ChannelConnection,
    chat: &str,
    m: &Message,
) -> Result<String, ChannelError> {
    let result = send_parts(state, c, chat, &m.content).await;
    let parts = split_message(&m.content, MAX_MESSAGE_UNITS).len();
    let out = Outgoing {
        platform: "Telegram",
        kind: None,
        details: Some(json!({ "parts": parts })),
        status: DeliveryStatus::Sent,
    };
    let sent = result
        .as_ref()
        .map(|id| format!("out:{id}"))
        .map_err(Clone::clone);
    record_send(state, c.workspace_id, m, out, &sent).await;
    result
}

async fn send_parts(
    state: &AppState,
    c: &ChannelConnection,
    chat: &str,
    text: &str,
) -> Result<String, ChannelError> {
    let token = super::send_secret(state, c, "bot_token")?;
    let chat_id: Value = chat
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::from(chat));
    let api = api_base(state, c);
    let mut first_id = None;
    for part in split_message(text, MAX_MESSAGE_UNITS) {
        use backon::Retryable as _;
        // Each part's markdown as Telegram HTML (always well formed, so never refused).
        let body = json!({
            "chat_id": chat_id,
            "text": to_markup(&part, Markup::TelegramHtml),
            "parse_mode": "HTML",
        });
        // Only a 429 is retried, after exactly the `retry_after` Telegram asks for.
        let policy = crate::retry::Policy {
            attempts: MAX_SEND_ATTEMPTS,
            first: Duration::ZERO,
            max: MAX_RETRY_AFTER,
            jitter: false,
        };
        let sent = (|| call::<payload::Message>(state, &api, &token, "sendMessage", &body))
            .retry(policy.builder())
            .sleep(tokio::time::sleep)
            .when(|e: &BotError| {
                e.retry_after
                    .is_some_and(|s| Duration::from_secs(s) <= MAX_RETRY_AFTER)
            })
            .adjust(|e: &BotError, wait| {
                wait.and(e.retry_after.map(Duration::from_secs))
            })
            .notify(|e: &BotError, wait| {
                tracing::info!(secs = wait.as_secs(), error = %e.error, "Telegram asked to retry later");
            })
            .await
            .map_err(|e| e.error)?;
        if first_id.is_none() {
            first_id = Some(shown(sent.message_id));
        }
    }
    Ok(first_id.unwrap_or_default())
}

/// File download through the Bot API: `getFile` gives a `file_path`, fetched from
/// `{api}/file/bot{token}/{file_path}`.
struct TelegramFile<'a> {
    state: &'a AppState,
    api: String,
    token: &'a str,
}

impl media::Fetch for TelegramFile<'_> {
    async fn fetch(&self, file_id: &str) -> Result<Vec<u8>, String> {
        let file: payload::File = call(
            self.state,
            &self.api,
            self.token,
            "getFile",
            &json!({"file_id": file_id}),
        )
        .await
        .map_err(|e| format!("getFile: {}", e.error))?;
        let path = file
            .file_path
            .ok_or("getFile: the file has no file_path (too big for the Bot API?)")?;
        let url = format!("{}/file/bot{}/{path}", self.api, self.token);
        let client = self
            .state
            .net
            .platform_client(&url, &self.state.settings.telegram_api_base_url)
            .map_err(|r| format!("file download: {}: {r}", crate::net::CODE))?;
        media::fetch_bytes(client.get(url), "file download").await
    }
}

/// Marks the stored message with Telegram `message_id` `original` in `conversation` as edited
/// by the update `by` (`meta.channel.edited_by`), as WhatsApp edits mark theirs. Telegram
/// sends the whole edited message with the original's `message_id`; Parley keeps both.
async fn mark_edited(
    state: &AppState,
    ws: WorkspaceId,
    conversation: ConversationId,
    original: i64,
    by: &str,
) -> Result<(), ApiError> {
    let Some(export) = super::export_one(state, ws, conversation).await? else {
        return Ok(());
    };
    let found = export.messages.into_iter().find(|m| {
        m.meta.channel.as_ref().is_some_and(|c| {
            c.kind != "edited"
                && c.details.as_ref().and_then(|d| d["message_id"].as_i64()) == Some(original)
        })
    });
    let Some(m) = found else {
        return Ok(());
    };
    let by = by.to_owned();
    edit_message(state, ws, m.id, None, move |_, meta| {
        let Some(ch) = meta.channel.as_mut() else {
            return (false, ());
        };
        ch.edited_by = Some(by);
        (true, ())
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_give_the_bot_id() {
        assert_eq!(
            bot_id("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
            Some("123456789")
        );
        assert_eq!(bot_id("not-a-token"), None);
        assert_eq!(bot_id("123:short"), None);
    }

    #[test]
    fn long_answers_are_split_within_the_limit() {
        let text = format!("{}\n{}", "a".repeat(3000), "b".repeat(3000));
        let parts = split_message(&text, 4096);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], format!("{}\n", "a".repeat(3000)));
        assert_eq!(parts.concat(), text);
        // Emoji count twice in UTF-16.
        let emoji = "😀".repeat(3000);
        let parts = split_message(&emoji, 4096);
        assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
        assert_eq!(parts.concat(), emoji);
        assert_eq!(split_message("", 4096), Vec::<String>::new());
    }
}
