//! Shared by the WhatsApp and Telegram tests: fixtures from ../shared/fixtures, an assistant
//! talking to the stub provider, waiting for background webhook processing, reading what was
//! stored.

use std::time::{Duration, Instant};

use parley_testkit::stub_provider::StubProvider;
use serde_json::{Value, json};

use crate::helpers::{TestApp, shared_dir};

/// A fixture file of ../shared/fixtures/{dir}.
pub fn fixture(dir: &str, name: &str) -> Value {
    let path = shared_dir().join("fixtures").join(dir).join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Every case of every fixture file in ../shared/fixtures/{dir} whose name starts with
/// `prefix`, as (file, case, payload), `_source` left out.
pub fn fixture_cases(dir: &str, prefix: &str) -> Vec<(String, String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(shared_dir().join("fixtures").join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.starts_with(prefix) && f.ends_with(".json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let doc = fixture(dir, &f);
        for (case, payload) in doc.as_object().unwrap() {
            if case != "_source" {
                out.push((f.clone(), case.clone(), payload.clone()));
            }
        }
    }
    out
}

/// An assistant answering through `stub`; returns its id.
pub async fn assistant(app: &TestApp, stub: &StubProvider) -> String {
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"},
                "system_prompt": "You are Acme's assistant."}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 30 s) until connection `channel`'s webhook inbox holds no delivery waiting or
/// running (`inbox.pending` of `GET /api/v1/channels/{id}`): every delivery received so far has
/// been processed.
pub async fn inbox_drained(app: &TestApp, channel: &str) {
    eventually(30, "the webhook inbox to drain", || async {
        let r = app.get(&format!("/api/v1/channels/{channel}")).await;
        (r.body["inbox"]["pending"] == 0).then_some(())
    })
    .await
}

/// The ids of the workspace's conversations on `channel`.
pub async fn conversations(app: &TestApp, channel: &str) -> Vec<Value> {
    let r = app
        .get(&format!(
            "/api/v1/conversations?channel={channel}&limit=200"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().unwrap().clone()
}

/// Every message of a conversation, hidden ones included, oldest first.
pub async fn messages(app: &TestApp, conversation: &str) -> Vec<Value> {
    let r = app
        .get(&format!(
            "/api/v1/conversations/{conversation}/messages?include=all&order=asc&per_page=200"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().unwrap().clone()
}

/// Every message of every conversation on `channel`.
pub async fn all_messages(app: &TestApp, channel: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for c in conversations(app, channel).await {
        out.extend(messages(app, c["id"].as_str().unwrap()).await);
    }
    out
}

/// Now, in unix seconds, as WhatsApp writes timestamps.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
