//! [`ChannelStore`] on PostgreSQL.

use async_trait::async_trait;
use parley_core::channel::{ChannelConnection, ChannelKind};
use parley_core::model::{Message, MessageMeta};
use parley_core::{
    AssistantId, ChannelConnectionId, ConversationId, MessageId, Timestamp, WorkspaceId,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{PostgresStore, is_unique_violation};
use crate::channels::{CHANNEL_COLS, ConfigEdit, MessageEdit, config_text, secrets_text};
use crate::{ChannelStore, Result, StoreError};

fn channel_from_row(r: &Row) -> Result<ChannelConnection> {
    let kind: String = r.get(3);
    let config: String = r.get(5);
    let secrets: String = r.get(6);
    Ok(ChannelConnection {
        id: ChannelConnectionId(r.get(0)),
        workspace_id: WorkspaceId(r.get(1)),
        assistant_id: AssistantId(r.get(2)),
        kind: kind.parse().map_err(StoreError::backend)?,
        external_key: r.get(4),
        config: serde_json::from_str(&config).map_err(StoreError::backend)?,
        secrets: serde_json::from_str(&secrets).map_err(StoreError::backend)?,
        created_at: Timestamp(r.get(7)),
    })
}

/// The error for an update that gives a message a channel id another message has.
fn external_id_taken(e: tokio_postgres::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict {
            code: "external_id_taken",
            message: "another message of the conversation has this channel id".into(),
        }
    } else {
        e.into()
    }
}

impl PostgresStore {
    async fn query_channels(
        &self,
        where_: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<ChannelConnection>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {CHANNEL_COLS} FROM channel_connections WHERE {where_} ORDER BY created_at, id"
            ))
            .await?;
        client
            .query(&stmt, params)
            .await?
            .iter()
            .map(channel_from_row)
            .collect()
    }
}

