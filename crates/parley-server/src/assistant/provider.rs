//! The client for OpenAI-compatible chat completions endpoints (`POST {base_url}/chat/completions`,
//! OpenAI API reference "Create chat completion"): request building, the streamed answer
//! (server-sent events of `chat.completion.chunk` objects, ending in `data: [DONE]`, with the
//! usage chunk `choices: []` when `stream_options.include_usage` is set), non-streamed
//! `chat.completion` bodies, and the provider's errors (`{"error": {"message", "type", "code"}}`)
//! sorted into [`ProviderError`] kinds that say whether a retry is safe.
//!
//! [`CompletionAccumulator`] assembles a streamed answer chunk by chunk: the runtime and the
//! gateway (which forwards the bytes untouched and reads a copy) share it.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use parley_core::assistant::{
    OperatorProvider, ProviderKey, ProviderRoute, ProviderSettings, check_base_url,
};
use parley_core::model::ToolCall;
use parley_core::pricing::Usage;
use serde_json::{Value, json};

use crate::AppState;

/// The default longest wait for an answer, or between two chunks of a streamed one (the
/// `provider_timeout_secs` setting).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest error body read from a provider, in bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Installs the process-wide TLS crypto provider (rustls with `ring`) that every HTTP client
/// needs; call it before building any `reqwest::Client`. Calling it again does nothing.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A provider ready to call: URL, key and model, and the HTTP client that may reach the URL
/// (the trusted one for an operator provider, the guarded one for a workspace's own: see
/// [`crate::net`]).
#[derive(Clone)]
pub struct Endpoint {
    /// `https://api.openai.com/v1` (no trailing slash).
    pub base_url: String,
    /// The bearer key, if the provider needs one.
    pub api_key: Option<String>,
    /// The model to ask for.
    pub model: String,
    /// The operator provider serving this endpoint (its name and configuration), if any.
    pub operator: Option<(String, OperatorProvider)>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("model", &self.model)
            .field("operator", &self.operator.as_ref().map(|(n, _)| n))
            .finish()
    }
}

impl Endpoint {
    /// Resolves an assistant's provider settings ([`ProviderSettings::route`]): an operator
    /// provider gets the operator's URL and the key from the operator's environment variable,
    /// sent with the trusted client; a workspace's own provider gets its base URL, its sealed
    /// key opened, and the guarded client. Errors: [`ProviderError::NotConfigured`] for an
    /// assistant that needs a provider, an operator provider whose key is not set (or that no
    /// longer offers the assistant's model), a sealed key that cannot be opened or a base URL
    /// that is no longer accepted; [`ProviderError::NotAllowed`] for a base URL whose host is
    /// a refused IP literal.
    pub fn resolve(p: &ProviderSettings, state: &AppState) -> Result<Endpoint, ProviderError> {
        match p.route(&state.settings.providers) {
            ProviderRoute::Unusable(why) => Err(ProviderError::NotConfigured(why)),
            ProviderRoute::Operator { name, provider, .. } => {
                if !provider.allows(&p.model) {
                    return Err(ProviderError::NotConfigured(format!(
                        "the server's provider {name} no longer offers the model {}: pick one it offers",
                        p.model
                    )));
                }
                let api_key = match &provider.api_key_env {
                    None => None,
                    Some(var) => match std::env::var(var) {
                        Ok(v) if !v.is_empty() => Some(v),
                        _ => {
                            tracing::warn!(provider = name, variable = %var,
                                "the environment variable of an operator provider's key is not set");
                            return Err(ProviderError::NotConfigured(format!(
                                "the server's provider {name} has no API key set on the server: tell the operator"
                            )));
                        }
                    },
                };
                Ok(Endpoint {
                    base_url: provider.base_url.trim_end_matches('/').to_owned(),
                    api_key,
                    model: p.model.clone(),
                    operator: Some((name.to_owned(), provider.clone())),
                    client: state.net.trusted().clone(),
                })
            }
            ProviderRoute::Custom => {
                let base_url = check_base_url(&p.base_url).map_err(|e| {
                    ProviderError::NotConfigured(format!("its base URL is not accepted: it {e}"))
                })?;
                let client = state
                    .net
                    .client_for(&base_url)
                    .map_err(|r| ProviderError::NotAllowed(r.to_string()))?
                    .clone();
                let api_key = match &p.api_key {
                    ProviderKey::Sealed { sealed, .. } => Some(
                        state
                            .secrets
                            .open(sealed)
                            .map_err(|e| ProviderError::NotConfigured(e.to_string()))?,
                    ),
                    // An environment key never reaches here (`route` makes it an operator
                    // provider or unusable); it is never read for a workspace's own URL.
                    ProviderKey::None | ProviderKey::Env { .. } => None,
                };
                Ok(Endpoint {
                    base_url,
                    api_key,
                    model: p.model.clone(),
                    operator: None,
                    client,
                })
            }
        }
    }

