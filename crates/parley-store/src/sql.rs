//! SQL text shared by the backends: the list's filters, keyset cursor and order, built once so
//! both backends page identically. Placeholders, array membership and case-insensitive
//! substring tests differ per [`Dialect`]; each backend converts [`Param`]s to its driver's
//! values.

use parley_core::WorkspaceId;
use parley_core::query::{ConversationFilter, Cursor, ListQuery, Sort, SortKey, SortValue};
use uuid::Uuid;

/// Columns of a list row, in the order the backends read them (`c.pk` first).
pub(crate) const SUMMARY_COLS: &str = "c.pk, c.id, c.external_id, c.assistant_id, c.assistant_name, \
    coalesce(a.company, ''), c.channel, c.status, c.contact, c.session_id, c.started_at, \
    c.ended_at, c.last_message_at, c.last_message_preview, c.message_count, c.prompt_tokens, \
    c.completion_tokens, c.cost_nanousd, c.rating, c.rating_comment, c.rated_at, c.sentiment, \
    c.sentiment_score, c.end_reason, c.converted, c.taken_over_at, c.handoff_reason, c.handoff_at, \
    c.assignee_id";

/// Extra columns of the full record, after [`SUMMARY_COLS`].
pub(crate) const DETAIL_COLS: &str = "c.memory, c.stored_message_count, c.unpriced_message_count, \
    c.has_voice, c.last_inbound_at, c.created_at, c.updated_at, c.assistant_version";

/// Columns of an assistant, in the order the backends read them.
pub(crate) const ASSISTANT_COLS: &str =
    "id, name, company, mode, created_at, version, settings, updated_at";

/// The list's `FROM` clause (the assistant's company comes from its row).
pub(crate) const FROM_CONVERSATIONS: &str =
    "FROM conversations c LEFT JOIN assistants a ON a.id = c.assistant_id";

/// Columns of a message, in the order the backends read them.
pub(crate) const MESSAGE_COLS: &str = "id, external_id, role, content, created_at, model, prompt_tokens, \
    completion_tokens, cost_nanousd, cost_source, meta";

/// A message's meta as stored: JSON, or NULL when empty.
pub(crate) fn meta_text(meta: &parley_core::model::MessageMeta) -> Option<String> {
    (!meta.is_empty()).then(|| serde_json::to_string(meta).unwrap_or_default())
}

/// Reads a stored meta; unreadable JSON (never written by Parley) reads as empty.
pub(crate) fn meta_from_text(text: Option<&str>) -> parley_core::model::MessageMeta {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// Reads stored assistant settings; unreadable JSON reads as the defaults.
pub(crate) fn settings_from_text(text: &str) -> parley_core::assistant::AssistantSettings {
    serde_json::from_str(text).unwrap_or_default()
}

/// Assistant settings as stored.
pub(crate) fn settings_text(s: &parley_core::assistant::AssistantSettings) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".to_owned())
}

/// Where a search term matched a conversation's own fields (session id, contact, assistant
/// name), when no message matched: the backends' common fallback.
pub(crate) fn field_match(
    s: &parley_core::model::ConversationSummary,
    term: &str,
    context: usize,
) -> Option<crate::SearchMatch> {
    let fields: [(&'static str, Option<&str>); 3] = [
        ("session_id", s.session_id.as_deref()),
        ("contact", s.contact.as_deref()),
        ("assistant_name", Some(s.assistant.name.as_str())),
    ];
    fields.into_iter().find_map(|(field, value)| {
        value
            .and_then(|v| parley_core::search::snippet(v, term, context))
            .map(|snippet| crate::SearchMatch {
                field,
                message_id: None,
                snippet,
            })
    })
}

/// Which SQL the builder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `?N` placeholders, `rarray()`, the `parley_contains` function.
    Sqlite,
    /// `$N` placeholders, `= ANY(...)`, `ILIKE`.
    Postgres,
}

/// A query parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
    Uuid(Uuid),
    IntList(Vec<i64>),
    /// Nullable columns: a typed NULL for PostgreSQL, which checks a parameter's type.
    OptInt(Option<i64>),
    OptText(Option<String>),
    OptFloat(Option<f64>),
    OptBool(Option<bool>),
    OptUuid(Option<Uuid>),
}

