//! The server under test: a separate `parley serve` process (so its memory is measured alone),
//! on a free loopback port, stopped with SIGTERM-equivalent kill at the end of a phase.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running `parley serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Highest resident memory seen by [`Server::sample_rss`], in KiB.
    pub peak_rss_kib: u64,
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

impl Server {
    /// Starts `parley serve` on `database_url` and waits until `/readyz` answers.
    pub async fn start(database_url: &str, data_dir: &std::path::Path) -> Result<Server, BoxError> {
        Server::start_with(database_url, data_dir, None).await
    }

    /// [`Server::start`] with the configuration file `config` (`PARLEY_CONFIG`), if given.
    pub async fn start_with(
        database_url: &str,
        data_dir: &std::path::Path,
        config: Option<&std::path::Path>,
    ) -> Result<Server, BoxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // `/proc/self/exe` runs this very binary even if its file was replaced meanwhile (a
        // rebuild during a long run); `current_exe` would name the new file, or nothing.
        let proc_exe = std::path::Path::new("/proc/self/exe");
        let exe = if proc_exe.exists() {
            proc_exe.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        let mut command = Command::new(exe);
        if let Some(config) = config {
            command.env("PARLEY_CONFIG", config);
        }
        let child = command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("PARLEY_DATABASE_URL", database_url)
            .env("PARLEY_DATA_DIR", data_dir)
            .env("PARLEY_LOG", "warn")
            // The benchmark's stub provider listens on 127.0.0.1, which workspaces' own
            // provider URLs may not reach by default.
            .env("PARLEY_ALLOW_PRIVATE_NETWORKS", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err("the server did not become ready".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Server {
            child,
            base,
            peak_rss_kib: 0,
        })
    }

    /// Reads the process's current and peak resident memory (VmRSS, VmHWM), keeping the peak.
    pub fn sample_rss(&mut self) -> u64 {
        let pid = self.child.id();
        let now = status_field(pid, "VmRSS:").unwrap_or(0);
        let hwm = status_field(pid, "VmHWM:").unwrap_or(now);
        self.peak_rss_kib = self.peak_rss_kib.max(hwm).max(now);
        now
    }

    /// Stops the server; returns its peak resident memory in KiB.
    pub fn stop(mut self) -> u64 {
        self.sample_rss();
        self.peak_rss_kib
    }
}

impl Drop for Server {
    /// Stops the process however the run ends, so no server outlives the harness.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
