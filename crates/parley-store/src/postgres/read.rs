//! Reads. See the SQLite backend's `read.rs` for the search plan; the same plan runs here with
//! pg_trgm GIN indexes and `ILIKE`.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Pool;
use parley_core::model::{
    ApiKey, Assistant, AssistantSummary, AssistantVersion, ConversationDetail, ConversationExport,
    ConversationSummary, Handoff, Message, Sentiment, StoredRating, UsageTotals, User, Variable,
};
use parley_core::pricing::{CostSource, Usage};
use parley_core::query::{
    ConversationFilter, Cursor, ListQuery, SortKey, SortValue, TranscriptQuery,
};
use parley_core::search::snippet;
use parley_core::{
    ApiKeyId, AssistantId, ConversationId, MessageId, Timestamp, UserId, WorkspaceId,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::to_sql;
use crate::sql::{
    self, ASSISTANT_COLS, DETAIL_COLS, Dialect, FROM_CONVERSATIONS, MESSAGE_COLS, PageOptions,
    Param, SUMMARY_COLS, SearchPlan, Sql, like_pattern, push_filters,
};
use crate::{
    ConversationCount, ConversationPage, ListedConversation, MessagePage, Result, SEARCH_COUNT_CAP,
    SearchMatch, StoreError,
};

const SNIPPET_CONTEXT: usize = 60;

pub(super) fn parse<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| StoreError::backend(format!("invalid stored value {text:?}")))
}

pub(super) fn ts(v: i64) -> Timestamp {
    Timestamp(v)
}

pub(super) const KEY_COLS: &str =
    "id, workspace_id, name, prefix, created_at, revoked_at, role, last_used_at";

pub(super) fn key_from_row(r: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId(r.get(0)),
        workspace_id: WorkspaceId(r.get(1)),
        name: r.get(2),
        prefix: r.get(3),
        created_at: ts(r.get(4)),
        revoked_at: r.get::<_, Option<i64>>(5).map(ts),
        role: parse(r.get::<_, &str>(6))?,
        last_used_at: r.get::<_, Option<i64>>(7).map(ts),
    })
}

pub(super) fn assistant_from_row(r: &Row) -> Result<Assistant> {
    Ok(Assistant {
        id: AssistantId(r.get(0)),
        name: r.get(1),
        company: r.get(2),
        mode: parse(r.get::<_, &str>(3))?,
        created_at: ts(r.get(4)),
        version: r.get(5),
        settings: sql::settings_from_text(r.get(6)),
        updated_at: ts(r.get(7)),
    })
}

pub(super) async fn list_assistants(pool: &Pool, ws: WorkspaceId) -> Result<Vec<Assistant>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!("SELECT {ASSISTANT_COLS} FROM assistants WHERE workspace_id = $1 ORDER BY name, company, id"))
        .await?;
    client
        .query(&stmt, &[&ws.0])
        .await?
        .iter()
        .map(assistant_from_row)
        .collect()
}

pub(super) async fn get_assistant(
    pool: &Pool,
    ws: WorkspaceId,
    id: AssistantId,
) -> Result<Option<Assistant>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {ASSISTANT_COLS} FROM assistants WHERE workspace_id = $1 AND id = $2"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&ws.0, &id.0])
        .await?
        .as_ref()
        .map(assistant_from_row)
        .transpose()
}

