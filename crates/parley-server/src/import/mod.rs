//! `parley import`: files into the store through the one ingest path.
//!
//! - `jsonl`: the conversation JSONL format (see [`crate::transfer`]). The whole file is
//!   validated before anything is written, then stored in transactions of 200 conversations;
//!   re-running an import is safe (ids and external ids de-duplicate).
//! - `sgd`: Schema-Guided Dialogue files as published (see [`sgd`]); one transaction per file.

pub mod sgd;

use std::path::{Path, PathBuf};
use std::time::Instant;

use parley_core::{Timestamp, WorkspaceId};
use parley_store::IngestBatch;

use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, commit, prepare};
use crate::transfer::{ImportSummary, prepare_jsonl};

/// Conversations per transaction for JSONL files.
const JSONL_CHUNK: usize = 200;

/// An import failure, worded for the command line.
#[derive(Debug)]
pub struct ImportError(pub String);

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImportError {}

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportJob {
    /// Files (or, for `sgd`, directories holding `dialogues_*.json`).
    pub paths: Vec<PathBuf>,
    /// `true` for SGD, `false` for JSONL.
    pub sgd: bool,
    /// SGD options.
    pub sgd_options: sgd::SgdOptions,
}

/// Expands directories into their `*.json` / `*.jsonl` files, sorted.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| ImportError(format!("{}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json" || x == "jsonl"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(ImportError(format!(
                "{}: no such file or directory",
                p.display()
            )));
        }
    }
    Ok(out)
}

fn api_err(path: &Path, e: ApiError) -> ImportError {
    ImportError(format!("{}: {}", path.display(), e.message))
}

/// Runs an import, printing progress to stderr; returns the totals.
pub async fn run(
    state: &AppState,
    workspace: WorkspaceId,
    job: &ImportJob,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let files = expand(&job.paths)?;
    let mut total = ImportSummary::default();
    let schema = if job.sgd {
        sgd::load_schema(&files)?
    } else {
        None
    };
    let mut files_read = 0;
    for path in &files {
        if job.sgd && path.file_name().is_some_and(|n| n == "schema.json") {
            continue; // read above: it describes services, it holds no dialogues
        }
        let text =
            std::fs::read(path).map_err(|e| ImportError(format!("{}: {e}", path.display())))?;
        let now = Timestamp::now();
        let batches: Vec<IngestBatch> = if job.sgd {
            let conversations = sgd::convert_file(&text, schema.as_ref(), &job.sgd_options)
                .map_err(|e| ImportError(format!("{}: {e}", path.display())))?;
            conversations
                .into_iter()
                .map(|c| prepare(&state.prices, IngestRequest::Create(Box::new(c)), now))
                .collect::<Result<_, _>>()
                .map_err(|e| api_err(path, e.into()))?
        } else {
            prepare_jsonl(&state.prices, &text, now).map_err(|e| api_err(path, e))?
        };
        let mut file_summary = ImportSummary::default();
        let chunk = if job.sgd {
            batches.len().max(1)
        } else {
            JSONL_CHUNK
        };
        let mut batches = batches.into_iter().peekable();
        while batches.peek().is_some() {
            let part: Vec<IngestBatch> = batches.by_ref().take(chunk).collect();
            let outcomes = commit(state, workspace, part)
                .await
                .map_err(|e| api_err(path, e))?;
            file_summary.add(&outcomes);
            if !job.sgd {
                eprint!(
                    "\r  {}: {} conversations…",
                    path.display(),
                    file_summary.conversations_created + file_summary.conversations_existing
                );
            }
        }
        files_read += 1;
        eprintln!(
            "\r  {}: {} conversations ({} new), {} messages stored",
            path.display(),
            file_summary.conversations_created + file_summary.conversations_existing,
            file_summary.conversations_created,
            file_summary.messages_stored
        );
        total.conversations_created += file_summary.conversations_created;
        total.conversations_existing += file_summary.conversations_existing;
        total.messages_stored += file_summary.messages_stored;
        total.messages_duplicate += file_summary.messages_duplicate;
        total.messages_skipped += file_summary.messages_skipped;
    }
    eprintln!(
        "Imported {} files in {:.1} s: {} conversations created, {} already present; {} messages stored, {} duplicates.",
        files_read,
        started.elapsed().as_secs_f64(),
        total.conversations_created,
        total.conversations_existing,
        total.messages_stored,
        total.messages_duplicate
    );
    Ok(total)
}
