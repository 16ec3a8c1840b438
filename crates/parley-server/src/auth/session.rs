//! Sign-in sessions for people (the dashboard).
//!
//! Signing in sets a `parley_session` cookie holding 256 random bits (HttpOnly, SameSite=Lax,
//! Path=/, 30 days; Secure when `secure_cookies` is set); the store keeps only its SHA-256,
//! with the user and a per-session CSRF token. Every state-changing dashboard request must
//! carry that token: as the `_csrf` form field or the `X-CSRF-Token` header. The sign-in form,
//! which has no session yet, uses a double-submit token in a SameSite=Strict cookie instead.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use parley_core::Timestamp;
use parley_core::model::User;
use sha2::{Digest, Sha256};

use crate::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "parley_session";
/// Name of the sign-in form's CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "parley_login_csrf";
/// How long a session lasts, in ms (30 days).
pub const SESSION_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// 32 random bytes, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a session token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value with Parley's attributes.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age_secs: i64,
    same_site: SameSite,
    secure: bool,
) -> String {
    Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(same_site)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
        .to_string()
}

/// A signed-in person. As an extractor it redirects to the sign-in page (303) when there is
/// no valid session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub user: User,
    /// The session's CSRF token.
    pub csrf: String,
    /// SHA-256 of the session token (to sign out).
    pub token_hash: [u8; 32],
}

impl Session {
    /// Whether `given` is this session's CSRF token.
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), self.csrf.as_bytes()))
    }
}

/// Why a page needs a sign-in: where to come back to.
pub struct SignInRequired(String);

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        let next: String = form_urlencoded::byte_serialize(self.0.as_bytes()).collect();
        Redirect::to(&format!("/login?next={next}")).into_response()
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let back = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(SignInRequired(back).into_response());
        };
        let hash = token_hash(&token);
        match state.store.auth().session(hash, Timestamp::now()).await {
            Ok(Some(s)) => Ok(Session {
                user: s.user,
                csrf: s.csrf_token,
                token_hash: hash,
            }),
            Ok(None) => Err(SignInRequired(back).into_response()),
            Err(e) => Err(crate::error::ApiError::from(e).into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_parse_and_build() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; parley_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "missing"), None);
        let c = set_cookie(SESSION_COOKIE, "tok", 60, SameSite::Lax, true);
        for part in [
            "parley_session=tok",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{part} in {c}");
        }
        assert!(
            constant_time_eq(b"same", b"same")
                && !constant_time_eq(b"same", b"sama")
                && !constant_time_eq(b"a", b"ab")
        );
    }
}