/// The assistant `old` after `input` (the versioning rule of
/// [`parley_core::model::Assistant::next_version`], made now), as a store error on a conflict:
/// `Conflict("version_conflict")`.
pub(crate) fn next_assistant(
    old: &parley_core::model::Assistant,
    input: &crate::NewAssistant,
    expected_version: Option<i64>,
) -> crate::Result<parley_core::model::Assistant> {
    old.next_version(
        &input.name,
        &input.company,
        input.mode,
        input.settings.clone(),
        expected_version,
        parley_core::Timestamp::now(),
    )
    .map_err(|e| crate::StoreError::Conflict {
        code: "version_conflict",
        message: e.to_string(),
    })
}

/// The UPDATE that stores assistant `a` at its new version (name, company, mode, version,
/// settings, updated_at), for `dialect`.
pub(crate) fn assistant_update(dialect: Dialect, a: &parley_core::model::Assistant) -> Sql {
    let mut sql = Sql::new(dialect, "UPDATE assistants SET ");
    let values = [
        ("name", Param::Text(a.name.clone())),
        ("company", Param::Text(a.company.clone())),
        ("mode", Param::Text(a.mode.as_str().to_owned())),
        ("version", Param::Int(a.version)),
        ("settings", Param::Text(settings_text(&a.settings))),
        ("updated_at", Param::Int(a.updated_at.0)),
    ];
    let sets: Vec<String> = values
        .into_iter()
        .map(|(column, value)| format!("{column} = {}", sql.bind(value)))
        .collect();
    let id = sql.bind(Param::Uuid(a.id.0));
    sql.push(&sets.join(", "));
    sql.push(&format!(" WHERE id = {id}"));
    sql
}

/// The UPDATE that copies a renamed assistant's name onto its conversations (the list sorts
/// and searches by it), for `dialect`.
pub(crate) fn assistant_rename(dialect: Dialect, a: &parley_core::model::Assistant) -> Sql {
    let mut sql = Sql::new(dialect, "UPDATE conversations SET assistant_name = ");
    let name = sql.bind(Param::Text(a.name.clone()));
    let id = sql.bind(Param::Uuid(a.id.0));
    sql.push(&format!("{name} WHERE assistant_id = {id}"));
    sql
}

/// The one UPDATE of a conversation patch's own columns, for `dialect`: every field the patch
/// names (status, end, rating with its comment and time, sentiment with its score, conversion,
/// contact), `memory` when given (the merged JSON text, see
/// [`parley_core::model::merge_memory`]) and always `updated_at = now`, on the row `pk`.
/// A rating given without a time is rated `now`; clearing the rating stores score 0 and no
/// comment or time. Variables live in their own table and are not part of it.
pub(crate) fn conversation_patch(
    dialect: Dialect,
    pk: i64,
    p: &parley_core::model::ConversationPatch,
    memory: Option<String>,
    now: parley_core::Timestamp,
) -> Sql {
    let mut sql = Sql::new(dialect, "UPDATE conversations SET ");
    let mut sets: Vec<String> = Vec::new();
    let mut set = |sql: &mut Sql, column: &str, value: Param| {
        let mark = sql.bind(value);
        sets.push(format!("{column} = {mark}"));
    };
    if let Some(status) = p.status {
        set(&mut sql, "status", Param::Text(status.as_str().to_owned()));
    }
    if let Some(ended_at) = p.ended_at {
        set(&mut sql, "ended_at", Param::OptInt(ended_at.map(|t| t.0)));
    }
    if let Some(reason) = &p.end_reason {
        set(&mut sql, "end_reason", Param::OptText(reason.clone()));
    }
    if let Some(rating) = &p.rating {
        let (score, comment, at) = match rating {
            Some(r) => (
                i64::from(r.score),
                r.comment.clone(),
                Some(r.rated_at.unwrap_or(now).0),
            ),
            None => (0, None, None),
        };
        set(&mut sql, "rating", Param::Int(score));
        set(&mut sql, "rating_comment", Param::OptText(comment));
        set(&mut sql, "rated_at", Param::OptInt(at));
    }
    if let Some(sentiment) = &p.sentiment {
        let label = sentiment.as_ref().map(|s| s.label.as_str().to_owned());
        set(&mut sql, "sentiment", Param::OptText(label));
        let score = sentiment.as_ref().and_then(|s| s.score);
        set(&mut sql, "sentiment_score", Param::OptFloat(score));
    }
    if let Some(converted) = p.converted {
        set(&mut sql, "converted", Param::OptBool(converted));
    }
    if let Some(contact) = &p.contact {
        set(&mut sql, "contact", Param::Text(contact.clone()));
    }
    if let Some(memory) = memory {
        set(&mut sql, "memory", Param::Text(memory));
    }
    if let Some(at) = p.taken_over {
        set(&mut sql, "taken_over_at", Param::OptInt(at.map(|t| t.0)));
    }
    if let Some(h) = &p.handoff {
        let reason = h.as_ref().map(|h| h.reason.clone());
        set(&mut sql, "handoff_reason", Param::OptText(reason));
        let at = h.as_ref().map(|h| h.requested_at.0);
        set(&mut sql, "handoff_at", Param::OptInt(at));
    }
    if let Some(user) = p.assignee {
        set(&mut sql, "assignee_id", Param::OptUuid(user.map(|u| u.0)));
    }
    set(&mut sql, "updated_at", Param::Int(now.0));
    let pk = sql.bind(Param::Int(pk));
    sql.push(&sets.join(", "));
    sql.push(&format!(" WHERE pk = {pk}"));
    sql
}

