//! Bulk actions on conversations (issue 14): close (with an end reason), archive, reopen,
//! assign and delete many conversations at once, selected by ids or by a list filter. The API
//! (`POST /api/v1/conversations/bulk`) and the dashboard's Conversations list call [`start`];
//! progress is read with [`progress`] (`GET /api/v1/conversations/bulk/{id}`).
//!
//! - **Selection.** `{"ids": [...]}` (at most [`MAX_IDS`]; ids of other workspaces, or gone,
//!   are left untouched and not counted as affected) or `{"filter": {...}}` with the list's
//!   filter parameters as JSON (`{"status": "active", "q": "refund", "sort": "-started_at"}`;
//!   arrays for repeatable ones), read exactly as `GET /api/v1/conversations` reads its query.
//!   A filter is resolved to the matching conversations when the request comes (at most
//!   [`MAX_SELECTION`]): conversations arriving later are not swept in.
//! - **Work.** The work list is stored with the record ([`parley_store::BulkStore`]) and run in
//!   batches, one short transaction each, so ingest waits at most for one batch: the first
//!   holds [`FIRST_BATCH`] conversations, and each next one is sized from how long the last
//!   took, aiming at [`BATCH_TARGET`] per transaction (between [`MIN_BATCH`] and [`BATCH`]),
//!   with a pause as long as the batch took (at most [`MAX_PAUSE`]) before the next, so other
//!   writers (ingest) get the writer at least half the time. Each batch writes the usual events (`conversation.updated`,
//!   `conversation.deleted`), so open dashboards update. Deleting goes through the one delete
//!   path ([`crate::retention::delete_conversations`]): rows, messages, search index, variables,
//!   insights, earlier events and attachment files.
//! - **Durability.** The record is written with a [`BULK_JOB`] job in one transaction. A
//!   selection of at most [`INLINE_MAX`] runs in the request (answered 200, finished); the job
//!   then waits [`INLINE_GRACE_MS`] and only finishes what a crash left. Larger selections are
//!   answered 202 at once and the job runs them in the background. A run resumes from the
//!   record's `done` count.
//! - **Retries.** With an `Idempotency-Key` (1 to 200 characters) a retried request answers the
//!   first request's record and runs nothing again.
//! - **Audit.** Every bulk action writes one `conversations.bulk` audit-log entry: who, the
//!   action, how many were selected, the filter or the ids, when.

use axum::http::StatusCode;
use parley_core::model::ConversationPatch;
use parley_core::query::Sort;
use parley_core::{ConversationId, Timestamp, UserId, WorkspaceId};
use parley_store::jobs::{Job, NewJob};
use parley_store::{BulkAction, BulkState, NewAuditEntry, NewBulkAction};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::api::Params;
use crate::api::conversations::{FILTER_PARAMS, parse_filter, parse_sort};
use crate::error::ApiError;
use crate::export::ListWalk;
use crate::jobs::JobError;
use crate::team::{self, StatusChange};

/// Kind of the job that works through a bulk action (payload `{"bulk_id"}`; the job's id is the
/// record's).
pub const BULK_JOB: &str = "conversations.bulk";
/// The most conversations one transaction of a bulk action touches.
pub const BATCH: usize = 500;
/// Conversations in a bulk action's first transaction (later ones: see [`next_batch`]).
pub const FIRST_BATCH: usize = 100;
/// The fewest conversations one transaction touches (however slow the last one was): a
/// transaction has a fixed cost (the commit, its events, the progress record) that smaller
/// batches do not shrink, so below this they only make the action longer. Measured (release,
/// loaded machine): batches shrunk to 5 made a 10,000-conversation delete on PostgreSQL take
/// 337 s instead of about a minute without shortening the stalls.
pub const MIN_BATCH: usize = 50;
/// How long one transaction of a bulk action should take: a writer waiting behind it (ingest)
/// waits at most about this long (issue 14: never more than 100 ms).
pub const BATCH_TARGET: std::time::Duration = std::time::Duration::from_millis(40);
/// The longest pause between two transactions of a bulk action.
pub const MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(40);

