//! Writes, each in its own transaction.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Pool, Transaction};
use parley_core::model::{Assistant, AssistantRef, ConversationPatch, Variable};
use parley_core::{AssistantId, AssistantMode, ConversationId, MessageId, Timestamp, WorkspaceId};
use uuid::Uuid;

use super::{is_unique_violation, refs, to_sql};
use crate::counters::Counters;
use crate::sql::Dialect;
use crate::{
    IngestBatch, IngestOutcome, IngestTarget, MessageOutcome, NewAssistant, NewConversation,
    NewMessage, Result, StoreError,
};

/// Slots of the sharded conversation counter (see the migration).
pub(super) const COUNTER_SLOTS: i64 = 16;

pub(super) fn conflict_on_unique(
    code: &'static str,
    message: impl FnOnce() -> String,
) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    crate::conflict_on_unique(is_unique_violation, code, message)
}

pub(super) async fn ensure_workspace(tx: &Transaction<'_>, workspace: WorkspaceId) -> Result<()> {
    let stmt = tx
        .prepare_cached("SELECT 1 FROM workspaces WHERE id = $1")
        .await?;
    if tx.query_opt(&stmt, &[&workspace.0]).await?.is_none() {
        return Err(StoreError::NotFound { what: "workspace" });
    }
    Ok(())
}

fn assistant_exists(a: &Assistant) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    conflict_on_unique("assistant_exists", move || {
        format!(
            "the workspace already has an assistant named {:?} for company {:?}",
            a.name, a.company
        )
    })
}

/// Inserts `a` (with its id, version and settings); returns the rows written (0 when
/// `unless_exists` and the id is taken).
pub(super) async fn insert_assistant(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    a: &Assistant,
    unless_exists: bool,
) -> Result<u64> {
    let conflict = if unless_exists {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO assistants (id, workspace_id, name, company, mode, created_at, updated_at,
                                     version, settings)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9){conflict}"
        ))
        .await?;
    tx.execute(
        &stmt,
        &[
            &a.id.0,
            &workspace.0,
            &a.name,
            &a.company,
            &a.mode.as_str(),
            &a.created_at.0,
            &a.updated_at.0,
            &a.version,
            &crate::sql::settings_text(&a.settings),
        ],
    )
    .await
    .map_err(assistant_exists(a))
}

/// Keeps `a`'s current state as its version `a.version`.
pub(super) async fn insert_version(tx: &Transaction<'_>, a: &Assistant) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO assistant_versions (assistant_id, version, name, company, mode, settings, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &a.id.0,
            &a.version,
            &a.name,
            &a.company,
            &a.mode.as_str(),
            &crate::sql::settings_text(&a.settings),
            &a.updated_at.0,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn create_assistant(
    pool: &Pool,
    workspace: WorkspaceId,
    input: &NewAssistant,
) -> Result<Assistant> {
    let a = crate::assistants::new_assistant(input);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    insert_assistant(&tx, workspace, &a, false).await?;
    insert_version(&tx, &a).await?;
    tx.commit().await?;
    Ok(a)
}

pub(super) async fn update_assistant(
    pool: &Pool,
    workspace: WorkspaceId,
    id: AssistantId,
    input: &NewAssistant,
    expected_version: Option<i64>,
) -> Result<Option<Assistant>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            &format!(
                "SELECT {} FROM assistants WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
                crate::sql::ASSISTANT_COLS
            ),
            &[&workspace.0, &id.0],
        )
        .await?
    else {
        return Ok(None);
    };
    let old = super::read::assistant_from_row(&row)?;
    let a = crate::sql::next_assistant(&old, input, expected_version)?;
    let update = crate::sql::assistant_update(Dialect::Postgres, &a);
    let values = to_sql(&update.params);
    tx.execute(update.text.as_str(), &refs(&values))
        .await
        .map_err(assistant_exists(&a))?;
    if a.name != old.name {
        let rename = crate::sql::assistant_rename(Dialect::Postgres, &a);
        let values = to_sql(&rename.params);
        tx.execute(rename.text.as_str(), &refs(&values)).await?;
    }
    insert_version(&tx, &a).await?;
    tx.commit().await?;
    Ok(Some(a))
}

