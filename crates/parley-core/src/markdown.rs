//! Markdown to safe HTML, for assistant (and agent) messages in the dashboard and the widget.
//!
//! CommonMark plus tables, strikethrough and task lists (pulldown-cmark) is rendered to HTML,
//! then sanitised with ammonia's allow-list: no script, no event handler attributes, no style,
//! no iframes or forms, and links and images only with `http`, `https` or `mailto` URLs.
//! Raw HTML in the markdown passes through the same sanitiser, so nothing a conversation
//! contains can run in a reviewer's browser. Links open in a new tab with
//! `rel="noopener noreferrer nofollow"`.
//!
//! **No image loads by itself.** An image in a message (`![alt](https://host/x.png)`) would be
//! fetched the moment a reviewer opens the conversation, telling whoever wrote it (a customer,
//! or a provider the customer talked into it) when and from where it was read: a tracking
//! pixel. So a markdown image becomes a link, `<a class="remote-image">alt — image from host,
//! click to open</a>`, that opens it in a new tab only when clicked (without a referrer), and `<img>` in
//! raw HTML is dropped. The dashboard's Content-Security-Policy (`img-src 'self' data: blob:`)
//! refuses remote images as a second line.

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
            .rm_tags(&["img"])
            .add_allowed_classes("a", &[REMOTE_IMAGE_CLASS])
            .add_tag_attributes("input", &["type", "checked", "disabled"])
            .add_tags(&["input"]);
        b
    })
}

/// The class of the link a markdown image becomes (see the [module docs](self)).
pub const REMOTE_IMAGE_CLASS: &str = "remote-image";

/// The host an image URL names, for the placeholder (`host.example`, `host.example:8443`);
/// `None` for a relative URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    (!host.is_empty()).then_some(host)
}

/// Markdown images as click-to-open links: `Start(Image)` becomes a link to the image with the
/// [`REMOTE_IMAGE_CLASS`], its alt text stays as the link text, and `— image from host` ends
/// it. An image inside a link (a badge) keeps only its alt text, since links do not nest.
fn images_as_links<'a>(events: impl Iterator<Item = Event<'a>>) -> impl Iterator<Item = Event<'a>> {
    let mut links = 0usize;
    // Per open image: (shown as a link, its host, whether it had alt text).
    let mut images: Vec<(bool, String, bool)> = Vec::new();
    events.flat_map(move |event| -> Vec<Event<'a>> {
        match event {
            Event::Text(_) | Event::Code(_) if !images.is_empty() => {
                if let Some(open) = images.last_mut() {
                    open.2 = true;
                }
                vec![event]
            }
            Event::Start(Tag::Link { .. }) => {
                links += 1;
                vec![event]
            }
            Event::End(TagEnd::Link) => {
                links = links.saturating_sub(1);
                vec![event]
            }
            Event::Start(Tag::Image {
                dest_url, title, ..
            }) => {
                let host = url_host(&dest_url).unwrap_or("this server").to_owned();
                let as_link = links == 0 && images.is_empty();
                images.push((as_link, host, false));
                if !as_link {
                    return vec![Event::Text("[image: ".into())];
                }
                let title = if title.is_empty() {
                    String::new()
                } else {
                    format!(" title=\"{}\"", escape_attr(&title))
                };
                vec![Event::Html(
                    format!(
                        "<a class=\"{REMOTE_IMAGE_CLASS}\" href=\"{}\"{title}>",
                        escape_attr(&dest_url)
                    )
                    .into(),
                )]
            }
            Event::End(TagEnd::Image) => match images.pop() {
                Some((true, host, had_alt)) => vec![
                    Event::Text(
                        if had_alt {
                            format!(" — image from {host}, click to open")
                        } else {
                            format!("Image from {host}, click to open")
                        }
                        .into(),
                    ),
                    Event::Html("</a>".into()),
                ],
                _ => vec![Event::Text("]".into())],
            },
            other => vec![other],
        }
    })
}

/// `text` escaped for a double-quoted HTML attribute.
pub(crate) fn escape_attr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders markdown as sanitised HTML (images as links: see the [module docs](self)).
pub fn to_safe_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(
        &mut raw,
        images_as_links(Parser::new_ext(markdown, options)),
    );
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
            "<a class=\"remote-image\" href=\"https://example.com/cat.png\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">cat — image from example.com, click to open</a>",
        ] {
            assert!(html.contains(expected), "{expected} in {html}");
        }
    }

    #[test]
    fn no_image_loads_without_a_click() {
        for md in [
            "![pixel](https://tracker.example/p.gif?u=42)",
            "![](http://user:pw@tracker.example:8080/p.gif \"t\")",
            "<img src=\"https://tracker.example/p.gif\">",
            "<p><img src=\"https://tracker.example/p.gif\" alt=\"x\"></p>",
            "[![badge](https://tracker.example/b.svg)](https://example.com)",
            "![rel](/assets/x.png)",
        ] {
            let html = to_safe_html(md);
            assert!(!html.to_ascii_lowercase().contains("<img"), "{md}: {html}");
        }
        let html = to_safe_html("![](http://user:pw@tracker.example:8080/p.gif \"t\")");
        assert!(
            html.contains(">Image from tracker.example:8080, click to open</a>")
                && html.contains("title=\"t\""),
            "{html}"
        );
        let html = to_safe_html("[![badge](https://tracker.example/b.svg)](https://example.com)");
        assert_eq!(html.matches("<a ").count(), 1, "links do not nest: {html}");
        assert!(html.contains("[image: badge]"), "{html}");
        // A crafted URL cannot break out of the attribute.
        let html = to_safe_html("![x](https://e.example/\"onmouseover=alert(1))");
        assert!(!html.contains(" onmouseover"), "{html}");
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
