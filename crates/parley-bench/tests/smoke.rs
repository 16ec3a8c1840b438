//! The harness's smoke test: `parley-bench` runs end to end at a tiny scale.

use std::process::Command;

/// `../shared` beside the repository (fixtures and datasets are read from there, never copied).
fn shared_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn parley_bench(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_parley-bench"))
        .args(args)
        .env("PARLEY_DATA_DIR", data_dir)
        .env_remove("PARLEY_DATABASE_URL")
        .env_remove("PARLEY_CONFIG")
        .output()
        .expect("run parley-bench");
    assert!(
        out.status.success(),
        "parley-bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `parley-bench` at a tiny scale on every backend: each workload runs against a real server
/// process and reports a figure. A smoke test of the harness only; speed is measured by the full
/// runs recorded in BENCHMARKS.md and never asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_every_workload_at_a_tiny_scale() {
    let mut backends = vec!["sqlite"];
    if parley_store::testing::postgres_reachable("the bench smoke test").await {
        backends.push("postgres");
    }
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("results.json");
    let sgd = shared_dir().join("datasets/sgd-schema-guided-dialogue/train");
    let args = vec![
        "--scale".to_owned(),
        "0.0002".into(),
        "--backends".into(),
        backends.join(","),
        "--postgres".into(),
        parley_store::testing::admin_url(),
        "--sgd".into(),
        sgd.display().to_string(),
        "--bench-dir".into(),
        dir.path().join("bench").display().to_string(),
        "--out".into(),
        out_file.display().to_string(),
    ];
    let data = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        parley_bench(&data, &args)
    })
    .await
    .unwrap();
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(results["conversations"], 200);
    let per_backend = results["results"].as_array().unwrap();
    assert_eq!(
        per_backend
            .iter()
            .map(|r| r["backend"].as_str().unwrap())
            .collect::<Vec<_>>(),
        backends
    );
    let workloads = |r: &serde_json::Value| -> Vec<String> {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let figure = row["figure"].as_str().unwrap();
                assert!(!figure.is_empty(), "{row}");
                row["workload"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let names = workloads(&per_backend[0]);
    for expected in [
        "ingest via HTTP",
        "single-message appends",
        "count badge",
        "list, first page",
        "search \"",
        "transcript page",
        "dashboard: Conversations page",
        "dashboard: conversation panel",
        "delete one conversation",
        "resident memory",
        "database size",
        "gateway, non-streamed",
        "gateway, streamed, first token",
        "live: commit to delivery",
        "live: server memory per idle listener",
        "live: ingest with",
    ] {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "no {expected:?} in {names:?}"
        );
    }
    for other in &per_backend[1..] {
        assert_eq!(workloads(other), names, "every backend runs every workload");
    }
}
