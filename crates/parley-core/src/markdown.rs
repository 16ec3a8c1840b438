//! Markdown to safe HTML, for assistant (and agent) messages in the dashboard and the widget.
//!
//! CommonMark plus tables, strikethrough and task lists (pulldown-cmark) is rendered to HTML,
//! then sanitised with ammonia's allow-list: no script, no event handler attributes, no style,
//! no iframes or forms, and links and images only with `http`, `https` or `mailto` URLs.
//! Raw HTML in the markdown passes through the same sanitiser, so nothing a conversation
//! contains can run in a reviewer's browser. Links open in a new tab with
//! `rel="noopener noreferrer nofollow"`.

use std::collections::HashSet;
use std::sync::OnceLock;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html};

fn sanitizer() -> &'static ammonia::Builder<'static> {
    static BUILDER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    BUILDER.get_or_init(|| {
        let mut b = ammonia::Builder::default();
        b.url_schemes(HashSet::from(["http", "https", "mailto"]))
            .link_rel(Some("noopener noreferrer nofollow"))
            .add_tag_attributes("a", &["target"])
            .set_tag_attribute_value("a", "target", "_blank")
            .add_tag_attributes("img", &["alt", "title"])
            .add_tag_attributes("input", &["type", "checked", "disabled"])
            .add_tags(&["input"]);
        b
    })
}

/// Renders markdown as sanitised HTML.
pub fn to_safe_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(markdown, options));
    sanitizer().clean(&raw).to_string()
}

/// The text of a markdown document without its syntax (for previews and notifications):
/// `**Roadster M** is [here](https://x)` -> `Roadster M is here`. Blocks are joined by spaces;
/// images give their alt text; raw HTML is dropped.
pub fn to_plain_text(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut out = String::with_capacity(markdown.len());
    let space = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    };
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak | Event::HardBreak | Event::Rule => space(&mut out),
            Event::Start(Tag::Item | Tag::TableCell)
            | Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::TableRow
                | TagEnd::CodeBlock
                | TagEnd::Item,
            ) => space(&mut out),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::{to_plain_text, to_safe_html};

    #[test]
    fn plain_text_drops_the_syntax() {
        assert_eq!(
            to_plain_text(
                "Yes — **Roadster M** is [in stock](https://x).\n\n- Free delivery\n- 30-day returns"
            ),
            "Yes — Roadster M is in stock. Free delivery 30-day returns"
        );
        assert_eq!(to_plain_text("Balance: `$5`"), "Balance: $5");
        assert_eq!(
            to_plain_text("Hi <b>there</b>"),
            "Hi there",
            "tags go, their text stays (escaped when shown)"
        );
        assert_eq!(to_plain_text("| a | b |\n|---|---|\n| 1 | 2 |"), "a b 1 2");
    }

    #[test]
    fn renders_the_usual_markdown() {
        let html = to_safe_html(
            "**bold** and [a link](https://example.com)\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```rust\nfn main() {}\n```\n\n![cat](https://example.com/cat.png)",
        );
        for expected in [
            "<strong>bold</strong>",
            "<a href=\"https://example.com\"",
            "target=\"_blank\"",
            "rel=\"noopener noreferrer nofollow\"",
            "<li>one</li>",
            "<table>",
            "<td>2</td>",
            "<pre><code>fn main() {}",
            "<img src=\"https://example.com/cat.png\" alt=\"cat\">",
        ] {
            assert!(html.contains(expected), "{expected} in {html}");
        }
    }

    #[test]
    fn nothing_executable_survives() {
        let payloads = [
            "<script>window.__xss=1</script>",
            "<img src=x onerror=\"window.__xss=1\">",
            "[click](javascript:window.__xss=1)",
            "[click](JaVaScRiPt:alert(1))",
            "<a href=\"&#106;avascript:alert(1)\">x</a>",
            "<svg onload=alert(1)><circle/></svg>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "![x](x\" onerror=\"alert(1))",
            "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
            "<details open ontoggle=alert(1)>",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
            "<style>body{display:none}</style>",
            "<form action=https://evil.example><input name=password></form>",
            "<object data=\"javascript:alert(1)\"></object>",
            "<p style=\"background:url(javascript:alert(1))\">x</p>",
        ];
        for p in payloads {
            let html = to_safe_html(p).to_ascii_lowercase();
            // Look inside tags only: the payload may survive as harmless, escaped text.
            for tag in html
                .split('<')
                .skip(1)
                .map(|t| t.split('>').next().unwrap_or(""))
            {
                let name = tag
                    .trim_start_matches('/')
                    .split([' ', '/'])
                    .next()
                    .unwrap_or("");
                assert!(
                    !["script", "iframe", "svg", "style", "form", "object", "math"].contains(&name),
                    "{p:?} kept a <{name}> tag: {html:?}"
                );
                for attr in tag.split_whitespace().skip(1) {
                    assert!(
                        !attr.starts_with("on"),
                        "{p:?} kept an event handler: {html:?}"
                    );
                    assert!(!attr.starts_with("style"), "{p:?} kept a style: {html:?}");
                    assert!(
                        !attr.contains("javascript:") && !attr.contains("data:"),
                        "{p:?} kept a URL: {html:?}"
                    );
                }
            }
        }
    }
}
