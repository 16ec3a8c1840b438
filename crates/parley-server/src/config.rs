//! Settings. Each value comes from, in order of precedence: a command-line flag, a `PARLEY_*`
//! environment variable (both handled by clap), the TOML file given with `--config` /
//! `PARLEY_CONFIG`, and finally the built-in default. `parley serve` therefore needs no
//! configuration at all: data in `./parley-data`, SQLite inside it, listening on
//! 127.0.0.1:8080.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use parley_core::assistant::{OperatorProviders, check_base_url};
use serde::Deserialize;

use crate::client_addr::{ForwardedHeader, TrustedProxies};

/// Settings as the TOML file may give them (every key optional).
///
/// ```toml
/// listen = "0.0.0.0:8080"
/// data_dir = "/var/lib/parley"
/// database_url = "sqlite:///var/lib/parley/parley.db"
/// price_table = "/etc/parley/prices.json"
/// max_body_bytes = 16777216
/// max_import_bytes = 268435456
/// secure_cookies = true
/// secret_key = "base64 of 32 random bytes"   # seals provider keys; see `secrets`
/// provider_timeout_secs = 60                   # LLM provider: longest wait for an answer or chunk
/// geoip_db = "/var/lib/GeoIP/GeoLite2-City.mmdb" # widget visitors' country and city (optional)
/// trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"] # peers whose X-Forwarded-For is believed
/// forwarded_header = "x-forwarded-for"         # or "forwarded" (RFC 7239)
/// metrics_token = "a long random string"       # GET /metrics with Authorization: Bearer ...
/// metrics_listen = "127.0.0.1:9090"            # or: /metrics on its own address
/// log_format = "json"                          # or "text" (the default)
/// sqlite_wal_max_bytes = 67108864              # SQLite write-ahead log cap (64 MiB)
///
/// # Outgoing requests to URLs workspaces give (see `crate::net`): private networks are refused
/// # unless allowed here, wholesale or per URL prefix.
/// allow_private_networks = false
/// allowed_private_urls = ["http://10.0.0.5:11434"]
/// # Where ownership of a connected number or bot is proven, and the default API of connections.
/// whatsapp_graph_base_url = "https://graph.facebook.com/v21.0"
/// telegram_api_base_url = "https://api.telegram.org"
/// messenger_graph_base_url = "https://graph.facebook.com/v21.0"
/// messenger_media_hosts = ["fbcdn.net", "fbsbx.com"]  # hosts Messenger attachments are fetched from
/// attachment_quota_bytes = 5368709120         # per workspace: voice notes, images, documents; 0 = none
/// # The address the world reaches this server at; Twilio's signatures cover it (see
/// # `crate::channels::voip::twilio`). Without it, Twilio webhooks are refused.
/// public_base_url = "https://parley.example.com"
/// twilio_api_base_url = "https://api.twilio.com"  # recordings here are fetched with the account's credentials
///
/// [jobs]                  # background work (see `crate::jobs`)
/// workers = 4             # jobs one server runs at once
/// lease_ms = 30000        # a claimed job is free again this long after its server went silent
/// retry_first_ms = 5000   # wait before a failed job's first retry; doubles each time
/// retry_max_ms = 3600000  # longest wait between retries
///
/// [webhooks]              # outgoing webhooks (see `crate::webhooks`)
/// timeout_ms = 10000      # longest wait for an endpoint's answer
/// retry_window_ms = 86400000  # retries stop this long after the event (then `failed`)
/// retry_first_ms = 5000   # wait before the first retry; doubles each time, with jitter
/// retry_max_ms = 3600000  # longest wait between retries
///
/// # LLM providers workspaces may pick by name; URL and key stay the operator's.
/// [providers.openai]
/// base_url = "https://api.openai.com/v1"
/// api_key_env = "OPENAI_API_KEY"
/// models = ["gpt-4o-mini", "gpt-4o"]
/// default_model = "gpt-4o-mini"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Database URL.
    pub database_url: Option<String>,
    /// Price table override file (LiteLLM format).
    pub price_table: Option<PathBuf>,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Largest `POST /api/v1/import` body, in bytes.
    pub max_import_bytes: Option<usize>,
    /// Mark cookies `Secure` (serve the dashboard over HTTPS, e.g. behind a TLS proxy).
    pub secure_cookies: Option<bool>,
    /// The key that seals stored secrets (base64 of 32 bytes); see [`crate::secrets`].
    pub secret_key: Option<String>,
    /// Longest wait for an LLM provider's answer, or between two streamed chunks, in seconds.
    pub provider_timeout_secs: Option<u64>,
    /// A GeoIP database (MaxMind or DB-IP `.mmdb`, City or Country edition) for the widget
    /// tracker's country and city.
    pub geoip_db: Option<PathBuf>,
    /// Reverse proxies (CIDR ranges or addresses) whose forwarding header is believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// The forwarding header those proxies write.
    pub forwarded_header: Option<ForwardedHeader>,
    /// Bearer token that `GET /metrics` requires.
    pub metrics_token: Option<String>,
    /// A separate address that serves only `GET /metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// `text` or `json` logs.
    pub log_format: Option<LogFormat>,
    /// SQLite: the write-ahead log's cap, in bytes.
    pub sqlite_wal_max_bytes: Option<u64>,
    /// The `[jobs]` table: the background worker (see [`JobSettings`]).
    pub jobs: Option<FileJobSettings>,
    /// The `[events]` table: the live event log (see [`EventSettings`]).
    pub events: Option<FileEventSettings>,
    /// The `[webhooks]` table: outgoing webhooks (see [`WebhookSettings`]).
    pub webhooks: Option<FileWebhookSettings>,
    /// The operator's LLM providers by name (see [`OperatorProvider`]).
    pub providers: Option<OperatorProviders>,
    /// Let outgoing requests to workspace-given URLs reach loopback and private networks.
    pub allow_private_networks: Option<bool>,
    /// URL prefixes workspace-given URLs may reach whatever their address.
    pub allowed_private_urls: Option<Vec<String>>,
    /// The Graph API that proves WhatsApp ownership and serves connections without their own.
    pub whatsapp_graph_base_url: Option<String>,
    /// The Bot API that proves Telegram ownership and serves connections without their own.
    pub telegram_api_base_url: Option<String>,
    /// The Graph API that proves a Messenger Page's ownership and receives its sends.
    pub messenger_graph_base_url: Option<String>,
    /// Host names (and their subdomains) Messenger attachment URLs are downloaded from.
    pub messenger_media_hosts: Option<Vec<String>>,
    /// Most bytes of attachments (widget voice messages, WhatsApp and Telegram media) one
    /// workspace may store; 0 for no quota.
    pub attachment_quota_bytes: Option<u64>,
    /// The URL the world reaches this server at (`https://parley.example.com`).
    pub public_base_url: Option<String>,
    /// Twilio's REST API, whose recording URLs are fetched with the connection's credentials.
    pub twilio_api_base_url: Option<String>,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format): `timestamp`, `level`,
    /// `fields.message` and the other fields, `target`, and `span` with the request's
    /// `request_id`, `method`, `path` and `client`.
    Json,
}

