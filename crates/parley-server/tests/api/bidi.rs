//! Issue 10, item 13 (part): bidi controls in user-controlled text (U+202E RIGHT-TO-LEFT
//! OVERRIDE in a contact, a session id, an assistant's name...) stay inside that text. Every
//! dashboard page that shows such text is fetched through the real server, and every U+202E in
//! it must sit inside a `<bdi>` element or between U+2068 and U+2069 (or in an attribute value,
//! a `<textarea>` or an `<option>`, each laid out on its own). Without the isolation the override
//! runs on to the end of its line and reorders what follows (the browser test
//! `privacy::bidi_controls_do_not_reorder_what_follows` shows it on the page).

use parley_core::UserRole;
use serde_json::json;

use crate::helpers::{Backend, TestApp};

const RLO: char = '\u{202E}';

/// Where in `html` a U+202E is not isolated: (offset, the text around it).
fn unisolated(html: &str) -> Vec<(usize, String)> {
    let mut bad = Vec::new();
    for (at, _) in html.match_indices(RLO) {
        let before = &html[..at];
        let in_tag = before.rfind('<') > before.rfind('>');
        let in_bdi = before.matches("<bdi>").count() > before.matches("</bdi>").count();
        let open =
            |tag: &str| before.rfind(&format!("<{tag}")) > before.rfind(&format!("</{tag}>"));
        // Unicode isolates (U+2068 ... U+2069), as sentences built by the server use, and the
        // title uses as the entity.
        let in_isolate = before.matches('\u{2068}').count() > before.matches('\u{2069}').count()
            || (open("title") && before.rfind("&#x2068;") > before.rfind("<title>"));
        let in_own_box = open("textarea") || open("option");
        if !(in_tag || in_bdi || in_isolate || in_own_box) {
            let start = before.char_indices().rev().nth(60).map_or(0, |(i, _)| i);
            let end = html[at..]
                .char_indices()
                .nth(40)
                .map_or(html.len(), |(i, _)| at + i);
            bad.push((at, html[start..end].to_owned()));
        }
    }
    bad
}

async fn bidi_controls_in_user_text_stay_isolated(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": format!("Ava {RLO}evil"), "company": format!("{RLO}Acme"),
                    "settings": {"provider": {"base_url": "http://127.0.0.1:9/v1", "model": format!("gpt{RLO}-4o"),
                                              "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let id = app
        .create(json!({
            "assistant": {"id": assistant},
            "channel": "widget",
            "contact": format!("{RLO}ana@example.com"),
            "session_id": format!("sess-{RLO}42"),
            "external_id": format!("ext-{RLO}1"),
            "status": "closed",
            "end_reason": format!("{RLO}left"),
            "rating": {"score": 4, "comment": format!("fine {RLO}thanks")},
            "variables": [{"key": format!("size{RLO}"), "value": format!("{RLO}M"), "source": "pre_chat"}],
            "memory": {format!("colour{RLO}"): format!("{RLO}red"), "nested": {"k": format!("{RLO}v")}},
            "messages": [
                {"role": "user", "content": format!("hello {RLO}world")},
                {"role": "assistant", "content": "Hi! How can I help?"},
                {"role": "user", "content": format!("my order {RLO}4711")}
            ]
        }))
        .await;
    let (cookie, _) = app.dashboard_session(UserRole::Admin).await;
    let pages = [
        "/conversations".to_owned(),
        "/conversations?q=world".to_owned(),
        "/conversations?q=%E2%80%AEworld".to_owned(),
        format!("/conversations?assistant={assistant}"),
        format!("/conversations?open={id}&tab=overview"),
        format!("/conversations?open={id}&tab=transcript"),
        format!("/conversations?open={id}&tab=client"),
        format!("/conversations/{id}/panel"),
        "/assistants".to_owned(),
        format!("/assistants/{assistant}"),
        format!("/assistants/{assistant}/widget"),
        format!("/test-chat?assistant={assistant}"),
    ];
    let mut checked = 0;
    for page in &pages {
        let res = app
            .client
            .get(app.url(page))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{page}");
        let html = res.text().await.unwrap();
        checked += html.matches(RLO).count();
        let bad = unisolated(&html);
        assert!(bad.is_empty(), "{page}: U+202E not isolated at {bad:#?}");
    }
    assert!(
        checked > 40,
        "the pages show the text ({checked} occurrences)"
    );
}

crate::both_backends!(bidi_controls_in_user_text_stay_isolated);