async fn resolve_assistant(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    r: &AssistantRef,
) -> Result<(AssistantId, String)> {
    if let Some(id) = r.id {
        let stmt = tx
            .prepare_cached("SELECT name FROM assistants WHERE id = $1 AND workspace_id = $2")
            .await?;
        return match tx.query_opt(&stmt, &[&id.0, &workspace.0]).await? {
            Some(row) => Ok((id, row.get(0))),
            None => Err(StoreError::NotFound { what: "assistant" }),
        };
    }
    let name = r.name.as_deref().unwrap_or_default().trim().to_owned();
    let company = r.company.as_deref().unwrap_or_default().trim().to_owned();
    // Insert-or-find, safe against a concurrent creator of the same assistant.
    let stmt = tx
        .prepare_cached(
            "WITH created AS (
                 INSERT INTO assistants (id, workspace_id, name, company, mode, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (workspace_id, name, company) DO NOTHING RETURNING id),
             version AS (
                 INSERT INTO assistant_versions (assistant_id, version, name, company, mode, settings, created_at)
                 SELECT id, 1, $3, $4, $5, '{}', $6 FROM created)
             SELECT id FROM created",
        )
        .await?;
    let now = Timestamp::now().0;
    if let Some(row) = tx
        .query_opt(
            &stmt,
            &[
                &Uuid::now_v7(),
                &workspace.0,
                &name,
                &company,
                &AssistantMode::Active.as_str(),
                &now,
            ],
        )
        .await?
    {
        return Ok((AssistantId(row.get(0)), name));
    }
    let stmt = tx
        .prepare_cached(
            "SELECT id FROM assistants WHERE workspace_id = $1 AND name = $2 AND company = $3",
        )
        .await?;
    let row = tx
        .query_one(&stmt, &[&workspace.0, &name, &company])
        .await?;
    Ok((AssistantId(row.get(0)), name))
}

async fn upsert_variables(
    tx: &Transaction<'_>,
    pk: i64,
    vars: &[Variable],
    now: Timestamp,
) -> Result<()> {
    if vars.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO variables (conversation, key, value, source, updated_at)
             SELECT $1, k, v, s, $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS t(k, v, s)
             ON CONFLICT (conversation, key) DO UPDATE SET
                 value = excluded.value, source = excluded.source, updated_at = excluded.updated_at",
        )
        .await?;
    let keys: Vec<&str> = vars.iter().map(|v| v.key.as_str()).collect();
    let values: Vec<&str> = vars.iter().map(|v| v.value.as_str()).collect();
    let sources: Vec<&str> = vars.iter().map(|v| v.source.as_str()).collect();
    tx.execute(&stmt, &[&pk, &keys, &values, &sources, &now.0])
        .await?;
    Ok(())
}

/// Adds `delta` to one slot of the workspace's conversation counter. Called once per
/// transaction, as its last write, so a transaction never waits for a counter while holding it.
async fn bump_counter(tx: &Transaction<'_>, workspace: WorkspaceId, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    let slot = (Uuid::now_v7().as_u128() % COUNTER_SLOTS as u128) as i16;
    let stmt = tx
        .prepare_cached("UPDATE workspace_counters SET conversations = conversations + $3 WHERE workspace_id = $1 AND slot = $2")
        .await?;
    tx.execute(&stmt, &[&workspace.0, &slot, &delta]).await?;
    Ok(())
}

const COUNTER_COLS: &str = "stored_message_count, message_count, last_message_at, last_inbound_at, \
    last_message_preview, prompt_tokens, completion_tokens, cost_nanousd, unpriced_message_count";

