//! [`JobStore`] on SQLite: every change is one job of the single writer, so a claim, a lease
//! or a count is never interleaved with another (SQLite serves one Parley server).

use async_trait::async_trait;
use parley_core::{ChannelConnectionId, ConversationId, MessageId, Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::SqliteStore;
use crate::jobs::{
    InboxStats, IngestJob, JOB_COLS, Job, JobState, JobStore, NewJob, QueueStats, due_after_ingest,
};
use crate::{IngestBatch, IngestOutcome, Result, StoreError};

pub(super) fn insert(c: &Connection, j: &NewJob, now: Timestamp) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO jobs (id, kind, state, payload, workspace_id, connection_id, conversation_id,
                           message_id, attempts, max_attempts, run_after, created_at, updated_at)
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10, ?10)",
    )?
    .execute(params![
        j.id.as_bytes(),
        j.kind,
        j.payload,
        j.workspace_id.map(|i| i.as_bytes().to_vec()),
        j.connection_id.map(|i| i.as_bytes().to_vec()),
        j.conversation_id.map(|i| i.as_bytes().to_vec()),
        j.message_id.map(|i| i.as_bytes().to_vec()),
        j.max_attempts,
        j.run_after.0,
        now.0
    ])
    .map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict {
                code: "job_exists",
                message: format!("job {} is already queued", j.id),
            }
        }
        _ => e.into(),
    })?;
    Ok(())
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let id: Vec<u8> = r.get(0)?;
    let opt = |i: usize| -> rusqlite::Result<Option<Vec<u8>>> { r.get(i) };
    Ok(Job {
        id: Uuid::from_slice(&id).unwrap_or_default(),
        kind: r.get(1)?,
        payload: r.get(2)?,
        workspace_id: opt(3)?.and_then(|b| WorkspaceId::from_slice(&b)),
        connection_id: opt(4)?.and_then(|b| ChannelConnectionId::from_slice(&b)),
        conversation_id: opt(5)?.and_then(|b| ConversationId::from_slice(&b)),
        message_id: opt(6)?.and_then(|b| MessageId::from_slice(&b)),
        attempts: r.get(7)?,
        max_attempts: r.get(8)?,
        last_error: r.get(9)?,
        created_at: Timestamp(r.get(10)?),
    })
}

fn claim(
    c: &Connection,
    worker: &str,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> Result<Vec<Job>> {
    let mut stmt = c.prepare_cached(&format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = ?1,
                locked_until = ?2, updated_at = ?3
          WHERE id IN (
              SELECT id FROM (
                  SELECT id, run_after AS due FROM jobs WHERE state = 'queued' AND run_after <= ?3
                  UNION ALL
                  SELECT id, locked_until AS due FROM jobs
                   WHERE state = 'running' AND locked_until < ?3)
              ORDER BY due, id LIMIT ?4)
          RETURNING {JOB_COLS}"
    ))?;
    let rows = stmt.query_map(
        params![worker, lease_until.0, now.0, limit as i64],
        job_from_row,
    )?;
    let mut jobs = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| (j.created_at, j.id));
    Ok(jobs)
}

