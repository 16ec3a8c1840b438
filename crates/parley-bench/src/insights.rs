//! The insights workload (issue 13): the backfill rate of the analyser, then every insights
//! figure over HTTP through a real `parley serve`, each beside the direct aggregate over the
//! same rows (the baseline, same run).
//!
//! A fresh database per backend gets a quarter of the harness's workload (spread over 180
//! days from 2026-05-01; six assistants, nine channels) through `POST /api/v1/import` (about
//! 100 messages a request, 4 clients) in four rounds, each on a fresh `parley serve`, the
//! background analyser off (`[jobs] insights = false`) and on in turns: the ingest overhead
//! row compares their mean rates (after each round what is left is analysed untimed, so an
//! "on" round's analyser only has its own round's conversations to do). The rest is filled through the store; then all is analysed with
//! [`parley_server::insights::analyse_stale`] (what `parley analyse` runs; its rate is the
//! backfill row). Then, for windows of the last 7, 30 and 90 whole UTC days of the data,
//! without a filter, with `channel=widget` and with one assistant, each endpoint
//! (`/api/v1/insights/summary`, `timeseries` by day, hour (not over 90 days: more than the
//! API's 2,000 points) and week, `heatmap`, `assistants`, `topics`) and the Insights page
//! (`/insights`, HTML) is timed [`SAMPLES`] times after a warm-up. The baseline is the
//! aggregate the figure stands for, run on a connection of its own straight over
//! `conversations` joined with `conversation_insights` (the scan the endpoints ran before the
//! rollups): two windows (this and the previous period) for the summary and topics, one for
//! the others, and all five for the page. Each summary's conversation count is checked
//! against the baseline's.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend::{Backend, Database};
use crate::measure::Latency;
use crate::server::Server;
use crate::workload::Corpus;
use crate::{BoxError, Row, row};

/// Timed requests per figure (after one warm-up); the p99 of so few is about the maximum.
pub const SAMPLES: usize = 30;
/// Timed baseline runs per figure.
pub const BASELINE_SAMPLES: usize = 3;
/// The target for each endpoint and the page, ms.
const TARGET_P99_MS: f64 = 100.0;
/// The end of the windows: the day after the workload's last conversation starts
/// (2026-05-01 + 180 days, 2026-10-28T00:00:00Z), ms.
const END_MS: i64 = 1_777_593_600_000 + 180 * 86_400_000;
const DAY_MS: i64 = 86_400_000;

