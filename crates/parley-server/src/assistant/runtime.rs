//! One assistant turn: after a customer's message is stored, the runtime sends the
//! conversation's history to the assistant's provider (streamed, with the usage chunk), lets the
//! model save memory fields through its `save_memory` tool, and stores the answer through
//! [`crate::ingest`] with its token usage and cost.
//!
//! - **History.** The system prompt (with the memory fields to collect and what is known so
//!   far), then every stored message in order: customer messages as `user`, assistant and team
//!   (`agent`) messages as `assistant`, tool calls and results as OpenAI tool messages. Failed
//!   answers (a polite notice the customer saw) are left out. When the price table gives the
//!   model's context window (`max_input_tokens`), the oldest messages are dropped until the
//!   request fits, and the answer records how many (`meta.history_dropped`).
//! - **Memory.** With memory fields configured the model gets one tool, `save_memory(field,
//!   value)`; each call is stored as a hidden `tool` message, executed (the value becomes an
//!   `extracted` variable at once) and answered with a `tool` result message, then the model is
//!   called again, up to [`MAX_TOOL_ROUNDS`] times.
//! - **Usage.** The provider's usage when it sends it; otherwise prompt and completion tokens
//!   counted with the tokenizer ([`super::tokens`]) and `meta.usage_estimated` set.
//! - **Failures.** Timeouts, 429, 5xx and broken streams are retried (up to [`MAX_ATTEMPTS`]
//!   calls, waiting 0.5 s, 1 s... or the provider's `Retry-After`, at most 20 s: the policy
//!   [`crate::retry::PROVIDER`]) as long as no text has reached the customer; then the failure is stored on an assistant message whose
//!   text is [`FAILURE_TEXT`] (what the customer sees) and whose `meta.error` says what
//!   happened. The customer's own message was stored before the call and is never lost.
//! - **One turn at a time** per conversation, across every server sharing the database (a
//!   lease in the store, see [`respond`]); a turn for a customer message that already has an
//!   answer after it answers nothing ([`respond_to`], what the `answer` job calls).
//! - **Modes.** `active` assistants always answer; `hybrid` ones unless a team member took the
//!   conversation over (`taken_over_at`, set by a team reply or "Take over" and cleared by "Hand
//!   back to AI": [`crate::team`]); `passive` ones never do.
//! - **Hand-off.** Hybrid assistants also get the tool `hand_off(reason)`: when the model calls
//!   it, the conversation is flagged "Needs a human" (a `handoff.requested` event) and taken
//!   over, and the turn ends with [`HANDOFF_TEXT`] to the customer (no further model call).

use std::time::Duration;

use parley_core::assistant::{AssistantSettings, ProviderRoute};
use parley_core::model::{
    Assistant, ConversationPatch, Message, MessageError, MessageInput, MessageMeta, ToolCall,
    Variable,
};
use parley_core::pricing::Usage;
use parley_core::{
    AssistantMode, ConversationId, MessageId, Role, Timestamp, VariableSource, WorkspaceId,
};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use super::provider::{self, ChatRequest, Completion, Endpoint, ProviderError};
use super::tokens;
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, prepare_priced};

/// Most provider calls for one answer (the first and two retries).
pub const MAX_ATTEMPTS: u32 = crate::retry::PROVIDER.attempts;
/// Most model calls in one turn when the model keeps calling tools.
pub const MAX_TOOL_ROUNDS: usize = 4;
/// The name of the memory tool.
pub const MEMORY_TOOL: &str = "save_memory";
/// The name of the hand-off tool (hybrid assistants).
pub const HANDOFF_TOOL: &str = "hand_off";
/// What the customer is told after the assistant handed the conversation to the team.
pub const HANDOFF_TEXT: &str =
    "I've asked a member of our team to take over — someone will answer you here shortly.";
/// Longest hand-off reason kept, in characters.
pub const MAX_HANDOFF_REASON_CHARS: usize = 500;
/// What the customer is told when no answer could be produced.
pub const FAILURE_TEXT: &str =
    "Sorry, I can't answer right now. Please try again in a moment — your message was received.";

