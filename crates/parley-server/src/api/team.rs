//! The team's actions on a conversation, for machines (issue 14; the rules are
//! [`crate::team`]'s, shared with the dashboard):
//!
//! - `POST /api/v1/conversations/{id}/replies`: a team member's reply on the conversation's
//!   channel;
//! - `POST /api/v1/conversations/{id}/takeover`, `.../handback`: pause and resume a hybrid
//!   assistant;
//! - `PUT /api/v1/conversations/{id}/assignee`: assign to a member (or nobody);
//! - `GET /api/v1/conversations/{id}/templates`: the approved WhatsApp templates of the
//!   conversation's number.
//!
//! Closing, archiving and reopening are `PATCH /api/v1/conversations/{id}` (`status`,
//! `end_reason`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_core::ConversationId;
use parley_core::channel::ChannelKind;
use parley_core::model::Author;
use serde::Deserialize;
use serde_json::json;

use super::{ApiJson, path_id};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::channels::{self, whatsapp};
use crate::error::ApiError;
use crate::team::{self, ReplyBody};

/// A reply's body: exactly one of `text` and `template`; on Messenger `text` may come with a
/// `message_tag`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyInput {
    /// Free-form text (markdown), at most [`team::MAX_REPLY_CHARS`] characters.
    #[serde(default)]
    pub text: Option<String>,
    /// A WhatsApp template: `{"name", "language", "parameters": [...]}`.
    #[serde(default)]
    pub template: Option<whatsapp::Template>,
    /// Messenger only: the message tag that lets `text` go outside the 24-hour standard
    /// messaging window (`HUMAN_AGENT`, `ACCOUNT_UPDATE`, `CONFIRMED_EVENT_UPDATE`,
    /// `POST_PURCHASE_UPDATE`).
    #[serde(default)]
    pub message_tag: Option<String>,
    /// API only: who wrote it, as shown in the transcript (default `API`; at most 200
    /// characters).
    #[serde(default)]
    pub author: Option<String>,
}

impl ReplyInput {
    /// The body, or 422 `validation_failed` unless exactly one of `text` and `template` is
    /// given, or for an unknown `message_tag` or one given with a template.
    pub fn body(self) -> Result<ReplyBody, ApiError> {
        let invalid = |field: &str, m: String| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("{field}: {m}"),
            )
            .with_field(field)
        };
        let tag = match self.message_tag.as_deref() {
            None => None,
            Some(t) => Some(
                crate::channels::messenger::MessageTag::parse(t)
                    .map_err(|m| invalid("message_tag", m))?,
            ),
        };
        match (self.text, self.template, tag) {
            (Some(t), None, None) => Ok(ReplyBody::Text(t)),
            (Some(t), None, Some(tag)) => Ok(ReplyBody::Tagged(t, tag)),
            (None, Some(t), None) => Ok(ReplyBody::Template(t)),
            (None, Some(_), Some(_)) => Err(invalid(
                "message_tag",
                "goes with a text, not a template".into(),
            )),
            _ => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "text: give either a text or a template",
            )
            .with_field("text")),
        }
    }
}

/// `POST /api/v1/conversations/{id}/replies`: 201 with the stored `agent` message (its
/// delivery is recorded by the background send on WhatsApp and Telegram). Errors: see
/// [`team::reply`]; 400 `invalid_id`.
pub(super) async fn reply(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReplyInput>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    let name = input
        .author
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("API")
        .to_owned();
    if name.chars().count() > parley_core::validate::MAX_NAME_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "author: must be at most 200 characters",
        )
        .with_field("author"));
    }
    let author = Author {
        user_id: None,
        name,
    };
    let m = team::reply(&st, auth.workspace, id, author, input.body()?).await?;
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

/// `POST /api/v1/conversations/{id}/takeover`: 200 with the record (`taken_over_at` set).
/// Errors: see [`team::take_over`].
pub(super) async fn take_over(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    Ok(Json(team::take_over(&st, auth.workspace, id).await?).into_response())
}

/// `POST /api/v1/conversations/{id}/handback`: 200 with the record (`taken_over_at` null).
/// Errors: see [`team::hand_back`].
pub(super) async fn hand_back(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    Ok(Json(team::hand_back(&st, auth.workspace, id).await?).into_response())
}

/// `PUT /api/v1/conversations/{id}/assignee` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignInput {
    /// A member's user id, or `null` for nobody; required (`None` when absent).
    #[serde(default, deserialize_with = "present")]
    pub assignee_id: Option<Option<parley_core::UserId>>,
}

/// A field that is there, `null` or not (its absence is `None`).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<parley_core::UserId>>, D::Error> {
    Option::<parley_core::UserId>::deserialize(d).map(Some)
}

/// `PUT /api/v1/conversations/{id}/assignee`: 200 with the record. Errors: 422
/// `validation_failed` without `assignee_id`; see [`team::assign`].
pub(super) async fn assign(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AssignInput>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    let Some(user) = input.assignee_id else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "assignee_id: is required (a user id, or null for nobody)",
        )
        .with_field("assignee_id"));
    };
    Ok(Json(team::assign(&st, auth.workspace, id, user).await?).into_response())
}

/// The approved templates of the WhatsApp number conversation `id` came through. Errors: 404;
/// 409 `not_a_whatsapp_conversation`; 502 `channel_unavailable` with the Graph API's error.
pub async fn templates_of(
    st: &AppState,
    ws: parley_core::WorkspaceId,
    id: ConversationId,
) -> Result<Vec<whatsapp::TemplateInfo>, ApiError> {
    let not_whatsapp = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_a_whatsapp_conversation",
            "this conversation did not come through a connected WhatsApp number",
        )
    };
    let (c, _, _) = match channels::connection_of(st, ws, id).await {
        Ok(found) => found,
        Err(e) if e.status == StatusCode::CONFLICT => return Err(not_whatsapp()),
        Err(e) => return Err(e),
    };
    if c.kind != ChannelKind::Whatsapp {
        return Err(not_whatsapp());
    }
    whatsapp::approved_templates(st, &c).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "channel_unavailable",
            format!("the Graph API did not list the templates: {e}"),
        )
    })
}

/// `GET /api/v1/conversations/{id}/templates`: `{"templates": [{"name", "language",
/// "category", "body", "parameters"}]}`. Errors: see [`templates_of`].
pub(super) async fn templates(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ConversationId = path_id(&id, "conversation")?;
    let list = templates_of(&st, auth.workspace, id).await?;
    Ok(Json(json!({ "templates": list })).into_response())
}
