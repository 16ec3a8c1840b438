//! The Telegram channel against the real server: every update in ../shared/fixtures/telegram
//! posted to the real webhook with the secret token Parley registered through `setWebhook`,
//! a fake Bot API on 127.0.0.1 receiving `setWebhook`, `getFile` and `sendMessage` and serving
//! files, and the stub provider answering as the assistant.

use std::time::{Duration, Instant};

use parley_testkit::fake_bot_api::FakeBotApi;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::channel_support::{
    all_messages, assistant, conversations, eventually, fixture, fixture_cases,
};
use crate::helpers::{Backend, Resp, TestApp, platforms};

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

struct Rig {
    app: TestApp,
    bot: FakeBotApi,
    stub: StubProvider,
    channel: String,
    secret: String,
}

async fn rig(backend: Backend) -> Option<Rig> {
    let bot = FakeBotApi::start(TOKEN).await.unwrap();
    let app = TestApp::spawn_on_with(backend, platforms(None, Some(&bot.base_url))).await?;
    let stub = StubProvider::start().await.unwrap();
    let assistant = assistant(&app, &stub).await;
    let r = app
        .post(
            &format!("/api/v1/assistants/{assistant}/channels"),
            &json!({"kind": "telegram", "bot_token": TOKEN, "public_base_url": app.base,
                    "api_base_url": bot.base_url}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let channel = r.body["id"].as_str().unwrap().to_owned();
    let calls = bot.calls();
    assert_eq!(calls[0].method, "getMe", "ownership is proven first");
    assert_eq!(calls[1].method, "setWebhook");
    assert_eq!(
        calls[1].body["url"],
        format!("{}/webhooks/telegram/{channel}", app.base)
    );
    let secret = calls[1].body["secret_token"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32);
    Some(Rig {
        app,
        bot,
        stub,
        channel,
        secret,
    })
}

impl Rig {
    async fn post_with(&self, update: &Value, secret: Option<&str>) -> Resp {
        let mut req = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/webhooks/telegram/{}", self.channel)),
            )
            .json(update);
        if let Some(s) = secret {
            req = req.header("x-telegram-bot-api-secret-token", s);
        }
        self.app.send(req).await
    }

    async fn deliver(&self, update: &Value) {
        let r = self.post_with(update, Some(&self.secret)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    fn sends(&self) -> Vec<Value> {
        self.bot
            .calls()
            .into_iter()
            .filter(|c| c.method == "sendMessage")
            .map(|c| c.body)
            .collect()
    }
}

async fn message_with(app: &TestApp, external_id: &str) -> Option<Value> {
    all_messages(app, "telegram")
        .await
        .into_iter()
        .find(|m| m["external_id"] == external_id)
}

/// Every file id an update's message carries.
fn file_ids(m: &Value) -> Vec<String> {
    let mut ids: Vec<String> = m["photo"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["file_id"].as_str().map(str::to_owned))
        .collect();
    for k in ["voice", "audio", "document", "video", "sticker"] {
        if let Some(id) = m[k]["file_id"].as_str() {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// A private text message update from chat 4242.
fn text_update(update_id: i64, text: &str) -> Value {
    let mut u = fixture("telegram", "chatwoot_spec_incoming_updates.json")["text"].clone();
    u["update_id"] = json!(update_id);
    u["message"]["text"] = json!(text);
    u
}

/// Every update of the fixtures is stored as what it is (bare `Message` samples are wrapped in
/// an update). The fixtures reuse update ids across cases, so each case gets its own first;
/// the replay test covers repeated ids.
async fn every_fixture_update_is_stored(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let mut expected: Vec<(String, String, Value)> = Vec::new();
    for (n, (file, case, payload)) in fixture_cases("telegram", "").into_iter().enumerate() {
        if file.contains("api_responses") {
            continue;
        }
        // teloxide's `*_message` samples are bare Message objects.
        let mut update = if file.starts_with("teloxide") && case.ends_with("_message") {
            json!({"message": payload})
        } else {
            payload
        };
        let update_id = 5_000_000 + n as i64;
        update["update_id"] = json!(update_id);
        for (i, id) in file_ids(&update["message"]).into_iter().enumerate() {
            rig.bot
                .add_file(&id, &format!("files/{case}-{i}"), b"telegram file bytes");
        }
        rig.deliver(&update).await;
        expected.push((update_id.to_string(), case, update));
    }
    assert!(expected.len() >= 25, "{} updates", expected.len());
    let stored = eventually(30, "every update", || async {
        let all = all_messages(&rig.app, "telegram").await;
        let found: Vec<Value> = expected
            .iter()
            .filter_map(|(id, _, _)| all.iter().find(|m| m["external_id"] == *id).cloned())
            .collect();
        (found.len() == expected.len()).then_some(found)
    })
    .await;
    for ((_, case, update), m) in expected.iter().zip(&stored) {
        let ch = &m["meta"]["channel"];
        let content = m["content"].as_str().unwrap();
        let msg = &update["message"];
        if let Some(text) = msg["text"].as_str().or(msg["caption"].as_str()) {
            assert_eq!(content, text, "{case}");
        }
        for kind in ["voice", "audio", "document", "video", "sticker"] {
            if msg[kind].is_object() {
                assert_eq!(ch["type"], kind, "{case}");
            }
        }
        if msg["photo"].is_array() {
            assert_eq!(ch["type"], "image", "{case}");
            // The largest size is the one kept.
            let largest = msg["photo"].as_array().unwrap().last().unwrap();
            assert_eq!(
                ch["attachments"][0]["media_id"], largest["file_id"],
                "{case}"
            );
        }
        if let Some(a) = ch["attachments"].as_array().and_then(|a| a.first()) {
            assert!(a["storage_key"].is_string(), "{case}: {m}");
            assert_eq!(a["size_bytes"], 19);
        }
        match case.as_str() {
            "edited_message" => {
                assert_eq!(content, "[edited] Edited text");
                assert_eq!(ch["type"], "edited");
                assert_eq!(ch["refers_to"], "1365");
            }
            "inline_query" | "chosen_inline_result" | "callback_query" => {
                assert!(
                    content.starts_with("[unsupported Telegram update"),
                    "{content}"
                );
                if case == "callback_query" {
                    assert!(content.contains("Data from button callback"), "{content}");
                }
            }
            _ => assert_eq!(m["role"], "user"),
        }
    }
    let list = conversations(&rig.app, "telegram").await;
    let contacts: Vec<&str> = list.iter().filter_map(|c| c["contact"].as_str()).collect();
    assert!(contacts.contains(&"Sojan Jose (@sojan)"), "{contacts:?}");
    assert!(contacts.contains(&"Waffle (@WaffleLapkin)"), "{contacts:?}");
    // Answers went out to the chats with sendMessage.
    let sends = eventually(30, "the answers", || async {
        let s = rig.sends();
        (s.len() >= 10).then_some(s)
    })
    .await;
    assert!(sends.iter().any(|s| s["chat_id"] == 23));
    assert!(sends.iter().all(|s| s["text"] == "Hello from the stub."));
}

/// Deliveries without the secret token, or with another, are refused and store nothing.
#[tokio::test]
async fn the_secret_token_is_checked() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let update = text_update(1, "hi");
    let r = rig.post_with(&update, None).await;
    assert_eq!((r.status, r.code()), (401, "secret_missing"));
    let r = rig.post_with(&update, Some("not-the-secret")).await;
    assert_eq!((r.status, r.code()), (403, "secret_invalid"));
    let r = rig.post_with(&update, Some(&rig.secret[1..])).await;
    assert_eq!(r.status, 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(conversations(&rig.app, "telegram").await.is_empty());
}

/// Telegram retries deliveries: an update id is stored and answered once.
async fn replayed_updates_store_nothing_twice(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let update = text_update(77, "When do you open?");
    rig.deliver(&update).await;
    eventually(20, "the answer", || async {
        message_with(&rig.app, "out:1001").await
    })
    .await;
    for _ in 0..3 {
        rig.deliver(&update).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(all_messages(&rig.app, "telegram").await.len(), 2);
    assert_eq!(rig.sends().len(), 1);
    assert_eq!(rig.stub.requests().len(), 1);
}

/// A long answer is split under 4,096 characters; a 429 is retried after `retry_after`.
#[tokio::test]
async fn long_answers_are_split_and_rate_limits_honoured() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let long = format!("{}\n\n{}", "word ".repeat(900), "tail ".repeat(300));
    rig.stub.set_default(Reply::text(long.clone()));
    rig.bot.fail_next_send(
        429,
        json!({"ok": false, "error_code": 429,
               "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
    );
    let started = Instant::now();
    rig.deliver(&text_update(10, "Tell me everything")).await;
    let answer = eventually(20, "the answer", || async {
        let m = message_with(&rig.app, "out:1001").await?;
        Some(m)
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited retry_after"
    );
    assert_eq!(answer["meta"]["channel"]["delivery"]["status"], "sent");
    assert_eq!(answer["meta"]["channel"]["details"]["parts"], 2);
    let sends = rig.sends();
    assert_eq!(sends.len(), 3, "the refused first part, then two parts");
    assert_eq!(sends[0]["text"], sends[1]["text"]);
    let parts: Vec<&str> = sends[1..]
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
    // Each part is sent as Telegram HTML (tidied of the spaces at its cut), the words intact.
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words(&parts.join(" ")),
        words(answer["content"].as_str().unwrap())
    );
}

/// The assistant writes markdown; the customer receives Telegram's HTML formatting
/// (`parse_mode: HTML`, escaped), while Parley keeps the markdown as written.
#[tokio::test]
async fn markdown_answers_are_sent_as_telegram_html() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let md = "The **Roadster** is *in stock* & ships <today>:\n\n- size 42\n- [track it](https://shop.example/t)";
    rig.stub.set_default(Reply::text(md));
    rig.deliver(&text_update(11, "Is the Roadster in stock?"))
        .await;
    let answer = eventually(20, "the answer", || async {
        message_with(&rig.app, "out:1001").await
    })
    .await;
    assert_eq!(answer["content"], md, "stored as written");
    let sends = rig.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["parse_mode"], "HTML");
    assert_eq!(
        sends[0]["text"],
        "The <b>Roadster</b> is <i>in stock</i> &amp; ships &lt;today&gt;:\n\n\u{2022} size 42\n\u{2022} <a href=\"https://shop.example/t\">track it</a>"
    );
}

/// Telegram's refusals (a blocked bot; a `retry_after` too long to wait) are recorded on the
/// answer.
#[tokio::test]
async fn send_failures_are_recorded() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let responses = fixture("telegram", "teloxide_test_api_responses.json");
    let mut blocked = responses["error_bot_blocked"].clone();
    blocked["error_code"] = json!(403);
    rig.bot.fail_next_send(403, blocked);
    rig.deliver(&text_update(20, "hello")).await;
    let failed = eventually(20, "the failed answer", || async {
        all_messages(&rig.app, "telegram")
            .await
            .into_iter()
            .find(|m| m["meta"]["channel"]["delivery"]["status"] == "failed")
    })
    .await;
    let e = &failed["meta"]["channel"]["delivery"]["errors"][0];
    assert_eq!(e["code"], 403);
    assert_eq!(e["title"], "Forbidden: bot was blocked by the user");

    rig.bot
        .fail_next_send(429, responses["error_retry_after"].clone());
    let started = Instant::now();
    rig.deliver(&text_update(21, "hello again")).await;
    eventually(20, "the second failure", || async {
        let n = all_messages(&rig.app, "telegram")
            .await
            .into_iter()
            .filter(|m| m["meta"]["channel"]["delivery"]["status"] == "failed")
            .count();
        (n == 2).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait 123456 s"
    );
}

/// A photo whose download fails once is fetched again with getFile and stored.
#[tokio::test]
async fn a_failed_file_download_is_retried() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let mut update = fixture("telegram", "chatwoot_spec_incoming_updates.json")["photo"].clone();
    update["update_id"] = json!(30);
    let largest = update["message"]["photo"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    rig.bot
        .add_file(&largest, "photos/file_1.jpg", b"jpeg bytes");
    rig.bot.fail_downloads(1);
    rig.deliver(&update).await;
    let m = eventually(20, "the photo", || async {
        message_with(&rig.app, "30").await
    })
    .await;
    let a = &m["meta"]["channel"]["attachments"][0];
    assert_eq!(a["download_attempts"], 2, "{m}");
    assert_eq!(a["size_bytes"], 10);
    assert_eq!(rig.bot.downloads(), 2);
    let path = rig
        .app
        .state
        .settings
        .data_dir
        .join("attachments")
        .join(a["storage_key"].as_str().unwrap());
    assert_eq!(std::fs::read(path).unwrap(), b"jpeg bytes");
}

/// Connecting needs a token shaped like one that Telegram accepts; the token is never shown.
#[tokio::test]
async fn connecting_checks_the_token_with_telegram() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let r = rig
        .app
        .get(&format!("/api/v1/channels/{}", rig.channel))
        .await;
    assert!(!r.text.contains(TOKEN) && !r.text.contains(&rig.secret));
    assert_eq!(r.body["secrets"]["bot_token"], "…Dsaw");
    assert_eq!(r.body["external_key"], "123456789");
    let assistant = r.body["assistant_id"].as_str().unwrap();
    let path = format!("/api/v1/assistants/{assistant}/channels");
    let body = |token: &str| {
        json!({"kind": "telegram", "bot_token": token, "public_base_url": rig.app.base,
               "api_base_url": rig.bot.base_url})
    };
    let r = rig.app.post(&path, &body(TOKEN)).await;
    assert_eq!((r.status, r.code()), (409, "channel_exists"));
    let r = rig.app.post(&path, &body("not-a-token")).await;
    assert_eq!((r.status, r.code()), (422, "validation_failed"));
    assert_eq!(r.body["error"]["field"], "bot_token");
    // A token the Bot API does not know: Telegram's 401 is reported.
    let r = rig
        .app
        .post(&path, &body("987654321:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "ownership_not_proven"),
        "{}",
        r.text
    );
    assert!(r.text.contains("Unauthorized"));
    let r = rig
        .app
        .delete(&format!("/api/v1/channels/{}", rig.channel))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(rig.bot.calls().last().unwrap().method, "deleteWebhook");
}

crate::both_backends!(
    every_fixture_update_is_stored,
    replayed_updates_store_nothing_twice
);

/// An admin connects and disconnects a bot from the assistant's dashboard page; a bad token
/// comes back as a notice on the page, and members may not connect.
#[tokio::test]
async fn an_admin_connects_a_bot_from_the_dashboard() {
    use parley_core::UserRole;
    let bot = FakeBotApi::start(TOKEN).await.unwrap();
    let app = TestApp::spawn_with(platforms(None, Some(&bot.base_url))).await;
    let stub = StubProvider::start().await.unwrap();
    let assistant = assistant(&app, &stub).await;
    let http = crate::helpers::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (cookie, csrf) = app.dashboard_session(UserRole::Admin).await;
    let post = |path: String, form: Vec<(&'static str, String)>, cookie: String| {
        let req = http
            .post(app.url(&path))
            .header("cookie", cookie)
            .form(&form);
        async move {
            let res = req.send().await.unwrap();
            let location = res
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (res.status().as_u16(), location)
        }
    };
    let form = |token: &str, csrf: &str| {
        vec![
            ("_csrf", csrf.to_owned()),
            ("kind", "telegram".to_owned()),
            ("bot_token", token.to_owned()),
            ("public_base_url", app.base.clone()),
            ("api_base_url", bot.base_url.clone()),
            ("transcription_model", String::new()),
        ]
    };
    let connect = format!("/assistants/{assistant}/channels");

    // A malformed token: nothing connected, the reason shown on the page.
    let (status, location) =
        post(connect.clone(), form("not-a-token", &csrf), cookie.clone()).await;
    assert_eq!(status, 303);
    assert!(location.contains("channel_error="), "{location}");
    let page = http
        .get(app.url(&location))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Not connected: bot_token: must look like"),
        "the notice"
    );
    assert!(bot.calls().is_empty());

    // A member may not connect.
    let (member_cookie, member_csrf) = app.dashboard_session(UserRole::Member).await;
    let (status, _) = post(connect.clone(), form(TOKEN, &member_csrf), member_cookie).await;
    assert_eq!(status, 403);

    // The admin connects: setWebhook was called, the page lists the bot.
    let (status, location) = post(connect.clone(), form(TOKEN, &csrf), cookie.clone()).await;
    assert_eq!(
        (status, location.contains("channel=connected")),
        (303, true)
    );
    assert!(bot.calls().iter().any(|c| c.method == "setWebhook"));
    let listed = app
        .get(&format!("/api/v1/assistants/{assistant}/channels"))
        .await;
    let channel = listed.body["items"][0]["id"].as_str().unwrap().to_owned();
    let page = http
        .get(app.url(&location))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("/webhooks/telegram/{channel}")));
    assert!(page.contains("Connected. Messages to it now reach this assistant."));

    // Disconnect: Telegram is told, the connection is gone.
    let (status, location) = post(
        format!("/assistants/{assistant}/channels/{channel}/delete"),
        vec![("_csrf", csrf.clone())],
        cookie.clone(),
    )
    .await;
    assert_eq!(
        (status, location.contains("channel=disconnected")),
        (303, true)
    );
    assert!(bot.calls().iter().any(|c| c.method == "deleteWebhook"));
    let listed = app
        .get(&format!("/api/v1/assistants/{assistant}/channels"))
        .await;
    assert_eq!(listed.body["items"], json!([]));
}

/// An edited message is kept beside the original, which is marked as edited.
#[tokio::test]
async fn an_edit_marks_the_original_message() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let first = text_update(9001, "See you at 7");
    let message_id = first["message"]["message_id"].clone();
    rig.deliver(&first).await;
    eventually(10, "the first message", || async {
        message_with(&rig.app, "9001").await
    })
    .await;
    let mut edit = json!({"update_id": 9002, "edited_message": first["message"].clone()});
    edit["edited_message"]["text"] = json!("See you at 8");
    edit["edited_message"]["edit_date"] = json!(first["message"]["date"].as_i64().unwrap() + 60);
    rig.deliver(&edit).await;
    let original = eventually(10, "the original marked", || async {
        message_with(&rig.app, "9001")
            .await
            .filter(|m| m["meta"]["channel"]["edited_by"] == "9002")
    })
    .await;
    assert_eq!(
        original["content"], "See you at 7",
        "the original text stays"
    );
    let edited = message_with(&rig.app, "9002").await.unwrap();
    assert_eq!(edited["content"], "[edited] See you at 8");
    assert_eq!(
        edited["meta"]["channel"]["refers_to"],
        message_id.to_string()
    );
}
