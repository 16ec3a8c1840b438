//! The dashboard's exports (issue 16): the Export dialog's downloads of the current view, a
//! conversation's transcript files, and its print view. The view comes from the list's own URL
//! state ([`ViewState`], read exactly as the list page reads it, in the viewer's time zone),
//! so the file holds what the list shows; the formats are [`crate::export`]'s.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /conversations/export?<view>&format=&rows=` | the view as CSV / JSONL |
//! | `GET /conversations/export/count?<view>` | `{"count", "exact"}` for the dialog |
//! | `GET /conversations/finetune?<view>&<options>` | the fine-tuning set of the view |
//! | `GET /conversations/finetune/estimate?<view>&<options>` | its examples and tokens |
//! | `GET /conversations/{id}/download?format=markdown\|text` | the transcript file |
//! | `GET /conversations/{id}/print` | the print view |
//!
//! These are reads (GET, no change), so they need the session but no CSRF token; answers are
//! scoped to the session's workspace.

use askama::Template;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use parley_core::ConversationId;
use parley_core::query::ConversationFilter;

use super::{ViewState, asset_version, error_page, tz_offset};
use crate::AppState;
use crate::api::{Params, download, parse_transcript_format, transcript_file};
use crate::auth::Session;
use crate::error::ApiError;
use crate::export::finetune::{self, FinetuneOptions};
use crate::export::transcript;
use crate::export::{self as ex, ListExport};

/// The view's filter and sort, as the list page computes them.
fn view_of(
    session: &Session,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> (ConversationFilter, parley_core::query::Sort) {
    let (view, _) = ViewState::parse(raw);
    (view.filter(tz_offset(headers), session.user.id), view.sort)
}

/// `GET /conversations/export`.
pub(super) async fn list(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (format, rows) = ex::parse_shape(&Params::lenient(raw.as_deref()))?;
    let (filter, sort) = view_of(&session, &headers, raw.as_deref());
    let export = ListExport {
        filter,
        sort,
        format,
        rows,
    };
    let what = match rows {
        ex::Rows::Conversation => "conversations",
        ex::Rows::Message => "messages",
    };
    let stream = ex::list_export_stream(st.store.clone(), session.user.workspace_id, export);
    Ok(download(
        Body::from_stream(stream),
        format.content_type(),
        &ex::attachment_name(what, format.extension()),
    ))
}

/// `GET /conversations/export/count`.
pub(super) async fn count(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (filter, _) = view_of(&session, &headers, raw.as_deref());
    let c = st
        .store
        .conversations()
        .count_conversations(session.user.workspace_id, &filter)
        .await?;
    Ok(Json(c).into_response())
}

fn finetune_options(
    session: &Session,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<FinetuneOptions, ApiError> {
    let (filter, sort) = view_of(session, headers, raw);
    finetune::parse_options(&Params::lenient(raw), filter, sort)
}

/// `GET /conversations/finetune`.
pub(super) async fn finetune(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let options = finetune_options(&session, &headers, raw.as_deref())?;
    let stream = finetune::finetune_stream(st.store.clone(), session.user.workspace_id, options);
    Ok(download(
        Body::from_stream(stream),
        "application/jsonl; charset=utf-8",
        &ex::attachment_name("finetune", "jsonl"),
    ))
}

/// `GET /conversations/finetune/estimate`.
pub(super) async fn finetune_estimate(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let options = finetune_options(&session, &headers, raw.as_deref())?;
    let e = finetune::estimate(st.store.clone(), session.user.workspace_id, options).await?;
    Ok(Json(e).into_response())
}

/// `GET /conversations/{id}/download?format=markdown|text`.
pub(super) async fn transcript_download(
    State(st): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Ok(id) = id.parse::<ConversationId>() else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such conversation.");
    };
    let format = match parse_transcript_format(raw.as_deref()) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match transcript_file(&st, session.user.workspace_id, id, format).await {
        Ok(r) => r,
        Err(e) if e.status == StatusCode::NOT_FOUND => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This conversation does not exist (any more).",
        ),
        Err(e) => e.into_response(),
    }
}

/// One message of the print view.
struct PrintMessage {
    author: String,
    role: String,
    time: String,
    /// Sanitised HTML (assistant and team messages are Markdown) or escaped text.
    html: String,
}

#[derive(Template)]
#[template(path = "print.html")]
struct PrintPage {
    version: &'static str,
    id: String,
    title: String,
    metadata: Vec<(&'static str, String)>,
    variables: Vec<(String, String, String)>,
    messages: Vec<PrintMessage>,
}

/// `GET /conversations/{id}/print`: the transcript as a clean page for the browser's print
/// dialog (print CSS: A4 margins, page numbers, no message split across pages where avoidable).
pub(super) async fn print(
    State(st): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let not_found = || {
        error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This conversation does not exist (any more).",
        )
    };
    let Ok(id) = id.parse::<ConversationId>() else {
        return not_found();
    };
    let ws = session.user.workspace_id;
    let c = match st
        .store
        .conversations()
        .export_conversations(ws, &[id])
        .await
    {
        Ok(mut v) => match v.pop() {
            Some(c) => c,
            None => return not_found(),
        },
        Err(e) => return ApiError::from(e).into_response(),
    };
    let resolution = match st.store.insights().insight(ws, id).await {
        Ok(s) => s.map(|s| s.insight.resolution.to_string()),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let messages = c
        .messages
        .iter()
        .filter(|m| m.role.is_visible())
        .map(|m| PrintMessage {
            author: transcript::author(m),
            role: m.role.to_string(),
            time: m.created_at.to_rfc3339(),
            html: if matches!(m.role, parley_core::Role::User) {
                askama::filters::escape(&m.content, askama::filters::Html)
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            } else {
                parley_core::markdown::to_safe_html(&m.content)
            },
        })
        .collect();
    let page = PrintPage {
        version: asset_version(),
        id: id.to_string(),
        title: transcript::title(&c),
        metadata: transcript::metadata(&c, resolution.as_deref()),
        variables: c
            .detail
            .variables
            .iter()
            .map(|v| (v.key.clone(), v.value.clone(), v.source.to_string()))
            .collect(),
        messages,
    };
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}