/// The log format a settings file asks for, if it can be read (for setting up logging before
/// the rest of the settings are resolved; [`Settings::resolve`] reports a bad file).
pub fn file_log_format(path: &Path) -> Option<LogFormat> {
    read_file(path).ok().and_then(|f| f.log_format)
}

/// The `[jobs]` table of the TOML file (every key optional; times in ms).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJobSettings {
    /// Jobs one server runs at once.
    pub workers: Option<usize>,
    /// How long a claimed job stays its server's without a heartbeat, in ms.
    pub lease_ms: Option<u64>,
    /// Wait before a failed job's first retry, in ms.
    pub retry_first_ms: Option<u64>,
    /// Longest wait between retries, in ms.
    pub retry_max_ms: Option<u64>,
    /// Run the background insights analyser (default true; see [`crate::insights`]).
    pub insights: Option<bool>,
}

/// The `[events]` table of the TOML file (times in ms).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEventSettings {
    /// How long events stay in the log for `Last-Event-ID` resumes, in ms.
    pub retention_ms: Option<u64>,
    /// The shared event reader's wait per event its last read found, in ms (see
    /// [`EventSettings::read_every`]).
    pub read_every_ms: Option<u64>,
    /// The shared event reader's longest wait between two reads, in ms (see
    /// [`EventSettings::read_every_max`]).
    pub read_every_max_ms: Option<u64>,
}

