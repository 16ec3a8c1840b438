//! `/api/v1/insights/*` (issue 13): figures over a cohort of conversations.
//!
//! The cohort is always the workspace's conversations **started** in `[from, to)`, so every
//! rate divides by the same population (resolution rate = resolved by AI / conversations in
//! the cohort). Each figure
//! comes with its value over the previous period of the same length. The figures are read
//! from the store's hourly rollups ([`parley_store::InsightStore::insight_totals`]), kept by
//! the analyser in the transaction that writes each insight, so a conversation counts as of
//! its last analysis (seconds behind ingest). Read from the rows instead: the partial hours
//! at a window's ends (e.g. `to` = now), and every bucket of a `tz` whose offset is not a
//! whole number of hours (`+05:30`, `Asia/Kathmandu`).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use parley_core::zone::Zone;
use parley_core::{AssistantId, Channel, Timestamp};
use parley_store::{InsightTotals, InsightWindow};
use serde_json::{Value, json};

use super::Params;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

/// The parameters every insights route takes (`format`: `json`, the default, or `csv`).
pub(crate) const WINDOW_PARAMS: &[&str] = &["from", "to", "channel", "assistant", "tz", "format"];

const DAY_MS: i64 = 86_400_000;
/// The default window: the last 30 days.
const DEFAULT_DAYS: i64 = 30;
/// The longest window, in days.
const MAX_DAYS: i64 = 400;

/// The time zone of the insights' local days, hours and weeks (`tz=`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InsightTz {
    /// A fixed offset, minutes east of UTC (`UTC`, `Z`, `+02:00`): buckets are grouped in SQL.
    Fixed(i32),
    /// A named zone with its DST rules (`Europe/Berlin`): local midnights move with the
    /// zone's offset, so a day is 23, 24 or 25 hours; the store groups by UTC quarter hours
    /// (every offset in use is a whole number of them) and they are summed into local buckets.
    Named(Zone),
}

/// UTC quarter hours, the grouping a named zone's buckets are summed from when its offset is
/// not a whole number of hours (see [`zone_grain`]).
const QUARTER_MS: i64 = 900_000;

impl InsightTz {
    /// The zone's offset at `t`, minutes east of UTC.
    pub(crate) fn offset_at(&self, t: Timestamp) -> i32 {
        match self {
            InsightTz::Fixed(m) => *m,
            InsightTz::Named(z) => z.offset_minutes(t),
        }
    }

    /// How answers name it: `+02:00`, or the zone's IANA name.
    pub(crate) fn label(&self) -> String {
        match self {
            InsightTz::Fixed(tz) => {
                let sign = if *tz < 0 { '-' } else { '+' };
                format!("{sign}{:02}:{:02}", tz.abs() / 60, tz.abs() % 60)
            }
            InsightTz::Named(z) => z.name().to_owned(),
        }
    }

    /// The workspace's zone (UTC, as the fixed offset 0, when it is UTC).
    pub(crate) fn of(zone: Zone) -> InsightTz {
        if zone.name() == "UTC" {
            InsightTz::Fixed(0)
        } else {
            InsightTz::Named(zone)
        }
    }
}

/// The workspace's time zone as the insights' default `tz`. Errors: the store's.
pub(crate) async fn workspace_tz(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
) -> Result<InsightTz, ApiError> {
    Ok(InsightTz::of(
        crate::workspace_settings::zone(st, workspace).await?,
    ))
}

