//! The computed insights of each conversation (issue 13): sentiment, its shift, resolution,
//! first response time and duration, as `parley_core::insights::analyse` found them. One row per
//! conversation (`conversation_insights`), deleted with it; written off the request path by the
//! server's `insights.analyse` job and by `parley analyse`.

use async_trait::async_trait;
use parley_core::insights::ConversationInsight;
use parley_core::{ConversationId, Timestamp, WorkspaceId};

use crate::Result;

/// A stored insight and when it was computed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInsight {
    /// What was computed.
    pub insight: ConversationInsight,
    /// When (ms since the epoch, UTC); older than the conversation's `updated_at` means stale.
    pub analysed_at: Timestamp,
}

/// A position in one workspace's conversations ordered by `(updated_at, pk)`: the analyser's
/// watermark (everything at or before it is analysed) and its scan cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct InsightCursor {
    /// The conversation's `updated_at`, ms since the epoch (UTC).
    pub updated_at: i64,
    /// The conversation's storage key (`conversations.pk`), the tie-breaker.
    pub pk: i64,
}

impl InsightCursor {
    /// Before every conversation: where a workspace never analysed starts.
    pub const START: InsightCursor = InsightCursor {
        updated_at: i64::MIN,
        pk: i64::MIN,
    };
}

/// One conversation past a cursor, as [`InsightStore::changed_conversations`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedConversation {
    /// The conversation.
    pub id: ConversationId,
    /// Its position (to move the cursor past it).
    pub cursor: InsightCursor,
    /// Its insight is missing or older than its `updated_at`.
    pub stale: bool,
}

/// The cohort an insights figure is computed over: the workspace's conversations *started* in
/// `[from, to)` (one population for every rate), optionally on one channel / of one assistant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsightWindow {
    /// First millisecond (inclusive), UTC.
    pub from: Timestamp,
    /// End (exclusive), UTC.
    pub to: Timestamp,
    /// Only this channel.
    pub channel: Option<parley_core::Channel>,
    /// Only this assistant.
    pub assistant: Option<parley_core::AssistantId>,
}

/// Sums over one [`InsightWindow`]'s cohort, straight from the rows (no rollups yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsightTotals {
    /// Conversations started in the window.
    pub conversations: i64,
    /// Their visible messages.
    pub messages: i64,
    /// Of them, analysed ones with outcome `resolved_by_ai`.
    pub resolved_by_ai: i64,
    /// Outcome `handed_off`.
    pub handed_off: i64,
    /// Outcome `unresolved`.
    pub unresolved: i64,
    /// Outcome `ongoing`.
    pub ongoing: i64,
    /// Rated ones.
    pub rated: i64,
    /// Sum of their ratings (1-5 each).
    pub rating_sum: i64,
    /// Rated 4 or 5.
    pub rated_4_or_5: i64,
    /// Sentiment (the client's, else the computed one) positive.
    pub positive: i64,
    /// Neutral.
    pub neutral: i64,
    /// Negative.
    pub negative: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Cost, nano-USD.
    pub cost_nanousd: i64,
    /// Analysed ones with a first response time.
    pub first_responses: i64,
    /// Sum of those first response times, ms.
    pub first_response_ms_sum: i64,
    /// Analysed ones with a duration.
    pub durations: i64,
    /// Sum of those durations, ms.
    pub duration_ms_sum: i64,
}

impl InsightTotals {
    /// Adds `other`'s sums to these (the totals of the union of two disjoint cohorts).
    pub fn add(&mut self, other: &InsightTotals) {
        let fields = [
            (&mut self.conversations, other.conversations),
            (&mut self.messages, other.messages),
            (&mut self.resolved_by_ai, other.resolved_by_ai),
            (&mut self.handed_off, other.handed_off),
            (&mut self.unresolved, other.unresolved),
            (&mut self.ongoing, other.ongoing),
            (&mut self.rated, other.rated),
            (&mut self.rating_sum, other.rating_sum),
            (&mut self.rated_4_or_5, other.rated_4_or_5),
            (&mut self.positive, other.positive),
            (&mut self.neutral, other.neutral),
            (&mut self.negative, other.negative),
            (&mut self.prompt_tokens, other.prompt_tokens),
            (&mut self.completion_tokens, other.completion_tokens),
            (&mut self.cost_nanousd, other.cost_nanousd),
            (&mut self.first_responses, other.first_responses),
            (&mut self.first_response_ms_sum, other.first_response_ms_sum),
            (&mut self.durations, other.durations),
            (&mut self.duration_ms_sum, other.duration_ms_sum),
        ];
        for (mine, theirs) in fields {
            *mine += theirs;
        }
    }
}