/// The size of the next transaction after one of `size` conversations took `took`: scaled
/// towards [`BATCH_TARGET`] (at most doubled, at least halved at a time), within
/// [`MIN_BATCH`]..=[`BATCH`].
pub fn next_batch(size: usize, took: std::time::Duration) -> usize {
    let took = took.as_secs_f64().max(1e-6);
    let scaled = (size as f64 * BATCH_TARGET.as_secs_f64() / took).round() as usize;
    scaled
        .clamp(size / 2, size.saturating_mul(2))
        .clamp(MIN_BATCH, BATCH)
}
/// The largest selection run inside the request.
pub const INLINE_MAX: usize = BATCH;
/// How long (ms) the job of a selection run inside the request waits before it checks that the
/// request finished it (it finishes the rest after a crash).
pub const INLINE_GRACE_MS: i64 = 60_000;
/// The most ids one request may name.
pub const MAX_IDS: usize = 1_000;
/// The most conversations one filter may select.
pub const MAX_SELECTION: usize = 100_000;
/// Longest idempotency key, in characters.
pub const MAX_KEY_CHARS: usize = 200;
/// Claims of a [`BULK_JOB`] (store failures).
pub const BULK_ATTEMPTS: u32 = 10;
/// The audit-log action of a bulk action.
pub const AUDIT_ACTION: &str = "conversations.bulk";

/// What a bulk action does to each selected conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkOp {
    /// Close, archive or reopen (see [`team::StatusChange`]).
    Status(StatusChange),
    /// Assign to a member, or to nobody.
    Assign(Option<UserId>),
    /// Delete, irreversibly (admin only).
    Delete,
}

impl BulkOp {
    /// The action's name (`close`, `archive`, `reopen`, `assign`, `delete`).
    pub fn name(&self) -> &'static str {
        match self {
            BulkOp::Status(StatusChange::Close(_)) => "close",
            BulkOp::Status(StatusChange::Archive) => "archive",
            BulkOp::Status(StatusChange::Reopen) => "reopen",
            BulkOp::Assign(_) => "assign",
            BulkOp::Delete => "delete",
        }
    }

    fn params(&self) -> Value {
        match self {
            BulkOp::Status(StatusChange::Close(r)) => json!({ "end_reason": r }),
            BulkOp::Assign(u) => json!({ "assignee_id": u }),
            _ => json!({}),
        }
    }

    fn from_record(b: &BulkAction) -> Result<BulkOp, String> {
        let p: Value = serde_json::from_str(&b.params).unwrap_or(Value::Null);
        Ok(match b.action.as_str() {
            "close" => BulkOp::Status(StatusChange::Close(
                p["end_reason"].as_str().unwrap_or_default().to_owned(),
            )),
            "archive" => BulkOp::Status(StatusChange::Archive),
            "reopen" => BulkOp::Status(StatusChange::Reopen),
            "assign" => BulkOp::Assign(
                serde_json::from_value(p["assignee_id"].clone()).map_err(|e| e.to_string())?,
            ),
            "delete" => BulkOp::Delete,
            other => return Err(format!("unknown bulk action {other:?}")),
        })
    }
}

/// Who asks, and with which rights.
#[derive(Debug, Clone)]
pub struct Requester {
    /// The audit log's actor (`user:<id>`, `api_key:<id>`).
    pub actor: String,
    /// Whether it may delete (an admin member or an admin API key).
    pub admin: bool,
    /// `api` or `dashboard`, recorded in the audit entry.
    pub via: &'static str,
}

/// What [`start`] answers.
#[derive(Debug)]
pub enum Started {
    /// A bulk action, finished (200) or running in the background (202).
    Bulk(Box<BulkAction>),
    /// `export`: where the existing export reads the same filter (`/api/v1/conversations/export?...`
    /// query, without the path).
    Export(String),
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("{field}: {}", message.into()),
    )
    .with_field(field)
}

