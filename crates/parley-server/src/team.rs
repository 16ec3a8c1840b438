//! The team acts (issue 14): a team member's reply on the conversation's channel, take over /
//! hand back, close / archive / reopen, and assignment. The dashboard (a signed-in member) and
//! the API (an API key) call the same functions, so both follow the same rules:
//!
//! - **Reply.** An `agent` message with its author ([`parley_core::model::Author`]) is stored
//!   through the one ingest path; on WhatsApp, Telegram and Messenger the send is a durable
//!   [`REPLY_SEND`] job written in the same transaction ([`deliver`] runs it), so a reply
//!   acknowledged with a 2xx goes out even after a crash. The message's `meta.channel.delivery`
//!   then says `accepted`/`sent` or `failed` with the platform's error. The widget visitor
//!   sees it through the widget's event stream; API and gateway conversations store it and
//!   announce it as a `message.created` event. A free-form WhatsApp text outside the 24-hour
//!   window is refused before anything is stored (422 `window_closed`): only a template can go.
//!   On Messenger the same holds for its 24-hour standard messaging window, outside which a
//!   reply goes only with the message tag the team chooses
//!   ([`crate::channels::messenger::MessageTag`], [`ReplyBody::Tagged`]).
//! - **Take over.** In hybrid mode a reply, or "Take over", sets `taken_over_at`: the assistant
//!   stays silent in that conversation until "Hand back to AI" clears it. Active assistants
//!   never pause (409 `assistant_not_hybrid`), passive ones never answer anyway. The mark is a
//!   column of the conversation, so every server sharing the database agrees.
//! - **Needs a human** (the assistant's `hand_off` tool, see
//!   [`crate::assistant::runtime::HANDOFF_TOOL`]) is cleared by a reply, a take over, a hand
//!   back, closing or archiving.

use axum::http::StatusCode;
use parley_core::channel::{ChannelConnection, ChannelKind, ChannelMessageMeta};
use parley_core::model::{
    Author, ConversationDetail, ConversationPatch, Message, MessageInput, MessageMeta,
};
use parley_core::{
    AssistantMode, ConversationId, ConversationStatus, MessageId, Role, Timestamp, UserId,
    WorkspaceId,
};
use parley_store::jobs::{IngestJob, Job, NewJob};
use serde_json::{Value, json};

use crate::AppState;
use crate::channels::{self, messenger, telegram, whatsapp};
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest_with_jobs};
use crate::jobs::JobError;

/// Kind of the job that sends a team member's reply on WhatsApp, Telegram or Messenger (payload:
/// `{"template": null | {"name", "language", "parameters"}, "message_tag": null | "HUMAN_AGENT"
/// ...}`; the job names the conversation, the message and the connection).
pub const REPLY_SEND: &str = "reply.send";
/// Claims of a [`REPLY_SEND`] job (store failures; a platform's refusal is recorded on the
/// message and not retried).
pub const REPLY_ATTEMPTS: u32 = 5;
/// Longest reply, in characters.
pub const MAX_REPLY_CHARS: usize = 4_096;
/// Longest close reason, in characters.
pub const MAX_END_REASON_CHARS: usize = 200;

/// What a team member sends.
#[derive(Debug, Clone)]
pub enum ReplyBody {
    /// Free-form text (markdown; each platform gets its own formatting).
    Text(String),
    /// A WhatsApp template (the only thing that goes outside the 24-hour window).
    Template(whatsapp::Template),
    /// Free-form text sent on Messenger with a message tag (`messaging_type: MESSAGE_TAG`),
    /// which lets it go outside the 24-hour standard messaging window.
    Tagged(String, messenger::MessageTag),
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("{field}: {}", message.into()),
    )
    .with_field(field)
}

async fn detail(
    st: &AppState,
    ws: WorkspaceId,
    id: ConversationId,
) -> Result<ConversationDetail, ApiError> {
    st.store
        .conversations()
        .get_conversation(ws, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))
}

/// The conversation's assistant's mode (`active` when the assistant row is gone).
async fn mode_of(st: &AppState, ws: WorkspaceId, d: &ConversationDetail) -> AssistantMode {
    match st
        .store
        .assistants()
        .get_assistant(ws, d.summary.assistant.id)
        .await
    {
        Ok(Some(a)) => a.mode,
        _ => AssistantMode::Active,
    }
}

