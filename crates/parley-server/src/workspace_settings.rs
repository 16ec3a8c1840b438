//! The workspace's settings (issue 16), shared by the API (`api/settings.rs`, API keys) and
//! the dashboard's Settings page (`dashboard/settings.rs`, signed-in admins): members and
//! their one-time invite links, API keys with a role, the time zone and the analysis switch.
//! The rules live here once; both callers check that the caller is an admin first.
//!
//! Invites: a link `/invite/{token}` holding 256 random bits; the store keeps only the token's
//! SHA-256, the invitee's email and role, and an expiry [`INVITE_TTL_MS`] (7 days) later.
//! Opening it shows a form for a name and a password; submitting it creates the user and uses
//! the invite up in one transaction (see [`parley_store::SettingsStore::accept_invite`]).

use axum::http::StatusCode;
use parley_core::model::{ApiKey, User};
use parley_core::zone::Zone;
use parley_core::{ApiKeyId, Timestamp, UserId, UserRole, WorkspaceId};
use parley_store::{Invite, NewInvite, WorkspaceSettings};
use serde::Deserialize;

use crate::AppState;
use crate::auth::session::{random_token, token_hash};
use crate::error::ApiError;

/// How long an invite link works: 7 days, in ms.
pub const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Longest member name and key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A new invite and its link's token (shown once: only its hash is stored).
#[derive(Debug, Clone)]
pub struct CreatedInvite {
    /// The stored record.
    pub invite: Invite,
    /// The token of the link `/invite/{token}`.
    pub token: String,
}

impl CreatedInvite {
    /// The link's path, `/invite/{token}`.
    pub fn path(&self) -> String {
        format!("/invite/{}", self.token)
    }
}

/// A role from its name. Errors: 422 `invalid_role` on `field`.
pub fn parse_role(v: &str, field: &str) -> Result<UserRole, ApiError> {
    v.parse::<UserRole>().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_role",
            format!("{field} must be admin or member, got {v:?}"),
        )
        .with_field(field)
    })
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
}

/// A trimmed name of 1 to [`MAX_NAME_CHARS`] characters without control characters.
/// Errors: 422 `invalid_field` on `field`.
pub fn clean_name(v: &str, field: &str) -> Result<String, ApiError> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > MAX_NAME_CHARS || v.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("{field} must be 1 to {MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    Ok(v.to_owned())
}

/// A lowercased email address (one `@`, something on both sides, at most 254 characters).
/// Errors: 422 `invalid_field` on `email`.
pub fn clean_email(v: &str) -> Result<String, ApiError> {
    let v = v.trim().to_lowercase();
    let ok = v.len() <= 254
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(v.split_once('@'), Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains('@'));
    if !ok {
        return Err(invalid("email", format!("{v:?} is not an email address")));
    }
    Ok(v)
}

/// Invites `email` into the workspace with `role`; `by` is the inviting member (none for an
/// API key). Errors: 422 on a bad email; 409 `user_exists`.
pub async fn invite(
    st: &AppState,
    workspace: WorkspaceId,
    email: &str,
    role: UserRole,
    by: Option<UserId>,
) -> Result<CreatedInvite, ApiError> {
    let email = clean_email(email)?;
    let token = random_token();
    let now = Timestamp::now();
    let invite = st
        .store
        .settings()
        .create_invite(&NewInvite {
            workspace_id: workspace,
            token_hash: token_hash(&token),
            email,
            role,
            invited_by: by,
            created_at: now,
            expires_at: now.add_millis(INVITE_TTL_MS),
        })
        .await?;
    tracing::info!(workspace = %workspace, invite = %invite.id, role = %role, "invited a member");
    Ok(CreatedInvite { invite, token })
}

/// The pending invite of a link's token, `None` when unknown, used or expired.
/// Errors: the store's.
pub async fn pending_invite(st: &AppState, token: &str) -> Result<Option<Invite>, ApiError> {
    Ok(st
        .store
        .settings()
        .pending_invite(token_hash(token), Timestamp::now())
        .await?)
}

