//! The WhatsApp channel against the real server: every webhook payload in
//! ../shared/fixtures/whatsapp posted to the real endpoint, signed as Meta signs them
//! (`X-Hub-Signature-256`), with a fake Graph API on 127.0.0.1 receiving Parley's sends and
//! serving media, and the stub provider answering as the assistant.

use std::time::{Duration, Instant};

use parley_server::channels::whatsapp::sign;
use parley_testkit::fake_graph::FakeGraph;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::channel_support::{
    all_messages, assistant, conversations, eventually, fixture, fixture_cases, messages, unix_now,
};
use crate::helpers::{Backend, Resp, TestApp, platforms};

const APP_SECRET: &str = "meta-app-secret-0123456789";
const ACCESS_TOKEN: &str = "EAAG-test-access-token-9876";
const VERIFY_TOKEN: &str = "verify-me-please-4242";
const PHONE_NUMBER_ID: &str = "1122334455667";
const BUSINESS_ACCOUNT_ID: &str = "102290129340398";
const CUSTOMER: &str = "972987654321";

struct Rig {
    app: TestApp,
    graph: FakeGraph,
    stub: StubProvider,
    channel: String,
}

async fn rig_with(
    backend: Backend,
    tweak: impl FnOnce(&mut parley_server::config::Settings),
    extra: Value,
) -> Option<Rig> {
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    let on_graph = platforms(Some(&graph.base_url), None);
    let app = TestApp::spawn_on_with(backend, |s| {
        on_graph(s);
        tweak(s);
    })
    .await?;
    let stub = StubProvider::start().await.unwrap();
    graph.set_phone_number(BUSINESS_ACCOUNT_ID, PHONE_NUMBER_ID, "GREEN", "TIER_250");
    let assistant = assistant(&app, &stub).await;
    let mut body = json!({
        "kind": "whatsapp", "phone_number_id": PHONE_NUMBER_ID,
        "business_account_id": "102290129340398", "access_token": ACCESS_TOKEN,
        "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN,
        "graph_base_url": graph.base_url,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app
        .post(&format!("/api/v1/assistants/{assistant}/channels"), &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let channel = r.body["id"].as_str().unwrap().to_owned();
    Some(Rig {
        app,
        graph,
        stub,
        channel,
    })
}

async fn rig(backend: Backend) -> Option<Rig> {
    rig_with(backend, |_| {}, json!({})).await
}

impl Rig {
    /// Posts `payload` to the webhook, signed with `secret` (none: unsigned).
    async fn post_with(&self, payload: &Value, secret: Option<&str>) -> Resp {
        let body = serde_json::to_vec(payload).unwrap();
        let mut req = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/webhooks/whatsapp/{}", self.channel)),
            )
            .header("content-type", "application/json");
        if let Some(s) = secret {
            req = req.header("x-hub-signature-256", sign(s, &body));
        }
        self.app.send(req.body(body)).await
    }

    /// Posts `payload` signed as Meta signs it; expects 200.
    async fn deliver(&self, payload: &Value) {
        let r = self.post_with(payload, Some(APP_SECRET)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

/// The `value` of a webhook body's first change.
fn value_mut(payload: &mut Value) -> &mut Value {
    &mut payload["entry"][0]["changes"][0]["value"]
}

/// The text fixture with its message id and timestamp replaced.
fn text_message(wamid: &str, unix: i64, body: &str) -> Value {
    let mut p = fixture("whatsapp", "pywa_updates_message.json")["text"].clone();
    let m = &mut value_mut(&mut p)["messages"][0];
    m["id"] = json!(wamid);
    m["timestamp"] = json!(unix.to_string());
    m["text"]["body"] = json!(body);
    p
}

/// The status fixture `case` for message `wamid`.
fn status(case: &str, wamid: &str) -> Value {
    let mut p = fixture("whatsapp", "pywa_updates_message_status.json")[case].clone();
    value_mut(&mut p)["statuses"][0]["id"] = json!(wamid);
    p
}

async fn message_with(app: &TestApp, external_id: &str) -> Option<Value> {
    all_messages(app, "whatsapp")
        .await
        .into_iter()
        .find(|m| m["external_id"] == external_id)
}

/// Every inbound payload of the fixtures is stored as what it is. The fixtures reuse one
/// `wamid` for every case, so each case's message ids are made unique first (the replay test
/// covers repeated ids); nothing else in the payloads changes.
async fn every_fixture_payload_is_stored(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let mut expected: Vec<(String, String, String)> = Vec::new();
    for (file, case, mut payload) in fixture_cases("whatsapp", "pywa_updates_") {
        let value = value_mut(&mut payload);
        // One fixture was recorded on another number; every delivery here is for the
        // connected one (routing between numbers has its own test).
        if value["metadata"]["phone_number_id"].is_string() {
            value["metadata"]["phone_number_id"] = json!(PHONE_NUMBER_ID);
        }
        for (i, m) in value["messages"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let id = format!("wamid.{file}.{case}.{i}");
            m["id"] = json!(id);
            let kind = m["type"].as_str().unwrap().to_owned();
            if let Some(media) = m.get(&kind).and_then(|b| b["id"].as_str()) {
                rig.graph
                    .add_media(media, "application/octet-stream", b"fixture media bytes");
            }
            expected.push((id, kind, case.clone()));
        }
        rig.deliver(&payload).await;
    }
    assert!(expected.len() >= 30, "{} inbound messages", expected.len());
    let stored = eventually(30, "every fixture message", || async {
        let all = all_messages(&rig.app, "whatsapp").await;
        let found: Vec<Value> = expected
            .iter()
            .filter_map(|(id, _, _)| all.iter().find(|m| m["external_id"] == *id).cloned())
            .collect();
        (found.len() == expected.len()).then_some(found)
    })
    .await;
    for ((id, kind, case), m) in expected.iter().zip(&stored) {
        let ch = &m["meta"]["channel"];
        assert_eq!(ch["type"], *kind, "{case}: {m}");
        let content = m["content"].as_str().unwrap();
        let role = m["role"].as_str().unwrap();
        match kind.as_str() {
            "text" => assert!(!content.is_empty(), "{case}"),
            "image" | "video" | "document" | "audio" | "sticker" => {
                let a = &ch["attachments"][0];
                assert!(a["storage_key"].is_string(), "{case}: downloaded: {m}");
                assert_eq!(a["size_bytes"], 19, "{case}");
                if case == "voice" {
                    assert_eq!(a["kind"], "voice");
                    assert_eq!(content, "[voice message]");
                }
                if case == "document" {
                    assert_eq!(a["file_name"], "filename.pdf");
                    assert_eq!(content, "caption");
                }
            }
            "reaction" if case == "reaction" => {
                assert_eq!(content, "Reacted 😮");
                assert_eq!(ch["refers_to"], "wamid.yzxyzx=");
            }
            "reaction" => assert_eq!(content, "Removed a reaction", "{case}"),
            "location" => {
                let lat = ch["details"]["location"]["latitude"].to_string();
                assert!(
                    content.starts_with("📍 ") && content.contains(&lat),
                    "{case}: {content}"
                );
            }
            "contacts" => assert!(content.contains("Chandler Bing"), "{content}"),
            "interactive" if case == "interactive_message_with_err" => {
                assert!(content.contains("without content"))
            }
            "interactive" => assert_eq!(content, "title", "{case}"),
            "button" => assert_eq!(content, "title", "{case}"),
            "order" => assert!(content.contains("HAMBURGER"), "{content}"),
            "edit" => {
                assert_eq!(content, "[edited] Updated image caption");
                assert!(
                    ch["refers_to"]
                        .as_str()
                        .unwrap()
                        .starts_with("wamid.HBgLMTQx")
                );
            }
            "revoke" => assert_eq!(content, "[deleted a message]"),
            "system" => assert_eq!(role, "system", "{case}"),
            "unsupported" => {
                assert!(content.contains("unsupported"), "{content}");
                assert_eq!(ch["details"]["errors"][0]["code"], 131051);
            }
            other => panic!("{case}: unexpected type {other}"),
        }
        assert!(
            m["created_at"].as_str().unwrap().starts_with("20"),
            "{id}: the platform's time"
        );
    }
    // The customer and the contact: phone number and profile name.
    let list = conversations(&rig.app, "whatsapp").await;
    let main = list
        .iter()
        .find(|c| c["contact"] == format!("Test Name (+{CUSTOMER})"))
        .expect("the customer's conversation");
    assert_eq!(main["assistant"]["name"], "Ava");
    // The fixtures are from 2023: the window is long closed, so the assistant's answers were
    // refused before Meta was called, and recorded as such.
    let answers: Vec<Value> = eventually(30, "the assistant's answers", || async {
        let ms = messages(&rig.app, main["id"].as_str().unwrap()).await;
        let answers: Vec<Value> = ms
            .into_iter()
            .filter(|m| m["role"] == "assistant" && m["meta"]["channel"]["delivery"].is_object())
            .collect();
        (answers.len() >= 10).then_some(answers)
    })
    .await;
    for a in &answers {
        let d = &a["meta"]["channel"]["delivery"];
        assert_eq!(d["status"], "failed", "{a}");
        assert_eq!(d["errors"][0]["title"], "window_closed");
    }
    assert!(rig.graph.sends().is_empty(), "nothing was sent to Meta");
}

/// The assistant writes markdown; the customer receives WhatsApp's own formatting, while
/// Parley keeps the markdown as written.
#[tokio::test]
async fn markdown_answers_are_sent_in_whatsapp_formatting() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let md = "The **Roadster** is *in stock*:\n\n- size 42\n- [track it](https://shop.example/t)";
    rig.stub.set_default(Reply::text(md));
    rig.deliver(&text_message(
        "wamid.md-1",
        unix_now(),
        "Is the Roadster in stock?",
    ))
    .await;
    let answer = eventually(20, "the answer sent to Meta", || async {
        message_with(&rig.app, "wamid.fake-1").await
    })
    .await;
    assert_eq!(answer["content"], md, "stored as written");
    assert_eq!(
        rig.graph.sends()[0]["text"]["body"],
        "The *Roadster* is _in stock_:\n\n\u{2022} size 42\n\u{2022} track it (https://shop.example/t)"
    );
}

/// The status fixtures move an outbound message forward only, whatever order they come in;
/// a failure records Meta's error.
async fn statuses_only_move_forward(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    rig.deliver(&text_message(
        "wamid.in-1",
        unix_now(),
        "Is the Roadster in stock?",
    ))
    .await;
    let answer = eventually(20, "the answer sent to Meta", || async {
        message_with(&rig.app, "wamid.fake-1").await
    })
    .await;
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["content"], "Hello from the stub.");
    assert_eq!(answer["meta"]["channel"]["delivery"]["status"], "accepted");
    let conversation = conversations(&rig.app, "whatsapp").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let window = rig
        .app
        .get(&format!("/api/v1/conversations/{conversation}/channel"))
        .await;
    assert_eq!(window.body["window"]["open"], true, "{}", window.text);
    let sends = rig.graph.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["to"], CUSTOMER);
    assert_eq!(sends[0]["type"], "text");
    assert_eq!(sends[0]["text"]["body"], "Hello from the stub.");
    let auth = rig.graph.received().last().unwrap().authorization.clone();
    assert_eq!(
        auth.as_deref(),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );

    let rig = &rig;
    let delivery = |case: &'static str| async move {
        rig.deliver(&status(case, "wamid.fake-1")).await;
        // Statuses are applied in the background, from the webhook inbox: wait until it has
        // processed this one (a fixed sleep was too short on a loaded machine).
        crate::channel_support::inbox_drained(&rig.app, &rig.channel).await;
        message_with(&rig.app, "wamid.fake-1").await.unwrap()["meta"]["channel"]["delivery"].clone()
    };
    assert_eq!(delivery("read").await["status"], "read");
    assert_eq!(
        delivery("sent").await["status"],
        "read",
        "a late sent is ignored"
    );
    assert_eq!(delivery("delivered").await["status"], "read");
    let played = delivery("played").await;
    assert_eq!(played["status"], "played");
    assert_eq!(played["at"], "2023-07-15T00:20:58.000Z");
    assert_eq!(delivery("read").await["status"], "played");

    // A second answer fails on the customer's side: Meta's error is recorded.
    rig.deliver(&text_message("wamid.in-2", unix_now(), "Hello?"))
        .await;
    eventually(20, "the second answer", || async {
        message_with(&rig.app, "wamid.fake-2").await
    })
    .await;
    rig.deliver(&status("failed", "wamid.fake-2")).await;
    let failed = eventually(10, "the failure", || async {
        let m = message_with(&rig.app, "wamid.fake-2").await?;
        let d = m["meta"]["channel"]["delivery"].clone();
        (d["status"] == "failed").then_some(d)
    })
    .await;
    assert_eq!(failed["errors"][0]["code"], 130472);
    assert_eq!(
        failed["errors"][0]["title"],
        "User's number is part of an experiment"
    );
}

/// Unsigned, wrongly signed and tampered deliveries are refused and store nothing; the
/// verification handshake wants the verify token.
#[tokio::test]
async fn signatures_and_the_handshake_are_checked() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let payload = text_message("wamid.sig", unix_now(), "hi");
    let r = rig.post_with(&payload, None).await;
    assert_eq!((r.status, r.code()), (401, "signature_missing"));
    let r = rig.post_with(&payload, Some("another-app-secret")).await;
    assert_eq!((r.status, r.code()), (403, "signature_invalid"));
    // Signed, then altered on the way.
    let body = serde_json::to_vec(&payload).unwrap();
    let sig = sign(APP_SECRET, &body);
    let mut tampered = body.clone();
    let at = tampered.len() - 10;
    tampered[at] = b' ';
    for (sig, body) in [
        (sig.clone(), tampered),
        ("sha256=".to_owned(), body.clone()),
        (sig.replace("sha256=", "sha1="), body.clone()),
    ] {
        let r = rig
            .app
            .send(
                rig.app
                    .client
                    .post(rig.app.url(&format!("/webhooks/whatsapp/{}", rig.channel)))
                    .header("x-hub-signature-256", sig)
                    .body(body),
            )
            .await;
        assert_eq!((r.status, r.code()), (403, "signature_invalid"));
    }
    let r = rig
        .app
        .send(
            rig.app
                .client
                .post(
                    rig.app
                        .url("/webhooks/whatsapp/0190f8a8-0000-7000-8000-000000000000"),
                )
                .header("x-hub-signature-256", sign(APP_SECRET, b"{}"))
                .body("{}"),
        )
        .await;
    assert_eq!(r.status, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(conversations(&rig.app, "whatsapp").await.is_empty());

    let handshake = |token: &str| {
        rig.app.client.get(rig.app.url(&format!(
            "/webhooks/whatsapp/{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            rig.channel
        )))
    };
    let r = rig.app.send(handshake(VERIFY_TOKEN)).await;
    assert_eq!((r.status, r.text.as_str()), (200, "1158201444"));
    let r = rig.app.send(handshake("wrong")).await;
    assert_eq!((r.status, r.code()), (403, "verification_failed"));
}

/// Meta redelivers webhooks: the same `wamid` is stored and answered once.
async fn replays_store_nothing_twice(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let payload = text_message("wamid.replayed", unix_now(), "Do you deliver on Sundays?");
    rig.deliver(&payload).await;
    eventually(20, "the answer", || async {
        message_with(&rig.app, "wamid.fake-1").await
    })
    .await;
    for _ in 0..3 {
        rig.deliver(&payload).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = all_messages(&rig.app, "whatsapp").await;
    assert_eq!(all.len(), 2, "one question, one answer: {all:?}");
    assert_eq!(rig.graph.sends().len(), 1);
    assert_eq!(rig.stub.requests().len(), 1);
}

/// 25 hours after the customer's last message: the assistant's answer and a free-form team
/// message are refused before Meta is called; a template goes out; Meta's 131047 is recorded.
#[tokio::test]
async fn outside_the_window_only_templates_go_out() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    rig.deliver(&text_message(
        "wamid.old",
        unix_now() - 25 * 3600,
        "Still there?",
    ))
    .await;
    let conversation = eventually(20, "the refused answer", || async {
        let c = conversations(&rig.app, "whatsapp").await.pop()?;
        let ms = messages(&rig.app, c["id"].as_str().unwrap()).await;
        ms.iter()
            .any(|m| m["meta"]["channel"]["delivery"]["status"] == "failed")
            .then(|| c["id"].as_str().unwrap().to_owned())
    })
    .await;
    let window = rig
        .app
        .get(&format!("/api/v1/conversations/{conversation}/channel"))
        .await;
    assert_eq!(window.status, 200, "{}", window.text);
    assert_eq!(window.body["customer"], CUSTOMER);
    assert_eq!(window.body["channel"]["id"], rig.channel);
    assert_eq!(window.body["window"]["open"], false);
    assert!(window.body["window"]["closes_at"].is_string());
    let path = format!("/api/v1/conversations/{conversation}/channel-messages");
    let r = rig
        .app
        .post(&path, &json!({"text": "We are open today"}))
        .await;
    assert_eq!((r.status, r.code()), (422, "window_closed"), "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("template")
    );
    assert!(rig.graph.sends().is_empty(), "refused before calling Meta");

    let template = json!({"template": {"name": "order_update", "language": "en_US",
                                        "parameters": ["4711"]}});
    let r = rig.app.post(&path, &template).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["role"], "agent");
    assert_eq!(r.body["meta"]["channel"]["type"], "template");
    assert_eq!(r.body["meta"]["channel"]["delivery"]["status"], "accepted");
    let sent = rig.graph.sends().pop().unwrap();
    assert_eq!(sent["type"], "template");
    assert_eq!(sent["template"]["name"], "order_update");
    assert_eq!(sent["template"]["language"]["code"], "en_US");
    assert_eq!(
        sent["template"]["components"][0]["parameters"][0],
        json!({"type": "text", "text": "4711"})
    );

    let error = fixture("whatsapp", "pywa_test_error_objects.json")["ReEngagementMessage"].clone();
    rig.graph.fail_next_send(400, json!({"error": error}));
    let r = rig.app.post(&path, &template).await;
    assert_eq!(
        (r.status, r.code()),
        (502, "channel_send_failed"),
        "{}",
        r.text
    );
    let ms = messages(&rig.app, &conversation).await;
    let last = ms.last().unwrap();
    let d = &last["meta"]["channel"]["delivery"];
    assert_eq!(d["status"], "failed");
    assert_eq!(d["errors"][0]["code"], 131047);
    assert_eq!(d["errors"][0]["title"], "Re-engagement message");
    assert!(
        d["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("24 hours")
    );

    // An expired token: Meta's 190 is recorded too.
    let expired = fixture("whatsapp", "pywa_test_error_objects.json")["ExpiredAccessToken"].clone();
    rig.graph.fail_next_send(401, json!({"error": expired}));
    let r = rig.app.post(&path, &template).await;
    assert_eq!(r.status, 502);
    let ms = messages(&rig.app, &conversation).await;
    assert_eq!(
        ms.last().unwrap()["meta"]["channel"]["delivery"]["errors"][0]["code"],
        190
    );
}

/// A voice note whose download fails once is fetched again, stored, transcribed by the
/// assistant's provider and found by search.
#[tokio::test]
async fn a_failed_media_download_is_retried_and_the_voice_note_transcribed() {
    let rig = rig_with(
        Backend::Sqlite,
        |_| {},
        json!({"transcription_model": "whisper-1"}),
    )
    .await
    .unwrap();
    rig.stub
        .set_transcript("I would like to book a table for two tonight");
    let audio = b"OggS fake opus voice note";
    rig.graph
        .add_media("1234567890987654321", "audio/ogg", audio);
    rig.graph.fail_downloads(1);
    let mut payload = fixture("whatsapp", "pywa_updates_message.json")["voice"].clone();
    value_mut(&mut payload)["messages"][0]["timestamp"] = json!(unix_now().to_string());
    rig.deliver(&payload).await;
    let m = eventually(20, "the voice note", || async {
        message_with(&rig.app, "wamid.xyzxyz").await
    })
    .await;
    let a = &m["meta"]["channel"]["attachments"][0];
    assert_eq!(a["kind"], "voice");
    assert_eq!(a["download_attempts"], 2, "{m}");
    assert!(a.get("download_error").is_none());
    assert_eq!(a["size_bytes"], audio.len());
    assert_eq!(
        a["transcript"],
        "I would like to book a table for two tonight"
    );
    assert_eq!(
        m["content"],
        "🎤 I would like to book a table for two tonight"
    );
    let file = rig
        .app
        .state
        .settings
        .data_dir
        .join("attachments")
        .join(a["storage_key"].as_str().unwrap());
    assert_eq!(std::fs::read(file).unwrap(), audio);
    assert_eq!(
        rig.stub.transcriptions(),
        vec![("whisper-1".to_owned(), audio.len())]
    );
    let found = rig.app.list_ids("q=table%20for%20two").await;
    assert_eq!(found.len(), 1);
    // The API serves the stored bytes.
    let url = format!(
        "/api/v1/conversations/{}/messages/{}/attachments/0",
        found[0],
        m["id"].as_str().unwrap()
    );
    let served = rig
        .app
        .client
        .get(rig.app.url(&url))
        .bearer_auth(&rig.app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "audio/ogg; codecs=opus");
    assert_eq!(&served.bytes().await.unwrap()[..], audio);
    let missing = rig
        .app
        .get(&url.replace("/attachments/0", "/attachments/1"))
        .await;
    assert_eq!(missing.status, 404);
    // Deleting the conversation deletes the file.
    let path = rig
        .app
        .state
        .settings
        .data_dir
        .join("attachments")
        .join(a["storage_key"].as_str().unwrap());
    assert!(path.exists());
    let r = rig
        .app
        .delete(&format!("/api/v1/conversations/{}", found[0]))
        .await;
    assert_eq!(r.status, 204);
    assert!(
        !path.exists(),
        "the voice note is gone with its conversation"
    );
    let files = rig
        .graph
        .received()
        .iter()
        .filter(|r| r.path.starts_with("/files/"))
        .count();
    assert_eq!(files, 2, "one failed download, one retry");
}

/// An image is described by the connection's vision model, and the description searched.
#[tokio::test]
async fn images_are_described_by_the_vision_model() {
    let rig = rig_with(
        Backend::Sqlite,
        |_| {},
        json!({"vision_model": "gpt-4o-mini"}),
    )
    .await
    .unwrap();
    rig.graph.add_media("65463453", "image/jpeg", b"jpeg bytes");
    rig.stub
        .push(Reply::text("A red bicycle leaning against a shop window."));
    let mut payload = fixture("whatsapp", "pywa_updates_message.json")["image"].clone();
    value_mut(&mut payload)["messages"][0]["timestamp"] = json!(unix_now().to_string());
    rig.deliver(&payload).await;
    let m = eventually(20, "the image", || async {
        message_with(&rig.app, "wamid.xyzxyz").await
    })
    .await;
    let a = &m["meta"]["channel"]["attachments"][0];
    assert_eq!(
        a["description"],
        "A red bicycle leaning against a shop window."
    );
    assert_eq!(
        m["content"],
        "[image]\n🖼 A red bicycle leaning against a shop window."
    );
    let asked = &rig.stub.requests()[0];
    assert_eq!(asked["model"], "gpt-4o-mini");
    assert_eq!(
        asked["messages"][0]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,anBlZyBieXRlcw=="
    );
    assert_eq!(rig.app.list_ids("q=red%20bicycle").await.len(), 1);
}

/// Retries of later downloads come fast in these tests (the `[jobs]` retry settings).
fn quick_retries(s: &mut parley_server::config::Settings) {
    s.jobs.retry_first = Duration::from_millis(50);
    s.jobs.retry_max = Duration::from_millis(200);
}

/// A media file that never downloads is recorded with the error after its first attempts,
/// retried later by a job up to the cap, and then recorded as given up; the answer does not
/// wait for it.
#[tokio::test]
async fn a_media_download_that_keeps_failing_is_recorded() {
    let rig = rig_with(Backend::Sqlite, quick_retries, json!({}))
        .await
        .unwrap();
    rig.graph.add_media("65463453", "image/jpeg", b"jpeg");
    rig.graph.fail_downloads(1000);
    let mut payload = fixture("whatsapp", "pywa_updates_message.json")["image"].clone();
    value_mut(&mut payload)["messages"][0]["timestamp"] = json!(unix_now().to_string());
    rig.deliver(&payload).await;
    let first = eventually(20, "the image", || async {
        message_with(&rig.app, "wamid.xyzxyz").await
    })
    .await;
    let a = &first["meta"]["channel"]["attachments"][0];
    assert!(a["download_attempts"].as_u64().unwrap() >= 3, "{a}");
    assert!(a["download_error"].as_str().unwrap().contains("500"), "{a}");
    assert_eq!(first["content"], "[image]");
    let total = (1 + parley_server::jobs::MEDIA_DOWNLOAD_ATTEMPTS)
        * parley_server::retry::DOWNLOAD.attempts;
    let m = eventually(60, "the download given up", || async {
        let m = message_with(&rig.app, "wamid.xyzxyz").await?;
        let error = m["meta"]["channel"]["attachments"][0]["download_error"].as_str()?;
        error.contains("gave up").then_some(m)
    })
    .await;
    let a = &m["meta"]["channel"]["attachments"][0];
    assert_eq!(a["download_attempts"], total, "{a}");
    assert!(
        a["download_error"]
            .as_str()
            .unwrap()
            .contains(&format!("gave up after {total} attempts")),
        "{a}"
    );
    assert!(a.get("storage_key").is_none());
    assert_eq!(m["content"], "[image]");
    let files = rig
        .graph
        .received()
        .iter()
        .filter(|r| r.path.starts_with("/files/"))
        .count();
    assert_eq!(
        files as u32, total,
        "capped: no download after the last job"
    );
    // The failed job stays visible in the queue (recorded just after the message).
    eventually(10, "the job kept as failed", || async {
        let gauges = parley_server::jobs::queue_gauges(&rig.app.state)
            .await
            .unwrap();
        gauges
            .iter()
            .any(|g| g.kind == "media.download" && g.state == "failed" && g.count == 1)
            .then_some(())
    })
    .await;
}

/// A voice note whose download failed all its first attempts is downloaded later by a job,
/// then transcribed: the message's text becomes the transcript and is found by search.
async fn a_download_that_failed_every_attempt_is_retried_later(backend: Backend) {
    let Some(rig) = rig_with(
        backend,
        quick_retries,
        json!({"transcription_model": "whisper-1"}),
    )
    .await
    else {
        return;
    };
    rig.stub
        .set_transcript("Please call me back tomorrow morning");
    let audio = b"OggS fake opus voice note";
    rig.graph
        .add_media("1234567890987654321", "audio/ogg", audio);
    rig.graph
        .fail_downloads(parley_server::retry::DOWNLOAD.attempts);
    let mut payload = fixture("whatsapp", "pywa_updates_message.json")["voice"].clone();
    value_mut(&mut payload)["messages"][0]["timestamp"] = json!(unix_now().to_string());
    rig.deliver(&payload).await;
    let m = eventually(30, "the voice note downloaded later", || async {
        let m = message_with(&rig.app, "wamid.xyzxyz").await?;
        m["meta"]["channel"]["attachments"][0]["storage_key"]
            .is_string()
            .then_some(m)
    })
    .await;
    let a = &m["meta"]["channel"]["attachments"][0];
    assert_eq!(
        a["download_attempts"],
        parley_server::retry::DOWNLOAD.attempts + 1,
        "{a}"
    );
    assert!(a.get("download_error").is_none(), "{a}");
    assert_eq!(a["size_bytes"], audio.len());
    assert_eq!(m["content"], "🎤 Please call me back tomorrow morning");
    assert_eq!(rig.app.list_ids("q=call%20me%20back").await.len(), 1);
    // The customer is answered without waiting for the file.
    eventually(20, "the answer", || async {
        all_messages(&rig.app, "whatsapp")
            .await
            .iter()
            .any(|m| m["role"] == "assistant")
            .then_some(())
    })
    .await;
}

/// The provider hangs: the webhook is still answered at once, the customer's message is
/// stored, and the failure notice goes out to the customer when the retries give up.
#[tokio::test]
async fn a_provider_that_times_out_does_not_hold_up_the_webhook() {
    let rig = rig_with(
        Backend::Sqlite,
        |s| s.provider_timeout = Duration::from_millis(300),
        json!({}),
    )
    .await
    .unwrap();
    rig.stub.set_default(Reply::Slow(
        Duration::from_secs(30),
        Box::new(Reply::text("too late")),
    ));
    let started = Instant::now();
    rig.deliver(&text_message("wamid.slow", unix_now(), "Anyone there?"))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the webhook answered in {:?}",
        started.elapsed()
    );
    eventually(5, "the customer's message", || async {
        message_with(&rig.app, "wamid.slow").await
    })
    .await;
    let notice = eventually(30, "the failure notice", || async {
        message_with(&rig.app, "wamid.fake-1").await
    })
    .await;
    assert_eq!(notice["meta"]["error"]["code"], "provider_timeout");
    assert_eq!(
        rig.graph.sends()[0]["text"]["body"],
        parley_server::assistant::runtime::FAILURE_TEXT
    );
}

