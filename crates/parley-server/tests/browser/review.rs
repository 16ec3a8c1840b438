//! A reviewer's day: sign in, narrow the list with every filter, sort, search, open the panel
//! and read every tab, page the transcript, remove a rating, delete a conversation; then the
//! same on a phone.

use parley_core::Timestamp;
use parley_core::UserRole;
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::TestApp;

const PASSWORD: &str = "correct horse battery";

/// SGD dialogues plus conversations over every channel, status and rating, dated around now,
/// and one long conversation with markdown answers.
async fn seed(app: &TestApp) -> String {
    app.import_sgd(&["dialogues_032.json"]).await;
    let channels = [
        "widget",
        "whatsapp",
        "telegram",
        "test",
        "web",
        "messenger",
        "voip",
        "crm",
    ];
    let statuses = ["active", "closed", "archived"];
    let agents = [("Ava", "Acme Bikes"), ("Sol", "Sunny Travel")];
    let now = Timestamp::now().0;
    for i in 0..24i64 {
        let at = Timestamp(now - i * 9 * 3_600_000); // every 9 hours back: today .. 9 days ago
        let mut body = json!({
            "assistant": {"name": agents[(i % 2) as usize].0, "company": agents[(i % 2) as usize].1},
            "channel": channels[(i % 8) as usize],
            "status": statuses[(i / 2 % 3) as usize],
            "contact": format!("+49 170 55{i:04}"),
            "session_id": format!("demo-{i:02}"),
            "variables": [{"key": "email", "value": format!("guest{i}@example.com"), "source": "pre_chat"},
                          {"key": "bike_size", "value": "M", "source": "extracted"}],
            "memory": {"name": "Ana", "preferences": {"colour": "red"}},
            "messages": [
                {"role": "user", "content": format!("Is the Roadster {i} in stock?"), "created_at": at.add_millis(-60_000).to_rfc3339()},
                {"role": "assistant", "content": "Yes, **in stock**.", "model": "gpt-4o", "created_at": at.to_rfc3339(),
                 "usage": {"prompt_tokens": 300, "completion_tokens": 20}}
            ]
        });
        if i % 3 != 0 {
            body["rating"] = json!({"score": i % 5 + 1, "comment": "Quick"});
        }
        app.create(body).await;
    }
    let messages: Vec<Value> = (0..130)
        .map(|k| {
            let at = Timestamp(now - (130 - k) * 30_000).to_rfc3339();
            if k % 2 == 0 {
                json!({"role": "user", "content": format!("Question number {k}"), "created_at": at})
            } else if k == 129 {
                json!({"role": "agent", "content": "A *human* took over.", "created_at": at})
            } else {
                json!({"role": "assistant", "content": format!("Answer **{k}**:\n\n- first\n- second\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\ncode {k}\n```"),
                       "created_at": at, "model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 10}})
            }
        })
        .collect();
    app.create(json!({"assistant": {"name": "Ava", "company": "Acme Bikes"}, "channel": "widget", "session_id": "long-one",
                      "rating": {"score": 5, "comment": "Great help"}, "messages": messages}))
        .await
}

async fn admin(app: &TestApp) {
    let hash = parley_server::auth::hash_password(PASSWORD).unwrap();
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

/// The ids of the table's rows, in order.
async fn row_ids(b: &Browser) -> Vec<String> {
    let v = b
        .js("return Array.from(document.querySelectorAll('tr.row')).map(r => r.dataset.id)")
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// The ids of the API's first page for the same query.
async fn api_ids(app: &TestApp, query: &str) -> Vec<String> {
    app.list_ids(&format!("{query}&limit=50")).await
}

async fn open_filter_menu(b: &Browser) {
    if b.js("return document.getElementById('filter-menu').open")
        .await
        != Value::Bool(true)
    {
        b.click("#filter-menu summary").await;
    }
}

/// Applies the filter form after `setup` ticks its inputs, and waits for the new page.
async fn apply_filters(b: &Browser, setup: &str) {
    open_filter_menu(b).await;
    b.js(&format!(
        "{setup}; window.__before = performance.timeOrigin; return true"
    ))
    .await;
    b.click(".filter-actions button[type=submit]").await;
    b.wait_for(
        "the filtered page",
        "return window.__before === undefined && document.readyState === 'complete'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_filters_searches_reads_and_deletes() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    // The background analyser off: this walk checks the panel of a conversation that is not
    // analysed yet ("Not analyzed"); tests/browser/insights.rs and tests/api/insights.rs cover
    // analysed ones. With it on, what the panel shows would depend on the analyser's timing.
    let app = TestApp::spawn_with(|s| s.jobs.insights = false).await;
    let long_id = seed(&app).await;
    admin(&app).await;
    let total = app.get("/api/v1/conversations/count").await.body["count"]
        .as_u64()
        .unwrap();
    assert_eq!(total, 128 + 25);

    b.sign_in(&app.base, "reviewer@example.com", PASSWORD).await;
    assert_eq!(
        b.text("#nav-count").await,
        total.to_string(),
        "the badge shows the workspace total"
    );
    assert_eq!(
        row_ids(&b).await,
        api_ids(&app, "sort=-date").await,
        "newest first, a page of 50"
    );
    assert_eq!(b.count("tr.row").await, 50);
    assert_eq!(
        b.text("#result-count").await,
        format!("{total} conversations")
    );
    b.screenshot("list").await;

    // Sorting by a column header, and again to reverse.
    b.click("th.c-num a").await;
    b.wait_for(
        "sort by messages",
        "return location.search.includes('sort=-messages')",
    )
    .await;
    assert_eq!(row_ids(&b).await, api_ids(&app, "sort=-messages").await);
    assert_eq!(b.text("tr.row:first-child .c-num").await, "130");
    b.click("th.c-num a").await;
    b.wait_for(
        "ascending",
        "return location.search.includes('sort=messages')",
    )
    .await;
    assert_eq!(row_ids(&b).await, api_ids(&app, "sort=messages").await);
    for (header, sort) in [
        ("th.c-agent a", "assistant"),
        ("th.c-status a", "status"),
        ("th.c-rating a", "-rating"),
        ("th.c-date a", "-date"),
    ] {
        b.click(header).await;
        b.wait_for(sort, &format!("return new URLSearchParams(location.search).get('sort') === '{sort}' || ('{sort}' === '-date' && !location.search.includes('sort='))")).await;
        assert_eq!(
            row_ids(&b).await,
            api_ids(&app, &format!("sort={sort}")).await,
            "{sort}"
        );
    }

    // Each filter chip narrows the table exactly as the API does, and chips combine with AND.
    let ava = app.get("/api/v1/assistants").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Ava")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let today = b.js("return new Date(Date.now() - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 10)").await;
    let _ = today;
    let steps: Vec<(&str, String, String)> = vec![
        ("Status", "document.querySelector('input[name=status][value=closed]').checked = true".into(), "status=closed".into()),
        ("Channel", "document.querySelector('input[name=channel][value=whatsapp]').checked = true; document.querySelector('input[name=channel][value=widget]').checked = true".into(), "status=closed&channel=whatsapp,widget".into()),
        ("Agent", format!("document.querySelector('input[name=assistant][value=\"{ava}\"]').checked = true"), format!("status=closed&channel=whatsapp,widget&assistant={ava}")),
    ];
    for (chip, setup, query) in &steps {
        apply_filters(&b, setup).await;
        let expected = api_ids(&app, query).await;
        assert!(!expected.is_empty(), "{query} keeps some rows");
        assert_eq!(row_ids(&b).await, expected, "{chip}: {query}");
        let chips = b.js("return Array.from(document.querySelectorAll('.chip .chip-kind')).map(c => c.textContent)").await;
        assert!(
            chips.as_array().unwrap().iter().any(|c| c == chip),
            "{chip} chip in {chips}"
        );
        let count = app
            .get(&format!("/api/v1/conversations/count?{query}"))
            .await
            .body["count"]
            .as_u64()
            .unwrap();
        assert_eq!(
            b.text("#result-count").await,
            format!("{count} conversation{}", if count == 1 { "" } else { "s" })
        );
    }
    b.screenshot("list-filtered").await;
    // Removing a chip widens again.
    b.click(".chip:nth-child(1) .chip-x").await;
    b.wait_for(
        "status chip removed",
        "return !location.search.includes('status=')",
    )
    .await;
    assert_eq!(
        row_ids(&b).await,
        api_ids(&app, &format!("channel=whatsapp,widget&assistant={ava}")).await
    );
    b.click(".chip-clear").await;
    b.wait_for(
        "all chips removed",
        "return document.querySelectorAll('.chip').length === 0",
    )
    .await;

    // Min rating and the quick date ranges.
    apply_filters(
        &b,
        "document.querySelector('input[name=min_rating][value=\"4\"]').checked = true",
    )
    .await;
    assert_eq!(row_ids(&b).await, api_ids(&app, "min_rating=4").await);
    assert!(b.text(".chip").await.contains("4+ stars"));
    open_filter_menu(&b).await;
    b.click(".quick a:nth-child(2)").await; // Last 7 days
    b.wait_for("last 7 days", "return document.body.textContent.includes('Last 7 days') && location.search.includes('from=')").await;
    let from = b.param("from").await.unwrap();
    let offset = b
        .js("return -new Date().getTimezoneOffset()")
        .await
        .as_i64()
        .unwrap();
    let from_utc =
        Timestamp(Timestamp::parse_bound(&from, false).unwrap().0 - offset * 60_000).to_rfc3339();
    let expected = api_ids(
        &app,
        &format!("min_rating=4&from={}", from_utc.replace(':', "%3A")),
    )
    .await;
    assert_eq!(
        row_ids(&b).await,
        expected,
        "rated 4+ within the last 7 days"
    );
    assert!(!expected.is_empty() && expected.len() < 10);
    open_filter_menu(&b).await;
    b.click(".quick a:nth-child(1)").await; // Today
    b.wait_for("today", "return Array.from(document.querySelectorAll('.chip')).some(c => c.textContent.includes('Today'))").await;
    b.click(".chip-clear").await;
    b.wait_for(
        "cleared",
        "return document.querySelectorAll('.chip').length === 0",
    )
    .await;

    // Search: case-insensitive, highlighted where it matched.
    b.click("#search").await;
    b.keys("SAVINGS\u{e007}").await; // Enter
    b.wait_for(
        "search results",
        "return location.search.includes('q=SAVINGS')",
    )
    .await;
    assert_eq!(row_ids(&b).await, api_ids(&app, "q=SAVINGS").await);
    let marks = b.js("return Array.from(document.querySelectorAll('tr.row mark')).map(m => m.textContent.toLowerCase())").await;
    let marks = marks.as_array().unwrap();
    assert_eq!(
        marks.len(),
        b.count("tr.row").await,
        "every result shows its match"
    );
    assert!(marks.iter().all(|m| m == "savings"));
    b.screenshot("list-search").await;
    b.goto(&format!("{}/conversations", app.base)).await;

    // The panel: slides in over the list, with the right data in every tab.
    b.js(&format!("document.querySelector('tr.row[data-id=\"{long_id}\"]') || (location.href = '/conversations?sort=-messages'); return true")).await;
    b.wait_for(
        "the long conversation's row",
        &format!("return !!document.querySelector('tr.row[data-id=\"{long_id}\"]')"),
    )
    .await;
    b.open_row(&long_id).await;
    assert_eq!(
        b.param("open").await.as_deref(),
        Some(long_id.as_str()),
        "the open conversation is in the URL"
    );
    assert!(
        b.js("return document.querySelector('#conversations').getBoundingClientRect().width > 0")
            .await
            == Value::Bool(true),
        "the list stays behind"
    );
    let meta = b.text("#panel .meta").await.to_lowercase();
    for expected in [
        "text-only\nyes",
        "channel\nweb widget",
        "messages\n130",
        "tokens\n7,040",
        "rating\n★★★★★\ngreat help",
        "agent\nava",
    ] {
        assert!(meta.contains(expected), "{expected:?} in {meta:?}");
    }
    assert!(
        meta.contains("cost\n$0.0224") && meta.contains("duration\nongoing"),
        "{meta}"
    );
    let split = b
        .js("return document.querySelector('#panel .meta .has-tip').title")
        .await;
    assert_eq!(split, "Prompt 6,400 + completion 640 tokens");
    assert!(
        b.text("#panel [data-pane=overview]")
            .await
            .contains("Still ongoing")
    );
    assert!(
        b.text("#panel [data-pane=overview]")
            .await
            .contains("Not analyzed")
    );
    b.screenshot("panel-overview").await;

    b.click("#panel [data-tab=transcript]").await;
    b.wait_for(
        "transcript tab",
        "return !document.querySelector('[data-pane=transcript]').hidden",
    )
    .await;
    assert_eq!(b.param("tab").await.as_deref(), Some("transcript"));
    assert_eq!(
        b.count("#transcript .msg").await,
        50,
        "50 per page, most recent"
    );
    assert!(
        b.text("#transcript .msg:last-child")
            .await
            .contains("A human took over.")
    );
    assert_eq!(
        b.count("#transcript .role-assistant .md strong").await,
        24,
        "markdown rendered: answers 81, 83 .. 127"
    );
    assert!(
        b.count("#transcript .role-assistant .md table").await > 0
            && b.count("#transcript .md pre code").await > 0
    );
    assert_eq!(
        b.count("#transcript .role-user .md").await,
        0,
        "user messages stay plain text"
    );
    b.screenshot("panel-transcript").await;
    b.click("#load-older").await;
    b.wait_for(
        "older page",
        "return document.querySelectorAll('#transcript .msg').length === 100",
    )
    .await;
    b.click("#load-older").await;
    b.wait_for(
        "oldest page",
        "return document.querySelectorAll('#transcript .msg').length === 130",
    )
    .await;
    assert_eq!(b.count("#load-older").await, 0);
    assert!(
        b.text("#transcript .msg:first-child")
            .await
            .contains("Question number 0")
    );

    b.click("#panel [data-tab=client]").await;
    b.wait_for(
        "client data tab",
        "return !document.querySelector('[data-pane=client]').hidden",
    )
    .await;
    let client = b.text("#panel [data-pane=client]").await.to_lowercase();
    for expected in [
        "session id",
        "long-one",
        "memory",
        "variables",
        "website session",
        "pageviews",
        "events",
        "triggers",
    ] {
        assert!(client.contains(expected), "{expected} in client data");
    }
    b.screenshot("panel-client-data").await;

    // Esc closes; the back button reopens; a shared link opens the same view.
    b.close_panel().await;
    assert_eq!(b.param("open").await, None);
    b.client.back().await.unwrap();
    b.wait_for(
        "panel reopened",
        "return document.querySelector('#panel').classList.contains('open')",
    )
    .await;
    b.goto(&format!(
        "{}/conversations?open={long_id}&tab=client",
        app.base
    ))
    .await;
    assert!(b.js("return document.querySelector('#panel').classList.contains('open') && !document.querySelector('[data-pane=client]').hidden").await == Value::Bool(true));

    // Remove the rating: the panel and the list show it, and it persists.
    b.click("#remove-rating").await;
    b.wait_for(
        "rating removed",
        "return document.body.textContent.includes('The rating was removed.')",
    )
    .await;
    assert!(
        b.text("#panel .meta").await.contains("No rating"),
        "the panel shows the rating is gone"
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{long_id}"))
            .await
            .body["rating"],
        Value::Null
    );

    // Delete behind a confirmation that says it is irreversible.
    b.click("#delete-button").await;
    b.wait_for(
        "the dialog",
        "return document.getElementById('delete-dialog').open",
    )
    .await;
    assert!(b.text("#delete-dialog").await.contains("cannot be undone"));
    b.click("#delete-dialog button[value=cancel]").await;
    b.wait_for(
        "dialog closed",
        "return !document.getElementById('delete-dialog').open",
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{long_id}"))
            .await
            .status,
        200,
        "cancel keeps it"
    );
    b.click("#delete-button").await;
    b.click("#confirm-delete").await;
    b.wait_for(
        "deleted",
        "return document.body.textContent.includes('The conversation was deleted.')",
    )
    .await;
    assert_eq!(
        b.text("#nav-count").await,
        (total - 1).to_string(),
        "the badge drops"
    );
    assert_eq!(
        b.count(&format!("tr.row[data-id=\"{long_id}\"]")).await,
        0,
        "the row is gone"
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{long_id}"))
            .await
            .status,
        404
    );

    let errors = b.console_errors().await;
    assert!(
        errors.is_empty(),
        "console errors (script errors or CSP violations): {errors:?}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_on_a_phone() {
    let Some(b) = Browser::start(true).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let long_id = seed(&app).await;
    admin(&app).await;
    b.sign_in(&app.base, "reviewer@example.com", PASSWORD).await;
    let width = b
        .js("return [document.documentElement.scrollWidth, window.innerWidth]")
        .await;
    assert_eq!(width[0], width[1], "no horizontal scrolling: {width}");
    assert!(
        b.js("return getComputedStyle(document.querySelector('thead')).display === 'none'")
            .await
            == Value::Bool(true),
        "cards, not a table"
    );
    b.screenshot("mobile-list").await;
    b.goto(&format!("{}/conversations?sort=-messages", app.base))
        .await;
    b.open_row(&long_id).await;
    let panel = b
        .js("return document.querySelector('#panel').getBoundingClientRect().width")
        .await;
    assert_eq!(panel.as_f64().unwrap().round() as i64, 390, "full width");
    b.click("#panel [data-tab=transcript]").await;
    b.wait_for(
        "transcript",
        "return !document.querySelector('[data-pane=transcript]').hidden",
    )
    .await;
    b.screenshot("mobile-panel").await;
    b.close().await;
}