/// The live event log (see [`crate::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// How long an event stays resumable (default 1 h, 1 min to 30 days); older events are
    /// pruned, and a resume from before the pruned ones answers 410 `events_expired`.
    pub retention: std::time::Duration,
    /// The shared event reader's pacing (see [`crate::events`]): after a read that found `n`
    /// events the next waits until `read_every × n` after it (default 10 ms, 0 to 1 s; 0
    /// reads at every commit), at least `read_every` and at most [`Self::read_every_max`]. A
    /// quiet log is read at once; a busy one is fanned out to the listeners in fewer, larger
    /// batches.
    pub read_every: std::time::Duration,
    /// The longest wait between two reads of the shared event reader (default 25 ms, 0 to
    /// 5 s): how much later than at once an event may reach the listeners of a busy log.
    pub read_every_max: std::time::Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings::from_file(None)
    }
}

impl EventSettings {
    fn from_file(f: Option<&FileEventSettings>) -> EventSettings {
        let ms = f
            .and_then(|f| f.retention_ms)
            .unwrap_or(3_600_000)
            .clamp(60_000, 30 * 86_400_000);
        let every = f.and_then(|f| f.read_every_ms).unwrap_or(10).min(1_000);
        let max = f.and_then(|f| f.read_every_max_ms).unwrap_or(25).min(5_000);
        EventSettings {
            retention: std::time::Duration::from_millis(ms),
            read_every: std::time::Duration::from_millis(every),
            read_every_max: std::time::Duration::from_millis(max),
        }
    }
}

/// The `[webhooks]` table of the TOML file (every key optional; times in ms).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhookSettings {
    /// Longest wait for an endpoint's answer, in ms.
    pub timeout_ms: Option<u64>,
    /// How long after the event attempts go on, in ms.
    pub retry_window_ms: Option<u64>,
    /// Wait before the first retry, in ms.
    pub retry_first_ms: Option<u64>,
    /// Longest wait between retries, in ms.
    pub retry_max_ms: Option<u64>,
}

/// How outgoing webhooks are sent (see [`crate::webhooks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Longest wait for an endpoint's answer, headers and body (default 10 s, 1 s to 60 s).
    /// An attempt that takes longer counts as failed.
    pub timeout: std::time::Duration,
    /// Attempts go on until this long after the event was taken (default 24 h, 1 s to 7
    /// days); then the delivery is `failed`. "Send again" gives it the same window again.
    pub retry_window: std::time::Duration,
    /// Wait before the first retry (default 5 s, at least 10 ms); doubled each retry, with
    /// jitter.
    pub retry_first: std::time::Duration,
    /// Longest wait between two attempts (default 1 h, at least `retry_first`).
    pub retry_max: std::time::Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings::from_file(None)
    }
}

impl WebhookSettings {
    fn from_file(f: Option<&FileWebhookSettings>) -> WebhookSettings {
        use std::time::Duration;
        let ms = |v: Option<u64>, default: u64, min: u64, max: u64| {
            Duration::from_millis(v.unwrap_or(default).clamp(min, max))
        };
        let retry_first = ms(f.and_then(|f| f.retry_first_ms), 5_000, 10, 86_400_000);
        WebhookSettings {
            timeout: ms(f.and_then(|f| f.timeout_ms), 10_000, 1_000, 60_000),
            retry_window: ms(
                f.and_then(|f| f.retry_window_ms),
                86_400_000,
                1_000,
                7 * 86_400_000,
            ),
            retry_first,
            retry_max: ms(f.and_then(|f| f.retry_max_ms), 3_600_000, 10, 86_400_000)
                .max(retry_first),
        }
    }
}

