//! Test helpers in the zero-to-production style: `TestApp::spawn()` starts the real app on
//! 127.0.0.1:0 over a fresh SQLite file, with a workspace and an API key, and offers typed
//! request helpers. Tests talk HTTP to it like any client.

use std::path::PathBuf;

use parley_core::model::Workspace;
use parley_server::AppState;
use parley_server::config::{Overrides, Settings};
use serde_json::Value;
use tokio::sync::oneshot;

/// `../shared` beside the checkout (datasets and fixtures).
pub fn shared_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        dir.join("datasets").is_dir(),
        "{} not found: the tests read real data from ../shared beside the checkout",
        dir.display()
    );
    dir
}

/// One SGD dialogues file.
pub fn sgd_file(name: &str) -> PathBuf {
    shared_dir()
        .join("datasets/sgd-schema-guided-dialogue/train")
        .join(name)
}

/// Serves `state` on 127.0.0.1:0; returns the base URL and the sender that stops it (when
/// dropped).
async fn serve_on_loopback(state: AppState) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(parley_server::serve(state, listener, async {
        let _ = rx.await;
    }));
    (base, tx)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Resp {
    /// Sends `req` and reads the answer.
    pub async fn of(req: reqwest::RequestBuilder) -> Resp {
        let res = req.send().await.expect("the request reaches the server");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Which store a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Instantiates `async fn name(backend: Backend)` tests once per backend, as
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::helpers::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::helpers::Backend::Postgres).await
                }
            )+
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub key: String,
    pub workspace: Workspace,
    pub state: AppState,
    _dir: tempfile::TempDir,
    _db: Option<parley_store::testing::TestDatabase>,
    _shutdown: oneshot::Sender<()>,
}