/// What a turn reports while it runs (Test Chat and the widget stream these to the browser).
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// A piece of the answer's text.
    Delta(String),
    /// The provider failed and the turn starts over (nothing had been shown).
    Retrying {
        /// The attempt about to start (2 or 3).
        attempt: u32,
        /// Why.
        reason: String,
    },
    /// The model saved a memory field.
    Variable {
        /// The field.
        key: String,
        /// Its value.
        value: String,
    },
    /// A message the turn stored (tool calls and results, the answer, a failure notice).
    Stored(Box<Message>),
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnOutcome {
    /// The assistant answered with this message.
    Answered(Box<Message>),
    /// The answer failed; this message (the notice the customer sees) records why.
    Failed(Box<Message>),
    /// The assistant does not answer here (passive, or a human took over).
    NotAnswering(&'static str),
    /// A turn already ended after the customer message this turn was for (an earlier run of
    /// the same `answer` job, or a turn for a later message that saw this one): its answer.
    AlreadyAnswered(Box<Message>),
}

fn emit(events: &Option<UnboundedSender<TurnEvent>>, e: TurnEvent) {
    if let Some(tx) = events {
        let _ = tx.send(e);
    }
}

/// Whether `assistant` answers in conversation `c` (see the module docs' modes).
pub fn answers(
    assistant: &Assistant,
    c: &parley_core::model::ConversationSummary,
) -> Result<(), &'static str> {
    match assistant.mode {
        AssistantMode::Active => Ok(()),
        AssistantMode::Passive => Err("the assistant is passive: the team answers"),
        AssistantMode::Hybrid if c.taken_over_at.is_some() => {
            Err("a team member has taken over this conversation")
        }
        AssistantMode::Hybrid => Ok(()),
    }
}

/// The `hand_off` tool definition (hybrid assistants only; none for the other modes).
pub fn handoff_tools(mode: AssistantMode) -> Vec<Value> {
    if mode != AssistantMode::Hybrid {
        return Vec::new();
    }
    vec![json!({
        "type": "function",
        "function": {
            "name": HANDOFF_TOOL,
            "description": "Hand the conversation to a human team member: when the customer asks for a person, or you cannot help. The customer is told someone will answer.",
            "parameters": {
                "type": "object",
                "properties": {
                    "reason": {"type": "string", "description": "Why a human is needed, in one sentence."}
                },
                "required": ["reason"],
                "additionalProperties": false
            }
        }
    })]
}

/// The `save_memory` tool definition for `settings`' memory fields (none without fields).
pub fn memory_tools(settings: &AssistantSettings) -> Vec<Value> {
    if settings.memory_fields.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = settings
        .memory_fields
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    vec![json!({
        "type": "function",
        "function": {
            "name": MEMORY_TOOL,
            "description": "Save a fact the customer told you, as soon as you learn it.",
            "parameters": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "enum": names, "description": "Which fact."},
                    "value": {"type": "string", "description": "The fact, as the customer gave it."}
                },
                "required": ["field", "value"],
                "additionalProperties": false
            }
        }
    })]
}

/// The system message: the prompt, then the memory fields with what is known of them.
pub fn system_message(settings: &AssistantSettings, variables: &[Variable]) -> Option<Value> {
    let mut text = settings.system_prompt.trim().to_owned();
    if !settings.memory_fields.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&format!(
            "When the customer tells you one of these facts, call {MEMORY_TOOL} to save it:\n"
        ));
        for f in &settings.memory_fields {
            let known = variables
                .iter()
                .find(|v| v.key == f.name)
                .map(|v| format!(" (known: {})", v.value))
                .unwrap_or_default();
            text.push_str(&format!("- {}: {}{known}\n", f.name, f.description));
        }
    }
    (!text.is_empty()).then(|| json!({"role": "system", "content": text}))
}

/// Stored messages as OpenAI-format history (see the module docs).
pub fn history(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if m.meta.error.is_some() {
            continue;
        }
        match m.role {
            Role::User => out.push(json!({"role": "user", "content": m.content})),
            Role::Assistant | Role::Agent => {
                out.push(json!({"role": "assistant", "content": m.content}))
            }
            Role::System => out.push(json!({"role": "system", "content": m.content})),
            Role::Tool if !m.meta.tool_calls.is_empty() => {
                let calls: Vec<Value> = m
                    .meta
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
                let content = if m.content.is_empty() {
                    Value::Null
                } else {
                    Value::String(m.content.clone())
                };
                out.push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
            }
            Role::Tool => {
                if let Some(id) = &m.meta.tool_call_id {
                    out.push(json!({"role": "tool", "tool_call_id": id, "content": m.content}));
                }
            }
        }
    }
    out
}

