//! The Assistants pages: the list, and one form to create or edit an assistant (name, company,
//! mode, provider, prompt, sampling, memory fields, prices), with its version history. Every
//! save is a new version; the form carries the version it was made against, so two people
//! editing at once cannot silently overwrite each other. Members see the pages; admins save.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use parley_core::assistant::{
    AssistantSettings, AssistantSettingsInput, MemoryField, OperatorProviders, PriceOverride,
    ProviderInput, ProviderKey, ProviderRoute, nanousd_to_usd_text, usd_to_nanousd,
};
use parley_core::model::{Assistant, AssistantInput, AssistantPatch, AssistantVersion};
use parley_core::{AssistantId, AssistantMode, UserRole};
use serde::Deserialize;

use super::form::{AdminForm, PageError, admin_forms};
use super::pages::Layout;
use super::{error_page, format, tz_offset};

admin_forms!(
    ChannelForm => "connect channels",
    CsrfForm => "connect channels",
    AssistantForm => "change assistants",
);
use crate::AppState;
use crate::auth::Session;
use crate::error::ApiError;

struct ListRow {
    id: String,
    name: String,
    company: String,
    mode: &'static str,
    provider: String,
    version: i64,
    updated: String,
}

#[derive(Template)]
#[template(path = "assistants.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<ListRow>,
    is_admin: bool,
}

fn mode_label(m: AssistantMode) -> &'static str {
    match m {
        AssistantMode::Active => "Active — the AI answers",
        AssistantMode::Passive => "Passive — the team answers",
        AssistantMode::Hybrid => "Hybrid — the AI answers until a team member joins",
    }
}

/// `GET /assistants`.
pub(super) async fn list(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    let tz = tz_offset(&headers);
    let ws = session.user.workspace_id;
    let (assistants, total) = match tokio::try_join!(
        st.store.assistants().list_assistants(ws),
        st.store.conversations().conversation_total(ws)
    ) {
        Ok(x) => x,
        Err(e) => return PageError::from(e).into_response(),
    };
    let rows = assistants
        .iter()
        .map(|a| ListRow {
            id: a.id.to_string(),
            name: a.name.clone(),
            company: a.company.clone(),
            mode: a.mode.as_str(),
            provider: match a.settings.provider.as_ref() {
                None => "Not configured".to_owned(),
                Some(p) => match p.route(&st.settings.providers) {
                    ProviderRoute::Unusable(_) => "Needs a provider".to_owned(),
                    ProviderRoute::Operator { name, .. } => format!("{} · {name}", p.model),
                    ProviderRoute::Custom => p.model.clone(),
                },
            },
            version: a.version,
            updated: format::datetime(a.updated_at, tz),
        })
        .collect();
    render(&ListPage {
        layout: Layout::new("assistants", "Assistants", &session, tz, total),
        rows,
        is_admin: session.user.role == UserRole::Admin,
    })
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError(ApiError::internal(e)).into_response(),
    }
}

/// The form's fields, as posted.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AssistantForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    mode: String,
    /// `none`, `custom`, or the name of one of the operator's providers.
    #[serde(default)]
    provider: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    model: String,
    /// A custom provider's key: `keep`, `secret`, `none`.
    #[serde(default)]
    key_source: String,
    #[serde(default)]
    key_secret: String,
    #[serde(default)]
    system_prompt: String,
    #[serde(default)]
    temperature: String,
    #[serde(default)]
    max_tokens: String,
    /// One field per line: `name: description`.
    #[serde(default)]
    memory_fields: String,
    /// USD per million prompt tokens.
    #[serde(default)]
    price_prompt: String,
    /// USD per million completion tokens.
    #[serde(default)]
    price_completion: String,
}

struct VersionRow {
    version: i64,
    when: String,
    name: String,
    model: String,
    prompt: String,
}

