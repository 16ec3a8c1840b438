//! The web widget on a real page: a sample shop served by the test on 127.0.0.1 (its own origin,
//! so CORS is exercised for real) embeds `/widget.js`; a visitor fills the pre-chat form, chats
//! with an assistant backed by the stub provider, clicks a marked button, submits a form
//! captured by a trigger, moves to another page, reloads, ends the chat and rates it. Then the
//! dashboard shows the conversation with its Client data tab filled. A page on an origin the
//! widget does not allow gets no widget.

use std::time::Duration;

use axum::extract::Path;
use axum::response::Html;
use parley_core::widget::{FieldKind, PreChatField, WidgetMode, WidgetRecord, WidgetSettings};
use parley_core::{AssistantId, Timestamp, UserRole};
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::TestApp;

const PASSWORD: &str = "correct horse battery";

/// Serves the sample shop (`/` and `/{page}`) embedding the widget from `parley` with `key`;
/// returns its origin.
pub(crate) async fn host_site(parley: String, key: String) -> String {
    let page = move |name: String| {
        let (title, body) = if name == "pricing" {
            (
                "Pricing · Acme Shoes",
                "<h1>Pricing</h1><p>Pro plan: 9 €/month.</p>".to_owned(),
            )
        } else {
            (
                "Acme Shoes",
                "<h1>Acme Shoes</h1><p>Running shoes for every road.</p>\
                 <button id=\"signup\" data-parley-event=\"signup_click\">Sign up</button>\
                 <form id=\"quote\" data-parley-trigger=\"quote_request\" action=\"/pricing\" method=\"get\">\
                 <input name=\"company\" value=\"Globex\"><input name=\"email\" value=\"buyer@globex.example\">\
                 <input type=\"password\" name=\"pw\" value=\"hunter2\"><input name=\"cardnumber\" autocomplete=\"cc-number\" value=\"4111111111111111\">\
                 <button id=\"quote-send\">Get a quote</button></form>\
                 <div style=\"height:1600px\"></div>"
                    .to_owned(),
            )
        };
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:Georgia,serif;background:#fdf6e3;margin:40px}} button{{all:unset;color:red}} div{{border:3px solid red}}</style></head>\
             <body>{body}<script src=\"{parley}/widget.js\" data-key=\"{key}\" async></script></body></html>"
        ))
    };
    let page2 = page.clone();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || async move { page(String::new()) }),
        )
        .route(
            "/{name}",
            axum::routing::get(move |Path(n): Path<String>| async move { page2(n) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

/// Runs `script` inside the widget's shadow root (`root` is the shadow root).
pub(crate) fn in_widget(script: &str) -> String {
    format!(
        "const host = document.getElementById('parley-widget'); if (!host || !host.shadowRoot) return null;
         const root = host.shadowRoot; {script}"
    )
}

pub(crate) async fn widget_has(b: &Browser, what: &str, css: &str) {
    b.wait_for(
        what,
        &in_widget(&format!("return !!root.querySelector({css:?})")),
    )
    .await;
}

async fn stored(b: &Browser, key: &str) -> Value {
    b.js(&format!(
        "return JSON.parse(localStorage.getItem('parley:{key}') || 'null')"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_chats_through_the_widget_and_the_dashboard_shows_the_visit() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::Text {
        content: "Yes! The **Roadster** ships free to Austria:\n\n- 2-4 days\n- tracked\n\n| Country | Days |\n|---|---:|\n| Austria | 2-4 |\n| Italy | 3-5 |".into(),
        usage: None,
        delay: Duration::from_millis(40),
    });
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme Shoes", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini", "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    let assistant: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    let site = host_site(app.base.clone(), key.clone()).await;
    let elsewhere = host_site(app.base.clone(), key.clone()).await;
    let mut settings = WidgetSettings {
        allowed_origins: vec![site.clone()],
        title: "Acme Shoes".into(),
        greeting: "Hi! Ask me anything about our shoes.".into(),
        color: "#7c3aed".into(),
        pre_chat: vec![
            PreChatField {
                key: "name".into(),
                label: "Your name".into(),
                kind: FieldKind::Text,
                required: true,
                options: vec![],
            },
            PreChatField {
                key: "email".into(),
                label: "E-mail".into(),
                kind: FieldKind::Email,
                required: true,
                options: vec![],
            },
            PreChatField {
                key: "topic".into(),
                label: "Topic".into(),
                kind: FieldKind::Dropdown,
                required: false,
                options: vec!["Sales".into(), "Support".into()],
            },
        ],
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

    // A page on an origin the widget does not allow: the script loads, no widget appears.
    b.goto(&format!("{elsewhere}/")).await;
    b.wait_for(
        "the script",
        "return !!(window.Parley && window.Parley.loaded)",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        b.js("return document.getElementById('parley-widget') === null")
            .await,
        json!(true)
    );

    // The shop: the launcher appears; the host page's CSS does not reach it.
    b.goto(&format!("{site}/")).await;
    widget_has(&b, "the launcher", ".launcher").await;
    let border = b
        .js(&in_widget(
            "return getComputedStyle(root.querySelector('.launcher')).borderTopStyle",
        ))
        .await;
    assert_eq!(
        border,
        json!("none"),
        "the page's `button` and `div` rules stay outside"
    );
    // The launcher is an SVG icon (no emoji font needed) and stays in its corner when the
    // panel opens (issue 14: it used to jump from right to left).
    let closed = b
        .js(&in_widget(
            "const l = root.querySelector('.launcher'); return [l.getBoundingClientRect().right, !!l.querySelector('svg'), l.textContent]",
        ))
        .await;
    assert_eq!(closed[1], json!(true), "an SVG icon: {closed}");
    assert_eq!(closed[2], json!(""), "no emoji text: {closed}");
    b.js(&in_widget(
        "root.querySelector('.launcher').click(); return true",
    ))
    .await;
    widget_has(&b, "the pre-chat form", "form.pre").await;
    let opened = b
        .js(&in_widget(
            "return root.querySelector('.launcher').getBoundingClientRect().right",
        ))
        .await;
    assert!(
        (opened.as_f64().unwrap() - closed[0].as_f64().unwrap()).abs() < 1.0,
        "the launcher does not move when the panel opens: {closed} -> {opened}"
    );
    // The header's buttons are icons with labels; the title keeps one line.
    let head = b
        .js(&in_widget(
            "const h = root.querySelector('.head h2'); const lh = parseFloat(getComputedStyle(h).lineHeight) || 20;
             return [h.getBoundingClientRect().height <= lh * 1.5,
                     [...root.querySelectorAll('.head button')].every(x => x.getAttribute('aria-label') && x.querySelector('svg'))]",
        ))
        .await;
    assert_eq!(
        head,
        json!([true, true]),
        "one-line title, labelled icon buttons"
    );
    // Required fields are checked in the browser.
    b.js(&in_widget(
        "root.querySelector('form.pre button').click(); return true",
    ))
    .await;
    b.wait_for(
        "the errors",
        &in_widget("return root.querySelector('form.pre .err').textContent.includes('required')"),
    )
    .await;
    let cleared = b.js(&in_widget(
        "const f = root.querySelector('form.pre'); f.elements.name.value = 'Ana'; f.elements.email.value = 'ana@example.com';
         f.elements.topic.value = 'Sales';
         f.querySelectorAll('input, select').forEach(x => x.dispatchEvent(new Event('input')));
         return root.querySelectorAll('form.pre .err:not(:empty)').length === 0",
    ))
    .await;
    assert_eq!(
        cleared,
        json!(true),
        "the errors clear as the visitor types"
    );
    b.screenshot("widget-prechat").await;
    b.js(&in_widget(
        "root.querySelector('form.pre button').click(); return true",
    ))
    .await;
    widget_has(&b, "the composer", "form.compose textarea").await;
    let conversation = stored(&b, &key).await["conversation"]
        .as_str()
        .unwrap()
        .to_owned();

    // Chat: the answer streams in and is rendered as (sanitised) markdown.
    b.js(&in_widget(
        "const t = root.querySelector('form.compose textarea'); t.value = 'Do you ship the Roadster to Austria?';
         root.querySelector('form.compose').requestSubmit(); return true",
    ))
    .await;
    b.wait_for("the answer", &in_widget("const a = root.querySelectorAll('.b.assistant'); return a.length === 2 && !!a[1].querySelector('strong') && a[1].querySelectorAll('li').length === 2 && !root.querySelector('.typing')")).await;
    // A markdown table is a table, not raw pipes (as in the dashboard), once the answer has
    // streamed in completely.
    b.wait_for(
        "the table",
        &in_widget(
            "const a = root.querySelectorAll('.b.assistant')[1];
             return a.querySelectorAll('table thead th').length === 2
               && [...a.querySelectorAll('table tbody td')].map(td => td.textContent).join(',') === 'Austria,2-4,Italy,3-5'
               && !a.textContent.includes('|')",
        ),
    )
    .await;
    assert_eq!(
        b.js(&in_widget("return root.querySelectorAll('.b.user').length"))
            .await,
        json!(1)
    );
    b.screenshot("widget-open").await;

    // Site activity: a marked click, a custom event, then a form captured by a trigger, which
    // navigates to the pricing page.
    b.click("#signup").await;
    b.js("window.Parley.track('viewed_video', {seconds: 30}); return true")
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // the tracker batches for 0.8 s
    b.click("#quote-send").await;
    b.wait_for(
        "the pricing page",
        "return location.pathname === '/pricing' && document.readyState === 'complete'",
    )
    .await;
    // The widget comes back open with the conversation (session kept in localStorage).
    b.wait_for("the conversation again", &in_widget("return root.querySelectorAll('.b.assistant').length === 2 && root.querySelectorAll('.b.user').length === 1")).await;
    b.client.refresh().await.unwrap();
    b.wait_for("the conversation after a reload", &in_widget("return root.querySelectorAll('.b.assistant').length === 2 && root.querySelectorAll('.b.user').length === 1")).await;
    assert_eq!(
        stored(&b, &key).await["conversation"],
        json!(conversation),
        "same conversation"
    );

    // A connection that drops after the message reached Parley: the script resends it with the
    // same client id (stored once), then catches up with the answer. No loss, no duplicates.
    b.js("window.__drops = 0; const real = window.fetch;
          window.fetch = function (url, opts) {
            if (String(url).includes('/widget/v1/messages') && opts && opts.method === 'POST' && window.__drops === 0) {
              window.__drops = 1;
              return real(url, opts).then(() => { throw new TypeError('Failed to fetch'); });
            }
            return real(url, opts);
          }; return true").await;
    b.js(&in_widget(
        "root.querySelector('form.compose textarea').value = 'And to Italy?';
         root.querySelector('form.compose').requestSubmit(); return true",
    ))
    .await;
    b.wait_for("the answer after the drop", &in_widget("return root.querySelectorAll('.b.assistant').length === 3 && root.querySelectorAll('.b.user').length === 2 && !root.querySelector('.b.pending') && !root.querySelector('.typing')")).await;
    assert_eq!(
        b.js("return window.__drops").await,
        json!(1),
        "the drop happened"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.client.refresh().await.unwrap();
    b.wait_for("the same four messages after a reload", &in_widget("return root.querySelectorAll('.b.assistant').length === 3 && root.querySelectorAll('.b.user').length === 2")).await;

    // End the chat and rate it.
    b.js(&in_widget(
        "root.querySelector('.head .end').click(); return true",
    ))
    .await;
    widget_has(&b, "the rating form", ".rate .stars").await;
    b.js(&in_widget(
        "root.querySelectorAll('.stars button')[3].click(); root.querySelector('.rate textarea').value = 'Quick and friendly'; return true",
    ))
    .await;
    b.screenshot("widget-rating").await;
    b.js(&in_widget(
        "root.querySelector('.rate').requestSubmit(); return true",
    ))
    .await;
    widget_has(&b, "the thanks", ".rate .thanks").await;
    // Leaving the page sends the last pageview's time and scroll depth.
    b.goto(&format!("{site}/pricing?from=test")).await;
    widget_has(&b, "the widget", ".launcher").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let errors = b.console_errors().await;
    assert!(
        errors.iter().all(|e| !e.contains("Uncaught")),
        "script errors: {errors:?}"
    );

    // What Parley stored.
    let d = app
        .get(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(d.body["channel"], "widget");
    assert_eq!(d.body["status"], "closed");
    assert_eq!(d.body["rating"]["score"], 4);
    assert_eq!(d.body["rating"]["comment"], "Quick and friendly");
    assert_eq!(d.body["message_count"], 4, "no duplicates");
    let mut vars: Vec<(&str, &str)> = d.body["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["key"].as_str().unwrap(), v["source"].as_str().unwrap()))
        .collect();
    vars.sort();
    assert_eq!(
        vars,
        vec![
            ("email", "pre_chat"),
            ("name", "pre_chat"),
            ("topic", "pre_chat")
        ]
    );
    let rec = app
        .state
        .store
        .widgets()
        .tracker_for_conversation(app.workspace.id, conversation.parse().unwrap())
        .await
        .unwrap()
        .expect("the visit is linked");
    assert_eq!(rec.session.device, "desktop");
    assert!(
        rec.session.browser.starts_with("Chrome"),
        "{}",
        rec.session.browser
    );
    assert!(rec.pages_visited() >= 3, "{:?}", rec.items);
    let names: Vec<&str> = rec.items.iter().map(|i| i.name.as_str()).collect();
    for n in [
        "signup_click",
        "viewed_video",
        "quote_request",
        "Pricing · Acme Shoes",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let trigger = rec
        .items
        .iter()
        .find(|i| i.name == "quote_request")
        .unwrap();
    assert_eq!(
        trigger.data,
        json!({"company": "Globex", "email": "buyer@globex.example"}),
        "no password, no card"
    );
    assert!(
        rec.items
            .iter()
            .any(|i| i.scroll_depth.is_some() && i.time_spent_ms.unwrap_or(0) > 0)
    );

    // The dashboard: the conversation with its Client data tab filled.
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
    b.sign_in(&app.base, "reviewer@example.com", PASSWORD).await;
    b.goto(&format!(
        "{}/conversations?open={conversation}&tab=client",
        app.base
    ))
    .await;
    b.wait_for("the Client data tab", "return !!document.querySelector('#website-session') && !!document.querySelector('#triggers')").await;
    let pane = b.text("[data-pane=client]").await;
    for needle in [
        "Pre-chat form",
        "ana@example.com",
        "desktop",
        "Chrome",
        "signup_click",
        "quote_request",
        "Globex",
        "Pricing · Acme Shoes",
    ] {
        assert!(
            pane.contains(needle),
            "{needle} missing in the Client data tab:\n{pane}"
        );
    }
    assert!(!pane.contains("hunter2") && !pane.contains("4111"));
    b.js("document.getElementById('website-session').scrollIntoView(); return true")
        .await;
    b.screenshot("client-data-filled").await;

    // The settings page's live preview draws the real widget.
    b.goto(&format!("{}/assistants/{assistant}/widget", app.base))
        .await;
    b.wait_for("the preview", "const m = document.getElementById('widget-preview'); return !!(m.shadowRoot && m.shadowRoot.querySelector('.panel'))").await;
    b.js("const t = document.querySelector('input[name=title]'); t.value = 'Live title'; t.dispatchEvent(new Event('input', {bubbles: true})); return true").await;
    b.wait_for("the preview to follow the form", "return document.getElementById('widget-preview').shadowRoot.querySelector('.head h2').textContent === 'Live title'").await;
    b.screenshot("widget-settings").await;
    let errors = b.console_errors().await;
    assert!(
        errors.is_empty(),
        "console errors on the dashboard (CSP?): {errors:?}"
    );
    b.close().await;
}

/// Voice only: the widget offers a record button and no text input; a recording (Chromium's
/// fake microphone) is sent, transcribed by the stub provider and answered. A visitor without
/// a microphone sees why and gets the text input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_sends_a_voice_message() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let stub = StubProvider::start().await.unwrap();
    stub.set_transcript("Do you have the Roadster in size 42?");
    stub.set_default(Reply::text("Yes, size 42 is in stock."));
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme Shoes", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini", "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    let assistant: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    let site = host_site(app.base.clone(), key.clone()).await;
    let mut settings = WidgetSettings {
        allowed_origins: vec![site.clone()],
        mode: WidgetMode::Voice,
        transcription_model: "whisper-1".into(),
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

    b.goto(&format!("{site}/")).await;
    widget_has(&b, "the launcher", ".launcher").await;
    b.js(&in_widget(
        "root.querySelector('.launcher').click(); return true",
    ))
    .await;
    widget_has(&b, "the record button", "form.compose .rec").await;
    assert_eq!(
        b.js(&in_widget(
            "return !!root.querySelector('form.compose textarea')"
        ))
        .await,
        json!(false),
        "voice only: no text input"
    );
    // Tap to start: the time runs on the button; tap to stop sends the recording.
    b.js(&in_widget(
        "root.querySelector('.rec').click(); return true",
    ))
    .await;
    b.wait_for(
        "the recording time",
        &in_widget("const r = root.querySelector('.rec'); return r.classList.contains('on') && r.textContent.includes('0:01')"),
    )
    .await;
    b.screenshot("widget-recording").await;
    b.js(&in_widget(
        "root.querySelector('.rec').click(); return true",
    ))
    .await;
    b.wait_for(
        "the transcript and the answer",
        &in_widget(
            "const u = root.querySelectorAll('.b.user'), a = root.querySelectorAll('.b.assistant');
             return u.length === 1 && u[0].textContent === '🎤 Do you have the Roadster in size 42?'
               && a.length === 2 && a[1].textContent.includes('size 42 is in stock')",
        ),
    )
    .await;
    let uploads = stub.transcriptions();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert!(uploads[0].1 > 100, "a real recording: {uploads:?}");
    assert_eq!(stub.transcription_files(), vec!["voice.webm".to_owned()]);
    let conversation = stored(&b, &key).await["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = app
        .get(&format!(
            "/api/v1/conversations/{conversation}/messages?order=asc"
        ))
        .await;
    let first = &list.body["items"][0];
    assert_eq!(
        first["meta"]["channel"]["attachments"][0]["mime_type"], "audio/webm",
        "{}",
        list.text
    );

    // No microphone: a note, and the text input instead.
    b.js("navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('denied', 'NotAllowedError')); return true").await;
    b.js(&in_widget(
        "root.querySelector('.rec').click(); return true",
    ))
    .await;
    widget_has(&b, "the microphone note", ".mic").await;
    widget_has(&b, "the text input", "form.compose textarea").await;
    assert_eq!(
        b.js(&in_widget("return root.querySelector('.mic').textContent"))
            .await,
        json!("The microphone is not available: please type your message.")
    );
    b.js(&in_widget(
        "root.querySelector('form.compose textarea').value = 'Size 42 then, please';
         root.querySelector('form.compose').requestSubmit(); return true",
    ))
    .await;
    b.wait_for(
        "the typed message's answer",
        &in_widget("return root.querySelectorAll('.b.assistant').length === 3 && root.querySelectorAll('.b.user').length === 2"),
    )
    .await;
    let errors = b.console_errors().await;
    assert!(
        errors.iter().all(|e| !e.contains("Uncaught")),
        "script errors: {errors:?}"
    );
}
