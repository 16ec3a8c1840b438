//! What survives `kill -9`: the real `parley serve` binary is killed at each moment of a
//! webhook's life (stored, not processed; processed, not answered; answered, not sent), then
//! started again on the same data, and the customer's message ends stored and answered exactly
//! once, against the fake Graph API, the fake Bot API and the stub provider on 127.0.0.1. The
//! moments are reached with the test hook `PARLEY_TEST_HOLD_JOBS` (see `parley_server::jobs`).

use parley_testkit::fake_bot_api::FakeBotApi;
use parley_testkit::fake_graph::FakeGraph;
use parley_testkit::stub_provider::StubProvider;
use serde_json::{Value, json};

use crate::channel_support::{eventually, fixture, unix_now};
use crate::helpers::Backend;
use crate::processes::{ACCESS_TOKEN, BUSINESS_ACCOUNT_ID, PHONE_NUMBER_ID, Server, Site};

const BOT_TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

/// The connection's webhook inbox as the API shows it.
async fn inbox(server: &Server, channel: &str) -> Value {
    let r = server.get(&format!("/api/v1/channels/{channel}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["inbox"].clone()
}

/// The WhatsApp text fixture from the customer with this message id, sent now.
fn whatsapp_text(wamid: &str, body: &str) -> Value {
    let mut p = fixture("whatsapp", "pywa_updates_message.json")["text"].clone();
    let m = &mut p["entry"][0]["changes"][0]["value"]["messages"][0];
    m["id"] = json!(wamid);
    m["timestamp"] = json!(unix_now().to_string());
    m["text"]["body"] = json!(body);
    p
}

/// A WhatsApp delivery and an API-posted customer message, each killed at every stage, end
/// stored and answered exactly once: one provider call and one Graph API send for the
/// delivery, one provider call for the API message.
async fn a_webhook_and_an_api_message_survive_kill_9_at_every_stage(backend: Backend) {
    let Some(site) = Site::new(backend).await else {
        return;
    };
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number(BUSINESS_ACCOUNT_ID, PHONE_NUMBER_ID, "GREEN", "TIER_250");
    site.use_platforms(Some(&graph.base_url), None);
    let stub = StubProvider::start().await.unwrap();

    // 1. Stored in the inbox and answered 200; killed before it is processed.
    let a = site.start("a", "whatsapp.delivery");
    let assistant_id = a.assistant(&stub).await;
    let channel = a.connect_whatsapp(&assistant_id, &graph).await;
    a.deliver_whatsapp(
        &channel,
        &whatsapp_text("wamid.crash-1", "Is the Roadster in stock?"),
    )
    .await;
    let waiting = inbox(&a, &channel).await;
    assert_eq!(
        waiting["pending"], 1,
        "the delivery waits in the inbox: {waiting}"
    );
    assert!(waiting["oldest_pending_age_ms"].as_i64().is_some());
    let scrape = a
        .send(
            a.client
                .get(a.url("/metrics"))
                .bearer_auth(crate::processes::METRICS_TOKEN),
        )
        .await;
    assert_eq!(scrape.status, 200, "{}", scrape.text);
    let lines: Vec<&str> = scrape.text.lines().collect();
    assert!(
        lines.contains(&"parley_webhook_inbox_depth 1"),
        "/metrics shows the waiting delivery:\n{}",
        scrape.text
    );
    // Queued, or claimed by the held worker.
    assert!(
        ["queued", "running"].iter().any(|state| lines.contains(
            &format!("parley_jobs{{kind=\"whatsapp.delivery\",state=\"{state}\"}} 1").as_str()
        )),
        "{}",
        scrape.text
    );
    assert!(
        lines.iter().any(|l| l
            .strip_prefix("parley_webhook_inbox_oldest_age_seconds ")
            .is_some_and(|v| v.parse::<f64>().is_ok_and(|v| v >= 0.0))),
        "{}",
        scrape.text
    );
    assert!(
        a.messages_on("whatsapp").await.is_empty(),
        "not processed yet"
    );
    let page = a
        .send(
            a.client
                .get(a.url(&format!("/assistants/{assistant_id}")))
                .header("cookie", site.dashboard_cookie().await),
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("Inbox: 1 waiting (oldest "),
        "the assistant page shows the waiting delivery: {}",
        page.text
    );
    a.kill_9();

    // 2. Restarted: the delivery is processed (the message stored); killed before the
    //    assistant answers. An API-posted customer message is stored there too.
    let b = site.start("b", "answer");
    let stored = eventually(30, "the customer's message after the restart", || async {
        b.messages_on("whatsapp").await.into_iter().next()
    })
    .await;
    assert_eq!(stored["external_id"], "wamid.crash-1");
    let r = b
        .post(
            "/api/v1/conversations",
            &json!({"assistant": {"id": assistant_id}, "channel": "web",
                    "messages": [{"role": "user", "content": "Where is my order?", "external_id": "api-1"}]}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["answering"]),
        (201, &json!(true)),
        "{}",
        r.text
    );
    let api_conversation = r.body["conversation"]["id"].as_str().unwrap().to_owned();
    eventually(10, "the inbox to empty", || async {
        (inbox(&b, &channel).await["pending"] == 0).then_some(())
    })
    .await;
    assert!(
        stub.requests().is_empty(),
        "held before the provider is asked"
    );
    b.kill_9();

    // 3. Restarted: both answers are stored; killed before the WhatsApp one is sent.
    let c = site.start("c", "answer.send");
    let answer = eventually(30, "the WhatsApp answer stored", || async {
        c.messages_on("whatsapp")
            .await
            .into_iter()
            .find(|m| m["role"] == "assistant")
    })
    .await;
    assert_eq!(answer["meta"]["in_reply_to"], stored["id"]);
    eventually(30, "the API answer", || async {
        (c.messages(&api_conversation).await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        stub.requests().len(),
        2,
        "one provider call per customer message"
    );
    assert!(graph.sends().is_empty(), "held before sending");
    c.kill_9();

    // 4. Restarted: the stored answer goes out, once; nothing is asked or stored again.
    let d = site.start("d", "");
    let sent = eventually(30, "the answer sent to Meta", || async {
        let m = d
            .messages_on("whatsapp")
            .await
            .into_iter()
            .find(|m| m["role"] == "assistant")?;
        m["meta"]["channel"]["delivery"].is_object().then_some(m)
    })
    .await;
    assert_eq!(sent["meta"]["channel"]["delivery"]["status"], "accepted");
    assert_eq!(
        sent["id"], answer["id"],
        "the answer stored before the crash"
    );
    // Meta redelivers the original: still nothing twice.
    d.deliver_whatsapp(
        &channel,
        &whatsapp_text("wamid.crash-1", "Is the Roadster in stock?"),
    )
    .await;
    eventually(10, "the redelivery processed", || async {
        (inbox(&d, &channel).await["pending"] == 0).then_some(())
    })
    .await;
    let all = d.messages_on("whatsapp").await;
    assert_eq!(all.len(), 2, "one question, one answer: {all:?}");
    assert_eq!(graph.sends().len(), 1, "sent once");
    assert_eq!(graph.sends()[0]["to"], "972987654321");
    let api = d.messages(&api_conversation).await;
    assert_eq!(
        api.iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["user", "assistant"]
    );
    assert_eq!(
        stub.requests().len(),
        2,
        "no provider call after the crashes"
    );
    assert!(
        d.log().contains("took back") || backend == Backend::Postgres,
        "SQLite takes back the jobs its last run left: {}",
        d.log()
    );
}

/// A Telegram update with a photo, killed before it is processed, is stored with its file
/// downloaded and answered once after the restart.
async fn a_telegram_update_survives_kill_9(backend: Backend) {
    let Some(site) = Site::new(backend).await else {
        return;
    };
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    site.use_platforms(None, Some(&bot.base_url));
    let stub = StubProvider::start().await.unwrap();
    let a = site.start("a", "telegram.delivery");
    let assistant_id = a.assistant(&stub).await;
    let r = a
        .post(
            &format!("/api/v1/assistants/{assistant_id}/channels"),
            &json!({"kind": "telegram", "bot_token": BOT_TOKEN, "public_base_url": a.base,
                    "api_base_url": bot.base_url}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let channel = r.body["id"].as_str().unwrap().to_owned();
    let secret = bot
        .calls()
        .into_iter()
        .find(|c| c.method == "setWebhook")
        .expect("setWebhook was called")
        .body["secret_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut update = fixture("telegram", "chatwoot_spec_incoming_updates.json")["text"].clone();
    update["update_id"] = json!(9001);
    update["message"]["photo"] = json!([{"file_id": "photo-big", "file_unique_id": "u1",
                                          "width": 800, "height": 600, "file_size": 4}]);
    bot.add_file("photo-big", "photos/file_1.jpg", b"jpeg");
    let r = a
        .send(
            a.client
                .post(a.url(&format!("/webhooks/telegram/{channel}")))
                .header("x-telegram-bot-api-secret-token", &secret)
                .json(&update),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(inbox(&a, &channel).await["pending"], 1);
    a.kill_9();

    let b = site.start("b", "");
    let answered = eventually(30, "the update stored and answered", || async {
        let all = b.messages_on("telegram").await;
        (all.len() == 2).then_some(all)
    })
    .await;
    assert_eq!(answered[0]["external_id"], "9001");
    let a0 = &answered[0]["meta"]["channel"]["attachments"][0];
    assert!(
        a0["storage_key"].is_string(),
        "downloaded after the restart: {a0}"
    );
    assert_eq!(answered[1]["role"], "assistant");
    eventually(10, "the reply", || async {
        bot.calls()
            .iter()
            .any(|c| c.method == "sendMessage")
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sends = bot
        .calls()
        .iter()
        .filter(|c| c.method == "sendMessage")
        .count();
    assert_eq!(sends, 1);
    assert_eq!(stub.requests().len(), 1);
    assert_eq!(inbox(&b, &channel).await["pending"], 0);
}

/// A graceful stop (`SIGTERM`) while a delivery is being processed hands it back to the
/// queue at once (its attempt not counted), and the next start processes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_unfinished_jobs_back() {
    let site = Site::new(Backend::Sqlite).await.unwrap();
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number(BUSINESS_ACCOUNT_ID, PHONE_NUMBER_ID, "GREEN", "TIER_250");
    site.use_platforms(Some(&graph.base_url), None);
    let stub = StubProvider::start().await.unwrap();
    let a = site.start("a", "whatsapp.delivery");
    let assistant_id = a.assistant(&stub).await;
    let channel = a.connect_whatsapp(&assistant_id, &graph).await;
    a.deliver_whatsapp(&channel, &whatsapp_text("wamid.term-1", "Hello?"))
        .await;
    let log = a.terminate();
    assert!(
        log.contains("handed unfinished jobs back to the queue jobs=1"),
        "{log}"
    );
    let b = site.start("b", "");
    eventually(30, "the delivery answered after the restart", || async {
        (b.messages_on("whatsapp").await.len() == 2).then_some(())
    })
    .await;
    assert!(!b.log().contains("took back"), "nothing was left running");
}

/// A browser call's utterance (issue 15), acknowledged (its stream says `transcribing`) and
/// killed before its turn job ran, is transcribed, answered and spoken exactly once after the
/// restart.
async fn a_call_utterance_survives_kill_9(backend: Backend) {
    use parley_core::widget::{WidgetMode, WidgetRecord, WidgetSettings};
    const SITE: &str = "http://site.test:8000";
    let Some(site) = Site::new(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    let a = site.start("a", "widget.call_turn");
    let assistant: parley_core::AssistantId = a.assistant(&stub).await.parse().unwrap();
    let store = site.store().await;
    let ws = store
        .workspaces()
        .workspace_by_slug("acme")
        .await
        .unwrap()
        .unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    let mut settings = WidgetSettings {
        allowed_origins: vec![SITE.into()],
        mode: WidgetMode::Voice,
        transcription_model: "whisper-1".into(),
        speech_model: "tts-1".into(),
        ..Default::default()
    };
    settings.validate().unwrap();
    store
        .widgets()
        .save_widget(&WidgetRecord {
            workspace_id: ws.id,
            assistant_id: assistant,
            public_key: key.clone(),
            settings,
            updated_at: parley_core::Timestamp::now(),
        })
        .await
        .unwrap();
    drop(store);
    let r = a
        .send(
            a.client
                .post(a.url(&format!("/widget/v1/conversations?key={key}")))
                .header("origin", SITE)
                .json(&json!({})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let conversation = r.body["conversation_id"].as_str().unwrap().to_owned();
    let token = r.body["visitor_token"].as_str().unwrap().to_owned();
    let wav =
        std::fs::read(crate::helpers::shared_dir().join("fixtures/audio/en_sentence_16k_mono.wav"))
            .unwrap();
    let mut res = a
        .client
        .post(a.url(&format!("/widget/v1/call?key={key}&client_id=k1")))
        .header("origin", SITE)
        .header("x-parley-visitor", &token)
        .header("content-type", "audio/wav")
        .body(wav)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut seen = String::new();
    while !seen.contains("\"transcribing\"") {
        let chunk = res.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    a.kill_9();

    // Restarted on the same data directory (the recording is a local file there).
    let b = site.start("a", "");
    let messages = eventually(60, "the turn finished after the restart", || async {
        let all = b.messages(&conversation).await;
        all.iter()
            .any(|m| m["meta"]["channel"]["details"]["turn"] == "done")
            .then_some(all)
    })
    .await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        messages[0]["content"],
        "🎤 Hello, this is a short test of the Parley voice pipeline."
    );
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["meta"]["channel"]["attachments"][0]["kind"],
        "speech"
    );
    assert_eq!(stub.transcriptions().len(), 1);
    assert_eq!(stub.requests().len(), 1);
    assert_eq!(stub.speeches().len(), 1);
}

crate::both_backends!(
    a_webhook_and_an_api_message_survive_kill_9_at_every_stage,
    a_telegram_update_survives_kill_9,
    a_call_utterance_survives_kill_9,
);
