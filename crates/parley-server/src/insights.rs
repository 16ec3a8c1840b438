//! Keeping each conversation's insights (issue 13) current: [`analyse_stale`] finds the
//! workspace's conversations whose insight is missing or older than their last change
//! ([`parley_store::InsightStore::stale_insights`]), analyses them with
//! [`parley_core::insights::analyse`] and stores the results. `parley analyse` runs it as a
//! backfill. Nothing here runs on a request's path.

use parley_core::insights::analyse;
use parley_core::{Timestamp, WorkspaceId};
use parley_store::{Store, StoreError};

/// Conversations read, analysed and stored per round.
pub const BATCH: u32 = 500;

/// Analyses every stale conversation of `workspace`, [`BATCH`] at a time, calling
/// `progress(done)` after each round; returns how many were analysed. A conversation changed
/// while it is analysed is stale again and is picked up by the next round (or the next run).
/// Errors: the store's.
pub async fn analyse_stale(
    store: &dyn Store,
    workspace: WorkspaceId,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let mut done = 0u64;
    loop {
        let ids = store.insights().stale_insights(workspace, BATCH).await?;
        if ids.is_empty() {
            return Ok(done);
        }
        let records = store.export_conversations(workspace, &ids).await?;
        let now = Timestamp::now();
        let saves = records.iter().map(|r| {
            let insight = analyse(&r.detail.summary, &r.messages, now);
            // Never older than the change it reflects, so the round always makes progress
            // even when the record's clock ran ahead of this one.
            let at = Timestamp(now.0.max(r.detail.updated_at.0));
            let id = r.detail.summary.id;
            async move {
                match store
                    .insights()
                    .save_insight(workspace, id, &insight, at)
                    .await
                {
                    // Deleted since it was listed: nothing to keep.
                    Err(StoreError::NotFound { .. }) => Ok(()),
                    other => other,
                }
            }
        });
        // Concurrently, so SQLite commits the round as one group.
        for r in futures_util::future::join_all(saves).await {
            r?;
        }
        if records.is_empty() {
            // Every listed conversation was deleted meanwhile; list again.
            continue;
        }
        done += records.len() as u64;
        progress(done);
    }
}
