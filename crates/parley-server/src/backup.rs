//! `parley backup` and `parley restore`: a consistent online copy of a SQLite data directory.
//!
//! The archive is a gzip-compressed tar file holding:
//!
//! | entry | what |
//! | --- | --- |
//! | `parley.db` | the database, copied with SQLite's `VACUUM INTO` on a read-only connection: one read transaction, so it is the database as of one moment even while `serve` writes (the copy is compacted, and needs no WAL) |
//! | `attachments/...` | `<data_dir>/attachments/`, copied after the database (a file is written before the message that names it is committed, so every file the copied database names is there unless its conversation was deleted meanwhile) |
//! | `secret.key` | `<data_dir>/secret.key`, when the server uses it (not when the key comes from `secret_key` / `PARLEY_SECRET_KEY`): without it sealed provider and channel secrets cannot be opened. The archive is therefore as sensitive as the data directory |
//! | `manifest.json` | last: [`Manifest`] |
//!
//! Restoring unpacks into a staging folder inside the target, checks the manifest and the
//! database's SHA-256 and integrity, and only then moves the files into place. PostgreSQL is
//! backed up with `pg_dump` instead (see the README).

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Settings;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `format` of a Parley backup manifest.
pub const FORMAT: &str = "parley-backup";
/// The manifest version this build writes and reads.
pub const VERSION: u32 = 1;
const DB_ENTRY: &str = "parley.db";
const MANIFEST_ENTRY: &str = "manifest.json";
const SECRET_ENTRY: &str = "secret.key";
const ATTACHMENTS: &str = "attachments";

/// What a backup holds (`manifest.json`, the archive's last entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always `parley-backup`.
    pub format: String,
    /// Manifest version (1).
    pub version: u32,
    /// The Parley version that wrote it.
    pub parley_version: String,
    /// When the database copy was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The database copy: size in bytes and SHA-256 (hex).
    pub database: FileSum,
    /// Conversations per workspace in the copy, by slug.
    pub workspaces: Vec<WorkspaceCount>,
    /// Attachment files in the archive and their total size in bytes.
    pub attachments: FileCount,
    /// Whether `secret.key` is in the archive.
    pub secret_key: bool,
}

/// A file's size and digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileSum {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// A workspace's conversation count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkspaceCount {
    /// The workspace's slug.
    pub slug: String,
    /// Its conversations in the copy.
    pub conversations: u64,
}

/// A count of files and bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileCount {
    /// Files.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Writes a backup of the SQLite store `settings` name, and its attachments, to `output`
/// (created; an existing file is replaced only once the new archive is complete). Safe while
/// `serve` runs. Errors: the store is not SQLite (use `pg_dump`), the database cannot be read,
/// the output cannot be written.
pub fn backup(settings: &Settings, output: &Path) -> Result<Manifest, BoxError> {
    let Some(db) = parley_store::sqlite_path(&settings.database_url) else {
        return Err("parley backup copies a SQLite store; back up PostgreSQL with pg_dump (see the README's Operations section)".into());
    };
    let db = PathBuf::from(db);
    if !db.is_file() {
        return Err(format!("no database at {}", db.display()).into());
    }
    let staging = sibling(output, "staging")?;
    let _cleanup = RemoveOnDrop(staging.clone());
    std::fs::create_dir_all(&staging)?;
    let copy = staging.join(DB_ENTRY);
    let created_at = parley_core::Timestamp::now();
    snapshot(&db, &copy)?;
    let workspaces = count_conversations(&copy)?;
    let database = sum(&copy)?;

    let partial = sibling(output, "partial")?;
    let _partial_cleanup = RemoveOnDrop(partial.clone());
    let file = std::fs::File::create(&partial)
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_path_with_name(&copy, DB_ENTRY)?;
    let attachments = append_tree(
        &mut tar,
        &settings.data_dir.join(ATTACHMENTS),
        Path::new(ATTACHMENTS),
    )?;
    let secret = settings.data_dir.join(SECRET_ENTRY);
    let secret_key = settings.secret_key.is_none() && secret.is_file();
    if secret_key {
        tar.append_path_with_name(&secret, SECRET_ENTRY)?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        parley_version: env!("CARGO_PKG_VERSION").into(),
        created_at: created_at.to_string(),
        database,
        workspaces,
        attachments,
        secret_key,
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(created_at.0.max(0) as u64 / 1000);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST_ENTRY, json.as_slice())?;
    let gz = tar.into_inner()?;
    let file = gz.finish()?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, output)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(manifest)
}