/// The filter object as query pairs (strings as they are, numbers and booleans as text,
/// arrays as repeated values). Errors: 422 for another JSON type.
fn filter_pairs(filter: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for (k, v) in filter {
        let mut push = |v: &Value| -> Result<(), ApiError> {
            match v {
                Value::Null => {}
                Value::String(s) => pairs.push((k.clone(), s.clone())),
                Value::Bool(_) | Value::Number(_) => pairs.push((k.clone(), v.to_string())),
                _ => {
                    return Err(invalid(
                        &format!("filter.{k}"),
                        "must be a string, number, boolean or an array of them",
                    ));
                }
            }
            Ok(())
        };
        match v {
            Value::Array(items) => items.iter().try_for_each(&mut push)?,
            other => push(other)?,
        }
    }
    Ok(pairs)
}

/// The selection: explicit ids, or a filter with its sort and how the audit log records it
/// (the request's JSON filter, or the dashboard view's query).
pub enum Selection {
    /// These conversations (other workspaces' are left untouched).
    Ids(Vec<ConversationId>),
    /// Every conversation matching the filter, in the sort's order.
    Filter(
        Box<parley_core::query::ConversationFilter>,
        Sort,
        Map<String, Value>,
    ),
}

fn parse_selection(body: &Map<String, Value>) -> Result<Selection, ApiError> {
    match (body.get("ids"), body.get("filter")) {
        (Some(_), Some(_)) => Err(invalid("ids", "give either ids or filter, not both")),
        (None, None) => Err(invalid(
            "ids",
            "give the conversations: ids (an array) or filter (an object)",
        )),
        (Some(ids), None) => {
            let Some(list) = ids.as_array() else {
                return Err(invalid("ids", "must be an array of conversation ids"));
            };
            if list.is_empty() || list.len() > MAX_IDS {
                return Err(invalid("ids", format!("give 1 to {MAX_IDS} ids")));
            }
            let mut out = Vec::with_capacity(list.len());
            for v in list {
                let id = v
                    .as_str()
                    .and_then(|s| s.parse::<ConversationId>().ok())
                    .ok_or_else(|| invalid("ids", format!("{v} is not a conversation id")))?;
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            Ok(Selection::Ids(out))
        }
        (None, Some(f)) => {
            let Some(obj) = f.as_object() else {
                return Err(invalid("filter", "must be an object of list filters"));
            };
            let allowed: Vec<&str> = FILTER_PARAMS.iter().copied().chain(["sort"]).collect();
            let p = Params::from_pairs(filter_pairs(obj)?, &allowed)
                .map_err(|e| invalid("filter", e.message))?;
            let filter = parse_filter(&p).map_err(|e| invalid("filter", e.message))?;
            let sort = parse_sort(&p).map_err(|e| invalid("filter", e.message))?;
            Ok(Selection::Filter(Box::new(filter), sort, obj.clone()))
        }
    }
}

/// Reads the action of a request body (`action` with `end_reason` or `assignee_id`; `None` for
/// `export`). Errors: 422 `validation_failed` naming the field.
pub fn parse_op(body: &Map<String, Value>) -> Result<Option<BulkOp>, ApiError> {
    const ACTIONS: &str = "close, archive, reopen, assign, export or delete";
    let Some(action) = body.get("action") else {
        return Err(invalid("action", format!("is required: {ACTIONS}")));
    };
    let allowed: &[&str] = match action.as_str() {
        Some("close") => &["end_reason"],
        Some("assign") => &["assignee_id"],
        Some("archive" | "reopen" | "delete" | "export") => &[],
        _ => return Err(invalid("action", format!("must be one of {ACTIONS}"))),
    };
    for k in body.keys() {
        if !["action", "ids", "filter", "view"].contains(&k.as_str())
            && !allowed.contains(&k.as_str())
        {
            return Err(invalid(k, "is not a field of this action"));
        }
    }
    Ok(Some(match action.as_str().unwrap_or_default() {
        "close" => {
            let reason = body
                .get("end_reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let change = StatusChange::Close(reason.trim().to_owned());
            team::status_patch(&change, Timestamp::now())?;
            BulkOp::Status(change)
        }
        "archive" => BulkOp::Status(StatusChange::Archive),
        "reopen" => BulkOp::Status(StatusChange::Reopen),
        "assign" => match body.get("assignee_id") {
            None => {
                return Err(invalid(
                    "assignee_id",
                    "is required (a member's id, or null for nobody)",
                ));
            }
            Some(Value::Null) => BulkOp::Assign(None),
            Some(v) => BulkOp::Assign(Some(
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| invalid("assignee_id", "must be a user id or null"))?,
            )),
        },
        "delete" => BulkOp::Delete,
        _ => return Ok(None),
    }))
}

/// Checks an `Idempotency-Key` header (visible ASCII). Errors: 400 `invalid_header`.
pub fn check_key(key: Option<&axum::http::HeaderValue>) -> Result<Option<String>, ApiError> {
    let Some(key) = key else {
        return Ok(None);
    };
    match key.to_str().map(str::trim) {
        Ok(k) if !k.is_empty() && k.chars().count() <= MAX_KEY_CHARS => Ok(Some(k.to_owned())),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!("Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters"),
        )),
    }
}

