//! Schema-Guided Dialogue (SGD, Google Research, CC BY-SA 4.0) files as published: each
//! `dialogues_NNN.json` is a JSON array of dialogues; `schema.json` describes the services.
//!
//! Mapping (one dialogue -> one conversation):
//! - `dialogue_id` -> `external_id` and `session_id`; status `closed`; channel `api` (the
//!   importer's, unless `--channel` says otherwise);
//! - the first of `services` names the assistant: `Restaurants_1` -> "Restaurants Assistant",
//!   company "Schema-Guided Dialogue" (`--assistant` / `--company` override);
//! - turns -> messages in order: speaker `USER` -> `user`, `SYSTEM` -> `assistant`;
//! - the user turns' cumulative `frames[].state.slot_values` -> `extracted` variables (the last
//!   state of each service; first surface form of each value; a slot name that two services
//!   fill with different values is kept once per service as `slot (Service_1)`);
//! - memory: `{"services": [...], "intents": [...]}` (every `state.active_intent`, in order);
//! - `converted`: whether the assistant ran a service call for a transactional intent (per
//!   `schema.json`, when it is available beside the dialogue files).
//!
//! SGD has no timestamps, so they are synthesised, deterministically:
//! - a dialogue `F_NNNNN` starts at 2026-06-01T00:00:00Z + (F - 1) days + NNNNN x 11 minutes
//!   (ids of another shape: an FNV-1a hash of the id, modulo 120 days, in minutes);
//! - the first turn is at the start; each later user turn comes 15 s + 250 ms per character
//!   after the previous turn (reading and typing), each assistant turn 2 s + 20 ms per
//!   character after it (generation);
//! - the conversation ends at its last turn.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use parley_core::model::{AssistantRef, ConversationInput, MessageInput, Variable};
use parley_core::{Channel, ConversationStatus, Role, Timestamp, VariableSource};
use serde::Deserialize;

use super::ImportError;

/// Options of the SGD importer.
#[derive(Debug, Clone)]
pub struct SgdOptions {
    /// Channel of the imported conversations (default `api`).
    pub channel: Channel,
    /// Assistant name for every dialogue instead of the one derived from its first service.
    pub assistant: Option<String>,
    /// Company of the assistant (default "Schema-Guided Dialogue").
    pub company: Option<String>,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions {
            channel: Channel::Api,
            assistant: None,
            company: None,
        }
    }
}

#[derive(Deserialize)]
struct Dialogue {
    dialogue_id: String,
    services: Vec<String>,
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
    service: String,
    #[serde(default)]
    state: Option<DialogueState>,
    #[serde(default)]
    service_call: Option<ServiceCall>,
}

#[derive(Deserialize)]
struct DialogueState {
    active_intent: String,
    #[serde(default)]
    slot_values: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct ServiceCall {
    method: String,
}

#[derive(Deserialize)]
struct Service {
    service_name: String,
    intents: Vec<Intent>,
}

#[derive(Deserialize)]
struct Intent {
    name: String,
    is_transactional: bool,
}

/// The transactional intents of the schema, as `(service, intent)`.
pub struct Schema {
    transactional: HashSet<(String, String)>,
}

/// Reads `schema.json` from the given files, or from beside the first dialogue file.
/// Returns `None` when there is none.
pub fn load_schema(files: &[PathBuf]) -> Result<Option<Schema>, ImportError> {
    let path = files
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "schema.json"))
        .cloned()
        .or_else(|| {
            files
                .first()
                .and_then(|f| f.parent())
                .map(|d| d.join("schema.json"))
                .filter(|p| p.exists())
        });
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read(&path).map_err(|e| ImportError(format!("{}: {e}", path.display())))?;
    let services: Vec<Service> = serde_json::from_slice(&text)
        .map_err(|e| ImportError(format!("{}: not an SGD schema: {e}", path.display())))?;
    let transactional = services
        .into_iter()
        .flat_map(|s| {
            let name = s.service_name;
            s.intents
                .into_iter()
                .filter(|i| i.is_transactional)
                .map(move |i| (name.clone(), i.name))
        })
        .collect();
    Ok(Some(Schema { transactional }))
}

