//! The one Server-Sent Events helper (issue 12): every `text/event-stream` answer (the events
//! stream, Test Chat, the widget's chat) is an [`axum::response::sse::Sse`] with keep-alive
//! comments (every [`KEEP_ALIVE`] by default), counted in the `parley_streams_*` metrics while
//! it is open. The wire format is the standard one (`id:`, `event:`, `data:` lines, a blank line
//! after each event; keep-alives are `:` comment lines that clients ignore).

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

use crate::metrics::{Metrics, StreamKind};

/// The default keep-alive interval: a comment line after this long without an event, so
/// proxies and browsers keep an idle stream open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// An event named `name` whose `data:` is `data` as compact JSON.
pub fn json_event(name: &str, data: &serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// Answers with `events` as an SSE stream (`text/event-stream; charset=utf-8`, `Cache-Control:
/// no-store`), keep-alives every `keep_alive`, counted as a stream of `kind` while it is open.
pub fn respond<S>(metrics: &Metrics, kind: StreamKind, events: S, keep_alive: Duration) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let sse = Sse::new(events.map(Ok::<Event, Infallible>))
        .keep_alive(KeepAlive::new().interval(keep_alive));
    let (mut parts, body) = sse.into_response().into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let body = metrics.stream_body(kind, body.into_data_stream());
    Response::from_parts(parts, body)
}
