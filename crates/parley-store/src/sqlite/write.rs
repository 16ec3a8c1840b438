//! Writes, run on the writer connection inside a job's savepoint (see `mod.rs`).

use std::collections::HashSet;

use parley_core::model::{Assistant, AssistantRef, ConversationPatch, Variable};
use parley_core::{AssistantId, AssistantMode, ConversationId, MessageId, Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use uuid::Uuid;

use super::read::to_value;
use crate::counters::Counters;
use crate::sql::Dialect;
use crate::{
    IngestBatch, IngestOutcome, IngestTarget, MessageOutcome, NewAssistant, NewConversation,
    NewMessage, Result, StoreError,
};

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Maps a unique-constraint violation to `Conflict { code, message }`, any other error to a
/// backend error.
pub(super) fn conflict_on_unique(
    code: &'static str,
    message: impl FnOnce() -> String,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    crate::conflict_on_unique(is_unique_violation, code, message)
}

/// `NotFound("workspace")` unless the workspace exists.
pub(super) fn ensure_workspace(c: &Connection, workspace: WorkspaceId) -> Result<()> {
    let exists = c
        .prepare_cached("SELECT 1 FROM workspaces WHERE id = ?1")?
        .exists([workspace.as_bytes()])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound { what: "workspace" })
    }
}

pub(super) fn create_assistant(
    c: &Connection,
    workspace: WorkspaceId,
    input: &NewAssistant,
) -> Result<Assistant> {
    let a = crate::assistants::new_assistant(input);
    insert_assistant(c, workspace, &a, false)?;
    insert_version(c, &a)?;
    Ok(a)
}

fn assistant_exists(a: &Assistant) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    conflict_on_unique("assistant_exists", move || {
        format!(
            "the workspace already has an assistant named {:?} for company {:?}",
            a.name, a.company
        )
    })
}

pub(super) fn insert_assistant(
    c: &Connection,
    workspace: WorkspaceId,
    a: &Assistant,
    unless_exists: bool,
) -> Result<usize> {
    let conflict = if unless_exists {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    c.prepare_cached(&format!(
        "INSERT INTO assistants (id, workspace_id, name, company, mode, created_at, updated_at,
                                 version, settings)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9){conflict}"
    ))?
    .execute(params![
        a.id.as_bytes(),
        workspace.as_bytes(),
        a.name,
        a.company,
        a.mode.as_str(),
        a.created_at.0,
        a.updated_at.0,
        a.version,
        crate::sql::settings_text(&a.settings),
    ])
    .map_err(assistant_exists(a))
}

/// Keeps `a`'s current state as its version `a.version`.
pub(super) fn insert_version(c: &Connection, a: &Assistant) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO assistant_versions (assistant_id, version, name, company, mode, settings, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        a.id.as_bytes(),
        a.version,
        a.name,
        a.company,
        a.mode.as_str(),
        crate::sql::settings_text(&a.settings),
        a.updated_at.0,
    ])?;
    Ok(())
}

pub(super) fn update_assistant(
    c: &Connection,
    workspace: WorkspaceId,
    id: AssistantId,
    input: &NewAssistant,
    expected_version: Option<i64>,
) -> Result<Option<Assistant>> {
    let Some(old) = super::read::get_assistant(c, workspace, id)? else {
        return Ok(None);
    };
    let a = crate::sql::next_assistant(&old, input, expected_version)?;
    let update = crate::sql::assistant_update(Dialect::Sqlite, &a);
    c.prepare_cached(&update.text)?
        .execute(params_from_iter(update.params.iter().map(to_value)))
        .map_err(assistant_exists(&a))?;
    if a.name != old.name {
        let rename = crate::sql::assistant_rename(Dialect::Sqlite, &a);
        c.prepare_cached(&rename.text)?
            .execute(params_from_iter(rename.params.iter().map(to_value)))?;
    }
    insert_version(c, &a)?;
    Ok(Some(a))
}

