//! The gateway against OpenAI's official Python client (`pip install openai`): the proof that
//! an app only changes its base URL and key. The interpreter comes from `PARLEY_TEST_PYTHON`
//! (`.ci/run` makes a virtualenv with `openai` in `target/ci-venv`), else `python3` if it can
//! import `openai`. Without one the test prints a loud SKIPPED and passes, except under
//! `CI=true`, where it fails.

use std::process::Command;
use std::time::Duration;

use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Drives the client through a model list, a plain completion, a streamed one with usage and an
/// error; prints what it saw as one JSON line.
const SCRIPT: &str = r#"
import json, os
import openai

client = openai.OpenAI(base_url=os.environ["PARLEY_BASE"], api_key=os.environ["PARLEY_KEY"],
                       max_retries=0, default_headers={"Parley-Conversation": "python-1"})
out = {"models": [m.id for m in client.models.list().data]}
history = [{"role": "user", "content": "Hi there"}]
first = client.chat.completions.create(model="gpt-4o-mini", messages=history)
out["text"] = first.choices[0].message.content
out["prompt_tokens"] = first.usage.prompt_tokens
history += [{"role": "assistant", "content": out["text"]},
            {"role": "user", "content": "And streamed?"}]
parts, usage = [], None
for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=history, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["parts"], out["stream_completion_tokens"] = parts, usage
try:
    client.chat.completions.create(model="gpt-4o-mini", messages=history,
                                   extra_headers={"Parley-Assistant": "Nobody"})
    out["error"] = None
except openai.APIStatusError as e:
    out["error"] = {"status": e.status_code, "body": e.body}
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_works_through_the_gateway() {
    let Some(python) = crate::helpers::python_importing("openai") else {
        return;
    };
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "settings": {"provider": {"base_url": stub.base_url, "model": "gpt-4o-mini"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    stub.push(Reply::text("Hello from behind the gateway."));
    stub.push(Reply::text("These words arrive a few at a time."));

    let (base, key) = (app.url("/v1"), app.key.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-c", SCRIPT])
            .env("PARLEY_BASE", base)
            .env("PARLEY_KEY", key)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "the client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The provider's model list, forwarded (the stub lists one model).
    assert_eq!(seen["models"], json!(["stub-model"]), "{seen}");
    assert_eq!(seen["text"], "Hello from behind the gateway.");
    assert!(seen["prompt_tokens"].as_i64().unwrap() > 0);
    let parts: Vec<&str> = seen["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(parts.len() > 1, "streamed in pieces: {parts:?}");
    assert_eq!(parts.concat(), "These words arrive a few at a time.");
    assert!(seen["stream_completion_tokens"].as_i64().unwrap() > 0);
    // An unknown assistant: the client raises with Parley's error body.
    assert_eq!(seen["error"]["status"], 404, "{seen}");
    assert!(
        seen["error"]["body"]["message"].as_str().is_some(),
        "{seen}"
    );

    // Both exchanges are one conversation (the client's Parley-Conversation header), recorded
    // after the answers, with each message once.
    let mut conv = Value::Null;
    for _ in 0..100 {
        let r = app.get("/api/v1/conversations?channel=api").await;
        if let Some(c) = r.body["items"].as_array().and_then(|i| i.first())
            && c["message_count"] == 4
        {
            conv = c.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(conv["message_count"], 4, "recorded: {conv}");
    let detail = app
        .get(&format!(
            "/api/v1/conversations/{}",
            conv["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(detail.body["external_id"], "python-1");
    assert!(detail.body["usage"]["completion_tokens"].as_i64().unwrap() > 0);
    assert_eq!(
        stub.requests().len(),
        2,
        "the failed call never reached the provider"
    );
}
