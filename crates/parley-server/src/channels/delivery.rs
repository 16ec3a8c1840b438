//! The delivery of the messages Parley sends, as every channel records it on the stored
//! message (`meta.channel.delivery`): the outcome of a send ([`record_send`]), then the
//! platform's callbacks, which only ever move it forward ([`advance`]).

use parley_core::Timestamp;
use parley_core::WorkspaceId;
use parley_core::channel::{ChannelError, ChannelMessageMeta, Delivery, DeliveryStatus};
use parley_core::model::Message;
use serde_json::Value;

use super::edit_message;
use crate::AppState;

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

/// When the customer of `conversation` last wrote (what the 24-hour window opens with);
/// `None` when they never did or the conversation cannot be read.
pub(crate) async fn last_inbound_at(
    state: &AppState,
    ws: WorkspaceId,
    conversation: parley_core::ConversationId,
) -> Option<Timestamp> {
    state
        .store
        .conversations()
        .get_conversation(ws, conversation)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.last_inbound_at)
}

/// How a channel records a send on the stored message.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing<'a> {
    /// The platform, for the log line when the record cannot be written ("WhatsApp").
    pub platform: &'a str,
    /// The `meta.channel` type to set (`text`, `template`); `None` keeps the message's own,
    /// or `text` when it has none.
    pub kind: Option<&'a str>,
    /// The `meta.channel.details` to set.
    pub details: Option<Value>,
    /// The delivery status a successful send gets: `accepted` (Meta answers before it sends)
    /// or `sent` (Telegram's answer is the sent message).
    pub status: DeliveryStatus,
}

/// Records the outcome of a send on stored message `m`: on success the platform's message id
/// (WhatsApp `wamid`, Messenger `mid`, Telegram `out:{message_id}`) as its `external_id` and
/// `out.status`, or `failed` with the error; `out.kind` and `out.details` become its
/// `meta.channel` type and details. A status callback may have moved the delivery on already
/// (on another server): it is kept when it is further along. A store failure is logged, not
/// returned (the send happened either way).
pub(crate) async fn record_send(
    state: &AppState,
    ws: WorkspaceId,
    m: &Message,
    out: Outgoing<'_>,
    result: &Result<String, ChannelError>,
) {
    let (external_id, delivery) = match result {
        Ok(id) => (
            Some(id.as_str()),
            Delivery {
                status: out.status,
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
    let kind = out.kind.map(str::to_owned);
    let details = out.details;
    let recorded = edit_message(state, ws, m.id, external_id, move |_, meta| {
        let ch = meta.channel.get_or_insert_with(|| ChannelMessageMeta {
            kind: "text".into(),
            ..Default::default()
        });
        if let Some(kind) = kind {
            ch.kind = kind;
        }
        ch.details = details;
        advance(&mut ch.delivery, delivery);
        (true, ())
    })
    .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, platform = out.platform, "could not record a send");
    }
}
