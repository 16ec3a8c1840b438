//! Per-backend plumbing for the harness: creating a fresh database, the raw baselines that
//! measure the database without Parley, and the database size.

use std::time::{Duration, Instant};

use parley_core::Timestamp;
use tokio_postgres::NoTls;

use crate::workload::{self, Corpus};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default.
    Sqlite,
    /// PostgreSQL at the given admin URL.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A fresh, empty database for one benchmark run.
pub struct Database {
    /// Which backend.
    pub backend: Backend,
    /// Its URL for `parley`.
    pub url: String,
    sqlite_path: Option<std::path::PathBuf>,
    pg_admin: Option<(String, String)>,
}

impl Database {
    /// SQLite: a new file `bench.db` in `dir`. PostgreSQL: a new database `parley_bench_{pid}`
    /// on the server at `pg_admin_url` (dropped first if it exists), so two runs on one server
    /// (a bench beside the CI smoke test) do not drop each other's database.
    ///
    /// `pg_name` overrides the PostgreSQL database's name (`--keep` uses a fixed one so a later
    /// `--reuse` run finds it).
    pub async fn create(
        backend: Backend,
        dir: &std::path::Path,
        pg_admin_url: &str,
        pg_name: Option<&str>,
    ) -> Result<Database, BoxError> {
        match backend {
            Backend::Sqlite => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join("bench.db");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Ok(Database {
                    backend,
                    url: format!("sqlite://{}", path.display()),
                    sqlite_path: Some(path),
                    pg_admin: None,
                })
            }
            Backend::Postgres => {
                let (client, conn) = tokio_postgres::connect(pg_admin_url, NoTls).await?;
                tokio::spawn(conn);
                let name = pg_name
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("parley_bench_{}", std::process::id()));
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                client
                    .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"))
                    .await?;
                let server = pg_admin_url
                    .rsplit_once('/')
                    .map(|(s, _)| s)
                    .ok_or("the PostgreSQL URL must end in /DATABASE")?;
                let url = format!("{server}/{name}");
                Ok(Database {
                    backend,
                    url,
                    sqlite_path: None,
                    pg_admin: Some((pg_admin_url.to_owned(), name)),
                })
            }
        }
    }

    /// A database filled by an earlier run with `--keep`: SQLite `bench.db` in `dir`, or the
    /// PostgreSQL database `name` on the server at `pg_admin_url`. Nothing is created or
    /// dropped; errors if it does not exist.
    pub async fn existing(
        backend: Backend,
        dir: &std::path::Path,
        pg_admin_url: &str,
        name: &str,
    ) -> Result<Database, BoxError> {
        match backend {
            Backend::Sqlite => {
                let path = dir.join("bench.db");
                if !path.exists() {
                    return Err(
                        format!("{} does not exist (fill it with --keep)", path.display()).into(),
                    );
                }
                Ok(Database {
                    backend,
                    url: format!("sqlite://{}", path.display()),
                    sqlite_path: Some(path),
                    pg_admin: None,
                })
            }
            Backend::Postgres => {
                let server = pg_admin_url
                    .rsplit_once('/')
                    .map(|(s, _)| s)
                    .ok_or("the PostgreSQL URL must end in /DATABASE")?;
                Ok(Database {
                    backend,
                    url: format!("{server}/{name}"),
                    sqlite_path: None,
                    pg_admin: Some((pg_admin_url.to_owned(), name.to_owned())),
                })
            }
        }
    }

    /// The SQLite database file (`None` for PostgreSQL).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// The PostgreSQL database's name (`None` for SQLite).
    pub fn pg_name(&self) -> Option<&str> {
        self.pg_admin.as_ref().map(|(_, n)| n.as_str())
    }

    /// Size on disk in bytes (SQLite: the file after a WAL checkpoint; PostgreSQL:
    /// `pg_database_size`).
    pub async fn size_bytes(&self) -> Result<u64, BoxError> {
        match (&self.sqlite_path, &self.pg_admin) {
            (Some(path), _) => {
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(Duration::from_secs(30))?;
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                let mut total = 0;
                for suffix in ["", "-wal"] {
                    total += std::fs::metadata(format!("{}{suffix}", path.display()))
                        .map(|m| m.len())
                        .unwrap_or(0);
                }
                Ok(total)
            }
            (_, Some(_)) => {
                let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
                tokio::spawn(conn);
                let n: i64 = client
                    .query_one("SELECT pg_database_size(current_database())", &[])
                    .await?
                    .get(0);
                Ok(n as u64)
            }
            _ => Ok(0),
        }
    }

    /// Brings planner statistics up to date after the bulk load (what autovacuum or
    /// `PRAGMA optimize` do in production over time).
    pub async fn analyze(&self) -> Result<(), BoxError> {
        match &self.sqlite_path {
            Some(path) => {
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(Duration::from_secs(30))?;
                conn.execute_batch("ANALYZE")?;
            }
            None => {
                let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
                tokio::spawn(conn);
                client.batch_execute("VACUUM ANALYZE").await?;
            }
        }
        Ok(())
    }

    /// Drops the PostgreSQL database (SQLite files stay for inspection unless removed).
    pub async fn drop_database(&self) -> Result<(), BoxError> {
        if let Some((admin, name)) = &self.pg_admin {
            let (client, conn) = tokio_postgres::connect(admin, NoTls).await?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
        }
        Ok(())
    }

    /// Creates `raw_messages`, a copy of the `messages` table with the same columns, indexes
    /// and foreign key (SQLite also gets the same trigram search table), so the raw baselines
    /// measure the database doing the same storage work as Parley without touching Parley's
    /// own tables.
    pub async fn create_raw_tables(&self) -> Result<(), BoxError> {
        match &self.sqlite_path {
            Some(path) => {
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(Duration::from_secs(30))?;
                let ddl: Vec<String> = conn
                    .prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'messages' AND sql IS NOT NULL AND type IN ('table', 'index')")?
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for sql in ddl {
                    let sql = sql
                        .replace("CREATE TABLE messages", "CREATE TABLE raw_messages")
                        .replace(" ON messages ", " ON raw_messages ")
                        .replace("INDEX messages_", "INDEX raw_messages_");
                    conn.execute_batch(&sql)?;
                }
                conn.execute_batch(
                    "CREATE VIRTUAL TABLE raw_messages_fts USING fts5 (content, content = 'raw_messages', content_rowid = 'pk',
                         tokenize = 'trigram case_sensitive 0', detail = none);
                     INSERT INTO raw_messages_fts (raw_messages_fts, rank) VALUES ('hashsize', 16777216);",
                )?;
            }
            None => {
                let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute("CREATE TABLE raw_messages (LIKE messages INCLUDING ALL)")
                    .await?;
            }
        }
        Ok(())
    }

    /// Drops the baseline tables.
    pub async fn drop_raw_tables(&self) -> Result<(), BoxError> {
        match &self.sqlite_path {
            Some(path) => {
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(Duration::from_secs(30))?;
                conn.execute_batch("DROP TABLE raw_messages_fts; DROP TABLE raw_messages;")?;
            }
            None => {
                let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
                tokio::spawn(conn);
                client.batch_execute("DROP TABLE raw_messages").await?;
            }
        }
        Ok(())
    }

    /// The internal key of conversation `external_id` (for raw inserts).
    async fn conversation_pk(&self, external_id: &str) -> Result<i64, BoxError> {
        match &self.sqlite_path {
            Some(path) => {
                let conn = rusqlite::Connection::open(path)?;
                Ok(conn.query_row(
                    "SELECT pk FROM conversations WHERE external_id = ?1",
                    [external_id],
                    |r| r.get(0),
                )?)
            }
            None => {
                let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
                tokio::spawn(conn);
                Ok(client
                    .query_one(
                        "SELECT pk FROM conversations WHERE external_id = $1",
                        &[&external_id],
                    )
                    .await?
                    .get(0))
            }
        }
    }

    /// Raw insert rate of workload message rows straight into `raw_messages` (the same schema,
    /// indexes, search index and durability as `messages`; no HTTP, no validation, no counters):
    /// `rows` rows in transactions of `batch`. SQLite: one connection (SQLite has one writer).
    /// PostgreSQL: `clients` connections, each inserting multi-row `INSERT`s.
    /// Returns rows per second.
    pub async fn raw_insert_rate(
        &self,
        corpus: &Corpus,
        scratch_external_id: &str,
        rows: usize,
        batch: usize,
        clients: usize,
    ) -> Result<f64, BoxError> {
        let pk = self.conversation_pk(scratch_external_id).await?;
        let texts: Vec<String> = (0..rows as u64)
            .flat_map(|i| {
                workload::conversation(corpus, i, 1_000_000)
                    .messages
                    .into_iter()
                    .map(|m| m.content)
            })
            .take(rows)
            .collect();
        match &self.sqlite_path {
            Some(path) => {
                let path = path.clone();
                let started = Instant::now();
                tokio::task::spawn_blocking(move || -> Result<(), BoxError> {
                    let conn = rusqlite::Connection::open(&path)?;
                    conn.busy_timeout(Duration::from_secs(30))?;
                    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
                    let mut seq = 1_000_000_000i64;
                    for chunk in texts.chunks(batch) {
                        let tx = conn.unchecked_transaction()?;
                        {
                            let mut stmt = tx.prepare_cached(
                                "INSERT INTO raw_messages (id, conversation, seq, visible_seq, role, content, created_at)
                                 VALUES (?1, ?2, ?3, ?3, 'user', ?4, ?5)",
                            )?;
                            let first = seq + 1;
                            for text in chunk {
                                seq += 1;
                                stmt.execute(rusqlite::params![uuid::Uuid::now_v7().as_bytes(), pk, seq, text, Timestamp::now().0])?;
                            }
                            tx.prepare_cached(
                                "INSERT INTO raw_messages_fts (rowid, content)
                                 SELECT pk, content FROM raw_messages WHERE conversation = ?1 AND seq BETWEEN ?2 AND ?3",
                            )?
                            .execute(rusqlite::params![pk, first, seq])?;
                        }
                        tx.commit()?;
                    }
                    Ok(())
                })
                .await??;
                Ok(rows as f64 / started.elapsed().as_secs_f64())
            }
            None => {
                let per_client = texts.len().div_ceil(clients.max(1));
                let started = Instant::now();
                let mut tasks = Vec::new();
                for (c, part) in texts.chunks(per_client).enumerate() {
                    let (url, part) = (self.url.clone(), part.to_vec());
                    tasks.push(tokio::spawn(async move {
                        let (mut client, conn) = tokio_postgres::connect(&url, NoTls).await?;
                        tokio::spawn(conn);
                        let mut seq = 1_000_000_000i64 + c as i64 * 100_000_000;
                        for chunk in part.chunks(batch) {
                            let tx = client.transaction().await?;
                            let mut sql = String::from(
                                "INSERT INTO raw_messages (id, conversation, seq, visible_seq, role, content, created_at) VALUES ",
                            );
                            let now = Timestamp::now().0;
                            let mut ids = Vec::with_capacity(chunk.len());
                            let mut seqs = Vec::with_capacity(chunk.len());
                            for (i, _) in chunk.iter().enumerate() {
                                seq += 1;
                                ids.push(uuid::Uuid::now_v7());
                                seqs.push(seq);
                                let b = i * 3;
                                if i > 0 {
                                    sql.push(',');
                                }
                                sql.push_str(&format!("(${}, {pk}, ${}, ${}, 'user', ${}, {now})", b + 1, b + 2, b + 2, b + 3));
                            }
                            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::with_capacity(chunk.len() * 3);
                            for i in 0..chunk.len() {
                                params.push(&ids[i]);
                                params.push(&seqs[i]);
                                params.push(&chunk[i]);
                            }
                            tx.execute(&sql, &params).await?;
                            tx.commit().await?;
                        }
                        Ok::<_, BoxError>(())
                    }));
                }
                for t in tasks {
                    t.await??;
                }
                Ok(rows as f64 / started.elapsed().as_secs_f64())
            }
        }
    }

    /// Raw rate of single-row committed inserts from `clients` concurrent connections, each row
    /// its own durable transaction (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit`
    /// on). Returns rows per second.
    pub async fn raw_single_commit_rate(
        &self,
        scratch_external_id: &str,
        clients: usize,
        per_client: usize,
    ) -> Result<f64, BoxError> {
        let pk = self.conversation_pk(scratch_external_id).await?;
        let started = Instant::now();
        match &self.sqlite_path {
            Some(path) => {
                let mut threads = Vec::new();
                for c in 0..clients {
                    let path = path.clone();
                    threads.push(std::thread::spawn(move || -> Result<(), String> {
                        let conn = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
                        conn.busy_timeout(Duration::from_secs(60)).map_err(|e| e.to_string())?;
                        conn.execute_batch("PRAGMA synchronous = FULL;").map_err(|e| e.to_string())?;
                        for i in 0..per_client {
                            let seq = 2_000_000_000i64 + (c * per_client + i) as i64;
                            let tx = conn.unchecked_transaction().map_err(|e| e.to_string())?;
                            tx.execute(
                                "INSERT INTO raw_messages (id, conversation, seq, visible_seq, role, content, created_at)
                                 VALUES (?1, ?2, ?3, ?3, 'user', 'hello there', ?4)",
                                rusqlite::params![uuid::Uuid::now_v7().as_bytes(), pk, seq, Timestamp::now().0],
                            )
                            .map_err(|e| e.to_string())?;
                            tx.execute(
                                "INSERT INTO raw_messages_fts (rowid, content) VALUES (last_insert_rowid(), 'hello there')",
                                [],
                            )
                            .map_err(|e| e.to_string())?;
                            tx.commit().map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    }));
                }
                for t in threads {
                    t.join().map_err(|_| "a writer thread panicked")??;
                }
            }
            None => {
                let mut tasks = Vec::new();
                for c in 0..clients {
                    let url = self.url.clone();
                    tasks.push(tokio::spawn(async move {
                        let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
                        tokio::spawn(conn);
                        let stmt = client
                            .prepare(
                                "INSERT INTO raw_messages (id, conversation, seq, visible_seq, role, content, created_at)
                                 VALUES ($1, $2, $3, $3, 'user', 'hello there', $4)",
                            )
                            .await?;
                        for i in 0..per_client {
                            let seq = 2_000_000_000i64 + (c * per_client + i) as i64;
                            client.execute(&stmt, &[&uuid::Uuid::now_v7(), &pk, &seq, &Timestamp::now().0]).await?;
                        }
                        Ok::<_, BoxError>(())
                    }));
                }
                for t in tasks {
                    t.await??;
                }
            }
        }
        Ok((clients * per_client) as f64 / started.elapsed().as_secs_f64())
    }

    /// The search baseline: the first page of conversations containing `term` in a visible
    /// message, the session id, the contact or the assistant's name (what Parley's search
    /// matches), newest first, as a plain scan — `LIKE '%term%'` (SQLite) / `ILIKE` with the
    /// trigram index disabled (PostgreSQL) — without Parley's indexes. Returns the query's
    /// duration.
    pub async fn like_scan(&self, workspace: uuid::Uuid, term: &str) -> Result<Duration, BoxError> {
        let pattern = format!("%{term}%");
        match &self.sqlite_path {
            Some(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || -> Result<Duration, BoxError> {
                    let conn = rusqlite::Connection::open(&path)?;
                    let started = Instant::now();
                    let mut stmt = conn.prepare(
                        "SELECT c.id FROM conversations c WHERE c.workspace_id = ?1
                           AND (c.session_id LIKE ?2 OR c.contact LIKE ?2 OR c.assistant_name LIKE ?2
                                OR c.pk IN (SELECT conversation FROM messages WHERE visible_seq IS NOT NULL AND content LIKE ?2))
                         ORDER BY c.last_message_at DESC, c.id DESC LIMIT 50",
                    )?;
                    let rows = stmt.query_map(rusqlite::params![workspace.as_bytes(), pattern], |_| Ok(()))?;
                    rows.for_each(drop);
                    Ok(started.elapsed())
                })
                .await?
            }
            None => {
                let (mut client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
                tokio::spawn(conn);
                let started = Instant::now();
                let tx = client.transaction().await?;
                tx.batch_execute("SET LOCAL enable_bitmapscan = off")
                    .await?;
                tx.query(
                    "SELECT c.id FROM conversations c WHERE c.workspace_id = $1
                       AND (c.session_id ILIKE $2 OR c.contact ILIKE $2 OR c.assistant_name ILIKE $2
                            OR c.pk IN (SELECT conversation FROM messages WHERE visible_seq IS NOT NULL AND content ILIKE $2))
                     ORDER BY c.last_message_at DESC, c.id DESC LIMIT 50",
                    &[&workspace, &pattern],
                )
                .await?;
                tx.commit().await?;
                Ok(started.elapsed())
            }
        }
    }
}