    /// Whether this endpoint may be asked for `model`: always for a workspace's own provider;
    /// for an operator provider, when the operator allows it ([`OperatorProvider::allows`]).
    pub fn allows(&self, model: &str) -> bool {
        self.operator.as_ref().is_none_or(|(_, p)| p.allows(model))
    }

    /// `{base_url}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// A request to `path` with the bearer key set, on the endpoint's client.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, self.url(path));
        if let Some(key) = &self.api_key {
            r = r.bearer_auth(key);
        }
        r
    }
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderError {
    /// No provider, or its key is unavailable.
    NotConfigured(String),
    /// The provider's URL is one the server does not connect to for workspaces (a private,
    /// loopback or metadata address: see [`crate::net`]). Nothing was sent.
    NotAllowed(String),
    /// No answer (or no next chunk) within the provider timeout.
    Timeout,
    /// HTTP 429; `retry_after` from the `Retry-After` header.
    RateLimited {
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// HTTP 5xx (or 408), or the connection failed.
    Unavailable {
        /// The status, if there was an answer.
        status: Option<u16>,
        /// What happened.
        message: String,
    },
    /// HTTP 401/403: the key is wrong or lacks access.
    Auth {
        /// The status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// Another 4xx: the request itself was refused (unknown model, bad parameter).
    Rejected {
        /// The status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The answer could not be read: a stream that ended early or held malformed data.
    StreamBroken {
        /// What was wrong.
        message: String,
        /// Whatever arrived before the break.
        partial: Box<Completion>,
    },
}

impl ProviderError {
    /// Whether calling again could succeed and is safe (nothing was shown to the customer yet
    /// is the caller's check): timeouts, 429, 5xx, connection failures, broken streams.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Timeout
                | ProviderError::RateLimited { .. }
                | ProviderError::Unavailable { .. }
                | ProviderError::StreamBroken { .. }
        )
    }

    /// The stable code stored on the failed message (`MessageError::code`).
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::NotConfigured(_) => "provider_not_configured",
            ProviderError::NotAllowed(_) => crate::net::CODE,
            ProviderError::Timeout => "provider_timeout",
            ProviderError::RateLimited { .. } => "provider_rate_limited",
            ProviderError::Unavailable { .. } => "provider_unavailable",
            ProviderError::Auth { .. } => "provider_auth_failed",
            ProviderError::Rejected { .. } => "provider_rejected",
            ProviderError::StreamBroken { .. } => "provider_stream_broken",
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::NotConfigured(m) => write!(f, "provider not configured: {m}"),
            ProviderError::NotAllowed(m) => write!(f, "destination not allowed: {m}"),
            ProviderError::Timeout => write!(f, "the provider did not answer in time"),
            ProviderError::RateLimited { message, .. } => {
                write!(f, "the provider is rate limiting (429): {message}")
            }
            ProviderError::Unavailable {
                status: Some(s),
                message,
            } => write!(f, "the provider failed ({s}): {message}"),
            ProviderError::Unavailable {
                status: None,
                message,
            } => write!(f, "the provider could not be reached: {message}"),
            ProviderError::Auth { status, message } => {
                write!(f, "the provider refused the API key ({status}): {message}")
            }
            ProviderError::Rejected { status, message } => {
                write!(f, "the provider refused the request ({status}): {message}")
            }
            ProviderError::StreamBroken { message, .. } => {
                write!(f, "the provider's answer broke off: {message}")
            }
        }
    }
}

impl std::error::Error for ProviderError {}

