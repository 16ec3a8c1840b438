//! The records Parley stores, and the JSON shapes of its API and JSONL files.
//!
//! Input shapes (`*Input`, [`ConversationPatch`]) reject unknown fields, so a typo in a client
//! is an error rather than silently ignored data. The JSONL import/export line is
//! [`ConversationInput`]: what `GET /export` writes, `POST /import` reads back unchanged.
//! Output shapes ([`ConversationSummary`], [`ConversationDetail`], [`Message`]) carry the
//! figures Parley computes: counts, token sums, cost, duration.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::assistant::{AssistantSettings, AssistantSettingsInput};
use crate::id::{ApiKeyId, AssistantId, ConversationId, MessageId, UserId, WorkspaceId};
use crate::pricing::{CostSource, Usage};
use crate::time::Timestamp;
use crate::vocab::{
    AssistantMode, Channel, ConversationStatus, Role, SentimentLabel, UserRole, VariableSource,
};

/// Deserialises a field that distinguishes "absent" (outer `None`, via `#[serde(default)]`)
/// from "explicitly null" (`Some(None)`), for PATCH bodies where null clears a value.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Deserialises an optional PATCH field that may be absent but not `null` (a name, a mode: there
/// is nothing to clear). `null` is refused with serde's "invalid type: null" error, which the API
/// answers as 422 `validation_failed`, as the OpenAPI document's non-nullable type says.
pub fn present<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    T::deserialize(d).map(Some)
}

/// Integers in JSON input as JSON Schema counts them: `5620` and also `5620.0` (a number with a
/// zero fraction is an integer there, and the OpenAPI document's `integer` fields are JSON
/// Schema). Fractions, and values out of the field's range, are refused with an "invalid value"
/// error (422 `validation_failed` through the API). Use with `#[serde(deserialize_with = ...)]`:
/// [`int::exact`] for a plain integer, [`int::optional`] for an `Option` (`null` is `None`),
/// [`int::clearable`] for a PATCH field where `null` clears (`Some(None)`), [`int::present`] for
/// a PATCH field that may be absent but not `null`.
pub mod int {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    fn integer<T: TryFrom<i64> + TryFrom<u64>, E: serde::de::Error>(
        n: serde_json::Number,
    ) -> Result<T, E> {
        let out_of_range = || E::custom(format!("{n} is out of range for this field"));
        if let Some(u) = n.as_u64() {
            return T::try_from(u).map_err(|_| out_of_range());
        }
        if let Some(i) = n.as_i64() {
            return T::try_from(i).map_err(|_| out_of_range());
        }
        match n.as_f64() {
            // An integral f64 strictly inside i64's range converts exactly. (-2^63 itself is
            // left out: an integer below i64::MIN, which serde_json reads as an f64, rounds to
            // it.)
            Some(f)
                if f.fract() == 0.0
                    && f > -9.223_372_036_854_776e18
                    && f < 9.223_372_036_854_776e18 =>
            {
                T::try_from(f as i64).map_err(|_| out_of_range())
            }
            _ => Err(E::custom(format!("expected an integer, got {n}"))),
        }
    }

    /// A required or defaulted integer field.
    pub fn exact<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: TryFrom<i64> + TryFrom<u64>,
        D: Deserializer<'de>,
    {
        integer(serde_json::Number::deserialize(d)?)
    }

    /// An optional integer field (`null` or absent: `None`; absent needs `#[serde(default)]`).
    pub fn optional<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: TryFrom<i64> + TryFrom<u64>,
        D: Deserializer<'de>,
    {
        Option::<serde_json::Number>::deserialize(d)?
            .map(integer)
            .transpose()
    }

    /// A PATCH integer field where `null` clears (`Some(None)`); absent needs
    /// `#[serde(default)]`.
    pub fn clearable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: TryFrom<i64> + TryFrom<u64>,
        D: Deserializer<'de>,
    {
        optional(d).map(Some)
    }

