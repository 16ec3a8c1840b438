//! An admin sets up an assistant in the dashboard and tries it in Test Chat: the answer streams
//! in, the memory field it saves appears, tokens and cost add up, and the chat is a conversation
//! with the Test badge in the list. The provider is the stub OpenAI server on 127.0.0.1.

use std::time::Duration;

use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::Value;

use crate::harness::Browser;
use crate::helpers::{TestApp, memory_call_stream};

const PASSWORD: &str = "correct horse battery";
const ANSWER: &str =
    "Thanks Ana, I saved your email. Which bike would you like to try this weekend?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_up_an_assistant_and_tries_it_in_test_chat() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    let base = b.sign_in_new_admin(&app, PASSWORD).await;

    // No assistant yet: the Assistants page offers to create one.
    b.click("#nav-assistants").await;
    b.wait_for(
        "the assistants page",
        "return location.pathname === '/assistants'",
    )
    .await;
    b.click("#new-assistant").await;
    b.wait_for(
        "the new-assistant form",
        "return location.pathname === '/assistants/new'",
    )
    .await;
    let filled = b
        .js(&format!(
            "const f = document.getElementById('assistant-form');
             const set = (n, v) => {{ const e = f.elements[n]; e.value = v; return !!e; }};
             set('name', 'Ava'); set('company', 'Acme Bikes');
             set('base_url', {url:?}); set('model', 'gpt-4o-mini');
             f.querySelector('input[name=key_source][value=none]').checked = true;
             set('system_prompt', 'You are the friendly assistant of Acme Bikes. Answer briefly.');
             set('memory_fields', \"email: The customer's email address\");
             return true",
            url = stub.base_url
        ))
        .await;
    assert_eq!(filled, Value::Bool(true));
    b.screenshot("assistant-form").await;
    b.js("document.querySelector('#assistant-form button[type=submit]').click(); return true")
        .await;
    b.wait_for(
        "the saved assistant",
        "return !!document.getElementById('saved')",
    )
    .await;
    assert!(b.text("#saved").await.contains("version 1"));
    let assistant_id = b
        .js("return location.pathname.split('/').pop()")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    b.goto(&format!("{base}/assistants")).await;
    assert!(b.text("main").await.contains("Ava"));
    b.screenshot("assistants").await;

    // Test Chat: the assistant saves the email through its memory tool, then answers,
    // streamed a few words at a time.
    stub.push(memory_call_stream(
        r#"{"field":"email","value":"ana@example.com"}"#,
    ));
    stub.push(Reply::Text {
        content: ANSWER.into(),
        usage: None,
        delay: Duration::from_millis(150),
    });
    b.click("#nav-test-chat").await;
    b.wait_for(
        "Test Chat with Ava selected",
        &format!(
            "return location.pathname === '/test-chat' && document.getElementById('tc-form').dataset.assistant === '{assistant_id}'"
        ),
    )
    .await;
    // Every text the streaming bubble shows on the way is recorded, to prove it grew in steps.
    b.js("window.__seen = [];
          new MutationObserver(() => {
            const p = document.querySelector('#tc-log .msg.streaming .plain');
            if (p) window.__seen.push(p.textContent);
          }).observe(document.getElementById('tc-log'), {subtree: true, childList: true, characterData: true});
          return true")
        .await;
    b.click("#tc-input").await;
    b.keys("Hi, I'm Ana: ana@example.com").await;
    b.keys("\u{e007}").await; // Enter sends
    b.wait_for(
        "the stored answer",
        "const all = document.querySelectorAll('#tc-log .msg.role-assistant');
         const last = all[all.length - 1];
         return !document.querySelector('#tc-log .streaming') && !!last && last.textContent.includes('weekend?')",
    )
    .await;
    let seen = b.js("return window.__seen").await;
    let partial: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|t| t.starts_with("Thanks") && t.len() < ANSWER.len())
        .collect();
    assert!(
        partial.iter().all(|t| ANSWER.starts_with(t)) && partial.len() >= 2,
        "the answer streamed in steps: {seen}"
    );
    assert_eq!(
        b.text("#tc-vars tr[data-key=email] td:nth-child(2)").await,
        "ana@example.com"
    );
    assert_eq!(b.text("#tc-messages").await, "2");
    let prompt: i64 = b.text("#tc-prompt").await.parse().unwrap();
    assert!(prompt > 0, "prompt tokens shown");
    assert!(b.text("#tc-cost").await.starts_with('$'));
    b.screenshot("test-chat").await;

    // The stored conversation: Test channel, tokens of both model calls, a price-table cost.
    let list = app.get("/api/v1/conversations?channel=test").await;
    assert_eq!(list.status, 200, "{}", list.text);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let conv = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(items[0]["usage"]["prompt_tokens"].as_i64().unwrap(), prompt);
    assert!(items[0]["cost_nanousd"].as_i64().unwrap() > 0);

    // "Open in Conversations" shows it in the list, with the Test badge, and its transcript.
    b.click("#tc-open").await;
    b.wait_for(
        "the conversation's panel",
        &format!(
            "return location.pathname === '/conversations' && !!document.querySelector('#panel.open .panel-inner[data-id=\"{conv}\"]')"
        ),
    )
    .await;
    assert_eq!(
        b.text(&format!("tr.row[data-id=\"{conv}\"] .badge")).await,
        "Test"
    );
    b.screenshot("test-chat-in-list").await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    b.close().await;
}
