//! Sending through the Graph API (`POST /{phone-number-id}/messages`): free-form replies
//! inside the 24-hour window, templates at any time (counted against the messaging limit
//! outside it), and media downloads (`GET /{media-id}`).

use parley_core::channel::{Attachment, ChannelConnection, ChannelError, DeliveryStatus};
use parley_core::chat_markup::{Markup, to_markup};
use parley_core::model::Message;
use parley_core::{ConversationId, Timestamp};
use serde_json::{Value, json};

use super::payload::{GraphError, MediaInfo, SendAnswer};
use super::{WINDOW_MS, tier_limit, window_closes_at, window_open};
use crate::AppState;
use crate::channels::delivery::{Outgoing, record_send};
use crate::channels::meta::{GraphErrorBody, answer};
use crate::channels::{config_str, edit_config, media};

/// A Graph API error object (`{"code", "title", "message", "error_data": {"details"}}`, or
/// the `error` of an HTTP error body with `type`) as a [`ChannelError`].
pub fn graph_error(e: &GraphError) -> ChannelError {
    ChannelError {
        code: e.code.unwrap_or(0),
        title: e
            .title
            .as_deref()
            .or(e.kind.as_deref())
            .or(e.message.as_deref())
            .unwrap_or("unknown error")
            .to_owned(),
        message: e
            .error_data
            .as_ref()
            .and_then(|d| d.details.as_deref())
            .or(e.message.as_deref())
            .map(str::to_owned),
    }
}

/// The Graph API base of a connection: its own `graph_base_url`, else the operator's
/// (`whatsapp_graph_base_url`).
pub(super) fn graph_base(state: &AppState, c: &ChannelConnection) -> String {
    config_str(c, "graph_base_url")
        .unwrap_or(&state.settings.whatsapp_graph_base_url)
        .trim_end_matches('/')
        .to_owned()
}

/// A platform failure for a URL the guard refused (code 0, title `destination_not_allowed`).
fn refused_error() -> ChannelError {
    ChannelError {
        code: 0,
        title: crate::net::CODE.into(),
        message: Some(crate::net::MESSAGE.into()),
    }
}

/// Sends a Graph API `messages` request; returns the new message's `wamid`.
/// Errors: the Graph API's error object, or code 0 when it could not be reached.
async fn graph_send(
    state: &AppState,
    c: &ChannelConnection,
    body: &Value,
) -> Result<String, ChannelError> {
    let url = format!("{}/{}/messages", graph_base(state, c), c.external_key);
    let answer: SendAnswer = graph_call(state, c, url, Some(body)).await?;
    answer
        .messages
        .into_iter()
        .next()
        .and_then(|m| m.id)
        .ok_or_else(|| ChannelError {
            code: 0,
            title: "unexpected_answer".into(),
            message: Some("the Graph API answer carries no messages[0].id".into()),
        })
}

/// One Graph API request of connection `c` with its access token, through the guarded client:
/// a POST of `body`, or a GET without one; returns the JSON answer read into `T` (its default
/// when the answer is not of that shape). Errors: the Graph API's error object; code 0 when
/// the connection's token cannot be opened, the guard refuses the address, or the Graph API
/// could not be reached.
pub(super) async fn graph_call<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    c: &ChannelConnection,
    url: String,
    body: Option<&Value>,
) -> Result<T, ChannelError> {
    let token = crate::channels::send_secret(state, c, "access_token")?;
    let client = state
        .net
        .platform_client(&url, &state.settings.whatsapp_graph_base_url)
        .map_err(|_| refused_error())?;
    let request = match body {
        Some(b) => client.post(url).json(b),
        None => client.get(url),
    };
    let res = request
        .bearer_auth(token)
        .timeout(crate::channels::PLATFORM_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            if crate::net::refusal(&e).is_some() {
                return refused_error();
            }
            ChannelError {
                code: 0,
                title: "graph_unreachable".into(),
                message: Some(crate::assistant::provider::describe(e)),
            }
        })?;
    if !res.status().is_success() {
        return Err(graph_error(&answer::<GraphErrorBody>(res).await.error));
    }
    Ok(answer(res).await)
}

