//! The widget's live stream, `GET /widget/v1/stream` (issue 14): a visitor's own conversation
//! as Server-Sent Events (the transcript first, then the answers, team replies and status
//! changes as they are stored), with the widget's key, origin and visitor-token checks, and
//! nothing of another visitor's conversation or another workspace.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use parley_core::AssistantId;
use parley_testkit::stub_provider::{Reply, StubProvider};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};
use crate::widget_call::{SITE, start};

crate::both_backends!(a_visitor_sees_their_own_conversation_live);

/// An open widget stream, read with a deadline per event (a deadline, not a timed assertion).
struct Live {
    inner: std::pin::Pin<Box<dyn Stream<Item = (String, Value)> + Send>>,
}

impl Live {
    /// Opens the stream of `key` for the visitor `token`, sent as the `visitor` parameter (as
    /// `EventSource` does) or as the header.
    async fn open(app: &TestApp, key: &str, token: &str, as_param: bool) -> Live {
        let mut url = format!("/widget/v1/stream?key={key}");
        if as_param {
            url.push_str(&format!("&visitor={}", urlencode(token)));
        }
        let mut req = app.client.get(app.url(&url)).header("origin", SITE);
        if !as_param {
            req = req.header("x-parley-visitor", token);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["access-control-allow-origin"], SITE);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let inner = res.bytes_stream().eventsource().map(|e| {
            let e = e.expect("a well-formed event");
            (e.event, serde_json::from_str(&e.data).expect("JSON data"))
        });
        Live {
            inner: Box::pin(inner),
        }
    }

