//! Workspace settings for machines (issue 16; the rules are [`crate::workspace_settings`]'s,
//! shared with the dashboard's Settings page). Reading members and the settings needs any key;
//! everything else needs an `admin` key (403 `forbidden` for a `member` key):
//!
//! - `GET /api/v1/members`; `PATCH /api/v1/members/{id}` (`{"role"}`); `DELETE
//!   /api/v1/members/{id}`: the last admin can be neither demoted nor removed (409
//!   `last_admin`);
//! - `GET /api/v1/invites` (pending); `POST /api/v1/invites` (`{"email", "role"}`, answered
//!   with the link's `token` and `path`, shown once); `DELETE /api/v1/invites/{id}`;
//! - `GET /api/v1/keys`; `POST /api/v1/keys` (`{"name", "role"}`, answered with the `secret`,
//!   shown once); `DELETE /api/v1/keys/{id}` (revoked at once);
//! - `GET /api/v1/settings`; `PATCH /api/v1/settings` (`{"time_zone", "analysis_enabled"}`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_core::model::{ApiKey, User};
use parley_core::{ApiKeyId, UserId, UserRole};
use parley_store::{Invite, WorkspaceSettings};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, path_id};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use crate::workspace_settings::{self as ws, SettingsPatch, parse_role};

/// A member as the API shows it: `id`, `email`, `name`, `role`, `created_at`,
/// `last_sign_in_at` (`null` when never).
pub(crate) fn member_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": u.role,
        "created_at": u.created_at,
        "last_sign_in_at": u.last_sign_in_at,
    })
}

/// An invite as the API shows it (never its token but when just created).
pub(crate) fn invite_json(i: &Invite) -> Value {
    json!({
        "id": i.id,
        "email": i.email,
        "role": i.role,
        "invited_by": i.invited_by,
        "created_at": i.created_at,
        "expires_at": i.expires_at,
    })
}

/// A key as the API shows it (never its secret but when just created).
pub(crate) fn key_json(k: &ApiKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "role": k.role,
        "created_at": k.created_at,
        "last_used_at": k.last_used_at,
        "revoked_at": k.revoked_at,
    })
}

fn settings_json(s: &WorkspaceSettings) -> Value {
    json!({
        "time_zone": s.time_zone,
        "analysis_enabled": s.analysis_enabled,
        "updated_at": s.updated_at,
    })
}

/// `GET /api/v1/members`: the workspace's members, by email.
pub(super) async fn members(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
) -> Result<Response, ApiError> {
    let users = st.store.auth().list_users(auth.workspace).await?;
    let items: Vec<Value> = users.iter().map(member_json).collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// The body of `PATCH /api/v1/members/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberPatch {
    role: String,
}

/// `PATCH /api/v1/members/{id}`: changes the member's role. Errors: 403; 400 `invalid_id`;
/// 404; 409 `last_admin`; 422 `invalid_role`.
pub(super) async fn update_member(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MemberPatch>,
) -> Result<Response, ApiError> {
    auth.require_admin("change members' roles")?;
    let id: UserId = path_id(&id, "member")?;
    let role = parse_role(&body.role, "role")?;
    let user = ws::change_role(&st, auth.workspace, id, role).await?;
    Ok(Json(member_json(&user)).into_response())
}

/// `DELETE /api/v1/members/{id}`: removes the member (signed out at once). Errors: 403; 400;
/// 404; 409 `last_admin`.
pub(super) async fn remove_member(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require_admin("remove members")?;
    let id: UserId = path_id(&id, "member")?;
    ws::remove(&st, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/invites`: the pending invites, newest first (expired ones with their
/// `expires_at` in the past). Errors: 403.
pub(super) async fn invites(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
) -> Result<Response, ApiError> {
    auth.require_admin("list invites")?;
    let list = st.store.settings().list_invites(auth.workspace).await?;
    let items: Vec<Value> = list.iter().map(invite_json).collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// The body of `POST /api/v1/invites`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InviteInput {
    email: String,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /api/v1/invites`: 201 with the invite, its `token` and `path` (`/invite/{token}`,
/// valid 7 days, shown only now). Errors: 403; 409 `user_exists`; 422.
pub(super) async fn create_invite(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(body): ApiJson<InviteInput>,
) -> Result<Response, ApiError> {
    auth.require_admin("invite members")?;
    let role = match body.role.as_deref() {
        Some(r) => parse_role(r, "role")?,
        None => UserRole::Member,
    };
    let created = ws::invite(&st, auth.workspace, &body.email, role, None).await?;
    let mut v = invite_json(&created.invite);
    v["token"] = json!(created.token);
    v["path"] = json!(created.path());
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `DELETE /api/v1/invites/{id}`: the link stops working. Errors: 403; 400; 404.
pub(super) async fn delete_invite(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require_admin("revoke invites")?;
    let id: uuid::Uuid = path_id(&id, "invite")?;
    st.store
        .settings()
        .delete_invite(auth.workspace, id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/keys`: the workspace's keys, newest first, revoked ones included. Errors: 403.
pub(super) async fn keys(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
) -> Result<Response, ApiError> {
    auth.require_admin("list API keys")?;
    let list = st.store.workspaces().list_api_keys(auth.workspace).await?;
    let items: Vec<Value> = list.iter().map(key_json).collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// The body of `POST /api/v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyInput {
    name: String,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /api/v1/keys`: 201 with the key and its `secret` (shown only now); `role` defaults
/// to `member`. Errors: 403; 422.
pub(super) async fn create_key(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(body): ApiJson<KeyInput>,
) -> Result<Response, ApiError> {
    auth.require_admin("create API keys")?;
    let role = match body.role.as_deref() {
        Some(r) => parse_role(r, "role")?,
        None => UserRole::Member,
    };
    let (key, secret) = ws::create_key(&st, auth.workspace, &body.name, role).await?;
    let mut v = key_json(&key);
    v["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `DELETE /api/v1/keys/{id}`: revokes the key; the next request with it gets 401.
/// Errors: 403; 400; 404.
pub(super) async fn revoke_key(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require_admin("revoke API keys")?;
    let id: ApiKeyId = path_id(&id, "API key")?;
    ws::revoke_key(&st, auth.workspace, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/settings`: the workspace's time zone and analysis switch.
pub(super) async fn settings(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
) -> Result<Response, ApiError> {
    let s = st
        .store
        .settings()
        .workspace_settings(auth.workspace)
        .await?;
    Ok(Json(settings_json(&s)).into_response())
}

/// `PATCH /api/v1/settings`: changes the given fields. Errors: 403; 422 `invalid_time_zone`
/// and the body's rules.
pub(super) async fn update_settings(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    ApiJson(body): ApiJson<SettingsPatch>,
) -> Result<Response, ApiError> {
    auth.require_admin("change the workspace settings")?;
    let s = ws::update(&st, auth.workspace, &body).await?;
    Ok(Json(settings_json(&s)).into_response())
}
