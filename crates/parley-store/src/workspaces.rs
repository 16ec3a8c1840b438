//! Storage of workspaces, the tenants every other record belongs to, and of their API keys,
//! reached through [`crate::Store::workspaces`]. A key is kept as the SHA-256 of its full
//! secret beside its display prefix; the look-up by that hash spans workspaces (it is how a
//! request's workspace is found).

use async_trait::async_trait;
use parley_core::model::{ApiKey, Workspace};
use parley_core::{ApiKeyId, WorkspaceId};

use crate::Result;

/// The record of a key as [`WorkspaceStore::create_api_key`] stores it: a fresh id, created
/// now, not revoked, never used, with the admin role (roles are changed in settings).
pub(crate) fn new_api_key(workspace: WorkspaceId, name: &str, prefix: &str) -> ApiKey {
    ApiKey {
        id: ApiKeyId::new(),
        workspace_id: workspace,
        name: name.to_owned(),
        prefix: prefix.to_owned(),
        created_at: parley_core::Timestamp::now(),
        revoked_at: None,
        role: parley_core::UserRole::Admin,
        last_used_at: None,
    }
}

/// The workspace and API key part of the store.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Creates a workspace. Errors: `Conflict("workspace_exists")` if the slug is taken.
    async fn create_workspace(&self, slug: &str, name: &str) -> Result<Workspace>;
    /// Every workspace, oldest first.
    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;
    /// The workspace with this slug.
    async fn workspace_by_slug(&self, slug: &str) -> Result<Option<Workspace>>;

    /// Stores a new API key's record; `secret_hash` is the SHA-256 of the full key.
    async fn create_api_key(
        &self,
        workspace: WorkspaceId,
        name: &str,
        prefix: &str,
        secret_hash: [u8; 32],
    ) -> Result<ApiKey>;
    /// The key whose secret hashes to `secret_hash`, revoked or not.
    async fn api_key_by_hash(&self, secret_hash: [u8; 32]) -> Result<Option<ApiKey>>;
    /// The workspace's keys, newest first.
    async fn list_api_keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKey>>;
    /// Revokes a key. Errors: `NotFound("api key")`.
    async fn revoke_api_key(&self, workspace: WorkspaceId, id: ApiKeyId) -> Result<()>;
}
