//! The Messenger Platform shapes Parley reads: the Page webhook's `entry[].messaging[]`
//! events (messages and echoes, postbacks, reactions, delivery and read receipts) and the
//! Graph API's answers to the Send API and `/me`. Every field Parley does not read is ignored,
//! and every field Meta may leave out is an `Option`.
//!
//! Sources: Meta's Messenger Platform reference, "Webhook Events"
//! (<https://developers.facebook.com/docs/messenger-platform/reference/webhook-events>: `messages`,
//! `message_echoes`, `messaging_postbacks`, `message_reactions`, `message_deliveries`,
//! `message_reads`) and "Send API"
//! (<https://developers.facebook.com/docs/messenger-platform/reference/send-api>).

use serde::Deserialize;
use serde_json::{Number, Value};

use super::super::WithRaw;

/// An id as Meta sends it: a string, or (in older payloads) a number; empty strings and other
/// values read as none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Id(pub Option<String>);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Id(match Value::deserialize(d)? {
            Value::String(s) if !s.is_empty() => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }))
    }
}

/// A webhook delivery: `{"object": "page", "entry": [...]}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Webhook {
    /// `page` for a Page's events.
    pub object: Option<String>,
    /// One entry per Page.
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// `entry[]`: `{"id": PAGE_ID, "time", "messaging": [EVENT]}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Entry {
    /// The Page's id.
    #[serde(default)]
    pub id: Id,
    /// The events, in order, each kept also as it came.
    #[serde(default)]
    pub messaging: Vec<WithRaw<Event>>,
}

/// `entry[].messaging[]`: one event, `sender` and `recipient` and one object naming its kind.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Event {
    /// `{"id"}`: who sent it (the customer's PSID, or the Page for an echo).
    pub sender: Option<Party>,
    /// `{"id"}`: who it went to.
    pub recipient: Option<Party>,
    /// When, in ms since the epoch.
    pub timestamp: Option<Number>,
    /// A message (or the echo of one the Page sent).
    pub message: Option<WithRaw<Message>>,
    /// A button press.
    pub postback: Option<WithRaw<Postback>>,
    /// A reaction to a message.
    pub reaction: Option<WithRaw<Reaction>>,
    /// Messages delivered.
    pub delivery: Option<Receipt>,
    /// Messages read.
    pub read: Option<Receipt>,
}

/// `sender` / `recipient`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Party {
    /// The page-scoped id (PSID) or the Page's id.
    #[serde(default)]
    pub id: Id,
}

/// `message`: `{"mid", "text", "quick_reply", "reply_to", "attachments", "is_echo",
/// "metadata", "app_id", "sticker_id"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Message {
    /// The message id.
    pub mid: Option<String>,
    /// Its text.
    pub text: Option<String>,
    /// `{"payload"}` of a quick reply the customer tapped.
    pub quick_reply: Option<Value>,
    /// `{"mid"}` of the message it replies to.
    pub reply_to: Option<ReplyTo>,
    /// A sticker's id (a number, or a string).
    pub sticker_id: Option<Value>,
    /// Its attachments, each kept also as it came.
    pub attachments: Option<Vec<WithRaw<Attachment>>>,
    /// `true` for a message the Page sent.
    pub is_echo: Option<bool>,
    /// The sender app's `metadata` (an echo of Parley's own send: `parley:{message id}`).
    pub metadata: Option<String>,
}

impl Message {
    /// Whether it is a sticker (`sticker_id` is a number or a string).
    pub fn is_sticker(&self) -> bool {
        self.sticker_id
            .as_ref()
            .is_some_and(|s| s.is_number() || s.is_string())
    }
}

/// `reply_to`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReplyTo {
    /// The message replied to.
    pub mid: Option<String>,
}

/// `attachments[]`: `{"type", "payload"}` (a `fallback` link also has `title` and `url`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Attachment {
    /// `image`, `audio`, `video`, `file`, `location`, `fallback`...
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The attachment's content, kept also as it came.
    pub payload: Option<WithRaw<AttachmentPayload>>,
    /// A fallback link's title.
    pub title: Option<String>,
    /// A fallback link's URL.
    pub url: Option<String>,
    /// A fallback link's URL, as some payloads spell it.
    #[serde(rename = "URL")]
    pub url_upper: Option<String>,
}

/// `attachments[].payload`: `{"url"}` of a file, `{"coordinates": {"lat", "long"}}` of a
/// location.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttachmentPayload {
    /// Where the file is (Meta's CDN).
    pub url: Option<String>,
    /// A location's coordinates.
    pub coordinates: Option<Coordinates>,
}

/// `payload.coordinates` of a location.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Coordinates {
    /// Degrees.
    pub lat: Option<Number>,
    /// Degrees.
    pub long: Option<Number>,
}

/// `postback`: `{"title", "payload", "mid", "referral"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Postback {
    /// The button's title.
    pub title: Option<String>,
    /// The button's payload.
    pub payload: Option<String>,
    /// The postback's message id (not always sent).
    pub mid: Option<String>,
}

/// `reaction`: `{"reaction", "emoji", "action": "react" | "unreact", "mid"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reaction {
    /// `react` or `unreact`.
    pub action: Option<String>,
    /// The emoji.
    pub emoji: Option<String>,
    /// The reaction's name (`smile`, `love`...).
    pub reaction: Option<String>,
    /// The message reacted to.
    pub mid: Option<String>,
}

/// `delivery` (`{"mids", "watermark"}`) and `read` (`{"watermark"}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Receipt {
    /// The messages delivered (not always sent).
    pub mids: Option<Vec<String>>,
    /// Every message sent before this time (ms) is delivered / read.
    pub watermark: Option<i64>,
}

/// The Send API's answer: `{"recipient_id", "message_id"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SendAnswer {
    /// The new message's `mid`.
    pub message_id: Option<String>,
}

/// `GET /me?fields=id,name` with a Page access token: the Page.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Me {
    /// The Page's id.
    #[serde(default)]
    pub id: Id,
    /// The Page's name.
    pub name: Option<String>,
}
