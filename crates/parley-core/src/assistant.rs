//! An assistant's settings: the LLM provider it talks to (any OpenAI-compatible chat
//! completions endpoint), its system prompt and sampling settings, the memory fields it collects
//! with its `save_memory` tool, and an optional price override.
//!
//! Settings are one JSON document per assistant version ([`AssistantSettings`]); every change
//! makes a new version, and a conversation records the version that handled it. API inputs
//! ([`AssistantSettingsInput`]) may carry a provider key in plain text; the server seals it
//! (encrypts it with its secret key) before anything is stored, and outputs show only a hint
//! of it ([`ProviderKey::redacted`]).
//!
//! **Whose provider.** An assistant either uses one of the *operator's* providers
//! ([`OperatorProvider`], declared in the server's configuration as `[providers.NAME]`), picked
//! by name — its URL and key stay the operator's and are never shown to or chosen by a
//! workspace — or the workspace's *own* provider: a base URL it gives together with its own key
//! (stored sealed). A workspace can never make the server send a secret it does not own to a URL
//! it chooses: naming a server environment variable as the key (`api_key_env`) is refused, and
//! settings stored before that rule ([`ProviderKey::Env`]) are honoured only where they match an
//! operator provider exactly ([`ProviderSettings::route`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::double_option;
use crate::pricing::ModelPrice;
use crate::validate::Invalid;

/// Longest system prompt, in characters.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 100_000;
/// Most memory fields per assistant.
pub const MAX_MEMORY_FIELDS: usize = 50;
/// Longest memory field description, in characters.
pub const MAX_MEMORY_DESCRIPTION_CHARS: usize = 500;
/// Most completion tokens an assistant may ask for per answer.
pub const MAX_COMPLETION_TOKENS: u32 = 1_000_000;

/// An assistant's settings, as stored (one version).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantSettings {
    /// Where its answers come from; `None` until configured (the assistant then only records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderSettings>,
    /// The system prompt sent first in every request (may be empty).
    #[serde(default)]
    pub system_prompt: String,
    /// Sampling temperature, 0 to 2; `None` leaves the provider's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Most completion tokens per answer; `None` leaves the provider's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// What the assistant should learn about the customer and save with its `save_memory`
    /// tool, stored as `extracted` variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_fields: Vec<MemoryField>,
    /// Prices to use instead of the price table's for this assistant's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<PriceOverride>,
}

/// An OpenAI-compatible chat completions endpoint: one of the operator's providers (`name`),
/// or the workspace's own (`base_url` and `api_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The operator's provider this assistant uses (`openai`: a `[providers.openai]` of the
    /// server's configuration); its URL and key are the operator's, so `base_url` is empty and
    /// `api_key` is `none`. `None` for the workspace's own provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The workspace's own provider: the API base URL, up to and including the version
    /// segment, without a trailing slash (`https://api.openai.com/v1`); requests go to
    /// `{base_url}/chat/completions`. Empty for an operator provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_url: String,
    /// The model, as the provider names it (`gpt-4o-mini`).
    pub model: String,
    /// How Parley authenticates to the workspace's own provider.
    #[serde(default)]
    pub api_key: ProviderKey,
}

/// Where the provider's API key comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderKey {
    /// No key (a local model server that needs none, or an operator provider, whose key is
    /// the operator's).
    #[default]
    None,
    /// Legacy: the name of an environment variable of the Parley server. No longer accepted
    /// on input; a stored one is used only when its `base_url` and variable are exactly those
    /// of an operator provider, which then serves the assistant ([`ProviderSettings::route`]).
    /// The variable itself is never read for any other URL.
    Env {
        /// The variable's name, e.g. `OPENAI_API_KEY`.
        name: String,
    },
    /// Stored sealed (encrypted with the server's secret key).
    Sealed {
        /// The sealed key (base64 of nonce and ciphertext); empty in API outputs.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sealed: String,
        /// Enough of the key to recognise it: its first 3 and last 4 characters (`sk-…wxyz`).
        hint: String,
    },
}

impl ProviderKey {
    /// The key as API outputs show it: a sealed key loses its ciphertext, keeping its hint.
    pub fn redacted(&self) -> ProviderKey {
        match self {
            ProviderKey::Sealed { hint, .. } => ProviderKey::Sealed {
                sealed: String::new(),
                hint: hint.clone(),
            },
            other => other.clone(),
        }
    }