/// Drops the oldest history messages until `system` + history fit in `max_input_tokens`
/// (keeping at least the last message, and never leaving a tool result without its call).
/// Returns how many were dropped.
pub fn fit_context(
    model: &str,
    system: Option<&Value>,
    tools: &[Value],
    history: &mut Vec<Value>,
    max_input_tokens: usize,
) -> u32 {
    let fixed = system.map_or(0, |s| tokens::count_message(model, s))
        + tokens::count_tools(model, tools)
        + tokens::TOKENS_PER_REPLY;
    let sizes: Vec<usize> = history
        .iter()
        .map(|m| tokens::count_message(model, m))
        .collect();
    let mut total: usize = fixed + sizes.iter().sum::<usize>();
    let mut drop = 0;
    while total > max_input_tokens && drop + 1 < history.len() {
        total -= sizes[drop];
        drop += 1;
    }
    // A tool result cannot open the history: its call was dropped.
    while drop + 1 < history.len() && history[drop]["role"] == "tool" {
        drop += 1;
    }
    history.drain(..drop);
    drop as u32
}

/// Whether `assistant` has a provider it can use: one, and not one that "needs a provider"
/// ([`ProviderRoute::Unusable`]: a legacy environment key matching no operator provider, or an
/// operator provider the configuration no longer has).
pub fn has_usable_provider(state: &AppState, assistant: &Assistant) -> bool {
    assistant.settings.provider.as_ref().is_some_and(|p| {
        !matches!(
            p.route(&state.settings.providers),
            ProviderRoute::Unusable(_)
        )
    })
}

/// Whether any assistant of `workspace` can answer (has a provider and is not passive): a
/// cheap first test before reading a conversation to answer it, so workspaces that only record
/// (imports, logs of other systems) pay one small query per customer message, not three.
/// A store error counts as "no" (logged).
pub async fn any_assistant_answers(state: &AppState, workspace: WorkspaceId) -> bool {
    match state.store.assistants().list_assistants(workspace).await {
        Ok(list) => list
            .iter()
            .any(|a| has_usable_provider(state, a) && a.mode != AssistantMode::Passive),
        Err(e) => {
            tracing::warn!("listing the assistants failed: {e}");
            false
        }
    }
}

/// Whether the assistant `assistant` of `workspace` answers customers at all: it has a
/// provider and is not passive (a hybrid one may still find a team member took over). A store
/// error counts as "no" (logged). The API says `"answering"` from this after it wrote the
/// `answer` job ([`crate::jobs::answer_job`]) with the customer's message.
pub async fn assistant_answers(
    state: &AppState,
    workspace: WorkspaceId,
    assistant: parley_core::AssistantId,
) -> bool {
    match state
        .store
        .assistants()
        .get_assistant(workspace, assistant)
        .await
    {
        Ok(Some(a)) => has_usable_provider(state, &a) && a.mode != AssistantMode::Passive,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!("reading assistant {assistant} failed: {e}");
            false
        }
    }
}

/// Runs one turn on `conversation`: answers its latest messages, storing everything it does.
/// `events` receives progress as it happens. Errors: 404 for an unknown conversation; store
/// failures. Provider failures are not errors: they end as [`TurnOutcome::Failed`].
pub async fn respond(
    state: &AppState,
    workspace: WorkspaceId,
    conversation: ConversationId,
    events: Option<UnboundedSender<TurnEvent>>,
) -> Result<TurnOutcome, ApiError> {
    turn(state, workspace, conversation, None, events).await
}

/// [`respond`] for the customer message `trigger` (the `answer` job's), at most once: the
/// answer records it (`meta.in_reply_to`), and when a stored answer already names it, that
/// answer is returned as [`TurnOutcome::AlreadyAnswered`] and the provider is not called. A
/// job run again after a crash therefore answers nothing twice.
pub async fn respond_to(
    state: &AppState,
    workspace: WorkspaceId,
    conversation: ConversationId,
    trigger: Option<MessageId>,
) -> Result<TurnOutcome, ApiError> {
    turn(state, workspace, conversation, trigger, None).await
}

