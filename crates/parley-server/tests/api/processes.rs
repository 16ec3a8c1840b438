//! Real `parley serve` processes for the crash and several-servers tests: the binary Cargo
//! built (`CARGO_BIN_EXE_parley`) with its own data directory and database, listening on
//! 127.0.0.1:0 (the address read from its log). A [`Server`] is killed when dropped, so no
//! process outlives its test, even one that panics.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use parley_server::channels::whatsapp::sign;
use parley_testkit::fake_graph::FakeGraph;
use parley_testkit::stub_provider::StubProvider;
use serde_json::{Value, json};

use crate::helpers::{Backend, Resp, http_client};

/// What the servers of one test share: the data directory, the database, the secret key (so
/// each can open what another sealed), the API key, and a config file with short job leases
/// and retries.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub key: String,
    secret_key: String,
    config: PathBuf,
    _db: Option<parley_store::testing::TestDatabase>,
}

impl Site {
    /// A fresh data directory and database on `backend`, with a workspace and an API key made
    /// through the store before any server starts; `None` when PostgreSQL is unavailable here
    /// (outside CI).
    pub async fn new(backend: Backend) -> Option<Site> {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(parley_store::testing::TestDatabase::create().await?),
        };
        let database_url = match &db {
            Some(db) => db.url().to_owned(),
            None => format!("sqlite://{}", dir.path().join("parley.db").display()),
        };
        let store = parley_store::open(&database_url).await.unwrap();
        let ws = store
            .workspaces()
            .create_workspace("acme", "Acme")
            .await
            .unwrap();
        let key = parley_server::auth::generate_api_key().unwrap();
        store
            .workspaces()
            .create_api_key(ws.id, "test", &key.prefix, key.hash)
            .await
            .unwrap();
        drop(store);
        let config = dir.path().join("parley.toml");
        write_config(&config, "");
        Some(Site {
            dir,
            database_url,
            key: key.secret,
            secret_key: base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
            config,
            _db: db,
        })
    }

    /// Points the operator's platform APIs (where channel ownership is proven) at fakes, for
    /// the servers started after this.
    pub fn use_platforms(&self, graph: Option<&str>, bot: Option<&str>) {
        let mut top = String::new();
        if let Some(g) = graph {
            top.push_str(&format!("whatsapp_graph_base_url = \"{g}\"\n"));
        }
        if let Some(b) = bot {
            top.push_str(&format!("telegram_api_base_url = \"{b}\"\n"));
        }
        write_config(&self.config, &top);
    }

    /// Opens the site's store from the test (for set-up the API does not offer).
    pub async fn store(&self) -> std::sync::Arc<dyn parley_store::Store> {
        parley_store::open(&self.database_url).await.unwrap()
    }

    /// A signed-in dashboard session (a new member of the site's workspace), as a cookie
    /// header.
    pub async fn dashboard_cookie(&self) -> String {
        let store = self.store().await;
        let ws = store
            .workspaces()
            .workspace_by_slug("acme")
            .await
            .unwrap()
            .unwrap();
        let email = format!("{}@example.com", uuid::Uuid::now_v7().simple());
        let user = store
            .auth()
            .create_user(
                ws.id,
                &email,
                "not-a-real-hash",
                parley_core::UserRole::Member,
            )
            .await
            .unwrap();
        let token = parley_server::auth::session::random_token();
        let now = parley_core::Timestamp::now();
        store
            .auth()
            .create_session(&parley_store::NewSession {
                token_hash: parley_server::auth::session::token_hash(&token),
                user_id: user.id,
                csrf_token: parley_server::auth::session::random_token(),
                created_at: now,
                expires_at: now.add_millis(3_600_000),
            })
            .await
            .unwrap();
        format!("parley_session={token}")
    }

    /// Starts `parley serve` on the site; `hold` is the test hook's list of job kinds and
    /// points to stop at (see `parley_server::jobs`), empty for none. Several servers may run
    /// on one PostgreSQL site; each gets a data directory of its own under the site's.
    pub fn start(&self, name: &str, hold: &str) -> Server {
        let data_dir = match self.database_url.starts_with("sqlite") {
            true => self.dir.path().to_path_buf(),
            false => self.dir.path().join(name),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("PARLEY_DATA_DIR", &data_dir)
            .env("PARLEY_DATABASE_URL", &self.database_url)
            .env("PARLEY_SECRET_KEY", &self.secret_key)
            .env("PARLEY_CONFIG", &self.config)
            // The fakes and the stub provider listen on 127.0.0.1.
            .env("PARLEY_ALLOW_PRIVATE_NETWORKS", "true")
            .env(parley_server::jobs::HOLD_ENV, hold)
            .env("PARLEY_LOG", "info,parley_server=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start parley serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("listening on http://") {
                        let addr: String = line[at + 20..]
                            .chars()
                            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                            .collect();
                        let _ = tx.send(addr);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut server = Server {
            child,
            base: String::new(),
            key: self.key.clone(),
            client: http_client(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => server.base = format!("http://{addr}"),
            Err(_) => panic!("{name} did not start:\n{}", server.log()),
        }
        server
    }
}

/// Writes a site's config file: `top` (top-level keys), `/metrics` with a token (for the queue
/// gauges), and short leases and retries (a killed server's jobs are free again within
/// seconds).
fn write_config(path: &std::path::Path, top: &str) {
    std::fs::write(
        path,
        format!(
            "{top}metrics_token = \"{METRICS_TOKEN}\"\n\
             [jobs]\nlease_ms = 1500\nretry_first_ms = 100\nretry_max_ms = 1000\n"
        ),
    )
    .unwrap();
}

/// The `metrics_token` of every server of a site.
pub const METRICS_TOKEN: &str = "site-metrics-token-0123456789";

/// The fake Graph API's access token, the Meta app secret and the phone number id the tests
/// connect.
pub const ACCESS_TOKEN: &str = "EAAG-test-access-token-9876";
pub const APP_SECRET: &str = "meta-app-secret-0123456789";
pub const PHONE_NUMBER_ID: &str = "1122334455667";
pub const BUSINESS_ACCOUNT_ID: &str = "102290129340398";

/// One running `parley serve`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Kills the process at once (`SIGKILL`: nothing is flushed or handed back) and waits for
    /// it to be gone.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// Stops the process as an operator does (`SIGTERM`: graceful shutdown) and waits for it
    /// to exit; returns what it logged.
    pub fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success(), "{}", self.log());
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        Resp::of(req).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path)).bearer_auth(&self.key))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(&self.key)
                .json(body),
        )
        .await
    }

    /// Every message of every conversation on `channel`, hidden ones included, each
    /// conversation's oldest first.
    pub async fn messages_on(&self, channel: &str) -> Vec<Value> {
        let list = self
            .get(&format!(
                "/api/v1/conversations?channel={channel}&limit=200"
            ))
            .await;
        assert_eq!(list.status, 200, "{}", list.text);
        let mut out = Vec::new();
        for c in list.body["items"].as_array().unwrap() {
            out.extend(self.messages(c["id"].as_str().unwrap()).await);
        }
        out
    }

    /// Every message of one conversation, hidden ones included, oldest first.
    pub async fn messages(&self, conversation: &str) -> Vec<Value> {
        let r = self
            .get(&format!(
                "/api/v1/conversations/{conversation}/messages?include=all&order=asc&per_page=200"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["items"].as_array().unwrap().clone()
    }

    /// Creates an assistant "Ava" answering through `stub`; its id.
    pub async fn assistant(&self, stub: &StubProvider) -> String {
        let r = self
            .post(
                "/api/v1/assistants",
                &json!({"name": "Ava", "company": "Acme", "settings": {
                    "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                                 "api_key": "sk-test-0123456789abcdef"}}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Connects [`PHONE_NUMBER_ID`] to `assistant` through `graph`; the connection's id.
    pub async fn connect_whatsapp(&self, assistant: &str, graph: &FakeGraph) -> String {
        let r = self
            .post(
                &format!("/api/v1/assistants/{assistant}/channels"),
                &json!({"kind": "whatsapp", "phone_number_id": PHONE_NUMBER_ID,
                        "business_account_id": BUSINESS_ACCOUNT_ID, "access_token": ACCESS_TOKEN,
                        "app_secret": APP_SECRET, "verify_token": "verify-me-please-4242",
                        "graph_base_url": graph.base_url}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["inbox"]["pending"], 0, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Posts a WhatsApp webhook delivery to connection `channel`, signed as Meta signs it;
    /// expects 200.
    pub async fn deliver_whatsapp(&self, channel: &str, payload: &Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let r = self
            .send(
                self.client
                    .post(self.url(&format!("/webhooks/whatsapp/{channel}")))
                    .header("x-hub-signature-256", sign(APP_SECRET, &body))
                    .body(body),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}
