//! A sender's standing at Meta: proving a number at connect time ([`prove`], [`probe_graph`]),
//! its quality rating and messaging limit tier ([`tier_limit`], quality updates), and its
//! approved message templates ([`approved_templates`]).

use axum::http::StatusCode;
use parley_core::Timestamp;
use parley_core::channel::{ChannelConnection, ChannelError};
use serde_json::{Value, json};

use super::payload::{ChangeValue, Listed, MessageTemplate, Page, PhoneNumber};
use super::send::{graph_base, graph_call, graph_error};
use crate::AppState;
use crate::channels::meta::{GraphErrorBody, answer};
use crate::channels::{Proof, config_str, edit_config};
use crate::error::ApiError;

/// The number of customers a sender may start conversations with in 24 hours, for a
/// `messaging_limit_tier` / `current_limit` value (`TIER_250`, `TIER_1K`, `TIER_10K`,
/// `TIER_100K`, `TIER_UNLIMITED`...); `None` for no limit or an unknown tier.
pub fn tier_limit(tier: &str) -> Option<u64> {
    let n = tier.strip_prefix("TIER_")?;
    let (digits, factor) = match n.strip_suffix('K') {
        Some(d) => (d, 1000),
        None => (n, 1),
    };
    digits.parse::<u64>().ok().map(|d| d * factor)
}

/// Records a `phone_number_quality_update` change (`{"display_phone_number", "event",
/// "current_limit"}`) on the connection: `quality_event`, `messaging_limit_tier`,
/// `quality_updated_at`.
pub(super) async fn apply_quality(
    state: &AppState,
    c: &ChannelConnection,
    value: &ChangeValue,
) -> Result<(), ApiError> {
    let (event, limit) = (value.event.clone(), value.current_limit.clone());
    tracing::info!(connection = %c.id, event = ?event, limit = ?limit,
        "WhatsApp sender quality update");
    edit_config(state, c.workspace_id, c.id, move |config| {
        if let Some(event) = event {
            config.insert("quality_event".into(), json!(event));
        }
        if let Some(limit) = limit {
            config.insert("messaging_limit_tier".into(), json!(limit));
        }
        config.insert("quality_updated_at".into(), json!(Timestamp::now()));
        (true, ())
    })
    .await?;
    Ok(())
}

/// Most pages of `GET /{waba-id}/phone_numbers` read while looking for a number (100 numbers
/// a page).
const MAX_NUMBER_PAGES: usize = 20;

/// A Graph API `GET` at the operator's Graph API (`whatsapp_graph_base_url`, trusted) with
/// `token`: the answer read into `T`, or the [`Proof`] that stops the proof.
async fn graph_get<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    path: &str,
    token: &str,
) -> Result<T, Proof> {
    let url = format!(
        "{}/{path}",
        state.settings.whatsapp_graph_base_url.trim_end_matches('/')
    );
    let res = state
        .net
        .trusted()
        .get(url)
        .bearer_auth(token)
        .timeout(crate::channels::PLATFORM_TIMEOUT)
        .send()
        .await
        .map_err(|e| Proof::Unreachable(crate::assistant::provider::describe(e)))?;
    let status = res.status();
    if status.is_success() {
        Ok(answer(res).await)
    } else if status.is_server_error() {
        Err(Proof::Unreachable(format!(
            "the Graph API failed (HTTP {})",
            status.as_u16()
        )))
    } else {
        let e = graph_error(&answer::<GraphErrorBody>(res).await.error);
        Err(Proof::Refused(format!(
            "{} ({})",
            e.message.unwrap_or(e.title),
            e.code
        )))
    }
}

/// Proves that `token` controls phone number `phone_number_id` of WhatsApp Business Account
/// `business_account_id`, at the operator's Graph API (never a URL a workspace gave, which
/// could answer anything): `GET /{phone-number-id}` must succeed and name that number, and
/// the number must be one of `GET /{business-account-id}/phone_numbers` (paged by the
/// `after` cursor). On success also returns the number's `quality_rating` and
/// `messaging_limit_tier` (GREEN, YELLOW, RED, UNKNOWN; TIER_250...) for the connection's
/// config.
pub async fn prove(
    state: &AppState,
    phone_number_id: &str,
    business_account_id: &str,
    token: &str,
) -> (Proof, serde_json::Map<String, Value>) {
    let mut quality = serde_json::Map::new();
    let number: PhoneNumber = match graph_get(
        state,
        &format!("{phone_number_id}?fields=id,display_phone_number,verified_name,quality_rating,messaging_limit_tier"),
        token,
    )
    .await
    {
        Ok(n) => n,
        Err(p) => return (p, quality),
    };
    if number.id.as_deref() != Some(phone_number_id) {
        return (
            Proof::Refused(format!(
                "the Graph API does not know phone number id {phone_number_id}"
            )),
            quality,
        );
    }
    for (key, v) in [
        ("quality_rating", number.quality_rating),
        ("messaging_limit_tier", number.messaging_limit_tier),
    ] {
        if let Some(v) = v {
            quality.insert(key.into(), json!(v));
        }
    }
    let mut after: Option<String> = None;
    for _ in 0..MAX_NUMBER_PAGES {
        let mut path = format!("{business_account_id}/phone_numbers?fields=id&limit=100");
        if let Some(cursor) = &after {
            path.push_str("&after=");
            path.extend(form_urlencoded::byte_serialize(cursor.as_bytes()));
        }
        let page: Page<Listed> = match graph_get(state, &path, token).await {
            Ok(p) => p,
            Err(p) => return (p, quality),
        };
        if page
            .data
            .iter()
            .any(|n| n.id.as_deref() == Some(phone_number_id))
        {
            return (Proof::Proven, quality);
        }
        after = page.after().map(str::to_owned);
        if after.is_none() {
            break;
        }
    }
    (
        Proof::Refused(format!(
            "phone number id {phone_number_id} is not one of WhatsApp Business Account {business_account_id}'s numbers"
        )),
        quality,
    )
}

