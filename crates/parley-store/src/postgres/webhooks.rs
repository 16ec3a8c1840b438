//! [`WebhookStore`] on PostgreSQL: servers sharing the database claim due deliveries with
//! `FOR UPDATE SKIP LOCKED` (each goes to one of them, none waits for another), and take events
//! with a compare-and-set on the endpoint's cursor (a second server taking the same events at
//! the same moment writes nothing).

use async_trait::async_trait;
use parley_core::{Timestamp, WorkspaceId};
use tokio_postgres::Row;
use uuid::Uuid;

use super::PostgresStore;
use crate::Result;
use crate::webhooks::{
    DELIVERY_COLS, DeliveryAttempt, ENDPOINT_COLS, NewWebhookDelivery, WebhookDelivery,
    WebhookEndpoint, WebhookEndpointPatch, WebhookStore, in_flight, parse_types, status_of,
    types_json,
};

fn endpoint_from_row(r: &Row) -> WebhookEndpoint {
    WebhookEndpoint {
        id: r.get(0),
        workspace_id: WorkspaceId(r.get(1)),
        url: r.get(2),
        description: r.get(3),
        event_types: parse_types(r.get(4)),
        enabled: r.get(5),
        secret_sealed: r.get(6),
        cursor: r.get(7),
        created_at: Timestamp(r.get(8)),
        updated_at: Timestamp(r.get(9)),
    }
}

