//! Channel connections and channel sends:
//!
//! - `POST /api/v1/assistants/{id}/channels`: connect a WhatsApp sender, a Telegram bot, a
//!   Facebook Page (Messenger), or a voice platform (Retell, Vapi: see [`crate::channels::voip`]);
//! - `GET /api/v1/assistants/{id}/channels`, `GET /api/v1/channels/{id}`,
//!   `DELETE /api/v1/channels/{id}`;
//! - `POST /api/v1/conversations/{id}/channel-messages`: a team member's message (text, or a
//!   WhatsApp template) sent to the customer through the conversation's connection.
//!
//! Outputs show each secret only as its hint (`…` and its last four characters).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_core::channel::{ChannelConnection, ChannelKind};
use parley_core::model::{MessageInput, MessageMeta};
use parley_core::{AssistantId, ChannelConnectionId, ConversationId, Role, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use parley_core::assistant::check_base_url;

use super::ApiJson;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::channels::{self, messenger, telegram, whatsapp};
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest};

/// `POST /api/v1/assistants/{id}/channels` body. WhatsApp needs `phone_number_id`,
/// `business_account_id`, `access_token`, `app_secret`, `verify_token` (and optionally
/// `graph_base_url`); Telegram needs `bot_token` and `public_base_url` (and optionally
/// `api_base_url`); Messenger needs `page_id`, `access_token` (the Page access token),
/// `app_secret` and `verify_token`. Any of them may name a `transcription_model` for voice
/// notes and a `vision_model` for images. Retell needs `api_key`, Vapi `server_secret`, and neither takes
/// anything else. Twilio needs `account_sid` and `auth_token`, and may name a
/// `transcription_model` for its call recordings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectInput {
    /// `whatsapp`, `telegram`, `messenger`, `retell`, `vapi` or `twilio`.
    pub kind: ChannelKind,
    /// Messenger: the Facebook Page's id (digits).
    #[serde(default)]
    pub page_id: Option<String>,
    /// WhatsApp: the phone number's id in Meta's Business Manager (digits).
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// WhatsApp: the WhatsApp Business Account id (digits).
    #[serde(default)]
    pub business_account_id: Option<String>,
    /// WhatsApp: a system user access token; Messenger: the Page access token (sealed).
    #[serde(default)]
    pub access_token: Option<String>,
    /// WhatsApp and Messenger: the Meta app's secret, which signs webhooks (sealed).
    #[serde(default)]
    pub app_secret: Option<String>,
    /// WhatsApp and Messenger: the token Meta's verification handshake must present (sealed).
    #[serde(default)]
    pub verify_token: Option<String>,
    /// WhatsApp: the Graph API base (default `https://graph.facebook.com/v21.0`).
    #[serde(default)]
    pub graph_base_url: Option<String>,
    /// Telegram: the bot's token from @BotFather (`123456:ABC...`, sealed).
    #[serde(default)]
    pub bot_token: Option<String>,
    /// Telegram: where Telegram reaches this server (`https://parley.example.com`); the
    /// webhook is `{public_base_url}/webhooks/telegram/{id}`.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// Telegram: the Bot API base (default `https://api.telegram.org`).
    #[serde(default)]
    pub api_base_url: Option<String>,
    /// The speech-to-text model of the assistant's provider (`whisper-1`); voice notes are
    /// transcribed when set.
    #[serde(default)]
    pub transcription_model: Option<String>,
    /// A vision-capable model of the assistant's provider (`gpt-4o-mini`); images are
    /// described when set.
    #[serde(default)]
    pub vision_model: Option<String>,
    /// Retell: the API key with the webhook badge, which signs Retell's webhooks (sealed).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Vapi: the server URL secret, or the token or HMAC secret key of the Custom Credential
    /// on the server URL (sealed).
    #[serde(default)]
    pub server_secret: Option<String>,
    /// Twilio: the account SID (`AC` and 32 hex digits), shown back as is.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Twilio: the account's auth token, which signs Twilio's webhooks and fetches its
    /// recordings (sealed, never shown back).
    #[serde(default)]
    pub auth_token: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("{field}: {}", message.into()),
    )
    .with_field(field)
}