/// Validates a bulk request `body` (the API's JSON object) from `who` in workspace `ws`, records
/// it and runs it (see the module docs). Errors: 422 `validation_failed` naming the field (no
/// or unknown action, both or neither of ids and filter, more than [`MAX_IDS`] ids, a bad id,
/// an unknown filter, a missing end reason, an assignee who is not a member, a filter matching
/// more than [`MAX_SELECTION`]); 403 `forbidden` for a delete by a non-admin; the store's.
pub async fn start(
    st: &AppState,
    ws: WorkspaceId,
    who: &Requester,
    body: &Value,
    idempotency_key: Option<String>,
) -> Result<Started, ApiError> {
    let Some(body) = body.as_object() else {
        return Err(invalid("body", "must be a JSON object"));
    };
    let op = parse_op(body)?;
    if body.contains_key("view") {
        return Err(invalid("view", "is not a field of this route"));
    }
    let selection = parse_selection(body)?;
    let Some(op) = op else {
        // Export: the existing export reads the same filter.
        let Selection::Filter(_, _, obj) = selection else {
            return Err(invalid(
                "ids",
                "export takes a filter: the export reads the list by its filters",
            ));
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(filter_pairs(&obj)?)
            .finish();
        return Ok(Started::Export(query));
    };
    run(st, ws, who, op, selection, idempotency_key).await
}

/// Records and runs `op` on `selection` (see [`start`], which validated both). Errors: 403
/// `forbidden` for a delete by a non-admin; 422 for an assignee who is not a member or a
/// filter matching more than [`MAX_SELECTION`]; the store's.
pub async fn run(
    st: &AppState,
    ws: WorkspaceId,
    who: &Requester,
    op: BulkOp,
    selection: Selection,
    idempotency_key: Option<String>,
) -> Result<Started, ApiError> {
    if op == BulkOp::Delete && !who.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an admin can delete conversations in bulk",
        ));
    }
    if let BulkOp::Assign(Some(u)) = op
        && !st
            .store
            .auth()
            .list_users(ws)
            .await?
            .iter()
            .any(|m| m.id == u)
    {
        return Err(invalid("assignee_id", "is not a member of this workspace"));
    }
    let (ids, selection_json) = match selection {
        Selection::Ids(ids) => {
            if ids.is_empty() || ids.len() > MAX_IDS {
                return Err(invalid("ids", format!("give 1 to {MAX_IDS} ids")));
            }
            let n = ids.len();
            (ids, json!({ "ids": n }))
        }
        Selection::Filter(filter, sort, obj) => {
            let mut walk = ListWalk::new(st.store.clone(), ws, *filter, sort);
            let mut ids = Vec::new();
            while let Some(page) = walk.next_page().await? {
                ids.extend(page.items.iter().map(|r| r.conversation.id));
                if ids.len() > MAX_SELECTION {
                    return Err(invalid(
                        "filter",
                        format!("matches more than {MAX_SELECTION} conversations: narrow it"),
                    ));
                }
            }
            (ids, json!({ "filter": obj }))
        }
    };
    let inline = ids.len() <= INLINE_MAX;
    let id = Uuid::now_v7();
    let now = Timestamp::now();
    let mut job = NewJob::new(
        BULK_JOB,
        json!({ "bulk_id": id }).to_string(),
        BULK_ATTEMPTS,
    );
    job.id = id;
    job.workspace_id = Some(ws);
    if inline {
        job.run_after = Timestamp(now.0 + INLINE_GRACE_MS);
    }
    let new = NewBulkAction {
        id,
        workspace_id: ws,
        actor: who.actor.clone(),
        action: op.name().into(),
        params: op.params().to_string(),
        selection: selection_json.to_string(),
        ids: ids.clone(),
        idempotency_key,
        created_at: now,
    };
    let (record, created) = st.store.bulk().create_bulk(&new, Some(&job)).await?;
    if !created {
        return Ok(Started::Bulk(Box::new(record)));
    }
    let mut details = json!({
        "bulk_id": id,
        "action": op.name(),
        "count": ids.len(),
        "via": who.via,
    });
    if let BulkOp::Status(StatusChange::Close(r)) = &op {
        details["end_reason"] = json!(r);
    }
    if let BulkOp::Assign(u) = &op {
        details["assignee_id"] = json!(u);
    }
    match &selection_json["filter"] {
        Value::Null => details["ids"] = json!(ids),
        f => details["filter"] = f.clone(),
    }
    st.store
        .retention()
        .append_audit(
            ws,
            &NewAuditEntry {
                actor: who.actor.clone(),
                action: AUDIT_ACTION.into(),
                target: "conversations".into(),
                details,
            },
        )
        .await?;
    if !inline {
        st.jobs.wake();
        return Ok(Started::Bulk(Box::new(record)));
    }
    let mut record = record;
    record.ids = ids;
    work(st, &op, &mut record).await?;
    Ok(Started::Bulk(Box::new(record)))
}

