//! The widget settings page of an assistant (`/assistants/{id}/widget`): public key, allowed
//! origins, look, language strings, mode, pre-chat form, idle timeout and tracking privacy,
//! with a live preview (the real widget script in preview mode) and the script tag to copy.
//! Members see it; admins save (and may replace the key, which revokes the old one).
//!
//! Pre-chat fields are edited as lines `key | Label | kind | required|optional | choice, choice`
//! (kind: `text`, `email`, `phone`, `dropdown`; the choices only for dropdowns).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use parley_core::widget::{
    FieldKind, PreChatField, WidgetMode, WidgetPosition, WidgetRecord, WidgetSettings,
    WidgetStrings,
};
use parley_core::{AssistantId, Timestamp, UserRole};
use serde::Deserialize;

use super::form::{AdminForm, PageError, admin_forms};
use super::pages::Layout;
use super::{error_page, tz_offset};

admin_forms!(WidgetForm => "change the widget");
use crate::AppState;
use crate::auth::Session;
use crate::error::ApiError;

#[derive(Template)]
#[template(path = "widget_settings.html")]
struct Page {
    layout: Layout,
    assistant_id: String,
    assistant_name: String,
    is_admin: bool,
    saved: bool,
    error: Option<String>,
    public_key: String,
    script_tag: String,
    s: WidgetSettings,
    origins_text: String,
    pre_chat_text: String,
    /// The settings as JSON for the live preview.
    preview_json: String,
    strings: Vec<(&'static str, &'static str, String)>,
}

/// `?saved=1` after a save.
#[derive(Deserialize)]
pub(super) struct Saved {
    #[serde(default)]
    saved: Option<String>,
}

fn field_kind(k: FieldKind) -> &'static str {
    match k {
        FieldKind::Text => "text",
        FieldKind::Email => "email",
        FieldKind::Phone => "phone",
        FieldKind::Dropdown => "dropdown",
    }
}