/// The connection a channel conversation goes out through, with the customer's platform id;
/// `None` for conversations that did not come through a connected sender (widget, API...).
async fn connection(
    st: &AppState,
    ws: WorkspaceId,
    d: &ConversationDetail,
) -> Result<Option<(ChannelConnection, String)>, ApiError> {
    let Some((_, id, customer)) = d
        .summary
        .external_id
        .as_deref()
        .and_then(channels::parse_conversation_key)
    else {
        return Ok(None);
    };
    Ok(st
        .store
        .channels()
        .get_channel(ws, id)
        .await?
        // A VoIP call has ended by the time it is stored: nothing to deliver a reply to.
        .filter(|c| {
            matches!(
                c.kind,
                ChannelKind::Whatsapp | ChannelKind::Telegram | ChannelKind::Messenger
            )
        })
        .map(|c| (c, customer.to_owned())))
}

/// The patch a team member's message makes: in hybrid mode it takes over (if not yet), and it
/// answers a "Needs a human" request. Empty when nothing changes.
fn team_message_patch(mode: AssistantMode, d: &ConversationDetail) -> ConversationPatch {
    ConversationPatch {
        taken_over: (mode == AssistantMode::Hybrid && d.summary.taken_over_at.is_none())
            .then_some(Some(Timestamp::now())),
        handoff: d.summary.handoff.is_some().then_some(None),
        ..Default::default()
    }
}

/// Records that a team member wrote in conversation `d` (another path than [`reply`], e.g. the
/// API's channel send): takes over in hybrid mode and clears "Needs a human". Errors: the
/// store's.
pub async fn mark_team_message(
    st: &AppState,
    ws: WorkspaceId,
    d: &ConversationDetail,
) -> Result<(), ApiError> {
    let patch = team_message_patch(mode_of(st, ws, d).await, d);
    if !patch.is_empty() {
        st.store
            .conversations()
            .update_conversation(ws, d.summary.id, &patch)
            .await?;
    }
    Ok(())
}

/// Stores a team member's reply in conversation `id` and, on WhatsApp and Telegram, writes the
/// job that sends it (see the module docs). Returns the stored message (its delivery still
/// empty: the job records it). Errors: 404 for an unknown conversation; 422
/// `validation_failed` (empty or too long text, a template outside WhatsApp, a template
/// without name or language, a message tag outside Messenger); 422 `window_closed` for
/// free-form WhatsApp text outside the 24-hour window, and Messenger text the window or the
/// chosen tag does not allow ([`messenger::may_send`]); 409 `conversation_not_active` for a closed or archived conversation; the
/// store's.
pub async fn reply(
    st: &AppState,
    ws: WorkspaceId,
    id: ConversationId,
    author: Author,
    body: ReplyBody,
) -> Result<Message, ApiError> {
    let d = detail(st, ws, id).await?;
    if d.summary.status != ConversationStatus::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conversation_not_active",
            "this conversation is closed or archived: reopen it to reply",
        ));
    }
    let target = connection(st, ws, &d).await?;
    let whatsapp = target
        .as_ref()
        .is_some_and(|(c, _)| c.kind == ChannelKind::Whatsapp);
    let on_messenger = target
        .as_ref()
        .is_some_and(|(c, _)| c.kind == ChannelKind::Messenger);
    let tag = match &body {
        ReplyBody::Tagged(_, t) => Some(*t),
        _ => None,
    };
    if tag.is_some() && !on_messenger {
        return Err(invalid(
            "message_tag",
            "message tags are Messenger's: this conversation is not on a connected Facebook Page",
        ));
    }
    let (content, channel_meta, template) = match &body {
        ReplyBody::Text(text) | ReplyBody::Tagged(text, _) => {
            let window = if whatsapp {
                Window::Whatsapp
            } else if on_messenger {
                Window::Messenger(tag)
            } else {
                Window::None
            };
            (reply_text(text, window, d.last_inbound_at)?, None, None)
        }
        ReplyBody::Template(t) => {
            if !whatsapp {
                return Err(invalid(
                    "template",
                    "templates are WhatsApp's: this conversation is not on a connected WhatsApp number",
                ));
            }
            let (text, meta) = template_message(t)?;
            (text, Some(meta), Some(t.clone()))
        }
    };
    mark_team_message(st, ws, &d).await?;
    let message = MessageInput {
        id: Some(MessageId::new()),
        external_id: None,
        role: Role::Agent,
        content,
        created_at: Some(Timestamp::now()),
        model: None,
        usage: None,
        cost_nanousd: None,
        meta: MessageMeta {
            author: Some(author),
            channel: channel_meta,
            ..Default::default()
        },
    };
    let jobs = match &target {
        Some((c, _)) => vec![send_job(ws, c.id, template.as_ref(), tag)],
        None => Vec::new(),
    };
    let stored = Message {
        id: message.id.expect("set above"),
        external_id: None,
        role: Role::Agent,
        content: message.content.clone(),
        created_at: message.created_at.expect("set above"),
        model: None,
        usage: None,
        cost_nanousd: None,
        cost_source: None,
        meta: message.meta.clone(),
    };
    ingest_with_jobs(
        st,
        ws,
        vec![IngestRequest::Append {
            conversation: id,
            messages: vec![message],
        }],
        jobs,
    )
    .await?;
    Ok(stored)
}

