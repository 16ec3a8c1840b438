//! Test Chat: talk to an assistant from the dashboard. Each session is a conversation on
//! channel `test` (the orange Test badge), listed with every other conversation. Answers stream
//! in as they are written, and the side of the page shows the variables collected, tokens and
//! cost, updated live.
//!
//! `POST /test-chat/send` takes `{"assistant", "conversation"?, "content"}` (JSON, with the
//! session's CSRF token in `X-CSRF-Token`), stores the message, runs the assistant's turn
//! (see [`crate::assistant::runtime`]) and answers with server-sent events:
//!
//! | event | data |
//! | --- | --- |
//! | `conversation` | `{"id", "href"}`: the conversation (new on the first message) |
//! | `stored` | `{"id", "role", "html", "failed"}`: a visible message as stored, as a bubble |
//! | `delta` | `{"text"}`: a piece of the answer |
//! | `retrying` | `{"attempt", "reason"}` |
//! | `variable` | `{"key", "value"}`: a memory field saved |
//! | `usage` | `{"prompt_tokens", "completion_tokens", "cost", "messages"}`: the conversation's totals |
//! | `error` | `{"message"}` |
//! | `done` | `{}` |
//!
//! The turn runs in its own task: a closed tab does not stop the answer from being stored.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::Event;
use axum::response::{Html, IntoResponse, Response};
use parley_core::model::{ConversationInput, MessageInput};
use parley_core::query::TranscriptQuery;
use parley_core::{AssistantId, Channel, ConversationId, Role, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::pages::{Bubble, Layout, bubble};
use super::{format, tz_offset};
use crate::AppState;
use crate::assistant::runtime::{self, TurnEvent};
use crate::auth::Session;
use crate::dashboard::form::PageError;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest};
use parley_core::model::Assistant;

/// Most messages the page shows of an earlier session.
const SHOWN_MESSAGES: u32 = 200;

struct AssistantOption {
    id: String,
    label: String,
    selected: bool,
}

struct VarRow {
    key: String,
    value: String,
    source: String,
}

#[derive(Template)]
#[template(path = "test_chat.html")]
struct Page {
    layout: Layout,
    options: Vec<AssistantOption>,
    assistant_id: String,
    assistant_name: String,
    model: String,
    /// Why the assistant cannot answer here, with what to set.
    blocked: Option<String>,
    is_admin: bool,
    conversation_id: String,
    conversation_href: String,
    messages: Vec<Bubble>,
    variables: Vec<VarRow>,
    prompt_tokens: String,
    completion_tokens: String,
    cost: String,
    message_count: String,
}

/// `GET /test-chat` query.
#[derive(Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    assistant: Option<String>,
    #[serde(default)]
    conversation: Option<String>,
}