/// One figure to time: its label, the request path (without the window), whether it is the
/// HTML page, and the baseline's grouping keys with the windows it scans.
struct Figure {
    name: &'static str,
    path: &'static str,
    page: bool,
    /// (SQL key expressions over `c` and `i`, previous period too) per baseline query.
    baseline: &'static [(&'static [&'static str], bool)],
}

const SUMMARY: (&[&str], bool) = (&[], true);
const BY_DAY: (&[&str], bool) = (&["(c.started_at / 86400000)"], false);
const BY_HOUR: (&[&str], bool) = (&["(c.started_at / 3600000)"], false);
// Weeks from Monday 1970-01-05.
const BY_WEEK: (&[&str], bool) = (&["((c.started_at - 345600000) / 604800000)"], false);
const HEATMAP: (&[&str], bool) = (
    &["((c.started_at / 86400000) + 3) % 7 * 24 + (c.started_at / 3600000) % 24"],
    false,
);
const ASSISTANTS: (&[&str], bool) = (&["c.assistant_id", "c.assistant_version"], false);
const TOPICS: (&[&str], bool) = (&["i.topic"], true);

const FIGURES: &[Figure] = &[
    Figure {
        name: "summary",
        path: "/api/v1/insights/summary?",
        page: false,
        baseline: &[SUMMARY],
    },
    Figure {
        name: "timeseries day",
        path: "/api/v1/insights/timeseries?interval=day&",
        page: false,
        baseline: &[BY_DAY],
    },
    Figure {
        name: "timeseries hour",
        path: "/api/v1/insights/timeseries?interval=hour&",
        page: false,
        baseline: &[BY_HOUR],
    },
    Figure {
        name: "timeseries week",
        path: "/api/v1/insights/timeseries?interval=week&",
        page: false,
        baseline: &[BY_WEEK],
    },
    Figure {
        name: "heatmap",
        path: "/api/v1/insights/heatmap?",
        page: false,
        baseline: &[HEATMAP],
    },
    Figure {
        name: "assistants",
        path: "/api/v1/insights/assistants?",
        page: false,
        baseline: &[ASSISTANTS],
    },
    Figure {
        name: "topics",
        path: "/api/v1/insights/topics?",
        page: false,
        baseline: &[TOPICS],
    },
    Figure {
        name: "Insights page (HTML)",
        path: "/insights?",
        page: true,
        baseline: &[SUMMARY, BY_DAY, HEATMAP, ASSISTANTS, TOPICS],
    },
];

/// The baseline aggregate over the rows: the [`parley_store`] totals' columns (a subset is
/// enough to make the database do the same work: every column it reads) grouped by `keys`.
fn baseline_sql(keys: &[&str], channel: bool, assistant: bool, pg: bool) -> String {
    let p = |n: u8| if pg { format!("${n}") } else { format!("?{n}") };
    let head: String = keys.iter().map(|k| format!("{k}, ")).collect();
    let mut filter = String::new();
    let mut n = 4;
    if channel {
        filter.push_str(&format!(" AND c.channel = {}", p(n)));
        n += 1;
    }
    if assistant {
        filter.push_str(&format!(" AND c.assistant_id = {}", p(n)));
    }
    let group = if keys.is_empty() {
        String::new()
    } else {
        let at: Vec<String> = (1..=keys.len()).map(|n| n.to_string()).collect();
        format!(" GROUP BY {0} ORDER BY {0}", at.join(", "))
    };
    format!(
        "SELECT {head}count(*), SUM(c.message_count),
                SUM(CASE WHEN i.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END),
                SUM(CASE WHEN i.resolution = 'handed_off' THEN 1 ELSE 0 END),
                SUM(CASE WHEN i.resolution = 'unresolved' THEN 1 ELSE 0 END),
                SUM(CASE WHEN i.resolution = 'ongoing' THEN 1 ELSE 0 END),
                SUM(CASE WHEN c.rating > 0 THEN 1 ELSE 0 END),
                SUM(CASE WHEN c.rating > 0 THEN c.rating ELSE 0 END),
                SUM(CASE WHEN c.rating >= 4 THEN 1 ELSE 0 END),
                SUM(CASE WHEN COALESCE(c.sentiment, i.sentiment_label) = 'positive' THEN 1 ELSE 0 END),
                SUM(CASE WHEN COALESCE(c.sentiment, i.sentiment_label) = 'neutral' THEN 1 ELSE 0 END),
                SUM(CASE WHEN COALESCE(c.sentiment, i.sentiment_label) = 'negative' THEN 1 ELSE 0 END),
                SUM(c.prompt_tokens), SUM(c.completion_tokens), SUM(c.cost_nanousd),
                SUM(CASE WHEN i.first_response_ms IS NOT NULL THEN 1 ELSE 0 END),
                SUM(i.first_response_ms),
                SUM(CASE WHEN i.duration_ms IS NOT NULL THEN 1 ELSE 0 END), SUM(i.duration_ms)
         FROM conversations c LEFT JOIN conversation_insights i ON i.conversation = c.pk
         WHERE c.workspace_id = {ws} AND c.started_at >= {from} AND c.started_at < {to}{filter}{group}",
        ws = p(1),
        from = p(2),
        to = p(3),
    )
}

/// A connection for the baseline queries, of its own (not the server's).
enum Raw {
    Sqlite(std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>),
    Postgres(tokio_postgres::Client),
}

/// A filter of the window: a channel, an assistant.
#[derive(Clone)]
struct Filter {
    label: &'static str,
    channel: Option<&'static str>,
    assistant: Option<uuid::Uuid>,
}

impl Filter {
    fn query(&self) -> String {
        let mut q = String::new();
        if let Some(c) = self.channel {
            q.push_str(&format!("&channel={c}"));
        }
        if let Some(a) = self.assistant {
            q.push_str(&format!("&assistant={a}"));
        }
        q
    }
}

impl Raw {
    async fn open(db: &Database) -> Result<Raw, BoxError> {
        match db.sqlite_path() {
            Some(path) => Ok(Raw::Sqlite(std::sync::Arc::new(std::sync::Mutex::new(
                rusqlite::Connection::open(path)?,
            )))),
            None => {
                let (client, conn) =
                    tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                Ok(Raw::Postgres(client))
            }
        }
    }

