//! [`AuthStore`] on PostgreSQL: each write in its own transaction; sign-in claims serialised
//! per subject by transaction-scoped advisory locks.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use parley_core::model::User;
use parley_core::{Timestamp, UserRole, WorkspaceId};

use super::PostgresStore;
use super::read::{USER_COLS, ts, user_from_row};
use super::write::{conflict_on_unique, ensure_workspace};
use crate::{AuthStore, NewSession, Result, SessionRecord};

#[async_trait]
impl AuthStore for PostgresStore {
    async fn create_user(
        &self,
        workspace: WorkspaceId,
        email: &str,
        password_hash: &str,
        role: UserRole,
    ) -> Result<User> {
        create_user(&self.pool, workspace, email, password_hash, role).await
    }

    async fn user_for_login(&self, email: &str) -> Result<Option<(User, String)>> {
        user_for_login(&self.pool, email).await
    }

    async fn list_users(&self, workspace: WorkspaceId) -> Result<Vec<User>> {
        list_users(&self.pool, workspace).await
    }

    async fn create_session(&self, session: &NewSession) -> Result<()> {
        create_session(&self.pool, session).await
    }

    async fn session(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<SessionRecord>> {
        session(&self.pool, token_hash, now).await
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()> {
        delete_session(&self.pool, token_hash).await
    }

    async fn record_login_failure(&self, subjects: &[String], at: Timestamp) -> Result<()> {
        record_login_failure(&self.pool, subjects, at).await
    }

    async fn login_failures_since(&self, subject: &str, since: Timestamp) -> Result<u64> {
        login_failures_since(&self.pool, subject, since).await
    }

    async fn clear_login_failures(&self, subject: &str, before: Timestamp) -> Result<()> {
        clear_login_failures(&self.pool, subject, before).await
    }

    async fn claim_login_attempt(
        &self,
        limits: &[(String, u64)],
        since: Timestamp,
        at: Timestamp,
    ) -> Result<bool> {
        claim_login_attempt(&self.pool, limits, since, at).await
    }

    async fn release_login_attempt(&self, subject: &str, at: Timestamp) -> Result<()> {
        release_login_attempt(&self.pool, subject, at).await
    }
}

pub(super) async fn user_for_login(pool: &Pool, email: &str) -> Result<Option<(User, String)>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {USER_COLS}, u.password_hash FROM users u WHERE u.email = $1"
        ))
        .await?;
    match client.query_opt(&stmt, &[&email]).await? {
        Some(r) => Ok(Some((user_from_row(&r)?, r.get(7)))),
        None => Ok(None),
    }
}

pub(super) async fn list_users(pool: &Pool, ws: WorkspaceId) -> Result<Vec<User>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {USER_COLS} FROM users u WHERE u.workspace_id = $1 ORDER BY u.email"),
            &[&ws.0],
        )
        .await?;
    rows.iter().map(user_from_row).collect()
}

pub(super) async fn session(
    pool: &Pool,
    token_hash: [u8; 32],
    now: Timestamp,
) -> Result<Option<SessionRecord>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {USER_COLS}, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
              WHERE s.token_hash = $1 AND s.expires_at > $2"
        ))
        .await?;
    match client.query_opt(&stmt, &[&&token_hash[..], &now.0]).await? {
        Some(r) => Ok(Some(SessionRecord {
            user: user_from_row(&r)?,
            csrf_token: r.get(7),
            expires_at: ts(r.get(8)),
        })),
        None => Ok(None),
    }
}

pub(super) async fn login_failures_since(
    pool: &Pool,
    subject: &str,
    since: Timestamp,
) -> Result<u64> {
    let client = pool.get().await?;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM login_failures WHERE subject = $1 AND at >= $2",
            &[&subject, &since.0],
        )
        .await?
        .get(0);
    Ok(n as u64)
}

