//! Test support: a throwaway PostgreSQL database per test.
//!
//! The server is found at `PARLEY_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached the caller gets
//! `None` after a loud `SKIPPED` line — except under `CI=true`, where it panics: CI must run the
//! PostgreSQL matrix, never skip it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_postgres::NoTls;

/// A database created for one test, dropped when this value is dropped.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The administrative URL of the test server.
pub fn admin_url() -> String {
    std::env::var("PARLEY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Whether the test server answers: `false` after a loud `SKIPPED` line naming `what`, and a
/// panic under `CI=true` (see the module docs).
pub async fn postgres_reachable(what: &str) -> bool {
    let admin_url = admin_url();
    match tokio_postgres::connect(&admin_url, NoTls).await {
        Ok(_) => true,
        Err(e) => {
            if ci() {
                panic!("CI=true but PostgreSQL at {admin_url} is not reachable: {e}");
            }
            eprintln!(
                "\n*** SKIPPED PostgreSQL part of {what}: no server at {admin_url} ({e}). Start PostgreSQL or set PARLEY_TEST_POSTGRES. ***\n"
            );
            false
        }
    }
}

impl TestDatabase {
    /// Creates an empty database (UTF-8, `C.UTF-8` collation so that case folding is Unicode
    /// aware); `None` when no server answers and this is not CI.
    pub async fn create() -> Option<TestDatabase> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let admin_url = admin_url();
        let client = match tokio_postgres::connect(&admin_url, NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                client
            }
            Err(e) => {
                if ci() {
                    panic!("CI=true but PostgreSQL at {admin_url} is not reachable: {e}");
                }
                eprintln!(
                    "\n*** SKIPPED PostgreSQL test: no server at {admin_url} ({e}). Start PostgreSQL or set PARLEY_TEST_POSTGRES. ***\n"
                );
                return None;
            }
        };
        let name = format!(
            "parley_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::now_v7().simple()
        );
        client
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("PARLEY_TEST_POSTGRES must end in /DATABASE"),
        };
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop needs its own runtime: it may run inside or outside an async context.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// One integer read straight from the database at `url` with the dialect's query (`sqlite`
/// on a SQLite URL, `postgres` otherwise), bypassing the store: for tests that check what a
/// table really holds (retention, erasure). Write ids into the SQL with [`id_literal`].
/// Panics on any error (test support).
pub async fn scalar(url: &str, sqlite: &str, postgres: &str) -> i64 {
    if let Some(path) = crate::sqlite_path(url) {
        let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
        return conn
            .query_row(sqlite, [], |r| r.get::<_, i64>(0))
            .unwrap_or_else(|e| panic!("{sqlite}: {e}"));
    }
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to PostgreSQL");
    let task = tokio::spawn(conn);
    let v: i64 = client
        .query_one(postgres, &[])
        .await
        .unwrap_or_else(|e| panic!("{postgres}: {e}"))
        .get(0);
    drop(client);
    let _ = task.await;
    v
}

/// An id as a literal of the database at `url`: `X'…'` (SQLite blob) or `'…'::uuid`.
pub fn id_literal(url: &str, id: uuid::Uuid) -> String {
    if crate::sqlite_path(url).is_some() {
        format!("X'{}'", id.simple())
    } else {
        format!("'{id}'::uuid")
    }
}

/// Runs one statement straight on the database at `url` (as [`scalar`]): for tests that
/// backdate a row to simulate the passage of time. Returns the rows affected. Panics on any
/// error (test support).
pub async fn execute(url: &str, sqlite: &str, postgres: &str) -> u64 {
    if let Some(path) = crate::sqlite_path(url) {
        let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .expect("busy timeout");
        return conn
            .execute(sqlite, [])
            .unwrap_or_else(|e| panic!("{sqlite}: {e}")) as u64;
    }
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to PostgreSQL");
    let task = tokio::spawn(conn);
    let n = client
        .execute(postgres, &[])
        .await
        .unwrap_or_else(|e| panic!("{postgres}: {e}"));
    drop(client);
    let _ = task.await;
    n
}
