//! Parley's domain: the vocabulary of DESIGN.md section 1 as Rust types, and the pure logic
//! every other crate shares (pricing, validation, search folding, cursors). No I/O lives here.
//!
//! - [`id`]: UUIDv7 identifiers, one type per kind of record.
//! - [`vocab`]: channels, statuses, roles, variable sources, sentiment labels, assistant modes.
//! - [`time`]: [`Timestamp`], UTC milliseconds, RFC 3339 on the wire.
//! - [`pricing`]: the model price table and nano-USD cost computation.
//! - [`model`]: the records Parley stores and the shapes of its JSON API and JSONL files.
//! - [`query`]: list filters, sort orders and keyset cursors.
//! - [`search`]: case folding and match snippets shared by both store backends.
//! - [`validate`]: size limits and input checks.
//! - [`markdown`]: assistant messages as sanitised HTML.
//! - [`audio`]: checking that an upload is the audio container it claims to be.
//! - [`assistant`]: an assistant's provider, prompt, memory fields and price settings.
//! - [`channel`]: WhatsApp and Telegram connections and channel message metadata.
//! - [`widget`]: the web widget's settings and the visitor tracker's records.

pub mod assistant;
pub mod audio;
pub mod channel;
pub mod chat_markup;
pub mod id;
pub mod insights;
pub mod markdown;
pub mod model;
pub mod pricing;
pub mod query;
pub mod search;
pub mod time;
pub mod topics;
pub mod validate;
pub mod vocab;
pub mod widget;
pub mod zone;

pub use id::{
    ApiKeyId, AssistantId, ChannelConnectionId, ConversationId, MessageId, UserId, WorkspaceId,
};
pub use time::Timestamp;
pub use vocab::{
    AssistantMode, Channel, ConversationStatus, Resolution, Role, SentimentFilter, SentimentLabel,
    SentimentShift, UserRole, VariableSource,
};
