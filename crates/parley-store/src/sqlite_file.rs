//! Whole-file operations on a SQLite database, for `parley backup` and `parley restore` (which
//! copy and check the database file itself, outside any open [`crate::Store`]). Kept here so
//! that only the store links SQLite.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Any failure of SQLite (opening, the statement) or a path that is not UTF-8.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `VACUUM INTO` on a read-only connection: the database at `db` as of the start of its read
/// transaction, written compacted to `copy` (which must not exist). Waits up to 30 s for a
/// writer's lock. Errors: `db` cannot be opened, `copy` is not UTF-8 or cannot be written.
pub fn snapshot(db: &Path, copy: &Path) -> Result<(), Error> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let target = copy.to_str().ok_or("the backup path must be valid UTF-8")?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| format!("copying {}: {e}", db.display()))?;
    Ok(())
}

/// Every workspace of the database at `db` (opened read-only) as `(slug, conversations)`,
/// ordered by slug. Errors: the file cannot be opened or is not a Parley database.
pub fn conversations_per_workspace(db: &Path) -> Result<Vec<(String, u64)>, Error> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare(
        "SELECT w.slug, (SELECT count(*) FROM conversations c WHERE c.workspace_id = w.id)
         FROM workspaces w ORDER BY w.slug",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// SQLite's `PRAGMA quick_check` on the database at `db` (opened read-only). Errors: the file
/// cannot be opened, or the check finds damage (its verdict in the message).
pub fn quick_check(db: &Path) -> Result<(), Error> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(format!("the restored database fails SQLite's check: {verdict}").into());
    }
    Ok(())
}
