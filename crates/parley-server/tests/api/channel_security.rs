//! Issue 10 for channels: a sender (Telegram bot, WhatsApp number) is claimed only by whoever
//! proves they control it, and the conflict says nothing to anyone else (item 8); a
//! connection's own API URL and the media URLs a platform answers with cannot reach the
//! server's network (item 2); and a customer of an assistant without a provider gets no
//! "Sorry, I can't answer" notice (item 13). The platforms are the fakes on 127.0.0.1,
//! configured as the operator's platform APIs (trusted, as the operator wrote them).

use parley_core::channel::{ChannelConnection, ChannelKind, SealedSecret};
use parley_server::assistant::runtime::FAILURE_TEXT;
use parley_server::channels::whatsapp::sign;
use parley_testkit::fake_bot_api::FakeBotApi;
use parley_testkit::fake_graph::FakeGraph;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::channel_support::{all_messages, eventually, fixture};
use crate::helpers::{Backend, Resp, TestApp, guarded, platforms, port_of};

/// The real owner's token of bot 444444444, which the fake Bot API knows.
const BOT_TOKEN: &str = "444444444:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
/// A made-up token for the same bot id (the id is only the token's prefix).
const FAKE_BOT_TOKEN: &str = "444444444:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const ACCESS_TOKEN: &str = "EAAG-owner-access-token-9876";
const APP_SECRET: &str = "meta-app-secret-0123456789";
const PHONE_NUMBER_ID: &str = "1122334455667";
const WABA: &str = "102290129340398";