/// Connections: validated, secrets never shown in full, unique per phone number, removable.
#[tokio::test]
async fn connections_are_validated_and_never_show_their_secrets() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let app = &rig.app;
    let r = app.get(&format!("/api/v1/channels/{}", rig.channel)).await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains(ACCESS_TOKEN) && !r.text.contains(APP_SECRET));
    assert!(!r.text.contains(VERIFY_TOKEN));
    assert_eq!(r.body["secrets"]["access_token"], "…9876");
    assert_eq!(r.body["secrets"]["app_secret"], "…6789");
    assert_eq!(r.body["config"]["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(r.body["config"]["quality_rating"], "GREEN");
    assert_eq!(r.body["config"]["messaging_limit_tier"], "TIER_250");
    assert_eq!(
        r.body["webhook_path"],
        format!("/webhooks/whatsapp/{}", rig.channel)
    );
    let assistant = r.body["assistant_id"].as_str().unwrap().to_owned();
    let list = app
        .get(&format!("/api/v1/assistants/{assistant}/channels"))
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    // The assistant's dashboard page lists the connection, secrets as hints only.
    let (cookie, _) = app.dashboard_session(parley_core::UserRole::Member).await;
    let page = app
        .send(
            app.client
                .get(app.url(&format!("/assistants/{assistant}")))
                .header("cookie", cookie),
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"channels\""), "{}", page.text);
    assert!(page.text.contains(PHONE_NUMBER_ID) && page.text.contains("…9876"));
    assert!(page.text.contains("Quality GREEN"), "{}", page.text);
    assert!(page.text.contains("250 customers / 24 h"));
    assert!(
        page.text
            .contains(&format!("/webhooks/whatsapp/{}", rig.channel))
    );
    assert!(!page.text.contains(ACCESS_TOKEN) && !page.text.contains(APP_SECRET));

    let path = format!("/api/v1/assistants/{assistant}/channels");
    let base = json!({"kind": "whatsapp", "phone_number_id": PHONE_NUMBER_ID,
        "business_account_id": "1", "access_token": "t", "app_secret": "s", "verify_token": "v"});
    // Without credentials that control the number, nothing is said about its connection.
    let r = app.post(&path, &base).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "ownership_not_proven"),
        "{}",
        r.text
    );
    assert_eq!(r.body["error"]["field"], "access_token");
    assert!(!r.text.contains("already connected"), "{}", r.text);
    // With them, the conflict is named.
    let mut owned = base.clone();
    owned["business_account_id"] = json!(BUSINESS_ACCOUNT_ID);
    owned["access_token"] = json!(ACCESS_TOKEN);
    let r = app.post(&path, &owned).await;
    assert_eq!((r.status, r.code()), (409, "channel_exists"), "{}", r.text);
    assert!(r.text.contains("in this workspace"), "{}", r.text);
    for (field, value, code) in [
        ("phone_number_id", json!("12ab"), "validation_failed"),
        ("access_token", json!(""), "validation_failed"),
        ("graph_base_url", json!("ftp://x"), "validation_failed"),
        ("bot_token", json!("1:x"), "validation_failed"),
    ] {
        let mut body = base.clone();
        body["phone_number_id"] = json!("99887766");
        body[field] = value;
        let r = app.post(&path, &body).await;
        assert_eq!((r.status, r.code()), (422, code), "{field}: {}", r.text);
        assert_eq!(r.body["error"]["field"], field);
    }
    let r = app.post(&path, &json!({"kind": "sms"})).await;
    assert_eq!(r.status, 422);
    let r = app
        .post(
            "/api/v1/assistants/0190f8a8-0000-7000-8000-000000000000/channels",
            &base,
        )
        .await;
    assert_eq!(r.status, 404);
    // Another workspace sees nothing.
    let (_, other) = app.other_tenant("other").await;
    let r = app
        .get_as(&format!("/api/v1/channels/{}", rig.channel), &other)
        .await;
    assert_eq!(r.status, 404);

    let r = app
        .delete(&format!("/api/v1/channels/{}", rig.channel))
        .await;
    assert_eq!(r.status, 204);
    let r = rig
        .post_with(
            &text_message("wamid.gone", unix_now(), "hi"),
            Some(APP_SECRET),
        )
        .await;
    assert_eq!(r.status, 404, "a removed connection's webhook is gone");
}

