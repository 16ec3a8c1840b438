//! The outgoing webhooks page (`/settings/webhooks`, admins only; issue 16): the workspace's
//! endpoints, a form to add one (URL, description, event types), edit, delete, reveal or
//! rotate the signing secret, and the delivery log of one endpoint (`?endpoint=ID`, newest 50)
//! with "Send again". Every change goes through the same functions as `/api/v1/webhooks`
//! ([`crate::webhooks`]); every form carries the session's CSRF token.
//!
//! A secret is shown only in the answer to the POST that created, revealed or rotated it
//! (never in a URL).

use askama::Template;
use axum::extract::{FromRequest, Path, Query, RawForm, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use parley_core::UserRole;
use parley_store::webhooks::{
    DeliveryStatus, WEBHOOK_EVENT_TYPES, WebhookDelivery, WebhookEndpoint, WebhookEndpointPatch,
};
use serde::Deserialize;
use uuid::Uuid;

use super::form::{AdminForm, AdminFormBody, PageError};
use super::pages::Layout;
use super::{error_page, format, tz_offset};
use crate::AppState;
use crate::auth::Session;
use crate::error::ApiError;
use crate::webhooks as hooks;

/// One endpoint as the page lists it.
struct EndpointRow {
    id: String,
    url: String,
    description: String,
    enabled: bool,
    types: Vec<String>,
    /// (type, checked) for the edit form.
    choices: Vec<(&'static str, bool)>,
    selected: bool,
}

/// One delivery of the log.
struct DeliveryRow {
    id: String,
    created: String,
    event_type: String,
    status: &'static str,
    attempts: u32,
    http_status: String,
    response_ms: String,
    next_attempt: String,
    error: String,
    excerpt: String,
    payload: String,
    can_resend: bool,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct Page {
    layout: Layout,
    endpoints: Vec<EndpointRow>,
    all_types: Vec<&'static str>,
    notice: Option<String>,
    error: Option<String>,
    /// (endpoint id, secret) just created, revealed or rotated.
    secret: Option<(String, String)>,
    /// The endpoint whose log is shown, with its URL.
    log_for: Option<(String, String)>,
    deliveries: Vec<DeliveryRow>,
}

/// The page's query: which endpoint's log, and the outcome of the last form.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    notice: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn forbidden() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        "Only administrators can manage webhooks.",
    )
}

fn delivery_row(d: &WebhookDelivery, tz: i32) -> DeliveryRow {
    DeliveryRow {
        id: d.id.to_string(),
        created: format::datetime(d.created_at, tz),
        event_type: d.event_type.clone(),
        status: d.status.as_str(),
        attempts: d.attempts,
        http_status: d.http_status.map(|s| s.to_string()).unwrap_or_default(),
        response_ms: d
            .response_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_default(),
        next_attempt: d
            .next_attempt_at
            .filter(|_| d.status == DeliveryStatus::Pending)
            .map(|t| format::datetime(t, tz))
            .unwrap_or_default(),
        error: d.error.clone().unwrap_or_default(),
        excerpt: d.response_excerpt.clone().unwrap_or_default(),
        payload: serde_json::from_str::<serde_json::Value>(&d.body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| d.body.clone()),
        can_resend: d.status != DeliveryStatus::Pending,
    }
}

/// Renders the page (the caller checked the role).
async fn render(
    st: &AppState,
    session: &Session,
    headers: &HeaderMap,
    q: PageQuery,
    secret: Option<(String, String)>,
) -> Response {
    let ws = session.user.workspace_id;
    let tz = tz_offset(headers);
    let (list, total) = match tokio::try_join!(
        st.store.webhooks().list_webhooks(ws),
        st.store.conversations().conversation_total(ws)
    ) {
        Ok(v) => v,
        Err(e) => return PageError::from(e).into_response(),
    };
    let selected: Option<&WebhookEndpoint> = q
        .endpoint
        .as_deref()
        .and_then(|e| e.parse::<Uuid>().ok())
        .and_then(|id| list.iter().find(|e| e.id == id))
        .or_else(|| {
            secret
                .as_ref()
                .and_then(|(id, _)| list.iter().find(|e| e.id.to_string() == *id))
        })
        .or(list.first());
    let deliveries = match selected {
        Some(e) => match st
            .store
            .webhooks()
            .list_deliveries(ws, e.id, None, 50)
            .await
        {
            Ok(d) => d.iter().map(|d| delivery_row(d, tz)).collect(),
            Err(e) => return PageError::from(e).into_response(),
        },
        None => Vec::new(),
    };
    let endpoints = list
        .iter()
        .map(|e| EndpointRow {
            id: e.id.to_string(),
            url: e.url.clone(),
            description: e.description.clone(),
            enabled: e.enabled,
            types: e.event_types.clone(),
            choices: WEBHOOK_EVENT_TYPES
                .iter()
                .map(|t| (*t, e.event_types.iter().any(|s| s == t)))
                .collect(),
            selected: selected.is_some_and(|s| s.id == e.id),
        })
        .collect();
    let page = Page {
        layout: Layout::new("settings", "Webhooks", session, tz, total),
        endpoints,
        all_types: WEBHOOK_EVENT_TYPES.to_vec(),
        notice: q.notice,
        error: q.error,
        secret,
        log_for: selected.map(|e| (e.id.to_string(), e.url.clone())),
        deliveries,
    };
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError(ApiError::internal(e)).into_response(),
    }
}

