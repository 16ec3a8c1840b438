//! The Insights page (issue 13): its headline numbers equal the summary API's for the same
//! range, a card drills down to the Conversations list holding as many conversations as the
//! figure says, and it renders on a desktop and a phone (screenshots).

use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::TestApp;

const PASSWORD: &str = "insights password 1";

/// Four conversations started an hour ago (one per outcome but ongoing), waited on until the
/// background analyser has analysed them all.
async fn seed(app: &TestApp) {
    let start = parley_core::Timestamp::now().add_millis(-3_600_000);
    let at = |s: i64| start.add_millis(s * 1000).to_rfc3339();
    let bodies = [
        json!({"assistant": {"name": "Ava"}, "channel": "widget", "status": "closed",
               "started_at": at(0), "rating": {"score": 5},
               "messages": [{"role": "user", "content": "Where is my order?", "created_at": at(1)},
                            {"role": "assistant", "content": "It ships tomorrow.", "created_at": at(3),
                             "cost_nanousd": 4000}]}),
        json!({"assistant": {"name": "Ava"}, "channel": "whatsapp", "status": "closed",
               "started_at": at(10), "rating": {"score": 2},
               "messages": [{"role": "user", "content": "Where is my order?", "created_at": at(11)},
                            {"role": "agent", "content": "I have it.", "created_at": at(20)}]}),
        json!({"assistant": {"name": "Ava"}, "channel": "widget", "status": "closed",
               "started_at": at(30),
               "messages": [{"role": "user", "content": "This is terrible, I hate this awful shop.", "created_at": at(31)},
                            {"role": "assistant", "content": "Sorry.", "created_at": at(32)},
                            {"role": "user", "content": "Useless. Worst service ever.", "created_at": at(33)}]}),
        json!({"assistant": {"name": "Ava"}, "channel": "widget", "status": "closed",
               "started_at": at(40),
               "messages": [{"role": "user", "content": "Thanks, this is great, I love it!", "created_at": at(41)},
                            {"role": "assistant", "content": "Glad to help.", "created_at": at(42),
                             "cost_nanousd": 6000}]}),
    ];
    for b in bodies {
        app.create(b).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = app
            .get("/api/v1/conversations/count?resolution=resolved_by_ai,handed_off,unresolved,ongoing")
            .await;
        if r.body["count"] == 4 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not analysed: {}",
            r.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn admin(app: &TestApp) {
    let hash = parley_server::auth::hash_password(PASSWORD).unwrap();
    app.state
        .store
        .auth()
        .create_user(
            app.workspace.id,
            "analyst@example.com",
            &hash,
            parley_core::UserRole::Admin,
        )
        .await
        .unwrap();
}

/// The browser's UTC offset as the API's `tz` (`+HH:MM`).
async fn browser_tz(b: &Browser) -> String {
    let east = -b
        .js("return new Date().getTimezoneOffset()")
        .await
        .as_i64()
        .unwrap();
    let sign = if east < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", east.abs() / 60, east.abs() % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_insights_page_matches_the_api_and_drills_down() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    seed(&app).await;
    admin(&app).await;
    b.sign_in(&app.base, "analyst@example.com", PASSWORD).await;
    // Twice: the first page sets the time zone cookie.
    b.goto(&format!("{}/insights?range=7d", app.base)).await;
    b.goto(&format!("{}/insights?range=7d", app.base)).await;
    assert_eq!(b.text("#range-label").await, "Last 7 days");

    // The same window through the API: the last 7 local days, today included.
    let tz = browser_tz(&b).await;
    let today = b
        .js("const d = new Date(); return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0')")
        .await;
    let first = b
        .js("const d = new Date(Date.now() - 6 * 86400000); return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0')")
        .await;
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("from", first.as_str().unwrap())
        .append_pair("to", today.as_str().unwrap())
        .append_pair("tz", &tz)
        .finish();
    let r = app.get(&format!("/api/v1/insights/summary?{q}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let f = |name: &str| r.body["figures"][name]["value"].clone();
    assert_eq!(f("conversations"), 4, "{}", r.text);
    let pct = |v: Value| format!("{:.1}%", v.as_f64().unwrap() * 100.0);
    let card = |id: &str| format!("#card-{id} [data-value]");
    assert_eq!(
        b.text(&card("conversations")).await,
        f("conversations").to_string()
    );
    assert_eq!(b.text(&card("messages")).await, f("messages").to_string());
    assert_eq!(
        b.text(&card("resolution-rate")).await,
        pct(f("resolution_rate"))
    );
    assert_eq!(b.text(&card("handoff-rate")).await, pct(f("handoff_rate")));
    assert_eq!(b.text(&card("csat")).await, pct(f("csat")));
    assert_eq!(
        b.text(&card("average-rating")).await,
        format!("{:.2} / 5", f("average_rating").as_f64().unwrap())
    );
    assert_eq!(
        b.text(&card("sentiment-negative")).await,
        f("sentiment_negative").to_string()
    );
    // The chart's table and the heatmap hold the 4 conversations.
    let series: i64 = b
        .js("return Array.from(document.querySelectorAll('#series-table tbody td:nth-child(2)')).reduce((s, td) => s + Number(td.textContent), 0)")
        .await
        .as_i64()
        .unwrap();
    assert_eq!(series, 4);
    let cells: i64 = b
        .js("return Array.from(document.querySelectorAll('#heatmap tbody td')).reduce((s, td) => s + Number(td.textContent), 0)")
        .await
        .as_i64()
        .unwrap();
    assert_eq!(cells, 4);
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
    b.screenshot("insights").await;

    // Drill down: the hand-off card opens the list filtered the same way.
    b.click("#card-handoff-rate").await;
    b.wait_for(
        "the conversations list",
        "return location.pathname === '/conversations'",
    )
    .await;
    assert_eq!(b.param("resolution").await.as_deref(), Some("handed_off"));
    let rows = b.count("tr.row").await;
    assert_eq!(rows as i64, f("handed_off").as_i64().unwrap());
    assert_eq!(rows, 1);
    b.close().await;

    let Some(phone) = Browser::start(true).await else {
        return;
    };
    phone
        .sign_in(&app.base, "analyst@example.com", PASSWORD)
        .await;
    phone
        .goto(&format!("{}/insights?range=30d", app.base))
        .await;
    phone
        .goto(&format!("{}/insights?range=30d", app.base))
        .await;
    assert_eq!(phone.text(&card("conversations")).await, "4");
    phone.screenshot("insights-mobile").await;
    phone.close().await;
}

/// A custom range: the From / To inputs beside the quick ranges set the window (its label, its
/// cards), and each figure's CSV link downloads the numbers the API's `format=csv` gives for
/// the same window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_range_and_its_csv_downloads() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    seed(&app).await;
    admin(&app).await;
    b.sign_in(&app.base, "analyst@example.com", PASSWORD).await;
    b.goto(&format!("{}/insights", app.base)).await;
    b.goto(&format!("{}/insights", app.base)).await;
    let day = |back: i64| {
        format!(
            "const d = new Date(Date.now() - {back} * 86400000); return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0')"
        )
    };
    let today = b.js(&day(0)).await.as_str().unwrap().to_owned();
    let first = b.js(&day(2)).await.as_str().unwrap().to_owned();
    b.js(&format!(
        "document.querySelector('#range-from').value = '{first}';
         document.querySelector('#range-to').value = '{today}'; return true"
    ))
    .await;
    b.click(".insights-filters button[type=submit]").await;
    b.wait_for(
        "the custom range",
        "return new URLSearchParams(location.search).get('from') !== null",
    )
    .await;
    assert_eq!(b.text("#range-label").await, format!("{first} to {today}"));
    assert_eq!(b.text("#card-conversations [data-value]").await, "4");

    let tz = browser_tz(&b).await;
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("from", &first)
        .append_pair("to", &today)
        .append_pair("tz", &tz)
        .append_pair("format", "csv")
        .finish();
    for figure in ["summary", "heatmap", "assistants", "topics"] {
        let got = b
            .js(&format!(
                "const x = new XMLHttpRequest();
                 x.open('GET', document.querySelector('#csv-{figure}').href, false);
                 x.send(); return [x.status, x.getResponseHeader('content-type'), x.responseText]"
            ))
            .await;
        assert_eq!(got[0], 200, "{figure}: {got}");
        assert!(got[1].as_str().unwrap().starts_with("text/csv"), "{got}");
        let api = app.get(&format!("/api/v1/insights/{figure}?{q}")).await;
        assert_eq!(api.status, 200, "{}", api.text);
        assert_eq!(got[2].as_str().unwrap(), api.text, "{figure}");
    }
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
    b.screenshot("insights-custom-range").await;
    b.close().await;
}
