//! Reads, run on the pool's read-only connections.
//!
//! Search (`q`) first walks the first 500 conversations in sort order (`sql::BOUNDED_WALK_SQLITE`):
//! a term that fills the page among them is common and that page is the answer. Otherwise it
//! runs in one of two ways:
//! - **probe**: for terms of 3+ characters, the trigram FTS5 indexes (which keep no positions)
//!   are asked which rows hold every trigram of the term, and each candidate is verified against
//!   the text with `parley_contains`. When at most the probe limit of conversations match
//!   (`SqliteOptions::search_probe_limit`), the page is selected among exactly those
//!   (`pk IN rarray(...)`): rare terms cost a few index reads.
//! - **walk**: when the term is common (the probe overflows) or shorter than 3 characters (the
//!   trigram index cannot answer it), the list is walked in sort order and each conversation
//!   is tested with `parley_contains` on its fields and visible messages, stopping when the page
//!   is full. A common term fills a page after a few rows.
//!
//! With a date range under a sort led by another key (status, rating, agent, messages), a term
//! that is not rare skips the bounded walk: the page is read key by key, each key's slice of
//! the range sought in its index and walked with the term tested on its rows
//! (`sql::key_by_key_column`). After a bounded walk that did not fill the page, the term is
//! walked on when it was dense enough among the rows walked, else probed
//! (`sql::walk_beats_probe`).

use std::rc::Rc;

use parley_core::model::{
    ApiKey, Assistant, AssistantSummary, AssistantVersion, ConversationDetail, ConversationExport,
    ConversationSummary, Handoff, Message, Sentiment, StoredRating, UsageTotals, User, Variable,
};
use parley_core::pricing::{CostSource, Usage};
use parley_core::query::{ConversationFilter, Cursor, ListQuery, SortValue, TranscriptQuery};
use parley_core::search::{fold, snippet};
use parley_core::{
    ApiKeyId, AssistantId, ConversationId, MessageId, Timestamp, UserId, WorkspaceId,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::sql::{
    self, ASSISTANT_COLS, DETAIL_COLS, Dialect, FROM_CONVERSATIONS, MESSAGE_COLS, PageOptions,
    Param, SUMMARY_COLS, SearchPlan, Sql, push_filters,
};
use crate::{
    ConversationCount, ConversationPage, ListedConversation, MessagePage, Result, SEARCH_COUNT_CAP,
    SearchMatch,
};

/// Characters of context on each side of a search snippet.
const SNIPPET_CONTEXT: usize = 60;

pub(super) fn conversion_error(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("invalid stored {what}").into(),
    )
}

pub(super) fn get_id<T>(
    row: &Row<'_>,
    i: usize,
    from: fn(&[u8]) -> Option<T>,
) -> rusqlite::Result<T> {
    let bytes: Vec<u8> = row.get(i)?;
    from(&bytes).ok_or_else(|| conversion_error(i, "id"))
}

pub(super) fn get_enum<T: std::str::FromStr>(row: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = row.get(i)?;
    text.parse().map_err(|_| conversion_error(i, "name"))
}

fn get_opt_enum<T: std::str::FromStr>(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(i)?;
    text.map(|t| t.parse().map_err(|_| conversion_error(i, "name")))
        .transpose()
}

pub(super) fn ts(v: i64) -> Timestamp {
    Timestamp(v)
}

pub(super) const KEY_COLS: &str =
    "id, workspace_id, name, prefix, created_at, revoked_at, role, last_used_at";

pub(super) fn key_from_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: get_id(r, 0, ApiKeyId::from_slice)?,
        workspace_id: get_id(r, 1, WorkspaceId::from_slice)?,
        name: r.get(2)?,
        prefix: r.get(3)?,
        created_at: ts(r.get(4)?),
        revoked_at: r.get::<_, Option<i64>>(5)?.map(ts),
        role: get_enum(r, 6)?,
        last_used_at: r.get::<_, Option<i64>>(7)?.map(ts),
    })
}

fn assistant_from_row(r: &Row<'_>) -> rusqlite::Result<Assistant> {
    Ok(Assistant {
        id: get_id(r, 0, AssistantId::from_slice)?,
        name: r.get(1)?,
        company: r.get(2)?,
        mode: get_enum(r, 3)?,
        created_at: ts(r.get(4)?),
        version: r.get(5)?,
        settings: sql::settings_from_text(&r.get::<_, String>(6)?),
        updated_at: ts(r.get(7)?),
    })
}

