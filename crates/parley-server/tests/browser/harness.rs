//! Headless Chromium through chromedriver (WebDriver), for the dashboard's end-to-end tests.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). When they are
//! missing the tests print a loud SKIPPED line and pass — except under `CI=true`, where a
//! missing browser fails the run. Tests take a global lock so one browser runs at a time (the
//! machine has two cores).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A process started in a process group of its own (its pid is the group id). Dropping the
/// guard kills the whole group with SIGKILL, the process and everything it started
/// (chromedriver and its Chromium), whether the test passed, failed or panicked.
pub struct ProcessGroup {
    child: Child,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<ProcessGroup> {
        let child = cmd.process_group(0).spawn()?;
        Ok(ProcessGroup { child })
    }

    /// The group id (the leader's pid).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The live (not zombie) processes of group `pgid`, read from `/proc/*/stat` (field 5 is
    /// the process group, field 3 the state; both after the parenthesised command name).
    pub fn members(pgid: u32) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (state, group) = (fields.first()?, fields.get(2)?.parse::<u32>().ok()?);
            (group == pgid && *state != "Z" && *state != "X").then_some(pid)
        })
        .collect()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // `kill -KILL -- -PGID` signals every process of the group (no unsafe libc call).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ]) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Browser {
    pub client: Client,
    driver: ProcessGroup,
    _turn: Option<MutexGuard<'static, ()>>,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (after a loud message) when
    /// the browser is not installed and this is not CI. `mobile` emulates a 390x844 phone.
    pub async fn start(mobile: bool) -> Option<Browser> {
        let turn = ONE_AT_A_TIME.lock().await;
        Self::launch(mobile, Some(turn), None, &[]).await
    }

    /// [`Browser::start`] (desktop) saving downloads in `dir` without asking.
    pub async fn start_downloading_to(dir: &Path) -> Option<Browser> {
        let turn = ONE_AT_A_TIME.lock().await;
        Self::launch(false, Some(turn), Some(dir), &[]).await
    }

    /// [`Browser::start`] with more Chromium flags (a fake microphone fed from a file...).
    pub async fn start_with_args(mobile: bool, args: &[String]) -> Option<Browser> {
        let turn = ONE_AT_A_TIME.lock().await;
        Self::launch(mobile, Some(turn), None, args).await
    }

    /// A second browser (its own chromedriver and session, so its own cookies and storage) for
    /// a test that already holds one: the two sessions of a reviewer and a visitor.
    pub async fn start_another(&self, mobile: bool) -> Option<Browser> {
        Self::launch(mobile, None, None, &[]).await
    }

    async fn launch(
        mobile: bool,
        turn: Option<MutexGuard<'static, ()>>,
        downloads: Option<&Path>,
        extra: &[String],
    ) -> Option<Browser> {
        let driver = find_binary(&["chromedriver"]);
        let chromium = find_binary(&["chromium", "chromium-browser", "google-chrome"]);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!(
                    "CI=true but chromium/chromedriver are not installed: the browser tests must run in CI"
                );
            }
            eprintln!(
                "\n*** SKIPPED browser test: chromium and chromedriver not found. Install Debian's `chromium` and \
                 `chromium-driver` (as .ci/run does) to run it. ***\n"
            );
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = ProcessGroup::spawn(
            Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        parley_server::assistant::provider::install_tls();
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut options = json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-extensions", "--window-size=1440,900", "--lang=en-US",
                     // A fake microphone (a tone), granted without a prompt: the widget's voice
                     // messages.
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"],
        });
        if let Some(dir) = downloads {
            options["prefs"] = json!({"download.default_directory": dir,
                                      "download.prompt_for_download": false});
        }
        if let Some(args) = options["args"].as_array_mut() {
            args.extend(extra.iter().map(|a| json!(a)));
        }
        if mobile {
            options["mobileEmulation"] =
                json!({"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2}});
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("open a Chromium session");
        Some(Browser {
            client,
            driver: child,
            _turn: turn,
        })
    }

    /// Saves a PNG screenshot as `target/screenshots/{name}.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs a script (its `return` value as JSON).
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` returns true (10 s at most).
    pub async fn wait_for(&self, what: &str, script: &str) {
        self.wait_up_to(what, script, Duration::from_secs(10)).await
    }

    /// [`Browser::wait_for`] with a longer bound, for what runs at the pace of real audio (a
    /// fake microphone playing a recording).
    pub async fn wait_up_to(&self, what: &str, script: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                panic!("timed out waiting for {what} (at {url})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element matching `css`. Live updates may replace it between the find
    /// and the click (a stale element reference): then it is found again, up to 20 times.
    pub async fn click(&self, css: &str) {
        for attempt in 1.. {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"));
            match element.click().await {
                Ok(_) => return,
                Err(e) if attempt < 20 && e.to_string().contains("stale element") => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// The current URL's query parameter `name`.
    pub async fn param(&self, name: &str) -> Option<String> {
        let url = self.client.current_url().await.unwrap();
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Types into the focused element (WebDriver keys).
    pub async fn keys(&self, keys: &str) {
        self.client
            .active_element()
            .await
            .unwrap()
            .send_keys(keys)
            .await
            .unwrap();
    }

    /// Opens conversation `id` by clicking its row, and waits until the panel has slid in.
    pub async fn open_row(&self, id: &str) {
        self.click(&format!("tr.row[data-id=\"{id}\"] .c-preview"))
            .await;
        self.wait_for(
            "the panel to slide in",
            &format!(
                "const p = document.querySelector('#panel'); const r = p.getBoundingClientRect();
                 return p.classList.contains('open') && !!p.querySelector('.panel-inner[data-id=\"{id}\"]')
                     && Math.abs(r.right - document.documentElement.clientWidth) < 1"
            ),
        )
        .await;
    }

    /// Closes the panel with Esc and waits until it has slid out.
    pub async fn close_panel(&self) {
        self.keys("\u{e00c}").await;
        self.wait_for(
            "the panel to slide out",
            "const p = document.querySelector('#panel'); return !p.classList.contains('open') && p.getBoundingClientRect().left >= document.documentElement.clientWidth - 1",
        )
        .await;
    }

    /// Creates the admin `admin@example.com` with `password` in `app`'s workspace and signs
    /// in as them through the form; returns the app's base URL.
    pub async fn sign_in_new_admin(&self, app: &crate::helpers::TestApp, password: &str) -> String {
        let hash = parley_server::auth::hash_password(password).unwrap();
        app.state
            .store
            .auth()
            .create_user(
                app.workspace.id,
                "admin@example.com",
                &hash,
                parley_core::UserRole::Admin,
            )
            .await
            .unwrap();
        let base = app.url("");
        self.sign_in(&base, "admin@example.com", password).await;
        base
    }

    /// Signs in through the form.
    pub async fn sign_in(&self, base: &str, email: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        self.client
            .find(Locator::Css("input[name=email]"))
            .await
            .unwrap()
            .send_keys(email)
            .await
            .unwrap();
        self.client
            .find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys(password)
            .await
            .unwrap();
        self.click("button[type=submit]").await;
        self.wait_for(
            "the conversations page",
            "return location.pathname === '/conversations'",
        )
        .await;
    }

    /// Messages the page logged to the console at level SEVERE (script errors, CSP violations).
    pub async fn console_errors(&self) -> Vec<String> {
        // chromedriver exposes the browser log at this (non-W3C) endpoint.
        let log = self.client.issue_cmd(GetLog).await;
        match log {
            Ok(Value::Array(entries)) => entries
                .into_iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Ends the session politely, then the driver's process group (dropping a `Browser`
    /// without `close`, as a panicking test does, still kills the group).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        drop(self.driver);
    }

    /// The process group of chromedriver and the Chromium it started.
    pub fn process_group(&self) -> u32 {
        self.driver.id()
    }
}

/// chromedriver's `GET /session/{id}/se/log`-style browser log command.
#[derive(Debug, Clone)]
struct GetLog;

impl fantoccini::wd::WebDriverCompatibleCommand for GetLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}

/// A browser dropped without `close` (a failed or panicking test) leaves no chromedriver or
/// Chromium process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_browser_leaves_no_process_behind() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    b.client.goto("about:blank").await.unwrap();
    let group = b.process_group();
    let before = ProcessGroup::members(group);
    assert!(
        before.len() > 1,
        "chromedriver and its Chromium share the group: {before:?}"
    );
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = ProcessGroup::members(group);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of group {group} still running: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
