//! The one migration runner both backends use.
//!
//! Each dialect has its list of embedded migrations ([`SQLITE`], [`POSTGRES`]): a version, a
//! name and the SQL of `migrations/<dialect>/NNNN_<name>.sql`. Versions only grow and may have
//! gaps. The applied versions are recorded in the table `parley_migrations (version, name,
//! applied_at)` (`applied_at` in Unix milliseconds, [`parley_core::Timestamp`]), the same table
//! and columns the backends wrote before this module existed, so a database migrated by an older
//! Parley opens without re-running anything: the runner applies only the versions above the
//! highest one recorded.
//!
//! The backend owns the transaction (PostgreSQL also takes an advisory lock in it, so servers
//! starting together do not race) and hands the runner a [`MigrationTarget`] that runs inside
//! it; [`run`] applies every pending migration in order through it, so either all of them and
//! their records commit or none do.

use async_trait::async_trait;

use crate::Result;
use crate::sql::Dialect;

/// One embedded migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Migration {
    /// Its version, the `NNNN` of its file name; recorded in `parley_migrations.version`.
    pub version: i64,
    /// Its name, the rest of the file name; recorded in `parley_migrations.name`.
    pub name: &'static str,
    /// The SQL, run as one batch.
    pub sql: &'static str,
}

macro_rules! migration {
    ($dialect:literal, $version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $dialect, "/", $file, ".sql")),
        }
    };
}

/// The SQLite migrations, in order (`migrations/sqlite`).
pub(crate) const SQLITE: &[Migration] = &[
    migration!("sqlite", 1, "init", "0001_init"),
    migration!("sqlite", 2, "users", "0002_users"),
    migration!("sqlite", 3, "search_batches", "0003_search_batches"),
    migration!(
        "sqlite",
        4,
        "covering_sort_indexes",
        "0004_covering_sort_indexes"
    ),
    migration!("sqlite", 5, "assistant_runtime", "0005_assistant_runtime"),
    migration!("sqlite", 6, "channels", "0006_channels"),
    migration!("sqlite", 7, "widget", "0007_widget"),
    migration!("sqlite", 10, "attachment_quota", "0010_attachment_quota"),
    migration!("sqlite", 11, "jobs", "0011_jobs"),
    migration!("sqlite", 12, "insights", "0012_insights"),
    migration!("sqlite", 13, "events", "0013_events"),
    migration!(
        "sqlite",
        14,
        "insight_watermarks",
        "0014_insight_watermarks"
    ),
    migration!("sqlite", 15, "team", "0015_team"),
    migration!("sqlite", 16, "webhooks", "0016_webhooks"),
    migration!("sqlite", 17, "retention", "0017_retention"),
    migration!("sqlite", 18, "settings", "0018_settings"),
    migration!("sqlite", 21, "topics", "0021_topics"),
    migration!("sqlite", 22, "bulk_actions", "0022_bulk_actions"),
    migration!("sqlite", 25, "insight_rollups", "0025_insight_rollups"),
    migration!(
        "sqlite",
        26,
        "insight_day_rollups",
        "0026_insight_day_rollups"
    ),
];

/// The PostgreSQL migrations, in order (`migrations/postgres`).
pub(crate) const POSTGRES: &[Migration] = &[
    migration!("postgres", 1, "init", "0001_init"),
    migration!("postgres", 2, "users", "0002_users"),
    migration!(
        "postgres",
        3,
        "covering_sort_indexes",
        "0003_covering_sort_indexes"
    ),
    migration!("postgres", 4, "assistant_runtime", "0004_assistant_runtime"),
    migration!("postgres", 5, "channels", "0005_channels"),
    migration!("postgres", 6, "widget", "0006_widget"),
    migration!("postgres", 9, "attachment_quota", "0009_attachment_quota"),
    migration!("postgres", 10, "jobs", "0010_jobs"),
    migration!("postgres", 11, "insights", "0011_insights"),
    migration!("postgres", 12, "events", "0012_events"),
    migration!(
        "postgres",
        13,
        "insight_watermarks",
        "0013_insight_watermarks"
    ),
    migration!("postgres", 14, "team", "0014_team"),
    migration!("postgres", 15, "webhooks", "0015_webhooks"),
    migration!("postgres", 16, "retention", "0016_retention"),
    migration!("postgres", 17, "settings", "0017_settings"),
    migration!("postgres", 20, "topics", "0020_topics"),
    migration!("postgres", 21, "bulk_actions", "0021_bulk_actions"),
    migration!("postgres", 24, "insight_rollups", "0024_insight_rollups"),
    migration!(
        "postgres",
        25,
        "insight_day_rollups",
        "0025_insight_day_rollups"
    ),
];

