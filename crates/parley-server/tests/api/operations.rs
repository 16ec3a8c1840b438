//! Operations (issue 11), each through real parts: a real nginx (Debian's `nginx-light`) in
//! front of the server on loopback; `/metrics` parsed by Prometheus' own Python parser
//! (`prometheus_client`, in the CI virtualenv); and real `parley serve` / `parley backup` /
//! `parley restore` processes for the write-ahead log, backups and JSON logs.
//!
//! Several loopback addresses stand for different machines: clients bind 127.0.0.2, .3, ...;
//! nginx connects to Parley from 127.0.0.1, the only trusted proxy.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_core::widget::{WidgetRecord, WidgetSettings};
use parley_core::{AssistantId, Timestamp};
use parley_server::client_addr::TrustedProxies;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, http_client_builder, sgd_file, shared_dir};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

// ------------------------------------------------------------------------------------------
// Real dialogues as API bodies.

/// The SGD dialogues of `file` as `POST /api/v1/conversations` bodies, `prefix` making their
/// external ids unique.
fn sgd_bodies(file: &str, prefix: &str) -> Vec<Value> {
    let dialogues: Vec<Value> =
        serde_json::from_slice(&std::fs::read(sgd_file(file)).unwrap()).unwrap();
    dialogues
        .iter()
        .map(|d| {
            let id = d["dialogue_id"].as_str().unwrap();
            let messages: Vec<Value> = d["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let role = if t["speaker"] == "USER" {
                        "user"
                    } else {
                        "assistant"
                    };
                    json!({"role": role, "content": t["utterance"]})
                })
                .collect();
            json!({"assistant": {"name": "Ava", "company": "Acme"}, "channel": "api",
                   "external_id": format!("{prefix}-{id}"), "session_id": id,
                   "messages": messages})
        })
        .collect()
}

