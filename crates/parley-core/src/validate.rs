//! Input checks and size limits. Every API input passes through here before it reaches the
//! store, so nothing half-valid is ever written. A failure names the field at fault with a
//! JSON path (`messages[3].content`).

use std::collections::HashSet;
use std::fmt;

use crate::model::{
    AssistantInput, AssistantRef, ConversationInput, ConversationPatch, MessageInput, Rating,
    Sentiment, Variable,
};

/// Longest message content, in characters.
pub const MAX_CONTENT_CHARS: usize = 100_000;
/// Most messages in one request (or one JSONL line).
pub const MAX_MESSAGES_PER_REQUEST: usize = 10_000;
/// Longest id-like text (`external_id`, `session_id`, `contact`), in characters.
pub const MAX_ID_CHARS: usize = 255;
/// Longest name (assistant name and company, model), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest rating comment or end reason, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;
/// Most variables in one request.
pub const MAX_VARIABLES: usize = 500;
/// Longest variable value, in characters.
pub const MAX_VARIABLE_VALUE_CHARS: usize = 10_000;
/// Largest memory object, in bytes of JSON.
pub const MAX_MEMORY_BYTES: usize = 64 * 1024;

/// An input that breaks a rule. `Display` is `field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the offending field, e.g. `messages[3].role`.
    pub field: String,
    /// What is wrong, for humans.
    pub message: String,
}