/// SQL text with positional parameters, built clause by clause.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub dialect: Dialect,
    pub text: String,
    pub params: Vec<Param>,
    /// Test the date range on each row of the sort order's walk instead of seeking with it
    /// (SQLite's unary `+`), for a range too wide to sort: see `date_range_is_wide`.
    pub date_as_filter: bool,
}

impl Sql {
    pub fn new(dialect: Dialect, text: impl Into<String>) -> Self {
        Sql {
            dialect,
            text: text.into(),
            params: Vec::new(),
            date_as_filter: false,
        }
    }

    /// Adds a parameter and returns its placeholder.
    pub fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    pub(crate) fn in_list<T>(&mut self, column: &str, values: &[T], to: impl Fn(&T) -> Param) {
        if values.is_empty() {
            return;
        }
        let marks: Vec<String> = values.iter().map(|v| self.bind(to(v))).collect();
        self.push(&format!(" AND {column} IN ({})", marks.join(", ")));
    }
}

/// How a search term restricts the rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SearchPlan {
    /// No search.
    None,
    /// Exactly these conversations (internal keys) contain the term.
    Candidates(Vec<i64>),
    /// Test each row: the term case-folded (SQLite `parley_contains`) and as an escaped
    /// `ILIKE` pattern (PostgreSQL).
    Walk { folded: String, pattern: String },
}

/// `%term%` for LIKE/ILIKE with `\`, `%` and `_` escaped (PostgreSQL's default escape `\`).
pub(crate) fn like_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The walk plan for `term`.
pub(crate) fn walk(term: &str) -> SearchPlan {
    SearchPlan::Walk {
        folded: parley_core::search::fold(term),
        pattern: like_pattern(term),
    }
}

/// Appends `WHERE` with the workspace, the filter's conditions and the search plan's.
///
/// `agent_names` are the names of the filter's assistants: the agent sort's index leads with the
/// name, so naming them lets it seek straight to those rows instead of walking every other
/// agent's (ids stay in the condition: names are unique per company, not per workspace).
pub(crate) fn push_filters(
    sql: &mut Sql,
    ws: WorkspaceId,
    f: &ConversationFilter,
    plan: &SearchPlan,
    agent_names: &[String],
) {
    let w = sql.bind(Param::Uuid(ws.0));
    sql.push(&format!(" WHERE c.workspace_id = {w}"));
    sql.in_list("c.status", &f.statuses, |s| Param::Text(s.as_str().into()));
    sql.in_list("c.channel", &f.channels, |ch| {
        Param::Text(ch.as_str().into())
    });
    sql.in_list("c.assistant_id", &f.assistants, |a| Param::Uuid(a.0));
    if !f.assistants.is_empty() {
        sql.in_list("c.assistant_name", agent_names, |n| Param::Text(n.clone()));
    }
    if let Some(min) = f.min_rating {
        let p = sql.bind(Param::Int(min as i64));
        sql.push(&format!(" AND c.rating >= {p}"));
    }
    if f.calls {
        let voip = sql.bind(Param::Text(parley_core::Channel::Voip.as_str().into()));
        let yes = match sql.dialect {
            Dialect::Sqlite => "1",
            Dialect::Postgres => "TRUE",
        };
        sql.push(&format!(" AND (c.channel = {voip} OR c.has_voice = {yes})"));
    }
    push_insight_filters(sql, f);
    if f.needs_human {
        sql.push(" AND c.handoff_at IS NOT NULL");
    }
    match f.assignee {
        None => {}
        Some(parley_core::query::AssigneeFilter::Unassigned) => {
            sql.push(" AND c.assignee_id IS NULL");
        }
        Some(parley_core::query::AssigneeFilter::User(u)) => {
            let p = sql.bind(Param::Uuid(u.0));
            sql.push(&format!(" AND c.assignee_id = {p}"));
        }
    }
    let date = if sql.date_as_filter && sql.dialect == Dialect::Sqlite {
        "+c.last_message_at"
    } else {
        "c.last_message_at"
    };
    if let Some(from) = f.from {
        let p = sql.bind(Param::Int(from.0));
        sql.push(&format!(" AND {date} >= {p}"));
    }
    if let Some(to) = f.to {
        let p = sql.bind(Param::Int(to.0));
        sql.push(&format!(" AND {date} < {p}"));
    }
    let condition = search_condition(sql, plan);
    sql.push(&condition);
}