/// `tz`: `UTC`, `Z`, a fixed offset `±HH:MM`, or an IANA zone name (`Europe/Berlin`);
/// `default` (the workspace's time zone) when absent. Errors: 400 `invalid_parameter` on `tz`.
pub(crate) fn parse_tz(p: &Params, default: &InsightTz) -> Result<InsightTz, ApiError> {
    let Some(v) = p.get("tz") else {
        return Ok(default.clone());
    };
    if v.eq_ignore_ascii_case("utc") || v == "Z" {
        return Ok(InsightTz::Fixed(0));
    }
    let bad = || {
        ApiError::bad_param(
            "tz",
            format!(
                "tz must be UTC, a fixed offset like +02:00 or a time zone name like Europe/Berlin, got {v:?}"
            ),
        )
    };
    let (sign, rest) = match v.as_bytes().first() {
        Some(b'+') => (1, &v[1..]),
        Some(b'-') => (-1, &v[1..]),
        _ => return Zone::parse(v).map(InsightTz::of).map_err(|_| bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h.to_string().len() > 2 || h > 14 || !(0..60).contains(&m) || m.to_string().len() > 2 {
        return Err(bad());
    }
    Ok(InsightTz::Fixed(sign * (h * 60 + m)))
}

/// The window the parameters name: `from` / `to` as RFC 3339 or `YYYY-MM-DD` (a day in `tz`,
/// from its local midnight; `to` includes its whole day), by default the last 30 days;
/// `channel`, `assistant` (an id); `tz` (see [`parse_tz`], `default` when absent).
/// Errors: 400 `invalid_parameter` naming the parameter (bad value, `to` not after `from`,
/// longer than 400 days).
pub(crate) fn parse_window(
    p: &Params,
    default: &InsightTz,
) -> Result<(InsightWindow, InsightTz), ApiError> {
    let tz = parse_tz(p, default)?;
    let bound = |name: &str, end: bool| -> Result<Option<Timestamp>, ApiError> {
        p.get(name)
            .map(|v| {
                let t = Timestamp::parse_bound(v, end).map_err(|_| {
                    ApiError::bad_param(
                        name,
                        format!("{name} must be an RFC 3339 date-time or YYYY-MM-DD, got {v:?}"),
                    )
                })?;
                // A bare day is that day in `tz`.
                Ok(match &tz {
                    _ if v.len() != 10 => t,
                    InsightTz::Fixed(m) => t.add_millis(-(*m as i64) * 60_000),
                    InsightTz::Named(z) => {
                        let start = z.day_start(v).map_err(|m| ApiError::bad_param(name, m))?;
                        if end {
                            z.next_bucket(start, "day").unwrap_or(t)
                        } else {
                            start
                        }
                    }
                })
            })
            .transpose()
    };
    let to = bound("to", true)?.unwrap_or_else(Timestamp::now);
    let from = bound("from", false)?.unwrap_or(to.add_millis(-DEFAULT_DAYS * DAY_MS));
    if to <= from {
        return Err(ApiError::bad_param("to", "to must be after from"));
    }
    if to.0 - from.0 > MAX_DAYS * DAY_MS {
        return Err(ApiError::bad_param(
            "from",
            format!("the window may span at most {MAX_DAYS} days"),
        ));
    }
    let channel = p
        .get("channel")
        .map(|v| {
            v.parse::<Channel>()
                .map_err(|e| ApiError::bad_param("channel", e.to_string()))
        })
        .transpose()?;
    let assistant = p
        .get("assistant")
        .map(|v| {
            v.parse::<AssistantId>().map_err(|_| {
                ApiError::bad_param("assistant", format!("{v:?} is not an assistant id"))
            })
        })
        .transpose()?;
    Ok((
        InsightWindow {
            from,
            to,
            channel,
            assistant,
        },
        tz,
    ))
}

/// `n / d`, `None` when `d` is 0.
fn ratio(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Each headline figure of `t` (see the module docs), by name.
fn figures(t: &InsightTotals) -> Vec<(&'static str, Value)> {
    let not_analyzed = t.conversations - t.positive - t.neutral - t.negative;
    vec![
        ("conversations", json!(t.conversations)),
        ("messages", json!(t.messages)),
        (
            "resolution_rate",
            json!(ratio(t.resolved_by_ai, t.conversations)),
        ),
        ("handoff_rate", json!(ratio(t.handed_off, t.conversations))),
        ("average_rating", json!(ratio(t.rating_sum, t.rated))),
        ("csat", json!(ratio(t.rated_4_or_5, t.rated))),
        ("rated", json!(t.rated)),
        ("resolved_by_ai", json!(t.resolved_by_ai)),
        ("handed_off", json!(t.handed_off)),
        ("unresolved", json!(t.unresolved)),
        ("ongoing", json!(t.ongoing)),
        ("sentiment_positive", json!(t.positive)),
        ("sentiment_neutral", json!(t.neutral)),
        ("sentiment_negative", json!(t.negative)),
        ("sentiment_not_analyzed", json!(not_analyzed)),
        ("prompt_tokens", json!(t.prompt_tokens)),
        ("completion_tokens", json!(t.completion_tokens)),
        ("cost_nanousd", json!(t.cost_nanousd)),
        (
            "cost_per_resolved_nanousd",
            json!((t.resolved_by_ai > 0).then(|| t.cost_nanousd / t.resolved_by_ai)),
        ),
    ]
}

/// The summary of `window` and its previous period, as `GET /api/v1/insights/summary`
/// answers it. Errors: the store's.
pub(crate) async fn summary_of(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    window: &InsightWindow,
    tz: &InsightTz,
) -> Result<Value, ApiError> {
    let span = window.to.0 - window.from.0;
    let previous = InsightWindow {
        from: window.from.add_millis(-span),
        to: window.from,
        ..*window
    };
    let insights = st.store.insights();
    let (now, before) = tokio::try_join!(
        insights.insight_totals(workspace, window),
        insights.insight_totals(workspace, &previous)
    )?;
    let mut figures_json = serde_json::Map::new();
    for ((name, value), (_, prev)) in figures(&now).into_iter().zip(figures(&before)) {
        figures_json.insert(name.into(), json!({"value": value, "previous": prev}));
    }
    Ok(json!({
        "from": window.from,
        "to": window.to,
        "previous_from": previous.from,
        "previous_to": previous.to,
        "tz": tz.label(),
        "channel": window.channel,
        "assistant": window.assistant,
        "figures": figures_json,
    }))
}

/// `n / d` rounded to whole units, `None` when `d` is 0.
fn average(n: i64, d: i64) -> Option<i64> {
    (d > 0).then(|| (n as f64 / d as f64).round() as i64)
}

/// [`figures`] plus the average first response time and duration (ms) of the analysed
/// conversations that have one: the assistant comparison's row.
fn comparison_figures(t: &InsightTotals) -> Value {
    let mut m: serde_json::Map<String, Value> = figures(t)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    m.insert(
        "average_first_response_ms".into(),
        json!(average(t.first_response_ms_sum, t.first_responses)),
    );
    m.insert(
        "average_duration_ms".into(),
        json!(average(t.duration_ms_sum, t.durations)),
    );
    Value::Object(m)
}

/// One assistant's totals and its versions' (version, totals).
type AssistantGroup = (
    Option<AssistantId>,
    InsightTotals,
    Vec<(Option<i64>, InsightTotals)>,
);

/// The assistant comparison of `window`'s cohort, as `GET /api/v1/insights/assistants`
/// answers it: one entry per assistant (`assistant` its id, `name` its current name; both
/// `null` for conversations recorded without an assistant id), most conversations first, with
/// its figures and one entry per version it ran (newest first; `version: null` for
/// conversations that recorded none). Errors: the store's.
pub(crate) async fn assistants_of(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    window: &InsightWindow,
) -> Result<Value, ApiError> {
    let (rows, known) = tokio::try_join!(
        async {
            st.store
                .insights()
                .insight_assistants(workspace, window)
                .await
                .map_err(ApiError::from)
        },
        async {
            st.store
                .assistants()
                .list_assistants(workspace)
                .await
                .map_err(ApiError::from)
        },
    )?;
    // The store orders by assistant then version: consecutive rows are one assistant's.
    let mut groups: Vec<AssistantGroup> = Vec::new();
    for r in rows {
        match groups.last_mut() {
            Some(g) if g.0 == r.assistant => {
                g.1.add(&r.totals);
                g.2.push((r.version, r.totals));
            }
            _ => groups.push((r.assistant, r.totals, vec![(r.version, r.totals)])),
        }
    }
    groups.sort_by_key(|g| (g.0.is_none(), -g.1.conversations));
    let entries: Vec<Value> = groups
        .into_iter()
        .map(|(id, total, mut versions)| {
            versions.sort_by_key(|v| std::cmp::Reverse(v.0));
            let name = id.and_then(|id| known.iter().find(|a| a.id == id).map(|a| a.name.clone()));
            json!({
                "assistant": id,
                "name": name,
                "figures": comparison_figures(&total),
                "versions": versions
                    .iter()
                    .map(|(v, t)| json!({"version": v, "figures": comparison_figures(t)}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "from": window.from,
        "to": window.to,
        "channel": window.channel,
        "assistant": window.assistant,
        "assistants": entries,
    }))
}

/// The topics of `window`'s cohort, as `GET /api/v1/insights/topics` answers it: one entry per
/// workspace topic that has conversations started in the window, most conversations first
/// (ties by key): `topic` (its key, the value of the list's `topic=` filter), `phrases` (naming
/// it, the key first), `figures` (those of the assistant comparison: count, resolution rate,
/// average rating, sentiment mix...) and `previous_conversations` (the same topic in the
/// previous period of the same length: the trend). `learned_at` is when the topics were last
/// learned (`null`: never). Errors: the store's.
pub(crate) async fn topics_of(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    window: &InsightWindow,
) -> Result<Value, ApiError> {
    let span = window.to.0 - window.from.0;
    let previous = InsightWindow {
        from: window.from.add_millis(-span),
        to: window.from,
        ..*window
    };
    let insights = st.store.insights();
    let (now, before, set) = tokio::try_join!(
        insights.insight_topics(workspace, window),
        insights.insight_topics(workspace, &previous),
        insights.topics(workspace),
    )?;
    let mut rows: Vec<(String, InsightTotals)> = now;
    rows.sort_by(|a, b| {
        b.1.conversations
            .cmp(&a.1.conversations)
            .then(a.0.cmp(&b.0))
    });
    let entries: Vec<Value> = rows
        .iter()
        .map(|(key, t)| {
            let phrases = set
                .topics
                .iter()
                .find(|x| &x.key == key)
                .map_or_else(|| vec![key.clone()], |x| x.phrases.clone());
            let prev = before
                .iter()
                .find(|(k, _)| k == key)
                .map_or(0, |(_, t)| t.conversations);
            json!({
                "topic": key,
                "phrases": phrases,
                "figures": comparison_figures(t),
                "previous_conversations": prev,
            })
        })
        .collect();
    Ok(json!({
        "from": window.from,
        "to": window.to,
        "previous_from": previous.from,
        "previous_to": previous.to,
        "channel": window.channel,
        "assistant": window.assistant,
        "learned_at": (set.learned_at > 0).then_some(Timestamp(set.learned_at)),
        "topics": entries,
    }))
}

/// `GET /api/v1/insights/topics`: the topics (see [`topics_of`]) with the window parameters.
/// Errors: 400 `invalid_parameter` (see [`parse_window`]).
pub(super) async fn topics(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), WINDOW_PARAMS)?;
    let (window, _) = parse_window(&p, &workspace_tz(&st, auth.workspace).await?)?;
    answer(&p, "topics", topics_of(&st, auth.workspace, &window).await?)
}

/// `GET /api/v1/insights/assistants`: the assistant comparison (see [`assistants_of`]) with the
/// window parameters. Errors: 400 `invalid_parameter` (see [`parse_window`]).
pub(super) async fn assistants(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), WINDOW_PARAMS)?;
    let (window, _) = parse_window(&p, &workspace_tz(&st, auth.workspace).await?)?;
    answer(
        &p,
        "assistants",
        assistants_of(&st, auth.workspace, &window).await?,
    )
}

/// `GET /api/v1/insights/summary`: the headline figures of the window's cohort and of the
/// previous period. Errors: 400 `invalid_parameter` (see [`parse_window`]).
pub(super) async fn summary(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), WINDOW_PARAMS)?;
    let (window, tz) = parse_window(&p, &workspace_tz(&st, auth.workspace).await?)?;
    answer(
        &p,
        "summary",
        summary_of(&st, auth.workspace, &window, &tz).await?,
    )
}

