//! The SQLite backend: one database file, WAL mode, `synchronous=FULL` (an acknowledged write
//! survives power loss, not just a crash), a busy timeout for other processes (such as
//! `parley import` beside a running server).
//!
//! Concurrency: all writes go through one writer thread that owns the only write connection
//! and commits in groups: it takes every job waiting in its queue (up to
//! [`SqliteOptions::max_group`]), runs each inside its own savepoint so one failing job rolls
//! back alone, then commits once and answers every job. Under concurrent load one fsync covers
//! many requests (group commit); a lone request is committed at once. Reads run on a small pool
//! of read-only connections on the blocking thread pool, concurrently with the writer (WAL).

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

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use parley_core::search::contains_folded;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Result, Store, StoreError};

/// Tuning of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Read connections (default 4).
    pub readers: usize,
    /// Most write jobs committed together (default 512).
    pub max_group: usize,
    /// `PRAGMA synchronous`: `FULL` (default) fsyncs the WAL on every commit; `NORMAL`
    /// survives a process crash but may lose the last commits on power loss.
    pub synchronous: &'static str,
    /// Page cache per connection, in KiB (default 16 MiB).
    pub cache_kib: i64,
    /// How many matching conversations a search probes the trigram index for before it walks
    /// the list instead (default [`crate::SEARCH_PROBE_LIMIT`]).
    pub search_probe_limit: usize,
    /// How many conversations a search first walks in sort order before asking the index
    /// (0 goes to the index at once).
    pub search_bounded_walk: i64,
    /// The write-ahead log's cap, in bytes (default [`DEFAULT_WAL_MAX_BYTES`]): past a quarter
    /// of it the writer truncates the log between two group commits, and a log SQLite restarts is
    /// cut back to it (`journal_size_limit`). See `WalWatch`.
    pub wal_max_bytes: u64,
}

/// The default cap of the write-ahead log: 64 MiB.
pub const DEFAULT_WAL_MAX_BYTES: u64 = 64 * 1024 * 1024;

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            max_group: 512,
            synchronous: "FULL",
            cache_kib: 16 * 1024,
            search_probe_limit: crate::SEARCH_PROBE_LIMIT,
            search_bounded_walk: crate::sql::BOUNDED_WALK_SQLITE,
            wal_max_bytes: DEFAULT_WAL_MAX_BYTES,
        }
    }
}

/// Called after the group's commit with its result.
type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// A write job: runs on the writer connection inside a savepoint; says whether it succeeded
/// (else its savepoint is rolled back) and how to answer once the group is committed.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    /// Calls on the checkpoint thread; dropping it stops the thread (see `checkpoint_loop`).
    checkpointer: std::sync::mpsc::Sender<CloseCall>,
    /// Bumped after every commit that appended events ([`crate::EventStore::subscribe`]).
    events: crate::events::EventSignal,
}

struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    /// Reads waiting for a permit (for [`Store::pool_stats`]).
    waiting: std::sync::atomic::AtomicU64,
    path: PathBuf,
    options: SqliteOptions,
}

fn backend_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(e)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from_source(e)
    }
}

/// Opens a connection and applies the per-connection settings every Parley connection has.
fn connect(path: &Path, options: &SqliteOptions, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {};
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -{};
         PRAGMA temp_store = MEMORY;",
        options.synchronous, options.cache_kib
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    rusqlite::vtab::array::load_module(&conn)?;
    // parley_contains(text, folded_term): Unicode case-insensitive substring test, the same
    // rule as parley_core::search (SQLite's LIKE folds ASCII only).
    conn.create_scalar_function(
        "parley_contains",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let haystack = ctx.get_raw(0);
            let needle: String = ctx.get(1)?;
            Ok(match haystack {
                rusqlite::types::ValueRef::Text(t) => {
                    std::str::from_utf8(t).is_ok_and(|h| contains_folded(h, &needle))
                }
                _ => false,
            })
        },
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, i64::MAX)
}