/// The pre-chat fields as editable lines.
fn pre_chat_lines(fields: &[PreChatField]) -> String {
    fields
        .iter()
        .map(|f| {
            let mut line = format!(
                "{} | {} | {} | {}",
                f.key,
                f.label,
                field_kind(f.kind),
                if f.required { "required" } else { "optional" }
            );
            if f.kind == FieldKind::Dropdown {
                line.push_str(" | ");
                line.push_str(&f.options.join(", "));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses pre-chat lines. Errors: a message naming the line.
pub fn parse_pre_chat(text: &str) -> Result<Vec<PreChatField>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        if parts.len() < 2 {
            return Err(format!(
                "pre-chat line {}: write `key | Label | kind | required`",
                n + 1
            ));
        }
        let kind = match parts.get(2).copied().unwrap_or("text") {
            "" | "text" => FieldKind::Text,
            "email" => FieldKind::Email,
            "phone" => FieldKind::Phone,
            "dropdown" => FieldKind::Dropdown,
            other => {
                return Err(format!(
                    "pre-chat line {}: {other:?} is not a kind (text, email, phone, dropdown)",
                    n + 1
                ));
            }
        };
        let required = match parts.get(3).copied().unwrap_or("optional") {
            "required" | "yes" => true,
            "" | "optional" | "no" => false,
            other => {
                return Err(format!(
                    "pre-chat line {}: {other:?} should be required or optional",
                    n + 1
                ));
            }
        };
        let options = parts
            .get(4)
            .map(|o| {
                o.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        out.push(PreChatField {
            key: parts[0].to_owned(),
            label: parts[1].to_owned(),
            kind,
            required,
            options,
        });
    }
    Ok(out)
}

/// Where browsers reach this server, for the script tag: the request's `Host`, over https when
/// the server sets secure cookies (it runs behind HTTPS) or a proxy says so.
fn public_base(st: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    let https = st.settings.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// The tag a site pastes into its pages.
pub fn script_tag(base: &str, key: &str) -> String {
    format!("<script src=\"{base}/widget.js\" data-key=\"{key}\" async></script>")
}

fn strings_rows(s: &WidgetStrings) -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "str_placeholder",
            "Input placeholder",
            s.placeholder.clone(),
        ),
        ("str_send", "Send button", s.send.clone()),
        ("str_start", "Pre-chat submit", s.start.clone()),
        (
            "str_new_conversation",
            "New conversation",
            s.new_conversation.clone(),
        ),
        (
            "str_end_conversation",
            "End conversation",
            s.end_conversation.clone(),
        ),
        ("str_rate_prompt", "Rating question", s.rate_prompt.clone()),
        (
            "str_comment_placeholder",
            "Rating comment placeholder",
            s.comment_placeholder.clone(),
        ),
        ("str_thanks", "Thanks after rating", s.thanks.clone()),
        ("str_record", "Record button", s.record.clone()),
        ("str_mic_denied", "No microphone", s.mic_denied.clone()),
        ("str_call", "Start call button", s.call.clone()),
        ("str_end_call", "End call button", s.end_call.clone()),
        ("str_listening", "Call: listening", s.listening.clone()),
        ("str_speaking", "Call: speaking", s.speaking.clone()),
    ]
}

#[allow(clippy::too_many_arguments)]
fn render(
    st: &AppState,
    session: &Session,
    headers: &HeaderMap,
    total: u64,
    assistant: &parley_core::model::Assistant,
    key: &str,
    s: WidgetSettings,
    saved: bool,
    error: Option<String>,
) -> Response {
    let base = public_base(st, headers);
    let page = Page {
        layout: Layout::new(
            "assistants",
            &format!("{} · Widget", assistant.name),
            session,
            tz_offset(headers),
            total,
        ),
        assistant_id: assistant.id.to_string(),
        assistant_name: assistant.name.clone(),
        is_admin: session.user.role == UserRole::Admin,
        saved,
        error,
        public_key: key.to_owned(),
        script_tag: script_tag(&base, key),
        origins_text: s.allowed_origins.join("\n"),
        pre_chat_text: pre_chat_lines(&s.pre_chat),
        preview_json: serde_json::to_string(&s).unwrap_or_default(),
        strings: strings_rows(&s.strings),
        s,
    };
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError(ApiError::internal(e)).into_response(),
    }
}

/// The assistant's widget, created and stored with a fresh key and default settings on the
/// first visit, so the key (and script tag) shown works at once, before any save.
async fn load(
    st: &AppState,
    session: &Session,
    id: &str,
) -> Result<(parley_core::model::Assistant, WidgetRecord, u64), Response> {
    let ws = session.user.workspace_id;
    let Ok(id) = id.parse::<AssistantId>() else {
        return Err(error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such assistant.",
        ));
    };
    let (a, w, total) = match tokio::try_join!(
        st.store.assistants().get_assistant(ws, id),
        st.store.widgets().widget_for_assistant(ws, id),
        st.store.conversations().conversation_total(ws)
    ) {
        Ok((Some(a), w, t)) => (a, w, t),
        Ok(_) => {
            return Err(error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "No such assistant.",
            ));
        }
        Err(e) => return Err(PageError::from(e).into_response()),
    };
    let w = match w {
        Some(w) => w,
        None => {
            let fresh = WidgetRecord {
                workspace_id: ws,
                assistant_id: a.id,
                public_key: crate::widget::new_public_key()
                    .map_err(|e| PageError(ApiError::internal(e)).into_response())?,
                settings: WidgetSettings {
                    title: if a.company.is_empty() {
                        format!("Chat with {}", a.name)
                    } else {
                        a.company.clone()
                    },
                    ..Default::default()
                },
                updated_at: Timestamp::now(),
            };
            st.store
                .widgets()
                .create_widget(&fresh)
                .await
                .map_err(|e| PageError::from(e).into_response())?
        }
    };
    Ok((a, w, total))
}

/// `GET /assistants/{id}/widget`.
pub(super) async fn page(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Saved>,
) -> Response {
    match load(&st, &session, &id).await {
        Ok((a, w, total)) => render(
            &st,
            &session,
            &headers,
            total,
            &a,
            &w.public_key,
            w.settings,
            q.saved.is_some(),
            None,
        ),
        Err(r) => r,
    }
}

/// The form's fields, as posted.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WidgetForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    allowed_origins: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    greeting: String,
    #[serde(default)]
    color: String,
    #[serde(default)]
    text_color: String,
    #[serde(default)]
    position: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    pre_chat: String,
    #[serde(default)]
    idle_timeout_minutes: String,
    #[serde(default)]
    tracking: Option<String>,
    #[serde(default)]
    respect_dnt: Option<String>,
    #[serde(default)]
    rotate_key: Option<String>,
    #[serde(default)]
    str_placeholder: String,
    #[serde(default)]
    str_send: String,
    #[serde(default)]
    str_start: String,
    #[serde(default)]
    str_new_conversation: String,
    #[serde(default)]
    str_end_conversation: String,
    #[serde(default)]
    str_rate_prompt: String,
    #[serde(default)]
    str_comment_placeholder: String,
    #[serde(default)]
    str_thanks: String,
    #[serde(default)]
    str_record: String,
    #[serde(default)]
    str_mic_denied: String,
    #[serde(default)]
    str_call: String,
    #[serde(default)]
    str_end_call: String,
    #[serde(default)]
    str_listening: String,
    #[serde(default)]
    str_speaking: String,
    #[serde(default)]
    transcription_model: String,
    #[serde(default)]
    speech_model: String,
    #[serde(default)]
    speech_voice: String,
    #[serde(default)]
    speech_format: String,
    #[serde(default)]
    call_end_silence_ms: String,
}

