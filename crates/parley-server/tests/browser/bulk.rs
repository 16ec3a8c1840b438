//! Bulk actions on the Conversations list (issue 14) in a real browser: Shift-click selects a
//! range of rows, the selection is archived and the rows update; the header checkbox and
//! "Select all N matching this filter" select the whole search, and a delete confirmed by
//! typing the number runs as a background job with a progress bar until the list is empty.
//! A row's own menu archives one conversation. Screenshots on a desktop and a phone.

use std::time::Duration;

use parley_core::UserRole;
use serde_json::json;

use crate::harness::Browser;
use crate::helpers::TestApp;

const PASSWORD: &str = "correct horse battery";

async fn import(app: &TestApp, n: usize, word: &str) {
    let mut body = String::new();
    for i in 0..n {
        body.push_str(
            &json!({"assistant": {"name": "Ava", "company": "Acme"}, "channel": "widget",
                    "contact": format!("{word}-{i:04}"),
                    "messages": [{"role": "user", "content": format!("hello {word} {i}")},
                                 {"role": "assistant", "content": "how can I help?"}]})
            .to_string(),
        );
        body.push('\n');
    }
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/import"))
                .bearer_auth(&app.key)
                .header("content-type", "application/jsonl")
                .body(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Clicks the checkbox of the `i`-th row (0-based), with Shift held when `shift`.
async fn check_row(b: &Browser, i: usize, shift: bool) {
    b.js(&format!(
        "const c = document.querySelectorAll('tr.row .row-check')[{i}];
         c.dispatchEvent(new MouseEvent('click', {{bubbles: true, cancelable: true, shiftKey: {shift}}}));
         return true"
    ))
    .await;
}

/// Clicks `css` from the page's script (the live list may re-render at any moment).
async fn press(b: &Browser, css: &str) {
    b.wait_for(
        css,
        &format!("const e = document.querySelector({css:?}); if (!e) return false; e.click(); return true"),
    )
    .await;
}

async fn checked(b: &Browser) -> u64 {
    b.js("return document.querySelectorAll('tr.row .row-check:checked').length")
        .await
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_selected_archived_and_deleted_in_bulk() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    import(&app, 620, "bulkbrowse").await;
    import(&app, 3, "keepme").await;
    let hash = parley_server::auth::hash_password(PASSWORD).unwrap();
    app.state
        .store
        .auth()
        .create_user(app.workspace.id, "dana@example.com", &hash, UserRole::Admin)
        .await
        .unwrap();
    let base = app.url("");
    b.sign_in(&base, "dana@example.com", PASSWORD).await;
    b.goto(&format!("{base}/conversations?q=bulkbrowse")).await;
    b.wait_for(
        "the rows",
        "return document.querySelectorAll('tr.row').length >= 10",
    )
    .await;
    assert!(
        b.js("return document.querySelector('#bulk-bar').hidden")
            .await
            == true
    );

    // Row 2, then Shift-click row 6: rows 2 to 6.
    check_row(&b, 1, false).await;
    check_row(&b, 5, true).await;
    assert_eq!(checked(&b).await, 5);
    assert_eq!(b.text("#bulk-count").await, "5 selected");
    assert!(
        b.js("return document.querySelector('#panel').classList.contains('open')")
            .await
            == false,
        "a checkbox does not open the panel"
    );
    let picked: Vec<String> = serde_json::from_value(
        b.js("return [...document.querySelectorAll('tr.row')].filter(r => r.querySelector('.row-check').checked).map(r => r.dataset.id)")
            .await,
    )
    .unwrap();
    b.screenshot("bulk-selection").await;

    // Archive them: the rows update live.
    press(&b, "[data-bulk=archive]").await;
    b.wait_for(
        "the archived rows",
        &format!(
            "const ids = {picked:?}; return ids.every(id => {{ const r = document.querySelector('tr.row[data-id=\"' + id + '\"]'); return r && r.dataset.status === 'archived'; }})"
        ),
    )
    .await;
    for id in &picked {
        let r = app.get(&format!("/api/v1/conversations/{id}")).await;
        assert_eq!(r.body["status"], "archived");
    }
    assert_eq!(
        checked(&b).await,
        0,
        "the selection is cleared after the action"
    );

    // A row's own menu archives one conversation.
    let first: String = b
        .js("return [...document.querySelectorAll('tr.row')].find(r => r.dataset.status === 'active').dataset.id")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    b.click(&format!("tr.row[data-id=\"{first}\"] .row-menu summary"))
        .await;
    press(
        &b,
        &format!("tr.row[data-id=\"{first}\"] [data-row-status=archived]"),
    )
    .await;
    b.wait_for(
        "the row's status",
        &format!("const r = document.querySelector('tr.row[data-id=\"{first}\"]'); return !!r && r.dataset.status === 'archived'"),
    )
    .await;

    // The page, then all 620 matching the search; delete with the typed number.
    press(&b, "#select-page").await;
    b.wait_for(
        "the select-all offer",
        "return !document.querySelector('#bulk-all').hidden",
    )
    .await;
    assert!(b.text("#bulk-all").await.contains("620"));
    press(&b, "#bulk-all").await;
    assert!(
        b.text("#bulk-count").await.contains("620"),
        "{}",
        b.text("#bulk-count").await
    );
    press(&b, "[data-bulk=delete]").await;
    b.wait_for(
        "the delete dialog",
        "return document.querySelector('#bulk-delete-dialog').open",
    )
    .await;
    b.click("#bulk-delete-typed").await;
    b.keys("62").await;
    assert!(
        b.js("return document.querySelector('#bulk-delete-confirm').disabled")
            .await
            == true,
        "the wrong number does not delete"
    );
    b.keys("0").await;
    assert!(
        b.js("return document.querySelector('#bulk-delete-confirm').disabled")
            .await
            == false
    );
    press(&b, "#bulk-delete-confirm").await;
    // More than one batch: a background job with a progress bar.
    b.wait_for(
        "the progress bar",
        "return !document.querySelector('#bulk-progress').hidden && document.querySelector('#bulk-progress-label').textContent.includes('620')",
    )
    .await;
    b.screenshot("bulk-delete-progress").await;
    b.wait_up_to(
        "the job to finish",
        "return document.querySelector('#bulk-progress-label').textContent.startsWith('Deleted 620')",
        Duration::from_secs(60),
    )
    .await;
    b.wait_for(
        "the list to empty",
        "return document.querySelectorAll('tr.row').length === 0",
    )
    .await;
    let count = app.get("/api/v1/conversations/count").await;
    assert_eq!(
        count.body["count"], 3,
        "only the other conversations are left"
    );
    let log = app.get("/api/v1/audit-log?action=conversations.bulk").await;
    let entries = log.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", log.text);
    assert_eq!(entries[0]["details"]["action"], "delete");
    assert_eq!(entries[0]["details"]["count"], 620);
    assert_eq!(entries[0]["details"]["via"], "dashboard");
    assert!(
        b.console_errors().await.is_empty(),
        "{:?}",
        b.console_errors().await
    );

    // A phone: the selection bar wraps above the list.
    let phone = b.start_another(true).await.unwrap();
    phone.sign_in(&base, "dana@example.com", PASSWORD).await;
    phone
        .wait_for(
            "the rows",
            "return document.querySelectorAll('tr.row').length === 3",
        )
        .await;
    check_row(&phone, 0, false).await;
    check_row(&phone, 2, true).await;
    assert_eq!(checked(&phone).await, 3);
    phone.screenshot("bulk-selection-phone").await;
    phone.close().await;
    b.close().await;
}
