//! The embeddable web widget and the visitor tracker: an assistant's widget settings (public
//! key, allowed origins, look, language strings, mode, pre-chat form, idle timeout, tracking
//! privacy), and the records of a visitor's website session (pageviews, events, triggers).
//!
//! Settings are one JSON document per assistant ([`WidgetSettings`], validated by
//! [`WidgetSettings::validate`]); the public key lives beside it in the store so a request can be
//! matched to its assistant by key alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::time::Timestamp;
use crate::validate::Invalid;
use crate::{AssistantId, WorkspaceId};

/// Most allowed origins per widget.
pub const MAX_ORIGINS: usize = 20;
/// Most pre-chat form fields.
pub const MAX_PRE_CHAT_FIELDS: usize = 10;
/// Longest text setting (title, greeting, a language string, a label), in characters.
pub const MAX_TEXT_CHARS: usize = 500;
/// Longest idle timeout, in minutes (one day).
pub const MAX_IDLE_MINUTES: u32 = 24 * 60;

/// How visitors may talk to the assistant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WidgetMode {
    /// Text only.
    #[default]
    Chat,
    /// Text and recorded voice messages (`POST /widget/v1/voice`: the audio is kept as an
    /// attachment and, with a `transcription_model`, transcribed into the message's text), and
    /// a call button when a browser voice call is possible (see [`WidgetMode::Voice`]).
    VoiceAndChat,
    /// Voice only: with a `transcription_model` and a `speech_model` a browser voice call
    /// (`POST /widget/v1/call`: the visitor talks, the answers are spoken); with a
    /// `transcription_model` only, recorded voice messages (answers come back as text).
    /// Without a `transcription_model` the script still offers text, since the assistant
    /// could not understand the recordings.
    Voice,
}

impl WidgetMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WidgetMode::Chat => "chat",
            WidgetMode::VoiceAndChat => "voice_and_chat",
            WidgetMode::Voice => "voice",
        }
    }
}

/// Where the launcher button sits on the host page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WidgetPosition {
    /// Bottom right corner.
    #[default]
    BottomRight,
    /// Bottom left corner.
    BottomLeft,
}

impl WidgetPosition {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WidgetPosition::BottomRight => "bottom_right",
            WidgetPosition::BottomLeft => "bottom_left",
        }
    }
}

/// The kind of a pre-chat form field, which decides how its value is validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Any text.
    #[default]
    Text,
    /// An e-mail address (`local@domain.tld`).
    Email,
    /// A phone number: digits with optional `+`, spaces, dashes, dots and parentheses, 5 to 20
    /// digits.
    Phone,
    /// One of [`PreChatField::options`].
    Dropdown,
}

/// One field of the pre-chat form. Its value becomes a `pre_chat` variable named `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreChatField {
    /// The variable name: 1-64 characters of `a-z`, `0-9`, `_`.
    pub key: String,
    /// The label the visitor sees.
    pub label: String,
    /// How the value is checked.
    #[serde(default)]
    pub kind: FieldKind,
    /// Whether the visitor must fill it.
    #[serde(default)]
    pub required: bool,
    /// The choices of a dropdown (1-50), ignored otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl PreChatField {
    /// Checks a visitor's value for this field, returning it trimmed (`None` when empty and not
    /// required). Errors: a message for the visitor (required, not an e-mail, ...).
    pub fn check(&self, value: Option<&str>) -> Result<Option<String>, String> {
        let v = value.map(str::trim).unwrap_or("");
        if v.is_empty() {
            return if self.required {
                Err(format!("{} is required", self.label))
            } else {
                Ok(None)
            };
        }
        if v.chars().count() > MAX_TEXT_CHARS {
            return Err(format!("{} is too long", self.label));
        }
        let ok = match self.kind {
            FieldKind::Text => true,
            FieldKind::Email => is_email(v),
            FieldKind::Phone => is_phone(v),
            FieldKind::Dropdown => self.options.iter().any(|o| o == v),
        };
        if ok {
            Ok(Some(v.to_owned()))
        } else {
            Err(match self.kind {
                FieldKind::Email => format!("{} must be an e-mail address", self.label),
                FieldKind::Phone => format!("{} must be a phone number", self.label),
                _ => format!("{} must be one of the choices", self.label),
            })
        }
    }
}

