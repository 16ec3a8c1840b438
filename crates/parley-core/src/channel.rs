//! Messaging channels (WhatsApp Cloud API, Telegram Bot API, Messenger Platform) and AI voice platforms (Retell,
//! Vapi): the connection of a sender to an assistant, and what Parley records about a message's life on such a channel (its platform
//! type, attachments, delivery status). Pure data: the server's `channels` module talks to the
//! platforms.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{AssistantId, ChannelConnectionId, WorkspaceId};
use crate::time::Timestamp;

/// Which platform a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Meta's WhatsApp Business Cloud API (Graph API).
    Whatsapp,
    /// Telegram's Bot API.
    Telegram,
    /// Meta's Messenger Platform (a Facebook Page; Graph API Send API and page webhooks).
    Messenger,
    /// Retell AI's post-call webhooks (phone calls on channel `voip`).
    Retell,
    /// Vapi's server messages (phone calls on channel `voip`).
    Vapi,
    /// Twilio Programmable Voice's status and recording status callbacks (phone calls on
    /// channel `voip`).
    Twilio,
}

impl ChannelKind {
    /// The wire and storage name: `whatsapp`, `telegram`, `messenger`, `retell`, `vapi` or
    /// `twilio`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Messenger => "messenger",
            ChannelKind::Retell => "retell",
            ChannelKind::Vapi => "vapi",
            ChannelKind::Twilio => "twilio",
        }
    }

    /// Whether the kind is an AI voice platform (its conversations are phone calls on channel
    /// `voip`, and Parley sends nothing back through it).
    pub fn is_voip(self) -> bool {
        matches!(
            self,
            ChannelKind::Retell | ChannelKind::Vapi | ChannelKind::Twilio
        )
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = String;
    /// Parses `whatsapp`, `telegram`, `messenger`, `retell`, `vapi` or `twilio`. Errors: any other text, with the
    /// accepted names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "whatsapp" => Ok(ChannelKind::Whatsapp),
            "telegram" => Ok(ChannelKind::Telegram),
            "messenger" => Ok(ChannelKind::Messenger),
            "retell" => Ok(ChannelKind::Retell),
            "vapi" => Ok(ChannelKind::Vapi),
            "twilio" => Ok(ChannelKind::Twilio),
            _ => Err(format!(
                "unknown channel kind {s:?}; expected whatsapp, telegram, messenger, retell, vapi or twilio"
            )),
        }
    }
}

/// A secret as stored: sealed with the server's secret key (the server's `secrets` module),
/// with the last four characters of the plain text so people can recognise it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Base64 of nonce and ciphertext.
    pub sealed: String,
    /// `…` followed by the last four characters of the secret.
    pub hint: String,
}

impl SealedSecret {
    /// The hint shown for `plain`: `…` and its last four characters (`…` alone when shorter
    /// than 8 characters, so short secrets are not half shown).
    pub fn hint_for(plain: &str) -> String {
        let n = plain.chars().count();
        if n < 8 {
            return "…".to_owned();
        }
        let tail: String = plain.chars().skip(n - 4).collect();
        format!("…{tail}")
    }
}

/// A sender connected to an assistant: a WhatsApp phone number, a Telegram bot, or an AI voice
/// platform's webhook (Retell, Vapi). Every conversation arriving through it is handled by its
/// assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConnection {
    /// Id; also the path segment of its webhook URL (`/webhooks/{kind}/{id}`).
    pub id: ChannelConnectionId,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The assistant that answers.
    pub assistant_id: AssistantId,
    /// The platform.
    pub kind: ChannelKind,
    /// The platform's id of the sender, unique per kind across the instance: the WhatsApp
    /// phone number id, the Telegram bot's id (the digits before `:` in its token), or the
    /// Facebook Page id (Messenger); for a
    /// voice platform, which has no sender to claim, the connection's own id.
    pub external_key: String,
    /// Settings that are not secret (a JSON object; keys per kind, see the server's
    /// `channels::whatsapp::Config` and `channels::telegram::Config`).
    pub config: Map<String, Value>,
    /// Sealed secrets by name (`access_token`, `app_secret`, `verify_token`, `bot_token`,
    /// `webhook_secret`; Messenger's `access_token` is the Page access token; Retell's
    /// `api_key`, Vapi's `server_secret`, Twilio's `auth_token`).
    pub secrets: BTreeMap<String, SealedSecret>,
    /// When it was connected.
    pub created_at: Timestamp,
}

