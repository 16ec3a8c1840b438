//! Issue 13 (part): the conversation record carries the insight `parley analyse` computed, on
//! both backends, for conversations built to hit each resolution outcome, and on the SGD import,
//! where the first response time is checked against the one computed here from the transcript.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

fn conv(status: &str, messages: &[(&str, &str, u32)]) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|(role, text, s)| {
            json!({"role": role, "content": text,
                   "created_at": format!("2026-11-01T10:00:{s:02}Z")})
        })
        .collect();
    json!({"assistant": {"name": "Helper", "company": "Acme"}, "channel": "widget",
           "status": status, "started_at": "2026-11-01T10:00:00Z", "messages": messages})
}

/// The background analyser off: these tests count what `parley analyse`'s pass does.
fn manual(s: &mut parley_server::config::Settings) {
    s.jobs.insights = false;
}

async fn analyse(app: &TestApp) -> u64 {
    parley_server::insights::analyse_stale(&*app.state.store, app.workspace.id, |_| {})
        .await
        .unwrap()
}

async fn record(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn the_record_carries_each_outcome(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let q = "Where is my order?";
    let resolved = app
        .create(conv(
            "closed",
            &[("user", q, 1), ("assistant", "It ships tomorrow.", 4)],
        ))
        .await;
    let handed = app
        .create(conv(
            "closed",
            &[
                ("user", q, 1),
                ("assistant", "Let me check.", 2),
                ("agent", "I have it.", 9),
            ],
        ))
        .await;
    let unanswered = app
        .create(conv(
            "closed",
            &[("user", q, 1), ("assistant", "Hm.", 3), ("user", q, 5)],
        ))
        .await;
    let angry = app
        .create(conv(
            "closed",
            &[
                ("user", "This is terrible, I hate this awful shop.", 1),
                ("assistant", "Sorry.", 2),
                ("user", "Useless. Worst service ever.", 3),
                ("assistant", "Sorry again.", 4),
            ],
        ))
        .await;
    let spanish = app
        .create(conv(
            "closed",
            &[
                (
                    "user",
                    "Hola, mi pedido llegó roto y necesito que me devuelvan el dinero hoy",
                    1,
                ),
                ("assistant", "Lo siento.", 2),
            ],
        ))
        .await;
    let mut with_client = conv(
        "closed",
        &[
            ("user", "Great, I love it, thanks!", 1),
            ("assistant", "Glad to help.", 2),
        ],
    );
    with_client["sentiment"] = json!({"label": "negative", "score": -0.5});
    let client = app.create(with_client).await;

    // Before the analysis: only the client's sentiment is known.
    let before = record(&app, &resolved).await;
    assert!(before.get("resolution").is_none(), "{before}");
    assert_eq!(before["sentiment"], Value::Null);
    assert_eq!(before["sentiment_source"], Value::Null);
    assert_eq!(record(&app, &client).await["sentiment_source"], "client");

    assert_eq!(analyse(&app).await, 6);
    assert_eq!(analyse(&app).await, 0, "nothing is stale after a run");

    let r = record(&app, &resolved).await;
    assert_eq!(r["resolution"], "resolved_by_ai", "{r}");
    assert_eq!(r["first_response_ms"], 3_000);
    assert_eq!(r["sentiment"]["label"], "neutral");
    assert_eq!(r["sentiment_source"], "lexicon");
    assert_eq!(r["sentiment_shift"], Value::Null, "one customer message");
    assert!(r["analysed_at"].is_string());

    let r = record(&app, &handed).await;
    assert_eq!(r["resolution"], "handed_off", "{r}");
    assert_eq!(r["first_response_ms"], 1_000);

    let r = record(&app, &unanswered).await;
    assert_eq!(r["resolution"], "unresolved", "{r}");
    assert_eq!(r["first_response_ms"], 2_000);
    assert_eq!(r["sentiment_shift"], "steady");

    let r = record(&app, &angry).await;
    assert_eq!(r["resolution"], "unresolved", "{r}");
    assert_eq!(r["sentiment"]["label"], "negative");
    let score = r["sentiment"]["score"].as_f64().unwrap();
    assert!((-1.0..0.0).contains(&score), "{score}");

    let r = record(&app, &spanish).await;
    assert_eq!(r["sentiment"], Value::Null, "not analysed: {r}");
    assert_eq!(r["sentiment_source"], Value::Null);

    let r = record(&app, &client).await;
    assert_eq!(
        r["sentiment"],
        json!({"label": "negative", "score": -0.5}),
        "the client's wins"
    );
    assert_eq!(r["sentiment_source"], "client");

    // A change makes the insight stale; the next run recomputes it.
    let p = app
        .post(
            &format!("/api/v1/conversations/{resolved}/messages"),
            &json!({"messages": [{"role": "agent", "content": "Anything else?",
                                   "created_at": "2026-11-01T10:00:30Z"}]}),
        )
        .await;
    assert!(p.status < 300, "{}", p.text);
    assert_eq!(analyse(&app).await, 1);
    assert_eq!(record(&app, &resolved).await["resolution"], "handed_off");
}

/// The first response time of SGD conversations equals the one computed here from their
/// transcripts (first user message to the next assistant or agent message).
async fn sgd_first_response_matches_the_transcript(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    app.import_sgd(&["dialogues_001.json"]).await;
    let n = app.get("/api/v1/conversations/count").await.body["count"].as_u64();
    assert!(n.is_some_and(|n| n > 0));
    assert_eq!(Some(analyse(&app).await), n);
    for id in app.list_ids("limit=25").await {
        let m = app
            .get(&format!(
                "/api/v1/conversations/{id}/messages?order=asc&per_page=200"
            ))
            .await;
        let items = m.body["items"].as_array().expect("items").clone();
        let at = |v: &Value| {
            parley_core::Timestamp::parse_rfc3339(v["created_at"].as_str().unwrap())
                .unwrap()
                .0
        };
        let first_user = items.iter().position(|v| v["role"] == "user");
        let want = first_user.and_then(|u| {
            items[u + 1..]
                .iter()
                .find(|v| v["role"] == "assistant" || v["role"] == "agent")
                .map(|v| at(v) - at(&items[u]))
        });
        let r = record(&app, &id).await;
        assert_eq!(r["first_response_ms"].as_i64(), want, "{id}");
        assert!(r["resolution"].is_string());
    }
}

/// Polls the record of `id` until `done(record)` holds (the background analyser is off the
/// request path), for at most 60 s.
async fn record_when(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = record(app, id).await;
        if done(&r) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the analyser did not get to it: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The server keeps insights current by itself: a conversation posted through the API gets its
/// sentiment and resolution without `parley analyse`, and a later change is analysed again.
async fn the_server_analyses_changes_by_itself(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let id = app
        .create(conv(
            "closed",
            &[
                ("user", "Thanks, this is great, I love it!", 1),
                ("assistant", "Glad to help.", 2),
            ],
        ))
        .await;
    let r = record_when(&app, &id, |r| r.get("resolution").is_some()).await;
    assert_eq!(r["resolution"], "resolved_by_ai", "{r}");
    assert_eq!(r["sentiment"]["label"], "positive", "{r}");
    assert_eq!(r["sentiment_source"], "lexicon");

    let p = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &json!({"messages": [{"role": "agent", "content": "Anything else?",
                                   "created_at": "2026-11-01T10:00:30Z"}]}),
        )
        .await;
    assert!(p.status < 300, "{}", p.text);
    let r = record_when(&app, &id, |r| r["resolution"] == "handed_off").await;
    assert_eq!(r["first_response_ms"], 1_000);
    // Nothing is left for a backfill once the server caught up (it may be mid-pass: retry
    // while it holds the workspace).
    let left = loop {
        match parley_server::insights::analyse_stale(&*app.state.store, app.workspace.id, |_| {})
            .await
        {
            Ok(n) => break n,
            Err(parley_store::StoreError::Conflict { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(left, 0);
}

/// The list, count and export endpoints filter on `sentiment=` and `resolution=`, list rows
/// carry both, other workspaces' conversations never match, and bad values are 400.
async fn lists_filter_on_sentiment_and_resolution(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let q = "Where is my order?";
    let resolved = app
        .create(conv(
            "closed",
            &[("user", q, 1), ("assistant", "It ships tomorrow.", 4)],
        ))
        .await;
    let happy = app
        .create(conv(
            "closed",
            &[
                ("user", "Thanks, this is great, I love it!", 1),
                ("assistant", "Glad to help.", 2),
            ],
        ))
        .await;
    let handed = app
        .create(conv(
            "closed",
            &[
                ("user", q, 1),
                ("assistant", "Let me check.", 2),
                ("agent", "I have it.", 9),
            ],
        ))
        .await;
    let angry = app
        .create(conv(
            "closed",
            &[
                ("user", "This is terrible, I hate this awful shop.", 1),
                ("assistant", "Sorry.", 2),
                ("user", "Useless. Worst service ever.", 3),
                ("assistant", "Sorry again.", 4),
            ],
        ))
        .await;
    let mut with_client = conv(
        "closed",
        &[
            ("user", "Great, I love it, thanks!", 1),
            ("assistant", "Glad to help.", 2),
        ],
    );
    with_client["sentiment"] = json!({"label": "negative", "score": -0.5});
    let client = app.create(with_client).await;
    // The other workspace has the same kinds of conversation, analysed too.
    let (other, other_key) = app.other_tenant("other").await;
    for body in [
        conv(
            "closed",
            &[("user", q, 1), ("assistant", "It ships tomorrow.", 4)],
        ),
        conv(
            "closed",
            &[
                ("user", "This is terrible, I hate this awful shop.", 1),
                ("assistant", "Sorry.", 2),
            ],
        ),
    ] {
        let r = app
            .post_as("/api/v1/conversations", &body, &other_key)
            .await;
        assert!(r.status < 300, "{}", r.text);
    }
    assert_eq!(analyse(&app).await, 5);
    parley_server::insights::analyse_stale(&*app.state.store, other.id, |_| {})
        .await
        .unwrap();
    // Created after the analysis: not analysed.
    let fresh = app.create(conv("active", &[("user", q, 1)])).await;

    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let want = |ids: &[&String]| sorted(ids.iter().map(|s| (*s).clone()).collect());
    let cases: Vec<(&str, Vec<&String>)> = vec![
        ("resolution=resolved_by_ai", vec![&resolved, &happy]),
        ("resolution=handed_off", vec![&handed]),
        // The client's negative sentiment makes it end negative: unresolved.
        ("resolution=unresolved", vec![&angry, &client]),
        ("resolution=ongoing", vec![]),
        (
            "resolution=handed_off,unresolved",
            vec![&handed, &angry, &client],
        ),
        ("sentiment=positive", vec![&happy]),
        ("sentiment=negative", vec![&angry, &client]),
        ("sentiment=neutral", vec![&resolved, &handed]),
        ("sentiment=not_analyzed", vec![&fresh]),
        ("sentiment=neutral&resolution=handed_off", vec![&handed]),
        ("sentiment=positive&resolution=unresolved", vec![]),
        ("sentiment=positive,not_analyzed", vec![&happy, &fresh]),
    ];
    for (query, ids) in &cases {
        let expected = want(ids);
        assert_eq!(sorted(app.list_ids(query).await), expected, "list {query}");
        let c = app
            .get(&format!("/api/v1/conversations/count?{query}"))
            .await;
        assert_eq!(c.status, 200, "{}", c.text);
        assert_eq!(c.body["count"], expected.len(), "count {query}");
        let e = app.get(&format!("/api/v1/export?{query}")).await;
        assert_eq!(e.status, 200, "{}", e.text);
        let exported: Vec<String> = e
            .text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["conversation"]["id"]
                    .as_str()
                    .or(v["id"].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(sorted(exported), expected, "export {query}");
    }

    // List rows carry the outcome and the computed sentiment.
    let page = app.get("/api/v1/conversations?limit=50").await;
    let row = |id: &String| {
        page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap()
            .clone()
    };
    assert_eq!(row(&resolved)["resolution"], "resolved_by_ai");
    assert_eq!(row(&happy)["sentiment"]["label"], "positive");
    assert_eq!(
        row(&client)["sentiment"]["label"],
        "negative",
        "the client's wins"
    );
    assert_eq!(row(&fresh)["resolution"], Value::Null);
    assert_eq!(row(&fresh)["sentiment"], Value::Null);

    for bad in ["sentiment=happy", "resolution=solved"] {
        for path in [
            "/api/v1/conversations",
            "/api/v1/conversations/count",
            "/api/v1/export",
        ] {
            let r = app.get(&format!("{path}?{bad}")).await;
            assert_eq!(r.status, 400, "{path}?{bad}: {}", r.text);
            assert_eq!(r.code(), "invalid_parameter");
        }
    }
}

/// The dashboard: the panel shows the computed sentiment, its source and shift, the outcome
/// and the first response time; the list takes `sentiment=` / `resolution=` as chips.
async fn the_dashboard_shows_insights(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let angry = app
        .create(conv(
            "closed",
            &[
                ("user", "I love this shop, thanks!", 1),
                ("assistant", "Glad to help.", 2),
                ("user", "Useless. Worst service ever, I hate it.", 3),
                ("assistant", "Sorry.", 5),
            ],
        ))
        .await;
    let handed = app
        .create(conv(
            "closed",
            &[
                ("user", "This is terrible, I hate it.", 1),
                ("agent", "I have it.", 9),
            ],
        ))
        .await;
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Admin).await;
    let before = app
        .page(&format!("/conversations?open={angry}"), &cookie)
        .await;
    assert!(before.text.contains("Not analyzed yet"), "{}", before.text);
    analyse(&app).await;
    let panel = app
        .page(&format!("/conversations/{angry}/panel"), &cookie)
        .await;
    assert_eq!(panel.status, 200);
    let t = &panel.text;
    assert!(
        t.contains(r#"<dd data-field="outcome">Resolved by AI</dd>"#),
        "{t}"
    );
    assert!(
        t.contains(r#"<dd data-field="first-response">1s</dd>"#),
        "{t}"
    );
    // Mixed overall (neutral), but it got worse.
    assert!(t.contains("Neutral ("), "{t}");
    assert!(
        t.contains("computed · Worsened over the conversation"),
        "{t}"
    );

    let list = app
        .page("/conversations?resolution=handed_off", &cookie)
        .await;
    assert_eq!(list.status, 200);
    assert!(list.text.contains(&handed) && !list.text.contains(&angry));
    assert!(list.text.contains("Outcome") && list.text.contains("Handed off"));
    let list = app.page("/conversations?sentiment=neutral", &cookie).await;
    assert!(list.text.contains(&angry) && !list.text.contains(&handed));
    assert!(list.text.contains("Sentiment") && list.text.contains("Neutral"));
}

/// One conversation for the summary test, started on 2026-11-`day` at 10:00 UTC.
struct Planned {
    day: u32,
    channel: &'static str,
    texts: Vec<(&'static str, &'static str)>,
    rating: Option<u8>,
    cost: i64,
    tokens: (i64, i64),
}

/// `GET /api/v1/insights/summary`: each figure equals the aggregate computed here from the
/// conversations posted (built to hit each outcome, in the window, in the previous period and
/// outside both), per channel too; another workspace never counts; bad parameters are 400.
async fn the_summary_equals_the_raw_aggregates(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let q = "Where is my order?";
    let plan = vec![
        // The window: 2026-11-10 .. 2026-11-20 (10 days); previous: 10-31 .. 11-10.
        Planned {
            day: 10,
            channel: "widget",
            texts: vec![("user", q), ("assistant", "It ships tomorrow.")],
            rating: Some(5),
            cost: 1_000,
            tokens: (10, 5),
        },
        Planned {
            day: 12,
            channel: "widget",
            texts: vec![
                ("user", "Thanks, this is great, I love it!"),
                ("assistant", "Glad to help."),
            ],
            rating: Some(4),
            cost: 3_000,
            tokens: (20, 7),
        },
        Planned {
            day: 13,
            channel: "whatsapp",
            texts: vec![
                ("user", q),
                ("assistant", "Let me check."),
                ("agent", "I have it."),
            ],
            rating: Some(2),
            cost: 500,
            tokens: (8, 2),
        },
        Planned {
            day: 15,
            channel: "whatsapp",
            texts: vec![
                ("user", "This is terrible, I hate this awful shop."),
                ("assistant", "Sorry."),
                ("user", "Useless. Worst service ever."),
            ],
            rating: None,
            cost: 700,
            tokens: (9, 1),
        },
        Planned {
            day: 19,
            channel: "widget",
            texts: vec![("user", q)],
            rating: None,
            cost: 0,
            tokens: (0, 0),
        },
        // The previous period.
        Planned {
            day: 2,
            channel: "widget",
            texts: vec![("user", q), ("assistant", "It ships tomorrow.")],
            rating: Some(3),
            cost: 2_000,
            tokens: (4, 4),
        },
        Planned {
            day: 9,
            channel: "whatsapp",
            texts: vec![("user", q), ("agent", "On it.")],
            rating: None,
            cost: 0,
            tokens: (0, 0),
        },
        // Outside both.
        Planned {
            day: 25,
            channel: "widget",
            texts: vec![("user", q), ("assistant", "It ships tomorrow.")],
            rating: Some(1),
            cost: 9_999,
            tokens: (1, 1),
        },
    ];
    for c in &plan {
        let n = c.texts.len() as i64;
        let messages: Vec<Value> = c
            .texts
            .iter()
            .enumerate()
            .map(|(i, (role, text))| {
                let mut m = json!({"role": role, "content": text,
                    "created_at": format!("2026-11-{:02}T10:00:{:02}Z", c.day, i * 2 + 1)});
                // The whole cost and usage on the last message.
                if i as i64 == n - 1 {
                    m["cost_nanousd"] = json!(c.cost);
                    m["usage"] =
                        json!({"prompt_tokens": c.tokens.0, "completion_tokens": c.tokens.1});
                }
                m
            })
            .collect();
        let mut body = json!({"assistant": {"name": "Helper", "company": "Acme"},
            "channel": c.channel, "status": if c.texts.len() == 1 { "active" } else { "closed" },
            "started_at": format!("2026-11-{:02}T10:00:00Z", c.day), "messages": messages});
        if let Some(r) = c.rating {
            body["rating"] = json!({"score": r});
        }
        app.create(body).await;
    }
    // Another workspace, same window: never counted.
    let (_, other_key) = app.other_tenant("other").await;
    let r = app
        .post_as(
            "/api/v1/conversations",
            &json!({"assistant": {"name": "Helper"}, "channel": "widget",
                    "started_at": "2026-11-11T10:00:00Z",
                    "messages": [{"role": "user", "content": q}]}),
            &other_key,
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    analyse(&app).await;

    // The outcome of each conversation as the record says it.
    let mut outcome = std::collections::HashMap::new();
    for id in app.list_ids("limit=50").await {
        let r = record(&app, &id).await;
        let day: u32 = r["started_at"].as_str().unwrap()[8..10].parse().unwrap();
        outcome.insert(
            day,
            (
                r["resolution"].as_str().unwrap().to_owned(),
                r["sentiment"]["label"].as_str().map(str::to_owned),
            ),
        );
    }
    // The plan hits each outcome but `ongoing` (a conversation still in progress now, which
    // cannot start in a past window).
    for want in ["resolved_by_ai", "handed_off", "unresolved"] {
        assert!(
            outcome.values().any(|(o, _)| o == want),
            "{want}: {outcome:?}"
        );
    }

    let expect = |days: std::ops::Range<u32>, channel: Option<&str>| -> Value {
        let cohort: Vec<&Planned> = plan
            .iter()
            .filter(|c| days.contains(&c.day) && channel.is_none_or(|ch| ch == c.channel))
            .collect();
        let n = cohort.len() as i64;
        let count = |o: &str| cohort.iter().filter(|c| outcome[&c.day].0 == o).count() as i64;
        let sentiment = |l: Option<&str>| {
            cohort
                .iter()
                .filter(|c| outcome[&c.day].1.as_deref() == l)
                .count() as i64
        };
        let ratings: Vec<i64> = cohort
            .iter()
            .filter_map(|c| c.rating.map(i64::from))
            .collect();
        let ratio = |a: i64, b: i64| {
            if b == 0 {
                Value::Null
            } else {
                json!(a as f64 / b as f64)
            }
        };
        let cost: i64 = cohort.iter().map(|c| c.cost).sum();
        let resolved = count("resolved_by_ai");
        json!({
            "conversations": n,
            "messages": cohort.iter().map(|c| c.texts.len() as i64).sum::<i64>(),
            "resolution_rate": ratio(resolved, n),
            "handoff_rate": ratio(count("handed_off"), n),
            "average_rating": ratio(ratings.iter().sum(), ratings.len() as i64),
            "csat": ratio(ratings.iter().filter(|r| **r >= 4).count() as i64, ratings.len() as i64),
            "rated": ratings.len(),
            "resolved_by_ai": resolved,
            "handed_off": count("handed_off"),
            "unresolved": count("unresolved"),
            "ongoing": count("ongoing"),
            "sentiment_positive": sentiment(Some("positive")),
            "sentiment_neutral": sentiment(Some("neutral")),
            "sentiment_negative": sentiment(Some("negative")),
            "sentiment_not_analyzed": sentiment(None),
            "prompt_tokens": cohort.iter().map(|c| c.tokens.0).sum::<i64>(),
            "completion_tokens": cohort.iter().map(|c| c.tokens.1).sum::<i64>(),
            "cost_nanousd": cost,
            "cost_per_resolved_nanousd": if resolved == 0 { Value::Null } else { json!(cost / resolved) },
        })
    };
    for (query, channel) in [
        ("", None),
        ("&channel=widget", Some("widget")),
        ("&channel=whatsapp", Some("whatsapp")),
    ] {
        let r = app
            .get(&format!(
                "/api/v1/insights/summary?from=2026-11-10&to=2026-11-19{query}"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["from"], "2026-11-10T00:00:00.000Z", "{}", r.text);
        assert_eq!(r.body["previous_from"], "2026-10-31T00:00:00.000Z");
        let now = expect(10..20, channel);
        let before = expect(1..10, channel);
        for (name, value) in now.as_object().unwrap() {
            let got = &r.body["figures"][name];
            assert_eq!(&got["value"], value, "{name}{query}: {}", r.text);
            assert_eq!(got["previous"], before[name], "{name} previous{query}");
        }
    }
    // Per day: conversations, cost and sentiment of the conversations started that day.
    async fn days(app: &TestApp, metric: &str) -> Vec<Value> {
        let r = app
            .get(&format!(
                "/api/v1/insights/timeseries?metric={metric}&interval=day&from=2026-11-10&to=2026-11-19"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["points"].as_array().unwrap().clone()
    }
    let conversations = days(&app, "conversations").await;
    let cost = days(&app, "cost").await;
    let sentiment = days(&app, "sentiment").await;
    assert_eq!(conversations.len(), 10, "one point per day, empty days too");
    for (i, day) in (10..20u32).enumerate() {
        let started: Vec<&Planned> = plan.iter().filter(|c| c.day == day).collect();
        assert_eq!(
            conversations[i]["start"],
            format!("2026-11-{day:02}T00:00:00.000Z")
        );
        assert_eq!(conversations[i]["value"], started.len(), "day {day}");
        assert_eq!(
            cost[i]["value"],
            started.iter().map(|c| c.cost).sum::<i64>(),
            "day {day}"
        );
        let negative = started
            .iter()
            .filter(|c| outcome[&c.day].1.as_deref() == Some("negative"))
            .count();
        assert_eq!(sentiment[i]["value"]["negative"], negative, "day {day}");
    }
    // Weekly points start on Mondays; the sum over them is the window's count.
    let r = app
        .get("/api/v1/insights/timeseries?interval=week&from=2026-11-10&to=2026-11-19")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let weeks = r.body["points"].as_array().unwrap();
    assert_eq!(weeks[0]["start"], "2026-11-09T00:00:00.000Z", "a Monday");
    let total: u64 = weeks.iter().map(|p| p["value"].as_u64().unwrap()).sum();
    assert_eq!(total, 5);

    // The heatmap: 2026-11-01 was a Sunday, so November day d is weekday (d + 5) % 7 from
    // Monday; every conversation started at 10:00 UTC (12:00 at +02:00).
    for (tz, hour) in [("", 10usize), ("&tz=%2B02:00", 12)] {
        let r = app
            .get(&format!(
                "/api/v1/insights/heatmap?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z{tz}"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let mut want = vec![vec![0u64; 24]; 7];
        for c in &plan {
            want[((c.day + 5) % 7) as usize][hour] += 1;
        }
        assert_eq!(r.body["cells"], json!(want), "{tz}");
    }
    for bad in [
        "metric=mood",
        "interval=minute",
        "interval=hour&from=2026-01-01&to=2026-12-01",
    ] {
        let r = app.get(&format!("/api/v1/insights/timeseries?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.code(), "invalid_parameter", "{bad}");
    }
    let r = app.get("/api/v1/insights/heatmap?tz=nowhere").await;
    assert_eq!(r.status, 400);

    // A bare date is a day in tz: at +02:00 the window starts 2 hours earlier.
    let r = app
        .get("/api/v1/insights/summary?from=2026-11-10&to=2026-11-19&tz=%2B02:00")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["from"], "2026-11-09T22:00:00.000Z");

    for bad in [
        "from=yesterday",
        "from=2026-11-10&to=2026-11-01",
        "channel=fax",
        "assistant=42",
        "tz=Mars/Olympus",
        "from=2020-01-01&to=2026-01-01",
        "color=red",
    ] {
        let r = app.get(&format!("/api/v1/insights/summary?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.code(), "invalid_parameter", "{bad}");
    }
}

/// `/insights/assistants`: one row per assistant and per version, each equal to the same
/// figures computed here from the conversation records.
async fn the_assistant_comparison_equals_the_raw_aggregates(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    // (assistant name, version, day, texts as (role, text, second), rating, cost nano-USD)
    type Plan = (
        &'static str,
        Option<i64>,
        u32,
        Vec<(&'static str, &'static str, u32)>,
        Option<u8>,
        i64,
    );
    let q = "Where is my order?";
    let plan: Vec<Plan> = vec![
        (
            "Alpha",
            Some(1),
            10,
            vec![("user", q, 1), ("assistant", "Tomorrow.", 4)],
            Some(5),
            1_000,
        ),
        (
            "Alpha",
            Some(1),
            11,
            vec![
                ("user", q, 1),
                ("assistant", "Hm.", 9),
                ("agent", "On it.", 20),
            ],
            Some(2),
            500,
        ),
        (
            "Alpha",
            Some(2),
            12,
            vec![
                ("user", "Thanks, this is great!", 1),
                ("assistant", "Glad to help.", 3),
            ],
            Some(4),
            2_000,
        ),
        ("Alpha", None, 13, vec![("user", q, 1)], None, 0),
        (
            "Beta",
            Some(3),
            14,
            vec![("user", "This is awful.", 2), ("assistant", "Sorry.", 7)],
            None,
            700,
        ),
        (
            "Beta",
            Some(3),
            15,
            vec![("user", q, 1), ("assistant", "It ships today.", 2)],
            Some(3),
            300,
        ),
        (
            "Gamma",
            None,
            16,
            vec![("user", q, 1), ("assistant", "Soon.", 5)],
            None,
            100,
        ),
        // Outside the window.
        (
            "Beta",
            Some(3),
            25,
            vec![("user", q, 1), ("assistant", "Later.", 2)],
            Some(1),
            9_999,
        ),
    ];
    let mut ids = Vec::new();
    for (assistant, version, day, texts, rating, cost) in &plan {
        let n = texts.len();
        let messages: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, (role, text, sec))| {
                let mut m = json!({"role": role, "content": text,
                    "created_at": format!("2026-11-{day:02}T10:00:{sec:02}Z")});
                if i + 1 == n {
                    m["cost_nanousd"] = json!(cost);
                    m["usage"] = json!({"prompt_tokens": 3, "completion_tokens": 2});
                }
                m
            })
            .collect();
        let mut body = json!({"channel": "widget", "status": "closed",
            "started_at": format!("2026-11-{day:02}T10:00:00Z"), "messages": messages});
        body["assistant"] = json!({"name": assistant, "company": "Acme"});
        if let Some(v) = version {
            body["assistant_version"] = json!(v);
        }
        if let Some(r) = rating {
            body["rating"] = json!({"score": r});
        }
        ids.push(app.create(body).await);
    }
    // Another workspace's assistant of the same name: never counted.
    let (_, other_key) = app.other_tenant("other").await;
    let r = app
        .post_as(
            "/api/v1/conversations",
            &json!({"assistant": {"name": "Alpha", "company": "Acme"}, "channel": "widget",
                    "started_at": "2026-11-11T10:00:00Z",
                    "messages": [{"role": "user", "content": q}]}),
            &other_key,
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    analyse(&app).await;

    let mut records = Vec::new();
    for id in &ids {
        records.push(record(&app, id).await);
    }
    // The expected figures of the planned conversations `which` selects (in the window).
    let expect = |which: &dyn Fn(&Plan) -> bool| -> Value {
        let cohort: Vec<(&Plan, &Value)> = plan
            .iter()
            .zip(&records)
            .filter(|(p, _)| p.2 < 20 && which(p))
            .collect();
        let count = |o: &str| cohort.iter().filter(|(_, r)| r["resolution"] == o).count() as i64;
        let ratings: Vec<i64> = cohort
            .iter()
            .filter_map(|(p, _)| p.4.map(i64::from))
            .collect();
        let avg = |field: &str| {
            let v: Vec<i64> = cohort
                .iter()
                .filter_map(|(_, r)| r[field].as_i64())
                .collect();
            if v.is_empty() {
                Value::Null
            } else {
                json!((v.iter().sum::<i64>() as f64 / v.len() as f64).round() as i64)
            }
        };
        json!({
            "conversations": cohort.len(),
            "messages": cohort.iter().map(|(p, _)| p.3.len()).sum::<usize>(),
            "resolved_by_ai": count("resolved_by_ai"),
            "handed_off": count("handed_off"),
            "unresolved": count("unresolved"),
            "rated": ratings.len(),
            "average_rating": if ratings.is_empty() { Value::Null }
                else { json!(ratings.iter().sum::<i64>() as f64 / ratings.len() as f64) },
            "cost_nanousd": cohort.iter().map(|(p, _)| p.5).sum::<i64>(),
            "prompt_tokens": 3 * cohort.len(),
            "average_first_response_ms": avg("first_response_ms"),
            "average_duration_ms": avg("duration_ms"),
        })
    };
    let r = app
        .get("/api/v1/insights/assistants?from=2026-11-10&to=2026-11-19")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = r.body["assistants"].as_array().unwrap();
    let names: Vec<&Value> = rows.iter().map(|a| &a["name"]).collect();
    // Most conversations first.
    assert_eq!(
        names,
        [&json!("Alpha"), &json!("Beta"), &json!("Gamma")],
        "{}",
        r.text
    );
    let check = |got: &Value, want: Value, what: &str| {
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&got[k], v, "{what} {k}: {got}");
        }
    };
    check(&rows[0]["figures"], expect(&|p| p.0 == "Alpha"), "Alpha");
    check(&rows[1]["figures"], expect(&|p| p.0 == "Beta"), "Beta");
    check(&rows[2]["figures"], expect(&|p| p.0 == "Gamma"), "Gamma");
    assert!(
        rows.iter().all(|a| a["assistant"].is_string()),
        "{}",
        r.text
    );
    // Alpha's versions, newest first, the unversioned last.
    let versions: Vec<&Value> = rows[0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["version"])
        .collect();
    assert_eq!(versions, [&json!(2), &json!(1), &Value::Null], "{}", r.text);
    for (i, v) in [Some(2), Some(1), None].into_iter().enumerate() {
        check(
            &rows[0]["versions"][i]["figures"],
            expect(&|p| p.0 == "Alpha" && p.1 == v),
            &format!("Alpha v{v:?}"),
        );
    }
    // The assistant filter keeps one row; a channel without conversations none.
    let alpha = rows[0]["assistant"].as_str().unwrap();
    let r = app
        .get(&format!(
            "/api/v1/insights/assistants?from=2026-11-10&to=2026-11-19&assistant={alpha}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["assistants"].as_array().unwrap().len(), 1);
    let r = app
        .get("/api/v1/insights/assistants?from=2026-11-10&to=2026-11-19&channel=telegram")
        .await;
    assert_eq!(r.body["assistants"], json!([]), "{}", r.text);
    for bad in ["from=yesterday", "assistant=42", "sort=name"] {
        let r = app.get(&format!("/api/v1/insights/assistants?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.code(), "invalid_parameter", "{bad}");
    }
    // The Insights page shows the comparison table, one row per assistant and version.
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Admin).await;
    let page = app.page("/insights?range=90d", &cookie).await;
    assert_eq!(page.status, 200);
    let t = &page.text;
    assert!(t.contains(r#"id="assistant-comparison""#), "{t}");
    assert!(
        t.contains(&format!("assistant={alpha}")),
        "rows drill down: {t}"
    );
    for label in ["v2", "v1", "version not recorded"] {
        assert!(
            t.contains(&format!(r#"<span class="muted">{label}</span>"#)),
            "{label}: {t}"
        );
    }
    assert!(t.contains("<bdi>Gamma</bdi>"), "{t}");
}

/// The window the SGD topics test reads: every dialogue of `dialogues_001.json` starts on
/// 2026-06-01 or 2026-06-02 (see the importer's synthesised times).
const SGD_WINDOW: &str = "from=2026-05-01&to=2026-06-30";

/// Topics on the SGD import (issue 13): every record carries key phrases from its customer
/// text and the topic the learned topics give it (`topic_of`, in learning order);
/// `/insights/topics` equals the counts and outcomes computed here from the records; each
/// topic's drill-down (`topic=` with the start dates) lists exactly its conversations; the
/// `topic` filter is validated and scoped to the workspace.
async fn topics_on_sgd_equal_the_raw_aggregates(backend: Backend) {
    use std::collections::BTreeMap;
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    app.import_sgd(&["dialogues_001.json"]).await;
    let n = analyse(&app).await;
    assert!(n > 100, "{n}");
    let set = app
        .state
        .store
        .insights()
        .topics(app.workspace.id)
        .await
        .unwrap();
    assert!(set.learned_at > 0, "learned by the pass");
    assert!(set.topics.len() >= 3, "{:?}", set.topics);

    let ids = app.list_ids("limit=200").await;
    assert_eq!(ids.len() as u64, n);
    // topic -> (conversations, resolved by AI, rated), from the records.
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for id in &ids {
        let r = record(&app, id).await;
        let phrases: Vec<String> = r["key_phrases"]
            .as_array()
            .unwrap_or_else(|| panic!("key_phrases: {r}"))
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        assert!(
            !phrases.is_empty(),
            "English customer text has key phrases: {r}"
        );
        assert!(phrases.len() <= parley_core::topics::MAX_KEY_PHRASES);
        let expected = parley_core::topics::topic_of(&phrases, &set.topics).map(|t| t.key.clone());
        assert_eq!(r["topic"].as_str().map(str::to_owned), expected, "{id}");
        if let Some(t) = expected {
            assert!(phrases.contains(&t));
            let e = want.entry(t).or_default();
            e.0 += 1;
            e.1 += i64::from(r["resolution"] == "resolved_by_ai");
        }
    }
    assert!(!want.is_empty());

    let t = app
        .get(&format!("/api/v1/insights/topics?{SGD_WINDOW}"))
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    let list = t.body["topics"].as_array().unwrap();
    let got: BTreeMap<String, (i64, i64)> = list
        .iter()
        .map(|x| {
            (
                x["topic"].as_str().unwrap().to_owned(),
                (
                    x["figures"]["conversations"].as_i64().unwrap(),
                    x["figures"]["resolved_by_ai"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(got, want);
    let counts: Vec<i64> = list
        .iter()
        .map(|x| x["figures"]["conversations"].as_i64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "most first: {counts:?}"
    );
    for x in list {
        let key = x["topic"].as_str().unwrap();
        assert_eq!(x["phrases"][0], key, "named by its key first");
        assert_eq!(x["previous_conversations"], 0, "nothing before May");
        // The drill-down lists exactly the topic's conversations of the window.
        let q = format!(
            "topic={}&started_from=2026-05-01&started_to=2026-06-30",
            urlencoding(key)
        );
        let c = app.get(&format!("/api/v1/conversations/count?{q}")).await;
        assert_eq!(c.status, 200, "{}", c.text);
        assert_eq!(c.body["count"], x["figures"]["conversations"], "{key}");
        let rows = app
            .get(&format!("/api/v1/conversations?{q}&limit=200"))
            .await;
        assert!(
            rows.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|row| row["topic"] == key),
            "{key}"
        );
    }
    // A window without the import has no topics; the previous period of a later window sees
    // them as the trend.
    let empty = app
        .get("/api/v1/insights/topics?from=2026-01-01&to=2026-02-01")
        .await;
    assert_eq!(empty.body["topics"], json!([]));
    let later = app
        .get("/api/v1/insights/topics?from=2026-06-30&to=2026-08-28")
        .await;
    assert_eq!(
        later.body["topics"],
        json!([]),
        "the trend needs a count now"
    );

    // Filters: an unknown topic matches nothing; too long is a 400; another workspace sees none.
    let none = app
        .get("/api/v1/conversations/count?topic=no%20such%20topic")
        .await;
    assert_eq!(none.body["count"], 0);
    let long = "x".repeat(201);
    let r = app
        .get(&format!("/api/v1/conversations/count?topic={long}"))
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
    let r = app
        .get("/api/v1/conversations/count?started_from=2026-06-02&started_to=2026-06-01")
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
    let (_, other_key) = app.other_tenant("other").await;
    let key = &list[0]["topic"];
    let theirs = app
        .get_as(
            &format!(
                "/api/v1/conversations/count?topic={}",
                urlencoding(key.as_str().unwrap())
            ),
            &other_key,
        )
        .await;
    assert_eq!(theirs.body["count"], 0);
    let theirs = app
        .get_as(&format!("/api/v1/insights/topics?{SGD_WINDOW}"), &other_key)
        .await;
    assert_eq!(theirs.body["topics"], json!([]));
}

fn urlencoding(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The Insights page lists the topics of the range, each linking to the Conversations list of
/// the topic (with the same start dates), and the panel shows a conversation's key phrases and
/// topic.
async fn the_dashboard_shows_topics(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let now = parley_core::Timestamp::now().add_millis(-3_600_000);
    let at = |s: i64| now.add_millis(s * 1000).to_rfc3339();
    let texts = [
        "My parcel never arrived and I want a refund for the blue jacket.",
        "Where is my refund? The blue jacket was returned last week.",
        "I returned the blue jacket, when do I get the refund?",
        "How do I reset my password?",
    ];
    let mut ids = Vec::new();
    for text in texts {
        let id = app
            .create(json!({"assistant": {"name": "Helper", "company": "Acme"},
                           "channel": "widget", "status": "closed", "started_at": at(0),
                           "messages": [{"role": "user", "content": text, "created_at": at(1)},
                                        {"role": "assistant", "content": "Let me check.",
                                         "created_at": at(3)}]}))
            .await;
        ids.push(id);
    }
    analyse(&app).await;
    let r = record(&app, &ids[0]).await;
    let key = r["topic"].as_str().expect("in a topic").to_owned();
    for id in &ids[1..3] {
        assert_eq!(record(&app, id).await["topic"], key.as_str());
    }
    assert_eq!(record(&app, &ids[3]).await["topic"], Value::Null);

    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Admin).await;
    let page = app.page("/insights?range=7d", &cookie).await;
    assert_eq!(page.status, 200);
    let t = &page.text;
    let table = &t[t.find(r#"id="topics""#).expect("topics table")..];
    assert!(table.contains(&format!("<bdi>{key}")), "{table}");
    let href = format!("topic={}", urlencoding(&key));
    let start = table.find(&href).expect("drill-down link");
    let link_start = table[..start].rfind("href=\"").unwrap() + 6;
    let link = table[link_start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(
        link.contains("started_from=") && link.contains("started_to="),
        "{link}"
    );
    let list = app.page(&link, &cookie).await;
    assert_eq!(list.status, 200);
    for id in &ids[..3] {
        assert!(list.text.contains(id.as_str()), "{id} listed");
    }
    assert!(!list.text.contains(ids[3].as_str()));
    assert!(
        list.text.contains(">Topic<") && list.text.contains(">Started<"),
        "{}",
        list.text
    );

    let panel = app
        .page(&format!("/conversations/{}/panel", ids[0]), &cookie)
        .await;
    let p = &panel.text;
    assert!(p.contains(r#"<dd data-field="topic"><a href=""#), "{p}");
    assert!(p.contains(&format!("<bdi>{key}</bdi>")), "{p}");
    let phrases = r["key_phrases"].as_array().unwrap();
    for ph in phrases {
        assert!(
            p.contains(&format!("<bdi>{}</bdi>", ph.as_str().unwrap())),
            "{ph}"
        );
    }
}

/// The rollups behind `/insights/*` follow each change: a new analysis of a changed
/// conversation moves its contribution (subtract the old, add the new), a deletion subtracts
/// it in the deleting transaction (before any analysis), and the summary is read from them.
async fn the_rollups_follow_changes_and_deletes(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let url = app.state.settings.database_url.clone();
    let ws = parley_store::testing::id_literal(&url, app.workspace.id.0);
    let rolled = |table: &'static str, column: &'static str| {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM({column}), 0) AS BIGINT) FROM {table} WHERE workspace_id = {ws}"
        );
        let url = url.clone();
        async move { parley_store::testing::scalar(&url, &sql, &sql).await }
    };
    let q = "Where is my order?";
    let answered = || {
        conv(
            "closed",
            &[("user", q, 1), ("assistant", "It ships tomorrow.", 3)],
        )
    };
    let kept = app.create(answered()).await;
    let changed = app.create(answered()).await;
    let deleted = app.create(answered()).await;
    assert_eq!(analyse(&app).await, 3);
    let summary = || async {
        let r = app
            .get("/api/v1/insights/summary?from=2026-11-01&to=2026-11-01")
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let f = |name: &str| r.body["figures"][name]["value"].as_i64().unwrap();
        (
            f("conversations"),
            f("messages"),
            f("resolved_by_ai"),
            f("handed_off"),
        )
    };
    assert_eq!(summary().await, (3, 6, 3, 0));
    assert_eq!(rolled("insight_rollups", "conversations").await, 3);
    assert_eq!(rolled("insight_topic_rollups", "conversations").await, 3);
    assert_eq!(rolled("insight_rollups", "resolved_by_ai").await, 3);

    // A team member answers: after the next analysis it is handed off, with one more message.
    let p = app
        .post(
            &format!("/api/v1/conversations/{changed}/messages"),
            &json!({"messages": [{"role": "agent", "content": "Anything else?",
                                   "created_at": "2026-11-01T10:00:30Z"}]}),
        )
        .await;
    assert!(p.status < 300, "{}", p.text);
    assert_eq!(analyse(&app).await, 1);
    assert_eq!(record(&app, &changed).await["resolution"], "handed_off");
    assert_eq!(summary().await, (3, 7, 2, 1));
    assert_eq!(rolled("insight_rollups", "handed_off").await, 1);
    assert_eq!(rolled("insight_rollups", "messages").await, 7);
    assert_eq!(rolled("insight_topic_rollups", "messages").await, 7);

    // A deletion subtracts at once, with no analysis in between.
    let r = app
        .delete(&format!("/api/v1/conversations/{deleted}"))
        .await;
    assert!(r.status < 300, "{}", r.text);
    assert_eq!(rolled("insight_rollups", "conversations").await, 2);
    assert_eq!(rolled("insight_topic_rollups", "conversations").await, 2);
    assert_eq!(summary().await, (2, 5, 1, 1));
    assert_eq!(analyse(&app).await, 0);
    assert_eq!(record(&app, &kept).await["resolution"], "resolved_by_ai");

    // The figures are the rollups' (whole hours of the window are not scanned): a change
    // written straight into them shows.
    let bump = format!(
        "UPDATE insight_rollups SET conversations = conversations + 40 WHERE workspace_id = {ws}"
    );
    parley_store::testing::execute(&url, &bump, &bump).await;
    assert_eq!(summary().await.0, 42);
}

/// `format=csv` on each insights route: the same numbers as its JSON answer, one record per
/// figure, point, weekday, assistant (and version) or topic; another format is a 400. The
/// dashboard's CSV links and custom range give the same for the same window.
async fn the_insights_download_as_csv(backend: Backend) {
    let Some(app) = TestApp::spawn_on_with(backend, manual).await else {
        return;
    };
    let q = "Where is my order?";
    for _ in 0..3 {
        app.create(conv(
            "closed",
            &[("user", q, 1), ("assistant", "It ships tomorrow.", 3)],
        ))
        .await;
    }
    app.create(conv("closed", &[("user", q, 1), ("agent", "On it.", 5)]))
        .await;
    analyse(&app).await;
    let window = "from=2026-11-01&to=2026-11-02";
    let csv = |text: &str| -> Vec<Vec<String>> {
        csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    };
    let both = |path: &'static str| {
        let app = &app;
        async move {
            let json = app.get(&format!("/api/v1/insights/{path}?{window}")).await;
            assert_eq!(json.status, 200, "{}", json.text);
            let r = app
                .get(&format!("/api/v1/insights/{path}?{window}&format=csv"))
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            (json.body, csv(&r.text), r.text)
        }
    };
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };

    let (j, rows, _) = both("summary").await;
    let figures = j["figures"].as_object().unwrap();
    assert_eq!(rows.len(), figures.len());
    for r in &rows {
        assert_eq!(r[1], cell(&figures[&r[0]]["value"]), "{r:?}");
        assert_eq!(r[2], cell(&figures[&r[0]]["previous"]), "{r:?}");
    }
    assert!(rows.iter().any(|r| r[0] == "conversations" && r[1] == "4"));

    let (j, rows, _) = both("timeseries").await;
    let points = j["points"].as_array().unwrap();
    assert_eq!(rows.len(), points.len());
    for (r, p) in rows.iter().zip(points) {
        assert_eq!(r, &vec![cell(&p["start"]), cell(&p["value"])]);
    }
    let r = app
        .get(&format!(
            "/api/v1/insights/timeseries?{window}&metric=sentiment&format=csv"
        ))
        .await;
    let text = r.text.clone();
    assert!(
        text.starts_with("start,positive,neutral,negative,not_analyzed"),
        "{text}"
    );

    let (j, rows, _) = both("heatmap").await;
    assert_eq!(rows.len(), 7);
    for (r, cells) in rows.iter().zip(j["cells"].as_array().unwrap()) {
        let want: Vec<String> = cells.as_array().unwrap().iter().map(cell).collect();
        assert_eq!(r[1..], want[..]);
    }
    // 2026-11-01 was a Sunday; every conversation started at 10:00 UTC.
    assert_eq!(rows[6][0], "sunday");
    assert_eq!(rows[6][11], "4");

    let (j, rows, _) = both("assistants").await;
    let a = &j["assistants"][0];
    let versions = a["versions"].as_array().unwrap().len();
    assert_eq!(rows.len(), 1 + versions);
    assert_eq!(rows[0][1], "Helper");
    assert_eq!(rows[0][2], "", "the assistant's own row has no version");

    let (j, rows, _) = both("topics").await;
    assert_eq!(rows.len(), j["topics"].as_array().unwrap().len());

    let r = app
        .get(&format!("/api/v1/insights/summary?{window}&format=xml"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "invalid_parameter");

    // The dashboard: a custom range, and its CSV links equal to the API's CSV.
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Admin).await;
    let page = app
        .page("/insights?from=2026-11-01&to=2026-11-01", &cookie)
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.text
            .contains(r#"<span class="muted" id="range-label">2026-11-01 to 2026-11-01</span>"#),
        "{}",
        page.text
    );
    assert!(page.text.contains(r#"value="2026-11-01""#));
    for figure in ["summary", "heatmap", "assistants", "topics"] {
        let d = app
            .page(
                &format!("/insights/csv/{figure}?from=2026-11-01&to=2026-11-01"),
                &cookie,
            )
            .await;
        assert_eq!(d.status, 200, "{figure}");
        let api = app
            .get(&format!(
                "/api/v1/insights/{figure}?from=2026-11-01&to=2026-11-01&format=csv"
            ))
            .await;
        assert_eq!(d.text, api.text, "{figure}");
    }
    let d = app.page("/insights/csv/nothing", &cookie).await;
    assert_eq!(d.status, 404);
}

crate::both_backends!(
    the_insights_download_as_csv,
    the_rollups_follow_changes_and_deletes,
    topics_on_sgd_equal_the_raw_aggregates,
    the_dashboard_shows_topics,
    the_assistant_comparison_equals_the_raw_aggregates,
    the_summary_equals_the_raw_aggregates,
    the_dashboard_shows_insights,
    lists_filter_on_sentiment_and_resolution,
    the_server_analyses_changes_by_itself,
    the_record_carries_each_outcome,
    sgd_first_response_matches_the_transcript,
);