/// `GET /settings/webhooks`.
pub(super) async fn page(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    if session.user.role != UserRole::Admin {
        return forbidden();
    }
    render(&st, &session, &headers, q, None).await
}

/// A posted form's fields: `_csrf`, `url`, `description`, `enabled`, and one `event_types`
/// per checked box.
#[derive(Debug, Default)]
pub(super) struct Posted {
    csrf: String,
    url: String,
    description: String,
    enabled: bool,
    types: Vec<String>,
}

impl AdminFormBody for Posted {
    const ACTION: &'static str = "manage webhooks";
    fn csrf(&self) -> &str {
        &self.csrf
    }
    async fn read(req: axum::extract::Request, st: &AppState) -> Result<Self, Response> {
        let RawForm(raw) = RawForm::from_request(req, st)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(posted(&raw))
    }
}

super::form::admin_forms!(CsrfOnly => "manage webhooks");

fn posted(raw: &[u8]) -> Posted {
    let mut p = Posted::default();
    for (k, v) in form_urlencoded::parse(raw) {
        match &*k {
            "_csrf" => p.csrf = v.into_owned(),
            "url" => p.url = v.into_owned(),
            "description" => p.description = v.into_owned(),
            "enabled" => p.enabled = true,
            "event_types" => p.types.push(v.into_owned()),
            _ => {}
        }
    }
    p
}

/// The form's URL, description and event types, checked as the API checks them.
fn checked(st: &AppState, f: &Posted) -> Result<(String, String, Vec<String>), ApiError> {
    Ok((
        hooks::check_url(st, &f.url, "url")?,
        hooks::check_description(&f.description, "description")?,
        hooks::check_types(&f.types, "event_types")?,
    ))
}

fn back(endpoint: Option<&str>, key: &str, text: &str) -> Response {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(e) = endpoint {
        q.append_pair("endpoint", e);
    }
    q.append_pair(key, text);
    Redirect::to(&format!("/settings/webhooks?{}", q.finish())).into_response()
}

/// The endpoint id in a path; `Err` is the 404 page (boxed: a response is large).
fn endpoint_id(text: &str) -> Result<Uuid, Box<Response>> {
    text.parse().map_err(|_| {
        Box::new(error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such webhook.",
        ))
    })
}

