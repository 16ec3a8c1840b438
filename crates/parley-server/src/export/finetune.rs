//! Fine-tuning sets: conversations as OpenAI chat fine-tuning JSONL
//! (<https://platform.openai.com/docs/guides/supervised-fine-tuning>, the "chat" format): one
//! `{"messages": [...]}` example per line.
//!
//! An example is built from one conversation, oldest message first:
//! - the system prompt of the assistant **version** that handled it (the version its record
//!   names; the current version when it names none, e.g. an imported conversation), when that
//!   prompt is not empty, as the first message (`role: system`); stored `system` messages
//!   (call records, notes) are not part of the dialogue and are left out;
//! - `user` messages as `user`; the AI's `assistant` messages and the team's `agent` messages
//!   both as `assistant`;
//! - with **team replies only** (`train_on=team`), every `assistant` turn carries a `weight`:
//!   `0` on the AI's turns (context, not trained on), `1` on the team's; without it no turn
//!   has a weight (OpenAI trains on every assistant turn);
//! - `tool` messages are dropped, or with `tools=keep` kept as OpenAI writes them: the model's
//!   request as an `assistant` turn with `tool_calls` (and `weight: 0` with team replies
//!   only), the result as `role: tool` with its `tool_call_id`; a result whose request is not
//!   in the example is dropped;
//! - messages without text are left out, and so is everything after the last assistant turn
//!   that is trained on (nothing can be learnt from it); a conversation with no such turn
//!   makes no example (it is counted as skipped);
//! - with **redaction** (`redact=true`, the default) every text goes through
//!   [`Redactor`] first; the system prompt is the operator's and stays as written.
//!
//! Filters: every list filter (`min_rating`, `resolution`, ...) plus `has_team_replies=true`
//! (only conversations with at least one `agent` message). The estimate counts the examples
//! and their tokens with OpenAI's tokenizer (`o200k_base`, through `tiktoken-rs`) and the
//! chat overhead of [`crate::assistant::tokens`]; OpenAI's own count may differ a little.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use parley_core::model::{AssistantVersion, ConversationExport};
use parley_core::query::{ConversationFilter, Sort};
use parley_core::{AssistantId, Role, WorkspaceId};
use parley_store::{Store, StoreError};
use serde::Serialize;
use serde_json::{Value, json};

use super::ListWalk;
use super::redact::Redactor;
use crate::api::Params;
use crate::assistant::tokens;
use crate::error::ApiError;

/// The query parameters of a fine-tuning set beyond the list's filters and sort.
pub const OPTION_PARAMS: &[&str] = &["has_team_replies", "train_on", "tools", "redact"];

/// How a fine-tuning set is built (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneOptions {
    /// The list filters.
    pub filter: ConversationFilter,
    /// The order of the examples (the list's sort).
    pub sort: Sort,
    /// Only conversations with a team (`agent`) reply.
    pub has_team_replies: bool,
    /// Train on the team's replies only (`weight` 0 on the AI's turns, 1 on the team's).
    pub team_replies_only: bool,
    /// Keep tool calls and results.
    pub keep_tools: bool,
    /// Redact personal data before writing.
    pub redact: bool,
}

fn flag(p: &Params, name: &str, default: bool) -> Result<bool, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(ApiError::bad_param(
            name,
            format!("{name} must be true or false, got {v:?}"),
        )),
    }
}

/// Parses [`OPTION_PARAMS`]: `has_team_replies` (`true` | `false`, default false), `train_on`
/// (`all` | `team`, default all), `tools` (`drop` | `keep`, default drop), `redact` (default
/// true). Errors: 400 `invalid_parameter` naming the parameter.
pub(crate) fn parse_options(
    p: &Params,
    filter: ConversationFilter,
    sort: Sort,
) -> Result<FinetuneOptions, ApiError> {
    let team_replies_only = match p.get("train_on") {
        None | Some("all") => false,
        Some("team") => true,
        Some(v) => {
            return Err(ApiError::bad_param(
                "train_on",
                format!("train_on must be all or team, got {v:?}"),
            ));
        }
    };
    let keep_tools = match p.get("tools") {
        None | Some("drop") => false,
        Some("keep") => true,
        Some(v) => {
            return Err(ApiError::bad_param(
                "tools",
                format!("tools must be drop or keep, got {v:?}"),
            ));
        }
    };
    Ok(FinetuneOptions {
        filter,
        sort,
        has_team_replies: flag(p, "has_team_replies", false)?,
        team_replies_only,
        keep_tools,
        redact: flag(p, "redact", true)?,
    })
}