    /// The hint shown for a plaintext key: its first 3 and last 4 characters, or only `…` for
    /// a key too short to show any of it safely.
    pub fn hint_for(key: &str) -> String {
        let chars: Vec<char> = key.chars().collect();
        if chars.len() < 16 {
            return "…".to_owned();
        }
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    }
}

/// An LLM provider the operator declares in the server's configuration, under a name that
/// workspaces pick it by:
///
/// ```toml
/// [providers.openai]
/// base_url = "https://api.openai.com/v1"
/// api_key_env = "OPENAI_API_KEY"          # read by the server; never shown to a workspace
/// models = ["gpt-4o-mini", "gpt-4o"]      # optional: the only models workspaces may use
/// default_model = "gpt-4o-mini"           # optional
/// label = "OpenAI (billed to the operator)" # optional, shown in the dashboard
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorProvider {
    /// The API base URL (see [`ProviderSettings::base_url`]); trusted as the operator wrote it
    /// (a private address such as a local Ollama is fine here).
    pub base_url: String,
    /// The environment variable of the Parley server holding the bearer key; none for a
    /// provider that needs no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The models workspaces may ask this provider for (chat, transcription and vision alike);
    /// empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// The model used when a workspace picks the provider without naming one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// A display name for the dashboard (default: the provider's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// The operator's providers by name (`[providers.NAME]` tables of the configuration).
pub type OperatorProviders = BTreeMap<String, OperatorProvider>;

impl OperatorProvider {
    /// Whether workspaces may ask this provider for `model` (always, without a `models` list).
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }

    /// The model to use when none is named: `default_model`, else the only listed model.
    pub fn fallback_model(&self) -> Option<&str> {
        self.default_model
            .as_deref()
            .or_else(|| (self.models.len() == 1).then(|| self.models[0].as_str()))
    }

    /// Checks the operator's entry `name`. Errors: a description naming the bad key
    /// (`providers.openai.base_url: ...`).
    pub fn check(&self, name: &str) -> Result<(), String> {
        if !is_provider_name(name) {
            return Err(format!(
                "providers.{name}: a provider name is 1 to 64 lowercase letters, digits, - and _, starting with a letter or digit"
            ));
        }
        check_base_url(&self.base_url).map_err(|e| format!("providers.{name}.base_url: {e}"))?;
        if let Some(var) = &self.api_key_env
            && !is_env_var_name(var)
        {
            return Err(format!(
                "providers.{name}.api_key_env: must be an environment variable name (A-Z, 0-9 and _)"
            ));
        }
        if self
            .models
            .iter()
            .any(|m| m.trim().is_empty() || m.chars().count() > crate::validate::MAX_NAME_CHARS)
        {
            return Err(format!(
                "providers.{name}.models: every model is 1 to 200 characters"
            ));
        }
        if let Some(d) = &self.default_model
            && (d.trim().is_empty() || !self.allows(d))
        {
            return Err(format!(
                "providers.{name}.default_model: must be one of its models"
            ));
        }
        Ok(())
    }
}

/// Whether `name` is a valid operator provider name: 1 to 64 of `a-z 0-9 - _`, not starting
/// with `-` or `_`.
pub fn is_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Checks a provider or platform base URL and returns it trimmed, without trailing slashes.
/// Accepted: `http://` or `https://` with a host, at most 2,000 characters, no whitespace, no
/// user name or password, no query and no fragment (a `?x=` would swallow the path Parley
/// appends). Parsed with the WHATWG rules of the `url` crate, the parser the HTTP client uses.
/// Errors: what is wrong, for the person who typed it.
pub fn check_base_url(text: &str) -> Result<String, &'static str> {
    let t = text.trim();
    if t.is_empty() || t.len() > 2_000 || t.contains(char::is_whitespace) {
        return Err(
            "must be an http:// or https:// URL such as https://api.openai.com/v1 (at most 2,000 characters)",
        );
    }
    let url = url::Url::parse(t)
        .map_err(|_| "must be an http:// or https:// URL such as https://api.openai.com/v1")?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http:// or https:// URL such as https://api.openai.com/v1");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password (give the key separately)");
    }
    if url.query().is_some() {
        return Err("must not have a query string (`?...`): Parley appends the API path itself");
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment (`#...`)");
    }
    Ok(t.trim_end_matches('/').to_owned())
}

