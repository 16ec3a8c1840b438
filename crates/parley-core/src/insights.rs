//! Per-conversation insights (issue 13), pure: customer sentiment and its shift, the resolution
//! outcome, first response time and duration, computed from a conversation's record and its
//! messages. No I/O; the server stores the result and keeps it current off the request path.
//!
//! Sentiment uses VADER (Hutto & Gilbert, 2014) through the `vader-sentimental` crate, whose
//! lexicon is English: customer text that `whatlang` confidently reads as another language, or
//! that is not written in the Latin script, is marked not analysed rather than guessed.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use vader_sentimental::SentimentIntensityAnalyzer;

use crate::Timestamp;
use crate::model::{ConversationSummary, Message, Sentiment};
use crate::vocab::{ConversationStatus, Resolution, Role, SentimentLabel, SentimentShift};

/// VADER's customary threshold: a compound score at or above it is positive, at or below its
/// negation negative, neutral in between.
pub const LABEL_THRESHOLD: f64 = 0.05;

/// The change in compound score between the first and the last customer message that counts as
/// an improvement (or, negated, a worsening).
pub const SHIFT_THRESHOLD: f64 = 0.3;

/// The `whatlang` confidence (0 to 1) from which Latin-script text detected as a language other
/// than English is left unanalysed.
pub const MIN_OTHER_LANGUAGE_CONFIDENCE: f64 = 0.5;

/// How long after the assistant's last answer a customer may come back before the conversation
/// counts as resolved by the AI: 24 hours, in ms.
pub const COME_BACK_MS: i64 = 24 * 60 * 60 * 1000;

/// The `end_reason` values that mean the assistant handed the conversation off to the team.
pub const HANDOFF_END_REASONS: &[&str] = &["handoff", "hand_off", "handed_off"];

static ANALYZER: LazyLock<SentimentIntensityAnalyzer<'static>> =
    LazyLock::new(SentimentIntensityAnalyzer::new);

/// Where a conversation's sentiment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentimentSource {
    /// Sent by the client (API, import): it wins over a computed one.
    Client,
    /// Computed by Parley's lexicon analyser.
    Lexicon,
}

impl SentimentSource {
    /// The storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentSource::Client => "client",
            SentimentSource::Lexicon => "lexicon",
        }
    }

    /// Parses [`Self::as_str`]'s output; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(SentimentSource::Client),
            "lexicon" => Some(SentimentSource::Lexicon),
            _ => None,
        }
    }
}

/// What the analysis found for one conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationInsight {
    /// The customer side's sentiment, `None` when not analysed (no customer text, or a language
    /// the analyser cannot read) and the client sent none.
    pub sentiment: Option<Sentiment>,
    /// Where `sentiment` came from; `None` with it.
    pub sentiment_source: Option<SentimentSource>,
    /// First vs last customer message; `None` with fewer than two analysed customer messages.
    pub sentiment_shift: Option<SentimentShift>,
    /// The customer text's language as an ISO 639-3 code (`eng`, `spa`...), when `whatlang`
    /// detected one.
    pub language: Option<String>,
    /// The outcome.
    pub resolution: Resolution,
    /// From the first customer message to the next assistant or agent message, in ms; `None`
    /// when no customer message got an answer.
    pub first_response_ms: Option<i64>,
    /// The conversation's duration in ms (see [`ConversationSummary::duration_ms`]).
    pub duration_ms: Option<i64>,
    /// The customer text's key phrases, best first (see [`crate::topics::key_phrases`]);
    /// empty when there is no customer text or its language has no stop word list.
    #[serde(default)]
    pub key_phrases: Vec<String>,
    /// The key of the workspace topic the conversation belongs to (see
    /// [`crate::topics::topic_of`]); `None` until topics are learned, or when it is in none.
    /// [`analyse`] leaves it `None`: topics are the workspace's, the server assigns them.
    #[serde(default)]
    pub topic: Option<String>,
}

/// VADER's compound score of one text, in [-1, 1].
pub fn compound(text: &str) -> f64 {
    ANALYZER.polarity_scores(text).compound.clamp(-1.0, 1.0)
}

/// Whether VADER's lexicon (the one [`compound`] scores with) gives `word` alone a sentiment:
/// "good", "great", "problem" do, "hotel" does not.
pub fn lexicon_scores(word: &str) -> bool {
    ANALYZER.polarity_scores(word).compound != 0.0
}

/// The label of a compound score (see [`LABEL_THRESHOLD`]).
pub fn label(score: f64) -> SentimentLabel {
    if score >= LABEL_THRESHOLD {
        SentimentLabel::Positive
    } else if score <= -LABEL_THRESHOLD {
        SentimentLabel::Negative
    } else {
        SentimentLabel::Neutral
    }
}