/// The insight filters (issue 13), each one correlated sub-query on `conversation_insights`
/// (keyed by the conversation's pk), kept apart from the list plans above: sentiment is the
/// client's (`c.sentiment`) when it sent one, else the computed label; resolution is the
/// computed outcome; topic the assigned topic key; the start date bounds `c.started_at` (a
/// residual condition: the plans above never range over it).
fn push_insight_filters(sql: &mut Sql, f: &ConversationFilter) {
    use parley_core::SentimentFilter;
    if !f.sentiments.is_empty() {
        let label = "COALESCE(c.sentiment, (SELECT i.sentiment_label FROM conversation_insights i
                       WHERE i.conversation = c.pk))";
        let mut any: Vec<String> = Vec::new();
        let labels: Vec<String> = f
            .sentiments
            .iter()
            .filter(|s| **s != SentimentFilter::NotAnalyzed)
            .map(|s| sql.bind(Param::Text(s.as_str().into())))
            .collect();
        if !labels.is_empty() {
            any.push(format!("{label} IN ({})", labels.join(", ")));
        }
        if f.sentiments.contains(&SentimentFilter::NotAnalyzed) {
            any.push(format!("{label} IS NULL"));
        }
        sql.push(&format!(" AND ({})", any.join(" OR ")));
    }
    if !f.resolutions.is_empty() {
        let marks: Vec<String> = f
            .resolutions
            .iter()
            .map(|r| sql.bind(Param::Text(r.as_str().into())))
            .collect();
        sql.push(&format!(
            " AND EXISTS (SELECT 1 FROM conversation_insights i WHERE i.conversation = c.pk
                          AND i.resolution IN ({}))",
            marks.join(", ")
        ));
    }
    if let Some(from) = f.started_from {
        let p = sql.bind(Param::Int(from.0));
        sql.push(&format!(" AND c.started_at >= {p}"));
    }
    if let Some(to) = f.started_to {
        let p = sql.bind(Param::Int(to.0));
        sql.push(&format!(" AND c.started_at < {p}"));
    }
    if let Some(topic) = &f.topic {
        let t = sql.bind(Param::Text(topic.clone()));
        sql.push(&format!(
            " AND EXISTS (SELECT 1 FROM conversation_insights i WHERE i.conversation = c.pk
                          AND i.topic = {t})"
        ));
    }
}

