//! Loopback stand-ins for the services Parley talks to, kept out of the shipped `parley`
//! binary (issue 12): a dev-dependency of `parley-server`'s tests, a dependency of
//! `parley-bench`, and `parley-stub-provider` for manual trials.
//!
//! - [`stub_provider`]: an OpenAI-compatible provider (chat completions, models, speech to
//!   text) answering from a script;
//! - [`fake_graph`]: Meta's Graph API (WhatsApp Cloud API, Messenger Pages and Send API);
//! - [`fake_bot_api`]: Telegram's Bot API.
//!
//! Each listens on a free port of 127.0.0.1 and stops when dropped.

pub mod fake_bot_api;
pub mod fake_graph;
pub mod stub_provider;

/// Serves `app` on `listener` in a background task until the returned sender is dropped (or
/// sent to), then shuts down gracefully. Each stand-in keeps the sender as its stop handle.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}
