//! Create, append, update, read, transcript pages, delete, assistants.

use serde_json::json;

use crate::helpers::Backend;
use crate::helpers::{TestApp, conversation};

async fn create_prices_messages_and_returns_the_record(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = app
        .post(
            "/api/v1/conversations",
            &json!({
                "external_id": "chat-1",
                "assistant": {"name": "Ava", "company": "Acme"},
                "channel": "whatsapp",
                "contact": "+49 170 1234567",
                "session_id": "s-1",
                "variables": [{"key": "email", "value": "a@example.com", "source": "pre_chat"}],
                "memory": {"name": "Alice", "likes": ["tea"]},
                "messages": [
                    {"role": "system", "content": "Be brief.", "created_at": "2026-11-01T10:00:00Z"},
                    {"role": "user", "content": "Hi!", "created_at": "2026-11-01T10:00:01Z", "external_id": "wamid.1"},
                    {"role": "assistant", "content": "Hello **Alice**", "created_at": "2026-11-01T10:00:02Z",
                     "model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 500}},
                    {"role": "assistant", "content": "More?", "created_at": "2026-11-01T10:00:03Z",
                     "model": "acme-private-llm", "usage": {"prompt_tokens": 10, "completion_tokens": 10}}
                ]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = &r.body["conversation"];
    assert_eq!(r.body["created"], true);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("/api/v1/conversations/{}", c["id"].as_str().unwrap())
    );
    assert_eq!(c["channel"], "whatsapp");
    assert_eq!(c["status"], "active");
    assert_eq!(c["message_count"], 3);
    assert_eq!(c["stored_message_count"], 4);
    assert_eq!(
        c["usage"],
        json!({"prompt_tokens": 1010, "completion_tokens": 510, "total_tokens": 1520})
    );
    // gpt-4o: 1000 x 2.5e-6 + 500 x 1e-5 USD = 0.0075 USD; the private model is unpriced, flagged.
    assert_eq!(c["cost_nanousd"], 7_500_000);
    assert_eq!(c["unpriced_message_count"], 1);
    assert_eq!(c["started_at"], "2026-11-01T10:00:00.000Z");
    assert_eq!(c["last_message_preview"], "More?");
    assert_eq!(c["duration_ms"], serde_json::Value::Null, "ongoing");
    assert_eq!(c["memory"], json!({"name": "Alice", "likes": ["tea"]}));
    assert_eq!(
        c["variables"][0],
        json!({"key": "email", "value": "a@example.com", "source": "pre_chat"})
    );
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 4);

    let id = c["id"].as_str().unwrap();
    let d = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body["assistant"]["name"], "Ava");
    let msgs = app
        .get(&format!(
            "/api/v1/conversations/{id}/messages?include=all&order=asc"
        ))
        .await;
    let m = &msgs.body["items"];
    assert_eq!(m[2]["cost_nanousd"], 7_500_000);
    assert_eq!(m[2]["cost_source"], "price_table");
    assert_eq!(m[3]["cost_nanousd"], serde_json::Value::Null);
    assert_eq!(m[3]["cost_source"], "unknown_model");

    let assistants = app.get("/api/v1/assistants").await;
    assert_eq!(
        assistants.body["items"][0]["name"], "Ava",
        "created on the fly by name"
    );
}

async fn retries_create_nothing_twice(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let body = json!({
        "external_id": "order-77",
        "assistant": {"name": "Ava"},
        "messages": [{"role": "user", "content": "one", "external_id": "m1"}, {"role": "assistant", "content": "two", "external_id": "m2"}]
    });
    let first = app.post("/api/v1/conversations", &body).await;
    assert_eq!(first.status, 201);
    let again = app.post("/api/v1/conversations", &body).await;
    assert_eq!(
        again.status, 200,
        "the existing conversation: {}",
        again.text
    );
    assert_eq!(again.body["created"], false);
    assert_eq!(
        again.body["conversation"]["id"],
        first.body["conversation"]["id"]
    );
    assert_eq!(again.body["messages"][0]["outcome"], "duplicate");
    assert_eq!(again.body["conversation"]["message_count"], 2);

    let id = first.body["conversation"]["id"].as_str().unwrap();
    let append = json!({"messages": [{"role": "user", "content": "three", "external_id": "m3"}]});
    let r = app
        .post(&format!("/api/v1/conversations/{id}/messages"), &append)
        .await;
    assert_eq!(
        (r.status, r.body["stored"].as_i64()),
        (201, Some(1)),
        "{}",
        r.text
    );
    let r = app
        .post(&format!("/api/v1/conversations/{id}/messages"), &append)
        .await;
    assert_eq!(
        (
            r.status,
            r.body["stored"].as_i64(),
            r.body["duplicates"].as_i64()
        ),
        (200, Some(0), Some(1))
    );
    let count = app.get("/api/v1/conversations/count").await;
    assert_eq!(count.body, json!({"count": 1, "exact": true}));
    let d = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(d.body["message_count"], 3);
}

async fn patch_rating_and_delete(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let id = app.create(conversation("Ava", 4)).await;
    let path = format!("/api/v1/conversations/{id}");
    let r = app
        .patch(
            &path,
            &json!({"status": "closed", "ended_at": "2026-11-01T10:05:00Z", "end_reason": "visitor_closed",
                    "rating": {"score": 5, "comment": "great"}, "sentiment": {"label": "positive", "score": 0.9},
                    "converted": true, "variables": [{"key": "plan", "value": "pro", "source": "post_conversation"}],
                    "memory": {"vip": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "closed");
    assert_eq!(r.body["duration_ms"], 300_000);
    assert_eq!(r.body["rating"]["score"], 5);
    assert_eq!(r.body["sentiment"]["label"], "positive");
    assert_eq!(r.body["variables"][0]["source"], "post_conversation");
    let filtered = app.list_ids("min_rating=5").await;
    assert_eq!(filtered, vec![id.clone()]);

    let r = app.delete(&format!("{path}/rating")).await;
    assert_eq!(
        (r.status, &r.body["rating"]),
        (200, &serde_json::Value::Null)
    );
    assert!(
        app.list_ids("min_rating=1").await.is_empty(),
        "rating removal persists"
    );

    let r = app.delete(&path).await;
    assert_eq!(r.status, 204);
    for (method, p) in [
        ("GET", path.clone()),
        ("GET", format!("{path}/messages")),
        ("DELETE", path.clone()),
        ("DELETE", format!("{path}/rating")),
    ] {
        let r = if method == "GET" {
            app.get(&p).await
        } else {
            app.delete(&p).await
        };
        assert_eq!((r.status, r.code()), (404, "not_found"), "{method} {p}");
    }
    let r = app.patch(&path, &json!({"status": "archived"})).await;
    assert_eq!(r.status, 404);
    let r = app
        .post(
            &format!("{path}/messages"),
            &json!({"messages": [{"role": "user", "content": "late"}]}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(
        app.list_ids("q=message%20number").await.is_empty(),
        "search finds nothing of it"
    );
    assert_eq!(
        app.get("/api/v1/conversations/count").await.body["count"],
        0
    );
}

async fn transcript_pages_newest_first_with_hidden_messages_on_request(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let mut body = conversation("Ava", 120);
    body["messages"].as_array_mut().unwrap().insert(
        0,
        json!({"role": "system", "content": "prompt", "created_at": "2026-11-01T09:59:59Z"}),
    );
    let id = app.create(body).await;
    let page = |q: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            app.get(&format!("/api/v1/conversations/{id}/messages?{q}"))
                .await
        }
    };
    let p1 = page("").await;
    assert_eq!(
        (
            p1.body["total"].as_i64(),
            p1.body["total_pages"].as_i64(),
            p1.body["order"].as_str()
        ),
        (Some(120), Some(3), Some("desc"))
    );
    assert_eq!(p1.body["items"][0]["content"], "message number 119");
    assert_eq!(p1.body["items"].as_array().unwrap().len(), 50);
    let p3 = page("page=3").await;
    assert_eq!(p3.body["items"].as_array().unwrap().len(), 20);
    assert_eq!(p3.body["items"][19]["content"], "message number 0");
    assert_eq!(page("page=4").await.body["items"], json!([]));
    let asc = page("order=asc&per_page=10&page=2").await;
    assert_eq!(asc.body["items"][0]["content"], "message number 10");
    let all = page("include=all&order=asc&per_page=1").await;
    assert_eq!(
        (
            all.body["total"].as_i64(),
            all.body["items"][0]["role"].as_str()
        ),
        (Some(121), Some("system"))
    );
    for bad in [
        "page=0",
        "per_page=500",
        "order=up",
        "include=hidden",
        "pge=2",
    ] {
        let r = page(bad).await;
        assert_eq!((r.status, r.code()), (400, "invalid_parameter"), "{bad}");
    }
}

async fn assistants_are_created_and_listed(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme", "mode": "hybrid"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["mode"], "hybrid");
    let again = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme"}),
        )
        .await;
    assert_eq!((again.status, again.code()), (409, "assistant_exists"));
    let bad = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "", "company": "Acme"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["field"].as_str()),
        (422, Some("name"))
    );
    let bad = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "X", "mode": "autonomous"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["field"].as_str()),
        (422, Some("mode"))
    );
    // A conversation can name it by id.
    let id = r.body["id"].as_str().unwrap();
    let c = app
        .post("/api/v1/conversations", &json!({"assistant": {"id": id}}))
        .await;
    assert_eq!(c.body["conversation"]["assistant"]["name"], "Ava");
    let c = app
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"id": "0190f8a8-0000-7000-8000-000000000000"}}),
        )
        .await;
    assert_eq!((c.status, c.code()), (404, "not_found"));
    assert_eq!(
        app.get("/api/v1/assistants").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn fifty_concurrent_clients_lose_and_duplicate_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let id = app.create(json!({"assistant": {"name": "Ava"}})).await;
    let mut tasks = Vec::new();
    for client in 0..50 {
        let (url, key) = (
            app.url(&format!("/api/v1/conversations/{id}/messages")),
            app.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = crate::helpers::http_client();
            for i in 0..10 {
                let body = json!({"messages": [{"role": "user", "content": format!("client {client} message {i}"), "external_id": format!("{client}-{i}")}]});
                // Each message is sent twice, as a client retrying after a lost answer would.
                for _ in 0..2 {
                    let r = http.post(&url).bearer_auth(&key).json(&body).send().await.unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let d = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(d.body["message_count"], 500);
    let page = app
        .get(&format!(
            "/api/v1/conversations/{id}/messages?per_page=200&page=3"
        ))
        .await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 100);
}

crate::both_backends!(
    create_prices_messages_and_returns_the_record,
    retries_create_nothing_twice,
    patch_rating_and_delete,
    transcript_pages_newest_first_with_hidden_messages_on_request,
    assistants_are_created_and_listed,
    fifty_concurrent_clients_lose_and_duplicate_nothing,
);
