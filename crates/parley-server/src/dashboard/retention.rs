//! The retention settings page (`/settings/retention`, issue 16; administrators only): the
//! workspace's policy as a form, "Run now" and "Dry run" buttons, and the last runs and
//! erasures from the audit log. The rules are [`crate::retention`]'s; the API twin is
//! `api/retention.rs`.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /settings/retention` | the page (`?saved=1`, `?ran=1` after the forms) |
//! | `POST /settings/retention` | save the policy (form fields below) |
//! | `POST /settings/retention/run` | run it now (`dry_run=1`: count only) |
//!
//! Form fields: `conversation_days`, `attachment_days`, `tracker_days` (whole days, empty =
//! keep for ever), `status_closed`, `status_archived` (checkboxes: only conversations with a
//! ticked status are deleted by age; none ticked = any status), `_csrf`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use parley_core::{ConversationStatus, UserRole};
use parley_store::retention::MAX_RETENTION_DAYS;
use parley_store::{AuditEntry, RetentionPolicy};
use serde::Deserialize;
use serde_json::Value;

use super::form::{AdminForm, PageError, admin_forms};
use super::pages::Layout;
use super::{error_page, format, tz_offset};

admin_forms!(
    PolicyForm => "change the retention settings",
    RunForm => "run retention",
);
use crate::AppState;
use crate::auth::Session;
use crate::error::ApiError;

/// One row of the runs table.
struct RunRow {
    at: String,
    at_iso: String,
    who: String,
    kind: &'static str,
    policy: String,
    counts: String,
}

#[derive(Template)]
#[template(path = "retention.html")]
struct Page {
    layout: Layout,
    saved: bool,
    ran: bool,
    error: Option<String>,
    conversation_days: String,
    attachment_days: String,
    tracker_days: String,
    closed: bool,
    archived: bool,
    updated: String,
    active: bool,
    max_days: u32,
    runs: Vec<RunRow>,
    erasures: Vec<RunRow>,
}

/// `?saved=1`, `?ran=1`.
#[derive(Deserialize)]
pub(super) struct Flags {
    #[serde(default)]
    saved: Option<String>,
    #[serde(default)]
    ran: Option<String>,
}

/// The policy form.
#[derive(Deserialize)]
pub(super) struct PolicyForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    conversation_days: String,
    #[serde(default)]
    attachment_days: String,
    #[serde(default)]
    tracker_days: String,
    #[serde(default)]
    status_closed: Option<String>,
    #[serde(default)]
    status_archived: Option<String>,
}

/// The "Run now" form.
#[derive(Deserialize)]
pub(super) struct RunForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    dry_run: Option<String>,
}

fn days_text(d: Option<u32>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

/// A period field: empty = keep; else whole days in 1..=MAX. Errors: the message to show.
fn days_of(label: &str, text: &str) -> Result<Option<u32>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<u32>()
        .ok()
        .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
        .map(Some)
        .ok_or_else(|| {
            format!("{label}: a whole number of days from 1 to {MAX_RETENTION_DAYS}, or empty to keep for ever")
        })
}

fn policy_of(f: &PolicyForm) -> Result<RetentionPolicy, String> {
    let mut statuses = Vec::new();
    if f.status_closed.is_some() {
        statuses.push(ConversationStatus::Closed);
    }
    if f.status_archived.is_some() {
        statuses.push(ConversationStatus::Archived);
    }
    Ok(RetentionPolicy {
        conversation_days: days_of("Conversations", &f.conversation_days)?,
        conversation_statuses: statuses,
        attachment_days: days_of("Attachments and audio", &f.attachment_days)?,
        tracker_days: days_of("Website visits", &f.tracker_days)?,
        updated_at: None,
    })
}