/// Finds the assistant a conversation names, creating it by name when needed.
/// Returns (id, name).
fn resolve_assistant(
    c: &Connection,
    workspace: WorkspaceId,
    r: &AssistantRef,
) -> Result<(AssistantId, String)> {
    if let Some(id) = r.id {
        let name: Option<String> = c
            .prepare_cached("SELECT name FROM assistants WHERE id = ?1 AND workspace_id = ?2")?
            .query_row(params![id.as_bytes(), workspace.as_bytes()], |row| {
                row.get(0)
            })
            .optional()?;
        return name
            .map(|n| (id, n))
            .ok_or(StoreError::NotFound { what: "assistant" });
    }
    let name = r.name.as_deref().unwrap_or_default().trim().to_owned();
    let company = r.company.as_deref().unwrap_or_default().trim().to_owned();
    let found: Option<Vec<u8>> = c
        .prepare_cached(
            "SELECT id FROM assistants WHERE workspace_id = ?1 AND name = ?2 AND company = ?3",
        )?
        .query_row(params![workspace.as_bytes(), name, company], |row| {
            row.get(0)
        })
        .optional()?;
    if let Some(bytes) = found {
        let id = AssistantId::from_slice(&bytes)
            .ok_or_else(|| StoreError::backend("bad assistant id"))?;
        return Ok((id, name));
    }
    let created = create_assistant(
        c,
        workspace,
        &NewAssistant {
            name: name.clone(),
            company,
            mode: AssistantMode::Active,
            settings: Default::default(),
        },
    )?;
    Ok((created.id, name))
}

fn load_counters(c: &Connection, pk: i64) -> Result<Counters> {
    Ok(c.prepare_cached(
        "SELECT stored_message_count, message_count, last_message_at, last_inbound_at,
                last_message_preview, prompt_tokens, completion_tokens, cost_nanousd,
                unpriced_message_count
         FROM conversations WHERE pk = ?1",
    )?
    .query_row([pk], |r| {
        Ok(Counters {
            pk,
            stored: r.get(0)?,
            visible: r.get(1)?,
            last_message_at: r.get(2)?,
            last_inbound_at: r.get(3)?,
            preview: r.get(4)?,
            latest: None,
            prompt_tokens: r.get(5)?,
            completion_tokens: r.get(6)?,
            cost: r.get(7)?,
            unpriced: r.get(8)?,
            voice: false,
        })
    })?)
}

fn save_counters(c: &Connection, k: &mut Counters, now: Timestamp) -> Result<()> {
    k.finish();
    c.prepare_cached(
        "UPDATE conversations SET
             stored_message_count = ?2, message_count = ?3, last_message_at = ?4,
             last_inbound_at = ?5, last_message_preview = ?6, prompt_tokens = ?7,
             completion_tokens = ?8, cost_nanousd = ?9, unpriced_message_count = ?10,
             updated_at = ?11, has_voice = MAX(has_voice, ?12)
         WHERE pk = ?1",
    )?
    .execute(params![
        k.pk,
        k.stored,
        k.visible,
        k.last_message_at,
        k.last_inbound_at,
        k.preview,
        k.prompt_tokens,
        k.completion_tokens,
        k.cost,
        k.unpriced,
        now.0,
        k.voice
    ])?;
    Ok(())
}

