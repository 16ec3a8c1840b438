//! Running at scale on PostgreSQL: several servers on one database, and moving a workspace
//! from SQLite to PostgreSQL with `parley migrate-store`.

use std::process::Command;

use parley_core::UserRole;
use serde_json::json;

use crate::helpers::{Backend, TestApp, sgd_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_share_everything() {
    let Some(a) = TestApp::spawn_on(Backend::Postgres).await else {
        return;
    };
    let b = a.second_server().await;
    // Data written through one server is read through the other, counters included.
    let id = a.create(json!({"external_id": "x-1", "assistant": {"name": "Ava"}, "messages": [{"role": "user", "content": "written on A"}]})).await;
    let on_b = b.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(
        (on_b.status, on_b.body["message_count"].as_i64()),
        (200, Some(1))
    );
    assert_eq!(b.get("/api/v1/conversations/count").await.body["count"], 1);
    assert_eq!(b.list_ids("q=written").await, vec![id.clone()]);
    // Idempotency holds across servers: the retry lands on B.
    let again = b
        .post(
            "/api/v1/conversations",
            &json!({"external_id": "x-1", "assistant": {"name": "Ava"}}),
        )
        .await;
    assert_eq!(
        (again.status, again.body["conversation"]["id"].as_str()),
        (200, Some(id.as_str()))
    );

    // Concurrent appends through both servers: nothing lost, nothing twice.
    let mut tasks = Vec::new();
    for client in 0..40 {
        let base = if client % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (url, key) = (
            format!("{base}/api/v1/conversations/{id}/messages"),
            a.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = crate::helpers::http_client();
            for i in 0..5 {
                let body = json!({"messages": [{"role": "user", "content": format!("m {client} {i}"), "external_id": format!("{client}-{i}")}]});
                for _ in 0..2 {
                    assert!(http.post(&url).bearer_auth(&key).json(&body).send().await.unwrap().status().is_success());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        a.get(&format!("/api/v1/conversations/{id}")).await.body["message_count"],
        201
    );

    // A session started on A is valid on B; sign-in failures on A count on B.
    let hash = parley_server::auth::hash_password("correct horse battery").unwrap();
    a.state
        .store
        .auth()
        .create_user(a.workspace.id, "ana@example.com", &hash, UserRole::Admin)
        .await
        .unwrap();
    let http = crate::helpers::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |base: String, password: &'static str| {
        let http = http.clone();
        async move {
            let page = http.get(format!("{base}/login")).send().await.unwrap();
            let cookie = page.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let html = page.text().await.unwrap();
            let start = html.find("name=\"_csrf\" value=\"").unwrap() + 20;
            let csrf = &html[start..start + html[start..].find('"').unwrap()];
            http.post(format!("{base}/login"))
                .header("cookie", cookie)
                .form(&[
                    ("_csrf", csrf),
                    ("email", "ana@example.com"),
                    ("password", password),
                    ("next", "/conversations"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let ok = login(a.base.clone(), "correct horse battery").await;
    assert_eq!(ok.status(), 303);
    let session = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("parley_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http
        .get(format!("{}/conversations", b.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        200,
        "the session lives in the database, not in server A"
    );
    for _ in 0..5 {
        assert_eq!(login(a.base.clone(), "wrong password!").await.status(), 401);
    }
    assert_eq!(
        login(b.base.clone(), "correct horse battery")
            .await
            .status(),
        429,
        "B sees A's failures"
    );

    // Deleting on B is seen on A, with the badge count.
    assert_eq!(
        b.delete(&format!("/api/v1/conversations/{id}"))
            .await
            .status,
        204
    );
    assert_eq!(
        a.get(&format!("/api/v1/conversations/{id}")).await.status,
        404
    );
    assert_eq!(a.get("/api/v1/conversations/count").await.body["count"], 0);
}

fn parley(args: &[&str], dir: &std::path::Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(args)
        .env("PARLEY_DATA_DIR", dir)
        .env_remove("PARLEY_DATABASE_URL")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "parley {args:?}:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_workspace_from_sqlite_to_postgres_verified() {
    let Some(db) = parley_store::testing::TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("parley.db").display());
    parley(
        &[
            "import",
            "--format",
            "sgd",
            sgd_file("dialogues_039.json").to_str().unwrap(),
        ],
        dir.path(),
    );
    let (keys, _) = parley(&["keys", "create", "--name", "ci"], dir.path());
    let key = keys.lines().last().unwrap().to_owned();
    let mut users = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args([
            "users",
            "create",
            "--email",
            "ana@example.com",
            "--password-stdin",
            "--role",
            "admin",
        ])
        .env("PARLEY_DATA_DIR", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    users
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    assert!(users.wait().unwrap().success());

    let (out, _) = parley(
        &["migrate-store", "--from", &sqlite_url, "--to", db.url()],
        dir.path(),
    );
    assert!(
        out.contains("128 conversations copied (0 already there), 1838 messages"),
        "{out}"
    );
    assert!(out.contains("Verified"), "{out}");
    let digests: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("SHA-256"))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(digests.len(), 2);
    assert_eq!(digests[0], digests[1]);

    // Run again: nothing is copied twice, and it still verifies.
    let (out, _) = parley(
        &["migrate-store", "--from", &sqlite_url, "--to", db.url()],
        dir.path(),
    );
    assert!(
        out.contains("0 conversations copied (128 already there), 0 messages"),
        "{out}"
    );

    // A server on the PostgreSQL database accepts the old key and the old password.
    let settings = parley_server::config::Settings::resolve(parley_server::config::Overrides {
        data_dir: Some(dir.path().to_path_buf()),
        database_url: Some(db.url().to_owned()),
        ..Default::default()
    })
    .unwrap();
    let state = parley_server::AppState::open(settings).await.unwrap();
    let (ws, _) = state
        .store
        .auth()
        .user_for_login("ana@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state
            .store
            .conversations()
            .conversation_total(ws.workspace_id)
            .await
            .unwrap(),
        128
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(parley_server::serve(
        state,
        listener,
        std::future::pending(),
    ));
    let r = crate::helpers::http_client()
        .get(format!("{base}/api/v1/conversations?q=balance&limit=1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["items"][0]["match"]["snippet"]["matched"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some("balance")
    );
}