/// The messaging window a free-form reply must be inside.
enum Window {
    /// No platform rule (the widget, Telegram, the API).
    None,
    /// WhatsApp's 24-hour customer service window.
    Whatsapp,
    /// Messenger's standard messaging window, or a message tag outside it.
    Messenger(Option<messenger::MessageTag>),
}

/// A free-form reply's text, trimmed. Errors: 422 `invalid_request` (`text`) when empty or over
/// [`MAX_REPLY_CHARS`]; 422 `window_closed` outside the conversation's messaging window
/// (`last_inbound_at` is the customer's last message).
fn reply_text(
    text: &str,
    window: Window,
    last_inbound_at: Option<Timestamp>,
) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("text", "write a message"));
    }
    if text.chars().count() > MAX_REPLY_CHARS {
        return Err(invalid(
            "text",
            format!("must be at most {MAX_REPLY_CHARS} characters"),
        ));
    }
    let closed =
        |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "window_closed", why);
    match window {
        Window::Whatsapp if !whatsapp::window_open(last_inbound_at, Timestamp::now()) => {
            return Err(closed(
                "the WhatsApp 24-hour window is closed: only an approved template can be sent"
                    .into(),
            ));
        }
        Window::Messenger(tag) => {
            if let Err(why) = messenger::may_send(last_inbound_at, Timestamp::now(), tag) {
                return Err(closed(why.to_string()));
            }
        }
        _ => {}
    }
    Ok(text.to_owned())
}

/// A WhatsApp template reply as the stored text (`[template NAME (LANG)] p1 p2 ...`) and its
/// channel meta (`kind` `template`, the template in `details`). Errors: 422 `invalid_request`
/// for a name over 512 or a language over 20 characters (or empty), or more than 20
/// parameters / one over 1,024 characters.
fn template_message(t: &whatsapp::Template) -> Result<(String, ChannelMessageMeta), ApiError> {
    for (v, field, max) in [
        (&t.name, "template.name", 512),
        (&t.language, "template.language", 20),
    ] {
        if v.trim().is_empty() || v.chars().count() > max {
            return Err(invalid(field, format!("give 1 to {max} characters")));
        }
    }
    if t.parameters.len() > 20 || t.parameters.iter().any(|p| p.chars().count() > 1_024) {
        return Err(invalid(
            "template.parameters",
            "at most 20 parameters of at most 1024 characters",
        ));
    }
    let mut text = format!("[template {} ({})]", t.name, t.language);
    for p in &t.parameters {
        text.push_str(&format!(" {p}"));
    }
    let meta = ChannelMessageMeta {
        kind: "template".into(),
        details: serde_json::to_value(t).ok(),
        ..Default::default()
    };
    Ok((text, meta))
}

/// The durable job that delivers a team reply on its connection, committed with the message.
fn send_job(
    ws: WorkspaceId,
    connection: parley_core::ChannelConnectionId,
    template: Option<&whatsapp::Template>,
    tag: Option<messenger::MessageTag>,
) -> IngestJob {
    let mut job = NewJob::new(
        REPLY_SEND,
        json!({ "template": template, "message_tag": tag }).to_string(),
        REPLY_ATTEMPTS,
    );
    job.workspace_id = Some(ws);
    job.connection_id = Some(connection);
    IngestJob { batch: 0, job }
}

