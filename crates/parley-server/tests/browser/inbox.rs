//! The team acts (issue 14), with two browsers: a reviewer has a widget conversation open in
//! the dashboard while a visitor (on a phone) writes in the widget on a shop's page. The
//! visitor's message appears in the panel without a reload; the reviewer takes over and replies
//! from the composer (Enter sends); the visitor's widget shows the reply without a reload; the
//! hybrid assistant stays silent until the reviewer hands back. Then a hand-off replayed from
//! the recorded tool-call stream shows in Needs attention (sidebar badge, tab title).

use std::time::Duration;

use parley_core::widget::{WidgetRecord, WidgetSettings};
use parley_core::{AssistantId, Timestamp, UserRole};
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::json;

use crate::harness::Browser;
use crate::helpers::{TestApp, tool_call_stream};
use crate::widget::{host_site, in_widget, widget_has};

const PASSWORD: &str = "correct horse battery";
const AI_TEXT: &str = "The blue kettle is in stock in Oslo.";
/// The server's `/metrics` token (the test counts the widget's requests there).
const METRICS_TOKEN: &str = "metrics-token-0123456789";

/// The visitor writes `text` in the widget.
async fn visitor_says(b: &Browser, text: &str) {
    b.js(&in_widget(&format!(
        "const t = root.querySelector('form.compose textarea'); t.value = {text:?};
         root.querySelector('form.compose').requestSubmit(); return true"
    )))
    .await;
}

/// Clicks `css` from the page's script: the live panel may be re-rendered at any moment, so a
/// WebDriver element reference could go stale between finding and clicking it.
async fn press(b: &Browser, css: &str) {
    b.wait_for(
        css,
        &format!("const e = document.querySelector({css:?}); if (!e) return false; e.click(); return true"),
    )
    .await;
}

/// Lets the panel's live refreshes settle (each event re-renders it after 100 ms).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

