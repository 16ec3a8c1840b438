//! Settings. Each value comes from, in order of precedence: a command-line flag, a `PARLEY_*`
//! environment variable (both handled by clap), the TOML file given with `--config` /
//! `PARLEY_CONFIG`, and finally the built-in default. `parley serve` therefore needs no
//! configuration at all: data in `./parley-data`, SQLite inside it, listening on
//! 127.0.0.1:8080.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

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
