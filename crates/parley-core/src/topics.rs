//! Key phrases of a conversation and the topics of a workspace (issue 13), pure.
//!
//! **Key phrases.** The customer's messages (role `user`) are run through YAKE (Campos et al.,
//! 2020, "YAKE! Keyword extraction from single documents using multiple local features") with the
//! `yake-rust` crate: unsupervised, one document at a time, no model to download. The stop word
//! list is the detected language's ([`stop_words_for`]); text in a language YAKE has no list for
//! (or in a script it cannot split into words, Chinese and Japanese) gets no key phrases. At most
//! [`MAX_KEY_PHRASES`] phrases of one to three words, lower-cased, best first.
//!
//! **Topics.** A topic is a key phrase shared by at least [`MIN_TOPIC_SIZE`] conversations of
//! a workspace, learned greedily by [`learn_topics`]: phrases are taken by the number of
//! conversations they appear in, most first; a phrase becomes a topic when at least
//! [`MIN_TOPIC_SIZE`] of its conversations belong to no earlier topic, and those conversations
//! then belong to it. So every conversation is in at most one topic, and [`topic_of`] gives a
//! conversation analysed later the same topic the learning would have: the first topic, in
//! learning order, whose key is one of its phrases. A topic is named by its key and the phrases
//! that most often come with it ([`NAME_PHRASES`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use yake_rust::{Config, StopWords};

/// The most key phrases kept per conversation.
pub const MAX_KEY_PHRASES: usize = 5;
/// The fewest conversations a topic has when it is learned.
pub const MIN_TOPIC_SIZE: usize = 3;
/// The most topics a workspace has.
pub const MAX_TOPICS: usize = 50;
/// How many phrases name a topic (its key first).
pub const NAME_PHRASES: usize = 3;
/// Customer text beyond this many characters is not read for key phrases (YAKE's cost grows
/// with the text; the opening of a conversation says what it is about).
pub const MAX_TEXT_CHARS: usize = 4_000;

/// The YAKE stop word list for a `whatlang` ISO 639-3 code (`None`: undetected, read as
/// English); `None` when YAKE has no list for the language or cannot split its script.
pub fn stop_words_for(language: Option<&str>) -> Option<StopWords> {
    let two = match language.unwrap_or("eng") {
        "eng" => "en",
        "spa" => "es",
        "fra" => "fr",
        "deu" => "de",
        "ita" => "it",
        "por" => "pt",
        "nld" => "nl",
        "rus" => "ru",
        "ukr" => "uk",
        "pol" => "pl",
        "swe" => "sv",
        "dan" => "da",
        "nob" => "no",
        "fin" => "fi",
        "tur" => "tr",
        "ces" => "cz",
        "slk" => "sk",
        "slv" => "sl",
        "hrv" => "hr",
        "hun" => "hu",
        "ron" => "ro",
        "bul" => "bg",
        "ell" => "el",
        "est" => "et",
        "lit" => "lt",
        "lav" => "lv",
        "ara" => "ar",
        "pes" => "fa",
        "hin" => "hi",
        "hye" => "hy",
        "ind" => "id",
        _ => return None,
    };
    StopWords::predefined(two)
}

/// [`stop_words_for`], built once per language for the process (a list is a set of a few
/// hundred strings: building it for every conversation cost a few percent of a backfill).
fn cached_stop_words(language: Option<&str>) -> Option<&'static StopWords> {
    static LISTS: std::sync::LazyLock<
        std::sync::Mutex<HashMap<String, Option<&'static StopWords>>>,
    > = std::sync::LazyLock::new(Default::default);
    let key = language.unwrap_or("eng");
    let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(list) = lists.get(key) {
        return *list;
    }
    // At most one leaked list per language whatlang names (a fixed, small set).
    let list = stop_words_for(language).map(|l| &*Box::leak(Box::new(l)));
    lists.insert(key.to_owned(), list);
    list
}

/// The key phrases of a conversation's customer `texts` (in order) in `language` (see
/// [`stop_words_for`]): at most [`MAX_KEY_PHRASES`], lower-cased, best first. Words that name
/// no subject are cut from each phrase's ends and a phrase with one inside is dropped (see
/// [`subject_of`]): numbers in any language; in English also dates, month and weekday names,
/// number words, generic verbs ("find", "get", "need") and the words of the sentiment lexicon.
pub fn key_phrases(texts: &[&str], language: Option<&str>) -> Vec<String> {
    let Some(stop_words) = cached_stop_words(language) else {
        return Vec::new();
    };
    let mut text = String::new();
    for t in texts {
        if text.len() + t.len() > MAX_TEXT_CHARS {
            break;
        }
        // One message, one sentence at least: YAKE's co-occurrence window stays inside it.
        text.push_str(t.trim());
        if !text.ends_with(['.', '!', '?']) {
            text.push('.');
        }
        text.push('\n');
    }
    if text.trim().is_empty() {
        return Vec::new();
    }
    let config = Config {
        ngrams: 3,
        ..Config::default()
    };
    let english = language.is_none_or(|l| l == "eng");
    let mut out: Vec<String> = Vec::new();
    // Ask for more than kept: phrases that say nothing of the subject are dropped below.
    for r in yake_rust::get_n_best(MAX_KEY_PHRASES * 3, &text, stop_words, &config) {
        let Some(p) = subject_of(&r.keyword, english, stop_words) else {
            continue;
        };
        if !out.contains(&p) {
            out.push(p);
        }
        if out.len() == MAX_KEY_PHRASES {
            break;
        }
    }
    out
}