/// `GET /test-chat`.
pub(super) async fn page(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
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
    // An earlier session to continue (only Test Chat conversations).
    let conversation = match q
        .conversation
        .as_deref()
        .and_then(|c| c.parse::<ConversationId>().ok())
    {
        Some(id) => match st.store.conversations().get_conversation(ws, id).await {
            Ok(Some(c)) if c.summary.channel == Channel::Test => Some(c),
            Ok(_) => None,
            Err(e) => return PageError::from(e).into_response(),
        },
        None => None,
    };
    let wanted: Option<AssistantId> = conversation
        .as_ref()
        .map(|c| c.summary.assistant.id)
        .or_else(|| q.assistant.as_deref().and_then(|a| a.parse().ok()));
    let selected = wanted
        .and_then(|id| assistants.iter().find(|a| a.id == id))
        .or_else(|| assistants.iter().find(|a| a.settings.provider.is_some()))
        .or(assistants.first());
    let blocked = blocked_reason(&st, selected);
    let messages = match &conversation {
        Some(c) => recent_bubbles(&st, ws, c.summary.id, tz).await,
        None => Vec::new(),
    };
    let options = assistant_options(&assistants, selected);
    let s = conversation.as_ref().map(|c| &c.summary);
    let page = Page {
        layout: Layout::new("test-chat", "Test Chat", &session, tz, total),
        options,
        assistant_id: selected.map(|a| a.id.to_string()).unwrap_or_default(),
        assistant_name: selected.map(|a| a.name.clone()).unwrap_or_default(),
        model: selected
            .and_then(|a| a.settings.provider.as_ref())
            .map(|p| p.model.clone())
            .unwrap_or_default(),
        blocked,
        is_admin: session.user.role == parley_core::UserRole::Admin,
        conversation_id: s.map(|s| s.id.to_string()).unwrap_or_default(),
        conversation_href: s
            .map(|s| format!("/conversations?open={}&tab=transcript", s.id))
            .unwrap_or_default(),
        messages,
        variables: conversation
            .as_ref()
            .map(|c| {
                c.variables
                    .iter()
                    .map(|v| VarRow {
                        key: v.key.clone(),
                        value: v.value.clone(),
                        source: v.source.as_str().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        prompt_tokens: format::int(s.map_or(0, |s| s.usage.prompt_tokens)),
        completion_tokens: format::int(s.map_or(0, |s| s.usage.completion_tokens)),
        cost: format::cost(s.map_or(0, |s| s.cost_nanousd)),
        message_count: format::int(s.map_or(0, |s| s.message_count)),
    };
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError(ApiError::internal(e)).into_response(),
    }
}

/// Why Test Chat cannot talk to `selected` (no assistant, no provider, a provider that does not
/// resolve, a passive assistant); `None` when it can.
fn blocked_reason(st: &AppState, selected: Option<&Assistant>) -> Option<String> {
    match selected {
        None => Some(
            "There is no assistant yet. Create one under Assistants: give it a name, a provider (base URL, model, API key) and a prompt.".to_owned(),
        ),
        Some(a) if a.settings.provider.is_none() => Some(format!(
            "{} has no LLM provider, so it cannot answer. Under Assistants → {}, pick one of this server's providers{}, or choose Custom and give your own base URL (for OpenAI: https://api.openai.com/v1), model (e.g. gpt-4o-mini) and API key, stored encrypted.",
            a.name,
            a.name,
            provider_names(st)
        )),
        Some(a) => match crate::assistant::provider::Endpoint::resolve(
            a.settings.provider.as_ref().expect("checked above"),
            st,
        ) {
            Err(e) => Some(format!(
                "{} cannot reach its provider: {e}. Fix it under Assistants → {}.",
                a.name, a.name
            )),
            Ok(_) if a.mode == parley_core::AssistantMode::Passive => Some(format!(
                "{} is passive: the team answers, not the AI. Switch its mode to active or hybrid under Assistants to chat with it.",
                a.name
            )),
            Ok(_) => None,
        },
    }
}

/// The newest [`SHOWN_MESSAGES`] visible messages of `conversation` as bubbles, oldest first
/// (none when they cannot be read).
async fn recent_bubbles(
    st: &AppState,
    ws: parley_core::WorkspaceId,
    conversation: ConversationId,
    tz: i32,
) -> Vec<Bubble> {
    let page = st
        .store
        .conversations()
        .list_messages(
            ws,
            conversation,
            &TranscriptQuery {
                page: 1,
                per_page: SHOWN_MESSAGES,
                newest_first: true,
                include_hidden: false,
            },
        )
        .await;
    match page {
        Ok(Some(p)) => p
            .items
            .iter()
            .rev()
            .map(|m| bubble(conversation, m, tz))
            .collect(),
        _ => Vec::new(),
    }
}

/// The assistant picker's options, `selected` marked.
fn assistant_options(
    assistants: &[Assistant],
    selected: Option<&Assistant>,
) -> Vec<AssistantOption> {
    assistants
        .iter()
        .map(|a| AssistantOption {
            id: a.id.to_string(),
            label: if a.company.is_empty() {
                a.name.clone()
            } else {
                format!(
                    "{} · {}",
                    super::format::isolate(&a.name),
                    super::format::isolate(&a.company)
                )
            },
            selected: Some(a.id) == selected.map(|s| s.id),
        })
        .collect()
}

/// `POST /test-chat/send` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendInput {
    assistant: String,
    #[serde(default)]
    conversation: Option<String>,
    content: String,
}

#[derive(Template)]
#[template(path = "bubble.html")]
struct BubbleFragment {
    m: Bubble,
}

/// " (here: openai, ollama)", or nothing when the operator declared no provider.
fn provider_names(st: &AppState) -> String {
    if st.settings.providers.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = st.settings.providers.keys().map(String::as_str).collect();
    format!(" (here: {})", names.join(", "))
}

/// One event of the answer stream (see [`crate::sse`]).
fn sse(event: &str, data: Value) -> Event {
    crate::sse::json_event(event, &data)
}

fn json_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// `POST /test-chat/send`: see the module docs. Errors before the stream starts are JSON
/// (`{"error": {"code", "message"}}`): 403 `csrf_failed`, 422 `validation_failed`, 404
/// `not_found`, 409 `provider_not_configured`.
pub(super) async fn send(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !session.csrf_ok(token) {
        return json_error(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "the page has expired: reload it and try again",
        );
    }
    let input: SendInput = match crate::body::parse_json(&body) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let content = input.content.trim().to_owned();
    if content.is_empty() || content.chars().count() > parley_core::validate::MAX_CONTENT_CHARS {
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "content: write a message of 1 to 100,000 characters",
        );
    }
    let ws = session.user.workspace_id;
    let tz = tz_offset(&headers);
    let Ok(assistant_id) = input.assistant.parse::<AssistantId>() else {
        return ApiError::not_found("assistant").into_response();
    };
    let assistant = match st.store.assistants().get_assistant(ws, assistant_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return ApiError::not_found("assistant").into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if assistant.settings.provider.is_none() {
        return json_error(
            StatusCode::CONFLICT,
            "provider_not_configured",
            format!(
                "{} has no provider: pick one (or give your own base URL, model and API key) under Assistants",
                assistant.name
            ),
        );
    }
    let existing = match continued(&st, ws, input.conversation.as_deref(), assistant.id).await {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let message = MessageInput {
        id: None,
        external_id: None,
        role: Role::User,
        content,
        created_at: Some(Timestamp::now()),
        model: None,
        usage: None,
        cost_nanousd: None,
        meta: Default::default(),
    };
    let request = match existing {
        Some(conversation) => IngestRequest::Append {
            conversation,
            messages: vec![message],
        },
        None => IngestRequest::Create(Box::new(ConversationInput {
            contact: Some(session.user.email.clone()),
            assistant_version: Some(assistant.version),
            messages: vec![message],
            ..ConversationInput::for_assistant(Some(assistant.id), Channel::Test)
        })),
    };
    let outcome = match ingest(&st, ws, vec![request]).await {
        Ok(mut o) => o.remove(0),
        Err(e) => return e.into_response(),
    };
    let conversation = outcome.conversation_id;
    let user_message = match st
        .store
        .conversations()
        .list_messages(
            ws,
            conversation,
            &TranscriptQuery {
                page: 1,
                per_page: 1,
                newest_first: true,
                include_hidden: false,
            },
        )
        .await
    {
        Ok(Some(p)) => p.items.into_iter().next(),
        _ => None,
    };

    answer_stream(st, ws, conversation, user_message, tz)
}

/// Whether the posted `conversation` continues: the id of a Test Chat conversation with
/// `assistant` in `ws`, else `None` (a new conversation is started).
/// Errors: the store's.
async fn continued(
    st: &AppState,
    ws: parley_core::WorkspaceId,
    conversation: Option<&str>,
    assistant: AssistantId,
) -> Result<Option<ConversationId>, parley_store::StoreError> {
    let Some(id) = conversation
        .filter(|c| !c.is_empty())
        .and_then(|c| c.parse::<ConversationId>().ok())
    else {
        return Ok(None);
    };
    Ok(st
        .store
        .conversations()
        .get_conversation(ws, id)
        .await?
        .filter(|c| c.summary.channel == Channel::Test && c.summary.assistant.id == assistant)
        .map(|_| id))
}

/// The event stream `send` answers with: `conversation`, the stored user message, then the
/// assistant's turn ([`stream_turn`]).
fn answer_stream(
    st: AppState,
    ws: parley_core::WorkspaceId,
    conversation: ConversationId,
    user_message: Option<parley_core::model::Message>,
    tz: i32,
) -> Response {
    let (out, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let _ = out.send(sse(
        "conversation",
        json!({"id": conversation.to_string(),
               "href": format!("/conversations?open={conversation}&tab=transcript")}),
    ));
    if let Some(m) = &user_message {
        let _ = out.send(stored_event(conversation, m, tz));
    }
    let metrics = st.metrics.clone();
    tokio::spawn(stream_turn(st, ws, conversation, tz, out));
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let mut res = crate::sse::respond(
        &metrics,
        crate::metrics::StreamKind::TestChat,
        stream,
        crate::sse::KEEP_ALIVE,
    );
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// Runs the assistant's turn for `conversation` and sends its events to `out`: `delta`,
/// `retrying`, `variable`, `message` (a stored message), `error`, then `usage` and `done`.
async fn stream_turn(
    st: AppState,
    ws: parley_core::WorkspaceId,
    conversation: ConversationId,
    tz: i32,
    out: tokio::sync::mpsc::UnboundedSender<Event>,
) {
    let (events, mut turn_events) = tokio::sync::mpsc::unbounded_channel::<TurnEvent>();
    let turn = {
        let st = st.clone();
        tokio::spawn(async move { runtime::respond(&st, ws, conversation, Some(events)).await })
    };
    while let Some(e) = turn_events.recv().await {
        let bytes = match e {
            TurnEvent::Delta(text) => sse("delta", json!({"text": text})),
            TurnEvent::Retrying { attempt, reason } => {
                sse("retrying", json!({"attempt": attempt, "reason": reason}))
            }
            TurnEvent::Variable { key, value } => sse(
                "variable",
                json!({"key": key, "value": value, "source": "extracted"}),
            ),
            TurnEvent::Stored(m) if m.role == Role::Tool => continue,
            TurnEvent::Stored(m) => stored_event(conversation, &m, tz),
        };
        let _ = out.send(bytes);
    }
    match turn.await {
        Ok(Ok(runtime::TurnOutcome::NotAnswering(why))) => {
            let _ = out.send(sse("error", json!({"message": why})));
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let _ = out.send(sse("error", json!({"message": e.message})));
        }
        Err(e) => {
            tracing::error!(error = %e, "test chat turn panicked");
            let _ = out.send(sse(
                "error",
                json!({"message": "the answer failed; the server log has details"}),
            ));
        }
    }
    if let Ok(Some(c)) = st
        .store
        .conversations()
        .get_conversation(ws, conversation)
        .await
    {
        let s = &c.summary;
        let _ = out.send(sse(
            "usage",
            json!({
                "prompt_tokens": format::int(s.usage.prompt_tokens),
                "completion_tokens": format::int(s.usage.completion_tokens),
                "cost": format::cost(s.cost_nanousd),
                "cost_nanousd": s.cost_nanousd,
                "messages": format::int(s.message_count),
            }),
        ));
    }
    let _ = out.send(sse("done", json!({})));
}

fn stored_event(conversation: ConversationId, m: &parley_core::model::Message, tz: i32) -> Event {
    let html = BubbleFragment {
        m: bubble(conversation, m, tz),
    }
    .render()
    .unwrap_or_default();
    sse(
        "stored",
        json!({"id": m.id.to_string(), "role": m.role.as_str(), "html": html,
               "failed": m.meta.error.is_some()}),
    )
}