    /// A PATCH integer field that may be absent but not `null`.
    pub fn present<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: TryFrom<i64> + TryFrom<u64>,
        D: Deserializer<'de>,
    {
        match Option::<serde_json::Number>::deserialize(d)? {
            Some(n) => integer(n).map(Some),
            None => Err(D::Error::custom("invalid type: null, expected an integer")),
        }
    }
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// Id.
    pub id: WorkspaceId,
    /// URL-safe unique name, used by the command line (`--workspace acme`).
    pub slug: String,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An API key's record. The secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Id.
    pub id: ApiKeyId,
    /// The workspace the key acts for.
    pub workspace_id: WorkspaceId,
    /// A label chosen at creation.
    pub name: String,
    /// The first characters of the key (`pk_ab12cd34`), enough to recognise it in a list.
    pub prefix: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<Timestamp>,
    /// What the key may do: `admin` keys also manage members, keys and workspace settings;
    /// `member` keys everything else. Keys made before roles existed (and `parley keys
    /// create`) are `admin`.
    pub role: UserRole,
    /// When the key last authenticated a request, to the minute (updated at most once a
    /// minute per key); `None` when never used.
    pub last_used_at: Option<Timestamp>,
}

/// A dashboard user. Belongs to one workspace and sees only its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Sign-in email, stored lowercased; unique across the instance.
    pub email: String,
    /// What the user may do.
    pub role: UserRole,
    /// When it was created.
    pub created_at: Timestamp,
    /// Display name chosen when accepting an invite; empty when none (users made by `parley
    /// users create`).
    pub name: String,
    /// When the user last signed in (a sign-in session was created); `None` when never.
    pub last_sign_in_at: Option<Timestamp>,
}

/// An AI assistant (agent), at its current version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assistant {
    /// Id.
    pub id: AssistantId,
    /// Display name, e.g. "Banks Assistant".
    pub name: String,
    /// The company it works for; empty when not set.
    pub company: String,
    /// How it takes part in conversations.
    pub mode: AssistantMode,
    /// Its version: 1 at creation, plus one per change of name, company, mode or settings.
    pub version: i64,
    /// Provider, prompt, memory fields, prices (see [`crate::assistant`]).
    pub settings: AssistantSettings,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its current version was made.
    pub updated_at: Timestamp,
}

/// An edit was made against another version than the assistant's current one (see
/// [`Assistant::next_version`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionConflict {
    /// The assistant's current version.
    pub current: i64,
    /// The version the edit was made against.
    pub expected: i64,
}

impl std::fmt::Display for VersionConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the assistant was changed meanwhile: it is at version {}, the change was made against version {}",
            self.current, self.expected
        )
    }
}

impl Assistant {
    /// The versioning rule: the assistant after an edit to `name`, `company` (both trimmed),
    /// `mode` and `settings`, made at `now`. Every edit makes a new version (current + 1), even
    /// one that changes nothing; `updated_at` never goes back (the later of `now` and the last
    /// update); id and creation time stay. Errors: [`VersionConflict`] when `expected` is given
    /// and is not the current version.
    pub fn next_version(
        &self,
        name: &str,
        company: &str,
        mode: AssistantMode,
        settings: AssistantSettings,
        expected: Option<i64>,
        now: Timestamp,
    ) -> Result<Assistant, VersionConflict> {
        if let Some(expected) = expected
            && expected != self.version
        {
            return Err(VersionConflict {
                current: self.version,
                expected,
            });
        }
        Ok(Assistant {
            name: name.trim().to_owned(),
            company: company.trim().to_owned(),
            mode,
            version: self.version + 1,
            settings,
            updated_at: now.max(self.updated_at),
            ..self.clone()
        })
    }

    /// The assistant as API outputs show it: the provider key redacted.
    pub fn redacted(&self) -> Assistant {
        Assistant {
            settings: self.settings.redacted(),
            ..self.clone()
        }
    }
}

