//! The OpenAI-compatible gateway: `POST /v1/chat/completions` (streamed or not) and
//! `GET /v1/models`, authenticated with a Parley API key (`Authorization: Bearer pk_...`).
//! Each request is forwarded to the provider configured for an assistant and the provider's
//! answer is returned to the client unchanged (status, content type, body, byte for byte);
//! afterwards, off the request's path, the exchange is recorded as a conversation on channel
//! `api` with its tokens and cost. An app changes only its base URL (to
//! `http://parley-host/v1`) and its key to get every conversation recorded.
//!
//! **Which assistant.** The `Parley-Assistant` header (an assistant's id or name); else the
//! request's `model` when it names an assistant (the assistant's own model is then sent to the
//! provider); else the workspace's only assistant with a provider. `GET /v1/models` is the
//! provider's model list for that assistant.
//!
//! **Which conversation.** The `Parley-Conversation` header (any key the app chooses, up to
//! 255 characters; it becomes the conversation's `external_id`); else the OpenAI `user` field
//! (external id `user:<user>`, and the user as the contact); else a new conversation per
//! request. Because each request repeats the whole history, every message is stored with an
//! external id derived from its role and content (`gw-<hash>-<n>`, n counting repeats in the
//! request), so a message already recorded is not stored twice.
//!
//! **Usage.** The provider's `usage` when present (a streamed request carries it only if the
//! app asked for `stream_options.include_usage`: the gateway does not change the request's
//! shape); otherwise tokens are counted by Parley's tokenizer and marked estimated.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use parley_core::model::{
    Assistant, ConversationInput, MessageError, MessageInput, MessageMeta, ToolCall,
};
use parley_core::pricing::Usage;
use parley_core::{Channel, MessageId, Role, Timestamp, WorkspaceId};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::provider::{self, Completion, CompletionAccumulator, Endpoint, ProviderError};
use super::tokens;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, prepare_priced};

/// Header naming the assistant (id or name).
pub const ASSISTANT_HEADER: &str = "parley-assistant";
/// Header naming the conversation (the app's own key for it).
pub const CONVERSATION_HEADER: &str = "parley-conversation";
/// Largest request body, in bytes.
const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// The `/v1` router (mounted beside `/api/v1`).
pub fn router(_state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/chat/completions", post(chat_completions))
        .route("/models", get(models))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
}

fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// Picks the assistant (see the module docs). Returns it and whether the request's `model`
/// named it.
async fn choose_assistant(
    state: &AppState,
    workspace: WorkspaceId,
    headers: &HeaderMap,
    model: Option<&str>,
) -> Result<(Assistant, bool), ApiError> {
    let all = state.store.assistants().list_assistants(workspace).await?;
    if let Some(wanted) = headers.get(ASSISTANT_HEADER) {
        let wanted = wanted.to_str().unwrap_or_default().trim();
        return all
            .into_iter()
            .find(|a| a.id.to_string() == wanted || a.name.eq_ignore_ascii_case(wanted))
            .map(|a| (a, false))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "assistant_not_found",
                    format!("no assistant {wanted:?} in this workspace (header Parley-Assistant)"),
                )
            });
    }
    if let Some(m) = model
        && let Some(a) = all.iter().find(|a| a.name.eq_ignore_ascii_case(m))
    {
        return Ok((a.clone(), true));
    }
    let mut configured = all.into_iter().filter(|a| a.settings.provider.is_some());
    match (configured.next(), configured.next()) {
        (Some(a), None) => Ok((a, false)),
        (None, _) => Err(bad_request(
            "provider_not_configured",
            "no assistant in this workspace has a provider: configure one (base URL, model, API key) in the dashboard or with PATCH /api/v1/assistants/{id}",
        )),
        (Some(_), Some(_)) => Err(bad_request(
            "assistant_required",
            "several assistants have a provider: name one with the Parley-Assistant header, or set `model` to its name",
        )),
    }
}

fn endpoint_of(state: &AppState, assistant: &Assistant) -> Result<Endpoint, ApiError> {
    let Some(p) = &assistant.settings.provider else {
        return Err(bad_request(
            "provider_not_configured",
            format!(
                "assistant {:?} has no provider: set its base URL, model and API key",
                assistant.name
            ),
        ));
    };
    Endpoint::resolve(p, state).map_err(|e| match e {
        ProviderError::NotAllowed(_) => not_allowed(),
        e => bad_request("provider_not_configured", e.to_string()),
    })
}

