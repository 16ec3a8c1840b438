//! The record of attachment files (voice notes, images, documents) a workspace keeps, and its
//! attachment quota: one row per file Parley stored (`attachment_files`) and a counter per
//! workspace (`attachment_usage`: bytes and files), maintained in the same transaction as every
//! file recorded or forgotten, so the quota check reads one row instead of walking a directory.
//!
//! The files themselves live in the server's attachment storage; the store only records them.
//! A file is recorded *before* it is written (a crash in between leaves a record without a file,
//! counted until its conversation is deleted: the count errs on the side of the quota), and
//! forgotten before it is removed.

use async_trait::async_trait;
use parley_core::{Timestamp, WorkspaceId};
use serde::Serialize;

use crate::Result;

/// A workspace's stored attachments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AttachmentUsage {
    /// Bytes stored.
    pub bytes: u64,
    /// Files stored.
    pub files: u64,
}

/// What [`AttachmentStore::record_attachment`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Recorded; the usage now, this file included.
    Recorded(AttachmentUsage),
    /// Not recorded: the file would take the workspace past the limit. The usage now.
    OverLimit(AttachmentUsage),
}

/// The attachment part of the store, reached through [`crate::Store::attachments`]. Every
/// method is scoped to one workspace.
#[async_trait]
pub trait AttachmentStore: Send + Sync {
    /// Records a file of `size_bytes` bytes under `storage_key` (unique on the server) for the
    /// workspace, unless `limit` is given and the workspace's bytes plus this file would exceed
    /// it. The check and the count are one atomic step: concurrent uploads cannot together pass
    /// the limit. Recording a key that is already recorded changes nothing and answers
    /// `Recorded`.
    async fn record_attachment(
        &self,
        workspace: WorkspaceId,
        storage_key: &str,
        size_bytes: u64,
        limit: Option<u64>,
        at: Timestamp,
    ) -> Result<Admission>;
    /// Forgets the workspace's files among `storage_keys` and subtracts them from its usage.
    /// Returns the keys that were the workspace's records (only their files may be removed);
    /// keys of other workspaces or never recorded are left alone.
    async fn forget_attachments(
        &self,
        workspace: WorkspaceId,
        storage_keys: &[String],
    ) -> Result<Vec<String>>;
    /// The workspace's usage (the maintained counter; no scan).
    async fn attachment_usage(&self, workspace: WorkspaceId) -> Result<AttachmentUsage>;
}

/// The usage from a stored `(bytes, files)` pair (never negative).
pub(crate) fn usage(bytes: i64, files: i64) -> AttachmentUsage {
    AttachmentUsage {
        bytes: bytes.max(0) as u64,
        files: files.max(0) as u64,
    }
}

/// A size or limit as the databases store it (bytes fit an i64 by far).
pub(crate) fn db_bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
