//! What `parley migrate-store` needs beyond the ordinary reads and writes, reached through
//! [`crate::Store::transfer`]: users and API keys read out with their password and secret
//! hashes, and workspaces, assistants (with their version history), users and keys written back
//! verbatim (same ids, same times) into the destination store. Conversations travel through
//! the ordinary ingest path.

use async_trait::async_trait;
use parley_core::WorkspaceId;
use parley_core::model::{ApiKey, Assistant, AssistantVersion, User, Workspace};

use crate::Result;

/// The assistant as it was at an older version `v` of its history (`a` is the current record):
/// what both backends store as that version's row on import.
pub(crate) fn assistant_at_version(a: &Assistant, v: &AssistantVersion) -> Assistant {
    Assistant {
        name: v.name.clone(),
        company: v.company.clone(),
        mode: v.mode,
        version: v.version,
        settings: v.settings.clone(),
        updated_at: v.created_at,
        ..a.clone()
    }
}

/// The transfer part of the store. Imports after the workspace are idempotent, so a
/// re-run finishes what an interrupted one began: an assistant, user or key whose id exists already is left alone.
#[async_trait]
pub trait TransferStore: Send + Sync {
    /// `parley migrate-store`: the workspace's users with their password hashes.
    async fn export_users(&self, workspace: WorkspaceId) -> Result<Vec<(User, String)>>;
    /// `parley migrate-store`: the workspace's API keys with their secret hashes.
    async fn export_api_keys(&self, workspace: WorkspaceId) -> Result<Vec<(ApiKey, [u8; 32])>>;
    /// `parley migrate-store`: stores a workspace as it is (same id, slug, name, time).
    /// Errors: `Conflict("workspace_exists")`.
    async fn import_workspace(&self, workspace: &Workspace) -> Result<()>;
    /// `parley migrate-store`: stores an assistant with its id, current version and version
    /// history (`versions`, any order), unless that id exists already.
    async fn import_assistant(
        &self,
        workspace: WorkspaceId,
        assistant: &Assistant,
        versions: &[AssistantVersion],
    ) -> Result<()>;
    /// `parley migrate-store`: stores a user with its id and password hash, unless its id or
    /// email exists already.
    async fn import_user(&self, user: &User, password_hash: &str) -> Result<()>;
    /// `parley migrate-store`: stores an API key with its id and secret hash, unless it exists.
    async fn import_api_key(&self, key: &ApiKey, secret_hash: [u8; 32]) -> Result<()>;
}