/// Whether `v` looks like an e-mail address: one `@`, a non-empty local part, a domain with a
/// dot and no spaces.
pub fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !v.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// Whether `v` looks like a phone number: only digits, `+` (first), spaces, `-`, `.`, `(`, `)`,
/// with 5 to 20 digits.
pub fn is_phone(v: &str) -> bool {
    let digits = v.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && v.char_indices().all(|(i, c)| {
            c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')') || (c == '+' && i == 0)
        })
}

/// The words the widget shows, so a site can speak its visitors' language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WidgetStrings {
    /// The input's placeholder.
    pub placeholder: String,
    /// The send button.
    pub send: String,
    /// The pre-chat form's submit button.
    pub start: String,
    /// The "new conversation" action.
    pub new_conversation: String,
    /// The "end conversation" action.
    pub end_conversation: String,
    /// Asks for a rating when the conversation has ended.
    pub rate_prompt: String,
    /// The rating comment's placeholder.
    pub comment_placeholder: String,
    /// Thanks after rating.
    pub thanks: String,
    /// The voice recording button.
    pub record: String,
    /// Shown when the browser gives no microphone (refused permission, no device, no
    /// recording support); the widget then offers text.
    pub mic_denied: String,
    /// The button that starts a voice call.
    pub call: String,
    /// The button that ends a voice call.
    pub end_call: String,
    /// A call's status while the widget listens to the visitor.
    pub listening: String,
    /// A call's status while the assistant's answer is played.
    pub speaking: String,
}

impl Default for WidgetStrings {
    fn default() -> Self {
        WidgetStrings {
            placeholder: "Type your message…".into(),
            send: "Send".into(),
            start: "Start chat".into(),
            new_conversation: "New conversation".into(),
            end_conversation: "End chat".into(),
            rate_prompt: "How was this conversation?".into(),
            comment_placeholder: "Anything to add? (optional)".into(),
            thanks: "Thank you for your feedback!".into(),
            record: "Record a voice message".into(),
            mic_denied: "The microphone is not available: please type your message.".into(),
            call: "Start a voice call".into(),
            end_call: "End call".into(),
            listening: "Listening…".into(),
            speaking: "Speaking…".into(),
        }
    }
}