/// How a WhatsApp send is recorded on the message: type `kind`, `accepted` once Meta took it.
fn outgoing(kind: &str, details: Option<Value>) -> Outgoing<'_> {
    Outgoing {
        platform: "WhatsApp",
        kind: Some(kind),
        details,
        status: DeliveryStatus::Accepted,
    }
}

/// The refusal of a free-form send outside the 24-hour window (recorded on the message with
/// code 0 before Meta is called).
fn window_closed_error(last_inbound_at: Option<Timestamp>) -> ChannelError {
    ChannelError {
        code: 0,
        title: "window_closed".into(),
        message: Some(match window_closes_at(last_inbound_at) {
            Some(end) => format!(
                "the 24-hour window closed at {}: only an approved template can be sent",
                end.to_rfc3339()
            ),
            None => {
                "the customer has not written yet: only an approved template can be sent".to_owned()
            }
        }),
    }
}

/// Sends a stored assistant (or agent) message to the customer as free-form text, if the
/// 24-hour window is open, and records the outcome on it. Errors: the send's failure (also
/// recorded on the message).
pub async fn reply(
    state: &AppState,
    c: &ChannelConnection,
    conversation: ConversationId,
    to: &str,
    m: &Message,
) -> Result<String, ChannelError> {
    let ws = c.workspace_id;
    let last_inbound = crate::channels::delivery::last_inbound_at(state, ws, conversation).await;
    let result = if window_open(last_inbound, Timestamp::now()) {
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            // Markdown as WhatsApp's own formatting (`*bold*`, `_italic_`...).
            "text": {"preview_url": false, "body": to_markup(&m.content, Markup::WhatsApp)},
        });
        graph_send(state, c, &body).await
    } else {
        Err(window_closed_error(last_inbound))
    };
    record_send(state, ws, m, outgoing("text", None), &result).await;
    result
}

/// A template to send outside the window: `{"name", "language", "parameters": [text...]}`
/// (body parameters, in order).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The approved template's name.
    pub name: String,
    /// Its language code (`en_US`).
    pub language: String,
    /// Values of the body's `{{1}}`, `{{2}}`... in order.
    #[serde(default)]
    pub parameters: Vec<String>,
}

/// The Graph API `template` object for `t`.
pub fn template_body(t: &Template) -> Value {
    let mut template = json!({"name": t.name, "language": {"code": t.language}});
    if !t.parameters.is_empty() {
        let params: Vec<Value> = t
            .parameters
            .iter()
            .map(|p| json!({"type": "text", "text": p}))
            .collect();
        template["components"] = json!([{"type": "body", "parameters": params}]);
    }
    template
}

/// Sends a template to the customer (allowed whatever the window; `last_inbound_at` is the
/// customer's last message time) and records the outcome on the stored message `m`. Outside
/// the window it counts against the sender's messaging limit ([`tier_limit`]). Errors: the
/// Graph API's error; `messaging_limit_reached` before Meta is called.
pub async fn send_template(
    state: &AppState,
    c: &ChannelConnection,
    to: &str,
    last_inbound_at: Option<Timestamp>,
    m: &Message,
    t: &Template,
) -> Result<String, ChannelError> {
    let body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template_body(t),
    });
    // A template outside the window starts a business-initiated conversation, which counts
    // against the sender's messaging limit.
    let result = if window_open(last_inbound_at, Timestamp::now()) {
        graph_send(state, c, &body).await
    } else {
        match count_business_initiated(state, c, to).await {
            Ok(()) => graph_send(state, c, &body).await,
            Err(e) => Err(e),
        }
    };
    let details = serde_json::to_value(t).ok();
    record_send(
        state,
        c.workspace_id,
        m,
        outgoing("template", details),
        &result,
    )
    .await;
    result
}