/// Meta lowers the sender's limit (a quality update webhook): Parley shows it and stops
/// business-initiated sends to new customers before exceeding it.
#[tokio::test]
async fn the_messaging_limit_is_never_exceeded() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    rig.deliver(
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "phone_number_quality_update", "value": {
            "display_phone_number": "972123456789", "event": "DOWNGRADE",
            // A made-up tier of two customers, to keep the test small.
            "current_limit": "TIER_2"}}]}]}),
    )
    .await;
    let channel = format!("/api/v1/channels/{}", rig.channel);
    eventually(10, "the quality update", || async {
        let r = rig.app.get(&channel).await;
        (r.body["config"]["messaging_limit_tier"] == "TIER_2").then_some(())
    })
    .await;
    assert_eq!(
        rig.app.get(&channel).await.body["config"]["quality_event"],
        "DOWNGRADE"
    );
    // Three customers wrote two days ago; their windows are closed.
    let template = json!({"template": {"name": "we_miss_you", "language": "en_US"}});
    let mut paths = Vec::new();
    for (i, phone) in ["4915111111111", "4915122222222", "4915133333333"]
        .iter()
        .enumerate()
    {
        let mut p = text_message(&format!("wamid.old-{i}"), unix_now() - 48 * 3600, "hi");
        value_mut(&mut p)["messages"][0]["from"] = json!(phone);
        value_mut(&mut p)["contacts"][0]["wa_id"] = json!(phone);
        rig.deliver(&p).await;
        let id = eventually(20, "the conversation", || async {
            conversations(&rig.app, "whatsapp")
                .await
                .into_iter()
                .find(|c| c["contact"].as_str().unwrap().contains(phone))
                .map(|c| c["id"].as_str().unwrap().to_owned())
        })
        .await;
        paths.push(format!("/api/v1/conversations/{id}/channel-messages"));
    }
    for path in &paths[..2] {
        let r = rig.app.post(path, &template).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // The same customer again does not count twice.
    assert_eq!(rig.app.post(&paths[1], &template).await.status, 201);
    let sent = rig.graph.sends().len();
    let r = rig.app.post(&paths[2], &template).await;
    assert_eq!(
        (r.status, r.code()),
        (429, "messaging_limit_reached"),
        "{}",
        r.text
    );
    assert_eq!(rig.graph.sends().len(), sent, "refused before calling Meta");
    let c = rig.app.get(&channel).await;
    assert_eq!(
        c.body["config"]["business_initiated"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
}

crate::both_backends!(
    every_fixture_payload_is_stored,
    statuses_only_move_forward,
    replays_store_nothing_twice,
    a_download_that_failed_every_attempt_is_retried_later,
    media_over_the_attachment_quota_are_kept_and_flagged,
    team_replies_inside_and_outside_the_window,
);

/// Issue 10, item 6: a customer's media count against the workspace's attachment quota but
/// are not lost at it: over the quota the file is still kept, flagged `over_quota`; only past
/// twice the quota is it left undownloaded (the message itself is stored, with the reason).
async fn media_over_the_attachment_quota_are_kept_and_flagged(backend: Backend) {
    let Some(rig) = rig_with(backend, |s| s.attachment_quota_bytes = 1_000, json!({})).await else {
        return;
    };
    let image = fixture("whatsapp", "pywa_updates_message.json")["image"].clone();
    for n in 1..=3 {
        let media = format!("6546345{n}");
        rig.graph.add_media(&media, "image/jpeg", &[n as u8; 800]);
        let mut payload = image.clone();
        let m = &mut value_mut(&mut payload)["messages"][0];
        m["id"] = json!(format!("wamid.quota{n}"));
        m["image"]["id"] = json!(media);
        m["timestamp"] = json!(unix_now().to_string());
        rig.deliver(&payload).await;
        eventually(20, "the image", || async {
            message_with(&rig.app, &format!("wamid.quota{n}")).await
        })
        .await;
    }
    let app = &rig.app;
    let attachment = |n: u32| async move {
        message_with(app, &format!("wamid.quota{n}")).await.unwrap()["meta"]["channel"]
            ["attachments"][0]
            .clone()
    };
    // 800 bytes: within the quota.
    let a = attachment(1).await;
    assert_eq!(a["size_bytes"], 800, "{a}");
    assert!(a.get("over_quota").is_none(), "{a}");
    // 1,600 bytes: over the quota, kept and flagged.
    let a = attachment(2).await;
    assert_eq!(
        (a["size_bytes"].as_u64(), &a["over_quota"]),
        (Some(800), &json!(true)),
        "{a}"
    );
    assert!(a["storage_key"].is_string());
    // 2,400 bytes would pass twice the quota: not downloaded, and said why.
    let a = attachment(3).await;
    assert!(a.get("storage_key").is_none(), "{a}");
    assert!(
        a["download_error"]
            .as_str()
            .is_some_and(|e| e.contains("attachment quota exceeded")),
        "{a}"
    );
    let used = rig
        .app
        .state
        .store
        .attachments()
        .attachment_usage(rig.app.workspace.id)
        .await
        .unwrap();
    assert_eq!((used.bytes, used.files), (1_600, 2));
}

/// Meta posts every number of an app to the app's one callback URL: a message for another
/// number connected through the same app goes to that number's connection and assistant; one
/// for a number that is not connected (or connected through another app) is not stored.
#[tokio::test]
async fn deliveries_for_another_number_of_the_app_are_routed_to_it() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let r = rig
        .app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Bea", "company": "Acme", "settings": {
                "provider": {"base_url": rig.stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    let second = r.body["id"].as_str().unwrap().to_owned();
    rig.graph
        .set_phone_number(BUSINESS_ACCOUNT_ID, "5550001112223", "GREEN", "TIER_1K");
    let r = rig
        .app
        .post(
            &format!("/api/v1/assistants/{second}/channels"),
            &json!({"kind": "whatsapp", "phone_number_id": "5550001112223",
                    "business_account_id": "102290129340398", "access_token": ACCESS_TOKEN,
                    "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN,
                    "graph_base_url": rig.graph.base_url}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let for_number = |number: &str, wamid: &str| {
        let mut p = text_message(wamid, unix_now(), "Hello second number");
        value_mut(&mut p)["metadata"]["phone_number_id"] = json!(number);
        p
    };
    // Posted to the first number's webhook, for the second number.
    rig.deliver(&for_number("5550001112223", "wamid.second-1"))
        .await;
    let m = eventually(10, "the routed message", || async {
        message_with(&rig.app, "wamid.second-1").await
    })
    .await;
    let convs = conversations(&rig.app, "whatsapp").await;
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0]["assistant"]["id"], second.as_str(), "{m}");
    // A number nobody connected: signed by the app, but not stored.
    rig.deliver(&for_number("9999999999999", "wamid.unknown-1"))
        .await;
    rig.deliver(&text_message("wamid.after-1", unix_now(), "after"))
        .await;
    eventually(10, "the next message", || async {
        message_with(&rig.app, "wamid.after-1").await
    })
    .await;
    assert!(message_with(&rig.app, "wamid.unknown-1").await.is_none());
}

/// A team reply (issue 14) through `POST /api/v1/conversations/{id}/replies`: inside the
/// 24-hour window free-form text goes out by the background send job and its delivery is
/// recorded; outside it free-form text is refused before anything is stored, the number's
/// approved templates are listed from the Graph API (with their parameter counts), and a
/// template goes out; Meta's refusal is recorded on the message with its reason.
async fn team_replies_inside_and_outside_the_window(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    rig.graph.set_templates(
        BUSINESS_ACCOUNT_ID,
        vec![
            json!({"name": "order_update", "language": "en_US", "status": "APPROVED",
                   "category": "UTILITY", "id": "1",
                   "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}} has shipped."}]}),
            json!({"name": "draft_promo", "language": "en_US", "status": "PENDING",
                   "category": "MARKETING", "id": "2",
                   "components": [{"type": "BODY", "text": "Sale!"}]}),
            json!({"name": "hello_world", "language": "en_US", "status": "APPROVED",
                   "category": "UTILITY", "id": "3",
                   "components": [{"type": "HEADER", "format": "TEXT", "text": "Hello"},
                                  {"type": "BODY", "text": "Welcome and congratulations!"}]}),
        ],
    );
    // Inside the window.
    rig.deliver(&text_message(
        "wamid.in-1",
        unix_now(),
        "Can a person help me?",
    ))
    .await;
    let conversation = eventually(20, "the conversation", || async {
        let c = conversations(&rig.app, "whatsapp").await.pop()?;
        Some(c["id"].as_str()?.to_owned())
    })
    .await;
    crate::channel_support::inbox_drained(&rig.app, &rig.channel).await;
    let before = rig.graph.sends().len();
    let path = format!("/api/v1/conversations/{conversation}/replies");
    let r = rig
        .app
        .post(
            &path,
            &json!({"text": "Sure, **Dana** here.", "author": "Dana"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let delivered = eventually(20, "the reply's delivery", || async {
        let ms = messages(&rig.app, &conversation).await;
        let m = ms.into_iter().find(|m| m["id"] == id.as_str())?;
        m["meta"]["channel"]["delivery"].is_object().then_some(m)
    })
    .await;
    assert_eq!(
        delivered["meta"]["channel"]["delivery"]["status"],
        "accepted"
    );
    assert_eq!(delivered["meta"]["author"]["name"], "Dana");
    // The assistant's own answer to the customer may go out around the reply: count the
    // team reply's sends only.
    let sends: Vec<Value> = rig.graph.sends()[before..]
        .iter()
        .filter(|s| s["text"]["body"] == "Sure, *Dana* here.")
        .cloned()
        .collect();
    assert_eq!(sends.len(), 1, "sent once, in WhatsApp's own bold");
    assert_eq!(sends[0]["to"], CUSTOMER);
    // The conversation's assistant is active: a team reply does not pause it.
    assert!(
        rig.app
            .get(&format!("/api/v1/conversations/{conversation}"))
            .await
            .body["taken_over_at"]
            .is_null()
    );

    // The templates of the number: approved ones only, with their parameters.
    let t = rig
        .app
        .get(&format!("/api/v1/conversations/{conversation}/templates"))
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    let list = t.body["templates"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hello_world", "order_update"]);
    assert_eq!(list[1]["parameters"], 2);
    assert_eq!(list[1]["body"], "Hi {{1}}, order {{2}} has shipped.");
    assert_eq!(list[0]["parameters"], 0);

    // Outside the window: another customer, who wrote 25 hours ago.
    let mut old = text_message("wamid.old-1", unix_now() - 25 * 3600, "Still there?");
    let value = value_mut(&mut old);
    value["messages"][0]["from"] = json!("15550009999");
    value["contacts"][0]["wa_id"] = json!("15550009999");
    rig.deliver(&old).await;
    let closed = eventually(20, "the second conversation", || async {
        conversations(&rig.app, "whatsapp")
            .await
            .into_iter()
            .find(|c| c["id"] != conversation.as_str())
            .map(|c| c["id"].as_str().unwrap().to_owned())
    })
    .await;
    crate::channel_support::inbox_drained(&rig.app, &rig.channel).await;
    let path = format!("/api/v1/conversations/{closed}/replies");
    // The assistant may still be answering the customer: count the team's messages only.
    let team_messages = |ms: Vec<Value>| ms.iter().filter(|m| m["role"] == "agent").count();
    let stored_before = team_messages(messages(&rig.app, &closed).await);
    let sends_before = rig.graph.sends().len();
    let r = rig.app.post(&path, &json!({"text": "We are open"})).await;
    assert_eq!((r.status, r.code()), (422, "window_closed"), "{}", r.text);
    assert_eq!(
        team_messages(messages(&rig.app, &closed).await),
        stored_before,
        "nothing stored"
    );
    let template = json!({"template": {"name": "order_update", "language": "en_US",
                                        "parameters": ["Sam", "4711"]}});
    let r = rig.app.post(&path, &template).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["meta"]["channel"]["type"], "template");
    eventually(20, "the template's send", || async {
        (rig.graph.sends().len() > sends_before).then_some(())
    })
    .await;
    let sent = rig.graph.sends().pop().unwrap();
    assert_eq!(sent["to"], "15550009999");
    assert_eq!(sent["template"]["name"], "order_update");
    assert_eq!(
        sent["template"]["components"][0]["parameters"][1],
        json!({"type": "text", "text": "4711"})
    );
    // Meta refuses the next one: the message says why.
    let error = fixture("whatsapp", "pywa_test_error_objects.json")["ReEngagementMessage"].clone();
    rig.graph.fail_next_send(400, json!({"error": error}));
    let r = rig.app.post(&path, &template).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let failed_id = r.body["id"].as_str().unwrap().to_owned();
    let failed = eventually(20, "the failed delivery", || async {
        let ms = messages(&rig.app, &closed).await;
        let m = ms.into_iter().find(|m| m["id"] == failed_id.as_str())?;
        m["meta"]["channel"]["delivery"].is_object().then_some(m)
    })
    .await;
    let d = &failed["meta"]["channel"]["delivery"];
    assert_eq!(d["status"], "failed");
    assert_eq!(d["errors"][0]["code"], 131047);
}
