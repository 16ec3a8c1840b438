//! Live updates in the dashboard (issue 14): with a conversation open, a message posted through
//! the API appears in the panel without a reload, a new conversation appears in the list, and a
//! deleted conversation disappears (each polled in the DOM with a deadline).

use parley_core::UserRole;
use serde_json::json;

use crate::harness::Browser;
use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_panel_and_the_list_follow_new_messages_without_a_reload() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let hash = parley_server::auth::hash_password("correct horse battery").unwrap();
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
    let id = app
        .create(json!({
            "assistant": {"name": "Ava"},
            "channel": "widget",
            "messages": [{"role": "user", "content": "Is the blue kettle in stock?"}]
        }))
        .await;
    b.sign_in(&app.base, "reviewer@example.com", "correct horse battery")
        .await;
    b.goto(&format!(
        "{}/conversations?open={id}&tab=transcript",
        app.base
    ))
    .await;
    b.wait_for(
        "the transcript",
        "return !!document.querySelector('#transcript .role-user')",
    )
    .await;
    // A marker that a reload would lose.
    b.js("window.__noReload = true; return true").await;

    let r = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &json!({"messages": [{"role": "assistant", "content": "Yes, three left in the Oslo store."}]}),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    b.wait_for(
        "the new message in the open panel",
        "return document.querySelector('#panel').textContent.includes('three left in the Oslo store')",
    )
    .await;
    assert_eq!(b.js("return window.__noReload === true").await, json!(true));

    let other = app
        .create(json!({
            "assistant": {"name": "Ava"},
            "channel": "whatsapp",
            "messages": [{"role": "user", "content": "Do you deliver on Sundays?"}]
        }))
        .await;
    b.wait_for(
        "the new conversation in the list",
        &format!("return !!document.querySelector('tr.row[data-id=\"{other}\"]')"),
    )
    .await;
    b.screenshot("live-panel-new-message").await;

    let r = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/conversations/{id}")))
                .bearer_auth(&app.key),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    b.wait_for(
        "the deleted conversation to disappear",
        &format!(
            "return !document.querySelector('tr.row[data-id=\"{id}\"]')
                 && !document.querySelector('#panel').classList.contains('open')"
        ),
    )
    .await;
    assert_eq!(b.js("return window.__noReload === true").await, json!(true));
    assert!(
        b.console_errors().await.is_empty(),
        "{:?}",
        b.console_errors().await
    );
    b.close().await;
}