/// One turn at a time per conversation, on every server: the turn holds the lease
/// `turn:{conversation}` in the database ([`crate::jobs::Lease`]) from reading the history to
/// storing the answer.
async fn turn(
    state: &AppState,
    workspace: WorkspaceId,
    conversation: ConversationId,
    trigger: Option<MessageId>,
    events: Option<UnboundedSender<TurnEvent>>,
) -> Result<TurnOutcome, ApiError> {
    let lease = crate::jobs::Lease::acquire(state, format!("turn:{conversation}")).await?;
    let outcome = locked_turn(state, workspace, conversation, trigger, events).await;
    lease.release().await;
    outcome
}

/// The answer (or failure notice) a turn for `trigger` stored, if one did.
fn answer_to(messages: &[Message], trigger: MessageId) -> Option<&Message> {
    messages
        .iter()
        .find(|m| m.role == Role::Assistant && m.meta.in_reply_to == Some(trigger))
}

async fn locked_turn(
    state: &AppState,
    workspace: WorkspaceId,
    conversation: ConversationId,
    trigger: Option<MessageId>,
    events: Option<UnboundedSender<TurnEvent>>,
) -> Result<TurnOutcome, ApiError> {
    let export = state
        .store
        .conversations()
        .export_conversations(workspace, &[conversation])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    if let Some(done) = trigger.and_then(|t| answer_to(&export.messages, t)) {
        return Ok(TurnOutcome::AlreadyAnswered(Box::new(done.clone())));
    }
    let assistant = state
        .store
        .assistants()
        .get_assistant(workspace, export.detail.summary.assistant.id)
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))?;
    if let Err(why) = answers(&assistant, &export.detail.summary) {
        return Ok(TurnOutcome::NotAnswering(why));
    }
    // Background answers come only from assistants with a provider: one without only records
    // (Test Chat and the widget, which ask in person, get the failure notice instead).
    if trigger.is_some() && assistant.settings.provider.is_none() {
        return Ok(TurnOutcome::NotAnswering(
            "the assistant has no provider: it only records",
        ));
    }
    let settings = &assistant.settings;
    // Without a usable provider the assistant only records (README, "Answering"): no notice
    // goes to the customer, on any channel.
    let Some(p) = settings.provider.as_ref() else {
        return Ok(TurnOutcome::NotAnswering(
            "the assistant has no provider: it only records",
        ));
    };
    if let ProviderRoute::Unusable(why) = p.route(&state.settings.providers) {
        tracing::debug!(%conversation, why, "the assistant needs a provider");
        return Ok(TurnOutcome::NotAnswering(
            "the assistant needs a provider: it only records until one is set",
        ));
    }
    let endpoint = Endpoint::resolve(p, state);
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(e) => {
            return fail(
                state,
                workspace,
                (conversation, trigger),
                &assistant,
                &e,
                None,
                &events,
            )
            .await;
        }
    };
    let mut tools = memory_tools(settings);
    tools.extend(handoff_tools(assistant.mode));
    let system = system_message(settings, &export.detail.variables);
    let mut messages = history(&export.messages);
    let window = state
        .prices
        .lookup(&endpoint.model)
        .and_then(|p| p.max_input_tokens)
        .map(|n| n as usize);
    let dropped = match window {
        // Off the async workers: the tokenizer's first use loads its tables (seconds in a
        // debug build), which would starve the lease heartbeats of the tasks beside it.
        Some(max) => {
            let (model, sys, defs) = (endpoint.model.clone(), system.clone(), tools.clone());
            let mut history = std::mem::take(&mut messages);
            let (dropped, history) = tokio::task::spawn_blocking(move || {
                let n = fit_context(&model, sys.as_ref(), &defs, &mut history, max);
                (n, history)
            })
            .await
            .map_err(ApiError::internal)?;
            messages = history;
            dropped
        }
        None => 0,
    };
    let price = settings.price.map(|p| p.as_model_price());
    let mut request = ChatRequest {
        messages: system.into_iter().chain(messages).collect(),
        tools,
        temperature: settings.temperature,
        max_tokens: settings.max_tokens,
    };
    let mut memory = export.detail.variables.clone();
    for _round in 0..MAX_TOOL_ROUNDS {
        let (completion, latency) =
            match call_with_retries(state, &endpoint, &request, &events).await {
                Ok(done) => done,
                Err((e, partial)) => {
                    return fail(
                        state,
                        workspace,
                        (conversation, trigger),
                        &assistant,
                        &e,
                        partial,
                        &events,
                    )
                    .await;
                }
            };
        let (usage, estimated) = usage_of(&endpoint.model, &request, &completion);
        let mut meta = MessageMeta {
            finish_reason: completion.finish_reason.clone(),
            refusal: completion.refusal.clone(),
            usage_estimated: estimated,
            history_dropped: (dropped > 0).then_some(dropped),
            assistant_version: Some(assistant.version),
            latency_ms: Some(latency.as_millis() as i64),
            in_reply_to: trigger,
            ..Default::default()
        };
        let model = completion.model.clone().or(Some(endpoint.model.clone()));
        if completion.tool_calls.is_empty() {
            let content = if completion.content.is_empty() {
                completion.refusal.clone().unwrap_or_default()
            } else {
                completion.content.clone()
            };
            let stored = store(
                state,
                workspace,
                conversation,
                price.as_ref(),
                vec![message(Role::Assistant, content, model, Some(usage), meta)],
            )
            .await?;
            let answer = stored.into_iter().next_back().expect("one message stored");
            emit(&events, TurnEvent::Stored(Box::new(answer.clone())));
            return Ok(TurnOutcome::Answered(Box::new(answer)));
        }
        // The model asked for tools: store the request, run each call, store the results.
        meta.tool_calls = completion.tool_calls.clone();
        let mut batch = vec![message(
            Role::Tool,
            completion.content.clone(),
            model,
            Some(usage),
            meta,
        )];
        let mut results = Vec::new();
        for call in &completion.tool_calls {
            let result = run_tool(
                state,
                workspace,
                conversation,
                (settings, assistant.mode),
                call,
                &mut memory,
            )
            .await?;
            if let Some((key, value)) = &result.saved {
                emit(
                    &events,
                    TurnEvent::Variable {
                        key: key.clone(),
                        value: value.clone(),
                    },
                );
            }
            results.push((call.id.clone(), result.reply.clone(), result.handed_off));
            batch.push(message(
                Role::Tool,
                result.reply,
                None,
                None,
                MessageMeta {
                    tool_call_id: Some(call.id.clone()),
                    ..Default::default()
                },
            ));
        }
        let handed_off = results.iter().any(|(_, _, h)| *h);
        if handed_off {
            // The customer is told a person will answer; the model is not called again.
            emit(&events, TurnEvent::Delta(HANDOFF_TEXT.to_owned()));
            batch.push(message(
                Role::Assistant,
                HANDOFF_TEXT.to_owned(),
                None,
                None,
                MessageMeta {
                    assistant_version: Some(assistant.version),
                    in_reply_to: trigger,
                    ..Default::default()
                },
            ));
        }
        let stored = store(state, workspace, conversation, price.as_ref(), batch).await?;
        let last = stored.last().cloned();
        for m in stored {
            emit(&events, TurnEvent::Stored(Box::new(m)));
        }
        if handed_off && let Some(answer) = last {
            return Ok(TurnOutcome::Answered(Box::new(answer)));
        }
        let calls: Vec<Value> = completion
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
        let content = if completion.content.is_empty() {
            Value::Null
        } else {
            Value::String(completion.content.clone())
        };
        request
            .messages
            .push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
        for (id, reply, _) in results {
            request
                .messages
                .push(json!({"role": "tool", "tool_call_id": id, "content": reply}));
        }
    }
    let e = ProviderError::Rejected {
        status: 200,
        message: format!(
            "the model kept calling tools for {MAX_TOOL_ROUNDS} rounds without answering"
        ),
    };
    fail(
        state,
        workspace,
        (conversation, trigger),
        &assistant,
        &e,
        None,
        &events,
    )
    .await
}

