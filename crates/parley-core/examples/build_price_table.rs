//! Regenerates `data/model_prices.json` from a LiteLLM price table:
//!
//! ```sh
//! cargo run -p parley-core --example build_price_table -- \
//!     ../shared/fixtures/pricing/litellm_model_prices_and_context_window.json \
//!     > crates/parley-core/data/model_prices.json
//! ```
//!
//! Keeps entries with `mode: "chat"` and a per-token price, and of each only the fields Parley
//! reads; values are copied unchanged, key order is sorted for stable diffs.

use std::collections::BTreeMap;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: build_price_table LITELLM_JSON");
    let text = std::fs::read_to_string(&path).expect("read the LiteLLM table");
    let root: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).expect("a JSON object");
    const KEEP: [&str; 5] = [
        "input_cost_per_token",
        "output_cost_per_token",
        "max_input_tokens",
        "max_output_tokens",
        "litellm_provider",
    ];
    let mut out = BTreeMap::new();
    for (id, entry) in &root {
        let Some(entry) = entry.as_object() else {
            continue;
        };
        if entry.get("mode").and_then(|m| m.as_str()) != Some("chat") {
            continue;
        }
        if !entry.contains_key("input_cost_per_token")
            && !entry.contains_key("output_cost_per_token")
        {
            continue;
        }
        let kept: BTreeMap<&str, &serde_json::Value> = KEEP
            .iter()
            .filter_map(|k| entry.get(*k).map(|v| (*k, v)))
            .collect();
        out.insert(id.clone(), serde_json::to_value(kept).unwrap());
    }
    let mut doc = serde_json::Map::new();
    doc.insert(
        "_source".into(),
        serde_json::json!(
            "Derived from BerriAI/litellm model_prices_and_context_window.json (MIT License, \
             Copyright (c) 2023 Berri AI), snapshot of 2026-07-24; chat models only, fields \
             input_cost_per_token, output_cost_per_token (USD per token), max_input_tokens, \
             max_output_tokens, litellm_provider. Regenerate with \
             `cargo run -p parley-core --example build_price_table`."
        ),
    );
    for (k, v) in out {
        doc.insert(k, v);
    }
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}
