//! Issue 16 in Chromium: the Export dialog downloads the current view (filters, search and
//! sort) as CSV, JSONL and a fine-tuning set, after counting it; the file Chromium saves is
//! compared with the list. The print view of a conversation, with a screenshot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::TestApp;

const PASSWORD: &str = "correct horse battery";

/// Waits until Chromium has saved a file ending in `suffix` in `dir` (its final name appears
/// only once the download is complete); returns its path.
async fn downloaded(dir: &Path, suffix: &str) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with(suffix));
        if let Some(p) = found {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no {suffix} download in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every id of the list for `query`, through the API's pages.
async fn list_ids(app: &TestApp, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/conversations?limit=200&{query}");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(&form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>());
        }
        let r = app.get(&path).await;
        ids.extend(
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

/// Opens the dialog and waits for its count (or estimate) of the view.
async fn open_dialog(b: &Browser) {
    b.click("#export-button").await;
    b.wait_for(
        "the dialog's count",
        "return !document.querySelector('#export-start').disabled",
    )
    .await;
}

/// Starts the download and waits for the dialog to say it is done.
async fn download(b: &Browser) {
    b.click("#export-start").await;
    b.wait_for(
        "the download",
        "return document.querySelector('#export-dialog').dataset.state === 'done'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_dialog_downloads_the_current_view() {
    let dir = tempfile::tempdir().unwrap();
    let Some(b) = Browser::start_downloading_to(dir.path()).await else {
        return;
    };
    let app = TestApp::spawn_with(|s| s.jobs.insights = false).await;
    // 128 real dialogues (more than one page of the export) and a conversation with a team
    // reply, a rating and a variable.
    app.import_sgd(&["dialogues_033.json"]).await;
    app.create(json!({
        "assistant": {"name": "Ava", "company": "Acme"}, "channel": "whatsapp", "contact": "+1 415 555 0100",
        "rating": {"score": 5}, "variables": [{"key": "order_id", "value": "A-17"}],
        "messages": [
            {"role": "user", "content": "My dentist appointment, call me at 408-555-1234", "created_at": "2026-11-01T10:00:00Z"},
            {"role": "assistant", "content": "One moment.", "created_at": "2026-11-01T10:00:01Z"},
            {"role": "agent", "content": "Moved to Friday.", "created_at": "2026-11-01T10:00:02Z"}
        ]}))
    .await;
    let base = b.sign_in_new_admin(&app, PASSWORD).await;
    let view = "q=dentist&sort=messages";
    b.goto(&format!("{base}/conversations?{view}")).await;

    // CSV, one row per conversation: the view's conversations in the view's order.
    open_dialog(&b).await;
    let ids = list_ids(&app, view).await;
    assert!(ids.len() > 10, "{}", ids.len());
    let summary = b.text("#export-summary").await;
    assert!(
        summary.contains(&format!("{} conversations in this view", ids.len())),
        "{summary}"
    );
    b.screenshot("export-dialog").await;
    download(&b).await;
    let received = b.text("#export-received").await;
    assert!(
        received.contains(&format!("Downloaded {} rows", ids.len())),
        "{received}"
    );
    let file = downloaded(dir.path(), ".csv").await;
    assert!(
        file.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("parley-conversations-")
    );
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[0], "conversation_id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.iter().map(|r| r[0].to_owned()).collect::<Vec<_>>(),
        ids,
        "the file holds the view, in its order"
    );
    std::fs::remove_file(&file).unwrap();

    // JSONL, one row per message: the same conversations, every message.
    b.click("#export-form input[name=kind][value=message]")
        .await;
    b.click("#export-form input[name=format][value=jsonl]")
        .await;
    b.wait_for(
        "the recount",
        "return !document.querySelector('#export-start').disabled",
    )
    .await;
    download(&b).await;
    let file = downloaded(dir.path(), ".jsonl").await;
    assert!(
        file.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("parley-messages-")
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let api = app
        .get(&format!(
            "/api/v1/conversations/export?{view}&rows=message&format=jsonl"
        ))
        .await;
    assert_eq!(
        text, api.text,
        "the dialog's file is the API's export of the view"
    );
    let mut seen: Vec<String> = Vec::new();
    for line in text.lines() {
        let m: Value = serde_json::from_str(line).unwrap();
        let c = m["conversation_id"].as_str().unwrap().to_owned();
        if seen.last() != Some(&c) {
            seen.push(c);
        }
    }
    assert_eq!(seen, ids);
    std::fs::remove_file(&file).unwrap();

    // A fine-tuning set of the view, team replies only: the estimate first, then the file.
    b.click("#export-form input[name=kind][value=finetune]")
        .await;
    b.click("#export-form input[name=train_on]").await;
    b.wait_for(
        "the estimate",
        "return document.querySelector('#export-summary').dataset.examples === '1'",
    )
    .await;
    let est = app
        .get(&format!(
            "/api/v1/conversations/finetune/estimate?{view}&train_on=team"
        ))
        .await;
    assert_eq!(est.body["examples"], 1);
    assert_eq!(
        b.js("return document.querySelector('#export-summary').dataset.tokens")
            .await,
        json!(est.body["estimated_tokens"].to_string())
    );
    b.screenshot("export-dialog-finetune").await;
    download(&b).await;
    let file = downloaded(dir.path(), ".jsonl").await;
    let text = std::fs::read_to_string(&file).unwrap();
    let line: Value = serde_json::from_str(text.trim_end()).unwrap();
    let roles: Vec<(&str, Option<&Value>)> = line["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m.get("weight")))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("user", None),
            ("assistant", Some(&json!(0))),
            ("assistant", Some(&json!(1)))
        ]
    );
    assert_eq!(
        line["messages"][0]["content"], "My dentist appointment, call me at [PHONE]",
        "redacted by default"
    );

    // Cancel closes the idle dialog.
    b.click("#export-cancel").await;
    b.wait_for(
        "the dialog to close",
        "return !document.querySelector('#export-dialog').open",
    )
    .await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_print_view_shows_metadata_variables_and_the_transcript() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn_with(|s| s.jobs.insights = false).await;
    let id = app
        .create(json!({
            "assistant": {"name": "Ava", "company": "Acme Bikes"}, "channel": "widget",
            "contact": "visitor-42", "rating": {"score": 4, "comment": "Helpful"},
            "variables": [{"key": "email", "value": "ana@example.com", "source": "pre_chat"},
                          {"key": "bike_size", "value": "M", "source": "extracted"}],
            "messages": (0..24).map(|k| {
                let at = format!("2026-11-01T10:{:02}:00Z", k);
                match k % 3 {
                    0 => json!({"role": "user", "content": format!("Question {k}: <b>is</b> the Roadster in stock?"), "created_at": at}),
                    1 => json!({"role": "assistant", "content": format!("Answer {k}: **yes**, in size M.\n\n- red\n- blue"), "created_at": at, "model": "gpt-4o"}),
                    _ => json!({"role": "agent", "content": format!("Team note {k}."), "created_at": at}),
                }
            }).collect::<Vec<_>>()
        }))
        .await;
    let base = b.sign_in_new_admin(&app, PASSWORD).await;
    // Linked from the panel.
    b.goto(&format!("{base}/conversations?open={id}")).await;
    b.wait_for(
        "the panel",
        "return !!document.querySelector('#panel-export')",
    )
    .await;
    let href = b
        .js("return document.querySelector('#print-view').getAttribute('href')")
        .await;
    assert_eq!(href, json!(format!("/conversations/{id}/print")));
    b.goto(&format!("{base}/conversations/{id}/print")).await;
    b.wait_for(
        "the print view",
        "return !!document.querySelector('#print-transcript')",
    )
    .await;
    assert_eq!(b.count(".print-message").await, 24);
    let meta = b.text("#print-meta").await;
    assert!(
        meta.contains("Ava (Acme Bikes)") && meta.contains("4/5"),
        "{meta}"
    );
    let vars = b.text("#print-variables").await;
    assert!(
        vars.contains("ana@example.com") && vars.contains("bike_size"),
        "{vars}"
    );
    // The customer's markup is text; the assistant's markdown is rendered.
    assert_eq!(b.count(".print-text b").await, 0);
    assert_eq!(b.count(".role-assistant .print-text strong").await, 8);
    // Paginated for print: an @page rule, and messages kept whole across pages.
    let print_rules = b
        .js("return [...document.styleSheets].flatMap(s => [...s.cssRules]).some(r => r instanceof CSSPageRule)")
        .await;
    assert_eq!(print_rules, json!(true));
    let avoid = b
        .js("return getComputedStyle(document.querySelector('.print-message')).breakInside")
        .await;
    assert_eq!(avoid, json!("avoid"));
    b.screenshot("print-view").await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
    b.close().await;
}
