//! The `parley-bench` binary: Parley's benchmark harness (see BENCHMARKS.md).
//!
//! `parley-bench serve ...` is `parley serve ...`: the harness starts the server under test as
//! a child process of this very binary, so one build measures one version of the server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use parley_bench::backend::Backend;
use parley_bench::{BenchOptions, Workload};

/// Measures Parley on each backend in one run, every figure beside a baseline of the same run.
#[derive(Parser)]
#[command(name = "parley-bench", version)]
struct Args {
    /// Workload size: 1.0 = 1,000,000 conversations (~16 M messages).
    #[arg(long, default_value_t = 0.01)]
    scale: f64,
    /// Backends, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    /// PostgreSQL server for the postgres backend (the harness creates `parley_bench_{pid}` there).
    #[arg(
        long,
        env = "PARLEY_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// SGD dialogues directory.
    #[arg(
        long,
        default_value = "../shared/datasets/sgd-schema-guided-dialogue/train"
    )]
    sgd: PathBuf,
    /// Where the benchmark databases go.
    #[arg(long, default_value = "bench-data")]
    bench_dir: PathBuf,
    /// JSON results file.
    #[arg(long, default_value = "bench-results/latest.json")]
    out: PathBuf,
    /// Workload groups, comma-separated: `storage` (ingest, list, search, dashboard...),
    /// `gateway` (the OpenAI-compatible gateway's added latency), `live` (1,000 event
    /// listeners on one server) and `bulk` (the longest ingest stall during a bulk delete of
    /// 10,000 conversations; not run unless named) and `insights` (the backfill rate and
    /// every insights figure beside its direct aggregate; not run unless named).
    #[arg(long, value_delimiter = ',', default_value = "storage,gateway,live")]
    workloads: Vec<String>,
    /// Keep the filled databases (PostgreSQL: `parley_bench_keep`) and record them in
    /// `BENCH_DIR/BACKEND/kept.json` for later `--reuse` runs.
    #[arg(long)]
    keep: bool,
    /// Run only the read workloads against the databases a `--keep` run filled in the same
    /// `--bench-dir` at the same `--scale` (its ingest and fill rows are repeated, marked).
    #[arg(long, conflicts_with = "keep")]
    reuse: bool,
}

/// `parley-bench audio`: the voice rows (peak computation speed, waveform paint time; see
/// `parley_bench::audio`).
#[derive(Parser)]
#[command(name = "parley-bench audio")]
struct AudioArgs {
    /// The audio fixtures.
    #[arg(long, default_value = "../shared/fixtures/audio")]
    fixtures: PathBuf,
    /// Timed runs per measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// chromedriver, for the paint rows.
    #[arg(long, default_value = "/usr/bin/chromedriver")]
    chromedriver: PathBuf,
    /// Chromium, for the paint rows.
    #[arg(long, default_value = "/usr/bin/chromium")]
    chromium: PathBuf,
    /// JSON results file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return parley_server::cli::main();
    }
    if std::env::args().nth(1).as_deref() == Some("audio") {
        let args = AudioArgs::parse_from(std::env::args().skip(1));
        let opts = parley_bench::audio::AudioOptions {
            fixtures: args.fixtures,
            runs: args.runs.max(1),
            chromedriver: args.chromedriver,
            chromium: args.chromium,
            out: args.out,
        };
        return parley_server::cli::block_on(parley_bench::audio::run(opts));
    }
    parley_server::cli::block_on(run(Args::parse()))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let workloads = args
        .workloads
        .iter()
        .map(|w| match w.as_str() {
            "storage" => Ok(Workload::Storage),
            "gateway" => Ok(Workload::Gateway),
            "live" => Ok(Workload::Live),
            "bulk" => Ok(Workload::Bulk),
            "insights" => Ok(Workload::Insights),
            other => Err(format!(
                "unknown workload {other:?}: storage, gateway, live, bulk or insights"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let backends = args
        .backends
        .iter()
        .map(|b| match b.as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => Err(format!("unknown backend {other:?}: sqlite or postgres")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let opts = BenchOptions {
        scale: args.scale,
        backends,
        postgres_url: args.postgres,
        sgd_dir: args.sgd,
        data_dir: args.bench_dir,
        out: args.out,
        command,
        workloads,
        keep: args.keep,
        reuse: args.reuse,
    };
    parley_bench::run(opts).await?;
    Ok(())
}