/// Looks up a conversation of the workspace by id: (pk, workspace matches).
fn conversation_pk_any_workspace(
    c: &Connection,
    id: ConversationId,
) -> Result<Option<(i64, Vec<u8>)>> {
    Ok(
        c.prepare_cached("SELECT pk, workspace_id FROM conversations WHERE id = ?1")?
            .query_row([id.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    )
}

pub(super) fn conversation_pk(
    c: &Connection,
    workspace: WorkspaceId,
    id: ConversationId,
) -> Result<Option<i64>> {
    Ok(
        c.prepare_cached("SELECT pk FROM conversations WHERE id = ?1 AND workspace_id = ?2")?
            .query_row(params![id.as_bytes(), workspace.as_bytes()], |r| r.get(0))
            .optional()?,
    )
}

fn upsert_variables(c: &Connection, pk: i64, vars: &[Variable], now: Timestamp) -> Result<()> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO variables (conversation, key, value, source, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (conversation, key) DO UPDATE SET
             value = excluded.value, source = excluded.source, updated_at = excluded.updated_at",
    )?;
    for v in vars {
        stmt.execute(params![pk, v.key, v.value, v.source.as_str(), now.0])?;
    }
    Ok(())
}

/// Creates the conversation, or finds the one its client id or external id names.
/// Returns (pk, id, created).
fn create_or_find(
    c: &Connection,
    workspace: WorkspaceId,
    nc: &NewConversation,
    now: Timestamp,
) -> Result<(i64, ConversationId, bool)> {
    if nc.id_from_client
        && let Some((pk, ws)) = conversation_pk_any_workspace(c, nc.id)?
    {
        if ws.as_slice() == workspace.as_bytes() {
            return Ok((pk, nc.id, false));
        }
        return Err(StoreError::Conflict {
            code: "id_conflict",
            message: format!(
                "conversation id {} is already used; omit `id` to get a new one",
                nc.id
            ),
        });
    }
    if let Some(ext) = &nc.external_id {
        let found: Option<(i64, Vec<u8>)> = c
            .prepare_cached(
                "SELECT pk, id FROM conversations WHERE workspace_id = ?1 AND external_id = ?2",
            )?
            .query_row(params![workspace.as_bytes(), ext], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((pk, id)) = found {
            let id = ConversationId::from_slice(&id)
                .ok_or_else(|| StoreError::backend("bad conversation id"))?;
            return Ok((pk, id, false));
        }
    }
    let (assistant_id, assistant_name) = resolve_assistant(c, workspace, &nc.assistant)?;
    let memory = serde_json::to_string(&nc.memory).map_err(StoreError::backend)?;
    let (rating, comment, rated_at) = match &nc.rating {
        Some((r, at)) => (r.score as i64, r.comment.clone(), Some(at.0)),
        None => (0, None, None),
    };
    c.prepare_cached(
        "INSERT INTO conversations (
             id, workspace_id, assistant_id, assistant_name, external_id, channel, status,
             contact, session_id, started_at, ended_at, last_message_at, rating, rating_comment,
             rated_at, sentiment, sentiment_score, end_reason, converted, memory, created_at,
             updated_at, assistant_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?20, ?21)",
    )?
    .execute(params![
        nc.id.as_bytes(),
        workspace.as_bytes(),
        assistant_id.as_bytes(),
        assistant_name,
        nc.external_id,
        nc.channel.as_str(),
        nc.status.as_str(),
        nc.contact,
        nc.session_id,
        nc.started_at.0,
        nc.ended_at.map(|t| t.0),
        rating,
        comment,
        rated_at,
        nc.sentiment.as_ref().map(|s| s.label.as_str()),
        nc.sentiment.as_ref().and_then(|s| s.score),
        nc.end_reason,
        nc.converted,
        memory,
        now.0,
        nc.assistant_version,
    ])
    .map_err(conflict_on_unique("id_conflict", || format!("conversation id {} is already used", nc.id)))?;
    let pk = c.last_insert_rowid();
    upsert_variables(c, pk, &nc.variables, now)?;
    c.prepare_cached(
        "UPDATE workspaces SET conversation_count = conversation_count + 1 WHERE id = ?1",
    )?
    .execute([workspace.as_bytes()])?;
    Ok((pk, nc.id, true))
}

/// The message already stored that `m` repeats, if any.
fn find_duplicate(c: &Connection, pk: i64, m: &NewMessage) -> Result<Option<MessageId>> {
    if m.id_from_client {
        let found: Option<i64> = c
            .prepare_cached("SELECT conversation FROM messages WHERE id = ?1")?
            .query_row([m.id.as_bytes()], |r| r.get(0))
            .optional()?;
        match found {
            Some(conv) if conv == pk => return Ok(Some(m.id)),
            Some(_) => {
                return Err(StoreError::Conflict {
                    code: "id_conflict",
                    message: format!("message id {} belongs to another conversation", m.id),
                });
            }
            None => {}
        }
    }
    if let Some(ext) = &m.external_id {
        let found: Option<Vec<u8>> = c
            .prepare_cached("SELECT id FROM messages WHERE conversation = ?1 AND external_id = ?2")?
            .query_row(params![pk, ext], |r| r.get(0))
            .optional()?;
        if let Some(id) = found {
            return Ok(MessageId::from_slice(&id));
        }
    }
    Ok(None)
}

/// Inserts one message; returns its key when it is visible (and so must be indexed for search).
fn append(c: &Connection, k: &mut Counters, m: &NewMessage) -> Result<Option<i64>> {
    let (seq, visible_seq) = k.append(m);
    let (prompt, completion) = match m.usage {
        Some(u) => (Some(u.prompt_tokens), Some(u.completion_tokens)),
        None => (None, None),
    };
    c.prepare_cached(
        "INSERT INTO messages (id, conversation, seq, visible_seq, role, content, created_at,
             external_id, model, prompt_tokens, completion_tokens, cost_nanousd, cost_source, meta)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        m.id.as_bytes(),
        k.pk,
        seq,
        visible_seq,
        m.role.as_str(),
        m.content,
        m.created_at.0,
        m.external_id,
        m.model,
        prompt,
        completion,
        m.cost_nanousd,
        m.cost_source.map(|s| s.as_str()),
        crate::sql::meta_text(&m.meta),
    ])
    .map_err(conflict_on_unique("id_conflict", || {
        format!("message id {} is already used", m.id)
    }))?;
    Ok(visible_seq.map(|_| c.last_insert_rowid()))
}

