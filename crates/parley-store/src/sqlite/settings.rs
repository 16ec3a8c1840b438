//! [`SettingsStore`] on SQLite: every write runs on the one writer connection, so the
//! last-admin check and the change it guards cannot interleave with another write.

use async_trait::async_trait;
use parley_core::model::{ApiKey, User};
use parley_core::{ApiKeyId, Timestamp, UserId, UserRole, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::SqliteStore;
use super::read::{KEY_COLS, USER_COLS, get_enum, get_id, key_from_row, ts, user_from_row};
use super::write::{conflict_on_unique, ensure_workspace};
use crate::settings::{
    Invite, KEY_TOUCH_INTERVAL_MS, NewInvite, SettingsStore, WorkspaceSettings, invite_gone,
    last_admin,
};
use crate::{Result, StoreError};

const INVITE_COLS: &str =
    "id, workspace_id, email, role, invited_by, created_at, expires_at, accepted_at";

fn invite_from_row(r: &Row<'_>) -> rusqlite::Result<Invite> {
    Ok(Invite {
        id: get_id(r, 0, |b| Uuid::from_slice(b).ok())?,
        workspace_id: get_id(r, 1, WorkspaceId::from_slice)?,
        email: r.get(2)?,
        role: get_enum(r, 3)?,
        invited_by: r
            .get::<_, Option<Vec<u8>>>(4)?
            .and_then(|b| UserId::from_slice(&b)),
        created_at: ts(r.get(5)?),
        expires_at: ts(r.get(6)?),
        accepted_at: r.get::<_, Option<i64>>(7)?.map(ts),
    })
}

fn member(c: &Connection, ws: WorkspaceId, id: UserId) -> Result<Option<User>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users u WHERE u.id = ?1 AND u.workspace_id = ?2"
    ))?
    .query_row(params![id.as_bytes(), ws.as_bytes()], user_from_row)
    .optional()?)
}

/// Whether `id` is the workspace's only admin (so demoting or removing it is refused).
fn is_last_admin(c: &Connection, ws: WorkspaceId, id: UserId) -> Result<bool> {
    let others: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM users WHERE workspace_id = ?1 AND role = 'admin' AND id <> ?2",
        )?
        .query_row(params![ws.as_bytes(), id.as_bytes()], |r| r.get(0))?;
    Ok(others == 0)
}

fn create_invite(c: &Connection, i: &NewInvite) -> Result<Invite> {
    ensure_workspace(c, i.workspace_id)?;
    let taken = c
        .prepare_cached("SELECT 1 FROM users WHERE email = ?1")?
        .exists([&i.email])?;
    if taken {
        return Err(user_exists(&i.email));
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
    c.prepare_cached(
        "INSERT INTO invites (id, workspace_id, token_hash, email, role, invited_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        invite.id.as_bytes(),
        i.workspace_id.as_bytes(),
        &i.token_hash[..],
        i.email,
        i.role.as_str(),
        i.invited_by.map(|u| u.as_bytes().to_vec()),
        i.created_at.0,
        i.expires_at.0
    ])?;
    Ok(invite)
}

fn user_exists(email: &str) -> StoreError {
    StoreError::Conflict {
        code: "user_exists",
        message: format!("a user with email {email:?} already exists"),
    }
}

fn accept_invite(
    c: &Connection,
    token_hash: [u8; 32],
    name: &str,
    password_hash: &str,
    now: Timestamp,
) -> Result<User> {
    let invite = c
        .prepare_cached(&format!(
            "SELECT {INVITE_COLS} FROM invites
              WHERE token_hash = ?1 AND accepted_at IS NULL AND expires_at > ?2"
        ))?
        .query_row(params![&token_hash[..], now.0], invite_from_row)
        .optional()?
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
    c.prepare_cached(
        "INSERT INTO users (id, workspace_id, email, password_hash, role, created_at, name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        user.id.as_bytes(),
        user.workspace_id.as_bytes(),
        user.email,
        password_hash,
        user.role.as_str(),
        now.0,
        user.name
    ])
    .map_err(conflict_on_unique("user_exists", || {
        format!("a user with email {:?} already exists", invite.email)
    }))?;
    c.prepare_cached("UPDATE invites SET accepted_at = ?2, user_id = ?3 WHERE id = ?1")?
        .execute(params![invite.id.as_bytes(), now.0, user.id.as_bytes()])?;
    Ok(user)
}

fn set_member_role(c: &Connection, ws: WorkspaceId, id: UserId, role: UserRole) -> Result<User> {
    let found = member(c, ws, id)?.ok_or(StoreError::NotFound { what: "user" })?;
    if found.role == UserRole::Admin && role != UserRole::Admin && is_last_admin(c, ws, id)? {
        return Err(last_admin());
    }
    c.prepare_cached("UPDATE users SET role = ?3 WHERE id = ?1 AND workspace_id = ?2")?
        .execute(params![id.as_bytes(), ws.as_bytes(), role.as_str()])?;
    Ok(User { role, ..found })
}