/// The search plan's condition (` AND ...`), or nothing.
fn search_condition(sql: &mut Sql, plan: &SearchPlan) -> String {
    match (plan, sql.dialect) {
        (SearchPlan::None, _) => String::new(),
        (SearchPlan::Candidates(pks), Dialect::Sqlite) => {
            let p = sql.bind(Param::IntList(pks.clone()));
            format!(" AND c.pk IN rarray({p})")
        }
        (SearchPlan::Candidates(pks), Dialect::Postgres) => {
            let p = sql.bind(Param::IntList(pks.clone()));
            format!(" AND c.pk = ANY({p})")
        }
        (SearchPlan::Walk { folded, .. }, Dialect::Sqlite) => {
            let t = sql.bind(Param::Text(folded.clone()));
            format!(
                " AND (parley_contains(c.session_id, {t}) OR parley_contains(c.contact, {t})
                   OR parley_contains(c.assistant_name, {t})
                   OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation = c.pk
                              AND m.visible_seq IS NOT NULL AND parley_contains(m.content, {t})))"
            )
        }
        // The walk tests each conversation's few messages in turn. OFFSET 0 keeps PostgreSQL
        // from turning the EXISTS into a hashed subplan (which scans every message before the
        // first row), and `content || ''` from ANDing the trigram index into the per-row check
        // (which scans the whole index once per conversation).
        (SearchPlan::Walk { pattern, .. }, Dialect::Postgres) => {
            let t = sql.bind(Param::Text(pattern.clone()));
            format!(
                " AND (c.session_id ILIKE {t} OR c.contact ILIKE {t} OR c.assistant_name ILIKE {t}
                   OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation = c.pk
                              AND m.visible_seq IS NOT NULL AND (m.content || '') ILIKE {t} OFFSET 0))"
            )
        }
    }
}

/// How many conversations a search first walks in sort order before it asks the index, on
/// SQLite: a term that fills a page among them is common, and that walk is its cheapest page.
/// Every rarer term pays for the walk before the probe, so the bound trades the two: at about
/// 7.5 µs per conversation walked, 500 costs a rare term under 4 ms.
pub(crate) const BOUNDED_WALK_SQLITE: i64 = 500;
/// The same on PostgreSQL. A term in about one message in 100 (one conversation in seven)
/// fills a page of 50 within 500 conversations; with a bound of 200 it fell through to the
/// trigram probe, which reads every matching message (640 ms at 16 M messages).
pub(crate) const BOUNDED_WALK_POSTGRES: i64 = 500;

/// Whether a term found in `matches` of the `walked` conversations of a bounded
/// walk is cheaper to walk on than to probe the trigram index for, in a workspace of `total`
/// conversations. A page of `limit` needs about `limit x walked / matches` conversations
/// walked; the probe reads every message holding the term, about `total x matches / walked`
/// rows, each a fetch and a test costing about what testing one conversation's messages does
/// (PostgreSQL: a heap fetch; SQLite: a doclist entry per trigram and the message read). So
/// the walk wins from `matches^2 >= limit x walked^2 / total`: 4 of 500 at 1 M conversations,
/// 12 at 100 k, 36 at 10 k (where the probe is small anyway).
pub(crate) fn walk_beats_probe(matches: usize, walked: i64, limit: usize, total: u64) -> bool {
    let (m, w) = (matches as f64, walked.max(1) as f64);
    m > 0.0 && m * m >= limit as f64 * w * w / total.max(1) as f64
}

/// How [`page_query`] reads a page, beyond the list query itself.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PageOptions<'a> {
    /// Read no row past this one in sort order (inclusive): a bounded walk tests the search
    /// condition only up to the row [`nth_row_query`] found, so a rare term cannot make the
    /// walk long, while the page is still read in index order and stops once full.
    pub through: Option<&'a Cursor>,
    /// The names of the filter's assistants (see [`push_filters`]).
    pub agent_names: &'a [String],
    /// Test the date range per row of the sort walk (see [`date_range_is_wide`]).
    pub date_as_filter: bool,
    /// Only rows whose sort key equals this value (one step of a key-by-key scan, see
    /// [`key_by_key_column`]).
    pub key_equals: Option<&'a SortValue>,
}

