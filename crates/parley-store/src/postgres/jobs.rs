//! [`JobStore`] on PostgreSQL: servers sharing the database claim jobs with
//! `FOR UPDATE SKIP LOCKED` (each due job goes to exactly one of them, none waits on another),
//! take leases and count rate windows with single-statement upserts.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use parley_core::{ChannelConnectionId, ConversationId, MessageId, Timestamp, WorkspaceId};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{PostgresStore, is_unique_violation};
use crate::jobs::{InboxStats, IngestJob, JOB_COLS, Job, JobState, JobStore, NewJob, QueueStats};
use crate::{IngestBatch, IngestOutcome, Result, StoreError};

/// Inserts a job on `client` (a transaction, when it goes with other writes).
pub(super) async fn insert(client: &impl GenericClient, j: &NewJob, now: Timestamp) -> Result<()> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO jobs (id, kind, state, payload, workspace_id, connection_id,
                               conversation_id, message_id, attempts, max_attempts, run_after,
                               created_at, updated_at)
             VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, 0, $8, $9, $10, $10)",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &j.id,
                &j.kind,
                &j.payload,
                &j.workspace_id.map(|i| i.0),
                &j.connection_id.map(|i| i.0),
                &j.conversation_id.map(|i| i.0),
                &j.message_id.map(|i| i.0),
                &(j.max_attempts as i32),
                &j.run_after.0,
                &now.0,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    code: "job_exists",
                    message: format!("job {} is already queued", j.id),
                }
            } else {
                e.into()
            }
        })?;
    Ok(())
}

fn job_from_row(r: &Row) -> Job {
    Job {
        id: r.get(0),
        kind: r.get(1),
        payload: r.get(2),
        workspace_id: r.get::<_, Option<Uuid>>(3).map(WorkspaceId),
        connection_id: r.get::<_, Option<Uuid>>(4).map(ChannelConnectionId),
        conversation_id: r.get::<_, Option<Uuid>>(5).map(ConversationId),
        message_id: r.get::<_, Option<Uuid>>(6).map(MessageId),
        attempts: r.get::<_, i32>(7).max(0) as u32,
        max_attempts: r.get::<_, i32>(8).max(0) as u32,
        last_error: r.get(9),
        created_at: Timestamp(r.get(10)),
    }
}