/// The names of every SGD training file.
fn sgd_files() -> Vec<String> {
    let dir = shared_dir().join("datasets/sgd-schema-guided-dialogue/train");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dialogues_") && n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// Creates a conversation on the server at `base`; panics unless it answers 201.
async fn post_conversation(http: &reqwest::Client, base: &str, key: &str, body: &Value) {
    let r = http
        .post(format!("{base}/api/v1/conversations"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

// ------------------------------------------------------------------------------------------
// A real `parley serve` process.

/// `parley` with `args`, to completion. Panics with its stderr when it fails.
fn parley(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(args)
        .env("PARLEY_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parley {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An API key for the data directory's default workspace.
fn api_key(data_dir: &Path) -> String {
    let out = parley(&[
        "--data-dir",
        data_dir.to_str().unwrap(),
        "keys",
        "create",
        "--name",
        "ops",
    ]);
    out.lines().last().unwrap().trim().to_owned()
}

/// A `parley serve` child process on 127.0.0.1:0; killed when dropped.
struct ServerProcess {
    child: Child,
    base: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    fn start(data_dir: &Path, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_logging(data_dir, extra, "info")
    }

    /// [`ServerProcess::start`] with `PARLEY_LOG` set to `filter`.
    fn start_logging(data_dir: &Path, extra: &[&str], filter: &str) -> ServerProcess {
        let mut args = vec!["--data-dir", data_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["serve", "--listen", "127.0.0.1:0"]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(&args)
            .env("PARLEY_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on http://".len()..];
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = ServerProcess {
            child,
            base: String::new(),
            logs,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => server.base = format!("http://{addr}"),
            Err(_) => panic!("parley serve did not start:\n{}", server.logs().join("\n")),
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// SIGTERM, then waits for the process to exit; whether it exited successfully.
    fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap().success()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------------------------------------
// A real nginx in front.

/// nginx, from Debian's `nginx-light` (`.ci/run` installs it), or `None` (after saying why).
fn nginx_binary() -> Option<PathBuf> {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).is_file() {
            return Some(PathBuf::from(p));
        }
    }
    assert!(
        !ci(),
        "CI=true but nginx is not installed (apt-get install nginx-light)"
    );
    eprintln!(
        "\n*** SKIPPED proxy test: nginx is not installed (apt-get install nginx-light) ***\n"
    );
    None
}

/// nginx as a child process (not a service) with a generated configuration, on a free
/// 127.0.0.1 port, proxying to `upstream` from 127.0.0.1; stopped when dropped.
struct Nginx {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(binary: &Path, upstream: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstream = upstream.trim_start_matches("http://");
        let p = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_bind 127.0.0.1;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-Id $request_id;
            add_header X-Proxy-Request-Id $request_id always;
        }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let nginx = Nginx {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nginx did not start");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client whose connections come from loopback address `ip`.
fn client_from(ip: &str) -> reqwest::Client {
    http_client_builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

const SITE: &str = "https://shop.example.com";

/// A widget allowing [`SITE`]; its public key.
async fn widget(app: &TestApp) -> String {
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    let settings = WidgetSettings {
        allowed_origins: vec![SITE.into()],
        ..Default::default()
    };
    app.state
        .store
        .widgets()
        .save_widget(&WidgetRecord {
            workspace_id: app.workspace.id,
            assistant_id: id,
            public_key: key.clone(),
            settings,
            updated_at: Timestamp::now(),
        })
        .await
        .unwrap();
    key
}

async fn widget_config(http: &reqwest::Client, base: &str, key: &str, forged: Option<&str>) -> u16 {
    let mut req = http
        .get(format!("{base}/widget/v1/config?key={key}"))
        .header("origin", SITE);
    if let Some(f) = forged {
        req = req.header("x-forwarded-for", f);
    }
    req.send().await.unwrap().status().as_u16()
}

/// A failed sign-in (fresh CSRF cookie and token each time); the status.
async fn failed_sign_in(http: &reqwest::Client, base: &str, email: &str) -> u16 {
    let res = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let page = res.text().await.unwrap();
    let marker = "name=\"_csrf\" value=\"";
    let at = page.find(marker).expect("a sign-in form") + marker.len();
    let csrf = &page[at..at + page[at..].find('"').unwrap()];
    http.post(format!("{base}/login"))
        .header("cookie", cookie)
        .form(&[
            ("_csrf", csrf),
            ("email", email),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn behind_nginx_limits_see_the_forwarded_client(backend: Backend) {
    let Some(binary) = nginx_binary() else {
        return;
    };
    let Some(app) = TestApp::spawn_on_with(backend, |s| {
        s.trusted_proxies = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    })
    .await
    else {
        return;
    };
    let nginx = Nginx::start(&binary, &app.base);
    let key = widget(&app).await;
    app.state
        .widget
        .limits
        .per_visitor
        .store(3, Ordering::Relaxed);
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));

    // The per-visitor limit: three requests for A through the proxy, then 429 …
    for _ in 0..3 {
        assert_eq!(widget_config(&a, &nginx.base, &key, None).await, 200);
    }
    assert_eq!(widget_config(&a, &nginx.base, &key, None).await, 429);
    // … while B, through the same proxy (the same peer for Parley), is another visitor.
    assert_eq!(widget_config(&b, &nginx.base, &key, None).await, 200);
    // A cannot pose as someone else through the proxy: nginx appends A's real address, the
    // right-most untrusted hop.
    assert_eq!(
        widget_config(&a, &nginx.base, &key, Some("127.0.0.77")).await,
        429
    );
    // A client talking to Parley directly is not a trusted proxy: its header is not believed
    // (were it, this would be A's exhausted address).
    let direct = client_from("127.0.0.4");
    assert_eq!(
        widget_config(&direct, &app.base, &key, Some("127.0.0.2")).await,
        200
    );

    // The sign-in limit (20 failures per client address) counts the forwarded address.
    let c = client_from("127.0.0.5");
    for i in 0..20 {
        let email = format!("nobody{i}@example.com");
        assert_eq!(failed_sign_in(&c, &nginx.base, &email).await, 401);
    }
    assert_eq!(
        failed_sign_in(&c, &nginx.base, "nobody-more@example.com").await,
        429
    );
    let d = client_from("127.0.0.6");
    assert_eq!(
        failed_sign_in(&d, &nginx.base, "nobody-more@example.com").await,
        401,
        "another client behind the same proxy is not limited"
    );
    let counted = app
        .state
        .store
        .auth()
        .login_failures_since("ip:127.0.0.5", Timestamp::now().add_millis(-60_000))
        .await
        .unwrap();
    assert_eq!(counted, 20);

    // Request ids: nginx's own id is kept (a trusted proxy) and sent back; a client's own id
    // sent directly is replaced by a fresh one.
    let res = a
        .get(format!("{}/healthz", nginx.base))
        .send()
        .await
        .unwrap();
    let proxy_id = res.headers()["x-proxy-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(res.headers()["x-request-id"].to_str().unwrap(), proxy_id);
    let res = direct
        .get(app.url("/healthz"))
        .header("x-request-id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "chosen-by-the-client");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

// ------------------------------------------------------------------------------------------
// /metrics, parsed by Prometheus' Python client.

/// Parses a scrape with `prometheus_client`'s strict OpenMetrics parser (and checks that its
/// classic text-format parser reads it too); the samples as `(name, labels) -> (value, type)`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as classic
text = sys.stdin.read()
# The classic (0.0.4) parser reads it too (it types `_total` samples as untyped).
list(classic(text))
out = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.append([s.name, s.labels, s.value, family.type])
print(json.dumps(out))
"#;

type Samples = BTreeMap<(String, BTreeMap<String, String>), (f64, String)>;

fn parse_scrape(python: &str, text: &str) -> Samples {
    use std::io::Write;
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the scrape does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, BTreeMap<String, String>, f64, String)> =
        serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter()
        .map(|(n, l, v, t)| ((n, l), (v, t)))
        .collect()
}

fn sample(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    s.get(&(name.to_owned(), labels)).map_or(0.0, |v| v.0)
}

const TOKEN: &str = "metrics-token-0123456789";

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn metrics_parse_and_move(backend: Backend) {
    let Some(python) = crate::helpers::python_importing("prometheus_client") else {
        return;
    };
    let Some(app) = TestApp::spawn_on_with(backend, |s| {
        s.metrics_token = Some(TOKEN.into());
    })
    .await
    else {
        return;
    };
    assert_eq!(scrape(&app, None).await.status(), 401);
    let wrong = scrape(&app, Some("metrics-token-wrong-0000")).await;
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_metrics_token");

    let res = scrape(&app, Some(TOKEN)).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let before = parse_scrape(&python, &res.text().await.unwrap());

    // Three real dialogues on the widget channel, one append, a read, an unknown path.
    let mut bodies = sgd_bodies("dialogues_001.json", "m");
    bodies.truncate(3);
    let mut created = Vec::new();
    let mut messages = 0;
    for mut b in bodies {
        b["channel"] = json!("widget");
        messages += b["messages"].as_array().unwrap().len();
        let r = app.post("/api/v1/conversations", &b).await;
        assert_eq!(r.status, 201, "{}", r.text);
        created.push(r.body["conversation"]["id"].as_str().unwrap().to_owned());
    }
    let r = app
        .post(
            &format!("/api/v1/conversations/{}/messages", created[0]),
            &json!({"messages": [{"role": "user", "content": "One more thing"},
                                 {"role": "agent", "content": "Sure"}]}),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{}", created[1]))
            .await
            .status,
        200
    );
    assert_eq!(app.get("/no/such/page").await.status, 404);
    // A streamed gateway call to a stub provider.
    let stub = StubProvider::start().await.unwrap();
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Gia", "settings": {"provider": {"base_url": stub.base_url, "model": "gpt-4o-mini"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    stub.push(Reply::text("Streamed through the gateway."));
    let streamed = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.key)
        .header("Parley-Assistant", "Gia")
        .json(&json!({"model": "gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    assert!(streamed.text().await.unwrap().contains("[DONE]"));

    // The gateway records its exchange (and counts the provider call) once the stream ended,
    // off the request's path: scrape until it has.
    let mut text = String::new();
    let mut after = Samples::new();
    for _ in 0..100 {
        text = scrape(&app, Some(TOKEN)).await.text().await.unwrap();
        after = parse_scrape(&python, &text);
        let key = (
            "parley_provider_calls_total",
            [("kind", "gateway"), ("outcome", "ok")],
        );
        if sample(&after, key.0, &key.1) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(
        delta("parley_messages_ingested_total", &[("channel", "widget")]),
        (messages + 2) as f64,
        "the append is counted on its conversation's channel"
    );
    assert_eq!(
        delta(
            "parley_http_requests_total",
            &[
                ("route", "/api/v1/conversations"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "parley_http_requests_total",
            &[
                ("route", "/api/v1/conversations/{id}"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "parley_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "parley_http_request_duration_seconds_count",
            &[("route", "/api/v1/conversations"), ("method", "POST")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "parley_provider_calls_total",
            &[("kind", "gateway"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(delta("parley_streams_total", &[("kind", "gateway")]), 1.0);
    // Route labels are templates: no concrete id ever becomes a label value.
    for (name, labels) in after.keys() {
        for v in labels.values() {
            assert!(
                !created.iter().any(|id| v.contains(id.as_str())),
                "{name} {labels:?}"
            );
        }
    }
    let max = sample(&after, "parley_db_connections", &[("state", "max")]);
    match backend {
        Backend::Postgres => assert_eq!(max, 16.0),
        Backend::Sqlite => {
            assert_eq!(max, 4.0);
            assert!(
                after.contains_key(&("parley_sqlite_wal_bytes".to_owned(), BTreeMap::new())),
                "{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_by_default_and_may_have_their_own_address() {
    let app = TestApp::spawn().await;
    assert_eq!(scrape(&app, None).await.status(), 404);
    let separate = TestApp::spawn_with(|s| {
        s.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(parley_server::serve_metrics(
        separate.state.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    assert_eq!(
        scrape(&separate, None).await.status(),
        404,
        "not on the main listener"
    );
    let res = separate.client.get(&metrics_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("parley_http_requests"));
    let _ = stop.send(());
}

// ------------------------------------------------------------------------------------------
// The write-ahead log, through a real server process.

fn wal_len(data_dir: &Path) -> Option<u64> {
    std::fs::metadata(data_dir.join("parley.db-wal"))
        .ok()
        .map(|m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_under_its_cap_and_is_empty_after_sigterm() {
    // Larger than any one group commit here (an FTS5 segment merge inside one writes several
    // hundred KiB), which no checkpoint can split.
    const CAP: u64 = 4 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, format!("sqlite_wal_max_bytes = {CAP}\n")).unwrap();
    let data = dir.path().join("data");
    let key = api_key(&data);
    let mut server = ServerProcess::start(&data, &["--config", config.to_str().unwrap()]);
    let http = crate::helpers::http_client();

    // Sampled every few milliseconds while four writers and a reader run.
    let done = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, largest, data) = (done.clone(), largest.clone(), data.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(n) = wal_len(&data) {
                    largest.fetch_max(n, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Every SGD training file (1,891 dialogues), in four writers.
    let files = sgd_files();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, base, key) = (http.clone(), server.base.clone(), key.clone());
        let bodies: Vec<Value> = files
            .iter()
            .skip(w)
            .step_by(4)
            .flat_map(|f| sgd_bodies(f, "wal"))
            .collect();
        writers.push(tokio::spawn(async move {
            for b in bodies {
                post_conversation(&http, &base, &key, &b).await;
            }
        }));
    }
    let reader = {
        let (http, base, key, done) =
            (http.clone(), server.base.clone(), key.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let r = http
                    .get(format!("{base}/api/v1/conversations?q=restaurant&limit=50"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    sampler.join().unwrap();

    let db = std::fs::metadata(data.join("parley.db")).unwrap().len();
    let largest = largest.load(Ordering::Relaxed);
    // The writes were more than the cap several times over (the database file alone is), so
    // an unbounded log would have passed it.
    eprintln!("WAL test: database {db} bytes, largest WAL {largest} bytes");
    assert!(
        db > 2 * CAP,
        "database {db} bytes: too few writes to test the cap"
    );
    assert!(
        largest <= CAP,
        "the WAL reached {largest} bytes, over its {CAP}-byte cap"
    );
    let r = http
        .get(server.url("/api/v1/conversations/count"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let count: Value = r.json().await.unwrap();
    let expected: usize = files.iter().map(|f| sgd_bodies(f, "x").len()).sum();
    eprintln!(
        "WAL test: {expected} conversations, database {db} bytes, largest WAL {largest} bytes"
    );
    assert_eq!(count["count"], expected, "{count}");

    assert!(server.terminate(), "a clean exit on SIGTERM");
    assert!(
        wal_len(&data).unwrap_or(0) == 0,
        "after SIGTERM the WAL is empty or gone: {:?}",
        wal_len(&data)
    );
}

// ------------------------------------------------------------------------------------------
// Backups during concurrent ingest.

/// The JSONL export of the server's workspace: (sha256 of the whole, id -> line, ids in order).
async fn export(
    http: &reqwest::Client,
    base: &str,
    key: &str,
) -> (String, BTreeMap<String, String>, Vec<String>) {
    let text = http
        .get(format!("{base}/api/v1/export?format=jsonl"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = BTreeMap::new();
    let mut order = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let id = v["external_id"].as_str().unwrap().to_owned();
        order.push(id.clone());
        lines.insert(id, line.to_owned());
    }
    (hex(&Sha256::digest(text.as_bytes())), lines, order)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One acknowledged create: its external id, and when its request started and was answered.
#[derive(Debug, Clone)]
struct Acked {
    external_id: String,
    started: Instant,
    answered: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_ingest_restores_the_conversations_of_its_moment() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    let key = api_key(&a);
    let server = ServerProcess::start(&a, &[]);
    let http = crate::helpers::http_client();
    // An attachment, as a channel stores one: <data_dir>/attachments/<workspace>/<uuid>.
    let voice =
        std::fs::read(shared_dir().join("fixtures/audio/en_sentence_16k_mono.opus")).unwrap();
    let attachment = Path::new("attachments/ws/0199a1f4-6c1e-7a53-9d4b-5a0c2e7d1f00");
    std::fs::create_dir_all(a.join(attachment).parent().unwrap()).unwrap();
    std::fs::write(a.join(attachment), &voice).unwrap();

    // Writers that only ever create whole conversations (one request each): the database at
    // any moment is exactly the set of conversations committed by then.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let mut writers = Vec::new();
    for (w, file) in [
        "dialogues_001.json",
        "dialogues_016.json",
        "dialogues_023.json",
    ]
    .iter()
    .enumerate()
    {
        let (http, base, key) = (http.clone(), server.base.clone(), key.clone());
        let (stop, acked) = (stop.clone(), acked.clone());
        let bodies = sgd_bodies(file, &format!("w{w}"));
        writers.push(tokio::spawn(async move {
            for b in bodies {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                post_conversation(&http, &base, &key, &b).await;
                acked.lock().unwrap().push(Acked {
                    external_id: b["external_id"].as_str().unwrap().to_owned(),
                    started,
                    answered: Instant::now(),
                });
            }
        }));
    }
    while acked.lock().unwrap().len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let archive = dir.path().join("backup.tar.gz");
    let (backup_started, out) = {
        let (a, archive) = (a.clone(), archive.clone());
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            parley(&[
                "--data-dir",
                a.to_str().unwrap(),
                "backup",
                "--output",
                archive.to_str().unwrap(),
            ])
        })
        .await
        .unwrap();
        (started, out)
    };
    let backup_ended = Instant::now();
    // Writers go on a little after the backup, then stop.
    let settle = acked.lock().unwrap().len() + 20;
    while acked.lock().unwrap().len() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked
            .iter()
            .any(|x| x.started < backup_ended && x.answered > backup_started),
        "some writes ran during the backup"
    );
    let (_, original, original_order) = export(&http, &server.base, &key).await;
    assert_eq!(original.len(), acked.len());
    drop(server);

    // Restore into a fresh data directory and serve it.
    let restored_out = parley(&[
        "--data-dir",
        c.to_str().unwrap(),
        "restore",
        "--input",
        archive.to_str().unwrap(),
    ]);
    assert!(restored_out.contains("Restored"), "{restored_out}");
    let again = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args([
            "--data-dir",
            c.to_str().unwrap(),
            "restore",
            "--input",
            archive.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "a non-empty data directory is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let restored_server = ServerProcess::start(&c, &[]);
    let (restored_digest, restored, restored_order) =
        export(&http, &restored_server.base, &key).await;

    // Its moment: everything answered before the backup began, nothing begun after it ended.
    let ids: HashSet<&str> = restored.keys().map(String::as_str).collect();
    for x in &acked {
        if x.answered < backup_started {
            assert!(
                ids.contains(x.external_id.as_str()),
                "{} lost",
                x.external_id
            );
        }
        if x.started > backup_ended {
            assert!(
                !ids.contains(x.external_id.as_str()),
                "{} is from after the backup",
                x.external_id
            );
        }
    }
    // The restored export is, byte for byte, the original's export of those conversations in
    // the original's order: the digest the original had at the backup's moment.
    let at_the_moment: String = original_order
        .iter()
        .filter(|id| ids.contains(id.as_str()))
        .map(|id| format!("{}\n", original[id]))
        .collect();
    assert_eq!(
        restored_order,
        original_order
            .iter()
            .filter(|id| ids.contains(id.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        restored_digest,
        hex(&Sha256::digest(at_the_moment.as_bytes()))
    );
    assert!(
        out.contains(&format!("{} conversations", restored.len())),
        "the manifest counts the copy: {out}"
    );
    // The attachment and the secret key came along (the restored server opened the archive's
    // key: the same API key works, and sealed secrets would open).
    assert_eq!(std::fs::read(c.join(attachment)).unwrap(), voice);
    assert_eq!(
        std::fs::read(c.join("secret.key")).unwrap(),
        std::fs::read(a.join("secret.key")).unwrap()
    );
    // --force replaces a stopped server's data (its log files included) with the backup's.
    drop(restored_server);
    parley(&[
        "--data-dir",
        c.to_str().unwrap(),
        "restore",
        "--force",
        "--input",
        archive.to_str().unwrap(),
    ]);
    assert!(!c.join("parley.db-wal").exists() && !c.join(".parley-restore").exists());
    // PostgreSQL is backed up with pg_dump: the command says so instead of copying anything.
    let pg = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args([
            "--database",
            "postgres://parley@127.0.0.1:1/parley",
            "backup",
            "--output",
        ])
        .arg(dir.path().join("pg.tar.gz"))
        .output()
        .unwrap();
    assert!(!pg.status.success());
    assert!(String::from_utf8_lossy(&pg.stderr).contains("pg_dump"));
}

// ------------------------------------------------------------------------------------------
// JSON logs with request ids.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_of_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--log-format", "json"]);
    let http = crate::helpers::http_client();
    let res = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let res = http
        .get(server.url("/readyz"))
        .header("x-request-id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "chosen-by-the-client");
    assert!(server.terminate());
    let logs = server.logs();
    let lines: Vec<Value> = logs
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["span"]["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no log line for request {id}: {logs:#?}"));
    assert_eq!(line["span"]["path"], "/readyz", "{line}");
    assert_eq!(line["span"]["client"], "127.0.0.1", "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
}

// ------------------------------------------------------------------------------------------
// The widget's live stream token stays out of the logs.

/// `GET /widget/v1/stream` takes the visitor token in its URL (`EventSource` sends no
/// headers): a real `parley serve` logging everything down to `debug`, in both formats, logs
/// the stream requests (allowed and refused) without the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_token_in_the_url_never_reaches_the_logs() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let key = api_key(dir.path());
        let mut server =
            ServerProcess::start_logging(dir.path(), &["--log-format", format], "debug");
        let http = crate::helpers::http_client();
        let r = http
            .post(server.url("/api/v1/assistants"))
            .bearer_auth(&key)
            .json(&json!({"name": "Ava", "company": "Acme"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let assistant: Value = r.json().await.unwrap();
        let store = parley_store::open(&format!(
            "sqlite://{}",
            dir.path().join("parley.db").display()
        ))
        .await
        .unwrap();
        let workspace = store
            .workspaces()
            .list_workspaces()
            .await
            .unwrap()
            .remove(0);
        let public_key = parley_server::widget::new_public_key().unwrap();
        store
            .widgets()
            .save_widget(&WidgetRecord {
                workspace_id: workspace.id,
                assistant_id: assistant["id"].as_str().unwrap().parse().unwrap(),
                public_key: public_key.clone(),
                settings: WidgetSettings {
                    allowed_origins: vec![SITE.into()],
                    ..Default::default()
                },
                updated_at: Timestamp::now(),
            })
            .await
            .unwrap();
        drop(store);
        let r = http
            .post(server.url(&format!("/widget/v1/conversations?key={public_key}")))
            .header("origin", SITE)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let token = r.json::<Value>().await.unwrap()["visitor_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
        let stream = format!("/widget/v1/stream?key={public_key}&visitor={encoded}");
        let mut live = http
            .get(server.url(&stream))
            .header("origin", SITE)
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), 200);
        let first = live.chunk().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("snapshot"));
        drop(live);
        let refused = http
            .get(server.url(&stream))
            .header("origin", "https://elsewhere.example")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
        assert!(server.terminate());
        let logs = server.logs();
        assert!(
            logs.iter()
                .filter(|l| l.contains("/widget/v1/stream"))
                .count()
                >= 2,
            "the stream requests are logged ({format}): {logs:#?}"
        );
        for line in &logs {
            assert!(
                !line.contains(&token) && !line.contains(&encoded),
                "a log line holds the visitor token ({format}): {line}"
            );
        }
    }
}

both_backends!(
    behind_nginx_limits_see_the_forwarded_client,
    metrics_parse_and_move,
);