const START_MS: i64 = 1_780_272_000_000; // 2026-06-01T00:00:00Z
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// The synthesised start time of a dialogue (see the module docs).
pub fn dialogue_start(dialogue_id: &str) -> Timestamp {
    let parsed = dialogue_id
        .split_once('_')
        .and_then(|(f, n)| Some((f.parse::<i64>().ok()?, n.parse::<i64>().ok()?)));
    match parsed {
        Some((f, n)) if f >= 1 => Timestamp(START_MS + (f - 1) * DAY_MS + n * 11 * MINUTE_MS),
        _ => {
            let hash = dialogue_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
            });
            Timestamp(START_MS + (hash % (120 * 24 * 60)) as i64 * MINUTE_MS)
        }
    }
}

fn assistant_name(service: &str) -> String {
    let domain = service.rsplit_once('_').map_or(service, |(d, _)| d);
    format!("{domain} Assistant")
}

fn convert(
    d: Dialogue,
    schema: Option<&Schema>,
    o: &SgdOptions,
) -> Result<ConversationInput, String> {
    let start = dialogue_start(&d.dialogue_id);
    let mut at = start;
    let mut messages = Vec::with_capacity(d.turns.len());
    // Last dialogue state per service, and intents in order of appearance.
    let mut last_state: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut intents: Vec<String> = Vec::new();
    let mut converted = false;
    for (i, turn) in d.turns.iter().enumerate() {
        let chars = turn.utterance.chars().count() as i64;
        let role = match turn.speaker.as_str() {
            "USER" => Role::User,
            "SYSTEM" => Role::Assistant,
            other => {
                return Err(format!(
                    "dialogue {}: turn {i}: unknown speaker {other:?}",
                    d.dialogue_id
                ));
            }
        };
        if i > 0 {
            at = at.add_millis(match role {
                Role::User => 15_000 + 250 * chars,
                _ => 2_000 + 20 * chars,
            });
        }
        for f in &turn.frames {
            if let Some(state) = &f.state {
                if state.active_intent != "NONE" && !intents.contains(&state.active_intent) {
                    intents.push(state.active_intent.clone());
                }
                last_state.insert(f.service.clone(), state.slot_values.clone());
            }
            if let (Some(call), Some(schema)) = (&f.service_call, schema) {
                converted |= schema
                    .transactional
                    .contains(&(f.service.clone(), call.method.clone()));
            }
        }
        messages.push(MessageInput {
            id: None,
            external_id: None,
            role,
            content: turn.utterance.clone(),
            created_at: Some(at),
            model: None,
            usage: None,
            cost_nanousd: None,
            meta: Default::default(),
        });
    }
    let mut values: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (service, slots) in &last_state {
        for (slot, surface) in slots {
            if let Some(v) = surface.first() {
                values
                    .entry(slot.clone())
                    .or_default()
                    .push((service.clone(), v.clone()));
            }
        }
    }
    let mut variables = Vec::new();
    for (slot, by_service) in values {
        let distinct: HashSet<&str> = by_service.iter().map(|(_, v)| v.as_str()).collect();
        if distinct.len() == 1 {
            variables.push(Variable {
                key: slot,
                value: by_service[0].1.clone(),
                source: VariableSource::Extracted,
            });
        } else {
            for (service, v) in by_service {
                variables.push(Variable {
                    key: format!("{slot} ({service})"),
                    value: v,
                    source: VariableSource::Extracted,
                });
            }
        }
    }
    let mut memory = serde_json::Map::new();
    memory.insert("services".into(), serde_json::json!(d.services));
    memory.insert("intents".into(), serde_json::json!(intents));
    let first_service = d.services.first().map(String::as_str).unwrap_or("Dialogue");
    Ok(ConversationInput {
        id: None,
        external_id: Some(d.dialogue_id.clone()),
        assistant: AssistantRef {
            id: None,
            name: Some(
                o.assistant
                    .clone()
                    .unwrap_or_else(|| assistant_name(first_service)),
            ),
            company: Some(
                o.company
                    .clone()
                    .unwrap_or_else(|| "Schema-Guided Dialogue".into()),
            ),
        },
        channel: o.channel,
        status: Some(ConversationStatus::Closed),
        contact: None,
        session_id: Some(d.dialogue_id),
        started_at: Some(start),
        ended_at: Some(at),
        end_reason: None,
        rating: None,
        sentiment: None,
        converted: schema.map(|_| converted),
        variables,
        memory: Some(memory),
        messages,
        assistant_version: None,
    })
}