/// The number of columns [`InsightTotals`] is read from (its fields, in order).
pub(crate) const TOTAL_COLUMNS: usize = 19;

/// The sums of one assistant version's conversations in an [`InsightWindow`]'s cohort, as
/// [`InsightStore::insight_assistants`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssistantTotals {
    /// The assistant the conversations were answered by; `None` for conversations without one
    /// (imported, or recorded by a client that named none).
    pub assistant: Option<parley_core::AssistantId>,
    /// The assistant's version they ran (`conversations.assistant_version`); `None` when not
    /// recorded (conversations ingested with only an assistant name).
    pub version: Option<i64>,
    /// The sums.
    pub totals: InsightTotals,
}

/// One analysed conversation as topics are learned from it ([`InsightStore::topic_sample`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSample {
    /// The conversation.
    pub id: ConversationId,
    /// Its key phrases, best first (never empty in a sample).
    pub key_phrases: Vec<String>,
    /// The topic key it has now.
    pub topic: Option<String>,
}

/// A workspace's learned topics ([`InsightStore::topics`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSet {
    /// In learning order (see [`parley_core::topics::learn_topics`]).
    pub topics: Vec<parley_core::topics::Topic>,
    /// When they were learned, ms since the epoch (UTC); 0: never.
    pub learned_at: i64,
    /// When an analysis last stored key phrases in the workspace, ms since the epoch; 0: never.
    pub changed_at: i64,
}

/// How [`InsightStore::insight_groups`] groups a cohort. Keys are computed from `started_at`
/// shifted by `offset_ms` (the viewer's UTC offset, ms east of UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsightGrouping {
    /// Key `k` = `floor((started_at + offset_ms - origin_ms) / size_ms)`: the bucket starting
    /// at `k * size_ms + origin_ms - offset_ms` (UTC). Sizes are positive.
    Buckets {
        /// Bucket length, ms (an hour, a day, a week).
        size_ms: i64,
        /// The local time buckets are aligned to (0, or a Monday for weeks), ms.
        origin_ms: i64,
        /// Shift, ms east of UTC.
        offset_ms: i64,
    },
    /// Key = weekday (Monday 0 .. Sunday 6) * 24 + hour (0-23), local time.
    WeekHour {
        /// Shift, ms east of UTC.
        offset_ms: i64,
    },
}

impl InsightGrouping {
    /// The SQL key expression over the time column `at` (`c.started_at`, or a rollup's
    /// `r.hour`; integers only, no parameters).
    pub(crate) fn key_sql(self, at: &str) -> String {
        match self {
            InsightGrouping::Buckets {
                size_ms,
                origin_ms,
                offset_ms,
            } => format!("(({at} + {}) / {size_ms})", offset_ms - origin_ms),
            // 1970-01-01 was a Thursday (weekday 3 from Monday).
            InsightGrouping::WeekHour { offset_ms } => format!(
                "(((({at} + {offset_ms}) / 86400000) + 3) % 7 * 24
                  + (({at} + {offset_ms}) / 3600000) % 24)"
            ),
        }
    }

    /// The coarsest rollup grain whose units each lie in one group, so the groups can be
    /// summed from the rollups: [`DAY_MS`] when every boundary is a whole UTC day (day, week
    /// buckets at a whole-day offset such as UTC), [`HOUR_MS`] when every boundary is a whole
    /// UTC hour (an hour offset such as `+02:00`, hour buckets, the heatmap), 0 otherwise (a
    /// `+05:30` offset, quarter-hour buckets: those are scanned).
    pub(crate) fn grain(self) -> i64 {
        let fits = |grain: i64| match self {
            InsightGrouping::Buckets {
                size_ms,
                origin_ms,
                offset_ms,
            } => size_ms % grain == 0 && (offset_ms - origin_ms) % grain == 0,
            InsightGrouping::WeekHour { offset_ms } => grain == HOUR_MS && offset_ms % grain == 0,
        };
        [DAY_MS, HOUR_MS]
            .into_iter()
            .find(|g| fits(*g))
            .unwrap_or(0)
    }
}