/// Month and weekday names and their abbreviations, and words that only place a request in
/// time (English): a date says when, not what about.
const DATE_WORDS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thurs",
    "fri",
    "sat",
    "sun",
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "morning",
    "afternoon",
    "evening",
    "night",
    "week",
    "weekend",
    "month",
    "year",
    "day",
    "days",
    "date",
    "time",
    "am",
    "pm",
    "o'clock",
];

/// Number words (English), dropped as digits are.
const NUMBER_WORDS: &[&str] = &[
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "twenty", "thirty", "first", "second", "third", "fourth", "fifth", "sixth",
    "seventh", "eighth", "ninth", "tenth", "half", "quarter",
];

/// Verbs (and request words) any conversation may use whatever it is about (English): "find",
/// "get", "need" name no subject.
const GENERIC_VERBS: &[&str] = &[
    "find",
    "get",
    "need",
    "want",
    "like",
    "look",
    "looking",
    "search",
    "help",
    "make",
    "know",
    "tell",
    "give",
    "go",
    "going",
    "see",
    "check",
    "let",
    "please",
    "thanks",
    "thank",
    "would",
    "could",
    "can",
    "also",
    "something",
    "anything",
    "else",
    "okay",
    "ok",
    "sure",
    "yes",
    "no",
];

/// Whether `word` (lower case) says nothing of a conversation's subject: a number, a date word,
/// a generic verb, or (English) a word VADER's lexicon scores ("good", "great": sentiment is
/// figured on its own, it is not a topic).
fn is_noise(word: &str, english: bool) -> bool {
    let w = word.trim_matches(|c: char| !c.is_alphanumeric());
    if w.is_empty() || w.chars().any(|c| c.is_ascii_digit()) {
        return true;
    }
    if !english {
        return false;
    }
    DATE_WORDS.contains(&w)
        || NUMBER_WORDS.contains(&w)
        || GENERIC_VERBS.contains(&w)
        || crate::insights::lexicon_scores(w)
}

/// A YAKE phrase reduced to its subject: noise words ([`is_noise`]) and `stop` words cut from
/// either end; `None` when nothing is left, or a noise word stands inside it ("flight march
/// flight"; a stop word inside, "bank of america", stays).
fn subject_of(phrase: &str, english: bool, stop: &StopWords) -> Option<String> {
    let words: Vec<&str> = phrase.split_whitespace().collect();
    let noise: Vec<bool> = words.iter().map(|w| is_noise(w, english)).collect();
    let word = |i: usize| !noise[i] && !stop.contains(&words[i].to_lowercase());
    let first = (0..words.len()).find(|i| word(*i))?;
    let last = (0..words.len()).rev().find(|i| word(*i))?;
    if noise[first..=last].iter().any(|n| *n) {
        return None;
    }
    Some(words[first..=last].join(" "))
}

/// A topic of a workspace, as [`learn_topics`] found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// Its key phrase: the topic's identity (`topic=` filters on it).
    pub key: String,
    /// The phrases naming it, its key first, then the ones that most often come with it.
    pub phrases: Vec<String>,
    /// How many of the learning's conversations it got.
    pub conversations: usize,
}

/// Learns topics from each conversation's key phrases (see the module docs): at most
/// `max_topics`, in learning order (which is also largest first at the time each was taken).
pub fn learn_topics(docs: &[Vec<String>], max_topics: usize) -> Vec<Topic> {
    let mut with: HashMap<&str, Vec<usize>> = HashMap::new();
    for (d, phrases) in docs.iter().enumerate() {
        for (i, p) in phrases.iter().enumerate() {
            // A phrase repeated within one conversation counts once.
            if !phrases[..i].contains(p) {
                with.entry(p.as_str()).or_default().push(d);
            }
        }
    }
    let mut candidates: Vec<(&str, Vec<usize>)> = with
        .into_iter()
        .filter(|(_, ds)| ds.len() >= MIN_TOPIC_SIZE)
        .collect();
    candidates.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let mut taken = vec![false; docs.len()];
    let mut topics = Vec::new();
    for (key, ds) in candidates {
        if topics.len() >= max_topics {
            break;
        }
        let mine: Vec<usize> = ds.into_iter().filter(|d| !taken[*d]).collect();
        if mine.len() < MIN_TOPIC_SIZE {
            continue;
        }
        let mut along: HashMap<&str, usize> = HashMap::new();
        for d in &mine {
            taken[*d] = true;
            for p in &docs[*d] {
                if p != key {
                    *along.entry(p.as_str()).or_default() += 1;
                }
            }
        }
        let mut along: Vec<(&str, usize)> = along.into_iter().filter(|(_, n)| *n >= 2).collect();
        along.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut phrases = vec![key.to_owned()];
        phrases.extend(
            along
                .into_iter()
                .take(NAME_PHRASES - 1)
                .map(|(p, _)| p.to_owned()),
        );
        topics.push(Topic {
            key: key.to_owned(),
            phrases,
            conversations: mine.len(),
        });
    }
    topics
}

