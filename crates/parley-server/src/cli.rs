//! The `parley` command line.
//!
//! ```text
//! parley serve                         run the server (./parley-data, SQLite, 127.0.0.1:8080)
//! parley import [--format jsonl|sgd] [--from-line N] PATH...
//! parley export [--format jsonl|csv] [--output FILE] [filters]
//! parley export finetune [filters] [--team-replies-only] [--keep-tools] [--no-redact] > out.jsonl
//! parley keys create --name NAME       print a new API key (alone, on the last line)
//! parley keys list | keys revoke ID
//! parley workspaces create --name NAME [--slug SLUG] | workspaces list
//! parley users create --email E --password-stdin [--role admin|member] | users list
//! parley migrate                       create or upgrade the database schema
//! parley migrate-store --from URL --to URL [--workspace SLUG]
//! parley backup --output FILE          a consistent copy of a SQLite store (while serve runs)
//! parley restore --input FILE --data-dir DIR [--force]
//! ```
//!
//! Every command takes `--data-dir`, `--database`, `--config` and `--price-table` (or their
//! `PARLEY_*` variables). Commands that act on one workspace take `--workspace SLUG`; without
//! it they use the only workspace, creating `default` on first use.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use parley_core::query::ConversationFilter;
use parley_core::{Channel, ConversationStatus, Timestamp};
use parley_store::Store;

use crate::AppState;
use crate::config::{Overrides, Settings};
use crate::import::{ImportJob, sgd::SgdOptions};
use crate::transfer::{Format, export_stream};
use crate::workspaces::select_workspace;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Parley: a self-hosted conversations hub for AI assistants.
#[derive(Debug, Parser)]
#[command(name = "parley", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// TOML settings file.
    #[arg(long, env = "PARLEY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory [default: ./parley-data].
    #[arg(long, env = "PARLEY_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite://<data-dir>/parley.db].
    #[arg(long = "database", env = "PARLEY_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Model price table (LiteLLM JSON format) merged over the built-in one.
    #[arg(long, env = "PARLEY_PRICE_TABLE", global = true)]
    price_table: Option<PathBuf>,
    /// Key that seals stored secrets such as provider API keys: base64 of 32 bytes
    /// [default: <data-dir>/secret.key, created on first start].
    #[arg(long, env = "PARLEY_SECRET_KEY", global = true, hide_env_values = true)]
    secret_key: Option<String>,
    /// Log lines as `text` [default] or `json` (one object per line).
    #[arg(long, env = "PARLEY_LOG_FORMAT", global = true, value_enum)]
    log_format: Option<crate::config::LogFormat>,
}

/// `parley audio …`.
#[derive(Subcommand, Debug)]
enum AudioCommand {
    /// Compute the missing waveform peaks (`<file>.peaks.json`) of every stored attachment
    /// that decodes as audio.
    Backfill,
}