impl TestApp {
    /// The app on SQLite (tests that are not about storage).
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns on SQLite with settings adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_on_with(Backend::Sqlite, tweak)
            .await
            .expect("SQLite is always available")
    }

    /// The app on `backend`; `None` when that backend is unavailable here (PostgreSQL outside
    /// CI; the skip is announced loudly).
    pub async fn spawn_on(backend: Backend) -> Option<TestApp> {
        Self::spawn_on_with(backend, |_| {}).await
    }

    /// [`TestApp::spawn_on`] with settings adjusted by `tweak`.
    ///
    /// The test servers allow private networks (`allow_private_networks`), explicitly: the
    /// stub provider, the fake Graph API and the fake Bot API all listen on 127.0.0.1, which
    /// the guarded client refuses by default. Tests of that refusal reset it in `tweak`
    /// ([`guarded`]).
    pub async fn spawn_on_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<TestApp> {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(parley_store::testing::TestDatabase::create().await?),
        };
        let mut settings = Settings::resolve(Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            database_url: db.as_ref().map(|d| d.url().to_owned()),
            allow_private_networks: Some(true),
            ..Default::default()
        })
        .unwrap();
        tweak(&mut settings);
        Some(Self::start(settings, dir, db).await)
    }

    /// A second server on the same database as `self` (PostgreSQL: several stateless servers).
    pub async fn second_server(&self) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..(*self.state.settings).clone()
        };
        let mut state = AppState::open(settings).await.unwrap();
        // Servers sharing a database share the secret key (PARLEY_SECRET_KEY in production).
        state.secrets = self.state.secrets.clone();
        let (base, shutdown) = serve_on_loopback(state.clone()).await;
        TestApp {
            base,
            client: http_client(),
            key: self.key.clone(),
            workspace: self.workspace.clone(),
            state,
            _dir: dir,
            _db: None,
            _shutdown: shutdown,
        }
    }

    async fn start(
        settings: Settings,
        dir: tempfile::TempDir,
        db: Option<parley_store::testing::TestDatabase>,
    ) -> TestApp {
        let state = AppState::open(settings).await.unwrap();
        let workspace = state
            .store
            .workspaces()
            .create_workspace("acme", "Acme")
            .await
            .unwrap();
        let key = parley_server::auth::generate_api_key().unwrap();
        state
            .store
            .workspaces()
            .create_api_key(workspace.id, "test", &key.prefix, key.hash)
            .await
            .unwrap();
        let (base, shutdown) = serve_on_loopback(state.clone()).await;
        TestApp {
            base,
            client: http_client(),
            key: key.secret,
            workspace,
            state,
            _dir: dir,
            _db: db,
            _shutdown: shutdown,
        }
    }

    /// A dashboard page as the session `cookie`.
    pub async fn page(&self, path: &str, cookie: &str) -> Resp {
        self.send(self.client.get(self.url(path)).header("cookie", cookie))
            .await
    }

    /// Posts a dashboard form as the session `cookie`, without following the redirect.
    pub async fn post_form(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Resp {
        let client = http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        self.send(
            client
                .post(self.url(path))
                .header("cookie", cookie)
                .form(form),
        )
        .await
    }

    /// A signed-in dashboard session of a new user with `role`: (cookie header, CSRF token).
    pub async fn dashboard_session(&self, role: parley_core::UserRole) -> (String, String) {
        self.session_in(self.workspace.id, role).await
    }

    /// [`TestApp::dashboard_session`] of a new user of workspace `ws`.
    pub async fn session_in(
        &self,
        ws: parley_core::WorkspaceId,
        role: parley_core::UserRole,
    ) -> (String, String) {
        let email = format!("{}@example.com", uuid::Uuid::now_v7().simple());
        let user = self
            .state
            .store
            .auth()
            .create_user(ws, &email, "not-a-real-hash", role)
            .await
            .unwrap();
        let token = parley_server::auth::session::random_token();
        let csrf = parley_server::auth::session::random_token();
        let now = parley_core::Timestamp::now();
        self.state
            .store
            .auth()
            .create_session(&parley_store::NewSession {
                token_hash: parley_server::auth::session::token_hash(&token),
                user_id: user.id,
                csrf_token: csrf.clone(),
                created_at: now,
                expires_at: now.add_millis(3_600_000),
            })
            .await
            .unwrap();
        (format!("parley_session={token}"), csrf)
    }

    /// A second workspace with its own key: (workspace, key).
    pub async fn other_tenant(&self, slug: &str) -> (Workspace, String) {
        let ws = self
            .state
            .store
            .workspaces()
            .create_workspace(slug, slug)
            .await
            .unwrap();
        let key = parley_server::auth::generate_api_key().unwrap();
        self.state
            .store
            .workspaces()
            .create_api_key(ws.id, "other", &key.prefix, key.hash)
            .await
            .unwrap();
        (ws, key.secret)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        Resp::of(req).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.get_as(path, &self.key).await
    }

    pub async fn get_as(&self, path: &str, key: &str) -> Resp {
        self.send(self.client.get(self.url(path)).bearer_auth(key))
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

    pub async fn post_as(&self, path: &str, body: &Value, key: &str) -> Resp {
        self.send(self.client.post(self.url(path)).bearer_auth(key).json(body))
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(&self.key)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .patch(self.url(path))
                .bearer_auth(&self.key)
                .json(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.client.delete(self.url(path)).bearer_auth(&self.key))
            .await
    }

    /// Creates a conversation; returns its id.
    pub async fn create(&self, body: Value) -> String {
        let r = self.post("/api/v1/conversations", &body).await;
        assert!(r.status == 201 || r.status == 200, "{}", r.text);
        r.body["conversation"]["id"].as_str().unwrap().to_owned()
    }

    /// Ids of a list page.
    pub async fn list_ids(&self, query: &str) -> Vec<String> {
        let r = self.get(&format!("/api/v1/conversations?{query}")).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The record of the test's API key ([`TestApp::key`]).
    pub async fn key_record(&self) -> parley_core::model::ApiKey {
        self.state
            .store
            .workspaces()
            .list_api_keys(self.workspace.id)
            .await
            .unwrap()
            .remove(0)
    }

    /// Gives `assistant` a web widget that allows `origin` (other settings default); returns
    /// its public key.
    pub async fn widget_for(&self, assistant: parley_core::AssistantId, origin: &str) -> String {
        let key = parley_server::widget::new_public_key().unwrap();
        self.state
            .store
            .widgets()
            .save_widget(&parley_core::widget::WidgetRecord {
                workspace_id: self.workspace.id,
                assistant_id: assistant,
                public_key: key.clone(),
                settings: parley_core::widget::WidgetSettings {
                    allowed_origins: vec![origin.into()],
                    ..Default::default()
                },
                updated_at: parley_core::Timestamp::now(),
            })
            .await
            .unwrap();
        key
    }

    /// Imports SGD files in-process through the same code `parley import` runs.
    pub async fn import_sgd(&self, files: &[&str]) {
        let job = parley_server::import::ImportJob {
            paths: files.iter().map(|f| sgd_file(f)).collect(),
            sgd: true,
            sgd_options: Default::default(),
            from_line: 1,
        };
        parley_server::import::run(&self.state, self.workspace.id, &job)
            .await
            .unwrap();
    }
}

/// The port of a `http://host:port/...` URL (a fake's base URL).
pub fn port_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .port_or_known_default()
        .unwrap()
        .to_string()
}

/// Settings as a default `parley serve` has them for outgoing requests: private networks
/// refused (for `spawn_on_with`'s `tweak`).
pub fn guarded(settings: &mut Settings) {
    settings.network = Default::default();
}

/// The operator's platform APIs pointed at fakes (for `spawn_on_with`'s `tweak`): the Graph
/// API and the Bot API where ownership is proven and connections without their own URL go.
pub fn platforms(graph: Option<&str>, bot: Option<&str>) -> impl FnOnce(&mut Settings) {
    let (graph, bot) = (graph.map(str::to_owned), bot.map(str::to_owned));
    move |s: &mut Settings| {
        if let Some(g) = graph {
            s.whatsapp_graph_base_url = g;
        }
        if let Some(b) = bot {
            s.telegram_api_base_url = b;
        }
    }
}

/// A conversation body with `n` alternating user/assistant messages.
pub fn conversation(assistant: &str, n: usize) -> Value {
    let messages: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("message number {i}"),
                "created_at": format!("2026-11-01T10:{:02}:{:02}Z", i / 60, i % 60),
            })
        })
        .collect();
    serde_json::json!({"assistant": {"name": assistant, "company": "Acme"}, "channel": "widget", "messages": messages})
}

