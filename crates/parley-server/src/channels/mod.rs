//! Messaging channels (DESIGN.md sections 2 and 3): WhatsApp Business (Meta's Cloud API),
//! Telegram bots and Facebook Messenger (a Page, through Meta's Messenger Platform). Each one only translates its platform's webhooks into
//! [`crate::ingest`] calls and sends the assistant's answers back out; conversations, messages
//! and de-duplication are the ingest path's.
//!
//! - [`whatsapp`]: the webhook (verification handshake, `X-Hub-Signature-256`), inbound
//!   messages and status callbacks, replies and templates through the Graph API, the 24-hour
//!   window.
//! - [`telegram`]: `setWebhook` with a secret token, updates, `sendMessage`.
//! - [`messenger`]: the Page webhook (the same handshake and signature as WhatsApp's), messages,
//!   postbacks, reactions, echoes, delivery and read receipts; the Send API with the 24-hour
//!   standard messaging window and message tags.
//! - [`media`]: attachment storage under the data directory, voice transcription and image
//!   descriptions.
//! - [`voip`]: Retell's and Vapi's post-call webhooks (phone calls on channel `voip`).
//! - [`meta`]: what WhatsApp and Messenger share as Meta platforms (the handshake, the
//!   signature, same-app routing, the Graph API error object); [`delivery`]: how every channel
//!   records a send and moves a delivery forward.
//!
//! Each platform reads its payloads into typed structs (`whatsapp::payload`,
//! `telegram::payload`, `messenger::payload`, each naming the platform page it follows); a
//! stored delivery that does not read fails its job permanently, as one that is not JSON does.
//!
//! The stand-ins for Meta's Graph API and Telegram's Bot API the tests use live in
//! `parley-testkit`.
//!
//! A connection ([`ChannelConnection`]) ties one sender to one assistant, and is made only once
//! its credentials are proven to control the sender at the operator's platform API
//! ([`Proof`]); a sender is connected once per server. Its webhook URL names
//! it (`/webhooks/whatsapp/{id}`, `/webhooks/telegram/{id}`); its secrets are sealed with the
//! server's key ([`crate::secrets`]) and only their last four characters are ever shown. A
//! conversation's `external_id` is `{kind}:{connection id}:{customer id}`, so every customer
//! has one conversation per connection and replies know where to go.

pub mod delivery;
#[cfg(test)]
mod fixtures_test;
pub mod media;
pub mod messenger;
pub mod meta;
pub mod telegram;
pub mod voip;
pub mod whatsapp;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use parley_core::channel::{ChannelConnection, ChannelKind, SealedSecret};
use parley_core::{ChannelConnectionId, ConversationId, WorkspaceId};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

/// The 24-hour window after the customer's last message, in ms: WhatsApp's customer service
/// window and Messenger's standard messaging window.
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Longest wait for a platform API call (Graph API, Bot API, media download).
pub const PLATFORM_TIMEOUT: Duration = Duration::from_secs(30);

/// The webhook routes (public: each checks its platform's signature or secret token).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/webhooks/whatsapp/{id}",
            get(whatsapp::verify).post(whatsapp::webhook),
        )
        .route("/webhooks/telegram/{id}", post(telegram::webhook))
        .route(
            "/webhooks/messenger/{id}",
            get(messenger::verify).post(messenger::webhook),
        )
        .route("/webhooks/retell/{id}", post(voip::retell_webhook))
        .route("/webhooks/vapi/{id}", post(voip::vapi_webhook))
        .route("/webhooks/twilio/{id}", post(voip::twilio_webhook))
}

/// A connection as the API shows it: settings, the secrets' hints (never the secrets), the
/// webhook path to configure on the platform.
pub fn view(c: &ChannelConnection) -> Value {
    let secrets: BTreeMap<&str, &str> = c
        .secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.hint.as_str()))
        .collect();
    json!({
        "id": c.id,
        "kind": c.kind,
        "assistant_id": c.assistant_id,
        "external_key": c.external_key,
        "config": c.config,
        "secrets": secrets,
        "webhook_path": format!("/webhooks/{}/{}", c.kind, c.id),
        "created_at": c.created_at,
    })
}

