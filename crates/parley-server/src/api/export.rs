//! `GET /api/v1/conversations/export`, `.../finetune`, `.../finetune/estimate` and
//! `.../{id}/transcript` (issue 16; the formats are in [`crate::export`]). Not to be confused
//! with `GET /api/v1/export`, the transfer export for `parley import`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use parley_core::ConversationId;

use super::conversations::{FILTER_PARAMS, parse_filter, parse_sort};
use super::{Params, path_id};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::export::finetune::{self, FinetuneOptions};
use crate::export::transcript::{self, TranscriptFormat};
use crate::export::{self as ex, ListExport, SHAPE_PARAMS};

/// A streamed download: the content type and an attachment file name.
pub(crate) fn download(body: Body, content_type: &'static str, disposition: &str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

fn names(extra: &[&'static str]) -> Vec<&'static str> {
    FILTER_PARAMS
        .iter()
        .copied()
        .chain(["sort"])
        .chain(extra.iter().copied())
        .collect()
}

/// Parses a list export request: the list's filters and sort plus `format` and `rows`.
pub(crate) fn parse_list_export(raw: Option<&str>) -> Result<ListExport, ApiError> {
    let p = Params::parse(raw, &names(SHAPE_PARAMS))?;
    let (format, rows) = ex::parse_shape(&p)?;
    Ok(ListExport {
        filter: parse_filter(&p)?,
        sort: parse_sort(&p)?,
        format,
        rows,
    })
}

/// Parses a fine-tuning request: the list's filters and sort plus
/// [`finetune::OPTION_PARAMS`].
pub(crate) fn parse_finetune(raw: Option<&str>) -> Result<FinetuneOptions, ApiError> {
    let p = Params::parse(raw, &names(finetune::OPTION_PARAMS))?;
    finetune::parse_options(&p, parse_filter(&p)?, parse_sort(&p)?)
}

/// `GET /api/v1/conversations/export?format=csv|jsonl&rows=conversation|message&<list
/// filters>&sort=`: the list as a file, streamed (chunked), in the list's order.
pub(super) async fn list(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let export = parse_list_export(raw.as_deref())?;
    let (ct, ext, what) = (
        export.format.content_type(),
        export.format.extension(),
        match export.rows {
            ex::Rows::Conversation => "conversations",
            ex::Rows::Message => "messages",
        },
    );
    let stream = ex::list_export_stream(st.store.clone(), auth.workspace, export);
    Ok(download(
        Body::from_stream(stream),
        ct,
        &ex::attachment_name(what, ext),
    ))
}

/// `GET /api/v1/conversations/finetune`: OpenAI chat fine-tuning JSONL, streamed.
pub(super) async fn finetune(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let options = parse_finetune(raw.as_deref())?;
    let stream = finetune::finetune_stream(st.store.clone(), auth.workspace, options);
    Ok(download(
        Body::from_stream(stream),
        "application/jsonl; charset=utf-8",
        &ex::attachment_name("finetune", "jsonl"),
    ))
}

/// `GET /api/v1/conversations/finetune/estimate`: examples and estimated tokens.
pub(super) async fn finetune_estimate(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let options = parse_finetune(raw.as_deref())?;
    let e = finetune::estimate(st.store.clone(), auth.workspace, options).await?;
    Ok(Json(e).into_response())
}

/// The transcript file of conversation `id` in the workspace, or 404.
pub(crate) async fn transcript_file(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    id: ConversationId,
    format: TranscriptFormat,
) -> Result<Response, ApiError> {
    let c = st
        .store
        .conversations()
        .export_conversations(workspace, &[id])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let resolution = st
        .store
        .insights()
        .insight(workspace, id)
        .await?
        .map(|s| s.insight.resolution.to_string());
    let text = transcript::render(&c, resolution.as_deref(), format);
    let name = format!(
        "attachment; filename=\"conversation-{id}.{}\"",
        format.extension()
    );
    Ok(download(Body::from(text), format.content_type(), &name))
}

/// Parses `format` of a transcript (`markdown` | `text`, default markdown).
pub(crate) fn parse_transcript_format(raw: Option<&str>) -> Result<TranscriptFormat, ApiError> {
    let p = Params::parse(raw, &["format"])?;
    match p.get("format") {
        None => Ok(TranscriptFormat::Markdown),
        Some(f) => TranscriptFormat::parse(f).ok_or_else(|| {
            ApiError::bad_param(
                "format",
                format!("format must be markdown or text, got {f:?}"),
            )
        }),
    }
}

/// `GET /api/v1/conversations/{id}/transcript?format=markdown|text`: an attachment.
pub(super) async fn transcript(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    let format = parse_transcript_format(raw.as_deref())?;
    transcript_file(&st, auth.workspace, id, format).await
}