/// One version of an assistant, as it was when made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantVersion {
    /// The version number.
    pub version: i64,
    /// Name at that version.
    pub name: String,
    /// Company at that version.
    pub company: String,
    /// Mode at that version.
    pub mode: AssistantMode,
    /// Settings at that version.
    pub settings: AssistantSettings,
    /// When the version was made.
    pub created_at: Timestamp,
}

/// `POST /api/v1/assistants` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantInput {
    /// Display name, 1-200 characters. Unique per workspace together with `company`.
    pub name: String,
    /// Company, up to 200 characters.
    #[serde(default)]
    pub company: String,
    /// Defaults to `active`.
    #[serde(default = "default_mode")]
    pub mode: AssistantMode,
    /// Provider, prompt, memory fields, prices; all optional.
    #[serde(default)]
    pub settings: AssistantSettingsInput,
}

/// `PATCH /api/v1/assistants/{id}` body: absent fields keep their value. Every patch makes a
/// new version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantPatch {
    /// New display name.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// New company.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub company: Option<String>,
    /// New mode.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub mode: Option<AssistantMode>,
    /// Settings to change (see [`AssistantSettingsInput`]).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub settings: Option<AssistantSettingsInput>,
    /// The version the change was made against: when given and no longer current, the patch
    /// is refused (409 `version_conflict`) instead of overwriting someone else's change.
    #[serde(
        default,
        deserialize_with = "int::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<i64>,
}

fn default_mode() -> AssistantMode {
    AssistantMode::Active
}

/// Which assistant handles a new conversation: by `id`, or by `name` (+ `company`), in which case
/// an assistant of that name is created in the workspace if none exists yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantRef {
    /// An existing assistant's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<AssistantId>,
    /// The assistant's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The assistant's company (empty if not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
}

/// A client rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rating {
    /// 1 to 5 stars.
    #[serde(deserialize_with = "int::exact")]
    pub score: u8,
    /// The client's comment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When it was given; defaults to the time Parley receives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rated_at: Option<Timestamp>,
}

/// A conversation's sentiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sentiment {
    /// Positive, negative or neutral.
    pub label: SentimentLabel,
    /// The analyser's score, conventionally -1.0 (negative) to 1.0 (positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// A variable collected in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Name, 1-200 characters, unique within the conversation.
    pub key: String,
    /// Value as text.
    pub value: String,
    /// Where it came from. Defaults to `api` on input.
    #[serde(default = "default_source")]
    pub source: VariableSource,
}

fn default_source() -> VariableSource {
    VariableSource::Api
}

/// Token usage as sent by clients: the OpenAI `usage` object's two counts.
pub type UsageInput = Usage;

/// One message on input (API, JSONL). On export, every field Parley holds is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    /// Parley's id of the message, as written by `export`; re-importing it stores nothing twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<MessageId>,
    /// The channel's own message id (WhatsApp `wamid`, Telegram `update_id`, the client's id):
    /// a message whose `external_id` is already stored in the conversation is not stored again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Who wrote it.
    pub role: Role,
    /// The text (markdown for assistant messages). Up to 100,000 characters.
    pub content: String,
    /// When it was written; defaults to the time Parley receives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The model that produced it (assistant messages), as the provider names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Prompt and completion tokens of the model call that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageInput>,
    /// Its cost in nano-USD (1e-9 USD), when the client knows it; otherwise Parley computes it
    /// from `usage` and `model`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "int::optional"
    )]
    pub cost_nanousd: Option<i64>,
    /// How it was produced: tool calls, failures, estimates (see [`MessageMeta`]).
    #[serde(default, skip_serializing_if = "MessageMeta::is_empty")]
    pub meta: MessageMeta,
}