/// How an assistant's stored provider is reached (see [`ProviderSettings::route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRoute<'a> {
    /// Through the operator's provider `name`: its URL, its key.
    Operator {
        /// The provider's name.
        name: &'a str,
        /// Its configuration.
        provider: &'a OperatorProvider,
        /// True for settings stored before operator providers (a [`ProviderKey::Env`] key
        /// whose URL and variable match this provider).
        legacy: bool,
    },
    /// Through the workspace's own `base_url` and key.
    Custom,
    /// Not at all, for this reason ("needs a provider").
    Unusable(String),
}

impl ProviderSettings {
    /// Resolves these settings against the operator's providers:
    /// - a `name` is that operator provider (unusable once the operator removed it);
    /// - a legacy [`ProviderKey::Env`] key is the operator provider with exactly this
    ///   `base_url` (trailing slashes aside) and this `api_key_env`; with none, the assistant
    ///   "needs a provider" and the variable is never read;
    /// - anything else is the workspace's own provider.
    pub fn route<'a>(&'a self, operator: &'a OperatorProviders) -> ProviderRoute<'a> {
        if let Some(name) = &self.name {
            return match operator.get_key_value(name.as_str()) {
                Some((name, provider)) => ProviderRoute::Operator {
                    name,
                    provider,
                    legacy: false,
                },
                None => ProviderRoute::Unusable(format!(
                    "the server's provider {name:?} is no longer configured: pick another provider"
                )),
            };
        }
        if let ProviderKey::Env { name: var } = &self.api_key {
            let url = self.base_url.trim_end_matches('/');
            let found = operator.iter().find(|(_, p)| {
                p.api_key_env.as_deref() == Some(var.as_str())
                    && p.base_url.trim().trim_end_matches('/') == url
            });
            return match found {
                Some((name, provider)) => ProviderRoute::Operator {
                    name,
                    provider,
                    legacy: true,
                },
                None => ProviderRoute::Unusable(format!(
                    "needs a provider: its API key was the server's environment variable {var}, which workspaces may no longer name; pick one of the server's providers, or give your own base URL and API key"
                )),
            };
        }
        ProviderRoute::Custom
    }
}

/// A fact the assistant should collect about the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryField {
    /// The variable key it is saved under: lowercase letters, digits and `_`, starting with a
    /// letter, up to 64 characters (`email`, `order_number`).
    pub name: String,
    /// What it is, for the model (and the team): "The customer's email address".
    #[serde(default)]
    pub description: String,
}

/// Per-assistant prices, in nano-USD per million tokens (numerically equal to femto-USD per
/// token): `$2.50 / 1M prompt tokens` is `2_500_000_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    /// Nano-USD per million prompt (input) tokens.
    #[serde(deserialize_with = "crate::model::int::exact")]
    pub prompt_nanousd_per_mtok: i64,
    /// Nano-USD per million completion (output) tokens.
    #[serde(deserialize_with = "crate::model::int::exact")]
    pub completion_nanousd_per_mtok: i64,
}

impl PriceOverride {
    /// The override as a price-table entry (no context limits).
    pub fn as_model_price(&self) -> ModelPrice {
        ModelPrice {
            input_femto_per_token: self.prompt_nanousd_per_mtok,
            output_femto_per_token: self.completion_nanousd_per_mtok,
            max_input_tokens: None,
            max_output_tokens: None,
            provider: None,
        }
    }
}

/// Settings on input (`POST`/`PATCH /api/v1/assistants`, the dashboard form). In a patch, an
/// absent field keeps its value and `null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantSettingsInput {
    /// The provider; `null` removes it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider: Option<Option<ProviderInput>>,
    /// The system prompt, up to 100,000 characters.
    #[serde(
        default,
        deserialize_with = "crate::model::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub system_prompt: Option<String>,
    /// 0 to 2; `null` leaves the provider's default.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub temperature: Option<Option<f64>>,
    /// 1 to 1,000,000; `null` leaves the provider's default.
    #[serde(
        default,
        deserialize_with = "crate::model::int::clearable",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tokens: Option<Option<u32>>,
    /// Replaces the whole list.
    #[serde(
        default,
        deserialize_with = "crate::model::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_fields: Option<Vec<MemoryField>>,
    /// `null` goes back to the price table.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub price: Option<Option<PriceOverride>>,
}

