//! The Parley server: the `parley` binary's HTTP API, ingestion path and command line.
//!
//! - [`api`]: the JSON API v1 and its OpenAPI document.
//! - [`assistant`]: assistants' settings, the LLM runtime and the OpenAI-compatible gateway.
//! - [`ingest`]: the one path every message takes into the store.
//! - [`channels`]: WhatsApp and Telegram webhooks, replies and media.
//! - [`transfer`] and [`import`]: JSONL/CSV export, JSONL and SGD import.
//! - [`dashboard`]: the server-rendered web dashboard.
//! - [`auth`]: API keys, passwords, sign-in sessions.
//! - [`config`]: settings from flags, environment, file, defaults.
//! - [`migrate_store`]: copying a workspace between stores (SQLite to PostgreSQL).
//! - [`secrets`]: sealing provider keys and other secrets at rest.
//! - [`cli`]: the `parley` command line.
//! - [`widget`]: the embeddable web widget's script, public endpoints and visitor tracker.

pub mod api;
pub mod assistant;
pub mod auth;
pub mod bench;
pub mod channels;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod import;
pub mod ingest;
pub mod migrate_store;
pub mod secrets;
pub mod transfer;
pub mod widget;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parley_core::pricing::PriceTable;
use parley_store::Store;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

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
    /// Recently verified API keys (see [`auth::api_key::KeyCache`]).
    pub key_cache: Arc<auth::api_key::KeyCache>,
    /// Seals and opens stored secrets (see [`secrets`]).
    pub secrets: secrets::SecretKey,
    /// The HTTP client for LLM providers (see [`assistant::provider::http_client`]).
    pub http: reqwest::Client,
    /// One assistant turn at a time per conversation (see [`assistant::runtime`]).
    pub turn_locks: Arc<assistant::runtime::TurnLocks>,
    /// The web widget's rate limits (see [`widget`]).
    pub widget: Arc<widget::WidgetState>,
}

impl AppState {
    /// Opens the store the settings name and loads the price table.
    /// Errors: the database cannot be opened or migrated; the price table file is invalid.
    pub async fn open(
        settings: Settings,
    ) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
        let prices = settings.load_prices()?;
        let secrets = secrets::SecretKey::load(settings.secret_key.as_deref(), &settings.data_dir)?;
        let store = parley_store::open(&settings.database_url).await?;
        let widget = widget::WidgetState::open(&settings)?;
        Ok(AppState {
            store,
            prices: Arc::new(prices),
            settings: Arc::new(settings),
            key_cache: Arc::default(),
            secrets,
            http: assistant::provider::http_client(),
            turn_locks: Arc::default(),
            widget: Arc::new(widget),
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
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /healthz`: the process is up (200 `ok`).
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 when the store answers, 503 otherwise.
async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.list_workspaces().await {
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
/// lets in-flight requests finish (their writes are committed before they are answered).
/// Errors: the listener fails.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let app = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Streamed answers (Test Chat, the gateway) are written a chunk at a time as they arrive:
    // with Nagle's algorithm on, a chunk written after the headers would wait for the client's
    // delayed ACK (~40 ms on Linux) before leaving.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
