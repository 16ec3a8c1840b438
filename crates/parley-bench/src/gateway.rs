//! The gateway workload: what `POST /v1/chat/completions` through Parley adds to a call
//! straight to the provider.
//!
//! The provider is the stub OpenAI server ([`StubProvider`]) on 127.0.0.1, in the harness's
//! process; Parley is a separate `parley serve` process on a fresh database with one assistant
//! pointed at the stub. Each sample pair sends the same request once straight to the stub (the
//! baseline) and once through the gateway, alternating which goes first so drift on the shared
//! machine hits both alike. Two figures, each a median over the pairs:
//!
//! - a non-streamed completion, request sent to whole body read;
//! - a streamed completion, request sent to the first chunk carrying answer text ("first
//!   token").
//!
//! The target (issue 5) is under 2 ms added at the median. Every gateway call also records its
//! exchange as a new conversation, off the request's path, so the database writes run during
//! the measurement as they would in production.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::backend::{Backend, Database};
use crate::measure::Latency;
use crate::server::Server;
use crate::{BoxError, Row, row};
use parley_testkit::stub_provider::{Reply, StubProvider};

/// The stub's answer: 24 words, streamed two words per chunk.
const ANSWER: &str = "Thanks for asking. The Roadster comes in three frame sizes, and the medium \
                      one fits riders between 170 and 180 cm tall. Shall I reserve one?";

/// Sample pairs per figure (after a tenth as many warm-up pairs) at scales of 0.01 and up;
/// smaller scales (the CI smoke test, on a debug build) take 20.
pub fn samples_at(scale: f64) -> usize {
    if scale >= 0.01 { 400 } else { 20 }
}

fn request(stream: bool) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are the assistant of Acme Bikes. Answer briefly."},
            {"role": "user", "content": "Which frame size fits me? I am 176 cm tall."}
        ]
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Sends one request; returns the time to the whole body (not streamed) or to the first chunk
/// with answer text (streamed). Errors: a transport error or a non-2xx status.
async fn one(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
    stream: bool,
) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let mut req = http.post(url).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let res = req.send().await?;
    if !res.status().is_success() {
        return Err(format!("{url}: HTTP {}", res.status()).into());
    }
    if !stream {
        let bytes = res.bytes().await?;
        let took = started.elapsed();
        let v: Value = serde_json::from_slice(&bytes)?;
        if v["choices"][0]["message"]["content"] != ANSWER {
            return Err(format!("{url}: unexpected answer {v}").into());
        }
        return Ok(took);
    }
    let mut chunks = res.bytes_stream();
    let mut seen = Vec::new();
    let mut first = None;
    while let Some(chunk) = chunks.next().await {
        seen.extend_from_slice(&chunk?);
        if first.is_none() && String::from_utf8_lossy(&seen).contains("Thanks") {
            first = Some(started.elapsed());
        }
    }
    first.ok_or_else(|| format!("{url}: the stream carried no answer text").into())
}

/// Runs the workload on `backend` with `samples` pairs per figure; returns its rows and figures.
/// Errors: the database, the server or the stub cannot start, or a call fails.
pub async fn run(
    backend: Backend,
    data_dir: &std::path::Path,
    postgres_url: &str,
    samples: usize,
) -> Result<(Vec<Row>, Value), BoxError> {
    let warm_up = samples / 10;
    eprintln!("\n== {} gateway ==", backend.name());
    let dir = data_dir.join(format!("{}-gateway", backend.name()));
    std::fs::create_dir_all(&dir)?;
    let db = Database::create(backend, &dir, postgres_url, None).await?;
    let key = crate::bench_workspace(&db).await?.2.secret;
    let stub = StubProvider::start().await?;
    stub.set_default(Reply::text(ANSWER));
    let mut server = Server::start(&db.url, &dir).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()?;
    let created = http
        .post(format!("{}/api/v1/assistants", server.base))
        .bearer_auth(&key)
        .json(&json!({"name": "Ava", "company": "Acme Bikes",
                      "settings": {"provider": {"base_url": stub.base_url, "model": "gpt-4o-mini"}}}))
        .send()
        .await?;
    if !created.status().is_success() {
        return Err(format!("creating the assistant: {}", created.text().await?).into());
    }
    let direct_url = format!("{}/chat/completions", stub.base_url);
    let gateway_url = format!("{}/v1/chat/completions", server.base);

    let mut rows = Vec::new();
    let mut figures = serde_json::Map::new();
    for (stream, name) in [(false, "non-streamed"), (true, "streamed, first token")] {
        let body = request(stream);
        let (mut direct, mut via) = (Vec::new(), Vec::new());
        for i in 0..warm_up + samples {
            let (d, g) = if i % 2 == 0 {
                let d = one(&http, &direct_url, None, &body, stream).await?;
                (
                    d,
                    one(&http, &gateway_url, Some(&key), &body, stream).await?,
                )
            } else {
                let g = one(&http, &gateway_url, Some(&key), &body, stream).await?;
                (one(&http, &direct_url, None, &body, stream).await?, g)
            };
            if i >= warm_up {
                direct.push(d);
                via.push(g);
            }
            if i % 50 == 0 {
                server.sample_rss();
            }
        }
        let (d, g) = (Latency::of(&direct), Latency::of(&via));
        let added = g.p50_ms - d.p50_ms;
        eprintln!(
            "gateway {name}: direct p50 {:.2} ms, via Parley p50 {:.2} ms, added {added:.2} ms",
            d.p50_ms, g.p50_ms
        );
        rows.push(row(
            &format!("gateway, {name}: added latency (median of {samples} pairs)"),
            format!(
                "{added:.2} ms added (via Parley p50 {:.2} / p99 {:.2} ms)",
                g.p50_ms, g.p99_ms
            ),
            format!(
                "direct to provider p50 {:.2} / p99 {:.2} ms",
                d.p50_ms, d.p99_ms
            ),
            format!("{:.2}x", g.p50_ms / d.p50_ms),
            "< 2 ms added",
            Some(added < 2.0),
        ));
        figures.insert(
            if stream { "stream" } else { "plain" }.into(),
            json!({"direct": d, "gateway": g, "added_p50_ms": added}),
        );
    }
    // Every exchange was recorded (off the path): count them, so a gateway that answered
    // without recording cannot pass.
    let expected = 2 * (warm_up + samples) as i64;
    let mut recorded = 0;
    for _ in 0..200 {
        let r: Value = http
            .get(format!(
                "{}/api/v1/conversations/count?channel=api",
                server.base
            ))
            .bearer_auth(&key)
            .send()
            .await?
            .json()
            .await?;
        recorded = r["count"].as_i64().unwrap_or(0);
        if recorded >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if recorded < expected {
        return Err(
            format!("only {recorded} of {expected} gateway exchanges were recorded").into(),
        );
    }
    figures.insert("recorded_conversations".into(), json!(recorded));
    let peak = server.stop();
    figures.insert("peak_rss_mb".into(), json!(peak as f64 / 1024.0));
    if backend == Backend::Postgres {
        db.drop_database().await?;
    }
    Ok((rows, Value::Object(figures)))
}
