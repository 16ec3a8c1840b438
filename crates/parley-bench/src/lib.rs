//! `parley bench`: the benchmark harness.
//!
//! One run measures every workload on each backend against a fresh database, and reports each
//! figure beside a baseline measured in the same run (the machine is shared and noisy, so
//! ratios carry more than absolute numbers):
//!
//! 1. raw insert rate of workload rows straight into the database (the ingest baselines);
//! 2. ingest through the HTTP API in batches of about 100 messages (`POST /api/v1/import`,
//!    whole conversations), from 4 concurrent clients;
//! 3. single-message appends from 64 concurrent clients, each acknowledged write durable;
//! 4. bulk fill to the requested size through the store (server stopped; reported, no target);
//! 5. against the filled database, through a fresh `parley serve` process: the list's first
//!    page for every filter and sort combination, a page 1,000 deep by cursor, search for rare,
//!    medium, common, two-letter and absent terms (baseline: the same first page as a plain
//!    `LIKE`/`ILIKE` scan), a transcript page of a 10,000-message conversation, the count
//!    badge, the dashboard's list page and panel, and deleting 1,000-message conversations;
//! 6. the server process's peak resident memory over all of it, and the database size;
//! 7. the OpenAI-compatible gateway's added latency against calling the provider directly
//!    (see [`gateway`]; its own server and database).
//!
//! 8. 1,000 live event listeners on one server: commit-to-delivery latency, memory per idle
//!    listener, and ingest throughput beside them (see [`live`]; its own server and database).
//!
//! 9. the insights backfill rate and every insights endpoint and the Insights page beside the
//!    direct aggregate over the same rows (see [`insights`]; its own server and database; not
//!    run unless named).
//!
//! `--workloads storage` runs 1-6 only, `--workloads gateway` 7 only, `--workloads live` 8
//! only; the default is all three.
//!
//! Sizes follow `--scale`: 1.0 is 1,000,000 conversations (about 16 M messages, the SGD mean
//! of 16 turns); CI runs a tiny scale as a smoke test that asserts nothing about speed.

pub mod audio;
pub mod backend;
pub mod bulk;
pub mod gateway;
pub mod insights;
pub mod live;
pub mod measure;
pub mod server;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_core::model::{AssistantRef, ConversationInput, MessageInput};
use parley_core::query::Sort;
use parley_core::{Channel, Role, Timestamp, UserRole, WorkspaceId};
use parley_store::Store;
use serde_json::{Value, json};

use backend::{Backend, Database};
use measure::Latency;
use parley_server::ingest::{IngestRequest, prepare};
use server::Server;
use workload::Corpus;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// 1.0 = 1,000,000 conversations.
    pub scale: f64,
    /// Backends, in order.
    pub backends: Vec<Backend>,
    /// PostgreSQL server (an admin URL; the harness creates `parley_bench_{pid}` there).
    pub postgres_url: String,
    /// SGD dialogues directory.
    pub sgd_dir: PathBuf,
    /// Where the SQLite database and the server's data directory go.
    pub data_dir: PathBuf,
    /// JSON results file.
    pub out: PathBuf,
    /// The command line, recorded in the results.
    pub command: String,
    /// Which workload groups run on each backend.
    pub workloads: Vec<Workload>,
    /// Keep the filled database (PostgreSQL: named [`KEEP_PG_NAME`]`_{conversations}`, not dropped) and write
    /// what the read workloads need into `kept.json` in the backend's data directory, so later
    /// runs can pass `reuse`.
    pub keep: bool,
    /// Skip ingest and fill (phases 1-4): run the read workloads (5-6) against the database an
    /// earlier `keep` run filled in the same `--bench-dir` at the same scale. Its write-phase rows
    /// are reported again, marked as from that run.
    pub reuse: bool,
}

/// The prefix of the PostgreSQL database a `--keep` run fills (`{KEEP_PG_NAME}_{conversations}`)
/// and a `--reuse` run reads (its name is recorded in `kept.json`).
pub const KEEP_PG_NAME: &str = "parley_bench_keep";

/// What a `--keep` run leaves for `--reuse` runs (`kept.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Kept {
    /// Conversations of the workload (the scale).
    total: u64,
    /// The workspace and its API key's secret.
    workspace: uuid::Uuid,
    key: String,
    /// PostgreSQL database name (`None` for SQLite).
    pg_name: Option<String>,
    /// Messages stored in all.
    messages_total: u64,
    /// The 10,000-message conversation of the transcript workload.
    transcript_id: String,
    /// Rows and figures of phases 1-4.
    rows: Vec<Row>,
    figures: serde_json::Map<String, Value>,
    /// Peak server RSS during phases 2-3, KiB.
    peak_rss_kib: u64,
    /// The run that filled it.
    filled_at: String,
}

