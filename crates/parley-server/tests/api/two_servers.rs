//! Two real `parley serve` processes on one PostgreSQL database agree: nothing that must be
//! shared lives in one process's memory. WhatsApp statuses delivered out of order and
//! alternately to both never move a message's delivery backwards; customer messages posted to
//! both at once are answered once per message, one turn after the other; a widget visitor over
//! the limit on one server is limited on the other. PostgreSQL only (CI has it).

use std::time::Duration;

use parley_core::Timestamp;
use parley_core::widget::{WidgetRecord, WidgetSettings};
use parley_server::channels::whatsapp::sign;
use parley_testkit::fake_graph::FakeGraph;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::channel_support::{eventually, fixture, unix_now};
use crate::helpers::Backend;
use crate::processes::{
    ACCESS_TOKEN, APP_SECRET, BUSINESS_ACCOUNT_ID, PHONE_NUMBER_ID, Server, Site,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_alternating_between_two_servers_never_move_backwards() {
    let Some(site) = Site::new(Backend::Postgres).await else {
        return;
    };
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number(BUSINESS_ACCOUNT_ID, PHONE_NUMBER_ID, "GREEN", "TIER_250");
    site.use_platforms(Some(&graph.base_url), None);
    let stub = StubProvider::start().await.unwrap();
    let (a, b) = (site.start("a", ""), site.start("b", ""));
    let assistant_id = a.assistant(&stub).await;
    let channel = a.connect_whatsapp(&assistant_id, &graph).await;
    // Eight customers write; each answer goes out through the fake Graph API.
    const CUSTOMERS: usize = 8;
    for i in 0..CUSTOMERS {
        let mut p = fixture("whatsapp", "pywa_updates_message.json")["text"].clone();
        let v = &mut p["entry"][0]["changes"][0]["value"];
        let phone = format!("4915100000{i:03}");
        v["messages"][0]["id"] = json!(format!("wamid.in-{i}"));
        v["messages"][0]["from"] = json!(phone);
        v["messages"][0]["timestamp"] = json!(unix_now().to_string());
        v["contacts"][0]["wa_id"] = json!(phone);
        (if i % 2 == 0 { &a } else { &b })
            .deliver_whatsapp(&channel, &p)
            .await;
    }
    eventually(60, "every answer sent", || async {
        (graph.sends().len() == CUSTOMERS).then_some(())
    })
    .await;
    let outbound: Vec<String> = (1..=CUSTOMERS).map(|n| format!("wamid.fake-{n}")).collect();
    eventually(30, "every send recorded", || async {
        let all = a.messages_on("whatsapp").await;
        outbound
            .iter()
            .all(|w| all.iter().any(|m| m["external_id"] == *w))
            .then_some(())
    })
    .await;
    // Every status of every outbound message, shuffled, posted at once, alternately to A and B.
    let statuses = fixture("whatsapp", "pywa_updates_message_status.json");
    let mut posts = Vec::new();
    for w in &outbound {
        for case in ["sent", "delivered", "read", "played"] {
            let mut p = statuses[case].clone();
            p["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = json!(w);
            posts.push(p);
        }
    }
    fastrand::shuffle(&mut posts);
    let mut tasks = Vec::new();
    for (i, p) in posts.into_iter().enumerate() {
        let (base, channel) = (
            if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            },
            channel.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&p).unwrap();
            let r = crate::helpers::http_client()
                .post(format!("{base}/webhooks/whatsapp/{channel}"))
                .header("x-hub-signature-256", sign(APP_SECRET, &body))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eventually(30, "every status processed", || async {
        let r = b.get(&format!("/api/v1/channels/{channel}")).await;
        (r.body["inbox"]["pending"] == 0).then_some(())
    })
    .await;
    let all = b.messages_on("whatsapp").await;
    for w in &outbound {
        let m = all.iter().find(|m| m["external_id"] == *w).unwrap();
        assert_eq!(
            m["meta"]["channel"]["delivery"]["status"], "played",
            "{w} ended at its furthest status: {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_messages_posted_to_both_servers_at_once_are_answered_once_each_in_turn() {
    let Some(site) = Site::new(Backend::Postgres).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    // A slow provider: a turn is still running when the other server's message arrives.
    stub.set_default(Reply::Slow(
        Duration::from_millis(700),
        Box::new(Reply::text("Happy to help.")),
    ));
    let (a, b) = (site.start("a", ""), site.start("b", ""));
    let assistant_id = a.assistant(&stub).await;
    let r = a
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"id": assistant_id}, "channel": "web", "external_id": "order-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/conversations/{id}/messages");
    let message = |ext: &str, text: &str| json!({"messages": [{"role": "user", "content": text, "external_id": ext}]});

    // The same customer message (a client's retry) to both servers at once: stored once,
    // answered once.
    let same = message("m1", "Where is my bike?");
    let (ra, rb) = tokio::join!(a.post(&path, &same), b.post(&path, &same));
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [200, 201], "{} / {}", ra.text, rb.text);
    assert_eq!(
        [&ra.body["answering"], &rb.body["answering"]]
            .iter()
            .filter(|v| ***v == json!(true))
            .count(),
        1
    );
    eventually(30, "the answer", || async {
        (a.messages(&id).await.len() == 2).then_some(())
    })
    .await;

    // Two different customer messages, one to each server, at once: two turns, one after
    // the other; the second sees the first's answer (never two answers to one history).
    let (m2, m3) = (
        message("m2", "It is blue."),
        message("m3", "And has a bell."),
    );
    let (ra, rb) = tokio::join!(a.post(&path, &m2), b.post(&path, &m3));
    assert_eq!((ra.status, rb.status), (201, 201));
    let all = eventually(30, "both answers", || async {
        let all = b.messages(&id).await;
        (all.len() == 6).then_some(all)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.messages(&id).await.len(), 6, "nothing more");
    let requests = stub.requests();
    assert_eq!(
        requests.len(),
        3,
        "one provider call per customer message: {requests:#?}\n{}\n{}",
        a.log(),
        b.log()
    );
    let histories: Vec<Vec<(String, String)>> = requests
        .iter()
        .map(|r| {
            r["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap_or("").to_owned(),
                        m["content"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .collect();
    assert_ne!(
        histories[1], histories[2],
        "two turns ran on the same history (at once): {histories:?}"
    );
    let answers_seen =
        |h: &[(String, String)]| h.iter().filter(|(role, _)| role == "assistant").count();
    assert_eq!(
        answers_seen(&histories[2]),
        answers_seen(&histories[1]) + 1,
        "the later turn saw the earlier turn's answer: {histories:?}"
    );
    // Each answer names the customer message it was for, and each message got one.
    let answered: Vec<&Value> = all
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| &m["meta"]["in_reply_to"])
        .collect();
    let users: Vec<&Value> = all
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| &m["id"])
        .collect();
    let mut answered_sorted: Vec<String> = answered.iter().map(|v| v.to_string()).collect();
    let mut users_sorted: Vec<String> = users.iter().map(|v| v.to_string()).collect();
    answered_sorted.sort();
    users_sorted.sort();
    assert_eq!(answered_sorted, users_sorted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_visitor_over_the_limit_on_one_server_is_limited_on_the_other() {
    let Some(site) = Site::new(Backend::Postgres).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let (a, b) = (site.start("a", ""), site.start("b", ""));
    let assistant_id = a.assistant(&stub).await;
    let store = site.store().await;
    let ws = store
        .workspaces()
        .workspace_by_slug("acme")
        .await
        .unwrap()
        .unwrap()
        .id;
    let key = parley_server::widget::new_public_key().unwrap();
    let origin = "http://site.test:8000";
    store
        .widgets()
        .save_widget(&WidgetRecord {
            workspace_id: ws,
            assistant_id: assistant_id.parse().unwrap(),
            public_key: key.clone(),
            settings: WidgetSettings {
                allowed_origins: vec![origin.into()],
                ..Default::default()
            },
            updated_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let path = format!("/widget/v1/config?key={key}");
    async fn get(s: &Server, path: &str, origin: &str) -> crate::helpers::Resp {
        s.send(s.client.get(s.url(path)).header("origin", origin))
            .await
    }
    // The windows are calendar minutes: start well inside one.
    let into_minute = Timestamp::now().0 % 60_000;
    if into_minute > 50_000 {
        tokio::time::sleep(Duration::from_millis((60_500 - into_minute) as u64)).await;
    }
    // 60 a minute per visitor, counted together: 30 on each server use the allowance up.
    for i in 0..60 {
        let r = get(if i % 2 == 0 { &a } else { &b }, &path, origin).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
    }
    let r = get(&b, &path, origin).await;
    assert_eq!(
        (r.status, r.code()),
        (429, "rate_limited"),
        "B counts A's requests"
    );
    let r = get(&a, &path, origin).await;
    assert_eq!(r.status, 429);
}