const HOUR_MS: i64 = 3_600_000;
/// 1970-01-05, the first Monday of the epoch: weeks start on Mondays.
const MONDAY_MS: i64 = 4 * DAY_MS;
/// The most points one timeseries answers.
const MAX_POINTS: i64 = 2_000;

/// A timeseries metric (`metric=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    /// Conversations started.
    Conversations,
    /// Their visible messages.
    Messages,
    /// Their cost, nano-USD.
    Cost,
    /// Their prompt and completion tokens.
    Tokens,
    /// Their sentiment mix.
    Sentiment,
}

impl Metric {
    fn parse(v: &str) -> Option<Metric> {
        Some(match v {
            "conversations" => Metric::Conversations,
            "messages" => Metric::Messages,
            "cost" => Metric::Cost,
            "tokens" => Metric::Tokens,
            "sentiment" => Metric::Sentiment,
            _ => return None,
        })
    }

    /// The point's value for `t`.
    pub(crate) fn value(self, t: &InsightTotals) -> Value {
        match self {
            Metric::Conversations => json!(t.conversations),
            Metric::Messages => json!(t.messages),
            Metric::Cost => json!(t.cost_nanousd),
            Metric::Tokens => json!({"prompt_tokens": t.prompt_tokens,
                                     "completion_tokens": t.completion_tokens}),
            Metric::Sentiment => json!({"positive": t.positive, "neutral": t.neutral,
                "negative": t.negative,
                "not_analyzed": t.conversations - t.positive - t.neutral - t.negative}),
        }
    }
}