/// Applies pending migrations up to and including `target`, all in one transaction, through
/// the shared runner ([`crate::migrate`]).
fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    // A transaction by hand: rusqlite's `Transaction` borrows the connection shared, which is
    // not `Send`, and the runner's target must be.
    conn.execute_batch("BEGIN")?;
    let mut db = SqliteMigrations { conn: &mut *conn };
    match crate::migrate::run_sync(crate::migrate::run(&mut db, target)) {
        Ok(_) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The migration runner's view of a SQLite connection inside an open transaction; every step
/// is synchronous.
struct SqliteMigrations<'a> {
    conn: &'a mut Connection,
}

#[async_trait]
impl crate::migrate::MigrationTarget for SqliteMigrations<'_> {
    fn dialect(&self) -> crate::sql::Dialect {
        crate::sql::Dialect::Sqlite
    }
    async fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }
    async fn integer(&mut self, sql: &str) -> Result<i64> {
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }
    async fn record(&mut self, version: i64, name: &str, applied_at: i64) -> Result<()> {
        self.conn.execute(
            crate::migrate::record_sql(crate::sql::Dialect::Sqlite),
            rusqlite::params![version, name, applied_at],
        )?;
        Ok(())
    }
}

/// A call on the checkpoint thread from [`Store::close`]: truncate the log now, waiting up to
/// 10 s for readers, and answer.
type CloseCall = std::sync::mpsc::Sender<Result<()>>;

/// How the writer keeps the write-ahead log under its cap: after each commit it looks at the
/// log's size (a `stat`, no SQL), and past a quarter of the cap it truncates the log itself,
/// between two groups. The writer is the only other user of the write lock a truncating
/// checkpoint needs, so there it never waits for (or starves behind) a commit. It waits at most
/// [`TRUNCATE_WAIT`] for readers of an older snapshot, else tries after the next commit; past
/// half the cap it waits up to [`TRUNCATE_WAIT_URGENT`], so long reads cannot push the log over
/// the cap. Jobs arriving meanwhile queue and go into the next group commit. One transaction
/// larger than the rest of the cap (a large import batch) still grows the log past it.
struct WalWatch {
    path: PathBuf,
    /// A quarter of the cap.
    trigger: u64,
    /// Half the cap.
    urgent: u64,
}

impl WalWatch {
    fn new(path: PathBuf, cap: u64) -> WalWatch {
        WalWatch {
            path,
            trigger: (cap / 4).max(1),
            urgent: (cap / 2).max(1),
        }
    }

    fn after_commit(&self, conn: &Connection) {
        let size = wal_bytes(&self.path);
        if size <= self.trigger {
            return;
        }
        let wait = if size > self.urgent {
            TRUNCATE_WAIT_URGENT
        } else {
            TRUNCATE_WAIT
        };
        match truncate_wal(conn, wait) {
            Ok(true) => tracing::debug!("sqlite: write-ahead log truncated"),
            Ok(false) => tracing::debug!("sqlite: WAL truncation deferred: a reader holds it"),
            Err(e) => tracing::warn!(error = %e, "sqlite: WAL truncation failed"),
        }
    }
}

fn writer_loop(conn: Connection, mut jobs: mpsc::Receiver<Job>, max_group: usize, wal: WalWatch) {
    let mut group: Vec<Job> = Vec::with_capacity(max_group);
    while let Some(first) = jobs.blocking_recv() {
        group.push(first);
        while group.len() < max_group {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(group.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "could not start a write transaction");
            // Dropping the jobs drops their reply channels: each caller gets an error and nothing
            // was written.
            group.clear();
            continue;
        }
        // A lone job needs no savepoint (a failure rolls the whole transaction back); several
        // jobs each get one, so one failing job does not undo the others. Savepoints are not
        // free: inside one, SQLite journals every statement and FTS5 flushes its pending terms.
        let isolate = group.len() > 1;
        let mut failed_alone = false;
        for job in group.drain(..) {
            let savepoint = if isolate {
                conn.execute_batch("SAVEPOINT job")
            } else {
                Ok(())
            };
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(&conn)));
            let (ok, done) = match outcome {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!("a write job panicked; its changes are rolled back");
                    (false, Box::new(|_| {}) as Completion)
                }
            };
            if isolate && savepoint.is_ok() {
                let end = if ok {
                    "RELEASE job"
                } else {
                    "ROLLBACK TO job; RELEASE job"
                };
                if let Err(e) = conn.execute_batch(end) {
                    tracing::error!(error = %e, "savepoint cleanup failed");
                }
            }
            failed_alone = !isolate && !ok;
            completions.push(done);
        }
        if failed_alone {
            // The lone job failed: undo it; it reports its own error.
            let _ = conn.execute_batch("ROLLBACK");
            for done in completions.drain(..) {
                done(Ok(()));
            }
            continue;
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| {
            tracing::error!(error = %e, "commit failed; the group is rolled back");
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        for done in completions {
            done(committed.clone().map_err(StoreError::backend));
        }
        wal.after_commit(&conn);
    }
}

