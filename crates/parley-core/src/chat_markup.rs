//! Markdown (what assistants write) to the markup of a messaging platform, so a WhatsApp or
//! Telegram customer sees **bold** as bold rather than as asterisks.
//!
//! The markdown is parsed by pulldown-cmark (CommonMark plus tables, strikethrough and task
//! lists) and written back in the platform's own terms:
//!
//! | markdown | WhatsApp ([formatting guide](https://faq.whatsapp.com/539178204879377)) | Telegram ([`parse_mode` HTML](https://core.telegram.org/bots/api#html-style)) |
//! | --- | --- | --- |
//! | `**bold**` | `*bold*` | `<b>bold</b>` |
//! | `*italic*` | `_italic_` | `<i>italic</i>` |
//! | `~~strike~~` | `~strike~` | `<s>strike</s>` |
//! | `` `code` `` | `` `code` `` | `<code>code</code>` |
//! | fenced code | ```` ``` ```` block | `<pre>` |
//! | `[text](url)` | `text (url)` | `<a href="url">text</a>` (http, https, mailto, tg only) |
//! | `# Heading` | `*Heading*` | `<b>Heading</b>` |
//! | lists | `• item` / `1. item`, two spaces per level | the same |
//! | `> quote` | `> ` before each line | `<blockquote>` |
//! | tables | one line per row, cells joined by ` \| `, the header row bold | the same |
//! | images | `alt (url)` | a link to the image |
//!
//! Raw HTML in the markdown is kept as text (escaped for Telegram). Telegram's HTML needs only
//! `&`, `<` and `>` escaped; the output is always well formed, so Telegram never refuses it with
//! "can't parse entities". Line breaks inside a paragraph are kept (chat messages are written
//! line by line), and blocks are separated by one empty line.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::markdown::escape_attr;

/// A messaging platform's markup (see the [module docs](self) for the mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// WhatsApp's text formatting (`*bold*`, `_italic_`, `~strike~`, `` ` ``), for the Cloud
    /// API's `text.body`.
    WhatsApp,
    /// Telegram Bot API `parse_mode: "HTML"`.
    TelegramHtml,
}

/// `markdown` written in the platform's markup (see the [module docs](self)).
pub fn to_markup(markdown: &str, markup: Markup) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut w = Writer {
        markup,
        buffers: vec![String::with_capacity(markdown.len() + 16)],
        lists: Vec::new(),
        links: Vec::new(),
        cells: 0,
    };
    for event in Parser::new_ext(markdown, options) {
        w.event(event);
    }
    let out = w.buffers.swap_remove(0);
    tidy(&out)
}

/// Open list: its next number (`None` for a bullet list).
type List = Option<u64>;

struct Writer {
    markup: Markup,
    /// The output, with one more buffer per open block quote.
    buffers: Vec<String>,
    lists: Vec<List>,
    /// Per open link or image: its URL and where its text starts in the current buffer.
    links: Vec<(String, usize)>,
    cells: usize,
}

impl Writer {
    fn out(&mut self) -> &mut String {
        self.buffers.last_mut().expect("the root buffer")
    }

    fn push(&mut self, s: &str) {
        self.out().push_str(s);
    }

    fn text(&mut self, t: &str) {
        match self.markup {
            Markup::WhatsApp => self.push(t),
            Markup::TelegramHtml => {
                let escaped = escape_html(t);
                self.push(&escaped);
            }
        }
    }

    /// Ends the current line if it has text.
    fn line(&mut self) {
        let out = self.out();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    }

    /// Ends the current block: an empty line before the next one.
    fn block(&mut self) {
        self.line();
        let out = self.out();
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
    }