/// The buckets of a timeseries: (grouping, bucket length ms, origin ms).
fn buckets(interval: &str, tz: i32) -> Option<(parley_store::InsightGrouping, i64, i64)> {
    let (size_ms, origin_ms) = match interval {
        "hour" => (HOUR_MS, 0),
        "day" => (DAY_MS, 0),
        "week" => (7 * DAY_MS, MONDAY_MS),
        _ => return None,
    };
    let offset_ms = tz as i64 * 60_000;
    Some((
        parley_store::InsightGrouping::Buckets {
            size_ms,
            origin_ms,
            offset_ms,
        },
        size_ms,
        origin_ms - offset_ms,
    ))
}

/// One timeseries: every bucket overlapping the window, in order (empty ones with zero
/// values), as `GET /api/v1/insights/timeseries` answers it. Errors: the store's; 400 when
/// the window holds more than 2,000 buckets.
pub(crate) async fn timeseries_of(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    window: &InsightWindow,
    tz: &InsightTz,
    metric: Metric,
    interval: &str,
) -> Result<Value, ApiError> {
    let bad_interval = || ApiError::bad_param("interval", "interval must be hour, day or week");
    let too_many = || {
        ApiError::bad_param(
            "interval",
            format!("the window holds more than {MAX_POINTS} {interval}s; use a longer interval"),
        )
    };
    let offset = match tz {
        InsightTz::Fixed(m) => *m,
        InsightTz::Named(zone) => {
            return named_timeseries(st, workspace, window, zone, metric, interval)
                .await?
                .ok_or_else(bad_interval)?
                .map_err(|()| too_many());
        }
    };
    let (grouping, size, origin) = buckets(interval, offset).ok_or_else(bad_interval)?;
    let key = |t: i64| (t - origin).div_euclid(size);
    let (first, last) = (key(window.from.0), key(window.to.0 - 1));
    if last - first + 1 > MAX_POINTS {
        return Err(too_many());
    }
    let groups: std::collections::HashMap<i64, InsightTotals> = st
        .store
        .insights()
        .insight_groups(workspace, window, grouping)
        .await?
        .into_iter()
        .collect();
    let points: Vec<Value> = (first..=last)
        .map(|k| {
            let t = groups.get(&k).copied().unwrap_or_default();
            json!({"start": Timestamp(k * size + origin), "value": metric.value(&t)})
        })
        .collect();
    Ok(json!({"from": window.from, "to": window.to, "interval": interval, "points": points}))
}