/// Uses the invite of `token`: creates the member with `name` and `password`.
/// Errors: 422 on a bad name or a short password; 404 `not_found` (invite) when unknown, used
/// or expired; 409 `user_exists`.
pub async fn accept(
    st: &AppState,
    token: &str,
    name: &str,
    password: &str,
) -> Result<User, ApiError> {
    let name = clean_name(name, "name")?;
    let password = password.to_owned();
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(|m| invalid("password", m))?;
    let user = st
        .store
        .settings()
        .accept_invite(token_hash(token), &name, &hash, Timestamp::now())
        .await?;
    tracing::info!(user = %user.email, role = %user.role, "accepted an invite");
    Ok(user)
}

/// Changes a member's role. Errors: 404 (user); 409 `last_admin`.
pub async fn change_role(
    st: &AppState,
    workspace: WorkspaceId,
    id: UserId,
    role: UserRole,
) -> Result<User, ApiError> {
    let user = st
        .store
        .settings()
        .set_member_role(workspace, id, role)
        .await?;
    tracing::info!(user = %user.email, role = %role, "changed a member's role");
    Ok(user)
}

/// Removes a member (signed out at once). Errors: 404 (user); 409 `last_admin`.
pub async fn remove(st: &AppState, workspace: WorkspaceId, id: UserId) -> Result<(), ApiError> {
    st.store.settings().remove_member(workspace, id).await?;
    tracing::info!(workspace = %workspace, user = %id, "removed a member");
    Ok(())
}

/// Creates an API key named `name` with `role`: the record and the secret (shown once).
/// Errors: 422 on a bad name.
pub async fn create_key(
    st: &AppState,
    workspace: WorkspaceId,
    name: &str,
    role: UserRole,
) -> Result<(ApiKey, String), ApiError> {
    let name = clean_name(name, "name")?;
    let key = crate::auth::generate_api_key().map_err(ApiError::internal)?;
    let record = st
        .store
        .settings()
        .create_api_key_with_role(workspace, &name, role, &key.prefix, key.hash)
        .await?;
    tracing::info!(workspace = %workspace, key = %record.id, role = %role, "created an API key");
    Ok((record, key.secret))
}

/// Revokes a key: the very next request with it is refused. Errors: 404 (api key).
pub async fn revoke_key(
    st: &AppState,
    workspace: WorkspaceId,
    id: ApiKeyId,
) -> Result<(), ApiError> {
    st.store.workspaces().revoke_api_key(workspace, id).await?;
    tracing::info!(workspace = %workspace, key = %id, "revoked an API key");
    Ok(())
}

/// A change to the workspace settings; absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// IANA time zone name.
    pub time_zone: Option<String>,
    /// The insights analysis switch.
    pub analysis_enabled: Option<bool>,
}

/// Applies `patch` and returns the saved settings. Errors: 422 `invalid_time_zone`.
pub async fn update(
    st: &AppState,
    workspace: WorkspaceId,
    patch: &SettingsPatch,
) -> Result<WorkspaceSettings, ApiError> {
    let mut settings = st.store.settings().workspace_settings(workspace).await?;
    if let Some(tz) = &patch.time_zone {
        let zone = Zone::parse(tz).map_err(|m| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_time_zone", m)
                .with_field("time_zone")
        })?;
        settings.time_zone = zone.name().to_owned();
    }
    if let Some(on) = patch.analysis_enabled {
        settings.analysis_enabled = on;
    }
    let saved = st
        .store
        .settings()
        .save_workspace_settings(workspace, &settings, Timestamp::now())
        .await?;
    tracing::info!(workspace = %workspace, time_zone = %saved.time_zone,
                   analysis = saved.analysis_enabled, "saved workspace settings");
    Ok(saved)
}

/// The workspace's time zone (UTC when its stored name is no longer known).
/// Errors: the store's.
pub async fn zone(st: &AppState, workspace: WorkspaceId) -> Result<Zone, ApiError> {
    let s = st.store.settings().workspace_settings(workspace).await?;
    Ok(Zone::parse(&s.time_zone).unwrap_or_else(|_| Zone::utc()))
}