/// A policy in words, for the runs table.
fn describe(p: &RetentionPolicy) -> String {
    let mut parts = Vec::new();
    if let Some(d) = p.conversation_days {
        let which = match p.conversation_statuses.as_slice() {
            [] => String::new(),
            s => format!(
                " ({})",
                s.iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        };
        parts.push(format!("conversations {d} d{which}"));
    }
    if let Some(d) = p.attachment_days {
        parts.push(format!("files {d} d"));
    }
    if let Some(d) = p.tracker_days {
        parts.push(format!("visits {d} d"));
    }
    if parts.is_empty() {
        "keep everything".into()
    } else {
        parts.join(", ")
    }
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn who(actor: &str) -> String {
    match actor {
        "system" => "Scheduled".into(),
        "cli" => "Command line".into(),
        a if a.starts_with("api_key:") => "API key".into(),
        a if a.starts_with("user:") => "Team member".into(),
        a => a.to_owned(),
    }
}

fn run_row(e: &AuditEntry, tz: i32) -> RunRow {
    let d = &e.details;
    let c = d.get("counts").cloned().unwrap_or_default();
    let policy = d
        .get("policy")
        .cloned()
        .and_then(|p| serde_json::from_value::<RetentionPolicy>(p).ok())
        .map(|p| describe(&p))
        .unwrap_or_default();
    RunRow {
        at: format::datetime(e.at, tz),
        at_iso: e.at.to_rfc3339(),
        who: who(&e.actor),
        kind: if d.get("dry_run").and_then(Value::as_bool) == Some(true) {
            "Dry run"
        } else {
            "Run"
        },
        policy,
        counts: format!(
            "{} conversations ({} messages), files of {} messages ({} files), {} visit items, {} visits",
            n(&c, "conversations"),
            n(&c, "messages"),
            n(&c, "attachment_messages"),
            n(&c, "attachment_files"),
            n(&c, "tracker_items"),
            n(&c, "tracker_sessions"),
        ),
    }
}

fn erasure_row(e: &AuditEntry, tz: i32) -> RunRow {
    let d = &e.details;
    RunRow {
        at: format::datetime(e.at, tz),
        at_iso: e.at.to_rfc3339(),
        who: who(&e.actor),
        kind: "Erasure",
        policy: format!(
            "by {}{}",
            d.get("matched_by")
                .and_then(Value::as_str)
                .unwrap_or("contact"),
            d.get("via")
                .and_then(Value::as_str)
                .map(|v| format!(", from the {v}"))
                .unwrap_or_default()
        ),
        counts: format!(
            "{} conversations ({} messages), {} files",
            n(d, "conversations"),
            n(d, "messages"),
            n(d, "attachment_files")
        ),
    }
}

fn refuse_member(session: &Session) -> Option<Response> {
    (session.user.role != UserRole::Admin).then(|| {
        error_page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only administrators can see and change the retention settings.",
        )
    })
}

async fn render(
    st: &AppState,
    session: &Session,
    headers: &HeaderMap,
    shown: RetentionPolicy,
    flags: (bool, bool),
    error: Option<String>,
) -> Response {
    let ws = session.user.workspace_id;
    let tz = tz_offset(headers);
    let r = st.store.retention();
    let loaded = async {
        let total = st.store.conversations().conversation_total(ws).await?;
        let saved = r.retention_policy(ws).await?;
        let runs = r.audit_log(ws, Some("retention.run"), None, 20).await?;
        let erasures = r.audit_log(ws, Some("contact.erased"), None, 10).await?;
        Ok::<_, parley_store::StoreError>((total, saved, runs, erasures))
    }
    .await;
    let (total, saved, runs, erasures) = match loaded {
        Ok(x) => x,
        Err(e) => return PageError::from(e).into_response(),
    };
    let page = Page {
        layout: Layout::new("settings", "Retention", session, tz, total),
        saved: flags.0,
        ran: flags.1,
        error,
        conversation_days: days_text(shown.conversation_days),
        attachment_days: days_text(shown.attachment_days),
        tracker_days: days_text(shown.tracker_days),
        closed: shown
            .conversation_statuses
            .contains(&ConversationStatus::Closed),
        archived: shown
            .conversation_statuses
            .contains(&ConversationStatus::Archived),
        updated: saved
            .updated_at
            .map(|t| format::datetime(t, tz))
            .unwrap_or_else(|| "never".into()),
        active: saved.is_active(),
        max_days: MAX_RETENTION_DAYS,
        runs: runs.iter().map(|e| run_row(e, tz)).collect(),
        erasures: erasures.iter().map(|e| erasure_row(e, tz)).collect(),
    };
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError(ApiError::internal(e)).into_response(),
    }
}

