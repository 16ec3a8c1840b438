//! Model prices and cost. Parley ships a per-token price table derived from LiteLLM's
//! `model_prices_and_context_window.json` (MIT, BerriAI/litellm; see `data/README.md`), keeping
//! only chat models and the fields Parley uses. An operator may load an override file in the same
//! format (a LiteLLM table works as is); its entries replace or add to the built-in ones.
//!
//! Money is never a float in Parley: prices are held as integer **femto-USD per token**
//! (1e-15 USD, so that sub-nano per-token prices keep their precision) and costs are integer
//! **nano-USD** (1e-9 USD), rounded half up per message.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The price table shipped with Parley (LiteLLM format, chat models only).
pub const BUILTIN_PRICE_TABLE: &str = include_str!("../data/model_prices.json");

/// Femto-USD (1e-15 USD) per nano-USD (1e-9 USD).
const FEMTO_PER_NANO: i128 = 1_000_000;

/// Token counts of one model call, or their sum over a conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Input tokens.
    #[serde(deserialize_with = "crate::model::int::exact")]
    pub prompt_tokens: i64,
    /// Output tokens.
    #[serde(deserialize_with = "crate::model::int::exact")]
    pub completion_tokens: i64,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> i64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// One model's prices and context limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// Femto-USD per prompt (input) token.
    pub input_femto_per_token: i64,
    /// Femto-USD per completion (output) token.
    pub output_femto_per_token: i64,
    /// The model's context window for input, in tokens, when the table gives it.
    pub max_input_tokens: Option<u64>,
    /// The most tokens one completion may produce, when the table gives it.
    pub max_output_tokens: Option<u64>,
    /// LiteLLM's provider name (`openai`, `anthropic`...), when given.
    pub provider: Option<String>,
}

impl ModelPrice {
    /// The cost of `usage` at this price, in nano-USD, rounded half up.
    pub fn cost_nanousd(&self, usage: Usage) -> i64 {
        let femto = usage.prompt_tokens.max(0) as i128 * self.input_femto_per_token as i128
            + usage.completion_tokens.max(0) as i128 * self.output_femto_per_token as i128;
        let nano = (femto + FEMTO_PER_NANO / 2) / FEMTO_PER_NANO;
        nano.min(i64::MAX as i128) as i64
    }
}

/// A price table file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTableError(pub String);

impl fmt::Display for PriceTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid price table: {}", self.0)
    }
}

impl std::error::Error for PriceTableError {}

/// Model id -> [`ModelPrice`]. Lookups try the exact id, then its lowercase form, then the id
/// without a `provider/` prefix. Nothing else is guessed: a dated or renamed model that is not
/// in the table is unknown, because its price may differ from its namesake's.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<String, ModelPrice>,
}

/// What pricing a message gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The client sent the cost; it wins over the table.
    Client,
    /// Computed at ingestion from the message's usage and the price table.
    PriceTable,
    /// The message has usage but its model is not in the table (or it names no model): no cost
    /// is recorded and the conversation is flagged as incompletely priced.
    UnknownModel,
    /// Computed from the message's usage and its assistant's own prices (a price override in
    /// the assistant's settings), which win over the table.
    AssistantPrice,
}

impl CostSource {
    /// The storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Client => "client",
            CostSource::PriceTable => "price_table",
            CostSource::UnknownModel => "unknown_model",
            CostSource::AssistantPrice => "assistant_price",
        }
    }

    /// Parses a storage name; `None` if unknown.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(CostSource::Client),
            "price_table" => Some(CostSource::PriceTable),
            "unknown_model" => Some(CostSource::UnknownModel),
            "assistant_price" => Some(CostSource::AssistantPrice),
            _ => None,
        }
    }
}

impl PriceTable {
    /// The table shipped with Parley.
    pub fn builtin() -> Self {
        Self::from_litellm_json(BUILTIN_PRICE_TABLE).expect("the built-in price table parses")
    }

