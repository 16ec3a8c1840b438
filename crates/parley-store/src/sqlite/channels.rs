//! [`ChannelStore`] on SQLite.

use async_trait::async_trait;
use parley_core::channel::{ChannelConnection, ChannelKind};
use parley_core::model::{Message, MessageMeta};
use parley_core::{
    AssistantId, ChannelConnectionId, ConversationId, MessageId, Timestamp, WorkspaceId,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use crate::channels::{CHANNEL_COLS, ConfigEdit, MessageEdit, config_text, secrets_text};
use crate::{ChannelStore, Result, StoreError};

fn bad(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("invalid {what}").into(),
    )
}

fn channel_from_row(r: &Row<'_>) -> rusqlite::Result<ChannelConnection> {
    let id: Vec<u8> = r.get(0)?;
    let ws: Vec<u8> = r.get(1)?;
    let assistant: Vec<u8> = r.get(2)?;
    let kind: String = r.get(3)?;
    let config: String = r.get(5)?;
    let secrets: String = r.get(6)?;
    Ok(ChannelConnection {
        id: ChannelConnectionId::from_slice(&id).ok_or_else(|| bad(0, "id"))?,
        workspace_id: WorkspaceId::from_slice(&ws).ok_or_else(|| bad(1, "id"))?,
        assistant_id: AssistantId::from_slice(&assistant).ok_or_else(|| bad(2, "id"))?,
        kind: kind.parse().map_err(|_| bad(3, "channel kind"))?,
        external_key: r.get(4)?,
        config: serde_json::from_str(&config).map_err(|_| bad(5, "config"))?,
        secrets: serde_json::from_str(&secrets).map_err(|_| bad(6, "secrets"))?,
        created_at: Timestamp(r.get(7)?),
    })
}

fn create(c: &Connection, ch: &ChannelConnection) -> Result<()> {
    let assistant_ok = c
        .prepare_cached("SELECT 1 FROM assistants WHERE id = ?1 AND workspace_id = ?2")?
        .exists([ch.assistant_id.as_bytes(), ch.workspace_id.as_bytes()])?;
    if !assistant_ok {
        return Err(StoreError::NotFound { what: "assistant" });
    }
    c.execute(
        "INSERT INTO channel_connections
             (id, workspace_id, assistant_id, kind, external_key, config, secrets, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            ch.id.as_bytes(),
            ch.workspace_id.as_bytes(),
            ch.assistant_id.as_bytes(),
            ch.kind.as_str(),
            ch.external_key,
            config_text(ch),
            secrets_text(ch),
            ch.created_at.0
        ],
    )
    .map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict {
                code: "channel_exists",
                message: format!(
                    "this {} sender ({}) is already connected",
                    ch.kind, ch.external_key
                ),
            }
        }
        _ => e.into(),
    })?;
    Ok(())
}

fn query_channels(
    c: &Connection,
    where_: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<ChannelConnection>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {CHANNEL_COLS} FROM channel_connections WHERE {where_} ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map(params, channel_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn update_message(
    c: &Connection,
    ws: WorkspaceId,
    id: MessageId,
    external_id: Option<&str>,
    meta: &MessageMeta,
) -> Result<bool> {
    let n = c
        .execute(
            "UPDATE messages SET meta = ?3, external_id = coalesce(?4, external_id)
             WHERE id = ?1 AND conversation IN
                 (SELECT pk FROM conversations WHERE workspace_id = ?2)",
            params![
                id.as_bytes(),
                ws.as_bytes(),
                crate::sql::meta_text(meta),
                external_id
            ],
        )
        .map_err(external_id_taken)?;
    if n > 0 {
        super::events::append_message_updated(c, ws, id)?;
    }
    Ok(n > 0)
}

fn external_id_taken(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict {
                code: "external_id_taken",
                message: "another message of the conversation has this channel id".into(),
            }
        }
        _ => e.into(),
    }
}

