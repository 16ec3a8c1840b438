//! A stand-in for Telegram's Bot API on 127.0.0.1, for the tests. It answers
//! `POST /bot{token}/{method}` for `getMe` (the bot whose id the token starts with),
//! `setWebhook`, `deleteWebhook`, `sendMessage` and `getFile`
//! with the Bot API's envelopes (`{"ok": true, "result": ...}` or `{"ok": false, "error_code",
//! "description", "parameters"}`), serves files at `GET /file/bot{token}/{file_path}`, refuses
//! any other token (401 `Unauthorized`), and fails on demand: scripted answers for the next
//! `sendMessage` calls (a 429 with `retry_after`, a blocked bot) and failing file downloads.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A Bot API call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method (`sendMessage`...).
    pub method: String,
    /// Its JSON body.
    pub body: Value,
}

#[derive(Default)]
struct FakeState {
    token: String,
    send_script: VecDeque<(u16, Value)>,
    files: HashMap<String, (String, Vec<u8>)>,
    failing_downloads: u32,
    calls: Vec<Call>,
    downloads: u32,
    next_message_id: i64,
}

type Shared = Arc<Mutex<FakeState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, FakeState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake Bot API; it stops when dropped.
pub struct FakeBotApi {
    /// `http://127.0.0.1:PORT`: the `api_base_url` to configure.
    pub base_url: String,
    state: Shared,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeBotApi {
    /// Starts the fake for the bot with `token`. Errors: the port cannot be bound.
    pub async fn start(token: &str) -> std::io::Result<FakeBotApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: Shared = Arc::new(Mutex::new(FakeState {
            token: token.to_owned(),
            next_message_id: 1000,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .route("/file/{bot}/{*path}", get(file))
            .with_state(state.clone());
        let stop = crate::serve(listener, app);
        Ok(FakeBotApi {
            base_url: format!("http://{addr}"),
            state,
            _stop: stop,
        })
    }

    /// The next `sendMessage` is answered with this status and body.
    pub fn fail_next_send(&self, status: u16, body: Value) {
        lock(&self.state).send_script.push_back((status, body));
    }

    /// Serves a file: `getFile` for `file_id` answers `file_path`, whose bytes are `bytes`.
    pub fn add_file(&self, file_id: &str, file_path: &str, bytes: &[u8]) {
        lock(&self.state)
            .files
            .insert(file_id.to_owned(), (file_path.to_owned(), bytes.to_vec()));
    }

    /// The next `n` file downloads fail with HTTP 502.
    pub fn fail_downloads(&self, n: u32) {
        lock(&self.state).failing_downloads = n;
    }

    /// Every method call received, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// File download requests received (failed ones included).
    pub fn downloads(&self) -> u32 {
        lock(&self.state).downloads
    }
}

fn envelope(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn method(
    State(st): State<Shared>,
    Path((bot, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = lock(&st);
    if bot != format!("bot{}", s.token) {
        return envelope(
            StatusCode::UNAUTHORIZED,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        );
    }
    s.calls.push(Call {
        method: method.clone(),
        body: body.clone(),
    });
    match method.as_str() {
        // A `User` as the Bot API describes a bot (core.telegram.org/bots/api#getme).
        "getMe" => {
            let id: i64 = s
                .token
                .split(':')
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or_default();
            envelope(
                StatusCode::OK,
                json!({"ok": true, "result": {
                    "id": id, "is_bot": true, "first_name": "Parley Test Bot",
                    "username": "parley_test_bot", "can_join_groups": true,
                    "can_read_all_group_messages": false, "supports_inline_queries": false,
                }}),
            )
        }
        "setWebhook" | "deleteWebhook" => {
            envelope(StatusCode::OK, json!({"ok": true, "result": true}))
        }
        "sendMessage" => {
            if let Some((status, answer)) = s.send_script.pop_front() {
                return envelope(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    answer,
                );
            }
            s.next_message_id += 1;
            envelope(
                StatusCode::OK,
                json!({"ok": true, "result": {
                    "message_id": s.next_message_id,
                    "chat": {"id": body["chat_id"], "type": "private"},
                    "date": 1_763_700_000,
                    "text": body["text"],
                }}),
            )
        }
        "getFile" => {
            let id = body["file_id"].as_str().unwrap_or_default();
            match s.files.get(id) {
                Some((path, bytes)) => envelope(
                    StatusCode::OK,
                    json!({"ok": true, "result": {"file_id": id, "file_unique_id": "U",
                           "file_size": bytes.len(), "file_path": path}}),
                ),
                None => envelope(
                    StatusCode::BAD_REQUEST,
                    json!({"ok": false, "error_code": 400, "description": "Bad Request: invalid file_id"}),
                ),
            }
        }
        _ => envelope(
            StatusCode::NOT_FOUND,
            json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}),
        ),
    }
}

async fn file(State(st): State<Shared>, Path((bot, path)): Path<(String, String)>) -> Response {
    let mut s = lock(&st);
    s.downloads += 1;
    if bot != format!("bot{}", s.token) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if s.failing_downloads > 0 {
        s.failing_downloads -= 1;
        return StatusCode::BAD_GATEWAY.into_response();
    }
    match s.files.values().find(|(p, _)| *p == path) {
        Some((_, bytes)) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