/// The [`REPLY_SEND`] job: sends the reply it names on its connection, unless it went out
/// already (a run after a crash), and records the outcome on the message. A platform's refusal
/// is recorded and not retried.
pub(crate) async fn deliver(st: &AppState, job: &Job) -> Result<(), JobError> {
    let (Some(ws), Some(id), Some(message)) =
        (job.workspace_id, job.conversation_id, job.message_id)
    else {
        return Err(JobError::Permanent("the job names no message".into()));
    };
    let Some(export) = st
        .store
        .conversations()
        .export_conversations(ws, &[id])
        .await?
        .pop()
    else {
        tracing::info!(conversation = %id, "the conversation is gone; nothing to send");
        return Ok(());
    };
    let Some(m) = export.messages.iter().find(|m| m.id == message) else {
        return Ok(());
    };
    if m.meta
        .channel
        .as_ref()
        .is_some_and(|c| c.delivery.is_some())
    {
        return Ok(());
    }
    let Some((c, customer)) = connection(st, ws, &export.detail).await? else {
        tracing::info!(conversation = %id, "the connection was removed; reply not sent");
        return Ok(());
    };
    let payload: Value = serde_json::from_str(&job.payload).unwrap_or(Value::Null);
    let template: Option<whatsapp::Template> =
        serde_json::from_value(payload["template"].clone()).ok();
    let tag: Option<messenger::MessageTag> =
        serde_json::from_value(payload["message_tag"].clone()).ok();
    let sent = match (c.kind, template) {
        (ChannelKind::Whatsapp, Some(t)) => {
            whatsapp::send_template(st, &c, &customer, export.detail.last_inbound_at, m, &t).await
        }
        (ChannelKind::Whatsapp, None) => whatsapp::reply(st, &c, id, &customer, m).await,
        (ChannelKind::Telegram, _) => telegram::reply(st, &c, &customer, m).await,
        (ChannelKind::Messenger, _) => messenger::reply(st, &c, id, &customer, m, tag).await,
        // Never queued: `connection` leaves VoIP connections out.
        (ChannelKind::Retell | ChannelKind::Vapi | ChannelKind::Twilio, _) => return Ok(()),
    };
    if let Err(e) = sent {
        tracing::warn!(conversation = %id, error = %e, "team reply not delivered");
    }
    Ok(())
}

/// "Take over": the hybrid assistant stays silent in conversation `id` until [`hand_back`];
/// answers a "Needs a human" request. Returns the updated record. Errors: 404; 409
/// `assistant_not_hybrid` (active assistants never pause, passive ones never answer); the
/// store's.
pub async fn take_over(
    st: &AppState,
    ws: WorkspaceId,
    id: ConversationId,
) -> Result<ConversationDetail, ApiError> {
    set_handling(st, ws, id, true).await
}

/// "Hand back to AI": the hybrid assistant answers conversation `id` again (from the next
/// customer message). Errors: as [`take_over`].
pub async fn hand_back(
    st: &AppState,
    ws: WorkspaceId,
    id: ConversationId,
) -> Result<ConversationDetail, ApiError> {
    set_handling(st, ws, id, false).await
}

/// [`take_over`] (`team` true) or [`hand_back`]; either answers a hand-off request.
async fn set_handling(
    st: &AppState,
    ws: WorkspaceId,
    id: ConversationId,
    team: bool,
) -> Result<ConversationDetail, ApiError> {
    let d = detail(st, ws, id).await?;
    require_hybrid(mode_of(st, ws, &d).await)?;
    let since = team.then(|| d.summary.taken_over_at.unwrap_or_else(Timestamp::now));
    let patch = ConversationPatch {
        taken_over: Some(since),
        handoff: d.summary.handoff.is_some().then_some(None),
        ..Default::default()
    };
    update(st, ws, id, &patch).await
}