/// Counts a business-initiated send (a template outside the 24-hour window) to `to` against
/// the sender's messaging limit: the distinct customers messaged so in the last 24 hours
/// (kept in the connection's `business_initiated` config, `{customer: unix ms}`). Errors:
/// `messaging_limit_reached` (code 0) when `to` is a new customer and the limit is used up;
/// nothing is counted then.
async fn count_business_initiated(
    state: &AppState,
    c: &ChannelConnection,
    to: &str,
) -> Result<(), ChannelError> {
    let store_error = |e: parley_store::StoreError| ChannelError {
        code: 0,
        title: "store_failed".into(),
        message: Some(e.to_string()),
    };
    let now = Timestamp::now();
    let customer = to.to_owned();
    // The count and the new entry are one atomic edit: servers sending at once never exceed
    // the limit between them.
    let refused = edit_config(state, c.workspace_id, c.id, move |config| {
        let mut recent: serde_json::Map<String, Value> = config
            .get("business_initiated")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        recent.retain(|_, at| at.as_i64().is_some_and(|t| now.0 - t < WINDOW_MS));
        let tier = config
            .get("messaging_limit_tier")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(limit) = tier_limit(&tier)
            && !recent.contains_key(&customer)
            && recent.len() as u64 >= limit
        {
            return (false, Some((tier, limit)));
        }
        recent.insert(customer, json!(now.0));
        config.insert("business_initiated".into(), Value::Object(recent));
        (true, None)
    })
    .await
    .map_err(store_error)?
    .flatten();
    match refused {
        Some((tier, limit)) => Err(ChannelError {
            code: 0,
            title: "messaging_limit_reached".into(),
            message: Some(format!(
                "this sender's messaging limit ({tier}: {limit} customers in 24 hours) is reached; Parley stopped before exceeding it"
            )),
        }),
        None => Ok(()),
    }
}

/// Downloads attachment `a` of a message that came through `c` ([`media::download`]); false
/// when it is not stored (the error is on `a`).
pub(crate) async fn download_attachment(
    state: &AppState,
    c: &ChannelConnection,
    a: &mut Attachment,
) -> bool {
    let Some(token) = crate::channels::download_secret(state, c, "access_token", a) else {
        return false;
    };
    let fetch = WhatsappMedia {
        state,
        graph: graph_base(state, c),
        token: &token,
    };
    media::download(state, c.workspace_id, a, &fetch).await
}

/// Media download through the Graph API: `GET /{media-id}` gives a short-lived URL, fetched
/// with the same bearer token through the guarded client ([`crate::net`]).
struct WhatsappMedia<'a> {
    state: &'a AppState,
    graph: String,
    token: &'a str,
}

impl media::Fetch for WhatsappMedia<'_> {
    async fn fetch(&self, media_id: &str) -> Result<Vec<u8>, String> {
        let net = &self.state.net;
        let info_url = format!("{}/{}", self.graph, media_id);
        let info = net
            .platform_client(&info_url, &self.state.settings.whatsapp_graph_base_url)
            .map_err(|r| format!("GET /{media_id}: {}: {r}", crate::net::CODE))?
            .get(info_url)
            .bearer_auth(self.token)
            .timeout(crate::channels::PLATFORM_TIMEOUT)
            .send()
            .await
            .map_err(crate::assistant::provider::describe)?;
        if !info.status().is_success() {
            let e = graph_error(&answer::<GraphErrorBody>(info).await.error);
            return Err(format!("GET /{media_id}: {} {}", e.code, e.title));
        }
        let info: MediaInfo = answer(info).await;
        let url = info
            .url
            .ok_or_else(|| format!("GET /{media_id}: no url in the answer"))?;
        // The URL is the platform's answer, not Parley's configuration: always guarded.
        let client = net
            .client_for(&url)
            .map_err(|r| format!("media download: {}: {r}", crate::net::CODE))?;
        media::fetch_bytes(client.get(&url).bearer_auth(self.token), "media download").await
    }
}