/// The insights part of the store, reached through [`crate::Store::insights`]. Every method is
/// scoped to one workspace.
#[async_trait]
pub trait InsightStore: Send + Sync {
    /// Stores (or replaces) the insight of one conversation of the workspace.
    /// [`crate::StoreError::NotFound`] when the conversation is not the workspace's.
    async fn save_insight(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
        insight: &ConversationInsight,
        analysed_at: Timestamp,
    ) -> Result<()>;
    /// The stored insight of one conversation of the workspace, `None` when there is none
    /// (never analysed, or not the workspace's conversation).
    async fn insight(
        &self,
        workspace: WorkspaceId,
        conversation: ConversationId,
    ) -> Result<Option<StoredInsight>>;
    /// The stored insights of those of `conversations` that are the workspace's and analysed
    /// (a list page's rows), in no particular order.
    async fn insights_of(
        &self,
        workspace: WorkspaceId,
        conversations: &[ConversationId],
    ) -> Result<Vec<(ConversationId, StoredInsight)>>;
    /// Up to `limit` of the workspace's conversations whose insight is missing or older than the
    /// conversation's last change (`updated_at`), oldest conversation first: the backfill's
    /// work list.
    async fn stale_insights(
        &self,
        workspace: WorkspaceId,
        limit: u32,
    ) -> Result<Vec<ConversationId>>;
    /// The workspace's stored watermark ([`InsightCursor::START`] when it has none).
    async fn insight_watermark(&self, workspace: WorkspaceId) -> Result<InsightCursor>;
    /// Takes (or renews) the workspace's analysis lease for `worker` until `until` when it is
    /// free (never taken, released, expired at `now`) or already `worker`'s, and returns the
    /// watermark; `None` when another worker holds it.
    async fn claim_insight_watermark(
        &self,
        workspace: WorkspaceId,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<InsightCursor>>;
    /// Up to `limit` of the workspace's conversations after `after` in `(updated_at, pk)`
    /// order (an index range scan), each marked stale or not.
    async fn changed_conversations(
        &self,
        workspace: WorkspaceId,
        after: InsightCursor,
        limit: u32,
    ) -> Result<Vec<ChangedConversation>>;
    /// Moves the watermark forward to `to` (never back) and renews the lease until `until`,
    /// if `worker` still holds it; `false` when it lost the lease (nothing changed).
    async fn advance_insight_watermark(
        &self,
        workspace: WorkspaceId,
        worker: &str,
        to: InsightCursor,
        until: Timestamp,
    ) -> Result<bool>;
    /// The sums over `window`'s cohort. Whole UTC hours are read from the rollups (kept in the
    /// transaction that writes each insight, so they count the conversations as last
    /// analysed; one not analysed yet is not counted until the analyser reaches it), the
    /// partial hours at the window's ends from the rows (see [`read_plan`]); whole UTC days
    /// from the day rollups.
    async fn insight_totals(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<InsightTotals>;
    /// The sums over `window`'s cohort per group key (see [`InsightGrouping`]), keys
    /// ascending, groups without conversations left out. From the rollups as
    /// [`InsightStore::insight_totals`] when every group boundary is a whole UTC hour, else
    /// (a `+05:30` offset, quarter-hour buckets) from the rows.
    async fn insight_groups(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
        grouping: InsightGrouping,
    ) -> Result<Vec<(i64, InsightTotals)>>;
    /// The sums over `window`'s cohort per assistant and assistant version, ordered by
    /// assistant id then version (rows without an assistant or a version first); read as
    /// [`InsightStore::insight_totals`].
    async fn insight_assistants(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<Vec<AssistantTotals>>;
    /// Gives the lease up if `worker` holds it.
    async fn release_insight_watermark(&self, workspace: WorkspaceId, worker: &str) -> Result<()>;
    /// Up to `limit` of the workspace's analysed conversations that have key phrases, the most
    /// recently started first: what its topics are learned from.
    async fn topic_sample(&self, workspace: WorkspaceId, limit: u32) -> Result<Vec<TopicSample>>;
    /// Replaces the workspace's topics with `topics` (learning order) and records `learned_at`,
    /// sets the topic of each conversation in `assignments` (a topic key, or `None`), and clears
    /// the topic of every other conversation whose topic is no longer one of `topics`: all in
    /// one transaction. Conversations not the workspace's are left alone.
    async fn save_topics(
        &self,
        workspace: WorkspaceId,
        topics: &[parley_core::topics::Topic],
        assignments: &[(ConversationId, Option<String>)],
        learned_at: Timestamp,
    ) -> Result<()>;
    /// The workspace's topics and when they were learned ([`TopicSet::default`] when never).
    async fn topics(&self, workspace: WorkspaceId) -> Result<TopicSet>;
    /// Records that analyses stored key phrases in the workspace at `at` (topics may be due).
    async fn note_topic_change(&self, workspace: WorkspaceId, at: Timestamp) -> Result<()>;
    /// The sums over `window`'s cohort per topic key, keys ascending; conversations in no topic
    /// are left out. Read as [`InsightStore::insight_totals`], from the topic rollups.
    async fn insight_topics(
        &self,
        workspace: WorkspaceId,
        window: &InsightWindow,
    ) -> Result<Vec<(String, InsightTotals)>>;
}

/// The finest rollup grain: one UTC hour, ms.
pub(crate) const HOUR_MS: i64 = 3_600_000;
/// The coarse rollup grain: one UTC day, ms.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// One rollup table: its name, its time column (the first millisecond of its UTC hour or day)
/// and whether it is keyed by assistant (a table that is not can only answer a window without
/// an assistant filter and a grouping without assistant keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rollup {
    /// Table name.
    pub(crate) table: &'static str,
    /// Time column.
    pub(crate) at: &'static str,
    /// Keyed by `assistant_id` (and version or topic).
    pub(crate) by_assistant: bool,
}

/// Sums per (workspace, UTC hour, channel, assistant, assistant version; -1 = none), migration
/// `insight_rollups`, kept by triggers on `conversation_insights`: the source of the others.
pub(crate) const HOURLY: Rollup = Rollup {
    table: "insight_rollups",
    at: "hour",
    by_assistant: true,
};
/// The same sums per UTC day (migration `insight_day_rollups`, kept by triggers on
/// [`HOURLY`]): whole days of the summary, day/week series, assistants.
pub(crate) const DAILY: Rollup = Rollup {
    table: "insight_day_rollups",
    at: "day",
    by_assistant: true,
};
/// The same sums per (workspace, UTC hour, channel) (kept by triggers on [`HOURLY`]): hours
/// when no assistant filter or key is asked for (the heatmap, hour series, window edges).
pub(crate) const CHANNEL_HOURLY: Rollup = Rollup {
    table: "insight_channel_rollups",
    at: "hour",
    by_assistant: false,
};
/// Sums per (workspace, UTC hour, channel, assistant, topic; '' = none): the topics figures.
pub(crate) const TOPIC_HOURLY: Rollup = Rollup {
    table: "insight_topic_rollups",
    at: "hour",
    by_assistant: true,
};
/// [`TOPIC_HOURLY`] per UTC day (kept by triggers on it).
pub(crate) const TOPIC_DAILY: Rollup = Rollup {
    table: "insight_topic_day_rollups",
    at: "day",
    by_assistant: true,
};

/// The rollups one figure can read: whole days from `daily`, hours from `hourly` (or from
/// `coarse_hourly` when the window has no assistant filter and the figure needs no
/// assistant key).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rollups {
    /// The day grain.
    pub(crate) daily: Rollup,
    /// The hour grain, every key.
    pub(crate) hourly: Rollup,
    /// The hour grain without assistant keys, if there is one.
    pub(crate) coarse_hourly: Option<Rollup>,
}

/// The conversation figures' rollups.
pub(crate) const FIGURE_ROLLUPS: Rollups = Rollups {
    daily: DAILY,
    hourly: HOURLY,
    coarse_hourly: Some(CHANNEL_HOURLY),
};
/// The topic figures' rollups.
pub(crate) const TOPIC_ROLLUPS: Rollups = Rollups {
    daily: TOPIC_DAILY,
    hourly: TOPIC_HOURLY,
    coarse_hourly: None,
};

/// The rollup columns, [`InsightTotals`]' fields in order.
const ROLLUP_COLUMNS: [&str; TOTAL_COLUMNS] = [
    "conversations",
    "messages",
    "resolved_by_ai",
    "handed_off",
    "unresolved",
    "ongoing",
    "rated",
    "rating_sum",
    "rated_4_or_5",
    "positive",
    "neutral",
    "negative",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanousd",
    "first_responses",
    "first_response_ms_sum",
    "durations",
    "duration_ms_sum",
];

/// Where one part of a cohort's figures is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A day rollup (the part's bounds are whole UTC days).
    Day,
    /// An hour rollup (the part's bounds are whole UTC hours).
    Hour,
    /// The conversation rows (the [`totals_sql`] aggregate).
    Scan,
}