/// What Parley knows about how a message was produced, beyond its text. Every field is optional
/// and omitted when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageMeta {
    /// Tool calls the model asked for (a `tool` message holding the model's request; OpenAI
    /// `choices[].message.tool_calls[]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers (OpenAI `tool_call_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Why the model stopped: `stop`, `length`, `tool_calls`, `content_filter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// The model's refusal text, when it refused (OpenAI `message.refusal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Whether `usage` was counted by Parley's tokenizer because the provider sent none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    /// How many of the oldest messages were left out of the request to fit the model's
    /// context window.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "int::optional"
    )]
    pub history_dropped: Option<u32>,
    /// Why the answer failed (provider down, timeout...); the message's text is then what the
    /// customer was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MessageError>,
    /// The assistant version that produced it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "int::optional"
    )]
    pub assistant_version: Option<i64>,
    /// Time from the request to the provider to its last byte, in ms.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "int::optional"
    )]
    pub latency_ms: Option<i64>,
    /// The customer message an assistant answer (or failure notice) was the turn for, when
    /// Parley's background `answer` job wrote it: a job run again after a crash finds it and
    /// answers nothing twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<crate::MessageId>,
    /// The message's life on a messaging channel (WhatsApp, Telegram): platform type,
    /// attachments, delivery status (see [`crate::channel::ChannelMessageMeta`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<crate::channel::ChannelMessageMeta>,
    /// Who wrote a team member's (`agent`) message sent from Parley (the dashboard's composer,
    /// or the API naming one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
}

/// The team member who wrote an `agent` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Author {
    /// The signed-in user, when a member of the workspace wrote it in the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// How to show them: the user's email, or the name an API client gave (at most 200
    /// characters).
    pub name: String,
}

impl MessageMeta {
    /// Whether nothing is set (such a meta is not stored).
    pub fn is_empty(&self) -> bool {
        *self == MessageMeta::default()
    }
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The provider's call id (`call_...`).
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, as the JSON text the model wrote.
    pub arguments: String,
}

/// A failure recorded on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageError {
    /// Stable code: `provider_timeout`, `provider_rate_limited`, `provider_unavailable`,
    /// `provider_auth_failed`, `provider_rejected`, `provider_stream_broken`,
    /// `provider_not_configured`.
    pub code: String,
    /// What happened, for the team (never shown to the customer).
    pub message: String,
}

/// A conversation on input: `POST /api/v1/conversations`, and one line of the JSONL format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationInput {
    /// Parley's id, as written by `export`; a conversation with this id already in the workspace
    /// is not created again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ConversationId>,
    /// The client's own id for the conversation, unique per workspace: creating a conversation
    /// with an `external_id` that exists returns the existing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The assistant that handles it (required).
    pub assistant: AssistantRef,
    /// Where it happens. Defaults to `api`.
    #[serde(default = "default_channel")]
    pub channel: Channel,
    /// Defaults to `active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ConversationStatus>,
    /// Who the assistant talks to: phone number, Telegram user, visitor id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// The session id shown in the dashboard and searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Defaults to the first message's time, or now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it ended, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// How it ended (free text such as `"visitor_closed"`, `"timeout"`); none means completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// The client's rating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
    /// The analysed sentiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<Sentiment>,
    /// Whether the conversation reached its goal (a sale, a booking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted: Option<bool>,
    /// Variables collected, unique by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<Variable>,
    /// The assistant's memory: any JSON object, kept exactly as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Map<String, Value>>,
    /// The assistant version that handled it, when Parley's runtime did.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "int::optional"
    )]
    pub assistant_version: Option<i64>,
    /// Messages, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageInput>,
}

impl ConversationInput {
    /// A conversation on `channel` for the assistant with id `assistant`, everything else
    /// unset (defaults apply at ingest); fill the rest with struct update syntax.
    pub fn for_assistant(assistant: Option<AssistantId>, channel: Channel) -> ConversationInput {
        ConversationInput {
            id: None,
            external_id: None,
            assistant: AssistantRef {
                id: assistant,
                name: None,
                company: None,
            },
            channel,
            status: None,
            contact: None,
            session_id: None,
            started_at: None,
            ended_at: None,
            end_reason: None,
            rating: None,
            sentiment: None,
            converted: None,
            variables: Vec::new(),
            memory: None,
            assistant_version: None,
            messages: Vec::new(),
        }
    }
}

