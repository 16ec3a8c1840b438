//! Workspace settings (issue 16) against the real server on both backends: invite → accept →
//! sign in, role changes and the last-admin rule, API keys (create, last use, revoke, roles),
//! the time zone (validation, insights day buckets on local midnight across a DST change),
//! the analysis switch, the Settings page's access rules, and workspace isolation.

use parley_core::{Timestamp, UserRole};
use parley_store::NewInvite;
use serde_json::{Value, json};

use crate::dashboard::Browserish;
use crate::helpers::{Backend, TestApp};

/// Creates a key with `role` through the API; returns (id, secret).
async fn key(app: &TestApp, name: &str, role: &str) -> (String, String) {
    let r = app
        .post("/api/v1/keys", &json!({"name": name, "role": role}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["role"], role);
    assert!(r.body["secret"].as_str().unwrap().starts_with("pk_"));
    (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    )
}

/// The member with `email` in `GET /api/v1/members`.
async fn member(app: &TestApp, email: &str) -> Option<Value> {
    let r = app.get("/api/v1/members").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == email)
        .cloned()
}

/// Opens the invite link and submits the form; returns the answer to the submission.
async fn accept(
    b: &mut Browserish<'_>,
    path: &str,
    name: &str,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let (status, _, page) = b.get(path).await;
    assert_eq!(status, 200, "{page}");
    let csrf = Browserish::hidden(&page, "_csrf");
    b.post(
        path,
        &[("_csrf", &csrf), ("name", name), ("password", password)],
    )
    .await
}

