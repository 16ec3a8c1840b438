//! List queries: filters, sort orders and keyset cursors, shared by the API, the dashboard and
//! both store backends.
//!
//! Sorting is keyset-paginated on a tuple that ends in the conversation's date and id, so every
//! page, however deep, is an index range scan: `date` sorts by `(last_message_at, id)`, the
//! others by `(key, last_message_at, id)`. A cursor is the sort key of the last row of a page,
//! base64url-encoded JSON; it is opaque to clients and only valid with the sort it came from.
//! `created` sorts by `id` alone (UUIDv7: creation order), which export uses.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::id::{AssistantId, ConversationId};
use crate::model::ConversationSummary;
use crate::time::Timestamp;
use crate::vocab::{Channel, ConversationStatus};

/// Default page size of conversation lists.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size of conversation lists.
pub const MAX_LIMIT: u32 = 200;

/// The conversation list's filters. Every filter present must hold (AND); within a list filter
/// (statuses, channels, assistants) any value may match (OR).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    /// Status is one of these (empty: any).
    pub statuses: Vec<ConversationStatus>,
    /// Channel is one of these (empty: any).
    pub channels: Vec<Channel>,
    /// Assistant is one of these (empty: any).
    pub assistants: Vec<AssistantId>,
    /// Rating at least this (1-5); unrated conversations never match.
    pub min_rating: Option<u8>,
    /// Date (`last_message_at`) at or after this.
    pub from: Option<Timestamp>,
    /// Date (`last_message_at`) strictly before this.
    pub to: Option<Timestamp>,
    /// Case-insensitive substring of the session id, contact, assistant name or any visible
    /// message's content. Already trimmed; never empty.
    pub q: Option<String>,
    /// Sentiment (the client's, else the computed one) is one of these (empty: any).
    pub sentiments: Vec<crate::SentimentFilter>,
    /// The computed resolution outcome is one of these (empty: any); a conversation not
    /// analysed yet matches none.
    pub resolutions: Vec<crate::Resolution>,
    /// The conversation is in this workspace topic (its key, lower-case; see
    /// [`crate::topics`]); a conversation in no topic, or not analysed yet, matches none.
    pub topic: Option<String>,
    /// Started (`started_at`) at or after this: the Insights cohort's date, so a drill-down
    /// lists exactly the conversations a figure counted.
    pub started_from: Option<Timestamp>,
    /// Started strictly before this.
    pub started_to: Option<Timestamp>,
    /// Only conversations that "Need a human" (the assistant called `hand_off` and no team
    /// member has answered yet): the Needs attention view.
    pub needs_human: bool,
    /// Only conversations assigned to this member, or (`Unassigned`) to nobody.
    pub assignee: Option<AssigneeFilter>,
    /// Only calls: conversations on channel `voip`, or any with a voice message or recording
    /// (`has_voice`). The dashboard's **Calls** quick filter; `calls=true` in the API.
    pub calls: bool,
}

/// Who a listed conversation is assigned to ([`ConversationFilter::assignee`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssigneeFilter {
    /// Assigned to nobody.
    Unassigned,
    /// Assigned to this member.
    User(crate::UserId),
}

impl ConversationFilter {
    /// Whether no filter is set (the list is the whole workspace).
    pub fn is_empty(&self) -> bool {
        self == &ConversationFilter::default()
    }
}

/// The column a list is sorted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortKey {
    /// `last_message_at`.
    Date,
    /// Visible message count.
    Messages,
    /// Rating score, unrated counting as 0.
    Rating,
    /// Assistant name (`assistant`; `agent` is accepted as an alias, the name this sort had
    /// before `agent` came to mean only a human team member).
    Assistant,
    /// Status name.
    Status,
    /// Creation order (the UUIDv7 id). Immutable, so paging in this order never skips or
    /// repeats a row however the data changes meanwhile: what export uses.
    Created,
}

/// A sort order: key and direction. Text form: the key's name, prefixed with `-` for
/// descending (`-date`, the default, is newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sort {
    /// The key.
    pub key: SortKey,
    /// Descending if true.
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            key: SortKey::Date,
            descending: true,
        }
    }
}

