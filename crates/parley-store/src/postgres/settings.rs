//! [`SettingsStore`] on PostgreSQL. The last-admin rule locks the workspace's admin rows
//! (`FOR UPDATE`) in the transaction that changes one, so concurrent demotions on any number
//! of servers are checked one after the other.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use parley_core::model::{ApiKey, User};
use parley_core::{ApiKeyId, Timestamp, UserId, UserRole, WorkspaceId};
use tokio_postgres::Row;
use uuid::Uuid;

use super::PostgresStore;
use super::read::{KEY_COLS, USER_COLS, key_from_row, parse, ts, user_from_row};
use super::write::{conflict_on_unique, ensure_workspace};
use crate::settings::{
    Invite, KEY_TOUCH_INTERVAL_MS, NewInvite, SettingsStore, WorkspaceSettings, invite_gone,
    last_admin,
};
use crate::{Result, StoreError};

const INVITE_COLS: &str =
    "id, workspace_id, email, role, invited_by, created_at, expires_at, accepted_at";

fn invite_from_row(r: &Row) -> Result<Invite> {
    Ok(Invite {
        id: r.get(0),
        workspace_id: WorkspaceId(r.get(1)),
        email: r.get(2),
        role: parse(r.get::<_, &str>(3))?,
        invited_by: r.get::<_, Option<Uuid>>(4).map(UserId),
        created_at: ts(r.get(5)),
        expires_at: ts(r.get(6)),
        accepted_at: r.get::<_, Option<i64>>(7).map(ts),
    })
}

