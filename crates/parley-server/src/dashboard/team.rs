//! The panel's team actions (issue 14), for the signed-in member: JSON requests from the
//! dashboard's script carrying the session's CSRF token in `X-CSRF-Token`, answered with JSON
//! (`{"ok": true}` or the message) or `{"error": {"code", "message"}}`. The rules are
//! [`crate::team`]'s, the same as the API's.
//!
//! | route | body | does |
//! | --- | --- | --- |
//! | `POST /conversations/{id}/reply` | `{"text"}` or `{"template"}` | the member's reply on the channel |
//! | `POST /conversations/{id}/takeover`, `.../handback` | none | pause / resume a hybrid assistant |
//! | `POST /conversations/{id}/status` | `{"status": "closed" \| "archived" \| "active", "end_reason"}` | close, archive, reopen |
//! | `POST /conversations/{id}/assign` | `{"assignee_id": id \| null}` | assign |
//! | `GET /conversations/{id}/templates` | | the WhatsApp number's approved templates |
//! | `POST /conversations/bulk` | `{"action", "ids"}` or `{"action", "view"}` | a bulk action ([`bulk`]) |
//! | `GET /conversations/bulk/{id}` | | its progress |

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parley_core::model::Author;
use parley_core::{ConversationId, ConversationStatus};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::team::ReplyInput;
use crate::auth::session::Session;
use crate::error::ApiError;
use crate::team::{self, StatusChange};

/// The session's member, after the CSRF check; the conversation id from the path.
fn guard(session: &Session, headers: &HeaderMap, id: &str) -> Result<ConversationId, ApiError> {
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !session.csrf_ok(token) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "the page has expired: reload it and try again",
        ));
    }
    id.parse().map_err(|_| ApiError::not_found("conversation"))
}

