//! The vocabulary of DESIGN.md section 1, as closed enums. Each one is stored and sent as its
//! lowercase snake_case name (`"whatsapp"`, `"pre_chat"`), parsed strictly: an unknown name is
//! an [`UnknownName`] error that lists the accepted ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A name that is not one of an enum's accepted values. `Display` gives a message fit for an
/// API error: `unknown channel "sms"; expected one of: test, widget, ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What kind of value was being parsed (`"channel"`, `"role"`...).
    pub kind: &'static str,
    /// The text that was given.
    pub given: String,
    /// Every accepted name, in declaration order.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}; expected one of: {}",
            self.kind,
            self.given,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every value's wire name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The wire and storage name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            /// Parses the exact wire name (case-sensitive, as stored).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: $kind, given: s.to_owned(), expected: Self::NAMES }),
                }
            }
        }
    };
}

named_enum!(
    /// Where a conversation happens. The dashboard gives each one a badge colour (DESIGN.md).
    Channel, "channel" {
        /// The dashboard's Test Chat (orange badge).
        Test => "test",
        /// The embeddable website widget (purple badge).
        Widget => "widget",
        /// A web integration other than the widget.
        Web => "web",
        /// WhatsApp Business (green badge).
        Whatsapp => "whatsapp",
        /// Telegram bot.
        Telegram => "telegram",
        /// Facebook Messenger.
        Messenger => "messenger",
        /// Voice over IP calls.
        Voip => "voip",
        /// A CRM integration.
        Crm => "crm",
        /// The OpenAI-compatible gateway or the ingestion API.
        Api => "api",
    }
);

impl Channel {
    /// The label the dashboard shows for the channel's badge.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Test => "Test",
            Channel::Widget => "Web widget",
            Channel::Web => "Web",
            Channel::Whatsapp => "WhatsApp",
            Channel::Telegram => "Telegram",
            Channel::Messenger => "Messenger",
            Channel::Voip => "VoIP",
            Channel::Crm => "CRM",
            Channel::Api => "API",
        }
    }
}

named_enum!(
    /// A conversation's lifecycle state.
    ConversationStatus, "status" {
        /// Ongoing.
        Active => "active",
        /// Ended.
        Closed => "closed",
        /// Ended and filed away.
        Archived => "archived",
    }
);

impl ConversationStatus {
    /// The label the dashboard shows.
    pub fn label(self) -> &'static str {
        match self {
            ConversationStatus::Active => "Active",
            ConversationStatus::Closed => "Closed",
            ConversationStatus::Archived => "Archived",
        }
    }
}

named_enum!(
    /// Who wrote a message. Transcripts show `user`, `assistant` and `agent`; `system` and
    /// `tool` messages are stored but hidden unless asked for.
    Role, "role" {
        /// The customer.
        User => "user",
        /// The AI assistant.
        Assistant => "assistant",
        /// A human team member.
        Agent => "agent",
        /// A system prompt or notice.
        System => "system",
        /// A tool call or its result.
        Tool => "tool",
    }
);

impl Role {
    /// Whether transcripts show this role by default (user, assistant, agent).
    pub fn is_visible(self) -> bool {
        matches!(self, Role::User | Role::Assistant | Role::Agent)
    }
}

named_enum!(
    /// Where a conversation variable came from.
    VariableSource, "variable source" {
        /// The widget's pre-chat form.
        PreChat => "pre_chat",
        /// Extracted by the AI during the conversation (the seeds' "memory").
        Extracted => "extracted",
        /// Filled in after the conversation ended.
        PostConversation => "post_conversation",
        /// Set through the API.
        Api => "api",
    }
);

impl VariableSource {
    /// The label the dashboard shows.
    pub fn label(self) -> &'static str {
        match self {
            VariableSource::PreChat => "Pre-chat form",
            VariableSource::Extracted => "Extracted",
            VariableSource::PostConversation => "Post-conversation",
            VariableSource::Api => "API",
        }
    }
}

named_enum!(
    /// The overall sentiment of a conversation.
    SentimentLabel, "sentiment" {
        /// Positive.
        Positive => "positive",
        /// Negative.
        Negative => "negative",
        /// Neutral.
        Neutral => "neutral",
    }
);

named_enum!(
    /// How a conversation turned out (issue 13; the rules are in `insights::resolution` and the
    /// README's "Insights" section).
    Resolution, "resolution" {
        /// The assistant answered, no team member wrote, no hand-off, and the customer did not
        /// come back within 24 hours of the last answer (or said it helped).
        ResolvedByAi => "resolved_by_ai",
        /// A team member (`agent` role) wrote, or the assistant handed off.
        HandedOff => "handed_off",
        /// The customer's last message got no answer, or it ended negative without a hand-off.
        Unresolved => "unresolved",
        /// Still open: none of the above can be decided yet.
        Ongoing => "ongoing",
    }
);

named_enum!(
    /// How the customer's sentiment moved from their first to their last message.
    SentimentShift, "sentiment_shift" {
        /// The last customer message scores clearly higher than the first.
        Improved => "improved",
        /// About the same.
        Steady => "steady",
        /// The last customer message scores clearly lower than the first.
        Worsened => "worsened",
    }
);

named_enum!(
    /// A list filter on a conversation's sentiment (the client's if it sent one, else the
    /// computed one): one of the labels, or `not_analyzed` (neither is known).
    SentimentFilter, "sentiment" {
        /// Labelled positive.
        Positive => "positive",
        /// Labelled neutral.
        Neutral => "neutral",
        /// Labelled negative.
        Negative => "negative",
        /// No sentiment: not analysed yet, or a language the analyser does not read.
        NotAnalyzed => "not_analyzed",
    }
);

named_enum!(
    /// How an assistant takes part in its conversations.
    AssistantMode, "mode" {
        /// The AI answers customers.
        Active => "active",
        /// The team answers; the assistant audits and analyses.
        Passive => "passive",
        /// Both, with hand-off.
        Hybrid => "hybrid",
    }
);

named_enum!(
    /// What a dashboard user may do. Members review: read, search, export, remove ratings.
    /// Admins also delete conversations and manage users and keys.
    UserRole, "role" {
        /// Everything.
        Admin => "admin",
        /// Review.
        Member => "member",
    }
);

impl SentimentFilter {
    /// Human label for the dashboard.
    pub fn label(self) -> &'static str {
        match self {
            SentimentFilter::Positive => "Positive",
            SentimentFilter::Neutral => "Neutral",
            SentimentFilter::Negative => "Negative",
            SentimentFilter::NotAnalyzed => "Not analyzed",
        }
    }
}

impl Resolution {
    /// Human label for the dashboard.
    pub fn label(self) -> &'static str {
        match self {
            Resolution::ResolvedByAi => "Resolved by AI",
            Resolution::HandedOff => "Handed off",
            Resolution::Unresolved => "Unresolved",
            Resolution::Ongoing => "Ongoing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), *c);
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(
            "pre_chat".parse::<VariableSource>().unwrap(),
            VariableSource::PreChat
        );
        let err = "sms".parse::<Channel>().unwrap_err();
        assert!(err.to_string().contains("unknown channel \"sms\""));
        assert!(err.to_string().contains("whatsapp"));
        assert!("User".parse::<Role>().is_err(), "names are case-sensitive");
        assert!(!Role::Tool.is_visible() && Role::Agent.is_visible());
    }
}