#[derive(Template)]
#[template(path = "assistant_form.html")]
struct FormPage {
    layout: Layout,
    action: String,
    is_new: bool,
    is_admin: bool,
    id: String,
    version: i64,
    error: Option<String>,
    error_field: String,
    saved: bool,
    f: FormValues,
    modes: Vec<(&'static str, &'static str, bool)>,
    /// The operator's providers for the picker.
    providers: Vec<ProviderOption>,
    /// Why the stored provider cannot be used ("needs a provider"), if so.
    needs_provider: Option<String>,
    key_status: String,
    key_source: String,
    price_hint: String,
    window_hint: String,
    versions: Vec<VersionRow>,
    /// WhatsApp senders and Telegram bots connected to the assistant.
    channels: Vec<super::channels::ChannelRow>,
    /// The outcome of the last channel form: (ok, message).
    channel_notice: Option<(bool, String)>,
}

/// One of the operator's providers in the form's picker.
struct ProviderOption {
    name: String,
    label: String,
    selected: bool,
    /// "Models: a, b" or "Any model".
    models: String,
}

fn provider_options(providers: &OperatorProviders, chosen: &str) -> Vec<ProviderOption> {
    providers
        .iter()
        .map(|(name, p)| ProviderOption {
            name: name.clone(),
            label: p.label.clone().unwrap_or_else(|| name.clone()),
            selected: name == chosen,
            models: if p.models.is_empty() {
                match p.fallback_model() {
                    Some(d) => format!("Any model (default {d})"),
                    None => "Any model".to_owned(),
                }
            } else {
                format!("Models: {}", p.models.join(", "))
            },
        })
        .collect()
}

/// What the form shows.
#[derive(Default)]
struct FormValues {
    name: String,
    company: String,
    mode: String,
    /// The picker's value: `none`, `custom` or an operator provider's name.
    provider: String,
    base_url: String,
    model: String,
    system_prompt: String,
    temperature: String,
    max_tokens: String,
    memory_fields: String,
    price_prompt: String,
    price_completion: String,
}