fn set_where_mine(c: &Connection, sql: &str, p: &[&dyn rusqlite::ToSql]) -> Result<bool> {
    Ok(c.prepare_cached(sql)?.execute(p)? > 0)
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn enqueue(&self, job: &NewJob) -> Result<()> {
        let job = job.clone();
        self.write(move |c| insert(c, &job, Timestamp::now())).await
    }

    async fn ingest_with_jobs(
        &self,
        workspace: WorkspaceId,
        batches: Vec<IngestBatch>,
        jobs: Vec<IngestJob>,
    ) -> Result<Vec<IngestOutcome>> {
        self.write(move |c| {
            let n = batches.len();
            let outcomes = super::write::ingest(c, workspace, batches)?;
            let now = Timestamp::now();
            for job in due_after_ingest(n, &outcomes, jobs) {
                insert(c, &job, now)?;
            }
            Ok(outcomes)
        })
        .await
        .inspect(|_| self.events.bump())
    }

    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let worker = worker.to_owned();
        self.write(move |c| claim(c, &worker, now, lease_until, limit))
            .await
    }

    async fn renew(&self, id: Uuid, worker: &str, lease_until: Timestamp) -> Result<bool> {
        let worker = worker.to_owned();
        self.write(move |c| {
            set_where_mine(
                c,
                "UPDATE jobs SET locked_until = ?3
                  WHERE id = ?1 AND locked_by = ?2 AND state = 'running'",
                &[&id.as_bytes().as_slice(), &worker, &lease_until.0],
            )
        })
        .await
    }

    async fn complete(&self, id: Uuid, worker: &str) -> Result<bool> {
        let worker = worker.to_owned();
        self.write(move |c| {
            set_where_mine(
                c,
                "DELETE FROM jobs WHERE id = ?1 AND locked_by = ?2 AND state = 'running'",
                &[&id.as_bytes().as_slice(), &worker],
            )
        })
        .await
    }

    async fn retry_later(
        &self,
        id: Uuid,
        worker: &str,
        run_after: Timestamp,
        error: &str,
    ) -> Result<bool> {
        let (worker, error) = (worker.to_owned(), error.to_owned());
        self.write(move |c| {
            set_where_mine(
                c,
                "UPDATE jobs SET state = 'queued', run_after = ?3, last_error = ?4,
                        locked_by = NULL, locked_until = NULL, updated_at = ?5
                  WHERE id = ?1 AND locked_by = ?2 AND state = 'running'",
                &[
                    &id.as_bytes().as_slice(),
                    &worker,
                    &run_after.0,
                    &error,
                    &Timestamp::now().0,
                ],
            )
        })
        .await
    }

    async fn fail(&self, id: Uuid, worker: &str, error: &str) -> Result<bool> {
        let (worker, error) = (worker.to_owned(), error.to_owned());
        self.write(move |c| {
            set_where_mine(
                c,
                "UPDATE jobs SET state = 'failed', last_error = ?3, locked_by = NULL,
                        locked_until = NULL, updated_at = ?4
                  WHERE id = ?1 AND locked_by = ?2 AND state = 'running'",
                &[
                    &id.as_bytes().as_slice(),
                    &worker,
                    &error,
                    &Timestamp::now().0,
                ],
            )
        })
        .await
    }

    async fn release(&self, worker: &str) -> Result<u64> {
        let worker = worker.to_owned();
        self.write(move |c| {
            let now = Timestamp::now().0;
            Ok(c.execute(
                "UPDATE jobs SET state = 'queued', attempts = max(attempts - 1, 0),
                        run_after = ?2, locked_by = NULL, locked_until = NULL, updated_at = ?2
                  WHERE locked_by = ?1 AND state = 'running'",
                params![worker, now],
            )? as u64)
        })
        .await
    }

    async fn requeue_running(&self) -> Result<u64> {
        self.write(move |c| {
            let now = Timestamp::now().0;
            Ok(c.execute(
                "UPDATE jobs SET state = 'queued', run_after = ?1, locked_by = NULL,
                        locked_until = NULL, updated_at = ?1
                  WHERE state = 'running'",
                params![now],
            )? as u64)
        })
        .await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT kind, state, count(*), min(created_at) FROM jobs
                  GROUP BY kind, state ORDER BY kind, state",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, state, count, oldest) = row?;
                if let Some(state) = JobState::parse(&state) {
                    out.push(QueueStats {
                        kind,
                        state,
                        count: count as u64,
                        oldest_created_at: Timestamp(oldest),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn inbox_stats(
        &self,
        workspace: WorkspaceId,
        connection: ChannelConnectionId,
    ) -> Result<InboxStats> {
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT count(*) FILTER (WHERE state <> 'failed'),
                            count(*) FILTER (WHERE state = 'failed'),
                            min(created_at) FILTER (WHERE state <> 'failed')
                       FROM jobs
                      WHERE connection_id = ?1 AND workspace_id = ?2 AND kind LIKE '%.delivery'",
                )?
                .query_row(params![connection.as_bytes(), workspace.as_bytes()], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })
                .optional()?;
            Ok(match row {
                Some((pending, failed, oldest)) => InboxStats {
                    pending: pending as u64,
                    failed: failed as u64,
                    oldest_pending_at: oldest.map(Timestamp),
                },
                None => InboxStats::default(),
            })
        })
        .await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                  WHERE leases.holder = excluded.holder OR leases.expires_at < ?3",
            )?
            .execute(params![name, holder, now.0, until.0])?
                > 0)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| {
            c.prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")?
                .execute(params![name, holder])?;
            Ok(())
        })
        .await
    }

    async fn count_hits(
        &self,
        subjects: &[String],
        window_start: i64,
        forget_before: i64,
    ) -> Result<Vec<u64>> {
        let subjects = subjects.to_vec();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM rate_windows WHERE window_start < ?1")?
                .execute([forget_before])?;
            let mut counts = Vec::with_capacity(subjects.len());
            for s in &subjects {
                let n: i64 = c
                    .prepare_cached(
                        "INSERT INTO rate_windows (subject, window_start, hits) VALUES (?1, ?2, 1)
                         ON CONFLICT (subject, window_start) DO UPDATE SET hits = hits + 1
                         RETURNING hits",
                    )?
                    .query_row(params![s, window_start], |r| r.get(0))?;
                counts.push(n as u64);
            }
            Ok(counts)
        })
        .await
    }
}