fn delivery_from_row(r: &Row) -> Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: r.get(0),
        endpoint_id: r.get(1),
        workspace_id: WorkspaceId(r.get(2)),
        event_id: r.get(3),
        event_type: r.get(4),
        body: r.get(5),
        status: status_of(r.get(6))?,
        attempts: r.get::<_, i64>(7).max(0) as u32,
        next_attempt_at: r.get::<_, Option<i64>>(8).map(Timestamp),
        retry_until: Timestamp(r.get(9)),
        last_attempt_at: r.get::<_, Option<i64>>(10).map(Timestamp),
        http_status: r
            .get::<_, Option<i64>>(11)
            .and_then(|s| u16::try_from(s).ok()),
        response_ms: r.get(12),
        response_excerpt: r.get(13),
        error: r.get(14),
        created_at: Timestamp(r.get(15)),
    })
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, e: &WebhookEndpoint) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO webhook_endpoints ({ENDPOINT_COLS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                &[
                    &e.id,
                    &e.workspace_id.0,
                    &e.url,
                    &e.description,
                    &types_json(&e.event_types),
                    &e.enabled,
                    &e.secret_sealed,
                    &e.cursor,
                    &e.created_at.0,
                    &e.updated_at.0,
                ],
            )
            .await?;
        Ok(())
    }

    async fn list_webhooks(&self, ws: WorkspaceId) -> Result<Vec<WebhookEndpoint>> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                &format!(
                    "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE workspace_id = $1
                      ORDER BY created_at, id"
                ),
                &[&ws.0],
            )
            .await?
            .iter()
            .map(endpoint_from_row)
            .collect())
    }

    async fn get_webhook(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<WebhookEndpoint>> {
        let client = self.pool.get().await?;
        Ok(client
            .query_opt(
                &format!(
                    "SELECT {ENDPOINT_COLS} FROM webhook_endpoints
                      WHERE id = $1 AND workspace_id = $2"
                ),
                &[&id, &ws.0],
            )
            .await?
            .as_ref()
            .map(endpoint_from_row))
    }

    async fn update_webhook(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        p: &WebhookEndpointPatch,
        now: Timestamp,
    ) -> Result<Option<WebhookEndpoint>> {
        let client = self.pool.get().await?;
        // The cursor moves only when this update enables a disabled endpoint (`NOT enabled`
        // is read from the row before the update).
        Ok(client
            .query_opt(
                &format!(
                    "UPDATE webhook_endpoints SET url = coalesce($1, url),
                            description = coalesce($2, description),
                            event_types = coalesce($3, event_types),
                            enabled = coalesce($4, enabled), secret = coalesce($5, secret),
                            cursor = CASE WHEN $4 AND NOT enabled THEN coalesce($6, cursor)
                                          ELSE cursor END,
                            updated_at = $7
                      WHERE id = $8 AND workspace_id = $9
                  RETURNING {ENDPOINT_COLS}"
                ),
                &[
                    &p.url,
                    &p.description,
                    &p.event_types.as_deref().map(types_json),
                    &p.enabled,
                    &p.secret_sealed,
                    &p.cursor,
                    &now.0,
                    &id,
                    &ws.0,
                ],
            )
            .await?
            .as_ref()
            .map(endpoint_from_row))
    }

    async fn delete_webhook(&self, ws: WorkspaceId, id: Uuid) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM webhook_endpoints WHERE id = $1 AND workspace_id = $2",
                &[&id, &ws.0],
            )
            .await?;
        if n > 0 {
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE endpoint_id = $1",
                &[&id],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn enabled_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                &format!("SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE enabled ORDER BY id"),
                &[],
            )
            .await?
            .iter()
            .map(endpoint_from_row)
            .collect())
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
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "UPDATE webhook_endpoints SET cursor = $1
                  WHERE id = $2 AND cursor = $3 AND enabled RETURNING workspace_id",
                &[&to, &endpoint, &from],
            )
            .await?
        else {
            return Ok(false);
        };
        let ws: Uuid = row.get(0);
        let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
        let events: Vec<i64> = deliveries.iter().map(|d| d.event_id).collect();
        let types: Vec<&str> = deliveries.iter().map(|d| d.event_type.as_str()).collect();
        let bodies: Vec<&str> = deliveries.iter().map(|d| d.body.as_str()).collect();
        tx.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, workspace_id, event_id, event_type,
                    body, status, attempts, next_attempt_at, retry_until, created_at)
             SELECT d.id, $1, $2, d.event_id, d.event_type, d.body, 'pending', 0, $3, $4, $3
               FROM unnest($5::uuid[], $6::bigint[], $7::text[], $8::text[])
                    AS d(id, event_id, event_type, body)
             ON CONFLICT (endpoint_id, event_id, event_type) DO NOTHING",
            &[
                &endpoint,
                &ws,
                &now.0,
                &retry_until.0,
                &ids,
                &events,
                &types,
                &bodies,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_deliveries(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        let client = self.pool.get().await?;
        // SKIP LOCKED: rows another server is claiming right now are passed over, not waited
        // for, so each due delivery goes to one server.
        client
            .query(
                &format!(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, locked_by = $1,
                            locked_until = $2
                      WHERE id IN (
                          SELECT d.id FROM webhook_deliveries d
                           WHERE d.status = 'pending' AND d.next_attempt_at <= $3
                             AND (d.locked_until IS NULL OR d.locked_until < $3)
                             AND EXISTS (SELECT 1 FROM webhook_endpoints e
                                          WHERE e.id = d.endpoint_id AND e.enabled)
                           ORDER BY d.next_attempt_at, d.id LIMIT $4
                           FOR UPDATE SKIP LOCKED)
                      RETURNING {DELIVERY_COLS}"
                ),
                &[&worker, &lease_until.0, &now.0, &(limit as i64)],
            )
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    async fn record_attempt(&self, id: Uuid, worker: &str, a: &DeliveryAttempt) -> Result<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2,
                        last_attempt_at = $3, http_status = $4, response_ms = $5,
                        response_excerpt = $6, error = $7, locked_by = NULL, locked_until = NULL
                  WHERE id = $8 AND locked_by = $9",
                &[
                    &a.status.as_str(),
                    &a.next_attempt_at.map(|t| t.0),
                    &a.attempted_at.0,
                    &a.http_status.map(i64::from),
                    &a.response_ms,
                    &a.response_excerpt,
                    &a.error,
                    &id,
                    &worker,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn list_deliveries(
        &self,
        ws: WorkspaceId,
        endpoint: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        let client = self.pool.get().await?;
        client
            .query(
                &format!(
                    "SELECT {DELIVERY_COLS} FROM webhook_deliveries
                      WHERE endpoint_id = $1 AND workspace_id = $2
                        AND ($3::uuid IS NULL OR id < $3)
                      ORDER BY id DESC LIMIT $4"
                ),
                &[&endpoint, &ws.0, &before, &i64::from(limit.max(1))],
            )
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    async fn resend_delivery(
        &self,
        ws: WorkspaceId,
        endpoint: Uuid,
        id: Uuid,
        now: Timestamp,
        retry_until: Timestamp,
    ) -> Result<Option<WebhookDelivery>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT locked_until FROM webhook_deliveries
                  WHERE id = $1 AND endpoint_id = $2 AND workspace_id = $3 FOR UPDATE",
                &[&id, &endpoint, &ws.0],
            )
            .await?
        else {
            return Ok(None);
        };
        if row.get::<_, Option<i64>>(0).is_some_and(|l| l >= now.0) {
            return Err(in_flight());
        }
        let row = tx
            .query_one(
                &format!(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1,
                            retry_until = $2, locked_by = NULL, locked_until = NULL
                      WHERE id = $3 RETURNING {DELIVERY_COLS}"
                ),
                &[&now.0, &retry_until.0, &id],
            )
            .await?;
        let d = delivery_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(d))
    }
}
