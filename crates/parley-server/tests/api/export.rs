//! Exports of issue 16 on both backends: the list as CSV/JSONL (equal to the list, with its
//! filters, search and sort), per-message rows, transcripts, the print view, fine-tuning sets
//! (OpenAI format, options, redaction against real SGD dialogues) and their estimate, tenant
//! isolation and 400s.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

/// The background analyser off, so nothing changes between two reads; [`analyse`] runs it.
fn manual(s: &mut parley_server::config::Settings) {
    s.jobs.insights = false;
}

/// One pass of the insights analyser (sentiment, resolution) over the workspace.
async fn analyse(app: &TestApp) {
    parley_server::insights::analyse_stale(&*app.state.store, app.workspace.id, |_| {})
        .await
        .unwrap();
}

/// Every row of the list for `query`, following its cursor (the list API's own pages).
async fn list_all(app: &TestApp, query: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/conversations?limit=37&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let r = app.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        rows.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return rows,
        }
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

/// The CSV as (header, records), parsed with the csv crate.
fn csv_of(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// A conversation with everything a row shows: rating, variables, priced usage, a hidden
/// message, a team reply.
async fn rich_conversation(app: &TestApp) -> String {
    app.create(json!({
        "external_id": "exp-1", "assistant": {"name": "Ava", "company": "Acme"}, "channel": "whatsapp",
        "contact": "+1 415 555 0100", "rating": {"score": 5, "comment": "=great, thanks"},
        "variables": [{"key": "order_id", "value": "A-17", "source": "pre_chat"},
                      {"key": "name", "value": "Jane Roe", "source": "pre_chat"}],
        "messages": [
            {"role": "system", "content": "hidden note", "created_at": "2026-11-01T10:00:00Z"},
            {"role": "user", "content": "Hi, I'm Jane Roe, my restaurant booking?", "created_at": "2026-11-01T10:00:01Z"},
            {"role": "assistant", "content": "Let me check.", "created_at": "2026-11-01T10:00:02Z", "model": "gpt-4o",
             "usage": {"prompt_tokens": 1000, "completion_tokens": 100}},
            {"role": "agent", "content": "**Done**, see you at 8.", "created_at": "2026-11-01T10:00:03Z"}
        ]}))
    .await
}

async fn list_export_equals_the_list(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    app.import_sgd(&["dialogues_033.json"]).await;
    let id = rich_conversation(&app).await;
    analyse(&app).await;

    for query in [
        "",
        "sort=messages",
        "q=dentist&sort=-assistant",
        "channel=whatsapp,api&sort=created",
    ] {
        let listed = list_all(&app, query).await;
        assert!(!listed.is_empty(), "{query}");
        let ids: Vec<&str> = listed.iter().map(|r| r["id"].as_str().unwrap()).collect();

        // JSONL: the list's rows, in its order, plus variables and cost_usd.
        let r = app
            .get(&format!(
                "/api/v1/conversations/export?format=jsonl&{query}"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/jsonl")
        );
        let cd = r.headers["content-disposition"].to_str().unwrap();
        assert!(
            cd.starts_with("attachment;") && cd.contains(".jsonl"),
            "{cd}"
        );
        let mut lines = jsonl(&r.text);
        assert_eq!(lines.len(), listed.len(), "{query}");
        let mut keys = BTreeSet::new();
        for (line, row) in lines.iter_mut().zip(&listed) {
            let o = line.as_object_mut().unwrap();
            let vars = o.remove("variables").unwrap();
            keys.extend(vars.as_object().unwrap().keys().cloned());
            assert!(o.remove("cost_usd").unwrap().is_string());
            assert_eq!(
                &Value::Object(o.clone()),
                row,
                "{query}: the list's row exactly"
            );
        }

        // CSV: same ids in the same order; one column per variable key of the view.
        let r = app
            .get(&format!("/api/v1/conversations/export?{query}"))
            .await;
        assert_eq!(r.status, 200);
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let (header, rows) = csv_of(&r.text);
        assert_eq!(
            rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
            ids,
            "{query}"
        );
        let var_columns: BTreeSet<String> = header
            .iter()
            .filter_map(|h| h.strip_prefix("var:").map(str::to_owned))
            .collect();
        assert_eq!(var_columns, keys, "{query}: the union of the view's keys");
        assert_eq!(header.last().unwrap(), "other_variables");
        assert!(rows.iter().all(|r| r.len() == header.len()));
    }

    // The rich row's cells.
    let r = app
        .get("/api/v1/conversations/export?channel=whatsapp")
        .await;
    let (header, rows) = csv_of(&r.text);
    assert_eq!(rows.len(), 1);
    let cell = |name: &str| rows[0][header.iter().position(|h| h == name).unwrap()].clone();
    assert_eq!(cell("conversation_id"), id);
    assert_eq!(
        cell("contact"),
        "'+1 415 555 0100",
        "a leading + would run as a formula"
    );
    assert_eq!(cell("messages"), "3", "visible messages");
    assert_eq!(cell("prompt_tokens"), "1000");
    assert_eq!(cell("completion_tokens"), "100");
    assert_eq!(cell("rating"), "5");
    assert_eq!(
        cell("rating_comment"),
        "'=great, thanks",
        "formula neutralised"
    );
    assert_eq!(cell("var:order_id"), "A-17");
    assert_eq!(cell("var:name"), "Jane Roe");
    assert_eq!(cell("duration_seconds"), "", "still active");
    assert_eq!(cell("resolution"), "handed_off", "the analysed outcome");
    let cost: f64 = cell("cost_usd").parse().unwrap();
    assert!(cost > 0.0, "priced from the table: {cost}");

    // Per message: every stored message (system included), in order, with seq.
    let r = app
        .get("/api/v1/conversations/export?rows=message&format=jsonl&channel=whatsapp")
        .await;
    let msgs = jsonl(&r.text);
    assert_eq!(
        msgs.iter()
            .map(|m| (m["seq"].as_u64().unwrap(), m["role"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        vec![(1, "system"), (2, "user"), (3, "assistant"), (4, "agent")]
    );
    assert!(msgs.iter().all(|m| m["conversation_id"] == json!(id)));
    let r = app
        .get("/api/v1/conversations/export?rows=message&q=dentist&sort=messages")
        .await;
    let (header, rows) = csv_of(&r.text);
    assert_eq!(header[0], "conversation_id");
    let listed = list_all(&app, "q=dentist&sort=messages").await;
    let mut order: Vec<&str> = Vec::new();
    for r in &rows {
        if order.last() != Some(&r[0].as_str()) {
            order.push(&r[0]);
        }
    }
    assert_eq!(
        order,
        listed
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
}

async fn bad_parameters_are_400(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let id = rich_conversation(&app).await;
    for (path, param) in [
        ("/api/v1/conversations/export?format=xml", "format"),
        ("/api/v1/conversations/export?rows=turn", "rows"),
        ("/api/v1/conversations/export?sort=colour", "sort"),
        ("/api/v1/conversations/export?min_rating=9", "min_rating"),
        ("/api/v1/conversations/export?limit=5", "limit"),
        (
            "/api/v1/conversations/export?from=2026-11-02&to=2026-11-01",
            "to",
        ),
        ("/api/v1/conversations/finetune?train_on=ai", "train_on"),
        ("/api/v1/conversations/finetune?tools=some", "tools"),
        ("/api/v1/conversations/finetune?redact=maybe", "redact"),
        (
            "/api/v1/conversations/finetune/estimate?has_team_replies=1",
            "has_team_replies",
        ),
        (
            "/api/v1/conversations/finetune/estimate?format=csv",
            "format",
        ),
        (
            &format!("/api/v1/conversations/{id}/transcript?format=pdf"),
            "format",
        ),
    ] {
        let r = app.get(path).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_parameter"),
            "{path}: {}",
            r.text
        );
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(param),
            "{path}"
        );
    }
    let r = app.get("/api/v1/conversations/not-a-uuid/transcript").await;
    assert_eq!((r.status, r.code()), (400, "invalid_id"));
    let r = app
        .get("/api/v1/conversations/0190f0e0-0000-7000-8000-000000000000/transcript")
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = app
        .send(app.client.get(app.url("/api/v1/conversations/export")))
        .await;
    assert_eq!(r.status, 401);
}

async fn exports_stay_in_their_workspace(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let id = rich_conversation(&app).await;
    let (other_ws, other_key) = app.other_tenant("rival").await;
    for path in [
        "/api/v1/conversations/export?format=jsonl",
        "/api/v1/conversations/export?rows=message",
        "/api/v1/conversations/finetune?redact=false",
    ] {
        let r = app.get_as(path, &other_key).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.text.contains(&id) && !r.text.contains("Jane Roe"),
            "{path}: {}",
            r.text
        );
    }
    let r = app
        .get_as("/api/v1/conversations/finetune/estimate", &other_key)
        .await;
    assert_eq!(r.body["conversations"], 0);
    let r = app
        .get_as(
            &format!("/api/v1/conversations/{id}/transcript"),
            &other_key,
        )
        .await;
    assert_eq!(r.status, 404);
    // The dashboard's routes: a member of the other workspace sees none of it either.
    let (cookie, _) = app
        .session_in(other_ws.id, parley_core::UserRole::Admin)
        .await;
    let r = app
        .page("/conversations/export?format=jsonl", &cookie)
        .await;
    assert_eq!((r.status, r.text.as_str()), (200, ""));
    let r = app
        .page(&format!("/conversations/{id}/print"), &cookie)
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .page(
            &format!("/conversations/{id}/download?format=text"),
            &cookie,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app.page("/conversations/export/count", &cookie).await;
    assert_eq!(r.body["count"], 0);
}

async fn transcripts_and_the_print_view(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let id = rich_conversation(&app).await;
    analyse(&app).await;
    let md = app
        .get(&format!(
            "/api/v1/conversations/{id}/transcript?format=markdown"
        ))
        .await;
    assert_eq!(md.status, 200);
    assert!(
        md.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    assert_eq!(
        md.headers["content-disposition"].to_str().unwrap(),
        format!("attachment; filename=\"conversation-{id}.md\"")
    );
    let t = &md.text;
    assert!(
        t.starts_with("# Conversation with +1 415 555 0100 on whatsapp\n"),
        "{t}"
    );
    assert!(t.contains("- **Rating:** 5/5, \"=great, thanks\""), "{t}");
    assert!(t.contains("| order\\_id | A-17 | pre_chat |"), "{t}");
    assert!(
        !t.contains("hidden note"),
        "system messages are not in a transcript"
    );
    let customer = t.find("### Customer").unwrap();
    let ai = t.find("### Assistant (gpt-4o)").unwrap();
    let team = t.find("### Team member").unwrap();
    assert!(customer < ai && ai < team, "oldest first");
    assert!(t.contains("> Hi, I'm Jane Roe, my restaurant booking?"));
    assert!(
        t.contains("**Done**, see you at 8."),
        "team markdown as written"
    );

    let txt = app
        .get(&format!(
            "/api/v1/conversations/{id}/transcript?format=text"
        ))
        .await;
    assert!(
        txt.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(txt.text.contains("Contact: +1 415 555 0100\n"));
    assert!(txt.text.contains("  name = Jane Roe (pre_chat)\n"));
    assert!(
        txt.text
            .contains("\n[2026-11-01T10:00:03.000Z] Team member:\n**Done**, see you at 8.\n"),
        "{}",
        txt.text
    );
    assert!(!txt.text.contains("hidden note"));

    // The dashboard: the same files from the panel's links, and the print view.
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Member).await;
    let r = app
        .page(
            &format!("/conversations/{id}/download?format=text"),
            &cookie,
        )
        .await;
    assert_eq!(r.text, txt.text);
    assert!(
        txt.text.contains("\nResolution: handed_off\n"),
        "{}",
        txt.text
    );
    let panel = app
        .page(&format!("/conversations/{id}/panel"), &cookie)
        .await;
    assert!(panel.text.contains(&format!("/conversations/{id}/print")));
    assert!(
        panel
            .text
            .contains(&format!("/conversations/{id}/download?format=markdown"))
    );
    let print = app
        .page(&format!("/conversations/{id}/print"), &cookie)
        .await;
    assert_eq!(print.status, 200);
    assert!(print.text.contains("/assets/print.css"));
    assert!(
        print.text.contains("<strong>Done</strong>"),
        "team markdown rendered"
    );
    assert!(print.text.contains("Jane Roe") && print.text.contains("A-17"));
    assert!(!print.text.contains("hidden note"));
}

/// Checks one line against OpenAI's chat fine-tuning format: a `messages` array; roles
/// system (first only), user, assistant, tool; `weight` only on assistant turns and only 0 or
/// 1; a tool message answers a call of an earlier assistant turn; the last message is an
/// assistant turn that is trained on.
fn assert_openai_example(line: &Value) {
    let o = line.as_object().unwrap();
    assert_eq!(o.keys().collect::<Vec<_>>(), vec!["messages"], "{line}");
    let msgs = o["messages"].as_array().unwrap();
    assert!(!msgs.is_empty());
    let mut calls: Vec<String> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"].as_str().unwrap();
        match role {
            "system" => assert_eq!(i, 0, "a system message only comes first: {line}"),
            "user" => assert!(m["content"].is_string()),
            "assistant" => {
                assert!(
                    m["content"].is_string() || m["tool_calls"].is_array(),
                    "{m}"
                );
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    assert_eq!(c["type"], "function");
                    calls.push(c["id"].as_str().unwrap().to_owned());
                }
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap();
                assert!(
                    calls.iter().any(|c| c == id),
                    "a result answers a call: {line}"
                );
            }
            other => panic!("role {other} in {line}"),
        }
        if let Some(w) = m.get("weight") {
            assert_eq!(role, "assistant", "weight only on assistant turns: {line}");
            assert!(w == &json!(0) || w == &json!(1));
        }
    }
    let last = msgs.last().unwrap();
    assert_eq!(last["role"], "assistant", "{line}");
    assert!(last["content"].is_string());
    assert_ne!(last.get("weight"), Some(&json!(0)));
}

async fn finetune_sets_follow_the_openai_format(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    // Real dialogues: SGD restaurant and service conversations quote phone numbers.
    app.import_sgd(&["dialogues_033.json"]).await;

    let raw = app.get("/api/v1/conversations/finetune?redact=false").await;
    assert_eq!(raw.status, 200, "{}", raw.text);
    assert!(
        raw.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".jsonl")
    );
    let raw_lines = jsonl(&raw.text);
    assert_eq!(
        raw_lines.len(),
        128,
        "every SGD dialogue ends with the assistant"
    );
    raw_lines.iter().for_each(assert_openai_example);
    assert!(
        raw_lines.iter().all(|l| l["messages"][0]["role"] == "user"),
        "no prompt configured"
    );
    let phone = regex::Regex::new(r"\b[0-9]{3}-[0-9]{3}-[0-9]{4}\b").unwrap();
    let phones_in_raw = phone.find_iter(&raw.text).count();
    assert!(
        phones_in_raw > 10,
        "the dataset quotes phone numbers: {phones_in_raw}"
    );

    let red = app.get("/api/v1/conversations/finetune").await;
    let red_lines = jsonl(&red.text);
    assert_eq!(red_lines.len(), raw_lines.len());
    red_lines.iter().for_each(assert_openai_example);
    assert_eq!(phone.find_iter(&red.text).count(), 0, "redacted by default");
    assert!(red.text.matches("[PHONE]").count() >= phones_in_raw);
    // Redaction leaves the rest: SGD's times and party sizes stay.
    assert!(red.text.contains("pm"));

    // The estimate counts what the download writes, with OpenAI's tokenizer.
    let est = app.get("/api/v1/conversations/finetune/estimate").await;
    assert_eq!(est.status, 200);
    assert_eq!(est.body["examples"], 128);
    assert_eq!(est.body["conversations"], 128);
    assert_eq!(est.body["skipped"], 0);
    let tokens: usize = red_lines
        .iter()
        .map(|l| parley_server::export::finetune::example_tokens(l["messages"].as_array().unwrap()))
        .sum();
    assert_eq!(est.body["estimated_tokens"], json!(tokens));
    assert!(tokens > 128 * 50, "{tokens}");

    // The list's filters apply: a search narrows the set and the estimate alike.
    let few = app.get("/api/v1/conversations/finetune?q=dentist").await;
    let est = app
        .get("/api/v1/conversations/finetune/estimate?q=dentist")
        .await;
    assert_eq!(est.body["examples"], json!(jsonl(&few.text).len()));
    assert!(jsonl(&few.text).len() < 128);
}

async fn finetune_options_team_replies_tools_and_redaction(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    app.import_sgd(&["dialogues_033.json"]).await;
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme", "settings": {"system_prompt": "Prompt of version one."}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .patch(
            &format!("/api/v1/assistants/{assistant}"),
            &json!({"version": 1, "settings": {"system_prompt": "Prompt of version two."}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = app
        .create(json!({
            "assistant": {"id": assistant}, "assistant_version": 1, "channel": "whatsapp",
            "contact": "+14155550100", "rating": {"score": 5}, "session_id": "visitor-8841",
            "variables": [{"key": "name", "value": "Jane Roe"}, {"key": "restaurant_name", "value": "Rosa's"}],
            "messages": [
                {"role": "user", "content": "Hi, Jane Roe here (jane.roe@example.com, +14155550100). Book Rosa's?", "created_at": "2026-11-01T10:00:00Z"},
                {"role": "tool", "content": "", "created_at": "2026-11-01T10:00:01Z",
                 "meta": {"tool_calls": [{"id": "call_1", "name": "lookup", "arguments": "{\"email\":\"jane.roe@example.com\"}"}]}},
                {"role": "tool", "content": "{\"found\":true}", "created_at": "2026-11-01T10:00:02Z", "meta": {"tool_call_id": "call_1"}},
                {"role": "assistant", "content": "Which card should we hold it on?", "created_at": "2026-11-01T10:00:03Z"},
                {"role": "user", "content": "4111 1111 1111 1111, not 4111 1111 1111 1112", "created_at": "2026-11-01T10:00:04Z"},
                {"role": "agent", "content": "Booked at Rosa's for you, JANE ROE.", "created_at": "2026-11-01T10:00:05Z"},
                {"role": "user", "content": "thanks", "created_at": "2026-11-01T10:00:06Z"}
            ]}))
        .await;

    let r = app
        .get("/api/v1/conversations/finetune?has_team_replies=true&train_on=team&tools=keep")
        .await;
    let lines = jsonl(&r.text);
    assert_eq!(
        lines.len(),
        1,
        "only the conversation with a team reply: {}",
        r.text
    );
    assert_openai_example(&lines[0]);
    let m = lines[0]["messages"].as_array().unwrap();
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "Prompt of version one."}),
        "the version's prompt, not the current one"
    );
    assert_eq!(
        m.iter()
            .map(|x| (x["role"].as_str().unwrap(), x.get("weight").cloned()))
            .collect::<Vec<_>>(),
        vec![
            ("system", None),
            ("user", None),
            ("assistant", Some(json!(0))),
            ("tool", None),
            ("assistant", Some(json!(0))),
            ("user", None),
            ("assistant", Some(json!(1))),
        ],
        "AI turns weight 0, the team's 1, nothing after the last trained turn: {m:?}"
    );
    assert_eq!(
        m[1]["content"],
        "Hi, [NAME] here ([EMAIL], [CONTACT]). Book Rosa's?"
    );
    assert_eq!(
        m[2]["tool_calls"][0]["function"]["arguments"],
        "{\"email\":\"[EMAIL]\"}"
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"found\":true}"})
    );
    assert_eq!(
        m[5]["content"], "[CARD], not 4111 1111 1111 1112",
        "Luhn decides"
    );
    assert_eq!(m[6]["content"], "Booked at Rosa's for you, [NAME].");

    // Tools dropped (the default), all turns trained on, no weights.
    let r = app
        .get("/api/v1/conversations/finetune?has_team_replies=true&redact=false")
        .await;
    let lines = jsonl(&r.text);
    assert_openai_example(&lines[0]);
    let m = lines[0]["messages"].as_array().unwrap();
    assert!(
        m.iter()
            .all(|x| x["role"] != "tool" && x.get("tool_calls").is_none())
    );
    assert!(m.iter().all(|x| x.get("weight").is_none()));
    assert_eq!(m.len(), 5);
    assert!(
        m[1]["content"]
            .as_str()
            .unwrap()
            .contains("jane.roe@example.com")
    );

    // Team replies only over SGD dialogues (no team replies): nothing to train on.
    let est = app
        .get("/api/v1/conversations/finetune/estimate?train_on=team")
        .await;
    assert_eq!(
        (
            est.body["examples"].clone(),
            est.body["skipped"].clone(),
            est.body["conversations"].clone()
        ),
        (json!(1), json!(128), json!(129))
    );
    // The list's min_rating filter: only the rated conversation.
    let est = app
        .get("/api/v1/conversations/finetune/estimate?min_rating=4")
        .await;
    assert_eq!(est.body["examples"], 1);
    let _ = id;
}

