//! `POST /api/v1/import` (streamed in bounded batches) and `GET /api/v1/export`.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use parley_core::Timestamp;

use super::Params;
use super::conversations::{FILTER_PARAMS, parse_filter};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::import::jsonl::{ImportFailure, JsonlImport};
use crate::transfer::{Format, export_stream};

/// `POST /api/v1/import?from_line=N`: a JSONL body, read as it arrives and stored in
/// transactions of up to 500 conversations or 4 MiB (see [`crate::import::jsonl`] for why and
/// what a failure leaves). At most `max_import_bytes` per request; a line at most
/// `max_body_bytes`. `from_line` (1-based) skips the lines before it, to resume a failed import.
/// Answers 200 with an [`ImportSummary`](crate::transfer::ImportSummary); a failure answers its error's status with
/// `{"error", "imported", "resume_from_line"}`.
pub(super) async fn import(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), &["from_line"])?;
    let from_line = match p.get("from_line") {
        None => 1,
        Some(v) => super::integer_text(v)
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::bad_param("from_line", "from_line: a line number from 1"))?,
    };
    let limit = st.settings.max_import_bytes;
    let mut import = JsonlImport::new(&st, auth.workspace, from_line, st.settings.max_body_bytes);
    let mut body = req.into_body().into_data_stream();
    let mut read = 0usize;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return Ok(ImportFailure {
                error: ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the request body could not be read to its end",
                ),
                imported: import.summary(),
                resume_from_line: import.resume_from_line(),
            }
            .into_response());
        };
        read += chunk.len();
        if read > limit {
            return Ok(ImportFailure {
                error: ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the import is larger than {limit} bytes (max_import_bytes): send the rest from resume_from_line"),
                ),
                imported: import.summary(),
                resume_from_line: import.resume_from_line(),
            }
            .into_response());
        }
        if let Err(f) = import.push(&chunk).await {
            return Ok(f.into_response());
        }
    }
    match import.finish().await {
        Ok(summary) => Ok(Json(summary).into_response()),
        Err(f) => Ok(f.into_response()),
    }
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
