//! `/api/v1/conversations` and its sub-resources.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parley_core::model::{ConversationInput, ConversationPatch, MessageInput};
use parley_core::query::{
    AssigneeFilter, ConversationFilter, Cursor, DEFAULT_LIMIT, ListQuery, MAX_LIMIT, Sort,
    TranscriptQuery,
};
use parley_core::{AssistantId, Channel, ConversationId, ConversationStatus, Role, Timestamp};
use parley_store::MessageOutcome;
use serde::Deserialize;
use serde_json::json;

use super::{ApiJson, Params, path_id};
use crate::AppState;
use crate::assistant::runtime;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, ingest_with_jobs};

/// Names of the list filters, shared by the list, count and export routes.
pub(crate) const FILTER_PARAMS: &[&str] = &[
    "status",
    "channel",
    "assistant",
    "min_rating",
    "from",
    "to",
    "q",
    "sentiment",
    "resolution",
    "topic",
    "started_from",
    "started_to",
    "needs_human",
    "assignee",
    "calls",
];

/// Parses the list filters. Errors: 400 `invalid_parameter` naming the parameter.
pub(crate) fn parse_filter(p: &Params) -> Result<ConversationFilter, ApiError> {
    fn names<T: std::str::FromStr>(p: &Params, name: &str) -> Result<Vec<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        p.list(name)
            .into_iter()
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| ApiError::bad_param(name, e.to_string()))
            })
            .collect()
    }
    let statuses: Vec<ConversationStatus> = names(p, "status")?;
    let channels: Vec<Channel> = names(p, "channel")?;
    let assistants = p
        .list("assistant")
        .into_iter()
        .map(|v| {
            v.parse::<AssistantId>().map_err(|_| {
                ApiError::bad_param("assistant", format!("{v:?} is not an assistant id"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let min_rating = match p.get("min_rating") {
        None => None,
        Some(_) => Some(p.int("min_rating", 1..=5, 1)? as u8),
    };
    let bound = |name: &str, end: bool| -> Result<Option<Timestamp>, ApiError> {
        p.get(name)
            .map(|v| {
                Timestamp::parse_bound(v, end).map_err(|_| {
                    ApiError::bad_param(
                        name,
                        format!("{name} must be an RFC 3339 date-time or YYYY-MM-DD, got {v:?}"),
                    )
                })
            })
            .transpose()
    };
    let from = bound("from", false)?;
    let to = bound("to", true)?;
    let started_from = bound("started_from", false)?;
    let started_to = bound("started_to", true)?;
    if let (Some(f), Some(t)) = (started_from, started_to)
        && t <= f
    {
        return Err(ApiError::bad_param(
            "started_to",
            "started_to must be after started_from",
        ));
    }
    // A range that ends before it starts is almost always a typo: said so, rather than answered
    // with an empty list. (JSON Schema cannot state it; the OpenAPI document says it in words.)
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        return Err(ApiError::bad_param("to", "to must be after from"));
    }
    let q = p.get("q").map(str::to_owned);
    if q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::bad_param("q", "q must be at most 200 characters"));
    }
    // No stored text holds a NUL (PostgreSQL text cannot): refused rather than sent to the store.
    for name in ["q", "topic"] {
        if p.get(name).is_some_and(|v| v.contains('\0')) {
            return Err(ApiError::bad_param(
                name,
                format!("{name} must not contain a NUL character"),
            ));
        }
    }
    Ok(ConversationFilter {
        statuses,
        channels,
        assistants,
        min_rating,
        from,
        to,
        q,
        sentiments: names(p, "sentiment")?,
        resolutions: names(p, "resolution")?,
        topic: match p.get("topic").map(str::trim) {
            None | Some("") => None,
            Some(t) if t.chars().count() > 200 => {
                return Err(ApiError::bad_param(
                    "topic",
                    "topic must be at most 200 characters",
                ));
            }
            Some(t) => Some(t.to_lowercase()),
        },
        started_from,
        started_to,
        needs_human: match p.get("needs_human") {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => {
                return Err(ApiError::bad_param(
                    "needs_human",
                    format!("needs_human must be true or false, got {v:?}"),
                ));
            }
        },
        assignee: match p.get("assignee") {
            None => None,
            Some("none") => Some(AssigneeFilter::Unassigned),
            Some(v) => Some(AssigneeFilter::User(v.parse().map_err(|_| {
                ApiError::bad_param(
                    "assignee",
                    format!("assignee must be a user id or none, got {v:?}"),
                )
            })?)),
        },
        calls: match p.get("calls") {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => {
                return Err(ApiError::bad_param(
                    "calls",
                    format!("calls must be true or false, got {v:?}"),
                ));
            }
        },
    })
}

/// Parses `sort`. Errors: 400 `invalid_parameter`.
pub(crate) fn parse_sort(p: &Params) -> Result<Sort, ApiError> {
    p.get("sort")
        .map(|s| {
            s.parse::<Sort>()
                .map_err(|e| ApiError::bad_param("sort", e.to_string()))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

fn list_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let allowed: Vec<&str> = FILTER_PARAMS
        .iter()
        .copied()
        .chain(["sort", "limit", "cursor"])
        .collect();
    let p = Params::parse(raw, &allowed)?;
    let sort = parse_sort(&p)?;
    let cursor = p
        .get("cursor")
        .map(|c| Cursor::decode(c, sort).map_err(|e| ApiError::bad_param("cursor", e.to_string())))
        .transpose()?;
    Ok(ListQuery {
        filter: parse_filter(&p)?,
        sort,
        limit: p.int("limit", 1..=MAX_LIMIT, DEFAULT_LIMIT)?,
        cursor,
    })
}

/// `GET /api/v1/conversations`: one page of the list.
pub(super) async fn list(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = list_query(raw.as_deref())?;
    let page = st
        .store
        .conversations()
        .list_conversations(auth.workspace, &query)
        .await?;
    let ids: Vec<ConversationId> = page.items.iter().map(|r| r.conversation.id).collect();
    let insights: std::collections::HashMap<
        ConversationId,
        parley_core::insights::ConversationInsight,
    > = st
        .store
        .insights()
        .insights_of(auth.workspace, &ids)
        .await?
        .into_iter()
        .map(|(id, s)| (id, s.insight))
        .collect();
    let mut v = json!(page);
    if let Some(items) = v.get_mut("items").and_then(|i| i.as_array_mut()) {
        for (row, listed) in items.iter_mut().zip(&page.items) {
            with_list_insight(row, insights.get(&listed.conversation.id));
        }
    }
    Ok(Json(v).into_response())
}

/// A list row with its insight (issue 13): `sentiment` is the client's, else the computed one,
/// else `null`; `resolution` is the computed outcome, `null` until analysed; `topic` the topic
/// key, `null` when in none.
pub(crate) fn with_list_insight(
    row: &mut serde_json::Value,
    insight: Option<&parley_core::insights::ConversationInsight>,
) {
    let Some(o) = row.as_object_mut() else {
        return;
    };
    if o.get("sentiment").is_none_or(|s| s.is_null())
        && let Some(s) = insight.and_then(|i| i.sentiment.as_ref())
    {
        o.insert("sentiment".into(), json!(s));
    }
    o.insert("resolution".into(), json!(insight.map(|i| i.resolution)));
    o.insert(
        "topic".into(),
        json!(insight.and_then(|i| i.topic.as_ref())),
    );
}

/// `GET /api/v1/conversations/count`.
pub(super) async fn count(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), FILTER_PARAMS)?;
    let filter = parse_filter(&p)?;
    let count = st
        .store
        .conversations()
        .count_conversations(auth.workspace, &filter)
        .await?;
    Ok(Json(count).into_response())
}

/// `POST /api/v1/conversations/bulk`: a bulk action ([`crate::bulk`]) on conversations selected
/// by `ids` or `filter`. Answers 200 with the finished record for a selection of at most
/// [`crate::bulk::INLINE_MAX`], else 202 with the running record and `Location` (its progress);
/// `{"export_url"}` for `export`. An `Idempotency-Key` header makes a retry answer the first
/// record. Errors: see [`crate::bulk::start`]; 403 for a delete with a member key.
pub(super) async fn bulk(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let key = crate::bulk::check_key(headers.get("idempotency-key"))?;
    let who = crate::bulk::Requester {
        actor: crate::retention::api_key_actor(auth.key),
        admin: auth.role == parley_core::UserRole::Admin,
        via: "api",
    };
    const BASE: &str = "/api/v1/conversations/bulk";
    match crate::bulk::start(&st, auth.workspace, &who, &body, key).await? {
        crate::bulk::Started::Export(query) => Ok(Json(json!({
            "export_url": format!("/api/v1/conversations/export?{query}"),
        }))
        .into_response()),
        crate::bulk::Started::Bulk(b) => {
            let body = crate::bulk::to_json(&b, BASE);
            if b.state.finished() {
                return Ok(Json(body).into_response());
            }
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("{BASE}/{}", b.id)) {
                headers.insert(header::LOCATION, v);
            }
            Ok((StatusCode::ACCEPTED, headers, Json(body)).into_response())
        }
    }
}

/// `GET /api/v1/conversations/bulk/{id}`: a bulk action's progress (`state`, `total`, `done`,
/// `affected`). Errors: 404 for an id not of the key's workspace.
pub(super) async fn bulk_progress(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let b = crate::bulk::progress(&st, auth.workspace, &id).await?;
    Ok(Json(crate::bulk::to_json(&b, "/api/v1/conversations/bulk")).into_response())
}

/// `POST /api/v1/conversations`: 201 with the new conversation, or 200 with the existing one
/// its `id`/`external_id` names.
pub(super) async fn create(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(input): ApiJson<ConversationInput>,
) -> Result<Response, ApiError> {
    let last_role = input.messages.last().map(|m| m.role);
    let jobs = answer_jobs(&st, auth.workspace, last_role).await;
    let may_answer = !jobs.is_empty();
    let out = ingest_with_jobs(
        &st,
        auth.workspace,
        vec![IngestRequest::Create(Box::new(input))],
        jobs,
    )
    .await?
    .remove(0);
    let detail = st
        .store
        .conversations()
        .get_conversation(auth.workspace, out.conversation_id)
        .await?
        .ok_or_else(|| ApiError::internal("conversation vanished after ingest"))?;
    let answering = may_answer
        && matches!(out.messages.last(), Some(MessageOutcome::Stored { .. }))
        && runtime::assistant_answers(&st, auth.workspace, detail.summary.assistant.id).await;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/conversations/{}", out.conversation_id))
    {
        headers.insert(header::LOCATION, v);
    }
    let body = json!({"created": out.created, "conversation": detail, "messages": out.messages,
                      "answering": answering});
    Ok((status, headers, Json(body)).into_response())
}

/// `GET /api/v1/conversations/{id}`.
pub(super) async fn detail(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    let d = st
        .store
        .conversations()
        .get_conversation(auth.workspace, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let stored = st.store.insights().insight(auth.workspace, id).await?;
    Ok(Json(with_insight(d, stored)).into_response())
}

/// The record with its computed insight (issue 13), as `GET /api/v1/conversations/{id}` answers
/// it: a client-sent `sentiment` stays (`sentiment_source: "client"`); otherwise the computed one
/// fills it (`"lexicon"`), or it stays `null` (not analysed). `sentiment_shift`, `resolution`,
/// `first_response_ms`, `key_phrases` (best first), `topic` (the topic key or `null`) and
/// `analysed_at` come from the stored insight and are left out until
/// the conversation has been analysed (`parley analyse`).
fn with_insight(
    mut d: parley_core::model::ConversationDetail,
    stored: Option<parley_store::StoredInsight>,
) -> serde_json::Value {
    let client = d.summary.sentiment.is_some();
    let mut extra = serde_json::Map::new();
    if let Some(s) = stored {
        let i = s.insight;
        if !client {
            d.summary.sentiment = i.sentiment;
        }
        extra.insert("sentiment_shift".into(), json!(i.sentiment_shift));
        extra.insert("resolution".into(), json!(i.resolution));
        extra.insert("first_response_ms".into(), json!(i.first_response_ms));
        extra.insert("key_phrases".into(), json!(i.key_phrases));
        extra.insert("topic".into(), json!(i.topic));
        extra.insert("analysed_at".into(), json!(s.analysed_at));
    }
    let source = if client {
        Some("client")
    } else {
        d.summary.sentiment.as_ref().map(|_| "lexicon")
    };
    extra.insert("sentiment_source".into(), json!(source));
    let mut v = json!(d);
    if let Some(o) = v.as_object_mut() {
        o.extend(extra);
    }
    v
}

/// `PATCH /api/v1/conversations/{id}`.
pub(super) async fn update(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<ConversationPatch>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    parley_core::validate::patch(&patch)?;
    apply_patch(&st, auth, id, &patch).await
}

/// Applies a validated patch and answers with the updated record (404 if not in the workspace).
async fn apply_patch(
    st: &AppState,
    auth: ApiKeyAuth,
    id: ConversationId,
    patch: &ConversationPatch,
) -> Result<Response, ApiError> {
    let d = st
        .store
        .conversations()
        .update_conversation(auth.workspace, id, patch)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    Ok(Json(d).into_response())
}

/// `DELETE /api/v1/conversations/{id}`: 204, irreversibly.
pub(super) async fn delete(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    if !crate::channels::media::delete_conversation(&st, auth.workspace, id).await? {
        return Err(ApiError::not_found("conversation"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/v1/conversations/{id}/rating`: 200 with the updated conversation.
pub(super) async fn delete_rating(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    let patch = ConversationPatch {
        rating: Some(None),
        ..Default::default()
    };
    apply_patch(&st, auth, id, &patch).await
}

/// `GET /api/v1/conversations/{id}/messages?page=&per_page=&order=&include=`.
pub(super) async fn messages(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    let p = Params::parse(raw.as_deref(), &["page", "per_page", "order", "include"])?;
    let newest_first = match p.get("order") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::bad_param("order", "order must be asc or desc")),
    };
    let include_hidden = match p.get("include") {
        None | Some("visible") => false,
        Some("all") => true,
        Some(_) => {
            return Err(ApiError::bad_param(
                "include",
                "include must be visible or all",
            ));
        }
    };
    let query = TranscriptQuery {
        page: p.int("page", 1..=1_000_000, 1)?,
        per_page: p.int("per_page", 1..=200, 50)?,
        newest_first,
        include_hidden,
    };
    let page = st
        .store
        .conversations()
        .list_messages(auth.workspace, id, &query)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let order = if newest_first { "desc" } else { "asc" };
    let mut body = serde_json::to_value(page).map_err(ApiError::internal)?;
    body["order"] = json!(order);
    Ok(Json(body).into_response())
}

/// `POST /api/v1/conversations/{id}/messages` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppendBody {
    messages: Vec<MessageInput>,
}

/// `POST /api/v1/conversations/{id}/messages`: appends atomically; 201 if any message was
/// stored, 200 if all were duplicates.
pub(super) async fn append(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AppendBody>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    let last_role = body.messages.last().map(|m| m.role);
    let jobs = answer_jobs(&st, auth.workspace, last_role).await;
    let may_answer = !jobs.is_empty();
    let out = ingest_with_jobs(
        &st,
        auth.workspace,
        vec![IngestRequest::Append {
            conversation: id,
            messages: body.messages,
        }],
        jobs,
    )
    .await?
    .remove(0);
    let stored = out.stored();
    let duplicates = out
        .messages
        .iter()
        .filter(|m| matches!(m, MessageOutcome::Duplicate { .. }))
        .count();
    let last_is_new = matches!(out.messages.last(), Some(MessageOutcome::Stored { .. }));
    let answering = if may_answer && last_is_new {
        match st
            .store
            .conversations()
            .get_conversation(auth.workspace, id)
            .await?
        {
            Some(c) => {
                runtime::assistant_answers(&st, auth.workspace, c.summary.assistant.id).await
            }
            None => false,
        }
    } else {
        false
    };
    let status = if stored > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "conversation_id": out.conversation_id,
        "stored": stored,
        "duplicates": duplicates,
        "messages": out.messages,
        "answering": answering,
    });
    Ok((status, Json(body)).into_response())
}

/// The `answer` job to write with a request whose last message has role `last_role` (see
/// [`crate::jobs::answer_job`]): one when it is a customer message and some assistant of the
/// workspace answers at all; the job writes itself only if that message is newly stored, and
/// finds out on its run whether this conversation's assistant answers.
async fn answer_jobs(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    last_role: Option<Role>,
) -> Vec<parley_store::jobs::IngestJob> {
    if last_role == Some(Role::User) && runtime::any_assistant_answers(st, workspace).await {
        vec![crate::jobs::answer_job(
            0,
            workspace,
            None,
            serde_json::Value::Null,
        )]
    } else {
        Vec::new()
    }
}