/// A required, non-empty text field of at most `max` characters.
fn required<'a>(v: &'a Option<String>, field: &str, max: usize) -> Result<&'a str, ApiError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Err(invalid(field, "is required")),
        Some(s) if s.chars().count() > max => {
            Err(invalid(field, format!("must be at most {max} characters")))
        }
        Some(s) => Ok(s),
    }
}

/// Whether `sid` is a Twilio account SID: `AC` and 32 hex digits.
fn twilio_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn digits(v: &Option<String>, field: &str) -> Result<String, ApiError> {
    let s = required(v, field, 32)?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(field, "must be digits only"));
    }
    Ok(s.to_owned())
}

/// An optional base URL: checked like a provider's ([`check_base_url`]: http(s), no user
/// name, query or fragment), at most 500 characters.
fn base_url(v: &Option<String>, field: &str) -> Result<Option<String>, ApiError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.len() > 500 => Err(invalid(field, "must be at most 500 characters")),
        Some(s) => check_base_url(s).map(Some).map_err(|m| invalid(field, m)),
    }
}

/// An optional platform API base URL the server will send requests to ([`base_url`]): the
/// operator's own (`operator_base`, or under it) is trusted; any other whose host is an IP
/// literal must be one the server connects to for workspaces (a host name is checked when it
/// is resolved). Errors: 422 `validation_failed` or `destination_not_allowed` naming `field`.
fn outgoing_url(
    st: &AppState,
    v: &Option<String>,
    field: &str,
    operator_base: &str,
) -> Result<Option<String>, ApiError> {
    let url = base_url(v, field)?;
    if let Some(u) = &url
        && st.net.platform_client(u, operator_base).is_err()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::net::CODE,
            format!("{field}: {}", crate::net::MESSAGE),
        )
        .with_field(field));
    }
    Ok(url)
}

/// The claim's outcome as an error: 422 `ownership_not_proven` naming the credential at
/// fault, 502 `{platform}_unreachable` when the platform could not be asked.
fn require_proof(proof: channels::Proof, kind: ChannelKind, field: &str) -> Result<(), ApiError> {
    match proof {
        channels::Proof::Proven => Ok(()),
        channels::Proof::Refused(why) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ownership_not_proven",
            format!(
                "{field}: {} did not confirm that these credentials control this sender: {why}",
                platform_name(kind)
            ),
        )
        .with_field(field)),
        channels::Proof::Unreachable(why) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            match kind {
                ChannelKind::Whatsapp => "whatsapp_unreachable",
                ChannelKind::Telegram => "telegram_unreachable",
                ChannelKind::Messenger => "messenger_unreachable",
                ChannelKind::Retell => "retell_unreachable",
                ChannelKind::Vapi => "vapi_unreachable",
                ChannelKind::Twilio => "twilio_unreachable",
            },
            format!(
                "could not ask {} to confirm the credentials: {why}",
                platform_name(kind)
            ),
        )),
    }
}

fn platform_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Whatsapp | ChannelKind::Messenger => "Meta's Graph API",
        ChannelKind::Telegram => "Telegram",
        ChannelKind::Retell => "Retell",
        ChannelKind::Vapi => "Vapi",
        ChannelKind::Twilio => "Twilio",
    }
}

/// Whether the stored credentials of `holder` still control its sender (asked at the
/// operator's platform API). Credentials that cannot even be opened count as refused.
async fn holder_proof(st: &AppState, holder: &ChannelConnection) -> channels::Proof {
    match holder.kind {
        ChannelKind::Telegram => match channels::open_secret(st, holder, "bot_token") {
            Ok(token) => telegram::prove(st, &token).await,
            Err(e) => channels::Proof::Refused(e),
        },
        ChannelKind::Whatsapp => {
            let waba = channels::config_str(holder, "business_account_id").unwrap_or_default();
            match channels::open_secret(st, holder, "access_token") {
                Ok(token) => {
                    whatsapp::prove(st, &holder.external_key, waba, &token)
                        .await
                        .0
                }
                Err(e) => channels::Proof::Refused(e),
            }
        }
        ChannelKind::Messenger => match channels::open_secret(st, holder, "access_token") {
            Ok(token) => messenger::prove(st, &holder.external_key, &token).await.0,
            Err(e) => channels::Proof::Refused(e),
        },
        // Nothing is claimed: a voice platform's connection is keyed by its own id.
        ChannelKind::Retell | ChannelKind::Vapi | ChannelKind::Twilio => channels::Proof::Proven,
    }
}