/// The provider's usage, or the tokenizer's count of the request and the answer.
fn usage_of(model: &str, request: &ChatRequest, c: &Completion) -> (Usage, bool) {
    if let Some(u) = c.usage {
        return (u, false);
    }
    let prompt = tokens::count_messages(model, &request.messages)
        + tokens::count_tools(model, &request.tools);
    let completion = tokens::count_text(model, &c.content)
        + c.tool_calls
            .iter()
            .map(|t| tokens::count_text(model, &t.name) + tokens::count_text(model, &t.arguments))
            .sum::<usize>();
    (
        Usage {
            prompt_tokens: prompt as i64,
            completion_tokens: completion as i64,
        },
        true,
    )
}

/// A failed provider call, and whether any of its text had reached the customer (then it is
/// not retried: the customer would see the start twice).
struct Attempt {
    error: ProviderError,
    shown: bool,
}

/// Calls the provider with the one retry policy ([`crate::retry::PROVIDER`]): retryable
/// failures (timeouts, 429, 5xx, broken streams) before any text was shown are retried, after
/// the provider's `Retry-After` when it gives one (at most the policy's longest wait).
async fn call_with_retries(
    state: &AppState,
    endpoint: &Endpoint,
    request: &ChatRequest,
    events: &Option<UnboundedSender<TurnEvent>>,
) -> Result<(Completion, Duration), (ProviderError, Option<Completion>)> {
    use backon::Retryable as _;
    let policy = crate::retry::PROVIDER;
    let mut attempt = 1;
    let call = || async {
        let mut shown = false;
        let timeout = state.settings.provider_timeout;
        let started = std::time::Instant::now();
        let result = provider::stream_chat(endpoint, request, timeout, |text| {
            shown = true;
            emit(events, TurnEvent::Delta(text.to_owned()));
        })
        .await;
        let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
        state
            .metrics
            .provider_call("chat", outcome, started.elapsed());
        result.map_err(|error| Attempt { error, shown })
    };
    call.retry(policy.builder())
        .sleep(tokio::time::sleep)
        .when(|a: &Attempt| a.error.retryable() && !a.shown)
        .adjust(|a: &Attempt, wait| match &a.error {
            ProviderError::RateLimited {
                retry_after: Some(d),
                ..
            } => wait.map(|_| (*d).min(policy.max)),
            _ => wait,
        })
        .notify(|a: &Attempt, wait| {
            tracing::warn!(error = %a.error, attempt, wait_ms = wait.as_millis() as u64, "provider call failed; retrying");
            attempt += 1;
            emit(
                events,
                TurnEvent::Retrying {
                    attempt,
                    reason: a.error.to_string(),
                },
            );
        })
        .await
        .map_err(|a| {
            let partial = match &a.error {
                ProviderError::StreamBroken { partial, .. } if a.shown => Some((**partial).clone()),
                _ => None,
            };
            (a.error, partial)
        })
}