/// Works through `b` from its `done` count to the end, batch by batch, recording progress after
/// each. Errors: the store's (progress so far stays recorded).
async fn work(st: &AppState, op: &BulkOp, b: &mut BulkAction) -> Result<(), ApiError> {
    let ws = b.workspace_id;
    if b.state.finished() {
        return Ok(());
    }
    let total = b.ids.len();
    let mut size = FIRST_BATCH;
    while (b.done as usize) < total {
        let start = b.done as usize;
        let chunk = &b.ids[start..(start + size).min(total)];
        let began = std::time::Instant::now();
        let changed = match op {
            BulkOp::Delete => crate::retention::delete_conversations(st, ws, chunk)
                .await?
                .conversations
                .len(),
            BulkOp::Status(change) => {
                let patch = team::status_patch(change, Timestamp::now())?;
                st.store
                    .bulk()
                    .update_conversations(ws, chunk, &patch)
                    .await?
                    .len()
            }
            BulkOp::Assign(user) => {
                let patch = ConversationPatch {
                    assignee: Some(*user),
                    ..Default::default()
                };
                st.store
                    .bulk()
                    .update_conversations(ws, chunk, &patch)
                    .await?
                    .len()
            }
        };
        b.done = (start + chunk.len()) as u64;
        b.affected += changed as u64;
        b.state = if (b.done as usize) < total {
            BulkState::Running
        } else {
            BulkState::Done
        };
        st.store
            .bulk()
            .record_bulk_progress(b.id, b.done, b.affected, b.state, None)
            .await?;
        let took = began.elapsed();
        size = next_batch(size, took);
        if (b.done as usize) < total {
            // Let the other writers in between two batches.
            tokio::time::sleep(took.min(MAX_PAUSE)).await;
        }
    }
    if total == 0 {
        b.state = BulkState::Done;
        st.store
            .bulk()
            .record_bulk_progress(b.id, 0, 0, BulkState::Done, None)
            .await?;
    }
    b.finished_at = Some(Timestamp::now());
    if !matches!(op, BulkOp::Delete) {
        st.jobs.wake_insights();
    }
    Ok(())
}

