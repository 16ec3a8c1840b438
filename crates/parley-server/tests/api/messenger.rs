//! The Messenger channel against the real server: every webhook body of
//! ../shared/fixtures/messenger posted to the real endpoint, signed as Meta signs them
//! (`X-Hub-Signature-256`), with the fake Graph API on 127.0.0.1 proving Page ownership,
//! receiving Parley's Send API calls and serving attachment files, and the stub provider
//! answering as the assistant.

use parley_server::channels::whatsapp::sign;
use parley_testkit::fake_graph::FakeGraph;
use parley_testkit::stub_provider::StubProvider;
use serde_json::{Value, json};

use crate::channel_support::{all_messages, conversations, eventually, fixture, messages};
use crate::helpers::{Backend, Resp, TestApp};

const APP_SECRET: &str = "meta-app-secret-messenger-0123";
/// The fake's main token: a (system) user's, which is no Page's.
const USER_TOKEN: &str = "EAAG-user-token-5555";
const VERIFY_TOKEN: &str = "verify-the-page-4242";
/// The Page of conbus/fbmq's recorded bodies, and its customer.
const PAGE: &str = "1691462197845448";
const CUSTOMER: &str = "1134343043305865";
/// The other Pages the fixtures were recorded on (botman, bottender, bottender's reactions).
const OTHER_PAGES: [&str; 3] = ["111899832631525", "404217156637689", "707356222221168"];

fn page_token(page: &str) -> String {
    format!("EAAG-page-token-{page}")
}

struct Rig {
    app: TestApp,
    graph: FakeGraph,
    stub: StubProvider,
    assistant: String,
    /// Page id -> connection id.
    channels: Vec<(String, String)>,
}

/// The server with the operator's Messenger Graph API on the fake, attachments allowed from
/// the fake's host, an assistant of `mode` and Page [`PAGE`] (plus `more` Pages) connected.
async fn rig_with(backend: Backend, mode: &str, more: &[&str]) -> Option<Rig> {
    let graph = FakeGraph::start(USER_TOKEN).await.unwrap();
    let base = graph.base_url.clone();
    let app = TestApp::spawn_on_with(backend, move |s| {
        s.messenger_graph_base_url = base;
        s.messenger_media_hosts = vec!["127.0.0.1".into()];
    })
    .await?;
    let stub = StubProvider::start().await.unwrap();
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme", "mode": mode, "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"},
                "system_prompt": "You are Acme's assistant."}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let mut rig = Rig {
        app,
        graph,
        stub,
        assistant,
        channels: Vec::new(),
    };
    for page in std::iter::once(&PAGE).chain(more) {
        rig.graph
            .add_page(page, &format!("Acme Page {page}"), &page_token(page));
        let r = rig.connect(page, &page_token(page)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        rig.channels
            .push((page.to_string(), r.body["id"].as_str().unwrap().to_owned()));
    }
    Some(rig)
}

async fn rig(backend: Backend) -> Option<Rig> {
    rig_with(backend, "active", &[]).await
}

