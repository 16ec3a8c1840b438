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

/// The keep-alive comment: an empty `:` comment line and the blank line after it.
const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

/// Answers with `frames` — SSE text already encoded (whole events, each ending with its blank
/// line, e.g. [`crate::events::stream`]'s shared frames) — as an SSE stream, with the same
/// headers, keep-alives and metrics as [`respond`]: a `:` comment after `keep_alive` without a
/// frame. Written as they come, without re-encoding: what lets many streams share one
/// encoding of the same event.
pub fn respond_frames<S>(
    metrics: &Metrics,
    kind: StreamKind,
    frames: S,
    keep_alive: Duration,
) -> Response
where
    S: Stream<Item = bytes::Bytes> + Send + 'static,
{
    let body = KeepAliveFrames {
        inner: Box::pin(frames),
        timer: Box::pin(tokio::time::sleep(keep_alive)),
        every: keep_alive,
        last: tokio::time::Instant::now(),
    };
    let body = metrics.stream_body(kind, body.map(Ok::<_, Infallible>));
    let mut res = Response::new(body);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// [`respond_frames`]' body: the frames, and a keep-alive comment whenever `every` passed
/// without one. The timer is not reset per frame (that would touch the timer wheel once per
/// event per stream): when it fires it is moved to `every` after the last frame instead, and
/// only fires a comment if that moment has come.
struct KeepAliveFrames {
    inner: std::pin::Pin<Box<dyn Stream<Item = bytes::Bytes> + Send>>,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    every: Duration,
    /// When the last frame or comment went out.
    last: tokio::time::Instant,
}

impl Stream for KeepAliveFrames {
    type Item = bytes::Bytes;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<bytes::Bytes>> {
        use std::future::Future as _;
        use std::task::Poll;
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(frame)) => {
                this.last = tokio::time::Instant::now();
                Poll::Ready(Some(frame))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => loop {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = tokio::time::Instant::now();
                let due = this.last + this.every;
                if now >= due {
                    this.last = now;
                    this.timer.as_mut().reset(now + this.every);
                    return Poll::Ready(Some(bytes::Bytes::from_static(KEEP_ALIVE_FRAME)));
                }
                // A frame went out since the timer was set: wait until `every` after it.
                this.timer.as_mut().reset(due);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames go out unchanged; a stream quiet for longer than the interval gets `:` comments,
    /// and a frame pushes the next comment back (the body stays open meanwhile).
    #[tokio::test]
    async fn frames_pass_through_and_silence_gets_keep_alives() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
        let frames =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
            );
        let every = Duration::from_millis(150);
        let res = respond_frames(&Metrics::new(), StreamKind::Events, frames, every);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/event-stream; charset=utf-8"
        );
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let mut body = res.into_body().into_data_stream();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("a chunk within the deadline")
                .expect("the body stays open")
                .unwrap()
        };
        tx.send(bytes::Bytes::from_static(b"event: a\ndata: 1\n\n"))
            .unwrap();
        assert_eq!(&next().await[..], b"event: a\ndata: 1\n\n");
        assert_eq!(&next().await[..], KEEP_ALIVE_FRAME);
        tx.send(bytes::Bytes::from_static(b"event: b\ndata: 2\n\n"))
            .unwrap();
        assert_eq!(&next().await[..], b"event: b\ndata: 2\n\n");
        assert_eq!(&next().await[..], KEEP_ALIVE_FRAME);
    }
}
