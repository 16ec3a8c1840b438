//! Inbound messages (`value.messages[]`): each becomes one stored message, answered by the
//! assistant when its type calls for it; edits and deletions also mark the original.

use parley_core::channel::{Attachment, ChannelConnection, ChannelMessageMeta};
use parley_core::model::{AssistantRef, ConversationInput};
use parley_core::{Channel, Role, Timestamp, WorkspaceId};
use serde_json::{Number, Value};

use super::payload::{InboundMessage, UnixTime};
use crate::AppState;
use crate::channels::{WithRaw, conversation_key, edit_message};
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest_with_jobs};

/// What an inbound message becomes: its text, its `meta.channel`, whether the assistant
/// answers it, and the role it is stored with.
struct Translated {
    content: String,
    meta: ChannelMessageMeta,
    answer: bool,
    role: Role,
}

const MEDIA_TYPES: &[&str] = &["image", "audio", "video", "document", "sticker"];

/// A number as the payload wrote it; `null` when it was left out.
fn shown(n: &Option<Number>) -> String {
    n.as_ref()
        .map_or_else(|| "null".to_owned(), Number::to_string)
}

fn translate(message: &WithRaw<InboundMessage>) -> Translated {
    let m = &message.parsed;
    let kind = m.kind.clone().unwrap_or_else(|| "unknown".to_owned());
    // The type's object, the reply context, the referral and the errors as they came.
    let mut details = serde_json::Map::new();
    for key in [kind.as_str(), "context", "referral", "errors"] {
        if let Some(v) = message.raw.get(key).filter(|v| !v.is_null()) {
            details.insert(key.to_owned(), v.clone());
        }
    }
    let mut meta = ChannelMessageMeta {
        kind: kind.clone(),
        details: (!details.is_empty()).then_some(Value::Object(details)),
        refers_to: m.context.as_ref().and_then(|c| c.id.clone()),
        ..Default::default()
    };
    let text = |t: Option<&String>| t.cloned().unwrap_or_default();
    let (content, answer, role) = match kind.as_str() {
        "text" => (
            text(m.text.as_ref().and_then(|t| t.body.as_ref())),
            true,
            Role::User,
        ),
        k if MEDIA_TYPES.contains(&k) => {
            let body = m.media(k).cloned().unwrap_or_default();
            let voice = k == "audio" && body.voice == Some(true);
            let media_kind = if voice { "voice" } else { k };
            meta.attachments.push(Attachment {
                kind: media_kind.to_owned(),
                media_id: body.id.unwrap_or_default(),
                mime_type: body.mime_type,
                file_name: body.filename,
                ..Default::default()
            });
            let text = match body.caption {
                Some(c) if !c.is_empty() => c,
                _ => format!("[{}]", media_label(media_kind)),
            };
            (text, k != "sticker", Role::User)
        }
        "location" => {
            let body = m.location.clone().unwrap_or_default();
            let mut text = String::from("📍 ");
            for p in [&body.name, &body.address].into_iter().flatten() {
                text.push_str(p);
                text.push_str(", ");
            }
            text.push_str(&format!(
                "{}, {}",
                shown(&body.latitude),
                shown(&body.longitude)
            ));
            (text, true, Role::User)
        }
        "contacts" => {
            let people: Vec<String> = m
                .contacts
                .iter()
                .flatten()
                .map(|p| {
                    let phones: Vec<&str> = p
                        .phones
                        .iter()
                        .flatten()
                        .filter_map(|ph| ph.phone.as_deref())
                        .collect();
                    format!(
                        "{} ({})",
                        p.name
                            .as_ref()
                            .and_then(|n| n.formatted_name.as_deref())
                            .unwrap_or("?"),
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
        "interactive" => match m
            .interactive
            .as_ref()
            .and_then(|i| i.reply()?.title.as_ref())
        {
            Some(title) => (title.clone(), true, Role::User),
            None => (
                "[interactive message without content]".to_owned(),
                false,
                Role::User,
            ),
        },
        "button" => (
            text(m.button.as_ref().and_then(|b| b.text.as_ref())),
            true,
            Role::User,
        ),
        "reaction" => {
            let r = m.reaction.clone().unwrap_or_default();
            meta.refers_to = r.message_id;
            match r.emoji.filter(|e| !e.is_empty()) {
                Some(e) => (format!("Reacted {e}"), false, Role::User),
                None => ("Removed a reaction".to_owned(), false, Role::User),
            }
        }
        "order" => {
            let items: Vec<String> = m
                .order
                .iter()
                .flat_map(|o| o.product_items.iter().flatten())
                .map(|i| {
                    format!(
                        "{} × {} ({} {})",
                        shown(&i.quantity),
                        i.product_retailer_id.as_deref().unwrap_or("?"),
                        shown(&i.item_price),
                        i.currency.as_deref().unwrap_or("")
                    )
                })
                .collect();
            (format!("Order: {}", items.join(", ")), true, Role::User)
        }
        "edit" => {
            let edit = m.edit.clone().unwrap_or_default();
            meta.refers_to = edit.original_message_id;
            let inner = translate(&edit.message.map(|b| *b).unwrap_or_default());
            meta.attachments = inner.meta.attachments;
            (format!("[edited] {}", inner.content), false, Role::User)
        }
        "revoke" => {
            meta.refers_to = m
                .revoke
                .as_ref()
                .and_then(|r| r.original_message_id.clone());
            ("[deleted a message]".to_owned(), false, Role::User)
        }
        // Notices about the customer (a changed number): kept, hidden from the transcript.
        "system" => (
            text(m.system.as_ref().and_then(|t| t.body.as_ref())),
            false,
            Role::System,
        ),
        other => {
            let first = m.errors.as_ref().and_then(|e| e.first());
            let why = first
                .and_then(|e| e.error_data.as_ref()?.details.as_deref())
                .or(first.and_then(|e| e.title.as_deref()))
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
pub(super) async fn receive(
    state: &AppState,
    c: &ChannelConnection,
    message: &WithRaw<InboundMessage>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    let (Some(from), Some(wamid)) = (message.from.as_deref(), message.id.as_deref()) else {
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
    let answer = t.answer.then_some(from);
    let jobs =
        crate::channels::inbound_jobs(state, c, &mut t.meta.attachments, &mut t.content, answer)
            .await;
    let contact = match name {
        Some(n) if !n.is_empty() => format!("{n} (+{from})"),
        _ => format!("+{from}"),
    };
    let created_at = UnixTime::timestamp(message.timestamp).unwrap_or_else(Timestamp::now);
    let input = ConversationInput {
        external_id: Some(conversation_key(c, from)),
        assistant: AssistantRef {
            id: Some(c.assistant_id),
            name: None,
            company: None,
        },
        contact: Some(contact),
        session_id: Some(format!("wa-{from}")),
        messages: vec![crate::channels::channel_message(
            wamid.to_owned(),
            t.role,
            t.content,
            Some(created_at),
            t.meta,
        )],
        ..crate::channels::new_conversation(Channel::Whatsapp)
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