impl Rig {
    async fn connect(&self, page: &str, token: &str) -> Resp {
        self.app
            .post(
                &format!("/api/v1/assistants/{}/channels", self.assistant),
                &json!({"kind": "messenger", "page_id": page, "access_token": token,
                        "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN}),
            )
            .await
    }

    fn channel(&self) -> &str {
        &self.channels[0].1
    }

    /// Posts the raw `body` to the first Page's webhook, signed with `secret` (none: unsigned).
    async fn post_raw(&self, body: &[u8], secret: Option<&str>) -> Resp {
        let mut req = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/webhooks/messenger/{}", self.channel())),
            )
            .header("content-type", "application/json");
        if let Some(s) = secret {
            req = req.header("x-hub-signature-256", sign(s, body));
        }
        self.app.send(req.body(body.to_vec())).await
    }

    /// Posts `payload` signed as Meta signs it; expects 200.
    async fn deliver(&self, payload: &Value) {
        let r = self
            .post_raw(&serde_json::to_vec(payload).unwrap(), Some(APP_SECRET))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    /// Waits until no background job is queued or running (deliveries, answers, sends,
    /// downloads): everything received so far has been processed.
    async fn settled(&self) {
        eventually(60, "the background work", || async {
            let stats = self.app.state.store.jobs().queue_stats().await.unwrap();
            stats
                .iter()
                .all(|s| s.state.as_str() == "failed")
                .then_some(())
        })
        .await
    }
}

/// A bottender `messaging[]` event as the body Meta posts: one entry for the event's Page
/// (whichever of sender and recipient is one of the fixtures' Pages).
fn wrap(event: &Value) -> Value {
    let ids = [&event["sender"]["id"], &event["recipient"]["id"]];
    let page = ids
        .iter()
        .filter_map(|v| v.as_str())
        .find(|id| OTHER_PAGES.contains(id))
        .unwrap_or(OTHER_PAGES[1]);
    json!({"object": "page", "entry": [{"id": page, "time": 1491797604411_i64, "messaging": [event]}]})
}

/// Every body of the fixtures, as sent: (case, raw bytes). Bottender's single events are
/// wrapped into a body; everything else is the fixture's JSON as it is.
fn fixture_bodies() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for file in [
        "fbmq_test_webhook_bodies.json",
        "botman_test_webhook_bodies.json",
    ] {
        for (case, body) in fixture("messenger", file).as_object().unwrap() {
            if case != "_source" {
                out.push((format!("{file}:{case}"), serde_json::to_vec(body).unwrap()));
            }
        }
    }
    let events = fixture("messenger", "bottender_test_messaging_events.json");
    for (case, event) in events.as_object().unwrap() {
        if case != "_source" {
            out.push((
                format!("bottender:{case}"),
                serde_json::to_vec(&wrap(event)).unwrap(),
            ));
        }
    }
    out
}

async fn message_with(app: &TestApp, external_id: &str) -> Option<Value> {
    all_messages(app, "messenger")
        .await
        .into_iter()
        .find(|m| m["external_id"] == external_id)
}

/// A text from [`CUSTOMER`] to [`PAGE`] with this `mid`, sent at `at_ms` (fbmq's recorded text
/// body, its mid, time and text replaced).
fn text_at(mid: &str, at_ms: i64, text: &str) -> Value {
    let mut p = fixture("messenger", "fbmq_test_webhook_bodies.json")["text"].clone();
    let e = &mut p["entry"][0]["messaging"][0];
    e["timestamp"] = json!(at_ms);
    e["message"]["mid"] = json!(mid);
    e["message"]["text"] = json!(text);
    p
}

fn now_ms() -> i64 {
    parley_core::Timestamp::now().0
}

/// Every fixture body: refused unsigned and with another app's signature, accepted signed;
/// each event stored as what it is (text, quick reply, postback, echo as the Page's agent
/// message, sticker, reaction, an attachment on a host that is not Meta's CDN here recorded and
/// never fetched), events for Pages not connected ignored; then every body again stores nothing
/// twice and sends nothing twice.
async fn every_fixture_body_is_accepted_signed_and_stored_once(backend: Backend) {
    let Some(rig) = rig_with(backend, "active", &OTHER_PAGES).await else {
        return;
    };
    let bodies = fixture_bodies();
    assert!(bodies.len() >= 35, "{} bodies", bodies.len());
    for (case, body) in &bodies {
        let r = rig.post_raw(body, None).await;
        assert_eq!((r.status, r.code()), (401, "signature_missing"), "{case}");
        let r = rig.post_raw(body, Some("another-app-secret")).await;
        assert_eq!((r.status, r.code()), (403, "signature_invalid"), "{case}");
    }
    rig.settled().await;
    assert!(
        conversations(&rig.app, "messenger").await.is_empty(),
        "nothing stored from refused deliveries"
    );
    for (case, body) in &bodies {
        let r = rig.post_raw(body, Some(APP_SECRET)).await;
        assert_eq!(r.status, 200, "{case}: {}", r.text);
    }
    rig.settled().await;
    let all = all_messages(&rig.app, "messenger").await;
    let by_id = |id: &str| {
        all.iter()
            .find(|m| m["external_id"] == id)
            .unwrap_or_else(|| panic!("{id} stored: {all:#?}"))
            .clone()
    };
    let text = by_id("mid.1472026867074:cfb5e1d4bde07a2a55");
    assert_eq!(
        (&text["role"], &text["content"]),
        (&json!("user"), &json!("hello world"))
    );
    let quick = by_id("mid.1472028637817:ae2763cc036a664b43");
    assert_eq!(quick["meta"]["channel"]["type"], "quick_reply");
    assert_eq!(
        quick["meta"]["channel"]["details"]["quick_reply"]["payload"],
        "PICK_ACTION"
    );
    let echo = by_id("mid.1472026868734:832ecbdfc1ffc30139");
    assert_eq!(
        (&echo["role"], &echo["content"]),
        (&json!("agent"), &json!("hello"))
    );
    assert_eq!(echo["meta"]["channel"]["type"], "echo");
    assert_eq!(
        echo["meta"]["channel"]["details"]["app_id"],
        950864918368986_i64
    );
    // The fixtures reuse mids across cases (botman: text, quick reply and echo; bottender:
    // text and the chat-plugin text; every attachment type): whichever case came first is
    // kept, once.
    for reused in [
        "mid.1480279487147:4388d3b344",
        "mid.$cAAE1UUyiiwthh1ZAO1bVhDxGk2N0",
        "mid.$cAAE1UUyiiwthh0NPrVbVf4HFNDGl",
    ] {
        let n = all.iter().filter(|m| m["external_id"] == reused).count();
        assert_eq!(n, 1, "{reused}");
    }
    // The sticker's image is on Meta's real CDN, which this server does not allow: recorded,
    // never fetched.
    let sticker = by_id("mid.$cAAE1UUyiiwthh05ZKlbVgkOobi32");
    assert_eq!(sticker["meta"]["channel"]["type"], "sticker");
    let a = &sticker["meta"]["channel"]["attachments"][0];
    assert_eq!(a["kind"], "sticker");
    assert!(a["storage_key"].is_null(), "never fetched: {a}");
    assert!(
        a["download_error"]
            .as_str()
            .unwrap()
            .contains("messenger_media_hosts"),
        "{a}"
    );
    let contents: Vec<&str> = all.iter().filter_map(|m| m["content"].as_str()).collect();
    for expected in [
        "DEVELOPED_DEFINED_PAYLOAD",
        "Get Started",
        "Reacted ❤️",
        "Removed a reaction",
        "Difficult the first time, easy the second.",
    ] {
        assert!(contents.contains(&expected), "{expected:?} in {contents:?}");
    }
    let reaction = all.iter().find(|m| m["content"] == "Reacted ❤️").unwrap();
    assert_eq!(
        reaction["meta"]["channel"]["refers_to"],
        "mid.$cAAE1UUyiiwthh0NPrVbVf4HFNDGl"
    );
    // The placeholder bodies (entry id `PAGE_ID`) name no connected Page: nothing came of them.
    assert!(
        !all.iter()
            .any(|m| m["external_id"] == "mid.1472672934017:db566db5104b5b5c08")
    );
    // Stickers, reactions and echoes are not answered; the rest is, once each. The fixtures
    // were recorded in 2016-2018, long outside the 24-hour window: every answer is refused
    // before Meta is called, and says so.
    let answered = all.iter().filter(|m| m["role"] == "assistant").count();
    assert!(answered >= 10, "{answered} answers");
    for m in all.iter().filter(|m| m["role"] == "assistant") {
        let d = &m["meta"]["channel"]["delivery"];
        assert_eq!(
            (&d["status"], &d["errors"][0]["title"]),
            (&json!("failed"), &json!("window_closed")),
            "{m}"
        );
    }
    assert!(rig.graph.messenger_sends().is_empty());

    // Meta delivers everything again: nothing new is stored, answered or sent.
    let requests = rig.stub.requests().len();
    for (_, body) in &bodies {
        let r = rig.post_raw(body, Some(APP_SECRET)).await;
        assert_eq!(r.status, 200);
    }
    rig.settled().await;
    let again = all_messages(&rig.app, "messenger").await;
    assert_eq!(again.len(), all.len(), "replays store nothing");
    assert_eq!(
        again.iter().filter(|m| m["role"] == "assistant").count(),
        answered
    );
    assert_eq!(rig.stub.requests().len(), requests);
}

/// The verification handshake wants the verify token; a tampered body or an unknown
/// connection is refused.
#[tokio::test]
async fn the_handshake_and_the_signature_are_checked() {
    let rig = rig(Backend::Sqlite).await.unwrap();
    let handshake = |token: &str| {
        rig.app.client.get(rig.app.url(&format!(
            "/webhooks/messenger/{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=88442211",
            rig.channel()
        )))
    };
    let r = rig.app.send(handshake(VERIFY_TOKEN)).await;
    assert_eq!((r.status, r.text.as_str()), (200, "88442211"));
    let r = rig.app.send(handshake("wrong")).await;
    assert_eq!((r.status, r.code()), (403, "verification_failed"));
    let body = serde_json::to_vec(&text_at("mid.sig", now_ms(), "hi")).unwrap();
    let sig = sign(APP_SECRET, &body);
    let mut tampered = body.clone();
    let at = tampered.len() - 12;
    tampered[at] = b'X';
    let r = rig
        .app
        .send(
            rig.app
                .client
                .post(
                    rig.app
                        .url(&format!("/webhooks/messenger/{}", rig.channel())),
                )
                .header("x-hub-signature-256", sig.clone())
                .body(tampered),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "signature_invalid"));
    // A WhatsApp webhook path does not take a Messenger connection, nor the reverse.
    let r = rig
        .app
        .send(
            rig.app
                .client
                .post(
                    rig.app
                        .url(&format!("/webhooks/whatsapp/{}", rig.channel())),
                )
                .header("x-hub-signature-256", sig)
                .body(body),
        )
        .await;
    assert_eq!(r.status, 404);
    rig.settled().await;
    assert!(conversations(&rig.app, "messenger").await.is_empty());
}