/// The query for one page of the list (`limit + 1` rows, to tell whether a next page exists).
pub(crate) fn page_query(
    dialect: Dialect,
    ws: WorkspaceId,
    query: &ListQuery,
    plan: &SearchPlan,
    opts: &PageOptions<'_>,
) -> Sql {
    let limit = query.limit.clamp(1, parley_core::query::MAX_LIMIT) as i64 + 1;
    let mut sql = Sql::new(dialect, "");
    sql.date_as_filter = opts.date_as_filter;
    let hint = match plan {
        SearchPlan::Candidates(_) => "",
        _ if opts.key_equals.is_some() => "",
        _ => sort_index_hint(dialect, query, opts.date_as_filter),
    };
    sql.push(&format!(
        "SELECT {SUMMARY_COLS} FROM conversations c{hint} LEFT JOIN assistants a ON a.id = c.assistant_id"
    ));
    push_filters(&mut sql, ws, &query.filter, plan, opts.agent_names);
    if let (Some(value), Some(column)) = (opts.key_equals, key_column(query.sort.key)) {
        let p = sql.bind(sort_value_param(value));
        sql.push(&format!(" AND {column} = {p}"));
    }
    if let Some(cursor) = &query.cursor {
        push_keyset(&mut sql, query.sort, cursor, false);
    }
    if let Some(through) = opts.through {
        push_keyset(&mut sql, query.sort, through, true);
    }
    push_order(&mut sql, query.sort);
    let l = sql.bind(Param::Int(limit));
    sql.push(&format!(" LIMIT {l}"));
    sql
}

/// SQLite: ` INDEXED BY` the sort's own index when walking it is the page's access path,
/// else nothing. The sort indexes carry the filter columns, so a walk in sort order tests the
/// filters inside the index and stops when the page is full; left to itself, SQLite's planner
/// may seek an equality filter's index instead (`status = 'closed'` in the status sort's
/// index, an assistant's name in the agent sort's) and then sort every row it finds: 330 ms
/// for the 500th row of `status=closed` under `-rating` at 1 M conversations, against 1 ms
/// walking the rating index. The exception is a date range narrow enough to seek and sort
/// (`date_as_filter` false) under a sort other than date; candidates from the search index and
/// key-by-key steps choose their own index.
fn sort_index_hint(dialect: Dialect, query: &ListQuery, date_as_filter: bool) -> &'static str {
    let ranged = query.filter.from.is_some() || query.filter.to.is_some();
    if dialect != Dialect::Sqlite || (ranged && !date_as_filter && query.sort.key != SortKey::Date)
    {
        return "";
    }
    match query.sort.key {
        SortKey::Date => " INDEXED BY conversations_by_date",
        SortKey::Messages => " INDEXED BY conversations_by_messages",
        SortKey::Rating => " INDEXED BY conversations_by_rating",
        SortKey::Assistant => " INDEXED BY conversations_by_agent",
        SortKey::Status => " INDEXED BY conversations_by_status",
        SortKey::Created => " INDEXED BY conversations_by_created",
    }
}

/// The `n`th row (1-based) of the list in sort order after the filters (without the search)
/// and the cursor: `c.id, c.last_message_at` and the sort key (`0` for date and created), for
/// [`boundary`]. No row when the list is shorter. An index walk of `n` entries.
pub(crate) fn nth_row_query(
    dialect: Dialect,
    ws: WorkspaceId,
    query: &ListQuery,
    n: i64,
    agent_names: &[String],
    date_as_filter: bool,
) -> Sql {
    let key = key_column(query.sort.key).unwrap_or("CAST(0 AS BIGINT)");
    let hint = sort_index_hint(dialect, query, date_as_filter);
    let mut sql = Sql::new(
        dialect,
        format!("SELECT c.id, c.last_message_at, {key} FROM conversations c{hint}"),
    );
    sql.date_as_filter = date_as_filter;
    push_filters(&mut sql, ws, &query.filter, &SearchPlan::None, agent_names);
    if let Some(cursor) = &query.cursor {
        push_keyset(&mut sql, query.sort, cursor, false);
    }
    push_order(&mut sql, query.sort);
    let o = sql.bind(Param::Int(n.max(1) - 1));
    sql.push(&format!(" LIMIT 1 OFFSET {o}"));
    sql
}

/// The position of a row read by [`nth_row_query`] (`key` as stored: an integer for messages,
/// rating, date and created, text for agent and status), for [`PageOptions::through`].
pub(crate) fn boundary(sort: Sort, id: Uuid, date: i64, key: SortValue) -> Cursor {
    let key = match sort.key {
        SortKey::Date => SortValue::Int(date),
        _ => key,
    };
    Cursor {
        sort: sort.to_string(),
        key,
        date,
        id: parley_core::ConversationId(id),
    }
}

/// Whether the sort key of [`nth_row_query`]'s third column is text (agent, status).
pub(crate) fn text_key(sort: Sort) -> bool {
    matches!(sort.key, SortKey::Assistant | SortKey::Status)
}

