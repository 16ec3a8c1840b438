//! [`EventStore`] on PostgreSQL, the appends the write transactions make, and the `LISTEN
//! parley_events` connection that wakes this server's listeners when any server commits events.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use parley_core::{AssistantId, ConversationId, Timestamp, WorkspaceId};
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use super::{PostgresStore, refs, to_sql};
use crate::Result;
use crate::events::{EventFilter, EventSignal, EventStore, PendingEvent, StoredEvent};
use crate::sql::Dialect;

/// Appends `events` of `workspace`'s conversations in one statement; the workspace, channel and
/// assistant come from each conversation's row. Call it last in the transaction, after every
/// row lock the transaction takes: its statement trigger takes the log's ordering lock until
/// commit (migration 0012), and waiting for a row lock while holding it could deadlock.
pub(super) async fn append(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    events: &[PendingEvent],
    now: Timestamp,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let convs: Vec<Uuid> = events.iter().map(|e| e.conversation.0).collect();
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (workspace_id, type, conversation_id, channel, assistant_id, created_at, data)
             SELECT c.workspace_id, e.type, c.id, c.channel, c.assistant_id, $1, e.data
               FROM unnest($2::text[], $3::uuid[], $4::text[]) WITH ORDINALITY AS e(type, conv, data, ord)
               JOIN conversations c ON c.id = e.conv AND c.workspace_id = $5
              ORDER BY e.ord",
        )
        .await?;
    tx.execute(&stmt, &[&now.0, &types, &convs, &data, &workspace.0])
        .await?;
    Ok(())
}

/// Appends `conversation.deleted` with the channel and assistant read before the delete (the
/// row is gone by the time the append comes last in the transaction).
pub(super) async fn append_deleted(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    conversation: ConversationId,
    channel: &str,
    assistant: Uuid,
    now: Timestamp,
) -> Result<()> {
    let e = crate::events::deleted_event(conversation);
    tx.execute(
        "INSERT INTO events (workspace_id, type, conversation_id, channel, assistant_id, created_at, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &workspace.0,
            &e.event_type.as_str(),
            &conversation.0,
            &channel,
            &assistant,
            &now.0,
            &e.data,
        ],
    )
    .await?;
    Ok(())
}

/// The `WITH` tail that appends `message.updated` for the rows of a CTE `u(id, conversation)`
/// of updated messages; its parameters `$n` and `$n+1` are the time and the data.
pub(super) fn message_updated_tail(now: usize, data: usize) -> String {
    format!(
        "INSERT INTO events (workspace_id, type, conversation_id, channel, assistant_id, created_at, data)
         SELECT c.workspace_id, 'message.updated', c.id, c.channel, c.assistant_id, ${now}, ${data}
           FROM u JOIN conversations c ON c.pk = u.conversation"
    )
}

fn event_from_row(r: &tokio_postgres::Row) -> Result<StoredEvent> {
    let (event_type, data) = crate::events::decode(r.get(2), r.get(7))?;
    Ok(StoredEvent {
        id: r.get(0),
        workspace_id: WorkspaceId(r.get(1)),
        event_type,
        conversation_id: r.get::<_, Option<Uuid>>(3).map(ConversationId),
        channel: r.get::<_, Option<&str>>(4).and_then(|c| c.parse().ok()),
        assistant_id: r.get::<_, Option<Uuid>>(5).map(AssistantId),
        created_at: Timestamp(r.get(6)),
        data,
    })
}

/// Keeps one connection LISTENing on `parley_events` and bumps `signal` on every notification,
/// and once after every (re)connect (notifications sent while disconnected are lost, so
/// listeners re-read the log). Ends when `stop` is dropped (the store is).
pub(super) async fn listen(
    config: tokio_postgres::Config,
    signal: Arc<EventSignal>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let run = listen_once(&config, &signal);
        tokio::select! {
            _ = &mut stop => return,
            r = run => {
                match r {
                    Ok(()) => tracing::info!("events: the LISTEN connection closed; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "events: the LISTEN connection failed; reconnecting"),
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    signal: &Arc<EventSignal>,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(NoTls).await?;
    let wake = signal.clone();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => wake.bump(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute("LISTEN parley_events").await?;
    // Anything committed while this connection was down: listeners read the log again.
    signal.bump();
    let r = driver.await;
    drop(client);
    match r {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

impl PostgresStore {
    /// [`EventStore::events_after`] (one workspace) or [`EventStore::events_since`] (`None`).
    async fn read_events(
        &self,
        workspace: Option<WorkspaceId>,
        after_id: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let sql =
            crate::events::events_after_sql(Dialect::Postgres, workspace, after_id, filter, limit);
        let client = self.pool.get().await?;
        let values = to_sql(&sql.params);
        let stmt = client.prepare_cached(&sql.text).await?;
        client
            .query(&stmt, &refs(&values))
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn events_after(
        &self,
        workspace: WorkspaceId,
        after_id: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        self.read_events(Some(workspace), after_id, filter, limit)
            .await
    }

    async fn events_since(&self, after_id: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        self.read_events(None, after_id, &EventFilter::default(), limit)
            .await
    }

    async fn latest_event_id(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one(
                "SELECT greatest(coalesce((SELECT max(id) FROM events), 0),
                                 (SELECT pruned_through FROM event_log_state))",
                &[],
            )
            .await?
            .get(0))
    }

    async fn pruned_through(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one("SELECT pruned_through FROM event_log_state", &[])
            .await?
            .get(0))
    }

    async fn prune_before(&self, before: Timestamp) -> Result<u64> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE event_log_state SET pruned_through = greatest(pruned_through,
                 coalesce((SELECT max(id) FROM events WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.enabled AND w.workspace_id = events.workspace_id AND w.cursor < events.id)), 0))",
            &[&before.0],
        )
        .await?;
        let n = tx
            .execute("DELETE FROM events WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.enabled AND w.workspace_id = events.workspace_id AND w.cursor < events.id)", &[&before.0])
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.start_listening();
        self.events.subscribe()
    }
}