fn require_hybrid(mode: AssistantMode) -> Result<(), ApiError> {
    match mode {
        AssistantMode::Hybrid => Ok(()),
        AssistantMode::Active => Err(ApiError::new(
            StatusCode::CONFLICT,
            "assistant_not_hybrid",
            "the assistant is active: it always answers and never pauses (switch it to hybrid to hand conversations over)",
        )),
        AssistantMode::Passive => Err(ApiError::new(
            StatusCode::CONFLICT,
            "assistant_not_hybrid",
            "the assistant is passive: it never answers, the team always handles its conversations",
        )),
    }
}

async fn update(
    st: &AppState,
    ws: WorkspaceId,
    id: ConversationId,
    patch: &ConversationPatch,
) -> Result<ConversationDetail, ApiError> {
    st.store
        .conversations()
        .update_conversation(ws, id, patch)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))
}

/// A status change from the team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// Close, with an end reason (`resolved`, `no_reply`... free text, at most
    /// [`MAX_END_REASON_CHARS`]).
    Close(String),
    /// Archive.
    Archive,
    /// Reopen (active again, end time and reason cleared).
    Reopen,
}

/// The patch of a status change (closing and archiving also answer "Needs a human").
/// Errors: 422 for an empty or too long end reason.
pub fn status_patch(change: &StatusChange, now: Timestamp) -> Result<ConversationPatch, ApiError> {
    Ok(match change {
        StatusChange::Close(reason) => {
            let reason = reason.trim();
            if reason.is_empty() || reason.chars().count() > MAX_END_REASON_CHARS {
                return Err(invalid(
                    "end_reason",
                    format!("give 1 to {MAX_END_REASON_CHARS} characters"),
                ));
            }
            ConversationPatch {
                status: Some(ConversationStatus::Closed),
                ended_at: Some(Some(now)),
                end_reason: Some(Some(reason.to_owned())),
                handoff: Some(None),
                ..Default::default()
            }
        }
        StatusChange::Archive => ConversationPatch {
            status: Some(ConversationStatus::Archived),
            handoff: Some(None),
            ..Default::default()
        },
        StatusChange::Reopen => ConversationPatch {
            status: Some(ConversationStatus::Active),
            ended_at: Some(None),
            end_reason: Some(None),
            ..Default::default()
        },
    })
}

/// Applies a status change to conversation `id`. Errors: 404; 422 (see [`status_patch`]).
pub async fn set_status(
    st: &AppState,
    ws: WorkspaceId,
    id: ConversationId,
    change: &StatusChange,
) -> Result<ConversationDetail, ApiError> {
    let patch = status_patch(change, Timestamp::now())?;
    update(st, ws, id, &patch).await
}

/// Assigns conversation `id` to member `user` of the workspace (`None`: nobody). Errors: 404;
/// 422 `validation_failed` when `user` is not a member of the workspace; the store's.
pub async fn assign(
    st: &AppState,
    ws: WorkspaceId,
    id: ConversationId,
    user: Option<UserId>,
) -> Result<ConversationDetail, ApiError> {
    if let Some(u) = user
        && !st
            .store
            .auth()
            .list_users(ws)
            .await?
            .iter()
            .any(|m| m.id == u)
    {
        return Err(invalid("assignee_id", "is not a member of this workspace"));
    }
    let patch = ConversationPatch {
        assignee: Some(user),
        ..Default::default()
    };
    update(st, ws, id, &patch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_needs_a_reason_and_answers_a_handoff() {
        let now = Timestamp(7);
        let p = status_patch(&StatusChange::Close(" resolved ".into()), now).unwrap();
        assert_eq!(p.status, Some(ConversationStatus::Closed));
        assert_eq!(p.end_reason, Some(Some("resolved".into())));
        assert_eq!(p.ended_at, Some(Some(now)));
        assert_eq!(p.handoff, Some(None));
        assert!(status_patch(&StatusChange::Close("  ".into()), now).is_err());
        let r = status_patch(&StatusChange::Reopen, now).unwrap();
        assert_eq!((r.ended_at, r.end_reason), (Some(None), Some(None)));
        assert_eq!(r.handoff, None);
    }

    #[test]
    fn only_hybrid_assistants_pause() {
        assert!(require_hybrid(AssistantMode::Hybrid).is_ok());
        for m in [AssistantMode::Active, AssistantMode::Passive] {
            assert_eq!(require_hybrid(m).unwrap_err().code, "assistant_not_hybrid");
        }
    }
}