fn sort_value_param(v: &SortValue) -> Param {
    match v {
        SortValue::Int(i) => Param::Int(*i),
        SortValue::Text(t) => Param::Text(t.clone()),
    }
}

/// The leading column of a sort whose index is `(workspace_id, key, last_message_at, id)`.
fn key_column(key: SortKey) -> Option<&'static str> {
    match key {
        SortKey::Messages => Some("c.message_count"),
        SortKey::Rating => Some("c.rating"),
        SortKey::Assistant => Some("c.assistant_name"),
        SortKey::Status => Some("c.status"),
        SortKey::Date | SortKey::Created => None,
    }
}

/// Most key values a key-by-key scan visits before it reads the rest in one ordinary query.
pub(crate) const KEY_BY_KEY_MAX_STEPS: usize = 64;

/// The sort key column when a page is best read key by key: a date range under a sort whose
/// index leads with another key (status, rating, agent, messages). Inside each key value the
/// index is in date order, so each value's slice of the range is one seek; read in one query,
/// the range can only be tested row by row while walking every key's rows outside it (40 ms
/// at 1 M conversations for an early week under `-status`), or sorted after seeking the date
/// index. A search that walks (a term not rare enough for its candidates) walks each slice
/// the same way, testing the term on the slice's rows only: in one query it tested every row
/// of the range (seek and sort) or walked past every key's rows outside it, 1 s at 1 M
/// conversations for an early week and a term in one conversation in seven under `-status`.
/// Except a search under the messages sort: its keys are many (every message count) with a few
/// rows of the range each, so the steps cost more than they save (at 100 k conversations a
/// week with a term under `-messages`: 11 ms in one query, 33 ms key by key).
pub(crate) fn key_by_key_column(q: &ListQuery) -> Option<&'static str> {
    if (q.filter.from.is_none() && q.filter.to.is_none())
        || (q.filter.q.is_some() && q.sort.key == SortKey::Messages)
    {
        return None;
    }
    key_column(q.sort.key)
}

/// The next distinct value of the sort key in sort order: the first one when `after` is `None`,
/// else the first past `after` (or equal to it, when `inclusive`). One index seek.
pub(crate) fn next_key_query(
    dialect: Dialect,
    ws: WorkspaceId,
    sort: Sort,
    after: Option<&SortValue>,
    inclusive: bool,
) -> Sql {
    let column = key_column(sort.key).unwrap_or("c.last_message_at");
    let mut sql = Sql::new(dialect, format!("SELECT {column} FROM conversations c"));
    let w = sql.bind(Param::Uuid(ws.0));
    sql.push(&format!(" WHERE c.workspace_id = {w}"));
    if let Some(after) = after {
        let p = sql.bind(sort_value_param(after));
        let op = match (sort.descending, inclusive) {
            (true, false) => "<",
            (true, true) => "<=",
            (false, false) => ">",
            (false, true) => ">=",
        };
        sql.push(&format!(" AND {column} {op} {p}"));
    }
    let dir = if sort.descending { "DESC" } else { "ASC" };
    sql.push(&format!(" ORDER BY {column} {dir} LIMIT 1"));
    sql
}

/// A cursor that every row whose sort key is `key` precedes, so an ordinary page query with it
/// reads the rows of the following keys only.
pub(crate) fn cursor_past_key(sort: Sort, key: SortValue) -> Cursor {
    let (date, id) = if sort.descending {
        (i64::MIN, Uuid::nil())
    } else {
        (i64::MAX, Uuid::from_u128(u128::MAX))
    };
    Cursor {
        sort: sort.to_string(),
        key,
        date,
        id: parley_core::ConversationId(id),
    }
}

/// Whether a date range is wide enough that walking the sort order and testing dates beats
/// seeking the range and sorting it: walking reads about `limit x total / in_range` index
/// entries, sorting reads `in_range` rows, so the crossover is near `sqrt(limit x total)`.
pub(crate) fn date_range_is_wide(in_range: i64, total: i64) -> bool {
    (in_range as f64) >= (51.0 * total.max(1) as f64).sqrt()
}

