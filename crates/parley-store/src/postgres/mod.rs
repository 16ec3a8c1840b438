//! The PostgreSQL backend: the path to scale. Many stateless Parley servers share one database;
//! nothing that must be shared lives in a server's memory (sessions, sign-in failures, counters
//! and the data all live here).
//!
//! Driver: tokio-postgres with a deadpool connection pool (prepared statements cached per
//! connection). Concurrency: every ingest batch locks its conversation row (`FOR UPDATE`), so
//! concurrent appends to one conversation are serialised and numbered without gaps, while
//! appends to different conversations proceed in parallel; PostgreSQL's own WAL group commit
//! makes each acknowledged write durable (`synchronous_commit = on`). Messages of a batch are
//! inserted with one `INSERT ... SELECT FROM unnest(...)`. Search uses pg_trgm GIN indexes with
//! `ILIKE`, with the same probe-or-walk plan as the SQLite backend.

mod assistants;
mod attachments;
mod auth;
mod bulk;
mod channels;
mod conversations;
mod events;
mod insights;
mod jobs;
mod read;
mod retention;
mod settings;
mod transfer;
mod webhooks;
mod widgets;
mod workspaces;
mod write;

use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::sql::Param;
use crate::{Result, Store, StoreError};

/// Tuning of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections in the pool (default 16).
    pub pool_size: usize,
    /// How many matching conversations a search probes the trigram index for before it walks
    /// the list instead (default [`crate::SEARCH_PROBE_LIMIT`]).
    pub search_probe_limit: usize,
    /// How many conversations a search first walks in sort order before asking the index
    /// (0 goes to the index at once).
    pub search_bounded_walk: i64,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            search_probe_limit: crate::SEARCH_PROBE_LIMIT,
            search_bounded_walk: crate::sql::BOUNDED_WALK_POSTGRES,
        }
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    options: PostgresOptions,
    /// The connection settings, for the `LISTEN parley_events` connection.
    config: tokio_postgres::Config,
    /// Bumped after this store's commits that appended events, and by the listener.
    events: std::sync::Arc<crate::events::EventSignal>,
    /// Stops the listener task when the store goes (dropping it ends the task); `None` until
    /// the first [`crate::EventStore::subscribe`] starts it.
    listener: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        // Retries are chosen by the SQLSTATE class, not by parsing text.
        let retryable = e.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        });
        let source = Some(Box::new(e) as crate::ErrorSource);
        if retryable {
            StoreError::Retryable { message, source }
        } else {
            StoreError::Backend { message, source }
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Backend {
            message: format!("connection pool: {e}"),
            source: Some(Box::new(e)),
        }
    }
}

pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Boxed driver values for a shared [`Param`] list.
pub(crate) fn to_sql(params: &[Param]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                Param::Int(i) => Box::new(*i),
                Param::Text(t) => Box::new(t.clone()),
                Param::Uuid(u) => Box::new(*u),
                Param::IntList(l) => Box::new(l.clone()),
                Param::OptInt(i) => Box::new(*i),
                Param::OptText(t) => Box::new(t.clone()),
                Param::OptFloat(f) => Box::new(*f),
                Param::OptBool(b) => Box::new(*b),
                Param::OptUuid(u) => Box::new(*u),
            }
        })
        .collect()
}

/// Borrows boxed driver values (from [`to_sql`]) as the parameter slice a query takes.
pub(crate) fn refs(values: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`), applies
    /// pending migrations (serialised across servers by an advisory lock), and checks that the
    /// database folds non-ASCII case (a UTF-8 `LC_CTYPE`), warning if it does not.
    /// Errors: the database is unreachable or the migration fails.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::backend(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("parley");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| StoreError::backend(format!("connection pool: {e}")))?;
        let store = PostgresStore {
            pool,
            options,
            config,
            events: Default::default(),
            listener: Default::default(),
        };
        store.migrate().await?;
        let client = store.pool.get().await?;
        let folds: bool = client
            .query_one("SELECT lower('ÄÖÜ') = 'äöü'", &[])
            .await?
            .get(0);
        if !folds {
            tracing::warn!(
                "this database does not fold non-ASCII case (its LC_CTYPE is not UTF-8 aware): search for \"SCHÖN\" will not find \"schön\"; create the database with LC_CTYPE 'C.UTF-8'"
            );
        }
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock(7411386297452036)", &[])
            .await?;
        crate::migrate::run(&mut PostgresMigrations { tx: &tx }, i64::MAX).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts the `LISTEN parley_events` task once (needs a Tokio runtime; without one,
    /// wake-ups come from this store's own commits only).
    fn start_listening(&self) {
        let mut guard = self.listener.lock().expect("listener lock");
        if guard.is_some() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        handle.spawn(events::listen(
            self.config.clone(),
            self.events.clone(),
            stopped,
        ));
        *guard = Some(stop);
    }

    /// A pooled connection (for the benchmark's raw baselines and tests).
    pub async fn connection(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

/// The migration runner's view of the open migration transaction.
struct PostgresMigrations<'a, 'b> {
    tx: &'a deadpool_postgres::Transaction<'b>,
}

#[async_trait]
impl crate::migrate::MigrationTarget for PostgresMigrations<'_, '_> {
    fn dialect(&self) -> crate::sql::Dialect {
        crate::sql::Dialect::Postgres
    }
    async fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.tx.batch_execute(sql).await?)
    }
    async fn integer(&mut self, sql: &str) -> Result<i64> {
        Ok(self.tx.query_one(sql, &[]).await?.get(0))
    }
    async fn record(&mut self, version: i64, name: &str, applied_at: i64) -> Result<()> {
        self.tx
            .execute(
                crate::migrate::record_sql(crate::sql::Dialect::Postgres),
                &[&version, &name, &applied_at],
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn pool_stats(&self) -> crate::PoolStats {
        let status = self.pool.status();
        crate::PoolStats {
            max: status.max_size as u64,
            size: status.size as u64,
            available: status.available as u64,
            waiting: status.waiting as u64,
            writer_queue: None,
            wal_bytes: None,
        }
    }

    concern_accessors!();
}