/// 403 `destination_not_allowed`: the assistant's own provider URL is (or resolves to) an
/// address the server does not connect to for workspaces. Nothing was sent.
fn not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        crate::net::CODE,
        format!("the assistant's provider: {}", crate::net::MESSAGE),
    )
}

fn upstream_failed(e: reqwest::Error) -> ApiError {
    if crate::net::refusal(&e).is_some() {
        not_allowed()
    } else if e.is_timeout() {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "provider_timeout",
            "the provider did not answer in time",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            format!(
                "the provider could not be reached: {}",
                provider::describe(e)
            ),
        )
    }
}

/// Copies a provider response's status and content type onto a response with `body`.
fn passthrough(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: Body,
) -> Response {
    let mut res = Response::new(body);
    // The provider's answer, errors included, reaches the client unchanged.
    res.extensions_mut().insert(crate::responses::Verbatim);
    *res.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    for name in [
        header::CONTENT_TYPE,
        header::RETRY_AFTER,
        header::CACHE_CONTROL,
    ] {
        if let Some(v) = headers.get(name.as_str())
            && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
        {
            res.headers_mut().insert(name, v);
        }
    }
    for (name, v) in headers {
        let forwarded =
            name.as_str().starts_with("x-ratelimit-") || name.as_str() == "x-request-id";
        if forwarded
            && let (Ok(n), Ok(v)) = (
                header::HeaderName::from_bytes(name.as_str().as_bytes()),
                HeaderValue::from_bytes(v.as_bytes()),
            )
        {
            res.headers_mut().insert(n, v);
        }
    }
    res
}

/// `GET /v1/models`: the chosen assistant's provider's model list, unchanged. Errors as for
/// `POST /v1/chat/completions` (403 `destination_not_allowed` included).
async fn models(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (assistant, _) = choose_assistant(&st, auth.workspace, &headers, None).await?;
    let endpoint = endpoint_of(&st, &assistant)?;
    let res = tokio::time::timeout(
        st.settings.provider_timeout,
        endpoint.request(reqwest::Method::GET, "models").send(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "provider_timeout",
            "the provider did not answer in time",
        )
    })?
    .map_err(upstream_failed)?;
    let (status, resp_headers) = (res.status(), res.headers().clone());
    let body = res.bytes().await.map_err(upstream_failed)?;
    Ok(passthrough(status, &resp_headers, Body::from(body)))
}

/// Where an exchange is recorded.
#[derive(Debug, Clone)]
struct Target {
    external_id: Option<String>,
    contact: Option<String>,
}

/// `POST /v1/chat/completions`: forwards to the provider, answers with its response
/// unchanged, records the exchange. Errors (Parley's own, before the provider is called):
/// 400 `invalid_json`, 422 `validation_failed` (no `messages` array), 404
/// `assistant_not_found`, 400 `provider_not_configured` / `assistant_required`, 422
/// `model_not_allowed` (a model the operator's provider does not offer), 403
/// `destination_not_allowed` (the assistant's own provider URL is a private or loopback
/// address); 502 `provider_unavailable` / 504 `provider_timeout` when the provider cannot be
/// reached.
/// Whatever the provider answers (its own errors included) is passed through.
async fn chat_completions(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut request: Value = serde_json::from_slice(&body)
        .map_err(|e| bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    check_request(&request)?;
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (assistant, named_by_model) =
        choose_assistant(&st, auth.workspace, &headers, model.as_deref()).await?;
    let endpoint = endpoint_of(&st, &assistant)?;
    // The body goes as the client sent it, unless its `model` named the assistant (or was
    // missing): then the assistant's model is asked for.
    let body = if named_by_model || model.is_none() {
        request["model"] = Value::String(endpoint.model.clone());
        Bytes::from(serde_json::to_vec(&request).unwrap_or_default())
    } else {
        body
    };
    let asked = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&endpoint.model);
    if !endpoint.allows(asked) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model_not_allowed",
            format!(
                "model: the server's provider {} does not offer {asked:?} to workspaces",
                endpoint.operator.as_ref().map_or("", |(n, _)| n.as_str())
            ),
        )
        .with_field("model"));
    }
    let call = Call {
        st: st.clone(),
        workspace: auth.workspace,
        assistant,
        target: target_of(&headers, &request)?,
        request,
        started,
    };
    let upstream = endpoint
        .request(reqwest::Method::POST, "chat/completions")
        .header(header::CONTENT_TYPE.as_str(), "application/json")
        .body(body)
        .send();
    let res = match tokio::time::timeout(st.settings.provider_timeout, upstream).await {
        Err(_) => {
            call.spawn_record(Err(ProviderError::Timeout));
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "provider_timeout",
                "the provider did not answer in time",
            ));
        }
        Ok(Err(e)) => {
            let err = upstream_failed(e);
            call.spawn_record(Err(ProviderError::Unavailable {
                status: None,
                message: err.message.clone(),
            }));
            return Err(err);
        }
        Ok(Ok(res)) => res,
    };
    let is_stream = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !res.status().is_success() || !is_stream {
        return answered(call, res).await;
    }
    Ok(streamed(call, res))
}