/// How the background worker runs (see [`crate::jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// Jobs one server runs at once (default 4, 1 to 64).
    pub workers: usize,
    /// A claimed job is renewed every third of this while it runs; a server that stops renewing
    /// (it died) loses its jobs to another server (or to its own restart) after it (default
    /// 30 s, 1 s to 10 min).
    pub lease: std::time::Duration,
    /// Wait before a failed job's first retry (default 5 s, at least 10 ms); doubled each
    /// retry, with jitter.
    pub retry_first: std::time::Duration,
    /// Longest wait between two retries (default 1 h, at least `retry_first`).
    pub retry_max: std::time::Duration,
    /// Keep every conversation's insights current in the background (default true; see
    /// [`crate::insights`]). Off, only `parley analyse` computes them.
    pub insights: bool,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings::from_file(None)
    }
}

impl JobSettings {
    fn from_file(f: Option<&FileJobSettings>) -> JobSettings {
        use std::time::Duration;
        let ms = |v: Option<u64>, default: u64, min: u64, max: u64| {
            Duration::from_millis(v.unwrap_or(default).clamp(min, max))
        };
        let retry_first = ms(f.and_then(|f| f.retry_first_ms), 5_000, 10, 86_400_000);
        JobSettings {
            workers: f.and_then(|f| f.workers).unwrap_or(4).clamp(1, 64),
            lease: ms(f.and_then(|f| f.lease_ms), 30_000, 1_000, 600_000),
            retry_first,
            retry_max: ms(f.and_then(|f| f.retry_max_ms), 3_600_000, 10, 86_400_000)
                .max(retry_first),
            insights: f.and_then(|f| f.insights).unwrap_or(true),
        }
    }
}

/// Values given on the command line or in the environment (clap fills these).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config` / `PARLEY_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--listen` / `PARLEY_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir` / `PARLEY_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--database` / `PARLEY_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--price-table` / `PARLEY_PRICE_TABLE`.
    pub price_table: Option<PathBuf>,
    /// `--secure-cookies` / `PARLEY_SECURE_COOKIES`.
    pub secure_cookies: Option<bool>,
    /// `--secret-key` / `PARLEY_SECRET_KEY`.
    pub secret_key: Option<String>,
    /// `--trusted-proxies` / `PARLEY_TRUSTED_PROXIES` (comma-separated).
    pub trusted_proxies: Option<Vec<String>>,
    /// `--forwarded-header` / `PARLEY_FORWARDED_HEADER`.
    pub forwarded_header: Option<ForwardedHeader>,
    /// `--metrics-token` / `PARLEY_METRICS_TOKEN`.
    pub metrics_token: Option<String>,
    /// `--metrics-listen` / `PARLEY_METRICS_LISTEN`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--log-format` / `PARLEY_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--allow-private-networks` / `PARLEY_ALLOW_PRIVATE_NETWORKS`.
    pub allow_private_networks: Option<bool>,
}