fn default_channel() -> Channel {
    Channel::Api
}

/// `PATCH /api/v1/conversations/{id}` body. Absent fields are left alone; `null` clears
/// `ended_at`, `end_reason`, `rating`, `sentiment`, `converted`. `variables` are merged by key;
/// `memory` is merged by top-level key, a `null` value removing that key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationPatch {
    /// New status.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<ConversationStatus>,
    /// New end time (`null` clears).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<Option<Timestamp>>,
    /// New end reason (`null` clears).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub end_reason: Option<Option<String>>,
    /// New rating (`null` removes it).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub rating: Option<Option<Rating>>,
    /// New sentiment (`null` clears).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub sentiment: Option<Option<Sentiment>>,
    /// New converted flag (`null` clears).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub converted: Option<Option<bool>>,
    /// New contact.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub contact: Option<String>,
    /// Variables to add or replace, by key.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub variables: Option<Vec<Variable>>,
    /// Memory keys to set (or remove, with `null`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<Map<String, Value>>,
    /// The team's take-over mark ([`ConversationSummary::taken_over_at`]): `Some(Some(t))`
    /// takes over at `t`, `Some(None)` hands back to the assistant. Not part of the API's
    /// PATCH body: set by the team actions (the server's `team` module).
    #[serde(skip)]
    pub taken_over: Option<Option<Timestamp>>,
    /// The "Needs a human" flag ([`ConversationSummary::handoff`]): `Some(Some(h))` raises
    /// it (and appends a `handoff.requested` event), `Some(None)` clears it. Not part of the
    /// API's PATCH body.
    #[serde(skip)]
    pub handoff: Option<Option<Handoff>>,
    /// The team member the conversation is assigned to (`Some(None)` unassigns). The caller
    /// checks that the user is a member of the workspace. Not part of the API's PATCH body.
    #[serde(skip)]
    pub assignee: Option<Option<UserId>>,
}

/// The assistant's request for a human (its `hand_off` tool): the conversation "Needs a
/// human" until a team member replies, takes over or closes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// Why, in the assistant's words (at most 500 characters).
    pub reason: String,
    /// When it asked (ms since the epoch, UTC; RFC 3339 on the wire).
    pub requested_at: Timestamp,
}

impl ConversationPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &ConversationPatch::default()
    }
}

/// The memory merge rule of a patch ([`ConversationPatch::memory`]): each key of `changes` is
/// set to its value in `memory`, or removed from it when the value is JSON `null`; keys that
/// `changes` does not name are kept as they are.
pub fn merge_memory(memory: &mut Map<String, Value>, changes: &Map<String, Value>) {
    for (key, value) in changes {
        if value.is_null() {
            memory.remove(key);
        } else {
            memory.insert(key.clone(), value.clone());
        }
    }
}

/// The assistant as shown on a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantSummary {
    /// Id.
    pub id: AssistantId,
    /// Name.
    pub name: String,
    /// Company (may be empty).
    pub company: String,
}

/// A rating as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRating {
    /// 1 to 5.
    pub score: u8,
    /// The client's comment.
    pub comment: Option<String>,
    /// When it was given (or last changed).
    pub rated_at: Timestamp,
}

/// Token sums of a conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Sum of prompt (input) tokens.
    pub prompt_tokens: i64,
    /// Sum of completion (output) tokens.
    pub completion_tokens: i64,
    /// Their sum.
    pub total_tokens: i64,
}

impl From<Usage> for UsageTotals {
    fn from(u: Usage) -> Self {
        UsageTotals {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total(),
        }
    }
}