/// One gateway call, for its record: who asked, for which conversation, what, and when.
struct Call {
    st: AppState,
    workspace: WorkspaceId,
    assistant: Assistant,
    target: Target,
    request: Value,
    started: Instant,
}

impl Call {
    /// Records the call's `outcome` in the background (see [`spawn_record`]).
    fn spawn_record(self, outcome: Result<Completion, ProviderError>) {
        spawn_record(
            &self.st,
            self.workspace,
            &self.assistant,
            self.target,
            self.request,
            outcome,
            self.started.elapsed(),
        );
    }
}

/// A whole (not streamed) answer or a provider error: parsed for the record and passed to
/// the client as it came. Errors: 502 when the answer cannot be read.
async fn answered(call: Call, res: reqwest::Response) -> Result<Response, ApiError> {
    let (status, resp_headers) = (res.status(), res.headers().clone());
    let bytes = res.bytes().await.map_err(upstream_failed)?;
    let outcome = if status.is_success() {
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("the answer is not JSON: {e}"))
            .and_then(|v| provider::parse_completion(&v))
            .map_err(|message| ProviderError::StreamBroken {
                message,
                partial: Box::default(),
            })
    } else {
        let retry = resp_headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok());
        Err(provider::classify_status(status.as_u16(), retry, &bytes))
    };
    call.spawn_record(outcome);
    Ok(passthrough(status, &resp_headers, Body::from(bytes)))
}

/// A streamed answer: every chunk goes to the client as it arrives, and a copy to the
/// recorder, which records the call when the stream ends ([`record_stream`]).
fn streamed(call: Call, res: reqwest::Response) -> Response {
    let (status, resp_headers) = (res.status(), res.headers().clone());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let metrics = call.st.metrics.clone();
    tokio::spawn(record_stream(call, rx));
    let forwarded = res.bytes_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            let _ = tx.send(bytes.clone());
        }
        chunk
    });
    passthrough(
        status,
        &resp_headers,
        metrics.stream_body(crate::metrics::StreamKind::Gateway, forwarded),
    )
}

/// Reads the copies of a streamed answer's chunks as server-sent events into the completion
/// and records the call: complete, or broken with what arrived.
async fn record_stream(call: Call, rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>) {
    let copies = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    let mut events = Box::pin(copies.eventsource());
    let mut acc = CompletionAccumulator::default();
    let mut problem = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                if let Err(m) = acc.push(&e.data) {
                    problem = Some(m);
                }
            }
            Err(e) => problem = Some(e.to_string()),
        }
    }
    let complete = acc.is_complete();
    let latency = call.started.elapsed();
    let outcome = match problem {
        None if complete => Ok(acc.finish()),
        other => Err(ProviderError::StreamBroken {
            message: other
                .unwrap_or_else(|| "the stream ended before the answer was complete".into()),
            partial: Box::new(acc.finish()),
        }),
    };
    record(
        &call.st,
        call.workspace,
        &call.assistant,
        call.target,
        call.request,
        outcome,
        latency,
    )
    .await;
}