/// Makes room for `c`, whose credentials were just proven: nothing to do when its sender is
/// not connected. When it is, the claimant — who controls the sender — is told where (its own
/// workspace) or that it is elsewhere on the server, unless the holder's credentials no longer
/// control the sender (a connection made before ownership was checked, or whose token was
/// revoked): that dead connection is removed, logged, and `c` takes its place. Errors: 409
/// `channel_exists`.
async fn free_sender(st: &AppState, c: &ChannelConnection) -> Result<(), ApiError> {
    let Some(holder) = st
        .store
        .channels()
        .channel_by_key(c.kind, &c.external_key)
        .await?
    else {
        return Ok(());
    };
    if let channels::Proof::Refused(why) = holder_proof(st, &holder).await {
        tracing::warn!(kind = %c.kind, sender = %c.external_key, holder = %holder.id,
            holder_workspace = %holder.workspace_id, claimant_workspace = %c.workspace_id, why,
            "a proven owner claims a sender whose connection's credentials no longer control it: that connection is removed");
        st.store
            .channels()
            .delete_channel(holder.workspace_id, holder.id)
            .await?;
        return Ok(());
    }
    let label = platform_label(c.kind);
    let message = if holder.workspace_id == c.workspace_id {
        let assistant = st
            .store
            .assistants()
            .get_assistant(holder.workspace_id, holder.assistant_id)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        format!(
            "this {label} ({}) is already connected in this workspace, to the assistant {assistant:?}: disconnect it there first",
            c.external_key
        )
    } else {
        format!(
            "this {label} ({}) is already connected in another workspace on this Parley server: disconnect it there first, or ask the server's operator",
            c.external_key
        )
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "channel_exists",
        message,
    ))
}

fn platform_label(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Whatsapp => "WhatsApp number",
        ChannelKind::Telegram => "Telegram bot",
        ChannelKind::Messenger => "Facebook Page",
        ChannelKind::Retell => "Retell account",
        ChannelKind::Vapi => "Vapi account",
        ChannelKind::Twilio => "Twilio account",
    }
}

fn forbid(v: &Option<String>, field: &str, kind: ChannelKind) -> Result<(), ApiError> {
    if v.is_some() {
        return Err(invalid(
            field,
            format!("does not apply to {kind} connections"),
        ));
    }
    Ok(())
}

/// Every optional field of a connection request with its name, in the request's order.
fn fields(input: &ConnectInput) -> [(&Option<String>, &'static str); 16] {
    [
        (&input.page_id, "page_id"),
        (&input.phone_number_id, "phone_number_id"),
        (&input.business_account_id, "business_account_id"),
        (&input.access_token, "access_token"),
        (&input.app_secret, "app_secret"),
        (&input.verify_token, "verify_token"),
        (&input.graph_base_url, "graph_base_url"),
        (&input.bot_token, "bot_token"),
        (&input.public_base_url, "public_base_url"),
        (&input.api_base_url, "api_base_url"),
        (&input.transcription_model, "transcription_model"),
        (&input.vision_model, "vision_model"),
        (&input.api_key, "api_key"),
        (&input.server_secret, "server_secret"),
        (&input.account_sid, "account_sid"),
        (&input.auth_token, "auth_token"),
    ]
}

/// Refuses the first field of `forbidden` (in the request's order) that is given: fields that
/// do not apply to `input.kind`'s connections. Errors: 422 `validation_failed` naming the field.
fn forbid_fields(input: &ConnectInput, forbidden: &[&str]) -> Result<(), ApiError> {
    for (v, f) in fields(input) {
        if forbidden.contains(&f) {
            forbid(v, f, input.kind)?;
        }
    }
    Ok(())
}

fn parse_assistant(id: &str) -> Result<AssistantId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("assistant"))
}

