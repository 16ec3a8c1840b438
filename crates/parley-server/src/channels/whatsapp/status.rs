//! Delivery statuses (`value.statuses[]`) of the messages Parley sent.

use parley_core::Timestamp;
use parley_core::channel::{ChannelConnection, ChannelMessageMeta, Delivery, DeliveryStatus};

use super::payload::{Status, UnixTime};
use crate::AppState;
use crate::channels::delivery::advance;
use crate::channels::edit_message;
use crate::error::ApiError;

/// Applies one `statuses[]` entry to the message Parley sent with that `wamid`, if it moves
/// its delivery forward.
pub(super) async fn apply_status(
    state: &AppState,
    c: &ChannelConnection,
    status: &Status,
) -> Result<(), ApiError> {
    let (Some(wamid), Some(new)) = (
        status.id.as_deref(),
        status.status.as_deref().and_then(DeliveryStatus::parse),
    ) else {
        tracing::debug!(status = ?status.status, "ignoring an unknown WhatsApp status");
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
        at: UnixTime::timestamp(status.timestamp).unwrap_or_else(Timestamp::now),
        errors: status.errors.iter().map(super::graph_error).collect(),
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