/// The [`BULK_JOB`]: works through what the record has left (nothing when the request finished
/// it). A record whose action cannot be read is marked `failed`.
pub(crate) async fn run_job(st: &AppState, job: &Job) -> Result<(), JobError> {
    let Some(ws) = job.workspace_id else {
        return Err(JobError::Permanent("the job names no workspace".into()));
    };
    let Some(mut b) = st.store.bulk().bulk_action(ws, job.id, true).await? else {
        return Ok(());
    };
    if b.state.finished() {
        return Ok(());
    }
    let op = match BulkOp::from_record(&b) {
        Ok(op) => op,
        Err(e) => {
            st.store
                .bulk()
                .record_bulk_progress(b.id, b.done, b.affected, BulkState::Failed, Some(&e))
                .await?;
            return Err(JobError::Permanent(e));
        }
    };
    if let Err(e) = work(st, &op, &mut b).await {
        if job.attempts >= job.max_attempts {
            let _ = st
                .store
                .bulk()
                .record_bulk_progress(
                    b.id,
                    b.done,
                    b.affected,
                    BulkState::Failed,
                    Some(&e.message),
                )
                .await;
        }
        return Err(e.into());
    }
    Ok(())
}

/// The record `id` of the workspace as JSON. Errors: 404.
pub async fn progress(st: &AppState, ws: WorkspaceId, id: &str) -> Result<BulkAction, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::not_found("bulk action"))?;
    st.store
        .bulk()
        .bulk_action(ws, id, false)
        .await?
        .ok_or_else(|| ApiError::not_found("bulk action"))
}

/// A record as the API answers it: `{"id", "action", "state", "total", "done", "affected",
/// "error", "selection", "created_at", "finished_at", "progress_url"}` (times RFC 3339).
pub fn to_json(b: &BulkAction, base: &str) -> Value {
    json!({
        "id": b.id,
        "action": b.action,
        "state": b.state.as_str(),
        "total": b.total,
        "done": b.done,
        "affected": b.affected,
        "error": b.error,
        "selection": serde_json::from_str::<Value>(&b.selection).unwrap_or(Value::Null),
        "created_at": b.created_at,
        "finished_at": b.finished_at,
        "progress_url": format!("{base}/{}", b.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_objects_read_as_queries() {
        let f = json!({"status": ["active", "closed"], "min_rating": 4, "needs_human": true,
                       "q": "refund", "assistant": null});
        let pairs = filter_pairs(f.as_object().unwrap()).unwrap();
        assert_eq!(pairs.len(), 5);
        assert!(pairs.contains(&("min_rating".into(), "4".into())));
        assert!(filter_pairs(json!({"q": {"x": 1}}).as_object().unwrap()).is_err());
    }

    #[test]
    fn actions_are_checked() {
        let b = |v: Value| parse_op(v.as_object().unwrap());
        assert_eq!(
            b(json!({"action": "close"})).unwrap_err().code,
            "validation_failed"
        );
        assert!(b(json!({"action": "archive", "end_reason": "x"})).is_err());
        assert!(b(json!({"action": "explode"})).is_err());
        assert_eq!(
            b(json!({"action": "assign", "assignee_id": null})).unwrap(),
            Some(BulkOp::Assign(None))
        );
        assert_eq!(b(json!({"action": "export"})).unwrap(), None);
    }

    /// Batches grow while transactions are quick and shrink when one is slow, at most by a
    /// factor of two at a time and never outside `MIN_BATCH..=BATCH`.
    #[test]
    fn batches_are_sized_towards_the_target() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        assert_eq!(next_batch(100, BATCH_TARGET), 100);
        assert_eq!(next_batch(200, BATCH_TARGET * 2), 100);
        assert_eq!(next_batch(200, ms(10_000)), 100, "halved at most");
        assert_eq!(next_batch(100, BATCH_TARGET * 4 / 5), 125);
        assert_eq!(next_batch(100, ms(1)), 200, "doubled at most");
        assert_eq!(next_batch(400, ms(1)), BATCH);
        assert_eq!(next_batch(MIN_BATCH, ms(10_000)), MIN_BATCH);
        assert_eq!(next_batch(FIRST_BATCH, Duration::ZERO), 2 * FIRST_BATCH);
    }
}