    async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(30), self.inner.next())
            .await
            .expect("an event within the deadline")
            .expect("the stream stays open")
    }

    /// The next `message` event's data, skipping nothing else (any other event fails).
    async fn message(&mut self) -> Value {
        let (ev, data) = self.next().await;
        assert_eq!(ev, "message", "{data}");
        data
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An assistant of the workspace of `api_key` answering through `stub`, with a widget allowing
/// [`SITE`]; returns the widget key.
async fn widget(
    app: &TestApp,
    stub: &StubProvider,
    api_key: &str,
    ws: parley_core::WorkspaceId,
) -> String {
    let r = app
        .post_as(
            "/api/v1/assistants",
            &json!({"name": "Ava", "company": "Acme", "settings": {
                "provider": {"base_url": stub.base_url, "model": "gpt-4o-mini",
                             "api_key": "sk-test-0123456789abcdef"},
                "system_prompt": "Be brief."}}),
            api_key,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    let key = parley_server::widget::new_public_key().unwrap();
    app.state
        .store
        .widgets()
        .save_widget(&parley_core::widget::WidgetRecord {
            workspace_id: ws,
            assistant_id: id,
            public_key: key.clone(),
            settings: parley_core::widget::WidgetSettings {
                allowed_origins: vec![SITE.into()],
                ..Default::default()
            },
            updated_at: parley_core::Timestamp::now(),
        })
        .await
        .unwrap();
    key
}

async fn team_reply(app: &TestApp, api_key: &str, id: &str, text: &str) {
    let r = app
        .post_as(
            &format!("/api/v1/conversations/{id}/replies"),
            &json!({"text": text, "author": "Dana"}),
            api_key,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn a_visitor_sees_their_own_conversation_live(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend).await else {
        return;
    };
    let stub = StubProvider::start().await.unwrap();
    stub.set_default(Reply::text("Hello from Ava."));
    let key = widget(&app, &stub, &app.key, app.workspace.id).await;
    let (rival, rival_api_key) = app.other_tenant("rival").await;
    let rival_key = widget(&app, &stub, &rival_api_key, rival.id).await;
    let (conv_a, token_a) = start(&app, &key).await;
    let (conv_b, token_b) = start(&app, &key).await;
    let (conv_c, token_c) = start(&app, &rival_key).await;

    // The checks of the other widget endpoints.
    let stream = |q: String, origin: &'static str| {
        let req = app.client.get(app.url(&format!("/widget/v1/stream?{q}")));
        let req = if origin.is_empty() {
            req
        } else {
            req.header("origin", origin)
        };
        app.send(req)
    };
    for (q, origin, status, code) in [
        (format!("key={key}"), SITE, 401, "invalid_visitor_token"),
        (
            format!("key={key}&visitor=forged"),
            SITE,
            401,
            "invalid_visitor_token",
        ),
        // A token of this workspace's widget under the rival's key, and the reverse.
        (
            format!("key={rival_key}&visitor={}", urlencode(&token_a)),
            SITE,
            401,
            "invalid_visitor_token",
        ),
        (
            format!("key={key}&visitor={}", urlencode(&token_c)),
            SITE,
            401,
            "invalid_visitor_token",
        ),
        (
            format!("key={key}&visitor={}", urlencode(&token_a)),
            "http://evil.test",
            403,
            "origin_not_allowed",
        ),
        (
            format!("key={key}&visitor={}", urlencode(&token_a)),
            "",
            403,
            "origin_not_allowed",
        ),
        (
            format!("key=pk_unknown&visitor={}", urlencode(&token_a)),
            SITE,
            401,
            "unknown_widget_key",
        ),
    ] {
        let r = stream(q.clone(), origin).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{q} from {origin:?}: {}",
            r.text
        );
    }

    let mut a = Live::open(&app, &key, &token_a, true).await;
    let mut b = Live::open(&app, &key, &token_b, false).await;
    let mut c = Live::open(&app, &rival_key, &token_c, true).await;
    for s in [&mut a, &mut b, &mut c] {
        let (ev, snap) = s.next().await;
        assert_eq!(ev, "snapshot");
        assert_eq!(
            snap,
            json!({"messages": [], "status": "active", "rated": false})
        );
    }

    // A writes: the message and the assistant's answer arrive on A's stream.
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/widget/v1/messages?key={key}")))
                .header("origin", SITE)
                .header("x-parley-visitor", &token_a)
                .json(&json!({"client_id": "a1", "content": "Is the Roadster in stock?"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = a.message().await;
    assert_eq!(
        (m["role"].as_str(), m["client_id"].as_str()),
        (Some("user"), Some("a1"))
    );
    assert_eq!(m["content"], "Is the Roadster in stock?");
    let m = a.message().await;
    assert_eq!(
        (m["role"].as_str(), m["content"].as_str()),
        (Some("assistant"), Some("Hello from Ava."))
    );

    // A team reply through the API reaches A's stream, as an `agent` message.
    team_reply(&app, &app.key, &conv_a, "Dana here: yes, three left.").await;
    let m = a.message().await;
    assert_eq!(m["role"], "agent");
    assert_eq!(m["content"], "Dana here: yes, three left.");
    assert!(m["id"].is_string() && m["created_at"].is_string(), "{m}");

    // Replies to B and to the rival's visitor reach only them.
    team_reply(&app, &app.key, &conv_b, "For B only.").await;
    team_reply(
        &app,
        &rival_api_key,
        &conv_c,
        "For the rival's visitor only.",
    )
    .await;
    assert_eq!(b.message().await["content"], "For B only.");
    assert_eq!(
        c.message().await["content"],
        "For the rival's visitor only."
    );

    // Closing A's conversation: a `status` event, and it is the next thing on A's stream (so
    // nothing of B's or the rival's came in between).
    let r = app
        .patch(
            &format!("/api/v1/conversations/{conv_a}"),
            &json!({"status": "closed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (ev, data) = a.next().await;
    assert_eq!(
        (ev.as_str(), &data),
        ("status", &json!({"status": "closed", "rated": false}))
    );
    // B's stream also had nothing of A's: its next event is its own.
    team_reply(&app, &app.key, &conv_b, "Second for B.").await;
    assert_eq!(b.message().await["content"], "Second for B.");

    // A reconnect starts with the whole transcript.
    let mut again = Live::open(&app, &key, &token_a, false).await;
    let (ev, snap) = again.next().await;
    assert_eq!(ev, "snapshot");
    let contents: Vec<&str> = snap["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "Is the Roadster in stock?",
            "Hello from Ava.",
            "Dana here: yes, three left."
        ]
    );
    assert_eq!(snap["status"], "closed");
}
