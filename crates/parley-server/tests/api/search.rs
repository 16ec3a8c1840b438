//! Search over real SGD dialogues and over crafted non-ASCII text.

use serde_json::json;

use crate::helpers::Backend;
use crate::helpers::TestApp;

async fn search_real_dialogues_by_content_session_and_assistant(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    app.import_sgd(&["dialogues_032.json"]).await; // Banks_1, Homes_1, Services_2
    let total = app.get("/api/v1/conversations/count").await.body["count"]
        .as_u64()
        .unwrap();
    assert_eq!(total, 128);

    // A content term: every hit's snippet shows the term, and the count agrees with the list.
    let r = app.get("/api/v1/conversations?q=SAVINGS&limit=200").await;
    let items = r.body["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() < 128, "{}", items.len());
    for c in items {
        let m = &c["match"];
        assert_eq!(m["field"], "content");
        assert_eq!(
            m["snippet"]["matched"].as_str().unwrap().to_lowercase(),
            "savings"
        );
        let mid = m["message_id"].as_str().unwrap();
        let msgs = app
            .get(&format!(
                "/api/v1/conversations/{}/messages?per_page=200",
                c["id"].as_str().unwrap()
            ))
            .await;
        let hit = msgs.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == mid)
            .unwrap();
        assert!(
            hit["content"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("savings")
        );
    }
    let count = app.get("/api/v1/conversations/count?q=savings").await;
    assert_eq!(count.body["count"].as_u64().unwrap() as usize, items.len());

    // The session id (dialogue id), a substring of it, and the assistant's name.
    let r = app.get("/api/v1/conversations?q=32_0001").await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        10,
        "32_00010 .. 32_00019"
    );
    assert_eq!(r.body["items"][0]["match"]["field"], "session_id");
    let banks = app
        .get("/api/v1/conversations/count?q=banks%20assist")
        .await;
    assert!(banks.body["count"].as_u64().unwrap() > 0);

    // Search narrows together with the other filters, and pages by cursor.
    let first = app
        .get("/api/v1/conversations?q=account&limit=5&sort=messages")
        .await;
    let next = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!(
            "/api/v1/conversations?q=account&limit=5&sort=messages&cursor={next}"
        ))
        .await;
    assert_eq!(second.status, 200);
    assert_ne!(first.body["items"][0]["id"], second.body["items"][0]["id"]);
    assert!(
        app.list_ids("q=account&status=active").await.is_empty(),
        "imported dialogues are closed"
    );
}

async fn search_folds_non_ascii_case_and_finds_short_terms(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let schon = app
        .create(json!({"assistant": {"name": "Ava"}, "messages": [{"role": "user", "content": "Das Zimmer war wirklich schön!"}]}))
        .await;
    let greek = app
        .create(json!({"assistant": {"name": "Ζωή Βοηθός"}, "contact": "Ελένη", "messages": [{"role": "assistant", "content": "Καλημέρα"}]}))
        .await;
    let tiny = app.create(json!({"assistant": {"name": "Bob"}, "messages": [{"role": "user", "content": "ok 👍"}]})).await;
    assert_eq!(
        app.list_ids("q=SCH%C3%96N").await,
        vec![schon.clone()],
        "SCHÖN finds schön"
    );
    assert_eq!(
        app.list_ids("q=%CE%95%CE%9B%CE%88%CE%9D%CE%97").await,
        vec![greek.clone()],
        "ΕΛΈΝΗ finds the contact Ελένη"
    );
    assert_eq!(
        app.list_ids("q=%CE%BA%CE%B1%CE%BB").await,
        vec![greek.clone()],
        "καλ (3 chars) finds Καλημέρα"
    );
    assert_eq!(
        app.list_ids("q=%CE%B6%CF%89").await,
        vec![greek.clone()],
        "ζω (2 chars) finds the assistant Ζωή"
    );
    assert_eq!(
        app.list_ids("q=OK").await,
        vec![tiny.clone()],
        "2 characters"
    );
    assert_eq!(
        app.list_ids("q=%F0%9F%91%8D").await,
        vec![tiny.clone()],
        "one emoji"
    );
    assert_eq!(
        app.list_ids("q=%C3%B6").await,
        vec![schon.clone()],
        "one non-ASCII letter"
    );
    let r = app.get("/api/v1/conversations?q=wirklich%20SCH").await;
    let s = &r.body["items"][0]["match"]["snippet"];
    assert_eq!(
        (
            s["before"].as_str(),
            s["matched"].as_str(),
            s["after"].as_str()
        ),
        (Some("Das Zimmer war "), Some("wirklich sch"), Some("ön!"))
    );
    assert!(app.list_ids("q=zzzz").await.is_empty());
    let long = "x".repeat(201);
    assert_eq!(
        app.get(&format!("/api/v1/conversations?q={long}"))
            .await
            .status,
        400
    );
}

crate::both_backends!(
    search_real_dialogues_by_content_session_and_assistant,
    search_folds_non_ascii_case_and_finds_short_terms,
);