fn target_of(headers: &HeaderMap, request: &Value) -> Result<Target, ApiError> {
    if let Some(key) = headers.get(CONVERSATION_HEADER) {
        let key = key
            .to_str()
            .map_err(|_| bad_request("invalid_header", "Parley-Conversation must be text"))?
            .trim();
        if key.is_empty() || key.chars().count() > parley_core::validate::MAX_ID_CHARS {
            return Err(bad_request(
                "invalid_header",
                "Parley-Conversation must be 1 to 255 characters",
            ));
        }
        return Ok(Target {
            external_id: Some(key.to_owned()),
            contact: request
                .get("user")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    if let Some(user) = request.get("user").and_then(Value::as_str)
        && !user.is_empty()
    {
        let user: String = user.chars().take(240).collect();
        return Ok(Target {
            external_id: Some(format!("user:{user}")),
            contact: Some(user),
        });
    }
    Ok(Target {
        external_id: None,
        contact: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn spawn_record(
    st: &AppState,
    workspace: WorkspaceId,
    assistant: &Assistant,
    target: Target,
    request: Value,
    outcome: Result<Completion, ProviderError>,
    latency: Duration,
) {
    let (st, assistant) = (st.clone(), assistant.clone());
    tokio::spawn(async move {
        record(
            &st, workspace, &assistant, target, request, outcome, latency,
        )
        .await;
    });
}

/// The text of an OpenAI message's `content`: a string, or the text parts of an array
/// (`[image]`, `[audio]`, `[file]` standing for other parts).
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                Some("image_url") => "[image]".to_owned(),
                Some("input_audio") => "[audio]".to_owned(),
                Some("file") => "[file]".to_owned(),
                Some(other) => format!("[{other}]"),
                None => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn tool_calls_of(message: &Value) -> Vec<ToolCall> {
    message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| ToolCall {
            id: c["id"].as_str().unwrap_or_default().to_owned(),
            name: c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            arguments: c
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
        .collect()
}

/// A message as Parley stores it: role, text, meta.
fn stored_form(
    role: &str,
    text: String,
    calls: Vec<ToolCall>,
    call_id: Option<String>,
) -> (Role, String, MessageMeta) {
    let meta = MessageMeta {
        tool_calls: calls,
        tool_call_id: call_id,
        ..Default::default()
    };
    let role = match role {
        "system" | "developer" => Role::System,
        "assistant" if !meta.tool_calls.is_empty() => Role::Tool,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        _ => Role::User,
    };
    (role, text, meta)
}

/// The de-duplication key of a message: its role, text and tool data, hashed.
fn message_key(role: Role, text: &str, meta: &MessageMeta) -> String {
    let mut h = Sha256::new();
    h.update(role.as_str());
    h.update([0]);
    h.update(text);
    h.update([0]);
    for c in &meta.tool_calls {
        h.update(&c.id);
        h.update([1]);
        h.update(&c.name);
        h.update([1]);
        h.update(&c.arguments);
        h.update([0]);
    }
    if let Some(id) = &meta.tool_call_id {
        h.update(id);
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the fields Parley reads from an OpenAI `CreateChatCompletionRequest` (everything
/// else goes to the provider as sent): `messages` an array of objects, each with a string
/// `role`; `model` a string; `stream` a boolean and `user` a string, each also `null` (absent).
/// Errors: 422 `validation_failed` naming the field.
fn check_request(request: &Value) -> Result<(), ApiError> {
    let invalid = |field: &str, message: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        )
        .with_field(field)
    };
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return Err(invalid(
            "messages",
            "give the conversation as an array of messages",
        ));
    };
    for (i, m) in messages.iter().enumerate() {
        if !m.get("role").is_some_and(Value::is_string) {
            return Err(invalid(
                &format!("messages[{i}].role"),
                "each message is an object with a string role",
            ));
        }
    }
    if request.get("model").is_some_and(|m| !m.is_string()) {
        return Err(invalid("model", "must be a string"));
    }
    if request
        .get("stream")
        .is_some_and(|v| !v.is_boolean() && !v.is_null())
    {
        return Err(invalid("stream", "must be true or false"));
    }
    if request
        .get("user")
        .is_some_and(|v| !v.is_string() && !v.is_null())
    {
        return Err(invalid("user", "must be a string"));
    }
    Ok(())
}

/// Gives each message its external id `gw-<hash>-<n>`, `n` counting earlier identical messages.
struct Keys(HashMap<String, usize>);

impl Keys {
    fn next(&mut self, role: Role, text: &str, meta: &MessageMeta) -> String {
        let key = message_key(role, text, meta);
        let n = self.0.entry(key.clone()).or_default();
        let id = format!("gw-{key}-{n}");
        *n += 1;
        id
    }
}

/// Stores the exchange: the request's messages not yet recorded, then the answer (or the
/// failure). Failures to record are logged: the client already has its answer.
async fn record(
    st: &AppState,
    workspace: WorkspaceId,
    assistant: &Assistant,
    target: Target,
    request: Value,
    outcome: Result<Completion, ProviderError>,
    latency: Duration,
) {
    let code = outcome.as_ref().map_or_else(|e| e.code(), |_| "ok");
    st.metrics.provider_call("gateway", code, latency);
    let now = Timestamp::now();
    let model_asked = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut keys = Keys(HashMap::new());
    let mut messages = Vec::new();
    let request_messages = request["messages"].as_array().cloned().unwrap_or_default();
    for m in &request_messages {
        let (role, text, meta) = stored_form(
            m.get("role").and_then(Value::as_str).unwrap_or("user"),
            content_text(m.get("content")),
            tool_calls_of(m),
            m.get("tool_call_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        let text: String = text
            .chars()
            .take(parley_core::validate::MAX_CONTENT_CHARS)
            .collect();
        messages.push(MessageInput {
            id: None,
            external_id: Some(keys.next(role, &text, &meta)),
            role,
            content: text,
            created_at: Some(now),
            model: None,
            usage: None,
            cost_nanousd: None,
            meta,
        });
    }
    let answer = match outcome {
        Ok(c) => {
            let (usage, estimated) = match c.usage {
                Some(u) => (u, false),
                None => (
                    Usage {
                        prompt_tokens: tokens::count_messages(&model_asked, &request_messages)
                            as i64,
                        completion_tokens: tokens::count_text(&model_asked, &c.content) as i64,
                    },
                    true,
                ),
            };
            let (role, text, mut meta) = stored_form(
                "assistant",
                if c.content.is_empty() {
                    c.refusal.clone().unwrap_or_default()
                } else {
                    c.content.clone()
                },
                c.tool_calls.clone(),
                None,
            );
            meta.finish_reason = c.finish_reason.clone();
            meta.refusal = c.refusal.clone();
            meta.usage_estimated = estimated;
            meta.assistant_version = Some(assistant.version);
            meta.latency_ms = Some(latency.as_millis() as i64);
            MessageInput {
                id: Some(MessageId::new()),
                external_id: Some(keys.next(role, &text, &meta)),
                role,
                content: text,
                created_at: Some(Timestamp::now()),
                model: c.model.clone().or(Some(model_asked.clone())),
                usage: Some(usage),
                cost_nanousd: None,
                meta,
            }
        }
        Err(e) => {
            let partial = match &e {
                ProviderError::StreamBroken { partial, .. } => partial.content.clone(),
                _ => String::new(),
            };
            MessageInput {
                id: Some(MessageId::new()),
                external_id: None,
                role: Role::Assistant,
                content: partial,
                created_at: Some(Timestamp::now()),
                model: None,
                usage: None,
                cost_nanousd: None,
                meta: MessageMeta {
                    error: Some(MessageError {
                        code: e.code().to_owned(),
                        message: e.to_string(),
                    }),
                    assistant_version: Some(assistant.version),
                    latency_ms: Some(latency.as_millis() as i64),
                    ..Default::default()
                },
            }
        }
    };
    messages.push(answer);
    let input = ConversationInput {
        external_id: target.external_id,
        contact: target.contact,
        assistant_version: Some(assistant.version),
        messages,
        ..ConversationInput::for_assistant(Some(assistant.id), Channel::Api)
    };
    let price = assistant.settings.price.map(|p| p.as_model_price());
    let result = match prepare_priced(
        &st.prices,
        price.as_ref(),
        IngestRequest::Create(Box::new(input)),
        now,
    ) {
        // Through the one ingest path's commit, like every other writer (metrics included).
        Ok(batch) => crate::ingest::commit(st, workspace, vec![batch])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, assistant = %assistant.name, "gateway: could not record the exchange");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_history_gets_the_same_external_ids() {
        let first = [json!({"role": "user", "content": "hi"})];
        let second = [
            json!({"role": "user", "content": "hi"}),
            json!({"role": "assistant", "content": "hello"}),
            json!({"role": "user", "content": "hi"}),
        ];
        let ids = |msgs: &[Value]| {
            let mut keys = Keys(HashMap::new());
            msgs.iter()
                .map(|m| {
                    let (r, t, meta) = stored_form(
                        m["role"].as_str().unwrap(),
                        content_text(m.get("content")),
                        tool_calls_of(m),
                        None,
                    );
                    keys.next(r, &t, &meta)
                })
                .collect::<Vec<_>>()
        };
        let a = ids(&first);
        let b = ids(&second);
        assert_eq!(a[0], b[0], "the first message keeps its id");
        assert_ne!(b[0], b[2], "a repeated message is a new one");
        assert!(b[2].ends_with("-1"));
    }

    #[test]
    fn content_parts_become_text() {
        let parts = json!([{"type": "text", "text": "What is this?"},
                           {"type": "image_url", "image_url": {"url": "data:..."}}]);
        assert_eq!(content_text(Some(&parts)), "What is this?\n[image]");
        assert_eq!(content_text(Some(&json!(null))), "");
        let (role, _, meta) = stored_form(
            "assistant",
            String::new(),
            tool_calls_of(&json!({"tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]})),
            None,
        );
        assert_eq!((role, meta.tool_calls.len()), (Role::Tool, 1));
        assert_eq!(
            stored_form("developer", "x".into(), vec![], None).0,
            Role::System
        );
    }
}