pub(super) fn list_assistants(c: &Connection, ws: WorkspaceId) -> Result<Vec<Assistant>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {ASSISTANT_COLS} FROM assistants WHERE workspace_id = ?1
         ORDER BY name, company, id"
    ))?;
    let rows = stmt.query_map([ws.as_bytes()], assistant_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn get_assistant(
    c: &Connection,
    ws: WorkspaceId,
    id: AssistantId,
) -> Result<Option<Assistant>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {ASSISTANT_COLS} FROM assistants WHERE workspace_id = ?1 AND id = ?2"
    ))?
    .query_row(params![ws.as_bytes(), id.as_bytes()], assistant_from_row)
    .optional()?)
}

pub(super) fn assistant_versions(
    c: &Connection,
    ws: WorkspaceId,
    id: AssistantId,
) -> Result<Option<Vec<AssistantVersion>>> {
    if get_assistant(c, ws, id)?.is_none() {
        return Ok(None);
    }
    let mut stmt = c.prepare_cached(
        "SELECT version, name, company, mode, settings, created_at FROM assistant_versions
          WHERE assistant_id = ?1 ORDER BY version DESC",
    )?;
    let rows = stmt.query_map([id.as_bytes()], |r| {
        Ok(AssistantVersion {
            version: r.get(0)?,
            name: r.get(1)?,
            company: r.get(2)?,
            mode: get_enum(r, 3)?,
            settings: sql::settings_from_text(&r.get::<_, String>(4)?),
            created_at: ts(r.get(5)?),
        })
    })?;
    Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
}

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<(i64, ConversationSummary)> {
    let rating: i64 = r.get(18)?;
    let rating = match rating {
        1..=5 => Some(StoredRating {
            score: rating as u8,
            comment: r.get(19)?,
            rated_at: ts(r.get::<_, Option<i64>>(20)?.unwrap_or_default()),
        }),
        _ => None,
    };
    let sentiment = get_opt_enum(r, 21)?.map(|label| Sentiment {
        label,
        score: r.get(22).ok().flatten(),
    });
    let prompt: i64 = r.get(15)?;
    let completion: i64 = r.get(16)?;
    let mut s = ConversationSummary {
        id: get_id(r, 1, ConversationId::from_slice)?,
        external_id: r.get(2)?,
        assistant: AssistantSummary {
            id: get_id(r, 3, AssistantId::from_slice)?,
            name: r.get(4)?,
            company: r.get(5)?,
        },
        channel: get_enum(r, 6)?,
        status: get_enum(r, 7)?,
        contact: r.get(8)?,
        session_id: r.get(9)?,
        started_at: ts(r.get(10)?),
        ended_at: r.get::<_, Option<i64>>(11)?.map(ts),
        last_message_at: ts(r.get(12)?),
        last_message_preview: r.get(13)?,
        message_count: r.get(14)?,
        usage: UsageTotals::from(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
        }),
        cost_nanousd: r.get(17)?,
        rating,
        sentiment,
        end_reason: r.get(23)?,
        converted: r.get(24)?,
        duration_ms: None,
        taken_over_at: r.get::<_, Option<i64>>(25)?.map(ts),
        handoff: match (
            r.get::<_, Option<String>>(26)?,
            r.get::<_, Option<i64>>(27)?,
        ) {
            (Some(reason), Some(at)) => Some(Handoff {
                reason,
                requested_at: ts(at),
            }),
            _ => None,
        },
        assignee_id: r
            .get::<_, Option<Vec<u8>>>(28)?
            .and_then(|b| UserId::from_slice(&b)),
    };
    s.compute_duration();
    Ok((r.get(0)?, s))
}