/// The topic of a conversation with these key phrases: the first of `topics` (in learning
/// order) whose key is one of them; `None` when none is.
pub fn topic_of<'t>(phrases: &[String], topics: &'t [Topic]) -> Option<&'t Topic> {
    topics.iter().find(|t| phrases.contains(&t.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn english_customer_text_gives_its_subject() {
        let k = key_phrases(
            &[
                "Hi, my order never arrived and I want a refund.",
                "The refund should go to my credit card please.",
            ],
            Some("eng"),
        );
        assert!(!k.is_empty() && k.len() <= MAX_KEY_PHRASES, "{k:?}");
        assert!(k.iter().any(|p| p.contains("refund")), "{k:?}");
        assert!(k.iter().all(|p| p == &p.to_lowercase()));
    }

    #[test]
    fn phrases_without_a_subject_are_dropped() {
        let k = key_phrases(
            &[
                "I need to find a good dentist in San Jose on March 3rd.",
                "Great, I want an appointment on Tuesday at 10 am. The dentist is fine.",
            ],
            Some("eng"),
        );
        assert!(k.iter().any(|p| p.contains("dentist")), "{k:?}");
        for noise in [
            "good", "great", "find", "need", "want", "march", "tuesday", "3rd", "10", "fine",
        ] {
            assert!(
                k.iter().all(|p| !p.split(' ').any(|w| w == noise)),
                "{noise} in {k:?}"
            );
        }
        let en = stop_words_for(None).unwrap();
        let subject = |p: &str| subject_of(p, true, &en);
        assert_eq!(subject("find dentist").as_deref(), Some("dentist"));
        assert_eq!(subject("great"), None);
        assert_eq!(subject("march"), None);
        assert_eq!(subject("good hotel").as_deref(), Some("hotel"));
        assert_eq!(subject("jose on march").as_deref(), Some("jose"));
        assert_eq!(subject("flight march flight"), None);
        assert_eq!(
            subject("bank of america").as_deref(),
            Some("bank of america")
        );
        let es = stop_words_for(Some("spa")).unwrap();
        assert_eq!(subject_of("hotel 12", false, &es).as_deref(), Some("hotel"));
    }

    #[test]
    fn unsupported_languages_and_empty_text_give_nothing() {
        assert!(key_phrases(&["这是一个测试句子，我们需要退款"], Some("cmn")).is_empty());
        assert!(key_phrases(&["   "], Some("eng")).is_empty());
        assert!(key_phrases(&[], None).is_empty());
        assert!(
            !key_phrases(
                &["Quiero cambiar la reserva del hotel en Madrid"],
                Some("spa")
            )
            .is_empty()
        );
    }

    #[test]
    fn topics_are_learned_greedily_and_assigned_alike() {
        let docs = vec![
            doc(&["refund", "credit card"]),
            doc(&["refund", "late delivery"]),
            doc(&["refund", "credit card"]),
            doc(&["late delivery", "refund"]),
            doc(&["late delivery"]),
            doc(&["late delivery", "tracking number"]),
            doc(&["late delivery"]),
            doc(&["password reset"]),
            doc(&["password reset"]),
        ];
        let topics = learn_topics(&docs, MAX_TOPICS);
        let keys: Vec<&str> = topics.iter().map(|t| t.key.as_str()).collect();
        // "refund" and "late delivery" are in 4 and 5 conversations: "late delivery" first; of
        // "refund"'s four, two are taken by then, so it no longer makes a topic of 3.
        assert_eq!(keys, ["late delivery"]);
        assert_eq!(topics[0].conversations, 5);
        assert_eq!(topics[0].phrases, ["late delivery", "refund"]);
        for d in &docs {
            let expected = d.contains(&"late delivery".to_owned());
            assert_eq!(topic_of(d, &topics).is_some(), expected, "{d:?}");
        }
        assert_eq!(learn_topics(&docs, 0), Vec::new());
    }
}
