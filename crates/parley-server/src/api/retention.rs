//! Retention, erasure and the audit log, for machines (issue 16; the rules are
//! [`crate::retention`]'s, shared with the dashboard and the CLI). Reading the policy takes any
//! API key of the workspace; changing or running it, the audit log and erasure take an `admin`
//! key (a `member` key gets 403 `forbidden`).
//!
//! - `GET /api/v1/retention`, `PUT /api/v1/retention`: the workspace's policy;
//! - `POST /api/v1/retention/run`: run it now (`{"dry_run": true}` only counts);
//! - `GET /api/v1/audit-log`: the audit log, newest first;
//! - `POST /api/v1/contacts/erase`: delete everything about one contact.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_core::{ConversationId, ConversationStatus, Timestamp, WorkspaceId};
use parley_store::retention::MAX_RETENTION_DAYS;
use parley_store::{ContactMatch, NewAuditEntry, RetentionPolicy};
use serde_json::{Map, Value, json};

use super::{ApiJson, Params};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::retention::{self, api_key_actor};

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("{field}: {}", message.into()),
    )
    .with_field(field)
}

fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "the body must be a JSON object",
        )),
    }
}

fn no_other_fields(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(
            k,
            format!("unknown field; expected one of: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A period field: absent or `null` = keep for ever; else a whole number of days from 1 to
/// [`MAX_RETENTION_DAYS`] (`30.0` reads as 30).
fn days(m: &Map<String, Value>, field: &str) -> Result<Option<u32>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .and_then(|d| u32::try_from(d).ok())
            .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    field,
                    format!(
                        "must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, or null"
                    ),
                )
            }),
        Some(_) => Err(invalid(
            field,
            format!("must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, or null"),
        )),
    }
}

/// Reads a policy body (see `PUT /api/v1/retention` in `openapi.json`). Errors: 422
/// `validation_failed` with the field at fault.
pub(crate) fn policy_from(body: Value) -> Result<RetentionPolicy, ApiError> {
    let m = object(body)?;
    no_other_fields(
        &m,
        &[
            "conversation_days",
            "conversation_statuses",
            "attachment_days",
            "tracker_days",
        ],
    )?;
    let mut statuses = Vec::new();
    match m.get("conversation_statuses") {
        None => {}
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let field = format!("conversation_statuses[{i}]");
                let s: ConversationStatus = v
                    .as_str()
                    .ok_or_else(|| invalid(&field, "must be a status name"))?
                    .parse()
                    .map_err(|e: parley_core::vocab::UnknownName| invalid(&field, e.to_string()))?;
                if statuses.contains(&s) {
                    return Err(invalid(&field, "is given twice"));
                }
                statuses.push(s);
            }
        }
        Some(_) => {
            return Err(invalid(
                "conversation_statuses",
                "must be an array of statuses (empty = any status)",
            ));
        }
    }
    Ok(RetentionPolicy {
        conversation_days: days(&m, "conversation_days")?,
        conversation_statuses: statuses,
        attachment_days: days(&m, "attachment_days")?,
        tracker_days: days(&m, "tracker_days")?,
        updated_at: None,
    })
}

/// Saves a policy and records `retention.policy_updated` (the new policy as details) as
/// `actor`. Returns the stored policy.
pub(crate) async fn save_policy(
    st: &AppState,
    ws: WorkspaceId,
    policy: &RetentionPolicy,
    actor: String,
) -> Result<RetentionPolicy, ApiError> {
    let r = st.store.retention();
    r.save_retention_policy(ws, policy, Timestamp::now())
        .await?;
    let saved = r.retention_policy(ws).await?;
    r.append_audit(
        ws,
        &NewAuditEntry {
            actor,
            action: "retention.policy_updated".into(),
            target: "workspace".into(),
            details: json!({ "policy": saved }),
        },
    )
    .await?;
    Ok(saved)
}

/// `GET /api/v1/retention`: 200 with the policy (every period `null` when none was saved).
pub(super) async fn get_policy(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
) -> Result<Response, ApiError> {
    let p = st
        .store
        .retention()
        .retention_policy(auth.workspace)
        .await?;
    Ok(Json(p).into_response())
}

/// `PUT /api/v1/retention`: replaces the policy (an absent field is `null`); 200 with it.
/// Errors: 422 `validation_failed` (a period out of 1..=36500, an unknown status or field).
pub(super) async fn put_policy(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    auth.require_admin("change the retention policy")?;
    let policy = policy_from(body)?;
    let saved = save_policy(&st, auth.workspace, &policy, api_key_actor(auth.key)).await?;
    Ok(Json(saved).into_response())
}

