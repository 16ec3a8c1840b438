//! The live workload (issue 14, "Speed"): many open event streams on one server.
//!
//! A fresh database and `parley serve` process per backend; the listeners are `GET
//! /api/v1/events` streams of the workspace, unfiltered (what the dashboard's
//! `/dashboard/events` also is: the same code path), each on its own HTTP connection from this
//! process. Three figures, each beside a baseline of the same run:
//!
//! 1. **Delivery latency**: one single-message append at a time (`POST
//!    /api/v1/conversations/{id}/messages`); for every listener, the time from the append's
//!    request start to the arrival of its `message.created` event (an upper bound of commit to
//!    delivery: it includes the write itself, whose own time is reported too). The next append
//!    waits until every listener has the previous event (or 10 s). Baseline: the same with one
//!    listener, before the others connect. Target: p99 <= 100 ms at 1,000 listeners.
//! 2. **Memory per idle listener**: the server's resident memory (VmRSS) after the listeners
//!    connected and sat idle for a second, minus before any connected, divided by their
//!    number. Target: <= 50 KB (50,000 bytes).
//! 3. **Ingest with listeners**: single-message appends from 16 clients for a fixed count,
//!    with every listener connected (and receiving every event), against the same with none
//!    (the mean of a run before connecting them and one after they disconnected). Target:
//!    within 10 %.
//!
//! The listeners run in the harness's process on the same machine as the server, so reading
//! 1,000 streams competes with the server for the CPU; the figures include that.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::backend::{Backend, Database};
use crate::measure::Latency;
use crate::server::Server;
use crate::{BoxError, Row, row};

/// Ingest clients of the throughput figure.
const WRITERS: usize = 16;

/// The sizes at a scale: (listeners, latency samples, appends per writer). At 0.01 and up,
/// the 1,000 listeners; smaller scales (the CI smoke test, on a debug build) 20.
pub fn sizes_at(scale: f64) -> (usize, usize, usize) {
    if scale >= 0.01 {
        (1_000, 200, 150)
    } else {
        (20, 10, 10)
    }
}

/// What the listeners share with the harness.
struct Arrivals {
    /// Record arrivals (the latency phase only).
    record: AtomicBool,
    /// Per listener, when each `message.created` event arrived while recording.
    times: Vec<std::sync::Mutex<Vec<Instant>>>,
    /// Per append (by order), how many listeners have its event.
    seen: Vec<AtomicU32>,
}

/// Opens listener `i`'s stream and follows it, recording arrivals. Returns once the response
/// head is in (the server holds the stream's subscription by then); the reading goes on in a
/// task, aborted through the returned handle.
async fn listen(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    i: usize,
    arrivals: Arc<Arrivals>,
) -> Result<tokio::task::JoinHandle<()>, BoxError> {
    let res = http
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(key)
        .send()
        .await?;
    if !res.status().is_success() {
        return Err(format!("listener {i}: HTTP {}", res.status()).into());
    }
    Ok(tokio::spawn(async move {
        let mut body = res.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = Instant::now();
            // Scanned from where the last chunk's whole frames ended (a chunk may hold many
            // frames, or part of one); consumed frames are dropped once per chunk.
            let scan_from = buf.len().saturating_sub(1);
            buf.extend_from_slice(&chunk);
            let mut start = 0;
            let mut from = scan_from;
            while let Some(end) = buf[from..]
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| from + p)
            {
                let frame = &buf[start..end];
                let created = frame
                    .split(|&b| b == b'\n')
                    .any(|l| l == b"event: message.created");
                if created && arrivals.record.load(Ordering::SeqCst) {
                    // The n-th arrival of this phase (the lists are cleared at its start).
                    let n = arrivals.times[i].lock().map(|mut t| {
                        t.push(at);
                        t.len() - 1
                    });
                    if let Some(s) = n.ok().and_then(|n| arrivals.seen.get(n)) {
                        s.fetch_add(1, Ordering::SeqCst);
                    }
                }
                start = end + 2;
                from = start;
            }
            buf.drain(..start);
        }
    }))
}

