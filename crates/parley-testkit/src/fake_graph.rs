//! A stand-in for Meta's Graph API (WhatsApp Cloud API) on 127.0.0.1, for the tests: it
//! receives Parley's sends (`POST /v21.0/{phone-number-id}/messages`, answered like Meta does
//! with `{"messaging_product", "contacts", "messages": [{"id": "wamid..."}]}`), answers a phone
//! number (`GET /v21.0/{phone-number-id}`: `id`, `display_phone_number`, `verified_name`,
//! `quality_rating`, `messaging_limit_tier`) and a WhatsApp Business Account's numbers
//! (`GET /v21.0/{waba-id}/phone_numbers`: `{"data": [...], "paging": {"cursors"}}`), lists an
//! account's message templates (`GET /v21.0/{waba-id}/message_templates`: `{"data": [{"name",
//! "language", "status", "category", "id", "components"}], "paging"}`), serves
//! media (`GET /v21.0/{media-id}` gives a URL on the fake, `GET /files/{media-id}` the bytes),
//! and fails on demand: a scripted Graph error body with its status for the next sends, or a
//! number of failing file downloads. Every route requires the one access token the fake was
//! started with (else Meta's 401 `OAuthException` 190); an object it does not hold is Meta's
//! 400 `GraphMethodException` 100/33.
//!
//! **Messenger.** Facebook Pages added with [`FakeGraph::add_page`] each have their own Page
//! access token: `GET /v21.0/me` with it answers the Page (`{"id", "name"}`; with the fake's
//! main token a user that is no Page), and the Send API (`POST /v21.0/me/messages`) takes only
//! Page tokens and answers `{"recipient_id", "message_id": "m_fake-N"}` (or the scripted
//! failure). Attachment files are served without a token, as Meta's CDN serves them, at
//! `GET /cdn/{id}` ([`FakeGraph::cdn_url`]); they fail like `/files` do.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST /v21.0/{id}/messages` or `GET /files/{id}`...
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The JSON body (null for GETs).
    pub body: Value,
}

#[derive(Default)]
struct FakeState {
    base: String,
    token: String,
    send_script: VecDeque<(u16, Value)>,
    media: HashMap<String, (String, Vec<u8>)>,
    /// Phone number id -> (business account id, quality rating, messaging limit tier).
    phone_numbers: HashMap<String, (String, String, String)>,
    /// The host media URLs are given with (default: the fake's own address).
    media_host: Option<String>,
    failing_downloads: u32,
    /// Business account id -> its message templates, as Meta lists them.
    templates: HashMap<String, Vec<Value>>,
    received: Vec<Received>,
    sent: u64,
    /// Page access token -> (page id, page name).
    pages: HashMap<String, (String, String)>,
}

type Shared = Arc<Mutex<FakeState>>;