    /// One assistant of the workspace (the one with the most conversations).
    async fn an_assistant(&self, ws: uuid::Uuid) -> Result<uuid::Uuid, BoxError> {
        const SQL: &str = "SELECT assistant_id FROM conversations WHERE workspace_id = {ws}
             AND assistant_id IS NOT NULL GROUP BY assistant_id ORDER BY count(*) DESC LIMIT 1";
        match self {
            Raw::Sqlite(c) => {
                let c = c
                    .lock()
                    .map_err(|_| "the baseline connection is poisoned")?;
                let b: Vec<u8> =
                    c.query_row(&SQL.replace("{ws}", "?1"), [ws.as_bytes().to_vec()], |r| {
                        r.get(0)
                    })?;
                Ok(uuid::Uuid::from_slice(&b)?)
            }
            Raw::Postgres(c) => Ok(c
                .query_one(&SQL.replace("{ws}", "$1"), &[&ws])
                .await?
                .get(0)),
        }
    }

    /// Runs the baseline of `keys` over `[from, to)` with `filter`; returns its duration and
    /// the first row's conversation count (the column after the keys).
    async fn aggregate(
        &self,
        keys: &'static [&'static str],
        ws: uuid::Uuid,
        (from, to): (i64, i64),
        filter: &Filter,
    ) -> Result<(Duration, i64), BoxError> {
        match self {
            Raw::Sqlite(c) => {
                let c = c.clone();
                let filter = filter.clone();
                tokio::task::spawn_blocking(move || -> Result<(Duration, i64), BoxError> {
                    let c = c
                        .lock()
                        .map_err(|_| "the baseline connection is poisoned")?;
                    let sql = baseline_sql(
                        keys,
                        filter.channel.is_some(),
                        filter.assistant.is_some(),
                        false,
                    );
                    let started = Instant::now();
                    let mut st = c.prepare_cached(&sql)?;
                    let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![
                        Box::new(ws.as_bytes().to_vec()),
                        Box::new(from),
                        Box::new(to),
                    ];
                    if let Some(ch) = filter.channel {
                        values.push(Box::new(ch));
                    }
                    if let Some(a) = filter.assistant {
                        values.push(Box::new(a.as_bytes().to_vec()));
                    }
                    let refs: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| &**v).collect();
                    let mut first = None;
                    let mut rows = st.query(refs.as_slice())?;
                    while let Some(r) = rows.next()? {
                        if first.is_none() {
                            first = Some(r.get::<_, i64>(keys.len())?);
                        }
                    }
                    Ok((started.elapsed(), first.unwrap_or(0)))
                })
                .await?
            }
            Raw::Postgres(c) => {
                let sql = baseline_sql(
                    keys,
                    filter.channel.is_some(),
                    filter.assistant.is_some(),
                    true,
                );
                let started = Instant::now();
                let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    vec![&ws, &from, &to];
                if let Some(ch) = &filter.channel {
                    values.push(ch);
                }
                if let Some(a) = &filter.assistant {
                    values.push(a);
                }
                let rows = c.query(&sql, &values).await?;
                let first = rows
                    .first()
                    .map(|r| r.get::<_, i64>(keys.len()))
                    .unwrap_or(0);
                Ok((started.elapsed(), first))
            }
        }
    }
}