fn variables_of(c: &Connection, pk: i64) -> Result<Vec<Variable>> {
    let mut stmt = c.prepare_cached(
        "SELECT key, value, source FROM variables WHERE conversation = ?1 ORDER BY key",
    )?;
    let rows = stmt.query_map([pk], |r| {
        Ok(Variable {
            key: r.get(0)?,
            value: r.get(1)?,
            source: get_enum(r, 2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn detail_by(
    c: &Connection,
    ws: WorkspaceId,
    id: ConversationId,
) -> Result<Option<(i64, ConversationDetail)>> {
    let sql = format!(
        "SELECT {SUMMARY_COLS}, {DETAIL_COLS} {FROM_CONVERSATIONS} WHERE c.id = ?1 AND c.workspace_id = ?2"
    );
    let row = c
        .prepare_cached(&sql)?
        .query_row(params![id.as_bytes(), ws.as_bytes()], |r| {
            let (pk, summary) = summary_from_row(r)?;
            let memory: String = r.get(29)?;
            Ok((
                pk,
                ConversationDetail {
                    summary,
                    variables: Vec::new(),
                    memory: serde_json::from_str(&memory).unwrap_or_default(),
                    stored_message_count: r.get(30)?,
                    unpriced_message_count: r.get(31)?,
                    has_voice: r.get(32)?,
                    last_inbound_at: r.get::<_, Option<i64>>(33)?.map(ts),
                    created_at: ts(r.get(34)?),
                    updated_at: ts(r.get(35)?),
                    assistant_version: r.get(36)?,
                },
            ))
        })
        .optional()?;
    let Some((pk, mut detail)) = row else {
        return Ok(None);
    };
    detail.variables = variables_of(c, pk)?;
    Ok(Some((pk, detail)))
}

pub(super) fn get_conversation(
    c: &Connection,
    ws: WorkspaceId,
    id: ConversationId,
) -> Result<Option<ConversationDetail>> {
    Ok(detail_by(c, ws, id)?.map(|(_, d)| d))
}

pub(super) fn conversation_total(c: &Connection, ws: WorkspaceId) -> Result<u64> {
    let n: Option<i64> = c
        .prepare_cached("SELECT conversation_count FROM workspaces WHERE id = ?1")?
        .query_row([ws.as_bytes()], |r| r.get(0))
        .optional()?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

pub(super) fn to_value(p: &Param) -> Value {
    match p {
        Param::Int(i) => Value::Integer(*i),
        Param::Text(t) => Value::Text(t.clone()),
        Param::Uuid(u) => Value::Blob(u.as_bytes().to_vec()),
        Param::IntList(_) => Value::Null,
        Param::OptInt(i) => i.map_or(Value::Null, Value::Integer),
        Param::OptText(t) => t.clone().map_or(Value::Null, Value::Text),
        Param::OptFloat(f) => f.map_or(Value::Null, Value::Real),
        Param::OptBool(b) => b.map_or(Value::Null, |b| Value::Integer(i64::from(b))),
        Param::OptUuid(u) => u.map_or(Value::Null, |u| Value::Blob(u.as_bytes().to_vec())),
    }
}

/// Runs `sql` with its parameters bound (lists through the `rarray` module), mapping every row.
pub(super) fn query_rows<T>(
    c: &Connection,
    sql: &Sql,
    mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(&sql.text)?;
    for (i, p) in sql.params.iter().enumerate() {
        match p {
            Param::IntList(list) => {
                let values: Vec<Value> = list.iter().map(|v| Value::Integer(*v)).collect();
                stmt.raw_bind_parameter(i + 1, Rc::new(values))?
            }
            other => stmt.raw_bind_parameter(i + 1, to_value(other))?,
        }
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Rows of a date range meeting a search's other filters up to which the range is sought and
/// sorted rather than walked in sort order (see [`walk_date_range`]).
const SEARCH_SEEK_ROWS: i64 = 2_000;

/// Whether to walk the sort order with the date range as a filter (see
/// `sql::date_range_is_wide`): only for non-date sorts; counts the range up to the crossover.
///
/// A search tests its term on every row the walk passes that meets the filters, so for a
/// search the question is how many rows of the range meet the other filters: up to
/// `SEARCH_SEEK_ROWS` of them are cheaper to seek, test and sort than walking the sort order
/// past the rows outside the range (200 ms for a week, a channel and an assistant under
/// `-status` at 1 M conversations).
fn walk_date_range(
    c: &Connection,
    ws: WorkspaceId,
    q: &ListQuery,
    names: &[String],
) -> Result<bool> {
    if q.sort.key == parley_core::query::SortKey::Date
        || (q.filter.from.is_none() && q.filter.to.is_none())
    {
        return Ok(false);
    }
    if q.filter.q.is_some() {
        let mut sql = Sql::new(
            Dialect::Sqlite,
            "SELECT count(*) FROM (SELECT 1 FROM conversations c INDEXED BY conversations_by_date",
        );
        push_filters(&mut sql, ws, &q.filter, &SearchPlan::None, names);
        let l = sql.bind(Param::Int(SEARCH_SEEK_ROWS));
        sql.push(&format!(" LIMIT {l})"));
        let n = query_rows(c, &sql, |r| r.get::<_, i64>(0))?
            .first()
            .copied()
            .unwrap_or(0);
        return Ok(n >= SEARCH_SEEK_ROWS);
    }
    let total = conversation_total(c, ws)? as i64;
    let cap = (51.0 * total.max(1) as f64).sqrt().ceil() as i64;
    let n: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM conversations c INDEXED BY conversations_by_date
              WHERE c.workspace_id = ?1 AND c.last_message_at >= ?2 AND c.last_message_at < ?3 LIMIT ?4)",
        )?
        .query_row(
            params![ws.as_bytes(), q.filter.from.map_or(i64::MIN, |t| t.0), q.filter.to.map_or(i64::MAX, |t| t.0), cap],
            |r| r.get(0),
        )?;
    Ok(sql::date_range_is_wide(n, total))
}

/// The names of the filter's assistants (see `sql::push_filters`).
fn agent_names(c: &Connection, ws: WorkspaceId, f: &ConversationFilter) -> Result<Vec<String>> {
    if f.assistants.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Value> = f
        .assistants
        .iter()
        .map(|a| Value::Blob(a.as_bytes().to_vec()))
        .collect();
    let mut stmt = c.prepare_cached("SELECT DISTINCT name FROM assistants WHERE workspace_id = ?1 AND id IN rarray(?2) ORDER BY name")?;
    let names = stmt.query_map(params![ws.as_bytes(), Rc::new(ids)], |r| r.get(0))?;
    Ok(names.collect::<rusqlite::Result<_>>()?)
}

/// The term's distinct trigrams, each quoted as an FTS5 string, likeliest-rare first: by the
/// sum of their characters' commonness in text (letters by their frequency in English, then
/// digits, space and punctuation as most common), so a rare word's telling trigram is usually
/// among the first looked up.
fn quoted_trigrams(term: &str) -> Vec<String> {
    fn commonness(c: char) -> u32 {
        const LETTERS: &str = "zqxjkvbpygfwmucldrhsnioate";
        match c.to_ascii_lowercase() {
            ' ' | '.' | ',' => 40,
            l if l.is_ascii_lowercase() => LETTERS.find(l).map_or(10, |i| i as u32 + 1),
            d if d.is_ascii_digit() => 20,
            _ => 10,
        }
    }
    let chars: Vec<char> = term.chars().collect();
    let mut out: Vec<(u32, String)> = chars
        .windows(3)
        .map(|w| {
            let text: String = w.iter().collect();
            (
                w.iter().map(|c| commonness(*c)).sum(),
                format!("\"{}\"", text.replace('"', "\"\"")),
            )
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.1 == b.1);
    out.into_iter().map(|(_, t)| t).collect()
}

/// Trigrams [`rarest_trigrams`] looks up at most before it calls a term not rare.
const TRIGRAMS_TRIED: usize = 12;

/// A trigram of `term` in at most `limit` rows of the full-text table `table` (with a second
/// such one when found, as an FTS5 `AND` expression); `Ok(None)` when none of the
/// [`TRIGRAMS_TRIED`] likeliest-rare trigrams is. Each trigram's rows are counted only up to
/// `limit + 1`, so a common trigram costs a short read of its doclist, not all of it; the
/// lookups stop at a trigram in no row, or at the second rare one.
fn rarest_trigrams(
    c: &Connection,
    table: &str,
    term: &str,
    limit: usize,
) -> Result<Option<String>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ?1 LIMIT ?2)"
    ))?;
    let mut rare: Vec<String> = Vec::new();
    for t in quoted_trigrams(term).into_iter().take(TRIGRAMS_TRIED) {
        let n: i64 = stmt.query_row(params![t, limit as i64 + 1], |r| r.get(0))?;
        if n == 0 {
            return Ok(Some(t));
        }
        if n <= limit as i64 {
            rare.push(t);
            if rare.len() == 2 {
                break;
            }
        }
    }
    Ok((!rare.is_empty()).then(|| rare.join(" AND ")))
}

/// Rows of a trigram [`narrowest_trigrams`] counts at most.
const TRIGRAM_COUNT_CAP: i64 = 20_000;

/// Trigrams [`narrowest_trigrams`] intersects at most.
const TRIGRAMS_INTERSECTED: usize = 3;

/// The FTS5 `AND` of the term's (3+ characters) trigrams in the fewest rows of `table`: of the
/// [`TRIGRAMS_TRIED`] likeliest-rare ones, each counted up to [`TRIGRAM_COUNT_CAP`], the
/// [`TRIGRAMS_INTERSECTED`] smallest (a trigram in no row alone). Every row holding the term
/// holds all of them, and each candidate is verified against the text, so the probe stays
/// exact; intersecting every trigram instead walks the doclists of the common ones (`ess`,
/// `s-0` and `-00` of a session id are in every conversation: 100 ms at 1 M).
fn narrowest_trigrams(c: &Connection, table: &str, term: &str) -> Result<String> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ?1 LIMIT ?2)"
    ))?;
    let mut counted: Vec<(i64, String)> = Vec::new();
    for t in quoted_trigrams(term).into_iter().take(TRIGRAMS_TRIED) {
        let n: i64 = stmt.query_row(params![t, TRIGRAM_COUNT_CAP + 1], |r| r.get(0))?;
        if n == 0 {
            return Ok(t);
        }
        counted.push((n, t));
    }
    counted.sort();
    Ok(counted
        .into_iter()
        .take(TRIGRAMS_INTERSECTED)
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(" AND "))
}