impl WidgetStrings {
    fn all(&self) -> [(&'static str, &String); 14] {
        [
            ("placeholder", &self.placeholder),
            ("send", &self.send),
            ("start", &self.start),
            ("new_conversation", &self.new_conversation),
            ("end_conversation", &self.end_conversation),
            ("rate_prompt", &self.rate_prompt),
            ("comment_placeholder", &self.comment_placeholder),
            ("thanks", &self.thanks),
            ("record", &self.record),
            ("mic_denied", &self.mic_denied),
            ("call", &self.call),
            ("end_call", &self.end_call),
            ("listening", &self.listening),
            ("speaking", &self.speaking),
        ]
    }
}

/// An assistant's widget settings, as stored and as the dashboard edits them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WidgetSettings {
    /// Whether the widget answers at all; a disabled widget's key gets `widget_disabled`.
    pub enabled: bool,
    /// Origins allowed to embed the widget, each `scheme://host[:port]` exactly as browsers send
    /// it in the `Origin` header (`https://shop.example.com`). Empty: no site may embed it.
    pub allowed_origins: Vec<String>,
    /// The header's title.
    pub title: String,
    /// The first message the visitor sees (not stored until they write).
    pub greeting: String,
    /// The accent colour (`#rrggbb`): launcher, header, the visitor's bubbles.
    pub color: String,
    /// Text on the accent colour (`#rrggbb`).
    pub text_color: String,
    /// Launcher corner.
    pub position: WidgetPosition,
    /// Chat, voice and chat, or voice only.
    pub mode: WidgetMode,
    /// The pre-chat form (empty: none).
    pub pre_chat: Vec<PreChatField>,
    /// Minutes without a message after which the conversation ends and the visitor is asked
    /// for a rating; 0 disables it.
    pub idle_timeout_minutes: u32,
    /// The widget's words.
    pub strings: WidgetStrings,
    /// Whether the script records the visitor's website session (the tracker).
    pub tracking: bool,
    /// Whether the tracker honours Do Not Track and Global Privacy Control (default true):
    /// with either signal set it records nothing.
    pub respect_dnt: bool,
    /// The speech-to-text model of the assistant's provider that transcribes visitors' voice
    /// messages (`POST {base_url}/audio/transcriptions`, such as `whisper-1`); empty: voice
    /// messages are kept untranscribed, with a placeholder text.
    pub transcription_model: String,
    /// The text-to-speech model of the assistant's provider that speaks the assistant's answers
    /// in a browser voice call (`POST {base_url}/audio/speech`, such as `tts-1` or
    /// `gpt-4o-mini-tts`). A voice mode with both this and a `transcription_model` offers the
    /// call; empty: no call (recorded voice messages only).
    pub speech_model: String,
    /// The provider's voice for [`WidgetSettings::speech_model`] (OpenAI's `alloy`, `nova`,
    /// `onyx`...: any name of 1-64 letters, digits, `-` and `_`; default `alloy`).
    pub speech_voice: String,
    /// The audio format the provider is asked for (`response_format`): `mp3` (default), `wav`
    /// or `opus` (Ogg/Opus). Every one of them plays in current browsers.
    pub speech_format: SpeechFormat,
    /// In a call, how long the visitor must be silent, in milliseconds, before their utterance
    /// is sent (end of turn; 150-3000, default 700). Shorter answers sooner and cuts slow
    /// speakers off; longer waits through pauses.
    pub call_end_silence_ms: u32,
}

/// The audio format of spoken answers ([`WidgetSettings::speech_format`]), as OpenAI's
/// `/audio/speech` names it in `response_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeechFormat {
    /// MPEG audio layer III (`audio/mpeg`).
    #[default]
    Mp3,
    /// RIFF/WAVE PCM (`audio/wav`).
    Wav,
    /// Opus in an Ogg container (`audio/ogg`).
    Opus,
}

impl SpeechFormat {
    /// The wire name (`response_format`).
    pub fn as_str(self) -> &'static str {
        match self {
            SpeechFormat::Mp3 => "mp3",
            SpeechFormat::Wav => "wav",
            SpeechFormat::Opus => "opus",
        }
    }

    /// The MIME type of audio in this format.
    pub fn mime_type(self) -> &'static str {
        match self {
            SpeechFormat::Mp3 => "audio/mpeg",
            SpeechFormat::Wav => "audio/wav",
            SpeechFormat::Opus => "audio/ogg",
        }
    }

    /// The format named `name` (`mp3`, `wav`, `opus`), if any.
    pub fn parse(name: &str) -> Option<SpeechFormat> {
        match name {
            "mp3" => Some(SpeechFormat::Mp3),
            "wav" => Some(SpeechFormat::Wav),
            "opus" => Some(SpeechFormat::Opus),
            _ => None,
        }
    }
}

/// Shortest [`WidgetSettings::call_end_silence_ms`].
pub const MIN_CALL_END_SILENCE_MS: u32 = 150;
/// Longest [`WidgetSettings::call_end_silence_ms`].
pub const MAX_CALL_END_SILENCE_MS: u32 = 3000;

impl Default for WidgetSettings {
    fn default() -> Self {
        WidgetSettings {
            enabled: true,
            allowed_origins: Vec::new(),
            title: "Chat with us".into(),
            greeting: "Hi! How can I help you today?".into(),
            color: "#6d28d9".into(),
            text_color: "#ffffff".into(),
            position: WidgetPosition::default(),
            mode: WidgetMode::default(),
            pre_chat: Vec::new(),
            idle_timeout_minutes: 30,
            strings: WidgetStrings::default(),
            tracking: true,
            respect_dnt: true,
            transcription_model: String::new(),
            speech_model: String::new(),
            speech_voice: "alloy".into(),
            speech_format: SpeechFormat::default(),
            call_end_silence_ms: 700,
        }
    }
}

