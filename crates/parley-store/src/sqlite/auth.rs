//! [`AuthStore`] on SQLite: reads on the reader pool, writes on the writer connection (which
//! also serialises concurrent sign-in claims).

use async_trait::async_trait;
use parley_core::model::User;
use parley_core::{Timestamp, UserRole, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::read::{USER_COLS, ts, user_from_row};
use super::write::{conflict_on_unique, ensure_workspace};
use crate::{AuthStore, NewSession, Result, SessionRecord};

#[async_trait]
impl AuthStore for SqliteStore {
    async fn create_user(
        &self,
        workspace: WorkspaceId,
        email: &str,
        password_hash: &str,
        role: UserRole,
    ) -> Result<User> {
        let (email, hash) = (email.to_owned(), password_hash.to_owned());
        self.write(move |c| create_user(c, workspace, &email, &hash, role))
            .await
    }

    async fn user_for_login(&self, email: &str) -> Result<Option<(User, String)>> {
        let email = email.to_owned();
        self.read(move |c| user_for_login(c, &email)).await
    }

    async fn list_users(&self, workspace: WorkspaceId) -> Result<Vec<User>> {
        self.read(move |c| list_users(c, workspace)).await
    }

    async fn create_session(&self, session: &NewSession) -> Result<()> {
        let session = session.clone();
        self.write(move |c| create_session(c, &session)).await
    }

    async fn session(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<SessionRecord>> {
        self.read(move |c| session(c, token_hash, now)).await
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write(move |c| delete_session(c, token_hash)).await
    }

    async fn record_login_failure(&self, subjects: &[String], at: Timestamp) -> Result<()> {
        let subjects = subjects.to_vec();
        self.write(move |c| record_login_failure(c, &subjects, at))
            .await
    }

    async fn login_failures_since(&self, subject: &str, since: Timestamp) -> Result<u64> {
        let subject = subject.to_owned();
        self.read(move |c| login_failures_since(c, &subject, since))
            .await
    }

    async fn clear_login_failures(&self, subject: &str, before: Timestamp) -> Result<()> {
        let subject = subject.to_owned();
        self.write(move |c| clear_login_failures(c, &subject, before))
            .await
    }

    async fn claim_login_attempt(
        &self,
        limits: &[(String, u64)],
        since: Timestamp,
        at: Timestamp,
    ) -> Result<bool> {
        let limits = limits.to_vec();
        self.write(move |c| claim_login_attempt(c, &limits, since, at))
            .await
    }

    async fn release_login_attempt(&self, subject: &str, at: Timestamp) -> Result<()> {
        let subject = subject.to_owned();
        self.write(move |c| release_login_attempt(c, &subject, at))
            .await
    }
}

pub(super) fn user_for_login(c: &Connection, email: &str) -> Result<Option<(User, String)>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {USER_COLS}, u.password_hash FROM users u WHERE u.email = ?1"
    ))?
    .query_row([email], |r| Ok((user_from_row(r)?, r.get(7)?)))
    .optional()?)
}

pub(super) fn list_users(c: &Connection, ws: WorkspaceId) -> Result<Vec<User>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users u WHERE u.workspace_id = ?1 ORDER BY u.email"
    ))?;
    let rows = stmt.query_map([ws.as_bytes()], user_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn session(
    c: &Connection,
    token_hash: [u8; 32],
    now: Timestamp,
) -> Result<Option<SessionRecord>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {USER_COLS}, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.token_hash = ?1 AND s.expires_at > ?2"
    ))?
    .query_row(params![&token_hash[..], now.0], |r| {
        Ok(SessionRecord { user: user_from_row(r)?, csrf_token: r.get(7)?, expires_at: ts(r.get(8)?) })
    })
    .optional()?)
}

pub(super) fn login_failures_since(c: &Connection, subject: &str, since: Timestamp) -> Result<u64> {
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM login_failures WHERE subject = ?1 AND at >= ?2")?
        .query_row(params![subject, since.0], |r| r.get(0))?;
    Ok(n as u64)
}

pub(super) fn create_user(
    c: &Connection,
    workspace: WorkspaceId,
    email: &str,
    password_hash: &str,
    role: UserRole,
) -> Result<User> {
    ensure_workspace(c, workspace)?;
    let user = crate::auth::new_user(workspace, email, role);
    c.execute(
        "INSERT INTO users (id, workspace_id, email, password_hash, role, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user.id.as_bytes(),
            workspace.as_bytes(),
            user.email,
            password_hash,
            role.as_str(),
            user.created_at.0
        ],
    )
    .map_err(conflict_on_unique("user_exists", || {
        format!("a user with email {email:?} already exists")
    }))?;
    Ok(user)
}

pub(super) fn create_session(c: &Connection, s: &NewSession) -> Result<()> {
    c.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![&s.token_hash[..], s.user_id.as_bytes(), s.csrf_token, s.created_at.0, s.expires_at.0],
    )?;
    // A new session is a sign-in: the members list shows when it happened.
    c.execute(
        "UPDATE users SET last_sign_in_at = ?2 WHERE id = ?1",
        params![s.user_id.as_bytes(), s.created_at.0],
    )?;
    // Expired sessions are swept as new ones arrive.
    c.execute(
        "DELETE FROM sessions WHERE expires_at < ?1",
        [s.created_at.0],
    )?;
    Ok(())
}

pub(super) fn delete_session(c: &Connection, token_hash: [u8; 32]) -> Result<()> {
    c.execute(
        "DELETE FROM sessions WHERE token_hash = ?1",
        [&token_hash[..]],
    )?;
    Ok(())
}

pub(super) fn record_login_failure(
    c: &Connection,
    subjects: &[String],
    at: Timestamp,
) -> Result<()> {
    let mut stmt = c.prepare_cached("INSERT INTO login_failures (subject, at) VALUES (?1, ?2)")?;
    for s in subjects {
        stmt.execute(params![s, at.0])?;
    }
    Ok(())
}

pub(super) fn clear_login_failures(c: &Connection, subject: &str, before: Timestamp) -> Result<()> {
    c.execute(
        "DELETE FROM login_failures WHERE subject = ?1 AND at < ?2",
        params![subject, before.0],
    )?;
    Ok(())
}

/// Runs on the one writer connection, so no other claim (nor any other process's write, which
/// waits for the write lock) comes between the counts and the inserts.
pub(super) fn claim_login_attempt(
    c: &Connection,
    limits: &[(String, u64)],
    since: Timestamp,
    at: Timestamp,
) -> Result<bool> {
    let mut count =
        c.prepare_cached("SELECT count(*) FROM login_failures WHERE subject = ?1 AND at >= ?2")?;
    for (subject, limit) in limits {
        let n: i64 = count.query_row(params![subject, since.0], |r| r.get(0))?;
        if n as u64 >= *limit {
            return Ok(false);
        }
    }
    let mut insert =
        c.prepare_cached("INSERT INTO login_failures (subject, at) VALUES (?1, ?2)")?;
    for (subject, _) in limits {
        insert.execute(params![subject, at.0])?;
    }
    Ok(true)
}

pub(super) fn release_login_attempt(c: &Connection, subject: &str, at: Timestamp) -> Result<()> {
    c.prepare_cached(
        "DELETE FROM login_failures WHERE rowid =
             (SELECT rowid FROM login_failures WHERE subject = ?1 AND at = ?2 LIMIT 1)",
    )?
    .execute(params![subject, at.0])?;
    Ok(())
}