pub(super) async fn create_user(
    pool: &Pool,
    workspace: WorkspaceId,
    email: &str,
    password_hash: &str,
    role: UserRole,
) -> Result<User> {
    let user = crate::auth::new_user(workspace, email, role);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    ensure_workspace(&tx, workspace).await?;
    tx.execute(
        "INSERT INTO users (id, workspace_id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&user.id.0, &workspace.0, &user.email, &password_hash, &role.as_str(), &user.created_at.0],
    )
    .await
    .map_err(conflict_on_unique("user_exists", || format!("a user with email {email:?} already exists")))?;
    tx.commit().await?;
    Ok(user)
}

pub(super) async fn create_session(pool: &Pool, s: &NewSession) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            &[&&s.token_hash[..], &s.user_id.0, &s.csrf_token, &s.created_at.0, &s.expires_at.0],
        )
        .await?;
    // A new session is a sign-in: the members list shows when it happened.
    client
        .execute(
            "UPDATE users SET last_sign_in_at = $2 WHERE id = $1",
            &[&s.user_id.0, &s.created_at.0],
        )
        .await?;
    client
        .execute(
            "DELETE FROM sessions WHERE expires_at < $1",
            &[&s.created_at.0],
        )
        .await?;
    Ok(())
}

pub(super) async fn delete_session(pool: &Pool, token_hash: [u8; 32]) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "DELETE FROM sessions WHERE token_hash = $1",
            &[&&token_hash[..]],
        )
        .await?;
    Ok(())
}

pub(super) async fn record_login_failure(
    pool: &Pool,
    subjects: &[String],
    at: Timestamp,
) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO login_failures (subject, at) SELECT s, $2 FROM unnest($1::text[]) AS s",
            &[&subjects, &at.0],
        )
        .await?;
    Ok(())
}

pub(super) async fn clear_login_failures(
    pool: &Pool,
    subject: &str,
    before: Timestamp,
) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "DELETE FROM login_failures WHERE subject = $1 AND at < $2",
            &[&subject, &before.0],
        )
        .await?;
    Ok(())
}

/// The first key of the advisory locks that serialise sign-in claims per subject (the second is
/// the subject's `hashtext`): "PaLo" in ASCII, so they do not meet other advisory locks.
const LOGIN_LOCK_CLASS: i32 = 0x5061_4c6f;

/// In one transaction: lock every subject (advisory, transaction-scoped, in key order so two
/// claims never wait for each other crosswise), count, and insert only when every count is
/// under its limit. Under READ COMMITTED a count alone would not see rows that concurrent
/// transactions are inserting; the lock makes the claims of one subject take turns, across
/// every server on the database.
pub(super) async fn claim_login_attempt(
    pool: &Pool,
    limits: &[(String, u64)],
    since: Timestamp,
    at: Timestamp,
) -> Result<bool> {
    let subjects: Vec<&str> = limits.iter().map(|(s, _)| s.as_str()).collect();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, k)
           FROM (SELECT DISTINCT hashtext(s) AS k FROM unnest($2::text[]) AS s ORDER BY k) AS keys",
        &[&LOGIN_LOCK_CLASS, &subjects],
    )
    .await?;
    let count = tx
        .prepare_cached("SELECT count(*) FROM login_failures WHERE subject = $1 AND at >= $2")
        .await?;
    for (subject, limit) in limits {
        let n: i64 = tx.query_one(&count, &[subject, &since.0]).await?.get(0);
        if n as u64 >= *limit {
            return Ok(false);
        }
    }
    tx.execute(
        "INSERT INTO login_failures (subject, at) SELECT s, $2 FROM unnest($1::text[]) AS s",
        &[&subjects, &at.0],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn release_login_attempt(pool: &Pool, subject: &str, at: Timestamp) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "DELETE FROM login_failures WHERE ctid =
                 (SELECT ctid FROM login_failures WHERE subject = $1 AND at = $2 LIMIT 1)",
            &[&subject, &at.0],
        )
        .await?;
    Ok(())
}
