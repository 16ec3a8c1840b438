//! API keys: generation, hashing, and the `ApiKeyAuth` extractor for `/api/v1` routes.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parley_core::{ApiKeyId, Timestamp, UserRole, WorkspaceId};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Every key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "pk_";

/// A freshly generated key: the secret (shown once) and what is stored.
pub struct NewApiKey {
    /// The full key, e.g. `pk_Xq3...` (46 characters). Never stored.
    pub secret: String,
    /// The first 11 characters, stored to recognise the key in lists.
    pub prefix: String,
    /// SHA-256 of `secret`, stored.
    pub hash: [u8; 32],
}

/// Generates a key from 32 bytes of OS randomness.
/// Errors: the OS random source failed.
pub fn generate_api_key() -> Result<NewApiKey, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let prefix = secret.chars().take(11).collect();
    let hash = hash_api_key(&secret);
    Ok(NewApiKey {
        secret,
        prefix,
        hash,
    })
}

/// SHA-256 of a key's full text.
pub fn hash_api_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The caller of an `/api/v1` route, authenticated by API key (checked against the store on
/// every request). Rejections: 401 `unauthorized` when the header is missing, malformed, or
/// names an unknown or revoked key.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyAuth {
    /// The workspace the key belongs to: every query of the request is scoped to it.
    pub workspace: WorkspaceId,
    /// The key used.
    pub key: ApiKeyId,
    /// What the key may do: admin-only routes (members, keys, workspace settings) refuse a
    /// `member` key with 403 `forbidden` (see [`ApiKeyAuth::require_admin`]).
    pub role: UserRole,
}

impl ApiKeyAuth {
    /// Passes for an `admin` key. Errors: 403 `forbidden` naming `action` for a `member` key.
    pub fn require_admin(&self, action: &str) -> Result<(), ApiError> {
        if self.role == UserRole::Admin {
            return Ok(());
        }
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!("only an admin API key can {action}; this key has the member role"),
        ))
    }
}

impl FromRequestParts<AppState> for ApiKeyAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing API key: send the header `Authorization: Bearer <key>`")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <key>`")
            })?;
        // Every request asks the database (one lookup by the key's unique hash): nothing is
        // cached, so a key revoked on any server, or with `parley keys revoke`, is refused by
        // the very next request everywhere.
        let hash = hash_api_key(token);
        let key = state
            .store
            .workspaces()
            .api_key_by_hash(hash)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
        if key.revoked_at.is_some() {
            return Err(ApiError::unauthorized("this API key has been revoked"));
        }
        // Last use, to the minute: the key's row says when it was last recorded, so only
        // the first request of each minute writes (one conditional UPDATE); it is awaited, so
        // the list shows the request that just finished. A failed write costs nothing but
        // that minute's record.
        let now = Timestamp::now();
        let stale = key
            .last_used_at
            .is_none_or(|t| now.0 - t.0 >= parley_store::settings::KEY_TOUCH_INTERVAL_MS);
        if stale && let Err(e) = state.store.settings().touch_api_key(key.id, now).await {
            tracing::warn!(error = %e, "could not record an API key's last use");
        }
        let auth = ApiKeyAuth {
            workspace: key.workspace_id,
            key: key.id,
            role: key.role,
        };
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let a = generate_api_key().unwrap();
        let b = generate_api_key().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(
            a.secret.starts_with("pk_") && a.secret.len() == 46,
            "{}",
            a.secret
        );
        assert!(a.secret.starts_with(&a.prefix) && a.prefix.len() == 11);
        assert_eq!(a.hash, hash_api_key(&a.secret));
        assert_ne!(a.hash, hash_api_key(&b.secret));
    }
}