fn remove_member(c: &Connection, ws: WorkspaceId, id: UserId) -> Result<()> {
    let found = member(c, ws, id)?.ok_or(StoreError::NotFound { what: "user" })?;
    if found.role == UserRole::Admin && is_last_admin(c, ws, id)? {
        return Err(last_admin());
    }
    c.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
        .execute([id.as_bytes()])?;
    c.prepare_cached(
        "UPDATE conversations SET assignee_id = NULL WHERE workspace_id = ?1 AND assignee_id = ?2",
    )?
    .execute(params![ws.as_bytes(), id.as_bytes()])?;
    c.prepare_cached("UPDATE invites SET user_id = NULL WHERE user_id = ?1")?
        .execute([id.as_bytes()])?;
    c.prepare_cached("DELETE FROM users WHERE id = ?1 AND workspace_id = ?2")?
        .execute(params![id.as_bytes(), ws.as_bytes()])?;
    Ok(())
}

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn workspace_settings(&self, workspace: WorkspaceId) -> Result<WorkspaceSettings> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT time_zone, analysis_enabled, updated_at FROM workspace_settings
                  WHERE workspace_id = ?1",
            )?
            .query_row([workspace.as_bytes()], |r| {
                Ok(WorkspaceSettings {
                    time_zone: r.get(0)?,
                    analysis_enabled: r.get::<_, i64>(1)? != 0,
                    updated_at: Some(ts(r.get(2)?)),
                })
            })
            .optional()?
            .unwrap_or_default())
        })
        .await
    }

    async fn save_workspace_settings(
        &self,
        workspace: WorkspaceId,
        settings: &WorkspaceSettings,
        at: Timestamp,
    ) -> Result<WorkspaceSettings> {
        let saved = WorkspaceSettings {
            updated_at: Some(at),
            ..settings.clone()
        };
        let row = saved.clone();
        self.write(move |c| {
            ensure_workspace(c, workspace)?;
            c.prepare_cached(
                "INSERT INTO workspace_settings (workspace_id, time_zone, analysis_enabled, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id) DO UPDATE SET time_zone = excluded.time_zone,
                     analysis_enabled = excluded.analysis_enabled, updated_at = excluded.updated_at",
            )?
            .execute(params![
                workspace.as_bytes(),
                row.time_zone,
                row.analysis_enabled as i64,
                at.0
            ])?;
            Ok(())
        })
        .await?;
        Ok(saved)
    }

    async fn create_invite(&self, invite: &NewInvite) -> Result<Invite> {
        let invite = invite.clone();
        self.write(move |c| create_invite(c, &invite)).await
    }

    async fn list_invites(&self, workspace: WorkspaceId) -> Result<Vec<Invite>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {INVITE_COLS} FROM invites WHERE workspace_id = ?1 AND accepted_at IS NULL
                  ORDER BY created_at DESC, id DESC"
            ))?;
            let rows = stmt.query_map([workspace.as_bytes()], invite_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn delete_invite(&self, workspace: WorkspaceId, id: Uuid) -> Result<()> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM invites WHERE id = ?1 AND workspace_id = ?2 AND accepted_at IS NULL",
                )?
                .execute(params![id.as_bytes(), workspace.as_bytes()])?;
            if n == 0 {
                return Err(invite_gone());
            }
            Ok(())
        })
        .await
    }

    async fn pending_invite(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Invite>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {INVITE_COLS} FROM invites
                  WHERE token_hash = ?1 AND accepted_at IS NULL AND expires_at > ?2"
            ))?
            .query_row(params![&token_hash[..], now.0], invite_from_row)
            .optional()?)
        })
        .await
    }

    async fn accept_invite(
        &self,
        token_hash: [u8; 32],
        name: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<User> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |c| accept_invite(c, token_hash, &name, &hash, now))
            .await
    }

    async fn member(&self, workspace: WorkspaceId, id: UserId) -> Result<Option<User>> {
        self.read(move |c| member(c, workspace, id)).await
    }

    async fn set_member_role(
        &self,
        workspace: WorkspaceId,
        id: UserId,
        role: UserRole,
    ) -> Result<User> {
        self.write(move |c| set_member_role(c, workspace, id, role))
            .await
    }

    async fn remove_member(&self, workspace: WorkspaceId, id: UserId) -> Result<()> {
        self.write(move |c| remove_member(c, workspace, id)).await
    }

    async fn create_api_key_with_role(
        &self,
        workspace: WorkspaceId,
        name: &str,
        role: UserRole,
        prefix: &str,
        secret_hash: [u8; 32],
    ) -> Result<ApiKey> {
        let (name, prefix) = (name.to_owned(), prefix.to_owned());
        self.write(move |c| {
            let key = super::workspaces::create_api_key(c, workspace, &name, &prefix, secret_hash)?;
            c.prepare_cached("UPDATE api_keys SET role = ?2 WHERE id = ?1")?
                .execute(params![key.id.as_bytes(), role.as_str()])?;
            Ok(
                c.prepare_cached(&format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"))?
                    .query_row([key.id.as_bytes()], key_from_row)?,
            )
        })
        .await
    }

    async fn touch_api_key(&self, id: ApiKeyId, now: Timestamp) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE api_keys SET last_used_at = ?2
                  WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?3)",
            )?
            .execute(params![id.as_bytes(), now.0, now.0 - KEY_TOUCH_INTERVAL_MS])?;
            Ok(())
        })
        .await
    }
}