/// The grain a named zone's buckets are summed from over `window`: a UTC hour when the zone's
/// offset is a whole number of hours throughout (its transitions then fall on whole UTC hours
/// too, and the store reads hours from its rollups), else a quarter hour (read from the rows).
fn zone_grain(zone: &Zone, window: &InsightWindow) -> i64 {
    let whole = (window.from.0..window.to.0 + HOUR_MS)
        .step_by(HOUR_MS as usize)
        .all(|t| zone.offset_minutes(Timestamp(t)) % 60 == 0);
    if whole { HOUR_MS } else { QUARTER_MS }
}

/// The store's sums per UTC hour or quarter hour (see [`zone_grain`]) of `window`'s cohort,
/// each with the instant its grain starts.
async fn quarter_hours(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    window: &InsightWindow,
    zone: &Zone,
) -> Result<Vec<(Timestamp, InsightTotals)>, ApiError> {
    let grain = zone_grain(zone, window);
    let grouping = parley_store::InsightGrouping::Buckets {
        size_ms: grain,
        origin_ms: 0,
        offset_ms: 0,
    };
    Ok(st
        .store
        .insights()
        .insight_groups(workspace, window, grouping)
        .await?
        .into_iter()
        .map(|(k, t)| (Timestamp(k * grain), t))
        .collect())
}

