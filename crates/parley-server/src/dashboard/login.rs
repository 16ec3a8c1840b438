//! Sign-in and sign-out pages.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
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

/// Where a sign-in goes when `next` is missing or refused.
const HOME: &str = "/conversations";

/// The path to follow after signing in: `next` when it names a page of this server, else
/// [`HOME`] (never an error, so a bad `next` cannot break the sign-in).
///
/// `next` must be a path (start with one `/`) without control characters or backslashes:
/// browsers drop tabs and newlines from URLs and read `\` as `/`, so `/\t/evil.example` or
/// `/\\evil.example` would otherwise become the other host `//evil.example`. What is left is
/// resolved as the WHATWG URL standard does (the `url` crate) against a fixed origin; it must
/// stay on that origin and its path must not start with `//` (`/..//evil.example`
/// normalises to one). The answer is the resolved, percent-encoded path and query, so it is
/// always a valid `Location` header value.
fn safe_next(next: Option<&str>) -> String {
    const BASE: &str = "http://parley.invalid/";
    let Some(next) = next else {
        return HOME.to_owned();
    };
    if !next.starts_with('/')
        || next.starts_with("//")
        || next.chars().any(|c| c.is_control() || c == '\\')
    {
        return HOME.to_owned();
    }
    let Ok(base) = url::Url::parse(BASE) else {
        return HOME.to_owned();
    };
    match base.join(next) {
        Ok(u) if u.origin() == base.origin() && !u.path().starts_with("//") => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        },
        _ => HOME.to_owned(),
    }
}

/// A 303 to `next` (already made safe by [`safe_next`]; falls back to [`HOME`] should it not
/// be a valid header value).
fn redirect_to(next: &str) -> Response {
    let location = HeaderValue::from_str(next).unwrap_or(HeaderValue::from_static(HOME));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

fn render(
    st: &AppState,
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
            let cookie = set_cookie(
                LOGIN_CSRF_COOKIE,
                csrf,
                3600,
                SameSite::Strict,
                st.settings.secure_cookies,
            );
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
        && let Ok(Some(_)) = st
            .store
            .auth()
            .session(token_hash(&token), Timestamp::now())
            .await
    {
        return redirect_to(&next);
    }
    render(&st, StatusCode::OK, &random_token(), &next, "", None)
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
/// address (each attempt is counted before its password is checked, see
/// [`parley_store::AuthStore::claim_login_attempt`]), then starts a session.
pub(super) async fn submit(
    State(st): State<AppState>,
    crate::client_addr::ClientIp(peer): crate::client_addr::ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(Some(&form.next));
    let email = form.email.trim().to_lowercase();
    let cookie_token = cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !constant_time_eq(form.csrf.as_bytes(), cookie_token.as_bytes()) {
        return render(
            &st,
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
    let by_ip = format!(
        "ip:{}",
        peer.map_or_else(|| "unknown".into(), |p| p.to_string())
    );
    // The attempt is counted before the password is checked, in one atomic step with the
    // limit's check, so concurrent attempts cannot all slip past it.
    let limits = [
        (by_email.clone(), MAX_FAILURES_PER_EMAIL),
        (by_ip.clone(), MAX_FAILURES_PER_IP),
    ];
    match st
        .store
        .auth()
        .claim_login_attempt(&limits, since, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return render(
                &st,
                StatusCode::TOO_MANY_REQUESTS,
                &form.csrf,
                &next,
                &email,
                Some("Too many failed sign-ins. Wait 15 minutes, then try again."),
            );
        }
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    }
    let found = match st.store.auth().user_for_login(&email).await {
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
        // The attempt claimed above stays recorded as the failure.
        return render(
            &st,
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
    if let Err(e) = st.store.auth().create_session(&session).await {
        return crate::error::ApiError::from(e).into_response();
    }
    // A success is no failure: the email starts afresh, and the client address gets back the
    // attempt it claimed.
    let _ = st
        .store
        .auth()
        .clear_login_failures(&by_email, now.add_millis(1))
        .await;
    let _ = st.store.auth().release_login_attempt(&by_ip, now).await;
    tracing::info!(user = %user.email, "signed in");
    let mut res = redirect_to(&next);
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
    if let Err(e) = st.store.auth().delete_session(session.token_hash).await {
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
    use super::{HOME, safe_next};

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/conversations?q=x")), "/conversations?q=x");
        assert_eq!(
            safe_next(Some("/assistants/1?a=b c")),
            "/assistants/1?a=b%20c"
        );
        assert_eq!(safe_next(Some("/schön")), "/sch%C3%B6n");
        assert_eq!(safe_next(None), HOME);
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/x",
            "/\r\n/x",
            "\t//evil.example",
            "/..//evil.example",
            "/./..//evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(hostile)), HOME, "{hostile:?}");
        }
    }
}