/// `POST /api/v1/retention/run`: runs the policy now; 200 with the run (policy, counts,
/// times). Body (optional): `{"dry_run": bool}`. Errors: 409 `retention_busy` while another
/// run works on the workspace; 422 `validation_failed`.
pub(super) async fn run(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    auth.require_admin("run the retention policy")?;
    let m = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        let json = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let mime = ct.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        object(super::parse_json::<Value>(&body)?)?
    };
    no_other_fields(&m, &["dry_run"])?;
    let dry_run = match m.get("dry_run") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("dry_run", "must be true or false")),
    };
    let out = retention::run(&st, auth.workspace, dry_run, &api_key_actor(auth.key), true).await?;
    Ok(Json(out).into_response())
}

/// `GET /api/v1/audit-log?action=&before=&limit=`: 200 with `{"entries": [...],
/// "next_before": id | null}`, newest first (`limit` 1..=200, default 50; `before` the
/// `next_before` of the previous page). Errors: 400 `invalid_parameter`.
pub(super) async fn audit_log(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    auth.require_admin("read the audit log")?;
    let p = Params::parse(raw.as_deref(), &["action", "before", "limit"])?;
    // An empty value is the same as none, as on every other route (the OpenAPI document says
    // so).
    let limit = p.int("limit", 1..=200, 50)?;
    let before = p
        .get("before")
        .map(|b| {
            uuid::Uuid::parse_str(b)
                .map_err(|_| ApiError::bad_param("before", "before must be an entry id (a UUID)"))
        })
        .transpose()?;
    let action = p.get("action");
    if action.is_some_and(|a| a.chars().count() > 100) {
        return Err(ApiError::bad_param(
            "action",
            "action must be at most 100 characters",
        ));
    }
    let entries = st
        .store
        .retention()
        .audit_log(auth.workspace, action, before, limit)
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next_before": next })).into_response())
}

/// Reads an erasure body: exactly one of `conversation_id` (the contact of that
/// conversation), `contact`, `email`, `phone`. Errors: 422 `validation_failed`; 404
/// `not_found` when `conversation_id` names no conversation of the workspace or it has no
/// contact.
pub(crate) async fn contact_from(
    st: &AppState,
    ws: WorkspaceId,
    body: Value,
) -> Result<ContactMatch, ApiError> {
    const KEYS: &[&str] = &["conversation_id", "contact", "email", "phone"];
    let m = object(body)?;
    no_other_fields(&m, KEYS)?;
    let given: Vec<(&String, &Value)> = m.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(key, value)] = given.as_slice() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "give exactly one of conversation_id, contact, email, phone",
        ));
    };
    let text = value
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.chars().count() <= 320)
        .ok_or_else(|| invalid(key, "must be a non-empty string of at most 320 characters"))?;
    match key.as_str() {
        "conversation_id" => {
            let id: ConversationId = text
                .parse()
                .map_err(|_| invalid(key, "must be a conversation id (a UUID)"))?;
            let d = st
                .store
                .conversations()
                .get_conversation(ws, id)
                .await?
                .ok_or_else(|| ApiError::not_found("conversation"))?;
            d.summary
                .contact
                .filter(|c| !c.is_empty())
                .map(ContactMatch::Contact)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "no_contact",
                        "conversation_id: this conversation has no contact; delete it instead",
                    )
                    .with_field("conversation_id")
                })
        }
        "contact" => Ok(ContactMatch::Contact(text.to_owned())),
        "email" => {
            if !text.contains('@') {
                return Err(invalid(key, "must be an email address"));
            }
            Ok(ContactMatch::Email(text.to_owned()))
        }
        _ => {
            if parley_store::retention::phone_digits(text).len() < 5 {
                return Err(invalid(key, "must be a phone number (at least 5 digits)"));
            }
            Ok(ContactMatch::Phone(text.to_owned()))
        }
    }
}

/// `POST /api/v1/contacts/erase`: deletes everything about one contact; 200 with
/// `{"conversations", "messages", "attachment_files"}` (zeros when nothing is left: a retry
/// is harmless). Errors: see [`contact_from`].
pub(super) async fn erase(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    auth.require_admin("erase a contact")?;
    let contact = contact_from(&st, auth.workspace, body).await?;
    let out = retention::erase_contact(
        &st,
        auth.workspace,
        &contact,
        &api_key_actor(auth.key),
        "api",
    )
    .await?;
    Ok(Json(out).into_response())
}