fn counters_from(pk: i64, r: &tokio_postgres::Row, first: usize) -> Counters {
    Counters {
        pk,
        stored: r.get(first),
        visible: r.get(first + 1),
        last_message_at: r.get(first + 2),
        last_inbound_at: r.get(first + 3),
        preview: r.get(first + 4),
        latest: None,
        prompt_tokens: r.get(first + 5),
        completion_tokens: r.get(first + 6),
        cost: r.get(first + 7),
        unpriced: r.get(first + 8),
        voice: false,
    }
}

async fn save_counters(tx: &Transaction<'_>, k: &mut Counters, now: Timestamp) -> Result<()> {
    k.finish();
    let stmt = tx
        .prepare_cached(
            "UPDATE conversations SET stored_message_count = $2, message_count = $3, last_message_at = $4,
                 last_inbound_at = $5, last_message_preview = $6, prompt_tokens = $7,
                 completion_tokens = $8, cost_nanousd = $9, unpriced_message_count = $10, updated_at = $11,
                 has_voice = has_voice OR $12
             WHERE pk = $1",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &k.pk,
            &k.stored,
            &k.visible,
            &k.last_message_at,
            &k.last_inbound_at,
            &k.preview,
            &k.prompt_tokens,
            &k.completion_tokens,
            &k.cost,
            &k.unpriced,
            &now.0,
            &k.voice,
        ],
    )
    .await?;
    Ok(())
}

/// The key of an assistant named by name (id references need no lock ordering).
fn assistant_key(r: &AssistantRef) -> (String, String) {
    (
        r.name.as_deref().unwrap_or_default().trim().to_owned(),
        r.company.as_deref().unwrap_or_default().trim().to_owned(),
    )
}

/// Whether a failed transaction may simply be run again (deadlock or serialization failure:
/// PostgreSQL rolled it back whole).
fn retryable(e: &StoreError) -> bool {
    e.is_retryable()
}

/// Writes batches in one transaction, retrying it when PostgreSQL resolves a deadlock by
/// aborting it (the ingest is all-or-nothing and its ids are fixed beforehand, so a retry
/// writes exactly what the first attempt would have).
pub(super) async fn ingest(
    pool: &Pool,
    workspace: WorkspaceId,
    batches: Vec<IngestBatch>,
) -> Result<Vec<IngestOutcome>> {
    ingest_with_jobs(pool, workspace, batches, Vec::new()).await
}

/// [`ingest`], enqueueing the follow-up `jobs` in the same transaction (see
/// [`crate::jobs::IngestJob`]).
pub(super) async fn ingest_with_jobs(
    pool: &Pool,
    workspace: WorkspaceId,
    batches: Vec<IngestBatch>,
    jobs: Vec<crate::jobs::IngestJob>,
) -> Result<Vec<IngestOutcome>> {
    let mut attempt = 0u64;
    loop {
        match ingest_once(pool, workspace, &batches, &jobs).await {
            Err(e) if retryable(&e) && attempt < 8 => {
                attempt += 1;
                tracing::debug!(attempt, error = %e, "retrying an ingest transaction");
                let jitter = (Uuid::now_v7().as_u128() % 7) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt + jitter)).await;
            }
            other => return other,
        }
    }
}

/// A conversation this transaction writes to.
struct Target {
    id: ConversationId,
    counters: Counters,
    /// Created in this transaction (so it held no messages before).
    created: bool,
}

