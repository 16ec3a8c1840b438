//! The webhook: Meta's verification handshake, deliveries into the durable inbox, and the
//! processing of a stored delivery (its changes in order).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use parley_core::channel::{ChannelConnection, ChannelKind};

use super::payload::{ChangeValue, Webhook};
use super::{inbound, status, templates};
use crate::AppState;
use crate::channels::meta;
use crate::error::ApiError;
use crate::jobs::JobError;

/// `GET /webhooks/whatsapp/{id}`: Meta's verification handshake. 200 with `hub.challenge` as
/// plain text when `hub.mode` is `subscribe` and `hub.verify_token` is the connection's; 403
/// `verification_failed` otherwise; 404 for an unknown connection.
pub async fn verify(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let c = crate::channels::webhook_connection(&st, ChannelKind::Whatsapp, &id).await?;
    meta::handshake(&st, &c, query, "WhatsApp")
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
    let c = crate::channels::webhook_connection(&st, ChannelKind::Whatsapp, &id).await?;
    meta::check_delivery(&st, &c, &headers, &body, "WhatsApp")?;
    crate::channels::accept_delivery(&st, crate::jobs::WHATSAPP_DELIVERY, &c, &body).await
}

/// Processes one stored delivery (the `whatsapp.delivery` job; `body` is the raw body, a
/// [`Webhook`]): every change's statuses, then its messages, in order. Errors: `Retry` when
/// the store fails (what was stored is recognised on the next run), `Permanent` for a body
/// that is not JSON or not of the webhook's shape.
pub async fn process_delivery(
    state: &AppState,
    c: &ChannelConnection,
    body: &str,
) -> Result<(), JobError> {
    let payload: Webhook = crate::channels::parse_delivery(body, "delivery")?;
    process(state, c, &payload).await
}

async fn process(
    state: &AppState,
    c: &ChannelConnection,
    payload: &Webhook,
) -> Result<(), JobError> {
    let changes = payload.entry.iter().flat_map(|e| &e.changes);
    for change in changes {
        match change.field.as_deref() {
            Some("phone_number_quality_update") => {
                templates::apply_quality(state, c, &change.value).await?;
                continue;
            }
            Some("messages") => {}
            field => {
                tracing::debug!(
                    field = field.unwrap_or("null"),
                    "ignoring a WhatsApp change"
                );
                continue;
            }
        }
        let value = &change.value;
        let number = value
            .metadata
            .as_ref()
            .and_then(|m| m.phone_number_id.as_deref());
        let routed;
        let c = match number {
            Some(number) if number != c.external_key => {
                match meta::same_app_sender(state, c, number).await {
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
        for s in &value.statuses {
            status::apply_status(state, c, s).await?;
        }
        for message in &value.messages {
            inbound::receive(
                state,
                c,
                message,
                contact_name(value, message.from.as_deref()),
            )
            .await?;
        }
    }
    Ok(())
}

/// The profile name of the customer `from` among the change's `contacts`.
fn contact_name<'a>(value: &'a ChangeValue, from: Option<&str>) -> Option<&'a str> {
    value
        .contacts
        .iter()
        .find(|ct| ct.wa_id.as_deref() == from)
        .and_then(|ct| ct.profile.as_ref()?.name.as_deref())
}