/// A finished (or partial) answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    /// The text.
    pub content: String,
    /// The refusal text, when the model refused.
    pub refusal: Option<String>,
    /// Tool calls, in index order.
    pub tool_calls: Vec<ToolCall>,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    pub finish_reason: Option<String>,
    /// Token usage, when the provider sent it.
    pub usage: Option<Usage>,
    /// The model that answered, as the provider names it.
    pub model: Option<String>,
}

/// Assembles a streamed answer from its chunks (`chat.completion.chunk` objects).
#[derive(Debug, Default)]
pub struct CompletionAccumulator {
    completion: Completion,
    /// Tool calls by stream index: (id, name, arguments).
    calls: Vec<(String, String, String)>,
    done: bool,
}

impl CompletionAccumulator {
    /// Takes one event's `data`; returns the text it adds, if any. `[DONE]` ends the stream.
    /// Errors: data that is not a chunk object.
    pub fn push(&mut self, data: &str) -> Result<Option<String>, String> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(None);
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| format!("a chunk is not JSON: {e}"))?;
        if let Some(err) = chunk.get("error") {
            return Err(format!(
                "the stream carried an error: {}",
                error_message(err)
            ));
        }
        if !chunk.is_object() {
            return Err("a chunk is not a JSON object".into());
        }
        if let Some(m) = chunk.get("model").and_then(Value::as_str) {
            self.completion.model = Some(m.to_owned());
        }
        if let Some(u) = parse_usage(chunk.get("usage")) {
            self.completion.usage = Some(u);
        }
        let mut text = None;
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue; // only the first choice is recorded (n = 1 is what assistants ask)
            }
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(t) = delta.get("content").and_then(Value::as_str)
                && !t.is_empty()
            {
                self.completion.content.push_str(t);
                text.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(r) = delta.get("refusal").and_then(Value::as_str) {
                self.completion
                    .refusal
                    .get_or_insert_with(String::new)
                    .push_str(r);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let i = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if i > 64 {
                    return Err("a tool call index is out of range".into());
                }
                while self.calls.len() <= i {
                    self.calls.push(Default::default());
                }
                let slot = &mut self.calls[i];
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    slot.0 = id.to_owned();
                }
                if let Some(f) = call.get("function") {
                    if let Some(n) = f.get("name").and_then(Value::as_str) {
                        slot.1.push_str(n);
                    }
                    if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                        slot.2.push_str(a);
                    }
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.completion.finish_reason = Some(reason.to_owned());
            }
        }
        Ok(text)
    }

    /// Whether `[DONE]` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the answer is complete: `[DONE]` or a finish reason arrived.
    pub fn is_complete(&self) -> bool {
        self.done || self.completion.finish_reason.is_some()
    }

    /// Whether any text or tool call arrived.
    pub fn has_output(&self) -> bool {
        !self.completion.content.is_empty() || !self.calls.is_empty()
    }

    /// The answer so far.
    pub fn finish(mut self) -> Completion {
        self.completion.tool_calls = self
            .calls
            .into_iter()
            .map(|(id, name, arguments)| ToolCall {
                id,
                name,
                arguments,
            })
            .collect();
        self.completion
    }
}

/// Reads the OpenAI `usage` object's prompt and completion tokens.
pub fn parse_usage(v: Option<&Value>) -> Option<Usage> {
    let u = v?.as_object()?;
    let prompt = u.get("prompt_tokens").and_then(Value::as_i64)?;
    let completion = u
        .get("completion_tokens")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Some(Usage {
        prompt_tokens: prompt.max(0),
        completion_tokens: completion.max(0),
    })
}

/// Reads a non-streamed `chat.completion` body (first choice).
/// Errors: not a completion object.
pub fn parse_completion(body: &Value) -> Result<Completion, String> {
    let choice = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("the answer has no choices")?;
    let message = choice.get("message").ok_or("the answer has no message")?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    Ok(Completion {
        content: text(message.get("content")).unwrap_or_default(),
        refusal: text(message.get("refusal")),
        tool_calls: message
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| ToolCall {
                id: text(c.get("id")).unwrap_or_default(),
                name: text(c.pointer("/function/name")).unwrap_or_default(),
                arguments: text(c.pointer("/function/arguments")).unwrap_or_default(),
            })
            .collect(),
        finish_reason: text(choice.get("finish_reason")),
        usage: parse_usage(body.get("usage")),
        model: text(body.get("model")),
    })
}