/// The `-wal` file beside the database `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The size of the write-ahead log file, in bytes (0 when there is none).
fn wal_bytes(path: &Path) -> u64 {
    std::fs::metadata(wal_path(path)).map_or(0, |m| m.len())
}

/// How long a truncating checkpoint may wait for readers of an older snapshot (and, while it
/// waits, hold back the writer) before it gives up until the next tick.
const TRUNCATE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// [`TRUNCATE_WAIT`] once the log is near its cap.
const TRUNCATE_WAIT_URGENT: std::time::Duration = std::time::Duration::from_secs(2);

/// `PRAGMA wal_checkpoint(TRUNCATE)` waiting at most `wait` for readers: `Ok(true)` when the
/// log was copied and cut to zero bytes, `Ok(false)` when a reader held it (SQLITE_BUSY).
fn truncate_wal(conn: &Connection, wait: std::time::Duration) -> rusqlite::Result<bool> {
    conn.busy_timeout(wait)?;
    let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(busy? == 0)
}

/// Copies committed frames of the write-ahead log into the database file, on its own
/// connection, so a commit never waits for a checkpoint (the writer has automatic checkpoints
/// turned off): every 200 ms a `PASSIVE` checkpoint, which neither blocks nor waits. It keeps
/// the work of the writer's truncating checkpoint (see [`WalWatch`]) small. A [`CloseCall`]
/// truncates the log at once. Durability is unchanged: a commit is durable once in the log.
/// Ends when the store is dropped.
fn checkpoint_loop(conn: Connection, calls: std::sync::mpsc::Receiver<CloseCall>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        match calls.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(reply) => {
                let result = match truncate_wal(&conn, std::time::Duration::from_secs(10)) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(StoreError::backend(
                        "the write-ahead log is still in use by a reader",
                    )),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "sqlite: checkpoint failed");
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies pending migrations, and
    /// starts the writer thread. Errors: the file cannot be opened or is not a Parley database.
    pub async fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(backend_err)?;
        }
        let opts = options.clone();
        let open_path = path.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let mut conn = connect(&open_path, &opts, false)?;
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::backend(format!(
                    "could not enable WAL (got {mode})"
                )));
            }
            migrate(&mut conn)?;
            // The checkpoint thread copies the WAL into the database instead, so commits do
            // not wait for it (see `checkpoint_loop`). A log SQLite restarts from its
            // beginning is cut back to the cap rather than kept at its largest size.
            conn.execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {};",
                opts.wal_max_bytes.min(i64::MAX as u64)
            ))?;
            // A log left by an earlier process (a crash, or a version before the cap) is
            // copied in and cut now, before anything else uses it.
            if !truncate_wal(&conn, TRUNCATE_WAIT)? {
                tracing::info!("sqlite: the write-ahead log is in use by another process");
            }
            Ok(conn)
        })
        .await
        .map_err(backend_err)??;

        let (tx, rx) = mpsc::channel::<Job>(4096);
        let max_group = options.max_group.max(1);
        let watch = WalWatch::new(path.clone(), options.wal_max_bytes);
        // The thread ends once every sender is gone (the store is dropped), after committing
        // what is queued; acknowledged writes are committed before they are acknowledged.
        std::thread::Builder::new()
            .name("parley-sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx, max_group, watch))
            .map_err(backend_err)?;

        let checkpoint_conn = {
            let (path, opts) = (path.clone(), options.clone());
            tokio::task::spawn_blocking(move || connect(&path, &opts, false))
                .await
                .map_err(backend_err)??
        };
        let (checkpointer, calls) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("parley-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, calls))
            .map_err(backend_err)?;

        let readers = Arc::new(ReaderPool {
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.readers.max(1)),
            waiting: Default::default(),
            path: path.clone(),
            options,
        });
        Ok(SqliteStore {
            path,
            jobs: tx,
            readers,
            checkpointer,
            events: Default::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer connection inside its own savepoint of the next group commit, and
    /// returns its result once the group is durably committed.
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<R>>();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let done: Completion = Box::new(move |committed| {
                let _ = reply.send(committed.and(result));
            });
            (ok, done)
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::backend("the SQLite writer has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::backend("the SQLite writer dropped a job"))?
    }

    /// Runs `f` on a read connection from the pool, on the blocking thread pool.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let pool = self.readers.clone();
        use std::sync::atomic::Ordering::Relaxed;
        pool.waiting.fetch_add(1, Relaxed);
        let permit = pool.permits.acquire().await;
        pool.waiting.fetch_sub(1, Relaxed);
        let _permit = permit.map_err(backend_err)?;
        let conn = pool.idle.lock().expect("reader pool lock").pop();
        let pool2 = pool.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(c) => c,
                None => connect(&pool2.path, &pool2.options, true)?,
            };
            let result = f(&conn);
            Ok::<_, StoreError>((conn, result))
        })
        .await
        .map_err(backend_err)??;
        pool.idle.lock().expect("reader pool lock").push(conn);
        result
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    concern_accessors!();

    fn pool_stats(&self) -> crate::PoolStats {
        let max = self.readers.options.readers.max(1) as u64;
        let in_use = max.saturating_sub(self.readers.permits.available_permits() as u64);
        let idle = self.readers.idle.lock().map_or(0, |v| v.len() as u64);
        crate::PoolStats {
            max,
            size: idle + in_use,
            available: idle,
            waiting: self
                .readers
                .waiting
                .load(std::sync::atomic::Ordering::Relaxed),
            writer_queue: Some((self.jobs.max_capacity() - self.jobs.capacity()) as u64),
            wal_bytes: Some(wal_bytes(&self.path)),
        }
    }

    async fn close(&self) -> Result<()> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.checkpointer
            .send(reply)
            .map_err(|_| StoreError::backend("the SQLite checkpoint thread has stopped"))?;
        tokio::task::spawn_blocking(move || answer.recv())
            .await
            .map_err(backend_err)?
            .map_err(|_| StoreError::backend("the SQLite checkpoint thread has stopped"))?
    }
}