struct ToolResult {
    reply: String,
    saved: Option<(String, String)>,
    handed_off: bool,
}

/// Runs one tool call: `save_memory`, or `hand_off` for a hybrid assistant (`mode`); anything
/// else is answered with an error the model can read. A saved value becomes an `extracted`
/// variable at once; a hand-off flags the conversation "Needs a human" and takes it over, in
/// one patch.
async fn run_tool(
    state: &AppState,
    workspace: WorkspaceId,
    conversation: ConversationId,
    (settings, mode): (&AssistantSettings, AssistantMode),
    call: &ToolCall,
    memory: &mut Vec<Variable>,
) -> Result<ToolResult, ApiError> {
    let refuse = |why: String| ToolResult {
        reply: json!({"error": why}).to_string(),
        saved: None,
        handed_off: false,
    };
    if call.name == HANDOFF_TOOL && mode == AssistantMode::Hybrid {
        let args: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
        let reason: String = args["reason"]
            .as_str()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or("the assistant asked for a human")
            .chars()
            .take(MAX_HANDOFF_REASON_CHARS)
            .collect();
        let now = Timestamp::now();
        let patch = ConversationPatch {
            handoff: Some(Some(parley_core::model::Handoff {
                reason,
                requested_at: now,
            })),
            taken_over: Some(Some(now)),
            ..Default::default()
        };
        state
            .store
            .conversations()
            .update_conversation(workspace, conversation, &patch)
            .await?
            .ok_or_else(|| ApiError::not_found("conversation"))?;
        return Ok(ToolResult {
            reply: json!({"handed_off": true}).to_string(),
            saved: None,
            handed_off: true,
        });
    }
    if call.name != MEMORY_TOOL {
        return Ok(refuse(format!("there is no tool named {:?}", call.name)));
    }
    let args: Value = match serde_json::from_str(&call.arguments) {
        Ok(v) => v,
        Err(e) => return Ok(refuse(format!("the arguments are not JSON: {e}"))),
    };
    let (Some(field), Some(value)) = (
        args.get("field").and_then(Value::as_str),
        args.get("value").and_then(Value::as_str),
    ) else {
        return Ok(refuse("give a field and a value, both strings".into()));
    };
    if !settings.memory_fields.iter().any(|f| f.name == field) {
        return Ok(refuse(format!("{field:?} is not one of the memory fields")));
    }
    let value: String = value
        .trim()
        .chars()
        .take(parley_core::validate::MAX_VARIABLE_VALUE_CHARS)
        .collect();
    if value.is_empty() {
        return Ok(refuse("the value is empty".into()));
    }
    let variable = Variable {
        key: field.to_owned(),
        value: value.clone(),
        source: VariableSource::Extracted,
    };
    state
        .store
        .conversations()
        .update_conversation(
            workspace,
            conversation,
            &ConversationPatch {
                variables: Some(vec![variable.clone()]),
                ..Default::default()
            },
        )
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    memory.retain(|v| v.key != field);
    memory.push(variable);
    Ok(ToolResult {
        reply: json!({"saved": field}).to_string(),
        saved: Some((field.to_owned(), value)),
        handed_off: false,
    })
}