/// The conversations of the workspace a request names that exist already, locked in key order
/// (so concurrent requests naming the same ones in another order cannot deadlock), with their
/// counters. Keys: id, and external id.
async fn lock_existing(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    batches: &[IngestBatch],
) -> Result<(HashMap<Uuid, Target>, HashMap<String, Uuid>)> {
    let mut ids: Vec<Uuid> = Vec::new();
    let mut externals: Vec<&str> = Vec::new();
    for b in batches {
        match &b.target {
            IngestTarget::Existing(id) => ids.push(id.0),
            IngestTarget::New(nc) => {
                if nc.id_from_client {
                    ids.push(nc.id.0);
                }
                externals.extend(nc.external_id.as_deref());
            }
        }
    }
    let (mut by_id, mut by_external) = (HashMap::new(), HashMap::new());
    if ids.is_empty() && externals.is_empty() {
        return Ok((by_id, by_external));
    }
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT pk, id, external_id, {COUNTER_COLS} FROM conversations
              WHERE workspace_id = $1 AND (id = ANY($2) OR external_id = ANY($3))
              ORDER BY pk FOR UPDATE"
        ))
        .await?;
    for row in tx.query(&stmt, &[&workspace.0, &ids, &externals]).await? {
        let (pk, id): (i64, Uuid) = (row.get(0), row.get(1));
        if let Some(ext) = row.get::<_, Option<String>>(2) {
            by_external.insert(ext, id);
        }
        by_id.insert(
            id,
            Target {
                id: ConversationId(id),
                counters: counters_from(pk, &row, 3),
                created: false,
            },
        );
    }
    Ok((by_id, by_external))
}

/// Inserts a new conversation whose counters already account for its messages. Returns its key,
/// or `None` when a concurrent request created one with the same external id first.
async fn insert_conversation(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    nc: &NewConversation,
    assistant: &(AssistantId, String),
    k: &mut Counters,
    now: Timestamp,
) -> Result<Option<i64>> {
    k.finish();
    let memory = serde_json::to_string(&nc.memory).map_err(StoreError::backend)?;
    let (rating, comment, rated_at) = match &nc.rating {
        Some((r, at)) => (r.score as i64, r.comment.clone(), Some(at.0)),
        None => (0, None, None),
    };
    let stmt = tx
        .prepare_cached(
            "INSERT INTO conversations (
                 id, workspace_id, assistant_id, assistant_name, external_id, channel, status,
                 contact, session_id, started_at, ended_at, last_message_at, rating, rating_comment,
                 rated_at, sentiment, sentiment_score, end_reason, converted, memory, created_at, updated_at,
                 stored_message_count, message_count, last_inbound_at, last_message_preview, prompt_tokens,
                 completion_tokens, cost_nanousd, unpriced_message_count, assistant_version, has_voice)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $21, $12, $13, $14, $15, $16, $17, $18, $19, $20, $20,
                     $22, $23, $24, $25, $26, $27, $28, $29, $30, $31)
             ON CONFLICT (workspace_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
             RETURNING pk",
        )
        .await?;
    let row = tx
        .query_opt(
            &stmt,
            &[
                &nc.id.0,
                &workspace.0,
                &assistant.0.0,
                &assistant.1,
                &nc.external_id,
                &nc.channel.as_str(),
                &nc.status.as_str(),
                &nc.contact,
                &nc.session_id,
                &nc.started_at.0,
                &nc.ended_at.map(|t| t.0),
                &rating,
                &comment,
                &rated_at,
                &nc.sentiment.as_ref().map(|s| s.label.as_str()),
                &nc.sentiment.as_ref().and_then(|s| s.score),
                &nc.end_reason,
                &nc.converted,
                &memory,
                &now.0,
                &k.last_message_at,
                &k.stored,
                &k.visible,
                &k.last_inbound_at,
                &k.preview,
                &k.prompt_tokens,
                &k.completion_tokens,
                &k.cost,
                &k.unpriced,
                &nc.assistant_version,
                // A first batch with a voice note or recording is not text-only (SQLite sets it
                // in the counters' UPDATE that follows its insert).
                &k.voice,
            ],
        )
        .await
        .map_err(conflict_on_unique("id_conflict", || {
            format!("conversation id {} is already used", nc.id)
        }))?;
    Ok(row.map(|r| r.get(0)))
}