/// Most rows a trigram may be in for [`rare_candidates`] to read the conversations straight
/// from it (each such row is fetched and verified).
const RARE_TRIGRAM_ROWS: usize = 1_000;

/// The conversations containing `term` (3+ characters) when it is rare: on each side (message
/// texts, the conversations' own fields) some trigram of it is in at most
/// `min(RARE_TRIGRAM_ROWS, probe_limit)` rows. Then those rows, verified against the text, are
/// exactly the matches, read without the full `AND` of every trigram (which walks the long
/// doclists of the term's common trigrams: 10 ms for an 11-letter word at 16 M messages).
/// `Ok(None)` when the term is not rare on some side.
fn rare_candidates(c: &Connection, term: &str, probe_limit: usize) -> Result<Option<Vec<i64>>> {
    let limit = RARE_TRIGRAM_ROWS.min(probe_limit);
    let Some(in_messages) = rarest_trigrams(c, "messages_fts", term, limit)? else {
        return Ok(None);
    };
    let Some(in_fields) = rarest_trigrams(c, "conversations_fts", term, limit)? else {
        return Ok(None);
    };
    let folded = parley_core::search::fold(term);
    let mut pks: Vec<i64> = c
        .prepare_cached(
            "SELECT m.conversation FROM messages_fts f JOIN messages m ON m.pk = f.rowid
              WHERE messages_fts MATCH ?1 AND parley_contains(m.content, ?2)",
        )?
        .query_map(params![in_messages, folded], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    pks.extend(
        c.prepare_cached(
            "SELECT c.pk FROM conversations_fts f JOIN conversations c ON c.pk = f.rowid
              WHERE conversations_fts MATCH ?1
                AND (parley_contains(c.session_id, ?2) OR parley_contains(c.contact, ?2)
                     OR parley_contains(c.assistant_name, ?2))",
        )?
        .query_map(params![in_fields, folded], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?,
    );
    pks.sort_unstable();
    pks.dedup();
    if pks.len() > probe_limit {
        return Ok(None);
    }
    Ok(Some(pks))
}

/// How `q` restricts the rows: exact candidates from the index when the term is rare or
/// found in at most `probe_limit` conversations, else the walk. `rare_tried`: the caller already
/// asked [`rare_candidates`] (and it said no).
fn plan_search(
    c: &Connection,
    q: Option<&str>,
    probe_limit: usize,
    rare_tried: bool,
) -> Result<SearchPlan> {
    let Some(term) = q else {
        return Ok(SearchPlan::None);
    };
    if term.chars().count() < 3 {
        return Ok(sql::walk(term));
    }
    if !rare_tried && let Some(pks) = rare_candidates(c, term, probe_limit)? {
        return Ok(SearchPlan::Candidates(pks));
    }
    // The indexes keep no positions (detail=none): look up the term's narrowest trigrams, then
    // verify each candidate row with the same test the walk uses, so results are exact. The
    // rows stream (no UNION to materialise first), so a term in more than `probe_limit`
    // conversations stops the read there.
    let folded = parley_core::search::fold(term);
    let mut pks = std::collections::HashSet::new();
    for (table, sql) in [
        (
            "messages_fts",
            "SELECT m.conversation FROM messages_fts f JOIN messages m ON m.pk = f.rowid
              WHERE messages_fts MATCH ?1 AND parley_contains(m.content, ?2)",
        ),
        (
            "conversations_fts",
            "SELECT c.pk FROM conversations_fts f JOIN conversations c ON c.pk = f.rowid
              WHERE conversations_fts MATCH ?1
                AND (parley_contains(c.session_id, ?2) OR parley_contains(c.contact, ?2)
                     OR parley_contains(c.assistant_name, ?2))",
        ),
    ] {
        let trigrams = narrowest_trigrams(c, table, term)?;
        let mut stmt = c.prepare_cached(sql)?;
        let mut rows = stmt.query(params![trigrams, folded])?;
        while let Some(row) = rows.next()? {
            pks.insert(row.get::<_, i64>(0)?);
            if pks.len() > probe_limit {
                return Ok(sql::walk(term));
            }
        }
    }
    let mut pks: Vec<i64> = pks.into_iter().collect();
    pks.sort_unstable();
    Ok(SearchPlan::Candidates(pks))
}

/// Where `term` matched conversation `pk` (most recent visible message first).
fn search_match(
    c: &Connection,
    pk: i64,
    s: &ConversationSummary,
    term: &str,
) -> Result<Option<SearchMatch>> {
    let folded = fold(term);
    let hit: Option<(Vec<u8>, String)> = c
        .prepare_cached(
            "SELECT id, content FROM messages
              WHERE conversation = ?1 AND visible_seq IS NOT NULL AND parley_contains(content, ?2)
              ORDER BY visible_seq DESC LIMIT 1",
        )?
        .query_row(params![pk, folded], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((id, content)) = hit
        && let Some(snip) = snippet(&content, term, SNIPPET_CONTEXT)
    {
        return Ok(Some(SearchMatch {
            field: "content",
            message_id: MessageId::from_slice(&id),
            snippet: snip,
        }));
    }
    Ok(sql::field_match(s, term, SNIPPET_CONTEXT))
}

/// A page read one sort-key value at a time (see `sql::key_by_key_column`): up to
/// `KEY_BY_KEY_MAX_STEPS` values, each one seek, then the remaining keys in one ordinary query.
/// `plan` is the search's condition on each step's rows (`SearchPlan::None` without a search).
/// Returns up to `limit + 1` rows in sort order.
fn key_by_key(
    c: &Connection,
    ws: WorkspaceId,
    q: &ListQuery,
    names: &[String],
    plan: &SearchPlan,
) -> Result<Vec<(i64, ConversationSummary)>> {
    let want = q.limit.clamp(1, parley_core::query::MAX_LIMIT) as usize + 1;
    let key_of = |r: &Row<'_>| -> rusqlite::Result<SortValue> {
        Ok(match r.get_ref(0)? {
            rusqlite::types::ValueRef::Integer(i) => SortValue::Int(i),
            other => SortValue::Text(other.as_str()?.to_owned()),
        })
    };
    let mut rows = Vec::new();
    let mut key = q.cursor.as_ref().map(|cur| cur.key.clone());
    let mut inclusive = true;
    for _ in 0..sql::KEY_BY_KEY_MAX_STEPS {
        let next = sql::next_key_query(Dialect::Sqlite, ws, q.sort, key.as_ref(), inclusive);
        let Some(value) = query_rows(c, &next, key_of)?.pop() else {
            return Ok(rows);
        };
        let page = sql::page_query(
            Dialect::Sqlite,
            ws,
            q,
            plan,
            &PageOptions {
                agent_names: names,
                key_equals: Some(&value),
                ..Default::default()
            },
        );
        rows.extend(query_rows(c, &page, summary_from_row)?);
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
    let page = sql::page_query(
        Dialect::Sqlite,
        ws,
        &rest,
        plan,
        &PageOptions {
            agent_names: names,
            ..Default::default()
        },
    );
    rows.extend(query_rows(c, &page, summary_from_row)?);
    rows.truncate(want);
    Ok(rows)
}

pub(super) fn list_conversations(
    c: &Connection,
    ws: WorkspaceId,
    q: &ListQuery,
    probe_limit: usize,
    bounded_walk: i64,
) -> Result<ConversationPage> {
    let limit = q.limit.clamp(1, parley_core::query::MAX_LIMIT) as usize;
    let names = agent_names(c, ws, &q.filter)?;
    // A term that fills the page among the first conversations in order is common: that walk
    // is the page. Otherwise ask the index (see the module docs).
    let mut found = None;
    // A rare term's conversations come straight from the index; only a term that is not rare
    // is tried by walking.
    let mut plan = None;
    if let Some(term) = q.filter.q.as_deref().filter(|t| t.chars().count() >= 3)
        && let Some(pks) = rare_candidates(c, term, probe_limit)?
    {
        plan = Some(SearchPlan::Candidates(pks));
    }
    // A date range under a sort led by another key: read key by key, a search (not rare)
    // walking each key's slice of the range (see `sql::key_by_key_column`).
    if plan.is_none() && sql::key_by_key_column(q).is_some() {
        let step = q.filter.q.as_deref().map_or(SearchPlan::None, sql::walk);
        found = Some(key_by_key(c, ws, q, &names, &step)?);
    }
    let date_as_filter = found.is_none() && walk_date_range(c, ws, q, &names)?;
    if let Some(term) =
        q.filter.q.as_deref().filter(|t| {
            found.is_none() && plan.is_none() && bounded_walk > 0 && t.chars().count() >= 3
        })
    {
        // Only the first `bounded_walk` rows are tested: find the last of them, then walk in
        // index order up to it (the page stops once full).
        let nth = sql::nth_row_query(Dialect::Sqlite, ws, q, bounded_walk, &names, date_as_filter);
        let through = query_rows(c, &nth, |r| {
            let id: Vec<u8> = r.get(0)?;
            let key = match r.get_ref(2)? {
                rusqlite::types::ValueRef::Integer(i) => SortValue::Int(i),
                other => SortValue::Text(other.as_str()?.to_owned()),
            };
            Ok(sql::boundary(
                q.sort,
                uuid::Uuid::from_slice(&id).unwrap_or_default(),
                r.get(1)?,
                key,
            ))
        })?
        .pop();
        let sql = sql::page_query(
            Dialect::Sqlite,
            ws,
            q,
            &sql::walk(term),
            &PageOptions {
                through: through.as_ref(),
                agent_names: &names,
                date_as_filter,
                key_equals: None,
            },
        );
        let rows = query_rows(c, &sql, summary_from_row)?;
        // Without a boundary the walk covered the whole list: its rows are the answer. A term
        // in enough of the rows walked is common enough to walk on; only a rarer one asks
        // the index for every conversation holding it.
        if rows.len() > limit || through.is_none() {
            found = Some(rows);
        } else if sql::walk_beats_probe(rows.len(), bounded_walk, limit, conversation_total(c, ws)?)
        {
            plan = Some(sql::walk(term));
        }
    }
    let mut rows = match found {
        Some(rows) => rows,
        None => {
            let plan = match plan {
                Some(plan) => plan,
                None => plan_search(c, q.filter.q.as_deref(), probe_limit, true)?,
            };
            if plan == SearchPlan::Candidates(Vec::new()) {
                return Ok(ConversationPage {
                    items: Vec::new(),
                    next_cursor: None,
                });
            }
            query_rows(
                c,
                &sql::page_query(
                    Dialect::Sqlite,
                    ws,
                    q,
                    &plan,
                    &PageOptions {
                        agent_names: &names,
                        date_as_filter,
                        ..Default::default()
                    },
                ),
                summary_from_row,
            )?
        }
    };
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if has_more {
        rows.last().map(|(_, s)| Cursor::after(q.sort, s).encode())
    } else {
        None
    };
    let mut items = Vec::with_capacity(rows.len());
    for (pk, summary) in rows {
        let search_match = match &q.filter.q {
            Some(term) => search_match(c, pk, &summary, term)?,
            None => None,
        };
        items.push(ListedConversation {
            conversation: summary,
            search_match,
        });
    }
    Ok(ConversationPage { items, next_cursor })
}

pub(super) fn count_conversations(
    c: &Connection,
    ws: WorkspaceId,
    f: &ConversationFilter,
    probe_limit: usize,
) -> Result<ConversationCount> {
    if f.is_empty() {
        return Ok(ConversationCount {
            count: conversation_total(c, ws)?,
            exact: true,
        });
    }
    let plan = plan_search(c, f.q.as_deref(), probe_limit, false)?;
    if let SearchPlan::Candidates(pks) = &plan
        && pks.is_empty()
    {
        return Ok(ConversationCount {
            count: 0,
            exact: true,
        });
    }
    let capped = matches!(plan, SearchPlan::Walk { .. });
    let mut sql = Sql::new(
        Dialect::Sqlite,
        "SELECT count(*) FROM (SELECT 1 FROM conversations c",
    );
    push_filters(&mut sql, ws, f, &plan, &agent_names(c, ws, f)?);
    if capped {
        let l = sql.bind(Param::Int(SEARCH_COUNT_CAP as i64));
        sql.push(&format!(" LIMIT {l}"));
    }
    sql.push(")");
    let n = query_rows(c, &sql, |r| r.get::<_, i64>(0))?
        .first()
        .copied()
        .unwrap_or(0) as u64;
    Ok(ConversationCount {
        count: n,
        exact: !(capped && n >= SEARCH_COUNT_CAP),
    })
}

pub(super) fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let prompt: Option<i64> = r.get(6)?;
    let completion: Option<i64> = r.get(7)?;
    let usage = match (prompt, completion) {
        (None, None) => None,
        (p, c) => Some(Usage {
            prompt_tokens: p.unwrap_or(0),
            completion_tokens: c.unwrap_or(0),
        }),
    };
    Ok(Message {
        id: get_id(r, 0, MessageId::from_slice)?,
        external_id: r.get(1)?,
        role: get_enum(r, 2)?,
        content: r.get(3)?,
        created_at: ts(r.get(4)?),
        model: r.get(5)?,
        usage,
        cost_nanousd: r.get(8)?,
        cost_source: r
            .get::<_, Option<String>>(9)?
            .and_then(|s| CostSource::parse(&s)),
        meta: sql::meta_from_text(r.get::<_, Option<String>>(10)?.as_deref()),
    })
}

pub(super) fn list_messages(
    c: &Connection,
    ws: WorkspaceId,
    id: ConversationId,
    q: &TranscriptQuery,
) -> Result<Option<MessagePage>> {
    let found: Option<(i64, i64, i64)> = c
        .prepare_cached(
            "SELECT pk, stored_message_count, message_count FROM conversations
              WHERE id = ?1 AND workspace_id = ?2",
        )?
        .query_row(params![id.as_bytes(), ws.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((pk, stored, visible)) = found else {
        return Ok(None);
    };
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
            let sql = format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE conversation = ?1 AND {column} BETWEEN ?2 AND ?3
                 ORDER BY {column} {dir}"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![pk, lo, hi], message_from_row)?;
            rows.collect::<rusqlite::Result<_>>()?
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

pub(super) fn export_conversations(
    c: &Connection,
    ws: WorkspaceId,
    ids: &[ConversationId],
) -> Result<Vec<ConversationExport>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some((pk, detail)) = detail_by(c, ws, *id)? else {
            continue;
        };
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation = ?1 ORDER BY seq"
        ))?;
        let messages = stmt
            .query_map([pk], message_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(ConversationExport { detail, messages });
    }
    Ok(out)
}

pub(super) const USER_COLS: &str =
    "u.id, u.workspace_id, u.email, u.role, u.created_at, u.name, u.last_sign_in_at";

pub(super) fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: get_id(r, 0, UserId::from_slice)?,
        workspace_id: get_id(r, 1, WorkspaceId::from_slice)?,
        email: r.get(2)?,
        role: get_enum(r, 3)?,
        created_at: ts(r.get(4)?),
        name: r.get(5)?,
        last_sign_in_at: r.get::<_, Option<i64>>(6)?.map(ts),
    })
}
