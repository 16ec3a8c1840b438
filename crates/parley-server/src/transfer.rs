//! Conversation import and export formats, shared by the API (`POST /api/v1/import`,
//! `GET /api/v1/export`) and the command line (`parley import`, `parley export`).
//!
//! **JSONL**: one [`ConversationInput`] per line, the same field names as the API. Export
//! writes Parley's `id` of every conversation and message, so importing an export into an empty
//! instance reproduces the same records, and importing it again creates nothing. Lines without
//! `id` are de-duplicated by `external_id`; a line with neither is created every time.
//!
//! **CSV** (export only): one row per conversation with its metadata, variables (as a JSON
//! object) and transcript. Text cells that a spreadsheet would run as a formula (starting with
//! `=`, `+`, `-`, `@`, tab or CR) are prefixed with `'`.
//!
//! Export walks the conversations in creation order with a keyset cursor, a page at a time, so
//! it streams any number of conversations in bounded memory and never skips or repeats a
//! conversation that changes while the export runs.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use parley_core::model::{ConversationExport, ConversationInput};
use parley_core::query::{ConversationFilter, Cursor, ListQuery, Sort, SortKey};
use parley_core::{Timestamp, WorkspaceId};
use parley_store::{IngestBatch, IngestOutcome, MessageOutcome, Store, StoreError};
use serde::Serialize;

use crate::error::ApiError;
use crate::ingest::{IngestRequest, prepare};

/// Conversations per export page (and per store read).
const EXPORT_PAGE: u32 = 100;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON conversation per line.
    Jsonl,
    /// One CSV row per conversation.
    Csv,
}

impl Format {
    /// Parses `jsonl` or `csv`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/jsonl; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// Parses one JSONL line (1-based number `line_no`; surrounding whitespace ignored) and
/// prepares it for ingestion. `None` for a blank line.
/// Errors: 400/422 naming the line and the field at fault (`line 7: messages[0].role`).
pub fn prepare_line(
    prices: &parley_core::pricing::PriceTable,
    line_no: u64,
    line: &[u8],
    now: Timestamp,
) -> Result<Option<IngestBatch>, ApiError> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let at_line = |e: ApiError| {
        let field = match &e.field {
            Some(f) => format!("line {line_no}: {f}"),
            None => format!("line {line_no}"),
        };
        ApiError {
            message: format!("line {line_no}: {}", e.message),
            field: Some(field),
            ..e
        }
    };
    let input: ConversationInput = crate::body::parse_json(trimmed).map_err(at_line)?;
    prepare(prices, IngestRequest::Create(Box::new(input)), now)
        .map(Some)
        .map_err(|e| at_line(ApiError::from(e)))
}

/// Totals of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Conversations created.
    pub conversations_created: u64,
    /// Conversations that already existed (by `id` or `external_id`).
    pub conversations_existing: u64,
    /// Messages stored.
    pub messages_stored: u64,
    /// Messages already stored (by `id` or `external_id`).
    pub messages_duplicate: u64,
    /// Messages of already existing conversations that carried no id (not stored).
    pub messages_skipped: u64,
}

impl ImportSummary {
    /// Adds ingest outcomes to the totals.
    pub fn add(&mut self, outcomes: &[IngestOutcome]) {
        for o in outcomes {
            if o.created {
                self.conversations_created += 1;
            } else {
                self.conversations_existing += 1;
            }
            for m in &o.messages {
                match m {
                    MessageOutcome::Stored { .. } => self.messages_stored += 1,
                    MessageOutcome::Duplicate { .. } => self.messages_duplicate += 1,
                    MessageOutcome::Skipped => self.messages_skipped += 1,
                }
            }
        }
    }
}

/// The CSV header row.
const CSV_HEADER: [&str; 25] = [
    "id",
    "external_id",
    "assistant",
    "company",
    "channel",
    "status",
    "contact",
    "session_id",
    "started_at",
    "ended_at",
    "last_message_at",
    "duration_ms",
    "message_count",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanousd",
    "cost_usd",
    "rating",
    "rating_comment",
    "sentiment",
    "sentiment_score",
    "end_reason",
    "converted",
    "variables",
    "transcript",
];

/// Neutralises spreadsheet formula injection in a free-text cell.
pub(crate) fn safe_cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

/// Nano-USD as a decimal USD string with 9 decimals, exactly.
pub fn format_usd(nano: i64) -> String {
    let sign = if nano < 0 { "-" } else { "" };
    let n = nano.unsigned_abs();
    format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000)
}