/// `parley retention …`.
#[derive(Subcommand, Debug)]
enum RetentionCommand {
    /// Apply the retention policies now (each workspace's saved policy; see
    /// `/settings/retention`), printing what was deleted per workspace; with `--dry-run`, print
    /// what would be deleted and change nothing. Each run is recorded in the audit log.
    Run {
        /// Workspace slug [default: every workspace with a policy].
        #[arg(long)]
        workspace: Option<String>,
        /// Count only; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Retention policies: `parley retention run [--workspace W] [--dry-run]`.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Run the HTTP server.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "PARLEY_LISTEN")]
        listen: Option<SocketAddr>,
        /// Mark cookies Secure (when the dashboard is served over HTTPS).
        #[arg(long, env = "PARLEY_SECURE_COOKIES")]
        secure_cookies: Option<bool>,
        /// Reverse proxies whose X-Forwarded-For (or Forwarded) header is believed: CIDR
        /// ranges or addresses, comma-separated [default: none].
        #[arg(long, env = "PARLEY_TRUSTED_PROXIES", value_delimiter = ',')]
        trusted_proxies: Option<Vec<String>>,
        /// The header the trusted proxies write [default: x-forwarded-for].
        #[arg(long, env = "PARLEY_FORWARDED_HEADER", value_enum)]
        forwarded_header: Option<crate::client_addr::ForwardedHeader>,
        /// Bearer token for GET /metrics (at least 16 characters).
        #[arg(long, env = "PARLEY_METRICS_TOKEN", hide_env_values = true)]
        metrics_token: Option<String>,
        /// Serve GET /metrics on this address only (not on --listen).
        #[arg(long, env = "PARLEY_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        /// Let workspaces' own provider and channel URLs reach loopback and private networks
        /// (a local Ollama or vLLM) [default: false].
        #[arg(long, env = "PARLEY_ALLOW_PRIVATE_NETWORKS")]
        allow_private_networks: Option<bool>,
    },
    /// Write a consistent copy of the SQLite database and the attachments to one archive
    /// (safe while `serve` runs).
    Backup {
        /// The archive to write (a gzip-compressed tar file).
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Restore a `parley backup` archive into a data directory.
    Restore {
        /// The archive `parley backup` wrote.
        #[arg(long, short)]
        input: PathBuf,
        /// Replace the database, attachments and secret key of a data directory that is not
        /// empty (no server may be running on it).
        #[arg(long)]
        force: bool,
    },
    /// Import conversations from files.
    Import {
        /// File format.
        #[arg(long, value_enum, default_value_t = ImportFormat::Jsonl)]
        format: ImportFormat,
        /// Workspace slug.
        #[arg(long)]
        workspace: Option<String>,
        /// SGD: channel of the imported conversations.
        #[arg(long, default_value = "api")]
        channel: Channel,
        /// SGD: one assistant name for every dialogue (default: from the dialogue's service).
        #[arg(long)]
        assistant: Option<String>,
        /// SGD: the assistant's company.
        #[arg(long)]
        company: Option<String>,
        /// JSONL: start at this line of the first file (the `resume with --from-line N` of an
        /// import that stopped; the lines before it are skipped).
        #[arg(long, default_value_t = 1)]
        from_line: u64,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Compute the insights (sentiment, resolution, response times) of every conversation
    /// whose insight is missing or stale: the backfill after an import or an upgrade.
    Analyse {
        /// Workspace slug [default: every workspace].
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Export conversations (oldest first) to a file or standard output.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Workspace slug.
        #[arg(long)]
        workspace: Option<String>,
        /// Output file [default: standard output].
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Only these statuses (comma-separated).
        #[arg(long, value_delimiter = ',')]
        status: Vec<ConversationStatus>,
        /// Only these channels (comma-separated).
        #[arg(long, value_delimiter = ',')]
        channel: Vec<Channel>,
        /// Only conversations containing this text.
        #[arg(long)]
        q: Option<String>,
        /// Only conversations dated at or after this (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Only conversations dated before this (RFC 3339, or YYYY-MM-DD inclusive).
        #[arg(long)]
        to: Option<String>,
        /// Another kind of export (`finetune`).
        #[command(subcommand)]
        what: Option<ExportCommand>,
    },
    /// Audio attachments: `parley audio backfill` computes the waveform peaks and durations of
    /// stored audio that has none yet (files stored before the player existed).
    Audio {
        #[command(subcommand)]
        command: AudioCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage workspaces.
    Workspaces {
        #[command(subcommand)]
        command: WorkspacesCommand,
    },
    /// Manage dashboard users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Copy a workspace from one database to another (e.g. SQLite to PostgreSQL) and verify it.
    MigrateStore {
        /// Source database URL (`sqlite://PATH`).
        #[arg(long)]
        from: String,
        /// Target database URL (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`).
        #[arg(long)]
        to: String,
        /// Workspace slug [default: the only workspace of the source].
        #[arg(long)]
        workspace: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ImportFormat {
    /// Parley's conversation JSONL.
    Jsonl,
    /// Schema-Guided Dialogue dialogues files.
    Sgd,
}

/// `parley export …` kinds beyond the transfer export.
#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// An OpenAI chat fine-tuning set (JSONL), as `GET /api/v1/conversations/finetune`
    /// writes it (see the README's "Fine-tuning sets").
    Finetune(Box<FinetuneArgs>),
}

/// The flags of `parley export finetune`: the API's query parameters, checked by the same
/// parser.
#[derive(Debug, Args)]
struct FinetuneArgs {
    /// Workspace slug.
    #[arg(long)]
    workspace: Option<String>,
    /// Output file [default: standard output].
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Only these statuses (comma-separated).
    #[arg(long)]
    status: Option<String>,
    /// Only these channels (comma-separated).
    #[arg(long)]
    channel: Option<String>,
    /// Only these assistants (comma-separated ids).
    #[arg(long)]
    assistant: Option<String>,
    /// Only conversations rated at least this (1-5).
    #[arg(long)]
    min_rating: Option<String>,
    /// Only these outcomes (comma-separated: resolved_by_ai, handed_off, unresolved, ongoing).
    #[arg(long)]
    resolution: Option<String>,
    /// Only these sentiments (comma-separated).
    #[arg(long)]
    sentiment: Option<String>,
    /// Only conversations containing this text.
    #[arg(long)]
    q: Option<String>,
    /// Only conversations dated at or after this (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    from: Option<String>,
    /// Only conversations dated before this (RFC 3339, or YYYY-MM-DD inclusive).
    #[arg(long)]
    to: Option<String>,
    /// The order of the examples, as the list's `sort` (default `-date`).
    #[arg(long)]
    sort: Option<String>,
    /// Only conversations with a team reply.
    #[arg(long)]
    has_team_replies: bool,
    /// Train on team replies only (weight 0 on the AI's turns, 1 on the team's).
    #[arg(long)]
    team_replies_only: bool,
    /// Keep tool calls and results.
    #[arg(long)]
    keep_tools: bool,
    /// Write personal data as it is (redaction is on by default).
    #[arg(long)]
    no_redact: bool,
}

impl FinetuneArgs {
    /// The flags as the API's query string.
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("channel", &self.channel),
            ("assistant", &self.assistant),
            ("min_rating", &self.min_rating),
            ("resolution", &self.resolution),
            ("sentiment", &self.sentiment),
            ("q", &self.q),
            ("from", &self.from),
            ("to", &self.to),
            ("sort", &self.sort),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        if self.has_team_replies {
            q.append_pair("has_team_replies", "true");
        }
        if self.team_replies_only {
            q.append_pair("train_on", "team");
        }
        if self.keep_tools {
            q.append_pair("tools", "keep");
        }
        q.append_pair("redact", if self.no_redact { "false" } else { "true" });
        q.finish()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// Parley's conversation JSONL (re-importable).
    Jsonl,
    /// One CSV row per conversation.
    Csv,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it (only now: it is stored hashed).
    Create {
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// Workspace slug.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        /// Workspace slug.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key's id (from `keys list`).
        id: parley_core::ApiKeyId,
        /// Workspace slug.
        #[arg(long)]
        workspace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user who signs in to the dashboard with email and password.
    Create {
        /// Sign-in email.
        #[arg(long)]
        email: String,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// `admin` (may also delete conversations) or `member` (reviews).
        #[arg(long, default_value = "member")]
        role: parley_core::UserRole,
        /// Workspace slug.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// List the workspace's users.
    List {
        /// Workspace slug.
        #[arg(long)]
        workspace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum WorkspacesCommand {
    /// Create a workspace.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// URL-safe name [default: from the name].
        #[arg(long)]
        slug: Option<String>,
    },
    /// List workspaces.
    List,
}

/// Parses the command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. });
    let format = cli
        .global
        .log_format
        .or_else(|| {
            cli.global
                .config
                .as_deref()
                .and_then(crate::config::file_log_format)
        })
        .unwrap_or_default();
    init_logging(serving, format);
    block_on(run(cli))
}

/// Installs the TLS provider, runs `work` on a multi-threaded tokio runtime and turns its
/// outcome into the process's exit code (an error printed as `error: ...` on standard error).
/// Shared by `parley` and `parley-bench`.
pub fn block_on(work: impl std::future::Future<Output = Result<(), BoxError>>) -> ExitCode {
    crate::assistant::provider::install_tls();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(serving: bool, format: crate::config::LogFormat) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Text => logs.try_init(),
        // One object per line; `span` carries the request's id, path and client.
        crate::config::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Turns a display name into a slug: lowercase ASCII letters and digits, `-` between words.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

async fn migrate_store(from: &str, to: &str, workspace: Option<&str>) -> Result<(), BoxError> {
    let source = parley_store::open(from).await?;
    let target = parley_store::open(to).await?;
    eprintln!(
        "Copying from {} to {}…",
        parley_store::redact_url(from),
        parley_store::redact_url(to)
    );
    let started = std::time::Instant::now();
    let report = crate::migrate_store::migrate(source.as_ref(), target.as_ref(), workspace, |n| {
        eprint!("\r  {n} conversations");
    })
    .await?;
    eprintln!();
    println!(
        "Workspace {:?}: {} assistants, {} users, {} API keys; {} conversations copied ({} already there), {} messages, in {:.1} s.",
        report.workspace,
        report.assistants,
        report.users,
        report.api_keys,
        report.conversations_copied,
        report.conversations_present,
        report.messages_copied,
        started.elapsed().as_secs_f64()
    );
    println!(
        "Conversations: source {}, target {}.",
        report.totals.0, report.totals.1
    );
    println!(
        "SHA-256 source {}\nSHA-256 target {}",
        report.digests.0, report.digests.1
    );
    if !report.verified() {
        return Err("verification FAILED: the target differs from the source".into());
    }
    println!("Verified: the target holds exactly the source's conversations.");
    Ok(())
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    if let Command::MigrateStore {
        from,
        to,
        workspace,
    } = &cli.command
    {
        return migrate_store(from, to, workspace.as_deref()).await;
    }
    let mut overrides = Overrides::default();
    if let Command::Serve {
        listen,
        secure_cookies,
        trusted_proxies,
        forwarded_header,
        metrics_token,
        metrics_listen,
        allow_private_networks,
    } = &cli.command
    {
        overrides = Overrides {
            listen: *listen,
            secure_cookies: *secure_cookies,
            trusted_proxies: trusted_proxies.clone(),
            forwarded_header: *forwarded_header,
            metrics_token: metrics_token.clone(),
            metrics_listen: *metrics_listen,
            allow_private_networks: *allow_private_networks,
            ..overrides
        };
    }
    let g = cli.global;
    if let Command::Restore { input, force } = &cli.command {
        let dir = g
            .data_dir
            .ok_or("parley restore needs --data-dir DIR (the directory to restore into)")?;
        let m = crate::backup::restore(input, &dir, *force)?;
        print_manifest("Restored", &m);
        println!("Start it with: parley serve --data-dir {}", dir.display());
        return Ok(());
    }
    let settings = Settings::resolve(Overrides {
        config: g.config,
        data_dir: g.data_dir,
        database_url: g.database_url,
        price_table: g.price_table,
        secret_key: g.secret_key,
        log_format: g.log_format,
        ..overrides
    })?;
    if let Command::Backup { output } = &cli.command {
        let (settings, output) = (settings.clone(), output.clone());
        let m = tokio::task::spawn_blocking(move || crate::backup::backup(&settings, &output))
            .await??;
        print_manifest("Backed up", &m);
        return Ok(());
    }
    if let Command::Audio {
        command: AudioCommand::Backfill,
    } = &cli.command
    {
        let root = settings.data_dir.join("attachments");
        let (written, skipped) = if root.is_dir() {
            crate::peaks::backfill(&root).await?
        } else {
            (0, 0)
        };
        println!("Waveforms computed: {written}; files that are not decodable audio: {skipped}.");
        return Ok(());
    }
    if settings.database_url.starts_with("sqlite") {
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
            format!(
                "cannot create data directory {}: {e}",
                settings.data_dir.display()
            )
        })?;
    }
    let state = AppState::open(settings).await?;
    let store = state.store.as_ref();
    match cli.command {
        Command::Serve { .. } => serve(state).await,
        Command::Migrate => {
            println!(
                "Database schema is up to date ({}).",
                parley_store::redact_url(&state.settings.database_url)
            );
            Ok(())
        }
        Command::Import {
            format,
            workspace,
            channel,
            assistant,
            company,
            from_line,
            paths,
        } => {
            let ws = select_workspace(store, workspace.as_deref()).await?;
            let job = ImportJob {
                paths,
                sgd: matches!(format, ImportFormat::Sgd),
                sgd_options: SgdOptions {
                    channel,
                    assistant,
                    company,
                },
                from_line,
            };
            eprintln!("Importing into workspace {:?}…", ws.slug);
            crate::import::run(&state, ws.id, &job).await?;
            Ok(())
        }
        Command::Analyse { workspace } => analyse(store, workspace.as_deref()).await,
        Command::Export {
            format,
            workspace,
            output,
            status,
            channel,
            q,
            from,
            to,
            what,
        } => match what {
            Some(ExportCommand::Finetune(args)) => export_finetune(&state, &args).await,
            None => {
                let filter = export_filter(status, channel, q, from, to)?;
                let ws = select_workspace(store, workspace.as_deref()).await?;
                let format = match format {
                    ExportFormat::Jsonl => Format::Jsonl,
                    ExportFormat::Csv => Format::Csv,
                };
                let stream = export_stream(state.store.clone(), ws.id, filter, format);
                write_stream(output.as_deref(), stream).await
            }
        },
        Command::Keys { command } => keys(store, command).await,
        Command::Workspaces { command } => workspaces(store, command).await,
        Command::Users { command } => users(store, command).await,
        Command::MigrateStore { .. } => unreachable!("handled before the store is opened"),
        Command::Retention {
            command: RetentionCommand::Run { workspace, dry_run },
        } => retention_run(&state, workspace.as_deref(), dry_run).await,
        Command::Backup { .. } | Command::Restore { .. } | Command::Audio { .. } => {
            unreachable!("handled before the store is opened")
        }
    }
}

/// `parley analyse [--workspace SLUG]`: the analyser's pass over one workspace or every one,
/// with a progress line on stderr and the rate (conversations/s) on stdout.
async fn analyse(store: &dyn Store, workspace: Option<&str>) -> Result<(), BoxError> {
    let targets = match workspace {
        Some(slug) => vec![select_workspace(store, Some(slug)).await?],
        None => store.workspaces().list_workspaces().await?,
    };
    for ws in targets {
        let started = std::time::Instant::now();
        let rate = |n: u64| n as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let n = crate::insights::analyse_stale(store, ws.id, |n| {
            eprint!(
                "\r{}: analysed {n} conversations ({:.0}/s)",
                ws.slug,
                rate(n)
            );
        })
        .await?;
        if n > 0 {
            eprintln!();
        }
        println!(
            "{}: {n} conversations analysed in {:.2} s ({:.0}/s)",
            ws.slug,
            started.elapsed().as_secs_f64(),
            rate(n)
        );
    }
    Ok(())
}

/// `parley export finetune`: the fine-tuning set of the workspace to `--output` or stdout.
async fn export_finetune(state: &AppState, args: &FinetuneArgs) -> Result<(), BoxError> {
    let ws = select_workspace(state.store.as_ref(), args.workspace.as_deref()).await?;
    let options = crate::api::parse_finetune(Some(&args.query()))
        .map_err(|e| -> BoxError { e.message.into() })?;
    let stream = crate::export::finetune::finetune_stream(state.store.clone(), ws.id, options);
    write_stream(args.output.as_deref(), stream).await
}

/// The list filter of `parley export`'s flags (`--from` / `--to` as the API's bounds:
/// RFC 3339 or `YYYY-MM-DD`, `--to` a day's end). Errors: a bound that does not parse.
fn export_filter(
    statuses: Vec<ConversationStatus>,
    channels: Vec<Channel>,
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> Result<ConversationFilter, BoxError> {
    let bound = |v: Option<String>, end: bool| -> Result<Option<Timestamp>, BoxError> {
        v.map(|v| Timestamp::parse_bound(&v, end).map_err(|e| e.to_string().into()))
            .transpose()
    };
    Ok(ConversationFilter {
        statuses,
        channels,
        q: q.filter(|q| !q.trim().is_empty())
            .map(|q| q.trim().to_owned()),
        from: bound(from, false)?,
        to: bound(to, true)?,
        ..Default::default()
    })
}

/// Writes an export's chunks to `output` (a file, created or truncated) or to stdout.
async fn write_stream<S, B, E>(output: Option<&std::path::Path>, stream: S) -> Result<(), BoxError>
where
    S: futures_util::Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: Into<BoxError>,
{
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut stream = Box::pin(stream);
    while let Some(chunk) = stream.next().await {
        out.write_all(chunk.map_err(Into::into)?.as_ref())?;
    }
    out.flush()?;
    Ok(())
}

/// `parley retention run [--workspace SLUG] [--dry-run]`: each workspace's policy (or only
/// that workspace's), with what it deleted (or would delete) per workspace on stdout.
async fn retention_run(
    state: &AppState,
    workspace: Option<&str>,
    dry_run: bool,
) -> Result<(), BoxError> {
    let store = state.store.as_ref();
    let targets = match workspace {
        Some(slug) => vec![select_workspace(store, Some(slug)).await?],
        None => {
            let with = store.retention().workspaces_with_retention().await?;
            store
                .workspaces()
                .list_workspaces()
                .await?
                .into_iter()
                .filter(|w| with.contains(&w.id))
                .collect()
        }
    };
    if targets.is_empty() {
        println!("No workspace has a retention policy.");
    }
    for ws in targets {
        let run = crate::retention::run(state, ws.id, dry_run, "cli", true).await?;
        let c = run.counts;
        println!(
            "{}: {} {} conversations ({} messages), files of {} messages ({} files in all), {} tracker items, {} tracker sessions",
            ws.slug,
            if dry_run { "would delete" } else { "deleted" },
            c.conversations,
            c.messages,
            c.attachment_messages,
            c.attachment_files,
            c.tracker_items,
            c.tracker_sessions
        );
    }
    Ok(())
}

fn print_manifest(what: &str, m: &crate::backup::Manifest) {
    let conversations: u64 = m.workspaces.iter().map(|w| w.conversations).sum();
    println!(
        "{what}: database of {} (SHA-256 {}, {} bytes, {} conversations in {} workspaces), {} attachments ({} bytes){}.",
        m.created_at,
        m.database.sha256,
        m.database.bytes,
        conversations,
        m.workspaces.len(),
        m.attachments.files,
        m.attachments.bytes,
        if m.secret_key { ", the secret key" } else { "" }
    );
}

async fn keys(store: &dyn Store, command: KeysCommand) -> Result<(), BoxError> {
    match command {
        KeysCommand::Create { name, workspace } => {
            let ws = select_workspace(store, workspace.as_deref()).await?;
            let name = name.trim();
            if name.is_empty() {
                return Err("--name must not be empty".into());
            }
            let key = crate::auth::generate_api_key()?;
            let record = store
                .workspaces()
                .create_api_key(ws.id, name, &key.prefix, key.hash)
                .await?;
            println!(
                "Created API key {:?} (id {}) for workspace {:?}.",
                record.name, record.id, ws.slug
            );
            println!(
                "It is shown only now; store it safely. Use it as `Authorization: Bearer <key>`."
            );
            println!("{}", key.secret);
            Ok(())
        }
        KeysCommand::List { workspace } => {
            let ws = select_workspace(store, workspace.as_deref()).await?;
            for k in store.workspaces().list_api_keys(ws.id).await? {
                let state = match k.revoked_at {
                    Some(t) => format!("revoked {t}"),
                    None => "active".into(),
                };
                println!(
                    "{}  {}…  {:<20}  created {}  {}",
                    k.id, k.prefix, k.name, k.created_at, state
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { id, workspace } => {
            let ws = select_workspace(store, workspace.as_deref()).await?;
            store.workspaces().revoke_api_key(ws.id, id).await?;
            println!("Revoked API key {id}.");
            Ok(())
        }
    }
}

async fn users(store: &dyn Store, command: UsersCommand) -> Result<(), BoxError> {
    match command {
        UsersCommand::Create {
            email,
            password_stdin: _,
            role,
            workspace,
        } => {
            let ws = select_workspace(store, workspace.as_deref()).await?;
            let email = email.trim().to_lowercase();
            if !email.contains('@') || email.len() > 254 {
                return Err(format!("{email:?} is not an email address").into());
            }
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
                .await??;
            let user = store.auth().create_user(ws.id, &email, &hash, role).await?;
            println!(
                "Created {} {} in workspace {:?}. Sign in at /login.",
                user.role, user.email, ws.slug
            );
            Ok(())
        }
        UsersCommand::List { workspace } => {
            let ws = select_workspace(store, workspace.as_deref()).await?;
            for u in store.auth().list_users(ws.id).await? {
                println!("{:<40} {:<7} created {}", u.email, u.role, u.created_at);
            }
            Ok(())
        }
    }
}

async fn workspaces(store: &dyn Store, command: WorkspacesCommand) -> Result<(), BoxError> {
    match command {
        WorkspacesCommand::Create { name, slug } => {
            let slug = slug.unwrap_or_else(|| slugify(&name));
            if slug.is_empty() || slug != slugify(&slug) {
                return Err(
                    format!("invalid slug {slug:?}: use lowercase letters, digits and -").into(),
                );
            }
            let ws = store
                .workspaces()
                .create_workspace(&slug, name.trim())
                .await?;
            println!(
                "Created workspace {:?} ({}), id {}.",
                ws.slug, ws.name, ws.id
            );
            Ok(())
        }
        WorkspacesCommand::List => {
            for ws in store.workspaces().list_workspaces().await? {
                let total = store.conversations().conversation_total(ws.id).await?;
                println!(
                    "{:<20} {:<30} {:>10} conversations  id {}",
                    ws.slug, ws.name, total, ws.id
                );
            }
            Ok(())
        }
    }
}

async fn serve(state: AppState) -> Result<(), BoxError> {
    let ws = select_workspace(state.store.as_ref(), None).await.ok();
    let addr = state.settings.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        database = %parley_store::redact_url(&state.settings.database_url),
        prices = state.prices.len(),
        "Parley is listening on http://{}",
        listener.local_addr()?
    );
    if let Some(ws) = ws
        && state
            .store
            .workspaces()
            .list_api_keys(ws.id)
            .await?
            .is_empty()
    {
        tracing::info!("no API key yet: create one with `parley keys create --name NAME`");
    }
    crate::assistant::log_legacy_providers(&state).await;
    let metrics = match state.settings.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (metrics_listen): {e}"))?;
            tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(crate::serve_metrics(state.clone(), listener, async {
                let _ = stopped.await;
            }));
            Some((stop, task))
        }
        None => None,
    };
    crate::serve(state, listener, shutdown_signal()).await?;
    if let Some((stop, task)) = metrics {
        let _ = stop.send(());
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        assert_eq!(super::slugify("Acme Inc."), "acme-inc");
        assert_eq!(super::slugify("  Über  Team 2 "), "ber-team-2");
    }
}
