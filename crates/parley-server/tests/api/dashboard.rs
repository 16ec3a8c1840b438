//! The dashboard over plain HTTP: sign-in, sessions, CSRF, the rate limit, roles, headers and
//! the asset budget. (What needs a browser is in tests/browser.)

use parley_core::UserRole;
use reqwest::redirect::Policy;
use serde_json::json;

use crate::helpers::Backend;
use crate::helpers::TestApp;

/// A client that keeps cookies by hand and does not follow redirects.
pub(crate) struct Browserish<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl<'a> Browserish<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Browserish {
            app,
            http: crate::helpers::http_client_builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    pub(crate) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !val.is_empty() {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let res = self
            .http
            .get(self.app.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.remember(&res);
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, headers, res.text().await.unwrap())
    }

    pub(crate) async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let res = self
            .http
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.remember(&res);
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, headers, res.text().await.unwrap())
    }

    /// The value of a hidden input named `name` in `html`.
    pub(crate) fn hidden(html: &str, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in page"))
            + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    }

    pub(crate) async fn sign_in(
        &mut self,
        email: &str,
        password: &str,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let (_, _, page) = self.get("/login").await;
        let csrf = Self::hidden(&page, "_csrf");
        self.post(
            "/login",
            &[
                ("_csrf", &csrf),
                ("email", email),
                ("password", password),
                ("next", "/conversations"),
            ],
        )
        .await
    }
}

pub(crate) async fn user(app: &TestApp, email: &str, role: UserRole) {
    let hash = parley_server::auth::hash_password("correct horse battery").unwrap();
    app.state
        .store
        .auth()
        .create_user(app.workspace.id, email, &hash, role)
        .await
        .unwrap();
}

async fn pages_need_a_session_and_sign_in_works(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    user(&app, "ana@example.com", UserRole::Admin).await;
    app.create(json!({"assistant": {"name": "Ava"}, "messages": [{"role": "user", "content": "hello there"}]})).await;
    let mut b = Browserish::new(&app);
    let (status, headers, _) = b.get("/conversations?q=hello").await;
    assert_eq!(status, 303);
    assert_eq!(
        headers["location"],
        "/login?next=%2Fconversations%3Fq%3Dhello"
    );

    let (status, _, page) = b.sign_in("ana@example.com", "wrong password!").await;
    assert_eq!(status, 401);
    assert!(page.contains("Wrong email or password."));
    let (status, headers, _) = b.sign_in("ANA@example.com", "correct horse battery").await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/conversations")
    );
    let session = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("parley_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attr), "{attr}: {session}");
    }

    let (status, headers, page) = b.get("/conversations").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-security-policy"],
        parley_server::dashboard::CSP
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(page.contains("hello there"));
    assert!(
        page.contains("id=\"nav-count\" title=\"1 conversations\">1<"),
        "the badge"
    );
    assert!(
        !page.contains("<script>") && !page.contains("style=\""),
        "no inline script or style under the CSP"
    );

    // Signing out needs the CSRF token, then ends the session.
    let csrf = Browserish::hidden(&page, "_csrf");
    let (status, _, _) = b.post("/logout", &[("_csrf", "forged")]).await;
    assert_eq!(status, 403);
    let (status, headers, _) = b.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/login")
    );
    assert_eq!(b.get("/conversations").await.0, 303);
}

