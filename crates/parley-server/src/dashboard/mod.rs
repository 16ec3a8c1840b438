//! The dashboard: server-rendered pages (askama, auto-escaping) with one small plain JavaScript
//! file for what needs the browser (the sliding panel, tabs, keyboard, loading older messages).
//! Every asset is served by the binary; nothing comes from a CDN. State lives in the URL.
//!
//! Routes (all but `/login`, `/invite/{token}` and `/assets` need a signed-in session; every POST checks the
//! session's CSRF token):
//!
//! | route | what |
//! | --- | --- |
//! | `GET /login`, `POST /login`, `POST /logout` | sign in and out |
//! | `GET /conversations` | the list, filters, search, paging; `?open=ID` with the panel |
//! | `GET /conversations/{id}/panel` | the panel alone (fetched by the script) |
//! | `GET /dashboard/events` | the member's workspace's live events (SSE, see [`crate::events`]) |
//! | `GET /conversations/{id}/transcript?page=N` | one page of older messages |
//! | `GET /conversations/export`, `.../export/count`, `.../finetune`, `.../finetune/estimate` | the Export dialog (see [`export`]) |
//! | `GET /conversations/{id}/download?format=markdown\|text`, `GET /conversations/{id}/print` | transcript files and the print view |
//! | `POST /conversations/{id}/rating/delete` | remove the client rating |
//! | `POST /conversations/{id}/delete` | delete the conversation (admins) |
//! | `POST /conversations/{id}/erase-contact` | delete everything about its contact (admins) |
//! | `GET /settings/retention`, `POST`, `POST /settings/retention/run` | retention policy, runs, erasures (admins; see [`retention`]) |
//! | `POST /conversations/{id}/reply`, `takeover`, `handback`, `status`, `assign`; `GET .../templates` | the team's actions (JSON, see [`team`]) |
//! | `GET /assistants`, `GET /assistants/new`, `GET /assistants/{id}` | assistants and their form |
//! | `POST /assistants/new`, `POST /assistants/{id}` | create, or save a new version (admins) |
//! | `GET /assistants/{id}/widget`, `POST` | the assistant's web widget settings (admins save) |
//! | `GET /settings`, `POST /settings/...` | workspace settings: members, invites, API keys, time zone, analysis (admins; see [`settings`]) |
//! | `GET /invite/{token}`, `POST` | an invitee joins the workspace (no session needed) |
//! | `GET /test-chat` | Test Chat (`?assistant=ID`, `&conversation=ID` to continue) |
//! | `POST /test-chat/send` | send a message; the answer streams back as server-sent events |
//! | `GET /settings/webhooks`, `POST /settings/webhooks[/{id}[/delete,secret,rotate]]`, `POST .../deliveries/{d}/resend` | outgoing webhooks (admins; see [`webhooks`]) |
//! | `GET /assets/{file}` | CSS, JavaScript, icon |
//!
//! Every dashboard response carries a strict Content-Security-Policy: scripts and styles only
//! from Parley itself (no inline script or style at all), images only from Parley, `data:` and
//! `blob:` (a remote image in a message is a click-to-open link, never loaded by itself: see
//! `parley_core::markdown`), no frames, no plugins, forms only to Parley.

mod assistants;
mod attachments;
pub(crate) mod channels;
mod client_data;
mod export;
pub(crate) mod form;
pub(crate) mod format;
mod insights;
mod live;
mod login;
mod pages;
mod retention;
mod settings;
mod state;
mod team;
mod test_chat;
mod webhooks;
mod widget;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use crate::AppState;

pub use format::int as format_int;
pub use state::{Tab, ViewState};

/// The dashboard's stylesheet.
pub const APP_CSS: &str = include_str!("../../assets/app.css");
/// The dashboard's script.
pub const APP_JS: &str = include_str!("../../assets/app.js");
/// The audio player's script (issue 15), kept apart from the panel's script.
pub const PLAYER_JS: &str = include_str!("../../assets/player.js");
/// The audio player's styles.
pub const PLAYER_CSS: &str = include_str!("../../assets/player.css");
/// The Export dialog's and the print view's script (issue 16).
pub const EXPORT_JS: &str = include_str!("../../assets/export.js");
/// The print view's styles.
pub const PRINT_CSS: &str = include_str!("../../assets/print.css");
/// The favicon.
pub const FAVICON_SVG: &str = include_str!("../../assets/favicon.svg");

/// The Content-Security-Policy of every dashboard page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self'; \
     connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A short hash of the assets, appended to their URLs so browsers may cache them forever.