fn values_of(a: &Assistant, providers: &OperatorProviders) -> FormValues {
    let s = &a.settings;
    // A legacy environment key served by an operator provider shows as that provider, so
    // saving the form stores it by name.
    let (provider, base_url) = match s.provider.as_ref() {
        None => ("none".to_owned(), String::new()),
        Some(p) => match p.route(providers) {
            ProviderRoute::Operator { name, .. } => (name.to_owned(), String::new()),
            _ => ("custom".to_owned(), p.base_url.clone()),
        },
    };
    FormValues {
        name: a.name.clone(),
        company: a.company.clone(),
        mode: a.mode.as_str().to_owned(),
        provider,
        base_url,
        model: s
            .provider
            .as_ref()
            .map(|p| p.model.clone())
            .unwrap_or_default(),
        system_prompt: s.system_prompt.clone(),
        temperature: s.temperature.map(|t| t.to_string()).unwrap_or_default(),
        max_tokens: s.max_tokens.map(|t| t.to_string()).unwrap_or_default(),
        memory_fields: s
            .memory_fields
            .iter()
            .map(|f| {
                if f.description.is_empty() {
                    f.name.clone()
                } else {
                    format!("{}: {}", f.name, f.description)
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
        price_prompt: s
            .price
            .map(|p| nanousd_to_usd_text(p.prompt_nanousd_per_mtok))
            .unwrap_or_default(),
        price_completion: s
            .price
            .map(|p| nanousd_to_usd_text(p.completion_nanousd_per_mtok))
            .unwrap_or_default(),
    }
}

fn values_from_form(f: &AssistantForm) -> FormValues {
    FormValues {
        name: f.name.clone(),
        company: f.company.clone(),
        mode: f.mode.clone(),
        provider: f.provider.clone(),
        base_url: f.base_url.clone(),
        model: f.model.clone(),
        system_prompt: f.system_prompt.clone(),
        temperature: f.temperature.clone(),
        max_tokens: f.max_tokens.clone(),
        memory_fields: f.memory_fields.clone(),
        price_prompt: f.price_prompt.clone(),
        price_completion: f.price_completion.clone(),
    }
}

/// The stored key as the form describes it, and the key choice it starts on (`keep` for a
/// stored key, else `none`).
fn key_status(settings: Option<&AssistantSettings>) -> (String, String) {
    match settings
        .and_then(|s| s.provider.as_ref())
        .filter(|p| p.name.is_none())
        .map(|p| &p.api_key)
    {
        None | Some(ProviderKey::None) => ("No API key".into(), "none".into()),
        Some(ProviderKey::Env { name }) => (
            format!(
                "The server's environment variable {name} (no longer allowed for a custom provider)"
            ),
            "none".into(),
        ),
        Some(ProviderKey::Sealed { hint, .. }) => (
            format!("A stored key ({hint}), encrypted at rest"),
            "keep".into(),
        ),
    }
}

fn hints(st: &AppState, model: &str) -> (String, String) {
    if model.trim().is_empty() {
        return (String::new(), String::new());
    }
    match st.prices.lookup(model.trim()) {
        Some(p) => (
            format!(
                "The price table has {}: ${} per 1M prompt tokens, ${} per 1M completion tokens. Leave both empty to use it.",
                format::isolate(model.trim()),
                nanousd_to_usd_text(p.input_femto_per_token),
                nanousd_to_usd_text(p.output_femto_per_token)
            ),
            p.max_input_tokens
                .map(|n| {
                    format!(
                        "Context window: {} tokens (from the price table); longer histories drop their oldest messages.",
                        format::int(n as i64)
                    )
                })
                .unwrap_or_default(),
        ),
        None => (
            format!(
                "{} is not in the price table: set prices here, or its costs stay unknown.",
                format::isolate(model.trim())
            ),
            "The context window is unknown for this model: the whole history is sent.".into(),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn form_page(
    st: &AppState,
    session: &Session,
    tz: i32,
    total: u64,
    existing: Option<&Assistant>,
    versions: &[AssistantVersion],
    f: FormValues,
    error: Option<(String, String)>,
    saved: bool,
    channels: Vec<super::channels::ChannelRow>,
    channel_notice: Option<(bool, String)>,
) -> Response {
    let (key_status, key_source) = key_status(existing.map(|a| &a.settings));
    let (price_hint, window_hint) = hints(st, &f.model);
    let needs_provider = existing
        .and_then(|a| a.settings.provider.as_ref())
        .and_then(|p| match p.route(&st.settings.providers) {
            ProviderRoute::Unusable(why) => Some(
                why.strip_prefix("needs a provider: ")
                    .unwrap_or(&why)
                    .to_owned(),
            ),
            _ => None,
        });
    let mut f = f;
    if f.provider.is_empty() {
        // A new assistant starts on the operator's first provider, else on a custom one.
        f.provider = st
            .settings
            .providers
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "custom".to_owned());
    }
    let providers = provider_options(&st.settings.providers, &f.provider);
    let mode = if f.mode.is_empty() {
        "active".to_owned()
    } else {
        f.mode.clone()
    };
    let modes = [
        AssistantMode::Active,
        AssistantMode::Hybrid,
        AssistantMode::Passive,
    ]
    .iter()
    .map(|m| (m.as_str(), mode_label(*m), m.as_str() == mode))
    .collect();
    let title = existing.map_or_else(|| "New assistant".to_owned(), |a| a.name.clone());
    let (error, error_field) = match error {
        Some((m, f)) => (Some(m), f),
        None => (None, String::new()),
    };
    render(&FormPage {
        layout: Layout::new("assistants", &title, session, tz, total),
        action: existing.map_or_else(
            || "/assistants/new".to_owned(),
            |a| format!("/assistants/{}", a.id),
        ),
        is_new: existing.is_none(),
        is_admin: session.user.role == UserRole::Admin,
        id: existing.map(|a| a.id.to_string()).unwrap_or_default(),
        version: existing.map_or(0, |a| a.version),
        error,
        error_field,
        saved,
        channel_notice,
        f,
        modes,
        providers,
        needs_provider,
        key_status,
        key_source,
        price_hint,
        window_hint,
        versions: versions
            .iter()
            .map(|v| VersionRow {
                version: v.version,
                when: format::full(v.created_at, tz),
                name: v.name.clone(),
                model: v
                    .settings
                    .provider
                    .as_ref()
                    .map_or_else(|| "no provider".to_owned(), |p| p.model.clone()),
                prompt: {
                    let p = v.settings.system_prompt.trim();
                    let short: String = p.chars().take(90).collect();
                    if p.chars().count() > 90 {
                        format!("{short}…")
                    } else {
                        short
                    }
                },
            })
            .collect(),
        channels,
    })
}

/// `?saved=1` after a save.
#[derive(Deserialize)]
pub(super) struct Saved {
    #[serde(default)]
    saved: Option<String>,
    /// `connected` or `disconnected` after a channel form.
    #[serde(default)]
    channel: Option<String>,
    /// Why a channel could not be connected.
    #[serde(default)]
    channel_error: Option<String>,
}

/// `GET /assistants/new`.
pub(super) async fn new_form(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    let total = st
        .store
        .conversations()
        .conversation_total(session.user.workspace_id)
        .await
        .unwrap_or(0);
    form_page(
        &st,
        &session,
        tz_offset(&headers),
        total,
        None,
        &[],
        FormValues::default(),
        None,
        false,
        Vec::new(),
        None,
    )
}

/// `GET /assistants/{id}`.
pub(super) async fn edit_form(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Saved>,
) -> Response {
    let ws = session.user.workspace_id;
    let Ok(id) = id.parse::<AssistantId>() else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such assistant.");
    };
    let (a, versions, total) = match tokio::try_join!(
        st.store.assistants().get_assistant(ws, id),
        st.store.assistants().assistant_versions(ws, id),
        st.store.conversations().conversation_total(ws)
    ) {
        Ok((Some(a), Some(v), t)) => (a, v, t),
        Ok(_) => return error_page(StatusCode::NOT_FOUND, "Not found", "No such assistant."),
        Err(e) => return PageError::from(e).into_response(),
    };
    let values = values_of(&a, &st.settings.providers);
    let tz = tz_offset(&headers);
    let channels =
        super::channels::rows(&st, ws, a.id, tz, &super::channels::origin(&headers)).await;
    form_page(
        &st,
        &session,
        tz,
        total,
        Some(&a),
        &versions,
        values,
        None,
        q.saved.is_some(),
        channels,
        channel_notice(&q),
    )
}

/// The banner after a channel form, from the redirect's query.
fn channel_notice(q: &Saved) -> Option<(bool, String)> {
    if let Some(e) = &q.channel_error {
        return Some((false, format!("Not connected: {e}")));
    }
    match q.channel.as_deref() {
        Some("connected") => Some((
            true,
            "Connected. Messages to it now reach this assistant.".into(),
        )),
        Some("disconnected") => Some((true, "Disconnected. Its conversations are kept.".into())),
        _ => None,
    }
}

/// `POST /assistants/{id}/channels` form: a WhatsApp sender's or a Telegram bot's
/// credentials (see `api::channels::ConnectInput`); empty fields mean "not given".
#[derive(Debug, Deserialize)]
pub(super) struct ChannelForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    kind: String,
    /// Messenger: the Facebook Page's id.
    #[serde(default)]
    page_id: String,
    #[serde(default)]
    phone_number_id: String,
    #[serde(default)]
    business_account_id: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    app_secret: String,
    #[serde(default)]
    verify_token: String,
    #[serde(default)]
    bot_token: String,
    #[serde(default)]
    public_base_url: String,
    #[serde(default)]
    transcription_model: String,
    #[serde(default)]
    vision_model: String,
    /// Advanced: the Graph API base (a proxy, another API version).
    #[serde(default)]
    graph_base_url: String,
    /// Advanced: the Bot API base (a local Bot API server).
    #[serde(default)]
    api_base_url: String,
    /// Retell: the API key that signs its webhooks.
    #[serde(default)]
    api_key: String,
    /// Vapi: the server URL secret (or credential token / HMAC key).
    #[serde(default)]
    server_secret: String,
    /// Twilio: the account SID.
    #[serde(default)]
    account_sid: String,
    /// Twilio: the auth token.
    #[serde(default)]
    auth_token: String,
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

fn back_to_channels(assistant: &str, query: &[(&str, &str)]) -> Response {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        q.append_pair(k, v);
    }
    Redirect::to(&format!("/assistants/{assistant}?{}#channels", q.finish())).into_response()
}

/// `POST /assistants/{id}/channels`: connects a channel the way
/// `POST /api/v1/assistants/{id}/channels` does, then back to the page with the outcome.
pub(super) async fn connect_channel(
    State(st): State<AppState>,
    Path(id): Path<String>,
    AdminForm { session, form: f }: AdminForm<ChannelForm>,
) -> Response {
    let Ok(assistant) = id.parse::<AssistantId>() else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such assistant.");
    };
    let given = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    let kind = match f.kind.as_str() {
        "whatsapp" => parley_core::channel::ChannelKind::Whatsapp,
        "telegram" => parley_core::channel::ChannelKind::Telegram,
        "messenger" => parley_core::channel::ChannelKind::Messenger,
        "retell" => parley_core::channel::ChannelKind::Retell,
        "vapi" => parley_core::channel::ChannelKind::Vapi,
        "twilio" => parley_core::channel::ChannelKind::Twilio,
        _ => return back_to_channels(&id, &[("channel_error", "unknown channel kind")]),
    };
    let input = crate::api::channels::ConnectInput {
        kind,
        page_id: given(&f.page_id),
        phone_number_id: given(&f.phone_number_id),
        business_account_id: given(&f.business_account_id),
        access_token: given(&f.access_token),
        app_secret: given(&f.app_secret),
        verify_token: given(&f.verify_token),
        graph_base_url: given(&f.graph_base_url),
        bot_token: given(&f.bot_token),
        public_base_url: given(&f.public_base_url),
        api_base_url: given(&f.api_base_url),
        transcription_model: given(&f.transcription_model),
        vision_model: given(&f.vision_model),
        api_key: given(&f.api_key),
        server_secret: given(&f.server_secret),
        account_sid: given(&f.account_sid),
        auth_token: given(&f.auth_token),
    };
    match crate::api::channels::connect(&st, session.user.workspace_id, assistant, &input).await {
        Ok(_) => back_to_channels(&id, &[("channel", "connected")]),
        Err(e) => back_to_channels(&id, &[("channel_error", &e.message)]),
    }
}

/// `POST /assistants/{id}/channels/{channel}/delete`: disconnects a channel.
pub(super) async fn disconnect_channel(
    State(st): State<AppState>,
    Path((id, channel)): Path<(String, String)>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Response {
    let Ok(channel) = channel.parse() else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such channel.");
    };
    match crate::api::channels::disconnect(&st, session.user.workspace_id, channel).await {
        Ok(()) => back_to_channels(&id, &[("channel", "disconnected")]),
        Err(e) => back_to_channels(&id, &[("channel_error", &e.message)]),
    }
}

/// The settings a posted form asks for. The picker decides the provider: `none`; an
/// operator provider (with the model, or its default); or `custom` with the URL, model and
/// key fields — a custom provider with neither URL nor model is none (as a form without a
/// picker value and without a URL is). Errors: (message, field) for the first bad value.
fn settings_input(f: &AssistantForm) -> Result<AssistantSettingsInput, (String, String)> {
    let bad = |m: String, field: &str| (m, field.to_owned());
    let given = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    let custom = match f.provider.as_str() {
        "custom" => true,
        "" | "none" => !f.base_url.trim().is_empty(),
        _ => false,
    };
    let provider = if custom {
        if f.base_url.trim().is_empty() && f.model.trim().is_empty() {
            Some(None)
        } else {
            let api_key = match f.key_source.as_str() {
                "secret" if f.key_secret.trim().is_empty() => {
                    return Err(bad(
                        "Paste the API key to store, or choose another key option.".into(),
                        "key_secret",
                    ));
                }
                "secret" => Some(f.key_secret.trim().to_owned()),
                "none" => Some(String::new()),
                _ => None,
            };
            Some(Some(ProviderInput {
                name: None,
                base_url: Some(f.base_url.trim().to_owned()),
                model: Some(f.model.trim().to_owned()),
                api_key_env: None,
                api_key,
            }))
        }
    } else if matches!(f.provider.as_str(), "" | "none") {
        Some(None)
    } else {
        Some(Some(ProviderInput {
            name: Some(f.provider.clone()),
            base_url: None,
            model: given(&f.model),
            api_key_env: None,
            api_key: None,
        }))
    };
    let temperature = match f.temperature.trim() {
        "" => Some(None),
        t => Some(Some(t.parse::<f64>().map_err(|_| {
            bad(
                "Temperature must be a number from 0 to 2, e.g. 0.7.".into(),
                "temperature",
            )
        })?)),
    };
    let max_tokens = match f.max_tokens.trim() {
        "" => Some(None),
        t => Some(Some(t.replace([',', '_'], "").parse::<u32>().map_err(
            |_| {
                bad(
                    "Max tokens must be a whole number, e.g. 1024.".into(),
                    "max_tokens",
                )
            },
        )?)),
    };
    let memory_fields = f
        .memory_fields
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, description) = l.split_once(':').unwrap_or((l, ""));
            MemoryField {
                name: name.trim().to_owned(),
                description: description.trim().to_owned(),
            }
        })
        .collect();
    let price = match (f.price_prompt.trim(), f.price_completion.trim()) {
        ("", "") => Some(None),
        (p, c) => {
            let usd = |t: &str, field: &str| {
                usd_to_nanousd(if t.is_empty() { "0" } else { t })
                    .map_err(|e| bad(format!("Price per 1M tokens: {e}."), field))
            };
            Some(Some(PriceOverride {
                prompt_nanousd_per_mtok: usd(p, "price_prompt")?,
                completion_nanousd_per_mtok: usd(c, "price_completion")?,
            }))
        }
    };
    Ok(AssistantSettingsInput {
        provider,
        system_prompt: Some(f.system_prompt.replace("\r\n", "\n")),
        temperature,
        max_tokens,
        memory_fields: Some(memory_fields),
        price,
    })
}