/// A provider on input: either `name` (one of the operator's providers, optionally with a
/// `model`), or `base_url` and `model` with the workspace's own `api_key`. For the latter, give
/// no `api_key` to keep the key already stored for the workspace's own provider (or none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    /// One of the operator's providers (`GET /api/v1/providers` lists them). Not with
    /// `base_url` or `api_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The workspace's own provider's base URL (see [`check_base_url`]). Not with `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// See [`ProviderSettings::model`]. Required with `base_url`; with `name` it defaults to
    /// the operator's default model, and must be one the operator allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// No longer accepted: refused with 422 naming this field (a workspace may not make the
    /// server send one of its own environment variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The workspace's own key; stored sealed, never shown again. An empty string removes the
    /// key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl AssistantSettings {
    /// The settings as API outputs show them (the provider key redacted).
    pub fn redacted(&self) -> AssistantSettings {
        let mut out = self.clone();
        if let Some(p) = &mut out.provider {
            p.api_key = p.api_key.redacted();
        }
        out
    }

    /// These settings with `input` applied. `seal` turns a plaintext provider key into its
    /// stored form; `operator` are the server's providers a `name` may pick. Errors: the first
    /// invalid field (`settings.provider.base_url`...), or `seal`'s error.
    pub fn apply(
        &self,
        input: &AssistantSettingsInput,
        seal: &dyn Fn(&str) -> Result<ProviderKey, Invalid>,
        operator: &OperatorProviders,
    ) -> Result<AssistantSettings, Invalid> {
        validate_input(input)?;
        let mut out = self.clone();
        if let Some(provider) = &input.provider {
            out.provider = match provider {
                None => None,
                Some(p) => Some(match p.name.as_deref() {
                    Some(name) => named_provider(name.trim(), p.model.as_deref(), operator)?,
                    None => self.own_provider(p, seal)?,
                }),
            };
        }
        if let Some(prompt) = &input.system_prompt {
            out.system_prompt = prompt.clone();
        }
        if let Some(t) = input.temperature {
            out.temperature = t;
        }
        if let Some(m) = input.max_tokens {
            out.max_tokens = m;
        }
        if let Some(fields) = &input.memory_fields {
            out.memory_fields = fields
                .iter()
                .map(|f| MemoryField {
                    name: f.name.trim().to_owned(),
                    description: f.description.trim().to_owned(),
                })
                .collect();
        }
        if let Some(price) = input.price {
            out.price = price;
        }
        Ok(out)
    }
}

impl AssistantSettings {
    /// The workspace's own provider from `p` (`base_url`, `model`, `api_key`). Without an
    /// `api_key`, the key stored for the current own provider is kept — a legacy environment
    /// key only while the URL stays the same (it is honoured only where it matches an operator
    /// provider anyway) — and an operator provider's (none) is never carried over.
    fn own_provider(
        &self,
        p: &ProviderInput,
        seal: &dyn Fn(&str) -> Result<ProviderKey, Invalid>,
    ) -> Result<ProviderSettings, Invalid> {
        let base_url = check_base_url(p.base_url.as_deref().unwrap_or_default())
            .map_err(|m| Invalid::new("settings.provider.base_url", m))?;
        let model = p.model.as_deref().unwrap_or_default().trim().to_owned();
        let api_key = match p.api_key.as_deref() {
            Some("") => ProviderKey::None,
            Some(key) => seal(key)?,
            None => match self.provider.as_ref() {
                Some(old) if old.name.is_none() => match &old.api_key {
                    ProviderKey::Env { .. } if old.base_url != base_url => ProviderKey::None,
                    key => key.clone(),
                },
                _ => ProviderKey::None,
            },
        };
        Ok(ProviderSettings {
            name: None,
            base_url,
            model,
            api_key,
        })
    }
}