/// Opens listeners `range`, at most 64 connecting at a time.
async fn connect(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    range: std::ops::Range<usize>,
    arrivals: &Arc<Arrivals>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, BoxError> {
    let mut out = Vec::with_capacity(range.len());
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(64) {
        let opened = futures_util::future::join_all(
            chunk
                .iter()
                .map(|&i| listen(http, base, key, i, arrivals.clone())),
        )
        .await;
        for o in opened {
            out.push(o?);
        }
    }
    Ok(out)
}

/// Appends one message to `conversation`; returns when it is acknowledged.
async fn append(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    conversation: &str,
    text: String,
) -> Result<(), BoxError> {
    let res = http
        .post(format!(
            "{base}/api/v1/conversations/{conversation}/messages"
        ))
        .bearer_auth(key)
        .json(&json!({"messages": [{"role": "user", "content": text}]}))
        .send()
        .await?;
    if !res.status().is_success() {
        return Err(format!("append: HTTP {}", res.status()).into());
    }
    Ok(())
}

/// Messages per second of `per_writer` appends from each of the writers' conversations.
async fn throughput(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    conversations: &[String],
    per_writer: usize,
    round: &str,
) -> Result<f64, BoxError> {
    let started = Instant::now();
    let tasks: Vec<_> = conversations
        .iter()
        .map(|c| {
            let (http, base, key, c, round) = (
                http.clone(),
                base.to_owned(),
                key.to_owned(),
                c.clone(),
                round.to_owned(),
            );
            tokio::spawn(async move {
                for i in 0..per_writer {
                    append(&http, &base, &key, &c, format!("{round} message {i}")).await?;
                }
                Ok::<(), BoxError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((conversations.len() * per_writer) as f64 / started.elapsed().as_secs_f64())
}

/// Appends `samples` messages one at a time; after each, waits until `expected` listeners have
/// its event. Returns every (listener, append) latency, and the appends' own latencies.
async fn latencies(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    conversation: &str,
    samples: usize,
    expected: u32,
    arrivals: &Arrivals,
) -> Result<(Vec<Duration>, Vec<Duration>), BoxError> {
    for t in &arrivals.times {
        t.lock().map_err(|_| "a poisoned lock")?.clear();
    }
    for s in &arrivals.seen {
        s.store(0, Ordering::SeqCst);
    }
    arrivals.record.store(true, Ordering::SeqCst);
    let mut starts = Vec::with_capacity(samples);
    let mut acks = Vec::with_capacity(samples);
    for k in 0..samples {
        let t0 = Instant::now();
        append(http, base, key, conversation, format!("latency probe {k}")).await?;
        acks.push(t0.elapsed());
        starts.push(t0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while arrivals.seen[k].load(Ordering::SeqCst) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    arrivals.record.store(false, Ordering::SeqCst);
    let mut out = Vec::new();
    let mut missing = 0usize;
    for t in &arrivals.times[..expected as usize] {
        let t = t.lock().map_err(|_| "a poisoned lock")?;
        missing += samples.saturating_sub(t.len());
        out.extend(t.iter().zip(&starts).map(|(at, t0)| at.duration_since(*t0)));
    }
    if missing > 0 {
        return Err(format!("{missing} deliveries did not arrive within 10 s").into());
    }
    Ok((out, acks))
}

/// Runs the workload on `backend` at `scale` (see [`sizes_at`]); returns its rows and figures.
/// Errors: the database or the server cannot start, a request fails, or an event is not
/// delivered within 10 s.
pub async fn run(
    backend: Backend,
    data_dir: &std::path::Path,
    postgres_url: &str,
    scale: f64,
) -> Result<(Vec<Row>, Value), BoxError> {
    let (listeners, samples, per_writer) = sizes_at(scale);
    eprintln!("\n== {} live ({listeners} listeners) ==", backend.name());
    let dir = data_dir.join(format!("{}-live", backend.name()));
    std::fs::create_dir_all(&dir)?;
    let db = Database::create(backend, &dir, postgres_url, None).await?;
    let key = crate::bench_workspace(&db).await?.2.secret;
    let mut server = Server::start(&db.url, &dir).await?;
    let base = server.base.clone();
    let writer = reqwest::Client::builder()
        .pool_max_idle_per_host(WRITERS * 2)
        .build()?;
    let streams = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut conversations = Vec::new();
    for c in 0..=WRITERS {
        let r: Value = writer
            .post(format!("{base}/api/v1/conversations"))
            .bearer_auth(&key)
            .json(&json!({"external_id": format!("bench-events-{c}"), "assistant": {"name": "Ava", "company": "Acme Bikes"}, "channel": "widget"}))
            .send()
            .await?
            .json()
            .await?;
        conversations.push(
            r["conversation"]["id"]
                .as_str()
                .ok_or("no conversation id")?
                .to_owned(),
        );
    }
    let probe = conversations.pop().ok_or("no conversation")?;
    let arrivals = Arc::new(Arrivals {
        record: AtomicBool::new(false),
        times: (0..listeners).map(|_| Default::default()).collect(),
        seen: (0..samples).map(|_| AtomicU32::new(0)).collect(),
    });

    // Ingest without listeners (also warms the server up before its memory is read).
    let none_before = throughput(&writer, &base, &key, &conversations, per_writer, "a").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.sample_rss();

    // One listener: the latency baseline.
    let mut handles = connect(&streams, &base, &key, 0..1, &arrivals).await?;
    let (one, one_acks) = latencies(&writer, &base, &key, &probe, samples, 1, &arrivals).await?;
    let one = Latency::of(&one);

    // All of them: memory when idle, then latency and ingest.
    handles.extend(connect(&streams, &base, &key, 1..listeners, &arrivals).await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = server.sample_rss();
    let per_listener_bytes =
        (rss_idle.saturating_sub(rss_before) as f64 * 1024.0) / listeners as f64;
    let (all, all_acks) = latencies(
        &writer,
        &base,
        &key,
        &probe,
        samples,
        listeners as u32,
        &arrivals,
    )
    .await?;
    let all = Latency::of(&all);
    let with = throughput(&writer, &base, &key, &conversations, per_writer, "b").await?;
    server.sample_rss();
    for h in handles {
        h.abort();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let none_after = throughput(&writer, &base, &key, &conversations, per_writer, "c").await?;
    let none = (none_before + none_after) / 2.0;
    let (one_acks, all_acks) = (Latency::of(&one_acks), Latency::of(&all_acks));
    eprintln!(
        "live: delivery p50 {:.2} / p99 {:.2} ms at {listeners} (1 listener: p50 {:.2} / p99 {:.2}); \
         {:.1} KiB per idle listener; ingest {with:.0} msg/s with them, {none:.0} without \
         ({none_before:.0} before, {none_after:.0} after)",
        all.p50_ms,
        all.p99_ms,
        one.p50_ms,
        one.p99_ms,
        per_listener_bytes / 1024.0
    );

    let n = format_count(listeners);
    let rows = vec![
        row(
            &format!(
                "live: commit to delivery at {n} listeners ({samples} appends, every listener)"
            ),
            format!(
                "p50 {:.2} / p99 {:.2} ms (max {:.2}; the appends' own ack p50 {:.2} ms)",
                all.p50_ms, all.p99_ms, all.max_ms, all_acks.p50_ms
            ),
            format!(
                "1 listener: p50 {:.2} / p99 {:.2} ms (ack p50 {:.2} ms)",
                one.p50_ms, one.p99_ms, one_acks.p50_ms
            ),
            format!("{:.2}x (p99)", all.p99_ms / one.p99_ms),
            "p99 <= 100 ms",
            Some(all.p99_ms <= 100.0),
        ),
        row(
            &format!("live: server memory per idle listener ({n} connected)"),
            format!(
                "{:.1} KB (RSS +{:.1} MiB)",
                per_listener_bytes / 1000.0,
                rss_idle.saturating_sub(rss_before) as f64 / 1024.0
            ),
            format!(
                "RSS before any listener: {:.1} MiB",
                rss_before as f64 / 1024.0
            ),
            String::new(),
            "<= 50 KB",
            Some(per_listener_bytes <= 50_000.0),
        ),
        row(
            &format!("live: ingest with {n} listeners ({WRITERS} clients, single-message appends)"),
            format!("{with:.0} msg/s"),
            format!(
                "no listeners: {none:.0} msg/s (before {none_before:.0}, after {none_after:.0})"
            ),
            format!("{:.2}", with / none),
            ">= 0.90x",
            Some(with >= 0.9 * none),
        ),
    ];
    let figures = json!({
        "listeners": listeners,
        "delivery": all, "delivery_one_listener": one,
        "ack": all_acks, "ack_one_listener": one_acks,
        "rss_before_kib": rss_before, "rss_idle_kib": rss_idle,
        "bytes_per_idle_listener": per_listener_bytes,
        "ingest_with_listeners_msg_s": with,
        "ingest_without_msg_s": [none_before, none_after],
    });
    let peak = server.stop();
    if backend == Backend::Postgres {
        db.drop_database().await?;
    }
    let mut figures = figures;
    figures["peak_rss_mb"] = json!(peak as f64 / 1024.0);
    Ok((rows, figures))
}

fn format_count(n: usize) -> String {
    if n >= 1000 {
        format!("{},{:03}", n / 1000, n % 1000)
    } else {
        n.to_string()
    }
}
