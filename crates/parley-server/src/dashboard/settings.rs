//! The Settings page (issue 16), for admins: members and invites, API keys, the workspace's
//! time zone and analysis switch, and links to the webhook and retention settings. Members
//! who are not admins get a 403 page (the page is about changing things only admins may
//! change; what a member may read, the members list, is in the API). Every form carries the
//! session's CSRF token and is answered with the page again (a change's outcome or its error
//! shown on top; a new key's secret or invite link shown once, never stored in the clear).
//! The rules are [`crate::workspace_settings`]'s, the same as the API's.
//!
//! | route | does |
//! | --- | --- |
//! | `GET /settings` | the page |
//! | `POST /settings/invites` (`email`, `role`) | a one-time invite link, shown once |
//! | `POST /settings/invites/{id}/delete` | the link stops working |
//! | `POST /settings/members/{id}/role` (`role`), `.../remove` | change a role, remove (never the last admin) |
//! | `POST /settings/keys` (`name`, `role`), `POST /settings/keys/{id}/revoke` | API keys |
//! | `POST /settings/workspace` (`time_zone`, `analysis_enabled`) | time zone, analysis |
//! | `GET /invite/{token}`, `POST /invite/{token}` (`name`, `password`) | the invitee's page: join and sign in |

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use cookie::SameSite;
use parley_core::zone::Zone;
use parley_core::{Timestamp, UserRole};
use parley_store::NewSession;
use serde::Deserialize;

use super::form::{AdminForm, PageError, admin_forms};
use super::pages::Layout;
use super::{asset_version, error_page, format};
use crate::AppState;
use crate::auth::session::{
    LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL_MS, Session, constant_time_eq, cookie_value,
    random_token, set_cookie, token_hash,
};
use crate::error::ApiError;
use crate::workspace_settings::{self as ws, SettingsPatch, parse_role};

struct MemberRow {
    id: String,
    name: String,
    email: String,
    role: &'static str,
    last_sign_in: String,
    is_you: bool,
}

struct InviteRow {
    id: String,
    email: String,
    role: &'static str,
    expires: String,
    expired: bool,
}

struct KeyRow {
    id: String,
    name: String,
    prefix: String,
    role: &'static str,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

/// What a form just did, shown on top of the page.
#[derive(Default)]
struct Outcome {
    notice: Option<String>,
    error: Option<String>,
    /// A new key: (name, secret), shown once.
    new_key: Option<(String, String)>,
    /// A new invite: (email, link), shown once.
    new_invite: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    layout: Layout,
    members: Vec<MemberRow>,
    invites: Vec<InviteRow>,
    keys: Vec<KeyRow>,
    time_zone: String,
    zones: Vec<String>,
    analysis_enabled: bool,
    outcome: Outcome,
}

fn role_label(r: UserRole) -> &'static str {
    match r {
        UserRole::Admin => "admin",
        UserRole::Member => "member",
    }
}

/// The page as `session` sees it, with `outcome` on top, answered with `status`.
async fn render(
    st: &AppState,
    session: &Session,
    headers: &HeaderMap,
    status: StatusCode,
    outcome: Outcome,
) -> Response {
    match build(st, session, headers, outcome).await {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError(e).into_response(),
    }
}

async fn build(
    st: &AppState,
    session: &Session,
    _headers: &HeaderMap,
    outcome: Outcome,
) -> Result<String, ApiError> {
    let w = session.user.workspace_id;
    let (users, invites, keys, settings, total) = tokio::try_join!(
        async { st.store.auth().list_users(w).await.map_err(ApiError::from) },
        async {
            st.store
                .settings()
                .list_invites(w)
                .await
                .map_err(ApiError::from)
        },
        async {
            st.store
                .workspaces()
                .list_api_keys(w)
                .await
                .map_err(ApiError::from)
        },
        async {
            st.store
                .settings()
                .workspace_settings(w)
                .await
                .map_err(ApiError::from)
        },
        async {
            st.store
                .conversations()
                .conversation_total(w)
                .await
                .map_err(ApiError::from)
        },
    )?;
    // Dates on this page are in the workspace's time zone.
    let zone = Zone::parse(&settings.time_zone).unwrap_or_else(|_| Zone::utc());
    let when = |t: Timestamp| format::datetime(t, zone.offset_minutes(t));
    let now = Timestamp::now();
    let page = SettingsPage {
        layout: Layout::new(
            "settings",
            "Settings",
            session,
            zone.offset_minutes(now),
            total,
        ),
        members: users
            .iter()
            .map(|u| MemberRow {
                id: u.id.to_string(),
                name: u.name.clone(),
                email: u.email.clone(),
                role: role_label(u.role),
                last_sign_in: u.last_sign_in_at.map_or_else(|| "Never".into(), when),
                is_you: u.id == session.user.id,
            })
            .collect(),
        invites: invites
            .iter()
            .map(|i| InviteRow {
                id: i.id.to_string(),
                email: i.email.clone(),
                role: role_label(i.role),
                expires: when(i.expires_at),
                expired: i.expires_at <= now,
            })
            .collect(),
        keys: keys
            .iter()
            .map(|k| KeyRow {
                id: k.id.to_string(),
                name: k.name.clone(),
                prefix: k.prefix.clone(),
                role: role_label(k.role),
                created: when(k.created_at),
                last_used: k.last_used_at.map_or_else(|| "Never".into(), when),
                revoked: k.revoked_at.map(when),
            })
            .collect(),
        time_zone: settings.time_zone.clone(),
        zones: {
            let mut z: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
            z.sort();
            z
        },
        analysis_enabled: settings.analysis_enabled,
        outcome,
    };
    page.render().map_err(ApiError::internal)
}