/// The operator's provider `name` with `model` (or its fallback model). Errors: an unknown
/// name (listing the known ones), a missing or disallowed model.
fn named_provider(
    name: &str,
    model: Option<&str>,
    operator: &OperatorProviders,
) -> Result<ProviderSettings, Invalid> {
    let Some(provider) = operator.get(name) else {
        let known: Vec<&str> = operator.keys().map(String::as_str).collect();
        return Err(Invalid::new(
            "settings.provider.name",
            if known.is_empty() {
                format!(
                    "this server has no provider {name:?} (it offers none): give your own base_url and api_key"
                )
            } else {
                format!(
                    "this server has no provider {name:?}; it offers: {}",
                    known.join(", ")
                )
            },
        ));
    };
    let model = match model.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => m.to_owned(),
        None => provider
            .fallback_model()
            .map(str::to_owned)
            .ok_or_else(|| {
                Invalid::new(
                    "settings.provider.model",
                    format!("give the model to ask provider {name} for, e.g. gpt-4o-mini"),
                )
            })?,
    };
    if !provider.allows(&model) {
        return Err(Invalid::new(
            "settings.provider.model",
            format!(
                "provider {name} offers only these models: {}",
                provider.models.join(", ")
            ),
        ));
    }
    Ok(ProviderSettings {
        name: Some(name.to_owned()),
        base_url: String::new(),
        model,
        api_key: ProviderKey::None,
    })
}