/// Adds the rows written by one ingest job to the search indexes, in one statement per index
/// (see migration 0003 for why not per row).
fn index_for_search(c: &Connection, conversations: Vec<i64>, messages: Vec<i64>) -> Result<()> {
    let list = |pks: Vec<i64>| {
        std::rc::Rc::new(
            pks.into_iter()
                .map(rusqlite::types::Value::Integer)
                .collect::<Vec<_>>(),
        )
    };
    if !messages.is_empty() {
        c.prepare_cached(
            "INSERT INTO messages_fts (rowid, content) SELECT pk, content FROM messages WHERE pk IN rarray(?1)",
        )?
        .execute([list(messages)])?;
    }
    if !conversations.is_empty() {
        c.prepare_cached(
            "INSERT INTO conversations_fts (rowid, session_id, contact, assistant_name)
             SELECT pk, session_id, contact, assistant_name FROM conversations WHERE pk IN rarray(?1)",
        )?
        .execute([list(conversations)])?;
    }
    Ok(())
}

/// The client-given ids of `batches` that another workspace uses: (conversation ids, message
/// ids). See [`crate::scoped_ids`].
fn foreign_client_ids(
    c: &Connection,
    workspace: WorkspaceId,
    batches: &[IngestBatch],
) -> Result<(HashSet<Uuid>, HashSet<Uuid>)> {
    let (conversations, messages) = crate::scoped_ids::client_ids(batches);
    let found = |sql: &str, ids: Vec<Uuid>| -> Result<HashSet<Uuid>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let list = std::rc::Rc::new(
            ids.iter()
                .map(|id| rusqlite::types::Value::Blob(id.as_bytes().to_vec()))
                .collect::<Vec<_>>(),
        );
        let mut stmt = c.prepare_cached(sql)?;
        let rows = stmt.query_map(params![list, workspace.as_bytes()], |r| {
            r.get::<_, Vec<u8>>(0)
        })?;
        let mut out = HashSet::new();
        for row in rows {
            out.extend(Uuid::from_slice(&row?).ok());
        }
        Ok(out)
    };
    Ok((
        found(
            "SELECT id FROM conversations WHERE id IN rarray(?1) AND workspace_id <> ?2",
            conversations,
        )?,
        found(
            "SELECT m.id FROM messages m JOIN conversations c ON c.pk = m.conversation
              WHERE m.id IN rarray(?1) AND c.workspace_id <> ?2",
            messages,
        )?,
    ))
}

pub(super) fn ingest(
    c: &Connection,
    workspace: WorkspaceId,
    mut batches: Vec<IngestBatch>,
) -> Result<Vec<IngestOutcome>> {
    let (foreign_conversations, foreign_messages) = foreign_client_ids(c, workspace, &batches)?;
    crate::scoped_ids::scope_foreign_ids(
        &mut batches,
        workspace,
        &foreign_conversations,
        &foreign_messages,
    );
    let now = Timestamp::now();
    let mut outcomes = Vec::with_capacity(batches.len());
    let (mut new_conversations, mut new_messages) = (Vec::new(), Vec::new());
    for batch in &batches {
        let (pk, id, created) = match &batch.target {
            IngestTarget::Existing(id) => {
                let pk = conversation_pk(c, workspace, *id)?.ok_or(StoreError::NotFound {
                    what: "conversation",
                })?;
                (pk, *id, false)
            }
            IngestTarget::New(nc) => create_or_find(c, workspace, nc, now)?,
        };
        if created {
            new_conversations.push(pk);
        }
        let mut results = vec![MessageOutcome::Skipped; batch.messages.len()];
        if !batch.messages.is_empty() {
            let mut counters = load_counters(c, pk)?;
            // Arrival order is transcript order; within one batch, order by time (stable).
            let mut order: Vec<usize> = (0..batch.messages.len()).collect();
            order.sort_by_key(|&i| batch.messages[i].created_at);
            let mut appended = false;
            for i in order {
                let m = &batch.messages[i];
                // A repeat of a create request for an existing conversation: messages with no
                // identity cannot be told apart from repeats, so they are not stored again.
                let new_target = matches!(batch.target, IngestTarget::New(_));
                if new_target && !created && m.external_id.is_none() && !m.id_from_client {
                    continue;
                }
                results[i] = match find_duplicate(c, pk, m)? {
                    Some(existing) => MessageOutcome::Duplicate { id: existing },
                    None => {
                        new_messages.extend(append(c, &mut counters, m)?);
                        appended = true;
                        MessageOutcome::Stored { id: m.id }
                    }
                };
            }
            if appended {
                save_counters(c, &mut counters, now)?;
            }
        }
        outcomes.push(IngestOutcome {
            conversation_id: id,
            created,
            messages: results,
        });
    }
    index_for_search(c, new_conversations, new_messages)?;
    let events = crate::events::ingest_events(&batches, &outcomes);
    super::events::append(c, workspace, &events, now)?;
    Ok(outcomes)
}

