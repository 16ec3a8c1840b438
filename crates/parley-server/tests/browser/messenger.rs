//! A Messenger conversation in the dashboard: an admin connects a Facebook Page from the
//! assistant page (the fake Graph API proves the Page token), a customer's message comes through
//! the real webhook (fbmq's recorded text body, signed as Meta signs it) and the assistant
//! answers; the panel shows the Messenger badge and the open 24-hour window, and a reply from
//! the composer reaches the fake Send API. A customer who wrote two days ago gets the composer
//! with message tags only, and the tagged reply goes out as `MESSAGE_TAG`.

use parley_server::channels::whatsapp::sign;
use parley_testkit::fake_graph::FakeGraph;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::{TestApp, shared_dir};

const PASSWORD: &str = "correct horse battery";
const APP_SECRET: &str = "meta-app-secret-messenger-0123";
const PAGE: &str = "1691462197845448";
const PAGE_TOKEN: &str = "EAAG-page-token-for-the-browser";
const ANSWER: &str = "Yes, we ship to Lyon within 3 days.";

/// fbmq's recorded text body from `customer`, with a fresh mid, time and text.
fn text(customer: &str, mid: &str, at_ms: i64, body: &str) -> Value {
    let path = shared_dir().join("fixtures/messenger/fbmq_test_webhook_bodies.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut p = doc["text"].clone();
    let e = &mut p["entry"][0]["messaging"][0];
    e["sender"]["id"] = json!(customer);
    e["timestamp"] = json!(at_ms);
    e["message"]["mid"] = json!(mid);
    e["message"]["text"] = json!(body);
    p
}

async fn deliver(app: &TestApp, channel: &str, payload: &Value) {
    let body = serde_json::to_vec(payload).unwrap();
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/webhooks/messenger/{channel}")))
                .header("x-hub-signature-256", sign(APP_SECRET, &body))
                .body(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Waits (at most 60 s) until no background job is queued or running: every delivery, answer
/// and send so far has been processed.
async fn settled(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stats = app.state.store.jobs().queue_stats().await.unwrap();
        if stats.iter().all(|s| s.state.as_str() == "failed") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the background work"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messenger_conversation_is_answered_from_the_dashboard() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let graph = FakeGraph::start("EAAG-user-token").await.unwrap();
    graph.add_page(PAGE, "Acme Shoes", PAGE_TOKEN);
    let base = graph.base_url.clone();
    let app = TestApp::spawn_with(move |s| {
        s.messenger_graph_base_url = base;
        s.messenger_media_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text(ANSWER));
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme Shoes", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let site = b.sign_in_new_admin(&app, PASSWORD).await;

    // The admin connects the Page from the assistant page.
    b.goto(&format!("{site}/assistants/{assistant}#channels"))
        .await;
    b.js(&format!(
        "const d = document.querySelector('#connect-messenger'); d.open = true;
         const f = d.querySelector('form');
         f.page_id.value = {PAGE:?}; f.access_token.value = {PAGE_TOKEN:?};
         f.app_secret.value = {APP_SECRET:?}; f.verify_token.value = 'verify-the-page';
         f.requestSubmit(); return true"
    ))
    .await;
    b.wait_for(
        "the connected Page",
        "const n = document.querySelector('#channel-notice'); return !!n && n.classList.contains('ok') && !!document.querySelector('#channels .badge.ch-messenger')",
    )
    .await;
    let listed = b.text("#channels .versions").await;
    assert!(
        listed.contains(PAGE) && listed.contains("Page Acme Shoes"),
        "{listed}"
    );
    assert!(!listed.contains(PAGE_TOKEN), "the token is never shown");
    b.screenshot("messenger-connected").await;
    let channel = app
        .get(&format!("/api/v1/assistants/{assistant}/channels"))
        .await
        .body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A customer writes; the assistant answers through the Send API.
    let now = parley_core::Timestamp::now().0;
    deliver(
        &app,
        &channel,
        &text("1134343043305865", "mid.b-1", now, "Do you ship to Lyon?"),
    )
    .await;
    settled(&app).await;
    assert_eq!(graph.messenger_sends()[0]["message"]["text"], ANSWER);
    let id = app.list_ids("channel=messenger").await.pop().unwrap();
    b.goto(&format!("{site}/conversations?open={id}&tab=transcript"))
        .await;
    b.wait_for(
        "the Messenger panel with its composer",
        &format!(
            "const t = document.querySelector('#transcript'); return !!t && t.textContent.includes('Do you ship to Lyon?')
             && t.textContent.includes({ANSWER:?}) && !!document.querySelector('.panel-head .badge.ch-messenger')
             && !!document.querySelector('.window.open') && !!document.querySelector('#message-tag')
             && document.querySelector('#message-tag').value === '' && !document.querySelector('#tag-note')"
        ),
    )
    .await;
    // The reply from the composer reaches the fake Send API.
    b.js("const t = document.querySelector('#composer-text'); t.value = 'Hi, Dana from Acme here: your parcel leaves today.';
          document.querySelector('#composer').requestSubmit(); return true")
        .await;
    b.wait_for(
        "the reply in the panel",
        "return [...document.querySelectorAll('#transcript .role-agent')].some(m => m.textContent.includes('parcel leaves today'))",
    )
    .await;
    settled(&app).await;
    let sent = graph.messenger_sends().pop().unwrap();
    assert_eq!(
        sent["message"]["text"],
        "Hi, Dana from Acme here: your parcel leaves today."
    );
    assert_eq!(sent["messaging_type"], "RESPONSE");
    assert_eq!(sent["recipient"]["id"], "1134343043305865");
    b.screenshot("messenger-panel").await;

    // A customer who wrote two days ago: only a tagged message can go.
    deliver(
        &app,
        &channel,
        &text(
            "2223334445556667",
            "mid.b-old",
            now - 48 * 3600 * 1000,
            "Where is my order?",
        ),
    )
    .await;
    settled(&app).await;
    let old = app
        .list_ids("channel=messenger")
        .await
        .into_iter()
        .find(|c| *c != id)
        .unwrap();
    b.goto(&format!("{site}/conversations?open={old}&tab=transcript"))
        .await;
    b.wait_for(
        "the composer with message tags only",
        "return !!document.querySelector('#tag-note') && !!document.querySelector('.window.closed')
         && document.querySelector('#message-tag').value === 'HUMAN_AGENT'
         && ![...document.querySelectorAll('#message-tag option')].some(o => o.value === '')",
    )
    .await;
    b.js("const t = document.querySelector('#composer-text'); t.value = 'Sorry for the wait: it arrives tomorrow.';
          document.querySelector('#composer').requestSubmit(); return true")
        .await;
    b.wait_for(
        "the tagged reply in the panel",
        "return [...document.querySelectorAll('#transcript .role-agent')].some(m => m.textContent.includes('arrives tomorrow'))",
    )
    .await;
    settled(&app).await;
    let sent = graph.messenger_sends().pop().unwrap();
    assert_eq!(
        (sent["messaging_type"].as_str(), sent["tag"].as_str()),
        (Some("MESSAGE_TAG"), Some("HUMAN_AGENT"))
    );
    b.screenshot("messenger-panel-window-closed").await;
    assert!(
        b.console_errors().await.is_empty(),
        "{:?}",
        b.console_errors().await
    );
}
