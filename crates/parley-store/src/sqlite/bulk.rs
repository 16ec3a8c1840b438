//! [`BulkStore`] on SQLite: every write runs on the one writer connection, one transaction per
//! call (a batch of a bulk action is one short transaction; ingest waits at most for one).

use async_trait::async_trait;
use parley_core::model::ConversationPatch;
use parley_core::{ConversationId, Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::SqliteStore;
use crate::bulk::{
    BulkAction, BulkState, BulkStore, NewBulkAction, check_bulk_patch, ids_of, ids_text,
};
use crate::jobs::NewJob;
use crate::{Result, StoreError};

const COLS: &str = "id, workspace_id, actor, action, params, selection, total, done, affected, \
    state, error, idempotency_key, created_at, updated_at, finished_at";

fn uuid_of(bytes: Vec<u8>) -> Uuid {
    Uuid::from_slice(&bytes).unwrap_or_default()
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<BulkAction> {
    let state: String = r.get(9)?;
    Ok(BulkAction {
        id: uuid_of(r.get(0)?),
        workspace_id: WorkspaceId(uuid_of(r.get(1)?)),
        actor: r.get(2)?,
        action: r.get(3)?,
        params: r.get(4)?,
        selection: r.get(5)?,
        ids: Vec::new(),
        total: r.get::<_, i64>(6)? as u64,
        done: r.get::<_, i64>(7)? as u64,
        affected: r.get::<_, i64>(8)? as u64,
        state: BulkState::parse(&state).unwrap_or(BulkState::Failed),
        error: r.get(10)?,
        idempotency_key: r.get(11)?,
        created_at: Timestamp(r.get(12)?),
        updated_at: Timestamp(r.get(13)?),
        finished_at: r.get::<_, Option<i64>>(14)?.map(Timestamp),
    })
}

fn load(
    c: &Connection,
    workspace: WorkspaceId,
    id: Uuid,
    with_ids: bool,
) -> Result<Option<BulkAction>> {
    let Some(mut b) = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM bulk_actions WHERE id = ?1 AND workspace_id = ?2"
        ))?
        .query_row(params![id.as_bytes(), workspace.as_bytes()], from_row)
        .optional()?
    else {
        return Ok(None);
    };
    if with_ids {
        let text: String = c
            .prepare_cached("SELECT ids FROM bulk_actions WHERE id = ?1")?
            .query_row([id.as_bytes()], |r| r.get(0))?;
        b.ids = ids_of(&text);
    }
    Ok(Some(b))
}

#[async_trait]
impl BulkStore for SqliteStore {
    async fn create_bulk(
        &self,
        bulk: &NewBulkAction,
        job: Option<&NewJob>,
    ) -> Result<(BulkAction, bool)> {
        let (bulk, job) = (bulk.clone(), job.cloned());
        self.write(move |c| {
            let ws = bulk.workspace_id;
            if let Some(key) = &bulk.idempotency_key {
                let earlier: Option<Vec<u8>> = c
                    .prepare_cached(
                        "SELECT id FROM bulk_actions WHERE workspace_id = ?1 AND idempotency_key = ?2",
                    )?
                    .query_row(params![ws.as_bytes(), key], |r| r.get(0))
                    .optional()?;
                if let Some(id) = earlier {
                    let b = load(c, ws, uuid_of(id), false)?
                        .ok_or_else(|| StoreError::backend("bulk action vanished"))?;
                    return Ok((b, false));
                }
            }
            c.prepare_cached(
                "INSERT INTO bulk_actions (id, workspace_id, actor, action, params, selection, ids,
                                           total, state, idempotency_key, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?10)",
            )?
            .execute(params![
                bulk.id.as_bytes(),
                ws.as_bytes(),
                bulk.actor,
                bulk.action,
                bulk.params,
                bulk.selection,
                ids_text(&bulk.ids),
                bulk.ids.len() as i64,
                bulk.idempotency_key,
                bulk.created_at.0,
            ])?;
            if let Some(job) = &job {
                super::jobs::insert(c, job, bulk.created_at)?;
            }
            let b = load(c, ws, bulk.id, false)?
                .ok_or_else(|| StoreError::backend("bulk action vanished"))?;
            Ok((b, true))
        })
        .await
    }

    async fn bulk_action(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        with_ids: bool,
    ) -> Result<Option<BulkAction>> {
        self.read(move |c| load(c, workspace, id, with_ids)).await
    }

    async fn record_bulk_progress(
        &self,
        id: Uuid,
        done: u64,
        affected: u64,
        state: BulkState,
        error: Option<&str>,
    ) -> Result<()> {
        let error = error.map(str::to_owned);
        self.write(move |c| {
            let now = Timestamp::now().0;
            c.prepare_cached(
                "UPDATE bulk_actions SET done = ?2, affected = ?3, state = ?4, error = ?5,
                        updated_at = ?6, finished_at = CASE WHEN ?7 THEN ?6 ELSE NULL END
                  WHERE id = ?1",
            )?
            .execute(params![
                id.as_bytes(),
                done as i64,
                affected as i64,
                state.as_str(),
                error,
                now,
                state.finished(),
            ])?;
            Ok(())
        })
        .await
    }

    async fn update_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
        patch: &ConversationPatch,
    ) -> Result<Vec<ConversationId>> {
        check_bulk_patch(patch)?;
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let patch = patch.clone();
        let out = self
            .write(move |c| {
                let mut out = Vec::new();
                for id in ids {
                    if super::write::update_conversation(c, workspace, id, &patch)? {
                        out.push(id);
                    }
                }
                Ok(out)
            })
            .await?;
        if !out.is_empty() {
            self.events.bump();
        }
        Ok(out)
    }
}