fn answer(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

fn ok() -> Response {
    Json(json!({ "ok": true })).into_response()
}

/// `POST /conversations/{id}/reply`: 201 with the stored message; the signed-in member is its
/// author. Errors: see [`team::reply`]; 403 `csrf_failed`.
pub(super) async fn reply(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    answer(
        async {
            let id = guard(&session, &headers, &id)?;
            let mut input: ReplyInput = crate::body::parse_json(&body)?;
            input.author = None;
            let author = Author {
                user_id: Some(session.user.id),
                name: session.user.email.clone(),
            };
            let ws = session.user.workspace_id;
            let m = team::reply(&st, ws, id, author, input.body()?).await?;
            tracing::info!(user = %session.user.email, conversation = %id, "replied");
            Ok((StatusCode::CREATED, Json(m)).into_response())
        }
        .await,
    )
}

/// `POST /conversations/{id}/takeover`. Errors: see [`team::take_over`].
pub(super) async fn take_over(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    handling(&st, &session, &headers, &id, true).await
}

/// `POST /conversations/{id}/handback`. Errors: see [`team::hand_back`].
pub(super) async fn hand_back(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    handling(&st, &session, &headers, &id, false).await
}

async fn handling(
    st: &AppState,
    session: &Session,
    headers: &HeaderMap,
    id: &str,
    team_handles: bool,
) -> Response {
    answer(
        async {
            let id = guard(session, headers, id)?;
            let ws = session.user.workspace_id;
            if team_handles {
                team::take_over(st, ws, id).await?;
            } else {
                team::hand_back(st, ws, id).await?;
            }
            Ok(ok())
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusInput {
    status: ConversationStatus,
    #[serde(default)]
    end_reason: Option<String>,
}

/// `POST /conversations/{id}/status`: close (with `end_reason`), archive or reopen. Errors:
/// see [`team::set_status`].
pub(super) async fn status(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    answer(
        async {
            let id = guard(&session, &headers, &id)?;
            let input: StatusInput = crate::body::parse_json(&body)?;
            let change = match input.status {
                ConversationStatus::Closed => {
                    StatusChange::Close(input.end_reason.unwrap_or_default())
                }
                ConversationStatus::Archived => StatusChange::Archive,
                ConversationStatus::Active => StatusChange::Reopen,
            };
            team::set_status(&st, session.user.workspace_id, id, &change).await?;
            Ok(ok())
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignInput {
    assignee_id: Option<parley_core::UserId>,
}

/// `POST /conversations/{id}/assign`. Errors: see [`team::assign`].
pub(super) async fn assign(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    answer(
        async {
            let id = guard(&session, &headers, &id)?;
            let input: AssignInput = crate::body::parse_json(&body)?;
            team::assign(&st, session.user.workspace_id, id, input.assignee_id).await?;
            Ok(ok())
        }
        .await,
    )
}

/// `GET /conversations/{id}/templates`: `{"templates": [...]}` for the template picker.
/// Errors: see [`crate::api::team::templates_of`].
pub(super) async fn templates(
    State(st): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            let id: ConversationId = id
                .parse()
                .map_err(|_| ApiError::not_found("conversation"))?;
            let list = crate::api::team::templates_of(&st, session.user.workspace_id, id).await?;
            Ok(Json(json!({ "templates": list })).into_response())
        }
        .await,
    )
}

/// `POST /conversations/bulk`: the Conversations list's bulk action (see [`crate::bulk`]) for
/// the signed-in member: `{"action", "end_reason" | "assignee_id", "ids": [...]}` for the
/// selected rows, or `{"action", ..., "view": "<the list's query>"}` for "all matching this
/// filter" (every list filter, view, search and sort, as the page reads them). Answers the
/// record as the API does (200 finished, 202 running) or `{"export_url"}` (the dashboard's
/// export of the same view). `Idempotency-Key` as in the API. Errors: see
/// [`crate::bulk::start`]; 403 `csrf_failed`; 403 `forbidden` for a delete by a member.
pub(super) async fn bulk(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
            if !session.csrf_ok(token) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "the page has expired: reload it and try again",
                ));
            }
            let key = crate::bulk::check_key(headers.get("idempotency-key"))?;
            let input: serde_json::Value = crate::body::parse_json(&body)?;
            let Some(obj) = input.as_object() else {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "body: must be a JSON object",
                ));
            };
            let who = crate::bulk::Requester {
                actor: crate::retention::user_actor(session.user.id),
                admin: session.user.role == parley_core::UserRole::Admin,
                via: "dashboard",
            };
            let ws = session.user.workspace_id;
            let started = match obj.get("view") {
                None => crate::bulk::start(&st, ws, &who, &input, key).await?,
                Some(view) => {
                    let raw = view.as_str().unwrap_or_default().trim_start_matches('?');
                    let (state, _) = super::state::ViewState::parse(Some(raw));
                    let mut view_state = state.clone();
                    view_state.open = None;
                    view_state.notice = None;
                    view_state.after = None;
                    view_state.before = None;
                    let filter = state.filter(super::tz_offset(&headers), session.user.id);
                    let mut rest = obj.clone();
                    rest.remove("view");
                    let Some(op) = crate::bulk::parse_op(&rest)? else {
                        return Ok(Json(json!({
                            "export_url": format!("/conversations/export?{}", view_state.query()),
                        }))
                        .into_response());
                    };
                    let mut record = serde_json::Map::new();
                    record.insert("view".into(), json!(view_state.query()));
                    let selection =
                        crate::bulk::Selection::Filter(Box::new(filter), state.sort, record);
                    crate::bulk::run(&st, ws, &who, op, selection, key).await?
                }
            };
            match started {
                crate::bulk::Started::Export(q) => Ok(Json(json!({
                    "export_url": format!("/conversations/export?{q}"),
                }))
                .into_response()),
                crate::bulk::Started::Bulk(b) => {
                    let status = if b.state.finished() {
                        StatusCode::OK
                    } else {
                        StatusCode::ACCEPTED
                    };
                    Ok((
                        status,
                        Json(crate::bulk::to_json(&b, "/conversations/bulk")),
                    )
                        .into_response())
                }
            }
        }
        .await,
    )
}

/// `GET /conversations/bulk/{id}`: a bulk action's progress, for the list's progress bar.
/// Errors: 404 for another workspace's.
pub(super) async fn bulk_progress(
    State(st): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            let b = crate::bulk::progress(&st, session.user.workspace_id, &id).await?;
            Ok(Json(crate::bulk::to_json(&b, "/conversations/bulk")).into_response())
        }
        .await,
    )
}