fn validate_input(input: &AssistantSettingsInput) -> Result<(), Invalid> {
    if let Some(Some(p)) = &input.provider {
        if p.api_key_env.is_some() {
            return Err(Invalid::new(
                "settings.provider.api_key_env",
                "is no longer accepted: a workspace cannot name the server's environment variables. Pick one of the server's providers with `name` (GET /api/v1/providers lists them), or give your own `base_url` with your own `api_key` (stored encrypted)",
            ));
        }
        match (&p.name, &p.base_url) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "settings.provider.base_url",
                    "a server provider's URL is the operator's: give `name` or `base_url`, not both",
                ));
            }
            (Some(_), None) if p.api_key.is_some() => {
                return Err(Invalid::new(
                    "settings.provider.api_key",
                    "a server provider's key is the operator's: give `api_key` only with your own `base_url`",
                ));
            }
            (None, None) => {
                return Err(Invalid::new(
                    "settings.provider.base_url",
                    "give `name` (one of the server's providers, GET /api/v1/providers) or your own `base_url`, e.g. https://api.openai.com/v1",
                ));
            }
            (None, Some(base)) => {
                check_base_url(base).map_err(|m| Invalid::new("settings.provider.base_url", m))?;
            }
            (Some(_), None) => {}
        }
        let model = p.model.as_deref().unwrap_or_default().trim();
        let model_needed = p.name.is_none();
        if (model_needed && model.is_empty())
            || model.chars().count() > crate::validate::MAX_NAME_CHARS
        {
            return Err(Invalid::new(
                "settings.provider.model",
                "give the model's name as the provider knows it, e.g. gpt-4o-mini (up to 200 characters)",
            ));
        }
        if let Some(key) = &p.api_key
            && (key.len() > 4_096 || key.chars().any(char::is_control))
        {
            return Err(Invalid::new(
                "settings.provider.api_key",
                "must be at most 4,096 characters without control characters",
            ));
        }
    }
    if let Some(prompt) = &input.system_prompt
        && prompt.chars().count() > MAX_SYSTEM_PROMPT_CHARS
    {
        return Err(Invalid::new(
            "settings.system_prompt",
            format!("must be at most {MAX_SYSTEM_PROMPT_CHARS} characters"),
        ));
    }
    if let Some(Some(t)) = input.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(Invalid::new("settings.temperature", "must be from 0 to 2"));
    }
    if let Some(Some(m)) = input.max_tokens
        && !(1..=MAX_COMPLETION_TOKENS).contains(&m)
    {
        return Err(Invalid::new(
            "settings.max_tokens",
            format!("must be from 1 to {MAX_COMPLETION_TOKENS}"),
        ));
    }
    if let Some(fields) = &input.memory_fields {
        if fields.len() > MAX_MEMORY_FIELDS {
            return Err(Invalid::new(
                "settings.memory_fields",
                format!("at most {MAX_MEMORY_FIELDS} fields"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, f) in fields.iter().enumerate() {
            let name = f.name.trim();
            if !is_memory_field_name(name) {
                return Err(Invalid::new(
                    format!("settings.memory_fields[{i}].name"),
                    "use lowercase letters, digits and _, starting with a letter, up to 64 characters (e.g. order_number)",
                ));
            }
            if !seen.insert(name) {
                return Err(Invalid::new(
                    format!("settings.memory_fields[{i}].name"),
                    format!("{name:?} is listed twice"),
                ));
            }
            if f.description.chars().count() > MAX_MEMORY_DESCRIPTION_CHARS {
                return Err(Invalid::new(
                    format!("settings.memory_fields[{i}].description"),
                    format!("must be at most {MAX_MEMORY_DESCRIPTION_CHARS} characters"),
                ));
            }
        }
    }
    if let Some(Some(p)) = input.price
        && (p.prompt_nanousd_per_mtok < 0 || p.completion_nanousd_per_mtok < 0)
    {
        return Err(Invalid::new("settings.price", "prices cannot be negative"));
    }
    Ok(())
}

/// Whether `name` is a valid memory field name (see [`MemoryField::name`]).
pub fn is_memory_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses a decimal amount of US dollars (`"2.50"`, `"0.15"`, `"3"`) into nano-USD, exactly
/// (no floating point): at most 9 decimal places. Used for prices typed per million tokens.
/// Errors: anything but digits with one optional `.`, or more than 9 decimals, or too large.
pub fn usd_to_nanousd(text: &str) -> Result<i64, String> {
    let t = text.trim().trim_start_matches('$');
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(format!("{text:?} is not an amount in USD, e.g. 2.50"));
    }
    if frac.len() > 9 {
        return Err(format!("{text:?} has more than 9 decimal places"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?
    };
    let frac_nano: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().unwrap_or(0)
    };
    whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac_nano))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Formats nano-USD as a plain decimal USD amount without trailing zeros (`2500000000` ->
/// `"2.5"`), the inverse of [`usd_to_nanousd`].
pub fn nanousd_to_usd_text(nano: i64) -> String {
    let sign = if nano < 0 { "-" } else { "" };
    let n = nano.unsigned_abs();
    let whole = n / 1_000_000_000;
    let frac = n % 1_000_000_000;
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let frac = format!("{frac:09}");
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &str) -> Result<ProviderKey, Invalid> {
        Ok(ProviderKey::Sealed {
            sealed: format!("sealed({key})"),
            hint: ProviderKey::hint_for(key),
        })
    }

    fn input(json: serde_json::Value) -> AssistantSettingsInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn apply_sets_keeps_and_clears_fields() {
        let s = AssistantSettings::default()
            .apply(
                &input(serde_json::json!({
                    "provider": {"base_url": "https://api.openai.com/v1/", "model": "gpt-4o-mini",
                                 "api_key": "sk-abcdefghijklmnopqrstuvwxyz"},
                    "system_prompt": "Be brief.",
                    "temperature": 0.3,
                    "memory_fields": [{"name": "email", "description": "Their email"}]
                })),
                &seal,
                &OperatorProviders::new(),
            )
            .unwrap();
        let p = s.provider.clone().unwrap();
        assert_eq!(p.base_url, "https://api.openai.com/v1");
        assert_eq!(
            p.api_key,
            ProviderKey::Sealed {
                sealed: "sealed(sk-abcdefghijklmnopqrstuvwxyz)".into(),
                hint: "sk-…wxyz".into()
            }
        );
        // A patch that names the provider without a key keeps the sealed key.
        let s2 = s
            .apply(
                &input(serde_json::json!({
                    "provider": {"base_url": "https://example.test/v1", "model": "m"},
                    "temperature": null
                })),
                &seal,
                &OperatorProviders::new(),
            )
            .unwrap();
        assert_eq!(s2.provider.as_ref().unwrap().api_key, p.api_key);
        assert_eq!(s2.temperature, None);
        assert_eq!(s2.system_prompt, "Be brief.");
        assert_eq!(s2.memory_fields.len(), 1);
        // Outputs never carry the ciphertext.
        let shown = serde_json::to_value(s2.redacted()).unwrap();
        assert_eq!(
            shown["provider"]["api_key"],
            serde_json::json!({"kind": "sealed", "hint": "sk-…wxyz"})
        );
        let cleared = s2
            .apply(
                &input(serde_json::json!({"provider": null})),
                &seal,
                &OperatorProviders::new(),
            )
            .unwrap();
        assert_eq!(cleared.provider, None);
    }

    #[test]
    fn invalid_settings_name_the_field() {
        let cases = [
            (
                serde_json::json!({"provider": {"base_url": "ftp://x", "model": "m"}}),
                "settings.provider.base_url",
            ),
            (
                serde_json::json!({"provider": {"base_url": "http://x", "model": " "}}),
                "settings.provider.model",
            ),
            (
                serde_json::json!({"provider": {"base_url": "http://x", "model": "m", "api_key_env": "OPENAI_API_KEY"}}),
                "settings.provider.api_key_env",
            ),
            (
                serde_json::json!({"provider": {"base_url": "http://x/v1?x=", "model": "m"}}),
                "settings.provider.base_url",
            ),
            (
                serde_json::json!({"provider": {"base_url": "http://x/v1#f", "model": "m"}}),
                "settings.provider.base_url",
            ),
            (
                serde_json::json!({"provider": {"base_url": "http://u:p@x/v1", "model": "m"}}),
                "settings.provider.base_url",
            ),
            (
                serde_json::json!({"provider": {"name": "openai", "base_url": "http://x", "model": "m"}}),
                "settings.provider.base_url",
            ),
            (
                serde_json::json!({"provider": {"name": "openai", "api_key": "sk-mine"}}),
                "settings.provider.api_key",
            ),
            (
                serde_json::json!({"provider": {"name": "nope"}}),
                "settings.provider.name",
            ),
            (
                serde_json::json!({"provider": {"name": "openai", "model": "o1-pro"}}),
                "settings.provider.model",
            ),
            (
                serde_json::json!({"provider": {"model": "m"}}),
                "settings.provider.base_url",
            ),
            (
                serde_json::json!({"temperature": 2.5}),
                "settings.temperature",
            ),
            (serde_json::json!({"max_tokens": 0}), "settings.max_tokens"),
            (
                serde_json::json!({"memory_fields": [{"name": "Email"}]}),
                "settings.memory_fields[0].name",
            ),
            (
                serde_json::json!({"memory_fields": [{"name": "a"}, {"name": "a"}]}),
                "settings.memory_fields[1].name",
            ),
            (
                serde_json::json!({"price": {"prompt_nanousd_per_mtok": -1, "completion_nanousd_per_mtok": 0}}),
                "settings.price",
            ),
        ];
        let ops = operator();
        for (json, field) in cases {
            let err = AssistantSettings::default()
                .apply(&input(json.clone()), &seal, &ops)
                .unwrap_err();
            assert_eq!(err.field, field, "{json}");
        }
    }

    fn operator() -> OperatorProviders {
        let mut ops = OperatorProviders::new();
        ops.insert(
            "openai".into(),
            OperatorProvider {
                base_url: "https://api.openai.com/v1".into(),
                api_key_env: Some("OPENAI_API_KEY".into()),
                models: vec!["gpt-4o-mini".into(), "gpt-4o".into()],
                default_model: Some("gpt-4o-mini".into()),
                label: None,
            },
        );
        ops
    }

    #[test]
    fn a_named_provider_keeps_the_operators_url_and_key() {
        let ops = operator();
        let s = AssistantSettings::default()
            .apply(
                &input(serde_json::json!({"provider": {"name": "openai"}})),
                &seal,
                &ops,
            )
            .unwrap();
        let p = s.provider.clone().unwrap();
        assert_eq!(p.name.as_deref(), Some("openai"));
        assert_eq!(p.model, "gpt-4o-mini", "the default model");
        assert_eq!((p.base_url.as_str(), &p.api_key), ("", &ProviderKey::None));
        assert!(matches!(
            p.route(&ops),
            ProviderRoute::Operator {
                name: "openai",
                legacy: false,
                ..
            }
        ));
        // Switching to an own URL never carries anything of the operator's over.
        let own = s
            .apply(
                &input(serde_json::json!({"provider": {"base_url": "https://mine.example/v1", "model": "m"}})),
                &seal,
                &ops,
            )
            .unwrap()
            .provider
            .unwrap();
        assert_eq!((own.name, own.api_key), (None, ProviderKey::None));
        // Gone from the configuration: unusable, not silently something else.
        assert!(matches!(
            p.route(&OperatorProviders::new()),
            ProviderRoute::Unusable(_)
        ));
    }

    #[test]
    fn legacy_environment_keys_resolve_only_to_a_matching_operator_provider() {
        let ops = operator();
        let legacy = |url: &str, var: &str| ProviderSettings {
            name: None,
            base_url: url.into(),
            model: "gpt-4o-mini".into(),
            api_key: ProviderKey::Env { name: var.into() },
        };
        let same = legacy("https://api.openai.com/v1/", "OPENAI_API_KEY");
        assert!(matches!(
            same.route(&ops),
            ProviderRoute::Operator {
                name: "openai",
                legacy: true,
                ..
            }
        ));
        for (url, var) in [
            ("https://attacker.example/v1", "OPENAI_API_KEY"),
            ("https://api.openai.com/v1", "PARLEY_SECRET_KEY"),
        ] {
            match legacy(url, var).route(&ops) {
                ProviderRoute::Unusable(why) => assert!(why.contains("needs a provider"), "{why}"),
                other => panic!("{url} {var}: {other:?}"),
            }
        }
        // Stored settings of both shapes still parse.
        let stored: ProviderSettings = serde_json::from_value(serde_json::json!({
            "base_url": "https://api.openai.com/v1", "model": "m",
            "api_key": {"kind": "env", "name": "OPENAI_API_KEY"}}))
        .unwrap();
        assert_eq!(stored.name, None);
        // A legacy key is dropped when the URL changes without a new key.
        let s = AssistantSettings {
            provider: Some(same),
            ..Default::default()
        };
        let moved = s
            .apply(
                &input(serde_json::json!({"provider": {"base_url": "https://attacker.example/v1", "model": "m"}})),
                &seal,
                &ops,
            )
            .unwrap();
        assert_eq!(moved.provider.unwrap().api_key, ProviderKey::None);
    }

    #[test]
    fn base_urls_are_checked_with_the_url_parser() {
        assert_eq!(
            check_base_url(" https://api.openai.com/v1/ "),
            Ok("https://api.openai.com/v1".to_owned())
        );
        for bad in [
            "ftp://x",
            "http://",
            "https://a b",
            "http://x/v1?",
            "http://x/v1?x=",
            "http://x/#",
            "http://user@x/v1",
            "http://:pw@x/v1",
            "javascript:alert(1)",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
        let mut p = operator()["openai"].clone();
        assert!(p.check("openai").is_ok());
        assert!(p.check("Open AI").is_err());
        p.default_model = Some("other".into());
        assert!(p.check("openai").unwrap_err().contains("default_model"));
    }

    #[test]
    fn usd_amounts_convert_exactly() {
        assert_eq!(usd_to_nanousd("2.50"), Ok(2_500_000_000));
        assert_eq!(usd_to_nanousd("$0.15"), Ok(150_000_000));
        assert_eq!(usd_to_nanousd("3"), Ok(3_000_000_000));
        assert_eq!(usd_to_nanousd(".000000001"), Ok(1));
        assert!(usd_to_nanousd("1.0000000001").is_err());
        assert!(usd_to_nanousd("abc").is_err());
        assert!(usd_to_nanousd("-1").is_err());
        assert!(usd_to_nanousd("99999999999999").is_err());
        assert_eq!(nanousd_to_usd_text(2_500_000_000), "2.5");
        assert_eq!(nanousd_to_usd_text(150_000_000), "0.15");
        assert_eq!(nanousd_to_usd_text(3_000_000_000), "3");
        // $2.50 per million tokens is 2.5e-6 USD per token = 2.5e9 femto-USD per token.
        let price = PriceOverride {
            prompt_nanousd_per_mtok: 2_500_000_000,
            completion_nanousd_per_mtok: 10_000_000_000,
        }
        .as_model_price();
        let cost = price.cost_nanousd(crate::pricing::Usage {
            prompt_tokens: 1_000,
            completion_tokens: 100,
        });
        assert_eq!(cost, 2_500_000 + 1_000_000);
    }
}
