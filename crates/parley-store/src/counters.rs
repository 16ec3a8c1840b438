//! A conversation's counters and how each appended message changes them — one rule for both
//! backends, which store the result in the same columns.

use parley_core::Role;
use parley_core::pricing::CostSource;

use crate::NewMessage;

/// The counters of one conversation while a batch is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counters {
    /// The conversation's internal key.
    pub pk: i64,
    /// Messages of every role (the last `seq`).
    pub stored: i64,
    /// Visible messages (the last `visible_seq`).
    pub visible: i64,
    /// The list's date: the latest visible message, or the start.
    pub last_message_at: i64,
    /// The customer's latest message.
    pub last_inbound_at: Option<i64>,
    /// The latest visible message, as the list shows it.
    pub preview: Option<String>,
    /// The latest visible message appended in this batch, whose preview [`Counters::finish`]
    /// computes (once per batch, not per message: it parses markdown).
    pub latest: Option<(parley_core::Role, String)>,
    /// Summed prompt tokens.
    pub prompt_tokens: i64,
    /// Summed completion tokens.
    pub completion_tokens: i64,
    /// Summed cost, nano-USD.
    pub cost: i64,
    /// Messages with usage but no known price.
    pub unpriced: i64,
    /// A message appended in this batch carries a voice note, audio or a call recording (a
    /// channel attachment of kind `voice`, `audio` or `recording`): the conversation is no
    /// longer text-only. Only ever set.
    pub voice: bool,
}

impl Counters {
    /// Accounts for `m` appended after everything counted so far; returns its
    /// `(seq, visible_seq)`.
    pub fn append(&mut self, m: &NewMessage) -> (i64, Option<i64>) {
        self.stored += 1;
        let visible = m.role.is_visible();
        let visible_seq = visible.then(|| {
            self.visible += 1;
            self.visible
        });
        if visible && m.created_at.0 >= self.last_message_at {
            self.last_message_at = m.created_at.0;
            self.latest = Some((m.role, m.content.clone()));
        }
        if m.role == Role::User {
            self.last_inbound_at = Some(
                self.last_inbound_at
                    .map_or(m.created_at.0, |t| t.max(m.created_at.0)),
            );
        }
        if let Some(u) = m.usage {
            self.prompt_tokens = self.prompt_tokens.saturating_add(u.prompt_tokens);
            self.completion_tokens = self.completion_tokens.saturating_add(u.completion_tokens);
        }
        if let Some(cost) = m.cost_nanousd {
            self.cost = self.cost.saturating_add(cost);
        }
        if m.cost_source == Some(CostSource::UnknownModel) {
            self.unpriced += 1;
        }
        if m.meta.channel.as_ref().is_some_and(|c| {
            c.attachments
                .iter()
                .any(|a| matches!(a.kind.as_str(), "voice" | "audio" | "recording"))
        }) {
            self.voice = true;
        }
        (self.stored, visible_seq)
    }

    /// Settles what `append` deferred: the preview of the latest visible message.
    pub fn finish(&mut self) {
        if let Some((role, content)) = self.latest.take() {
            self.preview = Some(crate::preview(role, &content));
        }
    }
}
