//! What a conversation can make a reviewer's browser do beyond showing it (issue 10): no remote
//! image loads when a conversation opens (a tracking pixel would tell its sender when and from
//! where it was read), and bidi controls in a name cannot reorder the text that follows it.

use std::sync::{Arc, Mutex};

use parley_core::UserRole;
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::TestApp;

/// Requests a [`Remote`] received: (path and query, `Referer`).
type Hits = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A "remote host" on 127.0.0.1: answers every request with a 1x1 GIF and records each
/// request's path and `Referer`.
struct Remote {
    base: String,
    hits: Hits,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Remote {
    async fn start() -> Remote {
        let hits: Hits = Arc::default();
        let seen = hits.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let seen = seen.clone();
                async move {
                    let referer = headers
                        .get("referer")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.lock().unwrap().push((uri.to_string(), referer));
                    // GIF89a, 1x1, one transparent pixel.
                    let gif: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
                    ([("content-type", "image/gif")], gif)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Remote {
            base,
            hits,
            _stop: stop,
        }
    }

    fn hits(&self) -> Vec<(String, Option<String>)> {
        self.hits.lock().unwrap().clone()
    }
}

async fn reviewer(app: &TestApp) {
    let hash = parley_server::auth::hash_password("correct horse battery").unwrap();
    app.state
        .store
        .auth()
        .create_user(
            app.workspace.id,
            "reviewer@example.com",
            &hash,
            UserRole::Admin,
        )
        .await
        .unwrap();
}

/// Issue 10, item 9: an assistant message with a markdown image and a raw `<img>` pointing at
/// another host. Opening the conversation sends that host nothing and puts no `<img>` for it in
/// the DOM (the CSP, `img-src 'self' data: blob:`, would refuse it too); a placeholder names
/// the host, and clicking it opens the image in a new tab without a referrer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_images_load_only_on_a_click() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let remote = Remote::start().await;
    let app = TestApp::spawn().await;
    reviewer(&app).await;
    let host = remote.base.trim_start_matches("http://").to_owned();
    let id = app
        .create(json!({
            "assistant": {"name": "Ava"},
            "channel": "whatsapp",
            "messages": [
                {"role": "user", "content": "Can I see the receipt?"},
                {"role": "assistant", "content": format!(
                    "Here it is: ![receipt]({}/pixel.gif?reader=42)\n\n<img src=\"{}/raw.gif\">",
                    remote.base, remote.base)}
            ]
        }))
        .await;
    let page = app.client.get(app.url("/login")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("img-src 'self' data: blob:;"), "{csp}");

    b.sign_in(&app.base, "reviewer@example.com", "correct horse battery")
        .await;
    b.goto(&format!(
        "{}/conversations?open={id}&tab=transcript",
        app.base
    ))
    .await;
    b.wait_for(
        "the transcript",
        "return !!document.querySelector('#transcript .role-assistant')",
    )
    .await;
    // Give any image the page asked for time to be requested.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        remote.hits(),
        vec![],
        "opening the conversation reached the remote host"
    );
    let images = b
        .js(&format!(
            "return [...document.querySelectorAll('img')].map(i => i.src).filter(s => s.includes('{host}'))"
        ))
        .await;
    assert_eq!(images, json!([]), "no <img> for the remote host in the DOM");
    let link = b
        .js(
            "const a = document.querySelector('#transcript a.remote-image'); \
             return a && {href: a.href, target: a.target, rel: a.rel, text: a.textContent}",
        )
        .await;
    assert_eq!(link["href"], format!("{}/pixel.gif?reader=42", remote.base));
    assert_eq!(link["target"], "_blank");
    let rel = link["rel"].as_str().unwrap();
    assert!(
        rel.contains("noopener") && rel.contains("noreferrer"),
        "{rel}"
    );
    assert!(
        link["text"]
            .as_str()
            .unwrap()
            .contains(&format!("receipt — image from {host}")),
        "{link}"
    );
    b.screenshot("remote-image-placeholder").await;

    // The click-through: a new tab loads it, with no referrer.
    b.click("#transcript a.remote-image").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while remote.hits().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // (The new tab also asks the host for its /favicon.ico, referred by the image itself.)
    let hits: Vec<_> = remote
        .hits()
        .into_iter()
        .filter(|(path, _)| path != "/favicon.ico")
        .collect();
    assert_eq!(
        hits,
        vec![("/pixel.gif?reader=42".to_owned(), None)],
        "one request, on the click, without a Referer"
    );
    assert!(
        remote
            .hits()
            .iter()
            .all(|(_, referer)| !referer.as_deref().unwrap_or("").contains(&app.base)),
        "Parley's address never leaks: {:?}",
        remote.hits()
    );
    let windows = b.client.windows().await.unwrap();
    assert_eq!(windows.len(), 2, "opened in a new tab");
    b.close().await;
}

/// Issue 10, item 13 (part): a company and an assistant name carrying U+202E RIGHT-TO-LEFT
/// OVERRIDE do not reorder what follows them on the page: in the panel's head the contact still
/// comes after the company (`Acme · ana@example.com`), and on Test Chat the model still comes
/// after the assistant's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_controls_do_not_reorder_what_follows() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    reviewer(&app).await;
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "\u{202E}Ava Bot", "company": "\u{202E}Acme Corp",
                    "settings": {"provider": {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-4o-mini",
                                              "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let id = app
        .create(json!({
            "assistant": {"id": assistant},
            "channel": "widget",
            "contact": "ana@example.com",
            "session_id": "\u{202E}sess-42",
            "messages": [{"role": "user", "content": "hello"}]
        }))
        .await;
    b.sign_in(&app.base, "reviewer@example.com", "correct horse battery")
        .await;
    // Where each needle is drawn under `root`: [left, right] of the characters themselves
    // (a range over the needle in its text node), so the order on screen is measured.
    let positions = |root: &str, needles: [&str; 2]| {
        format!(
            "const root = document.querySelector({root:?}); const out = [];
             for (const needle of {needles:?}) {{
               const w = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
               let found = null;
               while (w.nextNode()) if (w.currentNode.data.includes(needle)) {{ found = w.currentNode; break; }}
               const at = found.data.indexOf(needle), r = document.createRange();
               r.setStart(found, at); r.setEnd(found, at + needle.length);
               const box = r.getBoundingClientRect(); out.push([box.left, box.right]);
             }}
             return out;"
        )
    };
    let in_order = |v: &Value| {
        let (first, second) = (&v[0], &v[1]);
        second[0].as_f64().unwrap() >= first[1].as_f64().unwrap() - 1.0
    };

    b.goto(&format!("{}/conversations?open={id}", app.base))
        .await;
    b.wait_for(
        "the panel",
        "return !!document.querySelector('#panel .panel-title')",
    )
    .await;
    let head = b
        .js(&positions("#panel .panel-title .muted", ["Acme", "ana@"]))
        .await;
    b.screenshot("bidi-panel-head").await;
    assert!(
        in_order(&head),
        "the contact moved before the company: {head}"
    );

    b.goto(&format!("{}/test-chat?assistant={assistant}", app.base))
        .await;
    b.wait_for(
        "the greeting",
        "return !!document.querySelector('#tc-hello')",
    )
    .await;
    let hello = b.js(&positions("#tc-hello", ["Ava", "gpt-4o-mini"])).await;
    b.screenshot("bidi-test-chat").await;
    assert!(in_order(&hello), "the model moved before the name: {hello}");
    b.close().await;
}