/// The resolved settings.
#[derive(Clone)]
pub struct Settings {
    /// Address the HTTP server listens on (default 127.0.0.1:8080).
    pub listen: SocketAddr,
    /// Where Parley keeps its files (default `./parley-data`).
    pub data_dir: PathBuf,
    /// `sqlite://PATH` (default `sqlite://<data_dir>/parley.db`).
    pub database_url: String,
    /// An operator's price table, merged over the built-in one.
    pub price_table: Option<PathBuf>,
    /// Largest JSON request body, in bytes (default 16 MiB).
    pub max_body_bytes: usize,
    /// Largest import body, in bytes (default 256 MiB).
    pub max_import_bytes: usize,
    /// Send cookies with the `Secure` attribute (default false: plain HTTP on localhost works).
    pub secure_cookies: bool,
    /// The configured secret key (base64), if any; otherwise `<data_dir>/secret.key` is used.
    pub secret_key: Option<String>,
    /// Longest wait for an LLM provider's answer or next streamed chunk (default 60 s).
    pub provider_timeout: std::time::Duration,
    /// The GeoIP database file (`.mmdb`), if any (see [`crate::widget::tracker::GeoIp`]).
    pub geoip_db: Option<PathBuf>,
    /// Peers whose forwarding header names the client (default none; see
    /// [`crate::client_addr`]).
    pub trusted_proxies: TrustedProxies,
    /// The forwarding header the trusted proxies write (default `X-Forwarded-For`).
    pub forwarded_header: ForwardedHeader,
    /// The bearer token `GET /metrics` requires, if set (see [`crate::metrics`]).
    pub metrics_token: Option<String>,
    /// The address that serves `GET /metrics` alone, if set; then the main listener does not.
    /// With neither this nor a token, `/metrics` is not served.
    pub metrics_listen: Option<SocketAddr>,
    /// `text` (default) or `json` log lines.
    pub log_format: LogFormat,
    /// SQLite: the write-ahead log's cap in bytes (default 64 MiB; at least 1 MiB).
    pub sqlite_wal_max_bytes: u64,
    /// The background worker (`[jobs]`).
    pub jobs: JobSettings,
    /// The live event log (`[events]`).
    pub events: EventSettings,
    /// Outgoing webhooks (`[webhooks]`).
    pub webhooks: WebhookSettings,
    /// The operator's LLM providers, by name (default: none). Workspaces pick one by name;
    /// its URL and key are never theirs to choose or see.
    pub providers: OperatorProviders,
    /// What outgoing requests to workspace-given URLs may reach (see [`crate::net`]).
    pub network: NetworkSettings,
    /// The Graph API base Parley trusts (default `https://graph.facebook.com/v21.0`): WhatsApp
    /// ownership is proven there, and connections without a `graph_base_url` use it.
    pub whatsapp_graph_base_url: String,
    /// The Bot API base Parley trusts (default `https://api.telegram.org`): Telegram ownership
    /// is proven there, and connections without an `api_base_url` use it.
    pub telegram_api_base_url: String,
    /// The Graph API base Parley trusts for Messenger (default
    /// `https://graph.facebook.com/v21.0`): a Page's ownership is proven there
    /// (`GET /me` with the Page access token) and every Send API call goes there.
    pub messenger_graph_base_url: String,
    /// The hosts a Messenger attachment's `payload.url` may name, each matching itself and
    /// its subdomains (default [`DEFAULT_MESSENGER_MEDIA_HOSTS`], Meta's CDNs). A URL on any
    /// other host (a shared link, a forged payload) is recorded, never fetched; the fetch
    /// itself still goes through the guarded client ([`crate::net`]).
    pub messenger_media_hosts: Vec<String>,
    /// Most bytes of attachments one workspace may store (default
    /// [`DEFAULT_ATTACHMENT_QUOTA_BYTES`]; 0 = no quota). See [`crate::channels::media`] for
    /// what happens at the quota.
    pub attachment_quota_bytes: u64,
    /// The URL the world reaches this server at (`https://parley.example.com`, no trailing
    /// slash; default none). Twilio signs the URL it calls, so a Twilio webhook's signature is
    /// checked against `{public_base_url}{path and query}`, never against the request's
    /// `Host` header (which a proxy may rewrite and a sender may forge); without it, Twilio
    /// webhooks answer 503 `public_base_url_missing`.
    pub public_base_url: Option<String>,
    /// Twilio's REST API (default `https://api.twilio.com`): a call recording whose URL has
    /// this scheme, host and port is downloaded with HTTP basic auth (the connection's account
    /// SID and auth token); a recording anywhere else is fetched without credentials.
    pub twilio_api_base_url: String,
}

