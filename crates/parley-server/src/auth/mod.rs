//! Authentication. Machines use API keys (`Authorization: Bearer pk_...`); people use sign-in
//! sessions (the dashboard), with Argon2id passwords and CSRF tokens. Keys are 256 random bits, shown once at creation and stored
//! only as their SHA-256: a fast hash is the right tool for a high-entropy secret (there is
//! nothing to brute-force), and it keeps the per-request check to one indexed lookup.

pub mod api_key;
pub mod password;
pub mod session;

pub use api_key::{ApiKeyAuth, NewApiKey, generate_api_key, hash_api_key};
pub use password::{hash_password, verify_password};
pub use session::Session;