/// `POST /settings/webhooks`: adds an endpoint and shows its secret.
pub(super) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    AdminForm { session, form: f }: AdminForm<Posted>,
) -> Response {
    let (url, description, types) = match checked(&st, &f) {
        Ok(v) => v,
        Err(e) => return back(None, "error", &e.message),
    };
    match hooks::create(
        &st,
        session.user.workspace_id,
        url,
        description,
        types,
        true,
    )
    .await
    {
        Ok((e, secret)) => {
            let q = PageQuery {
                endpoint: Some(e.id.to_string()),
                notice: Some("Endpoint added. Copy its signing secret now.".into()),
                error: None,
            };
            render(&st, &session, &headers, q, Some((e.id.to_string(), secret))).await
        }
        Err(e) => back(None, "error", &e.message),
    }
}

/// `POST /settings/webhooks/{id}`: saves the edit form.
pub(super) async fn edit(
    State(st): State<AppState>,
    Path(id): Path<String>,
    AdminForm { session, form: f }: AdminForm<Posted>,
) -> Response {
    let eid = match endpoint_id(&id) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let patch = match checked(&st, &f) {
        Ok((url, description, types)) => WebhookEndpointPatch {
            url: Some(url),
            description: Some(description),
            event_types: Some(types),
            enabled: Some(f.enabled),
            ..Default::default()
        },
        Err(e) => return back(Some(&id), "error", &e.message),
    };
    match hooks::update(&st, session.user.workspace_id, eid, patch).await {
        Ok(_) => back(Some(&id), "notice", "Endpoint saved."),
        Err(e) => back(Some(&id), "error", &e.message),
    }
}

/// The CSRF token alone (delete, reveal, rotate, send again).
#[derive(Debug, Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// `POST /settings/webhooks/{id}/delete`.
pub(super) async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
    AdminForm { session, .. }: AdminForm<CsrfOnly>,
) -> Response {
    let eid = match endpoint_id(&id) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    match st
        .store
        .webhooks()
        .delete_webhook(session.user.workspace_id, eid)
        .await
    {
        Ok(true) => back(None, "notice", "Endpoint deleted, with its delivery log."),
        Ok(false) => error_page(StatusCode::NOT_FOUND, "Not found", "No such webhook."),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// `POST /settings/webhooks/{id}/secret`: shows the secret.
pub(super) async fn reveal(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AdminForm { session, .. }: AdminForm<CsrfOnly>,
) -> Response {
    let eid = match endpoint_id(&id) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let e = match st
        .store
        .webhooks()
        .get_webhook(session.user.workspace_id, eid)
        .await
    {
        Ok(Some(e)) => e,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "Not found", "No such webhook."),
        Err(e) => return PageError::from(e).into_response(),
    };
    match hooks::reveal(&st, &e) {
        Ok(secret) => {
            let q = PageQuery {
                endpoint: Some(id.clone()),
                ..Default::default()
            };
            render(&st, &session, &headers, q, Some((id, secret))).await
        }
        Err(e) => PageError(e).into_response(),
    }
}

/// `POST /settings/webhooks/{id}/rotate`: a new secret, shown.
pub(super) async fn rotate(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AdminForm { session, .. }: AdminForm<CsrfOnly>,
) -> Response {
    let eid = match endpoint_id(&id) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    match hooks::rotate(&st, session.user.workspace_id, eid).await {
        Ok(secret) => {
            let q = PageQuery {
                endpoint: Some(id.clone()),
                notice: Some("New secret made; the old one no longer signs.".into()),
                error: None,
            };
            render(&st, &session, &headers, q, Some((id, secret))).await
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            error_page(StatusCode::NOT_FOUND, "Not found", "No such webhook.")
        }
        Err(e) => PageError(e).into_response(),
    }
}

/// `POST /settings/webhooks/{id}/deliveries/{delivery}/resend`: "Send again".
pub(super) async fn resend(
    State(st): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
    AdminForm { session, .. }: AdminForm<CsrfOnly>,
) -> Response {
    let (Ok(eid), Ok(did)) = (id.parse::<Uuid>(), delivery.parse::<Uuid>()) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such delivery.");
    };
    match hooks::resend(&st, session.user.workspace_id, eid, did).await {
        Ok(_) => back(Some(&id), "notice", "Sending again."),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            error_page(StatusCode::NOT_FOUND, "Not found", "No such delivery.")
        }
        Err(e) => back(Some(&id), "error", &e.message),
    }
}