pub(super) async fn assistant_versions(
    pool: &Pool,
    ws: WorkspaceId,
    id: AssistantId,
) -> Result<Option<Vec<AssistantVersion>>> {
    let client = pool.get().await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM assistants WHERE workspace_id = $1 AND id = $2",
            &[&ws.0, &id.0],
        )
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT version, name, company, mode, settings, created_at FROM assistant_versions
              WHERE assistant_id = $1 ORDER BY version DESC",
            &[&id.0],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(AssistantVersion {
                version: r.get(0),
                name: r.get(1),
                company: r.get(2),
                mode: parse(r.get::<_, &str>(3))?,
                settings: sql::settings_from_text(r.get(4)),
                created_at: ts(r.get(5)),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn summary_from_row(r: &Row) -> Result<(i64, ConversationSummary)> {
    let rating: i64 = r.get(18);
    let rating = (1..=5).contains(&rating).then(|| StoredRating {
        score: rating as u8,
        comment: r.get(19),
        rated_at: ts(r.get::<_, Option<i64>>(20).unwrap_or_default()),
    });
    let sentiment = r
        .get::<_, Option<&str>>(21)
        .map(|label| -> Result<Sentiment> {
            Ok(Sentiment {
                label: parse(label)?,
                score: r.get(22),
            })
        })
        .transpose()?;
    let mut s = ConversationSummary {
        id: ConversationId(r.get(1)),
        external_id: r.get(2),
        assistant: AssistantSummary {
            id: AssistantId(r.get(3)),
            name: r.get(4),
            company: r.get(5),
        },
        channel: parse(r.get::<_, &str>(6))?,
        status: parse(r.get::<_, &str>(7))?,
        contact: r.get(8),
        session_id: r.get(9),
        started_at: ts(r.get(10)),
        ended_at: r.get::<_, Option<i64>>(11).map(ts),
        last_message_at: ts(r.get(12)),
        last_message_preview: r.get(13),
        message_count: r.get(14),
        usage: UsageTotals::from(Usage {
            prompt_tokens: r.get(15),
            completion_tokens: r.get(16),
        }),
        cost_nanousd: r.get(17),
        rating,
        sentiment,
        end_reason: r.get(23),
        converted: r.get(24),
        duration_ms: None,
        taken_over_at: r.get::<_, Option<i64>>(25).map(ts),
        handoff: match (r.get::<_, Option<String>>(26), r.get::<_, Option<i64>>(27)) {
            (Some(reason), Some(at)) => Some(Handoff {
                reason,
                requested_at: ts(at),
            }),
            _ => None,
        },
        assignee_id: r.get::<_, Option<uuid::Uuid>>(28).map(UserId),
    };
    s.compute_duration();
    Ok((r.get(0), s))
}

async fn detail_by(
    client: &deadpool_postgres::Object,
    ws: WorkspaceId,
    id: ConversationId,
) -> Result<Option<(i64, ConversationDetail)>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLS}, {DETAIL_COLS} {FROM_CONVERSATIONS} WHERE c.id = $1 AND c.workspace_id = $2"
        ))
        .await?;
    let Some(r) = client.query_opt(&stmt, &[&id.0, &ws.0]).await? else {
        return Ok(None);
    };
    let (pk, summary) = summary_from_row(&r)?;
    let memory: String = r.get(29);
    let vars = client
        .prepare_cached(
            "SELECT key, value, source FROM variables WHERE conversation = $1 ORDER BY key",
        )
        .await?;
    let variables = client
        .query(&vars, &[&pk])
        .await?
        .iter()
        .map(|v| -> Result<Variable> {
            Ok(Variable {
                key: v.get(0),
                value: v.get(1),
                source: parse(v.get::<_, &str>(2))?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Some((
        pk,
        ConversationDetail {
            summary,
            variables,
            memory: serde_json::from_str(&memory).unwrap_or_default(),
            stored_message_count: r.get(30),
            unpriced_message_count: r.get(31),
            has_voice: r.get(32),
            last_inbound_at: r.get::<_, Option<i64>>(33).map(ts),
            created_at: ts(r.get(34)),
            updated_at: ts(r.get(35)),
            assistant_version: r.get(36),
        },
    )))
}

pub(super) async fn get_conversation(
    pool: &Pool,
    ws: WorkspaceId,
    id: ConversationId,
) -> Result<Option<ConversationDetail>> {
    let client = pool.get().await?;
    Ok(detail_by(&client, ws, id).await?.map(|(_, d)| d))
}

pub(super) async fn conversation_total(pool: &Pool, ws: WorkspaceId) -> Result<u64> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT coalesce(sum(conversations), 0)::bigint FROM workspace_counters WHERE workspace_id = $1")
        .await?;
    let n: i64 = client.query_one(&stmt, &[&ws.0]).await?.get(0);
    Ok(n.max(0) as u64)
}

/// Runs a list or search query as an unnamed statement, which PostgreSQL plans with the actual
/// values: the best plan of a filter or search depends on them (a rare channel, a common
/// term), and a cached generic plan that does not know the pattern can pick the trigram index
/// where it costs seconds.
async fn query_rows(client: &deadpool_postgres::Object, sql: &Sql) -> Result<Vec<Row>> {
    let values = to_sql(&sql.params);
    let refs: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    Ok(client.query(sql.text.as_str(), &refs).await?)
}

/// The names of the filter's assistants (see `sql::push_filters`).
async fn agent_names(
    client: &deadpool_postgres::Object,
    ws: WorkspaceId,
    f: &ConversationFilter,
) -> Result<Vec<String>> {
    if f.assistants.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<uuid::Uuid> = f.assistants.iter().map(|a| a.0).collect();
    let rows = client
        .query("SELECT DISTINCT name FROM assistants WHERE workspace_id = $1 AND id = ANY($2) ORDER BY name", &[&ws.0, &ids])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn plan_search(
    client: &deadpool_postgres::Object,
    ws: WorkspaceId,
    q: Option<&str>,
    probe_limit: usize,
) -> Result<SearchPlan> {
    let Some(term) = q else {
        return Ok(SearchPlan::None);
    };
    if term.chars().count() < 3 {
        return Ok(sql::walk(term));
    }
    let pattern = like_pattern(term);
    // Message rows, not conversations, are limited: a conversation matching many times uses up
    // several rows, so a few times the limit is read before the term is deemed common.
    let row_limit = (probe_limit * 4 + 1) as i64;
    let rows = client
        .query("SELECT conversation FROM messages WHERE visible_seq IS NOT NULL AND content ILIKE $1 LIMIT $2", &[&pattern, &row_limit])
        .await?;
    if rows.len() as i64 >= row_limit {
        return Ok(sql::walk(term));
    }
    let mut pks: HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    // Unnamed statements (planned with the pattern): the trigram indexes only pay for a
    // pattern the planner can see.
    for r in client
        .query(
            "SELECT pk FROM conversations WHERE workspace_id = $1
               AND (session_id ILIKE $2 OR contact ILIKE $2 OR assistant_name ILIKE $2) LIMIT $3",
            &[&ws.0, &pattern, &(probe_limit as i64 + 1)],
        )
        .await?
    {
        pks.insert(r.get(0));
    }
    if pks.len() > probe_limit {
        return Ok(sql::walk(term));
    }
    let mut pks: Vec<i64> = pks.into_iter().collect();
    pks.sort_unstable();
    Ok(SearchPlan::Candidates(pks))
}

/// Where `term` matched each listed conversation: its most recent matching visible message
/// (all conversations in one query), else its own fields.
async fn search_matches(
    client: &deadpool_postgres::Object,
    rows: &[(i64, ConversationSummary)],
    term: &str,
) -> Result<Vec<Option<SearchMatch>>> {
    let pks: Vec<i64> = rows.iter().map(|(pk, _)| *pk).collect();
    let stmt = client
        .prepare_cached(
            // `content || ''`: each conversation's few messages are tested in turn; the trigram
            // index would read every message holding the term's trigrams.
            "SELECT DISTINCT ON (conversation) conversation, id, content FROM messages
              WHERE conversation = ANY($1) AND visible_seq IS NOT NULL AND (content || '') ILIKE $2
              ORDER BY conversation, visible_seq DESC",
        )
        .await?;
    let mut by_pk: HashMap<i64, (MessageId, String)> = HashMap::new();
    for r in client.query(&stmt, &[&pks, &like_pattern(term)]).await? {
        by_pk.insert(r.get(0), (MessageId(r.get(1)), r.get(2)));
    }
    Ok(rows
        .iter()
        .map(|(pk, s)| {
            by_pk
                .get(pk)
                .and_then(|(id, content)| {
                    snippet(content, term, SNIPPET_CONTEXT).map(|snippet| SearchMatch {
                        field: "content",
                        message_id: Some(*id),
                        snippet,
                    })
                })
                .or_else(|| sql::field_match(s, term, SNIPPET_CONTEXT))
        })
        .collect())
}

/// A page read one sort-key value at a time (see `sql::key_by_key_column`): up to
/// `KEY_BY_KEY_MAX_STEPS` values, each one index seek, then the remaining keys in one ordinary
/// query. `plan` is the search's condition on each step's rows (`SearchPlan::None` without a
/// search). Returns up to `limit + 1` rows in sort order.
async fn key_by_key(
    client: &deadpool_postgres::Object,
    ws: WorkspaceId,
    q: &ListQuery,
    names: &[String],
    plan: &SearchPlan,
) -> Result<Vec<(i64, ConversationSummary)>> {
    let want = q.limit.clamp(1, parley_core::query::MAX_LIMIT) as usize + 1;
    let int_key = matches!(q.sort.key, SortKey::Messages | SortKey::Rating);
    let page_rows = |sql: Sql| async move {
        query_rows(client, &sql)
            .await?
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>>>()
    };
    let mut rows = Vec::new();
    let mut key = q.cursor.as_ref().map(|cur| cur.key.clone());
    let mut inclusive = true;
    for _ in 0..sql::KEY_BY_KEY_MAX_STEPS {
        let next = sql::next_key_query(Dialect::Postgres, ws, q.sort, key.as_ref(), inclusive);
        let Some(row) = query_rows(client, &next).await?.pop() else {
            return Ok(rows);
        };
        let value = if int_key {
            SortValue::Int(row.get(0))
        } else {
            SortValue::Text(row.get(0))
        };
        rows.extend(
            page_rows(sql::page_query(
                Dialect::Postgres,
                ws,
                q,
                plan,
                &PageOptions {
                    agent_names: names,
                    key_equals: Some(&value),
                    ..Default::default()
                },
            ))
            .await?,
        );
        if rows.len() >= want {
            rows.truncate(want);
            return Ok(rows);
        }
        key = Some(value);
        inclusive = false;
    }
    // Many keys with few rows each: read what follows the last key visited in one query.
    let Some(last) = key else { return Ok(rows) };
    let rest = ListQuery {
        cursor: Some(sql::cursor_past_key(q.sort, last)),
        ..q.clone()
    };
    rows.extend(
        page_rows(sql::page_query(
            Dialect::Postgres,
            ws,
            &rest,
            plan,
            &PageOptions {
                agent_names: names,
                ..Default::default()
            },
        ))
        .await?,
    );
    rows.truncate(want);
    Ok(rows)
}

pub(super) async fn list_conversations(
    pool: &Pool,
    ws: WorkspaceId,
    q: &ListQuery,
    probe_limit: usize,
    bounded_walk: i64,
) -> Result<ConversationPage> {
    let client = pool.get().await?;
    let limit = q.limit.clamp(1, parley_core::query::MAX_LIMIT) as usize;
    let names = agent_names(&client, ws, &q.filter).await?;
    let mut found = None;
    let mut plan = None;
    // A date range under a sort led by another key: read key by key (see
    // `sql::key_by_key_column`), a term tested on each key's slice of the range as it is
    // walked. No probe first: even a short one costs a medium term a sequential scan or the
    // whole bitmap of its trigrams (130-220 ms at 100 k conversations for `LIMIT 1001` rows of
    // a term in 1 % of the messages), while the slices of a range are walked in a few ms; a
    // rare term pays for testing the range's rows instead.
    if sql::key_by_key_column(q).is_some() {
        let step = q.filter.q.as_deref().map_or(SearchPlan::None, sql::walk);
        found = Some(key_by_key(&client, ws, q, &names, &step).await?);
    }
    if let Some(term) =
        q.filter.q.as_deref().filter(|t| {
            found.is_none() && plan.is_none() && bounded_walk > 0 && t.chars().count() >= 3
        })
    {
        // Only the first `bounded_walk` rows are tested: find the last of them, then walk in
        // index order up to it (the page stops once full).
        let nth = sql::nth_row_query(Dialect::Postgres, ws, q, bounded_walk, &names, false);
        let through = query_rows(&client, &nth).await?.pop().map(|r| {
            let key = if sql::text_key(q.sort) {
                SortValue::Text(r.get(2))
            } else {
                SortValue::Int(r.get(2))
            };
            sql::boundary(q.sort, r.get(0), r.get(1), key)
        });
        let sql = sql::page_query(
            Dialect::Postgres,
            ws,
            q,
            &sql::walk(term),
            &PageOptions {
                through: through.as_ref(),
                agent_names: &names,
                ..Default::default()
            },
        );
        let rows = query_rows(&client, &sql)
            .await?
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>>>()?;
        // Without a boundary the walk covered the whole list: its rows are the answer. A term
        // dense enough among the rows walked is walked on; only a rarer one probes the index
        // (which reads every message holding it, up to the probe limit).
        if rows.len() > limit || through.is_none() {
            found = Some(rows);
        } else if sql::walk_beats_probe(
            rows.len(),
            bounded_walk,
            limit,
            conversation_total(pool, ws).await?,
        ) {
            plan = Some(sql::walk(term));
        }
    }
    let mut rows = match found {
        Some(rows) => rows,
        None => {
            let plan = match plan {
                Some(plan) => plan,
                None => plan_search(&client, ws, q.filter.q.as_deref(), probe_limit).await?,
            };
            if plan == SearchPlan::Candidates(Vec::new()) {
                return Ok(ConversationPage {
                    items: Vec::new(),
                    next_cursor: None,
                });
            }
            let sql = sql::page_query(
                Dialect::Postgres,
                ws,
                q,
                &plan,
                &PageOptions {
                    agent_names: &names,
                    ..Default::default()
                },
            );
            query_rows(&client, &sql)
                .await?
                .iter()
                .map(summary_from_row)
                .collect::<Result<Vec<_>>>()?
        }
    };
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if has_more {
        rows.last().map(|(_, s)| Cursor::after(q.sort, s).encode())
    } else {
        None
    };
    let matches = match &q.filter.q {
        Some(term) if !rows.is_empty() => search_matches(&client, &rows, term).await?,
        _ => vec![None; rows.len()],
    };
    let items = rows
        .into_iter()
        .zip(matches)
        .map(|((_, conversation), search_match)| ListedConversation {
            conversation,
            search_match,
        })
        .collect();
    Ok(ConversationPage { items, next_cursor })
}

pub(super) async fn count_conversations(
    pool: &Pool,
    ws: WorkspaceId,
    f: &ConversationFilter,
    probe_limit: usize,
) -> Result<ConversationCount> {
    if f.is_empty() {
        return Ok(ConversationCount {
            count: conversation_total(pool, ws).await?,
            exact: true,
        });
    }
    let client = pool.get().await?;
    let plan = plan_search(&client, ws, f.q.as_deref(), probe_limit).await?;
    if plan == SearchPlan::Candidates(Vec::new()) {
        return Ok(ConversationCount {
            count: 0,
            exact: true,
        });
    }
    let capped = matches!(plan, SearchPlan::Walk { .. });
    let mut sql = Sql::new(
        Dialect::Postgres,
        "SELECT count(*) FROM (SELECT 1 FROM conversations c",
    );
    let names = agent_names(&client, ws, f).await?;
    push_filters(&mut sql, ws, f, &plan, &names);
    if capped {
        let l = sql.bind(Param::Int(SEARCH_COUNT_CAP as i64));
        sql.push(&format!(" LIMIT {l}"));
    }
    sql.push(") AS counted");
    let n: i64 = query_rows(&client, &sql)
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or(0);
    Ok(ConversationCount {
        count: n as u64,
        exact: !(capped && n as u64 >= SEARCH_COUNT_CAP),
    })
}

pub(super) fn message_from_row(r: &Row) -> Result<Message> {
    let prompt: Option<i64> = r.get(6);
    let completion: Option<i64> = r.get(7);
    let usage = match (prompt, completion) {
        (None, None) => None,
        (p, c) => Some(Usage {
            prompt_tokens: p.unwrap_or(0),
            completion_tokens: c.unwrap_or(0),
        }),
    };
    Ok(Message {
        id: MessageId(r.get(0)),
        external_id: r.get(1),
        role: parse(r.get::<_, &str>(2))?,
        content: r.get(3),
        created_at: ts(r.get(4)),
        model: r.get(5),
        usage,
        cost_nanousd: r.get(8),
        cost_source: r.get::<_, Option<&str>>(9).and_then(CostSource::parse),
        meta: sql::meta_from_text(r.get::<_, Option<&str>>(10)),
    })
}

pub(super) async fn list_messages(
    pool: &Pool,
    ws: WorkspaceId,
    id: ConversationId,
    q: &TranscriptQuery,
) -> Result<Option<MessagePage>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT pk, stored_message_count, message_count FROM conversations WHERE id = $1 AND workspace_id = $2")
        .await?;
    let Some(row) = client.query_opt(&stmt, &[&id.0, &ws.0]).await? else {
        return Ok(None);
    };
    let (pk, stored, visible): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let (total, column) = if q.include_hidden {
        (stored, "seq")
    } else {
        (visible, "visible_seq")
    };
    let per_page = q.per_page.max(1);
    let total_pages = (total + per_page as i64 - 1) / per_page as i64;
    let items = match q.position_range(total) {
        None => Vec::new(),
        Some((lo, hi)) => {
            let dir = if q.newest_first { "DESC" } else { "ASC" };
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE conversation = $1 AND {column} BETWEEN $2 AND $3 ORDER BY {column} {dir}"
                ))
                .await?;
            client
                .query(&stmt, &[&pk, &lo, &hi])
                .await?
                .iter()
                .map(message_from_row)
                .collect::<Result<_>>()?
        }
    };
    Ok(Some(MessagePage {
        items,
        page: q.page,
        per_page,
        total,
        total_pages,
    }))
}

pub(super) async fn export_conversations(
    pool: &Pool,
    ws: WorkspaceId,
    ids: &[ConversationId],
) -> Result<Vec<ConversationExport>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation = $1 ORDER BY seq"
        ))
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some((pk, detail)) = detail_by(&client, ws, *id).await? else {
            continue;
        };
        let messages = client
            .query(&stmt, &[&pk])
            .await?
            .iter()
            .map(message_from_row)
            .collect::<Result<_>>()?;
        out.push(ConversationExport { detail, messages });
    }
    Ok(out)
}

pub(super) const USER_COLS: &str =
    "u.id, u.workspace_id, u.email, u.role, u.created_at, u.name, u.last_sign_in_at";

pub(super) fn user_from_row(r: &Row) -> Result<User> {
    Ok(User {
        id: UserId(r.get(0)),
        workspace_id: WorkspaceId(r.get(1)),
        email: r.get(2),
        role: parse(r.get::<_, &str>(3))?,
        created_at: ts(r.get(4)),
        name: r.get(5),
        last_sign_in_at: r.get::<_, Option<i64>>(6).map(ts),
    })
}