/// The member, with the workspace's admin rows locked for the rest of the transaction; and
/// whether it is the only admin.
async fn lock_member(tx: &Transaction<'_>, ws: WorkspaceId, id: UserId) -> Result<(User, bool)> {
    let admins: Vec<Uuid> = tx
        .query(
            "SELECT id FROM users WHERE workspace_id = $1 AND role = 'admin' ORDER BY id FOR UPDATE",
            &[&ws.0],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let row = tx
        .query_opt(
            &format!(
                "SELECT {USER_COLS} FROM users u WHERE u.id = $1 AND u.workspace_id = $2 FOR UPDATE"
            ),
            &[&id.0, &ws.0],
        )
        .await?
        .ok_or(StoreError::NotFound { what: "user" })?;
    let user = user_from_row(&row)?;
    let last = user.role == UserRole::Admin && admins.iter().all(|a| *a == id.0);
    Ok((user, last))
}

#[async_trait]
impl SettingsStore for PostgresStore {
    async fn workspace_settings(&self, workspace: WorkspaceId) -> Result<WorkspaceSettings> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT time_zone, analysis_enabled, updated_at FROM workspace_settings
                  WHERE workspace_id = $1",
                &[&workspace.0],
            )
            .await?;
        Ok(row
            .map(|r| WorkspaceSettings {
                time_zone: r.get(0),
                analysis_enabled: r.get(1),
                updated_at: Some(ts(r.get(2))),
            })
            .unwrap_or_default())
    }

    async fn save_workspace_settings(
        &self,
        workspace: WorkspaceId,
        settings: &WorkspaceSettings,
        at: Timestamp,
    ) -> Result<WorkspaceSettings> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        ensure_workspace(&tx, workspace).await?;
        tx.execute(
            "INSERT INTO workspace_settings (workspace_id, time_zone, analysis_enabled, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (workspace_id) DO UPDATE SET time_zone = excluded.time_zone,
                 analysis_enabled = excluded.analysis_enabled, updated_at = excluded.updated_at",
            &[
                &workspace.0,
                &settings.time_zone,
                &settings.analysis_enabled,
                &at.0,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(WorkspaceSettings {
            updated_at: Some(at),
            ..settings.clone()
        })
    }

    async fn create_invite(&self, i: &NewInvite) -> Result<Invite> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        ensure_workspace(&tx, i.workspace_id).await?;
        if tx
            .query_opt("SELECT 1 FROM users WHERE email = $1", &[&i.email])
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict {
                code: "user_exists",
                message: format!("a user with email {:?} already exists", i.email),
            });
        }
        let invite = Invite {
            id: Uuid::now_v7(),
            workspace_id: i.workspace_id,
            email: i.email.clone(),
            role: i.role,
            invited_by: i.invited_by,
            created_at: i.created_at,
            expires_at: i.expires_at,
            accepted_at: None,
        };
        tx.execute(
            "INSERT INTO invites (id, workspace_id, token_hash, email, role, invited_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &invite.id,
                &i.workspace_id.0,
                &&i.token_hash[..],
                &i.email,
                &i.role.as_str(),
                &i.invited_by.map(|u| u.0),
                &i.created_at.0,
                &i.expires_at.0,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(invite)
    }

    async fn list_invites(&self, workspace: WorkspaceId) -> Result<Vec<Invite>> {
        let client = self.pool.get().await?;
        client
            .query(
                &format!(
                    "SELECT {INVITE_COLS} FROM invites WHERE workspace_id = $1 AND accepted_at IS NULL
                      ORDER BY created_at DESC, id DESC"
                ),
                &[&workspace.0],
            )
            .await?
            .iter()
            .map(invite_from_row)
            .collect()
    }

    async fn delete_invite(&self, workspace: WorkspaceId, id: Uuid) -> Result<()> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM invites WHERE id = $1 AND workspace_id = $2 AND accepted_at IS NULL",
                &[&id, &workspace.0],
            )
            .await?;
        if n == 0 {
            return Err(invite_gone());
        }
        Ok(())
    }

    async fn pending_invite(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Invite>> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                &format!(
                    "SELECT {INVITE_COLS} FROM invites
                      WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2"
                ),
                &[&&token_hash[..], &now.0],
            )
            .await?
            .as_ref()
            .map(invite_from_row)
            .transpose()
    }

    async fn accept_invite(
        &self,
        token_hash: [u8; 32],
        name: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<User> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The row lock makes a second, concurrent acceptance wait and then find it used.
        let invite = tx
            .query_opt(
                &format!(
                    "SELECT {INVITE_COLS} FROM invites
                      WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2 FOR UPDATE"
                ),
                &[&&token_hash[..], &now.0],
            )
            .await?
            .as_ref()
            .map(invite_from_row)
            .transpose()?
            .ok_or_else(invite_gone)?;
        let user = User {
            id: UserId::new(),
            workspace_id: invite.workspace_id,
            email: invite.email.clone(),
            role: invite.role,
            created_at: now,
            name: name.to_owned(),
            last_sign_in_at: None,
        };
        tx.execute(
            "INSERT INTO users (id, workspace_id, email, password_hash, role, created_at, name)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &user.id.0,
                &user.workspace_id.0,
                &user.email,
                &password_hash,
                &user.role.as_str(),
                &now.0,
                &user.name,
            ],
        )
        .await
        .map_err(conflict_on_unique("user_exists", || {
            format!("a user with email {:?} already exists", invite.email)
        }))?;
        tx.execute(
            "UPDATE invites SET accepted_at = $2, user_id = $3 WHERE id = $1",
            &[&invite.id, &now.0, &user.id.0],
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn member(&self, workspace: WorkspaceId, id: UserId) -> Result<Option<User>> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                &format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1 AND u.workspace_id = $2"),
                &[&id.0, &workspace.0],
            )
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn set_member_role(
        &self,
        workspace: WorkspaceId,
        id: UserId,
        role: UserRole,
    ) -> Result<User> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (user, last) = lock_member(&tx, workspace, id).await?;
        if last && role != UserRole::Admin {
            return Err(last_admin());
        }
        tx.execute(
            "UPDATE users SET role = $3 WHERE id = $1 AND workspace_id = $2",
            &[&id.0, &workspace.0, &role.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(User { role, ..user })
    }

    async fn remove_member(&self, workspace: WorkspaceId, id: UserId) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (_, last) = lock_member(&tx, workspace, id).await?;
        if last {
            return Err(last_admin());
        }
        tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&id.0])
            .await?;
        tx.execute(
            "UPDATE conversations SET assignee_id = NULL WHERE workspace_id = $1 AND assignee_id = $2",
            &[&workspace.0, &id.0],
        )
        .await?;
        tx.execute(
            "UPDATE invites SET user_id = NULL WHERE user_id = $1",
            &[&id.0],
        )
        .await?;
        tx.execute(
            "DELETE FROM users WHERE id = $1 AND workspace_id = $2",
            &[&id.0, &workspace.0],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_api_key_with_role(
        &self,
        workspace: WorkspaceId,
        name: &str,
        role: UserRole,
        prefix: &str,
        secret_hash: [u8; 32],
    ) -> Result<ApiKey> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        ensure_workspace(&tx, workspace).await?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO api_keys (id, workspace_id, name, prefix, secret_hash, created_at, role)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLS}"
                ),
                &[
                    &ApiKeyId::new().0,
                    &workspace.0,
                    &name,
                    &prefix,
                    &&secret_hash[..],
                    &Timestamp::now().0,
                    &role.as_str(),
                ],
            )
            .await?;
        tx.commit().await?;
        key_from_row(&row)
    }

    async fn touch_api_key(&self, id: ApiKeyId, now: Timestamp) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE api_keys SET last_used_at = $2
                  WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)",
                &[&id.0, &now.0, &(now.0 - KEY_TOUCH_INTERVAL_MS)],
            )
            .await?;
        Ok(())
    }
}