/// A message's delivery status on a channel, as the platform reports it (WhatsApp
/// `statuses[].status`). Statuses only move forward: see [`DeliveryStatus::rank`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The platform accepted Parley's send request.
    Accepted,
    /// Sent from the business.
    Sent,
    /// The platform could not deliver it (see the delivery's `errors`).
    Failed,
    /// Arrived on the customer's device.
    Delivered,
    /// Read by the customer.
    Read,
    /// A voice message the customer played.
    Played,
}

impl DeliveryStatus {
    /// Its place in the order accepted < sent < failed < delivered < read < played. A status
    /// update is applied only when it ranks higher than the current one, so late or
    /// redelivered callbacks never move a message back (a `sent` after `read` is ignored).
    pub fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Accepted => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Failed => 2,
            DeliveryStatus::Delivered => 3,
            DeliveryStatus::Read => 4,
            DeliveryStatus::Played => 5,
        }
    }

    /// Parses a WhatsApp status name (`sent`, `delivered`, `read`, `played`, `failed`).
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "accepted" => DeliveryStatus::Accepted,
            "sent" => DeliveryStatus::Sent,
            "failed" => DeliveryStatus::Failed,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "played" => DeliveryStatus::Played,
            _ => return None,
        })
    }
}

/// An error a platform reported for a send or a delivery (WhatsApp Graph API `error` objects
/// and `statuses[].errors[]`; Telegram `error_code`/`description`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelError {
    /// The platform's numeric code (WhatsApp `131047`, Telegram `429`...); 0 when Parley
    /// refused the send itself.
    pub code: i64,
    /// Short title (WhatsApp `title` or `type`; Telegram `description`).
    pub title: String,
    /// Longer explanation (WhatsApp `message` or `error_data.details`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.title)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

/// Where an outbound message stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The latest status.
    pub status: DeliveryStatus,
    /// When the platform says it reached that status.
    pub at: Timestamp,
    /// Errors reported with a failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ChannelError>,
}

/// A file that came with a message (image, voice note, document...), kept in Parley's
/// attachment storage under the data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// `image`, `audio`, `voice`, `video`, `document`, `sticker`.
    pub kind: String,
    /// The platform's id of the file (WhatsApp media id, Telegram `file_id`).
    pub media_id: String,
    /// MIME type, as the platform gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// The file's name (documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Size in bytes, once downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Hex SHA-256 of the downloaded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the bytes are, relative to the attachment storage root; absent until downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_key: Option<String>,
    /// What a voice note says (OpenAI-compatible `/audio/transcriptions`), when transcribed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    /// What an image shows, as a vision-capable model described it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How many download attempts were made.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub download_attempts: u32,
    /// Why the last download attempt failed, while the file is not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_error: Option<String>,
    /// The file was stored although its workspace was over its attachment quota (channel
    /// media are kept rather than lost; see `attachment_quota_bytes` in the server's settings).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub over_quota: bool,
    /// When the workspace's retention policy removed the file (issue 16): `storage_key` is
    /// then gone and only this record (and the message's text, transcript, description) stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<Timestamp>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What Parley records about a message on a messaging channel (`meta.channel`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMessageMeta {
    /// The platform's message type: WhatsApp `messages[].type` (`text`, `image`, `audio`,
    /// `video`, `document`, `sticker`, `location`, `contacts`, `interactive`, `button`,
    /// `reaction`, `edit`, `revoke`, `order`, `system`, `unsupported`...); Telegram `text`,
    /// `photo`, `voice`, `audio`, `document`, `video`, `sticker`, `edited`...; Messenger
    /// `text`, `quick_reply`, `attachments`, `sticker`, `location`, `postback`, `reaction`,
    /// `echo`; `template` for a WhatsApp template Parley sent.
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific details, as the platform sent them (location, contacts, the reply's ids,
    /// the reaction and the message it targets, the template's name and parameters...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// The platform id of the message this one replies to, edits, deletes or reacts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<String>,
    /// Files that came with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Outbound messages: where the delivery stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Set on a message the customer later edited: the new text's platform id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_by: Option<String>,
    /// Set on a message the customer later deleted for everyone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_show_only_the_last_four_characters_of_long_secrets() {
        assert_eq!(SealedSecret::hint_for("EAAG-token-1234abcd"), "…abcd");
        assert_eq!(SealedSecret::hint_for("short"), "…");
    }

    #[test]
    fn statuses_only_move_forward() {
        use DeliveryStatus::*;
        assert!(Read.rank() > Delivered.rank());
        assert!(Sent.rank() < Failed.rank());
        assert!(Played.rank() > Read.rank());
        assert_eq!(DeliveryStatus::parse("played"), Some(Played));
        assert_eq!(DeliveryStatus::parse("warning"), None);
    }
}