/// Stored ids of the conversation's messages that `messages` repeat, by id and external id.
async fn known_messages(
    tx: &Transaction<'_>,
    pk: i64,
    messages: &[NewMessage],
) -> Result<(HashSet<Uuid>, HashMap<String, MessageId>)> {
    let ids: Vec<Uuid> = messages
        .iter()
        .filter(|m| m.id_from_client)
        .map(|m| m.id.0)
        .collect();
    let externals: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.external_id.as_deref())
        .collect();
    let (mut known_ids, mut known_external) = (HashSet::new(), HashMap::new());
    if ids.is_empty() && externals.is_empty() {
        return Ok((known_ids, known_external));
    }
    let stmt = tx
        .prepare_cached(
            "SELECT id, external_id, conversation FROM messages
              WHERE (conversation = $1 AND external_id = ANY($3)) OR id = ANY($2)",
        )
        .await?;
    for row in tx.query(&stmt, &[&pk, &ids, &externals]).await? {
        let mid: Uuid = row.get(0);
        if row.get::<_, i64>(2) != pk {
            return Err(StoreError::Conflict {
                code: "id_conflict",
                message: format!("message id {mid} belongs to another conversation"),
            });
        }
        known_ids.insert(mid);
        if let Some(ext) = row.get::<_, Option<String>>(1) {
            known_external.insert(ext, MessageId(mid));
        }
    }
    Ok((known_ids, known_external))
}

/// Picks the batch's messages to store (in time order, skipping repeats) and numbers them into
/// `rows`, updating `k`. Returns the outcome of each input message.
fn plan_messages(
    batch: &IngestBatch,
    skip_unidentified: bool,
    known_ids: &mut HashSet<Uuid>,
    known_external: &mut HashMap<String, MessageId>,
    k: &mut Counters,
    rows: &mut MessageRows,
) -> Vec<MessageOutcome> {
    let mut results = vec![MessageOutcome::Skipped; batch.messages.len()];
    let mut order: Vec<usize> = (0..batch.messages.len()).collect();
    order.sort_by_key(|&i| batch.messages[i].created_at);
    for i in order {
        let m = &batch.messages[i];
        if skip_unidentified && m.external_id.is_none() && !m.id_from_client {
            continue;
        }
        if m.id_from_client && known_ids.contains(&m.id.0) {
            results[i] = MessageOutcome::Duplicate { id: m.id };
            continue;
        }
        if let Some(existing) = m.external_id.as_ref().and_then(|e| known_external.get(e)) {
            results[i] = MessageOutcome::Duplicate { id: *existing };
            continue;
        }
        rows.push(k, m);
        known_ids.insert(m.id.0);
        if let Some(ext) = &m.external_id {
            known_external.insert(ext.clone(), m.id);
        }
        results[i] = MessageOutcome::Stored { id: m.id };
    }
    results
}

/// `batches` with the client-given ids that another workspace uses replaced by their stand-ins
/// (see [`crate::scoped_ids`]); borrowed as they are when there are none.
async fn scope_foreign_ids<'a>(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    batches: &'a [IngestBatch],
) -> Result<std::borrow::Cow<'a, [IngestBatch]>> {
    let (conversations, messages) = crate::scoped_ids::client_ids(batches);
    let mut foreign = Vec::with_capacity(2);
    for (sql, ids) in [
        (
            "SELECT id FROM conversations WHERE id = ANY($1) AND workspace_id <> $2",
            conversations,
        ),
        (
            "SELECT m.id FROM messages m JOIN conversations c ON c.pk = m.conversation
              WHERE m.id = ANY($1) AND c.workspace_id <> $2",
            messages,
        ),
    ] {
        let mut found = HashSet::new();
        if !ids.is_empty() {
            let stmt = tx.prepare_cached(sql).await?;
            for row in tx.query(&stmt, &[&ids, &workspace.0]).await? {
                found.insert(row.get::<_, Uuid>(0));
            }
        }
        foreign.push(found);
    }
    if foreign.iter().all(HashSet::is_empty) {
        return Ok(std::borrow::Cow::Borrowed(batches));
    }
    let mut scoped = batches.to_vec();
    crate::scoped_ids::scope_foreign_ids(&mut scoped, workspace, &foreign[0], &foreign[1]);
    Ok(std::borrow::Cow::Owned(scoped))
}

