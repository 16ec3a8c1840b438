//! The Telegram Bot API shapes Parley reads: an `Update` (a message, an edited message, a
//! callback query or another kind), its `Message`, `User` and `Chat`, file objects, and the
//! Bot API's answer envelope with `getMe`, `sendMessage` and `getFile` results. Every field
//! Parley does not read is ignored, and every optional field of the Bot API is an `Option`.
//!
//! Source: Telegram's Bot API reference, <https://core.telegram.org/bots/api> ("Update",
//! "Message", "User", "Chat", "PhotoSize", "File", "CallbackQuery", "Making requests",
//! "ResponseParameters").

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::super::WithRaw;

/// An `Update`: `update_id` and exactly one optional object naming its kind.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Update {
    /// The update's id (a redelivery has the same).
    pub update_id: Option<i64>,
    /// A new message, kept also as it came.
    pub message: Option<WithRaw<Message>>,
    /// A new version of a message the bot knows.
    pub edited_message: Option<WithRaw<Message>>,
    /// A press on an inline keyboard button.
    pub callback_query: Option<WithRaw<CallbackQuery>>,
    /// Any other kind (`inline_query`, `chosen_inline_result`, `my_chat_member`...) by name.
    #[serde(flatten)]
    pub other: BTreeMap<String, WithRaw<OtherUpdate>>,
}

/// A `Message` (also an edited one).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Message {
    /// Its id, unique in the chat.
    pub message_id: Option<i64>,
    /// The sender (absent in channels).
    pub from: Option<User>,
    /// The chat it belongs to.
    pub chat: Option<Chat>,
    /// When it was sent (unix seconds).
    pub date: Option<i64>,
    /// When it was last edited (unix seconds).
    pub edit_date: Option<i64>,
    /// The message it replies to.
    pub reply_to_message: Option<Box<Message>>,
    /// Its text.
    pub text: Option<String>,
    /// The caption of its photo, video, document...
    pub caption: Option<String>,
    /// A photo in several sizes.
    pub photo: Option<Vec<PhotoSize>>,
    /// A voice note.
    pub voice: Option<FileObject>,
    /// An audio file.
    pub audio: Option<FileObject>,
    /// A general file.
    pub document: Option<FileObject>,
    /// A video.
    pub video: Option<FileObject>,
    /// A sticker.
    pub sticker: Option<FileObject>,
}

/// A `User` or a `Chat` as Parley shows the customer: names, `@username`, id.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct User {
    /// The id (up to 52 bits).
    pub id: Option<i64>,
    /// `false` for a person (a `User`'s `is_bot`).
    pub is_bot: Option<bool>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// `@username` without the `@`.
    pub username: Option<String>,
    /// A group's or channel's title (a `Chat`).
    pub title: Option<String>,
}

/// A `Chat`: the same fields Parley reads of a `User`.
pub type Chat = User;

/// A `PhotoSize`: one size of a photo.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PhotoSize {
    /// The file's id for `getFile`.
    pub file_id: Option<String>,
    /// Bytes.
    pub file_size: Option<u64>,
    /// Pixels.
    pub width: Option<u64>,
    /// Pixels.
    pub height: Option<u64>,
}

/// A `Voice`, `Audio`, `Document`, `Video` or `Sticker`: the fields Parley reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileObject {
    /// The file's id for `getFile`.
    pub file_id: Option<String>,
    /// Its MIME type.
    pub mime_type: Option<String>,
    /// Its original name (documents, audio, video).
    pub file_name: Option<String>,
}

/// A `CallbackQuery`: `{"id", "from", "message", "data", "chat_instance"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallbackQuery {
    /// Who pressed the button.
    pub from: Option<User>,
    /// The button's callback data.
    pub data: Option<String>,
}

/// Another kind of update (an inline query, a chat member change...): who it came from and
/// in which chat, when it says.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OtherUpdate {
    /// The sender.
    pub from: Option<User>,
    /// The chat.
    pub chat: Option<Chat>,
}

/// The Bot API's answer to every method: `{"ok": true, "result"}` or `{"ok": false,
/// "error_code", "description", "parameters": {"retry_after"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Envelope {
    /// Whether the request succeeded.
    pub ok: Option<bool>,
    /// The method's result (its shape depends on the method).
    pub result: Option<Value>,
    /// The HTTP-like error code.
    pub error_code: Option<i64>,
    /// What went wrong.
    pub description: Option<String>,
    /// `ResponseParameters`.
    pub parameters: Option<ResponseParameters>,
}

/// `ResponseParameters` of a failed request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseParameters {
    /// Seconds to wait before repeating a request refused for flood control (429).
    pub retry_after: Option<u64>,
}

/// A `File` (the result of `getFile`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct File {
    /// Where to download it: `{api}/file/bot{token}/{file_path}`; absent for a file too big.
    pub file_path: Option<String>,
}
