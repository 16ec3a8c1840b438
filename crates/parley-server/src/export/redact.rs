//! PII redaction for fine-tuning sets: replaces, in message text, what identifies the customer.
//!
//! In this order:
//! 1. the conversation's own identifiers, as literal text, case-insensitively: the contact
//!    (phone number, Telegram user, visitor id) and the session id become `[CONTACT]`; the
//!    values of variables whose key names a person ([`PERSON_KEYS`]: `name`, `first_name`...)
//!    or a way to reach one (a key containing `mail`, `phone`, `mobile`) become `[NAME]`,
//!    `[EMAIL]` or `[PHONE]`;
//! 2. e-mail addresses (`local@domain.tld`) become `[EMAIL]`;
//! 3. card-like numbers (13 to 19 digits, spaces or dashes between groups allowed) that pass
//!    the Luhn check become `[CARD]`; other long digit runs are left to the phone rule;
//! 4. phone numbers become `[PHONE]`: an optional `+` and country code, an optional
//!    parenthesised area code, then two to five groups of 2-4 digits separated by a space,
//!    dot or dash, or 7-15 digits in one run, 7 to 15 digits in all. ISO dates (`2026-11-20`)
//!    and times do not match (a group of 3+ digits must follow the first).
//!
//! The patterns are `regex` crate expressions (the maintained standard crate; no home-made
//! matcher). The Luhn check is the one-line checksum every card scheme defines (ISO/IEC
//! 7812-1), written here: the crates offering it alone are unmaintained single-function crates.
//! Redaction is best effort: a name written differently from the variable that holds it, or
//! a phone number spelled out in words, stays.

use std::sync::OnceLock;

use parley_core::model::ConversationDetail;
use regex::{Regex, RegexBuilder};

fn email() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}")
            .expect("valid pattern")
    })
}

fn card() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"[0-9](?:[ \-]?[0-9]){12,18}").expect("valid pattern"))
}

fn phone() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(
            r"(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{1,4}\)[ .\-]?)?(?:[0-9]{2,4}(?:[ .\-][0-9]{3,4})(?:[ .\-][0-9]{2,4}){0,3}|[0-9]{7,15})",
        )
        .expect("valid pattern")
    })
}

/// Whether the digits of `text` (other characters ignored) pass the Luhn check.
pub fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 2 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the match `[start, end)` of `text` stands alone: no digit or letter right before or
/// after it (so part of a longer number or a word is never taken).
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_alphanumeric()) && !after.is_some_and(|c| c.is_alphanumeric())
}

fn replace_standalone(text: &str, re: &Regex, accept: impl Fn(&str) -> bool, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in re.find_iter(text) {
        if stands_alone(text, m.start(), m.end()) && accept(m.as_str()) {
            out.push_str(&text[last..m.start()]);
            out.push_str(with);
            last = m.end();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// The redactor of one conversation: its literal identifiers plus the general patterns.
pub struct Redactor {
    literals: Vec<(Regex, &'static str)>,
}

/// Variable keys that hold a person's name (lowercased). A key merely containing "name"
/// (`restaurant_name`) is not one.
const PERSON_KEYS: &[&str] = &[
    "name",
    "first_name",
    "last_name",
    "full_name",
    "given_name",
    "family_name",
    "customer_name",
    "contact_name",
    "user_name",
    "username",
    "customer",
    "contact",
];

/// The placeholder for a variable's value, by its key; `None` for a key that names nothing
/// personal.
fn variable_placeholder(key: &str) -> Option<&'static str> {
    let k = key.to_ascii_lowercase();
    if k.contains("mail") {
        Some("[EMAIL]")
    } else if k.contains("phone") || k.contains("mobile") || k == "tel" {
        Some("[PHONE]")
    } else if PERSON_KEYS.contains(&k.as_str()) {
        Some("[NAME]")
    } else {
        None
    }
}

impl Redactor {
    /// A redactor for `detail`'s conversation (see the module docs for what it replaces).
    pub fn for_conversation(detail: &ConversationDetail) -> Redactor {
        let s = &detail.summary;
        let mut literals: Vec<(String, &'static str)> = Vec::new();
        for v in [&s.contact, &s.session_id].into_iter().flatten() {
            literals.push((v.clone(), "[CONTACT]"));
        }
        for v in &detail.variables {
            if let Some(p) = variable_placeholder(&v.key) {
                literals.push((v.value.clone(), p));
            }
        }
        // Longest first, so a full name goes before the first name it contains.
        literals.sort_by_key(|(t, _)| std::cmp::Reverse(t.chars().count()));
        let literals = literals
            .into_iter()
            .map(|(t, p)| (t.trim().to_owned(), p))
            .filter(|(t, _)| t.chars().count() >= 3)
            .filter_map(|(t, p)| {
                RegexBuilder::new(&regex::escape(&t))
                    .case_insensitive(true)
                    .build()
                    .ok()
                    .map(|r| (r, p))
            })
            .collect();
        Redactor { literals }
    }

    /// `text` with every identifier replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for (re, with) in &self.literals {
            t = replace_standalone(&t, re, |_| true, with);
        }
        t = email().replace_all(&t, "[EMAIL]").into_owned();
        t = replace_standalone(
            &t,
            card(),
            |m| {
                let n = m.chars().filter(char::is_ascii_digit).count();
                (13..=19).contains(&n) && luhn_valid(m)
            },
            "[CARD]",
        );
        replace_standalone(
            &t,
            phone(),
            |m| (7..=15).contains(&m.chars().filter(char::is_ascii_digit).count()),
            "[PHONE]",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Redactor {
        Redactor {
            literals: Vec::new(),
        }
    }

    #[test]
    fn luhn_accepts_test_cards_and_refuses_typos() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(luhn_valid("5555-5555-5555-4444"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
    }

    #[test]
    fn patterns_replace_what_they_should_and_nothing_else() {
        let r = plain();
        assert_eq!(
            r.redact("mail me at Jane.Doe+x@example.co.uk please"),
            "mail me at [EMAIL] please"
        );
        assert_eq!(r.redact("card 4111 1111 1111 1111 ok"), "card [CARD] ok");
        // Not a valid card number: a long digit run, not a phone either (16 digits).
        assert_eq!(r.redact("order 4111111111111112"), "order 4111111111111112");
        assert_eq!(r.redact("call 408-555-1234 now"), "call [PHONE] now");
        assert_eq!(r.redact("call +44 20 7946 0958"), "call [PHONE]");
        assert_eq!(r.redact("or (415) 555-0100"), "or [PHONE]");
        assert_eq!(
            r.redact("on 2026-11-20 at 10:30 for 4 people, $45"),
            "on 2026-11-20 at 10:30 for 4 people, $45"
        );
    }
}
