//! The benchmark's workload: deterministic (a fixed seed), shaped like the Schema-Guided
//! Dialogue data. Conversation lengths are drawn from the SGD dialogues' turn counts and message
//! texts from their utterances (user turns for customers, system turns for the assistant), so
//! message sizes and vocabulary follow real conversations. On top of that: six assistants,
//! channels and statuses in realistic proportions, ratings on 40 % of conversations, two to four
//! variables from SGD slot values, priced model usage on assistant messages, and planted terms
//! for search: one rare word (about one message in 200,000) and one medium word (one in 100).

use parley_core::model::{AssistantRef, ConversationInput, MessageInput, Rating, Variable};
use parley_core::pricing::Usage;
use parley_core::{Channel, ConversationStatus, Role, Timestamp, VariableSource};
use serde::Deserialize;

/// The planted rare term.
pub const RARE_TERM: &str = "quokkaberry";
/// The planted medium-frequency term.
pub const MEDIUM_TERM: &str = "fernwood";
/// A common term (most messages of SGD contain it).
pub const COMMON_TERM: &str = "the";

/// The assistants of the workload: (name, company).
pub const ASSISTANTS: [(&str, &str); 6] = [
    ("Ava", "Acme Bikes"),
    ("Sol", "Sunny Travel"),
    ("Max", "Northwind Bank"),
    ("Mia", "Harbor Hotels"),
    ("Leo", "City Dental"),
    ("Zoe", "Metro Events"),
];

/// The workload's first conversation starts here; they spread over 180 days after it.
const EPOCH_MS: i64 = 1_777_593_600_000; // 2026-05-01T00:00:00Z

#[derive(Deserialize)]
struct Dialogue {
    turns: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    speaker: String,
    utterance: String,
    #[serde(default)]
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    #[serde(default)]
    state: Option<State>,
}

#[derive(Deserialize)]
struct State {
    #[serde(default)]
    slot_values: std::collections::BTreeMap<String, Vec<String>>,
}

/// What the generator samples from.
pub struct Corpus {
    lengths: Vec<usize>,
    user: Vec<String>,
    system: Vec<String>,
    slots: Vec<(String, String)>,
}

impl Corpus {
    /// Reads every `dialogues_*.json` in `dir`. Errors: unreadable or not SGD.
    pub fn load(dir: &std::path::Path) -> Result<Corpus, String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dialogues_"))
            })
            .collect();
        files.sort();
        let mut c = Corpus {
            lengths: Vec::new(),
            user: Vec::new(),
            system: Vec::new(),
            slots: Vec::new(),
        };
        for f in &files {
            let text = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let dialogues: Vec<Dialogue> =
                serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", f.display()))?;
            for d in dialogues {
                c.lengths.push(d.turns.len());
                for t in d.turns {
                    for fr in &t.frames {
                        if let Some(s) = &fr.state {
                            for (k, v) in &s.slot_values {
                                if let Some(v) = v.first()
                                    && c.slots.len() < 50_000
                                {
                                    c.slots.push((k.clone(), v.clone()));
                                }
                            }
                        }
                    }
                    if t.speaker == "USER" {
                        c.user.push(t.utterance)
                    } else {
                        c.system.push(t.utterance)
                    }
                }
            }
        }
        if c.lengths.is_empty() {
            return Err(format!("no SGD dialogues in {}", dir.display()));
        }
        Ok(c)
    }

    /// Mean turns per dialogue.
    pub fn mean_length(&self) -> f64 {
        self.lengths.iter().sum::<usize>() as f64 / self.lengths.len() as f64
    }
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

/// Conversation `i` of a workload of `total` conversations: always the same for the same
/// `(i, total)`. Its `external_id` is `bench-{i}`.
pub fn conversation(corpus: &Corpus, i: u64, total: u64) -> ConversationInput {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0000 ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let span = 180 * 86_400_000i64;
    let start =
        EPOCH_MS + (i as i128 * span as i128 / total.max(1) as i128) as i64 + rng.i64(0..600_000);
    let turns = *pick(&mut rng, &corpus.lengths);
    let (name, company) = ASSISTANTS[rng.usize(..ASSISTANTS.len())];
    let channel = match rng.u32(0..100) {
        0..=34 => Channel::Widget,
        35..=59 => Channel::Whatsapp,
        60..=69 => Channel::Web,
        70..=79 => Channel::Telegram,
        80..=84 => Channel::Test,
        85..=94 => Channel::Api,
        95..=97 => Channel::Messenger,
        98 => Channel::Voip,
        _ => Channel::Crm,
    };
    let status = match rng.u32(0..10) {
        0 => ConversationStatus::Active,
        9 => ConversationStatus::Archived,
        _ => ConversationStatus::Closed,
    };
    let mut at = start;
    let mut messages = Vec::with_capacity(turns);
    for t in 0..turns {
        let role = if t % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        let mut content = if role == Role::User {
            pick(&mut rng, &corpus.user).clone()
        } else {
            pick(&mut rng, &corpus.system).clone()
        };
        if rng.u32(0..200_000) == 0 {
            content.push_str(&format!(" ({RARE_TERM})"));
        }
        if rng.u32(0..100) == 0 {
            content.push_str(&format!(" See {MEDIUM_TERM}."));
        }
        at += if role == Role::User {
            15_000 + 250 * content.len() as i64
        } else {
            2_000 + 20 * content.len() as i64
        };
        let (model, usage) = if role == Role::Assistant && rng.u32(0..10) < 6 {
            let completion = (content.len() / 4).max(1) as i64;
            (
                Some("gpt-4o-mini".to_owned()),
                Some(Usage {
                    prompt_tokens: 200 + 40 * t as i64,
                    completion_tokens: completion,
                }),
            )
        } else {
            (None, None)
        };
        messages.push(MessageInput {
            id: None,
            external_id: Some(format!("m{t}")),
            role,
            content,
            created_at: Some(Timestamp(at)),
            model,
            usage,
            cost_nanousd: None,
            meta: Default::default(),
        });
    }
    let rating = (rng.u32(0..10) < 4).then(|| Rating {
        score: [1, 2, 3, 4, 4, 5, 5, 5][rng.usize(..8)],
        comment: None,
        rated_at: Some(Timestamp(at + 60_000)),
    });
    let mut variables = Vec::new();
    for _ in 0..rng.usize(2..=4) {
        let (k, v) = pick(&mut rng, &corpus.slots);
        if !variables.iter().any(|x: &Variable| &x.key == k) {
            variables.push(Variable {
                key: k.clone(),
                value: v.clone(),
                source: VariableSource::Extracted,
            });
        }
    }
    ConversationInput {
        id: None,
        external_id: Some(format!("bench-{i}")),
        assistant: AssistantRef {
            id: None,
            name: Some(name.to_owned()),
            company: Some(company.to_owned()),
        },
        channel,
        status: Some(status),
        contact: Some(format!("+49 170 {:07}", rng.u32(0..10_000_000))),
        session_id: Some(format!("sess-{i:08x}")),
        started_at: Some(Timestamp(start)),
        ended_at: (status != ConversationStatus::Active).then_some(Timestamp(at)),
        end_reason: None,
        rating,
        sentiment: None,
        converted: Some(rng.bool()),
        variables,
        memory: None,
        messages,
        assistant_version: None,
    }
}
