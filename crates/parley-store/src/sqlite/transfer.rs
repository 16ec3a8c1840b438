//! [`TransferStore`] on SQLite: exports on the reader pool, imports on the writer connection.

use async_trait::async_trait;
use parley_core::WorkspaceId;
use parley_core::model::{ApiKey, Assistant, AssistantVersion, User, Workspace};
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::read::{KEY_COLS, USER_COLS, conversion_error, key_from_row, user_from_row};
use super::write::{conflict_on_unique, insert_assistant, insert_version};
use crate::{Result, TransferStore};

#[async_trait]
impl TransferStore for SqliteStore {
    async fn export_users(&self, workspace: WorkspaceId) -> Result<Vec<(User, String)>> {
        self.read(move |c| export_users(c, workspace)).await
    }

    async fn export_api_keys(&self, workspace: WorkspaceId) -> Result<Vec<(ApiKey, [u8; 32])>> {
        self.read(move |c| export_api_keys(c, workspace)).await
    }

    async fn import_workspace(&self, workspace: &Workspace) -> Result<()> {
        let ws = workspace.clone();
        self.write(move |c| import_workspace(c, &ws)).await
    }

    async fn import_assistant(
        &self,
        workspace: WorkspaceId,
        assistant: &Assistant,
        versions: &[AssistantVersion],
    ) -> Result<()> {
        let (a, v) = (assistant.clone(), versions.to_vec());
        self.write(move |c| import_assistant(c, workspace, &a, &v))
            .await
    }

    async fn import_user(&self, user: &User, password_hash: &str) -> Result<()> {
        let (u, h) = (user.clone(), password_hash.to_owned());
        self.write(move |c| import_user(c, &u, &h)).await
    }

    async fn import_api_key(&self, key: &ApiKey, secret_hash: [u8; 32]) -> Result<()> {
        let k = key.clone();
        self.write(move |c| import_api_key(c, &k, secret_hash))
            .await
    }
}

pub(super) fn export_users(c: &Connection, ws: WorkspaceId) -> Result<Vec<(User, String)>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {USER_COLS}, u.password_hash FROM users u WHERE u.workspace_id = ?1 ORDER BY u.email"
    ))?;
    let rows = stmt.query_map([ws.as_bytes()], |r| Ok((user_from_row(r)?, r.get(7)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn export_api_keys(c: &Connection, ws: WorkspaceId) -> Result<Vec<(ApiKey, [u8; 32])>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {KEY_COLS}, secret_hash FROM api_keys WHERE workspace_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([ws.as_bytes()], |r| {
        let hash: Vec<u8> = r.get(8)?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| conversion_error(8, "key hash"))?;
        Ok((key_from_row(r)?, hash))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
pub(super) fn import_workspace(c: &Connection, ws: &Workspace) -> Result<()> {
    c.execute(
        "INSERT INTO workspaces (id, slug, name, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![ws.id.as_bytes(), ws.slug, ws.name, ws.created_at.0],
    )
    .map_err(conflict_on_unique("workspace_exists", || {
        format!("workspace {:?} already exists", ws.slug)
    }))?;
    Ok(())
}

pub(super) fn import_assistant(
    c: &Connection,
    workspace: WorkspaceId,
    a: &Assistant,
    versions: &[AssistantVersion],
) -> Result<()> {
    if insert_assistant(c, workspace, a, true)? == 0 {
        return Ok(());
    }
    insert_version(c, a)?;
    for v in versions {
        insert_version(c, &crate::transfer::assistant_at_version(a, v))?;
    }
    Ok(())
}

pub(super) fn import_user(c: &Connection, u: &User, password_hash: &str) -> Result<()> {
    c.execute(
        "INSERT INTO users (id, workspace_id, email, password_hash, role, created_at, name, last_sign_in_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        params![
            u.id.as_bytes(),
            u.workspace_id.as_bytes(),
            u.email,
            password_hash,
            u.role.as_str(),
            u.created_at.0,
            u.name,
            u.last_sign_in_at.map(|t| t.0)
        ],
    )?;
    Ok(())
}

pub(super) fn import_api_key(c: &Connection, k: &ApiKey, secret_hash: [u8; 32]) -> Result<()> {
    c.execute(
        "INSERT INTO api_keys (id, workspace_id, name, prefix, secret_hash, created_at, revoked_at, role, last_used_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        params![
            k.id.as_bytes(),
            k.workspace_id.as_bytes(),
            k.name,
            k.prefix,
            &secret_hash[..],
            k.created_at.0,
            k.revoked_at.map(|t| t.0),
            k.role.as_str(),
            k.last_used_at.map(|t| t.0)
        ],
    )?;
    Ok(())
}
