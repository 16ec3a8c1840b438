//! Workspace settings (issue 16), reached through [`crate::Store::settings`]: the workspace's
//! time zone and analysis switch, one-time invite links, member role changes and removals
//! (with the last-admin rule), API keys with a role, and keys' last use. Every method but the
//! invite-token and key-touch lookups (whose secret is the credential) is scoped to one
//! workspace.

use async_trait::async_trait;
use parley_core::model::{ApiKey, User};
use parley_core::zone::DEFAULT_TIME_ZONE;
use parley_core::{ApiKeyId, Timestamp, UserId, UserRole, WorkspaceId};
use serde::Serialize;
use uuid::Uuid;

use crate::{Result, StoreError};

/// How often (ms) a key's `last_used_at` is written at most: once a minute per key, so a busy
/// key costs one small UPDATE a minute, not one per request.
pub const KEY_TOUCH_INTERVAL_MS: i64 = 60_000;

/// A workspace's settings. A workspace that never saved any has [`Default`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceSettings {
    /// IANA time zone name (`Europe/Berlin`), checked by the caller with
    /// [`parley_core::zone::Zone::parse`]; `UTC` by default. The default `tz` of the insights.
    pub time_zone: String,
    /// Whether the background insights analyser (sentiment, resolution, keywords) runs for
    /// the workspace; `true` by default. Off, conversations stay "not analysed" until it is
    /// turned back on, when the backlog is analysed.
    pub analysis_enabled: bool,
    /// When they were last saved; `None` for the defaults.
    pub updated_at: Option<Timestamp>,
}

impl Default for WorkspaceSettings {
    fn default() -> Self {
        WorkspaceSettings {
            time_zone: DEFAULT_TIME_ZONE.to_owned(),
            analysis_enabled: true,
            updated_at: None,
        }
    }
}

/// An invite link's record (the token itself is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invite {
    /// Id (UUIDv7).
    pub id: Uuid,
    /// The workspace the invitee joins.
    pub workspace_id: WorkspaceId,
    /// The invitee's sign-in email, lowercased.
    pub email: String,
    /// The role the invitee gets.
    pub role: UserRole,
    /// The member who made it; `None` when made with an API key.
    pub invited_by: Option<UserId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When the link stops working (7 days after it was made).
    pub expires_at: Timestamp,
    /// When it was used; a used link works no more.
    pub accepted_at: Option<Timestamp>,
}

/// An invite to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// SHA-256 of the link's token.
    pub token_hash: [u8; 32],
    /// The invitee's email, lowercased.
    pub email: String,
    /// The role the invitee gets.
    pub role: UserRole,
    /// Who made it.
    pub invited_by: Option<UserId>,
    /// Now.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// The error of a change that would leave the workspace without an admin.
pub(crate) fn last_admin() -> StoreError {
    StoreError::Conflict {
        code: "last_admin",
        message: "this is the workspace's last admin: make another member an admin first".into(),
    }
}

/// The error of an invite link that is unknown, used or expired.
pub(crate) fn invite_gone() -> StoreError {
    StoreError::NotFound { what: "invite" }
}

/// The settings part of the store.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The workspace's settings (the defaults when never saved).
    async fn workspace_settings(&self, workspace: WorkspaceId) -> Result<WorkspaceSettings>;
    /// Saves the workspace's settings (`updated_at` set to `at`) and returns them.
    /// Errors: `NotFound("workspace")`.
    async fn save_workspace_settings(
        &self,
        workspace: WorkspaceId,
        settings: &WorkspaceSettings,
        at: Timestamp,
    ) -> Result<WorkspaceSettings>;

    /// Stores an invite. Errors: `NotFound("workspace")`; `Conflict("user_exists")` when a
    /// user already has the email.
    async fn create_invite(&self, invite: &NewInvite) -> Result<Invite>;
    /// The workspace's pending invites (not used; expired ones included), newest first.
    async fn list_invites(&self, workspace: WorkspaceId) -> Result<Vec<Invite>>;
    /// Deletes a pending invite: its link works no more. Errors: `NotFound("invite")`.
    async fn delete_invite(&self, workspace: WorkspaceId, id: Uuid) -> Result<()>;
    /// The pending, unexpired invite whose token hashes to `token_hash` (any workspace: the
    /// token is the credential).
    async fn pending_invite(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Invite>>;
    /// Uses an invite: creates its user (email and role from the invite, `name`, the PHC
    /// `password_hash`) and marks the invite used, in one transaction, so a link works once
    /// however many tabs submit it. Errors: `NotFound("invite")` when unknown, used or expired
    /// at `now`; `Conflict("user_exists")`.
    async fn accept_invite(
        &self,
        token_hash: [u8; 32],
        name: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<User>;

    /// A user of the workspace.
    async fn member(&self, workspace: WorkspaceId, id: UserId) -> Result<Option<User>>;
    /// Changes a member's role and returns the member. Errors: `NotFound("user")`;
    /// `Conflict("last_admin")` when it would demote the workspace's last admin (checked in
    /// the same transaction as the change, so two admins demoting each other at once cannot
    /// both succeed).
    async fn set_member_role(
        &self,
        workspace: WorkspaceId,
        id: UserId,
        role: UserRole,
    ) -> Result<User>;
    /// Removes a member: the user, their sign-in sessions (signed out at once) and their
    /// assignments (the conversations become unassigned). Errors: `NotFound("user")`;
    /// `Conflict("last_admin")` as [`SettingsStore::set_member_role`].
    async fn remove_member(&self, workspace: WorkspaceId, id: UserId) -> Result<()>;

    /// Stores a new API key with `role`; `secret_hash` is the SHA-256 of the full key.
    /// Errors: `NotFound("workspace")`.
    async fn create_api_key_with_role(
        &self,
        workspace: WorkspaceId,
        name: &str,
        role: UserRole,
        prefix: &str,
        secret_hash: [u8; 32],
    ) -> Result<ApiKey>;
    /// Records that key `id` authenticated a request at `now`, unless it was recorded less
    /// than [`KEY_TOUCH_INTERVAL_MS`] before (one conditional UPDATE; nothing else).
    async fn touch_api_key(&self, id: ApiKeyId, now: Timestamp) -> Result<()>;
}
