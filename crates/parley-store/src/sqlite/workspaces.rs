//! [`WorkspaceStore`] on SQLite: reads on the reader pool, writes on the writer connection.

use async_trait::async_trait;
use parley_core::model::{ApiKey, Workspace};
use parley_core::{ApiKeyId, Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::read::{KEY_COLS, get_id, key_from_row, ts};
use super::write::{conflict_on_unique, ensure_workspace};
use crate::{Result, StoreError, WorkspaceStore};

#[async_trait]
impl WorkspaceStore for SqliteStore {
    async fn create_workspace(&self, slug: &str, name: &str) -> Result<Workspace> {
        let (slug, name) = (slug.to_owned(), name.to_owned());
        self.write(move |c| create_workspace(c, &slug, &name)).await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.read(list_workspaces).await
    }

    async fn workspace_by_slug(&self, slug: &str) -> Result<Option<Workspace>> {
        let slug = slug.to_owned();
        self.read(move |c| workspace_by_slug(c, &slug)).await
    }

    async fn create_api_key(
        &self,
        workspace: WorkspaceId,
        name: &str,
        prefix: &str,
        secret_hash: [u8; 32],
    ) -> Result<ApiKey> {
        let (name, prefix) = (name.to_owned(), prefix.to_owned());
        self.write(move |c| create_api_key(c, workspace, &name, &prefix, secret_hash))
            .await
    }

    async fn api_key_by_hash(&self, secret_hash: [u8; 32]) -> Result<Option<ApiKey>> {
        self.read(move |c| api_key_by_hash(c, secret_hash)).await
    }

    async fn list_api_keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKey>> {
        self.read(move |c| list_api_keys(c, workspace)).await
    }

    async fn revoke_api_key(&self, workspace: WorkspaceId, id: ApiKeyId) -> Result<()> {
        self.write(move |c| revoke_api_key(c, workspace, id)).await
    }
}

pub(super) fn list_workspaces(c: &Connection) -> Result<Vec<Workspace>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, slug, name, created_at FROM workspaces ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], workspace_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn workspace_from_row(r: &Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        id: get_id(r, 0, WorkspaceId::from_slice)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        created_at: ts(r.get(3)?),
    })
}

pub(super) fn workspace_by_slug(c: &Connection, slug: &str) -> Result<Option<Workspace>> {
    Ok(
        c.prepare_cached("SELECT id, slug, name, created_at FROM workspaces WHERE slug = ?1")?
            .query_row([slug], workspace_from_row)
            .optional()?,
    )
}

pub(super) fn api_key_by_hash(c: &Connection, hash: [u8; 32]) -> Result<Option<ApiKey>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {KEY_COLS} FROM api_keys WHERE secret_hash = ?1"
    ))?
    .query_row([&hash[..]], key_from_row)
    .optional()?)
}

pub(super) fn list_api_keys(c: &Connection, ws: WorkspaceId) -> Result<Vec<ApiKey>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {KEY_COLS} FROM api_keys WHERE workspace_id = ?1 ORDER BY created_at DESC, id DESC"
    ))?;
    let rows = stmt.query_map([ws.as_bytes()], key_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn create_workspace(c: &Connection, slug: &str, name: &str) -> Result<Workspace> {
    let ws = Workspace {
        id: WorkspaceId::new(),
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_at: Timestamp::now(),
    };
    c.execute(
        "INSERT INTO workspaces (id, slug, name, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![ws.id.as_bytes(), ws.slug, ws.name, ws.created_at.0],
    )
    .map_err(conflict_on_unique("workspace_exists", || {
        format!("a workspace with slug {slug:?} already exists")
    }))?;
    Ok(ws)
}

pub(super) fn create_api_key(
    c: &Connection,
    workspace: WorkspaceId,
    name: &str,
    prefix: &str,
    secret_hash: [u8; 32],
) -> Result<ApiKey> {
    let key = crate::workspaces::new_api_key(workspace, name, prefix);
    ensure_workspace(c, workspace)?;
    c.execute(
        "INSERT INTO api_keys (id, workspace_id, name, prefix, secret_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            key.id.as_bytes(),
            workspace.as_bytes(),
            key.name,
            key.prefix,
            &secret_hash[..],
            key.created_at.0
        ],
    )?;
    Ok(key)
}

pub(super) fn revoke_api_key(c: &Connection, workspace: WorkspaceId, id: ApiKeyId) -> Result<()> {
    let n = c.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3) WHERE id = ?1 AND workspace_id = ?2",
        params![id.as_bytes(), workspace.as_bytes(), Timestamp::now().0],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound { what: "api key" });
    }
    Ok(())
}