fn parse_channel(id: &str) -> Result<ChannelConnectionId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("channel"))
}

/// Connects `input` to `assistant` of `workspace`: validates it, proves at the operator's
/// platform API that the credentials control the sender (and reads a WhatsApp number's
/// quality on the way), makes sure the sender is not connected elsewhere ([`free_sender`]),
/// checks the connection's own API URL, seals the secrets, asks Telegram to deliver to Parley
/// (`setWebhook`), and stores the connection. Shared by the API and the dashboard. Errors: as
/// [`create`](fn@create) answers them.
pub(crate) async fn connect(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    assistant: AssistantId,
    input: &ConnectInput,
) -> Result<ChannelConnection, ApiError> {
    st.store
        .assistants()
        .get_assistant(workspace, assistant)
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))?;
    let mut c = ChannelConnection {
        id: ChannelConnectionId::new(),
        workspace_id: workspace,
        assistant_id: assistant,
        kind: input.kind,
        external_key: String::new(),
        config: Map::new(),
        secrets: Default::default(),
        created_at: Timestamp::now(),
    };
    if let Some(m) = input.transcription_model.as_deref().map(str::trim) {
        if m.is_empty() || m.len() > 200 {
            return Err(invalid(
                "transcription_model",
                "must be 1 to 200 characters",
            ));
        }
        c.config.insert("transcription_model".into(), json!(m));
    }
    if let Some(m) = input.vision_model.as_deref().map(str::trim) {
        if m.is_empty() || m.len() > 200 {
            return Err(invalid("vision_model", "must be 1 to 200 characters"));
        }
        c.config.insert("vision_model".into(), json!(m));
    }
    if input.kind != ChannelKind::Messenger {
        forbid(&input.page_id, "page_id", input.kind)?;
    }
    match input.kind {
        ChannelKind::Whatsapp => connect_whatsapp(st, input, &mut c).await?,
        ChannelKind::Messenger => connect_messenger(st, input, &mut c).await?,
        ChannelKind::Telegram => connect_telegram(st, input, &mut c).await?,
        ChannelKind::Retell | ChannelKind::Vapi => connect_voice_agent(st, input, &mut c)?,
        ChannelKind::Twilio => connect_twilio(st, input, &mut c)?,
    }
    st.store.channels().create_channel(&c).await?;
    Ok(c)
}

/// [`connect`] for a WhatsApp Cloud API number: its ids, token, app secret and verify token, the
/// number proven and free. Errors: as [`connect`]'s.
async fn connect_whatsapp(
    st: &AppState,
    input: &ConnectInput,
    c: &mut ChannelConnection,
) -> Result<(), ApiError> {
    forbid_fields(
        input,
        &[
            "bot_token",
            "public_base_url",
            "api_base_url",
            "api_key",
            "server_secret",
            "account_sid",
            "auth_token",
        ],
    )?;
    c.external_key = digits(&input.phone_number_id, "phone_number_id")?;
    let waba = digits(&input.business_account_id, "business_account_id")?;
    let meta = MetaCredentials::of(input)?;
    let token = meta.access_token;
    let graph = outgoing_url(
        st,
        &input.graph_base_url,
        "graph_base_url",
        &st.settings.whatsapp_graph_base_url,
    )?;
    // Ownership first: nothing about other connections is said to someone who has
    // not shown they control the number.
    let (proof, quality) = whatsapp::prove(st, &c.external_key, &waba, token).await;
    require_proof(proof, c.kind, "access_token")?;
    c.config
        .insert("phone_number_id".into(), json!(c.external_key));
    c.config.insert("business_account_id".into(), json!(waba));
    c.config.extend(quality);
    free_sender(st, c).await?;
    if let Some(graph) = graph {
        whatsapp::probe_graph(st, &graph, &c.external_key, token).await?;
        c.config.insert("graph_base_url".into(), json!(graph));
    }
    meta.seal(st, c);
    Ok(())
}

