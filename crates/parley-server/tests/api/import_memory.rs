//! Issue 10, item 7: `POST /api/v1/import` streams its body in bounded batches. The real
//! `parley serve` binary takes four concurrent imports of generated JSONL, streamed from this
//! side too (no body is ever held whole), and its peak resident memory (`VmHWM` in
//! `/proc/<pid>/status`) stays under 300 MB and grows by less than [`GROWTH_LIMIT_KIB`] over
//! what it had at the start, whatever the size of the imports. Before the fix each request held
//! its whole body and every parsed line: 4 x 100 MB took the server from 262 MB to 974 MB, and
//! 4 x 16 MB (this test's default) grew it by 185 MB.
//!
//! The size per import is `PARLEY_IMPORT_MEMORY_MB` (default 16, a few seconds); the figure
//! reported for 4 x 100 MB comes from `PARLEY_IMPORT_MEMORY_MB=100` on a release build. Memory
//! is a bound, not a timing: nothing here depends on speed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The peak resident memory the server may reach, in KiB (300 MB).
const PEAK_LIMIT_KIB: u64 = 300 * 1000;
/// How much the imports may add to the server's resident memory, in KiB (64 MB): four
/// batches in flight (4 MiB of JSON each, parsed) and SQLite's page caches; the streamed
/// input (64 MB by default, 400 MB for the full measurement) is not in it.
const GROWTH_LIMIT_KIB: u64 = 64 * 1000;

/// A `parley serve` process, killed when dropped (however the test ends).
struct ServerProcess {
    child: Child,
    base: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// `/proc/<pid>/status` field `name` (`VmRSS:`, `VmHWM:`), in KiB.
    fn status_kib(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is running");
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc status"))
    }
}

fn parley(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(args)
        .env("PARLEY_DATA_DIR", dir)
        .env_remove("PARLEY_DATABASE_URL")
        .env_remove("PARLEY_CONFIG")
        .output()
        .expect("run parley");
    assert!(out.status.success(), "parley {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn serve(dir: &std::path::Path) -> ServerProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PARLEY_DATA_DIR", dir)
        .env_remove("PARLEY_DATABASE_URL")
        .env_remove("PARLEY_CONFIG")
        .env("PARLEY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start parley serve");
    let server = ServerProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = crate::helpers::http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{}/readyz", server.base)).send().await
            && r.status().is_success()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One generated conversation line (about 3 KB): four messages of real-looking text.
fn line(import: usize, n: usize) -> String {
    let words = "the order arrived yesterday but the size is wrong could I exchange it for a medium one please";
    let text = |i: usize| format!("{} ({import}-{n}-{i})", words.repeat(7));
    serde_json::json!({
        "external_id": format!("mem-{import}-{n}"),
        "assistant": {"name": "Ava", "company": "Acme"},
        "channel": "web",
        "contact": format!("customer-{n}@example.com"),
        "messages": [
            {"external_id": "1", "role": "user", "content": text(1), "created_at": "2026-11-02T09:14:03.000Z"},
            {"external_id": "2", "role": "assistant", "content": text(2), "created_at": "2026-11-02T09:14:05.000Z",
             "model": "gpt-4o-mini", "usage": {"prompt_tokens": 412, "completion_tokens": 18}},
            {"external_id": "3", "role": "user", "content": text(3), "created_at": "2026-11-02T09:15:03.000Z"},
            {"external_id": "4", "role": "assistant", "content": text(4), "created_at": "2026-11-02T09:15:05.000Z"}
        ]
    })
    .to_string()
        + "\n"
}

/// A JSONL body of about `bytes` bytes, generated 64 KiB at a time as it is sent.
fn generated_body(import: usize, bytes: usize) -> (reqwest::Body, usize) {
    let per_line = line(import, 0).len();
    let lines = bytes / per_line;
    let chunks = futures_util::stream::unfold(0usize, move |next| async move {
        if next >= lines {
            return None;
        }
        let mut chunk = String::with_capacity(64 * 1024 + per_line);
        let mut n = next;
        while n < lines && chunk.len() < 64 * 1024 {
            chunk.push_str(&line(import, n));
            n += 1;
        }
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), n))
    });
    (reqwest::Body::wrap_stream(chunks), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_imports_stream_in_bounded_memory() {
    let mb: usize = std::env::var("PARLEY_IMPORT_MEMORY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let dir = tempfile::tempdir().unwrap();
    let key = parley(dir.path(), &["keys", "create", "--name", "memory"])
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let server = serve(dir.path()).await;
    let client = crate::helpers::http_client();
    let started_kib = server.status_kib("VmRSS:");

    let imports = (0..4).map(|i| {
        let (body, lines) = generated_body(i, mb * 1_000_000);
        let req = client
            .post(format!("{}/api/v1/import", server.base))
            .bearer_auth(&key)
            .header("content-type", "application/jsonl")
            .body(body)
            .send();
        async move {
            let res = req.await.expect("the import request");
            let status = res.status();
            let summary: serde_json::Value = res.json().await.unwrap();
            assert_eq!(status, 200, "{summary}");
            assert_eq!(summary["conversations_created"], lines, "{summary}");
            assert_eq!(summary["messages_stored"], 4 * lines, "{summary}");
            lines
        }
    });
    let lines: usize = futures_util::future::join_all(imports)
        .await
        .into_iter()
        .sum();

    let peak_kib = server.status_kib("VmHWM:");
    eprintln!(
        "4 concurrent imports of {mb} MB ({lines} conversations): RSS {} MB at start, peak {} MB",
        started_kib / 1000,
        peak_kib / 1000
    );
    assert!(
        peak_kib.saturating_sub(started_kib) < GROWTH_LIMIT_KIB,
        "resident memory grew by {} MB (from {} MB) while 4 x {mb} MB streamed in",
        peak_kib.saturating_sub(started_kib) / 1000,
        started_kib / 1000
    );
    assert!(
        peak_kib < PEAK_LIMIT_KIB,
        "peak resident memory {} MB (started at {} MB) while 4 x {mb} MB streamed in",
        peak_kib / 1000,
        started_kib / 1000
    );
    // Everything arrived.
    let count: serde_json::Value = client
        .get(format!("{}/api/v1/conversations/count", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["count"], lines);
}
