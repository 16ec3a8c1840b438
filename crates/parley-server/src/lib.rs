//! The Parley server: the `parley` binary's HTTP API, ingestion path and command line.
//!
//! - [`api`]: the JSON API v1 and its OpenAPI document.
//! - [`assistant`]: assistants' settings, the LLM runtime and the OpenAI-compatible gateway.
//! - [`ingest`]: the one path every message takes into the store.
//! - [`jobs`]: background work from the durable job queue (webhook deliveries, answers,
//!   downloads), and [`retry`]: the one retry policy.
//! - [`channels`]: WhatsApp and Telegram webhooks, replies and media.
//! - [`transfer`] and [`import`]: JSONL/CSV export, JSONL and SGD import.
//! - [`dashboard`]: the server-rendered web dashboard.
//! - [`auth`]: API keys, passwords, sign-in sessions.
//! - [`config`]: settings from flags, environment, file, defaults.
//! - [`migrate_store`]: copying a workspace between stores (SQLite to PostgreSQL).
//! - [`secrets`]: sealing provider keys and other secrets at rest.
//! - [`net`]: the guarded HTTP client for every request to a URL a workspace gave.
//! - [`cli`]: the `parley` command line.
//! - [`widget`]: the embeddable web widget's script, public endpoints and visitor tracker.
//! - [`client_addr`]: the client's address behind trusted reverse proxies.
//! - [`metrics`]: `GET /metrics` (Prometheus/OpenMetrics text).
//! - [`backup`]: `parley backup` / `parley restore` of a SQLite data directory.
//! - [`responses`]: what every response passes through (fused streamed bodies, uniform error
//!   bodies).

pub mod api;
pub mod assistant;
pub mod auth;
pub mod backup;
pub mod body;
pub mod bulk;
pub mod channels;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod export;
pub mod import;
pub mod ingest;
pub mod insights;
pub mod jobs;
pub mod metrics;
pub mod migrate_store;
pub mod net;
pub mod peaks;
pub mod responses;
pub mod retention;
pub mod retry;
pub mod secrets;
pub mod sse;
pub mod team;
pub mod transfer;
pub mod webhooks;
pub mod widget;
pub mod workspace_settings;
pub mod workspaces;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parley_core::pricing::PriceTable;
use parley_store::Store;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::config::Settings;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The conversation store.
    pub store: Arc<dyn Store>,
    /// The model price table (built-in merged with the operator's file).
    pub prices: Arc<PriceTable>,
    /// Resolved settings.
    pub settings: Arc<Settings>,
    /// Seals and opens stored secrets (see [`secrets`]).
    pub secrets: secrets::SecretKey,
    /// The outgoing HTTP clients: guarded for URLs workspaces gave, trusted for the
    /// operator's own (see [`net`]). There is deliberately no plain client here.
    pub net: net::Net,
    /// The background worker's id, settings and wake-up signal (see [`jobs`]).
    pub jobs: Arc<jobs::Jobs>,
    /// The web widget's rate limits (see [`widget`]).
    pub widget: Arc<widget::WidgetState>,
    /// This server's metrics (see [`metrics`]).
    pub metrics: Arc<metrics::Metrics>,
    /// The live event hub (see [`events`]).
    pub events: Arc<events::EventHub>,
    /// Wakes this server's outgoing webhook sender (see [`webhooks`]).
    pub webhook_signal: Arc<webhooks::WebhookSignal>,
}

impl AppState {
    /// Opens the store the settings name and loads the price table.
    /// Errors: the database cannot be opened or migrated; the price table file is invalid.
    pub async fn open(
        settings: Settings,
    ) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
        let prices = settings.load_prices()?;
        let secrets = secrets::SecretKey::load(settings.secret_key.as_deref(), &settings.data_dir)?;
        let store = parley_store::open_with(
            &settings.database_url,
            &parley_store::OpenOptions {
                sqlite_wal_max_bytes: settings.sqlite_wal_max_bytes,
            },
        )
        .await?;
        let widget = widget::WidgetState::open(&settings)?;
        let net = net::Net::new(&settings.network);
        let jobs = Arc::new(jobs::Jobs::new(&settings.jobs));
        Ok(AppState {
            store,
            prices: Arc::new(prices),
            settings: Arc::new(settings),
            secrets,
            net,
            jobs,
            widget: Arc::new(widget),
            metrics: Arc::default(),
            events: Arc::default(),
            webhook_signal: Arc::default(),
        })
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .nest("/api/v1", api::router(&state))
        .nest("/v1", assistant::gateway::router(&state))
        .merge(dashboard::router())
        .merge(widget::router(&state))
        .merge(channels::router())
        .route("/metrics", get(metrics::scrape))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn(responses::uniform_errors))
        // Inside the compression layer, which polls a body once more after its end.
        .layer(axum::middleware::map_response(
            responses::fuse_streamed_bodies,
        ))
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(NewRequestId))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            client_addr::layer,
        ))
        .with_state(state)
}

/// Makes a request id (a UUIDv7) for a request that did not bring a believable one (see
/// [`client_addr::layer`]).
#[derive(Debug, Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// The span every request's log lines carry: method, path (no query string: it may hold a
/// search), request id and client address.
fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get(client_addr::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let client = req
        .extensions()
        .get::<client_addr::ClientAddr>()
        .map(|c| c.ip.to_string())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
        client = %client,
    )
}

/// `GET /healthz`: the process is up (200 `ok`).
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 when the store answers, 503 otherwise.
async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.workspaces().list_workspaces().await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

/// `GET /openapi.json`.
async fn openapi() -> Response {
    let mut res = api::OPENAPI_JSON.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Serves the app on `listener` until `shutdown` resolves, then stops accepting connections and
/// lets in-flight requests finish (their writes are committed before they are answered). The
/// background worker ([`jobs::start`]) runs alongside and is stopped last, handing back what
/// it did not finish. Errors: the listener fails.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let app = app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Streamed answers (Test Chat, the gateway) are written a chunk at a time as they arrive:
    // with Nagle's algorithm on, a chunk written after the headers would wait for the client's
    // delayed ACK (~40 ms on Linux) before leaving.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    let store = state.store.clone();
    let worker = jobs::start(state.clone());
    let live = events::start(&state);
    let analyser = insights::start(state.clone());
    let webhooks = webhooks::start(state.clone());
    let retention = retention::start(state.clone());
    // Open event streams never end by themselves: shutting down ends them, so the graceful
    // shutdown can wait for every other response.
    let hub = state.events.clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    live.stop();
    webhooks.stop();
    retention.stop().await;
    if let Some(a) = analyser {
        a.stop().await;
    }
    worker.stop().await;
    served?;
    // Every request is answered and the worker has stopped: leave the store tidy (SQLite: an
    // empty write-ahead log).
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "closing the store");
    }
    Ok(())
}

/// Serves `GET /metrics` alone on `listener` (the `metrics_listen` address) until `shutdown`.
/// Errors: the listener fails.
pub async fn serve_metrics(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, metrics::separate_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