async fn dashboard_export_downloads_the_view(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    app.import_sgd(&["dialogues_033.json"]).await;
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Member).await;
    // The list page's own parameters (and ones the export ignores, like the open panel).
    let view = "q=dentist&sort=messages&open=0190f0e0-0000-7000-8000-000000000000&tab=details";
    let r = app
        .page(
            &format!("/conversations/export?{view}&format=jsonl"),
            &cookie,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let api = app
        .get("/api/v1/conversations/export?q=dentist&sort=messages&format=jsonl")
        .await;
    assert_eq!(r.text, api.text);
    let count = app
        .page(&format!("/conversations/export/count?{view}"), &cookie)
        .await;
    assert_eq!(count.body["count"], json!(jsonl(&r.text).len()));
    let est = app
        .page(
            &format!("/conversations/finetune/estimate?{view}&train_on=all"),
            &cookie,
        )
        .await;
    assert_eq!(est.body["examples"], count.body["count"]);
    let r = app.page("/conversations/export?format=xml", &cookie).await;
    assert_eq!(r.status, 400);
    // Without a session: the sign-in page, never data.
    let r = app
        .send(app.client.get(app.url("/conversations/export")))
        .await;
    assert!(
        r.status == 303 || r.text.contains("Sign in"),
        "{}",
        r.status
    );
}

crate::both_backends!(
    list_export_equals_the_list,
    bad_parameters_are_400,
    exports_stay_in_their_workspace,
    transcripts_and_the_print_view,
    finetune_sets_follow_the_openai_format,
    finetune_options_team_replies_tools_and_redaction,
    dashboard_export_downloads_the_view,
);
