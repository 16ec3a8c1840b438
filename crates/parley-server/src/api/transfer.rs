//! `POST /api/v1/import` and `GET /api/v1/export`.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use parley_core::Timestamp;

use super::conversations::{FILTER_PARAMS, parse_filter};
use super::{Params, read_body};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::ingest::commit;
use crate::transfer::{Format, ImportSummary, export_stream, prepare_jsonl};

/// `POST /api/v1/import`: a JSONL body, imported atomically (every line or none).
/// Answers 200 with an [`ImportSummary`].
pub(super) async fn import(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    req: Request,
) -> Result<Response, ApiError> {
    let body = read_body(req).await?;
    let batches = prepare_jsonl(&st.prices, &body, Timestamp::now())?;
    let mut summary = ImportSummary::default();
    if !batches.is_empty() {
        summary.add(&commit(&st, auth.workspace, batches).await?);
    }
    Ok(Json(summary).into_response())
}

/// `GET /api/v1/export?format=jsonl|csv&<list filters>`: streamed, oldest first.
pub(super) async fn export(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let allowed: Vec<&str> = FILTER_PARAMS.iter().copied().chain(["format"]).collect();
    let p = Params::parse(raw.as_deref(), &allowed)?;
    let format = match p.get("format") {
        None => Format::Jsonl,
        Some(f) => Format::parse(f)
            .ok_or_else(|| ApiError::bad_param("format", "format must be jsonl or csv"))?,
    };
    let filter = parse_filter(&p)?;
    let stream = export_stream(st.store.clone(), auth.workspace, filter, format);
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let date = Timestamp::now().to_rfc3339();
    let name = format!(
        "attachment; filename=\"parley-conversations-{}.{}\"",
        &date[..10],
        format.extension()
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