fn csv_row(c: &ConversationExport) -> Vec<String> {
    let s = &c.detail.summary;
    let opt = |v: &Option<String>| v.as_deref().map(safe_cell).unwrap_or_default();
    let time = |t: Option<Timestamp>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let variables: serde_json::Map<String, serde_json::Value> = c
        .detail
        .variables
        .iter()
        .map(|v| (v.key.clone(), serde_json::Value::String(v.value.clone())))
        .collect();
    let transcript: Vec<String> = c
        .messages
        .iter()
        .filter(|m| m.role.is_visible())
        .map(|m| format!("[{}] {}: {}", m.created_at, m.role, m.content))
        .collect();
    vec![
        s.id.to_string(),
        opt(&s.external_id),
        safe_cell(&s.assistant.name),
        safe_cell(&s.assistant.company),
        s.channel.to_string(),
        s.status.to_string(),
        opt(&s.contact),
        opt(&s.session_id),
        s.started_at.to_rfc3339(),
        time(s.ended_at),
        s.last_message_at.to_rfc3339(),
        s.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
        s.message_count.to_string(),
        s.usage.prompt_tokens.to_string(),
        s.usage.completion_tokens.to_string(),
        s.cost_nanousd.to_string(),
        format_usd(s.cost_nanousd),
        s.rating
            .as_ref()
            .map(|r| r.score.to_string())
            .unwrap_or_default(),
        s.rating
            .as_ref()
            .and_then(|r| r.comment.as_deref())
            .map(safe_cell)
            .unwrap_or_default(),
        s.sentiment
            .as_ref()
            .map(|x| x.label.to_string())
            .unwrap_or_default(),
        s.sentiment
            .as_ref()
            .and_then(|x| x.score)
            .map(|x| x.to_string())
            .unwrap_or_default(),
        opt(&s.end_reason),
        s.converted.map(|b| b.to_string()).unwrap_or_default(),
        safe_cell(&serde_json::Value::Object(variables).to_string()),
        safe_cell(&transcript.join("\n")),
    ]
}

fn encode_page(
    format: Format,
    page: &[ConversationExport],
    header: bool,
) -> Result<Vec<u8>, StoreError> {
    match format {
        Format::Jsonl => {
            let mut out = Vec::with_capacity(page.len() * 2048);
            for c in page {
                serde_json::to_writer(&mut out, &c.to_input()).map_err(StoreError::backend)?;
                out.push(b'\n');
            }
            Ok(out)
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::with_capacity(page.len() * 2048));
            if header {
                w.write_record(CSV_HEADER).map_err(StoreError::backend)?;
            }
            for c in page {
                w.write_record(csv_row(c)).map_err(StoreError::backend)?;
            }
            w.into_inner().map_err(StoreError::backend)
        }
    }
}

struct ExportState {
    store: Arc<dyn Store>,
    workspace: WorkspaceId,
    query: ListQuery,
    format: Format,
    first: bool,
    done: bool,
}

/// Streams the workspace's conversations matching `filter` in `format`, oldest first, one
/// chunk per page of 100 conversations. A store error ends the stream with that
/// error (the HTTP response is then cut off rather than silently truncated).
pub fn export_stream(
    store: Arc<dyn Store>,
    workspace: WorkspaceId,
    filter: ConversationFilter,
    format: Format,
) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    let query = ListQuery {
        filter,
        sort: Sort {
            key: SortKey::Created,
            descending: false,
        },
        limit: EXPORT_PAGE,
        cursor: None,
    };
    let state = ExportState {
        store,
        workspace,
        query,
        format,
        first: true,
        done: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let chunk = async {
            let page = s
                .store
                .conversations()
                .list_conversations(s.workspace, &s.query)
                .await?;
            let ids: Vec<_> = page.items.iter().map(|i| i.conversation.id).collect();
            let full = s
                .store
                .conversations()
                .export_conversations(s.workspace, &ids)
                .await?;
            let bytes = encode_page(s.format, &full, s.first)?;
            match page.next_cursor {
                Some(c) => {
                    s.query.cursor =
                        Some(Cursor::decode(&c, s.query.sort).map_err(StoreError::backend)?)
                }
                None => s.done = true,
            }
            s.first = false;
            Ok::<_, StoreError>(Bytes::from(bytes))
        }
        .await;
        if chunk.is_err() {
            s.done = true;
        }
        Some((chunk, s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_formatting_is_exact() {
        assert_eq!(format_usd(7_500_000), "0.007500000");
        assert_eq!(format_usd(12_345_678_901), "12.345678901");
        assert_eq!(format_usd(0), "0.000000000");
    }

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(safe_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(safe_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(safe_cell("hello"), "hello");
    }
}
