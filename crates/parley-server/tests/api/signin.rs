//! Sign-in hardening over HTTP: the redirect after signing in stays on this server whatever
//! `next` says, the rate limit holds under concurrent attempts, and the sign-in cookies are
//! `Secure` when the operator says the server is behind HTTPS.

use parley_core::{Timestamp, UserRole};

use crate::dashboard::{Browserish, user};
use crate::helpers::{Backend, TestApp};

crate::both_backends!(
    hostile_next_values_never_leave_the_server,
    concurrent_wrong_passwords_are_checked_at_most_five_times_per_email,
    concurrent_attempts_from_one_client_are_checked_at_most_twenty_times,
);

/// `next` values that must not lead anywhere but this server (as they arrive after the query
/// string or form is decoded).
const HOSTILE_NEXT: &[&str] = &[
    "//evil.example",
    "///evil.example",
    "https://evil.example/",
    "http:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/x",
    "/\r\n/x",
    "/x\r\nSet-Cookie: a=b",
    "\t//evil.example",
    " //evil.example",
    "/..//evil.example",
    "/./..//evil.example",
    "/%2e%2e//evil.example",
    "/\u{0}/evil.example",
    "/\u{7f}/evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "",
];

/// Every hostile `next`: the sign-in page carries the home page instead, signing in with it
/// (a form posted with the raw value) redirects home and starts the session, and a signed-in
/// visit of `/login?next=...` redirects home too. A local `next` is followed.
async fn hostile_next_values_never_leave_the_server(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    user(&app, "ana@example.com", UserRole::Member).await;
    for next in HOSTILE_NEXT.iter().copied().chain(["/assistants?tab=all"]) {
        let expected = if next.starts_with("/assistants") {
            next
        } else {
            "/conversations"
        };
        let query: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let mut b = Browserish::new(&app);
        let (status, _, page) = b.get(&format!("/login?next={query}")).await;
        assert_eq!(status, 200, "{next:?}: {page}");
        assert_eq!(Browserish::hidden(&page, "next"), expected, "{next:?}");
        let csrf = Browserish::hidden(&page, "_csrf");
        let (status, headers, body) = b
            .post(
                "/login",
                &[
                    ("_csrf", &csrf),
                    ("email", "ana@example.com"),
                    ("password", "correct horse battery"),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(status, 303, "{next:?}: {body}");
        assert_eq!(headers["location"], expected, "{next:?}");
        assert!(
            b.cookie_header().contains("parley_session="),
            "{next:?}: signed in"
        );
        let (status, headers, _) = b.get(&format!("/login?next={query}")).await;
        assert_eq!(
            (status, headers["location"].to_str().unwrap()),
            (303, expected),
            "{next:?}: already signed in"
        );
    }
}

/// The sign-in form's CSRF cookie and token, for posting many attempts at once.
async fn login_form(app: &TestApp) -> (String, String) {
    let mut b = Browserish::new(app);
    let (_, _, page) = b.get("/login").await;
    (b.cookie_header(), Browserish::hidden(&page, "_csrf"))
}

/// A client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    crate::helpers::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A sign-in form post with the form's CSRF `cookie` and `csrf` token.
fn sign_in_request(
    http: &reqwest::Client,
    app: &TestApp,
    (cookie, csrf): (&str, &str),
    email: &str,
    password: &str,
) -> reqwest::RequestBuilder {
    http.post(app.url("/login"))
        .header("cookie", cookie)
        .form(&[("_csrf", csrf), ("email", email), ("password", password)])
}

/// Posts `attempts` sign-ins (email, password) all at once from one client; returns how many
/// were answered 401 (the password was checked and wrong) and 429 (refused unchecked).
async fn concurrent_sign_ins(app: &TestApp, attempts: Vec<(String, String)>) -> (usize, usize) {
    let (cookie, csrf) = login_form(app).await;
    let http = no_redirects();
    let requests = attempts.into_iter().map(|(email, password)| {
        let req = sign_in_request(&http, app, (&cookie, &csrf), &email, &password);
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let handles: Vec<_> = requests.map(tokio::spawn).collect();
    let (mut wrong, mut refused) = (0, 0);
    for h in handles {
        match h.await.unwrap() {
            401 => wrong += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (wrong, refused)
}

async fn stored_failures(app: &TestApp, subject: &str) -> u64 {
    app.state
        .store
        .auth()
        .login_failures_since(subject, Timestamp::now().add_millis(-3_600_000))
        .await
        .unwrap()
}

/// 40 wrong passwords for one email at once: exactly 5 are checked (limit 5), the rest are
/// refused unchecked, and 5 failures are stored.
async fn concurrent_wrong_passwords_are_checked_at_most_five_times_per_email(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    user(&app, "ana@example.com", UserRole::Member).await;
    let attempts = (0..40)
        .map(|i| ("ana@example.com".to_owned(), format!("guess number {i}")))
        .collect();
    let (wrong, refused) = concurrent_sign_ins(&app, attempts).await;
    assert_eq!((wrong, refused), (5, 35), "5 checked, 35 refused");
    assert_eq!(stored_failures(&app, "email:ana@example.com").await, 5);
    assert_eq!(stored_failures(&app, "ip:127.0.0.1").await, 5);
}

/// 40 attempts from one client for 40 different emails at once: exactly 20 are checked (limit
/// 20 per client address); a successful sign-in gives its attempt back.
async fn concurrent_attempts_from_one_client_are_checked_at_most_twenty_times(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    user(&app, "ana@example.com", UserRole::Member).await;
    // A successful sign-in first: it must not use up one of the client's 20 attempts.
    let (cookie, csrf) = login_form(&app).await;
    let ok = sign_in_request(
        &no_redirects(),
        &app,
        (&cookie, &csrf),
        "ana@example.com",
        "correct horse battery",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(stored_failures(&app, "ip:127.0.0.1").await, 0);

    let attempts = (0..40)
        .map(|i| {
            (
                format!("nobody{i}@example.com"),
                "a wrong password".to_owned(),
            )
        })
        .collect();
    let (wrong, refused) = concurrent_sign_ins(&app, attempts).await;
    assert_eq!((wrong, refused), (20, 20), "20 checked, 20 refused");
    assert_eq!(stored_failures(&app, "ip:127.0.0.1").await, 20);
}

/// With `secure_cookies`, the sign-in form's CSRF cookie and the session cookie are `Secure`;
/// without it (plain HTTP on a laptop) neither is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_cookies_are_secure_behind_https() {
    for secure in [true, false] {
        let app = TestApp::spawn_with(|s| s.secure_cookies = secure).await;
        user(&app, "ana@example.com", UserRole::Member).await;
        let http = no_redirects();
        let page = http.get(app.url("/login")).send().await.unwrap();
        let set_cookies = |res: &reqwest::Response| -> Vec<String> {
            res.headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        let csrf_cookie = set_cookies(&page)
            .into_iter()
            .find(|c| c.starts_with("parley_login_csrf="))
            .expect("the form sets its CSRF cookie");
        assert_eq!(
            csrf_cookie.contains("; Secure"),
            secure,
            "secure_cookies = {secure}: {csrf_cookie}"
        );
        let pair = csrf_cookie.split(';').next().unwrap().to_owned();
        let html = page.text().await.unwrap();
        let csrf = Browserish::hidden(&html, "_csrf");
        let res = sign_in_request(
            &http,
            &app,
            (&pair, &csrf),
            "ana@example.com",
            "correct horse battery",
        )
        .send()
        .await
        .unwrap();
        assert_eq!(res.status(), 303);
        let session = set_cookies(&res)
            .into_iter()
            .find(|c| c.starts_with("parley_session="))
            .expect("a session cookie");
        assert_eq!(session.contains("; Secure"), secure, "{session}");
    }
}