/// The 403 page of a member who is not an admin.
fn not_admin() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        "Only administrators can open the workspace settings.",
    )
}

/// `GET /settings`.
pub(super) async fn page(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    if session.user.role != UserRole::Admin {
        return not_admin();
    }
    render(&st, &session, &headers, StatusCode::OK, Outcome::default()).await
}

/// The page after a form: its notice, or its error with the error's status.
async fn after(
    st: &AppState,
    session: &Session,
    headers: &HeaderMap,
    result: Result<Outcome, ApiError>,
) -> Response {
    match result {
        Ok(outcome) => render(st, session, headers, StatusCode::OK, outcome).await,
        Err(e) if e.status.is_client_error() => {
            let outcome = Outcome {
                error: Some(e.message.clone()),
                ..Outcome::default()
            };
            render(st, session, headers, e.status, outcome).await
        }
        Err(e) => PageError(e).into_response(),
    }
}

fn notice(text: impl Into<String>) -> Outcome {
    Outcome {
        notice: Some(text.into()),
        ..Outcome::default()
    }
}

/// The invite form.
#[derive(Deserialize)]
pub(super) struct InviteForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// The origin the invite link is shown with: the address the admin's browser used.
fn origin(st: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = if st.settings.secure_cookies {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// `POST /settings/invites`.
pub(super) async fn invite(
    State(st): State<AppState>,
    headers: HeaderMap,
    AdminForm { session, form }: AdminForm<InviteForm>,
) -> Response {
    let result = async {
        let role = parse_role(&form.role, "role")?;
        let w = session.user.workspace_id;
        let created = ws::invite(&st, w, &form.email, role, Some(session.user.id)).await?;
        Ok(Outcome {
            new_invite: Some((
                created.invite.email.clone(),
                format!("{}{}", origin(&st, &headers), created.path()),
            )),
            ..Outcome::default()
        })
    }
    .await;
    after(&st, &session, &headers, result).await
}

admin_forms!(
    InviteForm => "invite members",
    CsrfForm => "manage members, invites and API keys",
    RoleForm => "change members' roles",
    KeyForm => "create API keys",
    WorkspaceForm => "change the workspace settings",
);

/// A form with only the CSRF token.
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// `POST /settings/invites/{id}/delete`.
pub(super) async fn delete_invite(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Response {
    let result = async {
        let id: uuid::Uuid = id.parse().map_err(|_| ApiError::not_found("invite"))?;
        st.store
            .settings()
            .delete_invite(session.user.workspace_id, id)
            .await?;
        Ok(notice("Invite revoked: its link no longer works."))
    }
    .await;
    after(&st, &session, &headers, result).await
}

/// The role form.
#[derive(Deserialize)]
pub(super) struct RoleForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

/// `POST /settings/members/{id}/role`.
pub(super) async fn member_role(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<RoleForm>,
) -> Response {
    let result = async {
        let id = id.parse().map_err(|_| ApiError::not_found("user"))?;
        let role = parse_role(&form.role, "role")?;
        let user = ws::change_role(&st, session.user.workspace_id, id, role).await?;
        Ok(notice(format!(
            "{} is now {}.",
            user.email,
            role_label(role)
        )))
    }
    .await;
    after(&st, &session, &headers, result).await
}

/// `POST /settings/members/{id}/remove`.
pub(super) async fn remove_member(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Response {
    let result = async {
        let id = id.parse().map_err(|_| ApiError::not_found("user"))?;
        ws::remove(&st, session.user.workspace_id, id).await?;
        Ok(notice("Member removed and signed out."))
    }
    .await;
    if result.is_ok() && id == session.user.id.to_string() {
        // An admin who removed themselves has no session left.
        return Redirect::to("/login").into_response();
    }
    after(&st, &session, &headers, result).await
}

/// The new key form.
#[derive(Deserialize)]
pub(super) struct KeyForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

/// `POST /settings/keys`.
pub(super) async fn create_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    AdminForm { session, form }: AdminForm<KeyForm>,
) -> Response {
    let result = async {
        let role = parse_role(&form.role, "role")?;
        let (key, secret) =
            ws::create_key(&st, session.user.workspace_id, &form.name, role).await?;
        Ok(Outcome {
            new_key: Some((key.name, secret)),
            ..Outcome::default()
        })
    }
    .await;
    after(&st, &session, &headers, result).await
}

/// `POST /settings/keys/{id}/revoke`.
pub(super) async fn revoke_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AdminForm { session, .. }: AdminForm<CsrfForm>,
) -> Response {
    let result = async {
        let id = id.parse().map_err(|_| ApiError::not_found("api key"))?;
        ws::revoke_key(&st, session.user.workspace_id, id).await?;
        Ok(notice("API key revoked: it no longer works."))
    }
    .await;
    after(&st, &session, &headers, result).await
}

/// The workspace form.
#[derive(Deserialize)]
pub(super) struct WorkspaceForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    time_zone: String,
    /// Present (`1`) when the box is ticked.
    #[serde(default)]
    analysis_enabled: Option<String>,
}

/// `POST /settings/workspace`.
pub(super) async fn save_workspace(
    State(st): State<AppState>,
    headers: HeaderMap,
    AdminForm { session, form }: AdminForm<WorkspaceForm>,
) -> Response {
    let patch = SettingsPatch {
        time_zone: Some(form.time_zone.trim().to_owned()),
        analysis_enabled: Some(form.analysis_enabled.is_some()),
    };
    let result = ws::update(&st, session.user.workspace_id, &patch)
        .await
        .map(|s| notice(format!("Settings saved. Time zone: {}.", s.time_zone)));
    after(&st, &session, &headers, result).await
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage<'a> {
    version: &'a str,
    csrf: &'a str,
    token: &'a str,
    email: &'a str,
    role: &'a str,
    name: &'a str,
    error: Option<&'a str>,
}

/// The invitee's page, with a fresh double-submit CSRF token in a SameSite=Strict cookie (the
/// invitee has no session yet, as on the sign-in page).
fn invite_page(
    st: &AppState,
    status: StatusCode,
    token: &str,
    invite: &parley_store::Invite,
    name: &str,
    error: Option<&str>,
) -> Response {
    let csrf = random_token();
    let page = InvitePage {
        version: asset_version(),
        csrf: &csrf,
        token,
        email: &invite.email,
        role: role_label(invite.role),
        name,
        error,
    };
    match page.render() {
        Ok(html) => {
            let mut res = (status, Html(html)).into_response();
            let cookie = set_cookie(
                LOGIN_CSRF_COOKIE,
                &csrf,
                3600,
                SameSite::Strict,
                st.settings.secure_cookies,
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => PageError(ApiError::internal(e)).into_response(),
    }
}

fn invite_gone() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Invite not valid",
        "This invite link was already used, revoked, or has expired. Ask an administrator for a new one.",
    )
}

/// `GET /invite/{token}`: the form to join (no session needed).
pub(super) async fn invite_form(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    match ws::pending_invite(&st, &token).await {
        Ok(Some(invite)) => invite_page(&st, StatusCode::OK, &token, &invite, "", None),
        Ok(None) => invite_gone(),
        Err(e) => PageError(e).into_response(),
    }
}

/// The invitee's form.
#[derive(Deserialize)]
pub(super) struct AcceptForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `POST /invite/{token}`: creates the member, signs them in and opens the dashboard.
pub(super) async fn accept(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<AcceptForm>,
) -> Response {
    let invite = match ws::pending_invite(&st, &token).await {
        Ok(Some(i)) => i,
        Ok(None) => return invite_gone(),
        Err(e) => return PageError(e).into_response(),
    };
    let cookie_token = cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !constant_time_eq(form.csrf.as_bytes(), cookie_token.as_bytes()) {
        return invite_page(
            &st,
            StatusCode::FORBIDDEN,
            &token,
            &invite,
            &form.name,
            Some("The form expired. Please try again."),
        );
    }
    let user = match ws::accept(&st, &token, &form.name, &form.password).await {
        Ok(u) => u,
        Err(e) if e.status == StatusCode::NOT_FOUND => return invite_gone(),
        Err(e) if e.status.is_client_error() => {
            return invite_page(&st, e.status, &token, &invite, &form.name, Some(&e.message));
        }
        Err(e) => return PageError(e).into_response(),
    };
    let session_token = random_token();
    let now = Timestamp::now();
    let session = NewSession {
        token_hash: token_hash(&session_token),
        user_id: user.id,
        csrf_token: random_token(),
        created_at: now,
        expires_at: now.add_millis(SESSION_TTL_MS),
    };
    if let Err(e) = st.store.auth().create_session(&session).await {
        return PageError::from(e).into_response();
    }
    let mut res = Redirect::to("/conversations").into_response();
    let cookie = set_cookie(
        SESSION_COOKIE,
        &session_token,
        SESSION_TTL_MS / 1000,
        SameSite::Lax,
        st.settings.secure_cookies,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}
