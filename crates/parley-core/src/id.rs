//! Identifiers. Every record has a UUIDv7 id (time-ordered, so ids sort roughly by creation
//! time and index well), wrapped in a type of its own so a message id can never be passed where
//! a conversation id is expected. On the wire an id is the UUID's hyphenated lowercase string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh UUIDv7 id, ordered after every id generated earlier in this process.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The id's 16 bytes, big-endian, as stored in SQLite `BLOB` columns.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// Rebuilds an id from 16 stored bytes; `None` if the slice is not 16 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                Uuid::from_slice(bytes).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            /// Parses any UUID text form (hyphenated, simple, braced, urn).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A workspace (tenant). Every other record belongs to exactly one.
    WorkspaceId
);
id_type!(
    /// An assistant (AI agent) of a workspace.
    AssistantId
);
id_type!(
    /// A conversation: one chat session on one channel with one contact.
    ConversationId
);
id_type!(
    /// A message within a conversation.
    MessageId
);
id_type!(
    /// An API key (the key's id, never its secret).
    ApiKeyId
);
id_type!(
    /// A dashboard user.
    UserId
);

id_type!(
    /// A channel connection: one WhatsApp sender or Telegram bot connected to an assistant.
    ChannelConnectionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let a = ConversationId::new();
        let b = ConversationId::new();
        assert!(a < b, "UUIDv7 ids generated later must sort later");
        assert_eq!(a.to_string().parse::<ConversationId>().unwrap(), a);
        assert_eq!(ConversationId::from_slice(a.as_bytes()), Some(a));
        assert_eq!(ConversationId::from_slice(&[1, 2, 3]), None);
        assert!("not-a-uuid".parse::<ConversationId>().is_err());
    }
}