/// The language of `text` as an ISO 639-3 code, and whether the lexicon can read it: English,
/// or Latin-script text whose detected other language has a confidence below
/// [`MIN_OTHER_LANGUAGE_CONFIDENCE`] (short English replies such as "ok thanks" are often
/// misdetected with a low confidence). Non-Latin scripts are never readable.
pub fn readable(text: &str) -> (Option<String>, bool) {
    match whatlang::detect(text) {
        None => (None, true),
        Some(info) => {
            let code = info.lang().code().to_owned();
            let ok = info.lang() == whatlang::Lang::Eng
                || (info.script() == whatlang::Script::Latin
                    && info.confidence() < MIN_OTHER_LANGUAGE_CONFIDENCE);
            (Some(code), ok)
        }
    }
}

/// Analyses one conversation. `messages` in any order (they are sorted by time, then id);
/// `now` decides whether a customer could still come back (24 hours, [`COME_BACK_MS`]).
pub fn analyse(
    conv: &ConversationSummary,
    messages: &[Message],
    now: Timestamp,
) -> ConversationInsight {
    let mut msgs: Vec<&Message> = messages.iter().filter(|m| m.role.is_visible()).collect();
    msgs.sort_by_key(|m| (m.created_at, m.id));
    let customer: Vec<&str> = msgs
        .iter()
        .filter(|m| m.role == Role::User && !m.content.trim().is_empty())
        .map(|m| m.content.as_str())
        .collect();

    let (language, can_read) = if customer.is_empty() {
        (None, false)
    } else {
        readable(&customer.join("\n"))
    };
    let scores: Vec<f64> = if can_read {
        customer.iter().map(|t| compound(t)).collect()
    } else {
        Vec::new()
    };
    let computed = (!scores.is_empty()).then(|| {
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        Sentiment {
            label: label(mean),
            score: Some((mean * 1000.0).round() / 1000.0),
        }
    });
    let sentiment_shift = match scores.as_slice() {
        [first, .., last] => Some(shift(*first, *last)),
        _ => None,
    };
    let (sentiment, sentiment_source) = match (&conv.sentiment, computed) {
        (Some(client), _) => (Some(client.clone()), Some(SentimentSource::Client)),
        (None, Some(c)) => (Some(c), Some(SentimentSource::Lexicon)),
        (None, None) => (None, None),
    };
    let last_customer_positive = can_read
        && scores
            .last()
            .is_some_and(|s| label(*s) == SentimentLabel::Positive);
    let negative = sentiment
        .as_ref()
        .is_some_and(|s| s.label == SentimentLabel::Negative);

    ConversationInsight {
        resolution: resolution(conv, &msgs, now, negative, last_customer_positive),
        first_response_ms: first_response_ms(&msgs),
        duration_ms: conv.duration_ms,
        // What the lexicon reads as English (see [`readable`]) is English to YAKE too.
        key_phrases: crate::topics::key_phrases(
            &customer,
            if can_read { None } else { language.as_deref() },
        ),
        topic: None,
        sentiment,
        sentiment_source,
        sentiment_shift,
        language,
    }
}

/// The shift from a first to a last compound score (see [`SHIFT_THRESHOLD`]).
pub fn shift(first: f64, last: f64) -> SentimentShift {
    let d = last - first;
    if d >= SHIFT_THRESHOLD {
        SentimentShift::Improved
    } else if d <= -SHIFT_THRESHOLD {
        SentimentShift::Worsened
    } else {
        SentimentShift::Steady
    }
}

/// The resolution rules, in order (the README's "Insights" section says the same):
/// 1. `handed_off`: an agent message exists, or `end_reason` is a hand-off
///    ([`HANDOFF_END_REASONS`]);
/// 2. the customer's last message has no assistant answer after it: `unresolved` when the
///    conversation is no longer active or 24 hours have passed since that message, else
///    `ongoing`; a conversation with no customer message and no answer is `ongoing`;
/// 3. `unresolved` when its sentiment is negative;
/// 4. `resolved_by_ai` when the assistant answered and the customer's last message is positive
///    ("thanks, that helped"), or the conversation is no longer active, or 24 hours have passed
///    since the assistant's last answer;
/// 5. otherwise `ongoing`.
fn resolution(
    conv: &ConversationSummary,
    msgs: &[&Message],
    now: Timestamp,
    negative: bool,
    last_customer_positive: bool,
) -> Resolution {
    let handed = msgs.iter().any(|m| m.role == Role::Agent)
        || conv
            .end_reason
            .as_deref()
            .is_some_and(|r| HANDOFF_END_REASONS.contains(&r.trim().to_ascii_lowercase().as_str()));
    if handed {
        return Resolution::HandedOff;
    }
    let open = conv.status == ConversationStatus::Active;
    let last_user = msgs.iter().rposition(|m| m.role == Role::User);
    let last_answer = msgs.iter().rposition(|m| m.role == Role::Assistant);
    let unanswered = match (last_user, last_answer) {
        (Some(u), Some(a)) => u > a,
        (Some(_), None) => true,
        (None, None) => return Resolution::Ongoing,
        (None, Some(_)) => false,
    };
    if unanswered {
        let since = now.0 - msgs[last_user.unwrap_or_default()].created_at.0;
        return if !open || since >= COME_BACK_MS {
            Resolution::Unresolved
        } else {
            Resolution::Ongoing
        };
    }
    if negative {
        return Resolution::Unresolved;
    }
    let answered_at = msgs[last_answer.unwrap_or_default()].created_at.0;
    if last_customer_positive || !open || now.0 - answered_at >= COME_BACK_MS {
        Resolution::ResolvedByAi
    } else {
        Resolution::Ongoing
    }
}

