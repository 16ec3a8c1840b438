//! The `parley` binary as a user runs it.

use std::process::Command;

use crate::helpers::sgd_file;

fn parley(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(args)
        .env("PARLEY_DATA_DIR", data_dir)
        .env_remove("PARLEY_DATABASE_URL")
        .env_remove("PARLEY_CONFIG")
        .output()
        .expect("run parley");
    assert!(
        out.status.success(),
        "parley {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn import_sgd_then_keys_and_export_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = sgd_file("dialogues_016.json");
    let out = parley(
        dir.path(),
        &["import", "--format", "sgd", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("128 conversations created"), "{stderr}");
    assert!(stderr.contains("1488 messages stored"), "{stderr}");
    // Importing the same file twice creates nothing new.
    let out = parley(
        dir.path(),
        &["import", "--format", "sgd", file.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("0 conversations created, 128 already present")
    );

    let out = parley(dir.path(), &["keys", "create", "--name", "ci"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = stdout.lines().last().unwrap();
    assert!(
        key.starts_with("pk_") && key.len() == 46,
        "the key alone on the last line: {stdout}"
    );
    let list = parley(dir.path(), &["keys", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains(&key[..11]));
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(key),
        "never the secret"
    );

    let out_file = dir.path().join("export.jsonl");
    parley(
        dir.path(),
        &["export", "--output", out_file.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(text.lines().count(), 128);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["external_id"], first["session_id"]);
    assert_eq!(first["status"], "closed");
    assert_eq!(first["channel"], "api");
    assert!(
        first["assistant"]["name"]
            .as_str()
            .unwrap()
            .starts_with("Flights")
    );
    assert_eq!(first["messages"][0]["role"], "user");
    assert_eq!(first["variables"][0]["source"], "extracted");
    assert!(
        first["memory"]["intents"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    );

    let ws = parley(dir.path(), &["workspaces", "list"]);
    assert!(String::from_utf8_lossy(&ws.stdout).contains("128 conversations"));
}

/// `parley import` streams JSONL like the API: a bad line stops it with the line and where to
/// resume; `--from-line` resumes there.
#[test]
fn a_jsonl_import_stops_at_a_bad_line_and_resumes_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    let write = |bad: Option<usize>| {
        let text: String = (1..=600)
            .map(|n| {
                let role = if Some(n) == bad { "robot" } else { "user" };
                format!(
                    "{{\"external_id\": \"c{n}\", \"assistant\": {{\"name\": \"Ava\"}}, \"messages\": [{{\"role\": \"{role}\", \"content\": \"hi {n}\"}}]}}\n"
                )
            })
            .collect();
        std::fs::write(&file, text).unwrap();
    };
    write(Some(550));
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["import", file.to_str().unwrap()])
        .env("PARLEY_DATA_DIR", dir.path())
        .env_remove("PARLEY_DATABASE_URL")
        .env_remove("PARLEY_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("line 550: messages[0].role"), "{stderr}");
    assert!(
        stderr.contains("500 conversations stored before it; resume with --from-line 501"),
        "{stderr}"
    );
    write(None);
    let out = parley(
        dir.path(),
        &["import", "--from-line", "501", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("100 conversations created"), "{stderr}");
    let ws = parley(dir.path(), &["workspaces", "list"]);
    assert!(String::from_utf8_lossy(&ws.stdout).contains("600 conversations"));
}

#[test]
fn export_finetune_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = sgd_file("dialogues_033.json");
    parley(
        dir.path(),
        &["import", "--format", "sgd", file.to_str().unwrap()],
    );
    // To standard output, redacted by default.
    let out = parley(dir.path(), &["export", "finetune", "--q", "dentist"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 32, "the SGD dialogues that mention a dentist");
    assert!(lines.iter().all(|l| l["messages"][0]["role"] == "user"
        && l["messages"].as_array().unwrap().last().unwrap()["role"] == "assistant"));
    // Unredacted to a file: the dataset's phone numbers come through.
    let out_file = dir.path().join("set.jsonl");
    parley(
        dir.path(),
        &[
            "export",
            "finetune",
            "--no-redact",
            "--output",
            out_file.to_str().unwrap(),
        ],
    );
    let raw = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(raw.lines().count(), 128);
    let phone = regex::Regex::new(r"\b[0-9]{3}-[0-9]{3}-[0-9]{4}\b").unwrap();
    assert!(phone.is_match(&raw));
    // Team replies only over dialogues without any: an empty set. A bad value is refused with
    // the API's message.
    let out = parley(dir.path(), &["export", "finetune", "--team-replies-only"]);
    assert!(out.stdout.is_empty());
    let bad = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["export", "finetune", "--min-rating", "9"])
        .env("PARLEY_DATA_DIR", dir.path())
        .env_remove("PARLEY_DATABASE_URL")
        .env_remove("PARLEY_CONFIG")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("min_rating"));
}