/// [`timeseries_of`] in a named zone: `None` for an unknown interval, `Some(Err(()))` when
/// the window holds more than [`MAX_POINTS`] buckets.
async fn named_timeseries(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    window: &InsightWindow,
    zone: &Zone,
    metric: Metric,
    interval: &str,
) -> Result<Option<Result<Value, ()>>, ApiError> {
    let Some(mut start) = zone.bucket_start(window.from, interval) else {
        return Ok(None);
    };
    let mut starts = Vec::new();
    while start < window.to {
        if starts.len() as i64 >= MAX_POINTS {
            return Ok(Some(Err(())));
        }
        starts.push(start);
        match zone.next_bucket(start, interval) {
            Some(next) if next > start => start = next,
            _ => break,
        }
    }
    let mut sums = vec![InsightTotals::default(); starts.len()];
    for (at, t) in quarter_hours(st, workspace, window, zone).await? {
        // The last bucket starting at or before the quarter hour.
        let i = starts.partition_point(|s| *s <= at);
        if i > 0 {
            sums[i - 1].add(&t);
        }
    }
    let points: Vec<Value> = starts
        .iter()
        .zip(&sums)
        .map(|(s, t)| json!({"start": s, "value": metric.value(t)}))
        .collect();
    Ok(Some(Ok(
        json!({"from": window.from, "to": window.to, "interval": interval, "points": points}),
    )))
}