/// From the first customer message to the first assistant or agent message after it, in ms.
fn first_response_ms(msgs: &[&Message]) -> Option<i64> {
    let first = msgs.iter().position(|m| m.role == Role::User)?;
    let at = msgs[first].created_at.0;
    msgs[first + 1..]
        .iter()
        .find(|m| matches!(m.role, Role::Assistant | Role::Agent))
        .map(|m| (m.created_at.0 - at).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AssistantSummary, MessageMeta, UsageTotals};
    use crate::vocab::Channel;
    use crate::{AssistantId, ConversationId, MessageId};

    const H: i64 = 60 * 60 * 1000;

    fn conv(status: ConversationStatus) -> ConversationSummary {
        ConversationSummary {
            id: ConversationId::new(),
            external_id: None,
            assistant: AssistantSummary {
                id: AssistantId::new(),
                name: "A".into(),
                company: String::new(),
            },
            channel: Channel::Api,
            status,
            contact: None,
            session_id: None,
            started_at: Timestamp(0),
            ended_at: None,
            last_message_at: Timestamp(0),
            last_message_preview: None,
            message_count: 0,
            usage: UsageTotals::default(),
            cost_nanousd: 0,
            rating: None,
            sentiment: None,
            end_reason: None,
            converted: None,
            duration_ms: None,
            taken_over_at: None,
            handoff: None,
            assignee_id: None,
        }
    }

    fn msg(role: Role, text: &str, at: i64) -> Message {
        Message {
            id: MessageId::new(),
            external_id: None,
            role,
            content: text.into(),
            created_at: Timestamp(at),
            model: None,
            usage: None,
            cost_nanousd: None,
            cost_source: None,
            meta: MessageMeta::default(),
        }
    }

    #[test]
    fn unmistakable_texts_get_the_right_label() {
        let c = conv(ConversationStatus::Closed);
        for (text, want) in [
            (
                "Thank you so much, this is wonderful and really helpful!",
                SentimentLabel::Positive,
            ),
            (
                "This is terrible. I hate this awful service, worst ever.",
                SentimentLabel::Negative,
            ),
            (
                "The parcel left the warehouse in Berlin on Tuesday.",
                SentimentLabel::Neutral,
            ),
        ] {
            let i = analyse(&c, &[msg(Role::User, text, 0)], Timestamp(0));
            let s = i.sentiment.expect(text);
            assert_eq!(s.label, want, "{text}");
            let score = s.score.expect("score");
            assert!((-1.0..=1.0).contains(&score));
            assert_eq!(i.sentiment_source, Some(SentimentSource::Lexicon));
            assert_eq!(i.language.as_deref(), Some("eng"), "{text}");
        }
    }

    #[test]
    fn text_the_lexicon_cannot_read_is_not_analysed() {
        let c = conv(ConversationStatus::Closed);
        for text in [
            "Hola, mi pedido llegó roto y necesito que me devuelvan el dinero hoy",
            "Hola, necesito ayuda con mi pedido porque llegó roto y estoy muy enfadado con la tienda",
            "Здравствуйте, мой заказ пришёл сломанным, я очень недоволен вашим магазином",
            "注文した商品が壊れて届きました。とても残念です。",
        ] {
            let i = analyse(&c, &[msg(Role::User, text, 0)], Timestamp(0));
            assert_eq!(i.sentiment, None, "{text}");
            assert_eq!(i.sentiment_source, None);
            assert_eq!(i.sentiment_shift, None);
            assert!(i.language.is_some_and(|l| l != "eng"), "{text}");
        }
    }

    #[test]
    fn a_client_sentiment_wins() {
        let mut c = conv(ConversationStatus::Closed);
        c.sentiment = Some(Sentiment {
            label: SentimentLabel::Negative,
            score: Some(-0.4),
        });
        let i = analyse(
            &c,
            &[msg(Role::User, "I love it, great, thanks!", 0)],
            Timestamp(0),
        );
        assert_eq!(i.sentiment, c.sentiment);
        assert_eq!(i.sentiment_source, Some(SentimentSource::Client));
    }

    #[test]
    fn shift_compares_first_and_last_customer_messages() {
        let c = conv(ConversationStatus::Closed);
        let worse = [
            msg(Role::User, "Hi, great to meet you, I love your shop!", 0),
            msg(Role::Assistant, "Hello", 1),
            msg(Role::User, "This is awful and terrible, I hate it.", 2),
        ];
        assert_eq!(
            analyse(&c, &worse, Timestamp(3)).sentiment_shift,
            Some(SentimentShift::Worsened)
        );
        let better = [
            msg(
                Role::User,
                "This is awful, my parcel is broken, terrible.",
                0,
            ),
            msg(Role::Assistant, "Sorry, a new one is on its way", 1),
            msg(Role::User, "Wonderful, thank you so much, great help!", 2),
        ];
        assert_eq!(
            analyse(&c, &better, Timestamp(3)).sentiment_shift,
            Some(SentimentShift::Improved)
        );
        let steady = [
            msg(Role::User, "Where is my order?", 0),
            msg(Role::User, "It has number 5.", 2),
        ];
        assert_eq!(
            analyse(&c, &steady, Timestamp(3)).sentiment_shift,
            Some(SentimentShift::Steady)
        );
        let one = [msg(Role::User, "Where is my order?", 0)];
        assert_eq!(analyse(&c, &one, Timestamp(3)).sentiment_shift, None);
    }

    #[test]
    fn each_resolution_outcome() {
        let q = |at| msg(Role::User, "Where is my order?", at);
        let a = |at| msg(Role::Assistant, "It ships tomorrow.", at);
        let active = conv(ConversationStatus::Active);
        let closed = conv(ConversationStatus::Closed);
        let r =
            |c: &ConversationSummary, m: &[Message], now| analyse(c, m, Timestamp(now)).resolution;

        // An agent wrote, or the assistant handed off.
        let agent = [q(0), a(1), msg(Role::Agent, "I'll take it from here.", 2)];
        assert_eq!(r(&closed, &agent, 3), Resolution::HandedOff);
        let mut handoff = conv(ConversationStatus::Closed);
        handoff.end_reason = Some("handoff".into());
        assert_eq!(r(&handoff, &[q(0), a(1)], 2), Resolution::HandedOff);

        // Answered, customer did not come back in 24 h / closed / said it helped.
        assert_eq!(
            r(&active, &[q(0), a(1)], 1 + COME_BACK_MS),
            Resolution::ResolvedByAi
        );
        assert_eq!(
            r(&active, &[q(0), a(1)], 1 + COME_BACK_MS - 1),
            Resolution::Ongoing
        );
        assert_eq!(r(&closed, &[q(0), a(1)], 2), Resolution::ResolvedByAi);
        let thanks = [
            q(0),
            a(1),
            msg(Role::User, "Great, thanks, that helped!", 2),
            a(3),
        ];
        assert_eq!(r(&active, &thanks, 4), Resolution::ResolvedByAi);

        // The last customer message got no answer.
        assert_eq!(r(&closed, &[q(0), a(1), q(2)], 3), Resolution::Unresolved);
        assert_eq!(r(&active, &[q(0)], 25 * H), Resolution::Unresolved);
        assert_eq!(r(&active, &[q(0)], H), Resolution::Ongoing);

        // Ended negative without a hand-off.
        let angry = [
            msg(Role::User, "This is useless and terrible, I hate it.", 0),
            a(1),
        ];
        assert_eq!(r(&closed, &angry, 2), Resolution::Unresolved);

        // Nothing yet.
        assert_eq!(r(&active, &[], 0), Resolution::Ongoing);
    }

    #[test]
    fn first_response_and_duration() {
        let mut c = conv(ConversationStatus::Closed);
        c.duration_ms = Some(9_000);
        let m = [
            msg(Role::Assistant, "Hi, how can I help?", 0),
            msg(Role::User, "Where is my order?", 1_000),
            msg(Role::System, "tool call", 1_500),
            msg(Role::Agent, "Checking", 4_000),
        ];
        let i = analyse(&c, &m, Timestamp(10_000));
        assert_eq!(i.first_response_ms, Some(3_000));
        assert_eq!(i.duration_ms, Some(9_000));
        assert_eq!(analyse(&c, &m[..2], Timestamp(0)).first_response_ms, None);
    }
}