/// A group of workloads, chosen with `--workloads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Ingest, fill, list, search, transcript, dashboard, delete, memory and size (1-6 above).
    Storage,
    /// The OpenAI-compatible gateway's added latency (see [`gateway`]).
    Gateway,
    /// 1,000 live event listeners on one server: delivery latency, memory per listener,
    /// ingest beside them (see [`live`]).
    Live,
    /// The longest ingest stall during a bulk delete of 10,000 conversations (see [`bulk`]).
    Bulk,
    /// The insights backfill rate and every insights figure beside its direct aggregate (see
    /// [`insights`]; its own server and database at the run's scale).
    Insights,
}

/// One line of the results table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// What was measured.
    pub workload: String,
    /// The figure.
    pub figure: String,
    /// The same-run baseline, if any.
    pub baseline: String,
    /// Figure relative to the baseline.
    pub ratio: String,
    /// The target, if any.
    pub target: String,
    /// Whether the target is met (`None` without a target).
    pub met: Option<bool>,
}

fn row(
    workload: &str,
    figure: String,
    baseline: String,
    ratio: String,
    target: &str,
    met: Option<bool>,
) -> Row {
    Row {
        workload: workload.to_owned(),
        figure,
        baseline,
        ratio,
        target: target.to_owned(),
        met,
    }
}

fn lat(l: &Latency) -> String {
    format!("p50 {:.2} / p99 {:.2} ms", l.p50_ms, l.p99_ms)
}

fn rate(r: f64) -> String {
    format!(
        "{} msg/s",
        parley_server::dashboard::format_int(r.round() as i64)
    )
}

/// Conversations of a scale.
pub fn conversations_at(scale: f64) -> u64 {
    ((1_000_000.0 * scale).round() as u64).max(200)
}

struct Ctx {
    http: reqwest::Client,
    key: String,
    workspace: WorkspaceId,
}

impl Ctx {
    async fn get(&self, base: &str, path: &str) -> Result<(Duration, Value), BoxError> {
        let started = Instant::now();
        let res = self
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(&self.key)
            .send()
            .await?;
        let status = res.status();
        let body = res.bytes().await?;
        let took = started.elapsed();
        if !status.is_success() {
            return Err(format!("GET {path}: {status} {}", String::from_utf8_lossy(&body)).into());
        }
        Ok((took, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    async fn sample(&self, base: &str, path: &str, n: usize) -> Result<Vec<Duration>, BoxError> {
        self.get(base, path).await?; // warm-up
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.get(base, path).await?.0);
        }
        Ok(out)
    }
}

/// A conversation of `n` alternating messages (the transcript and delete workloads).
fn long_conversation(external_id: &str, n: usize) -> ConversationInput {
    let base = Timestamp::parse_rfc3339("2026-10-01T00:00:00Z")
        .expect("a valid time")
        .0;
    ConversationInput {
        id: None,
        external_id: Some(external_id.to_owned()),
        assistant: AssistantRef {
            id: None,
            name: Some("Ava".into()),
            company: Some("Acme Bikes".into()),
        },
        channel: Channel::Widget,
        status: None,
        contact: None,
        session_id: Some(external_id.to_owned()),
        started_at: None,
        ended_at: None,
        end_reason: None,
        rating: None,
        sentiment: None,
        converted: None,
        variables: Vec::new(),
        memory: None,
        messages: (0..n)
            .map(|i| MessageInput {
                id: None,
                external_id: None,
                role: if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                content: format!("Message {i} of a long conversation about bikes and their parts."),
                created_at: Some(Timestamp(base + i as i64 * 1000)),
                model: None,
                usage: None,
                cost_nanousd: None,
                meta: Default::default(),
            })
            .collect(),
        assistant_version: None,
    }
}

/// Loads conversations `range` of a `total`-conversation workload straight through the store,
/// `per_tx` conversations per transaction; returns messages stored.
pub async fn bulk_load(
    store: &Arc<dyn Store>,
    corpus: &Corpus,
    workspace: WorkspaceId,
    range: std::ops::Range<u64>,
    total: u64,
    mut progress: impl FnMut(u64),
) -> Result<u64, BoxError> {
    let prices = parley_core::pricing::PriceTable::builtin();
    let mut messages = 0u64;
    let mut i = range.start;
    while i < range.end {
        let end = (i + 500).min(range.end);
        let now = Timestamp::now();
        let batches = (i..end)
            .map(|n| {
                prepare(
                    &prices,
                    IngestRequest::Create(Box::new(workload::conversation(corpus, n, total))),
                    now,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for o in store.conversations().ingest(workspace, batches).await? {
            messages += o.stored() as u64;
        }
        i = end;
        progress(i);
    }
    Ok(messages)
}

/// Runs the benchmark; writes the JSON results and returns them with the table rows.
pub async fn run(opts: BenchOptions) -> Result<Value, BoxError> {
    let corpus = Corpus::load(&opts.sgd_dir)?;
    let total = conversations_at(opts.scale);
    eprintln!(
        "Workload: {} conversations (~{:.1} M messages; SGD mean {:.1} turns), backends: {}",
        total,
        total as f64 * corpus.mean_length() / 1e6,
        corpus.mean_length(),
        opts.backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut results = Vec::new();
    for backend in &opts.backends {
        let (mut rows, mut figures) = if opts.workloads.contains(&Workload::Storage) {
            run_backend(&opts, &corpus, *backend, total).await?
        } else {
            (Vec::new(), json!({}))
        };
        if opts.workloads.contains(&Workload::Gateway) {
            let (more, gw) = gateway::run(
                *backend,
                &opts.data_dir,
                &opts.postgres_url,
                gateway::samples_at(opts.scale),
            )
            .await?;
            rows.extend(more);
            figures["gateway"] = gw;
        }
        if opts.workloads.contains(&Workload::Live) {
            let (more, live) =
                live::run(*backend, &opts.data_dir, &opts.postgres_url, opts.scale).await?;
            rows.extend(more);
            figures["live"] = live;
        }
        if opts.workloads.contains(&Workload::Bulk) {
            let (more, b) = bulk::run(
                *backend,
                &opts.data_dir,
                &opts.postgres_url,
                bulk::conversations_at(opts.scale),
            )
            .await?;
            rows.extend(more);
            figures["bulk"] = b;
        }
        if opts.workloads.contains(&Workload::Insights) {
            let (more, i) =
                insights::run(*backend, &corpus, &opts.data_dir, &opts.postgres_url, total).await?;
            rows.extend(more);
            figures["insights"] = i;
        }
        println!("\n### {}\n", backend.name());
        println!("{}", table(&rows));
        if let Some(subsets) = figures
            .pointer("/list_first_page/subsets")
            .and_then(|v| serde_json::from_value::<Vec<SubsetFigure>>(v.clone()).ok())
        {
            println!("\n#### {}: list filter subsets\n", backend.name());
            println!("{}", subset_table(&subsets));
        }
        results.push(json!({"backend": backend.name(), "rows": rows, "figures": figures}));
    }
    let report = json!({
        "command": opts.command,
        "scale": opts.scale,
        "conversations": total,
        "finished_at": Timestamp::now().to_rfc3339(),
        "machine": machine(),
        "results": results,
    });
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&opts.out, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("Results written to {}", opts.out.display());
    Ok(report)
}

/// The results as a markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| workload | figure | baseline (same run) | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.workload, r.figure, r.baseline, r.ratio, r.target, met
        ));
    }
    t
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_gib": mem_kib / 1024 / 1024,
        "os": std::env::consts::OS,
    })
}