/// Splits `window` into the parts its figures are read from, for a figure whose groups hold
/// whole units of `grain` ([`DAY_MS`], [`HOUR_MS`], 0 = none): the whole UTC days inside it
/// from the day rollups (grain [`DAY_MS`] only), the whole hours around them from the hour
/// rollups, the partial hours at either end (a window that does not start or end on the hour,
/// e.g. `to` = now) from the rows. Grain 0 reads everything from the rows.
pub(crate) fn read_plan(window: &InsightWindow, grain: i64) -> Vec<(InsightWindow, Source)> {
    let (from, to) = (window.from.0, window.to.0);
    let ceil =
        |t: i64, unit: i64| t.div_euclid(unit) * unit + i64::from(t.rem_euclid(unit) != 0) * unit;
    let floor = |t: i64, unit: i64| t.div_euclid(unit) * unit;
    let (h0, h1) = (ceil(from, HOUR_MS), floor(to, HOUR_MS));
    if grain == 0 || h0 >= h1 {
        return vec![(*window, Source::Scan)];
    }
    let part = |a: i64, b: i64| InsightWindow {
        from: Timestamp(a),
        to: Timestamp(b),
        ..*window
    };
    let mut parts = Vec::new();
    let (d0, d1) = (ceil(h0, DAY_MS), floor(h1, DAY_MS));
    if grain % DAY_MS == 0 && d0 < d1 {
        parts.push((part(d0, d1), Source::Day));
        for (a, b) in [(h0, d0), (d1, h1)] {
            if a < b {
                parts.push((part(a, b), Source::Hour));
            }
        }
    } else {
        parts.push((part(h0, h1), Source::Hour));
    }
    for (a, b) in [(from, h0), (h1, to)] {
        if a < b {
            parts.push((part(a, b), Source::Scan));
        }
    }
    parts
}