/// The migrations of `dialect`, in order.
pub(crate) fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

/// The table that records applied versions, as both backends have always created it.
fn create_table(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "CREATE TABLE IF NOT EXISTS parley_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        }
        Dialect::Postgres => {
            "CREATE TABLE IF NOT EXISTS parley_migrations (
                 version bigint PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)"
        }
    }
}

/// The highest recorded version (0 on a fresh database).
const CURRENT: &str = "SELECT coalesce(max(version), 0) FROM parley_migrations";

/// The statement that records one applied migration; its parameters are (version, name,
/// applied_at).
pub(crate) fn record_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "INSERT INTO parley_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)"
        }
        Dialect::Postgres => {
            "INSERT INTO parley_migrations (version, name, applied_at) VALUES ($1, $2, $3)"
        }
    }
}

/// What the runner needs from a backend, all inside the backend's open transaction.
#[async_trait]
pub(crate) trait MigrationTarget: Send {
    /// The dialect of the SQL the runner hands over.
    fn dialect(&self) -> Dialect;
    /// Runs `sql` (one or more statements, no parameters).
    async fn batch(&mut self, sql: &str) -> Result<()>;
    /// Runs a query returning one integer (`sql` has no parameters).
    async fn integer(&mut self, sql: &str) -> Result<i64>;
    /// Runs [`record_sql`] with these parameters.
    async fn record(&mut self, version: i64, name: &str, applied_at: i64) -> Result<()>;
}

/// Which of `list` are pending on a database whose highest recorded version is `current`, up
/// to and including `target`: those above `current`, in order.
pub(crate) fn pending(list: &[Migration], current: i64, target: i64) -> Vec<Migration> {
    list.iter()
        .filter(|m| m.version > current && m.version <= target)
        .copied()
        .collect()
}

/// Creates the record table if needed and applies every pending migration up to and including
/// `target` (`i64::MAX` for all), in order, recording each; returns the versions it applied.
/// Errors: a migration's SQL fails (the caller then rolls the whole transaction back).
pub(crate) async fn run(db: &mut dyn MigrationTarget, target: i64) -> Result<Vec<i64>> {
    let dialect = db.dialect();
    db.batch(create_table(dialect)).await?;
    let current = db.integer(CURRENT).await?;
    let mut applied = Vec::new();
    for m in pending(migrations(dialect), current, target) {
        db.batch(m.sql).await?;
        db.record(m.version, m.name, parley_core::Timestamp::now().0)
            .await?;
        tracing::info!(version = m.version, name = m.name, backend = ?dialect, "applied migration");
        applied.push(m.version);
    }
    Ok(applied)
}

/// Drives a future whose every step is synchronous (the SQLite target's), on this thread.
/// Errors if it ever waits, which a synchronous target never does.
pub(crate) fn run_sync<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Err(crate::StoreError::backend(
            "migration runner: a synchronous target waited",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versions stay what older Parley recorded, so existing databases stay compatible.
    #[test]
    fn versions_are_the_recorded_ones() {
        let v = |l: &[Migration]| l.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(
            v(SQLITE),
            [
                1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 21, 22, 25, 26
            ]
        );
        assert_eq!(
            v(POSTGRES),
            [
                1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 24, 25
            ]
        );
        for list in [SQLITE, POSTGRES] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
            assert!(list.iter().all(|m| !m.sql.trim().is_empty()));
        }
    }

    #[test]
    fn pending_skips_applied_and_stops_at_target() {
        let v = |l: Vec<Migration>| l.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(v(pending(SQLITE, 0, i64::MAX)).len(), SQLITE.len());
        assert_eq!(
            v(pending(SQLITE, 7, i64::MAX)),
            [10, 11, 12, 13, 14, 15, 16, 17, 18, 21, 22, 25, 26]
        );
        assert_eq!(v(pending(SQLITE, 2, 7)), [3, 4, 5, 6, 7]);
        assert_eq!(
            v(pending(POSTGRES, 10, i64::MAX)),
            [11, 12, 13, 14, 15, 16, 17, 20, 21, 24, 25]
        );
        // A recorded version between two embedded ones (a gap) still counts as the high mark.
        assert_eq!(
            v(pending(POSTGRES, 8, i64::MAX)),
            [9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 24, 25]
        );
    }
}