/// Opens `db` (creating the schema), adds the workspace `bench` and an API key for it.
async fn bench_workspace(
    db: &Database,
) -> Result<
    (
        Arc<dyn Store>,
        parley_core::model::Workspace,
        parley_server::auth::NewApiKey,
    ),
    BoxError,
> {
    let store = parley_store::open(&db.url).await?;
    let ws = store
        .workspaces()
        .create_workspace("bench", "Bench")
        .await?;
    let key = parley_server::auth::generate_api_key()?;
    store
        .workspaces()
        .create_api_key(ws.id, "bench", &key.prefix, key.hash)
        .await?;
    Ok((store, ws, key))
}

async fn run_backend(
    opts: &BenchOptions,
    corpus: &Corpus,
    backend: Backend,
    total: u64,
) -> Result<(Vec<Row>, Value), BoxError> {
    eprintln!("\n== {} ==", backend.name());
    let data_dir = opts.data_dir.join(backend.name());
    let kept_path = data_dir.join("kept.json");
    let (db, kept) = if opts.reuse {
        let kept: Kept =
            serde_json::from_slice(&std::fs::read(&kept_path).map_err(|e| {
                format!("{}: {e} (fill it first with --keep)", kept_path.display())
            })?)?;
        if kept.total != total {
            return Err(format!(
                "{} holds {} conversations, this run's scale asks for {total}",
                kept_path.display(),
                kept.total
            )
            .into());
        }
        let db = Database::existing(
            backend,
            &data_dir,
            &opts.postgres_url,
            kept.pg_name.as_deref().unwrap_or(KEEP_PG_NAME),
        )
        .await?;
        eprintln!("reusing the database filled at {}", kept.filled_at);
        (db, kept)
    } else {
        let db = Database::create(
            backend,
            &data_dir,
            &opts.postgres_url,
            opts.keep
                .then(|| format!("{KEEP_PG_NAME}_{total}"))
                .as_deref(),
        )
        .await?;
        let kept = fill_backend(&db, &data_dir, corpus, total).await?;
        if opts.keep {
            std::fs::write(&kept_path, serde_json::to_vec_pretty(&kept)?)?;
        }
        (db, kept)
    };
    let mut rows = kept.rows.clone();
    let mut figures = kept.figures.clone();
    if opts.reuse {
        for r in &mut rows {
            r.workload = format!("{} (from the fill run of {})", r.workload, kept.filled_at);
        }
    }
    let ctx = Ctx {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()?,
        key: kept.key.clone(),
        workspace: WorkspaceId(kept.workspace),
    };
    // The delete workload's conversations, made anew by every run (it consumes them).
    let special_ids: Vec<String> = {
        let store = parley_store::open(&db.url).await?;
        let prices = parley_core::pricing::PriceTable::builtin();
        let run = Timestamp::now().0;
        let mut special = Vec::new();
        for d in 0..20 {
            special.push(prepare(
                &prices,
                IngestRequest::Create(Box::new(long_conversation(
                    &format!("bench-delete-{run}-{d}"),
                    1_000,
                ))),
                Timestamp::now(),
            )?);
        }
        let mut ids = vec![kept.transcript_id.clone()];
        ids.extend(
            store
                .conversations()
                .ingest(ctx.workspace, special)
                .await?
                .iter()
                .map(|o| o.conversation_id.to_string()),
        );
        ids
    };

    // 5. Reads against the filled database.
    let mut server = Server::start(&db.url, &data_dir).await?;
    let (_, count) = ctx.get(&server.base, "/api/v1/conversations/count").await?;
    eprintln!("database: {} conversations", count["count"]);
    let messages_total = kept.messages_total;
    read_benchmarks(
        &ctx,
        &mut server,
        &db,
        backend,
        total,
        &special_ids,
        &mut rows,
        &mut figures,
    )
    .await?;
    let peak_rss = kept.peak_rss_kib.max(server.stop());

    // 6. Memory and size.
    let peak_mb = peak_rss as f64 / 1024.0;
    rows.push(row(
        "server resident memory, peak over all of the above",
        format!("{peak_mb:.0} MB"),
        String::new(),
        String::new(),
        "<= 150 MB",
        Some(peak_mb <= 150.0),
    ));
    let size = db.size_bytes().await?;
    let per_million = size as f64 / 1_048_576.0 / (messages_total as f64 / 1e6);
    rows.push(row(
        "database size per million messages",
        format!(
            "{per_million:.0} MB ({:.2} GB for {:.1} M messages)",
            size as f64 / 1e9,
            messages_total as f64 / 1e6
        ),
        String::new(),
        String::new(),
        "reported",
        None,
    ));
    figures.insert("peak_rss_mb".into(), json!(peak_mb));
    figures.insert("db_bytes".into(), json!(size));
    figures.insert("messages".into(), json!(messages_total));
    figures.insert("mb_per_million_messages".into(), json!(per_million));
    if backend == Backend::Postgres && !opts.keep && !opts.reuse {
        db.drop_database().await?;
    }
    Ok((rows, Value::Object(figures)))
}

