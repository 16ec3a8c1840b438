//! Exports of the conversation list (issue 16), shared by the API
//! (`GET /api/v1/conversations/export`, `.../finetune`, `.../{id}/transcript`), the dashboard's
//! Export dialog and print view, and the command line (`parley export finetune`).
//!
//! The list export takes the list's filters, search and sort exactly as
//! `GET /api/v1/conversations` parses them and walks the list by its keyset cursor, a page of
//! [`PAGE`] conversations at a time: any number of conversations streams in bounded memory, in
//! the order the list shows them.
//!
//! **Rows.** `rows=conversation` (the default) writes one row per conversation; `rows=message`
//! one row per stored message (every role, `system` and `tool` included, oldest first within
//! its conversation).
//!
//! **CSV, one row per conversation** ([`CONVERSATION_COLUMNS`], then the variables): ids,
//! channel, assistant, contact, status, times (RFC 3339, UTC), duration in seconds, visible
//! messages, prompt/completion/total tokens, cost in USD (9 decimals, exact: costs are stored
//! as nano-USD), rating and its comment, sentiment (the client's, else the analysed one) and
//! its score, resolution (empty until analysed), end reason. **Variables as columns**: before
//! the first row the export reads the variable keys of every conversation in the view (a first
//! pass over the same pages, keys only) and writes one column `var:<key>` per key, sorted by
//! key, at most [`MAX_VARIABLE_COLUMNS`]; a key beyond that cap, or one that appeared between
//! the two passes, lands in the last column, `other_variables`, as a JSON object (empty when
//! there is none). Text cells a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
//! `@`, tab or CR: a contact `+1 415...` too) are prefixed with `'`.
//!
//! **JSONL, one line per conversation**: the list's row exactly as `GET /api/v1/conversations`
//! answers it (with `resolution`, and `match` when searched), plus `variables` (an object of
//! key to value) and `cost_usd` (a decimal string). **One line per message**: the stored
//! message as the messages API answers it, plus `conversation_id` and `seq` (1-based position
//! in the conversation).

pub mod finetune;
pub mod redact;
pub mod transcript;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use parley_core::model::{ConversationDetail, Message};
use parley_core::query::{ConversationFilter, Cursor, ListQuery, Sort};
use parley_core::{ConversationId, Timestamp, WorkspaceId};
use parley_store::{ConversationPage, ListedConversation, Store, StoreError};
use serde_json::{Value, json};

use crate::api::Params;
use crate::error::ApiError;
use crate::transfer::{format_usd, safe_cell};

/// Conversations per store read.
pub const PAGE: u32 = 100;
/// At most this many `var:<key>` columns; other keys go to `other_variables`.
pub const MAX_VARIABLE_COLUMNS: usize = 200;

/// The file format of a list export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/jsonl; charset=utf-8",
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// What one row of a list export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// One row per conversation.
    Conversation,
    /// One row per stored message.
    Message,
}

/// A parsed list export request: the view (filter, sort) and the shape of the file.
#[derive(Debug, Clone)]
pub struct ListExport {
    /// The list filters and search.
    pub filter: ConversationFilter,
    /// The list's sort.
    pub sort: Sort,
    /// CSV or JSONL.
    pub format: Format,
    /// Per conversation or per message.
    pub rows: Rows,
}

/// The query parameters of the list export beyond the list's own: `format`, `rows`.
pub const SHAPE_PARAMS: &[&str] = &["format", "rows"];

/// Parses `format` (`csv` | `jsonl`, default `csv`) and `rows` (`conversation` | `message`,
/// default `conversation`). Errors: 400 `invalid_parameter` naming the parameter.
pub(crate) fn parse_shape(p: &Params) -> Result<(Format, Rows), ApiError> {
    let format = match p.get("format") {
        None | Some("csv") => Format::Csv,
        Some("jsonl") => Format::Jsonl,
        Some(v) => {
            return Err(ApiError::bad_param(
                "format",
                format!("format must be csv or jsonl, got {v:?}"),
            ));
        }
    };
    let rows = match p.get("rows") {
        None | Some("conversation") => Rows::Conversation,
        Some("message") => Rows::Message,
        Some(v) => {
            return Err(ApiError::bad_param(
                "rows",
                format!("rows must be conversation or message, got {v:?}"),
            ));
        }
    };
    Ok((format, rows))
}

