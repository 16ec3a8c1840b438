//! An assistant's settings: the LLM provider it talks to (any OpenAI-compatible chat
//! completions endpoint), its system prompt and sampling settings, the memory fields it collects
//! with its `save_memory` tool, and an optional price override.
//!
//! Settings are one JSON document per assistant version ([`AssistantSettings`]); every change
//! makes a new version, and a conversation records the version that handled it. API inputs
//! ([`AssistantSettingsInput`]) may carry a provider key in plain text; the server seals it
//! (encrypts it with its secret key) before anything is stored, and outputs show only a hint
//! of it ([`ProviderKey::redacted`]).

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

/// An OpenAI-compatible chat completions endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The API base URL, up to and including the version segment, without a trailing slash:
    /// `https://api.openai.com/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// The model, as the provider names it (`gpt-4o-mini`).
    pub model: String,
    /// How Parley authenticates to the provider.
    #[serde(default)]
    pub api_key: ProviderKey,
}

/// Where the provider's API key comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderKey {
    /// No key (a local model server that needs none).
    #[default]
    None,
    /// Read from this environment variable of the Parley server at each call.
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
    pub prompt_nanousd_per_mtok: i64,
    /// Nano-USD per million completion (output) tokens.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tokens: Option<Option<u32>>,
    /// Replaces the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_fields: Option<Vec<MemoryField>>,
    /// `null` goes back to the price table.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub price: Option<Option<PriceOverride>>,
}

/// A provider on input. Give at most one of `api_key_env` and `api_key`; give neither to keep
/// the key already configured (or none, for a new provider).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    /// See [`ProviderSettings::base_url`].
    pub base_url: String,
    /// See [`ProviderSettings::model`].
    pub model: String,
    /// Read the key from this environment variable of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The key itself; stored sealed, never shown again. An empty string removes the key.
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
    /// stored form. Errors: the first invalid field (`settings.provider.base_url`...), or
    /// `seal`'s error.
    pub fn apply(
        &self,
        input: &AssistantSettingsInput,
        seal: &dyn Fn(&str) -> Result<ProviderKey, Invalid>,
    ) -> Result<AssistantSettings, Invalid> {
        validate_input(input)?;
        let mut out = self.clone();
        if let Some(provider) = &input.provider {
            out.provider = match provider {
                None => None,
                Some(p) => {
                    let api_key = match (&p.api_key_env, &p.api_key) {
                        (Some(name), None) => ProviderKey::Env { name: name.clone() },
                        (None, Some(key)) if key.is_empty() => ProviderKey::None,
                        (None, Some(key)) => seal(key)?,
                        _ => self
                            .provider
                            .as_ref()
                            .map(|old| old.api_key.clone())
                            .unwrap_or_default(),
                    };
                    Some(ProviderSettings {
                        base_url: p.base_url.trim().trim_end_matches('/').to_owned(),
                        model: p.model.trim().to_owned(),
                        api_key,
                    })
                }
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

fn validate_input(input: &AssistantSettingsInput) -> Result<(), Invalid> {
    if let Some(Some(p)) = &input.provider {
        let base = p.base_url.trim();
        let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
        if !scheme_ok || base.len() > 2_000 || base.contains(char::is_whitespace) {
            return Err(Invalid::new(
                "settings.provider.base_url",
                "must be an http:// or https:// URL such as https://api.openai.com/v1",
            ));
        }
        let model = p.model.trim();
        if model.is_empty() || model.chars().count() > crate::validate::MAX_NAME_CHARS {
            return Err(Invalid::new(
                "settings.provider.model",
                "give the model's name as the provider knows it, e.g. gpt-4o-mini (up to 200 characters)",
            ));
        }
        if p.api_key_env.is_some() && p.api_key.is_some() {
            return Err(Invalid::new(
                "settings.provider",
                "give api_key_env or api_key, not both",
            ));
        }
        if let Some(name) = &p.api_key_env {
            let ok = !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(Invalid::new(
                    "settings.provider.api_key_env",
                    "must be an environment variable name: A-Z, 0-9 and _, e.g. OPENAI_API_KEY",
                ));
            }
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
            .apply(&input(serde_json::json!({"provider": null})), &seal)
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
                serde_json::json!({"provider": {"base_url": "http://x", "model": "m", "api_key_env": "lower"}}),
                "settings.provider.api_key_env",
            ),
            (
                serde_json::json!({"provider": {"base_url": "http://x", "model": "m", "api_key_env": "A", "api_key": "k"}}),
                "settings.provider",
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
        for (json, field) in cases {
            let err = AssistantSettings::default()
                .apply(&input(json.clone()), &seal)
                .unwrap_err();
            assert_eq!(err.field, field, "{json}");
        }
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