/// Phases 1-4 on a fresh database: raw baselines, ingest through the server, bulk fill; the
/// transcript conversation; then planner statistics.
async fn fill_backend(
    db: &Database,
    data_dir: &std::path::Path,
    corpus: &Corpus,
    total: u64,
) -> Result<Kept, BoxError> {
    let backend = db.backend;
    let (store, ws, key) = bench_workspace(db).await?;
    let ctx = Ctx {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()?,
        key: key.secret.clone(),
        workspace: ws.id,
    };
    let mut rows = Vec::new();
    let mut figures = serde_json::Map::new();
    let now = Timestamp::now();
    let prices = parley_core::pricing::PriceTable::builtin();
    let scratch = prepare(
        &prices,
        IngestRequest::Create(Box::new(long_conversation("bench-scratch", 0))),
        now,
    )?;
    store.conversations().ingest(ws.id, vec![scratch]).await?;

    // 1. Raw insert baselines.
    let approx_messages = (total as f64 * corpus.mean_length()) as u64;
    let phase_a_messages = (approx_messages / 4).clamp(2_000, 300_000);
    let raw_rows = (phase_a_messages as usize).min(100_000);
    db.create_raw_tables().await?;
    let raw_batch = db
        .raw_insert_rate(corpus, "bench-scratch", raw_rows, 100, 4)
        .await?;
    eprintln!("raw insert (batches of 100): {:.0} rows/s", raw_batch);
    let live_per_client = if total >= 100_000 { 200 } else { 20 };
    let raw_single = db
        .raw_single_commit_rate("bench-scratch", 64, live_per_client.min(50))
        .await?;
    eprintln!(
        "raw single-row commits, 64 writers: {:.0} rows/s",
        raw_single
    );
    db.drop_raw_tables().await?;
    let scratch_id = store
        .conversations()
        .list_conversations(
            ws.id,
            &parley_core::query::ListQuery {
                filter: parley_core::query::ConversationFilter {
                    q: None,
                    ..Default::default()
                },
                sort: Sort::default(),
                limit: 1,
                cursor: None,
            },
        )
        .await?
        .items
        .first()
        .map(|i| i.conversation.id)
        .ok_or("the scratch conversation is missing")?;
    store
        .conversations()
        .delete_conversation(ws.id, scratch_id)
        .await?;

    // 2-3. Ingest through the server.
    let mut server = Server::start(&db.url, data_dir).await?;
    let mut bodies: Vec<(String, u64)> = Vec::new();
    let (mut body, mut in_body, mut conv) = (String::new(), 0u64, 0u64);
    let mut a_messages = 0u64;
    while a_messages < phase_a_messages && conv < total {
        let c = workload::conversation(corpus, conv, total);
        in_body += c.messages.len() as u64;
        a_messages += c.messages.len() as u64;
        body.push_str(&serde_json::to_string(&c)?);
        body.push('\n');
        conv += 1;
        if in_body >= 100 {
            bodies.push((std::mem::take(&mut body), in_body));
            in_body = 0;
        }
    }
    if !body.is_empty() {
        bodies.push((body, in_body));
    }
    let phase_a_conversations = conv;
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (bodies, next, http, url, key) = (
            bodies.clone(),
            next.clone(),
            ctx.http.clone(),
            format!("{}/api/v1/import", server.base),
            ctx.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, _)) = bodies.get(i) else {
                    return Ok::<_, BoxError>(());
                };
                let res = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/jsonl")
                    .body(body.clone())
                    .send()
                    .await?;
                if !res.status().is_success() {
                    return Err(format!("import: {}", res.text().await?).into());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let http_rate = a_messages as f64 / started.elapsed().as_secs_f64();
    server.sample_rss();
    eprintln!(
        "HTTP ingest, ~100-message batches, 4 clients: {:.0} msg/s",
        http_rate
    );
    let target = if backend == Backend::Sqlite {
        ">= 50,000 msg/s"
    } else {
        ""
    };
    rows.push(row(
        "ingest via HTTP, batches of ~100 messages (4 clients)",
        rate(http_rate),
        format!("raw INSERT: {}", rate(raw_batch)),
        format!("{:.2}", http_rate / raw_batch),
        target,
        (backend == Backend::Sqlite).then_some(http_rate >= 50_000.0),
    ));
    figures.insert("ingest_http_batch".into(), json!({"messages_per_s": http_rate, "raw_insert_rows_per_s": raw_batch, "messages": a_messages}));

    // 64 clients, one message per request, each acknowledged write durable.
    let mut live = Vec::new();
    for c in 0..64 {
        let r = ctx.http
            .post(format!("{}/api/v1/conversations", server.base))
            .bearer_auth(&ctx.key)
            .json(&json!({"external_id": format!("bench-live-{c}"), "assistant": {"name": "Ava", "company": "Acme Bikes"}, "channel": "widget"}))
            .send()
            .await?
            .json::<Value>()
            .await?;
        live.push(r["conversation"]["id"].as_str().ok_or("no id")?.to_owned());
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, id) in live.iter().enumerate() {
        let (http, url, key) = (
            ctx.http.clone(),
            format!("{}/api/v1/conversations/{id}/messages", server.base),
            ctx.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(live_per_client);
            for i in 0..live_per_client {
                let body = json!({"messages": [{"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("live message {i} from client {c}"), "external_id": format!("{c}-{i}")}]});
                let t = Instant::now();
                let res = http.post(&url).bearer_auth(&key).json(&body).send().await?;
                if !res.status().is_success() {
                    return Err::<Vec<Duration>, BoxError>(format!("append: {}", res.status()).into());
                }
                lat.push(t.elapsed());
            }
            Ok(lat)
        }));
    }
    let mut lats = Vec::new();
    for t in tasks {
        lats.extend(t.await??);
    }
    let single_rate = (64 * live_per_client) as f64 / started.elapsed().as_secs_f64();
    server.sample_rss();
    let single_lat = Latency::of(&lats);
    eprintln!(
        "64 clients, single appends: {:.0} msg/s ({})",
        single_rate,
        lat(&single_lat)
    );
    rows.push(row(
        "ingest, single-message appends from 64 clients, durable",
        format!("{} ({})", rate(single_rate), lat(&single_lat)),
        format!("raw 1-row commits, 64 writers: {}", rate(raw_single)),
        format!("{:.1}", single_rate / raw_single),
        if backend == Backend::Sqlite {
            ">= 10,000 msg/s"
        } else {
            ""
        },
        (backend == Backend::Sqlite).then_some(single_rate >= 10_000.0),
    ));
    figures.insert("ingest_single_64".into(), json!({"messages_per_s": single_rate, "latency": single_lat, "raw_single_commit_rows_per_s": raw_single}));
    let peak_rss = server.stop();

    // 4. Bulk fill to size, plus the transcript and delete workloads' conversations.
    let started = Instant::now();
    let mut last = Instant::now();
    let filled = bulk_load(
        &store,
        corpus,
        ws.id,
        phase_a_conversations..total,
        total,
        |done| {
            if last.elapsed() > Duration::from_secs(10) {
                eprintln!("  bulk fill: {done} / {total} conversations");
                last = Instant::now();
            }
        },
    )
    .await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let transcript_id = store
        .conversations()
        .ingest(
            ws.id,
            vec![prepare(
                &prices,
                IngestRequest::Create(Box::new(long_conversation("bench-transcript", 10_000))),
                Timestamp::now(),
            )?],
        )
        .await?
        .first()
        .map(|o| o.conversation_id.to_string())
        .ok_or("the transcript conversation was not stored")?;
    rows.push(row(
        "bulk fill through the store (no HTTP), 500 conversations per transaction",
        rate(filled as f64 / fill_secs),
        String::new(),
        String::new(),
        "",
        None,
    ));
    figures.insert(
        "bulk_fill".into(),
        json!({"messages_per_s": filled as f64 / fill_secs, "messages": filled}),
    );
    drop(store);
    db.analyze().await?;

    Ok(Kept {
        total,
        workspace: ws.id.0,
        key: key.secret.clone(),
        pg_name: db.pg_name().map(str::to_owned),
        messages_total: a_messages + 64 * live_per_client as u64 + filled + 10_000,
        transcript_id,
        rows,
        figures,
        peak_rss_kib: peak_rss,
        filled_at: Timestamp::now().to_rfc3339(),
    })
}

/// Requests per search term (after one warm-up).
const SEARCH_SAMPLES: usize = 30;

/// Requests per list combination (after one warm-up); with 10 the p99 is the slowest.
const LIST_SAMPLES: usize = 10;

/// The list's filters as the harness sets them, one value each: (name, query string). Every
/// subset of them is measured under every sort. `min_rating=1` is the broadest rating range
/// (the rated 40 %), the one issue 11 found slowest; the week is early in the workload's 180
/// days; the search term is the medium one (one message in 100).
fn list_filters(assistant: &str) -> Vec<(&'static str, String)> {
    vec![
        ("status", "status=closed".into()),
        ("channel", "channel=whatsapp".into()),
        ("assistant", format!("assistant={assistant}")),
        ("min_rating", "min_rating=1".into()),
        ("date range", "from=2026-07-01&to=2026-07-07".into()),
        ("search", format!("q={}", workload::MEDIUM_TERM)),
    ]
}

/// One subset of the list's filters, over every sort.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SubsetFigure {
    /// The filters set, joined by ` + ` (`none` for none).
    pub filters: String,
    /// Over all its sorts' samples.
    pub latency: Latency,
    /// Its slowest sort by p99, and that p99 in ms.
    pub slowest_sort: String,
    /// See `slowest_sort`.
    pub slowest_p99_ms: f64,
}

/// The filter-subset table (markdown): per subset, p50/p99 over its sorts and the slowest sort.
pub fn subset_table(subsets: &[SubsetFigure]) -> String {
    let mut t = String::from(
        "| filters | p50 over its sorts (ms) | p99 over its sorts (ms) | slowest sort (its p99, ms) | p99 <= 10 ms |\n|---|---|---|---|---|\n",
    );
    for s in subsets {
        t.push_str(&format!(
            "| {} | {:.2} | {:.2} | {} ({:.2}) | {} |\n",
            s.filters,
            s.latency.p50_ms,
            s.latency.p99_ms,
            s.slowest_sort,
            s.slowest_p99_ms,
            if s.slowest_p99_ms <= 10.0 {
                "yes"
            } else {
                "**no**"
            }
        ));
    }
    t
}

#[allow(clippy::too_many_arguments)]
async fn read_benchmarks(
    ctx: &Ctx,
    server: &mut Server,
    db: &Database,
    backend: Backend,
    total: u64,
    special_ids: &[String],
    rows: &mut Vec<Row>,
    figures: &mut serde_json::Map<String, Value>,
) -> Result<(), BoxError> {
    let base = server.base.clone();
    let (_, assistants) = ctx.get(&base, "/api/v1/assistants").await?;
    let ava = assistants["items"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "Ava"))
        .map(|x| x["id"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();

    // Count badge.
    let count = Latency::of(
        &ctx.sample(&base, "/api/v1/conversations/count", 300)
            .await?,
    );
    rows.push(row(
        "count badge (no filters)",
        lat(&count),
        String::new(),
        String::new(),
        "p99 <= 1 ms",
        Some(count.p99_ms <= 1.0),
    ));
    figures.insert("count_badge".into(), json!(count));

    // First page: every subset of the list's filters under every sort.
    let sorts: Vec<Sort> = Sort::ALL
        .iter()
        .copied()
        .filter(|s| s.key_name() != "created")
        .collect();
    let filters = list_filters(&ava);
    let mut all = Vec::new();
    let mut worst = (0.0f64, String::new());
    let mut subsets = Vec::new();
    for mask in 0..(1u32 << filters.len()) {
        let chosen: Vec<&(&str, String)> = filters
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, f)| f)
            .collect();
        let name = if chosen.is_empty() {
            "none".to_owned()
        } else {
            chosen.iter().map(|f| f.0).collect::<Vec<_>>().join(" + ")
        };
        let query: String = chosen.iter().map(|f| format!("&{}", f.1)).collect();
        let mut in_subset = Vec::new();
        let mut slowest = (0.0f64, String::new());
        for s in &sorts {
            let path = format!("/api/v1/conversations?limit=50&sort={s}{query}");
            let samples = ctx.sample(&base, &path, LIST_SAMPLES).await?;
            let l = Latency::of(&samples);
            if l.p99_ms > worst.0 {
                worst = (l.p99_ms, format!("{name}, sort {s}"));
            }
            if l.p99_ms > slowest.0 {
                slowest = (l.p99_ms, s.to_string());
            }
            in_subset.extend(samples);
        }
        let l = Latency::of(&in_subset);
        subsets.push(SubsetFigure {
            filters: name.clone(),
            latency: l,
            slowest_sort: slowest.1.clone(),
            slowest_p99_ms: slowest.0,
        });
        eprintln!(
            "  list [{name}]: {} (slowest sort {} p99 {:.2} ms)",
            lat(&l),
            slowest.1,
            slowest.0
        );
        all.extend(in_subset);
        server.sample_rss();
    }
    let list = Latency::of(&all);
    let list_target = total >= 1_000_000;
    let misses = subsets.iter().filter(|s| s.slowest_p99_ms > 10.0).count();
    rows.push(row(
        &format!(
            "list, first page, all {} subsets of {} filters x {} sorts ({LIST_SAMPLES} requests each)",
            subsets.len(),
            filters.len(),
            sorts.len()
        ),
        format!(
            "{} (slowest combination: p99 {:.2} ms, {}; subsets with a sort over 10 ms: {misses})",
            lat(&list),
            worst.0,
            worst.1
        ),
        String::new(),
        String::new(),
        "p99 <= 10 ms at 1 M conversations, every combination",
        list_target.then_some(worst.0 <= 10.0),
    ));
    figures.insert(
        "list_first_page".into(),
        json!({"latency": list, "slowest_p99_ms": worst.0, "slowest": worst.1,
               "filters": filters.iter().map(|f| json!({"name": f.0, "query": f.1})).collect::<Vec<_>>(),
               "sorts": sorts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
               "subsets": subsets}),
    );

    // A page 1,000 deep, by cursor.
    let pages = ((total / 50) as usize).saturating_sub(2).min(1000);
    let mut deep = Vec::new();
    for s in ["-date", "-messages", "assistant"] {
        let mut path = format!("/api/v1/conversations?limit=50&sort={s}");
        for _ in 0..pages {
            let (_, page) = ctx.get(&base, &path).await?;
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/conversations?limit=50&sort={s}&cursor={c}"),
                None => break,
            }
        }
        deep.extend(ctx.sample(&base, &path, 30).await?);
    }
    server.sample_rss();
    let deep = Latency::of(&deep);
    rows.push(row(
        &format!(
            "list, page {} deep via cursor (sorts -date, -messages, agent)",
            pages + 1
        ),
        lat(&deep),
        format!("first page: {}", lat(&list)),
        format!("{:.2}", deep.p99_ms / list.p99_ms),
        "same as first page",
        list_target.then_some(deep.p99_ms <= 10.0),
    ));
    figures.insert(
        "list_deep_page".into(),
        json!({"latency": deep, "page": pages + 1}),
    );

    // Search, each term beside the plain scan of the same run.
    let mut search_figures = serde_json::Map::new();
    let session = format!("sess-{:08x}", total / 2);
    let scan = if backend == Backend::Sqlite {
        "LIKE"
    } else {
        "ILIKE"
    };
    for (kind, term) in [
        ("rare", workload::RARE_TERM),
        ("medium", workload::MEDIUM_TERM),
        ("common", workload::COMMON_TERM),
        ("two letters", "ok"),
        ("absent", "xqzvjw"),
        ("session id", session.as_str()),
    ] {
        let l = Latency::of(
            &ctx.sample(
                &base,
                &format!("/api/v1/conversations?limit=50&q={term}"),
                SEARCH_SAMPLES,
            )
            .await?,
        );
        let mut b = Vec::new();
        for _ in 0..3 {
            b.push(db.like_scan(ctx.workspace.0, term).await?);
        }
        let b = Latency::of(&b);
        let search_target = if total >= 1_000_000 {
            Some(l.p99_ms <= 30.0)
        } else if total == 10_000 {
            Some(l.p50_ms <= 3.0)
        } else {
            None
        };
        rows.push(row(
            &format!("search \"{term}\" ({kind})"),
            lat(&l),
            format!("plain {scan} scan: p50 {:.1} ms", b.p50_ms),
            format!("{:.3}", l.p50_ms / b.p50_ms),
            "p50 <= 3 ms at 10 k conversations; p99 <= 30 ms at 1 M",
            search_target,
        ));
        search_figures.insert(kind.into(), json!({"term": term, "latency": l, "scan": b}));
        server.sample_rss();
    }
    figures.insert("search".into(), Value::Object(search_figures));

    // Transcript of a 10,000-message conversation.
    let tid = special_ids
        .first()
        .ok_or("the transcript conversation is missing")?
        .clone();
    let mut t = Vec::new();
    for page in [1, 100, 200] {
        t.extend(
            ctx.sample(
                &base,
                &format!("/api/v1/conversations/{tid}/messages?page={page}&per_page=50"),
                40,
            )
            .await?,
        );
    }
    let transcript = Latency::of(&t);
    rows.push(row(
        "transcript page (first, middle, last) of a 10,000-message conversation",
        lat(&transcript),
        String::new(),
        String::new(),
        "p99 <= 5 ms",
        Some(transcript.p99_ms <= 5.0),
    ));
    figures.insert("transcript_page".into(), json!(transcript));

    // The dashboard (issue 3's budget).
    let token = parley_server::auth::session::random_token();
    {
        let store = parley_store::open(&db.url).await?;
        let hash = parley_server::auth::hash_password("benchmark password")?;
        let user = store
            .auth()
            .create_user(
                ctx.workspace,
                &format!("bench-{}@example.com", Timestamp::now().0),
                &hash,
                UserRole::Admin,
            )
            .await?;
        let now = Timestamp::now();
        store
            .auth()
            .create_session(&parley_store::NewSession {
                token_hash: parley_server::auth::session::token_hash(&token),
                user_id: user.id,
                csrf_token: "bench".into(),
                created_at: now,
                expires_at: now.add_millis(3_600_000),
            })
            .await?;
    }
    let cookie = format!("parley_session={token}");
    let page = |path: String| {
        let (http, cookie, base) = (ctx.http.clone(), cookie.clone(), base.clone());
        async move {
            let t = Instant::now();
            let res = http
                .get(format!("{base}{path}"))
                .header("cookie", cookie)
                .send()
                .await?;
            let ok = res.status().is_success();
            res.bytes().await?;
            if !ok {
                return Err::<Duration, BoxError>(format!("dashboard {path} failed").into());
            }
            Ok(t.elapsed())
        }
    };
    let (mut list_page, mut panel) = (Vec::new(), Vec::new());
    let (_, newest) = ctx.get(&base, "/api/v1/conversations?limit=1").await?;
    let first = newest["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    page("/conversations".into()).await?;
    for _ in 0..50 {
        list_page.push(page("/conversations".into()).await?);
        panel.push(page(format!("/conversations/{first}/panel")).await?);
    }
    let (list_page, panel) = (Latency::of(&list_page), Latency::of(&panel));
    rows.push(row(
        "dashboard: Conversations page (HTML, 50 rows, badge, count, agents)",
        lat(&list_page),
        String::new(),
        String::new(),
        "median < 30 ms at >= 100k conversations",
        (total >= 100_000).then_some(list_page.p50_ms < 30.0),
    ));
    rows.push(row(
        "dashboard: conversation panel (HTML, all tabs, 50 messages)",
        lat(&panel),
        String::new(),
        String::new(),
        "median < 30 ms at >= 100k conversations",
        (total >= 100_000).then_some(panel.p50_ms < 30.0),
    ));
    figures.insert("dashboard_list".into(), json!(list_page));
    figures.insert("dashboard_panel".into(), json!(panel));
    server.sample_rss();

    // Delete 1,000-message conversations.
    let mut d = Vec::new();
    for id in &special_ids[1..] {
        let t = Instant::now();
        let res = ctx
            .http
            .delete(format!("{base}/api/v1/conversations/{id}"))
            .bearer_auth(&ctx.key)
            .send()
            .await?;
        if res.status().as_u16() != 204 {
            return Err(format!("delete: {}", res.status()).into());
        }
        d.push(t.elapsed());
    }
    let delete = Latency::of(&d);
    rows.push(row(
        "delete one conversation with 1,000 messages",
        lat(&delete),
        String::new(),
        String::new(),
        "p99 <= 50 ms",
        Some(delete.p99_ms <= 50.0),
    ));
    figures.insert("delete_1000".into(), json!(delete));
    server.sample_rss();
    Ok(())
}