/// One row of the conversation list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// Id.
    pub id: ConversationId,
    /// The client's id, if any.
    pub external_id: Option<String>,
    /// Who handles it.
    pub assistant: AssistantSummary,
    /// Where it happens.
    pub channel: Channel,
    /// Lifecycle state.
    pub status: ConversationStatus,
    /// Who the assistant talks to.
    pub contact: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// The latest message's time (or `started_at` when there is none): the list's "date".
    pub last_message_at: Timestamp,
    /// The start of the latest visible message, up to 200 characters.
    pub last_message_preview: Option<String>,
    /// Visible (user, assistant, agent) messages.
    pub message_count: i64,
    /// Token sums over all messages.
    pub usage: UsageTotals,
    /// Summed cost in nano-USD of the messages that have one.
    pub cost_nanousd: i64,
    /// The client's rating.
    pub rating: Option<StoredRating>,
    /// The analysed sentiment.
    pub sentiment: Option<Sentiment>,
    /// How it ended, if not simply completed.
    pub end_reason: Option<String>,
    /// Whether it reached its goal.
    pub converted: Option<bool>,
    /// `ended_at - started_at` in ms; for a conversation that is not active but has no end time,
    /// `last_message_at - started_at`; `null` while it is ongoing.
    pub duration_ms: Option<i64>,
    /// Since when a team member handles it: a hybrid assistant stays silent here until the
    /// team hands it back (`null`: the assistant may answer, as its mode says).
    #[serde(default)]
    pub taken_over_at: Option<Timestamp>,
    /// Set while the conversation "Needs a human" (the assistant called `hand_off`).
    #[serde(default)]
    pub handoff: Option<Handoff>,
    /// The team member it is assigned to (a user id of the workspace).
    #[serde(default)]
    pub assignee_id: Option<UserId>,
}

impl ConversationSummary {
    /// Computes `duration_ms` from the other fields (see its doc).
    pub fn compute_duration(&mut self) {
        self.duration_ms = match (self.ended_at, self.status) {
            (Some(end), _) => Some((end.0 - self.started_at.0).max(0)),
            (None, ConversationStatus::Active) => None,
            (None, _) => Some((self.last_message_at.0 - self.started_at.0).max(0)),
        };
    }
}

/// A conversation's full record: `GET /api/v1/conversations/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationDetail {
    /// Everything the list shows.
    #[serde(flatten)]
    pub summary: ConversationSummary,
    /// Variables, ordered by key.
    pub variables: Vec<Variable>,
    /// The assistant's memory, exactly as stored.
    pub memory: Map<String, Value>,
    /// Messages of every role, including hidden system and tool messages.
    pub stored_message_count: i64,
    /// Messages with usage whose model has no price (their cost is unknown, not zero).
    pub unpriced_message_count: i64,
    /// Whether any message carries a voice recording.
    pub has_voice: bool,
    /// The customer's latest message time (the WhatsApp 24-hour window starts there).
    pub last_inbound_at: Option<Timestamp>,
    /// The assistant version that handled it, when Parley's runtime did.
    pub assistant_version: Option<i64>,
    /// When Parley created the record.
    pub created_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Id.
    pub id: MessageId,
    /// The channel's own id.
    pub external_id: Option<String>,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// When it was written.
    pub created_at: Timestamp,
    /// The model that produced it.
    pub model: Option<String>,
    /// Tokens of the call that produced it.
    pub usage: Option<Usage>,
    /// Cost in nano-USD.
    pub cost_nanousd: Option<i64>,
    /// Where the cost came from (or why there is none).
    pub cost_source: Option<CostSource>,
    /// How it was produced (see [`MessageMeta`]); omitted when empty.
    #[serde(default, skip_serializing_if = "MessageMeta::is_empty")]
    pub meta: MessageMeta,
}

impl Message {
    /// The message in JSONL input form, for export.
    pub fn to_input(&self) -> MessageInput {
        MessageInput {
            id: Some(self.id),
            external_id: self.external_id.clone(),
            role: self.role,
            content: self.content.clone(),
            created_at: Some(self.created_at),
            model: self.model.clone(),
            usage: self.usage,
            cost_nanousd: self.cost_nanousd,
            meta: self.meta.clone(),
        }
    }
}