fn is_hex_color(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit())
}

/// Normalises an origin (`https://Shop.Example.com/` → `https://shop.example.com`); `None`
/// unless it is `http(s)://host[:port]` with nothing after the host but an optional `/`.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let o = origin.trim().trim_end_matches('/');
    let (scheme, rest) = o.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    if rest.is_empty()
        || rest.contains(['/', '?', '#', '@', ' '])
        || rest.starts_with(':')
        || rest.ends_with(':')
    {
        return None;
    }
    Some(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

impl WidgetSettings {
    /// Checks every field and normalises the origins.
    /// Errors: the first rule broken, with its field path (`allowed_origins[1]`, `color`,
    /// `pre_chat[0].key`, ...).
    pub fn validate(&mut self) -> Result<(), Invalid> {
        if self.allowed_origins.len() > MAX_ORIGINS {
            return Err(Invalid::new(
                "allowed_origins",
                format!("at most {MAX_ORIGINS} origins"),
            ));
        }
        for (i, o) in self.allowed_origins.iter_mut().enumerate() {
            *o = normalize_origin(o).ok_or_else(|| {
                Invalid::new(
                    format!("allowed_origins[{i}]"),
                    format!("{o:?} is not an origin such as https://shop.example.com"),
                )
            })?;
        }
        self.allowed_origins.dedup();
        for (field, value) in [("title", &self.title), ("greeting", &self.greeting)]
            .into_iter()
            .chain(self.strings.all().map(|(k, v)| (k, v)))
        {
            if value.chars().count() > MAX_TEXT_CHARS {
                return Err(Invalid::new(
                    field,
                    format!("at most {MAX_TEXT_CHARS} characters"),
                ));
            }
        }
        for (field, c) in [("color", &self.color), ("text_color", &self.text_color)] {
            if !is_hex_color(c) {
                return Err(Invalid::new(field, "a colour such as #6d28d9"));
            }
        }
        self.transcription_model = self.transcription_model.trim().to_owned();
        if self.transcription_model.len() > 200
            || self.transcription_model.chars().any(char::is_control)
        {
            return Err(Invalid::new(
                "transcription_model",
                "a model name of at most 200 characters",
            ));
        }
        self.speech_model = self.speech_model.trim().to_owned();
        if self.speech_model.len() > 200 || self.speech_model.chars().any(char::is_control) {
            return Err(Invalid::new(
                "speech_model",
                "a model name of at most 200 characters",
            ));
        }
        self.speech_voice = self.speech_voice.trim().to_owned();
        if self.speech_voice.is_empty() {
            self.speech_voice = "alloy".into();
        }
        if self.speech_voice.len() > 64
            || !self
                .speech_voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Invalid::new(
                "speech_voice",
                "a voice name of 1-64 letters, digits, - and _",
            ));
        }
        if !(MIN_CALL_END_SILENCE_MS..=MAX_CALL_END_SILENCE_MS).contains(&self.call_end_silence_ms)
        {
            return Err(Invalid::new(
                "call_end_silence_ms",
                format!("{MIN_CALL_END_SILENCE_MS} to {MAX_CALL_END_SILENCE_MS} milliseconds"),
            ));
        }
        if self.idle_timeout_minutes > MAX_IDLE_MINUTES {
            return Err(Invalid::new(
                "idle_timeout_minutes",
                format!("at most {MAX_IDLE_MINUTES} minutes"),
            ));
        }
        if self.pre_chat.len() > MAX_PRE_CHAT_FIELDS {
            return Err(Invalid::new(
                "pre_chat",
                format!("at most {MAX_PRE_CHAT_FIELDS} fields"),
            ));
        }
        for (i, f) in self.pre_chat.iter().enumerate() {
            let valid_key = !f.key.is_empty()
                && f.key.len() <= 64
                && f.key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_key {
                return Err(Invalid::new(
                    format!("pre_chat[{i}].key"),
                    "1-64 characters of a-z, 0-9 and _",
                ));
            }
            if self.pre_chat[..i].iter().any(|g| g.key == f.key) {
                return Err(Invalid::new(
                    format!("pre_chat[{i}].key"),
                    "used by an earlier field",
                ));
            }
            if f.label.trim().is_empty() || f.label.chars().count() > MAX_TEXT_CHARS {
                return Err(Invalid::new(
                    format!("pre_chat[{i}].label"),
                    "1-500 characters",
                ));
            }
            if f.kind == FieldKind::Dropdown
                && (f.options.is_empty()
                    || f.options.len() > 50
                    || f.options.iter().any(|o| o.trim().is_empty()))
            {
                return Err(Invalid::new(
                    format!("pre_chat[{i}].options"),
                    "a dropdown needs 1-50 non-empty choices",
                ));
            }
        }
        Ok(())
    }

    /// Whether the widget offers a browser voice call: a voice mode, a `transcription_model`
    /// and a `speech_model`.
    pub fn call_enabled(&self) -> bool {
        self.mode != WidgetMode::Chat
            && !self.transcription_model.is_empty()
            && !self.speech_model.is_empty()
    }

    /// Whether `origin` (an `Origin` header's value) may use the widget.
    pub fn allows(&self, origin: &str) -> bool {
        normalize_origin(origin).is_some_and(|o| self.allowed_origins.contains(&o))
    }
}