#[cfg(test)]
mod tests {
    use parley_core::WorkspaceId;

    use super::*;

    /// The writer keeps the log under its cap while commits arrive faster than the checkpoint
    /// thread's ticks, and `close` leaves it empty with the store still open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_under_its_cap_and_close_empties_it() {
        const CAP: u64 = 4 * 1024 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let store = SqliteStore::open(
            &path,
            SqliteOptions {
                wal_max_bytes: CAP,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        store
            .write(|c| Ok(c.execute_batch("CREATE TABLE filler (b BLOB)")?))
            .await
            .unwrap();
        let mut largest = 0;
        // 16 MiB in 64 KiB commits: four times the cap.
        for _ in 0..256 {
            store
                .write(|c| Ok(c.execute_batch("INSERT INTO filler VALUES (randomblob(65536))")?))
                .await
                .unwrap();
            largest = largest.max(wal_bytes(&path));
        }
        assert!(largest <= CAP, "the WAL reached {largest} bytes");
        assert!(largest > 0);
        store.close().await.unwrap();
        assert_eq!(wal_bytes(&path), 0, "close truncates the log");
        assert_eq!(store.pool_stats().wal_bytes, Some(0));
        // Still usable afterwards.
        store
            .write(|c| Ok(c.execute_batch("DELETE FROM filler")?))
            .await
            .unwrap();
    }

    /// Migration 10 counts the attachment files stored before it: those in the message's own
    /// workspace folder, not keys pointing elsewhere.
    #[test]
    fn migration_10_counts_existing_attachments() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn =
            connect(&dir.path().join("old.db"), &SqliteOptions::default(), false).unwrap();
        migrate_to(&mut conn, 7).unwrap();
        let ws = WorkspaceId::new();
        let own = format!("{ws}/{}", uuid::Uuid::now_v7());
        let meta = serde_json::json!({"channel": {"type": "voice", "attachments": [
            {"kind": "voice", "media_id": "a", "size_bytes": 1234, "storage_key": own},
            {"kind": "image", "media_id": "b", "size_bytes": 99, "storage_key": "../secret.key"},
            {"kind": "image", "media_id": "c", "size_bytes": 5,
             "storage_key": format!("{}/{}", WorkspaceId::new(), uuid::Uuid::now_v7())},
            {"kind": "image", "media_id": "d"}
        ]}})
        .to_string();
        conn.execute(
            "INSERT INTO workspaces (id, slug, name, created_at) VALUES (?1, 'w', 'W', 0)",
            [ws.as_bytes()],
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO assistants (id, workspace_id, name, mode, created_at, updated_at)
                 SELECT x'02', id, 'Ava', 'active', 0, 0 FROM workspaces;
             INSERT INTO conversations (id, workspace_id, assistant_id, assistant_name, channel, status, started_at, last_message_at, created_at, updated_at)
                 SELECT x'03', id, x'02', 'Ava', 'whatsapp', 'active', 0, 0, 0, 0 FROM workspaces;",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO messages (id, conversation, seq, visible_seq, role, content, created_at, meta)
             VALUES (x'04', 1, 1, 1, 'user', 'a voice note', 0, ?1)",
            [meta],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (bytes, files, key): (i64, i64, String) = conn
            .query_row(
                "SELECT u.bytes, u.files, f.storage_key FROM attachment_usage u
                 JOIN attachment_files f ON f.workspace_id = u.workspace_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((bytes, files, key), (1234, 1, own));
    }

    /// A database written before migration 3 keeps every search hit after it.
    #[test]
    fn migration_3_reindexes_existing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let opts = SqliteOptions::default();
        let mut conn = connect(&path, &opts, false).unwrap();
        migrate_to(&mut conn, 2).unwrap();
        conn.execute_batch(
            "INSERT INTO workspaces (id, slug, name, created_at) VALUES (x'01', 'w', 'W', 0);
             INSERT INTO assistants (id, workspace_id, name, mode, created_at, updated_at) VALUES (x'02', x'01', 'Ava', 'active', 0, 0);
             INSERT INTO conversations (id, workspace_id, assistant_id, assistant_name, channel, status, session_id, started_at, last_message_at, created_at, updated_at)
                 VALUES (x'03', x'01', x'02', 'Ava', 'web', 'active', 'sess-OLD', 0, 0, 0, 0);
             INSERT INTO messages (id, conversation, seq, visible_seq, role, content, created_at) VALUES (x'04', 1, 1, 1, 'user', 'Das war schön', 0);
             INSERT INTO messages (id, conversation, seq, visible_seq, role, content, created_at) VALUES (x'05', 1, 2, NULL, 'system', 'hidden prompt', 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let hits = |table: &str, q: &str| -> i64 {
            conn.query_row(
                &format!("SELECT count(*) FROM {table} WHERE {table} MATCH ?1"),
                [q],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(hits("messages_fts", "\"SCH\" AND \"CHÖ\" AND \"HÖN\""), 1);
        assert_eq!(
            hits("messages_fts", "\"hid\""),
            0,
            "hidden messages stay out of the index"
        );
        assert_eq!(hits("conversations_fts", "\"OLD\""), 1);
        let version: i64 = conn
            .query_row("SELECT max(version) FROM parley_migrations", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            version,
            crate::migrate::SQLITE.last().expect("migrations").version
        );
    }
}