/// A conversation with everything needed to write it as a JSONL line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationExport {
    /// The record.
    pub detail: ConversationDetail,
    /// Every message, oldest first.
    pub messages: Vec<Message>,
}

impl ConversationExport {
    /// The JSONL line's content: the input shape, with Parley's ids so a re-import is idempotent.
    pub fn to_input(&self) -> ConversationInput {
        let s = &self.detail.summary;
        ConversationInput {
            id: Some(s.id),
            external_id: s.external_id.clone(),
            assistant: AssistantRef {
                id: None,
                name: Some(s.assistant.name.clone()),
                company: Some(s.assistant.company.clone()),
            },
            channel: s.channel,
            status: Some(s.status),
            contact: s.contact.clone(),
            session_id: s.session_id.clone(),
            started_at: Some(s.started_at),
            ended_at: s.ended_at,
            end_reason: s.end_reason.clone(),
            rating: s.rating.as_ref().map(|r| Rating {
                score: r.score,
                comment: r.comment.clone(),
                rated_at: Some(r.rated_at),
            }),
            sentiment: s.sentiment.clone(),
            converted: s.converted,
            variables: self.detail.variables.clone(),
            memory: if self.detail.memory.is_empty() {
                None
            } else {
                Some(self.detail.memory.clone())
            },
            assistant_version: self.detail.assistant_version,
            messages: self.messages.iter().map(Message::to_input).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_makes_the_next_version() {
        let old = Assistant {
            id: AssistantId::new(),
            name: "Ava".into(),
            company: "Acme".into(),
            mode: AssistantMode::Active,
            version: 3,
            settings: AssistantSettings::default(),
            created_at: Timestamp(10),
            updated_at: Timestamp(500),
        };
        let settings = AssistantSettings {
            system_prompt: "Be brief.".into(),
            ..Default::default()
        };
        let next = old
            .next_version(
                " Ava Prime ",
                " ",
                AssistantMode::Hybrid,
                settings.clone(),
                Some(3),
                Timestamp(900),
            )
            .unwrap();
        assert_eq!(
            next,
            Assistant {
                name: "Ava Prime".into(),
                company: String::new(),
                mode: AssistantMode::Hybrid,
                version: 4,
                settings,
                updated_at: Timestamp(900),
                ..old.clone()
            }
        );
        // Without an expected version any edit applies; a clock behind keeps updated_at.
        let same = old
            .next_version(
                "Ava",
                "Acme",
                old.mode,
                old.settings.clone(),
                None,
                Timestamp(100),
            )
            .unwrap();
        assert_eq!((same.version, same.updated_at), (4, Timestamp(500)));
        let err = old
            .next_version(
                "Ava",
                "Acme",
                old.mode,
                old.settings.clone(),
                Some(2),
                Timestamp(900),
            )
            .unwrap_err();
        assert_eq!(
            err,
            VersionConflict {
                current: 3,
                expected: 2
            }
        );
        assert!(err.to_string().contains("at version 3"));
    }

    #[test]
    fn memory_merge_sets_replaces_removes_and_keeps() {
        let obj = |v: Value| v.as_object().cloned().unwrap();
        let mut memory = obj(serde_json::json!({"email": "a@x.io", "plan": "pro", "n": 1}));
        merge_memory(
            &mut memory,
            &obj(
                serde_json::json!({"plan": "free", "n": null, "city": {"name": "Köln"},
                                    "absent": null}),
            ),
        );
        assert_eq!(
            Value::Object(memory),
            serde_json::json!({"email": "a@x.io", "plan": "free", "city": {"name": "Köln"}})
        );
        let mut empty = Map::new();
        merge_memory(&mut empty, &Map::new());
        assert!(empty.is_empty());
    }
}
