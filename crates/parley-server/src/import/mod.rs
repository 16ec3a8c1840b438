//! `parley import`: files into the store through the one ingest path.
//!
//! - `jsonl`: the conversation JSONL format (see [`crate::transfer`]), read a piece at a time
//!   and stored in transactions of up to 500 conversations or 4 MiB, exactly as
//!   `POST /api/v1/import` does ([`jsonl`]): a bad line stops the import with its line number
//!   and the line to resume from (`--from-line`); re-running an import is safe (ids and
//!   external ids de-duplicate).
//! - `sgd`: Schema-Guided Dialogue files as published (see [`sgd`]); one transaction per file.

pub mod jsonl;
pub mod sgd;

use std::path::{Path, PathBuf};
use std::time::Instant;

use parley_core::{Timestamp, WorkspaceId};
use parley_store::IngestBatch;

use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{IngestRequest, commit, prepare};
use crate::transfer::ImportSummary;

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
    /// JSONL: skip the lines of the first file before this one (1-based; 0 or 1 read all), to
    /// resume an import that stopped.
    pub from_line: u64,
}

/// Bytes read from a JSONL file at a time.
const READ_CHUNK: usize = 256 * 1024;

/// Streams one JSONL file into the store ([`jsonl::JsonlImport`]), printing progress.
/// Errors: the file cannot be read; a bad line or a store failure, worded with the file, the
/// line and where to resume.
async fn import_jsonl_file(
    state: &AppState,
    workspace: WorkspaceId,
    path: &Path,
    from_line: u64,
) -> Result<ImportSummary, ImportError> {
    use tokio::io::AsyncReadExt as _;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ImportError(format!("{}: {e}", path.display())))?;
    let mut import =
        jsonl::JsonlImport::new(state, workspace, from_line, state.settings.max_body_bytes);
    let mut buf = vec![0u8; READ_CHUNK];
    let failed = |f: jsonl::ImportFailure| {
        ImportError(format!(
            "{}: {} ({} conversations stored before it; resume with --from-line {} {})",
            path.display(),
            f.error.message,
            f.imported.conversations_created + f.imported.conversations_existing,
            f.resume_from_line,
            path.display()
        ))
    };
    let mut shown = 0;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| ImportError(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        import.push(&buf[..n]).await.map_err(failed)?;
        let s = import.summary();
        let done = s.conversations_created + s.conversations_existing;
        if done != shown {
            shown = done;
            eprint!("\r  {}: {done} conversations…", path.display());
        }
    }
    import.finish().await.map_err(failed)
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
        let file_summary = if job.sgd {
            let text =
                std::fs::read(path).map_err(|e| ImportError(format!("{}: {e}", path.display())))?;
            let now = Timestamp::now();
            let conversations = sgd::convert_file(&text, schema.as_ref(), &job.sgd_options)
                .map_err(|e| ImportError(format!("{}: {e}", path.display())))?;
            let batches: Vec<IngestBatch> = conversations
                .into_iter()
                .map(|c| prepare(&state.prices, IngestRequest::Create(Box::new(c)), now))
                .collect::<Result<_, _>>()
                .map_err(|e| api_err(path, e.into()))?;
            let mut file_summary = ImportSummary::default();
            if !batches.is_empty() {
                let outcomes = commit(state, workspace, batches)
                    .await
                    .map_err(|e| api_err(path, e))?;
                file_summary.add(&outcomes);
            }
            file_summary
        } else {
            let from = if files_read == 0 { job.from_line } else { 1 };
            import_jsonl_file(state, workspace, path, from).await?
        };
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
