//! THE one path every message takes into Parley (DESIGN.md section 3): the JSON API, the
//! importer, and every channel call [`ingest`] (or [`prepare`] then [`commit`]). It validates,
//! resolves defaults (times, status), prices each message (client cost wins; else usage x the
//! price table; an unknown model is flagged, never guessed), and hands the batches to
//! [`ConversationStore::ingest`](parley_store::ConversationStore::ingest), which de-duplicates
//! and stores them in one transaction together with the conversation counters.

use parley_core::model::{ConversationInput, MessageInput};
use parley_core::pricing::{ModelPrice, PriceTable};
use parley_core::validate::{self, Invalid};
use parley_core::{ConversationId, ConversationStatus, Timestamp, WorkspaceId};
use parley_store::{IngestBatch, IngestOutcome, IngestTarget, NewConversation, NewMessage};

use crate::AppState;
use crate::error::ApiError;

/// One unit of ingestion, as clients express it.
#[derive(Debug, Clone)]
pub enum IngestRequest {
    /// Create a conversation (or find the one its `id`/`external_id` names) with messages.
    Create(Box<ConversationInput>),
    /// Append messages to an existing conversation of the workspace.
    Append {
        /// The conversation.
        conversation: ConversationId,
        /// Messages, in order.
        messages: Vec<MessageInput>,
    },
}

fn prepare_message(
    prices: &PriceTable,
    assistant_price: Option<&ModelPrice>,
    m: MessageInput,
    now: Timestamp,
) -> NewMessage {
    let (cost_nanousd, cost_source) =
        prices.price_message_with(m.model.as_deref(), m.usage, m.cost_nanousd, assistant_price);
    NewMessage {
        id: m.id.unwrap_or_default(),
        id_from_client: m.id.is_some(),
        external_id: m.external_id,
        role: m.role,
        content: m.content,
        created_at: m.created_at.unwrap_or(now),
        model: m.model,
        usage: m.usage,
        cost_nanousd,
        cost_source,
        meta: m.meta,
    }
}

/// Validates and resolves one request into a store batch. `now` is the time given to anything
/// that carries no time of its own. Errors: the first rule the input breaks, with its field.
pub fn prepare(
    prices: &PriceTable,
    request: IngestRequest,
    now: Timestamp,
) -> Result<IngestBatch, Invalid> {
    prepare_priced(prices, None, request, now)
}

/// [`prepare`], pricing messages at `assistant_price` (an assistant's price override, see
/// `parley_core::assistant::PriceOverride`) instead of the table when given.
pub fn prepare_priced(
    prices: &PriceTable,
    assistant_price: Option<&ModelPrice>,
    request: IngestRequest,
    now: Timestamp,
) -> Result<IngestBatch, Invalid> {
    match request {
        IngestRequest::Append {
            conversation,
            messages,
        } => {
            if messages.is_empty() {
                return Err(Invalid::new("messages", "give at least one message"));
            }
            validate::messages(&messages)?;
            Ok(IngestBatch {
                target: IngestTarget::Existing(conversation),
                messages: messages
                    .into_iter()
                    .map(|m| prepare_message(prices, assistant_price, m, now))
                    .collect(),
            })
        }
        IngestRequest::Create(c) => {
            validate::conversation(&c)?;
            let c = *c;
            let messages: Vec<NewMessage> = c
                .messages
                .into_iter()
                .map(|m| prepare_message(prices, assistant_price, m, now))
                .collect();
            let first_message = messages.iter().map(|m| m.created_at).min();
            let started_at = c.started_at.or(first_message).unwrap_or(now);
            let conversation = NewConversation {
                id: c.id.unwrap_or_default(),
                id_from_client: c.id.is_some(),
                external_id: c.external_id,
                assistant: c.assistant,
                channel: c.channel,
                status: c.status.unwrap_or(ConversationStatus::Active),
                contact: c.contact,
                session_id: c.session_id,
                started_at,
                ended_at: c.ended_at,
                end_reason: c.end_reason,
                rating: c.rating.map(|r| {
                    let at = r.rated_at.unwrap_or(now);
                    (r, at)
                }),
                sentiment: c.sentiment,
                converted: c.converted,
                variables: c.variables,
                memory: c.memory.unwrap_or_default(),
                assistant_version: c.assistant_version,
            };
            Ok(IngestBatch {
                target: IngestTarget::New(Box::new(conversation)),
                messages,
            })
        }
    }
}