/// Which addresses outgoing requests to workspace-given URLs may reach (provider base URLs
/// of workspaces' own providers, channel API URLs, media downloads). Loopback, private,
/// link-local, metadata and reserved addresses are refused unless allowed here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSettings {
    /// Allow loopback and private networks (10/8, 172.16/12, 192.168/16, 100.64/10, 127/8,
    /// fc00::/7, ::1), e.g. for a local Ollama or vLLM. Link-local, cloud metadata and
    /// reserved addresses stay refused. Default false.
    pub allow_private_networks: bool,
    /// URL prefixes (`http://10.0.0.5:11434`) that may be reached whatever their address:
    /// same scheme, host and port, and a path under the prefix's path. Checked with
    /// [`parley_core::assistant::check_base_url`] when the settings are read.
    pub allowed_private_urls: Vec<String>,
}

/// Where Messenger attachments are served from by default: Meta's CDNs (`scontent.xx.fbcdn.net`
/// for images, audio and video; `cdn.fbsbx.com` for files).
pub const DEFAULT_MESSENGER_MEDIA_HOSTS: &[&str] = &["fbcdn.net", "fbsbx.com"];

/// The default attachment quota per workspace: 5 GiB (about 40,000 two-minute voice messages,
/// or a few thousand photos and documents).
pub const DEFAULT_ATTACHMENT_QUOTA_BYTES: u64 = 5 * 1024 * 1024 * 1024;

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &parley_store::redact_url(&self.database_url),
            )
            .field("price_table", &self.price_table)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_import_bytes", &self.max_import_bytes)
            .field("secure_cookies", &self.secure_cookies)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "(set)"))
            .field("provider_timeout", &self.provider_timeout)
            .field("geoip_db", &self.geoip_db)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_header", &self.forwarded_header)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "(set)"),
            )
            .field("metrics_listen", &self.metrics_listen)
            .field("log_format", &self.log_format)
            .field("sqlite_wal_max_bytes", &self.sqlite_wal_max_bytes)
            .field("jobs", &self.jobs)
            .field("webhooks", &self.webhooks)
            .field("providers", &self.providers)
            .field("network", &self.network)
            .field("whatsapp_graph_base_url", &self.whatsapp_graph_base_url)
            .field("telegram_api_base_url", &self.telegram_api_base_url)
            .field("messenger_graph_base_url", &self.messenger_graph_base_url)
            .field("messenger_media_hosts", &self.messenger_media_hosts)
            .field("attachment_quota_bytes", &self.attachment_quota_bytes)
            .field("public_base_url", &self.public_base_url)
            .field("twilio_api_base_url", &self.twilio_api_base_url)
            .finish()
    }
}