fn parse_mode(m: &str) -> AssistantMode {
    m.parse().unwrap_or(AssistantMode::Active)
}

/// The form field an API error names (`settings.provider.base_url` -> `base_url`).
fn form_field(api_field: Option<&str>) -> String {
    match api_field.unwrap_or("") {
        "name" => "name",
        "company" => "company",
        "settings.provider.name" => "provider",
        "settings.provider.base_url" => "base_url",
        "settings.provider.model" => "model",
        "settings.provider.api_key" => "key_secret",
        "settings.system_prompt" => "system_prompt",
        "settings.temperature" => "temperature",
        "settings.max_tokens" => "max_tokens",
        f if f.starts_with("settings.memory_fields") => "memory_fields",
        "settings.price" => "price_prompt",
        _ => "",
    }
    .to_owned()
}

/// `POST /assistants/new` (admins).
pub(super) async fn save_new(
    State(st): State<AppState>,
    headers: HeaderMap,
    AdminForm { session, form }: AdminForm<AssistantForm>,
) -> Response {
    save(st, session, headers, None, form).await
}

/// `POST /assistants/{id}` (admins).
pub(super) async fn save_existing(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<AssistantForm>,
) -> Response {
    save(st, session, headers, Some(id), form).await
}

async fn save(
    st: AppState,
    session: Session,
    headers: HeaderMap,
    id: Option<String>,
    form: AssistantForm,
) -> Response {
    let ws = session.user.workspace_id;
    let tz = tz_offset(&headers);
    let existing = match &id {
        None => None,
        Some(id) => {
            let Ok(id) = id.parse::<AssistantId>() else {
                return error_page(StatusCode::NOT_FOUND, "Not found", "No such assistant.");
            };
            match st.store.assistants().get_assistant(ws, id).await {
                Ok(Some(a)) => Some(a),
                Ok(None) => {
                    return error_page(StatusCode::NOT_FOUND, "Not found", "No such assistant.");
                }
                Err(e) => return PageError::from(e).into_response(),
            }
        }
    };
    let result = match settings_input(&form) {
        Err(e) => Err(e),
        Ok(settings) => {
            let outcome = match &existing {
                None => {
                    crate::assistant::create(
                        &st,
                        ws,
                        &AssistantInput {
                            name: form.name.clone(),
                            company: form.company.clone(),
                            mode: parse_mode(&form.mode),
                            settings,
                        },
                    )
                    .await
                }
                Some(a) => {
                    crate::assistant::update(
                        &st,
                        ws,
                        a.id,
                        &AssistantPatch {
                            name: Some(form.name.clone()),
                            company: Some(form.company.clone()),
                            mode: Some(parse_mode(&form.mode)),
                            settings: Some(settings),
                            version: form.version,
                        },
                    )
                    .await
                }
            };
            outcome.map_err(|e| {
                let message = match e.code {
                    "version_conflict" => "Someone saved this assistant while you were editing. Reload the page to see their version, then make your change again.".to_owned(),
                    "assistant_exists" => "Another assistant already has this name and company.".to_owned(),
                    _ => e.message.clone(),
                };
                (message, form_field(e.field.as_deref()))
            })
        }
    };
    match result {
        Ok(a) => Redirect::to(&format!("/assistants/{}?saved=1", a.id)).into_response(),
        Err(error) => {
            let versions = match &existing {
                Some(a) => st
                    .store
                    .assistants()
                    .assistant_versions(ws, a.id)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let total = st
                .store
                .conversations()
                .conversation_total(ws)
                .await
                .unwrap_or(0);
            let channels = match &existing {
                Some(a) => {
                    super::channels::rows(&st, ws, a.id, tz, &super::channels::origin(&headers))
                        .await
                }
                None => Vec::new(),
            };
            let mut res = form_page(
                &st,
                &session,
                tz,
                total,
                existing.as_ref(),
                &versions,
                values_from_form(&form),
                Some(error),
                false,
                channels,
                None,
            );
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            res
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_settings() {
        let f = AssistantForm {
            provider: "custom".into(),
            base_url: " https://api.openai.com/v1 ".into(),
            model: "gpt-4o-mini".into(),
            key_source: "secret".into(),
            key_secret: "sk-0123456789abcdef".into(),
            temperature: "0.4".into(),
            max_tokens: "1,024".into(),
            memory_fields: "email: Their email\r\n\norder_number\n".into(),
            price_prompt: "0.15".into(),
            price_completion: "0.60".into(),
            ..Default::default()
        };
        let s = settings_input(&f).unwrap();
        let p = s.provider.clone().unwrap().unwrap();
        assert_eq!(p.api_key.as_deref(), Some("sk-0123456789abcdef"));
        assert_eq!(p.base_url.as_deref(), Some("https://api.openai.com/v1"));
        assert_eq!(p.api_key_env, None);
        // A server provider by name: no URL, no key, whatever the hidden fields hold.
        let named = settings_input(&AssistantForm {
            provider: "openai".into(),
            base_url: "http://ignored.example".into(),
            key_source: "secret".into(),
            key_secret: "sk-ignored".into(),
            ..Default::default()
        })
        .unwrap()
        .provider
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                named.name.as_deref(),
                named.base_url,
                named.api_key,
                named.model
            ),
            (Some("openai"), None, None, None)
        );
        let none = settings_input(&AssistantForm {
            provider: "none".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(none.provider, Some(None));
        assert_eq!(s.temperature, Some(Some(0.4)));
        assert_eq!(s.max_tokens, Some(Some(1024)));
        let fields = s.memory_fields.unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].name, "order_number");
        assert_eq!(
            s.price,
            Some(Some(PriceOverride {
                prompt_nanousd_per_mtok: 150_000_000,
                completion_nanousd_per_mtok: 600_000_000
            }))
        );
        let empty = settings_input(&AssistantForm::default()).unwrap();
        assert_eq!(empty.provider, Some(None));
        assert_eq!(empty.price, Some(None));
        let bad = AssistantForm {
            temperature: "warm".into(),
            ..Default::default()
        };
        assert_eq!(settings_input(&bad).unwrap_err().1, "temperature");
        let no_key = AssistantForm {
            provider: "custom".into(),
            base_url: "http://x".into(),
            model: "m".into(),
            key_source: "secret".into(),
            ..Default::default()
        };
        assert_eq!(settings_input(&no_key).unwrap_err().1, "key_secret");
    }
}