/// A new assistant without a provider in the workspace of `key`; returns its id.
async fn bare_assistant(app: &TestApp, key: &str, name: &str) -> String {
    let r = app
        .post_as("/api/v1/assistants", &json!({"name": name}), key)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn connect(app: &TestApp, key: &str, assistant: &str, body: &Value) -> Resp {
    app.post_as(
        &format!("/api/v1/assistants/{assistant}/channels"),
        body,
        key,
    )
    .await
}

/// A Telegram connection through the fake Bot API `bot` (which is also the operator's: the
/// connection names it, so these bodies mean the same to a server without ownership checks).
fn telegram(app: &TestApp, bot: &FakeBotApi, token: &str) -> Value {
    json!({"kind": "telegram", "bot_token": token, "public_base_url": app.base,
           "api_base_url": bot.base_url})
}

/// A WhatsApp connection through the fake Graph API `graph` (see [`telegram`]).
fn whatsapp(graph: &FakeGraph, token: &str, waba: &str) -> Value {
    json!({"kind": "whatsapp", "phone_number_id": PHONE_NUMBER_ID, "business_account_id": waba,
           "access_token": token, "app_secret": APP_SECRET, "verify_token": "verify-me-4242",
           "graph_base_url": graph.base_url})
}

/// Asserts an `ownership_not_proven` answer that reveals nothing about other connections.
fn assert_unproven(r: &Resp, field: &str) {
    assert_eq!(
        (r.status, r.code()),
        (422, "ownership_not_proven"),
        "{}",
        r.text
    );
    assert_eq!(r.body["error"]["field"], field);
    for word in ["already", "connected", "workspace"] {
        assert!(!r.text.contains(word), "{word}: {}", r.text);
    }
}

/// A connection as a server without ownership checks stored it: `token` sealed, unverified.
async fn squat(
    app: &TestApp,
    workspace: parley_core::WorkspaceId,
    assistant: &str,
    token: &str,
) -> String {
    let mut c = ChannelConnection {
        id: parley_core::ChannelConnectionId::new(),
        workspace_id: workspace,
        assistant_id: assistant.parse().unwrap(),
        kind: ChannelKind::Telegram,
        external_key: "444444444".into(),
        config: serde_json::Map::new(),
        secrets: Default::default(),
        created_at: parley_core::Timestamp::now(),
    };
    c.config.insert("bot_id".into(), json!("444444444"));
    c.secrets.insert(
        "bot_token".into(),
        SealedSecret {
            sealed: app.state.secrets.seal(token),
            hint: SealedSecret::hint_for(token),
        },
    );
    app.state.store.channels().create_channel(&c).await.unwrap();
    c.id.to_string()
}

/// Tenant A cannot claim bot 444444444 with a made-up token, so the real owner can; a
/// connection squatted before the check existed gives way to the proven owner; anyone who
/// has not proven ownership learns nothing about who holds it.
async fn a_telegram_bot_is_claimed_only_with_its_token(backend: Backend) {
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let Some(app) = TestApp::spawn_on_with(backend, platforms(None, Some(&bot.base_url))).await
    else {
        return;
    };
    let (attacker_ws, attacker) = app.other_tenant("attacker").await;
    let a_assistant = bare_assistant(&app, &attacker, "Squatter").await;
    // The attacker's own "Bot API", which accepts the made-up token: ownership is not proven
    // there, whatever it answers.
    let own_api = FakeBotApi::start(FAKE_BOT_TOKEN).await.unwrap();
    for api in [&own_api, &bot] {
        let r = connect(
            &app,
            &attacker,
            &a_assistant,
            &telegram(&app, api, FAKE_BOT_TOKEN),
        )
        .await;
        assert_unproven(&r, "bot_token");
    }
    assert!(
        bot.calls().iter().all(|c| c.method == "getMe"),
        "no webhook was set"
    );
    assert!(own_api.calls().is_empty(), "the proof is not asked of it");

    // A squat stored by an earlier version, before ownership was checked.
    let squatted = squat(&app, attacker_ws.id, &a_assistant, FAKE_BOT_TOKEN).await;
    let owner = bare_assistant(&app, &app.key, "Owner").await;
    let r = connect(&app, &app.key, &owner, &telegram(&app, &bot, BOT_TOKEN)).await;
    assert_eq!(r.status, 201, "the real owner connects: {}", r.text);
    let r = app
        .get_as(&format!("/api/v1/channels/{squatted}"), &attacker)
        .await;
    assert_eq!(r.status, 404, "the dead squat gave way");

    // Now that it is connected: the made-up token still learns nothing.
    let r = connect(
        &app,
        &attacker,
        &a_assistant,
        &telegram(&app, &own_api, FAKE_BOT_TOKEN),
    )
    .await;
    assert_unproven(&r, "bot_token");
    // Whoever proves ownership is told, and where when it is their own workspace.
    let r = connect(
        &app,
        &attacker,
        &a_assistant,
        &telegram(&app, &bot, BOT_TOKEN),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "channel_exists"), "{}", r.text);
    assert!(r.text.contains("another workspace"), "{}", r.text);
    let second = bare_assistant(&app, &app.key, "Second").await;
    let r = connect(&app, &app.key, &second, &telegram(&app, &bot, BOT_TOKEN)).await;
    assert_eq!((r.status, r.code()), (409, "channel_exists"), "{}", r.text);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("in this workspace") && message.contains("\"Owner\""),
        "{message}"
    );
}

/// A WhatsApp number is claimed only with an access token that reads it, for the business
/// account it belongs to.
async fn a_whatsapp_number_is_claimed_only_with_its_access_token(backend: Backend) {
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number(WABA, PHONE_NUMBER_ID, "GREEN", "TIER_1K");
    let Some(app) = TestApp::spawn_on_with(backend, platforms(Some(&graph.base_url), None)).await
    else {
        return;
    };
    let (_, attacker) = app.other_tenant("attacker").await;
    let a_assistant = bare_assistant(&app, &attacker, "Squatter").await;
    let r = connect(
        &app,
        &attacker,
        &a_assistant,
        &whatsapp(&graph, "EAAG-made-up-token", WABA),
    )
    .await;
    assert_unproven(&r, "access_token");
    // The right token, but a business account the number is not in.
    let r = connect(
        &app,
        &attacker,
        &a_assistant,
        &whatsapp(&graph, ACCESS_TOKEN, "999000999"),
    )
    .await;
    assert_unproven(&r, "access_token");

    let owner = bare_assistant(&app, &app.key, "Owner").await;
    let r = connect(
        &app,
        &app.key,
        &owner,
        &whatsapp(&graph, ACCESS_TOKEN, WABA),
    )
    .await;
    assert_eq!(r.status, 201, "the real owner connects: {}", r.text);
    assert_eq!(r.body["config"]["quality_rating"], "GREEN");
    let r = connect(
        &app,
        &attacker,
        &a_assistant,
        &whatsapp(&graph, "EAAG-made-up-token", WABA),
    )
    .await;
    assert_unproven(&r, "access_token");
    let r = connect(
        &app,
        &attacker,
        &a_assistant,
        &whatsapp(&graph, ACCESS_TOKEN, WABA),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "channel_exists"), "{}", r.text);
    let sends: Vec<_> = graph
        .received()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages"))
        .collect();
    assert!(sends.is_empty());
}

