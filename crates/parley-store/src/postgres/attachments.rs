//! [`AttachmentStore`] on PostgreSQL: admitting a file locks its workspace's usage row
//! (`FOR UPDATE`), so concurrent uploads, on one server or several, are checked against the
//! quota one after the other.

use async_trait::async_trait;
use parley_core::{Timestamp, WorkspaceId};

use super::PostgresStore;
use crate::Result;
use crate::attachments::{Admission, AttachmentStore, AttachmentUsage, db_bytes, usage};

#[async_trait]
impl AttachmentStore for PostgresStore {
    async fn record_attachment(
        &self,
        workspace: WorkspaceId,
        storage_key: &str,
        size_bytes: u64,
        limit: Option<u64>,
        at: Timestamp,
    ) -> Result<Admission> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO attachment_usage (workspace_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&workspace.0],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT bytes, files FROM attachment_usage WHERE workspace_id = $1 FOR UPDATE",
                &[&workspace.0],
            )
            .await?;
        let now = usage(row.get(0), row.get(1));
        let known = tx
            .query_opt(
                "SELECT 1 FROM attachment_files WHERE storage_key = $1 AND workspace_id = $2",
                &[&storage_key, &workspace.0],
            )
            .await?
            .is_some();
        if known {
            tx.commit().await?;
            return Ok(Admission::Recorded(now));
        }
        if limit.is_some_and(|l| now.bytes.saturating_add(size_bytes) > l) {
            tx.commit().await?;
            return Ok(Admission::OverLimit(now));
        }
        tx.execute(
            "INSERT INTO attachment_files (storage_key, workspace_id, size_bytes, created_at)
             VALUES ($1, $2, $3, $4)",
            &[&storage_key, &workspace.0, &db_bytes(size_bytes), &at.0],
        )
        .await?;
        let row = tx
            .query_one(
                "UPDATE attachment_usage SET bytes = bytes + $2, files = files + 1
                 WHERE workspace_id = $1 RETURNING bytes, files",
                &[&workspace.0, &db_bytes(size_bytes)],
            )
            .await?;
        tx.commit().await?;
        Ok(Admission::Recorded(usage(row.get(0), row.get(1))))
    }

    async fn forget_attachments(
        &self,
        workspace: WorkspaceId,
        storage_keys: &[String],
    ) -> Result<Vec<String>> {
        if storage_keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "DELETE FROM attachment_files WHERE workspace_id = $1 AND storage_key = ANY($2)
                 RETURNING storage_key, size_bytes",
                &[&workspace.0, &storage_keys],
            )
            .await?;
        let bytes: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
        let files = rows.len() as i64;
        if files > 0 {
            tx.execute(
                "UPDATE attachment_usage SET bytes = greatest(bytes - $2, 0),
                     files = greatest(files - $3, 0)
                 WHERE workspace_id = $1",
                &[&workspace.0, &bytes, &files],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn attachment_usage(&self, workspace: WorkspaceId) -> Result<AttachmentUsage> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT bytes, files FROM attachment_usage WHERE workspace_id = $1",
                &[&workspace.0],
            )
            .await?;
        Ok(row.map(|r| usage(r.get(0), r.get(1))).unwrap_or_default())
    }
}