/// Converts one SGD dialogues file (a JSON array) into conversations.
/// Errors: the text is not an SGD dialogues array, or a turn has an unknown speaker.
pub fn convert_file(
    text: &[u8],
    schema: Option<&Schema>,
    o: &SgdOptions,
) -> Result<Vec<ConversationInput>, String> {
    let dialogues: Vec<Dialogue> =
        serde_json::from_slice(text).map_err(|e| format!("not an SGD dialogues file: {e}"))?;
    dialogues
        .into_iter()
        .map(|d| convert(d, schema, o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_follow_the_documented_formula() {
        assert_eq!(
            dialogue_start("1_00000").to_rfc3339(),
            "2026-06-01T00:00:00.000Z"
        );
        assert_eq!(
            dialogue_start("32_00011").to_rfc3339(),
            "2026-07-02T02:01:00.000Z"
        );
        assert_eq!(dialogue_start("odd-id"), dialogue_start("odd-id"));
    }

    #[test]
    fn converts_turns_slots_and_intents() {
        let text = br#"[{"dialogue_id": "32_00011", "services": ["Banks_1"], "turns": [
          {"speaker": "USER", "utterance": "What's my balance?", "frames": [{"service": "Banks_1", "slots": [], "actions": [],
             "state": {"active_intent": "CheckBalance", "requested_slots": [], "slot_values": {}}}]},
          {"speaker": "SYSTEM", "utterance": "In checking or savings?", "frames": [{"service": "Banks_1", "slots": [], "actions": []}]},
          {"speaker": "USER", "utterance": "Send $5 to Amir.", "frames": [{"service": "Banks_1", "slots": [], "actions": [],
             "state": {"active_intent": "TransferMoney", "requested_slots": [], "slot_values": {"recipient_account_name": ["Amir", "amir"], "amount": ["$5"]}}}]},
          {"speaker": "SYSTEM", "utterance": "Done.", "frames": [{"service": "Banks_1", "slots": [], "actions": [],
             "service_call": {"method": "TransferMoney", "parameters": {}}, "service_results": []}]}
        ]}]"#;
        let schema = Schema {
            transactional: [("Banks_1".to_string(), "TransferMoney".to_string())].into(),
        };
        let c = convert_file(text, Some(&schema), &SgdOptions::default())
            .unwrap()
            .remove(0);
        assert_eq!(c.external_id.as_deref(), Some("32_00011"));
        assert_eq!(c.session_id.as_deref(), Some("32_00011"));
        assert_eq!(c.assistant.name.as_deref(), Some("Banks Assistant"));
        assert_eq!(
            c.messages.iter().map(|m| m.role).collect::<Vec<_>>(),
            [Role::User, Role::Assistant, Role::User, Role::Assistant]
        );
        let t: Vec<i64> = c
            .messages
            .iter()
            .map(|m| m.created_at.unwrap().0 - c.started_at.unwrap().0)
            .collect();
        assert_eq!(
            t,
            vec![
                0,
                2_000 + 20 * 23,
                2_460 + 15_000 + 250 * 16,
                21_460 + 2_000 + 20 * 5
            ]
        );
        assert_eq!(c.ended_at, c.messages.last().unwrap().created_at);
        let vars: Vec<(&str, &str)> = c
            .variables
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(
            vars,
            vec![("amount", "$5"), ("recipient_account_name", "Amir")]
        );
        assert_eq!(
            c.memory.unwrap()["intents"],
            serde_json::json!(["CheckBalance", "TransferMoney"])
        );
        assert_eq!(c.converted, Some(true));
    }
}
