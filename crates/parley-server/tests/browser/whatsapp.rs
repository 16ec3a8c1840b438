//! A WhatsApp conversation with a voice note and a photo, as a reviewer sees it: the payloads
//! come through the real webhook, signed as Meta signs them; the fake Graph API serves the
//! files; the stub provider transcribes, describes and answers. In the dashboard the photo is
//! shown, the voice note plays, both with the text the models made of them.

use parley_server::channels::whatsapp::sign;
use parley_testkit::fake_graph::FakeGraph;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::{TestApp, shared_dir};

const PASSWORD: &str = "correct horse battery";
const APP_SECRET: &str = "meta-app-secret-0123456789";
const ACCESS_TOKEN: &str = "EAAG-test-access-token-9876";
const TRANSCRIPT: &str = "Hi! Is the red Roadster still available in size M?";
const DESCRIPTION: &str = "A red road bike with drop handlebars, seen from the side.";

fn fixture(name: &str) -> Value {
    let path = shared_dir().join("fixtures/whatsapp").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A fixture's case with the message id, timestamp and (optionally) MIME type replaced.
fn inbound(case: &str, wamid: &str, mime: Option<&str>) -> Value {
    let mut p = fixture("pywa_updates_message.json")[case].clone();
    let m = &mut p["entry"][0]["changes"][0]["value"]["messages"][0];
    m["id"] = json!(wamid);
    m["timestamp"] = json!((parley_core::Timestamp::now().0 / 1000).to_string());
    if let Some(mime) = mime {
        let kind = m["type"].as_str().unwrap().to_owned();
        m[kind]["mime_type"] = json!(mime);
    }
    p
}

/// A 240x160 PNG: a red frame on a light background (stored deflate blocks, no compression).
fn png() -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    let (w, h) = (240u32, 160u32);
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            let frame = (60..180).contains(&x) && (40..120).contains(&y);
            let wheel = ((x as i32 - 80).pow(2) + (y as i32 - 110).pow(2) < 400)
                || ((x as i32 - 160).pow(2) + (y as i32 - 110).pow(2) < 400);
            raw.extend(if frame || wheel {
                [200, 30, 40]
            } else {
                [240, 240, 235]
            });
        }
    }
    let mut z = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65_535).enumerate() {
        let last = (i + 1) * 65_535 >= raw.len();
        z.push(last as u8);
        z.extend((block.len() as u16).to_le_bytes());
        z.extend((!(block.len() as u16)).to_le_bytes());
        z.extend(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + byte as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// One second of a 440 Hz tone, 8 kHz mono 16-bit PCM WAV.
fn wav() -> Vec<u8> {
    let samples: Vec<i16> = (0..8_000)
        .map(|i| ((i as f64 * 440.0 * std::f64::consts::TAU / 8_000.0).sin() * 8_000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut out = b"RIFF".to_vec();
    out.extend((36 + data_len).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes()); // PCM
    out.extend(1u16.to_le_bytes()); // mono
    out.extend(8_000u32.to_le_bytes());
    out.extend(16_000u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend(data_len.to_le_bytes());
    for s in samples {
        out.extend(s.to_le_bytes());
    }
    out
}

/// Posts `payload` to the webhook, signed as Meta signs it; expects 200.
async fn deliver(app: &TestApp, webhook: &str, payload: Value) {
    let body = serde_json::to_vec(&payload).unwrap();
    let req = app
        .client
        .post(webhook)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(APP_SECRET, &body))
        .body(body);
    assert_eq!(req.send().await.unwrap().status(), 200);
}

/// The WhatsApp conversation's id, once it holds `n` visible messages.
async fn wait_for_messages(app: &TestApp, n: i64) -> String {
    for _ in 0..200 {
        let list = app.get("/api/v1/conversations?channel=whatsapp").await;
        if let Some(c) = list.body["items"].as_array().and_then(|i| i.first())
            && c["message_count"].as_i64().unwrap_or(0) >= n
        {
            return c["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the WhatsApp conversation did not reach {n} messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_voice_note_and_photo_are_shown_and_played_in_the_transcript() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number("102290129340398", "1122334455667", "GREEN", "TIER_1K");
    let app = TestApp::spawn_with(crate::helpers::platforms(Some(&graph.base_url), None)).await;
    let stub = StubProvider::start().await.unwrap();
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme Bikes", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"}}}),
        )
        .await;
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/assistants/{assistant}/channels"),
            &json!({"kind": "whatsapp", "phone_number_id": "1122334455667",
                    "business_account_id": "102290129340398", "access_token": ACCESS_TOKEN,
                    "app_secret": APP_SECRET, "verify_token": "verify-me-please-4242",
                    "graph_base_url": graph.base_url,
                    "transcription_model": "whisper-1", "vision_model": "gpt-4o-mini"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let webhook = app.url(&format!(
        "/webhooks/whatsapp/{}",
        r.body["id"].as_str().unwrap()
    ));
    // A voice note (a WAV here, which headless Chromium decodes; WhatsApp sends Ogg/Opus):
    // downloaded, transcribed, answered.
    graph.add_media("1234567890987654321", "audio/wav", &wav());
    stub.set_transcript(TRANSCRIPT);
    stub.push(Reply::text(
        "Yes, the Roadster in M is in stock. Shall I reserve one for you?",
    ));
    deliver(
        &app,
        &webhook,
        inbound("voice", "wamid.voice-1", Some("audio/wav")),
    )
    .await;
    let conv = wait_for_messages(&app, 2).await;
    // A photo: downloaded, described by the vision model, answered.
    graph.add_media("65463453", "image/png", &png());
    stub.push(Reply::text(DESCRIPTION));
    stub.push(Reply::text(
        "That is the Roadster Sport, and it is in stock in red too.",
    ));
    deliver(
        &app,
        &webhook,
        inbound("image", "wamid.photo-1", Some("image/png")),
    )
    .await;
    wait_for_messages(&app, 4).await;

    let base = b.sign_in_new_admin(&app, PASSWORD).await;
    b.goto(&format!("{base}/conversations?open={conv}&tab=transcript"))
        .await;
    b.wait_for(
        "the photo to load",
        "const i = document.querySelector('#panel .att-image img');
         return !!i && i.complete && i.naturalWidth === 240",
    )
    .await;
    b.wait_for(
        "the voice note to be playable",
        "const a = document.querySelector('#panel .att-audio audio');
         return !!a && a.readyState >= 1 && !a.error && Math.round(a.duration) === 1",
    )
    .await;
    let captions = b.text("#panel .transcript").await;
    assert!(captions.contains(TRANSCRIPT), "{captions}");
    assert!(captions.contains(DESCRIPTION), "{captions}");
    assert!(b.text("#panel .meta").await.contains("has voice messages"));
    assert!(
        b.text("#panel .meta .window.open")
            .await
            .starts_with("Open until"),
        "the 24-hour window is open after the customer wrote"
    );
    b.screenshot("whatsapp-transcript").await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());

    // Without a session the files are not served.
    let src = b
        .js("return document.querySelector('#panel .att-image img').getAttribute('src')")
        .await;
    let no_redirects = crate::helpers::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let anonymous = no_redirects
        .get(app.url(src.as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_ne!(anonymous.status(), 200, "the file needs a session");
    // The assistant's page lists the connected number with its quality and webhook.
    b.goto(&format!("{base}/assistants/{assistant}#channels"))
        .await;
    assert!(b.text("#channels").await.contains("1122334455667"));
    b.js("document.getElementById('connect-telegram').open = true; document.getElementById('channels').scrollIntoView(); return true")
        .await;
    b.screenshot("assistant-channels").await;

    b.close().await;
}

/// Outside the 24-hour window the panel offers the number's approved templates (listed from
/// the fake Graph API) instead of free text; the reviewer picks one, fills its parameters and
/// sends it, and the fake Graph API receives it. Screenshots on desktop and phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_the_panel_sends_an_approved_template() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let graph = FakeGraph::start(ACCESS_TOKEN).await.unwrap();
    graph.set_phone_number("102290129340398", "1122334455667", "GREEN", "TIER_1K");
    graph.set_templates(
        "102290129340398",
        vec![
            json!({"name": "order_update", "language": "en_US", "status": "APPROVED",
                   "category": "UTILITY", "id": "1",
                   "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped."}]}),
            json!({"name": "winter_sale", "language": "en_US", "status": "REJECTED",
                   "category": "MARKETING", "id": "2", "components": [{"type": "BODY", "text": "Sale"}]}),
        ],
    );
    let app = TestApp::spawn_with(crate::helpers::platforms(Some(&graph.base_url), None)).await;
    // An assistant that only records: the team answers.
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme Bikes"}),
        )
        .await;
    let assistant = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/assistants/{assistant}/channels"),
            &json!({"kind": "whatsapp", "phone_number_id": "1122334455667",
                    "business_account_id": "102290129340398", "access_token": ACCESS_TOKEN,
                    "app_secret": APP_SECRET, "verify_token": "verify-me-please-4242",
                    "graph_base_url": graph.base_url}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let webhook = app.url(&format!(
        "/webhooks/whatsapp/{}",
        r.body["id"].as_str().unwrap()
    ));
    let mut old = inbound("text", "wamid.window-1", None);
    old["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] =
        json!((parley_core::Timestamp::now().0 / 1000 - 25 * 3600).to_string());
    deliver(&app, &webhook, old).await;
    let id = wait_for_messages(&app, 1).await;
    b.sign_in_new_admin(&app, PASSWORD).await;
    b.goto(&format!(
        "{}/conversations?open={id}&tab=transcript",
        app.base
    ))
    .await;
    b.wait_for(
        "the template picker",
        "const s = document.querySelector('#template-pick'); return !!s && s.options.length === 2 && !document.querySelector('#composer-text')",
    )
    .await;
    b.js("const s = document.querySelector('#template-pick'); s.value = '0'; s.dispatchEvent(new Event('change')); return true")
        .await;
    b.wait_for(
        "the template's parameters",
        "return document.querySelectorAll('.template-param').length === 2 && document.querySelector('#template-body').textContent.includes('has shipped')",
    )
    .await;
    b.js("const p = document.querySelectorAll('.template-param'); p[0].value = 'Sam'; p[1].value = 'A-4711'; return true")
        .await;
    b.screenshot("inbox-template-picker").await;
    let before = graph.sends().len();
    b.click("#template-send").await;
    b.wait_for(
        "the template in the transcript",
        "return [...document.querySelectorAll('#transcript .role-agent')].some(m => m.textContent.includes('order_update') && /Accepted|Sent|Delivered/.test(m.textContent))",
    )
    .await;
    let sent = graph.sends();
    assert_eq!(sent.len(), before + 1);
    let t = &sent.last().unwrap()["template"];
    assert_eq!(t["name"], "order_update");
    assert_eq!(t["components"][0]["parameters"][1]["text"], "A-4711");
    b.close().await;

    let phone = Browser::start(true).await.unwrap();
    phone
        .sign_in(&app.base, "admin@example.com", PASSWORD)
        .await;
    phone
        .goto(&format!(
            "{}/conversations?open={id}&tab=transcript",
            app.base
        ))
        .await;
    phone
        .wait_for(
            "the phone template picker",
            "const s = document.querySelector('#template-pick'); const p = document.querySelector('#panel').getBoundingClientRect();
             return !!s && s.options.length === 2 && Math.abs(p.left) < 1",
        )
        .await;
    phone
        .js("const s = document.querySelector('#template-pick'); s.value = '0'; s.dispatchEvent(new Event('change')); document.querySelector('#template-form').scrollIntoView(); return true")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    phone.screenshot("inbox-template-picker-phone").await;
    phone.close().await;
}