pub(super) fn update_conversation(
    c: &Connection,
    workspace: WorkspaceId,
    id: ConversationId,
    p: &ConversationPatch,
) -> Result<bool> {
    let Some(pk) = conversation_pk(c, workspace, id)? else {
        return Ok(false);
    };
    let now = Timestamp::now();
    let memory = match &p.memory {
        Some(changes) => {
            let text: String = c.query_row(
                "SELECT memory FROM conversations WHERE pk = ?1",
                [pk],
                |r| r.get(0),
            )?;
            let mut memory = serde_json::from_str(&text).unwrap_or_default();
            parley_core::model::merge_memory(&mut memory, changes);
            Some(serde_json::to_string(&memory).map_err(StoreError::backend)?)
        }
        None => None,
    };
    let sql = crate::sql::conversation_patch(crate::sql::Dialect::Sqlite, pk, p, memory, now);
    c.prepare_cached(&sql.text)?
        .execute(rusqlite::params_from_iter(
            sql.params.iter().map(super::read::to_value),
        ))?;
    if let Some(vars) = &p.variables {
        upsert_variables(c, pk, vars, now)?;
    }
    super::events::append(c, workspace, &crate::events::patch_events(id, p), now)?;
    Ok(true)
}

/// Deletes one conversation of the workspace with everything that belongs to it (see
/// [`crate::retention`]), adding what went to `out`; false if it was not in the workspace.
/// Runs inside the caller's write transaction.
pub(super) fn delete_one_conversation(
    c: &Connection,
    workspace: WorkspaceId,
    id: ConversationId,
    out: &mut crate::retention::DeletedConversations,
) -> Result<bool> {
    let Some(pk) = conversation_pk(c, workspace, id)? else {
        return Ok(false);
    };
    // Its earlier events go (some hold text, e.g. a hand-off's reason); the deletion event
    // first: it reads the conversation's channel and assistant from its row.
    c.prepare_cached("DELETE FROM events WHERE conversation_id = ?1 AND workspace_id = ?2")?
        .execute(params![id.as_bytes(), workspace.as_bytes()])?;
    super::events::append(
        c,
        workspace,
        &[crate::events::deleted_event(id)],
        Timestamp::now(),
    )?;
    {
        let mut metas = c.prepare_cached(
            "SELECT meta FROM messages WHERE conversation = ?1 AND meta LIKE '%\"storage_key\"%'",
        )?;
        let rows = metas.query_map([pk], |r| r.get::<_, Option<String>>(0))?;
        for meta in rows {
            out.storage_keys
                .extend(crate::retention::storage_keys_of(meta?.as_deref()));
        }
    }
    // Messages first: their triggers remove the search index entries.
    out.messages += c
        .prepare_cached("DELETE FROM messages WHERE conversation = ?1")?
        .execute([pk])? as u64;
    c.prepare_cached("DELETE FROM variables WHERE conversation = ?1")?
        .execute([pk])?;
    c.prepare_cached("DELETE FROM conversation_insights WHERE conversation = ?1")?
        .execute([pk])?;
    // Work still waiting for it (an answer, a media download, a send) has nothing to do.
    c.prepare_cached("DELETE FROM jobs WHERE conversation_id = ?1 AND state <> 'running'")?
        .execute([id.as_bytes()])?;
    let (items, sessions) = super::widgets::delete_for_conversation(c, id)?;
    out.tracker_items += items;
    out.tracker_sessions += sessions;
    c.prepare_cached("DELETE FROM conversations WHERE pk = ?1")?
        .execute([pk])?;
    c.prepare_cached(
        "UPDATE workspaces SET conversation_count = conversation_count - 1 WHERE id = ?1",
    )?
    .execute([workspace.as_bytes()])?;
    out.conversations.push(id);
    Ok(true)
}