fn message(
    role: Role,
    content: String,
    model: Option<String>,
    usage: Option<Usage>,
    meta: MessageMeta,
) -> MessageInput {
    MessageInput {
        id: Some(MessageId::new()),
        external_id: None,
        role,
        content,
        created_at: Some(Timestamp::now()),
        model,
        usage,
        cost_nanousd: None,
        meta,
    }
}

/// Stores messages through the one ingest path, returning them as stored.
async fn store(
    state: &AppState,
    workspace: WorkspaceId,
    conversation: ConversationId,
    price: Option<&parley_core::pricing::ModelPrice>,
    messages: Vec<MessageInput>,
) -> Result<Vec<Message>, ApiError> {
    let batch = prepare_priced(
        &state.prices,
        price,
        IngestRequest::Append {
            conversation,
            messages,
        },
        Timestamp::now(),
    )?;
    let out: Vec<Message> = batch
        .messages
        .iter()
        .map(|m| Message {
            id: m.id,
            external_id: m.external_id.clone(),
            role: m.role,
            content: m.content.clone(),
            created_at: m.created_at,
            model: m.model.clone(),
            usage: m.usage,
            cost_nanousd: m.cost_nanousd,
            cost_source: m.cost_source,
            meta: m.meta.clone(),
        })
        .collect();
    crate::ingest::commit(state, workspace, vec![batch]).await?;
    Ok(out)
}