/// The message of an OpenAI error object (`{"message": ...}`), or its JSON.
fn error_message(err: &Value) -> String {
    err.get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| err.to_string())
        .chars()
        .take(500)
        .collect()
}

/// Sorts a provider's non-2xx answer into a [`ProviderError`]; `body` is its first bytes.
pub fn classify_status(status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").map(error_message))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(500)])
                .trim()
                .to_owned()
        });
    match status {
        429 => ProviderError::RateLimited {
            retry_after: retry_after
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3_600.0))),
            message,
        },
        401 | 403 => ProviderError::Auth { status, message },
        408 | 500..=599 => ProviderError::Unavailable {
            status: Some(status),
            message,
        },
        _ => ProviderError::Rejected { status, message },
    }
}

/// One chat completions request.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// OpenAI-format messages (`{"role", "content", ...}`).
    pub messages: Vec<Value>,
    /// Tool definitions (`{"type": "function", "function": {...}}`).
    pub tools: Vec<Value>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Most completion tokens.
    pub max_tokens: Option<u32>,
}

impl ChatRequest {
    /// The JSON body for `model`, streamed with the usage chunk.
    pub fn body(&self, model: &str) -> Value {
        let mut body = json!({
            "model": model,
            "messages": self.messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !self.tools.is_empty() {
            body["tools"] = Value::Array(self.tools.clone());
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = self.max_tokens {
            body["max_tokens"] = json!(m);
        }
        body
    }
}

/// Calls the provider once, streaming: `on_text` gets each piece of text as it arrives.
/// Returns the answer and how long it took. Errors: see [`ProviderError`]; a stream that
/// breaks carries what arrived.
pub async fn stream_chat(
    endpoint: &Endpoint,
    request: &ChatRequest,
    idle_timeout: Duration,
    mut on_text: impl FnMut(&str),
) -> Result<(Completion, Duration), ProviderError> {
    let started = Instant::now();
    let send = endpoint
        .request(reqwest::Method::POST, "chat/completions")
        .json(&request.body(&endpoint.model))
        .send();
    let res = match tokio::time::timeout(idle_timeout, send).await {
        Err(_) => return Err(ProviderError::Timeout),
        Ok(Err(e)) if e.is_timeout() => return Err(ProviderError::Timeout),
        Ok(Err(e)) if crate::net::refusal(&e).is_some() => {
            return Err(ProviderError::NotAllowed(crate::net::MESSAGE.into()));
        }
        Ok(Err(e)) => {
            return Err(ProviderError::Unavailable {
                status: None,
                message: describe(e),
            });
        }
        Ok(Ok(res)) => res,
    };
    let status = res.status().as_u16();
    if !(200..300).contains(&status) {
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(res, MAX_ERROR_BODY).await;
        return Err(classify_status(status, retry_after.as_deref(), &body));
    }
    let is_stream = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_stream {
        // A provider that ignores `stream: true` answers with one completion object.
        let body = match tokio::time::timeout(idle_timeout, res.bytes()).await {
            Err(_) => return Err(ProviderError::Timeout),
            Ok(Err(e)) => {
                return Err(broken(format!("reading the answer: {}", describe(e)), None));
            }
            Ok(Ok(b)) => b,
        };
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| broken(format!("the answer is not JSON: {e}"), None))?;
        let completion = parse_completion(&value).map_err(|m| broken(m, None))?;
        if !completion.content.is_empty() {
            on_text(&completion.content);
        }
        return Ok((completion, started.elapsed()));
    }
    let mut acc = CompletionAccumulator::default();
    let mut events = res.bytes_stream().eventsource();
    loop {
        let next = match tokio::time::timeout(idle_timeout, events.next()).await {
            Err(_) if acc.has_output() => {
                return Err(broken(
                    format!("no data for {} s", idle_timeout.as_secs_f64()),
                    Some(acc),
                ));
            }
            Err(_) => return Err(ProviderError::Timeout),
            Ok(next) => next,
        };
        match next {
            None => break,
            Some(Err(e)) => {
                return Err(broken(format!("reading the stream: {e}"), Some(acc)));
            }
            Some(Ok(event)) => match acc.push(&event.data) {
                Ok(Some(text)) => on_text(&text),
                Ok(None) => {
                    if acc.is_done() {
                        break;
                    }
                }
                Err(message) => return Err(broken(message, Some(acc))),
            },
        }
    }
    if !acc.is_complete() {
        return Err(broken(
            "the stream ended before the answer was complete".into(),
            Some(acc),
        ));
    }
    Ok((acc.finish(), started.elapsed()))
}

fn broken(message: String, acc: Option<CompletionAccumulator>) -> ProviderError {
    ProviderError::StreamBroken {
        message,
        partial: Box::new(acc.map(CompletionAccumulator::finish).unwrap_or_default()),
    }
}

/// A reqwest error's text and causes, without the URL (which may carry a key in its query);
/// a destination the guard refused reads `destination_not_allowed: ...` ([`crate::net`]).
pub fn describe(e: reqwest::Error) -> String {
    if crate::net::refusal(&e).is_some() {
        return format!("{}: {}", crate::net::CODE, crate::net::MESSAGE);
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads at most `limit` bytes of a body (errors read as empty).
async fn read_limited(res: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = res.bytes_stream();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/openai")
            .join(name);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    #[test]
    fn the_recorded_text_stream_assembles_with_its_usage() {
        let f = fixture("openai_python_stream_text_with_usage.json");
        let mut acc = CompletionAccumulator::default();
        let mut text = String::new();
        for line in f["body"].as_str().unwrap().lines() {
            if let Some(data) = line.strip_prefix("data: ")
                && let Some(t) = acc.push(data).unwrap()
            {
                text.push_str(&t);
            }
        }
        assert!(acc.is_done());
        let c = acc.finish();
        assert_eq!(c.content, text);
        assert!(!c.content.is_empty());
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        let usage = c.usage.expect("the last chunk carries usage");
        assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    }

    #[test]
    fn the_recorded_tool_call_stream_assembles_its_arguments() {
        let f = fixture("openai_python_stream_tool_call_with_usage.json");
        let mut acc = CompletionAccumulator::default();
        for line in f["body"].as_str().unwrap().lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                acc.push(data).unwrap();
            }
        }
        let c = acc.finish();
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].name, "get_weather");
        assert!(c.tool_calls[0].id.starts_with("call_"));
        let args: Value = serde_json::from_str(&c.tool_calls[0].arguments).unwrap();
        assert!(args.get("city").is_some(), "{args}");
    }