impl Sort {
    /// Every sort order, ascending and descending.
    pub const ALL: [Sort; 12] = [
        Sort {
            key: SortKey::Date,
            descending: true,
        },
        Sort {
            key: SortKey::Date,
            descending: false,
        },
        Sort {
            key: SortKey::Messages,
            descending: true,
        },
        Sort {
            key: SortKey::Messages,
            descending: false,
        },
        Sort {
            key: SortKey::Rating,
            descending: true,
        },
        Sort {
            key: SortKey::Rating,
            descending: false,
        },
        Sort {
            key: SortKey::Assistant,
            descending: true,
        },
        Sort {
            key: SortKey::Assistant,
            descending: false,
        },
        Sort {
            key: SortKey::Status,
            descending: true,
        },
        Sort {
            key: SortKey::Status,
            descending: false,
        },
        Sort {
            key: SortKey::Created,
            descending: true,
        },
        Sort {
            key: SortKey::Created,
            descending: false,
        },
    ];

    /// The key's name without direction: `date`, `messages`, `rating`, `assistant`, `status`, `created`.
    pub fn key_name(self) -> &'static str {
        match self.key {
            SortKey::Date => "date",
            SortKey::Messages => "messages",
            SortKey::Rating => "rating",
            SortKey::Assistant => "assistant",
            SortKey::Status => "status",
            SortKey::Created => "created",
        }
    }

    /// The same key in the other direction.
    pub fn reversed(self) -> Sort {
        Sort {
            key: self.key,
            descending: !self.descending,
        }
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.descending {
            f.write_str("-")?;
        }
        f.write_str(self.key_name())
    }
}

/// A sort text that names no known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSort(pub String);

impl fmt::Display for BadSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown sort {:?}; expected one of date, messages, rating, assistant (or its alias agent), status, created, optionally prefixed with - for descending",
            self.0
        )
    }
}

impl std::error::Error for BadSort {}

impl FromStr for Sort {
    type Err = BadSort;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (descending, name) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let key = match name {
            "date" => SortKey::Date,
            "messages" => SortKey::Messages,
            "rating" => SortKey::Rating,
            "assistant" | "agent" => SortKey::Assistant,
            "status" => SortKey::Status,
            "created" => SortKey::Created,
            _ => return Err(BadSort(s.to_owned())),
        };
        Ok(Sort { key, descending })
    }
}

/// The value of a row's sort key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    /// `messages`, `rating` (and `date`, whose value is the date itself).
    Int(i64),
    /// `agent`, `status`.
    Text(String),
}

/// Where the next page starts: the sort key of the previous page's last row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort it belongs to, as text (`-date`).
    #[serde(rename = "s")]
    pub sort: String,
    /// The primary key value (for `date`, equal to `date`).
    #[serde(rename = "k")]
    pub key: SortValue,
    /// `last_message_at` in ms.
    #[serde(rename = "d")]
    pub date: i64,
    /// The row's id.
    #[serde(rename = "i")]
    pub id: ConversationId,
}

/// A cursor that was not made by Parley for this sort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCursor(pub &'static str);

impl fmt::Display for BadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid cursor: {}; use the next_cursor of a previous page",
            self.0
        )
    }
}

impl std::error::Error for BadCursor {}

impl Cursor {
    /// The cursor that starts a page right after `row` in `sort` order.
    pub fn after(sort: Sort, row: &ConversationSummary) -> Cursor {
        let key = match sort.key {
            SortKey::Date => SortValue::Int(row.last_message_at.0),
            SortKey::Messages => SortValue::Int(row.message_count),
            SortKey::Rating => SortValue::Int(row.rating.as_ref().map_or(0, |r| r.score as i64)),
            SortKey::Assistant => SortValue::Text(row.assistant.name.clone()),
            SortKey::Status => SortValue::Text(row.status.as_str().to_owned()),
            SortKey::Created => SortValue::Int(0),
        };
        Cursor {
            sort: sort.to_string(),
            key,
            date: row.last_message_at.0,
            id: row.id,
        }
    }