/// A running fake Graph API; it stops when dropped.
pub struct FakeGraph {
    /// `http://127.0.0.1:PORT/v21.0`: the `graph_base_url` to configure.
    pub base_url: String,
    state: Shared,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, FakeState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeGraph {
    /// Starts the fake on a free loopback port; it accepts `Bearer {access_token}` only.
    /// Errors: the port cannot be bound.
    pub async fn start(access_token: &str) -> std::io::Result<FakeGraph> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: Shared = Arc::new(Mutex::new(FakeState {
            base: format!("http://{addr}"),
            token: access_token.to_owned(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/v21.0/{id}/messages", post(send))
            .route("/v21.0/{id}/phone_numbers", get(phone_numbers))
            .route("/v21.0/{id}/message_templates", get(message_templates))
            .route("/v21.0/{id}", get(media_info))
            .route("/files/{id}", get(media_file))
            .route("/cdn/{id}", get(cdn_file))
            .with_state(state.clone());
        let stop = crate::serve(listener, app);
        Ok(FakeGraph {
            base_url: format!("http://{addr}/v21.0"),
            state,
            _stop: stop,
        })
    }

    /// The next send is answered with this HTTP status and body (a Graph error body such as
    /// `{"error": {...}}`).
    pub fn fail_next_send(&self, status: u16, body: Value) {
        lock(&self.state).send_script.push_back((status, body));
    }

    /// Lists these templates (Meta's objects: `name`, `language`, `status`, `category`,
    /// `components`...) for WhatsApp Business Account `business_account_id`.
    pub fn set_templates(&self, business_account_id: &str, templates: Vec<Value>) {
        lock(&self.state)
            .templates
            .insert(business_account_id.to_owned(), templates);
    }

    /// Serves a media file under `id`.
    pub fn add_media(&self, id: &str, mime_type: &str, bytes: &[u8]) {
        lock(&self.state)
            .media
            .insert(id.to_owned(), (mime_type.to_owned(), bytes.to_vec()));
    }

    /// Serves phone number `id` of WhatsApp Business Account `business_account_id`, with its
    /// `quality_rating` and `messaging_limit_tier`, at `GET /v21.0/{id}` and in
    /// `GET /v21.0/{business_account_id}/phone_numbers`.
    pub fn set_phone_number(
        &self,
        business_account_id: &str,
        id: &str,
        quality_rating: &str,
        messaging_limit_tier: &str,
    ) {
        lock(&self.state).phone_numbers.insert(
            id.to_owned(),
            (
                business_account_id.to_owned(),
                quality_rating.to_owned(),
                messaging_limit_tier.to_owned(),
            ),
        );
    }

    /// Adds Facebook Page `page_id` named `name`, whose Page access token is `page_token`.
    pub fn add_page(&self, page_id: &str, name: &str, page_token: &str) {
        lock(&self.state)
            .pages
            .insert(page_token.to_owned(), (page_id.to_owned(), name.to_owned()));
    }

    /// The URL of media file `id` as a Messenger attachment names it (served without a token).
    pub fn cdn_url(&self, id: &str) -> String {
        format!("{}/cdn/{id}", lock(&self.state).base)
    }

    /// The bodies of the Messenger Send API calls received (`POST /v21.0/me/messages`),
    /// oldest first.
    pub fn messenger_sends(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.path == "/v21.0/me/messages")
            .map(|r| r.body)
            .collect()
    }

    /// Media URLs name `host` (e.g. `localhost`) instead of the fake's IP address, on the
    /// fake's port.
    pub fn set_media_host(&self, host: &str) {
        lock(&self.state).media_host = Some(host.to_owned());
    }

    /// The next `n` file downloads fail with HTTP 500.
    pub fn fail_downloads(&self, n: u32) {
        lock(&self.state).failing_downloads = n;
    }

    /// Every request received, oldest first.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// The bodies of the `messages` sends received, oldest first.
    pub fn sends(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.path.ends_with("/messages"))
            .map(|r| r.body)
            .collect()
    }
}

fn authorized(s: &FakeState, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", s.token))
}

/// The Page whose access token the request carries.
fn page_of(s: &FakeState, headers: &HeaderMap) -> Option<(String, String)> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())?
        .strip_prefix("Bearer ")?;
    s.pages.get(token).cloned()
}

fn record(s: &mut FakeState, path: String, headers: &HeaderMap, body: Value) {
    s.received.push(Received {
        path,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    });
}

/// Meta's answer to a bad token (error 190, `OAuthException`), HTTP 401.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {
            "message": "Invalid OAuth access token - Cannot parse access token",
            "type": "OAuthException", "code": 190, "fbtrace_id": "AbCdEfGh"}})),
    )
        .into_response()
}

async fn send(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = lock(&st);
    record(
        &mut s,
        format!("/v21.0/{id}/messages"),
        &headers,
        body.clone(),
    );
    if id == "me" {
        return messenger_send(&mut s, &headers, &body);
    }
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    if let Some((status, error)) = s.send_script.pop_front() {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            axum::Json(error),
        )
            .into_response();
    }
    s.sent += 1;
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": format!("wamid.fake-{}", s.sent)}],
    }))
    .into_response()
}

/// The Send API: a Page token only; the scripted failure first, else a new `mid`.
fn messenger_send(s: &mut FakeState, headers: &HeaderMap, body: &Value) -> Response {
    if page_of(s, headers).is_none() {
        return unauthorized();
    }
    if let Some((status, error)) = s.send_script.pop_front() {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            axum::Json(error),
        )
            .into_response();
    }
    s.sent += 1;
    axum::Json(json!({
        "recipient_id": body["recipient"]["id"],
        "message_id": format!("m_fake-{}", s.sent),
    }))
    .into_response()
}