/// The credentials of a Meta app connection (WhatsApp Cloud API, Messenger): the access token,
/// the app secret that signs webhooks, and the webhook verify token.
struct MetaCredentials<'a> {
    access_token: &'a str,
    app_secret: &'a str,
    verify_token: &'a str,
}

impl<'a> MetaCredentials<'a> {
    /// The three from the request. Errors: 422 `validation_failed` for one missing or too long
    /// (the access token at most 4,096 characters, the others 512).
    fn of(input: &'a ConnectInput) -> Result<Self, ApiError> {
        Ok(MetaCredentials {
            access_token: required(&input.access_token, "access_token", 4096)?,
            app_secret: required(&input.app_secret, "app_secret", 512)?,
            verify_token: required(&input.verify_token, "verify_token", 512)?,
        })
    }

    /// Seals the three into the connection's secrets.
    fn seal(&self, st: &AppState, c: &mut ChannelConnection) {
        channels::seal(st, &mut c.secrets, "access_token", self.access_token);
        channels::seal(st, &mut c.secrets, "app_secret", self.app_secret);
        channels::seal(st, &mut c.secrets, "verify_token", self.verify_token);
    }
}

/// [`connect`] for a Messenger Page: its id, token, app secret and verify token, the Page proven
/// and free. Errors: as [`connect`]'s.
async fn connect_messenger(
    st: &AppState,
    input: &ConnectInput,
    c: &mut ChannelConnection,
) -> Result<(), ApiError> {
    forbid_fields(
        input,
        &[
            "phone_number_id",
            "business_account_id",
            "graph_base_url",
            "bot_token",
            "public_base_url",
            "api_base_url",
            "api_key",
            "server_secret",
            "account_sid",
            "auth_token",
        ],
    )?;
    c.external_key = digits(&input.page_id, "page_id")?;
    let meta = MetaCredentials::of(input)?;
    let token = meta.access_token;
    // Ownership first, as for WhatsApp.
    let (proof, name) = messenger::prove(st, &c.external_key, token).await;
    require_proof(proof, c.kind, "access_token")?;
    c.config.insert("page_id".into(), json!(c.external_key));
    if let Some(name) = name {
        c.config.insert("page_name".into(), json!(name));
    }
    free_sender(st, c).await?;
    meta.seal(st, c);
    Ok(())
}

/// [`connect`] for a Telegram bot: its token proven, the public base URL, and `setWebhook` asked.
/// Errors: as [`connect`]'s.
async fn connect_telegram(
    st: &AppState,
    input: &ConnectInput,
    c: &mut ChannelConnection,
) -> Result<(), ApiError> {
    forbid_fields(
        input,
        &[
            "phone_number_id",
            "business_account_id",
            "access_token",
            "app_secret",
            "verify_token",
            "graph_base_url",
            "api_key",
            "server_secret",
            "account_sid",
            "auth_token",
        ],
    )?;
    let token = required(&input.bot_token, "bot_token", 200)?;
    c.external_key = telegram::bot_id(token)
        .ok_or_else(|| {
            invalid(
                "bot_token",
                "must look like 123456789:AAH... (from @BotFather)",
            )
        })?
        .to_owned();
    let public = base_url(&input.public_base_url, "public_base_url")?
        .ok_or_else(|| invalid("public_base_url", "is required"))?;
    let api = outgoing_url(
        st,
        &input.api_base_url,
        "api_base_url",
        &st.settings.telegram_api_base_url,
    )?;
    require_proof(telegram::prove(st, token).await, c.kind, "bot_token")?;
    c.config.insert("bot_id".into(), json!(c.external_key));
    c.config.insert("public_base_url".into(), json!(public));
    if let Some(api) = api {
        c.config.insert("api_base_url".into(), json!(api));
    }
    let webhook_secret = crate::auth::session::random_token();
    channels::seal(st, &mut c.secrets, "bot_token", token);
    channels::seal(st, &mut c.secrets, "webhook_secret", &webhook_secret);
    free_sender(st, c).await?;
    telegram::set_webhook(st, c, token, &webhook_secret).await?;
    Ok(())
}