    fn mark(&mut self, whatsapp: &str, telegram: &str) {
        match self.markup {
            Markup::WhatsApp => self.push(whatsapp),
            Markup::TelegramHtml => self.push(telegram),
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.text(&t),
            Event::Code(t) => {
                self.mark("`", "<code>");
                self.text(&t);
                self.mark("`", "</code>");
            }
            Event::Html(t) | Event::InlineHtml(t) => self.text(&t),
            Event::SoftBreak | Event::HardBreak => self.push("\n"),
            Event::Rule => {
                self.block();
                self.push("──────────");
                self.block();
            }
            Event::TaskListMarker(done) => self.push(if done { "☑ " } else { "☐ " }),
            Event::FootnoteReference(t) => self.text(&format!("[{t}]")),
            Event::InlineMath(t) | Event::DisplayMath(t) => self.text(&t),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {}
            Tag::Heading { .. } => {
                self.block();
                self.mark("*", "<b>");
            }
            Tag::BlockQuote(_) => {
                self.block();
                self.buffers.push(String::new());
            }
            Tag::CodeBlock(_) => {
                self.block();
                self.mark("```\n", "<pre>");
            }
            Tag::List(first) => {
                if self.lists.is_empty() {
                    self.block();
                } else {
                    self.line();
                }
                self.lists.push(first);
            }
            Tag::Item => {
                self.line();
                let depth = self.lists.len().saturating_sub(1);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_owned(),
                };
                let indent = "  ".repeat(depth);
                self.push(&indent);
                self.push(&marker);
            }
            Tag::Table(_) => self.block(),
            Tag::TableHead => {
                self.cells = 0;
                self.mark("*", "<b>");
            }
            Tag::TableRow => {
                self.line();
                self.cells = 0;
            }
            Tag::TableCell => {
                if self.cells > 0 {
                    self.push(" | ");
                }
                self.cells += 1;
            }
            Tag::Emphasis => self.mark("_", "<i>"),
            Tag::Strong => self.mark("*", "<b>"),
            Tag::Strikethrough => self.mark("~", "<s>"),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                let url = dest_url.to_string();
                if self.markup == Markup::TelegramHtml && safe_url(&url) {
                    let open = format!("<a href=\"{}\">", escape_attr(&url));
                    self.push(&open);
                }
                let at = self.out().len();
                self.links.push((url, at));
            }
            Tag::FootnoteDefinition(_)
            | Tag::HtmlBlock
            | Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::MetadataBlock(_)
            | Tag::Superscript
            | Tag::Subscript => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                if self.lists.is_empty() {
                    self.block();
                } else {
                    self.line();
                }
            }
            TagEnd::Heading(_) => {
                self.mark("*", "</b>");
                self.block();
            }
            TagEnd::BlockQuote(_) => {
                let inner = self.buffers.pop().unwrap_or_default();
                let inner = inner.trim_end();
                match self.markup {
                    Markup::WhatsApp => {
                        let quoted: Vec<String> = inner.lines().map(|l| format!("> {l}")).collect();
                        let joined = quoted.join("\n");
                        self.push(&joined);
                    }
                    Markup::TelegramHtml => {
                        let wrapped = format!("<blockquote>{inner}</blockquote>");
                        self.push(&wrapped);
                    }
                }
                self.block();
            }
            TagEnd::CodeBlock => {
                if self.markup == Markup::WhatsApp {
                    self.line();
                }
                self.mark("```", "</pre>");
                self.block();
            }
            TagEnd::List(_) => {
                self.lists.pop();
                if self.lists.is_empty() {
                    self.block();
                }
            }
            TagEnd::Item => self.line(),
            TagEnd::Table => self.block(),
            TagEnd::TableHead => {
                self.mark("*", "</b>");
                self.line();
            }
            TagEnd::TableRow | TagEnd::TableCell => {}
            TagEnd::Emphasis => self.mark("_", "</i>"),
            TagEnd::Strong => self.mark("*", "</b>"),
            TagEnd::Strikethrough => self.mark("~", "</s>"),
            TagEnd::Link | TagEnd::Image => {
                let Some((url, at)) = self.links.pop() else {
                    return;
                };
                match self.markup {
                    Markup::TelegramHtml => {
                        if safe_url(&url) {
                            self.push("</a>");
                        }
                    }
                    Markup::WhatsApp => {
                        let shown = self.out()[at..].trim().to_owned();
                        if shown.is_empty() {
                            self.push(&url);
                        } else if shown != url && !url.is_empty() {
                            self.push(&format!(" ({url})"));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// URLs Telegram is given as links; anything else stays as the link's text only.
fn safe_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    ["http://", "https://", "mailto:", "tg://"]
        .iter()
        .any(|s| lower.starts_with(s))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Trailing spaces off each line, at most one empty line in a row, no blank start or end.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Markup, to_markup};

    const REPLY: &str = "Yes! The **Roadster** ships *free* to Austria:\n\n- 2-4 days\n- tracked, see [the map](https://shop.example/map)\n\n| Country | Days |\n|---|---:|\n| Austria | 2-4 |\n\nUse `SAVE10` & enjoy <3";

    #[test]
    fn whatsapp_gets_its_own_marks() {
        assert_eq!(
            to_markup(REPLY, Markup::WhatsApp),
            "Yes! The *Roadster* ships _free_ to Austria:\n\n• 2-4 days\n• tracked, see the map (https://shop.example/map)\n\n*Country | Days*\nAustria | 2-4\n\nUse `SAVE10` & enjoy <3"
        );
    }

    #[test]
    fn telegram_gets_escaped_well_formed_html() {
        assert_eq!(
            to_markup(REPLY, Markup::TelegramHtml),
            "Yes! The <b>Roadster</b> ships <i>free</i> to Austria:\n\n• 2-4 days\n• tracked, see <a href=\"https://shop.example/map\">the map</a>\n\n<b>Country | Days</b>\nAustria | 2-4\n\nUse <code>SAVE10</code> &amp; enjoy &lt;3"
        );
    }

    #[test]
    fn plain_text_is_unchanged() {
        for m in [Markup::WhatsApp, Markup::TelegramHtml] {
            assert_eq!(to_markup("Hello from the stub.", m), "Hello from the stub.");
            assert_eq!(to_markup("line one\nline two", m), "line one\nline two");
        }
    }

    #[test]
    fn blocks_lists_and_code() {
        let md = "# Opening hours\n\n1. Monday\n2. Tuesday\n   - late\n\n> closed on\n> holidays\n\n```\nlet x = 1 < 2;\n```\n\n~~old~~ [bad](javascript:alert(1))";
        assert_eq!(
            to_markup(md, Markup::WhatsApp),
            "*Opening hours*\n\n1. Monday\n2. Tuesday\n  • late\n\n> closed on\n> holidays\n\n```\nlet x = 1 < 2;\n```\n\n~old~ bad (javascript:alert(1))"
        );
        assert_eq!(
            to_markup(md, Markup::TelegramHtml),
            "<b>Opening hours</b>\n\n1. Monday\n2. Tuesday\n  • late\n\n<blockquote>closed on\nholidays</blockquote>\n\n<pre>let x = 1 &lt; 2;\n</pre>\n\n<s>old</s> bad"
        );
    }
}
