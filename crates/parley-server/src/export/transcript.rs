//! One conversation's transcript as a file: Markdown or plain text (issue 16).
//!
//! Both start with the metadata (assistant, channel, contact, status, times, messages, tokens,
//! cost, rating, sentiment, resolution) and the variables, then the visible messages (customer,
//! assistant, team member) oldest first, each with its author and time (RFC 3339, UTC). System
//! and tool messages are not part of a transcript. Markdown: a level-1 title, a bullet list of
//! metadata, a variables table, one level-3 heading per message followed by its text as
//! written (assistant and team messages are Markdown already; a customer's text is quoted, so
//! it is never read as a heading or a list). Plain text: `Key: value` lines and one
//! `[time] Author: text` block per message.

use parley_core::model::{ConversationExport, Message};
use parley_core::{Role, Timestamp};

use crate::transfer::format_usd;

/// A transcript format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptFormat {
    /// CommonMark.
    Markdown,
    /// Plain UTF-8 text.
    Text,
}

impl TranscriptFormat {
    /// Parses `markdown` (also `md`) or `text` (also `txt`).
    pub fn parse(s: &str) -> Option<TranscriptFormat> {
        match s {
            "markdown" | "md" => Some(TranscriptFormat::Markdown),
            "text" | "txt" => Some(TranscriptFormat::Text),
            _ => None,
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            TranscriptFormat::Markdown => "text/markdown; charset=utf-8",
            TranscriptFormat::Text => "text/plain; charset=utf-8",
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            TranscriptFormat::Markdown => "md",
            TranscriptFormat::Text => "txt",
        }
    }
}

/// Who wrote `m`, as a transcript names them.
pub fn author(m: &Message) -> String {
    match m.role {
        Role::User => "Customer".to_owned(),
        Role::Assistant => match &m.model {
            Some(model) => format!("Assistant ({model})"),
            None => "Assistant".to_owned(),
        },
        Role::Agent => match &m.meta.author {
            Some(a) => format!("Team member ({})", a.name),
            None => "Team member".to_owned(),
        },
        Role::System => "System".to_owned(),
        Role::Tool => "Tool".to_owned(),
    }
}

/// The metadata of a transcript as (label, value) pairs, empty values left out; `resolution`
/// is the analysed outcome, when there is one.
pub fn metadata(c: &ConversationExport, resolution: Option<&str>) -> Vec<(&'static str, String)> {
    let s = &c.detail.summary;
    let time = |t: Timestamp| t.to_rfc3339();
    let mut out = vec![
        (
            "Assistant",
            if s.assistant.company.is_empty() {
                s.assistant.name.clone()
            } else {
                format!("{} ({})", s.assistant.name, s.assistant.company)
            },
        ),
        ("Channel", s.channel.to_string()),
        ("Contact", s.contact.clone().unwrap_or_default()),
        ("Session", s.session_id.clone().unwrap_or_default()),
        ("Status", s.status.label().to_owned()),
        ("Started", time(s.started_at)),
        ("Last message", time(s.last_message_at)),
        ("Ended", s.ended_at.map(time).unwrap_or_default()),
        ("Messages", s.message_count.to_string()),
        (
            "Tokens",
            format!(
                "{} prompt, {} completion",
                s.usage.prompt_tokens, s.usage.completion_tokens
            ),
        ),
        ("Cost (USD)", format_usd(s.cost_nanousd)),
        (
            "Rating",
            s.rating
                .as_ref()
                .map(|r| match &r.comment {
                    Some(cm) => format!("{}/5, \"{cm}\"", r.score),
                    None => format!("{}/5", r.score),
                })
                .unwrap_or_default(),
        ),
        (
            "Sentiment",
            s.sentiment
                .as_ref()
                .map(|x| x.label.to_string())
                .unwrap_or_default(),
        ),
        ("Resolution", resolution.unwrap_or_default().to_owned()),
        ("Conversation id", s.id.to_string()),
    ];
    out.retain(|(_, v)| !v.is_empty());
    out
}

/// The title of a transcript.
pub fn title(c: &ConversationExport) -> String {
    let s = &c.detail.summary;
    match &s.contact {
        Some(contact) => format!("Conversation with {contact} on {}", s.channel),
        None => format!("Conversation on {}", s.channel),
    }
}

/// Escapes the characters Markdown gives a meaning to inside a table cell or a line.
fn md_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

/// The transcript of `c` in `format` (see the module docs).
pub fn render(
    c: &ConversationExport,
    resolution: Option<&str>,
    format: TranscriptFormat,
) -> String {
    let visible = c.messages.iter().filter(|m| m.role.is_visible());
    let mut out = String::new();
    match format {
        TranscriptFormat::Markdown => {
            out.push_str(&format!("# {}\n\n", md_inline(&title(c))));
            for (k, v) in metadata(c, resolution) {
                out.push_str(&format!("- **{k}:** {}\n", md_inline(&v)));
            }
            if !c.detail.variables.is_empty() {
                out.push_str("\n## Variables\n\n| Key | Value | Source |\n| --- | --- | --- |\n");
                for v in &c.detail.variables {
                    out.push_str(&format!(
                        "| {} | {} | {} |\n",
                        md_inline(&v.key),
                        md_inline(&v.value),
                        v.source
                    ));
                }
            }
            out.push_str("\n## Transcript\n");
            for m in visible {
                out.push_str(&format!(
                    "\n### {} · {}\n\n",
                    md_inline(&author(m)),
                    m.created_at.to_rfc3339()
                ));
                if m.role == Role::User {
                    for line in m.content.lines() {
                        out.push_str(&format!("> {}\n", md_inline(line)));
                    }
                } else {
                    out.push_str(m.content.trim_end());
                    out.push('\n');
                }
            }
        }
        TranscriptFormat::Text => {
            let t = title(c);
            out.push_str(&format!("{t}\n{}\n\n", "=".repeat(t.chars().count())));
            for (k, v) in metadata(c, resolution) {
                out.push_str(&format!("{k}: {v}\n"));
            }
            if !c.detail.variables.is_empty() {
                out.push_str("\nVariables\n");
                for v in &c.detail.variables {
                    out.push_str(&format!("  {} = {} ({})\n", v.key, v.value, v.source));
                }
            }
            out.push_str("\nTranscript\n");
            for m in visible {
                out.push_str(&format!(
                    "\n[{}] {}:\n{}\n",
                    m.created_at.to_rfc3339(),
                    author(m),
                    m.content.trim_end()
                ));
            }
        }
    }
    out
}