async fn ingest_once(
    pool: &Pool,
    workspace: WorkspaceId,
    batches: &[IngestBatch],
    jobs: &[crate::jobs::IngestJob],
) -> Result<Vec<IngestOutcome>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let scoped = scope_foreign_ids(&tx, workspace, batches).await?;
    let batches: &[IngestBatch] = &scoped;
    let now = Timestamp::now();
    // Locks in one global order: the assistants the request names, then the conversations.
    let mut named: Vec<&AssistantRef> = batches
        .iter()
        .filter_map(|b| match &b.target {
            IngestTarget::New(nc) if nc.assistant.id.is_none() => Some(&nc.assistant),
            _ => None,
        })
        .collect();
    named.sort_by_key(|r| assistant_key(r));
    named.dedup_by_key(|r| assistant_key(r));
    let mut assistants = HashMap::new();
    for r in named {
        assistants.insert(
            assistant_key(r),
            resolve_assistant(&tx, workspace, r).await?,
        );
    }
    let (mut targets, mut by_external) = lock_existing(&tx, workspace, batches).await?;

    let mut outcomes = Vec::with_capacity(batches.len());
    let mut touched: Vec<Uuid> = Vec::new();
    let mut created_count = 0i64;
    for batch in batches {
        let existing = match &batch.target {
            IngestTarget::Existing(id) => Some(id.0),
            IngestTarget::New(nc) if nc.id_from_client && targets.contains_key(&nc.id.0) => {
                Some(nc.id.0)
            }
            IngestTarget::New(nc) => nc
                .external_id
                .as_ref()
                .and_then(|e| by_external.get(e))
                .copied(),
        };
        let (id, created, results) = match (existing, &batch.target) {
            (Some(key), target) => {
                let t = targets.get_mut(&key).ok_or(StoreError::NotFound {
                    what: "conversation",
                })?;
                let (mut known_ids, mut known_external) = if t.created {
                    (HashSet::new(), HashMap::new())
                } else {
                    known_messages(&tx, t.counters.pk, &batch.messages).await?
                };
                let mut rows = MessageRows::default();
                let skip = matches!(target, IngestTarget::New(_));
                let results = plan_messages(
                    batch,
                    skip,
                    &mut known_ids,
                    &mut known_external,
                    &mut t.counters,
                    &mut rows,
                );
                rows.insert(&tx, t.counters.pk).await?;
                if !rows.id.is_empty() && !touched.contains(&key) {
                    touched.push(key);
                }
                (t.id, false, results)
            }
            (None, IngestTarget::New(nc)) => {
                let assistant = match assistants.get(&assistant_key(&nc.assistant)) {
                    Some(a) if nc.assistant.id.is_none() => a.clone(),
                    _ => resolve_assistant(&tx, workspace, &nc.assistant).await?,
                };
                let mut k = Counters {
                    pk: 0,
                    stored: 0,
                    visible: 0,
                    last_message_at: nc.started_at.0,
                    last_inbound_at: None,
                    preview: None,
                    latest: None,
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    cost: 0,
                    unpriced: 0,
                    voice: false,
                };
                let mut rows = MessageRows::default();
                let results = plan_messages(
                    batch,
                    false,
                    &mut HashSet::new(),
                    &mut HashMap::new(),
                    &mut k,
                    &mut rows,
                );
                let Some(pk) =
                    insert_conversation(&tx, workspace, nc, &assistant, &mut k, now).await?
                else {
                    // Lost a race to a concurrent creator of the same external id: retrying
                    // finds it (locked) and appends to it.
                    return Err(StoreError::Retryable {
                        message: "concurrent create of the same external id".into(),
                        source: None,
                    });
                };
                k.pk = pk;
                upsert_variables(&tx, pk, &nc.variables, now).await?;
                rows.insert(&tx, pk).await?;
                targets.insert(
                    nc.id.0,
                    Target {
                        id: nc.id,
                        counters: k,
                        created: true,
                    },
                );
                if let Some(ext) = &nc.external_id {
                    by_external.insert(ext.clone(), nc.id.0);
                }
                created_count += 1;
                (nc.id, true, results)
            }
            (None, IngestTarget::Existing(_)) => {
                return Err(StoreError::NotFound {
                    what: "conversation",
                });
            }
        };
        outcomes.push(IngestOutcome {
            conversation_id: id,
            created,
            messages: results,
        });
    }
    for key in touched {
        if let Some(t) = targets.get_mut(&key) {
            save_counters(&tx, &mut t.counters, now).await?;
        }
    }
    bump_counter(&tx, workspace, created_count).await?;
    for job in crate::jobs::due_after_ingest(batches.len(), &outcomes, jobs.to_vec()) {
        super::jobs::insert(&tx, &job, now).await?;
    }
    // Last: the append holds the event log's ordering lock until the commit.
    let events = crate::events::ingest_events(batches, &outcomes);
    super::events::append(&tx, workspace, &events, now).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Column arrays of the messages of one batch, for one `INSERT ... FROM unnest(...)`.