    #[test]
    fn recorded_completions_parse() {
        let f = fixture("openai_python_recorded_chat_completions.json");
        let stop = parse_completion(&f["text_stop"]).unwrap();
        assert_eq!(stop.finish_reason.as_deref(), Some("stop"));
        assert!(stop.usage.is_some());
        let length = parse_completion(&f["text_length_truncated"]).unwrap();
        assert_eq!(length.finish_reason.as_deref(), Some("length"));
        let refusal = parse_completion(&f["refusal"]).unwrap();
        assert!(refusal.refusal.is_some());
        let tools = parse_completion(&f["parallel_tool_calls"]).unwrap();
        assert_eq!(tools.tool_calls.len(), 2);
        // The 2023 completion without token details parses too.
        let legacy = parse_completion(&fixture("chatgpt_cli_completion_legacy.json")).unwrap();
        assert!(!legacy.content.is_empty());
    }

    #[test]
    fn errors_are_classified_by_status() {
        let body = serde_json::to_vec(&fixture("chatgpt_cli_error_invalid_api_key.json")).unwrap();
        let e = classify_status(401, None, &body);
        assert_eq!(
            e,
            ProviderError::Auth {
                status: 401,
                message: "Incorrect API key provided".into()
            }
        );
        assert!(!e.retryable());
        match classify_status(429, Some("2"), b"{}") {
            ProviderError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(2)))
            }
            other => panic!("{other:?}"),
        }
        assert!(classify_status(503, None, b"down").retryable());
        assert_eq!(classify_status(404, None, b"").code(), "provider_rejected");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        let mut acc = CompletionAccumulator::default();
        assert!(acc.push("{not json").is_err());
        assert!(acc.push("[1,2]").is_err());
        assert!(
            acc.push(r#"{"error": {"message": "overloaded"}}"#)
                .unwrap_err()
                .contains("overloaded")
        );
    }
}