/// [`connect`] for a Retell (`api_key`) or Vapi (`server_secret`) account: the secret its webhooks
/// are checked with. Errors: as [`connect`]'s.
fn connect_voice_agent(
    st: &AppState,
    input: &ConnectInput,
    c: &mut ChannelConnection,
) -> Result<(), ApiError> {
    let (name, given, other) = if c.kind == ChannelKind::Retell {
        (
            "api_key",
            &input.api_key,
            ("server_secret", &input.server_secret),
        )
    } else {
        (
            "server_secret",
            &input.server_secret,
            ("api_key", &input.api_key),
        )
    };
    for (v, f) in [
        (&input.phone_number_id, "phone_number_id"),
        (&input.business_account_id, "business_account_id"),
        (&input.access_token, "access_token"),
        (&input.app_secret, "app_secret"),
        (&input.verify_token, "verify_token"),
        (&input.graph_base_url, "graph_base_url"),
        (&input.bot_token, "bot_token"),
        (&input.public_base_url, "public_base_url"),
        (&input.api_base_url, "api_base_url"),
        (&input.transcription_model, "transcription_model"),
        (&input.vision_model, "vision_model"),
        (&input.account_sid, "account_sid"),
        (&input.auth_token, "auth_token"),
        (other.1, other.0),
    ] {
        forbid(v, f, input.kind)?;
    }
    let secret = required(given, name, 512)?;
    if secret.chars().any(char::is_control) {
        return Err(invalid(name, "must not hold control characters"));
    }
    debug_assert_eq!(name, channels::voip::secret_name(c.kind));
    c.external_key = c.id.to_string();
    channels::seal(st, &mut c.secrets, name, secret);
    Ok(())
}

/// [`connect`] for a Twilio account: its SID and auth token. Errors: as [`connect`]'s.
fn connect_twilio(
    st: &AppState,
    input: &ConnectInput,
    c: &mut ChannelConnection,
) -> Result<(), ApiError> {
    forbid_fields(
        input,
        &[
            "phone_number_id",
            "business_account_id",
            "access_token",
            "app_secret",
            "verify_token",
            "graph_base_url",
            "bot_token",
            "public_base_url",
            "api_base_url",
            "vision_model",
            "api_key",
            "server_secret",
        ],
    )?;
    let sid = required(&input.account_sid, "account_sid", 34)?;
    if !twilio_sid(sid) {
        return Err(invalid(
            "account_sid",
            "must be AC followed by 32 hex digits (Twilio Console, Account Info)",
        ));
    }
    let token = required(&input.auth_token, "auth_token", 512)?;
    if token.chars().any(char::is_control) {
        return Err(invalid("auth_token", "must not hold control characters"));
    }
    // Like Retell's and Vapi's: no sender to claim, so the key is the connection's id
    // (two workspaces may each connect a subaccount's calls).
    c.external_key = c.id.to_string();
    c.config.insert("account_sid".into(), json!(sid));
    channels::seal(st, &mut c.secrets, "auth_token", token);
    Ok(())
}

/// `POST /api/v1/assistants/{id}/channels`: 201 with the connection (secrets as hints); 404
/// for an unknown assistant; 422 naming the field at fault: `validation_failed`,
/// `ownership_not_proven` (the platform did not confirm the credentials control the sender;
/// checked before anything about other connections is said), `destination_not_allowed` (a
/// `graph_base_url` / `api_base_url` the server does not connect to), `graph_rejected`,
/// `telegram_rejected` (Telegram refuses the webhook); 409 `channel_exists` (to a proven
/// owner: the sender is connected elsewhere); 502 `whatsapp_unreachable` /
/// `telegram_unreachable` / `messenger_unreachable`.
pub(super) async fn create(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ConnectInput>,
) -> Result<Response, ApiError> {
    let c = connect(&st, auth.workspace, parse_assistant(&id)?, &input).await?;
    tracing::info!(connection = %c.id, kind = %c.kind, "channel connected");
    Ok((
        StatusCode::CREATED,
        Json(channels::view_with_inbox(&st, &c).await),
    )
        .into_response())
}

