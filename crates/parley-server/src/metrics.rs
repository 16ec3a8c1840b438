//! `GET /metrics`: the server's counters in the Prometheus/OpenMetrics text format
//! (<https://prometheus.io/docs/specs/om/open_metrics_spec/>), encoded by the official
//! `prometheus-client` crate. Each [`AppState`] has its own [`Metrics`] registry (no global
//! recorder), so two servers in one process (the tests) count apart.
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | `parley_http_requests_total` | counter | `route`, `method`, `status` | answered requests; `route` is the route template (`/api/v1/conversations/{id}`), `unmatched` for no route |
//! | `parley_http_request_duration_seconds` | histogram | `route`, `method` | time to the response head (a streamed body goes on after it) |
//! | `parley_messages_ingested_total` | counter | `channel` | messages newly stored by [`crate::ingest::commit`] (duplicates not counted) |
//! | `parley_provider_calls_total` | counter | `kind`, `outcome` | LLM provider calls: `kind` `chat` (assistant answers) or `gateway`; `outcome` `ok` or the error code (`provider_timeout`, `provider_rate_limited`, ...) |
//! | `parley_provider_call_duration_seconds` | histogram | `kind`, `outcome` | their duration, to the end of the answer |
//! | `parley_streams_active` | gauge | `kind` | open streamed responses: `test_chat`, `widget_chat`, `gateway` |
//! | `parley_streams_total` | counter | `kind` | streamed responses started |
//! | `parley_db_connections` | gauge | `state` | the store's pool: `max`, `open`, `available`, `waiting` (PostgreSQL: deadpool's pool; SQLite: the read connections) |
//! | `parley_sqlite_writer_queue` | gauge | | SQLite: write jobs waiting for the single writer |
//! | `parley_sqlite_wal_bytes` | gauge | | SQLite: the `-wal` file's size, in bytes |
//! | `parley_jobs` | gauge | `kind`, `state` | durable background jobs of every server sharing the database ([`crate::jobs`]): `kind` `whatsapp.delivery`, `telegram.delivery`, `answer`, `media.download`; `state` `queued`, `running`, `failed` |
//! | `parley_jobs_oldest_age_seconds` | gauge | `kind`, `state` | age of the oldest of those jobs, in seconds |
//! | `parley_webhook_inbox_depth` | gauge | | webhook deliveries received and not yet processed (queued + running delivery jobs) |
//! | `parley_webhook_inbox_oldest_age_seconds` | gauge | | age of the oldest of them, in seconds (0 when the inbox is empty) |
//!
//! Access (see [`crate::config::Settings::metrics_token`]): with `metrics_listen` set the
//! route is served only on that address; with `metrics_token` set it needs
//! `Authorization: Bearer <token>` (401 `invalid_metrics_token` otherwise); with neither it
//! is not served (404), so nothing is exposed by default.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use parley_core::{Channel, ConversationId};
use parley_store::{IngestBatch, IngestOutcome, IngestTarget};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::error::ApiError;

/// The content type of a scrape (OpenMetrics 1.0, which Prometheus negotiates natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    kind: &'static str,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// A kind of streamed response, counted in `parley_streams_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The dashboard's Test Chat answer stream.
    TestChat,
    /// The web widget's answer stream (typed or voice message).
    WidgetChat,
    /// A streamed `POST /v1/chat/completions` through the gateway.
    Gateway,
    /// A live event stream (`GET /api/v1/events`, the dashboard's `/dashboard/events`, the
    /// widget's `/widget/v1/stream`).
    Events,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            StreamKind::TestChat => "test_chat",
            StreamKind::WidgetChat => "widget_chat",
            StreamKind::Gateway => "gateway",
            StreamKind::Events => "events",
        }
    }
}

/// Conversations whose channel is remembered for labelling appends, at most (then forgotten
/// all at once; a forgotten one costs one read on its next append).
const CHANNEL_CACHE: usize = 50_000;

