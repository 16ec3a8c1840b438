//! [`TransferStore`] on PostgreSQL: each import in its own transaction.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use parley_core::WorkspaceId;
use parley_core::model::{ApiKey, Assistant, AssistantVersion, User, Workspace};

use super::PostgresStore;
use super::read::{KEY_COLS, USER_COLS, key_from_row, user_from_row};
use super::write::{COUNTER_SLOTS, conflict_on_unique, insert_assistant, insert_version};
use crate::{Result, StoreError, TransferStore};

#[async_trait]
impl TransferStore for PostgresStore {
    async fn export_users(&self, workspace: WorkspaceId) -> Result<Vec<(User, String)>> {
        export_users(&self.pool, workspace).await
    }

    async fn export_api_keys(&self, workspace: WorkspaceId) -> Result<Vec<(ApiKey, [u8; 32])>> {
        export_api_keys(&self.pool, workspace).await
    }

    async fn import_workspace(&self, workspace: &Workspace) -> Result<()> {
        import_workspace(&self.pool, workspace).await
    }

    async fn import_assistant(
        &self,
        workspace: WorkspaceId,
        assistant: &Assistant,
        versions: &[AssistantVersion],
    ) -> Result<()> {
        import_assistant(&self.pool, workspace, assistant, versions).await
    }

    async fn import_user(&self, user: &User, password_hash: &str) -> Result<()> {
        import_user(&self.pool, user, password_hash).await
    }

    async fn import_api_key(&self, key: &ApiKey, secret_hash: [u8; 32]) -> Result<()> {
        import_api_key(&self.pool, key, secret_hash).await
    }
}

pub(super) async fn export_users(pool: &Pool, ws: WorkspaceId) -> Result<Vec<(User, String)>> {
    let client = pool.get().await?;
    let rows = client
        .query(&format!("SELECT {USER_COLS}, u.password_hash FROM users u WHERE u.workspace_id = $1 ORDER BY u.email"), &[&ws.0])
        .await?;
    rows.iter()
        .map(|r| Ok((user_from_row(r)?, r.get(7))))
        .collect()
}

pub(super) async fn export_api_keys(
    pool: &Pool,
    ws: WorkspaceId,
) -> Result<Vec<(ApiKey, [u8; 32])>> {
    let client = pool.get().await?;
    let rows = client
        .query(&format!("SELECT {KEY_COLS}, secret_hash FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id"), &[&ws.0])
        .await?;
    rows.iter()
        .map(|r| {
            let hash: &[u8] = r.get(8);
            let hash: [u8; 32] = hash
                .try_into()
                .map_err(|_| StoreError::backend("invalid stored key hash"))?;
            Ok((key_from_row(r)?, hash))
        })
        .collect()
}
pub(super) async fn import_workspace(pool: &Pool, ws: &Workspace) -> Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO workspaces (id, slug, name, created_at) VALUES ($1, $2, $3, $4)",
        &[&ws.id.0, &ws.slug, &ws.name, &ws.created_at.0],
    )
    .await
    .map_err(conflict_on_unique("workspace_exists", || {
        format!("workspace {:?} already exists", ws.slug)
    }))?;
    tx.execute(
        "INSERT INTO workspace_counters (workspace_id, slot) SELECT $1, s FROM generate_series(0, $2 - 1) AS s",
        &[&ws.id.0, &(COUNTER_SLOTS as i32)],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn import_assistant(
    pool: &Pool,
    workspace: WorkspaceId,
    a: &Assistant,
    versions: &[AssistantVersion],
) -> Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if insert_assistant(&tx, workspace, a, true).await? == 0 {
        return Ok(());
    }
    insert_version(&tx, a).await?;
    for v in versions {
        let at_version = crate::transfer::assistant_at_version(a, v);
        insert_version(&tx, &at_version).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn import_user(pool: &Pool, u: &User, password_hash: &str) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO users (id, workspace_id, email, password_hash, role, created_at, name, last_sign_in_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                &u.id.0,
                &u.workspace_id.0,
                &u.email,
                &password_hash,
                &u.role.as_str(),
                &u.created_at.0,
                &u.name,
                &u.last_sign_in_at.map(|t| t.0),
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn import_api_key(pool: &Pool, k: &ApiKey, secret_hash: [u8; 32]) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO api_keys (id, workspace_id, name, prefix, secret_hash, created_at, revoked_at, role, last_used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            &[&k.id.0, &k.workspace_id.0, &k.name, &k.prefix, &&secret_hash[..], &k.created_at.0, &k.revoked_at.map(|t| t.0), &k.role.as_str(), &k.last_used_at.map(|t| t.0)],
        )
        .await?;
    Ok(())
}