/// [`ChannelStore::edit_message`] on the writer connection: the read and the write are one
/// job of the single writer, so no other edit comes between them.
fn edit_message(
    c: &Connection,
    ws: WorkspaceId,
    id: MessageId,
    external_id: Option<&str>,
    edit: MessageEdit,
) -> Result<bool> {
    let row: Option<(String, Option<String>)> = c
        .prepare_cached(
            "SELECT m.content, m.meta FROM messages m JOIN conversations c ON c.pk = m.conversation
             WHERE m.id = ?1 AND c.workspace_id = ?2",
        )?
        .query_row(params![id.as_bytes(), ws.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((mut content, meta)) = row else {
        return Ok(false);
    };
    let mut meta = crate::sql::meta_from_text(meta.as_deref());
    let before = content.clone();
    if !edit(&mut content, &mut meta) {
        return Ok(false);
    }
    c.execute(
        "UPDATE messages SET meta = ?2, external_id = coalesce(?3, external_id) WHERE id = ?1",
        params![id.as_bytes(), crate::sql::meta_text(&meta), external_id],
    )
    .map_err(external_id_taken)?;
    // Only a changed text is written: the search index follows `UPDATE OF content`.
    if content != before {
        c.execute(
            "UPDATE messages SET content = ?2 WHERE id = ?1",
            params![id.as_bytes(), content],
        )?;
    }
    super::events::append_message_updated(c, ws, id)?;
    Ok(true)
}

fn edit_config(
    c: &Connection,
    ws: WorkspaceId,
    id: ChannelConnectionId,
    edit: ConfigEdit,
) -> Result<bool> {
    let text: Option<String> = c
        .prepare_cached(
            "SELECT config FROM channel_connections WHERE id = ?1 AND workspace_id = ?2",
        )?
        .query_row(params![id.as_bytes(), ws.as_bytes()], |r| r.get(0))
        .optional()?;
    let Some(text) = text else {
        return Ok(false);
    };
    let mut config: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(StoreError::backend)?;
    if !edit(&mut config) {
        return Ok(false);
    }
    let text = serde_json::to_string(&config).map_err(StoreError::backend)?;
    c.execute(
        "UPDATE channel_connections SET config = ?2 WHERE id = ?1",
        params![id.as_bytes(), text],
    )?;
    Ok(true)
}

#[async_trait]
impl ChannelStore for SqliteStore {
    async fn create_channel(&self, connection: &ChannelConnection) -> Result<()> {
        let ch = connection.clone();
        self.write(move |c| create(c, &ch)).await
    }

    async fn list_channels(
        &self,
        workspace: WorkspaceId,
        assistant: Option<AssistantId>,
    ) -> Result<Vec<ChannelConnection>> {
        self.read(move |c| match assistant {
            Some(a) => query_channels(
                c,
                "workspace_id = ?1 AND assistant_id = ?2",
                &[workspace.as_bytes(), a.as_bytes()],
            ),
            None => query_channels(c, "workspace_id = ?1", &[workspace.as_bytes()]),
        })
        .await
    }

    async fn get_channel(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
    ) -> Result<Option<ChannelConnection>> {
        self.read(move |c| {
            Ok(query_channels(
                c,
                "workspace_id = ?1 AND id = ?2",
                &[workspace.as_bytes(), id.as_bytes()],
            )?
            .pop())
        })
        .await
    }

    async fn channel_by_id(&self, id: ChannelConnectionId) -> Result<Option<ChannelConnection>> {
        self.read(move |c| Ok(query_channels(c, "id = ?1", &[id.as_bytes()])?.pop()))
            .await
    }

    async fn channel_by_key(
        &self,
        kind: ChannelKind,
        external_key: &str,
    ) -> Result<Option<ChannelConnection>> {
        let key = external_key.to_owned();
        self.read(move |c| {
            Ok(query_channels(
                c,
                "kind = ?1 AND external_key = ?2",
                &[&kind.as_str(), &key],
            )?
            .pop())
        })
        .await
    }

    async fn update_channel_config(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool> {
        let text = serde_json::to_string(config).map_err(StoreError::backend)?;
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE channel_connections SET config = ?3 WHERE id = ?1 AND workspace_id = ?2",
                params![id.as_bytes(), workspace.as_bytes(), text],
            )? > 0)
        })
        .await
    }

    async fn delete_channel(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
    ) -> Result<bool> {
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM channel_connections WHERE id = ?1 AND workspace_id = ?2",
                params![id.as_bytes(), workspace.as_bytes()],
            )? > 0)
        })
        .await
    }

    async fn message_by_external_id(
        &self,
        workspace: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<(ConversationId, Message)>> {
        let ext = external_id.to_owned();
        self.read(move |c| {
            let cols = crate::sql::MESSAGE_COLS
                .split(", ")
                .map(|col| format!("m.{}", col.trim()))
                .collect::<Vec<_>>()
                .join(", ");
            let row = c
                .prepare_cached(&format!(
                    "SELECT {cols}, c.id FROM messages m JOIN conversations c ON c.pk = m.conversation
                     WHERE m.external_id = ?1 AND c.workspace_id = ?2
                     ORDER BY m.created_at DESC LIMIT 1"
                ))?
                .query_row(params![ext, workspace.as_bytes()], |r| {
                    let m = super::read::message_from_row(r)?;
                    let conv: Vec<u8> = r.get(11)?;
                    Ok((m, conv))
                })
                .optional()?;
            Ok(match row {
                Some((m, conv)) => ConversationId::from_slice(&conv).map(|id| (id, m)),
                None => None,
            })
        })
        .await
    }

    async fn conversation_by_external_id(
        &self,
        workspace: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<ConversationId>> {
        let ext = external_id.to_owned();
        self.read(move |c| {
            let id: Option<Vec<u8>> = c
                .prepare_cached(
                    "SELECT id FROM conversations WHERE workspace_id = ?1 AND external_id = ?2",
                )?
                .query_row(params![workspace.as_bytes(), ext], |r| r.get(0))
                .optional()?;
            Ok(id.and_then(|b| ConversationId::from_slice(&b)))
        })
        .await
    }

    async fn update_message_channel(
        &self,
        workspace: WorkspaceId,
        message: MessageId,
        external_id: Option<&str>,
        meta: &MessageMeta,
    ) -> Result<bool> {
        let (ext, meta) = (external_id.map(str::to_owned), meta.clone());
        let wrote = self
            .write(move |c| update_message(c, workspace, message, ext.as_deref(), &meta))
            .await?;
        if wrote {
            self.events.bump();
        }
        Ok(wrote)
    }

    async fn edit_message(
        &self,
        workspace: WorkspaceId,
        message: MessageId,
        external_id: Option<&str>,
        edit: MessageEdit,
    ) -> Result<bool> {
        let ext = external_id.map(str::to_owned);
        let wrote = self
            .write(move |c| edit_message(c, workspace, message, ext.as_deref(), edit))
            .await?;
        if wrote {
            self.events.bump();
        }
        Ok(wrote)
    }

    async fn edit_channel_config(
        &self,
        workspace: WorkspaceId,
        id: ChannelConnectionId,
        edit: ConfigEdit,
    ) -> Result<bool> {
        self.write(move |c| edit_config(c, workspace, id, edit))
            .await
    }
}
