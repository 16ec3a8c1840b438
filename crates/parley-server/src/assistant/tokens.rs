//! Token counts with a real tokenizer (OpenAI's BPE encodings through the `tiktoken-rs`
//! crate): estimates when a provider sends no usage, and the history's size against a model's
//! context window.
//!
//! The encoding is the model's own when `tiktoken-rs` knows the model (`gpt-4o` uses
//! `o200k_base`, `gpt-4` and `gpt-3.5-turbo` use `cl100k_base`); any other model (another
//! vendor's) is counted with `o200k_base`, an approximation — which is why estimated usage is
//! marked as such on the message.
//!
//! A chat request costs its messages' tokens plus a fixed overhead: OpenAI's published rule for
//! its chat models is 3 tokens per message (its role and delimiters), 1 more per `name`, and 3
//! that prime the reply.

use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Tokens every message adds beyond its text.
pub const TOKENS_PER_MESSAGE: usize = 3;
/// Tokens that prime the reply, once per request.
pub const TOKENS_PER_REPLY: usize = 3;

/// The encoding for `model` (see the module docs).
fn bpe(model: &str) -> &'static CoreBPE {
    tiktoken_rs::bpe_for_model(model).unwrap_or_else(|_| tiktoken_rs::o200k_base_singleton())
}

/// Tokens in `text` for `model`.
pub fn count_text(model: &str, text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    bpe(model).encode_with_special_tokens(text).len()
}

/// Tokens one OpenAI-format message costs in a request: its role, text (string content or the
/// text parts of an array), name, tool calls and tool call id, plus [`TOKENS_PER_MESSAGE`].
pub fn count_message(model: &str, message: &Value) -> usize {
    let bpe = bpe(model);
    let count = |s: &str| {
        if s.is_empty() {
            0
        } else {
            bpe.encode_with_special_tokens(s).len()
        }
    };
    let mut n = TOKENS_PER_MESSAGE;
    if let Some(role) = message.get("role").and_then(Value::as_str) {
        n += count(role);
    }
    match message.get("content") {
        Some(Value::String(s)) => n += count(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    n += count(t);
                }
            }
        }
        _ => {}
    }
    if let Some(name) = message.get("name").and_then(Value::as_str) {
        n += count(name) + 1;
    }
    if let Some(id) = message.get("tool_call_id").and_then(Value::as_str) {
        n += count(id);
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(f) = call.get("function") {
            n += count(f.get("name").and_then(Value::as_str).unwrap_or(""));
            n += count(f.get("arguments").and_then(Value::as_str).unwrap_or(""));
        }
    }
    n
}

/// Tokens a whole request's messages cost, with the reply priming.
pub fn count_messages(model: &str, messages: &[Value]) -> usize {
    messages
        .iter()
        .map(|m| count_message(model, m))
        .sum::<usize>()
        + TOKENS_PER_REPLY
}

/// Tokens of a request's tool definitions (their JSON text: an approximation; providers render
/// tools into the prompt in their own format).
pub fn count_tools(model: &str, tools: &[Value]) -> usize {
    tools
        .iter()
        .map(|t| count_text(model, &t.to_string()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_follow_the_models_encoding() {
        // "hello world" is two tokens in both cl100k_base and o200k_base.
        assert_eq!(count_text("gpt-4o", "hello world"), 2);
        assert_eq!(count_text("gpt-3.5-turbo", "hello world"), 2);
        assert_eq!(count_text("some-other-vendor-model", "hello world"), 2);
        assert_eq!(count_text("gpt-4o", ""), 0);
        let msgs = [
            json!({"role": "system", "content": "You are helpful."}),
            json!({"role": "user", "content": [{"type": "text", "text": "hello world"}]}),
        ];
        let total = count_messages("gpt-4o", &msgs);
        let expected = (TOKENS_PER_MESSAGE + 1 + count_text("gpt-4o", "You are helpful."))
            + (TOKENS_PER_MESSAGE + 1 + 2)
            + TOKENS_PER_REPLY;
        assert_eq!(total, expected);
    }

    /// The recorded gpt-4o stream reports 14 completion tokens for its text; the tokenizer
    /// agrees with what OpenAI counted.
    #[test]
    fn the_tokenizer_matches_openais_recorded_completion_count() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/openai/openai_python_stream_text_with_usage.json");
        let f: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let mut acc = super::super::provider::CompletionAccumulator::default();
        for line in f["body"].as_str().unwrap().lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                acc.push(data).unwrap();
            }
        }
        let c = acc.finish();
        let reported = c.usage.unwrap().completion_tokens as usize;
        assert_eq!(
            count_text("gpt-4o", &c.content),
            reported,
            "{:?}",
            c.content
        );
    }
}
