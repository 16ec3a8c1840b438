//! The list: filters, sorts, keyset paging, counts and parameter errors.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::Backend;
use crate::helpers::TestApp;

/// 24 conversations over 3 assistants, 4 channels, 3 statuses, ratings 1-5 or none, 4 days.
async fn corpus(app: &TestApp) -> Vec<Value> {
    let agents = ["Ava", "Bob", "Cleo"];
    let channels = ["widget", "whatsapp", "telegram", "test"];
    let statuses = ["active", "closed", "archived"];
    for i in 0..24 {
        let day = 1 + i % 4;
        let mut body = json!({
            "assistant": {"name": agents[i % 3], "company": "Acme"},
            "channel": channels[i % 4],
            "status": statuses[(i / 2) % 3],
            "session_id": format!("sess-{i:02}"),
            "messages": (0..(i % 5 + 1)).map(|k| json!({"role": "user", "content": format!("text {k}"),
                "created_at": format!("2026-10-{day:02}T{:02}:{:02}:00Z", i % 24, k)})).collect::<Vec<_>>(),
        });
        if i % 6 != 0 {
            body["rating"] = json!({"score": i % 5 + 1});
        }
        app.create(body).await;
    }
    let r = app.get("/api/v1/conversations?limit=200").await;
    r.body["items"].as_array().unwrap().clone()
}

fn ids(items: &[Value], pred: impl Fn(&Value) -> bool) -> Vec<String> {
    items
        .iter()
        .filter(|c| pred(c))
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn every_filter_narrows_and_they_combine_with_and(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let all = corpus(&app).await;
    assert_eq!(all.len(), 24);
    let bob = all
        .iter()
        .find(|c| c["assistant"]["name"] == "Bob")
        .unwrap()["assistant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let date = |c: &Value| c["last_message_at"].as_str().unwrap().to_owned();
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "status=closed".into(),
            ids(&all, |c| c["status"] == "closed"),
        ),
        (
            "status=active,archived".into(),
            ids(&all, |c| c["status"] != "closed"),
        ),
        (
            "channel=whatsapp,telegram".into(),
            ids(&all, |c| {
                c["channel"] == "whatsapp" || c["channel"] == "telegram"
            }),
        ),
        (
            format!("assistant={bob}"),
            ids(&all, |c| c["assistant"]["id"] == bob.as_str()),
        ),
        (
            "min_rating=4".into(),
            ids(&all, |c| {
                c["rating"]["score"].as_i64().is_some_and(|s| s >= 4)
            }),
        ),
        (
            "from=2026-10-02&to=2026-10-03".into(),
            ids(&all, |c| {
                let d = date(c);
                d.as_str() >= "2026-10-02" && d.as_str() < "2026-10-04"
            }),
        ),
        (
            "from=2026-10-02T12:00:00Z".into(),
            ids(&all, |c| date(c).as_str() >= "2026-10-02T12:00:00"),
        ),
        (
            "q=sess-1".into(),
            ids(&all, |c| {
                c["session_id"].as_str().unwrap().starts_with("sess-1")
            }),
        ),
        (
            format!("status=closed,active&channel=widget,whatsapp&min_rating=2&assistant={bob}"),
            ids(&all, |c| {
                c["status"] != "archived"
                    && (c["channel"] == "widget" || c["channel"] == "whatsapp")
                    && c["rating"]["score"].as_i64().is_some_and(|s| s >= 2)
                    && c["assistant"]["id"] == bob.as_str()
            }),
        ),
    ];
    for (query, expected) in cases {
        assert!(
            !expected.is_empty() && expected.len() < 24,
            "{query}: the corpus exercises this filter ({})",
            expected.len()
        );
        assert_eq!(
            app.list_ids(&format!("{query}&limit=200")).await,
            expected,
            "{query}"
        );
        let count = app
            .get(&format!("/api/v1/conversations/count?{query}"))
            .await;
        assert_eq!(
            count.body,
            json!({"count": expected.len(), "exact": true}),
            "{query}"
        );
    }
}

async fn every_sort_pages_through_everything_by_cursor(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    corpus(&app).await;
    for sort in [
        "date",
        "-date",
        "messages",
        "-messages",
        "rating",
        "-rating",
        "assistant",
        "-assistant",
        "agent",
        "-agent",
        "status",
        "-status",
    ] {
        let mut seen: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("/api/v1/conversations?sort={sort}&limit=5");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let r = app.get(&q).await;
            assert_eq!(r.status, 200, "{sort}: {}", r.text);
            seen.extend(r.body["items"].as_array().unwrap().iter().cloned());
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 24, "{sort}");
        assert_eq!(
            seen.iter()
                .map(|c| c["id"].as_str().unwrap())
                .collect::<HashSet<_>>()
                .len(),
            24,
            "{sort}: no repeats"
        );
        let key = |c: &Value| -> (String, String, String) {
            let k = match sort.trim_start_matches('-') {
                "messages" => format!("{:06}", c["message_count"].as_i64().unwrap()),
                "rating" => c["rating"]["score"].as_i64().unwrap_or(0).to_string(),
                "assistant" | "agent" => c["assistant"]["name"].as_str().unwrap().to_owned(),
                "status" => c["status"].as_str().unwrap().to_owned(),
                _ => String::new(),
            };
            (
                k,
                c["last_message_at"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
            )
        };
        for w in seen.windows(2) {
            let (a, b) = (key(&w[0]), key(&w[1]));
            if sort.starts_with('-') {
                assert!(a > b, "{sort}: {a:?} then {b:?}")
            } else {
                assert!(a < b, "{sort}: {a:?} then {b:?}")
            }
        }
    }
    // The default is newest first.
    let default = app.list_ids("limit=200").await;
    assert_eq!(default, app.list_ids("sort=-date&limit=200").await);
}

async fn bad_list_parameters_are_refused_with_the_parameter_named(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    corpus(&app).await;
    let page = app.get("/api/v1/conversations?sort=agent&limit=3").await;
    let agent_cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    for (query, field) in [
        ("status=open", "status"),
        ("channel=sms", "channel"),
        ("assistant=bob", "assistant"),
        ("min_rating=6", "min_rating"),
        ("min_rating=x", "min_rating"),
        ("from=yesterday", "from"),
        ("from=2026-10-03&to=2026-10-01", "to"),
        ("sort=price", "sort"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        (&format!("cursor={agent_cursor}&sort=-date"), "cursor"),
        ("colour=red", "colour"),
        ("q=a%00b", "q"),
        ("topic=a%00b", "topic"),
        (
            "started_from=2026-10-03&started_to=2026-10-01",
            "started_to",
        ),
    ] {
        let r = app.get(&format!("/api/v1/conversations?{query}")).await;
        assert_eq!(
            (r.status, r.code(), r.body["error"]["field"].as_str()),
            (400, "invalid_parameter", Some(field)),
            "{query}: {}",
            r.text
        );
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    }
}

crate::both_backends!(
    every_filter_narrows_and_they_combine_with_and,
    every_sort_pages_through_everything_by_cursor,
    bad_list_parameters_are_refused_with_the_parameter_named,
);