    /// Encodes as base64url (no padding) JSON.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor serialises");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a cursor and checks it belongs to `sort` and carries the right kind of key.
    pub fn decode(text: &str, sort: Sort) -> Result<Cursor, BadCursor> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| BadCursor("not base64url"))?;
        let cursor: Cursor =
            serde_json::from_slice(&bytes).map_err(|_| BadCursor("not a Parley cursor"))?;
        if cursor.sort != sort.to_string() {
            return Err(BadCursor("it was made for another sort order"));
        }
        let key_ok = matches!(
            (sort.key, &cursor.key),
            (
                SortKey::Date | SortKey::Messages | SortKey::Rating | SortKey::Created,
                SortValue::Int(_)
            ) | (SortKey::Assistant | SortKey::Status, SortValue::Text(_))
        );
        if !key_ok {
            return Err(BadCursor("its key does not match the sort order"));
        }
        Ok(cursor)
    }
}

/// A page request for the conversation list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Filters.
    pub filter: ConversationFilter,
    /// Order.
    pub sort: Sort,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Start after this row.
    pub cursor: Option<Cursor>,
}

/// Which messages a transcript page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscriptQuery {
    /// 1-based page number.
    pub page: u32,
    /// Messages per page, 1 to 200.
    pub per_page: u32,
    /// Oldest first if false (the default is newest first).
    pub newest_first: bool,
    /// Include system and tool messages.
    pub include_hidden: bool,
}

impl Default for TranscriptQuery {
    fn default() -> Self {
        TranscriptQuery {
            page: 1,
            per_page: 50,
            newest_first: true,
            include_hidden: false,
        }
    }
}

impl TranscriptQuery {
    /// The 1-based positions (in conversation order, among the messages this query counts)
    /// covered by the page, given `total` such messages; `None` if the page is past the end.
    pub fn position_range(&self, total: i64) -> Option<(i64, i64)> {
        let per = self.per_page as i64;
        let skip = (self.page as i64 - 1) * per;
        if skip >= total {
            return None;
        }
        Some(if self.newest_first {
            ((total - skip - per + 1).max(1), total - skip)
        } else {
            (skip + 1, (skip + per).min(total))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_parse_and_print() {
        for s in Sort::ALL {
            assert_eq!(s.to_string().parse::<Sort>().unwrap(), s);
        }
        assert_eq!("-date".parse::<Sort>().unwrap(), Sort::default());
        assert!("price".parse::<Sort>().is_err());
        // `agent` is the old name of the assistant sort: still accepted, shown as `assistant`.
        let old: Sort = "-agent".parse().unwrap();
        assert_eq!(old.key, SortKey::Assistant);
        assert_eq!(old.to_string(), "-assistant");
    }

    #[test]
    fn cursors_round_trip_and_reject_tampering() {
        let sort: Sort = "agent".parse().unwrap();
        let c = Cursor {
            sort: sort.to_string(),
            key: SortValue::Text("Banks Assistant – ü".into()),
            date: 1_700_000_000_000,
            id: ConversationId::new(),
        };
        let text = c.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode(&text, sort).unwrap(), c);
        assert!(
            Cursor::decode(&text, "-agent".parse().unwrap()).is_err(),
            "other sort"
        );
        assert!(Cursor::decode("!!!", sort).is_err());
        assert!(Cursor::decode("e30", sort).is_err(), "{{}} is not a cursor");
    }

    #[test]
    fn transcript_pages_cover_positions() {
        let q = TranscriptQuery {
            page: 1,
            per_page: 50,
            newest_first: true,
            include_hidden: false,
        };
        assert_eq!(q.position_range(120), Some((71, 120)));
        assert_eq!(
            TranscriptQuery { page: 3, ..q }.position_range(120),
            Some((1, 20))
        );
        assert_eq!(TranscriptQuery { page: 4, ..q }.position_range(120), None);
        let asc = TranscriptQuery {
            newest_first: false,
            ..q
        };
        assert_eq!(
            TranscriptQuery { page: 3, ..asc }.position_range(120),
            Some((101, 120))
        );
        assert_eq!(q.position_range(0), None);
    }
}