/// Records a failed turn: the customer sees [`FAILURE_TEXT`] (after any text that had already
/// streamed to them), and `meta.error` keeps what happened.
async fn fail(
    state: &AppState,
    workspace: WorkspaceId,
    (conversation, trigger): (ConversationId, Option<MessageId>),
    assistant: &Assistant,
    e: &ProviderError,
    partial: Option<Completion>,
    events: &Option<UnboundedSender<TurnEvent>>,
) -> Result<TurnOutcome, ApiError> {
    tracing::warn!(error = %e, %conversation, assistant = %assistant.name, "assistant turn failed");
    let content = match partial.as_ref().filter(|p| !p.content.is_empty()) {
        Some(p) => format!("{}\n\n{FAILURE_TEXT}", p.content),
        None => FAILURE_TEXT.to_owned(),
    };
    let meta = MessageMeta {
        error: Some(MessageError {
            code: e.code().to_owned(),
            message: e.to_string(),
        }),
        assistant_version: Some(assistant.version),
        in_reply_to: trigger,
        ..Default::default()
    };
    let stored = store(
        state,
        workspace,
        conversation,
        None,
        vec![message(Role::Assistant, content, None, None, meta)],
    )
    .await?;
    let m = stored.into_iter().next_back().expect("one message stored");
    emit(events, TurnEvent::Stored(Box::new(m.clone())));
    Ok(TurnOutcome::Failed(Box::new(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_core::assistant::MemoryField;

    fn msg(role: Role, content: &str) -> Message {
        Message {
            id: MessageId::new(),
            external_id: None,
            role,
            content: content.into(),
            created_at: Timestamp(0),
            model: None,
            usage: None,
            cost_nanousd: None,
            cost_source: None,
            meta: Default::default(),
        }
    }

    #[test]
    fn history_maps_roles_and_tool_messages_and_skips_failures() {
        let mut call = msg(Role::Tool, "");
        call.meta.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: MEMORY_TOOL.into(),
            arguments: "{}".into(),
        }];
        let mut result = msg(Role::Tool, r#"{"saved":"email"}"#);
        result.meta.tool_call_id = Some("call_1".into());
        let mut failed = msg(Role::Assistant, FAILURE_TEXT);
        failed.meta.error = Some(MessageError {
            code: "provider_timeout".into(),
            message: "x".into(),
        });
        let h = history(&[
            msg(Role::User, "hi"),
            call,
            result,
            msg(Role::Agent, "a human here"),
            failed,
        ]);
        let roles: Vec<&str> = h.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
        assert_eq!(h[1]["tool_calls"][0]["function"]["name"], MEMORY_TOOL);
        assert_eq!(h[1]["content"], Value::Null);
        assert_eq!(h[2]["tool_call_id"], "call_1");
    }

    #[test]
    fn the_context_window_drops_the_oldest_turns_first() {
        let mut h: Vec<Value> = (0..40)
            .map(|i| {
                json!({"role": if i % 2 == 0 {"user"} else {"assistant"},
                             "content": format!("message number {i} with some words in it")})
            })
            .collect();
        let sys = json!({"role": "system", "content": "Be brief."});
        let full = tokens::count_messages("gpt-4o", &h);
        let dropped = fit_context("gpt-4o", Some(&sys), &[], &mut h, full / 2);
        assert!(dropped > 0 && (dropped as usize) < 40);
        assert_eq!(h.len(), 40 - dropped as usize);
        assert!(
            h.last().unwrap()["content"]
                .as_str()
                .unwrap()
                .contains("39")
        );
        let kept = tokens::count_messages("gpt-4o", &h) + tokens::count_message("gpt-4o", &sys);
        assert!(kept <= full / 2, "{kept} > {}", full / 2);
        // Never below the last message.
        let mut one = vec![json!({"role": "user", "content": "long ".repeat(100)})];
        assert_eq!(fit_context("gpt-4o", None, &[], &mut one, 1), 0);
        assert_eq!(one.len(), 1);
        // A tool result does not open the history without its call.
        let mut t = vec![
            json!({"role": "user", "content": "x ".repeat(200)}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
            json!({"role": "tool", "tool_call_id": "c", "content": "ok"}),
            json!({"role": "user", "content": "and now?"}),
        ];
        fit_context("gpt-4o", None, &[], &mut t, 40);
        assert_ne!(t[0]["role"], "tool");
    }

    #[test]
    fn the_system_message_lists_memory_fields_and_what_is_known() {
        let settings = AssistantSettings {
            system_prompt: "You sell shoes.".into(),
            memory_fields: vec![
                MemoryField {
                    name: "email".into(),
                    description: "Their email".into(),
                },
                MemoryField {
                    name: "size".into(),
                    description: "Shoe size".into(),
                },
            ],
            ..Default::default()
        };
        let known = [Variable {
            key: "size".into(),
            value: "42".into(),
            source: VariableSource::Extracted,
        }];
        let sys = system_message(&settings, &known).unwrap();
        let text = sys["content"].as_str().unwrap();
        assert!(text.starts_with("You sell shoes."));
        assert!(text.contains("- email: Their email\n"));
        assert!(text.contains("- size: Shoe size (known: 42)"));
        let tools = memory_tools(&settings);
        assert_eq!(
            tools[0]["function"]["parameters"]["properties"]["field"]["enum"],
            json!(["email", "size"])
        );
        assert!(system_message(&AssistantSettings::default(), &[]).is_none());
        assert!(memory_tools(&AssistantSettings::default()).is_empty());
    }
}
