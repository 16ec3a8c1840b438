//! Every recorded payload in `../shared/fixtures/{whatsapp,telegram,messenger}` reads into the
//! typed shape it is a sample of (each file's `_source` says where it comes from), with the
//! fields Parley relies on set.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::meta::{GraphError, GraphErrorBody};
use super::{messenger, telegram, whatsapp};

fn dir(platform: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(platform)
}

/// Each sample of every file of `platform` (its keys but `_source`), with the file's name.
fn samples(platform: &str) -> Vec<(String, String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(platform))
        .unwrap_or_else(|e| panic!("{platform} fixtures: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {platform} fixtures");
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for (key, sample) in v.as_object().unwrap() {
            if key != "_source" {
                out.push((name.clone(), key.clone(), sample.clone()));
            }
        }
    }
    out
}

fn read<T: DeserializeOwned>(file: &str, key: &str, v: &Value) -> T {
    T::deserialize(v).unwrap_or_else(|e| panic!("{file} {key}: {e}"))
}

#[test]
fn every_whatsapp_fixture_reads_as_a_webhook_or_an_error() {
    let mut read_count = 0;
    for (file, key, v) in samples("whatsapp") {
        if file.starts_with("pywa_updates_") {
            let w: whatsapp::payload::Webhook = read(&file, &key, &v);
            let values: Vec<_> = w.entry.iter().flat_map(|e| &e.changes).collect();
            assert!(!values.is_empty(), "{file} {key}: no changes");
            for change in values {
                let value = &change.value;
                assert!(
                    !value.messages.is_empty() || !value.statuses.is_empty(),
                    "{file} {key}: neither messages nor statuses"
                );
                for m in &value.messages {
                    assert!(m.id.is_some() && m.kind.is_some(), "{file} {key}: {m:?}");
                    assert!(m.timestamp.and_then(|t| t.0).is_some(), "{file} {key}");
                }
                for s in &value.statuses {
                    assert!(s.id.is_some() && s.status.is_some(), "{file} {key}: {s:?}");
                }
            }
        } else if file == "pywa_test_error_objects.json" {
            let e: GraphError = read(&file, &key, &v);
            assert!(e.code.is_some() && e.message.is_some(), "{file} {key}");
        } else {
            panic!("{file}: a fixture of no known shape; add it here");
        }
        read_count += 1;
    }
    assert!(read_count > 30, "{read_count} samples");
}

#[test]
fn every_telegram_fixture_reads_as_an_update_a_message_or_an_answer() {
    for (file, key, v) in samples("telegram") {
        match file.as_str() {
            "chatwoot_spec_incoming_updates.json" | "telegram_docs_webhook_sample_updates.json" => {
                let u: telegram::payload::Update = read(&file, &key, &v);
                assert!(u.update_id.is_some(), "{file} {key}");
                let kinds = usize::from(u.message.is_some())
                    + usize::from(u.edited_message.is_some())
                    + usize::from(u.callback_query.is_some())
                    + u.other.len();
                assert_eq!(kinds, 1, "{file} {key}: one kind of update");
            }
            "teloxide_test_updates.json" if key.ends_with("_update") => {
                let u: telegram::payload::Update = read(&file, &key, &v);
                assert!(
                    u.message.is_some_and(|m| m.message_id.is_some()),
                    "{file} {key}"
                );
            }
            "teloxide_test_updates.json" => {
                let m: telegram::payload::Message = read(&file, &key, &v);
                assert!(m.message_id.is_some() && m.chat.is_some(), "{file} {key}");
            }
            "teloxide_test_api_responses.json" if key.starts_with("getfile_") => {
                let f: telegram::payload::File = read(&file, &key, &v);
                assert!(f.file_path.is_some(), "{file} {key}");
            }
            "teloxide_test_api_responses.json" if key.starts_with("file_meta_") => {
                let f: telegram::payload::File = read(&file, &key, &v);
                assert!(f.file_path.is_none(), "{file} {key}");
            }
            "teloxide_test_api_responses.json" => {
                let e: telegram::payload::Envelope = read(&file, &key, &v);
                assert!(e.ok.is_some(), "{file} {key}");
                assert_eq!(e.ok == Some(false), e.description.is_some(), "{file} {key}");
            }
            _ => panic!("{file}: a fixture of no known shape; add it here"),
        }
    }
}

#[test]
fn every_messenger_fixture_reads_as_a_webhook_an_event_or_an_answer() {
    for (file, key, v) in samples("messenger") {
        // Every event goes to someone (an opt-in by `user_ref` has no sender).
        let event = |e: &messenger::payload::Event| {
            let page = e.recipient.as_ref().and_then(|s| s.id.0.as_ref());
            assert!(page.is_some(), "{file} {key}: no recipient id");
        };
        match file.as_str() {
            "botman_test_webhook_bodies.json" | "fbmq_test_webhook_bodies.json" => {
                let w: messenger::payload::Webhook = read(&file, &key, &v);
                assert_eq!(w.object.as_deref(), Some("page"), "{file} {key}");
                let events: Vec<_> = w.entry.iter().flat_map(|e| &e.messaging).collect();
                assert!(!events.is_empty(), "{file} {key}: no events");
                events.into_iter().for_each(|e| event(e));
            }
            "bottender_test_messaging_events.json" => {
                let e: messenger::payload::Event = read(&file, &key, &v);
                event(&e);
            }
            "facebook_messenger_gem_test_send_api_responses.json" if key == "success" => {
                let a: messenger::payload::SendAnswer = read(&file, &key, &v);
                assert!(a.message_id.is_some(), "{file} {key}");
            }
            "facebook_messenger_gem_test_send_api_responses.json"
            | "graph_api_recorded_send_errors.json" => {
                // A recording kept as the bytes that came (`raw_body`) and parsed (`body`).
                let bodies = match v.get("raw_body").and_then(Value::as_str) {
                    Some(raw) => vec![serde_json::from_str(raw).unwrap(), v["body"].clone()],
                    None => vec![v.clone()],
                };
                for body in bodies {
                    let b: GraphErrorBody = read(&file, &key, &body);
                    assert!(
                        b.error.code.is_some() && b.error.message.is_some(),
                        "{file} {key}"
                    );
                }
            }
            _ => panic!("{file}: a fixture of no known shape; add it here"),
        }
    }
}
