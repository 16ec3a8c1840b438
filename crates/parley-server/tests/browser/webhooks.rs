//! The outgoing webhooks page (issue 16): an admin adds an endpoint (its secret shown once),
//! sees a delivery arrive in the log after a conversation is stored, and sends it again; a
//! screenshot of the page with its log.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::Browser;
use crate::helpers::TestApp;

/// A receiver on 127.0.0.1 that answers every POST 200 and counts them.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(axum::routing::post(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "thanks"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/parley", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

/// Reloads `url` until `script` is true (30 s at most).
async fn reload_until(b: &Browser, url: &str, what: &str, script: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.goto(url).await;
        if b.js(script).await == serde_json::Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_an_endpoint_sees_a_delivery_and_sends_it_again() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let (url, hits) = receiver().await;
    let base = b.sign_in_new_admin(&app, "webhooks password 1").await;
    b.goto(&format!("{base}/settings/webhooks")).await;
    assert_eq!(b.count("#no-endpoints").await, 1);
    b.click("#new-url").await;
    b.keys(&url).await;
    b.click("#new-description").await;
    b.keys("CRM sync").await;
    b.click("#add-endpoint input[value=\"conversation.created\"]")
        .await;
    b.click("#add-endpoint input[value=\"message.created\"]")
        .await;
    b.click("#add-endpoint-button").await;
    b.wait_for(
        "the new secret",
        "const s = document.querySelector('#secret-value'); return !!s && s.textContent.startsWith('whsec_')",
    )
    .await;
    let id = b
        .js("return document.querySelector('#endpoint-list li').dataset.id")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let listed = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(listed.body["description"], "CRM sync");
    assert_eq!(
        listed.body["event_types"],
        serde_json::json!(["conversation.created", "message.created"])
    );

    app.create(crate::helpers::conversation("Ava", 1)).await;
    let page = format!("{base}/settings/webhooks?endpoint={id}");
    reload_until(
        &b,
        &page,
        "both deliveries to succeed",
        "return document.querySelectorAll('tr.delivery[data-status=\"succeeded\"]').length === 2",
    )
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    b.screenshot("webhooks-settings").await;

    let first = b
        .js("return document.querySelector('tr.delivery').dataset.id")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    b.click(&format!("tr.delivery[data-id=\"{first}\"] .send-again"))
        .await;
    b.wait_for(
        "the notice",
        "const n = document.querySelector('#webhook-notice'); return !!n && n.textContent.includes('Sending again')",
    )
    .await;
    reload_until(
        &b,
        &page,
        "the second attempt",
        &format!(
            "const r = document.querySelector('tr.delivery[data-id=\"{first}\"]');
             return !!r && r.dataset.status === 'succeeded' && r.querySelector('.attempts').textContent.trim() === '2'"
        ),
    )
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), 3, "sent once more");
    b.screenshot("webhooks-send-again").await;
    assert!(b.console_errors().await.is_empty());
    b.close().await;
}