/// What a platform said about credentials claiming a sender (a WhatsApp number, a Telegram
/// bot): see [`whatsapp::prove`] and [`telegram::prove`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The credentials control the sender.
    Proven,
    /// The platform refused them; its words.
    Refused(String),
    /// The platform could not be asked (unreachable, or a 5xx); what happened.
    Unreachable(String),
}

/// Seals `plain` for storage under `name`.
pub(crate) fn seal(
    state: &AppState,
    secrets: &mut BTreeMap<String, SealedSecret>,
    name: &str,
    plain: &str,
) {
    secrets.insert(
        name.to_owned(),
        SealedSecret {
            sealed: state.secrets.seal(plain),
            hint: SealedSecret::hint_for(plain),
        },
    );
}

/// Opens the connection's secret `name`. Errors: a missing secret, or one sealed with another
/// key (logged; the caller treats the connection as unusable).
pub(crate) fn open_secret(
    state: &AppState,
    c: &ChannelConnection,
    name: &str,
) -> Result<String, String> {
    let sealed = c
        .secrets
        .get(name)
        .ok_or_else(|| format!("the connection has no {name}"))?;
    state
        .secrets
        .open(&sealed.sealed)
        .map_err(|e| e.to_string())
}

/// A text setting of the connection.
pub(crate) fn config_str<'a>(c: &'a ChannelConnection, key: &str) -> Option<&'a str> {
    c.config.get(key).and_then(Value::as_str)
}

/// The conversation `external_id` of a customer on a connection: `{kind}:{connection}:{customer}`.
pub fn conversation_key(c: &ChannelConnection, customer: &str) -> String {
    format!("{}:{}:{}", c.kind, c.id, customer)
}

/// Splits a conversation `external_id` made by [`conversation_key`]: (kind, connection, customer).
pub fn parse_conversation_key(key: &str) -> Option<(ChannelKind, ChannelConnectionId, &str)> {
    let mut parts = key.splitn(3, ':');
    let kind = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    let customer = parts.next()?;
    Some((kind, id, customer))
}

/// The connection a conversation came through, with the customer's platform id.
/// Errors: 404 for an unknown conversation; 409 `not_a_channel_conversation` when it did not
/// come through a connection (or the connection was removed).
pub async fn connection_of(
    state: &AppState,
    workspace: WorkspaceId,
    conversation: ConversationId,
) -> Result<
    (
        ChannelConnection,
        String,
        parley_core::model::ConversationDetail,
    ),
    ApiError,
> {
    let detail = state
        .store
        .conversations()
        .get_conversation(workspace, conversation)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let not_channel = || {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_a_channel_conversation",
            "this conversation did not come through a connected WhatsApp, Telegram or Messenger sender",
        )
    };
    let key = detail.summary.external_id.clone().ok_or_else(not_channel)?;
    let (kind, id, customer) = parse_conversation_key(&key).ok_or_else(not_channel)?;
    if kind.is_voip() {
        // A phone call: nothing can be sent back to the caller through the platform.
        return Err(not_channel());
    }
    let customer = customer.to_owned();
    let c = state
        .store
        .channels()
        .get_channel(workspace, id)
        .await?
        .ok_or_else(not_channel)?;
    Ok((c, customer, detail))
}

/// Edits stored message `message` of `workspace` as one step no other edit interleaves with,
/// on any server ([`parley_store::ChannelStore::edit_message`]): `edit` gets its text and meta
/// and returns whether to write them and a value for the caller; the value is `None` when the
/// message is not in the workspace. `external_id` is set when given and the edit writes.
/// Errors: the store's.
pub(crate) async fn edit_message<T: Send + 'static>(
    state: &AppState,
    workspace: WorkspaceId,
    message: parley_core::MessageId,
    external_id: Option<&str>,
    edit: impl FnOnce(&mut String, &mut parley_core::model::MessageMeta) -> (bool, T) + Send + 'static,
) -> Result<Option<T>, parley_store::StoreError> {
    let (slot, out) = result_slot();
    state
        .store
        .channels()
        .edit_message(
            workspace,
            message,
            external_id,
            Box::new(move |content, meta| {
                let (write, value) = edit(content, meta);
                slot(value);
                write
            }),
        )
        .await?;
    Ok(out())
}