/// An answer's delivery moves forward only: the Page's `delivery` receipt (by mid) and `read`
/// receipt (by watermark), in any order, and fbmq's recorded read receipt, whose 2016
/// watermark is older than the answer, changes nothing.
async fn receipts_move_statuses_forward_only(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    rig.deliver(&text_at("mid.in-1", now_ms(), "Is the Roadster in stock?"))
        .await;
    rig.settled().await;
    let answer = message_with(&rig.app, "m_fake-1")
        .await
        .expect("the answer");
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["meta"]["channel"]["delivery"]["status"], "accepted");
    let sent = &rig.graph.messenger_sends()[0];
    assert_eq!(sent["recipient"]["id"], CUSTOMER);
    assert_eq!(sent["messaging_type"], "RESPONSE");
    assert_eq!(sent["message"]["text"], answer["content"]);
    assert_eq!(
        sent["message"]["metadata"],
        format!("parley:{}", answer["id"].as_str().unwrap())
    );
    let auth = rig.graph.received().last().unwrap().authorization.clone();
    assert_eq!(auth, Some(format!("Bearer {}", page_token(PAGE))));

    let fbmq = fixture("messenger", "fbmq_test_webhook_bodies.json");
    let status = || async {
        rig.settled().await;
        message_with(&rig.app, "m_fake-1").await.unwrap()["meta"]["channel"]["delivery"]["status"]
            .clone()
    };
    rig.deliver(&fbmq["read"]).await;
    assert_eq!(status().await, "accepted", "a 2016 watermark reads nothing");
    let mut read = fbmq["read"].clone();
    read["entry"][0]["messaging"][0]["read"]["watermark"] = json!(now_ms());
    rig.deliver(&read).await;
    assert_eq!(status().await, "read");
    let mut delivery = fbmq["delivery"].clone();
    delivery["entry"][0]["messaging"][0]["delivery"]["mids"] = json!(["m_fake-1"]);
    rig.deliver(&delivery).await;
    assert_eq!(status().await, "read", "a late delivery receipt is ignored");

    // Parley's own send comes back as an echo (with Parley's metadata): nothing new is stored.
    let mut echo = fbmq["echo"].clone();
    let m = &mut echo["entry"][0]["messaging"][0]["message"];
    m["mid"] = json!("m_fake-1-echo");
    m["metadata"] = json!(format!("parley:{}", answer["id"].as_str().unwrap()));
    m["text"] = answer["content"].clone();
    let before = all_messages(&rig.app, "messenger").await.len();
    rig.deliver(&echo).await;
    rig.settled().await;
    assert_eq!(all_messages(&rig.app, "messenger").await.len(), before);
}