/// Runs the workload on `backend` with `total` conversations; returns its rows and figures.
/// Errors: the database or the server cannot start, a request fails, or a summary's count
/// differs from the baseline's.
pub async fn run(
    backend: Backend,
    corpus: &Corpus,
    data_dir: &std::path::Path,
    postgres_url: &str,
    total: u64,
) -> Result<(Vec<Row>, Value), BoxError> {
    eprintln!(
        "\n== {} insights ({total} conversations) ==",
        backend.name()
    );
    let dir = data_dir.join(format!("{}-insights", backend.name()));
    std::fs::create_dir_all(&dir)?;
    let db = Database::create(backend, &dir, postgres_url, None).await?;
    let (store, ws, key) = crate::bench_workspace(&db).await?;
    // Ingest through HTTP with the background analyser off and on, in turns.
    let off_config = dir.join("insights-off.toml");
    std::fs::write(&off_config, "[jobs]\ninsights = false\n")?;
    let round = (total / INGEST_SHARE / 4).max(50);
    let mut next = 0u64;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut ingested = 0u64;
    for turn in 0..4 {
        let analyser = turn % 2 == 1;
        let server =
            Server::start_with(&db.url, &dir, (!analyser).then_some(off_config.as_path())).await?;
        let (rate, n) =
            ingest_http(&server.base, &key.secret, corpus, next..next + round, total).await?;
        eprintln!(
            "  HTTP ingest, analyser {}: {rate:.0} msg/s",
            if analyser { "on" } else { "off" }
        );
        if analyser {
            on.push(rate);
        } else {
            off.push(rate);
        }
        ingested += n;
        next += round;
        // No backlog for the next round's analyser (it analyses only what it sees arrive):
        // what is left is analysed here, untimed, once the server's pass gives its lease up.
        loop {
            match parley_server::insights::analyse_stale(store.as_ref(), ws.id, |_| {}).await {
                Err(parley_store::StoreError::Conflict {
                    code: "analysis_busy",
                    ..
                }) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => {
                    r?;
                    break;
                }
            }
        }
        drop(server);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (off_rate, on_rate) = (mean(&off), mean(&on));
    let fall = 1.0 - on_rate / off_rate;
    let started = Instant::now();
    let mut shown = 0;
    let messages = ingested
        + crate::bulk_load(&store, corpus, ws.id, next..total, total, |n| {
            if n >= shown + total / 10 {
                shown = n;
                eprintln!("  filled {n}/{total}");
            }
        })
        .await?;
    let fill_s = started.elapsed().as_secs_f64();
    eprintln!("filled {total} conversations ({messages} messages) in {fill_s:.1} s");
    let started = Instant::now();
    // The ingested rounds are analysed already: this is the filled rest.
    let analysed = parley_server::insights::analyse_stale(store.as_ref(), ws.id, |_| {}).await?;
    let backfill_s = started.elapsed().as_secs_f64();
    let backfill_rate = analysed as f64 / backfill_s;
    eprintln!("analysed {analysed} in {backfill_s:.1} s ({backfill_rate:.0}/s)");
    db.analyze().await?;
    let mut rows = vec![
        row(
            &format!(
                "ingest via HTTP, ~100-message batches, 4 clients, with the background analyser on (`[jobs] insights = true`), {} rounds of {round} conversations",
                on.len()
            ),
            crate::rate(on_rate),
            format!(
                "analyser off (`insights = false`), alternating rounds: {}",
                crate::rate(off_rate)
            ),
            format!("{:.1} % lower", fall * 100.0),
            "falls by <= 10 %",
            Some(fall <= 0.10),
        ),
        row(
            &format!(
                "insights backfill (`analyse_stale`, what `parley analyse` runs) of {analysed} conversations, {messages} messages"
            ),
            format!("{backfill_rate:.0} conversations/s ({backfill_s:.1} s)"),
            format!(
                "fill through the store: {:.0} conversations/s",
                total as f64 / fill_s
            ),
            String::new(),
            ">= 5,000 conversations/s",
            Some(backfill_rate >= 5_000.0),
        ),
    ];
    // A session for the page.
    let token = parley_server::auth::session::random_token();
    let hash = parley_server::auth::hash_password("benchmark password")?;
    let user = store
        .auth()
        .create_user(
            ws.id,
            "insights-bench@example.com",
            &hash,
            parley_core::UserRole::Admin,
        )
        .await?;
    let now = parley_core::Timestamp::now();
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
    drop(store);
    let raw = Raw::open(&db).await?;
    let wsid = ws.id.0;
    let assistant = raw.an_assistant(wsid).await?;
    let filters = [
        Filter {
            label: "no filter",
            channel: None,
            assistant: None,
        },
        Filter {
            label: "channel=widget",
            channel: Some("widget"),
            assistant: None,
        },
        Filter {
            label: "assistant=one",
            channel: None,
            assistant: Some(assistant),
        },
    ];
    let server = Server::start(&db.url, &dir).await?;
    let base = server.base.clone();
    let http = reqwest::Client::builder().build()?;
    let cookie = format!("parley_session={token}");
    let get = |path: String, page: bool| {
        let (http, base, key, cookie) = (
            http.clone(),
            base.clone(),
            key.secret.clone(),
            cookie.clone(),
        );
        async move {
            let req = http.get(format!("{base}{path}"));
            let req = if page {
                req.header("cookie", cookie)
            } else {
                req.bearer_auth(key)
            };
            let t = Instant::now();
            let res = req.send().await?;
            let status = res.status();
            let body = res.bytes().await?;
            let took = t.elapsed();
            if !status.is_success() {
                return Err::<(Duration, Value), BoxError>(
                    format!("GET {path}: {status} {}", String::from_utf8_lossy(&body)).into(),
                );
            }
            Ok((took, serde_json::from_slice(&body).unwrap_or(Value::Null)))
        }
    };
    let mut figures = Vec::new();
    let mut worst_p99: f64 = 0.0;
    for days in [7i64, 30, 90] {
        let (to, from) = (END_MS, END_MS - days * DAY_MS);
        let last = END_DAY_MINUS_ONE;
        let first_day = day_iso(from);
        for filter in &filters {
            for f in FIGURES {
                if f.name == "timeseries hour" && days * 24 > 2_000 {
                    continue;
                }
                let path = format!("{}from={first_day}&to={last}{}", f.path, filter.query());
                let (_, warm) = get(path.clone(), f.page).await?;
                let mut samples = Vec::with_capacity(SAMPLES);
                for _ in 0..SAMPLES {
                    samples.push(get(path.clone(), f.page).await?.0);
                }
                let mut base_samples = Vec::with_capacity(BASELINE_SAMPLES);
                let mut count = None;
                for _ in 0..BASELINE_SAMPLES {
                    let mut took = Duration::ZERO;
                    for (keys, previous) in f.baseline {
                        let (d, n) = raw.aggregate(keys, wsid, (from, to), filter).await?;
                        took += d;
                        if keys.is_empty() {
                            count.get_or_insert(n);
                        }
                        if *previous {
                            took += raw
                                .aggregate(keys, wsid, (from - (to - from), from), filter)
                                .await?
                                .0;
                        }
                    }
                    base_samples.push(took);
                }
                if f.name == "summary" {
                    let got = warm["figures"]["conversations"]["value"].as_i64();
                    if got != count {
                        return Err(format!(
                            "summary {path}: {got:?} conversations, the baseline counts {count:?}"
                        )
                        .into());
                    }
                }
                let (l, b) = (Latency::of(&samples), Latency::of(&base_samples));
                worst_p99 = worst_p99.max(l.p99_ms);
                eprintln!(
                    "  {days:>2} days, {:<15} {:<22} p50 {:>8.2} / p99 {:>8.2} ms; baseline p50 {:>9.2} ms",
                    filter.label, f.name, l.p50_ms, l.p99_ms, b.p50_ms
                );
                rows.push(row(
                    &format!("insights: {} ({days} days, {})", f.name, filter.label),
                    crate::lat(&l),
                    format!("direct aggregate: {}", crate::lat(&b)),
                    format!("{:.3}x p50", l.p50_ms / b.p50_ms.max(1e-9)),
                    "p99 <= 100 ms",
                    Some(l.p99_ms <= TARGET_P99_MS),
                ));
                figures.push(
                    json!({"figure": f.name, "days": days, "filter": filter.label,
                                    "latency": l, "baseline": b}),
                );
            }
        }
    }
    drop(server);
    let out = json!({"conversations": total, "messages": messages, "fill_s": fill_s,
                     "ingest": {"analyser_off_msg_per_s": off, "analyser_on_msg_per_s": on},
                     "backfill": {"conversations": analysed, "seconds": backfill_s,
                                  "per_second": backfill_rate},
                     "worst_p99_ms": worst_p99, "figures": figures});
    if backend == Backend::Postgres {
        drop(raw);
        db.drop_database().await?;
    }
    Ok((rows, out))
}

/// The share of the conversations (1 in this many) ingested through HTTP, in four rounds
/// with the analyser off and on in turns; the rest is filled through the store.
const INGEST_SHARE: u64 = 4;

/// Imports conversations `range` of the workload through `POST /api/v1/import` in bodies of
/// about 100 messages from 4 clients; returns messages per second and the messages stored.
async fn ingest_http(
    base: &str,
    key: &str,
    corpus: &Corpus,
    range: std::ops::Range<u64>,
    total: u64,
) -> Result<(f64, u64), BoxError> {
    let mut bodies: Vec<String> = Vec::new();
    let (mut body, mut in_body, mut messages) = (String::new(), 0u64, 0u64);
    for i in range {
        let c = crate::workload::conversation(corpus, i, total);
        in_body += c.messages.len() as u64;
        messages += c.messages.len() as u64;
        body.push_str(&serde_json::to_string(&c)?);
        body.push('\n');
        if in_body >= 100 {
            bodies.push(std::mem::take(&mut body));
            in_body = 0;
        }
    }
    if !body.is_empty() {
        bodies.push(body);
    }
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (bodies, next, http) = (bodies.clone(), next.clone(), http.clone());
        let (url, key) = (format!("{base}/api/v1/import"), key.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
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
    Ok((messages as f64 / started.elapsed().as_secs_f64(), messages))
}

/// The last whole day of the windows (the day before [`END_MS`]), `YYYY-MM-DD`.
const END_DAY_MINUS_ONE: &str = "2026-10-27";

/// `t` (ms, UTC) as its UTC day, `YYYY-MM-DD`.
fn day_iso(t: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(t.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windows_end_where_the_workload_does() {
        assert_eq!(day_iso(END_MS), "2026-10-28");
        assert_eq!(day_iso(END_MS - DAY_MS), END_DAY_MINUS_ONE);
        assert_eq!(day_iso(END_MS - 7 * DAY_MS), "2026-10-21");
    }

    #[test]
    fn the_baseline_binds_what_it_filters() {
        let s = baseline_sql(&[], true, true, true);
        assert!(
            s.contains("c.channel = $4") && s.contains("c.assistant_id = $5"),
            "{s}"
        );
        let s = baseline_sql(&["i.topic"], false, true, false);
        assert!(
            s.contains("c.assistant_id = ?4") && s.contains("GROUP BY 1"),
            "{s}"
        );
    }
}