/// With the default network settings a connection's own API URL cannot be loopback or
/// metadata, whether written as an address or as a name that resolves to one.
#[tokio::test]
async fn a_connections_own_api_url_cannot_reach_the_servers_network() {
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number(WABA, PHONE_NUMBER_ID, "GREEN", "TIER_1K");
    let on = platforms(Some(&graph.base_url), Some(&bot.base_url));
    let app = TestApp::spawn_with(|s| {
        guarded(s);
        on(s);
    })
    .await;
    let assistant = bare_assistant(&app, &app.key, "Ava").await;
    // Services on the server's network that are not the operator's platform APIs.
    let internal_bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let internal_graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    internal_graph.set_phone_number(WABA, PHONE_NUMBER_ID, "GREEN", "TIER_1K");
    let bot_port = port_of(&internal_bot.base_url);
    let graph_port = port_of(&internal_graph.base_url);
    for api in [
        format!("http://127.0.0.1:{bot_port}"),
        format!("http://localhost:{bot_port}"),
        "http://169.254.169.254".to_owned(),
    ] {
        let mut body = telegram(&app, &bot, BOT_TOKEN);
        body["api_base_url"] = json!(api);
        let r = connect(&app, &app.key, &assistant, &body).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "destination_not_allowed"),
            "{api}: {}",
            r.text
        );
        assert_eq!(r.body["error"]["field"], "api_base_url");
    }
    assert!(
        internal_bot.calls().is_empty(),
        "nothing reached the internal Bot API"
    );
    assert!(bot.calls().iter().all(|c| c.method == "getMe"));
    for url in [
        format!("http://127.0.0.1:{graph_port}/v21.0"),
        format!("http://localhost:{graph_port}/v21.0"),
        "http://[::ffff:169.254.169.254]/v21.0".to_owned(),
    ] {
        let mut body = whatsapp(&graph, ACCESS_TOKEN, WABA);
        body["graph_base_url"] = json!(url);
        let r = connect(&app, &app.key, &assistant, &body).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "destination_not_allowed"),
            "{url}: {}",
            r.text
        );
        assert_eq!(r.body["error"]["field"], "graph_base_url");
    }
    assert!(
        internal_graph.received().is_empty(),
        "nothing reached the internal Graph API"
    );
    // Without one of their own, connections use the operator's platform APIs.
    let mut body = whatsapp(&graph, ACCESS_TOKEN, WABA);
    body.as_object_mut().unwrap().remove("graph_base_url");
    let r = connect(&app, &app.key, &assistant, &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Posts a WhatsApp webhook payload to connection `channel`, signed as Meta signs it.
async fn deliver(app: &TestApp, channel: &str, payload: &Value) {
    let body = serde_json::to_vec(payload).unwrap();
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/webhooks/whatsapp/{channel}")))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sign(APP_SECRET, &body))
                .body(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn image_message(wamid: &str, media_id: &str) -> Value {
    let mut p = fixture("whatsapp", "pywa_updates_message.json")["image"].clone();
    let m = &mut p["entry"][0]["changes"][0]["value"]["messages"][0];
    m["id"] = json!(wamid);
    m["image"]["id"] = json!(media_id);
    p
}

/// The media URL Meta answers with is the platform's data, not Parley's configuration: with
/// the default settings one pointing at loopback (as an address or as `localhost`) is not
/// downloaded. The customer's message is stored with the refusal.
#[tokio::test]
async fn media_urls_cannot_reach_the_servers_network() {
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number(WABA, PHONE_NUMBER_ID, "GREEN", "TIER_1K");
    let on = platforms(Some(&graph.base_url), None);
    let app = TestApp::spawn_with(|s| {
        guarded(s);
        on(s);
    })
    .await;
    let assistant = bare_assistant(&app, &app.key, "Ava").await;
    let r = connect(
        &app,
        &app.key,
        &assistant,
        &whatsapp(&graph, ACCESS_TOKEN, WABA),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let channel = r.body["id"].as_str().unwrap().to_owned();
    graph.add_media("7001", "image/jpeg", b"jpeg bytes");
    graph.add_media("7002", "image/jpeg", b"jpeg bytes");
    deliver(&app, &channel, &image_message("wamid.literal", "7001")).await;
    graph.set_media_host("localhost");
    deliver(&app, &channel, &image_message("wamid.named", "7002")).await;
    for wamid in ["wamid.literal", "wamid.named"] {
        let m = eventually(10, wamid, || async {
            all_messages(&app, "whatsapp")
                .await
                .into_iter()
                .find(|m| m["external_id"] == wamid)
        })
        .await;
        let a = &m["meta"]["channel"]["attachments"][0];
        assert!(a["storage_key"].is_null(), "{a}");
        assert!(
            a["download_error"]
                .as_str()
                .unwrap()
                .contains("destination_not_allowed"),
            "{a}"
        );
    }
    assert!(
        !graph
            .received()
            .iter()
            .any(|r| r.path.starts_with("/files/")),
        "no download reached the loopback URL"
    );
}

fn text_message(wamid: &str, body: &str) -> Value {
    let mut p = fixture("whatsapp", "pywa_updates_message.json")["text"].clone();
    let m = &mut p["entry"][0]["changes"][0]["value"]["messages"][0];
    m["id"] = json!(wamid);
    m["timestamp"] = json!(crate::channel_support::unix_now().to_string());
    m["text"]["body"] = json!(body);
    p
}

fn telegram_text(update_id: i64, text: &str) -> Value {
    let mut u = fixture("telegram", "chatwoot_spec_incoming_updates.json")["text"].clone();
    u["update_id"] = json!(update_id);
    u["message"]["text"] = json!(text);
    u
}

/// Gives assistant `id` the stub as its provider (the workspace's own).
async fn give_provider(app: &TestApp, id: &str, stub: &StubProvider) {
    let r = app
        .patch(
            &format!("/api/v1/assistants/{id}"),
            &json!({"settings": {"provider": {"base_url": stub.base_url, "model": "gpt-4o-mini"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// An assistant without a provider only records (README, "Answering"): its WhatsApp and
/// Telegram customers get no failure notice. Once it has a provider, the next message is
/// answered — and the only thing ever sent is that answer.
#[tokio::test]
async fn customers_of_an_assistant_without_a_provider_get_no_failure_notice() {
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number(WABA, PHONE_NUMBER_ID, "GREEN", "TIER_1K");
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text("Hello, how can I help?"));
    let app = TestApp::spawn_with(platforms(Some(&graph.base_url), Some(&bot.base_url))).await;
    let assistant = bare_assistant(&app, &app.key, "Recorder").await;
    let r = connect(
        &app,
        &app.key,
        &assistant,
        &whatsapp(&graph, ACCESS_TOKEN, WABA),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let wa = r.body["id"].as_str().unwrap().to_owned();
    let r = connect(&app, &app.key, &assistant, &telegram(&app, &bot, BOT_TOKEN)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let tg = r.body["id"].as_str().unwrap().to_owned();
    let secret = bot
        .calls()
        .into_iter()
        .find(|c| c.method == "setWebhook")
        .unwrap()
        .body["secret_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let telegram_update = |update: Value| {
        let req = app
            .client
            .post(app.url(&format!("/webhooks/telegram/{tg}")))
            .header("x-telegram-bot-api-secret-token", secret.clone())
            .json(&update);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
        }
    };

    deliver(&app, &wa, &text_message("wamid.first", "Hello?")).await;
    telegram_update(telegram_text(5001, "Hello?")).await;
    for (channel, id) in [("whatsapp", "wamid.first"), ("telegram", "5001")] {
        eventually(10, id, || async {
            all_messages(&app, channel)
                .await
                .into_iter()
                .find(|m| m["external_id"] == id)
        })
        .await;
    }
    // Its turn over, the assistant gets a provider; the next messages are answered.
    give_provider(&app, &assistant, &stub).await;
    deliver(&app, &wa, &text_message("wamid.second", "Anyone?")).await;
    telegram_update(telegram_text(5002, "Anyone?")).await;
    let sent_text = |v: &Value| {
        v["text"]["body"]
            .as_str()
            .or(v["text"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    eventually(15, "both answers sent", || async {
        let wa_sent = graph.sends().len();
        let tg_sent = bot
            .calls()
            .iter()
            .filter(|c| c.method == "sendMessage")
            .count();
        (wa_sent >= 1 && tg_sent >= 1).then_some(())
    })
    .await;
    let mut sent: Vec<String> = graph.sends().iter().map(sent_text).collect();
    sent.extend(
        bot.calls()
            .iter()
            .filter(|c| c.method == "sendMessage")
            .map(|c| sent_text(&c.body)),
    );
    // (Had the first turns read the assistant after the patch, they would have answered too:
    // still nothing but answers.)
    assert!(
        sent.iter().all(|t| t == "Hello, how can I help?"),
        "only answers were sent: {sent:?}"
    );
    for channel in ["whatsapp", "telegram"] {
        let stored = all_messages(&app, channel).await;
        assert!(
            stored.iter().all(|m| m["content"] != FAILURE_TEXT),
            "{stored:?}"
        );
    }
}

/// A field of another channel kind is refused, naming it, before anything is asked of a
/// platform: a Telegram connection with WhatsApp's token, a WhatsApp one with a bot token, a
/// Messenger one with a phone number id (`api::channels::forbid_fields`).
async fn fields_of_another_kind_are_refused(backend: Backend) {
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    let Some(app) = TestApp::spawn_on_with(
        backend,
        platforms(Some(&graph.base_url), Some(&bot.base_url)),
    )
    .await
    else {
        return;
    };
    let assistant = bare_assistant(&app, &app.key, "Mixed").await;
    let mut tg = telegram(&app, &bot, BOT_TOKEN);
    tg["access_token"] = json!("EAAB-not-for-telegram");
    let mut wa = whatsapp(&graph, "EAAB-token", "102290129340398");
    wa["bot_token"] = json!(BOT_TOKEN);
    let ms = json!({"kind": "messenger", "page_id": "1234567890", "access_token": "EAAB-page",
                    "app_secret": APP_SECRET, "verify_token": "verify-me-4242",
                    "phone_number_id": PHONE_NUMBER_ID});
    for (body, field) in [
        (tg, "access_token"),
        (wa, "bot_token"),
        (ms, "phone_number_id"),
    ] {
        let r = connect(&app, &app.key, &assistant, &body).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "validation_failed"),
            "{}",
            r.text
        );
        assert_eq!(r.body["error"]["field"], field, "{}", r.text);
        assert!(r.text.contains("does not apply to"), "{}", r.text);
    }
    assert!(bot.calls().is_empty(), "nothing was asked of the Bot API");
}

crate::both_backends!(
    fields_of_another_kind_are_refused,
    a_telegram_bot_is_claimed_only_with_its_token,
    a_whatsapp_number_is_claimed_only_with_its_access_token,
);