impl Invalid {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn within(self, prefix: &str) -> Self {
        Invalid {
            field: format!("{prefix}{}", self.field),
            message: self.message,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

fn text(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), Invalid> {
    if !allow_empty && value.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.contains('\0') {
        return Err(Invalid::new(field, "must not contain NUL characters"));
    }
    Ok(())
}

fn opt_text(field: &str, value: &Option<String>, max: usize) -> Result<(), Invalid> {
    match value {
        Some(v) => text(field, v, max, false),
        None => Ok(()),
    }
}

/// Checks an assistant to create.
pub fn assistant(input: &AssistantInput) -> Result<(), Invalid> {
    text("name", &input.name, MAX_NAME_CHARS, false)?;
    text("company", &input.company, MAX_NAME_CHARS, true)
}

fn assistant_ref(r: &AssistantRef) -> Result<(), Invalid> {
    if r.id.is_none() && r.name.is_none() {
        return Err(Invalid::new(
            "assistant",
            "give the assistant's id, or its name (and company)",
        ));
    }
    opt_text("assistant.name", &r.name, MAX_NAME_CHARS)?;
    if let Some(c) = &r.company {
        text("assistant.company", c, MAX_NAME_CHARS, true)?;
    }
    Ok(())
}

/// Checks a rating: score 1 to 5, comment length.
pub fn rating(r: &Rating) -> Result<(), Invalid> {
    if !(1..=5).contains(&r.score) {
        return Err(Invalid::new(
            "rating.score",
            "must be an integer from 1 to 5",
        ));
    }
    if let Some(c) = &r.comment {
        text("rating.comment", c, MAX_COMMENT_CHARS, true)?;
    }
    Ok(())
}

fn sentiment(s: &Sentiment) -> Result<(), Invalid> {
    match s.score {
        Some(v) if !v.is_finite() || !(-1.0..=1.0).contains(&v) => Err(Invalid::new(
            "sentiment.score",
            "must be a number from -1 to 1",
        )),
        _ => Ok(()),
    }
}

/// Checks a list of variables: sizes, and keys unique within the list.
pub fn variables(vars: &[Variable]) -> Result<(), Invalid> {
    if vars.len() > MAX_VARIABLES {
        return Err(Invalid::new(
            "variables",
            format!("at most {MAX_VARIABLES} variables"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, v) in vars.iter().enumerate() {
        let at = format!("variables[{i}]");
        text(&format!("{at}.key"), &v.key, MAX_NAME_CHARS, false)?;
        text(
            &format!("{at}.value"),
            &v.value,
            MAX_VARIABLE_VALUE_CHARS,
            true,
        )?;
        if !seen.insert(v.key.as_str()) {
            return Err(Invalid::new(
                format!("{at}.key"),
                format!("duplicate key {:?}", v.key),
            ));
        }
    }
    Ok(())
}

fn memory(m: &serde_json::Map<String, serde_json::Value>) -> Result<(), Invalid> {
    let size = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_MEMORY_BYTES {
        return Err(Invalid::new(
            "memory",
            format!("must be at most {MAX_MEMORY_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

/// Checks one message.
pub fn message(m: &MessageInput) -> Result<(), Invalid> {
    if m.content.chars().count() > MAX_CONTENT_CHARS {
        return Err(Invalid::new(
            "content",
            format!("must be at most {MAX_CONTENT_CHARS} characters"),
        ));
    }
    if m.content.contains('\0') {
        return Err(Invalid::new("content", "must not contain NUL characters"));
    }
    opt_text("external_id", &m.external_id, MAX_ID_CHARS)?;
    opt_text("model", &m.model, MAX_NAME_CHARS)?;
    if let Some(u) = m.usage
        && (u.prompt_tokens < 0 || u.completion_tokens < 0)
    {
        return Err(Invalid::new("usage", "token counts must not be negative"));
    }
    if m.cost_nanousd.is_some_and(|c| c < 0) {
        return Err(Invalid::new("cost_nanousd", "must not be negative"));
    }
    Ok(())
}

/// Checks a batch of messages (count limit and each message).
pub fn messages(list: &[MessageInput]) -> Result<(), Invalid> {
    if list.len() > MAX_MESSAGES_PER_REQUEST {
        return Err(Invalid::new(
            "messages",
            format!("at most {MAX_MESSAGES_PER_REQUEST} messages per request"),
        ));
    }
    for (i, m) in list.iter().enumerate() {
        message(m).map_err(|e| e.within(&format!("messages[{i}].")))?;
    }
    Ok(())
}

/// Checks a conversation to create (or a JSONL line).
pub fn conversation(c: &ConversationInput) -> Result<(), Invalid> {
    opt_text("external_id", &c.external_id, MAX_ID_CHARS)?;
    assistant_ref(&c.assistant)?;
    opt_text("contact", &c.contact, MAX_ID_CHARS)?;
    opt_text("session_id", &c.session_id, MAX_ID_CHARS)?;
    opt_text("end_reason", &c.end_reason, MAX_COMMENT_CHARS)?;
    if let (Some(start), Some(end)) = (c.started_at, c.ended_at)
        && end < start
    {
        return Err(Invalid::new("ended_at", "must not be before started_at"));
    }
    if let Some(r) = &c.rating {
        rating(r)?;
    }
    if let Some(s) = &c.sentiment {
        sentiment(s)?;
    }
    variables(&c.variables)?;
    if let Some(m) = &c.memory {
        memory(m)?;
    }
    messages(&c.messages)
}

/// Checks a conversation update.
pub fn patch(p: &ConversationPatch) -> Result<(), Invalid> {
    if p.is_empty() {
        return Err(Invalid::new(
            "",
            "the body changes nothing; give at least one field",
        ));
    }
    if let Some(Some(r)) = &p.end_reason {
        text("end_reason", r, MAX_COMMENT_CHARS, false)?;
    }
    if let Some(Some(r)) = &p.rating {
        rating(r)?;
    }
    if let Some(Some(s)) = &p.sentiment {
        sentiment(s)?;
    }
    if let Some(c) = &p.contact {
        text("contact", c, MAX_ID_CHARS, false)?;
    }
    if let Some(v) = &p.variables {
        variables(v)?;
    }
    if let Some(m) = &p.memory {
        memory(m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(json: serde_json::Value) -> ConversationInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn rejects_bad_conversations_with_the_field_at_fault() {
        let ok = serde_json::json!({"assistant": {"name": "Bot"}, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(conversation(&conv(ok.clone())), Ok(()));

        let mut bad = ok.clone();
        bad["rating"] = serde_json::json!({"score": 6});
        assert_eq!(conversation(&conv(bad)).unwrap_err().field, "rating.score");

        let mut bad = ok.clone();
        bad["messages"][0]["content"] = serde_json::json!("x".repeat(MAX_CONTENT_CHARS + 1));
        assert_eq!(
            conversation(&conv(bad)).unwrap_err().field,
            "messages[0].content"
        );

        let mut bad = ok.clone();
        bad["variables"] =
            serde_json::json!([{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]);
        assert_eq!(
            conversation(&conv(bad)).unwrap_err().field,
            "variables[1].key"
        );

        let bad = serde_json::json!({"assistant": {}});
        assert_eq!(conversation(&conv(bad)).unwrap_err().field, "assistant");
    }

    #[test]
    fn unknown_fields_and_names_are_refused_by_the_shapes() {
        let r: Result<ConversationInput, _> = serde_json::from_value(
            serde_json::json!({"assistant": {"name": "B"}, "chanel": "web"}),
        );
        assert!(r.unwrap_err().to_string().contains("chanel"));
        let r: Result<ConversationInput, _> = serde_json::from_value(
            serde_json::json!({"assistant": {"name": "B"}, "channel": "sms"}),
        );
        assert!(r.is_err());
    }

    #[test]
    fn empty_patch_is_refused() {
        assert!(patch(&ConversationPatch::default()).is_err());
        let p: ConversationPatch =
            serde_json::from_value(serde_json::json!({"rating": null})).unwrap();
        assert_eq!(p.rating, Some(None));
        assert_eq!(patch(&p), Ok(()));
    }
}