/// One example's messages, or `None` when the conversation has nothing to train on.
pub fn example(
    c: &ConversationExport,
    system_prompt: Option<&str>,
    o: &FinetuneOptions,
) -> Option<Vec<Value>> {
    let redactor = o.redact.then(|| Redactor::for_conversation(&c.detail));
    let text = |t: &str| match &redactor {
        Some(r) => r.redact(t),
        None => t.to_owned(),
    };
    let mut out: Vec<Value> = Vec::new();
    if let Some(p) = system_prompt.filter(|p| !p.trim().is_empty()) {
        out.push(json!({"role": "system", "content": p}));
    }
    let mut pending_calls: Vec<String> = Vec::new();
    // Index just past the last assistant turn that is trained on.
    let mut end = None;
    for m in &c.messages {
        match m.role {
            Role::System => {}
            Role::User if !m.content.trim().is_empty() => {
                out.push(json!({"role": "user", "content": text(&m.content)}));
            }
            Role::Assistant | Role::Agent if !m.content.trim().is_empty() => {
                let mut turn = json!({"role": "assistant", "content": text(&m.content)});
                let trained = if o.team_replies_only {
                    let w = u8::from(m.role == Role::Agent);
                    turn["weight"] = json!(w);
                    w == 1
                } else {
                    true
                };
                out.push(turn);
                if trained {
                    end = Some(out.len());
                }
            }
            Role::Tool if o.keep_tools => {
                if !m.meta.tool_calls.is_empty() {
                    let calls: Vec<Value> = m
                        .meta
                        .tool_calls
                        .iter()
                        .map(|t| {
                            json!({"id": t.id, "type": "function",
                                   "function": {"name": t.name, "arguments": text(&t.arguments)}})
                        })
                        .collect();
                    pending_calls.extend(m.meta.tool_calls.iter().map(|t| t.id.clone()));
                    let mut turn = json!({"role": "assistant", "tool_calls": calls});
                    if o.team_replies_only {
                        turn["weight"] = json!(0);
                    }
                    out.push(turn);
                } else if let Some(id) = &m.meta.tool_call_id
                    && let Some(i) = pending_calls.iter().position(|p| p == id)
                {
                    pending_calls.remove(i);
                    out.push(
                        json!({"role": "tool", "tool_call_id": id, "content": text(&m.content)}),
                    );
                }
            }
            _ => {}
        }
    }
    let end = end?;
    out.truncate(end);
    Some(out)
}

/// Tokens of one example: its messages (OpenAI's tokenizer) plus the chat overhead.
pub fn example_tokens(messages: &[Value]) -> usize {
    messages
        .iter()
        .map(|m| tokens::count_message("gpt-4o", m))
        .sum::<usize>()
        + tokens::TOKENS_PER_REPLY
}

/// The answer of `GET /api/v1/conversations/finetune/estimate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FinetuneEstimate {
    /// Lines the file will have.
    pub examples: u64,
    /// Estimated tokens over all examples (see the module docs).
    pub estimated_tokens: u64,
    /// Conversations that matched the filters.
    pub conversations: u64,
    /// Of those, the ones that make no example (no team reply, nothing to train on).
    pub skipped: u64,
}

/// Builds the examples of a fine-tuning set, a page of conversations at a time.
struct Builder {
    walk: ListWalk,
    options: FinetuneOptions,
    versions: HashMap<AssistantId, Vec<AssistantVersion>>,
}

impl Builder {
    fn new(store: Arc<dyn Store>, workspace: WorkspaceId, options: FinetuneOptions) -> Builder {
        Builder {
            walk: ListWalk::new(store, workspace, options.filter.clone(), options.sort),
            options,
            versions: HashMap::new(),
        }
    }

    /// The system prompt of the version that handled `c` (see the module docs).
    async fn system_prompt(
        &mut self,
        c: &ConversationExport,
    ) -> Result<Option<String>, StoreError> {
        let id = c.detail.summary.assistant.id;
        if !self.versions.contains_key(&id) {
            let v = self
                .walk
                .store()
                .assistants()
                .assistant_versions(self.walk.workspace(), id)
                .await?
                .unwrap_or_default();
            self.versions.insert(id, v);
        }
        let versions = &self.versions[&id];
        let chosen = match c.detail.assistant_version {
            Some(n) => versions.iter().find(|v| v.version == n),
            None => None,
        }
        .or_else(|| versions.iter().max_by_key(|v| v.version));
        Ok(chosen.map(|v| v.settings.system_prompt.clone()))
    }

    /// The next page's examples and how many conversations it read; `None` at the end.
    async fn next_page(&mut self) -> Result<Option<(Vec<Vec<Value>>, u64)>, StoreError> {
        let Some(page) = self.walk.next_page().await? else {
            return Ok(None);
        };
        let ids: Vec<_> = page.items.iter().map(|i| i.conversation.id).collect();
        let full = self
            .walk
            .store()
            .conversations()
            .export_conversations(self.walk.workspace(), &ids)
            .await?;
        let mut examples = Vec::with_capacity(full.len());
        let mut read = 0;
        for c in &full {
            if self.options.has_team_replies && !c.messages.iter().any(|m| m.role == Role::Agent) {
                continue;
            }
            read += 1;
            let prompt = self.system_prompt(c).await?;
            if let Some(e) = example(c, prompt.as_deref(), &self.options) {
                examples.push(e);
            }
        }
        Ok(Some((examples, read)))
    }
}

/// Streams the fine-tuning set as JSONL, one chunk per page of conversations. A store error
/// ends the stream with that error.
pub fn finetune_stream(
    store: Arc<dyn Store>,
    workspace: WorkspaceId,
    options: FinetuneOptions,
) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    let builder = Builder::new(store, workspace, options);
    futures_util::stream::unfold((builder, false), |(mut b, failed)| async move {
        if failed {
            return None;
        }
        match b.next_page().await {
            Ok(None) => None,
            Ok(Some((examples, _))) => {
                let mut out = Vec::new();
                for e in examples {
                    if serde_json::to_writer(&mut out, &json!({ "messages": e })).is_ok() {
                        out.push(b'\n');
                    }
                }
                Some((Ok(Bytes::from(out)), (b, false)))
            }
            Err(e) => Some((Err(e), (b, true))),
        }
    })
}

/// Counts the examples and tokens the set would have, reading it as the download would.
pub async fn estimate(
    store: Arc<dyn Store>,
    workspace: WorkspaceId,
    options: FinetuneOptions,
) -> Result<FinetuneEstimate, StoreError> {
    let mut b = Builder::new(store, workspace, options);
    let mut e = FinetuneEstimate::default();
    while let Some((examples, read)) = b.next_page().await? {
        e.conversations += read;
        e.examples += examples.len() as u64;
        e.skipped += read - examples.len() as u64;
        e.estimated_tokens += examples
            .iter()
            .map(|x| example_tokens(x) as u64)
            .sum::<u64>();
    }
    Ok(e)
}