/// The queries that read `window`'s figures (see [`read_plan`]): each part's bounds with its
/// SQL, `scan` (a [`totals_sql_by`]) for the rows, else [`rollup_sql_by`] over the part's
/// rollup with the keys `keys(time column)`. `assistant_keys`: the figure groups by
/// assistant (so a rollup without them cannot answer it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_sql(
    window: &InsightWindow,
    grain: i64,
    scan: &str,
    rollups: Rollups,
    assistant_keys: bool,
    keys: impl Fn(&str) -> Vec<String>,
    p: impl Fn(u8) -> String + Copy,
    (text, uuid): (&str, &str),
) -> Vec<(InsightWindow, String)> {
    read_plan(window, grain)
        .into_iter()
        .map(|(w, source)| {
            let rollup = match source {
                Source::Scan => return (w, scan.to_owned()),
                Source::Day => rollups.daily,
                Source::Hour => match rollups.coarse_hourly {
                    Some(c) if !assistant_keys && w.assistant.is_none() => c,
                    _ => rollups.hourly,
                },
            };
            let k = keys(&format!("r.{}", rollup.at));
            let k: Vec<&str> = k.iter().map(String::as_str).collect();
            (w, rollup_sql_by(p, text, uuid, rollup, &k))
        })
        .collect()
}