/// The `Content-Disposition` value of a download named `parley-<what>-<date>.<ext>`.
pub fn attachment_name(what: &str, extension: &str) -> String {
    let date = Timestamp::now().to_rfc3339();
    format!(
        "attachment; filename=\"parley-{what}-{}.{extension}\"",
        &date[..10]
    )
}

/// Walks the list in pages of [`PAGE`] by its cursor.
pub(crate) struct ListWalk {
    store: Arc<dyn Store>,
    workspace: WorkspaceId,
    query: ListQuery,
    done: bool,
}

impl ListWalk {
    /// A walk over the workspace's conversations matching `filter` in `sort` order.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        workspace: WorkspaceId,
        filter: ConversationFilter,
        sort: Sort,
    ) -> ListWalk {
        ListWalk {
            store,
            workspace,
            query: ListQuery {
                filter,
                sort,
                limit: PAGE,
                cursor: None,
            },
            done: false,
        }
    }

    /// The next page, `None` after the last one.
    pub(crate) async fn next_page(&mut self) -> Result<Option<ConversationPage>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .conversations()
            .list_conversations(self.workspace, &self.query)
            .await?;
        match &page.next_cursor {
            Some(c) => {
                self.query.cursor =
                    Some(Cursor::decode(c, self.query.sort).map_err(StoreError::backend)?)
            }
            None => self.done = true,
        }
        if page.items.is_empty() {
            self.done = true;
            return Ok(None);
        }
        Ok(Some(page))
    }

    /// The store the walk reads.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The workspace the walk reads.
    pub(crate) fn workspace(&self) -> WorkspaceId {
        self.workspace
    }

    /// Starts over from the first page.
    fn restart(&mut self) {
        self.query.cursor = None;
        self.done = false;
    }
}

/// The fixed CSV columns of a per-conversation export, before the variables.
pub const CONVERSATION_COLUMNS: &[&str] = &[
    "conversation_id",
    "external_id",
    "channel",
    "assistant",
    "assistant_company",
    "assistant_version",
    "contact",
    "session_id",
    "status",
    "started_at",
    "last_message_at",
    "ended_at",
    "duration_seconds",
    "messages",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "rating",
    "rating_comment",
    "sentiment",
    "sentiment_score",
    "resolution",
    "topic",
    "end_reason",
];

/// The CSV columns of a per-message export.
pub const MESSAGE_COLUMNS: &[&str] = &[
    "conversation_id",
    "seq",
    "message_id",
    "external_id",
    "created_at",
    "role",
    "content",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "channel",
    "assistant",
    "contact",
];

/// Milliseconds as decimal seconds (`1234` -> `1.234`).
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, (ms % 1000).abs())
}

/// The list row of a conversation with its insight, as the list API answers it.
fn list_row(
    listed: &ListedConversation,
    insight: Option<&parley_core::insights::ConversationInsight>,
) -> Value {
    let mut v = json!(listed);
    crate::api::with_list_insight(&mut v, insight);
    v
}

