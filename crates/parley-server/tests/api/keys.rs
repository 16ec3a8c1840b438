//! API key revocation takes effect at once, on every server: a key that has just answered 200
//! (so any server-side memory of it is warm) is refused by the very next request after
//! `parley keys revoke` (another process) — on the server that knew it and, on PostgreSQL, on a
//! second server sharing the database.

use crate::helpers::{Backend, TestApp};

crate::both_backends!(a_key_revoked_from_the_command_line_fails_on_the_next_request);

/// Runs `parley keys revoke ID --workspace SLUG` against `database_url`.
fn revoke_with_the_cli(database_url: &str, workspace: &str, id: &str) {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["keys", "revoke", id, "--workspace", workspace])
        .env("PARLEY_DATA_DIR", data.path())
        .env("PARLEY_DATABASE_URL", database_url)
        .env_remove("PARLEY_CONFIG")
        .output()
        .expect("run parley");
    assert!(
        out.status.success(),
        "parley keys revoke failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn a_key_revoked_from_the_command_line_fails_on_the_next_request(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let mut servers = vec![&app];
    let second;
    if backend == Backend::Postgres {
        second = app.second_server().await;
        servers.push(&second);
    }
    for server in &servers {
        for _ in 0..3 {
            assert_eq!(statuses(server).await.0, 200);
        }
        assert_ne!(statuses(server).await.1, 401, "the gateway accepts the key");
    }
    let key = app.key_record().await;
    let url = app.state.settings.database_url.clone();
    let (slug, id) = (app.workspace.slug.clone(), key.id.to_string());
    tokio::task::spawn_blocking(move || revoke_with_the_cli(&url, &slug, &id))
        .await
        .unwrap();
    for server in &servers {
        assert_eq!(statuses(server).await, (401, 401), "{}", server.base);
        let r = server.get("/api/v1/conversations/count").await;
        assert_eq!(
            r.body["error"]["message"].as_str(),
            Some("this API key has been revoked")
        );
    }
}

/// What `server` answers its key on the API (`GET /api/v1/conversations/count`) and on the
/// gateway (`GET /v1/models`).
async fn statuses(server: &TestApp) -> (u16, u16) {
    let api = server.get("/api/v1/conversations/count").await.status;
    let gateway = server
        .send(
            server
                .client
                .get(server.url("/v1/models"))
                .bearer_auth(&server.key),
        )
        .await
        .status;
    (api, gateway)
}