/// Edits connection `id`'s config as one step ([`parley_store::ChannelStore::edit_channel_config`]),
/// as [`edit_message`] edits a message.
pub(crate) async fn edit_config<T: Send + 'static>(
    state: &AppState,
    workspace: WorkspaceId,
    id: ChannelConnectionId,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>) -> (bool, T) + Send + 'static,
) -> Result<Option<T>, parley_store::StoreError> {
    let (slot, out) = result_slot();
    state
        .store
        .channels()
        .edit_channel_config(
            workspace,
            id,
            Box::new(move |config| {
                let (write, value) = edit(config);
                slot(value);
                write
            }),
        )
        .await?;
    Ok(out())
}

/// A place for an edit closure (which runs inside the store) to leave its value: the setter
/// and the getter.
fn result_slot<T: Send + 'static>() -> (impl FnOnce(T) + Send + 'static, impl FnOnce() -> Option<T>)
{
    let cell = std::sync::Arc::new(std::sync::Mutex::new(None));
    let set = cell.clone();
    (
        move |v| *set.lock().unwrap_or_else(|p| p.into_inner()) = Some(v),
        move || cell.lock().unwrap_or_else(|p| p.into_inner()).take(),
    )
}

/// [`view`] with the connection's webhook inbox (`"inbox": {"pending", "failed",
/// "oldest_pending_age_ms"}`: deliveries received and not yet processed, given up, and the
/// oldest pending one's age in ms or `null`), as the API shows a connection.
pub async fn view_with_inbox(state: &AppState, c: &ChannelConnection) -> Value {
    let mut v = view(c);
    v["inbox"] = json!(crate::jobs::inbox(state, c).await);
    v
}

/// The connection of `kind` webhook connection `id` (a path segment). Errors: 404
/// `not_found` for an id that is not one, or a connection of another kind.
pub(crate) async fn webhook_connection(
    state: &AppState,
    kind: ChannelKind,
    id: &str,
) -> Result<ChannelConnection, ApiError> {
    let id: parley_core::ChannelConnectionId =
        id.parse().map_err(|_| ApiError::not_found("connection"))?;
    state
        .store
        .channels()
        .channel_by_id(id)
        .await?
        .filter(|c| c.kind == kind)
        .ok_or_else(|| ApiError::not_found("connection"))
}

/// A payload object read into `T`, kept also as it came (`raw`): Parley stores some platform
/// objects verbatim (`meta.channel.details`) while reading its own fields typed.
#[derive(Debug, Clone, Default)]
pub struct WithRaw<T> {
    /// The object as the platform sent it.
    pub raw: Value,
    /// The object read into its type.
    pub parsed: T,
}

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for WithRaw<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let parsed = T::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(WithRaw { raw, parsed })
    }
}

impl<T> std::ops::Deref for WithRaw<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.parsed
    }
}

/// Checks that a webhook body is JSON. Errors: 400 `invalid_json`. A body that is JSON but
/// not of its platform's shape is refused later, when its job reads it (as a payload that
/// cannot be processed).
pub(crate) fn check_json(body: &[u8]) -> Result<(), ApiError> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not JSON",
        ));
    }
    Ok(())
}

/// Reads a stored webhook delivery (`body`, the raw body) as payload `T`. Errors: `Permanent`
/// for a body that is not JSON or not of `T`'s shape (`what` names it: "delivery", "update").
pub(crate) fn parse_delivery<T: serde::de::DeserializeOwned>(
    body: &str,
    what: &str,
) -> Result<T, crate::jobs::JobError> {
    serde_json::from_str(body).map_err(|e| {
        crate::jobs::JobError::Permanent(format!("the {what} is not a payload Parley reads: {e}"))
    })
}

/// Downloads attachment `a` of a message that came through `c` again (the `media.download`
/// job), from its platform; `None` for a connection whose platform has no media ids (a voice
/// platform), else whether it is stored now (the error is on `a`).
pub(crate) async fn download_again(
    state: &AppState,
    c: &ChannelConnection,
    a: &mut parley_core::channel::Attachment,
) -> Option<bool> {
    Some(match c.kind {
        ChannelKind::Whatsapp => whatsapp::download_attachment(state, c, a).await,
        ChannelKind::Telegram => telegram::download_attachment(state, c, a).await,
        ChannelKind::Messenger => matches!(
            messenger::download_attachment(state, c, a).await,
            messenger::Download::Stored
        ),
        ChannelKind::Retell | ChannelKind::Vapi | ChannelKind::Twilio => return None,
    })
}

