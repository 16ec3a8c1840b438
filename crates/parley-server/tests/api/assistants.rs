//! Assistants that talk: the assistants API (versions, sealed keys), the runtime behind Test
//! Chat (streaming, the memory tool, usage, failures, the context window) and the
//! OpenAI-compatible gateway — against a stub provider on 127.0.0.1 that replays the recorded
//! OpenAI payloads in ../shared/fixtures/openai.

use std::time::Duration;

use parley_core::UserRole;
use parley_core::assistant::ProviderKey;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, fixture, memory_call_stream};

/// Creates an assistant talking to `stub` with the `model` and memory fields; returns its id.
async fn assistant(app: &TestApp, stub: &StubProvider, name: &str, memory: Value) -> String {
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({
                "name": name,
                "company": "Acme",
                "settings": {
                    "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                                 "api_key": "sk-test-0123456789abcdef"},
                    "system_prompt": "You are Acme's assistant. Be brief.",
                    "memory_fields": memory,
                }
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

/// One Test Chat message: the server-sent events it answered with, as (event, data).
async fn chat(
    app: &TestApp,
    session: &(String, String),
    assistant: &str,
    conversation: Option<&str>,
    content: &str,
) -> Vec<(String, Value)> {
    let res = app
        .client
        .post(app.url("/test-chat/send"))
        .header("cookie", &session.0)
        .header("x-csrf-token", &session.1)
        .json(&json!({"assistant": assistant, "conversation": conversation, "content": content}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = res.text().await.unwrap();
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (event, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

fn events<'a>(all: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|(e, _)| e == name)
        .map(|(_, d)| d)
        .collect()
}

/// Every stored message of a conversation, hidden ones included, oldest first.
async fn all_messages(app: &TestApp, id: &str) -> Vec<Value> {
    let r = app
        .get(&format!(
            "/api/v1/conversations/{id}/messages?include=all&order=asc&per_page=200"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().unwrap().clone()
}

crate::both_backends!(
    assistants_are_versioned_and_never_show_their_keys,
    test_chat_streams_an_answer_and_records_it_with_tokens_and_cost,
    the_memory_tool_saves_variables_live,
    the_gateway_forwards_unchanged_and_records_the_conversation,
);

async fn assistants_are_versioned_and_never_show_their_keys(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let id = assistant(
        &app,
        &stub,
        "Ava",
        json!([{"name": "email", "description": "Their email"}]),
    )
    .await;
    let a = app.get(&format!("/api/v1/assistants/{id}")).await;
    assert_eq!(a.body["version"], 1);
    assert_eq!(
        a.body["settings"]["provider"]["api_key"],
        json!({"kind": "sealed", "hint": "sk-…cdef"})
    );
    assert!(
        !a.text.contains("0123456789"),
        "the key never comes back: {}",
        a.text
    );
    // Stored sealed: not the key, and it opens to the key.
    let stored = app
        .state
        .store
        .assistants()
        .get_assistant(app.workspace.id, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let Some(ProviderKey::Sealed { sealed, .. }) = stored.settings.provider.map(|p| p.api_key)
    else {
        panic!("sealed")
    };
    assert!(!sealed.contains("sk-test"));
    assert_eq!(
        app.state.secrets.open(&sealed).unwrap(),
        "sk-test-0123456789abcdef"
    );

    // A change makes version 2 and keeps the key; a stale version is refused.
    let r = app
        .patch(
            &format!("/api/v1/assistants/{id}"),
            &json!({"version": 1, "settings": {"system_prompt": "Be very brief.", "temperature": 0.2}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["version"].clone()),
        (200, json!(2)),
        "{}",
        r.text
    );
    assert_eq!(r.body["settings"]["provider"]["api_key"]["kind"], "sealed");
    let stale = app
        .patch(
            &format!("/api/v1/assistants/{id}"),
            &json!({"version": 1, "name": "Ava 2"}),
        )
        .await;
    assert_eq!((stale.status, stale.code()), (409, "version_conflict"));
    let versions = app.get(&format!("/api/v1/assistants/{id}/versions")).await;
    let items = versions.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["settings"]["system_prompt"], "Be very brief.");
    assert_eq!(
        items[1]["settings"]["system_prompt"],
        "You are Acme's assistant. Be brief."
    );
    assert!(!versions.text.contains("sealed\":\""), "{}", versions.text);

    // Bad settings name their field.
    for (body, field) in [
        (
            json!({"settings": {"provider": {"base_url": "ftp://x", "model": "m"}}}),
            "settings.provider.base_url",
        ),
        (
            json!({"settings": {"temperature": 3}}),
            "settings.temperature",
        ),
        (
            json!({"settings": {"memory_fields": [{"name": "E-mail"}]}}),
            "settings.memory_fields[0].name",
        ),
        (json!({"settings": {"colour": "red"}}), "settings"),
    ] {
        let r = app.patch(&format!("/api/v1/assistants/{id}"), &body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert!(
            r.body["error"]["field"]
                .as_str()
                .unwrap_or("")
                .starts_with(field),
            "{body}: {}",
            r.text
        );
    }
    // Another workspace cannot see it.
    let (_, other_key) = app.other_tenant("other").await;
    let r = app
        .get_as(&format!("/api/v1/assistants/{id}"), &other_key)
        .await;
    assert_eq!(r.status, 404);
}

async fn test_chat_streams_an_answer_and_records_it_with_tokens_and_cost(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::Text {
        content: "Hello! Your order **A-1001** ships tomorrow.".into(),
        usage: None,
        delay: Duration::from_millis(5),
    });
    let id = assistant(&app, &stub, "Ava", json!([])).await;
    let session = app.dashboard_session(UserRole::Member).await;
    let ev = chat(&app, &session, &id, None, "Where is my order A-1001?").await;
    let conv = events(&ev, "conversation")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text: String = events(&ev, "delta")
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello! Your order **A-1001** ships tomorrow.");
    assert!(events(&ev, "delta").len() > 2, "streamed in pieces");
    let stored = events(&ev, "stored");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["role"], "user");
    assert!(
        stored[1]["html"]
            .as_str()
            .unwrap()
            .contains("<strong>A-1001</strong>"),
        "the answer comes back rendered: {}",
        stored[1]["html"]
    );
    assert_eq!(ev.last().unwrap().0, "done");

    // What the provider got: the system prompt, then the customer, streamed with usage.
    let sent = &stub.requests()[0];
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "Where is my order A-1001?");

    // Recorded: channel test, the stub's token counts, priced from the table (gpt-4o-mini).
    let c = app.get(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c.body["channel"], "test");
    assert_eq!(c.body["message_count"], 2);
    assert_eq!(c.body["assistant_version"], 1);
    let msgs = all_messages(&app, &conv).await;
    let answer = &msgs[1];
    let usage = answer["usage"].clone();
    assert!(usage["prompt_tokens"].as_i64().unwrap() > 10);
    assert!(usage["completion_tokens"].as_i64().unwrap() > 5);
    assert_eq!(c.body["usage"]["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(answer["cost_source"], "price_table");
    assert!(answer["cost_nanousd"].as_i64().unwrap() > 0);
    assert_eq!(c.body["cost_nanousd"], answer["cost_nanousd"]);
    assert_eq!(answer["meta"]["assistant_version"], 1);
    assert_eq!(answer["meta"]["finish_reason"], "stop");
    let u = events(&ev, "usage")[0];
    assert_eq!(u["cost_nanousd"], answer["cost_nanousd"]);
    // It is in the list with the Test channel.
    let list = app.get("/api/v1/conversations?channel=test").await;
    assert_eq!(list.body["items"][0]["id"], conv.as_str());

    // The second message continues the same conversation with the history.
    chat(&app, &session, &id, Some(&conv), "Thanks!").await;
    let sent = &stub.requests()[1];
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{conv}")).await.body["message_count"],
        4
    );
}

async fn the_memory_tool_saves_variables_live(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.push(memory_call_stream(
        r#"{"field":"email","value":"ana@example.com"}"#,
    ));
    stub.push(Reply::text("Thanks Ana, I saved your email."));
    let id = assistant(
        &app,
        &stub,
        "Ava",
        json!([{"name": "email", "description": "The customer's email"}]),
    )
    .await;
    let session = app.dashboard_session(UserRole::Member).await;
    let ev = chat(&app, &session, &id, None, "I'm Ana, ana@example.com").await;
    let conv = events(&ev, "conversation")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        events(&ev, "variable"),
        vec![&json!({"key": "email", "value": "ana@example.com", "source": "extracted"})]
    );
    // The tool was offered, then the call and its result went back to the model.
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["tools"][0]["function"]["name"], "save_memory");
    assert!(
        reqs[0]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("- email: The customer's email")
    );
    let second: Vec<&str> = reqs[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(second, ["system", "user", "assistant", "tool"]);
    assert_eq!(reqs[1]["messages"][3]["content"], r#"{"saved":"email"}"#);
    // Stored: the variable, and the call and result as hidden tool messages.
    let c = app.get(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(
        c.body["variables"],
        json!([{"key": "email", "value": "ana@example.com", "source": "extracted"}])
    );
    assert_eq!(c.body["message_count"], 2, "tool messages are hidden");
    let msgs = all_messages(&app, &conv).await;
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "tool", "tool", "assistant"]);
    assert_eq!(msgs[1]["meta"]["tool_calls"][0]["name"], "save_memory");
    assert!(
        msgs[1]["usage"]["prompt_tokens"].as_i64().unwrap() > 0,
        "the call's own usage"
    );
    assert_eq!(
        msgs[2]["meta"]["tool_call_id"],
        msgs[1]["meta"]["tool_calls"][0]["id"]
    );
    // Tokens of both model calls are summed on the conversation.
    let sum: i64 = msgs
        .iter()
        .filter_map(|m| m["usage"]["prompt_tokens"].as_i64())
        .sum();
    assert_eq!(c.body["usage"]["prompt_tokens"], sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_are_retried_then_recorded_and_the_customer_is_told() {
    let app = TestApp::spawn_with(|s| s.provider_timeout = Duration::from_millis(400)).await;
    let stub = StubProvider::start().await.unwrap();
    let id = assistant(&app, &stub, "Ava", json!([])).await;
    let session = app.dashboard_session(UserRole::Member).await;
    let invalid_key = fixture("chatgpt_cli_error_invalid_api_key.json");

    // 429 with Retry-After, then a 500, then an answer: one answer, three calls.
    stub.push(Reply::Json {
        status: 429,
        body: json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
        headers: vec![("retry-after", "0".into())],
    });
    stub.push(Reply::error(500, "server_error", "The server had an error"));
    stub.push(Reply::text("Here I am."));
    let ev = chat(&app, &session, &id, None, "hello?").await;
    assert_eq!(events(&ev, "retrying").len(), 2);
    let conv = events(&ev, "conversation")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let msgs = all_messages(&app, &conv).await;
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["content"], "Here I am.");
    assert_eq!(stub.requests().len(), 3);

    // A slow provider times out, is retried, and answers.
    stub.push(Reply::Slow(
        Duration::from_millis(1_500),
        Box::new(Reply::text("late")),
    ));
    stub.push(Reply::text("On time."));
    let ev = chat(&app, &session, &id, Some(&conv), "are you there?").await;
    assert_eq!(events(&ev, "retrying").len(), 1);
    assert_eq!(
        all_messages(&app, &conv).await.last().unwrap()["content"],
        "On time."
    );

    // An invalid key is not retried: the failure is recorded, the customer gets a notice.
    let before = stub.requests().len();
    stub.push(Reply::Json {
        status: 401,
        body: invalid_key,
        headers: vec![],
    });
    let ev = chat(&app, &session, &id, Some(&conv), "hello again").await;
    assert_eq!(stub.requests().len(), before + 1, "401 is not retried");
    let failed = *events(&ev, "stored").last().unwrap();
    assert_eq!(failed["failed"], true);
    let msgs = all_messages(&app, &conv).await;
    let customer = &msgs[msgs.len() - 2];
    assert_eq!(
        customer["content"], "hello again",
        "the customer's message is kept"
    );
    let last = msgs.last().unwrap();
    assert_eq!(last["role"], "assistant");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .starts_with("Sorry, I can't answer right now")
    );
    assert_eq!(last["meta"]["error"]["code"], "provider_auth_failed");
    assert!(
        last["meta"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key provided")
    );

    // Three 500s: retried, then recorded as unavailable.
    for _ in 0..3 {
        stub.push(Reply::error(500, "server_error", "The server had an error"));
    }
    chat(&app, &session, &id, Some(&conv), "and now?").await;
    let last = all_messages(&app, &conv).await.pop().unwrap();
    assert_eq!(last["meta"]["error"]["code"], "provider_unavailable");

    // A stream cut after the answer began: what arrived is kept, the failure recorded.
    stub.push(Reply::Stream {
        events: vec![
            json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Part one"}, "finish_reason": null}]})
            .to_string(),
            json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                   "choices": [{"index": 0, "delta": {"content": ", part two"}, "finish_reason": null}]})
            .to_string(),
        ],
        delay: Duration::ZERO,
        cut_after: Some(2),
    });
    let before = stub.requests().len();
    let ev = chat(&app, &session, &id, Some(&conv), "tell me more").await;
    assert_eq!(
        stub.requests().len(),
        before + 1,
        "text was shown: no retry"
    );
    let shown: String = events(&ev, "delta")
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(shown, "Part one, part two");
    let last = all_messages(&app, &conv).await.pop().unwrap();
    assert_eq!(last["meta"]["error"]["code"], "provider_stream_broken");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .starts_with("Part one, part two")
    );

    // A malformed chunk before any text is retried like a 5xx.
    stub.push(Reply::Stream {
        events: vec!["{not json".into()],
        delay: Duration::ZERO,
        cut_after: None,
    });
    stub.push(Reply::text("Recovered."));
    chat(&app, &session, &id, Some(&conv), "still there?").await;
    assert_eq!(
        all_messages(&app, &conv).await.pop().unwrap()["content"],
        "Recovered."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_estimated_when_the_provider_sends_none() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    // The recorded text stream without its usage chunk.
    let f = fixture("openai_python_stream_text_with_usage.json");
    let mut events_: Vec<String> = f["body"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect();
    let reported: Value = serde_json::from_str(&events_[events_.len() - 2]).unwrap();
    assert!(reported["usage"].is_object());
    events_.remove(events_.len() - 2);
    stub.push(Reply::Stream {
        events: events_,
        delay: Duration::ZERO,
        cut_after: None,
    });
    let id = assistant(&app, &stub, "Ava", json!([])).await;
    let session = app.dashboard_session(UserRole::Member).await;
    let ev = chat(
        &app,
        &session,
        &id,
        None,
        "What's the weather in San Francisco?",
    )
    .await;
    let conv = events(&ev, "conversation")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = all_messages(&app, &conv).await.pop().unwrap();
    assert_eq!(answer["meta"]["usage_estimated"], true);
    // The tokenizer counts the recorded answer exactly as OpenAI did.
    assert_eq!(
        answer["usage"]["completion_tokens"],
        reported["usage"]["completion_tokens"]
    );
    assert!(answer["usage"]["prompt_tokens"].as_i64().unwrap() > 0);
    assert_eq!(
        answer["model"], "gpt-4o-2024-08-06",
        "the model that answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_is_cut_to_the_context_window_oldest_first() {
    // A price table with a model of a 300-token window.
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("prices.json");
    std::fs::write(
        &table,
        json!({"tiny-model": {"mode": "chat", "input_cost_per_token": 1e-6,
                              "output_cost_per_token": 2e-6, "max_input_tokens": 300}})
        .to_string(),
    )
    .unwrap();
    let app = TestApp::spawn_with(|s| s.price_table = Some(table.clone())).await;
    let stub = StubProvider::start().await.unwrap();
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Tiny", "settings": {"provider": {"base_url": stub.base_url, "model": "tiny-model"}}}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let session = app.dashboard_session(UserRole::Member).await;
    let ev = chat(&app, &session, &id, None, "first").await;
    let conv = events(&ev, "conversation")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 40 more turns of history through the API.
    let history: Vec<Value> = (0..40)
        .map(|i| {
            json!({"role": if i % 2 == 0 {"user"} else {"assistant"},
                         "content": format!("turn {i}: some words to take up a few tokens each")})
        })
        .collect();
    let r = app
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            &json!({"messages": history}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    chat(&app, &session, &id, Some(&conv), "the latest question").await;
    let sent = stub.requests().pop().unwrap();
    let msgs = sent["messages"].as_array().unwrap();
    let tokens = parley_server::assistant::tokens::count_messages("tiny-model", msgs);
    assert!(tokens <= 300, "{tokens} tokens sent");
    assert_eq!(msgs.last().unwrap()["content"], "the latest question");
    assert!(
        !msgs.iter().any(|m| m["content"] == "first"),
        "the oldest went first"
    );
    let answer = all_messages(&app, &conv).await.pop().unwrap();
    let dropped = answer["meta"]["history_dropped"].as_i64().unwrap();
    // The history held 43 messages: "first", its answer, the 40 added, the latest question.
    let kept = msgs.iter().filter(|m| m["role"] != "system").count();
    assert_eq!(dropped as usize, 43 - kept, "{answer}");
    // Priced at the table's custom entry.
    assert_eq!(answer["cost_source"], "price_table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_assistants_and_missing_providers_do_not_crash() {
    let app = TestApp::spawn().await;
    let session = app.dashboard_session(UserRole::Admin).await;
    // No assistant at all: the page says what to do.
    let page = app
        .client
        .get(app.url("/test-chat"))
        .header("cookie", &session.0)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("There is no assistant yet"), "{html}");
    // An assistant without a provider: the page names exactly what to set.
    let r = app
        .post("/api/v1/assistants", &json!({"name": "Bare"}))
        .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let html = app
        .client
        .get(app.url(&format!("/test-chat?assistant={id}")))
        .header("cookie", &session.0)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Bare has no LLM provider"), "{html}");
    assert!(html.contains("https://api.openai.com/v1"));
    assert!(html.contains("Custom"));
    // Sending anyway is refused cleanly, before anything is stored.
    let res = app
        .client
        .post(app.url("/test-chat/send"))
        .header("cookie", &session.0)
        .header("x-csrf-token", &session.1)
        .json(&json!({"assistant": id, "content": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_not_configured");
    // Without the CSRF token: refused.
    let res = app
        .client
        .post(app.url("/test-chat/send"))
        .header("cookie", &session.0)
        .json(&json!({"assistant": id, "content": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A key named as a server environment variable is refused (see providers.rs).
    let stub = StubProvider::start().await.unwrap();
    let r = app
        .patch(
            &format!("/api/v1/assistants/{id}"),
            &json!({"settings": {"provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                                              "api_key_env": "PARLEY_TEST_UNSET_KEY_4F1B"}}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    // A passive assistant does not answer: the message is kept, no provider call is made.
    app.patch(
        &format!("/api/v1/assistants/{id}"),
        &json!({"mode": "passive", "settings": {"provider": {"base_url": stub.base_url, "model": "gpt-4o-mini", "api_key": ""}}}),
    )
    .await;
    let ev = chat(&app, &session, &id, None, "anyone?").await;
    assert!(
        events(&ev, "error")[0]["message"]
            .as_str()
            .unwrap()
            .contains("passive")
    );
    assert!(stub.requests().is_empty());
    let conv = events(&ev, "conversation")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(all_messages(&app, &conv).await.len(), 1);
}

async fn the_gateway_forwards_unchanged_and_records_the_conversation(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let recorded = fixture("openai_python_recorded_chat_completions.json");
    stub.push(Reply::Json {
        status: 200,
        body: recorded["text_stop"].clone(),
        headers: vec![],
    });
    assistant(&app, &stub, "Ava", json!([])).await;
    let gw = |path: &str| app.client.post(app.url(path)).bearer_auth(&app.key);

    // Not streamed: the recorded completion comes back byte for byte.
    let body = json!({"model": "gpt-4o-2024-08-06", "user": "customer-42",
                      "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Hello"}]});
    let res = gw("/v1/chat/completions").json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let got: Value = res.json().await.unwrap();
    assert_eq!(got, recorded["text_stop"]);
    assert_eq!(stub.requests()[0], body, "the request went as sent");

    // Recorded (after the answer): channel api, the user as contact, the provider's usage.
    let conv = wait_for_conversation(&app, "channel=api").await;
    let c = app.get(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c.body["contact"], "customer-42");
    assert_eq!(c.body["external_id"], "user:customer-42");
    assert_eq!(
        c.body["usage"]["prompt_tokens"],
        recorded["text_stop"]["usage"]["prompt_tokens"]
    );
    assert_eq!(c.body["message_count"], 2, "system is stored hidden");
    let msgs = all_messages(&app, &conv).await;
    assert_eq!(msgs.len(), 3);
    assert_eq!(
        msgs[2]["content"],
        recorded["text_stop"]["choices"][0]["message"]["content"]
    );
    assert!(msgs[2]["cost_nanousd"].as_i64().unwrap() > 0);

    // Streamed, same user, history repeated: one conversation, nothing stored twice.
    let answer = recorded["text_stop"]["choices"][0]["message"]["content"].clone();
    stub.push(Reply::recorded_stream(
        fixture("openai_python_stream_text_with_usage.json")["body"]
            .as_str()
            .unwrap(),
    ));
    let body2 = json!({"model": "gpt-4o-2024-08-06", "user": "customer-42", "stream": true,
                       "stream_options": {"include_usage": true},
                       "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hello"},
                                    {"role": "assistant", "content": answer},
                                    {"role": "user", "content": "And the weather?"}]});
    let res = gw("/v1/chat/completions")
        .json(&body2)
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let streamed = res.text().await.unwrap();
    let fixture_body = fixture("openai_python_stream_text_with_usage.json")["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = |t: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        data(&streamed),
        data(&fixture_body),
        "the stream is passed through"
    );
    wait_until(|| async { all_messages(&app, &conv).await.len() == 5 }).await;
    let msgs = all_messages(&app, &conv).await;
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user", "assistant"]);
    assert_eq!(
        msgs[4]["meta"]["usage_estimated"],
        Value::Null,
        "usage came with the stream"
    );
    assert_eq!(
        app.get("/api/v1/conversations/count?channel=api")
            .await
            .body["count"],
        1
    );

    // The Parley-Conversation header names the conversation; the provider's errors pass
    // through unchanged and are recorded.
    stub.push(Reply::Json {
        status: 401,
        body: fixture("chatgpt_cli_error_invalid_api_key.json"),
        headers: vec![],
    });
    let res = gw("/v1/chat/completions")
        .header("Parley-Conversation", "ticket-7")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err, fixture("chatgpt_cli_error_invalid_api_key.json"));
    wait_until(|| async {
        app.get("/api/v1/conversations/count?channel=api")
            .await
            .body["count"]
            == 2
    })
    .await;
    let list = app
        .get("/api/v1/conversations?channel=api&sort=-date")
        .await;
    let ticket = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["external_id"] == "ticket-7")
        .expect("the header names the conversation")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let last = all_messages(&app, &ticket).await.pop().unwrap();
    assert_eq!(last["meta"]["error"]["code"], "provider_auth_failed");

    // /v1/models is the provider's list.
    let models: Value = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "stub-model");

    // Parley's own errors: no key, unknown assistant, bad JSON, two assistants with providers.
    let r = app
        .send(
            app.client
                .post(app.url("/v1/chat/completions"))
                .json(&json!({"messages": []})),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = app
        .send(
            gw("/v1/chat/completions")
                .header("Parley-Assistant", "Nobody")
                .json(&json!({"messages": []})),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "assistant_not_found"));
    let r = app
        .send(
            gw("/v1/chat/completions")
                .header("content-type", "application/json")
                .body("{oops"),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    assistant(&app, &stub, "Bo", json!([])).await;
    let r = app
        .send(gw("/v1/chat/completions").json(&json!({"model": "gpt-4o-mini", "messages": []})))
        .await;
    assert_eq!((r.status, r.code()), (400, "assistant_required"));
    // `model` naming an assistant picks it and asks for the assistant's model.
    stub.push(Reply::text("Bo here."));
    let r = app
        .send(
            gw("/v1/chat/completions")
                .json(&json!({"model": "Bo", "messages": [{"role": "user", "content": "who?"}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(stub.requests().last().unwrap()["model"], "gpt-4o-mini");
}

async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("the exchange was not recorded within 3 s");
}

async fn wait_for_conversation(app: &TestApp, filter: &str) -> String {
    for _ in 0..100 {
        if let Some(id) = app.list_ids(filter).await.into_iter().next() {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("the exchange was not recorded within 3 s");
}

/// Waits until conversation `id` holds `n` visible messages; returns them oldest first.
async fn wait_for_messages(app: &TestApp, id: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let r = app
            .get(&format!("/api/v1/conversations/{id}/messages?order=asc"))
            .await;
        let items = r.body["items"].as_array().unwrap().clone();
        if items.len() >= n {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("conversation {id} did not reach {n} messages within 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_messages_posted_through_the_api_are_answered_once() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    assistant(&app, &stub, "Ava", json!([])).await;
    stub.push(Reply::text("Hi! How can I help?"));
    stub.push(Reply::text("It ships tomorrow."));

    // A new conversation whose last message is the customer's: answered in the background.
    let r = app
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"name": "Ava", "company": "Acme"}, "channel": "web",
                    "messages": [{"role": "user", "content": "Hello", "external_id": "m1"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["answering"], true);
    let id = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let msgs = wait_for_messages(&app, &id, 2).await;
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"], "Hi! How can I help?");

    // An appended customer message is answered; the same request retried is not answered again.
    let append = json!({"messages": [{"role": "user", "content": "When does my order ship?", "external_id": "m2"}]});
    let r = app
        .post(&format!("/api/v1/conversations/{id}/messages"), &append)
        .await;
    assert_eq!((r.status, &r.body["answering"]), (201, &json!(true)));
    let msgs = wait_for_messages(&app, &id, 4).await;
    assert_eq!(msgs[3]["content"], "It ships tomorrow.");
    let r = app
        .post(&format!("/api/v1/conversations/{id}/messages"), &append)
        .await;
    assert_eq!((r.status, &r.body["answering"]), (200, &json!(false)));
    // A message that is not the customer's (a team member's) is not answered.
    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &json!({"messages": [{"role": "agent", "content": "I'll check it for you."}]}),
        )
        .await;
    assert_eq!(r.body["answering"], false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stub.requests().len(),
        2,
        "one call per new customer message"
    );
    assert_eq!(wait_for_messages(&app, &id, 5).await.len(), 5);

    // An assistant without a provider only records: no answer, no failure notice.
    let r = app
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"name": "Logger"}, "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(r.body["answering"], false);
    let other = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(wait_for_messages(&app, &other, 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_records_truncated_answers_and_refusals_as_the_provider_sent_them() {
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    assistant(&app, &stub, "Ava", json!([])).await;
    let recorded = fixture("openai_python_recorded_chat_completions.json");
    for (i, case) in ["text_length_truncated", "refusal"].into_iter().enumerate() {
        stub.push(Reply::Json {
            status: 200,
            body: recorded[case].clone(),
            headers: vec![],
        });
        let key = format!("case-{i}");
        let res = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&app.key)
            .header("Parley-Conversation", &key)
            .json(&json!({"model": "gpt-4o-2024-08-06",
                          "messages": [{"role": "user", "content": format!("question {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let got: Value = res.json().await.unwrap();
        assert_eq!(got, recorded[case], "forwarded unchanged");
        let mut answer = Value::Null;
        for _ in 0..100 {
            let ids = app.list_ids("channel=api&limit=10").await;
            let mut found = None;
            for id in ids {
                let c = app.get(&format!("/api/v1/conversations/{id}")).await;
                if c.body["external_id"] == key.as_str() && c.body["message_count"] == 2 {
                    found = Some(id);
                }
            }
            if let Some(id) = found {
                answer = all_messages(&app, &id).await.pop().unwrap();
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let choice = &recorded[case]["choices"][0];
        assert_eq!(answer["role"], "assistant", "{case} recorded: {answer}");
        assert_eq!(answer["meta"]["finish_reason"], choice["finish_reason"]);
        assert_eq!(
            answer["usage"]["completion_tokens"],
            recorded[case]["usage"]["completion_tokens"]
        );
        if case == "refusal" {
            // The refusal is what the customer read: it is the message's text, and marked.
            assert_eq!(answer["content"], choice["message"]["refusal"]);
            assert_eq!(answer["meta"]["refusal"], choice["message"]["refusal"]);
        } else {
            assert_eq!(answer["content"], choice["message"]["content"]);
        }
    }
}
