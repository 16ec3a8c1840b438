//! The Settings page (issue 16) in Chromium: an admin invites a member, who accepts the link in
//! a second browser session and lands in the dashboard signed in; the admin creates an API key
//! (shown once), it works, and revoking it on the page stops it at once. Screenshots of the
//! page and of the invitee's form.

use crate::harness::Browser;
use crate::helpers::TestApp;

const PASSWORD: &str = "settings password 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_invites_a_member_and_manages_keys() {
    let Some(browser) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let base = browser.sign_in_new_admin(&app, PASSWORD).await;
    browser.click("#nav-settings").await;
    browser
        .wait_for(
            "the settings page",
            "return location.pathname === '/settings'",
        )
        .await;

    // Invite a member: the link is shown once.
    browser.click("#invite-email").await;
    browser.keys("mia@example.com").await;
    browser.click("#invite-submit").await;
    browser
        .wait_for(
            "the invite link",
            "return !!document.querySelector('#new-invite-link')",
        )
        .await;
    let link = browser
        .js("return document.querySelector('#new-invite-link').value")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(link.starts_with(&format!("{base}/invite/")), "{link}");
    assert_eq!(browser.count(".invites-list tbody tr").await, 1);

    // The invitee, in a second session, sets a name and password and is signed in.
    let invitee = browser.start_another(false).await.unwrap();
    invitee.goto(&link).await;
    invitee.click("#accept-name").await;
    invitee.keys("Mia Berg").await;
    invitee.click("#accept-password").await;
    invitee.keys("mia's long password").await;
    invitee.screenshot("settings-invite-accept").await;
    invitee.click("#accept-submit").await;
    invitee
        .wait_for(
            "the invitee's dashboard",
            "return location.pathname === '/conversations'",
        )
        .await;
    assert!(invitee.text(".me-email").await.contains("mia@example.com"));
    assert_eq!(
        invitee.count("#nav-settings").await,
        0,
        "members see no Settings"
    );
    assert!(invitee.console_errors().await.is_empty());
    invitee.close().await;

    // The admin sees the new member, and no pending invite.
    browser.goto(&format!("{base}/settings")).await;
    let row = browser
        .text(".members-list tr[data-email=\"mia@example.com\"]")
        .await;
    assert!(row.contains("Mia Berg"), "{row}");
    assert!(!row.contains("Never"), "signed in: {row}");
    assert_eq!(browser.count(".invites-list").await, 0);

    // Create an API key: shown once, and it works.
    browser.click("#key-name").await;
    browser.keys("CI script").await;
    browser.click("#key-submit").await;
    browser
        .wait_for(
            "the new key",
            "return !!document.querySelector('#new-key-secret')",
        )
        .await;
    let secret = browser
        .js("return document.querySelector('#new-key-secret').value")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("pk_"));
    assert_eq!(
        app.get_as("/api/v1/conversations", &secret).await.status,
        200
    );
    browser.goto(&format!("{base}/settings")).await;
    assert_eq!(browser.count("#new-key-secret").await, 0, "shown once");
    let row = "tr[data-key-name=\"CI script\"]";
    assert_ne!(
        browser.text(&format!("{row} .key-last-used")).await,
        "Never"
    );
    browser.screenshot("settings-page").await;

    // Revoke it on the page: refused at once.
    browser.click(&format!("{row} .key-revoke")).await;
    browser
        .wait_for(
            "the revoked key",
            &format!("return !!document.querySelector('{row} .key-revoked')"),
        )
        .await;
    assert!(browser.text("#notice").await.contains("revoked"));
    assert_eq!(
        app.get_as("/api/v1/conversations", &secret).await.status,
        401
    );
    assert!(browser.console_errors().await.is_empty());
    browser.close().await;
}