/// A Python interpreter that can import `module`: `PARLEY_TEST_PYTHON` (`.ci/run` makes a
/// virtualenv in `target/ci-venv`), else `python3`. `None` after a loud SKIPPED when there is
/// none, except under `CI=true`, where it fails.
pub fn python_importing(module: &str) -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let candidate = match std::env::var("PARLEY_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => "python3".into(),
    };
    let ok = std::process::Command::new(&candidate)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(candidate);
    }
    assert!(
        !ci,
        "CI=true but no Python with the `{module}` package: set PARLEY_TEST_PYTHON (.ci/run does)"
    );
    eprintln!(
        "\n*** SKIPPED: no Python with the `{module}` package. \
         `python3 -m venv target/ci-venv && target/ci-venv/bin/pip install {module}`, then \
         PARLEY_TEST_PYTHON=target/ci-venv/bin/python ***\n"
    );
    None
}

/// An HTTP client for tests (installs the TLS provider every client needs first).
pub fn http_client() -> reqwest::Client {
    parley_server::assistant::provider::install_tls();
    reqwest::Client::new()
}

/// A client builder for tests (see [`http_client`]).
pub fn http_client_builder() -> reqwest::ClientBuilder {
    parley_server::assistant::provider::install_tls();
    reqwest::Client::builder()
}

/// An OpenAI fixture from `../shared/fixtures/openai`.
pub fn fixture(name: &str) -> Value {
    let path = shared_dir().join("fixtures/openai").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The recorded tool-call stream, its call renamed to `save_memory` with `arguments`.
pub fn memory_call_stream(arguments: &str) -> parley_testkit::stub_provider::Reply {
    tool_call_stream("save_memory", arguments)
}

/// The recorded tool-call stream (../shared/fixtures/openai), its call renamed to `name` with
/// `arguments` (sent in one fragment).
pub fn tool_call_stream(name: &str, arguments: &str) -> parley_testkit::stub_provider::Reply {
    let f = fixture("openai_python_stream_tool_call_with_usage.json");
    let mut events = Vec::new();
    let mut first_args = true;
    for line in f["body"].as_str().unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            events.push(data.to_owned());
            continue;
        }
        let mut chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(call) = chunk.pointer_mut("/choices/0/delta/tool_calls/0/function") {
            if call.get("name").is_some() {
                call["name"] = serde_json::json!(name);
            } else if call.get("arguments").is_some() {
                // The recorded fragments are replaced by ours, sent in one fragment.
                call["arguments"] = serde_json::json!(if first_args { arguments } else { "" });
                first_args = false;
            }
        }
        events.push(chunk.to_string());
    }
    parley_testkit::stub_provider::Reply::Stream {
        events,
        delay: std::time::Duration::ZERO,
        cut_after: None,
    }
}

/// `parley analyse`'s pass over `workspace` now, for tests whose server runs the background
/// analyser too: while the background pass holds the workspace (`Conflict analysis_busy`) it
/// waits and tries again (up to 60 s), so when it returns every conversation is analysed.
/// Returns how many this call analysed itself.
pub async fn analyse_now(
    store: &dyn parley_store::Store,
    workspace: parley_core::id::WorkspaceId,
) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match parley_server::insights::analyse_stale(store, workspace, |_| {}).await {
            Ok(n) => return n,
            Err(parley_store::StoreError::Conflict {
                code: "analysis_busy",
                ..
            }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("analysing the workspace: {e}"),
        }
    }
}