#[derive(Default)]
struct MessageRows {
    id: Vec<Uuid>,
    seq: Vec<i64>,
    visible_seq: Vec<Option<i64>>,
    role: Vec<&'static str>,
    content: Vec<String>,
    created_at: Vec<i64>,
    external_id: Vec<Option<String>>,
    model: Vec<Option<String>>,
    prompt: Vec<Option<i64>>,
    completion: Vec<Option<i64>>,
    cost: Vec<Option<i64>>,
    cost_source: Vec<Option<&'static str>>,
    meta: Vec<Option<String>>,
}

impl MessageRows {
    /// Adds a message, numbering it and updating the conversation's counters.
    fn push(&mut self, k: &mut Counters, m: &NewMessage) {
        let (seq, visible_seq) = k.append(m);
        self.id.push(m.id.0);
        self.seq.push(seq);
        self.visible_seq.push(visible_seq);
        self.role.push(m.role.as_str());
        self.content.push(m.content.clone());
        self.created_at.push(m.created_at.0);
        self.external_id.push(m.external_id.clone());
        self.model.push(m.model.clone());
        self.prompt.push(m.usage.map(|u| u.prompt_tokens));
        self.completion.push(m.usage.map(|u| u.completion_tokens));
        self.cost.push(m.cost_nanousd);
        self.cost_source.push(m.cost_source.map(|s| s.as_str()));
        self.meta.push(crate::sql::meta_text(&m.meta));
    }

    async fn insert(&self, tx: &Transaction<'_>, pk: i64) -> Result<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO messages (id, conversation, seq, visible_seq, role, content, created_at, external_id,
                                       model, prompt_tokens, completion_tokens, cost_nanousd, cost_source, meta)
                 SELECT id, $1, seq, vseq, role, content, created_at, ext, model, pt, ct, cost, src, meta
                   FROM unnest($2::uuid[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[],
                               $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[],
                               $14::text[])
                        AS t(id, seq, vseq, role, content, created_at, ext, model, pt, ct, cost, src, meta)",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &pk,
                &self.id,
                &self.seq,
                &self.visible_seq,
                &self.role,
                &self.content,
                &self.created_at,
                &self.external_id,
                &self.model,
                &self.prompt,
                &self.completion,
                &self.cost,
                &self.cost_source,
                &self.meta,
            ],
        )
        .await
        .map_err(conflict_on_unique("id_conflict", || {
            "a message id is already used".to_owned()
        }))?;
        Ok(())
    }
}