/// Sums the rows of several parts per key (ascending), leaving out groups without
/// conversations when `drop_empty` (a rollup row whose conversations all moved away).
pub(crate) fn merge<K: Ord>(
    rows: impl IntoIterator<Item = (K, InsightTotals)>,
    drop_empty: bool,
) -> Vec<(K, InsightTotals)> {
    let mut by = std::collections::BTreeMap::<K, InsightTotals>::new();
    for (k, t) in rows {
        by.entry(k).or_default().add(&t);
    }
    by.into_iter()
        .filter(|(_, t)| !drop_empty || t.conversations != 0)
        .collect()
}

/// The [`totals_sql_by`] columns summed from `rollup` (alias `r`) over its rows in
/// `[from, to)`, with the same five parameters; `keys` are expressions over `r`. A rollup
/// without assistant keys only ever answers a window without an assistant filter (its
/// parameter is still bound, and checked to be NULL).
pub(crate) fn rollup_sql_by(
    p: impl Fn(u8) -> String,
    text: &str,
    uuid: &str,
    rollup: Rollup,
    keys: &[&str],
) -> String {
    let head: String = keys.iter().map(|k| format!("{k}, ")).collect();
    let sums: Vec<String> = ROLLUP_COLUMNS
        .iter()
        .map(|c| format!("CAST(COALESCE(SUM(r.{c}), 0) AS BIGINT)"))
        .collect();
    let tail = group_tail(keys);
    let a = p(5);
    let assistant = if rollup.by_assistant {
        format!("({a}{uuid} IS NULL OR r.assistant_id = {a})")
    } else {
        format!("{a}{uuid} IS NULL")
    };
    format!(
        "SELECT {head}{sums} FROM {table} r
         WHERE r.workspace_id = {ws} AND r.{at} >= {from} AND r.{at} < {to}
           AND ({ch}{text} IS NULL OR r.channel = {ch})
           AND {assistant}{tail}",
        sums = sums.join(", "),
        table = rollup.table,
        at = rollup.at,
        ws = p(1),
        from = p(2),
        to = p(3),
        ch = p(4),
    )
}

/// The aggregate behind [`InsightStore::insight_totals`], shared by both backends: `p(n)` is
/// the dialect's placeholder n (1 workspace, 2 from, 3 to, 4 channel or NULL, 5 assistant or
/// NULL); the [`TOTAL_COLUMNS`] columns are [`InsightTotals`]' fields in order.
pub(crate) fn totals_sql(p: impl Fn(u8) -> String, text: &str, uuid: &str) -> String {
    totals_sql_by(p, text, uuid, &[])
}

/// [`totals_sql`] grouped by `keys` (SQL expressions, the first columns; then the totals'),
/// ascending by the keys in order.
pub(crate) fn totals_sql_by(
    p: impl Fn(u8) -> String,
    text: &str,
    uuid: &str,
    keys: &[&str],
) -> String {
    let sum = |e: &str| format!("CAST(COALESCE(SUM({e}), 0) AS BIGINT)");
    let when = |cond: &str| sum(&format!("CASE WHEN {cond} THEN 1 ELSE 0 END"));
    let label = "COALESCE(c.sentiment, i.sentiment_label)";
    let head: String = keys.iter().map(|k| format!("{k}, ")).collect();
    let tail = group_tail(keys);
    format!(
        "SELECT {head}count(*), {messages}, {resolved}, {handed}, {unresolved}, {ongoing}, {rated},
                {rating_sum}, {csat}, {pos}, {neu}, {neg}, {prompt}, {completion}, {cost},
                {firsts}, {first_sum}, {durations}, {duration_sum}
         FROM conversations c LEFT JOIN conversation_insights i ON i.conversation = c.pk
         WHERE c.workspace_id = {ws} AND c.started_at >= {from} AND c.started_at < {to}
           AND ({ch}{text} IS NULL OR c.channel = {ch})
           AND ({a}{uuid} IS NULL OR c.assistant_id = {a}){tail}",
        messages = sum("c.message_count"),
        resolved = when("i.resolution = 'resolved_by_ai'"),
        handed = when("i.resolution = 'handed_off'"),
        unresolved = when("i.resolution = 'unresolved'"),
        ongoing = when("i.resolution = 'ongoing'"),
        rated = when("c.rating > 0"),
        rating_sum = sum("CASE WHEN c.rating > 0 THEN c.rating ELSE 0 END"),
        csat = when("c.rating >= 4"),
        pos = when(&format!("{label} = 'positive'")),
        neu = when(&format!("{label} = 'neutral'")),
        neg = when(&format!("{label} = 'negative'")),
        prompt = sum("c.prompt_tokens"),
        completion = sum("c.completion_tokens"),
        cost = sum("c.cost_nanousd"),
        firsts = when("i.first_response_ms IS NOT NULL"),
        first_sum = sum("i.first_response_ms"),
        durations = when("i.duration_ms IS NOT NULL"),
        duration_sum = sum("i.duration_ms"),
        ws = p(1),
        from = p(2),
        to = p(3),
        ch = p(4),
        a = p(5),
    )
}