/// The columns of a sort, most significant first; every sort ends in `(last_message_at, id)`
/// (or `id` alone for `created`) so keys are unique and pages are index range scans.
pub(crate) fn sort_columns(key: SortKey) -> &'static [&'static str] {
    match key {
        SortKey::Date => &["c.last_message_at", "c.id"],
        SortKey::Messages => &["c.message_count", "c.last_message_at", "c.id"],
        SortKey::Rating => &["c.rating", "c.last_message_at", "c.id"],
        SortKey::Assistant => &["c.assistant_name", "c.last_message_at", "c.id"],
        SortKey::Status => &["c.status", "c.last_message_at", "c.id"],
        SortKey::Created => &["c.id"],
    }
}

/// Appends a keyset condition: rows after `cursor` in `sort` order (`through`: rows up to and
/// including it instead).
fn push_keyset(sql: &mut Sql, sort: Sort, cursor: &Cursor, through: bool) {
    let cols = sort_columns(sort.key);
    let mut marks = Vec::new();
    if !matches!(sort.key, SortKey::Date | SortKey::Created) {
        marks.push(match &cursor.key {
            SortValue::Int(i) => sql.bind(Param::Int(*i)),
            SortValue::Text(t) => sql.bind(Param::Text(t.clone())),
        });
    }
    if sort.key != SortKey::Created {
        marks.push(sql.bind(Param::Int(cursor.date)));
    }
    marks.push(sql.bind(Param::Uuid(cursor.id.0)));
    let op = match (sort.descending, through) {
        (true, false) => "<",
        (false, false) => ">",
        (true, true) => ">=",
        (false, true) => "<=",
    };
    sql.push(&format!(
        " AND ({}) {op} ({})",
        cols.join(", "),
        marks.join(", ")
    ));
}

/// Appends `ORDER BY` for `sort`.
pub(crate) fn push_order(sql: &mut Sql, sort: Sort) {
    let dir = if sort.descending { "DESC" } else { "ASC" };
    let order: Vec<String> = sort_columns(sort.key)
        .iter()
        .map(|c| format!("{c} {dir}"))
        .collect();
    sql.push(&format!(" ORDER BY {}", order.join(", ")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_patch_is_one_update() {
        use parley_core::model::{ConversationPatch, Rating};
        let now = parley_core::Timestamp(5_000);
        let patch = ConversationPatch {
            status: Some(parley_core::ConversationStatus::Closed),
            rating: Some(Some(Rating {
                score: 4,
                comment: None,
                rated_at: None,
            })),
            converted: Some(None),
            ..Default::default()
        };
        let sql = conversation_patch(Dialect::Postgres, 7, &patch, Some("{}".into()), now);
        assert_eq!(
            sql.text,
            "UPDATE conversations SET status = $1, rating = $2, rating_comment = $3, \
             rated_at = $4, converted = $5, memory = $6, updated_at = $7 WHERE pk = $8"
        );
        assert_eq!(
            sql.params,
            vec![
                Param::Text("closed".into()),
                Param::Int(4),
                Param::OptText(None),
                Param::OptInt(Some(5_000)),
                Param::OptBool(None),
                Param::Text("{}".into()),
                Param::Int(5_000),
                Param::Int(7),
            ]
        );
        let empty =
            conversation_patch(Dialect::Sqlite, 3, &ConversationPatch::default(), None, now);
        assert_eq!(
            empty.text,
            "UPDATE conversations SET updated_at = ?1 WHERE pk = ?2"
        );
        assert_eq!(empty.params, vec![Param::Int(5_000), Param::Int(3)]);
    }

    #[test]
    fn walking_beats_probing_for_denser_terms_in_bigger_lists() {
        assert!(!walk_beats_probe(0, 500, 50, 1_000_000));
        assert!(!walk_beats_probe(3, 500, 50, 1_000_000));
        assert!(walk_beats_probe(4, 500, 50, 1_000_000));
        assert!(!walk_beats_probe(11, 500, 50, 100_000));
        assert!(walk_beats_probe(12, 500, 50, 100_000));
        assert!(walk_beats_probe(36, 500, 50, 10_000));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern("schön"), "%schön%");
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        let mut a = Sql::new(Dialect::Sqlite, "");
        let mut b = Sql::new(Dialect::Postgres, "");
        assert_eq!(
            (a.bind(Param::Int(1)), a.bind(Param::Int(2))),
            ("?1".into(), "?2".into())
        );
        assert_eq!(
            (b.bind(Param::Int(1)), b.bind(Param::Int(2))),
            ("$1".into(), "$2".into())
        );
    }
}