#[async_trait]
impl ChannelStore for PostgresStore {
    async fn create_channel(&self, ch: &ChannelConnection) -> Result<()> {
        let client = self.pool.get().await?;
        // The assistant check and the insert are one statement, so the assistant is known to
        // be the workspace's.
        let n = client
            .execute(
                "INSERT INTO channel_connections
                     (id, workspace_id, assistant_id, kind, external_key, config, secrets, created_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8
                 WHERE EXISTS (SELECT 1 FROM assistants WHERE id = $3 AND workspace_id = $2)",
                &[
                    &ch.id.0,
                    &ch.workspace_id.0,
                    &ch.assistant_id.0,
                    &ch.kind.as_str(),
                    &ch.external_key,
                    &config_text(ch),
                    &secrets_text(ch),
                    &ch.created_at.0,
                ],
            )
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict {
                        code: "channel_exists",
                        message: format!(
                            "this {} sender ({}) is already connected",
                            ch.kind, ch.external_key
                        ),
                    }
                } else {
                    e.into()
                }
            })?;
        if n == 0 {
            return Err(StoreError::NotFound { what: "assistant" });
        }
        Ok(())
    }

    async fn list_channels(
        &self,
        workspace: WorkspaceId,
        assistant: Option<AssistantId>,
    ) -> Result<Vec<ChannelConnection>> {
        match assistant {
            Some(a) => {
                self.query_channels(
                    "workspace_id = $1 AND assistant_id = $2",
                    &[&workspace.0, &a.0],
                )
                .await
            }
            None => {
                self.query_channels("workspace_id = $1", &[&workspace.0])
                    .await
            }
        }
    }

    async fn get_channel(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
    ) -> Result<Option<ChannelConnection>> {
        Ok(self
            .query_channels("workspace_id = $1 AND id = $2", &[&workspace.0, &id.0])
            .await?
            .pop())
    }

    async fn channel_by_id(&self, id: ChannelConnectionId) -> Result<Option<ChannelConnection>> {
        Ok(self.query_channels("id = $1", &[&id.0]).await?.pop())
    }

    async fn channel_by_key(
        &self,
        kind: ChannelKind,
        external_key: &str,
    ) -> Result<Option<ChannelConnection>> {
        Ok(self
            .query_channels(
                "kind = $1 AND external_key = $2",
                &[&kind.as_str(), &external_key],
            )
            .await?
            .pop())
    }

    async fn update_channel_config(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool> {
        let text = serde_json::to_string(config).map_err(StoreError::backend)?;
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE channel_connections SET config = $3 WHERE id = $1 AND workspace_id = $2",
                &[&id.0, &workspace.0, &text],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_channel(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
    ) -> Result<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM channel_connections WHERE id = $1 AND workspace_id = $2",
                &[&id.0, &workspace.0],
            )
            .await?;
        Ok(n > 0)
    }

    async fn message_by_external_id(
        &self,
        workspace: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<(ConversationId, Message)>> {
        let cols = crate::sql::MESSAGE_COLS
            .split(", ")
            .map(|col| format!("m.{}", col.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {cols}, c.id FROM messages m JOIN conversations c ON c.pk = m.conversation
                 WHERE m.external_id = $1 AND c.workspace_id = $2
                 ORDER BY m.created_at DESC LIMIT 1"
            ))
            .await?;
        match client
            .query_opt(&stmt, &[&external_id, &workspace.0])
            .await?
        {
            Some(r) => {
                let m = super::read::message_from_row(&r)?;
                Ok(Some((ConversationId(r.get(11)), m)))
            }
            None => Ok(None),
        }
    }

    async fn conversation_by_external_id(
        &self,
        workspace: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<ConversationId>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id FROM conversations WHERE workspace_id = $1 AND external_id = $2",
            )
            .await?;
        Ok(client
            .query_opt(&stmt, &[&workspace.0, &external_id])
            .await?
            .map(|r| ConversationId(r.get(0))))
    }

    async fn update_message_channel(
        &self,
        workspace: WorkspaceId,
        message: MessageId,
        external_id: Option<&str>,
        meta: &MessageMeta,
    ) -> Result<bool> {
        let mut client = self.pool.get().await?;
        // The update (which takes the message's row lock) first, then its `message.updated`
        // event (which takes the event log's ordering lock), in one transaction: in one
        // statement the log's lock could come first and deadlock with an edit holding the row.
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE messages SET meta = $3, external_id = coalesce($4, external_id)
                  WHERE id = $1 AND conversation IN
                      (SELECT pk FROM conversations WHERE workspace_id = $2)",
                &[
                    &message.0,
                    &workspace.0,
                    &crate::sql::meta_text(meta),
                    &external_id,
                ],
            )
            .await
            .map_err(external_id_taken)?;
        if n > 0 {
            tx.execute(
                &format!(
                    "WITH u AS (SELECT id, conversation FROM messages WHERE id = $1) {}",
                    super::events::message_updated_tail(2, 3)
                ),
                &[
                    &message.0,
                    &Timestamp::now().0,
                    &crate::events::message_updated_data(message),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        if n > 0 {
            self.events.bump();
        }
        Ok(n > 0)
    }

    async fn edit_message(
        &self,
        workspace: WorkspaceId,
        message: MessageId,
        external_id: Option<&str>,
        edit: MessageEdit,
    ) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The row lock holds off every other edit of this message (on any server) until the
        // transaction ends.
        let row = tx
            .query_opt(
                "SELECT m.content, m.meta FROM messages m JOIN conversations c ON c.pk = m.conversation
                 WHERE m.id = $1 AND c.workspace_id = $2 FOR UPDATE OF m",
                &[&message.0, &workspace.0],
            )
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let mut content: String = row.get(0);
        let mut meta = crate::sql::meta_from_text(row.get::<_, Option<&str>>(1));
        let before = content.clone();
        if !edit(&mut content, &mut meta) {
            return Ok(false);
        }
        let changed = (content != before).then_some(content);
        tx.execute(
            &format!(
                "WITH u AS (
                     UPDATE messages SET meta = $2, external_id = coalesce($3, external_id),
                         content = coalesce($4, content)
                      WHERE id = $1
                     RETURNING id, conversation)
                 {}",
                super::events::message_updated_tail(5, 6)
            ),
            &[
                &message.0,
                &crate::sql::meta_text(&meta),
                &external_id,
                &changed,
                &Timestamp::now().0,
                &crate::events::message_updated_data(message),
            ],
        )
        .await
        .map_err(external_id_taken)?;
        tx.commit().await?;
        self.events.bump();
        Ok(true)
    }

    async fn edit_channel_config(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
        edit: ConfigEdit,
    ) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT config FROM channel_connections WHERE id = $1 AND workspace_id = $2
                 FOR UPDATE",
                &[&id.0, &workspace.0],
            )
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let mut config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(row.get::<_, &str>(0)).map_err(StoreError::backend)?;
        if !edit(&mut config) {
            return Ok(false);
        }
        let text = serde_json::to_string(&config).map_err(StoreError::backend)?;
        tx.execute(
            "UPDATE channel_connections SET config = $2 WHERE id = $1",
            &[&id.0, &text],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
