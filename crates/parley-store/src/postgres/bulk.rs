//! [`BulkStore`] on PostgreSQL. A retried request racing its first attempt meets the unique
//! index on `(workspace_id, idempotency_key)`: `ON CONFLICT DO NOTHING`, then the earlier row.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use parley_core::model::ConversationPatch;
use parley_core::{ConversationId, Timestamp, WorkspaceId};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{PostgresStore, refs, to_sql};
use crate::bulk::{
    BulkAction, BulkState, BulkStore, NewBulkAction, check_bulk_patch, ids_of, ids_text,
};
use crate::jobs::NewJob;
use crate::sql::Dialect;
use crate::{Result, StoreError};

const COLS: &str = "id, workspace_id, actor, action, params, selection, total, done, affected, \
    state, error, idempotency_key, created_at, updated_at, finished_at";

fn from_row(r: &Row) -> BulkAction {
    let state: String = r.get(9);
    BulkAction {
        id: r.get(0),
        workspace_id: WorkspaceId(r.get(1)),
        actor: r.get(2),
        action: r.get(3),
        params: r.get(4),
        selection: r.get(5),
        ids: Vec::new(),
        total: r.get::<_, i64>(6) as u64,
        done: r.get::<_, i64>(7) as u64,
        affected: r.get::<_, i64>(8) as u64,
        state: BulkState::parse(&state).unwrap_or(BulkState::Failed),
        error: r.get(10),
        idempotency_key: r.get(11),
        created_at: Timestamp(r.get(12)),
        updated_at: Timestamp(r.get(13)),
        finished_at: r.get::<_, Option<i64>>(14).map(Timestamp),
    }
}

async fn load(
    c: &impl GenericClient,
    workspace: WorkspaceId,
    id: Uuid,
    with_ids: bool,
) -> Result<Option<BulkAction>> {
    let Some(row) = c
        .query_opt(
            &format!("SELECT {COLS}, ids FROM bulk_actions WHERE id = $1 AND workspace_id = $2"),
            &[&id, &workspace.0],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut b = from_row(&row);
    if with_ids {
        let text: String = row.get(15);
        b.ids = ids_of(&text);
    }
    Ok(Some(b))
}

#[async_trait]
impl BulkStore for PostgresStore {
    async fn create_bulk(
        &self,
        bulk: &NewBulkAction,
        job: Option<&NewJob>,
    ) -> Result<(BulkAction, bool)> {
        let ws = bulk.workspace_id;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .query_opt(
                "INSERT INTO bulk_actions (id, workspace_id, actor, action, params, selection, ids,
                                           total, state, idempotency_key, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10, $10)
                 ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
                 RETURNING id",
                &[
                    &bulk.id,
                    &ws.0,
                    &bulk.actor,
                    &bulk.action,
                    &bulk.params,
                    &bulk.selection,
                    &ids_text(&bulk.ids),
                    &(bulk.ids.len() as i64),
                    &bulk.idempotency_key,
                    &bulk.created_at.0,
                ],
            )
            .await?;
        if inserted.is_none() {
            let row = tx
                .query_one(
                    "SELECT id FROM bulk_actions WHERE workspace_id = $1 AND idempotency_key = $2",
                    &[&ws.0, &bulk.idempotency_key],
                )
                .await?;
            let b = load(&tx, ws, row.get(0), false)
                .await?
                .ok_or_else(|| StoreError::backend("bulk action vanished"))?;
            return Ok((b, false));
        }
        if let Some(job) = job {
            super::jobs::insert(&tx, job, bulk.created_at).await?;
        }
        let b = load(&tx, ws, bulk.id, false)
            .await?
            .ok_or_else(|| StoreError::backend("bulk action vanished"))?;
        tx.commit().await?;
        Ok((b, true))
    }

    async fn bulk_action(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        with_ids: bool,
    ) -> Result<Option<BulkAction>> {
        let client = self.pool.get().await?;
        load(&client, workspace, id, with_ids).await
    }

    async fn record_bulk_progress(
        &self,
        id: Uuid,
        done: u64,
        affected: u64,
        state: BulkState,
        error: Option<&str>,
    ) -> Result<()> {
        let client = self.pool.get().await?;
        let now = Timestamp::now().0;
        client
            .execute(
                "UPDATE bulk_actions SET done = $2, affected = $3, state = $4, error = $5,
                        updated_at = $6::bigint,
                        finished_at = CASE WHEN $7::boolean THEN $6::bigint ELSE NULL END
                  WHERE id = $1",
                &[
                    &id,
                    &(done as i64),
                    &(affected as i64),
                    &state.as_str(),
                    &error,
                    &now,
                    &state.finished(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn update_conversations(
        &self,
        workspace: WorkspaceId,
        ids: &[ConversationId],
        patch: &ConversationPatch,
    ) -> Result<Vec<ConversationId>> {
        check_bulk_patch(patch)?;
        let raw: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT pk, id FROM conversations WHERE id = ANY($1) AND workspace_id = $2
                  ORDER BY id FOR UPDATE",
                &[&raw, &workspace.0],
            )
            .await?;
        let now = Timestamp::now();
        let mut found = Vec::with_capacity(rows.len());
        let mut events = Vec::new();
        for row in &rows {
            let pk: i64 = row.get(0);
            let id = ConversationId(row.get(1));
            let sql = crate::sql::conversation_patch(Dialect::Postgres, pk, patch, None, now);
            let values = to_sql(&sql.params);
            tx.execute(sql.text.as_str(), &refs(&values)).await?;
            events.extend(crate::events::patch_events(id, patch));
            found.push(id);
        }
        // The events last: their ordering lock comes after every row lock (as a delete's).
        super::events::append(&tx, workspace, &events, now).await?;
        tx.commit().await?;
        if !found.is_empty() {
            self.events.bump();
        }
        Ok(found)
    }
}