async fn media_info(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&st);
    record(&mut s, format!("/v21.0/{id}"), &headers, Value::Null);
    if id == "me" {
        // A Page token's node is its Page; the main token's is a (system) user.
        return match page_of(&s, &headers) {
            Some((page, name)) => axum::Json(json!({"id": page, "name": name})).into_response(),
            None if authorized(&s, &headers) => {
                axum::Json(json!({"id": "100000000000001", "name": "System User"})).into_response()
            }
            None => unauthorized(),
        };
    }
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    if s.phone_numbers.contains_key(&id) {
        return axum::Json(phone_number(&s, &id)).into_response();
    }
    match s.media.get(&id) {
        Some((mime, bytes)) => {
            let base = match &s.media_host {
                Some(host) => {
                    let port = s.base.rsplit(':').next().unwrap_or_default();
                    format!("http://{host}:{port}")
                }
                None => s.base.clone(),
            };
            axum::Json(json!({
                "messaging_product": "whatsapp",
                "url": format!("{base}/files/{id}"),
                "mime_type": mime,
                "file_size": bytes.len(),
                "id": id,
            }))
            .into_response()
        }
        None => no_such_object(&id),
    }
}

/// A phone number node as `GET /{phone-number-id}` answers it.
fn phone_number(s: &FakeState, id: &str) -> Value {
    let (_, quality, tier) = &s.phone_numbers[id];
    json!({
        "id": id,
        "display_phone_number": format!("+1 555-{}", &id[id.len().saturating_sub(7)..]),
        "verified_name": "Parley Test Business",
        "quality_rating": quality,
        "messaging_limit_tier": tier,
    })
}

/// Meta's answer for an object that does not exist or the token cannot see (HTTP 400).
fn no_such_object(id: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {
            "message": format!("Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"),
            "type": "GraphMethodException", "code": 100, "error_subcode": 33,
            "fbtrace_id": "AbCdEfGh"}})),
    )
        .into_response()
}

/// `GET /v21.0/{waba-id}/phone_numbers`: the account's numbers, one page.
async fn phone_numbers(
    State(st): State<Shared>,
    Path(waba): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&st);
    record(
        &mut s,
        format!("/v21.0/{waba}/phone_numbers"),
        &headers,
        Value::Null,
    );
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let mut ids: Vec<&String> = s
        .phone_numbers
        .iter()
        .filter(|(_, (account, _, _))| *account == waba)
        .map(|(id, _)| id)
        .collect();
    if ids.is_empty() {
        return no_such_object(&waba);
    }
    ids.sort();
    let data: Vec<Value> = ids.iter().map(|id| phone_number(&s, id)).collect();
    axum::Json(json!({
        "data": data,
        "paging": {"cursors": {"before": "QVFIUmRfYmVmb3Jl", "after": "QVFIUmRfYWZ0ZXI"}},
    }))
    .into_response()
}

/// `GET /v21.0/{waba-id}/message_templates`: the account's templates, one page (an account
/// the fake does not hold is Meta's 100/33 error).
async fn message_templates(
    State(st): State<Shared>,
    Path(waba): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&st);
    record(
        &mut s,
        format!("/v21.0/{waba}/message_templates"),
        &headers,
        Value::Null,
    );
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    match s.templates.get(&waba) {
        Some(list) => axum::Json(json!({
            "data": list,
            "paging": {"cursors": {"before": "QVFIUmJlZm9yZQ", "after": "QVFIUmFmdGVy"}},
        }))
        .into_response(),
        None => no_such_object(&waba),
    }
}

async fn media_file(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&st);
    record(&mut s, format!("/files/{id}"), &headers, Value::Null);
    if !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if s.failing_downloads > 0 {
        s.failing_downloads -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    match s.media.get(&id) {
        Some((mime, bytes)) => ([("content-type", mime.clone())], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /cdn/{id}`: a media file as Meta's CDN serves Messenger attachments (no token).
async fn cdn_file(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&st);
    record(&mut s, format!("/cdn/{id}"), &headers, Value::Null);
    if s.failing_downloads > 0 {
        s.failing_downloads -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    match s.media.get(&id) {
        Some((mime, bytes)) => ([("content-type", mime.clone())], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
