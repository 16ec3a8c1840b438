//! [`WorkspaceStore`] on PostgreSQL: each write in its own transaction.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use parley_core::model::{ApiKey, Workspace};
use parley_core::{ApiKeyId, Timestamp, WorkspaceId};
use tokio_postgres::Row;

use super::PostgresStore;
use super::read::{KEY_COLS, key_from_row, ts};
use super::write::{COUNTER_SLOTS, conflict_on_unique, ensure_workspace};
use crate::{Result, StoreError, WorkspaceStore};

#[async_trait]
impl WorkspaceStore for PostgresStore {
    async fn create_workspace(&self, slug: &str, name: &str) -> Result<Workspace> {
        create_workspace(&self.pool, slug, name).await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        list_workspaces(&self.pool).await
    }

    async fn workspace_by_slug(&self, slug: &str) -> Result<Option<Workspace>> {
        workspace_by_slug(&self.pool, slug).await
    }

    async fn create_api_key(
        &self,
        workspace: WorkspaceId,
        name: &str,
        prefix: &str,
        secret_hash: [u8; 32],
    ) -> Result<ApiKey> {
        create_api_key(&self.pool, workspace, name, prefix, secret_hash).await
    }

    async fn api_key_by_hash(&self, secret_hash: [u8; 32]) -> Result<Option<ApiKey>> {
        api_key_by_hash(&self.pool, secret_hash).await
    }

    async fn list_api_keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKey>> {
        list_api_keys(&self.pool, workspace).await
    }

    async fn revoke_api_key(&self, workspace: WorkspaceId, id: ApiKeyId) -> Result<()> {
        revoke_api_key(&self.pool, workspace, id).await
    }
}

fn workspace_from_row(r: &Row) -> Workspace {
    Workspace {
        id: WorkspaceId(r.get(0)),
        slug: r.get(1),
        name: r.get(2),
        created_at: ts(r.get(3)),
    }
}

pub(super) async fn list_workspaces(pool: &Pool) -> Result<Vec<Workspace>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, slug, name, created_at FROM workspaces ORDER BY created_at, id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(workspace_from_row).collect())
}

pub(super) async fn workspace_by_slug(pool: &Pool, slug: &str) -> Result<Option<Workspace>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT id, slug, name, created_at FROM workspaces WHERE slug = $1")
        .await?;
    Ok(client
        .query_opt(&stmt, &[&slug])
        .await?
        .as_ref()
        .map(workspace_from_row))
}

pub(super) async fn api_key_by_hash(pool: &Pool, hash: [u8; 32]) -> Result<Option<ApiKey>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE secret_hash = $1"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&&hash[..]])
        .await?
        .as_ref()
        .map(key_from_row)
        .transpose()
}

pub(super) async fn list_api_keys(pool: &Pool, ws: WorkspaceId) -> Result<Vec<ApiKey>> {
    let client = pool.get().await?;
    let rows = client
        .query(&format!("SELECT {KEY_COLS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at DESC, id DESC"), &[&ws.0])
        .await?;
    rows.iter().map(key_from_row).collect()
}

pub(super) async fn create_workspace(pool: &Pool, slug: &str, name: &str) -> Result<Workspace> {
    let ws = Workspace {
        id: WorkspaceId::new(),
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_at: Timestamp::now(),
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO workspaces (id, slug, name, created_at) VALUES ($1, $2, $3, $4)",
        &[&ws.id.0, &ws.slug, &ws.name, &ws.created_at.0],
    )
    .await
    .map_err(conflict_on_unique("workspace_exists", || {
        format!("a workspace with slug {slug:?} already exists")
    }))?;
    tx.execute(
        "INSERT INTO workspace_counters (workspace_id, slot) SELECT $1, s FROM generate_series(0, $2 - 1) AS s",
        &[&ws.id.0, &(COUNTER_SLOTS as i32)],
    )
    .await?;
    tx.commit().await?;
    Ok(ws)
}

pub(super) async fn create_api_key(
    pool: &Pool,
    workspace: WorkspaceId,
    name: &str,
    prefix: &str,
    secret_hash: [u8; 32],
) -> Result<ApiKey> {
    let key = crate::workspaces::new_api_key(workspace, name, prefix);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    ensure_workspace(&tx, workspace).await?;
    tx.execute(
        "INSERT INTO api_keys (id, workspace_id, name, prefix, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&key.id.0, &workspace.0, &key.name, &key.prefix, &&secret_hash[..], &key.created_at.0],
    )
    .await?;
    tx.commit().await?;
    Ok(key)
}

pub(super) async fn revoke_api_key(
    pool: &Pool,
    workspace: WorkspaceId,
    id: ApiKeyId,
) -> Result<()> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3) WHERE id = $1 AND workspace_id = $2",
            &[&id.0, &workspace.0, &Timestamp::now().0],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound { what: "api key" });
    }
    Ok(())
}