/// Checks that a connection's own `graph_base_url` reaches a Graph API that knows the number
/// (`GET {graph}/{phone-number-id}?fields=id` through the guarded client). Errors: 422
/// `destination_not_allowed` or `graph_rejected`, field `graph_base_url`.
pub async fn probe_graph(
    state: &AppState,
    graph: &str,
    phone_number_id: &str,
    token: &str,
) -> Result<(), ApiError> {
    let url = format!("{graph}/{phone_number_id}?fields=id");
    let not_allowed = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::net::CODE,
            format!("graph_base_url: {}", crate::net::MESSAGE),
        )
        .with_field("graph_base_url")
    };
    let client = state
        .net
        .platform_client(&url, &state.settings.whatsapp_graph_base_url)
        .map_err(|_| not_allowed())?;
    let res = client
        .get(url)
        .bearer_auth(token)
        .timeout(crate::channels::PLATFORM_TIMEOUT)
        .send()
        .await;
    let status = match res {
        Ok(r) => r.status(),
        Err(e) if crate::net::refusal(&e).is_some() => return Err(not_allowed()),
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "graph_rejected",
                format!(
                    "graph_base_url: could not reach it: {}",
                    crate::assistant::provider::describe(e)
                ),
            )
            .with_field("graph_base_url"));
        }
    };
    if !status.is_success() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "graph_rejected",
            format!(
                "graph_base_url: the Graph API there answered HTTP {} for this number",
                status.as_u16()
            ),
        )
        .with_field("graph_base_url"));
    }
    Ok(())
}

/// An approved message template of a WhatsApp Business Account, as the template picker shows
/// it: Meta's `name`, `language`, `category`, the body's text and how many `{{n}}` parameters
/// the body takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateInfo {
    /// The template's name.
    pub name: String,
    /// Its language code (`en_US`).
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// The `BODY` component's text, with its `{{1}}`, `{{2}}`... placeholders.
    pub body: String,
    /// How many body parameters it takes (the highest `{{n}}`).
    pub parameters: usize,
}

/// The highest `{{n}}` placeholder in a template body (0 without any).
pub fn placeholder_count(body: &str) -> usize {
    let mut max = 0;
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find("}}")
            && let Ok(n) = rest[..end].trim().parse::<usize>()
        {
            max = max.max(n);
        }
    }
    max
}

/// The APPROVED message templates of the connection's WhatsApp Business Account, from the
/// Graph API (`GET /{business_account_id}/message_templates`, first 100, through the guarded
/// client), sorted by name and language. Errors: the Graph API's error, or code 0 when it could
/// not be reached.
pub async fn approved_templates(
    state: &AppState,
    c: &ChannelConnection,
) -> Result<Vec<TemplateInfo>, ChannelError> {
    let waba = config_str(c, "business_account_id").unwrap_or_default();
    let url = format!(
        "{}/{waba}/message_templates?fields=name,language,status,category,components&limit=100",
        graph_base(state, c)
    );
    let answer: Page<MessageTemplate> = graph_call(state, c, url, None).await?;
    let mut out: Vec<TemplateInfo> = answer
        .data
        .into_iter()
        .filter(|t| t.status.as_deref() == Some("APPROVED"))
        .filter_map(|t| {
            let body = t
                .components?
                .into_iter()
                .find(|c| c.kind.as_deref() == Some("BODY"))
                .and_then(|c| c.text)
                .unwrap_or_default();
            Some(TemplateInfo {
                name: t.name?,
                language: t.language?,
                category: t.category.unwrap_or_default(),
                parameters: placeholder_count(&body),
                body,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.language).cmp(&(&b.name, &b.language)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_takes_as_many_parameters_as_its_highest_placeholder() {
        assert_eq!(placeholder_count("Hi {{1}}, order {{2}} shipped"), 2);
        assert_eq!(placeholder_count("{{ 3 }} then {{1}}"), 3);
        assert_eq!(placeholder_count("No parameters, {{name}} is not one"), 0);
        assert_eq!(placeholder_count("unclosed {{1"), 0);
        assert_eq!(placeholder_count(""), 0);
    }

    #[test]
    fn tiers_give_the_daily_limit() {
        assert_eq!(tier_limit("TIER_250"), Some(250));
        assert_eq!(tier_limit("TIER_1K"), Some(1_000));
        assert_eq!(tier_limit("TIER_100K"), Some(100_000));
        assert_eq!(tier_limit("TIER_UNLIMITED"), None);
        assert_eq!(tier_limit(""), None);
    }
}
