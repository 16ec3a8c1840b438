//! [`WebhookStore`] on SQLite: one server per database and one writer connection, so a claim
//! (an `UPDATE … RETURNING` on the writer) can never hand a delivery to two senders.

use async_trait::async_trait;
use parley_core::{Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::SqliteStore;
use crate::webhooks::{
    DELIVERY_COLS, DeliveryAttempt, ENDPOINT_COLS, NewWebhookDelivery, WebhookDelivery,
    WebhookEndpoint, WebhookEndpointPatch, WebhookStore, in_flight, parse_types, status_of,
    types_json,
};
use crate::{Result, StoreError};

fn uuid_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let b: Vec<u8> = r.get(i)?;
    Uuid::from_slice(&b).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    })
}

fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<WebhookEndpoint> {
    let types: String = r.get(4)?;
    Ok(WebhookEndpoint {
        id: uuid_at(r, 0)?,
        workspace_id: WorkspaceId(uuid_at(r, 1)?),
        url: r.get(2)?,
        description: r.get(3)?,
        event_types: parse_types(&types),
        enabled: r.get::<_, i64>(5)? != 0,
        secret_sealed: r.get(6)?,
        cursor: r.get(7)?,
        created_at: Timestamp(r.get(8)?),
        updated_at: Timestamp(r.get(9)?),
    })
}

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Result<WebhookDelivery>> {
    let status: String = r.get(6)?;
    let d = WebhookDelivery {
        id: uuid_at(r, 0)?,
        endpoint_id: uuid_at(r, 1)?,
        workspace_id: WorkspaceId(uuid_at(r, 2)?),
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        body: r.get(5)?,
        status: crate::webhooks::DeliveryStatus::Pending,
        attempts: r.get::<_, i64>(7)?.max(0) as u32,
        next_attempt_at: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        retry_until: Timestamp(r.get(9)?),
        last_attempt_at: r.get::<_, Option<i64>>(10)?.map(Timestamp),
        http_status: r
            .get::<_, Option<i64>>(11)?
            .and_then(|s| u16::try_from(s).ok()),
        response_ms: r.get(12)?,
        response_excerpt: r.get(13)?,
        error: r.get(14)?,
        created_at: Timestamp(r.get(15)?),
    };
    Ok(status_of(&status).map(|status| WebhookDelivery { status, ..d }))
}

fn get_endpoint(c: &Connection, ws: WorkspaceId, id: Uuid) -> Result<Option<WebhookEndpoint>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE id = ?1 AND workspace_id = ?2"
    ))?
    .query_row(params![id.as_bytes(), ws.as_bytes()], endpoint_from_row)
    .optional()?)
}

