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
//! only ever forward ([`super::delivery::advance`]).
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
//!
//! The module's parts: [`payload`] (the typed Cloud API shapes), `webhook` (verification and
//! the inbox), `inbound` (messages), `status` (delivery statuses), `send` (replies and
//! templates through the Graph API) and `templates` (proving a number, its quality and limits,
//! the approved templates).

mod inbound;
pub mod payload;
mod send;
mod status;
mod templates;
mod webhook;

use parley_core::Timestamp;

pub use super::delivery::advance;
pub use super::meta::{SignatureError, sign, verify_signature};
pub(crate) use send::download_attachment;
pub use send::{Template, graph_error, reply, send_template, template_body};
pub use templates::{
    TemplateInfo, approved_templates, placeholder_count, probe_graph, prove, tier_limit,
};
pub use webhook::{process_delivery, verify, webhook};

/// Meta's Graph API, the default `graph_base_url` of a connection.
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.facebook.com/v21.0";
/// How long after the customer's last message free-form replies are allowed, in ms (24 h).
pub const WINDOW_MS: i64 = super::WINDOW_MS;

/// When free-form replies stop being allowed: 24 h after the customer's last message; `None`
/// when the customer never wrote.
pub fn window_closes_at(last_inbound_at: Option<Timestamp>) -> Option<Timestamp> {
    last_inbound_at.map(|t| t.add_millis(WINDOW_MS))
}

/// Whether the 24-hour window is open at `now`.
pub fn window_open(last_inbound_at: Option<Timestamp>, now: Timestamp) -> bool {
    window_closes_at(last_inbound_at).is_some_and(|end| now < end)
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
    fn the_window_is_24_hours_from_the_last_inbound_message() {
        let t = Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        assert!(window_open(Some(t), t.add_millis(WINDOW_MS - 1)));
        assert!(!window_open(Some(t), t.add_millis(WINDOW_MS)));
        assert!(!window_open(None, t));
    }
}