pub(super) async fn update_conversation(
    pool: &Pool,
    workspace: WorkspaceId,
    id: ConversationId,
    p: &ConversationPatch,
) -> Result<bool> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT pk, memory FROM conversations WHERE id = $1 AND workspace_id = $2 FOR UPDATE",
            &[&id.0, &workspace.0],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let pk: i64 = row.get(0);
    let now = Timestamp::now();
    let memory = match &p.memory {
        Some(changes) => {
            let text: String = row.get(1);
            let mut memory = serde_json::from_str(&text).unwrap_or_default();
            parley_core::model::merge_memory(&mut memory, changes);
            Some(serde_json::to_string(&memory).map_err(StoreError::backend)?)
        }
        None => None,
    };
    let sql = crate::sql::conversation_patch(Dialect::Postgres, pk, p, memory, now);
    let values = to_sql(&sql.params);
    tx.execute(sql.text.as_str(), &refs(&values)).await?;
    if let Some(vars) = &p.variables {
        upsert_variables(&tx, pk, vars, now).await?;
    }
    super::events::append(&tx, workspace, &crate::events::patch_events(id, p), now).await?;
    tx.commit().await?;
    Ok(true)
}

/// Deletes the workspace's conversations among `ids` with everything that belongs to them
/// (see [`crate::retention`]) in one transaction. The rows are locked in id order (two
/// batches over the same conversations cannot deadlock), and the deletion events are written
/// last: the ordering lock they take must come after every row lock, or it could deadlock
/// with a message edit.
pub(super) async fn delete_conversations(
    pool: &Pool,
    workspace: WorkspaceId,
    ids: &[ConversationId],
) -> Result<crate::retention::DeletedConversations> {
    let mut out = crate::retention::DeletedConversations::default();
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let raw: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT pk, id, channel, assistant_id FROM conversations
                  WHERE id = ANY($1) AND workspace_id = $2 ORDER BY id FOR UPDATE",
            )
            .await?,
            &[&raw, &workspace.0],
        )
        .await?;
    if rows.is_empty() {
        return Ok(out);
    }
    let pks: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let found: Vec<Uuid> = rows.iter().map(|r| r.get(1)).collect();
    for meta in tx
        .query(
            &tx.prepare_cached(
                "SELECT meta FROM messages WHERE conversation = ANY($1)
                   AND meta LIKE '%\"storage_key\"%'",
            )
            .await?,
            &[&pks],
        )
        .await?
    {
        let meta: Option<String> = meta.get(0);
        out.storage_keys
            .extend(crate::retention::storage_keys_of(meta.as_deref()));
    }
    // The trigram index entries go with the rows, in this transaction.
    out.messages = tx
        .execute(
            &tx.prepare_cached("DELETE FROM messages WHERE conversation = ANY($1)")
                .await?,
            &[&pks],
        )
        .await?;
    for sql in [
        "DELETE FROM variables WHERE conversation = ANY($1)",
        "DELETE FROM conversation_insights WHERE conversation = ANY($1)",
    ] {
        tx.execute(&tx.prepare_cached(sql).await?, &[&pks]).await?;
    }
    // Their earlier events (some hold text, e.g. a hand-off's reason), and the work still
    // waiting for them (an answer, a media download, a send).
    tx.execute(
        &tx.prepare_cached(
            "DELETE FROM events WHERE conversation_id = ANY($1) AND workspace_id = $2",
        )
        .await?,
        &[&found, &workspace.0],
    )
    .await?;
    tx.execute(
        &tx.prepare_cached(
            "DELETE FROM jobs WHERE conversation_id = ANY($1) AND state <> 'running'",
        )
        .await?,
        &[&found],
    )
    .await?;
    for id in &found {
        let (items, sessions) =
            super::widgets::delete_for_conversation(&tx, ConversationId(*id)).await?;
        out.tracker_items += items;
        out.tracker_sessions += sessions;
    }
    tx.execute(
        &tx.prepare_cached("DELETE FROM conversations WHERE pk = ANY($1)")
            .await?,
        &[&pks],
    )
    .await?;
    bump_counter(&tx, workspace, -(rows.len() as i64)).await?;
    let now = Timestamp::now();
    for r in &rows {
        let (id, channel, assistant): (Uuid, String, Uuid) = (r.get(1), r.get(2), r.get(3));
        super::events::append_deleted(&tx, workspace, ConversationId(id), &channel, assistant, now)
            .await?;
        out.conversations.push(ConversationId(id));
    }
    tx.commit().await?;
    Ok(out)
}
