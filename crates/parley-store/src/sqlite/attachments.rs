//! [`AttachmentStore`] on SQLite: the writer connection serialises every write, so the quota
//! check and the count in one job cannot interleave with another upload's.

use async_trait::async_trait;
use parley_core::{Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::Result;
use crate::attachments::{Admission, AttachmentStore, AttachmentUsage, db_bytes, usage};

fn read_usage(c: &Connection, ws: WorkspaceId) -> Result<AttachmentUsage> {
    let row: Option<(i64, i64)> = c
        .prepare_cached("SELECT bytes, files FROM attachment_usage WHERE workspace_id = ?1")?
        .query_row([ws.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map(|(b, f)| usage(b, f)).unwrap_or_default())
}

fn record(
    c: &Connection,
    ws: WorkspaceId,
    key: &str,
    size: u64,
    limit: Option<u64>,
    at: Timestamp,
) -> Result<Admission> {
    let known = c
        .prepare_cached(
            "SELECT 1 FROM attachment_files WHERE storage_key = ?1 AND workspace_id = ?2",
        )?
        .exists(params![key, ws.as_bytes()])?;
    let now = read_usage(c, ws)?;
    if known {
        return Ok(Admission::Recorded(now));
    }
    if limit.is_some_and(|l| now.bytes.saturating_add(size) > l) {
        return Ok(Admission::OverLimit(now));
    }
    c.prepare_cached(
        "INSERT INTO attachment_files (storage_key, workspace_id, size_bytes, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![key, ws.as_bytes(), db_bytes(size), at.0])?;
    c.prepare_cached(
        "INSERT INTO attachment_usage (workspace_id, bytes, files) VALUES (?1, ?2, 1)
         ON CONFLICT (workspace_id) DO UPDATE SET bytes = bytes + excluded.bytes, files = files + 1",
    )?
    .execute(params![ws.as_bytes(), db_bytes(size)])?;
    read_usage(c, ws).map(Admission::Recorded)
}

fn forget(c: &Connection, ws: WorkspaceId, keys: &[String]) -> Result<Vec<String>> {
    let mut forgotten = Vec::new();
    let (mut bytes, mut files) = (0i64, 0i64);
    let mut delete = c.prepare_cached(
        "DELETE FROM attachment_files WHERE storage_key = ?1 AND workspace_id = ?2
         RETURNING size_bytes",
    )?;
    for key in keys {
        let size: Option<i64> = delete
            .query_row(params![key, ws.as_bytes()], |r| r.get(0))
            .optional()?;
        if let Some(size) = size {
            bytes += size;
            files += 1;
            forgotten.push(key.clone());
        }
    }
    if files > 0 {
        c.prepare_cached(
            "UPDATE attachment_usage SET bytes = max(bytes - ?2, 0), files = max(files - ?3, 0)
             WHERE workspace_id = ?1",
        )?
        .execute(params![ws.as_bytes(), bytes, files])?;
    }
    Ok(forgotten)
}

#[async_trait]
impl AttachmentStore for SqliteStore {
    async fn record_attachment(
        &self,
        workspace: WorkspaceId,
        storage_key: &str,
        size_bytes: u64,
        limit: Option<u64>,
        at: Timestamp,
    ) -> Result<Admission> {
        let key = storage_key.to_owned();
        self.write(move |c| record(c, workspace, &key, size_bytes, limit, at))
            .await
    }

    async fn forget_attachments(
        &self,
        workspace: WorkspaceId,
        storage_keys: &[String],
    ) -> Result<Vec<String>> {
        let keys = storage_keys.to_vec();
        self.write(move |c| forget(c, workspace, &keys)).await
    }

    async fn attachment_usage(&self, workspace: WorkspaceId) -> Result<AttachmentUsage> {
        self.read(move |c| read_usage(c, workspace)).await
    }
}