/// A settings problem, worded for the operator.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Resolves settings from overrides, the optional TOML file and defaults.
    /// Errors: the config file cannot be read or has unknown keys or bad values.
    pub fn resolve(o: Overrides) -> Result<Settings, ConfigError> {
        let file = match &o.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("parley-data"));
        let database_url = o
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("parley.db").display()));
        let trusted_proxies = TrustedProxies::parse(
            o.trusted_proxies
                .as_deref()
                .or(file.trusted_proxies.as_deref())
                .unwrap_or_default(),
        )
        .map_err(ConfigError)?;
        let metrics_token = o
            .metrics_token
            .or(file.metrics_token)
            .filter(|t| !t.is_empty());
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError(
                "metrics_token: use at least 16 characters".into(),
            ));
        }
        Ok(Settings {
            listen: o
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            database_url,
            price_table: o.price_table.or(file.price_table),
            max_body_bytes: file.max_body_bytes.unwrap_or(16 * 1024 * 1024),
            max_import_bytes: file.max_import_bytes.unwrap_or(256 * 1024 * 1024),
            secure_cookies: o.secure_cookies.or(file.secure_cookies).unwrap_or(false),
            secret_key: o.secret_key.or(file.secret_key),
            provider_timeout: std::time::Duration::from_secs(
                file.provider_timeout_secs.unwrap_or(60).clamp(1, 3_600),
            ),
            geoip_db: file.geoip_db,
            trusted_proxies,
            forwarded_header: o
                .forwarded_header
                .or(file.forwarded_header)
                .unwrap_or_default(),
            metrics_token,
            metrics_listen: o.metrics_listen.or(file.metrics_listen),
            log_format: o.log_format.or(file.log_format).unwrap_or_default(),
            sqlite_wal_max_bytes: file
                .sqlite_wal_max_bytes
                .unwrap_or(parley_store::sqlite::DEFAULT_WAL_MAX_BYTES)
                .max(1024 * 1024),
            jobs: JobSettings::from_file(file.jobs.as_ref()),
            events: EventSettings::from_file(file.events.as_ref()),
            webhooks: WebhookSettings::from_file(file.webhooks.as_ref()),
            providers: checked_providers(file.providers.unwrap_or_default())?,
            network: NetworkSettings {
                allow_private_networks: o
                    .allow_private_networks
                    .or(file.allow_private_networks)
                    .unwrap_or(false),
                allowed_private_urls: file
                    .allowed_private_urls
                    .unwrap_or_default()
                    .iter()
                    .map(|u| checked_url("allowed_private_urls", u))
                    .collect::<Result<_, _>>()?,
            },
            whatsapp_graph_base_url: checked_url(
                "whatsapp_graph_base_url",
                file.whatsapp_graph_base_url
                    .as_deref()
                    .unwrap_or(crate::channels::whatsapp::DEFAULT_GRAPH_BASE_URL),
            )?,
            telegram_api_base_url: checked_url(
                "telegram_api_base_url",
                file.telegram_api_base_url
                    .as_deref()
                    .unwrap_or(crate::channels::telegram::DEFAULT_API_BASE_URL),
            )?,
            messenger_graph_base_url: checked_url(
                "messenger_graph_base_url",
                file.messenger_graph_base_url
                    .as_deref()
                    .unwrap_or(crate::channels::messenger::DEFAULT_GRAPH_BASE_URL),
            )?,
            messenger_media_hosts: file
                .messenger_media_hosts
                .unwrap_or_else(|| {
                    DEFAULT_MESSENGER_MEDIA_HOSTS
                        .iter()
                        .map(|h| (*h).to_owned())
                        .collect()
                })
                .into_iter()
                .map(|h| h.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            attachment_quota_bytes: file
                .attachment_quota_bytes
                .unwrap_or(DEFAULT_ATTACHMENT_QUOTA_BYTES),
            public_base_url: file
                .public_base_url
                .as_deref()
                .map(|u| checked_url("public_base_url", u))
                .transpose()?
                .map(|u| u.trim_end_matches('/').to_owned()),
            twilio_api_base_url: checked_url(
                "twilio_api_base_url",
                file.twilio_api_base_url
                    .as_deref()
                    .unwrap_or(crate::channels::voip::twilio::DEFAULT_API_BASE_URL),
            )?,
        })
    }

    /// The built-in price table with the operator's file (if any) merged over it.
    /// Errors: the file cannot be read or is not a price table.
    pub fn load_prices(&self) -> Result<parley_core::pricing::PriceTable, ConfigError> {
        let mut table = parley_core::pricing::PriceTable::builtin();
        if let Some(path) = &self.price_table {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read price table {}: {e}", path.display()))
            })?;
            let extra = parley_core::pricing::PriceTable::from_litellm_json(&text)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
            table.merge(extra);
        }
        Ok(table)
    }
}

fn checked_url(key: &str, url: &str) -> Result<String, ConfigError> {
    check_base_url(url).map_err(|e| ConfigError(format!("{key}: {url:?} {e}")))
}

