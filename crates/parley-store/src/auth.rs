//! Storage of dashboard users, their sign-in sessions and the failed sign-ins that limit how
//! often a subject (`email:...`, `ip:...`) may try again, reached through
//! [`crate::Store::auth`]. Passwords and session tokens never reach the store in clear: it keeps
//! PHC password hashes and SHA-256 hashes of session tokens.

use async_trait::async_trait;
use parley_core::model::User;
use parley_core::{Timestamp, UserId, UserRole, WorkspaceId};

use crate::Result;

/// The record of a user as [`AuthStore::create_user`] stores it: a fresh id, created now, no
/// display name yet, never signed in.
pub(crate) fn new_user(workspace: WorkspaceId, email: &str, role: UserRole) -> User {
    User {
        id: UserId::new(),
        workspace_id: workspace,
        email: email.to_owned(),
        role,
        created_at: Timestamp::now(),
        name: String::new(),
        last_sign_in_at: None,
    }
}

/// A sign-in session to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// SHA-256 of the session cookie's token (the token itself is never stored).
    pub token_hash: [u8; 32],
    /// The signed-in user.
    pub user_id: UserId,
    /// The session's CSRF token, embedded in its pages and checked on every change.
    pub csrf_token: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops being valid.
    pub expires_at: Timestamp,
}

/// A valid session, with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The signed-in user.
    pub user: User,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// When it stops being valid.
    pub expires_at: Timestamp,
}

/// The sign-in part of the store. Users belong to one workspace; look-ups by email or session
/// token span workspaces (they are how a workspace is found at sign-in).
#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Creates a dashboard user; `email` must already be lowercased and `password_hash` a PHC
    /// string. Errors: `Conflict("user_exists")`, `NotFound("workspace")`.
    async fn create_user(
        &self,
        workspace: WorkspaceId,
        email: &str,
        password_hash: &str,
        role: UserRole,
    ) -> Result<User>;
    /// The user with this (lowercased) email and their password hash.
    async fn user_for_login(&self, email: &str) -> Result<Option<(User, String)>>;
    /// The workspace's users, by email.
    async fn list_users(&self, workspace: WorkspaceId) -> Result<Vec<User>>;
    /// Stores a sign-in session (and sweeps expired ones).
    async fn create_session(&self, session: &NewSession) -> Result<()>;
    /// The session whose token hashes to `token_hash`, if it exists and has not expired at `now`.
    async fn session(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<SessionRecord>>;
    /// Ends a session (signing out). Deleting an unknown session is not an error.
    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()>;
    /// Records a failed sign-in against each subject (`email:...`, `ip:...`).
    async fn record_login_failure(&self, subjects: &[String], at: Timestamp) -> Result<()>;
    /// Failed sign-ins of `subject` at or after `since`.
    async fn login_failures_since(&self, subject: &str, since: Timestamp) -> Result<u64>;
    /// Forgets `subject`'s failures before `before` (after a successful sign-in, or to expire
    /// old entries).
    async fn clear_login_failures(&self, subject: &str, before: Timestamp) -> Result<()>;
    /// Counts a sign-in attempt *before* its password is checked, atomically with the check of
    /// the limits: when any `(subject, limit)` of `limits` already has `limit` or more entries at
    /// or after `since`, nothing is recorded and the answer is `false` (refuse the attempt);
    /// otherwise one entry is recorded at `at` for every subject and the answer is `true`.
    /// Concurrent claims for one subject are serialised (SQLite: the one writer connection;
    /// PostgreSQL: a transaction-scoped advisory lock per subject), so at most `limit` claims
    /// succeed in a window however many arrive at once, on one server or several. A failed
    /// sign-in keeps its entry; a successful one takes it back with
    /// [`AuthStore::release_login_attempt`].
    async fn claim_login_attempt(
        &self,
        limits: &[(String, u64)],
        since: Timestamp,
        at: Timestamp,
    ) -> Result<bool>;
    /// Takes back one entry of `subject` recorded at `at` by [`AuthStore::claim_login_attempt`]
    /// (that sign-in succeeded). No entry is not an error.
    async fn release_login_attempt(&self, subject: &str, at: Timestamp) -> Result<()>;
}