/// `GET /settings/retention`.
pub(super) async fn page(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(flags): Query<Flags>,
) -> Response {
    if let Some(r) = refuse_member(&session) {
        return r;
    }
    let policy = match st
        .store
        .retention()
        .retention_policy(session.user.workspace_id)
        .await
    {
        Ok(p) => p,
        Err(e) => return PageError::from(e).into_response(),
    };
    render(
        &st,
        &session,
        &headers,
        policy,
        (flags.saved.is_some(), flags.ran.is_some()),
        None,
    )
    .await
}

/// `POST /settings/retention`: saves the policy (recorded in the audit log), or shows the
/// form again with the error.
pub(super) async fn save(
    State(st): State<AppState>,
    headers: HeaderMap,
    AdminForm { session, form }: AdminForm<PolicyForm>,
) -> Response {
    let policy = match policy_of(&form) {
        Ok(p) => p,
        Err(message) => {
            let shown = RetentionPolicy {
                conversation_days: form.conversation_days.trim().parse().ok(),
                attachment_days: form.attachment_days.trim().parse().ok(),
                tracker_days: form.tracker_days.trim().parse().ok(),
                ..RetentionPolicy::default()
            };
            let mut res = render(
                &st,
                &session,
                &headers,
                shown,
                (false, false),
                Some(message),
            )
            .await;
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return res;
        }
    };
    let actor = crate::retention::user_actor(session.user.id);
    match crate::api::retention::save_policy(&st, session.user.workspace_id, &policy, actor).await {
        Ok(_) => Redirect::to("/settings/retention?saved=1").into_response(),
        Err(e) => PageError(e).into_response(),
    }
}

/// `POST /settings/retention/run`: runs the saved policy now (or a dry run), then back to
/// the page, where the run heads the table.
pub(super) async fn run(
    State(st): State<AppState>,
    AdminForm { session, form }: AdminForm<RunForm>,
) -> Response {
    let actor = crate::retention::user_actor(session.user.id);
    match crate::retention::run(
        &st,
        session.user.workspace_id,
        form.dry_run.is_some(),
        &actor,
        true,
    )
    .await
    {
        Ok(_) => Redirect::to("/settings/retention?ran=1").into_response(),
        Err(parley_store::StoreError::Conflict { message, .. }) => {
            error_page(StatusCode::CONFLICT, "Busy", &message)
        }
        Err(e) => PageError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(c: &str, closed: bool) -> PolicyForm {
        PolicyForm {
            csrf: String::new(),
            conversation_days: c.into(),
            attachment_days: " ".into(),
            tracker_days: "90".into(),
            status_closed: closed.then(|| "1".into()),
            status_archived: None,
        }
    }

    #[test]
    fn the_form_reads_days_and_statuses() {
        let p = policy_of(&form("30", true)).unwrap();
        assert_eq!(p.conversation_days, Some(30));
        assert_eq!(p.attachment_days, None);
        assert_eq!(p.tracker_days, Some(90));
        assert_eq!(p.conversation_statuses, vec![ConversationStatus::Closed]);
        assert_eq!(describe(&p), "conversations 30 d (closed), visits 90 d");
        for bad in ["0", "-3", "1.5", "36501", "soon"] {
            assert!(policy_of(&form(bad, false)).is_err(), "{bad}");
        }
    }
}