/// `GROUP BY` and `ORDER BY` the first `keys.len()` columns (nothing without keys).
fn group_tail(keys: &[&str]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let at: Vec<String> = (1..=keys.len()).map(|n| n.to_string()).collect();
    format!(" GROUP BY {at} ORDER BY {at}", at = at.join(", "))
}

/// The [`TOTAL_COLUMNS`] columns of [`totals_sql`] as totals.
pub(crate) fn totals_from(v: [i64; TOTAL_COLUMNS]) -> InsightTotals {
    InsightTotals {
        conversations: v[0],
        messages: v[1],
        resolved_by_ai: v[2],
        handed_off: v[3],
        unresolved: v[4],
        ongoing: v[5],
        rated: v[6],
        rating_sum: v[7],
        rated_4_or_5: v[8],
        positive: v[9],
        neutral: v[10],
        negative: v[11],
        prompt_tokens: v[12],
        completion_tokens: v[13],
        cost_nanousd: v[14],
        first_responses: v[15],
        first_response_ms_sum: v[16],
        durations: v[17],
        duration_ms_sum: v[18],
    }
}

/// The stored form of an insight's enums and the way back; shared by both backends.
pub(crate) mod columns {
    use parley_core::insights::{ConversationInsight, SentimentSource};
    use parley_core::model::Sentiment;
    use parley_core::{Resolution, SentimentShift};

    use crate::{Result, StoreError};

    /// The row's columns after `conversation` and `workspace_id`, in table order.
    pub(crate) type Row = (
        Option<String>,
        Option<f64>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
    );

    /// An insight as a row.
    pub(crate) fn to_row(i: &ConversationInsight) -> Row {
        (
            i.sentiment.as_ref().map(|s| s.label.as_str().to_owned()),
            i.sentiment.as_ref().and_then(|s| s.score),
            i.sentiment_source.map(|s| s.as_str().to_owned()),
            i.sentiment_shift.map(|s| s.as_str().to_owned()),
            i.language.clone(),
            i.resolution.as_str().to_owned(),
            i.first_response_ms,
            i.duration_ms,
            (!i.key_phrases.is_empty()).then(|| phrases_json(&i.key_phrases)),
            i.topic.clone(),
        )
    }

    /// Phrases as their stored JSON array.
    pub(crate) fn phrases_json(p: &[String]) -> String {
        serde_json::to_string(p).unwrap_or_default()
    }

    /// A stored JSON array of phrases back; anything else is a backend error.
    pub(crate) fn phrases_from(what: &str, json: &str) -> Result<Vec<String>> {
        serde_json::from_str(json).map_err(|_| bad(what, json))
    }

    /// A `workspace_topics` row back as a topic.
    pub(crate) fn topic_from(
        key: String,
        phrases: &str,
        conversations: i64,
    ) -> Result<parley_core::topics::Topic> {
        Ok(parley_core::topics::Topic {
            key,
            phrases: phrases_from("workspace_topics.phrases", phrases)?,
            conversations: usize::try_from(conversations).unwrap_or(0),
        })
    }

    fn bad(what: &str, v: &str) -> StoreError {
        StoreError::backend(format!("conversation_insights.{what} holds {v:?}"))
    }