fn get_delivery(
    c: &Connection,
    ws: WorkspaceId,
    endpoint: Uuid,
    id: Uuid,
) -> Result<Option<WebhookDelivery>> {
    c.prepare_cached(&format!(
        "SELECT {DELIVERY_COLS} FROM webhook_deliveries
          WHERE id = ?1 AND endpoint_id = ?2 AND workspace_id = ?3"
    ))?
    .query_row(
        params![id.as_bytes(), endpoint.as_bytes(), ws.as_bytes()],
        delivery_from_row,
    )
    .optional()?
    .transpose()
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, e: &WebhookEndpoint) -> Result<()> {
        let e = e.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO webhook_endpoints ({ENDPOINT_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                e.id.as_bytes(),
                e.workspace_id.as_bytes(),
                e.url,
                e.description,
                types_json(&e.event_types),
                e.enabled as i64,
                e.secret_sealed,
                e.cursor,
                e.created_at.0,
                e.updated_at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn list_webhooks(&self, ws: WorkspaceId) -> Result<Vec<WebhookEndpoint>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE workspace_id = ?1
                  ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([ws.as_bytes()], endpoint_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn get_webhook(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<WebhookEndpoint>> {
        self.read(move |c| get_endpoint(c, ws, id)).await
    }

    async fn update_webhook(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        p: &WebhookEndpointPatch,
        now: Timestamp,
    ) -> Result<Option<WebhookEndpoint>> {
        let p = p.clone();
        self.write(move |c| {
            let Some(before) = get_endpoint(c, ws, id)? else {
                return Ok(None);
            };
            let reenabled = p.enabled == Some(true) && !before.enabled;
            c.prepare_cached(
                "UPDATE webhook_endpoints SET url = coalesce(?1, url),
                        description = coalesce(?2, description),
                        event_types = coalesce(?3, event_types), enabled = coalesce(?4, enabled),
                        secret = coalesce(?5, secret), cursor = coalesce(?6, cursor),
                        updated_at = ?7
                  WHERE id = ?8 AND workspace_id = ?9",
            )?
            .execute(params![
                p.url,
                p.description,
                p.event_types.as_deref().map(types_json),
                p.enabled.map(i64::from),
                p.secret_sealed,
                if reenabled { p.cursor } else { None },
                now.0,
                id.as_bytes(),
                ws.as_bytes()
            ])?;
            get_endpoint(c, ws, id)
        })
        .await
    }

    async fn delete_webhook(&self, ws: WorkspaceId, id: Uuid) -> Result<bool> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM webhook_endpoints WHERE id = ?1 AND workspace_id = ?2",
                )?
                .execute(params![id.as_bytes(), ws.as_bytes()])?;
            if n > 0 {
                c.prepare_cached("DELETE FROM webhook_deliveries WHERE endpoint_id = ?1")?
                    .execute([id.as_bytes()])?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn enabled_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE enabled = 1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([], endpoint_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn take(
        &self,
        endpoint: Uuid,
        from: i64,
        to: i64,
        deliveries: &[NewWebhookDelivery],
        now: Timestamp,
        retry_until: Timestamp,
    ) -> Result<bool> {
        let deliveries = deliveries.to_vec();
        self.write(move |c| {
            let ws: Option<Vec<u8>> = c
                .prepare_cached(
                    "UPDATE webhook_endpoints SET cursor = ?1
                      WHERE id = ?2 AND cursor = ?3 AND enabled = 1 RETURNING workspace_id",
                )?
                .query_row(params![to, endpoint.as_bytes(), from], |r| r.get(0))
                .optional()?;
            let Some(ws) = ws else {
                return Ok(false);
            };
            let mut insert = c.prepare_cached(
                "INSERT INTO webhook_deliveries (id, endpoint_id, workspace_id, event_id, event_type,
                        body, status, attempts, next_attempt_at, retry_until, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?7)
                 ON CONFLICT (endpoint_id, event_id, event_type) DO NOTHING",
            )?;
            for d in &deliveries {
                insert.execute(params![
                    d.id.as_bytes(),
                    endpoint.as_bytes(),
                    ws,
                    d.event_id,
                    d.event_type,
                    d.body,
                    now.0,
                    retry_until.0
                ])?;
            }
            Ok(true)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        let worker = worker.to_owned();
        self.write(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, locked_by = ?1,
                        locked_until = ?2
                  WHERE id IN (
                      SELECT d.id FROM webhook_deliveries d
                        JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled = 1
                       WHERE d.status = 'pending' AND d.next_attempt_at <= ?3
                         AND (d.locked_until IS NULL OR d.locked_until < ?3)
                       ORDER BY d.next_attempt_at, d.id LIMIT ?4)
                  RETURNING {DELIVERY_COLS}"
            ))?;
            let rows = stmt.query_map(
                params![worker, lease_until.0, now.0, limit as i64],
                delivery_from_row,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .collect()
        })
        .await
    }

    async fn record_attempt(&self, id: Uuid, worker: &str, a: &DeliveryAttempt) -> Result<bool> {
        let (worker, a) = (worker.to_owned(), a.clone());
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE webhook_deliveries SET status = ?1, next_attempt_at = ?2,
                            last_attempt_at = ?3, http_status = ?4, response_ms = ?5,
                            response_excerpt = ?6, error = ?7, locked_by = NULL, locked_until = NULL
                      WHERE id = ?8 AND locked_by = ?9",
                )?
                .execute(params![
                    a.status.as_str(),
                    a.next_attempt_at.map(|t| t.0),
                    a.attempted_at.0,
                    a.http_status.map(i64::from),
                    a.response_ms,
                    a.response_excerpt,
                    a.error,
                    id.as_bytes(),
                    worker
                ])?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        ws: WorkspaceId,
        endpoint: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM webhook_deliveries
                  WHERE endpoint_id = ?1 AND workspace_id = ?2 AND (?3 IS NULL OR id < ?3)
                  ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![
                    endpoint.as_bytes(),
                    ws.as_bytes(),
                    before.as_ref().map(|b| b.as_bytes().to_vec()),
                    i64::from(limit.max(1))
                ],
                delivery_from_row,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .collect()
        })
        .await
    }

    async fn resend_delivery(
        &self,
        ws: WorkspaceId,
        endpoint: Uuid,
        id: Uuid,
        now: Timestamp,
        retry_until: Timestamp,
    ) -> Result<Option<WebhookDelivery>> {
        self.write(move |c| {
            let Some(d) = get_delivery(c, ws, endpoint, id)? else {
                return Ok(None);
            };
            let locked: Option<i64> = c
                .prepare_cached("SELECT locked_until FROM webhook_deliveries WHERE id = ?1")?
                .query_row([id.as_bytes()], |r| r.get(0))?;
            if locked.is_some_and(|l| l >= now.0) {
                return Err::<Option<WebhookDelivery>, StoreError>(in_flight());
            }
            c.prepare_cached(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?1,
                        retry_until = ?2, locked_by = NULL, locked_until = NULL
                  WHERE id = ?3",
            )?
            .execute(params![now.0, retry_until.0, d.id.as_bytes()])?;
            get_delivery(c, ws, endpoint, id)
        })
        .await
    }
}
