//! Sealing secrets at rest: provider API keys (and, later, channel tokens) are stored encrypted
//! with the server's secret key, using XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`
//! crate): a random 24-byte nonce per secret, so sealing the same key twice gives different
//! text, and any change to the stored text is detected when it is opened.
//!
//! The secret key is 32 bytes. It comes from `PARLEY_SECRET_KEY` / `secret_key` in the config
//! file (base64), else from `<data_dir>/secret.key`, created with a random key (mode 0600) on
//! first start. Several servers sharing one PostgreSQL must share the key: set
//! `PARLEY_SECRET_KEY` on each. Losing the key loses the sealed secrets (they must be entered
//! again), nothing else.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use parley_core::assistant::ProviderKey;

const NONCE_BYTES: usize = 24;
/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "secret.key";

/// The server's secret key. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey(XChaCha20Poly1305);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// A sealed value that cannot be opened: sealed with another key, or altered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError;

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the stored secret cannot be decrypted with this server's secret key (was PARLEY_SECRET_KEY changed?); enter the secret again",
        )
    }
}

impl std::error::Error for OpenError {}

impl SecretKey {
    /// A key from its base64 text (32 bytes). Errors: not base64, or not 32 bytes.
    pub fn from_base64(text: &str) -> Result<SecretKey, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "the secret key is not base64".to_owned())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            "the secret key must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)"
                .to_owned()
        })?;
        Ok(SecretKey(XChaCha20Poly1305::new(&bytes.into())))
    }

    /// A fresh random key and its base64 text.
    pub fn generate() -> std::io::Result<(SecretKey, String)> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        let text = STANDARD.encode(bytes);
        Ok((SecretKey(XChaCha20Poly1305::new(&bytes.into())), text))
    }

    /// The key `configured` gives (base64), else the one in `data_dir/secret.key`, which is
    /// created on first use. Errors: a bad configured key, or the file cannot be read or written.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<SecretKey, String> {
        if let Some(text) = configured {
            return SecretKey::from_base64(text).map_err(|e| format!("PARLEY_SECRET_KEY: {e}"));
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                SecretKey::from_base64(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)
                    .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
                let (key, text) = SecretKey::generate().map_err(|e| e.to_string())?;
                write_private(&path, &text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "created a new secret key for sealed secrets");
                Ok(key)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Seals `plain`: base64 of nonce then ciphertext.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        // The OS random source failing is not recoverable.
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
            .expect("XChaCha20-Poly1305 encryption does not fail on in-memory input");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    /// Opens what [`SecretKey::seal`] made. Errors: [`OpenError`] for another key's text or
    /// altered text.
    pub fn open(&self, sealed: &str) -> Result<String, OpenError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| OpenError)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .0
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }

    /// A provider key in its stored form: sealed, with a hint to recognise it.
    pub fn seal_provider_key(&self, plain: &str) -> ProviderKey {
        ProviderKey::Sealed {
            sealed: self.seal(plain),
            hint: ProviderKey::hint_for(plain),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_unaltered() {
        let (key, _) = SecretKey::generate().unwrap();
        let a = key.seal("sk-live-123");
        let b = key.seal("sk-live-123");
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(key.open(&a).unwrap(), "sk-live-123");
        let (other, _) = SecretKey::generate().unwrap();
        assert_eq!(other.open(&a), Err(OpenError));
        let mut altered = STANDARD.decode(&a).unwrap();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(key.open(&STANDARD.encode(altered)), Err(OpenError));
        assert_eq!(key.open("not base64!"), Err(OpenError));
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = SecretKey::load(None, dir.path()).unwrap();
        let sealed = k1.seal("x");
        let k2 = SecretKey::load(None, dir.path()).unwrap();
        assert_eq!(k2.open(&sealed).unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(SecretKey::load(Some("short"), dir.path()).is_err());
        let (_, text) = SecretKey::generate().unwrap();
        assert!(SecretKey::load(Some(&text), dir.path()).is_ok());
    }
}