    /// A row back as an insight; a value no version wrote is a backend error.
    pub(crate) fn from_row(r: Row) -> Result<ConversationInsight> {
        let (label, score, source, shift, language, resolution, first, duration, phrases, topic) =
            r;
        let key_phrases = match phrases {
            None => Vec::new(),
            Some(p) => phrases_from("conversation_insights.key_phrases", &p)?,
        };
        let sentiment = match label {
            None => None,
            Some(l) => Some(Sentiment {
                label: l.parse().map_err(|_| bad("sentiment_label", &l))?,
                score,
            }),
        };
        let sentiment_source = match source {
            None => None,
            Some(s) => Some(SentimentSource::parse(&s).ok_or_else(|| bad("sentiment_source", &s))?),
        };
        let sentiment_shift = match shift {
            None => None,
            Some(s) => Some(
                s.parse::<SentimentShift>()
                    .map_err(|_| bad("sentiment_shift", &s))?,
            ),
        };
        Ok(ConversationInsight {
            sentiment,
            sentiment_source,
            sentiment_shift,
            language,
            resolution: resolution
                .parse::<Resolution>()
                .map_err(|_| bad("resolution", &resolution))?,
            first_response_ms: first,
            duration_ms: duration,
            key_phrases,
            topic,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(from: i64, to: i64) -> InsightWindow {
        InsightWindow {
            from: Timestamp(from),
            to: Timestamp(to),
            channel: None,
            assistant: None,
        }
    }

    fn plan(from: i64, to: i64, grain: i64) -> Vec<(i64, i64, Source)> {
        read_plan(&window(from, to), grain)
            .into_iter()
            .map(|(w, s)| (w.from.0, w.to.0, s))
            .collect()
    }

    /// Whole days from the day rollups, whole hours around them from the hour rollups, the
    /// rest from the rows; the parts cover the window exactly once.
    #[test]
    fn a_window_splits_into_days_hours_and_edges() {
        let (d, h) = (DAY_MS, HOUR_MS);
        let (from, to) = (10 * d - 2 * h - 5, 13 * d + 3 * h + 7);
        let parts = plan(from, to, DAY_MS);
        assert_eq!(
            parts,
            vec![
                (10 * d, 13 * d, Source::Day),
                (10 * d - 2 * h, 10 * d, Source::Hour),
                (13 * d, 13 * d + 3 * h, Source::Hour),
                (from, 10 * d - 2 * h, Source::Scan),
                (13 * d + 3 * h, to, Source::Scan),
            ]
        );
        let mut covered: Vec<(i64, i64)> = parts.iter().map(|p| (p.0, p.1)).collect();
        covered.sort();
        assert!(covered.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!((covered[0].0, covered.last().unwrap().1), (from, to));
        // Hour grain (an hour offset, the heatmap): no day part.
        assert_eq!(
            plan(10 * d, 12 * d, HOUR_MS),
            vec![(10 * d, 12 * d, Source::Hour)]
        );
        // No whole day inside: hours only; no whole hour: the rows.
        assert_eq!(
            plan(10 * d + h, 10 * d + 5 * h, DAY_MS),
            vec![(10 * d + h, 10 * d + 5 * h, Source::Hour)]
        );
        assert_eq!(
            plan(h + 1, 2 * h - 1, DAY_MS),
            vec![(h + 1, 2 * h - 1, Source::Scan)]
        );
        assert_eq!(plan(0, 5 * d, 0), vec![(0, 5 * d, Source::Scan)]);
    }

    #[test]
    fn groupings_read_the_coarsest_grain_their_boundaries_allow() {
        let b = |size_ms, origin_ms, offset_ms| InsightGrouping::Buckets {
            size_ms,
            origin_ms,
            offset_ms,
        };
        assert_eq!(b(DAY_MS, 0, 0).grain(), DAY_MS);
        assert_eq!(b(7 * DAY_MS, 4 * DAY_MS, 0).grain(), DAY_MS);
        assert_eq!(b(DAY_MS, 0, 2 * HOUR_MS).grain(), HOUR_MS);
        assert_eq!(b(HOUR_MS, 0, 0).grain(), HOUR_MS);
        assert_eq!(b(DAY_MS, 0, 30 * 60_000).grain(), 0);
        assert_eq!(b(15 * 60_000, 0, 0).grain(), 0);
        assert_eq!(InsightGrouping::WeekHour { offset_ms: 0 }.grain(), HOUR_MS);
        assert_eq!(
            InsightGrouping::WeekHour {
                offset_ms: 90 * 60_000
            }
            .grain(),
            0
        );
    }
}