/// `GET /api/v1/insights/timeseries?metric=&interval=` plus the window parameters. Errors: 400
/// `invalid_parameter` (a bad `metric` or `interval`, too many points, see [`parse_window`]).
pub(super) async fn timeseries(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let allowed: Vec<&str> = WINDOW_PARAMS
        .iter()
        .copied()
        .chain(["metric", "interval"])
        .collect();
    let p = Params::parse(raw.as_deref(), &allowed)?;
    let metric = Metric::parse(p.get("metric").unwrap_or("conversations")).ok_or_else(|| {
        ApiError::bad_param(
            "metric",
            "metric must be conversations, messages, cost, tokens or sentiment",
        )
    })?;
    let interval = p.get("interval").unwrap_or("day").to_owned();
    let (window, tz) = parse_window(&p, &workspace_tz(&st, auth.workspace).await?)?;
    let mut v = timeseries_of(&st, auth.workspace, &window, &tz, metric, &interval).await?;
    v["metric"] = json!(p.get("metric").unwrap_or("conversations"));
    answer(&p, "timeseries", v)
}

/// The 7 x 24 grid of conversations started in the window (rows Monday..Sunday, columns hour
/// 0..23, local time in `tz`). Errors: the store's.
pub(crate) async fn heatmap_of(
    st: &AppState,
    workspace: parley_core::WorkspaceId,
    window: &InsightWindow,
    tz: &InsightTz,
) -> Result<Vec<Vec<i64>>, ApiError> {
    let tz = match tz {
        InsightTz::Fixed(m) => *m,
        InsightTz::Named(zone) => {
            let mut cells = vec![vec![0i64; 24]; 7];
            for (at, t) in quarter_hours(st, workspace, window, zone).await? {
                let (day, hour) = zone.weekday_hour(at);
                cells[day as usize][hour as usize] += t.conversations;
            }
            return Ok(cells);
        }
    };
    let groups = st
        .store
        .insights()
        .insight_groups(
            workspace,
            window,
            parley_store::InsightGrouping::WeekHour {
                offset_ms: tz as i64 * 60_000,
            },
        )
        .await?;
    let mut cells = vec![vec![0i64; 24]; 7];
    for (k, t) in groups {
        if (0..168).contains(&k) {
            cells[(k / 24) as usize][(k % 24) as usize] = t.conversations;
        }
    }
    Ok(cells)
}

/// `GET /api/v1/insights/heatmap` with the window parameters: conversations started per
/// weekday and hour. Errors: 400 `invalid_parameter` (see [`parse_window`]).
pub(super) async fn heatmap(
    State(st): State<AppState>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), WINDOW_PARAMS)?;
    let (window, tz) = parse_window(&p, &workspace_tz(&st, auth.workspace).await?)?;
    let cells = heatmap_of(&st, auth.workspace, &window, &tz).await?;
    answer(&p, "heatmap", heatmap_json(&window, cells))
}

/// The heatmap answer: the window, the weekday names and the 7 x 24 cells.
pub(crate) fn heatmap_json(window: &InsightWindow, cells: Vec<Vec<i64>>) -> Value {
    json!({
        "from": window.from,
        "to": window.to,
        "days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
        "cells": cells,
    })
}

