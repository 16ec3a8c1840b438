//! Every error answer has Parley's error body, on every kind of route: the API, the gateway,
//! webhooks, the widget's endpoints and the dashboard — including the errors that the web
//! framework itself produces before a handler runs (unknown route 404, wrong method 405, body
//! over a limit 413, wrong `Content-Type` 415, a query or body that does not parse 400).
//! Dashboard routes asked for by a browser (`Accept: text/html`) get an HTML page carrying the
//! same code and message; everything else gets `{"error": {"code", "message"}}`.

use parley_core::UserRole;
use reqwest::Method;

use crate::helpers::{Resp, TestApp};

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// Asserts `r` is a JSON error with `status` and `code` and a non-empty message.
fn json_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert!(
        r.headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
        "{what}: {:?}",
        r.headers.get("content-type")
    );
    assert_eq!(r.code(), code, "{what}: {}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        r.text
    );
}

/// Asserts `r` is an HTML error page with `status` naming `code`.
fn html_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert!(
        r.headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html")),
        "{what}: {:?}",
        r.headers.get("content-type")
    );
    assert!(
        r.text.contains(&format!("error code: {code}")),
        "{what}: {}",
        r.text
    );
    assert!(r.headers.contains_key("content-security-policy"), "{what}");
}

/// One request expected to fail with `status` and `code`.
struct Case {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(method: Method, path: impl Into<String>, status: u16, code: &'static str) -> Case {
    Case {
        method,
        path: path.into(),
        content_type: None,
        body: Vec::new(),
        status,
        code,
    }
}

impl Case {
    fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = Some(content_type);
        self.body = body.into();
        self
    }

    /// Sends the request with the API key, `cookie` when given, and `accept` when given.
    async fn send(&self, app: &TestApp, cookie: Option<&str>, accept: Option<&str>) -> Resp {
        let mut req = app
            .client
            .request(self.method.clone(), app.url(&self.path))
            .bearer_auth(&app.key);
        for (name, value) in [
            ("content-type", self.content_type),
            ("cookie", cookie),
            ("accept", accept),
        ] {
            if let Some(v) = value {
                req = req.header(name, v);
            }
        }
        if !self.body.is_empty() {
            req = req.body(self.body.clone());
        }
        app.send(req).await
    }

    fn what(&self, accept: Option<&str>) -> String {
        format!("{} {} (accept {accept:?})", self.method, self.path)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_errors_have_the_error_body_on_every_kind_of_route() {
    use Method as M;
    let app = TestApp::spawn_with(|s| s.max_body_bytes = 64 * 1024).await;
    let id = uuid::Uuid::now_v7();
    let big = |n: usize| vec![b' '; n];
    let json = "application/json";
    const MNA: &str = "method_not_allowed";

    // Machine routes: always JSON, whatever the client accepts.
    let machine = [
        // 404: no such route.
        case(M::GET, "/api/v1/nope", 404, "not_found"),
        case(M::GET, "/v1/nope", 404, "not_found"),
        case(M::POST, "/webhooks/nope", 404, "not_found"),
        case(M::GET, "/widget/v1/nope", 404, "not_found"),
        // 405: a route that exists, with the wrong method.
        case(M::DELETE, "/api/v1/conversations/count", 405, MNA),
        case(M::PUT, "/api/v1/conversations", 405, MNA),
        case(M::GET, "/v1/chat/completions", 405, MNA),
        case(M::GET, format!("/webhooks/telegram/{id}"), 405, MNA),
        case(M::PUT, format!("/webhooks/whatsapp/{id}"), 405, MNA),
        case(M::PUT, "/widget/v1/messages", 405, MNA),
        case(M::POST, "/openapi.json", 405, MNA),
        // 413: over the body limit (API 64 KiB here, gateway 8 MiB, webhooks 2 MiB).
        case(M::POST, "/api/v1/conversations", 413, "body_too_large").body(json, big(65 << 10)),
        case(M::POST, "/v1/chat/completions", 413, "body_too_large").body(json, big((8 << 20) + 1)),
        case(
            M::POST,
            format!("/webhooks/telegram/{id}"),
            413,
            "body_too_large",
        )
        .body(json, big((2 << 20) + 1)),
        case(
            M::POST,
            format!("/webhooks/whatsapp/{id}"),
            413,
            "body_too_large",
        )
        .body(json, big((2 << 20) + 1)),
        // 415 and 400 (API and gateway: Parley's own checks, kept).
        case(
            M::POST,
            "/api/v1/conversations",
            415,
            "unsupported_media_type",
        )
        .body("text/plain", "{}"),
        case(M::POST, "/api/v1/conversations", 400, "invalid_json").body(json, "{"),
        case(
            M::GET,
            "/api/v1/conversations?limit=lots",
            400,
            "invalid_parameter",
        ),
        case(M::POST, "/v1/chat/completions", 400, "invalid_json").body(json, "{"),
    ];
    for accept in [None, Some(BROWSER_ACCEPT)] {
        for c in &machine {
            let r = c.send(&app, None, accept).await;
            json_error(&r, c.status, c.code, &c.what(accept));
            if c.status == 405 {
                assert!(
                    r.headers.contains_key("allow"),
                    "{}: Allow is kept",
                    c.what(accept)
                );
            }
        }
    }

    // Dashboard routes: JSON for API-style clients, an HTML page for browsers.
    let (cookie, csrf) = app.dashboard_session(UserRole::Member).await;
    let form = "application/x-www-form-urlencoded";
    let dashboard = [
        case(M::GET, "/nope", 404, "not_found"),
        case(M::GET, "/assets/nope.css", 404, "not_found"),
        case(M::DELETE, "/login", 405, MNA),
        case(M::PUT, "/conversations", 405, MNA),
        case(M::POST, "/login", 413, "body_too_large").body(form, big((2 << 20) + 1)),
        case(M::POST, "/login", 415, "unsupported_media_type").body(json, "{}"),
        case(M::GET, "/login?next=/a&next=/b", 400, "bad_request"),
        case(
            M::GET,
            format!("/conversations/{id}/transcript?page=first"),
            400,
            "bad_request",
        ),
    ];
    for accept in [None, Some("application/json"), Some(BROWSER_ACCEPT)] {
        for c in &dashboard {
            let r = c.send(&app, Some(&cookie), accept).await;
            if accept == Some(BROWSER_ACCEPT) {
                html_error(&r, c.status, c.code, &c.what(accept));
            } else {
                json_error(&r, c.status, c.code, &c.what(accept));
            }
        }
    }

    // Test Chat's endpoint answers the page's script: JSON errors, including the extractor's.
    let r = app
        .send(
            app.client
                .post(app.url("/test-chat/send"))
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .header("content-type", json)
                .body("{"),
        )
        .await;
    json_error(&r, 400, "invalid_json", "POST /test-chat/send {");
}

/// The gateway's errors from the provider are the provider's answer, passed through unchanged
/// even when they are not JSON (only Parley's own errors take Parley's form).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_passes_a_providers_plain_text_error_through() {
    use parley_testkit::stub_provider::{Reply, StubProvider};
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::Json {
        status: 400,
        body: serde_json::json!("the upstream refused this"),
        headers: vec![("content-type", "text/plain; charset=utf-8".into())],
    });
    let r = app
        .post(
            "/api/v1/assistants",
            &serde_json::json!({"name": "Ava", "company": "Acme", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/v1/chat/completions",
            &serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text, "\"the upstream refused this\"");
}