/// One CSV record of a conversation: [`CONVERSATION_COLUMNS`], then one cell per key of
/// `keys`, then `other_variables`.
fn conversation_record(
    row: &Value,
    detail: &ConversationDetail,
    keys: &BTreeSet<String>,
) -> Vec<String> {
    let s = &detail.summary;
    let text = |v: Option<&str>| v.map(safe_cell).unwrap_or_default();
    let time = |t: Option<Timestamp>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let sentiment = row.get("sentiment").filter(|v| !v.is_null());
    let mut out = vec![
        s.id.to_string(),
        text(s.external_id.as_deref()),
        s.channel.to_string(),
        safe_cell(&s.assistant.name),
        safe_cell(&s.assistant.company),
        detail
            .assistant_version
            .map(|v| v.to_string())
            .unwrap_or_default(),
        text(s.contact.as_deref()),
        text(s.session_id.as_deref()),
        s.status.to_string(),
        s.started_at.to_rfc3339(),
        s.last_message_at.to_rfc3339(),
        time(s.ended_at),
        s.duration_ms.map(seconds).unwrap_or_default(),
        s.message_count.to_string(),
        s.usage.prompt_tokens.to_string(),
        s.usage.completion_tokens.to_string(),
        s.usage.total_tokens.to_string(),
        format_usd(s.cost_nanousd),
        s.rating
            .as_ref()
            .map(|r| r.score.to_string())
            .unwrap_or_default(),
        text(s.rating.as_ref().and_then(|r| r.comment.as_deref())),
        sentiment
            .and_then(|v| v.get("label"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        sentiment
            .and_then(|v| v.get("score"))
            .and_then(Value::as_f64)
            .map(|x| x.to_string())
            .unwrap_or_default(),
        row.get("resolution")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        text(row.get("topic").and_then(Value::as_str)),
        text(s.end_reason.as_deref()),
    ];
    let values: BTreeMap<&str, &str> = detail
        .variables
        .iter()
        .map(|v| (v.key.as_str(), v.value.as_str()))
        .collect();
    for k in keys {
        out.push(text(values.get(k.as_str()).copied()));
    }
    let other: serde_json::Map<String, Value> = detail
        .variables
        .iter()
        .filter(|v| !keys.contains(&v.key))
        .map(|v| (v.key.clone(), Value::String(v.value.clone())))
        .collect();
    out.push(if other.is_empty() {
        String::new()
    } else {
        safe_cell(&Value::Object(other).to_string())
    });
    out
}

/// One CSV record of a message ([`MESSAGE_COLUMNS`]).
fn message_record(detail: &ConversationDetail, seq: usize, m: &Message) -> Vec<String> {
    let s = &detail.summary;
    vec![
        s.id.to_string(),
        seq.to_string(),
        m.id.to_string(),
        m.external_id.as_deref().map(safe_cell).unwrap_or_default(),
        m.created_at.to_rfc3339(),
        m.role.to_string(),
        safe_cell(&m.content),
        m.model.as_deref().map(safe_cell).unwrap_or_default(),
        m.usage
            .map(|u| u.prompt_tokens.to_string())
            .unwrap_or_default(),
        m.usage
            .map(|u| u.completion_tokens.to_string())
            .unwrap_or_default(),
        m.cost_nanousd.map(format_usd).unwrap_or_default(),
        s.channel.to_string(),
        safe_cell(&s.assistant.name),
        s.contact.as_deref().map(safe_cell).unwrap_or_default(),
    ]
}

/// The full records of a page's conversations, in the page's order (one that vanished since
/// the list was read is left out).
async fn details(
    store: &dyn Store,
    workspace: WorkspaceId,
    ids: &[ConversationId],
) -> Result<Vec<Option<ConversationDetail>>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(
            store
                .conversations()
                .get_conversation(workspace, *id)
                .await?,
        );
    }
    Ok(out)
}

/// Reads the variable keys of every conversation in the view (see the module docs).
async fn variable_keys(walk: &mut ListWalk) -> Result<BTreeSet<String>, StoreError> {
    let mut keys = BTreeSet::new();
    while let Some(page) = walk.next_page().await? {
        let ids: Vec<_> = page.items.iter().map(|i| i.conversation.id).collect();
        for d in details(walk.store().as_ref(), walk.workspace(), &ids)
            .await?
            .into_iter()
            .flatten()
        {
            keys.extend(d.variables.into_iter().map(|v| v.key));
        }
    }
    walk.restart();
    Ok(keys.into_iter().take(MAX_VARIABLE_COLUMNS).collect())
}

fn csv_bytes(records: impl IntoIterator<Item = Vec<String>>) -> Result<Vec<u8>, StoreError> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(8192));
    for r in records {
        w.write_record(r).map_err(StoreError::backend)?;
    }
    w.into_inner().map_err(StoreError::backend)
}