/// Stores prepared batches atomically (all or none).
/// Errors: see [`parley_store::ConversationStore::ingest`], as API errors.
pub async fn commit(
    state: &AppState,
    workspace: WorkspaceId,
    batches: Vec<IngestBatch>,
) -> Result<Vec<IngestOutcome>, ApiError> {
    let counted = crate::metrics::batch_channels(&batches);
    let outcomes = state
        .store
        .conversations()
        .ingest(workspace, batches)
        .await?;
    state.jobs.wake_insights();
    state
        .metrics
        .ingested(state, workspace, &counted, &outcomes)
        .await;
    Ok(outcomes)
}

/// Validates, prices and stores requests atomically.
/// Errors: 422 `validation_failed` naming the field; 404 for an unknown conversation or
/// assistant; 409 for a client id used elsewhere; 500 if the database fails.
pub async fn ingest(
    state: &AppState,
    workspace: WorkspaceId,
    requests: Vec<IngestRequest>,
) -> Result<Vec<IngestOutcome>, ApiError> {
    let now = Timestamp::now();
    let batches = requests
        .into_iter()
        .map(|r| prepare(&state.prices, r, now))
        .collect::<Result<Vec<_>, _>>()?;
    commit(state, workspace, batches).await
}

/// [`ingest`], writing the follow-up `jobs` in the same transaction (only for batches whose
/// last message is newly stored; see [`parley_store::jobs::IngestJob`]) and waking the
/// background worker when any may have been written. Errors: as [`ingest`].
pub async fn ingest_with_jobs(
    state: &AppState,
    workspace: WorkspaceId,
    requests: Vec<IngestRequest>,
    jobs: Vec<parley_store::jobs::IngestJob>,
) -> Result<Vec<IngestOutcome>, ApiError> {
    if jobs.is_empty() {
        return ingest(state, workspace, requests).await;
    }
    let now = Timestamp::now();
    let batches = requests
        .into_iter()
        .map(|r| prepare(&state.prices, r, now))
        .collect::<Result<Vec<_>, _>>()?;
    let out = state
        .store
        .jobs()
        .ingest_with_jobs(workspace, batches, jobs)
        .await?;
    state.jobs.wake();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_core::pricing::{CostSource, Usage};

    fn input(json: serde_json::Value) -> ConversationInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn prepare_prices_messages_and_fills_defaults() {
        let prices = PriceTable::builtin();
        let now = Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        let batch = prepare(
            &prices,
            IngestRequest::Create(Box::new(input(serde_json::json!({
                "assistant": {"name": "Ava"},
                "messages": [
                    {"role": "user", "content": "hi", "created_at": "2026-11-20T09:00:00Z"},
                    {"role": "assistant", "content": "hello", "model": "gpt-4o",
                     "usage": {"prompt_tokens": 1000, "completion_tokens": 500}},
                    {"role": "assistant", "content": "x", "model": "gpt-4o",
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "cost_nanousd": 5},
                    {"role": "assistant", "content": "y", "model": "my-own-llm",
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
                ]
            })))),
            now,
        )
        .unwrap();
        let IngestTarget::New(c) = &batch.target else {
            panic!("a new conversation")
        };
        assert_eq!(c.status, ConversationStatus::Active);
        assert_eq!(
            c.started_at,
            Timestamp::parse_rfc3339("2026-11-20T09:00:00Z").unwrap(),
            "first message"
        );
        let m = &batch.messages;
        assert_eq!(m[1].created_at, now);
        assert_eq!(
            (m[1].cost_nanousd, m[1].cost_source),
            (Some(7_500_000), Some(CostSource::PriceTable))
        );
        assert_eq!(
            (m[2].cost_nanousd, m[2].cost_source),
            (Some(5), Some(CostSource::Client))
        );
        assert_eq!(
            (m[3].cost_nanousd, m[3].cost_source),
            (None, Some(CostSource::UnknownModel))
        );
        assert_eq!(m[0].usage, None::<Usage>);
    }

    #[test]
    fn prepare_refuses_invalid_input() {
        let prices = PriceTable::builtin();
        let err = prepare(
            &prices,
            IngestRequest::Append {
                conversation: ConversationId::new(),
                messages: vec![],
            },
            Timestamp::now(),
        )
        .unwrap_err();
        assert_eq!(err.field, "messages");
    }
}