async fn the_login_form_needs_its_csrf_token_and_is_rate_limited(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    user(&app, "ana@example.com", UserRole::Member).await;
    let mut b = Browserish::new(&app);
    // A form posted from elsewhere carries no matching token.
    let (status, _, page) = b
        .post(
            "/login",
            &[
                ("_csrf", "x"),
                ("email", "ana@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(status, 403, "{page}");
    for _ in 0..5 {
        assert_eq!(
            b.sign_in("ana@example.com", "not the password").await.0,
            401
        );
    }
    let (status, _, page) = b.sign_in("ana@example.com", "correct horse battery").await;
    assert_eq!(status, 429, "even the right password waits out the window");
    assert!(page.contains("Too many failed sign-ins"));
    // Failures are counted per address too: another email from the same client still works.
    user(&app, "bob@example.com", UserRole::Member).await;
    assert_eq!(
        b.sign_in("bob@example.com", "correct horse battery")
            .await
            .0,
        303
    );
}

async fn actions_check_csrf_and_role(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    user(&app, "admin@example.com", UserRole::Admin).await;
    user(&app, "member@example.com", UserRole::Member).await;
    let id = app
        .create(json!({"assistant": {"name": "Ava"}, "rating": {"score": 2}, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let mut member = Browserish::new(&app);
    member
        .sign_in("member@example.com", "correct horse battery")
        .await;
    let (_, _, page) = member.get(&format!("/conversations?open={id}")).await;
    assert!(
        page.contains("Remove rating") && !page.contains("delete-dialog"),
        "members may not delete"
    );
    let csrf = Browserish::hidden(&page, "_csrf");
    let path = format!("/conversations/{id}/delete");
    assert_eq!(
        member.post(&path, &[("_csrf", &csrf)]).await.0,
        403,
        "members cannot delete"
    );
    let rating = format!("/conversations/{id}/rating/delete");
    assert_eq!(member.post(&rating, &[("_csrf", "forged")]).await.0, 403);
    let (status, headers, _) = member
        .post(
            &rating,
            &[
                ("_csrf", &csrf),
                ("back", &format!("/conversations?open={id}")),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .contains("notice=rating_removed")
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{id}")).await.body["rating"],
        serde_json::Value::Null
    );

    let mut admin = Browserish::new(&app);
    admin
        .sign_in("admin@example.com", "correct horse battery")
        .await;
    let (_, _, page) = admin.get(&format!("/conversations?open={id}")).await;
    let csrf = Browserish::hidden(&page, "_csrf");
    assert_eq!(admin.post(&path, &[("_csrf", "forged")]).await.0, 403);
    let (status, headers, _) = admin
        .post(
            &path,
            &[("_csrf", &csrf), ("back", "/conversations?status=active")],
        )
        .await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/conversations?status=active&notice=deleted")
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{id}")).await.status,
        404
    );
    // A back address elsewhere is not followed.
    let other = app.create(json!({"assistant": {"name": "Ava"}})).await;
    let (_, headers, _) = admin
        .post(
            &format!("/conversations/{other}/delete"),
            &[("_csrf", &csrf), ("back", "https://evil.example/")],
        )
        .await;
    assert_eq!(headers["location"], "/conversations?notice=deleted");
}

async fn users_see_only_their_workspace(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (other_ws, _) = app.other_tenant("other").await;
    let hash = parley_server::auth::hash_password("correct horse battery").unwrap();
    app.state
        .store
        .auth()
        .create_user(other_ws.id, "eve@example.com", &hash, UserRole::Admin)
        .await
        .unwrap();
    let id = app.create(json!({"assistant": {"name": "Secret Agent"}, "messages": [{"role": "user", "content": "tenant A"}]})).await;
    let mut eve = Browserish::new(&app);
    eve.sign_in("eve@example.com", "correct horse battery")
        .await;
    let (_, _, page) = eve.get("/conversations").await;
    assert!(!page.contains("Secret Agent") && page.contains("No conversations yet"));
    let (_, _, page) = eve.get(&format!("/conversations?open={id}")).await;
    assert!(!page.contains("tenant A"));
    assert_eq!(eve.get(&format!("/conversations/{id}/panel")).await.0, 404);
    assert_eq!(
        eve.get(&format!("/conversations/{id}/transcript?page=1"))
            .await
            .0,
        404
    );
    let (_, _, page) = eve.get("/conversations").await;
    let csrf = Browserish::hidden(&page, "_csrf");
    assert_eq!(
        eve.post(&format!("/conversations/{id}/delete"), &[("_csrf", &csrf)])
            .await
            .0,
        404
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{id}")).await.status,
        200
    );
}

async fn the_dashboards_own_css_and_js_stay_under_50_kb_gzipped(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (mut total, mut player) = (0, 0);
    for asset in ["app.css", "app.js", "player.css", "player.js"] {
        let res = crate::helpers::http_client()
            .get(app.url(&format!(
                "/assets/{asset}?v={}",
                parley_server::dashboard::asset_version()
            )))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["content-encoding"], "gzip");
        assert!(
            res.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let n = res.bytes().await.unwrap().len();
        total += n;
        if asset.starts_with("player") {
            player += n;
        }
    }
    eprintln!("dashboard CSS + JS, gzipped as served: {total} bytes (audio player: {player})");
    assert!(total < 50 * 1024, "{total} bytes");
    // The audio player (issue 15) adds at most 10 KB gzipped.
    assert!(player <= 10 * 1024, "the player: {player} bytes");
}

/// A dashboard form whose store call fails answers the dashboard's HTML error page (status 500,
/// the stable code in the text), not the API's JSON error body; admin forms refuse a stale CSRF
/// token and members with HTML pages too.
async fn a_failing_form_answers_an_html_error_page(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let path = format!("/settings/webhooks/{}/secret", uuid::Uuid::now_v7());
    let r = app.post_form(&path, &cookie, &[("_csrf", "stale")]).await;
    assert_eq!(r.status, 403);
    assert!(r.text.contains("Form expired"), "{}", r.text);
    let (member, member_csrf) = app.dashboard_session(UserRole::Member).await;
    let r = app
        .post_form(&path, &member, &[("_csrf", &member_csrf)])
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.text.contains("Only administrators can manage webhooks."),
        "{}",
        r.text
    );
    let r = app.post_form(&path, &cookie, &[("_csrf", &csrf)]).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // The store fails: its table is gone.
    let url = app.state.settings.database_url.clone();
    let rename = "ALTER TABLE webhook_endpoints RENAME TO webhook_endpoints_gone";
    parley_store::testing::execute(&url, rename, rename).await;
    let r = app.post_form(&path, &cookie, &[("_csrf", &csrf)]).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        r.headers
    );
    assert!(
        r.text.contains("<h1>Internal Server Error</h1>"),
        "{}",
        r.text
    );
    assert!(r.text.contains("(error code: "), "{}", r.text);
    assert!(
        !r.text.contains("webhook_endpoints"),
        "no detail shown: {}",
        r.text
    );
}

crate::both_backends!(
    a_failing_form_answers_an_html_error_page,
    pages_need_a_session_and_sign_in_works,
    the_login_form_needs_its_csrf_token_and_is_rate_limited,
    actions_check_csrf_and_role,
    users_see_only_their_workspace,
    the_dashboards_own_css_and_js_stay_under_50_kb_gzipped,
);
