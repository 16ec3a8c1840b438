//! `GET /api/v1/events`: the live event stream for machines (issue 14), as Server-Sent Events.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use parley_core::{AssistantId, Channel, ConversationId};
use parley_store::{EventFilter, EventType};

use super::Params;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

/// The query parameters of the route.
const PARAMS: &[&str] = &[
    "conversation",
    "channel",
    "assistant",
    "type",
    "last_event_id",
];

/// Parses the filters (`conversation` and `assistant` ids, `channel` and `type` comma lists).
/// Errors: 400 `invalid_parameter` naming the parameter.
pub(crate) fn parse_filter(p: &Params) -> Result<EventFilter, ApiError> {
    let conversation = p
        .get("conversation")
        .map(|v| {
            v.parse::<ConversationId>().map_err(|_| {
                ApiError::bad_param("conversation", format!("{v:?} is not a conversation id"))
            })
        })
        .transpose()?;
    let assistant = p
        .get("assistant")
        .map(|v| {
            v.parse::<AssistantId>().map_err(|_| {
                ApiError::bad_param("assistant", format!("{v:?} is not an assistant id"))
            })
        })
        .transpose()?;
    let channels = p
        .list("channel")
        .into_iter()
        .map(|v| {
            v.parse::<Channel>()
                .map_err(|e| ApiError::bad_param("channel", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let types = p
        .list("type")
        .into_iter()
        .map(|v| {
            EventType::parse(v).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::bad_param(
                    "type",
                    format!("unknown event type {v:?}; known: {}", known.join(", ")),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EventFilter {
        conversation,
        channels,
        assistant,
        types,
    })
}

/// The resume point: the `Last-Event-ID` header, else the `last_event_id` parameter.
/// Errors: 400 `invalid_last_event_id` when it is not an integer.
pub(crate) fn resume_point(headers: &HeaderMap, p: &Params) -> Result<Option<i64>, ApiError> {
    let text = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or_else(|| p.get("last_event_id"));
    text.map(|t| {
        super::integer_text(t).parse::<i64>().map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_last_event_id",
                format!("Last-Event-ID must be an event id (an integer), got {t:?}"),
            )
            .with_field("last_event_id")
        })
    })
    .transpose()
}

/// `GET /api/v1/events`: the key's workspace's events as they are committed (SSE: `id:` the
/// event id, `event:` its type, `data:` the event as JSON), from after `Last-Event-ID` (missing
/// nothing still in the retention window) or from now. Errors: 400 `invalid_parameter`, 400
/// `invalid_last_event_id`, 410 `events_expired`.
pub(super) async fn stream(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), PARAMS)?;
    let filter = parse_filter(&p)?;
    let resume = resume_point(&headers, &p)?;
    let after = crate::events::start_after(&*st.store, resume).await?;
    let events = crate::events::stream(&st, auth.workspace, filter, after);
    Ok(crate::sse::respond_frames(
        &st.metrics,
        crate::metrics::StreamKind::Events,
        events,
        crate::sse::KEEP_ALIVE,
    ))
}
