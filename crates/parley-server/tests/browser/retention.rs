//! Retention and erasure in the dashboard (issue 16): an admin sets a policy on
//! `/settings/retention`, does a dry run and a real run ("Run now") and sees both in the log;
//! then erases a contact from a conversation's panel behind its confirmation dialog.

use parley_core::Timestamp;
use serde_json::json;

use crate::harness::Browser;
use crate::helpers::TestApp;

const DAY: i64 = 86_400_000;

async fn conversation(app: &TestApp, contact: &str, status: &str, age: i64, words: &str) -> String {
    let at = Timestamp(Timestamp::now().0 - age * DAY).to_rfc3339();
    let r = app
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"name": "Ava", "company": "Acme"}, "channel": "widget",
                "status": status, "contact": contact,
                "messages": [{"role": "user", "content": words, "created_at": at},
                             {"role": "assistant", "content": "Happy to help.", "created_at": at}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["conversation"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_a_policy_runs_it_and_erases_a_contact() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let old = conversation(&app, "+4917000111", "closed", 200, "an old closed chat").await;
    let kept = conversation(&app, "+4917000222", "active", 200, "an old active chat").await;
    let erased_a = conversation(&app, "visitor-erase-me", "active", 1, "first chat to erase").await;
    let erased_b = conversation(
        &app,
        "visitor-erase-me",
        "closed",
        3,
        "second chat to erase",
    )
    .await;
    let base = b.sign_in_new_admin(&app, "correct horse battery").await;

    // The policy: closed conversations after 90 days, visits after 30.
    b.goto(&format!("{base}/settings/retention")).await;
    b.wait_for(
        "the form",
        "return !!document.getElementById('retention-form')",
    )
    .await;
    assert!(b.text("#no-runs").await.contains("No runs yet"));
    b.click("#conversation-days").await;
    b.keys("90").await;
    b.click("#tracker-days").await;
    b.keys("30").await;
    b.click("#status-closed").await;
    b.click("#save-retention").await;
    b.wait_for("saved", "return !!document.getElementById('saved')")
        .await;
    let p = app.get("/api/v1/retention").await;
    assert_eq!(p.body["conversation_days"], 90, "{}", p.text);
    assert_eq!(p.body["tracker_days"], 30);
    assert_eq!(p.body["conversation_statuses"], json!(["closed"]));

    // A dry run deletes nothing; "Run now" deletes the old closed conversation only.
    b.click("#dry-run").await;
    b.wait_for(
        "the dry run",
        "return !!document.getElementById('retention-runs')",
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{old}"))
            .await
            .status,
        200
    );
    b.click("#run-now").await;
    b.wait_for(
        "the run in the log",
        "return document.querySelectorAll('#retention-runs tbody tr').length === 2",
    )
    .await;
    let first_row = b.text("#retention-runs tbody tr:first-child").await;
    assert!(first_row.contains("Run"), "{first_row}");
    assert!(
        first_row.contains("1 conversations (2 messages)"),
        "{first_row}"
    );
    assert!(
        b.text("#retention-runs tbody tr:nth-child(2)")
            .await
            .contains("Dry run")
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{old}"))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{kept}"))
            .await
            .status,
        200
    );
    b.screenshot("retention-settings").await;

    // Erase a contact from the panel: a confirmation first; Cancel keeps everything.
    b.goto(&format!("{base}/conversations")).await;
    b.open_row(&erased_a).await;
    b.click("#erase-button").await;
    b.wait_for(
        "the dialog",
        "return document.getElementById('erase-dialog').open",
    )
    .await;
    let dialog = b.text("#erase-dialog").await;
    assert!(
        dialog.contains("visitor-erase-me") && dialog.contains("cannot be undone"),
        "{dialog}"
    );
    b.screenshot("retention-erase-dialog").await;
    b.click("#erase-dialog button[value=cancel]").await;
    b.wait_for(
        "closed",
        "return !document.getElementById('erase-dialog').open",
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{erased_a}"))
            .await
            .status,
        200
    );
    b.click("#erase-button").await;
    b.wait_for(
        "the dialog",
        "return document.getElementById('erase-dialog').open",
    )
    .await;
    b.click("#confirm-erase").await;
    b.wait_for(
        "the notice",
        "return document.body.textContent.includes('Everything about the contact was deleted')",
    )
    .await;
    for id in [&erased_a, &erased_b] {
        assert_eq!(
            app.get(&format!("/api/v1/conversations/{id}")).await.status,
            404
        );
        assert_eq!(b.count(&format!("tr.row[data-id=\"{id}\"]")).await, 0);
    }
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{kept}"))
            .await
            .status,
        200
    );

    // The erasure is on the settings page, without the contact.
    b.goto(&format!("{base}/settings/retention")).await;
    let erasures = b.text("#erasures").await;
    assert!(
        erasures.contains("2 conversations (4 messages)"),
        "{erasures}"
    );
    assert!(!erasures.contains("visitor-erase-me"));
    assert!(
        b.console_errors().await.is_empty(),
        "{:?}",
        b.console_errors().await
    );
    b.close().await;
}
