//! Search semantics shared by both store backends: a search term matches a text when the
//! term's case-folded form is a substring of the text's case-folded form. Folding is Unicode
//! lowercasing (so `"SCHÖN"` finds `"schön"`), done char by char so that match positions map back
//! to the original text for snippets.

use serde::{Deserialize, Serialize};

/// Case-folds `text` for matching: Unicode lowercase.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        out.extend(c.to_lowercase());
    }
    out
}

/// Whether `haystack` contains `folded_needle` (already passed through [`fold`]),
/// case-insensitively. Empty needles match everything.
pub fn contains_folded(haystack: &str, folded_needle: &str) -> bool {
    if folded_needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() && folded_needle.is_ascii() {
        let needle = folded_needle.as_bytes();
        return haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle));
    }
    fold(haystack).contains(folded_needle)
}

/// Finds the first case-insensitive occurrence of `term` in `text`; returns its byte range in
/// `text` (on char boundaries).
pub fn find(text: &str, term: &str) -> Option<(usize, usize)> {
    let needle = fold(term);
    if needle.is_empty() {
        return None;
    }
    // Fold char by char, remembering where each folded byte came from in the original.
    let mut folded = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        for l in c.to_lowercase() {
            for _ in 0..l.len_utf8() {
                origin.push(i);
            }
            folded.push(l);
        }
    }
    origin.push(text.len());
    let start = folded.find(&needle)?;
    let end_folded = start + needle.len();
    let begin = origin[start];
    // The match ends after the original char that produced the last folded byte.
    let last = origin[end_folded - 1];
    let end = last + text[last..].chars().next().map_or(0, char::len_utf8);
    Some((begin, end))
}

/// Where a search matched, for showing a result: the text around the match, split so a client
/// can highlight `matched` without computing offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snippet {
    /// Text before the match, starting with `…` when cut.
    pub before: String,
    /// The matched text, as written in the original.
    pub matched: String,
    /// Text after the match, ending with `…` when cut.
    pub after: String,
}

/// Builds a snippet of `text` around the first match of `term`, with about `context` chars on
/// each side; `None` if `term` does not occur.
pub fn snippet(text: &str, term: &str, context: usize) -> Option<Snippet> {
    let (start, end) = find(text, term)?;
    let before_full = &text[..start];
    let after_full = &text[end..];
    let before_chars = before_full.chars().count();
    let before = if before_chars > context {
        let cut: String = before_full.chars().skip(before_chars - context).collect();
        // Start at a word boundary when one is close.
        let cut = match cut.find(char::is_whitespace) {
            Some(i) if i < context / 3 => cut[i..].trim_start().to_owned(),
            _ => cut,
        };
        format!("…{cut}")
    } else {
        before_full.to_owned()
    };
    let after = if after_full.chars().count() > context {
        let cut: String = after_full.chars().take(context).collect();
        let cut = match cut.rfind(char::is_whitespace) {
            Some(i) if i > context * 2 / 3 => cut[..i].to_owned(),
            _ => cut,
        };
        format!("{cut}…")
    } else {
        after_full.to_owned()
    };
    Some(Snippet {
        before,
        matched: text[start..end].to_owned(),
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_is_unicode_aware() {
        assert!(contains_folded("Das ist schön", &fold("SCHÖN")));
        assert!(contains_folded("ΑΘΗΝΑ", &fold("αθήνα").replace('ή', "η")));
        assert!(contains_folded("Hello World", "o w"));
        assert!(!contains_folded("Hello", "hi"));
        assert!(contains_folded("anything", ""));
    }

    #[test]
    fn find_maps_back_to_original_bytes() {
        let text = "Grüße aus MÜNCHEN, schön!";
        let (s, e) = find(text, "münchen").unwrap();
        assert_eq!(&text[s..e], "MÜNCHEN");
        // 'İ' lowercases to two chars; positions after it must still map correctly.
        let text = "İstanbul trip";
        let (s, e) = find(text, "trip").unwrap();
        assert_eq!(&text[s..e], "trip");
        assert_eq!(find("abc", "zz"), None);
    }

    #[test]
    fn snippets_cut_long_text_around_the_match() {
        let text = format!("{} needle {}", "word ".repeat(40), "tail ".repeat(40));
        let s = snippet(&text, "NEEDLE", 30).unwrap();
        assert_eq!(s.matched, "needle");
        assert!(s.before.starts_with('…') && s.after.ends_with('…'));
        assert!(s.before.chars().count() <= 31 && s.after.chars().count() <= 31);
        let short = snippet("a needle here", "needle", 30).unwrap();
        assert_eq!(
            (short.before.as_str(), short.after.as_str()),
            ("a ", " here")
        );
    }
}