/// The server's metrics (one registry per [`AppState`]).
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    ingested: Family<ChannelLabels, Counter>,
    provider_calls: Family<ProviderLabels, Counter>,
    provider_duration: Family<ProviderLabels, Histogram>,
    streams_active: Family<KindLabels, Gauge>,
    streams_total: Family<KindLabels, Counter>,
    db_connections: Family<StateLabels, Gauge>,
    writer_queue: Gauge,
    wal_bytes: Gauge,
    jobs: Family<JobLabels, Gauge>,
    jobs_oldest: Family<JobLabels, Gauge<f64, AtomicU64>>,
    inbox_depth: Gauge,
    inbox_oldest: Gauge<f64, AtomicU64>,
    /// Conversation → channel (a conversation's channel never changes).
    channels: Mutex<HashMap<ConversationId, Channel>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn http_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn provider_histogram() -> Histogram {
    // 50 ms to about 205 s.
    Histogram::new(exponential_buckets(0.05, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every Parley metric registered (all at zero).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "parley_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(http_histogram as fn() -> _);
        registry.register(
            "parley_http_request_duration_seconds",
            "Time from a request to its response head, in seconds",
            http_duration.clone(),
        );
        let ingested = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "parley_messages_ingested",
            "Messages newly stored, by conversation channel",
            ingested.clone(),
        );
        let provider_calls = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "parley_provider_calls",
            "LLM provider calls, by kind and outcome",
            provider_calls.clone(),
        );
        let provider_duration = Family::<ProviderLabels, Histogram>::new_with_constructor(
            provider_histogram as fn() -> _,
        );
        registry.register(
            "parley_provider_call_duration_seconds",
            "LLM provider call duration to the end of the answer, in seconds",
            provider_duration.clone(),
        );
        let streams_active = Family::<KindLabels, Gauge>::default();
        registry.register(
            "parley_streams_active",
            "Streamed responses open now (SSE and streamed gateway calls)",
            streams_active.clone(),
        );
        let streams_total = Family::<KindLabels, Counter>::default();
        registry.register(
            "parley_streams",
            "Streamed responses started",
            streams_total.clone(),
        );
        let db_connections = Family::<StateLabels, Gauge>::default();
        registry.register(
            "parley_db_connections",
            "Database connection pool: max, open, available, waiting",
            db_connections.clone(),
        );
        let writer_queue = Gauge::default();
        registry.register(
            "parley_sqlite_writer_queue",
            "SQLite: write jobs waiting for the single writer",
            writer_queue.clone(),
        );
        let wal_bytes = Gauge::default();
        registry.register(
            "parley_sqlite_wal_bytes",
            "SQLite: size of the write-ahead log file, in bytes",
            wal_bytes.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "parley_jobs",
            "Durable background jobs of every server on this database, by kind and state",
            jobs.clone(),
        );
        let jobs_oldest = Family::<JobLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "parley_jobs_oldest_age_seconds",
            "Age of the oldest job of each kind and state, in seconds",
            jobs_oldest.clone(),
        );
        let inbox_depth = Gauge::default();
        registry.register(
            "parley_webhook_inbox_depth",
            "Webhook deliveries received and not yet processed",
            inbox_depth.clone(),
        );
        let inbox_oldest = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "parley_webhook_inbox_oldest_age_seconds",
            "Age of the oldest unprocessed webhook delivery, in seconds (0 when none)",
            inbox_oldest.clone(),
        );
        for kind in [
            StreamKind::TestChat,
            StreamKind::WidgetChat,
            StreamKind::Gateway,
        ] {
            let labels = KindLabels { kind: kind.label() };
            let _ = streams_active.get_or_create(&labels);
            let _ = streams_total.get_or_create(&labels);
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            ingested,
            provider_calls,
            provider_duration,
            streams_active,
            streams_total,
            db_connections,
            writer_queue,
            wal_bytes,
            jobs,
            jobs_oldest,
            inbox_depth,
            inbox_oldest,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one answered request.
    fn observe_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one LLM provider call: `kind` `chat` or `gateway`, `outcome` `ok` or an error
    /// code ([`crate::assistant::provider::ProviderError::code`]).
    pub fn provider_call(&self, kind: &'static str, outcome: &str, took: Duration) {
        let labels = ProviderLabels {
            kind,
            outcome: outcome.to_owned(),
        };
        self.provider_calls.get_or_create(&labels).inc();
        self.provider_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts the messages a committed ingest stored, by channel. A batch that created its
    /// conversation names its channel; an append's channel is remembered from earlier, else
    /// read once from the store.
    pub async fn ingested(
        &self,
        st: &AppState,
        workspace: parley_core::WorkspaceId,
        batches: &[(Option<Channel>, usize)],
        outcomes: &[IngestOutcome],
    ) {
        for ((known, _), outcome) in batches.iter().zip(outcomes) {
            let stored = outcome.stored();
            let id = outcome.conversation_id;
            let channel = match known.filter(|_| outcome.created) {
                Some(c) => Some(c),
                None => self.channels.lock().ok().and_then(|m| m.get(&id).copied()),
            };
            let channel = match channel {
                Some(c) => Some(c),
                None if stored == 0 => None,
                None => match st
                    .store
                    .conversations()
                    .get_conversation(workspace, id)
                    .await
                {
                    Ok(Some(detail)) => Some(detail.summary.channel),
                    _ => None,
                },
            };
            let Some(channel) = channel else { continue };
            if let Ok(mut m) = self.channels.lock() {
                if m.len() >= CHANNEL_CACHE {
                    m.clear();
                }
                m.insert(id, channel);
            }
            if stored > 0 {
                self.ingested
                    .get_or_create(&ChannelLabels {
                        channel: channel.to_string(),
                    })
                    .inc_by(stored as u64);
            }
        }
    }

    /// `body`'s stream as a response body counted in `parley_streams_*` while it is open
    /// (until it ends or the client goes away).
    pub fn stream_body<S, E>(&self, kind: StreamKind, body: S) -> Body
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<axum::BoxError> + 'static,
    {
        let labels = KindLabels { kind: kind.label() };
        self.streams_total.get_or_create(&labels).inc();
        let gauge = self.streams_active.get_or_create(&labels).clone();
        gauge.inc();
        let guard = StreamGuard(gauge);
        Body::from_stream(body.map(move |chunk| {
            let _open = &guard;
            chunk
        }))
    }

    /// Sets the job gauges from the queue as it is now (kinds and states absent now are
    /// dropped, not left at their last value).
    fn set_jobs(&self, queue: &[crate::jobs::QueueGauge]) {
        self.jobs.clear();
        self.jobs_oldest.clear();
        let (mut depth, mut oldest_ms) = (0i64, 0i64);
        for q in queue {
            let labels = JobLabels {
                kind: q.kind.clone(),
                state: q.state,
            };
            self.jobs.get_or_create(&labels).set(q.count as i64);
            self.jobs_oldest
                .get_or_create(&labels)
                .set(q.oldest_age_ms as f64 / 1000.0);
            if q.inbox && q.state != "failed" {
                depth += q.count as i64;
                oldest_ms = oldest_ms.max(q.oldest_age_ms);
            }
        }
        self.inbox_depth.set(depth);
        self.inbox_oldest.set(oldest_ms as f64 / 1000.0);
    }

    /// The scrape: every metric, the pool figures read now.
    fn encode(&self, pool: &parley_store::PoolStats) -> String {
        for (state, v) in [
            ("max", pool.max),
            ("open", pool.size),
            ("available", pool.available),
            ("waiting", pool.waiting),
        ] {
            self.db_connections
                .get_or_create(&StateLabels { state })
                .set(v as i64);
        }
        self.writer_queue.set(pool.writer_queue.unwrap_or(0) as i64);
        self.wal_bytes.set(pool.wal_bytes.unwrap_or(0) as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements a stream gauge when the stream is dropped.
struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The `(channel of a new conversation, message count)` of each batch, for
/// [`Metrics::ingested`].
pub fn batch_channels(batches: &[IngestBatch]) -> Vec<(Option<Channel>, usize)> {
    batches
        .iter()
        .map(|b| match &b.target {
            IngestTarget::New(c) => (Some(c.channel), b.messages.len()),
            IngestTarget::Existing(_) => (None, b.messages.len()),
        })
        .collect()
}

/// Middleware: counts every request by route template, method and status, with its latency.
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    st.metrics
        .observe_request(&route, &method, res.status().as_u16(), started.elapsed());
    res
}

/// `GET /metrics` (see the module docs for who may call it). Errors: 404 when metrics are not
/// served here, 401 `invalid_metrics_token`.
pub async fn scrape(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if st.settings.metrics_listen.is_some() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are served on the metrics_listen address",
        )
        .into_response();
    }
    scrape_checked(&st, &headers).await
}

/// `GET /metrics` on the `metrics_listen` address: the token is still checked when set.
pub async fn scrape_separate(State(st): State<AppState>, headers: HeaderMap) -> Response {
    scrape_checked(&st, &headers).await
}

async fn scrape_checked(st: &AppState, headers: &HeaderMap) -> Response {
    match &st.settings.metrics_token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !crate::auth::session::constant_time_eq(given.as_bytes(), token.as_bytes()) {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_metrics_token",
                    "send the metrics token as Authorization: Bearer <token>",
                )
                .into_response();
            }
        }
        None if st.settings.metrics_listen.is_none() => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "metrics are off: set metrics_token or metrics_listen",
            )
            .into_response();
        }
        None => {}
    }
    match crate::jobs::queue_gauges(st).await {
        Ok(queue) => st.metrics.set_jobs(&queue),
        // The other figures are still worth a scrape; the job gauges keep their last values.
        Err(e) => tracing::warn!(error = %e, "metrics: could not read the job queue"),
    }
    let text = st.metrics.encode(&st.store.pool_stats());
    let mut res = text.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    res
}

/// The router of the separate metrics listener (`metrics_listen`): `/metrics` only.
pub fn separate_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape_separate))
        .with_state(state)
}