async fn invite_accept_and_sign_in(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = app
        .post(
            "/api/v1/invites",
            &json!({"email": "Nora@Example.com", "role": "member"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["email"], "nora@example.com");
    let path = r.body["path"].as_str().unwrap().to_owned();
    let token = r.body["token"].as_str().unwrap();
    assert_eq!(path, format!("/invite/{token}"));
    let expires = Timestamp::parse_rfc3339(r.body["expires_at"].as_str().unwrap()).unwrap();
    let created = Timestamp::parse_rfc3339(r.body["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires.0 - created.0, 7 * 24 * 3600 * 1000, "valid 7 days");
    // The token is stored hashed: listing never shows it.
    let list = app.get("/api/v1/invites").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(!list.text.contains(token));

    // The invitee opens the link (no session), sets a name and password and is signed in.
    let mut b = Browserish::new(&app);
    let (status, _, page) = accept(&mut b, &path, "Nora", "short").await;
    assert_eq!(status, 422, "a short password is refused: {page}");
    assert!(page.contains("at least 10 characters"), "{page}");
    let (status, headers, _) = accept(&mut b, &path, "Nora Lind", "correct horse battery").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/conversations");
    assert!(b.cookie_header().contains("parley_session="));
    let (status, _, page) = b.get("/conversations").await;
    assert_eq!(status, 200);
    assert!(page.contains("nora@example.com"));
    let m = member(&app, "nora@example.com").await.expect("listed");
    assert_eq!(m["name"], "Nora Lind");
    assert_eq!(m["role"], "member");
    assert!(m["last_sign_in_at"].is_string(), "{m}");

    // The link works once.
    let mut other = Browserish::new(&app);
    let (status, _, _) = other.get(&path).await;
    assert_eq!(status, 404);
    assert!(
        app.get("/api/v1/invites").await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The new member signs in with the password they chose.
    let mut again = Browserish::new(&app);
    let (status, _, _) = again
        .sign_in("nora@example.com", "correct horse battery")
        .await;
    assert_eq!(status, 303);
    // Inviting an email that has an account is a conflict.
    let r = app
        .post("/api/v1/invites", &json!({"email": "nora@example.com"}))
        .await;
    assert_eq!((r.status, r.code()), (409, "user_exists"), "{}", r.text);
    // A bad email or role is refused.
    let r = app
        .post("/api/v1/invites", &json!({"email": "not-an-email"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = app
        .post(
            "/api/v1/invites",
            &json!({"email": "x@example.com", "role": "owner"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_role"));

    // An expired link and a revoked one do not work.
    let now = Timestamp::now();
    let expired_token = "expired-token-0123456789";
    app.state
        .store
        .settings()
        .create_invite(&NewInvite {
            workspace_id: app.workspace.id,
            token_hash: parley_server::auth::session::token_hash(expired_token),
            email: "late@example.com".into(),
            role: UserRole::Member,
            invited_by: None,
            created_at: now.add_millis(-8 * 24 * 3600 * 1000),
            expires_at: now.add_millis(-1),
        })
        .await
        .unwrap();
    let (status, _, _) = Browserish::new(&app)
        .get(&format!("/invite/{expired_token}"))
        .await;
    assert_eq!(status, 404);
    let r = app
        .post("/api/v1/invites", &json!({"email": "gone@example.com"}))
        .await;
    let (id, path) = (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["path"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        app.delete(&format!("/api/v1/invites/{id}")).await.status,
        204
    );
    assert_eq!(Browserish::new(&app).get(&path).await.0, 404);
    assert_eq!(
        app.delete(&format!("/api/v1/invites/{id}")).await.status,
        404
    );
}

async fn roles_and_the_last_admin(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (admin_cookie, _) = app.dashboard_session(UserRole::Admin).await;
    let admins = app.get("/api/v1/members").await.body["items"].clone();
    let ann = admins[0]["id"].as_str().unwrap().to_owned();
    let ann_email = admins[0]["email"].as_str().unwrap().to_owned();
    // The only admin can be neither demoted nor removed.
    let r = app
        .patch(
            &format!("/api/v1/members/{ann}"),
            &json!({"role": "member"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "last_admin"), "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last admin")
    );
    let r = app.delete(&format!("/api/v1/members/{ann}")).await;
    assert_eq!((r.status, r.code()), (409, "last_admin"));
    // With a second admin, the first can step down; then the second is the last one.
    let (bob_cookie, _) = app.dashboard_session(UserRole::Member).await;
    let bob = app.get("/api/v1/members").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] != ann.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .patch(&format!("/api/v1/members/{bob}"), &json!({"role": "admin"}))
        .await;
    assert_eq!((r.status, r.body["role"].as_str()), (200, Some("admin")));
    let r = app
        .patch(
            &format!("/api/v1/members/{ann}"),
            &json!({"role": "member"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.delete(&format!("/api/v1/members/{bob}")).await;
    assert_eq!((r.status, r.code()), (409, "last_admin"));
    // Removing a member signs them out at once.
    let r = app.delete(&format!("/api/v1/members/{ann}")).await;
    assert_eq!(r.status, 204);
    assert!(member(&app, &ann_email).await.is_none());
    let r = app.page("/conversations", &admin_cookie).await;
    assert_eq!(r.status, 200, "a redirect to the sign-in page is followed");
    assert!(r.text.contains("Sign in"), "{}", r.text);
    let r = app.page("/settings", &bob_cookie).await;
    assert_eq!(r.status, 200, "bob is the admin now");
    let r = app
        .patch("/api/v1/members/not-a-uuid", &json!({"role": "admin"}))
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .patch(
            &format!("/api/v1/members/{}", uuid::Uuid::now_v7()),
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.status, 404);

    // A member key reads but does not manage.
    let (_, member_key) = key(&app, "reader", "member").await;
    assert_eq!(app.get_as("/api/v1/members", &member_key).await.status, 200);
    assert_eq!(
        app.get_as("/api/v1/settings", &member_key).await.status,
        200
    );
    assert_eq!(
        app.get_as("/api/v1/conversations", &member_key)
            .await
            .status,
        200
    );
    for (method, path, body) in [
        (
            "PATCH",
            format!("/api/v1/members/{bob}"),
            json!({"role": "member"}),
        ),
        ("DELETE", format!("/api/v1/members/{bob}"), json!(null)),
        ("GET", "/api/v1/keys".to_owned(), json!(null)),
        ("POST", "/api/v1/keys".to_owned(), json!({"name": "x"})),
        ("GET", "/api/v1/invites".to_owned(), json!(null)),
        (
            "POST",
            "/api/v1/invites".to_owned(),
            json!({"email": "a@b.c"}),
        ),
        (
            "PATCH",
            "/api/v1/settings".to_owned(),
            json!({"analysis_enabled": false}),
        ),
    ] {
        let req = match method {
            "GET" => app.client.get(app.url(&path)),
            "DELETE" => app.client.delete(app.url(&path)),
            "PATCH" => app.client.patch(app.url(&path)).json(&body),
            _ => app.client.post(app.url(&path)).json(&body),
        };
        let r = app.send(req.bearer_auth(&member_key)).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{method} {path}");
    }
    assert!(
        app.get("/api/v1/settings").await.body["analysis_enabled"]
            .as_bool()
            .unwrap()
    );
}

async fn keys_are_created_used_and_revoked(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (id, secret) = key(&app, "CI", "member").await;
    let listed = |body: &Value| {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .cloned()
            .unwrap()
    };
    let r = app.get("/api/v1/keys").await;
    let k = listed(&r.body);
    assert_eq!(k["name"], "CI");
    assert_eq!(k["prefix"], &secret[..11]);
    assert!(k["last_used_at"].is_null(), "{k}");
    assert!(k.get("secret").is_none(), "the secret is shown once");
    assert!(!r.text.contains(&secret));
    // Using it records when (to the minute: a second use within it writes nothing).
    assert_eq!(
        app.get_as("/api/v1/conversations", &secret).await.status,
        200
    );
    let first = listed(&app.get("/api/v1/keys").await.body)["last_used_at"].clone();
    assert!(first.is_string(), "{first}");
    assert_eq!(
        app.get_as("/api/v1/conversations", &secret).await.status,
        200
    );
    let second = listed(&app.get("/api/v1/keys").await.body)["last_used_at"].clone();
    assert_eq!(first, second);
    // Revoking stops it at once.
    assert_eq!(app.delete(&format!("/api/v1/keys/{id}")).await.status, 204);
    let r = app.get_as("/api/v1/conversations", &secret).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    assert!(listed(&app.get("/api/v1/keys").await.body)["revoked_at"].is_string());
    // Validation.
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "ok", "role": "root"}),
    ] {
        let r = app.post("/api/v1/keys", &body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
    }
    let r = app
        .post("/api/v1/keys", &json!({"name": "x", "extra": 1}))
        .await;
    assert!(r.status == 400 || r.status == 422, "{}", r.text);
    assert_eq!(app.delete("/api/v1/keys/nope").await.status, 400);
    let r = app
        .delete(&format!("/api/v1/keys/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(r.status, 404);
    // An admin key made here manages too; the default role is member.
    let (_, admin_secret) = key(&app, "ops", "admin").await;
    assert_eq!(app.get_as("/api/v1/keys", &admin_secret).await.status, 200);
    let r = app.post("/api/v1/keys", &json!({"name": "default"})).await;
    assert_eq!(r.body["role"], "member");
}

/// A conversation started at `at` (RFC 3339).
async fn started(app: &TestApp, at: &str) {
    let r = app
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"name": "Ava", "company": "Acme"}, "channel": "api",
                    "started_at": at,
                    "messages": [{"role": "user", "content": "hello", "created_at": at}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

fn values(r: &Value) -> Vec<(String, i64)> {
    r["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_str().unwrap().to_owned(),
                p["value"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn time_zone_sets_local_days(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = app.get("/api/v1/settings").await;
    assert_eq!(r.body["time_zone"], "UTC");
    for bad in ["Mars/Olympus_Mons", "+02:00", "", "Europe/Berlin "] {
        let r = app
            .patch("/api/v1/settings", &json!({"time_zone": bad}))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid_time_zone"),
            "{bad:?}: {}",
            r.text
        );
    }
    let r = app
        .patch("/api/v1/settings", &json!({"time_zone": "europe/berlin"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["time_zone"], "Europe/Berlin");
    assert_eq!(
        app.get("/api/v1/settings").await.body["time_zone"],
        "Europe/Berlin"
    );

    // 2026-03-29 in Berlin is 23 hours long: clocks go from 02:00 (+01:00) to 03:00 (+02:00).
    started(&app, "2026-03-28T23:30:00Z").await; // 00:30 on the 29th, local
    started(&app, "2026-03-29T21:30:00Z").await; // 23:30 on the 29th, local
    started(&app, "2026-03-29T22:30:00Z").await; // 00:30 on the 30th, local (a Monday)
    // The figures count analysed conversations (the rollups): analyse now rather than wait for
    // the background pass.
    crate::helpers::analyse_now(&*app.state.store, app.workspace.id).await;
    let q = "from=2026-03-28&to=2026-03-30&interval=day&metric=conversations";
    let r = app.get(&format!("/api/v1/insights/timeseries?{q}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        values(&r.body),
        vec![
            ("2026-03-27T23:00:00.000Z".to_owned(), 0),
            ("2026-03-28T23:00:00.000Z".to_owned(), 2),
            ("2026-03-29T22:00:00.000Z".to_owned(), 1),
        ],
        "the workspace's zone is the default, days start at local midnight"
    );
    // The same window in UTC counts other days.
    let r = app
        .get(&format!("/api/v1/insights/timeseries?{q}&tz=UTC"))
        .await;
    let counts: Vec<i64> = values(&r.body).into_iter().map(|(_, v)| v).collect();
    assert_eq!(counts, vec![1, 2, 0]);
    // A named zone in the query wins over the workspace's.
    let r = app
        .get(&format!(
            "/api/v1/insights/timeseries?{q}&tz=America/New_York"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(values(&r.body)[0].0, "2026-03-28T04:00:00.000Z");
    let r = app.get("/api/v1/insights/timeseries?tz=Nowhere/Land").await;
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
    // The summary names the zone; the heatmap is in local weekdays and hours.
    let r = app
        .get("/api/v1/insights/summary?from=2026-03-28&to=2026-03-30")
        .await;
    assert_eq!(r.body["tz"], "Europe/Berlin");
    assert_eq!(r.body["figures"]["conversations"]["value"], 2 + 1);
    let r = app
        .get("/api/v1/insights/heatmap?from=2026-03-28&to=2026-03-30")
        .await;
    let cells = &r.body["cells"];
    assert_eq!(cells[6][0], 1, "Sunday 00:30");
    assert_eq!(cells[6][23], 1, "Sunday 23:30");
    assert_eq!(cells[0][0], 1, "Monday 00:30");
    let total: i64 = cells
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
        .sum();
    assert_eq!(total, 3);
}

async fn analysis_can_be_switched_off(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = app
        .patch("/api/v1/settings", &json!({"analysis_enabled": false}))
        .await;
    assert_eq!(
        (r.status, &r.body["analysis_enabled"]),
        (200, &json!(false))
    );
    let id: parley_core::ConversationId = app
        .create(crate::helpers::conversation("Ava", 4))
        .await
        .parse()
        .unwrap();
    let store = app.state.store.as_ref();
    let ws = app.workspace.id;
    let off = parley_server::insights::analyse_stale(store, ws, |_| {}).await;
    assert!(
        matches!(
            &off,
            Err(parley_store::StoreError::Conflict {
                code: "analysis_disabled",
                ..
            })
        ),
        "{off:?}"
    );
    assert!(store.insights().insight(ws, id).await.unwrap().is_none());
    // Back on: the conversation changed meanwhile is analysed.
    let r = app
        .patch("/api/v1/settings", &json!({"analysis_enabled": true}))
        .await;
    assert_eq!(r.status, 200);
    crate::channel_support::eventually(20, "the analysis", || async {
        let _ = parley_server::insights::analyse_stale(store, ws, |_| {}).await;
        store.insights().insight(ws, id).await.unwrap()
    })
    .await;
}

async fn settings_page_is_for_admins(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (member_cookie, member_csrf) = app.dashboard_session(UserRole::Member).await;
    let r = app.page("/settings", &member_cookie).await;
    assert_eq!(r.status, 403);
    let r = app
        .post_form(
            "/settings/keys",
            &member_cookie,
            &[("_csrf", &member_csrf), ("name", "x"), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, 403);
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let r = app.page("/settings", &cookie).await;
    assert_eq!(r.status, 200);
    for part in [
        "Members",
        "API keys",
        "Time zone",
        "Analysis",
        "href=\"/settings/webhooks\"",
        "href=\"/settings/retention\"",
        "id=\"nav-settings\"",
    ] {
        assert!(r.text.contains(part), "{part}");
    }
    // Without the CSRF token nothing changes.
    let r = app
        .post_form(
            "/settings/keys",
            &cookie,
            &[("name", "x"), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, 403);
    // A key made on the page is shown once, escaped.
    let r = app
        .post_form(
            "/settings/keys",
            &cookie,
            &[("_csrf", &csrf), ("name", "<b>ops</b>"), ("role", "member")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("ops&#60;/b&#62;") || r.text.contains("ops&lt;/b&gt;"));
    assert!(!r.text.contains("<b>ops</b>"), "escaped");
    assert!(r.text.contains("id=\"new-key-secret\""));
    let r = app.page("/settings", &cookie).await;
    assert!(!r.text.contains("new-key-secret"), "shown once");
    // The last admin rule on the page: a 409 with the message.
    let me = app.get("/api/v1/members").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post_form(
            &format!("/settings/members/{me}/role"),
            &cookie,
            &[("_csrf", &csrf), ("role", "member")],
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(r.text.contains("last admin"), "{}", r.text);
    // A bad time zone on the page is a 422 with the message; a good one is saved.
    let r = app
        .post_form(
            "/settings/workspace",
            &cookie,
            &[("_csrf", &csrf), ("time_zone", "Atlantis/Capital")],
        )
        .await;
    assert_eq!(r.status, 422);
    let r = app
        .post_form(
            "/settings/workspace",
            &cookie,
            &[("_csrf", &csrf), ("time_zone", " Asia/Tokyo ")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = app.get("/api/v1/settings").await.body;
    assert_eq!(
        (s["time_zone"].as_str(), s["analysis_enabled"].as_bool()),
        (Some("Asia/Tokyo"), Some(false))
    );
}

async fn settings_stay_in_their_workspace(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (_other_ws, other_key) = app.other_tenant("globex").await;
    let (_, _) = app.dashboard_session(UserRole::Admin).await;
    let ours = app.get("/api/v1/members").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (our_key, _) = key(&app, "ours", "member").await;
    let invite = app
        .post("/api/v1/invites", &json!({"email": "inv@example.com"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The other workspace sees none of it and can change none of it.
    let r = app.get_as("/api/v1/members", &other_key).await;
    assert!(r.body["items"].as_array().unwrap().is_empty(), "{}", r.text);
    let r = app.get_as("/api/v1/keys", &other_key).await;
    assert!(!r.text.contains(&our_key));
    assert!(
        app.get_as("/api/v1/invites", &other_key).await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let send = |req: reqwest::RequestBuilder| app.send(req.bearer_auth(&other_key));
    let r = send(
        app.client
            .patch(app.url(&format!("/api/v1/members/{ours}")))
            .json(&json!({"role": "member"})),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = send(
        app.client
            .delete(app.url(&format!("/api/v1/members/{ours}"))),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = send(
        app.client
            .delete(app.url(&format!("/api/v1/keys/{our_key}"))),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = send(
        app.client
            .delete(app.url(&format!("/api/v1/invites/{invite}"))),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = send(
        app.client
            .patch(app.url("/api/v1/settings"))
            .json(&json!({"time_zone": "Asia/Tokyo"})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/api/v1/settings").await.body["time_zone"], "UTC");
    // Nor from the other workspace's Settings page.
    let other = app
        .state
        .store
        .workspaces()
        .workspace_by_slug("globex")
        .await
        .unwrap()
        .unwrap();
    let (cookie, csrf) = app.session_in(other.id, UserRole::Admin).await;
    let r = app
        .post_form(
            &format!("/settings/members/{ours}/remove"),
            &cookie,
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post_form(
            &format!("/settings/keys/{our_key}/revoke"),
            &cookie,
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        app.get("/api/v1/members").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let keys = app.get("/api/v1/keys").await.body;
    let k = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == our_key.as_str())
        .unwrap();
    assert!(k["revoked_at"].is_null());
}

crate::both_backends!(
    invite_accept_and_sign_in,
    roles_and_the_last_admin,
    keys_are_created_used_and_revoked,
    time_zone_sets_local_days,
    analysis_can_be_switched_off,
    settings_page_is_for_admins,
    settings_stay_in_their_workspace,
);