/// `GET /api/v1/assistants/{id}/channels`: `{"items": [...]}`, oldest first.
pub(super) async fn list(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let assistant = parse_assistant(&id)?;
    st.store
        .assistants()
        .get_assistant(auth.workspace, assistant)
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))?;
    let mut items: Vec<Value> = Vec::new();
    for c in st
        .store
        .channels()
        .list_channels(auth.workspace, Some(assistant))
        .await?
    {
        items.push(channels::view_with_inbox(&st, &c).await);
    }
    Ok(Json(json!({ "items": items })).into_response())
}

/// `GET /api/v1/channels/{id}`: one connection; 404 if not in the workspace.
pub(super) async fn detail(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = st
        .store
        .channels()
        .get_channel(auth.workspace, parse_channel(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    Ok(Json(channels::view_with_inbox(&st, &c).await).into_response())
}

/// `DELETE /api/v1/channels/{id}`: 204; its webhook stops answering (404) and its
/// conversations stay. 404 if not in the workspace.
pub(super) async fn delete(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    disconnect(&st, auth.workspace, parse_channel(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes connection `id` of `workspace` (Telegram is asked to stop delivering first); its
/// conversations stay. Shared by the API and the dashboard. Errors: 404 if not in the
/// workspace.
pub(crate) async fn disconnect(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    id: ChannelConnectionId,
) -> Result<(), ApiError> {
    let c = st
        .store
        .channels()
        .get_channel(workspace, id)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    if c.kind == ChannelKind::Telegram {
        telegram::delete_webhook(st, &c).await;
    }
    st.store.channels().delete_channel(workspace, id).await?;
    tracing::info!(connection = %id, "channel disconnected");
    Ok(())
}

/// `GET /api/v1/conversations/{id}/channel`: the connection a conversation came through, the
/// customer's platform id and, for WhatsApp and Messenger, the 24-hour window: `{"channel",
/// "customer", "window": {"open", "closes_at"}}` (`window` null on Telegram, `closes_at` null
/// when the customer never wrote). 404; 409 `not_a_channel_conversation`.
pub(super) async fn conversation_channel(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conversation: ConversationId = id
        .parse()
        .map_err(|_| ApiError::not_found("conversation"))?;
    let (c, customer, detail) = channels::connection_of(&st, auth.workspace, conversation).await?;
    let window = matches!(c.kind, ChannelKind::Whatsapp | ChannelKind::Messenger).then(|| {
        json!({
            "open": whatsapp::window_open(detail.last_inbound_at, Timestamp::now()),
            "closes_at": whatsapp::window_closes_at(detail.last_inbound_at),
        })
    });
    Ok(Json(json!({
        "channel": channels::view(&c),
        "customer": customer,
        "window": window,
    }))
    .into_response())
}

/// `POST /api/v1/conversations/{id}/channel-messages` body: exactly one of `text` (free-form)
/// and `template` (WhatsApp only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendInput {
    /// Free-form text (markdown is sent as is).
    #[serde(default)]
    pub text: Option<String>,
    /// A WhatsApp template: `{"name", "language", "parameters": [...]}`.
    #[serde(default)]
    pub template: Option<whatsapp::Template>,
}

/// `POST /api/v1/conversations/{id}/channel-messages`: stores an `agent` message and sends it
/// to the customer. 201 with the message (its `meta.channel.delivery` says `accepted`); 404;
/// 409 `not_a_channel_conversation`; 429 `messaging_limit_reached` for a template that
/// would exceed the WhatsApp sender's daily limit of new customers (refused before Meta is
/// called, and recorded); 422 `validation_failed`; 422 `window_closed` for
/// free-form WhatsApp text outside the 24-hour window (refused before Meta is called, and
/// recorded on the stored message); 502 `channel_send_failed` with the platform's error when
/// the platform refuses it (also recorded).
pub(super) async fn send(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<SendInput>,
) -> Result<Response, ApiError> {
    let conversation: ConversationId = id
        .parse()
        .map_err(|_| ApiError::not_found("conversation"))?;
    let (c, customer, detail) = channels::connection_of(&st, auth.workspace, conversation).await?;
    let content = match (&input.text, &input.template) {
        (Some(t), None) if !t.trim().is_empty() => t.clone(),
        (None, Some(t)) => {
            if c.kind != ChannelKind::Whatsapp {
                return Err(invalid("template", "templates are WhatsApp's"));
            }
            required(&Some(t.name.clone()), "template.name", 512)?;
            required(&Some(t.language.clone()), "template.language", 20)?;
            let mut text = format!("[template {} ({})]", t.name, t.language);
            for p in &t.parameters {
                text.push_str(&format!(" {p}"));
            }
            text
        }
        _ => {
            return Err(invalid(
                "text",
                "give either a non-empty text or a template",
            ));
        }
    };
    crate::team::mark_team_message(&st, auth.workspace, &detail).await?;
    let stored = ingest(
        &st,
        auth.workspace,
        vec![IngestRequest::Append {
            conversation,
            messages: vec![MessageInput {
                id: None,
                external_id: None,
                role: Role::Agent,
                content,
                created_at: None,
                model: None,
                usage: None,
                cost_nanousd: None,
                meta: MessageMeta::default(),
            }],
        }],
    )
    .await?;
    let Some(parley_store::MessageOutcome::Stored { id: message_id }) =
        stored.first().and_then(|o| o.messages.first()).copied()
    else {
        return Err(ApiError::internal("the agent message was not stored"));
    };
    let message = find_message(&st, &auth, conversation, message_id).await?;
    let result = match (c.kind, &input.template) {
        (ChannelKind::Whatsapp, Some(t)) => {
            whatsapp::send_template(&st, &c, &customer, detail.last_inbound_at, &message, t).await
        }
        (ChannelKind::Whatsapp, None) => {
            whatsapp::reply(&st, &c, conversation, &customer, &message).await
        }
        (ChannelKind::Telegram, _) => telegram::reply(&st, &c, &customer, &message).await,
        (ChannelKind::Messenger, _) => {
            messenger::reply(&st, &c, conversation, &customer, &message, None).await
        }
        // `connection_of` refuses calls; said again here for the compiler.
        (ChannelKind::Retell | ChannelKind::Vapi | ChannelKind::Twilio, _) => {
            Err(parley_core::channel::ChannelError {
                code: 0,
                title: "not_a_channel_conversation".into(),
                message: Some("nothing can be sent to a caller through a voice platform".into()),
            })
        }
    };
    let message = find_message(&st, &auth, conversation, message_id).await?;
    match result {
        Ok(_) => Ok((StatusCode::CREATED, Json(message)).into_response()),
        Err(e) if e.title == "messaging_limit_reached" => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "messaging_limit_reached",
            e.message.unwrap_or_default(),
        )),
        Err(e) if e.title == "window_closed" => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "window_closed",
            e.message.unwrap_or_default(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "channel_send_failed",
            format!("the platform refused the message: {e}"),
        )),
    }
}

/// `GET /api/v1/conversations/{id}/messages/{message_id}/attachments/{index}`: the stored
/// bytes of a message's attachment (0-based `index` in `meta.channel.attachments`), with its
/// MIME type. 404 for an unknown conversation, message or attachment, or one not downloaded.
pub(super) async fn attachment(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path((id, message, index)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let conversation: ConversationId = id
        .parse()
        .map_err(|_| ApiError::not_found("conversation"))?;
    let message: parley_core::MessageId = message
        .parse()
        .map_err(|_| ApiError::not_found("message"))?;
    let index: usize = index
        .parse()
        .map_err(|_| ApiError::not_found("attachment"))?;
    let (a, bytes) =
        channels::media::read(&st, auth.workspace, conversation, message, index).await?;
    let mime = a
        .mime_type
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, mime),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn find_message(
    st: &AppState,
    auth: &ApiKeyAuth,
    conversation: ConversationId,
    id: parley_core::MessageId,
) -> Result<parley_core::model::Message, ApiError> {
    let export = st
        .store
        .conversations()
        .export_conversations(auth.workspace, &[conversation])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    export
        .messages
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| ApiError::internal("the stored message vanished"))
}