/// How many `method` requests to the widget route `route` (e.g. `/widget/v1/messages`) the server
/// answered, from its `/metrics` (`parley_http_requests_total`, every status).
async fn widget_requests(app: &TestApp, method: &str, route: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (route, method) = (format!("route=\"{route}\""), format!("method=\"{method}\""));
    text.lines()
        .filter(|l| {
            l.starts_with("parley_http_requests_total{")
                && l.contains(&route)
                && l.contains(&method)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many of the assistant's answers the widget shows.
async fn answers_shown(b: &Browser) -> u64 {
    b.js(&in_widget(&format!(
        "return [...root.querySelectorAll('.b.assistant')].filter(b => b.textContent.includes({AI_TEXT:?})).length"
    )))
    .await
    .as_u64()
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_takes_over_a_widget_chat_and_the_visitor_sees_the_reply_live() {
    let Some(reviewer) = Browser::start(false).await else {
        return;
    };
    let visitor = reviewer.start_another(true).await.unwrap();
    let app = TestApp::spawn_with(|s| s.metrics_token = Some(METRICS_TOKEN.into())).await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text(AI_TEXT));
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme Kitchen", "mode": "hybrid", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini", "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    let site = host_site(app.base.clone(), key.clone()).await;
    let mut settings = WidgetSettings {
        allowed_origins: vec![site.clone()],
        title: "Acme Kitchen".into(),
        greeting: "Hi! How can we help?".into(),
        ..Default::default()
    };
    settings.validate().unwrap();
    app.state
        .store
        .widgets()
        .save_widget(&WidgetRecord {
            workspace_id: app.workspace.id,
            assistant_id: assistant,
            public_key: key.clone(),
            settings,
            updated_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let hash = parley_server::auth::hash_password(PASSWORD).unwrap();
    app.state
        .store
        .auth()
        .create_user(app.workspace.id, "dana@example.com", &hash, UserRole::Admin)
        .await
        .unwrap();

    // The visitor starts a chat; the assistant answers.
    visitor.goto(&format!("{site}/")).await;
    widget_has(&visitor, "the launcher", ".launcher").await;
    visitor
        .js(&in_widget(
            "root.querySelector('.launcher').click(); return true",
        ))
        .await;
    widget_has(&visitor, "the composer", "form.compose textarea").await;
    visitor_says(&visitor, "Is the blue kettle in stock?").await;
    visitor
        .wait_for(
            "the assistant's answer",
            &in_widget(&format!(
                "return [...root.querySelectorAll('.b.assistant')].some(b => b.textContent.includes({AI_TEXT:?})) && !root.querySelector('.typing')"
            )),
        )
        .await;
    let id = app.list_ids("channel=widget").await.pop().unwrap();

    // The reviewer has it open.
    reviewer
        .sign_in(&app.base, "dana@example.com", PASSWORD)
        .await;
    reviewer
        .goto(&format!(
            "{}/conversations?open={id}&tab=transcript",
            app.base
        ))
        .await;
    reviewer
        .wait_for(
            "the transcript and the composer",
            "return !!document.querySelector('#transcript .role-assistant') && !!document.querySelector('#composer-text')",
        )
        .await;
    reviewer.js("window.__noReload = true; return true").await;

    // The visitor writes: the message appears in the open panel without a reload.
    visitor_says(&visitor, "Can I talk to a person about a refund?").await;
    reviewer
        .wait_for(
            "the visitor's message in the panel",
            "return document.querySelector('#transcript').textContent.includes('talk to a person about a refund')",
        )
        .await;
    // The assistant (hybrid, not taken over) answered it too.
    visitor
        .wait_for(
            "the second answer",
            &in_widget(&format!("return [...root.querySelectorAll('.b.assistant')].filter(b => b.textContent.includes({AI_TEXT:?})).length === 2 && !root.querySelector('.typing')")),
        )
        .await;

    // The reviewer takes over: the panel says the AI is paused.
    settle().await;
    press(&reviewer, "#take-over").await;
    reviewer
        .wait_for(
            "the paused tag",
            "return !!document.querySelector('#paused') && !!document.querySelector('#hand-back')",
        )
        .await;
    // ...and replies from the composer: Shift+Enter is a new line, Enter sends. From here until
    // the reply shows in the widget the visitor sends nothing, so any read of the transcript
    // would be a poll: the reply must come over the widget's live stream instead.
    settle().await;
    let polls = widget_requests(&app, "GET", "/widget/v1/messages").await;
    assert!(
        widget_requests(&app, "GET", "/widget/v1/stream").await >= 1.0,
        "the widget opened its live stream"
    );
    reviewer
        .js("document.querySelector('#composer-text').focus(); return true")
        .await;
    reviewer.keys("Hi, I'm **Dana** from the team.").await;
    reviewer.keys("\u{e008}\u{e007}").await; // Shift+Enter
    reviewer.keys("\u{e008}").await; // release Shift
    reviewer.keys("Let me look at your refund.").await;
    let typed = reviewer
        .js("return document.querySelector('#composer-text').value")
        .await;
    assert_eq!(
        typed,
        json!("Hi, I'm **Dana** from the team.\nLet me look at your refund."),
        "Shift+Enter adds a line"
    );
    reviewer.keys("\u{e007}").await; // Enter
    reviewer
        .wait_for(
            "the reply in the panel",
            "const m = [...document.querySelectorAll('#transcript .role-agent')]; return m.length === 1 && !!m[0].querySelector('strong') && m[0].textContent.includes('dana@example.com') && document.querySelector('#composer-text').value === ''",
        )
        .await;
    assert_eq!(
        reviewer.js("return window.__noReload === true").await,
        json!(true)
    );
    reviewer.screenshot("inbox-panel-composer").await;

    // The visitor's widget shows the reply without a reload.
    visitor.js("window.__noReload = true; return true").await;
    visitor
        .wait_for(
            "the team's reply in the widget",
            &in_widget("return [...root.querySelectorAll('.b.agent')].some(b => b.textContent.includes('from the team') && !!b.querySelector('strong'))"),
        )
        .await;
    assert_eq!(
        visitor.js("return window.__noReload === true").await,
        json!(true)
    );
    assert_eq!(
        widget_requests(&app, "GET", "/widget/v1/messages").await,
        polls,
        "no polling while the live stream was up"
    );
    visitor.screenshot("inbox-widget-team-reply-phone").await;

    // The assistant stays silent while the team handles it.
    let calls = stub.requests().len();
    visitor_says(&visitor, "Thanks, Dana!").await;
    reviewer
        .wait_for(
            "the visitor's thanks in the panel",
            "return document.querySelector('#transcript').textContent.includes('Thanks, Dana!')",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stub.requests().len(), calls, "the provider was not called");
    assert_eq!(answers_shown(&visitor).await, 2);

    // Hand back: the assistant answers the next message.
    settle().await;
    press(&reviewer, "#hand-back").await;
    reviewer
        .wait_for(
            "the take-over button again",
            "return !!document.querySelector('#take-over')",
        )
        .await;
    visitor_says(&visitor, "One more thing: do you ship to Bergen?").await;
    visitor
        .wait_for(
            "the assistant again",
            &in_widget(&format!("return [...root.querySelectorAll('.b.assistant')].filter(b => b.textContent.includes({AI_TEXT:?})).length === 3")),
        )
        .await;
    assert_eq!(stub.requests().len(), calls + 1);

    // A hand-off on another conversation: it needs a human, and the sidebar and the tab title
    // count it.
    stub.push(tool_call_stream(
        "hand_off",
        r#"{"reason": "The customer wants to speak to a person"}"#,
    ));
    let r = app
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"id": assistant.to_string()}, "channel": "api", "contact": "sam@example.com",
                    "messages": [{"role": "user", "content": "I need a human, please."}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let flagged = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    reviewer
        .wait_for(
            "the attention badge",
            "const b = document.querySelector('#attention-count'); return !!b && !b.hidden && b.textContent.trim() === '1' && document.title.startsWith('(1) ')",
        )
        .await;
    // (The open panel's scrim covers the sidebar: follow the link itself.)
    let href = reviewer
        .js("return document.querySelector('#nav-attention').href")
        .await;
    reviewer.goto(href.as_str().unwrap()).await;
    reviewer
        .wait_for(
            "the Needs attention view",
            &format!("return location.search.includes('view=attention') && document.querySelectorAll('tr.row').length === 1 && !!document.querySelector('tr.row[data-id=\"{flagged}\"] .tag-attention')"),
        )
        .await;
    reviewer.screenshot("inbox-needs-attention").await;
    reviewer.open_row(&flagged).await;
    reviewer
        .wait_for("the hand-off reason", "return (document.querySelector('#needs-human') || {textContent: ''}).textContent.includes('speak to a person')")
        .await;
    reviewer.screenshot("inbox-needs-attention-panel").await;

    // The same views on a phone.
    visitor
        .sign_in(&app.base, "dana@example.com", PASSWORD)
        .await;
    visitor
        .goto(&format!(
            "{}/conversations?view=attention&open={flagged}&tab=transcript",
            app.base
        ))
        .await;
    visitor
        .wait_for(
            "the phone panel",
            "return !!document.querySelector('#composer-text')",
        )
        .await;
    settle().await;
    let width = visitor
        .js("return [document.documentElement.scrollWidth, window.innerWidth]")
        .await;
    assert_eq!(
        width[0], width[1],
        "no horizontal scrolling on a phone: {width}"
    );
    visitor
        .wait_for(
            "the phone panel, slid in",
            "const p = document.querySelector('#panel'); const r = p.getBoundingClientRect();
             return !!document.querySelector('#composer-text') && !!document.querySelector('#needs-human')
                 && Math.abs(r.left) < 1 && Math.abs(r.right - document.documentElement.clientWidth) < 1",
        )
        .await;
    settle().await;
    visitor.screenshot("inbox-panel-composer-phone").await;
    assert!(
        reviewer.console_errors().await.is_empty(),
        "{:?}",
        reviewer.console_errors().await
    );
    visitor.close().await;
    reviewer.close().await;
}