fn jsonl_bytes(lines: impl IntoIterator<Item = Value>) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(8192);
    for l in lines {
        serde_json::to_writer(&mut out, &l).map_err(StoreError::backend)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Encodes one page of the list.
async fn encode_page(
    walk: &ListWalk,
    export: &ListExport,
    keys: &BTreeSet<String>,
    page: &ConversationPage,
) -> Result<Vec<u8>, StoreError> {
    let store = walk.store().as_ref();
    let ws = walk.workspace();
    let ids: Vec<_> = page.items.iter().map(|i| i.conversation.id).collect();
    match export.rows {
        Rows::Conversation => {
            let insights: std::collections::HashMap<_, _> = store
                .insights()
                .insights_of(ws, &ids)
                .await?
                .into_iter()
                .map(|(id, s)| (id, s.insight))
                .collect();
            let details = details(store, ws, &ids).await?;
            let rows = page.items.iter().zip(details).filter_map(|(listed, d)| {
                d.map(|d| {
                    let row = list_row(listed, insights.get(&listed.conversation.id));
                    (row, d)
                })
            });
            match export.format {
                Format::Csv => csv_bytes(rows.map(|(row, d)| conversation_record(&row, &d, keys))),
                Format::Jsonl => jsonl_bytes(rows.map(|(mut row, d)| {
                    let vars: serde_json::Map<String, Value> = d
                        .variables
                        .iter()
                        .map(|v| (v.key.clone(), Value::String(v.value.clone())))
                        .collect();
                    if let Some(o) = row.as_object_mut() {
                        o.insert("variables".into(), Value::Object(vars));
                        o.insert(
                            "cost_usd".into(),
                            Value::String(format_usd(d.summary.cost_nanousd)),
                        );
                    }
                    row
                })),
            }
        }
        Rows::Message => {
            let full = store.conversations().export_conversations(ws, &ids).await?;
            match export.format {
                Format::Csv => csv_bytes(full.iter().flat_map(|c| {
                    c.messages
                        .iter()
                        .enumerate()
                        .map(|(i, m)| message_record(&c.detail, i + 1, m))
                })),
                Format::Jsonl => jsonl_bytes(full.iter().flat_map(|c| {
                    c.messages.iter().enumerate().map(|(i, m)| {
                        let mut v = json!(m);
                        if let Some(o) = v.as_object_mut() {
                            o.insert("conversation_id".into(), json!(c.detail.summary.id));
                            o.insert("seq".into(), json!(i + 1));
                        }
                        v
                    })
                })),
            }
        }
    }
}

struct ExportState {
    walk: ListWalk,
    export: ListExport,
    keys: Option<BTreeSet<String>>,
    finished: bool,
}

/// Streams the list export: the CSV header first (after the key pass for per-conversation
/// CSV), then one chunk per page. A store error ends the stream with that error, so the HTTP
/// response is cut off rather than silently truncated.
pub fn list_export_stream(
    store: Arc<dyn Store>,
    workspace: WorkspaceId,
    export: ListExport,
) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    let walk = ListWalk::new(store, workspace, export.filter.clone(), export.sort);
    let state = ExportState {
        walk,
        export,
        keys: None,
        finished: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if s.finished {
            return None;
        }
        let chunk = async {
            if s.keys.is_none() {
                let keys = match (s.export.format, s.export.rows) {
                    (Format::Csv, Rows::Conversation) => variable_keys(&mut s.walk).await?,
                    _ => BTreeSet::new(),
                };
                let header = match (s.export.format, s.export.rows) {
                    (Format::Csv, Rows::Conversation) => {
                        let mut h: Vec<String> = CONVERSATION_COLUMNS
                            .iter()
                            .map(|c| (*c).to_owned())
                            .collect();
                        h.extend(keys.iter().map(|k| safe_cell(&format!("var:{k}"))));
                        h.push("other_variables".into());
                        csv_bytes([h])?
                    }
                    (Format::Csv, Rows::Message) => {
                        csv_bytes([MESSAGE_COLUMNS.iter().map(|c| (*c).to_owned()).collect()])?
                    }
                    (Format::Jsonl, _) => Vec::new(),
                };
                s.keys = Some(keys);
                if !header.is_empty() {
                    return Ok(Some(Bytes::from(header)));
                }
            }
            match s.walk.next_page().await? {
                None => Ok(None),
                Some(page) => {
                    let keys = s.keys.as_ref().expect("set above");
                    Ok(Some(Bytes::from(
                        encode_page(&s.walk, &s.export, keys, &page).await?,
                    )))
                }
            }
        }
        .await;
        match chunk {
            Ok(Some(b)) => Some((Ok(b), s)),
            Ok(None) => None,
            Err(e) => {
                s.finished = true;
                Some((Err(e), s))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(seconds(1234), "1.234");
        assert_eq!(seconds(60_000), "60.000");
        assert_eq!(seconds(5), "0.005");
    }
}