    /// Reads a table in LiteLLM's format: a JSON object mapping model ids to objects with
    /// `input_cost_per_token` and/or `output_cost_per_token` (USD per token, numbers), and
    /// optionally `max_input_tokens`, `max_output_tokens`, `litellm_provider`. Entries without
    /// either price (such as LiteLLM's `sample_spec`) and keys starting with `_` are skipped.
    ///
    /// Errors: the text is not a JSON object, or a price is negative or not a number.
    pub fn from_litellm_json(text: &str) -> Result<Self, PriceTableError> {
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PriceTableError(e.to_string()))?;
        let obj = root
            .as_object()
            .ok_or_else(|| PriceTableError("the top level must be a JSON object".into()))?;
        let mut models = HashMap::with_capacity(obj.len());
        for (id, entry) in obj {
            if id.starts_with('_') || id == "sample_spec" {
                continue;
            }
            let Some(entry) = entry.as_object() else {
                continue;
            };
            let price = |field: &str| -> Result<Option<i64>, PriceTableError> {
                match entry.get(field) {
                    None | Some(serde_json::Value::Null) => Ok(None),
                    Some(v) => {
                        let usd = v
                            .as_f64()
                            .filter(|p| *p >= 0.0 && p.is_finite())
                            .ok_or_else(|| {
                                PriceTableError(format!(
                                    "{id}.{field} must be a non-negative number"
                                ))
                            })?;
                        Ok(Some((usd * 1e15).round() as i64))
                    }
                }
            };
            let input = price("input_cost_per_token")?;
            let output = price("output_cost_per_token")?;
            if input.is_none() && output.is_none() {
                continue;
            }
            models.insert(
                id.clone(),
                ModelPrice {
                    input_femto_per_token: input.unwrap_or(0),
                    output_femto_per_token: output.unwrap_or(0),
                    max_input_tokens: entry.get("max_input_tokens").and_then(|v| v.as_u64()),
                    max_output_tokens: entry.get("max_output_tokens").and_then(|v| v.as_u64()),
                    provider: entry
                        .get("litellm_provider")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned),
                },
            );
        }
        Ok(Self { models })
    }

    /// Adds or replaces every entry of `other` (an operator's override file).
    pub fn merge(&mut self, other: PriceTable) {
        self.models.extend(other.models);
    }

    /// Number of models in the table.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The price of `model`, trying the exact id, its lowercase form, and the id without a
    /// leading `provider/` prefix.
    pub fn lookup(&self, model: &str) -> Option<&ModelPrice> {
        let model = model.trim();
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        let lower = model.to_ascii_lowercase();
        if let Some(p) = self.models.get(&lower) {
            return Some(p);
        }
        lower
            .split_once('/')
            .and_then(|(_, rest)| self.models.get(rest))
    }

    /// Prices one message: the client's cost if given, else usage x table price, else (usage
    /// with an unknown or missing model) no cost and [`CostSource::UnknownModel`]. A message
    /// without usage and without a client cost has no cost and no source.
    pub fn price_message(
        &self,
        model: Option<&str>,
        usage: Option<Usage>,
        client_cost_nanousd: Option<i64>,
    ) -> (Option<i64>, Option<CostSource>) {
        self.price_message_with(model, usage, client_cost_nanousd, None)
    }

    /// [`PriceTable::price_message`], with an assistant's own price (`assistant_price`) used
    /// instead of the table when given: the client's cost still wins.
    pub fn price_message_with(
        &self,
        model: Option<&str>,
        usage: Option<Usage>,
        client_cost_nanousd: Option<i64>,
        assistant_price: Option<&ModelPrice>,
    ) -> (Option<i64>, Option<CostSource>) {
        if let Some(cost) = client_cost_nanousd {
            return (Some(cost), Some(CostSource::Client));
        }
        let Some(usage) = usage else {
            return (None, None);
        };
        if let Some(price) = assistant_price {
            return (
                Some(price.cost_nanousd(usage)),
                Some(CostSource::AssistantPrice),
            );
        }
        match model.and_then(|m| self.lookup(m)) {
            Some(price) => (
                Some(price.cost_nanousd(usage)),
                Some(CostSource::PriceTable),
            ),
            None => (None, Some(CostSource::UnknownModel)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_prices_gpt_4o_exactly() {
        let table = PriceTable::builtin();
        assert!(table.len() > 1000, "chat models are kept: {}", table.len());
        let p = table.lookup("gpt-4o").expect("gpt-4o is priced");
        // 2.5e-06 and 1e-05 USD per token.
        assert_eq!(p.input_femto_per_token, 2_500_000_000);
        assert_eq!(p.output_femto_per_token, 10_000_000_000);
        assert_eq!(p.max_input_tokens, Some(128_000));
        let usage = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 500,
        };
        // 1000 * 2.5e-6 + 500 * 1e-5 = 0.0075 USD = 7,500,000 nano-USD.
        assert_eq!(p.cost_nanousd(usage), 7_500_000);
        assert!(
            table.lookup("openai/gpt-4o").is_some(),
            "provider prefix is stripped"
        );
        assert!(
            table.lookup("GPT-4o").is_some(),
            "lookup is case-insensitive"
        );
        assert!(table.lookup("gpt-4o-my-finetune").is_none(), "no guessing");
    }

    #[test]
    fn client_cost_wins_and_unknown_models_are_flagged() {
        let table = PriceTable::builtin();
        let usage = Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 10,
        });
        assert_eq!(
            table.price_message(Some("gpt-4o"), usage, Some(42)),
            (Some(42), Some(CostSource::Client))
        );
        assert_eq!(
            table.price_message(Some("no-such-model"), usage, None),
            (None, Some(CostSource::UnknownModel))
        );
        assert_eq!(
            table.price_message(None, usage, None),
            (None, Some(CostSource::UnknownModel))
        );
        assert_eq!(
            table.price_message(Some("gpt-4o"), None, None),
            (None, None)
        );
    }

    #[test]
    fn sub_nano_prices_round_per_message() {
        let table = PriceTable::from_litellm_json(
            r#"{"tiny": {"input_cost_per_token": 1.5e-10, "output_cost_per_token": 0}}"#,
        )
        .unwrap();
        let p = table.lookup("tiny").unwrap();
        assert_eq!(p.input_femto_per_token, 150_000);
        assert_eq!(
            p.cost_nanousd(Usage {
                prompt_tokens: 3,
                completion_tokens: 0
            }),
            0
        ); // 0.45
        assert_eq!(
            p.cost_nanousd(Usage {
                prompt_tokens: 4,
                completion_tokens: 0
            }),
            1
        ); // 0.6
        assert!(PriceTable::from_litellm_json(r#"{"x": {"input_cost_per_token": -1}}"#).is_err());
        assert!(PriceTable::from_litellm_json("[]").is_err());
    }

    /// The shipped table is a faithful subset of the LiteLLM snapshot in ../shared.
    #[test]
    fn builtin_table_matches_the_litellm_snapshot() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/pricing/litellm_model_prices_and_context_window.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("SKIPPED: {path} not found (../shared is not beside the checkout)");
            return;
        };
        let upstream = PriceTable::from_litellm_json(&text).unwrap();
        let shipped = PriceTable::builtin();
        for (id, price) in &shipped.models {
            assert_eq!(
                upstream.models.get(id),
                Some(price),
                "{id} differs from upstream"
            );
        }
    }
}