/// Restores the backup `input` into `data_dir` (as `<data_dir>/parley.db`, `attachments/` and
/// `secret.key`). Refuses a data directory that is not empty unless `force`, which replaces
/// the database (and its `-wal`/`-shm` files), the attachments and the secret key there; no
/// server may be running on it. Errors: the archive is not a Parley backup or is damaged (the
/// database's digest or integrity check fails), or the directory is not empty.
pub fn restore(input: &Path, data_dir: &Path, force: bool) -> Result<Manifest, BoxError> {
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() && !force {
        return Err(format!(
            "{} is not empty: restore into a new or empty data directory, or pass --force to replace its database, attachments and secret key",
            data_dir.display()
        )
        .into());
    }
    std::fs::create_dir_all(data_dir)?;
    let staging = data_dir.join(".parley-restore");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let _cleanup = RemoveOnDrop(staging.clone());
    std::fs::create_dir_all(&staging)?;
    let file =
        std::fs::File::open(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut manifest: Option<Manifest> = None;
    for entry in archive
        .entries()
        .map_err(|e| format!("{} is not a Parley backup: {e}", input.display()))?
    {
        let mut entry = entry.map_err(|e| format!("{} is damaged: {e}", input.display()))?;
        let path = entry.path()?.into_owned();
        if !allowed_entry(&path) {
            return Err(format!(
                "{} is not a Parley backup: unexpected entry {}",
                input.display(),
                path.display()
            )
            .into());
        }
        if path == Path::new(MANIFEST_ENTRY) {
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            manifest =
                Some(serde_json::from_slice(&text).map_err(|e| {
                    format!("{}: the manifest is not readable: {e}", input.display())
                })?);
            continue;
        }
        if entry.header().entry_type().is_dir() {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(format!(
                "{}: entry {} is not a regular file",
                input.display(),
                path.display()
            )
            .into());
        }
        if !entry.unpack_in(&staging)? {
            return Err(format!("{}: unsafe entry {}", input.display(), path.display()).into());
        }
    }
    let manifest = manifest.ok_or_else(|| format!("{} has no manifest.json", input.display()))?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(format!(
            "{} is a {:?} version {} archive; this Parley reads {FORMAT} version {VERSION}",
            input.display(),
            manifest.format,
            manifest.version
        )
        .into());
    }
    let db = staging.join(DB_ENTRY);
    if !db.is_file() || sum(&db)? != manifest.database {
        return Err(format!(
            "{}: the database copy is missing or does not match its digest",
            input.display()
        )
        .into());
    }
    check_integrity(&db)?;
    // Into place: a stale log beside an older database would be replayed over the new one.
    for stale in ["parley.db-wal", "parley.db-shm", "parley.db-journal"] {
        let p = data_dir.join(stale);
        if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    std::fs::rename(&db, data_dir.join(DB_ENTRY))?;
    let attachments = data_dir.join(ATTACHMENTS);
    if attachments.exists() {
        std::fs::remove_dir_all(&attachments)?;
    }
    if staging.join(ATTACHMENTS).exists() {
        std::fs::rename(staging.join(ATTACHMENTS), &attachments)?;
    }
    if manifest.secret_key {
        let key = data_dir.join(SECRET_ENTRY);
        std::fs::rename(staging.join(SECRET_ENTRY), &key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(manifest)
}

/// `VACUUM INTO` on a read-only connection (see [`parley_store::sqlite_file::snapshot`]).
fn snapshot(db: &Path, copy: &Path) -> Result<(), BoxError> {
    parley_store::sqlite_file::snapshot(db, copy)
}

fn count_conversations(copy: &Path) -> Result<Vec<WorkspaceCount>, BoxError> {
    Ok(
        parley_store::sqlite_file::conversations_per_workspace(copy)?
            .into_iter()
            .map(|(slug, conversations)| WorkspaceCount {
                slug,
                conversations,
            })
            .collect(),
    )
}

fn check_integrity(db: &Path) -> Result<(), BoxError> {
    parley_store::sqlite_file::quick_check(db)
}

fn sum(path: &Path) -> Result<FileSum, BoxError> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(FileSum { bytes, sha256 })
}

/// Appends every regular file under `dir` (if it exists) as `name/...`; a file deleted while
/// the walk runs is skipped.
fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    name: &Path,
) -> Result<FileCount, BoxError> {
    let mut count = FileCount::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(count),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display()).into()),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let (path, inner) = (entry.path(), name.join(entry.file_name()));
        if kind.is_dir() {
            let sub = append_tree(tar, &path, &inner)?;
            count.files += sub.files;
            count.bytes += sub.bytes;
        } else if kind.is_file() {
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            count.bytes += file.metadata()?.len();
            count.files += 1;
            tar.append_file(&inner, &mut file)?;
        }
    }
    Ok(count)
}

/// Whether an archive entry is one a backup writes (and stays inside the target).
fn allowed_entry(path: &Path) -> bool {
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return false;
    }
    path == Path::new(DB_ENTRY)
        || path == Path::new(MANIFEST_ENTRY)
        || path == Path::new(SECRET_ENTRY)
        || path.starts_with(ATTACHMENTS)
}

/// `<output>.<what>-<pid>` beside `output`.
fn sibling(output: &Path, what: &str) -> Result<PathBuf, BoxError> {
    let name = output
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", output.display()))?;
    let mut name = name.to_owned();
    name.push(format!(".{what}-{}", std::process::id()));
    Ok(output.with_file_name(name))
}

/// Removes a file or folder when dropped (a backup's scratch files, on success or failure).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else if self.0.exists() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backup_entries_are_unpacked() {
        assert!(allowed_entry(Path::new("parley.db")));
        assert!(allowed_entry(Path::new("attachments/ws/0199")));
        assert!(!allowed_entry(Path::new("../etc/passwd")));
        assert!(!allowed_entry(Path::new("attachments/../../x")));
        assert!(!allowed_entry(Path::new("/abs")));
        assert!(!allowed_entry(Path::new("other.txt")));
    }
}
