//! No script from a conversation runs in a reviewer's browser. A corpus of XSS payloads is stored
//! in every place a conversation can put text — messages of every role, variables (keys and
//! values), memory (keys and values), contact, session id, assistant name and company, rating
//! comment, end reason — and then every view that shows them is loaded in the real browser.
//! The check is twofold: no payload set its flag (`window.__xss`), and the DOM holds no
//! executable construct at all (no inline script, no event-handler attribute, no `javascript:`
//! URL, no frame or object) — so the sanitiser is proven even where the CSP would have
//! blocked the payload anyway.

use parley_core::UserRole;
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::TestApp;

const PAYLOADS: &[&str] = &[
    "<script>window.__xss='script'</script>",
    "<img src=x onerror=\"window.__xss='img'\">",
    "<svg onload=\"window.__xss='svg'\"><circle r=1></circle></svg>",
    "[click me](javascript:window.__xss='md-link')",
    "[click me](JaVaScRiPt:window.__xss='md-link-case')",
    "<a href=\"&#106;avascript:window.__xss='entity'\">entity link</a>",
    "![img](x\" onerror=\"window.__xss='md-img')",
    "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>",
    "<details open ontoggle=\"window.__xss='details'\">x</details>",
    "\"><script>window.__xss='attr-break'</script>",
    "'><img src=x onerror=window.__xss='quote-break'>",
    "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__xss='mxss'\">",
    "<object data=\"javascript:window.__xss='object'\"></object>",
    "<style>body{display:none}</style>",
    "[data](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9J2RhdGEnPC9zY3JpcHQ+)",
    "<form action=\"javascript:window.__xss='form'\"><button>go</button></form>",
    "{{7*7}} ${7*7} <%= 7*7 %>",
];

/// Finds anything executable in the page (returns a list of offenders).
const DOM_AUDIT: &str = r#"
const bad = [];
for (const el of document.querySelectorAll('*')) {
  for (const attr of el.attributes) {
    const name = attr.name.toLowerCase(), value = attr.value.trim().toLowerCase();
    if (name.startsWith('on')) bad.push(el.tagName + ' ' + name);
    if ((name === 'href' || name === 'src' || name === 'action' || name === 'data' || name === 'formaction') &&
        (value.startsWith('javascript:') || value.startsWith('data:text'))) bad.push(el.tagName + ' ' + name + '=' + value);
    if (name === 'style') bad.push(el.tagName + ' style');
  }
}
for (const el of document.querySelectorAll('script')) if (!el.src || !['/assets/app.js', '/assets/player.js', '/assets/export.js'].includes(new URL(el.src).pathname)) bad.push('script ' + el.outerHTML.slice(0, 80));
for (const el of document.querySelectorAll('iframe, object, embed, style, form[action^="javascript"], math')) bad.push(el.tagName);
for (const el of document.querySelectorAll('svg')) if (!el.closest('.sprite') && !el.querySelector('use')) bad.push('svg ' + el.outerHTML.slice(0, 80));
return bad;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_payload_runs_anywhere_in_the_dashboard() {
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
    let mut ids = Vec::new();
    for (i, p) in PAYLOADS.iter().enumerate() {
        let mut memory = serde_json::Map::new();
        memory.insert(p.to_string(), json!(p));
        memory.insert("nested".into(), json!({"html": p, "list": [p]}));
        let body = json!({
            "assistant": {"name": format!("Agent {i} {p}"), "company": p},
            "channel": "widget",
            "contact": p,
            "session_id": format!("xss-{i}-{p}"),
            "end_reason": p,
            "status": "closed",
            "rating": {"score": 3, "comment": p},
            "variables": [{"key": format!("{i}{p}"), "value": p, "source": "pre_chat"}],
            "memory": memory,
            "messages": [
                {"role": "user", "content": format!("xsspayload user {p}")},
                {"role": "assistant", "content": format!("xsspayload assistant {p}")},
                {"role": "agent", "content": format!("xsspayload agent {p}")},
                {"role": "system", "content": p},
                {"role": "tool", "content": p}
            ]
        });
        ids.push(app.create(body).await);
    }
    b.sign_in(&app.base, "reviewer@example.com", "correct horse battery")
        .await;
    let mut views = vec![
        "/conversations".to_owned(),
        "/conversations?q=xsspayload".to_owned(),
        "/conversations?q=%3Cscript%3E".to_owned(),
        "/conversations?q=onerror".to_owned(),
        "/conversations?q=%22%3E%3Cscript%3Ewindow.__xss%3D1%3C%2Fscript%3E".to_owned(),
    ];
    for id in &ids {
        for tab in ["overview", "transcript", "client"] {
            views.push(format!("/conversations?open={id}&tab={tab}"));
        }
    }
    for view in &views {
        b.goto(&format!("{}{view}", app.base)).await;
        b.wait_for("the page", "return document.readyState === 'complete'")
            .await;
        // Let any event handler that slipped through fire (image errors, toggles, loads).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            b.js("return window.__xss === undefined").await,
            Value::Bool(true),
            "{view}: a payload ran"
        );
        let bad = b.js(DOM_AUDIT).await;
        assert_eq!(bad, json!([]), "{view}: executable markup in the page");
    }
    // The panel fetched by the script (not only server-rendered) is clean too.
    b.goto(&format!("{}/conversations?q=xsspayload", app.base))
        .await;
    for id in ids.iter().take(6) {
        b.open_row(id).await;
        b.click("#panel [data-tab=transcript]").await;
        b.click("#panel [data-tab=client]").await;
        assert_eq!(
            b.js("return window.__xss === undefined").await,
            Value::Bool(true)
        );
        assert_eq!(b.js(DOM_AUDIT).await, json!([]));
        b.close_panel().await;
    }
    // The payloads are shown as text, not dropped: the reviewer can see what was sent.
    b.goto(&format!(
        "{}/conversations?open={}&tab=transcript",
        app.base, ids[0]
    ))
    .await;
    assert!(
        b.text("#transcript .role-user")
            .await
            .contains("<script>window.__xss='script'</script>")
    );
    b.screenshot("xss-transcript").await;
    let errors = b.console_errors().await;
    assert!(
        errors.iter().all(|e| !e.contains("Uncaught")),
        "script errors: {errors:?}"
    );
    b.close().await;
}