impl PostgresStore {
    /// Runs one statement that changes rows and says whether any changed.
    async fn changed(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn enqueue(&self, job: &NewJob) -> Result<()> {
        let client = self.pool.get().await?;
        insert(&client, job, Timestamp::now()).await
    }

    async fn ingest_with_jobs(
        &self,
        workspace: WorkspaceId,
        batches: Vec<IngestBatch>,
        jobs: Vec<IngestJob>,
    ) -> Result<Vec<IngestOutcome>> {
        let out = super::write::ingest_with_jobs(&self.pool, workspace, batches, jobs).await?;
        self.events.bump();
        Ok(out)
    }

    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let client = self.pool.get().await?;
        // SKIP LOCKED: rows another server is claiming right now are passed over, not waited
        // for, so each due job goes to one server.
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = $1,
                        locked_until = $2, updated_at = $3
                  WHERE id IN (
                      SELECT id FROM jobs
                       WHERE (state = 'queued' AND run_after <= $3)
                          OR (state = 'running' AND locked_until < $3)
                       ORDER BY coalesce(CASE WHEN state = 'queued' THEN run_after END, locked_until), id
                       LIMIT $4
                       FOR UPDATE SKIP LOCKED)
                  RETURNING {JOB_COLS}"
            ))
            .await?;
        let rows = client
            .query(&stmt, &[&worker, &lease_until.0, &now.0, &(limit as i64)])
            .await?;
        let mut jobs: Vec<Job> = rows.iter().map(job_from_row).collect();
        jobs.sort_by_key(|j| (j.created_at, j.id));
        Ok(jobs)
    }

    async fn renew(&self, id: Uuid, worker: &str, lease_until: Timestamp) -> Result<bool> {
        Ok(self
            .changed(
                "UPDATE jobs SET locked_until = $3
                  WHERE id = $1 AND locked_by = $2 AND state = 'running'",
                &[&id, &worker, &lease_until.0],
            )
            .await?
            > 0)
    }

    async fn complete(&self, id: Uuid, worker: &str) -> Result<bool> {
        Ok(self
            .changed(
                "DELETE FROM jobs WHERE id = $1 AND locked_by = $2 AND state = 'running'",
                &[&id, &worker],
            )
            .await?
            > 0)
    }

    async fn retry_later(
        &self,
        id: Uuid,
        worker: &str,
        run_after: Timestamp,
        error: &str,
    ) -> Result<bool> {
        Ok(self
            .changed(
                "UPDATE jobs SET state = 'queued', run_after = $3, last_error = $4,
                        locked_by = NULL, locked_until = NULL, updated_at = $5
                  WHERE id = $1 AND locked_by = $2 AND state = 'running'",
                &[&id, &worker, &run_after.0, &error, &Timestamp::now().0],
            )
            .await?
            > 0)
    }

    async fn fail(&self, id: Uuid, worker: &str, error: &str) -> Result<bool> {
        Ok(self
            .changed(
                "UPDATE jobs SET state = 'failed', last_error = $3, locked_by = NULL,
                        locked_until = NULL, updated_at = $4
                  WHERE id = $1 AND locked_by = $2 AND state = 'running'",
                &[&id, &worker, &error, &Timestamp::now().0],
            )
            .await?
            > 0)
    }

    async fn release(&self, worker: &str) -> Result<u64> {
        self.changed(
            "UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0),
                    run_after = $2, locked_by = NULL, locked_until = NULL, updated_at = $2
              WHERE locked_by = $1 AND state = 'running'",
            &[&worker, &Timestamp::now().0],
        )
        .await
    }

    async fn requeue_running(&self) -> Result<u64> {
        self.changed(
            "UPDATE jobs SET state = 'queued', run_after = $1, locked_by = NULL,
                    locked_until = NULL, updated_at = $1
              WHERE state = 'running'",
            &[&Timestamp::now().0],
        )
        .await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT kind, state, count(*), min(created_at) FROM jobs
                  GROUP BY kind, state ORDER BY kind, state",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(QueueStats {
                    kind: r.get(0),
                    state: JobState::parse(r.get(1))?,
                    count: r.get::<_, i64>(2) as u64,
                    oldest_created_at: Timestamp(r.get(3)),
                })
            })
            .collect())
    }

    async fn inbox_stats(
        &self,
        workspace: WorkspaceId,
        connection: ChannelConnectionId,
    ) -> Result<InboxStats> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT count(*) FILTER (WHERE state <> 'failed'),
                        count(*) FILTER (WHERE state = 'failed'),
                        min(created_at) FILTER (WHERE state <> 'failed')
                   FROM jobs
                  WHERE connection_id = $1 AND workspace_id = $2 AND kind LIKE '%.delivery'",
            )
            .await?;
        let r = client
            .query_one(&stmt, &[&connection.0, &workspace.0])
            .await?;
        Ok(InboxStats {
            pending: r.get::<_, i64>(0) as u64,
            failed: r.get::<_, i64>(1) as u64,
            oldest_pending_at: r.get::<_, Option<i64>>(2).map(Timestamp),
        })
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        Ok(self
            .changed(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                  WHERE leases.holder = excluded.holder OR leases.expires_at < $3",
                &[&name, &holder, &now.0, &until.0],
            )
            .await?
            > 0)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.changed(
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )
        .await?;
        Ok(())
    }

    async fn count_hits(
        &self,
        subjects: &[String],
        window_start: i64,
        forget_before: i64,
    ) -> Result<Vec<u64>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // A lost count after a crash only lets a few more requests through: no fsync wait.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO rate_windows (subject, window_start, hits)
                 SELECT s, $2, 1 FROM unnest($1::text[]) AS s
                 ON CONFLICT (subject, window_start)
                     DO UPDATE SET hits = rate_windows.hits + 1
                 RETURNING subject, hits",
            )
            .await?;
        let rows = tx.query(&stmt, &[&subjects, &window_start]).await?;
        // Old windows are swept now and then, not on every hit.
        if sweep_now() {
            tx.execute(
                "DELETE FROM rate_windows WHERE window_start < $1",
                &[&forget_before],
            )
            .await?;
        }
        tx.commit().await?;
        let counts: std::collections::HashMap<String, i64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(subjects
            .iter()
            .map(|s| counts.get(s).copied().unwrap_or(0) as u64)
            .collect())
    }
}

/// About one call in a hundred sweeps the old rate windows.
fn sweep_now() -> bool {
    Uuid::now_v7().as_u128().is_multiple_of(100)
}