pub fn asset_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut h = Sha256::new();
        for a in [
            APP_CSS,
            APP_JS,
            PLAYER_JS,
            PLAYER_CSS,
            EXPORT_JS,
            PRINT_CSS,
            FAVICON_SVG,
        ] {
            h.update(a.as_bytes());
        }
        h.finalize()
            .iter()
            .take(5)
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// The dashboard router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/conversations") }))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/conversations", get(pages::conversations))
        .route("/dashboard/events", get(live::events))
        .route("/conversations/{id}/panel", get(pages::panel))
        .route("/conversations/bulk", post(team::bulk))
        .route("/conversations/bulk/{id}", get(team::bulk_progress))
        .route("/conversations/export", get(export::list))
        .route("/conversations/export/count", get(export::count))
        .route("/conversations/finetune", get(export::finetune))
        .route(
            "/conversations/finetune/estimate",
            get(export::finetune_estimate),
        )
        .route(
            "/conversations/{id}/download",
            get(export::transcript_download),
        )
        .route("/conversations/{id}/print", get(export::print))
        .route("/conversations/{id}/transcript", get(pages::transcript))
        .route(
            "/conversations/{id}/rating/delete",
            post(pages::remove_rating),
        )
        .route("/conversations/{id}/delete", post(pages::delete))
        .route("/conversations/{id}/reply", post(team::reply))
        .route("/conversations/{id}/takeover", post(team::take_over))
        .route("/conversations/{id}/handback", post(team::hand_back))
        .route("/conversations/{id}/status", post(team::status))
        .route("/conversations/{id}/assign", post(team::assign))
        .route("/conversations/{id}/templates", get(team::templates))
        .route(
            "/conversations/{id}/messages/{message_id}/attachments/{index}",
            get(attachments::attachment),
        )
        .route("/insights", get(insights::page))
        .route("/insights/csv/{figure}", get(insights::csv))
        .route(
            "/settings/webhooks",
            get(webhooks::page).post(webhooks::create),
        )
        .route("/settings/webhooks/{id}", post(webhooks::edit))
        .route("/settings/webhooks/{id}/delete", post(webhooks::delete))
        .route("/settings/webhooks/{id}/secret", post(webhooks::reveal))
        .route("/settings/webhooks/{id}/rotate", post(webhooks::rotate))
        .route(
            "/settings/webhooks/{id}/deliveries/{delivery}/resend",
            post(webhooks::resend),
        )
        .route(
            "/settings/retention",
            get(retention::page).post(retention::save),
        )
        .route("/settings/retention/run", post(retention::run))
        .route(
            "/conversations/{id}/erase-contact",
            post(pages::erase_contact),
        )
        .route(
            "/conversations/{id}/messages/{message_id}/attachments/{index}/peaks",
            get(attachments::peaks),
        )
        .route("/assistants", get(assistants::list))
        .route(
            "/assistants/new",
            get(assistants::new_form).post(assistants::save_new),
        )
        .route(
            "/assistants/{id}",
            get(assistants::edit_form).post(assistants::save_existing),
        )
        .route(
            "/assistants/{id}/channels",
            post(assistants::connect_channel),
        )
        .route(
            "/assistants/{id}/channels/{channel}/delete",
            post(assistants::disconnect_channel),
        )
        .route(
            "/assistants/{id}/widget",
            get(widget::page).post(widget::save),
        )
        .route("/settings", get(settings::page))
        .route("/settings/invites", post(settings::invite))
        .route(
            "/settings/invites/{id}/delete",
            post(settings::delete_invite),
        )
        .route("/settings/members/{id}/role", post(settings::member_role))
        .route(
            "/settings/members/{id}/remove",
            post(settings::remove_member),
        )
        .route("/settings/keys", post(settings::create_key))
        .route("/settings/keys/{id}/revoke", post(settings::revoke_key))
        .route("/settings/workspace", post(settings::save_workspace))
        .route(
            "/invite/{token}",
            get(settings::invite_form).post(settings::accept),
        )
        .route("/test-chat", get(test_chat::page))
        .route("/test-chat/send", post(test_chat::send))
        .layer(middleware::from_fn(security_headers))
        .route("/assets/{file}", get(asset))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "player.js" => (PLAYER_JS, "text/javascript; charset=utf-8"),
        "player.css" => (PLAYER_CSS, "text/css; charset=utf-8"),
        "export.js" => (EXPORT_JS, "text/javascript; charset=utf-8"),
        "print.css" => (PRINT_CSS, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON_SVG, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// A plain error page (403, 404, 500) in the dashboard's style.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Parley</title><link rel=\"stylesheet\" href=\"/assets/app.css?v={v}\"></head>\
         <body class=\"login-page\"><main class=\"login-card\"><h1>{title}</h1><p>{message}</p>\
         <p><a class=\"btn\" href=\"/conversations\">Back to conversations</a></p></main></body></html>",
        title = askama::filters::escape(title, askama::filters::Html)
            .map(|e| e.to_string())
            .unwrap_or_default(),
        message = askama::filters::escape(message, askama::filters::Html)
            .map(|e| e.to_string())
            .unwrap_or_default(),
        v = asset_version(),
    );
    (status, Html(body)).into_response()
}

/// The viewer's UTC offset in minutes, from the `parley_tz` cookie the script sets (0 = UTC).
pub(crate) fn tz_offset(headers: &axum::http::HeaderMap) -> i32 {
    crate::auth::session::cookie_value(headers, "parley_tz")
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|m| (-14 * 60..=14 * 60).contains(m))
        .unwrap_or(0)
}
