//! Sign-in and sign-out pages.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use cookie::SameSite;
use parley_core::Timestamp;
use parley_store::NewSession;
use serde::Deserialize;

use super::{asset_version, error_page};
use crate::AppState;
use crate::auth::password::{decoy_hash, verify_password};
use crate::auth::session::{
    LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL_MS, Session, constant_time_eq, cookie_value,
    random_token, set_cookie, token_hash,
};

/// Failed sign-ins allowed per email address in [`WINDOW_MS`].
pub const MAX_FAILURES_PER_EMAIL: u64 = 5;
/// Failed sign-ins allowed per client address in [`WINDOW_MS`].
pub const MAX_FAILURES_PER_IP: u64 = 20;
/// The rate limit's window: 15 minutes.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    version: &'a str,
    csrf: &'a str,
    next: &'a str,
    email: &'a str,
    error: Option<&'a str>,
}

/// Only local paths are followed after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/conversations".to_owned(),
    }
}

fn render(
    status: StatusCode,
    csrf: &str,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let page = LoginPage {
        version: asset_version(),
        csrf,
        next,
        email,
        error,
    };
    match page.render() {
        Ok(html) => {
            let mut res = (status, Html(html)).into_response();
            let cookie = set_cookie(LOGIN_CSRF_COOKIE, csrf, 3600, SameSite::Strict, false);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}

/// `next` of the sign-in page.
#[derive(Deserialize)]
pub(super) struct NextParam {
    next: Option<String>,
}

/// `GET /login`.
pub(super) async fn page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextParam>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE)
        && let Ok(Some(_)) = st.store.session(token_hash(&token), Timestamp::now()).await
    {
        return Redirect::to(&next).into_response();
    }
    render(StatusCode::OK, &random_token(), &next, "", None)
}

/// The sign-in form.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: verifies the password (Argon2id), rate-limited per email and per client
/// address, then starts a session.
pub(super) async fn submit(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(Some(&form.next));
    let email = form.email.trim().to_lowercase();
    let cookie_token = cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !constant_time_eq(form.csrf.as_bytes(), cookie_token.as_bytes()) {
        return render(
            StatusCode::FORBIDDEN,
            &random_token(),
            &next,
            &email,
            Some("The sign-in form expired. Please try again."),
        );
    }
    let now = Timestamp::now();
    let since = now.add_millis(-WINDOW_MS);
    let by_email = format!("email:{email}");
    let by_ip = format!("ip:{}", peer.ip());
    let (email_failures, ip_failures) = match tokio::try_join!(
        st.store.login_failures_since(&by_email, since),
        st.store.login_failures_since(&by_ip, since)
    ) {
        Ok(counts) => counts,
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    if email_failures >= MAX_FAILURES_PER_EMAIL || ip_failures >= MAX_FAILURES_PER_IP {
        return render(
            StatusCode::TOO_MANY_REQUESTS,
            &form.csrf,
            &next,
            &email,
            Some("Too many failed sign-ins. Wait 15 minutes, then try again."),
        );
    }
    let found = match st.store.user_for_login(&email).await {
        Ok(found) => found,
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let password = form.password;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, decoy_hash().to_owned()),
    };
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        if let Err(e) = st.store.record_login_failure(&[by_email, by_ip], now).await {
            tracing::warn!(error = %e, "could not record a failed sign-in");
        }
        return render(
            StatusCode::UNAUTHORIZED,
            &form.csrf,
            &next,
            &email,
            Some("Wrong email or password."),
        );
    };
    let token = random_token();
    let session = NewSession {
        token_hash: token_hash(&token),
        user_id: user.id,
        csrf_token: random_token(),
        created_at: now,
        expires_at: now.add_millis(SESSION_TTL_MS),
    };
    if let Err(e) = st.store.create_session(&session).await {
        return crate::error::ApiError::from(e).into_response();
    }
    let _ = st
        .store
        .clear_login_failures(&by_email, now.add_millis(1))
        .await;
    tracing::info!(user = %user.email, "signed in");
    let mut res = Redirect::to(&next).into_response();
    let secure = st.settings.secure_cookies;
    let cookie = set_cookie(
        SESSION_COOKIE,
        &token,
        SESSION_TTL_MS / 1000,
        SameSite::Lax,
        secure,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// A form with only the CSRF token.
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// `POST /logout`.
pub(super) async fn logout(
    State(st): State<AppState>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !session.csrf_ok(Some(&form.csrf)) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "Reload the page and try again.",
        );
    }
    if let Err(e) = st.store.delete_session(session.token_hash).await {
        return crate::error::ApiError::from(e).into_response();
    }
    let mut res = Redirect::to("/login").into_response();
    let expired = set_cookie(
        SESSION_COOKIE,
        "",
        0,
        SameSite::Lax,
        st.settings.secure_cookies,
    );
    if let Ok(v) = HeaderValue::from_str(&expired) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(
            super::safe_next(Some("/conversations?q=x")),
            "/conversations?q=x"
        );
        assert_eq!(super::safe_next(Some("//evil.example")), "/conversations");
        assert_eq!(
            super::safe_next(Some("https://evil.example")),
            "/conversations"
        );
        assert_eq!(super::safe_next(Some("/\\evil.example")), "/conversations");
        assert_eq!(super::safe_next(None), "/conversations");
    }
}