fn checked_providers(mut providers: OperatorProviders) -> Result<OperatorProviders, ConfigError> {
    for (name, p) in &mut providers {
        p.check(name).map_err(ConfigError)?;
        p.base_url = checked_url(&format!("providers.{name}.base_url"), &p.base_url)?;
    }
    Ok(providers)
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let s = Settings::resolve(Overrides::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("parley-data"));
        assert_eq!(s.database_url, "sqlite://parley-data/parley.db");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/p\"\nmax_body_bytes = 1024\n",
        )
        .unwrap();
        let s = Settings::resolve(Overrides {
            config: Some(path.clone()),
            data_dir: Some("/flag".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.data_dir, PathBuf::from("/flag"));
        assert_eq!(s.database_url, "sqlite:///flag/parley.db");
        assert_eq!(s.max_body_bytes, 1024);
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\nlisen = 1\n").unwrap();
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.0.contains("lisen"), "{err}");
    }

    #[test]
    fn operations_settings_from_flags_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(
            &path,
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nforwarded_header = \"forwarded\"\nmetrics_token = \"0123456789abcdef-hunter2\"\nlog_format = \"json\"\nsqlite_wal_max_bytes = 1048576\n",
        )
        .unwrap();
        let s = Settings::resolve(Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert!(s.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(!s.trusted_proxies.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(s.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.sqlite_wal_max_bytes, 1 << 20);
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "the token is redacted"
        );
        let flagged = Settings::resolve(Overrides {
            config: Some(path.clone()),
            trusted_proxies: Some(vec!["127.0.0.1".into()]),
            log_format: Some(LogFormat::Text),
            ..Default::default()
        })
        .unwrap();
        assert!(
            !flagged
                .trusted_proxies
                .contains("10.1.2.3".parse().unwrap())
        );
        assert_eq!(flagged.log_format, LogFormat::Text);
        let d = Settings::resolve(Overrides::default()).unwrap();
        assert!(d.trusted_proxies.is_empty() && d.metrics_token.is_none());
        assert_eq!(d.sqlite_wal_max_bytes, 64 << 20);
        std::fs::write(&path, "trusted_proxies = [\"10.0.0/8\"]\n").unwrap();
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.0.contains("10.0.0/8"), "{err}");
    }

    #[test]
    fn operator_providers_and_network_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Settings::resolve(Overrides {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let s = resolve(
            "allowed_private_urls = [\"http://10.0.0.5:11434/\"]\n\
             [providers.openai]\nbase_url = \"https://api.openai.com/v1/\"\napi_key_env = \"OPENAI_API_KEY\"\n\
             models = [\"gpt-4o-mini\"]\n[providers.ollama]\nbase_url = \"http://127.0.0.1:11434/v1\"\n",
        )
        .unwrap();
        assert_eq!(s.providers["openai"].base_url, "https://api.openai.com/v1");
        assert_eq!(s.providers["ollama"].api_key_env, None);
        assert!(!s.network.allow_private_networks, "refused by default");
        assert_eq!(s.network.allowed_private_urls, ["http://10.0.0.5:11434"]);
        assert_eq!(s.telegram_api_base_url, "https://api.telegram.org");
        for (bad, key) in [
            (
                "[providers.x]\nbase_url = \"http://h/v1?x=\"\n",
                "providers.x.base_url",
            ),
            (
                "[providers.x]\nbase_url = \"http://h\"\napi_key_env = \"lower\"\n",
                "api_key_env",
            ),
            (
                "[providers.x]\nbase_url = \"http://h\"\nsecret = 1\n",
                "secret",
            ),
            (
                "allowed_private_urls = [\"http://u:p@h\"]\n",
                "allowed_private_urls",
            ),
        ] {
            let err = resolve(bad).unwrap_err();
            assert!(err.0.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_output_redacts_the_database_password() {
        let s = Settings::resolve(Overrides {
            database_url: Some("postgres://u:hunter2@db/parley".into()),
            ..Default::default()
        })
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("u:***@db"),
            "{shown}"
        );
    }
}
