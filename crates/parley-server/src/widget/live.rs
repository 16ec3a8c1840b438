//! `GET /widget/v1/stream`: the visitor's live stream (issue 14), as Server-Sent Events, so a
//! team member's reply, an assistant answer or a hand-off notice shows in the widget as it is
//! stored, without polling.
//!
//! The same checks as the widget's other endpoints (key, allowed origin with its CORS headers,
//! rate limits, the visitor token). A browser's `EventSource` cannot send headers, so the token
//! may also come as the `visitor` query parameter (the `X-Parley-Visitor` header wins when both
//! are there). A route layer ([`visitor_from_query`]) moves it into the header and out of the
//! URI before the handler runs, and the request logs carry the path only (`request_span` in
//! `lib.rs`), so the token never reaches a log line (`tests/api/operations.rs` checks both log
//! formats at `debug`). A proxy in front may still log full URLs: a short-lived stream ticket
//! (a `POST` answering a one-minute sealed ticket for the URL) would shrink that exposure; not
//! built, as the widget's other tokens live as long. The stream follows the server's shared event reader ([`crate::events::follow`])
//! filtered to the token's workspace **and** conversation, so a visitor never receives anything
//! of another conversation or workspace.
//!
//! Events (`event:` name, `data:` JSON):
//!
//! - `snapshot`: first, the visitor's whole visible transcript with the status, the same object
//!   as `GET /widget/v1/messages` (`{"messages", "status", "rated"}`), so a (re)connect misses
//!   nothing that was stored before the stream started;
//! - `message`: a visible message stored or changed since (`{"id", "client_id", "role",
//!   "content", "created_at", "failed"}`, as in `messages`); system and tool messages never;
//! - `status`: the conversation's status changed or it was rated (`{"status", "rated"}`;
//!   `status` `deleted` when the conversation was deleted).
//!
//! Keep-alive comments every [`crate::sse::KEEP_ALIVE`]. Errors before the stream starts are
//! those of the other endpoints (401 `unknown_widget_key`, 403 `origin_not_allowed`, 403
//! `widget_disabled`, 429 `rate_limited`, 401 `invalid_visitor_token`, 404 `not_found`).

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::response::sse::Event;
use futures_util::StreamExt as _;
use parley_core::MessageId;
use parley_core::query::TranscriptQuery;
use parley_store::{EventFilter, EventType, StoredEvent};
use serde_json::json;

use super::chat::{sse, transcript, visitor_message};
use super::{VISITOR_HEADER, VisitorRequest, VisitorToken};
use crate::AppState;
use crate::error::ApiError;

/// How many of the newest messages a `message` event's message is looked for in (a message
/// changed further back is not sent; the next `snapshot` has it).
const RECENT: u32 = 50;

/// Moves a `/stream` request's `visitor` query parameter into the `X-Parley-Visitor` header
/// (unless the header is there: it wins) and takes it out of the URI, so that nothing after
/// this point (handler, extractor, a log line) holds the token in a URL. Other parameters stay
/// as they were. A route layer of `GET /widget/v1/stream`.
pub(super) async fn visitor_from_query(mut req: Request) -> Request {
    let Some(query) = req.uri().query() else {
        return req;
    };
    let (token, rest): (Vec<_>, Vec<_>) = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .partition(|(k, _)| k == "visitor");
    if token.is_empty() {
        return req;
    }
    if !req.headers().contains_key(VISITOR_HEADER)
        && let Some(v) = token
            .first()
            .and_then(|(_, v)| HeaderValue::from_str(v).ok())
    {
        req.headers_mut().insert(VISITOR_HEADER, v);
    }
    let rest = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    let path = req.uri().path();
    let path_and_query = if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{rest}")
    };
    let mut uri = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        uri.path_and_query = Some(pq);
        if let Ok(u) = axum::http::Uri::from_parts(uri) {
            *req.uri_mut() = u;
        }
    }
    req
}

/// `GET /widget/v1/stream?key=`: the visitor's conversation, live (see the module docs; the
/// token may have come as `?visitor=`, see [`visitor_from_query`]).
pub(super) async fn stream(
    State(st): State<AppState>,
    VisitorRequest {
        widget: c,
        token: t,
        ..
    }: VisitorRequest,
) -> Result<Response, ApiError> {
    // The position before the snapshot is read: what is stored meanwhile comes as events too
    // (the script merges by id, so nothing shows twice).
    let after = st.store.events().latest_event_id().await?;
    let filter = EventFilter {
        conversation: Some(t.c),
        ..EventFilter::default()
    };
    let events = crate::events::follow(&st, t.w, filter, after);
    let snapshot = sse("snapshot", transcript(&st, &c, &t, None).await?);
    let state = st.clone();
    let frames = events.filter_map(move |e| {
        let (st, t) = (state.clone(), t.clone());
        async move { frame(&st, &t, &e).await }
    });
    Ok(crate::sse::respond(
        &st.metrics,
        crate::metrics::StreamKind::Events,
        futures_util::stream::once(async move { snapshot }).chain(frames),
        crate::sse::KEEP_ALIVE,
    ))
}

/// The frame for one event of the visitor's conversation, `None` when the visitor has nothing
/// to see in it (a hidden message, a variables change) or it cannot be read now.
async fn frame(st: &AppState, t: &VisitorToken, e: &StoredEvent) -> Option<Event> {
    match e.event_type {
        EventType::MessageCreated | EventType::MessageUpdated => {
            let id: MessageId = e.data.get("message_id")?.as_str()?.parse().ok()?;
            let page = st
                .store
                .conversations()
                .list_messages(
                    t.w,
                    t.c,
                    &TranscriptQuery {
                        page: 1,
                        per_page: RECENT,
                        newest_first: true,
                        include_hidden: false,
                    },
                )
                .await
                .ok()??;
            let m = page.items.iter().find(|m| m.id == id)?;
            Some(sse("message", visitor_message(m)))
        }
        EventType::ConversationUpdated if e.data.get("status").is_some() => status(st, t).await,
        EventType::RatingUpdated => status(st, t).await,
        EventType::ConversationDeleted => {
            Some(sse("status", json!({"status": "deleted", "rated": false})))
        }
        _ => None,
    }
}

/// The `status` frame: the conversation's status and whether it is rated.
async fn status(st: &AppState, t: &VisitorToken) -> Option<Event> {
    let d = st
        .store
        .conversations()
        .get_conversation(t.w, t.c)
        .await
        .ok()??;
    Some(sse(
        "status",
        json!({"status": d.summary.status.as_str(), "rated": d.summary.rating.is_some()}),
    ))
}