/// A JSON value as one CSV cell: strings bare, `null` empty, numbers and the rest as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The names of a figures object's entries, in its order.
fn figure_names(f: &Value) -> Vec<String> {
    f.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The numbers of one insights answer (`figure`: `summary`, `timeseries`, `heatmap`,
/// `assistants` or `topics`, as [`summary_of`], [`timeseries_of`], the heatmap answer,
/// [`assistants_of`] and [`topics_of`] give them) as CSV records, a header first:
/// - summary: `figure,value,previous`, one row per headline figure;
/// - timeseries: `start` then the metric (`value`), or each part of it (tokens, sentiment);
/// - heatmap: `day,0,1,..,23` (local hours), one row per weekday, Monday first;
/// - assistants: `assistant,name,version` then each comparison figure; an assistant's own row
///   has an empty version, each of its versions follows it;
/// - topics: `topic,phrases,previous_conversations` then each figure; phrases joined by `; `.
pub(crate) fn csv_records(figure: &str, v: &Value) -> Vec<Vec<String>> {
    let empty = Vec::new();
    let list = |k: &str| v[k].as_array().unwrap_or(&empty).clone();
    match figure {
        "summary" => {
            let f = &v["figures"];
            let mut out = vec![vec!["figure".into(), "value".into(), "previous".into()]];
            for name in figure_names(f) {
                out.push(vec![
                    name.clone(),
                    cell(&f[&name]["value"]),
                    cell(&f[&name]["previous"]),
                ]);
            }
            out
        }
        "timeseries" => {
            let points = list("points");
            let parts = points
                .first()
                .map(|p| figure_names(&p["value"]))
                .unwrap_or_default();
            let mut head = vec!["start".to_owned()];
            if parts.is_empty() {
                head.push("value".into());
            } else {
                head.extend(parts.iter().cloned());
            }
            let mut out = vec![head];
            for p in &points {
                let mut row = vec![cell(&p["start"])];
                if parts.is_empty() {
                    row.push(cell(&p["value"]));
                } else {
                    row.extend(parts.iter().map(|k| cell(&p["value"][k])));
                }
                out.push(row);
            }
            out
        }
        "heatmap" => {
            let mut head = vec!["day".to_owned()];
            head.extend((0..24).map(|h| h.to_string()));
            let mut out = vec![head];
            for (day, row) in list("days").iter().zip(list("cells")) {
                let mut r = vec![cell(day)];
                r.extend(row.as_array().unwrap_or(&empty).iter().map(cell));
                out.push(r);
            }
            out
        }
        "assistants" => {
            let entries = list("assistants");
            let names = entries
                .first()
                .map(|e| figure_names(&e["figures"]))
                .unwrap_or_default();
            let mut head: Vec<String> = vec!["assistant".into(), "name".into(), "version".into()];
            head.extend(names.iter().cloned());
            let mut out = vec![head];
            for e in &entries {
                let row = |version: &Value, f: &Value| {
                    let mut r = vec![cell(&e["assistant"]), cell(&e["name"]), cell(version)];
                    r.extend(names.iter().map(|n| cell(&f[n])));
                    r
                };
                out.push(row(&Value::Null, &e["figures"]));
                for ver in e["versions"].as_array().unwrap_or(&empty) {
                    let label = match &ver["version"] {
                        Value::Null => json!("none"),
                        n => n.clone(),
                    };
                    out.push(row(&label, &ver["figures"]));
                }
            }
            out
        }
        _ => {
            let entries = list("topics");
            let names = entries
                .first()
                .map(|e| figure_names(&e["figures"]))
                .unwrap_or_default();
            let mut head: Vec<String> = vec![
                "topic".into(),
                "phrases".into(),
                "previous_conversations".into(),
            ];
            head.extend(names.iter().cloned());
            let mut out = vec![head];
            for e in &entries {
                let phrases: Vec<String> = e["phrases"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .map(cell)
                    .collect();
                let mut r = vec![
                    cell(&e["topic"]),
                    phrases.join("; "),
                    cell(&e["previous_conversations"]),
                ];
                r.extend(names.iter().map(|n| cell(&e["figures"][n])));
                out.push(r);
            }
            out
        }
    }
}

/// One insights answer as a CSV download (`insights-<figure>.csv`, see [`csv_records`]).
/// Errors: 500 when the writer fails (it writes to memory).
pub(crate) fn csv_response(figure: &str, v: &Value) -> Result<Response, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in csv_records(figure, v) {
        w.write_record(r).map_err(ApiError::internal)?;
    }
    let body = w.into_inner().map_err(ApiError::internal)?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"insights-{figure}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The answer of an insights route in the `format` asked for: JSON (the default) or CSV.
/// Errors: 400 `invalid_parameter` for another format.
fn answer(p: &Params, figure: &str, v: Value) -> Result<Response, ApiError> {
    match p.get("format").unwrap_or("json") {
        "json" => Ok(Json(v).into_response()),
        "csv" => csv_response(figure, &v),
        _ => Err(ApiError::bad_param("format", "format must be json or csv")),
    }
}
