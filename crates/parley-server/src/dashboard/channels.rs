//! The assistant page's list of channel connections (a view of [`crate::channels`] for the
//! dashboard: labels, secret hints, webhook inbox and WhatsApp quality lines).

use parley_core::WorkspaceId;
use parley_core::channel::{ChannelConnection, ChannelKind};

use crate::AppState;

/// A connection as the assistant page lists it.
pub struct ChannelRow {
    /// The connection's id.
    pub id: String,
    /// `whatsapp`, `telegram`, `messenger`, `retell`, `vapi` or `twilio` (the badge's class).
    pub kind: String,
    /// "WhatsApp", "Telegram", "Messenger", "Retell", "Vapi" or "Twilio".
    pub label: &'static str,
    /// Phone number id, bot id or Page id (a voice platform's: the connection id).
    pub external_key: String,
    /// The webhook's full URL as this page was reached (`{origin}/webhooks/{kind}/{id}`; for
    /// Twilio, on the operator's `public_base_url` when set), what
    /// the platform's settings want.
    pub webhook_url: String,
    /// The secrets' hints, e.g. "access_token …9876 · app_secret …6789".
    pub secrets: String,
    /// WhatsApp: quality rating and messaging limit, e.g. "Quality GREEN · limit TIER_1K
    /// (1000 customers / 24 h)"; empty when unknown.
    pub quality: String,
    /// When it was connected, in the viewer's time zone.
    pub connected: String,
    /// The webhook inbox when deliveries wait or failed, e.g. "Inbox: 3 waiting (oldest 2 min)
    /// · 1 failed"; empty when every delivery was processed.
    pub inbox: String,
}

/// `scheme://host` of the page as the browser reached it: the `Host` header, with
/// `X-Forwarded-Proto` (its first value) or else `http`; empty without a usable `Host`. Only
/// ever shown back to the viewer, to copy into a platform's settings.
pub fn origin(headers: &axum::http::HeaderMap) -> String {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = text("host").filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    }) else {
        return String::new();
    };
    let scheme = match text("x-forwarded-proto").and_then(|p| p.split(',').next()) {
        Some(p) if p.trim() == "https" => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// The assistant's connections for its dashboard page (`tz`: the viewer's offset in minutes;
/// `origin`: see [`origin`]); empty when the store fails (logged).
pub async fn rows(
    state: &AppState,
    workspace: WorkspaceId,
    assistant: parley_core::AssistantId,
    tz: i32,
    origin: &str,
) -> Vec<ChannelRow> {
    let list = match state
        .store
        .channels()
        .list_channels(workspace, Some(assistant))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "could not list channel connections");
            return Vec::new();
        }
    };
    let mut rows = Vec::with_capacity(list.len());
    for c in &list {
        let inbox = inbox_line(&crate::jobs::inbox(state, c).await);
        rows.push(ChannelRow {
            id: c.id.to_string(),
            kind: c.kind.as_str().to_owned(),
            label: match c.kind {
                ChannelKind::Whatsapp => "WhatsApp",
                ChannelKind::Telegram => "Telegram",
                ChannelKind::Messenger => "Messenger",
                ChannelKind::Retell => "Retell",
                ChannelKind::Vapi => "Vapi",
                ChannelKind::Twilio => "Twilio",
            },
            external_key: c.external_key.clone(),
            // Twilio signs the public URL it calls, so its row shows the one on the
            // operator's `public_base_url` (the one its signature must cover).
            webhook_url: match (&state.settings.public_base_url, c.kind) {
                (Some(public), ChannelKind::Twilio) => {
                    format!("{public}/webhooks/{}/{}", c.kind, c.id)
                }
                _ => format!("{origin}/webhooks/{}/{}", c.kind, c.id),
            },
            secrets: c
                .secrets
                .iter()
                .map(|(k, v)| format!("{k} {}", v.hint))
                .collect::<Vec<_>>()
                .join(" · "),
            connected: super::format::datetime(c.created_at, tz),
            quality: quality_line(c),
            inbox,
        });
    }
    rows
}

/// "Inbox: 3 waiting (oldest 2 min) · 1 failed", or empty when nothing waits or failed.
fn inbox_line(inbox: &crate::jobs::InboxView) -> String {
    let mut parts = Vec::new();
    if inbox.pending > 0 {
        let age = inbox.oldest_pending_age_ms.unwrap_or(0) / 1000;
        let age = if age < 120 {
            format!("{age} s")
        } else if age < 7200 {
            format!("{} min", age / 60)
        } else {
            format!("{} h", age / 3600)
        };
        parts.push(format!("{} waiting (oldest {age})", inbox.pending));
    }
    if inbox.failed > 0 {
        parts.push(format!("{} failed", inbox.failed));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("Inbox: {}", parts.join(" · "))
    }
}

fn quality_line(c: &ChannelConnection) -> String {
    let mut parts = Vec::new();
    if let Some(p) = crate::channels::config_str(c, "page_name") {
        parts.push(format!("Page {p}"));
    }
    if let Some(q) = crate::channels::config_str(c, "quality_rating") {
        parts.push(format!("Quality {q}"));
    }
    if let Some(e) = crate::channels::config_str(c, "quality_event") {
        parts.push(format!("last quality event {e}"));
    }
    if let Some(t) = crate::channels::config_str(c, "messaging_limit_tier") {
        parts.push(match crate::channels::whatsapp::tier_limit(t) {
            Some(n) => format!("limit {t} ({n} customers / 24 h)"),
            None => format!("limit {t}"),
        });
    }
    parts.join(" · ")
}