/// Stores a checked webhook delivery of `c` in the durable inbox as a `job_kind` job
/// ([`crate::jobs::enqueue_delivery`]) and answers 200. Errors: 500 when it cannot be stored
/// (the platform delivers it again).
pub(crate) async fn accept_delivery(
    st: &AppState,
    job_kind: &str,
    c: &ChannelConnection,
    body: &[u8],
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    crate::jobs::enqueue_delivery(st, job_kind, c, body).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// Conversation `conversation` of `ws` with its messages, if it exists. Errors: the store's.
pub(crate) async fn export_one(
    state: &AppState,
    ws: WorkspaceId,
    conversation: ConversationId,
) -> Result<Option<parley_core::model::ConversationExport>, parley_store::StoreError> {
    Ok(state
        .store
        .conversations()
        .export_conversations(ws, &[conversation])
        .await?
        .pop())
}

/// Opens the connection's secret `name` to download attachment `a` with; `None` (the reason
/// on `a`) when it cannot be opened.
pub(crate) fn download_secret(
    state: &AppState,
    c: &ChannelConnection,
    name: &str,
    a: &mut parley_core::channel::Attachment,
) -> Option<String> {
    match open_secret(state, c, name) {
        Ok(t) => Some(t),
        Err(e) => {
            a.download_error = Some(format!("the connection is unusable: {e}"));
            None
        }
    }
}

/// Opens the connection's secret `name` to send with. Errors: code 0 `connection_unusable`.
pub(crate) fn send_secret(
    state: &AppState,
    c: &ChannelConnection,
    name: &str,
) -> Result<String, parley_core::channel::ChannelError> {
    open_secret(state, c, name).map_err(|e| parley_core::channel::ChannelError {
        code: 0,
        title: "connection_unusable".into(),
        message: Some(e),
    })
}

/// A message that came through a channel, as the ingest path takes it: its platform id
/// (`external_id`), role, text, time and `meta.channel`.
pub(crate) fn channel_message(
    external_id: String,
    role: parley_core::Role,
    content: String,
    created_at: Option<parley_core::Timestamp>,
    channel: parley_core::channel::ChannelMessageMeta,
) -> parley_core::model::MessageInput {
    parley_core::model::MessageInput {
        id: None,
        external_id: Some(external_id),
        role,
        content,
        created_at,
        model: None,
        usage: None,
        cost_nanousd: None,
        meta: parley_core::model::MessageMeta {
            channel: Some(channel),
            ..Default::default()
        },
    }
}

/// Downloads the attachments of an inbound WhatsApp or Messenger message (adding a voice
/// note's transcript or an image's description to `content`) and returns the jobs to store
/// with it: a later download of each file that failed every attempt (index in `attachments`),
/// then the assistant's answer to `answer` (the job's `{"to": customer}`) when it is given.
pub(crate) async fn inbound_jobs(
    state: &AppState,
    c: &ChannelConnection,
    attachments: &mut [parley_core::channel::Attachment],
    content: &mut String,
    answer: Option<&str>,
) -> Vec<parley_store::jobs::IngestJob> {
    let mut jobs = Vec::new();
    for (i, a) in attachments.iter_mut().enumerate() {
        let retry = match c.kind {
            ChannelKind::Messenger => messenger::download_attachment(state, c, a).await.retry(),
            _ => !whatsapp::download_attachment(state, c, a).await,
        };
        if retry {
            jobs.push(crate::jobs::media_job(0, c, i, state));
        }
        media::add_media_text(state, c, a, content).await;
    }
    if let Some(to) = answer {
        jobs.push(crate::jobs::answer_job(
            0,
            c.workspace_id,
            Some(c.id),
            json!({ "to": to }),
        ));
    }
    jobs
}

/// A conversation input with nothing but the channel set.
pub(crate) fn new_conversation(
    channel: parley_core::Channel,
) -> parley_core::model::ConversationInput {
    parley_core::model::ConversationInput::for_assistant(None, channel)
}
