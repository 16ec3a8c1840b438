//! JSONL import in bounded memory, shared by `POST /api/v1/import` and `parley import`: the
//! input arrives in chunks of any size (an HTTP body, a file read piece by piece), is cut into
//! lines, and every line is validated and prepared ([`crate::transfer::prepare_line`]) into a
//! batch that is stored once it holds [`BATCH_CONVERSATIONS`] conversations or
//! [`BATCH_BYTES`] of JSON. Memory stays bounded by one batch (and one line, at most
//! `max_line_bytes`), whatever the size of the input.
//!
//! **Atomic per batch, resumable.** Each batch is one transaction: all of its lines are stored
//! or none. A bad line (or a store error) stops the import: the batches before it stay stored,
//! nothing of its own batch is, and the failure says so ([`ImportFailure`]: the error naming
//! the line, what was stored, and `resume_from_line`, the first line not stored). Sending the
//! input again from that line (`?from_line=N`, `parley import --from-line N`; earlier lines are
//! read and skipped) finishes it; sending everything again also works for lines with an `id`
//! or `external_id`, which de-duplicate. An input smaller than one batch is atomic as a whole.
//!
//! Why not one transaction per request: on SQLite every write goes through one writer, and a
//! transaction held open while a 100 MB body trickles in would stall every other write
//! (widget visitors, webhooks) for the whole upload.

use parley_core::{Timestamp, WorkspaceId};
use parley_store::IngestBatch;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;
use crate::ingest::commit;
use crate::transfer::{ImportSummary, prepare_line};

/// Most conversations stored per transaction.
pub const BATCH_CONVERSATIONS: usize = 500;
/// Most bytes of JSONL per transaction (4 MiB); a batch is stored as soon as it reaches either
/// bound.
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// An import that stopped: the error (naming the line), what was stored before it, and the
/// first line that was not stored.
#[derive(Debug, Clone)]
pub struct ImportFailure {
    /// What went wrong (`field` names the line, `line 12: messages[0].role`).
    pub error: ApiError,
    /// The batches stored before the failure.
    pub imported: ImportSummary,
    /// The first line (1-based) not stored: resume from here.
    pub resume_from_line: u64,
}

impl ImportFailure {
    /// The API answer: the error's status and `{"error": {...}, "imported": {...},
    /// "resume_from_line": N}`.
    pub fn into_response(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let status = self.error.status;
        let mut error = json!({"code": self.error.code, "message": self.error.message});
        if let Some(f) = &self.error.field {
            error["field"] = json!(f);
        }
        (
            status,
            axum::Json(json!({
                "error": error,
                "imported": self.imported,
                "resume_from_line": self.resume_from_line,
            })),
        )
            .into_response()
    }
}

/// A JSONL import in progress: feed it chunks with [`JsonlImport::push`], then
/// [`JsonlImport::finish`].
pub struct JsonlImport<'a> {
    state: &'a AppState,
    workspace: WorkspaceId,
    now: Timestamp,
    /// Lines before this one are skipped (1 = none).
    from_line: u64,
    /// Longest line accepted, in bytes.
    max_line_bytes: usize,
    /// Complete lines seen so far.
    lines: u64,
    /// A line cut by a chunk boundary.
    partial: Vec<u8>,
    batch: Vec<IngestBatch>,
    batch_bytes: usize,
    /// The first line of the batch being filled.
    batch_first_line: u64,
    summary: ImportSummary,
}

impl<'a> JsonlImport<'a> {
    /// An import into `workspace`, skipping the lines before `from_line` (1-based; 0 or 1 read
    /// everything), refusing lines longer than `max_line_bytes`.
    pub fn new(
        state: &'a AppState,
        workspace: WorkspaceId,
        from_line: u64,
        max_line_bytes: usize,
    ) -> Self {
        let from_line = from_line.max(1);
        JsonlImport {
            state,
            workspace,
            now: Timestamp::now(),
            from_line,
            max_line_bytes,
            lines: 0,
            partial: Vec::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            batch_first_line: from_line,
            summary: ImportSummary::default(),
        }
    }

    /// What was stored so far.
    pub fn summary(&self) -> ImportSummary {
        self.summary
    }

    /// The first line not stored yet (where a resumed import starts).
    pub fn resume_from_line(&self) -> u64 {
        self.batch_first_line
    }

    /// Takes the next chunk of input. Errors: see [`ImportFailure`]; a line longer than the
    /// limit is 413 `line_too_large`.
    pub async fn push(&mut self, mut chunk: &[u8]) -> Result<(), ImportFailure> {
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            let (line, rest) = (&chunk[..end], &chunk[end + 1..]);
            chunk = rest;
            if self.partial.is_empty() {
                self.check_length(line.len())?;
                self.line(line).await?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.check_length(whole.len())?;
                self.line(&whole).await?;
            }
        }
        self.check_length(self.partial.len() + chunk.len())?;
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// Takes the last line (without a final newline) and stores what is left. Returns the
    /// totals. Errors: see [`ImportFailure`].
    pub async fn finish(mut self) -> Result<ImportSummary, ImportFailure> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line(&last).await?;
        }
        self.store().await?;
        Ok(self.summary)
    }

    fn check_length(&self, len: usize) -> Result<(), ImportFailure> {
        if len > self.max_line_bytes {
            let line = self.lines + 1;
            return Err(self.failure(
                ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "line_too_large",
                    format!(
                        "line {line}: longer than {} bytes (max_body_bytes)",
                        self.max_line_bytes
                    ),
                )
                .with_field(format!("line {line}")),
            ));
        }
        Ok(())
    }

    fn failure(&self, error: ApiError) -> ImportFailure {
        ImportFailure {
            error,
            imported: self.summary,
            resume_from_line: self.batch_first_line,
        }
    }

    async fn line(&mut self, line: &[u8]) -> Result<(), ImportFailure> {
        self.lines += 1;
        if self.lines < self.from_line {
            return Ok(());
        }
        match prepare_line(&self.state.prices, self.lines, line, self.now) {
            Ok(Some(batch)) => {
                self.batch.push(batch);
                self.batch_bytes += line.len();
            }
            Ok(None) => {}
            Err(e) => return Err(self.failure(e)),
        }
        if self.batch.len() >= BATCH_CONVERSATIONS || self.batch_bytes >= BATCH_BYTES {
            self.store().await?;
        }
        Ok(())
    }

    /// Stores the batch being filled (one transaction).
    async fn store(&mut self) -> Result<(), ImportFailure> {
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            let first = self.batch_first_line;
            match commit(self.state, self.workspace, batch).await {
                Ok(outcomes) => self.summary.add(&outcomes),
                Err(e) => {
                    let field = format!("lines {first}-{}", self.lines);
                    let message = format!("{field}: {}", e.message);
                    return Err(self.failure(ApiError {
                        message,
                        field: Some(field),
                        ..e
                    }));
                }
            }
        }
        self.batch_bytes = 0;
        self.batch_first_line = self.lines + 1;
        Ok(())
    }
}