/// An assistant's widget as stored: its public key and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidgetRecord {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The assistant visitors talk to.
    pub assistant_id: AssistantId,
    /// The public key in the script tag (`pk_` and 32 random base62 characters); replacing it
    /// revokes the old one.
    pub public_key: String,
    /// The settings.
    pub settings: WidgetSettings,
    /// When it was last saved.
    pub updated_at: Timestamp,
}

/// What a tracker record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackerItemKind {
    /// A page the visitor viewed.
    Pageview,
    /// A click on a marked element, a form submission, or a custom event.
    Event,
    /// A named rule that captured structured data (such as a submitted form) as JSON.
    Trigger,
}

impl TrackerItemKind {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackerItemKind::Pageview => "pageview",
            TrackerItemKind::Event => "event",
            TrackerItemKind::Trigger => "trigger",
        }
    }
}

/// A visitor's website session (a visit), as recorded by the widget script.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackerSession {
    /// Id (UUIDv7).
    pub id: Uuid,
    /// The workspace.
    pub workspace_id: Option<WorkspaceId>,
    /// The assistant whose widget recorded it.
    pub assistant_id: Option<AssistantId>,
    /// When the visit began.
    pub started_at: Option<Timestamp>,
    /// The last activity seen (pageview, event, heartbeat).
    pub last_seen_at: Option<Timestamp>,
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`, from the User-Agent.
    pub device: String,
    /// Browser name and version (`Chrome 130.0.0.0`), from the User-Agent.
    pub browser: String,
    /// Operating system and version (`Windows 10`), from the User-Agent.
    pub os: String,
    /// Country (ISO 3166-1 alpha-2 code), from the GeoIP database when one is configured.
    pub country: String,
    /// City name (English), from the GeoIP database when one is configured.
    pub city: String,
    /// The first page's URL (without its fragment).
    pub landing_page: String,
    /// The referrer URL the visit came from (empty: none).
    pub referrer: String,
    /// `direct`, `search`, `social`, `email`, `paid`, `referral` or `internal`: see
    /// `traffic_source` in the server's tracker.
    pub traffic_source: String,
    /// `utm_source` of the landing page.
    pub utm_source: String,
    /// `utm_medium` of the landing page.
    pub utm_medium: String,
    /// `utm_campaign` of the landing page.
    pub utm_campaign: String,
}

impl TrackerSession {
    /// Seconds from the start of the visit to its last activity.
    pub fn duration_secs(&self) -> i64 {
        match (self.started_at, self.last_seen_at) {
            (Some(a), Some(b)) => ((b.0 - a.0) / 1000).max(0),
            _ => 0,
        }
    }
}

/// One pageview, event or trigger of a tracker session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerItem {
    /// Id, chosen by the script (a UUID) so that resending it updates instead of duplicating.
    pub id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// Pageview, event or trigger.
    pub kind: TrackerItemKind,
    /// The event or trigger's name (`click`, `form_submit`, a custom name); the page title for a
    /// pageview.
    pub name: String,
    /// The page's URL (without its fragment).
    pub url: String,
    /// When it happened.
    pub at: Timestamp,
    /// Pageviews: milliseconds spent on the page so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_spent_ms: Option<i64>,
    /// Pageviews: the deepest point scrolled to, in percent of the page (0-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scroll_depth: Option<u8>,
    /// Events and triggers: their data (a JSON object; form fields by name, never passwords
    /// or payment fields).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// A tracker session with everything it recorded, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerRecord {
    /// The session.
    pub session: TrackerSession,
    /// Its pageviews, events and triggers, by time.
    pub items: Vec<TrackerItem>,
}

impl TrackerRecord {
    /// How many pages were viewed.
    pub fn pages_visited(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.kind == TrackerItemKind::Pageview)
            .count()
    }

    /// A bounce: one page viewed and nothing else done (no event or trigger).
    pub fn bounced(&self) -> bool {
        self.pages_visited() <= 1
            && self
                .items
                .iter()
                .all(|i| i.kind == TrackerItemKind::Pageview)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_checked() {
        assert_eq!(
            normalize_origin("HTTPS://Shop.Example.com/").as_deref(),
            Some("https://shop.example.com")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        for bad in [
            "shop.example.com",
            "ftp://x.y",
            "https://x.y/path",
            "https://",
            "null",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
        let mut s = WidgetSettings {
            allowed_origins: vec!["https://A.example/".into()],
            ..Default::default()
        };
        s.validate().unwrap();
        assert!(s.allows("https://a.example"));
        assert!(!s.allows("https://b.example"));
        assert!(!s.allows("http://a.example"));
    }

    #[test]
    fn settings_validation_names_the_field() {
        let mut s = WidgetSettings {
            color: "red".into(),
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "color");
        let mut s = WidgetSettings {
            transcription_model: "whisper\n1".into(),
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "transcription_model");
        let mut s = WidgetSettings {
            transcription_model: " whisper-1 ".into(),
            ..Default::default()
        };
        s.validate().unwrap();
        assert_eq!(s.transcription_model, "whisper-1");
        let mut s = WidgetSettings {
            pre_chat: vec![PreChatField {
                key: "Bad Key".into(),
                label: "x".into(),
                kind: FieldKind::Text,
                required: false,
                options: vec![],
            }],
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "pre_chat[0].key");
        let mut s = WidgetSettings {
            allowed_origins: vec!["https://ok.example".into(), "nope".into()],
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "allowed_origins[1]");
    }

    #[test]
    fn pre_chat_values_are_validated() {
        let f = |kind, required| PreChatField {
            key: "k".into(),
            label: "Field".into(),
            kind,
            required,
            options: vec!["Sales".into(), "Support".into()],
        };
        assert!(f(FieldKind::Text, true).check(Some("  ")).is_err());
        assert_eq!(f(FieldKind::Text, false).check(None), Ok(None));
        assert!(
            f(FieldKind::Email, true)
                .check(Some("ana@example"))
                .is_err()
        );
        assert_eq!(
            f(FieldKind::Email, true).check(Some(" ana@example.com ")),
            Ok(Some("ana@example.com".into()))
        );
        assert!(
            f(FieldKind::Phone, true)
                .check(Some("+49 170 1234567"))
                .is_ok()
        );
        assert!(f(FieldKind::Phone, true).check(Some("call me")).is_err());
        assert!(f(FieldKind::Phone, true).check(Some("12+345678")).is_err());
        assert!(f(FieldKind::Dropdown, true).check(Some("Support")).is_ok());
        assert!(f(FieldKind::Dropdown, true).check(Some("Other")).is_err());
    }
}