/// The 24-hour standard messaging window: 25 hours after the customer wrote, the assistant's
/// answer and an untagged team reply are refused before Meta is called (the answer records why,
/// the reply stores nothing); a reply tagged HUMAN_AGENT goes out as `MESSAGE_TAG`; after 8
/// days HUMAN_AGENT is refused and ACCOUNT_UPDATE goes; Meta's recorded "outside of allowed
/// window" refusal is recorded on the message.
async fn window_rules_and_team_replies(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let hour = 3600 * 1000;
    rig.deliver(&text_at("mid.old", now_ms() - 25 * hour, "Still there?"))
        .await;
    rig.settled().await;
    assert!(rig.graph.messenger_sends().is_empty(), "nothing sent");
    let conversation = conversations(&rig.app, "messenger").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ms = messages(&rig.app, &conversation).await;
    let answer = ms.iter().find(|m| m["role"] == "assistant").unwrap();
    let d = &answer["meta"]["channel"]["delivery"];
    assert_eq!(d["status"], "failed");
    assert_eq!(d["errors"][0]["title"], "window_closed");
    let window = rig
        .app
        .get(&format!("/api/v1/conversations/{conversation}/channel"))
        .await;
    assert_eq!(window.body["window"]["open"], false, "{}", window.text);

    let path = format!("/api/v1/conversations/{conversation}/replies");
    let stored = ms.len();
    let r = rig.app.post(&path, &json!({"text": "We are open"})).await;
    assert_eq!((r.status, r.code()), (422, "window_closed"), "{}", r.text);
    let r = rig
        .app
        .post(&path, &json!({"text": "Hi", "message_tag": "BOGUS"}))
        .await;
    assert_eq!((r.status, r.code()), (422, "validation_failed"));
    assert_eq!(messages(&rig.app, &conversation).await.len(), stored);
    let r = rig
        .app
        .post(
            &path,
            &json!({"text": "Dana here: your order ships today.", "message_tag": "HUMAN_AGENT",
                    "author": "Dana"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    rig.settled().await;
    let sent = rig.graph.messenger_sends().pop().unwrap();
    assert_eq!(sent["messaging_type"], "MESSAGE_TAG");
    assert_eq!(sent["tag"], "HUMAN_AGENT");
    assert_eq!(sent["recipient"]["id"], CUSTOMER);
    let reply = messages(&rig.app, &conversation)
        .await
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap();
    assert_eq!(reply["role"], "agent");
    assert_eq!(reply["meta"]["channel"]["delivery"]["status"], "accepted");
    assert_eq!(
        reply["meta"]["channel"]["details"]["message_tag"],
        "HUMAN_AGENT"
    );

    // Another customer, who wrote 8 days ago.
    let mut older = text_at("mid.older", now_ms() - 8 * 24 * hour, "Hello?");
    older["entry"][0]["messaging"][0]["sender"]["id"] = json!("2223334445556667");
    rig.deliver(&older).await;
    rig.settled().await;
    let second = conversations(&rig.app, "messenger")
        .await
        .into_iter()
        .find(|c| c["id"] != conversation.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/conversations/{second}/replies");
    let r = rig
        .app
        .post(
            &path,
            &json!({"text": "Sorry", "message_tag": "HUMAN_AGENT"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "window_closed"), "{}", r.text);
    // Meta refuses the ACCOUNT_UPDATE one with its recorded "outside of allowed window" body.
    let error =
        fixture("messenger", "graph_api_recorded_send_errors.json")["outside_allowed_window_10_2018065"]
            ["body"]
            .clone();
    rig.graph.fail_next_send(400, error);
    let r = rig
        .app
        .post(
            &path,
            &json!({"text": "Your account was updated.", "message_tag": "ACCOUNT_UPDATE"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let failed_id = r.body["id"].as_str().unwrap().to_owned();
    rig.settled().await;
    assert_eq!(
        rig.graph.messenger_sends().pop().unwrap()["tag"],
        "ACCOUNT_UPDATE"
    );
    let failed = messages(&rig.app, &second)
        .await
        .into_iter()
        .find(|m| m["id"] == failed_id.as_str())
        .unwrap();
    let d = &failed["meta"]["channel"]["delivery"];
    assert_eq!(d["status"], "failed");
    assert_eq!(d["errors"][0]["code"], 10);
    assert_eq!(d["errors"][0]["title"], "OAuthException");
    let why = d["errors"][0]["message"].as_str().unwrap();
    assert!(
        why.contains("outside of allowed window") && why.contains("2018065"),
        "{why}"
    );
    // A WhatsApp-only template is refused on Messenger.
    let r = rig
        .app
        .post(
            &path,
            &json!({"template": {"name": "order_update", "language": "en_US"}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "validation_failed"));
}

/// A hybrid assistant: a message someone sent from the Page inbox (an echo of another app)
/// is stored as the team's and takes the conversation over, so the assistant stays silent.
async fn an_echo_from_the_page_inbox_takes_a_hybrid_conversation_over(backend: Backend) {
    let Some(rig) = rig_with(backend, "hybrid", &[]).await else {
        return;
    };
    rig.deliver(&text_at("mid.h-1", now_ms(), "Hello?")).await;
    rig.settled().await;
    assert_eq!(
        rig.graph.messenger_sends().len(),
        1,
        "the assistant answered"
    );
    let mut echo = fixture("messenger", "fbmq_test_webhook_bodies.json")["echo"].clone();
    echo["entry"][0]["messaging"][0]["message"]["mid"] = json!("mid.inbox-1");
    echo["entry"][0]["messaging"][0]["message"]["text"] = json!("Dana from the Page inbox");
    rig.deliver(&echo).await;
    rig.settled().await;
    let conversation = conversations(&rig.app, "messenger").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = rig
        .app
        .get(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert!(detail.body["taken_over_at"].is_string(), "{}", detail.text);
    rig.deliver(&text_at("mid.h-2", now_ms(), "Thanks Dana"))
        .await;
    rig.settled().await;
    assert_eq!(
        rig.graph.messenger_sends().len(),
        1,
        "the paused assistant does not answer"
    );
    let ms = messages(&rig.app, &conversation).await;
    let roles: Vec<&str> = ms.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "agent", "user"]);
}

/// Attachments (botman's two-image and audio bodies, their placeholder ids and URLs made
/// real): downloaded from the fake's CDN into the attachment store, a failing download retried,
/// the bytes served back by the API.
async fn attachments_are_downloaded_and_retried(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    rig.graph
        .add_media("img-1", "image/png", b"first image bytes");
    rig.graph.add_media("img-2", "image/png", b"second image!");
    rig.graph
        .add_media("aud-1", "audio/mpeg", b"audio bytes here");
    rig.graph.fail_downloads(2);
    let botman = fixture("messenger", "botman_test_webhook_bodies.json");
    let real = |case: &str, mid: &str, urls: &[String]| {
        let text = botman[case]
            .to_string()
            .replace("PAGE_ID", PAGE)
            .replace("USER_ID", CUSTOMER);
        let mut body: Value = serde_json::from_str(&text).unwrap();
        let m = &mut body["entry"][0]["messaging"][0];
        m["timestamp"] = json!(now_ms());
        m["message"]["mid"] = json!(mid);
        for (a, url) in m["message"]["attachments"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .zip(urls)
        {
            a["payload"]["url"] = json!(url);
        }
        body
    };
    rig.deliver(&real(
        "image_two_attachments",
        "mid.images",
        &[rig.graph.cdn_url("img-1"), rig.graph.cdn_url("img-2")],
    ))
    .await;
    // One after the other: the two failing downloads are the first image's.
    rig.settled().await;
    rig.deliver(&real("audio", "mid.audio", &[rig.graph.cdn_url("aud-1")]))
        .await;
    rig.settled().await;
    let images = message_with(&rig.app, "mid.images").await.unwrap();
    assert_eq!(images["content"], "[image] [image]");
    let conversation = conversations(&rig.app, "messenger").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (m, index, bytes) in [
        (&images, 0, &b"first image bytes"[..]),
        (&images, 1, &b"second image!"[..]),
        (
            &message_with(&rig.app, "mid.audio").await.unwrap(),
            0,
            &b"audio bytes here"[..],
        ),
    ] {
        let a = &m["meta"]["channel"]["attachments"][index];
        assert!(a["storage_key"].is_string(), "{a}");
        let r = rig
            .app
            .send(
                rig.app
                    .client
                    .get(rig.app.url(&format!(
                        "/api/v1/conversations/{conversation}/messages/{}/attachments/{index}",
                        m["id"].as_str().unwrap()
                    )))
                    .bearer_auth(&rig.app.key),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text.as_bytes(), bytes);
    }
    let first = &images["meta"]["channel"]["attachments"][0];
    assert_eq!(first["download_attempts"], 3, "two failures, then stored");
    let cdn = rig
        .graph
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .collect::<Vec<_>>();
    assert!(
        cdn.iter().all(|r| r.authorization.is_none()),
        "no token to the CDN"
    );
}

/// Connecting proves the Page token at the Graph API first; a Page is claimed once on the
/// server; another workspace sees neither the connection nor its conversations.
async fn connections_are_proven_and_isolated(backend: Backend) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let r = rig.connect("999888777666", USER_TOKEN).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "ownership_not_proven"),
        "a user token is no Page's: {}",
        r.text
    );
    let r = rig.connect(PAGE, "EAAG-unknown").await;
    assert_eq!((r.status, r.code()), (422, "ownership_not_proven"));
    let r = rig.connect("my-page", &page_token(PAGE)).await;
    assert_eq!((r.status, r.code()), (422, "validation_failed"));
    let r = rig
        .app
        .post(
            &format!("/api/v1/assistants/{}/channels", rig.assistant),
            &json!({"kind": "messenger", "page_id": PAGE, "access_token": page_token(PAGE),
                    "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN,
                    "phone_number_id": "123"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "validation_failed"));
    let r = rig.connect(PAGE, &page_token(PAGE)).await;
    assert_eq!((r.status, r.code()), (409, "channel_exists"));
    let view = rig
        .app
        .get(&format!("/api/v1/channels/{}", rig.channel()))
        .await;
    assert_eq!(view.body["kind"], "messenger");
    assert_eq!(
        view.body["config"]["page_name"],
        format!("Acme Page {PAGE}")
    );
    assert_eq!(
        view.body["webhook_path"],
        format!("/webhooks/messenger/{}", rig.channel())
    );
    assert!(
        !view.text.contains(&page_token(PAGE)) && !view.text.contains(APP_SECRET),
        "secrets are never shown"
    );

    rig.deliver(&text_at("mid.iso", now_ms(), "Private question"))
        .await;
    rig.settled().await;
    let conversation = conversations(&rig.app, "messenger").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other) = rig.app.other_tenant("rival").await;
    let r = rig
        .app
        .get_as(&format!("/api/v1/channels/{}", rig.channel()), &other)
        .await;
    assert_eq!(r.status, 404);
    let r = rig
        .app
        .get_as("/api/v1/conversations?channel=messenger", &other)
        .await;
    assert_eq!(r.body["items"], json!([]));
    let r = rig
        .app
        .post_as(
            &format!("/api/v1/conversations/{conversation}/replies"),
            &json!({"text": "hi"}),
            &other,
        )
        .await;
    assert_eq!(r.status, 404);
    // The rival workspace, even with the Page's real token, cannot claim it while it is held.
    let r = rig
        .app
        .post_as(
            "/api/v1/assistants",
            &json!({"name": "Rival", "company": "Rival"}),
            &other,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rival = r.body["id"].as_str().unwrap().to_owned();
    let r = rig
        .app
        .post_as(
            &format!("/api/v1/assistants/{rival}/channels"),
            &json!({"kind": "messenger", "page_id": PAGE, "access_token": page_token(PAGE),
                    "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN}),
            &other,
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "channel_exists"));
    assert!(
        !r.text.contains("Ava"),
        "nothing about the holder: {}",
        r.text
    );
}

crate::both_backends!(
    every_fixture_body_is_accepted_signed_and_stored_once,
    receipts_move_statuses_forward_only,
    window_rules_and_team_replies,
    an_echo_from_the_page_inbox_takes_a_hybrid_conversation_over,
    attachments_are_downloaded_and_retried,
    connections_are_proven_and_isolated,
);