fn settings_of(f: &WidgetForm) -> Result<WidgetSettings, String> {
    let defaults = WidgetStrings::default();
    let or = |v: &str, d: &str| {
        let v = v.trim();
        if v.is_empty() {
            d.to_owned()
        } else {
            v.to_owned()
        }
    };
    let mut s =
        WidgetSettings {
            enabled: f.enabled.is_some(),
            allowed_origins: f
                .allowed_origins
                .split(['\n', ',', ' '])
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
            title: f.title.trim().to_owned(),
            greeting: f.greeting.trim().to_owned(),
            color: f.color.trim().to_ascii_lowercase(),
            text_color: f.text_color.trim().to_ascii_lowercase(),
            position: if f.position == "bottom_left" {
                WidgetPosition::BottomLeft
            } else {
                WidgetPosition::BottomRight
            },
            mode: match f.mode.as_str() {
                "voice" => WidgetMode::Voice,
                "voice_and_chat" => WidgetMode::VoiceAndChat,
                _ => WidgetMode::Chat,
            },
            pre_chat: parse_pre_chat(&f.pre_chat)?,
            idle_timeout_minutes: f.idle_timeout_minutes.trim().parse().map_err(|_| {
                "Idle timeout: a whole number of minutes (0 turns it off)".to_owned()
            })?,
            strings: WidgetStrings {
                placeholder: or(&f.str_placeholder, &defaults.placeholder),
                send: or(&f.str_send, &defaults.send),
                start: or(&f.str_start, &defaults.start),
                new_conversation: or(&f.str_new_conversation, &defaults.new_conversation),
                end_conversation: or(&f.str_end_conversation, &defaults.end_conversation),
                rate_prompt: or(&f.str_rate_prompt, &defaults.rate_prompt),
                comment_placeholder: or(&f.str_comment_placeholder, &defaults.comment_placeholder),
                thanks: or(&f.str_thanks, &defaults.thanks),
                record: or(&f.str_record, &defaults.record),
                mic_denied: or(&f.str_mic_denied, &defaults.mic_denied),
                call: or(&f.str_call, &defaults.call),
                end_call: or(&f.str_end_call, &defaults.end_call),
                listening: or(&f.str_listening, &defaults.listening),
                speaking: or(&f.str_speaking, &defaults.speaking),
            },
            tracking: f.tracking.is_some(),
            respect_dnt: f.respect_dnt.is_some(),
            transcription_model: f.transcription_model.trim().to_owned(),
            speech_model: f.speech_model.trim().to_owned(),
            speech_voice: f.speech_voice.trim().to_owned(),
            speech_format: match f.speech_format.trim() {
                "" => parley_core::widget::SpeechFormat::default(),
                other => parley_core::widget::SpeechFormat::parse(other)
                    .ok_or_else(|| "Speech format: mp3, wav or opus".to_owned())?,
            },
            call_end_silence_ms: match f.call_end_silence_ms.trim() {
                "" => WidgetSettings::default().call_end_silence_ms,
                v => v.parse().map_err(|_| {
                    "End of turn after silence: a whole number of milliseconds".to_owned()
                })?,
            },
        };
    s.validate()
        .map_err(|e| format!("{}: {}", e.field, e.message))?;
    Ok(s)
}

/// `POST /assistants/{id}/widget` (admins): saves the settings (and a new key when asked).
pub(super) async fn save(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<WidgetForm>,
) -> Response {
    let (a, mut w, total) = match load(&st, &session, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let settings = match settings_of(&form) {
        Ok(s) => s,
        Err(message) => {
            // Show what was typed, with the error, without saving.
            let mut shown = w.settings.clone();
            shown.allowed_origins = vec![form.allowed_origins.clone()];
            return render(
                &st,
                &session,
                &headers,
                total,
                &a,
                &w.public_key,
                shown,
                false,
                Some(message),
            );
        }
    };
    if form.rotate_key.is_some() {
        match crate::widget::new_public_key() {
            Ok(k) => w.public_key = k,
            Err(e) => return PageError(ApiError::internal(e)).into_response(),
        }
    }
    w.settings = settings;
    w.updated_at = Timestamp::now();
    if let Err(e) = st.store.widgets().save_widget(&w).await {
        return PageError::from(e).into_response();
    }
    Redirect::to(&format!("/assistants/{}/widget?saved=1", a.id)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_chat_lines_round_trip() {
        let text = "name | Your name | text | required\nemail | E-mail | email | optional\ntopic | Topic | dropdown | required | Sales, Support";
        let fields = parse_pre_chat(text).unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[2].options, vec!["Sales", "Support"]);
        assert!(fields[0].required && !fields[1].required);
        assert_eq!(pre_chat_lines(&fields), text);
        assert!(parse_pre_chat("x | X | date").is_err());
        assert!(parse_pre_chat("x").is_err());
    }
}
