//! The Insights page (issue 13): for a range (Today, 7, 30 or 90 days, or custom from / to
//! days, in the viewer's time zone) and optional channel / assistant, the headline cards with
//! their change against the previous period, conversations over time as a server-rendered SVG bar chart (with the same
//! numbers in a table), and the 7 x 24 peak-times grid (numbers in every cell, so it reads
//! without colour). Figures come from the same code as `/api/v1/insights/*`. Cards and bars
//! drill down to the Conversations list with the same range and filters; each figure's numbers
//! download as CSV (`/insights/csv/{figure}`). No script.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use parley_core::{AssistantId, Channel, Resolution, SentimentFilter, Timestamp};
use parley_store::InsightWindow;
use serde_json::Value;

use super::format;
use super::pages::Layout;
use super::state::ViewState;
use super::tz_offset;
use crate::AppState;
use crate::api::insights::{
    InsightTz, Metric, assistants_of, csv_response, heatmap_json, heatmap_of, summary_of,
    timeseries_of, topics_of,
};
use crate::auth::Session;
use crate::error::ApiError;
use parley_core::zone::Zone;

const DAY_MS: i64 = 86_400_000;

/// The ranges the picker offers: (URL value, label, days).
const RANGES: &[(&str, &str, i64)] = &[
    ("today", "Today", 1),
    ("7d", "Last 7 days", 7),
    ("30d", "Last 30 days", 30),
    ("90d", "Last 90 days", 90),
];

struct Card {
    id: &'static str,
    label: &'static str,
    value: String,
    change: String,
    href: String,
}

struct Bar {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    label: String,
    value: i64,
    href: String,
}

/// One row of the assistant comparison: an assistant, or one of its versions under it.
struct CompareRow {
    /// The assistant's name ("No assistant" for conversations without one), or "v2".
    label: String,
    /// A version row (indented under its assistant).
    version: bool,
    /// The Conversations list of the assistant (versions link to their assistant's).
    href: String,
    conversations: String,
    resolution: String,
    handoff: String,
    rating: String,
    csat: String,
    sentiment: String,
    first_response: String,
    duration: String,
    tokens: String,
    cost: String,
    cost_per_resolved: String,
}

impl CompareRow {
    /// The row of `figures` (a `/insights/assistants` figures object).
    fn new(label: String, version: bool, href: String, f: &Value) -> CompareRow {
        let count = |k: &str| f[k].as_i64().map_or_else(|| "—".to_owned(), format::int);
        let money = |k: &str| f[k].as_i64().map_or_else(|| "—".to_owned(), format::cost);
        let ms = |k: &str| {
            f[k].as_i64()
                .map_or_else(|| "—".to_owned(), format::duration)
        };
        let tokens =
            f["prompt_tokens"].as_i64().unwrap_or(0) + f["completion_tokens"].as_i64().unwrap_or(0);
        CompareRow {
            label,
            version,
            href,
            conversations: count("conversations"),
            resolution: percent(&f["resolution_rate"]),
            handoff: percent(&f["handoff_rate"]),
            rating: f["average_rating"]
                .as_f64()
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}")),
            csat: percent(&f["csat"]),
            sentiment: format!(
                "{} / {} / {}",
                count("sentiment_positive"),
                count("sentiment_neutral"),
                count("sentiment_negative")
            ),
            first_response: ms("average_first_response_ms"),
            duration: ms("average_duration_ms"),
            tokens: format::int(tokens),
            cost: money("cost_nanousd"),
            cost_per_resolved: money("cost_per_resolved_nanousd"),
        }
    }
}

/// One row of the Topics table.
struct TopicRow {
    /// The phrases naming it, " · "-separated (its key first).
    label: String,
    /// The Conversations list of the topic.
    href: String,
    conversations: String,
    /// The change of its count against the previous period.
    trend: String,
    resolution: String,
    rating: String,
    sentiment: String,
}

struct Opt {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "insights.html")]
struct InsightsPage {
    layout: Layout,
    ranges: Vec<(String, &'static str, bool)>,
    channel_options: Vec<Opt>,
    assistant_options: Vec<Opt>,
    range: String,
    range_label: String,
    from_day: String,
    to_day: String,
    csv_query: String,
    cards: Vec<Card>,
    sentiment: Vec<Card>,
    bars: Vec<Bar>,
    chart_max: i64,
    chart_height: u32,
    chart_width: u32,
    hours: Vec<u32>,
    heatmap: Vec<(&'static str, Vec<(i64, u32)>)>,
    comparison: Vec<CompareRow>,
    topics: Vec<TopicRow>,
    topics_learned: bool,
}

/// `n / d` as a percentage text, "—" when unknown.
fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// The change text of a figure: "+3 vs previous period", "+4.2 pts", "—".
fn change(now: &Value, before: &Value, kind: &str) -> String {
    match (now.as_f64(), before.as_f64()) {
        (Some(a), Some(b)) => {
            let d = a - b;
            let sign = if d > 0.0 {
                "+"
            } else if d < 0.0 {
                "−"
            } else {
                "±"
            };
            let d = d.abs();
            match kind {
                "rate" => format!("{sign}{:.1} pts vs previous period", d * 100.0),
                "rating" => format!("{sign}{d:.2} vs previous period"),
                "cost" => format!("{sign}{} vs previous period", format::cost(d as i64)),
                _ => format!("{sign}{} vs previous period", format::int(d as i64)),
            }
        }
        (Some(_), None) => "no previous value".into(),
        _ => "—".into(),
    }
}

/// `GET /insights`.
pub(super) async fn page(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match build(&st, &session, &headers, raw.as_deref()).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => e.into_response(),
    }
}

/// What the page's query picked: the range (a quick range, or a custom `from` / `to` pair
/// of local days), the filters, and the window they make.
struct Picked {
    itz: InsightTz,
    tz: i32,
    range: String,
    range_label: String,
    channel: Option<Channel>,
    assistant: Option<AssistantId>,
    first_day: String,
    today: String,
    from_day: String,
    to_day: String,
    days: i64,
    window: InsightWindow,
}

/// The longest custom range, days (the API's limit).
const MAX_CUSTOM_DAYS: i64 = 400;

/// A `YYYY-MM-DD` day as its number of days since 1970-01-01; `None` when it is not one.
fn day_number(v: &str) -> Option<i64> {
    Timestamp::parse_bound(v, false)
        .ok()
        .filter(|_| v.len() == 10)
        .map(|t| t.0.div_euclid(DAY_MS))
}

/// Reads the page's query (see [`Picked`]): `range=` a quick range (default 7 days), or
/// `from=` and `to=` (both `YYYY-MM-DD`, from not after to, at most 400 days) a custom range,
/// which wins; `channel=`, `assistant=`. Values it cannot read are left out. Errors: the
/// store's.
async fn pick(
    st: &AppState,
    session: &Session,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<Picked, ApiError> {
    let ws = session.user.workspace_id;
    // The workspace's time zone once an admin chose one (Settings), else the viewer's offset.
    let saved = st.store.settings().workspace_settings(ws).await?;
    let itz = match saved.updated_at {
        Some(_) => InsightTz::of(Zone::parse(&saved.time_zone).unwrap_or_else(|_| Zone::utc())),
        None => InsightTz::Fixed(tz_offset(headers)),
    };
    let tz = itz.offset_at(Timestamp::now());
    let mut range = "7d".to_owned();
    let mut channel: Option<Channel> = None;
    let mut assistant: Option<AssistantId> = None;
    let (mut from_day, mut to_day) = (String::new(), String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "range" if RANGES.iter().any(|r| r.0 == v) => range = v.into_owned(),
            "channel" => channel = v.parse().ok(),
            "assistant" => assistant = v.parse().ok(),
            "from" => from_day = v.trim().to_owned(),
            "to" => to_day = v.trim().to_owned(),
            _ => {}
        }
    }
    let &(_, quick_label, quick_days) = RANGES.iter().find(|r| r.0 == range).unwrap_or(&RANGES[1]);
    let now = Timestamp::now();
    let today_now = format::date_iso(now, tz);
    let custom = match (day_number(&from_day), day_number(&to_day)) {
        (Some(a), Some(b)) if a <= b && b - a < MAX_CUSTOM_DAYS => Some(b - a + 1),
        _ => None,
    };
    let (today, days, range_label) = match custom {
        Some(n) => {
            range = "custom".into();
            (to_day.clone(), n, format!("{from_day} to {to_day}"))
        }
        None => {
            from_day.clear();
            to_day.clear();
            (today_now, quick_days, quick_label.to_owned())
        }
    };
    // Whole local days, ending with `today` (the custom range's last day).
    let last_start =
        Timestamp::parse_bound(&today, false).map_err(|_| ApiError::internal("bad day"))?;
    let first_day = format::date_iso(last_start.add_millis(-(days - 1) * DAY_MS), 0);
    let shift = |t: Timestamp| t.add_millis(-(tz as i64) * 60_000);
    let (from, to) = match &itz {
        InsightTz::Fixed(_) => (
            Timestamp::parse_bound(&first_day, false)
                .map(shift)
                .map_err(|_| ApiError::internal("bad day"))?,
            Timestamp::parse_bound(&today, true)
                .map(shift)
                .map_err(|_| ApiError::internal("bad day"))?,
        ),
        // Local midnights, whatever the offset was on each of those days.
        InsightTz::Named(zone) => {
            let last = zone.day_start(&today).map_err(ApiError::internal)?;
            (
                zone.day_start(&first_day).map_err(ApiError::internal)?,
                zone.next_bucket(last, "day")
                    .ok_or_else(|| ApiError::internal("bad day"))?,
            )
        }
    };
    Ok(Picked {
        itz,
        tz,
        range,
        range_label,
        channel,
        assistant,
        first_day,
        today,
        from_day,
        to_day,
        days,
        window: InsightWindow {
            from,
            to,
            channel,
            assistant,
        },
    })
}

/// `GET /insights/csv/{figure}` with the page's query: the numbers of one figure of the page
/// (`summary`, `timeseries`, `heatmap`, `assistants`, `topics`) as a CSV download, in the
/// columns of `format=csv` on the matching `/api/v1/insights/*` route. Errors: 404 for
/// another figure.
pub(super) async fn csv(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    axum::extract::Path(figure): axum::extract::Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let answer = async {
        let p = pick(&st, &session, &headers, raw.as_deref()).await?;
        let ws = session.user.workspace_id;
        let w = &p.window;
        let v = match figure.as_str() {
            "summary" => summary_of(&st, ws, w, &p.itz).await?,
            "timeseries" => {
                let interval = if p.days == 1 { "hour" } else { "day" };
                timeseries_of(&st, ws, w, &p.itz, Metric::Conversations, interval).await?
            }
            "heatmap" => heatmap_json(w, heatmap_of(&st, ws, w, &p.itz).await?),
            "assistants" => assistants_of(&st, ws, w).await?,
            "topics" => topics_of(&st, ws, w).await?,
            _ => return Err(ApiError::not_found("figure")),
        };
        csv_response(&figure, &v)
    };
    answer.await.unwrap_or_else(|e| e.into_response())
}

async fn build(
    st: &AppState,
    session: &Session,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<String, ApiError> {
    let ws = session.user.workspace_id;
    let p = pick(st, session, headers, raw).await?;
    let interval = if p.days == 1 { "hour" } else { "day" };
    let (summary, series, cells, assistants, total, compared, topic_list) = tokio::try_join!(
        summary_of(st, ws, &p.window, &p.itz),
        timeseries_of(st, ws, &p.window, &p.itz, Metric::Conversations, interval),
        heatmap_of(st, ws, &p.window, &p.itz),
        async {
            st.store
                .assistants()
                .list_assistants(ws)
                .await
                .map_err(ApiError::from)
        },
        async {
            st.store
                .conversations()
                .conversation_total(ws)
                .await
                .map_err(ApiError::from)
        },
        assistants_of(st, ws, &p.window),
        topics_of(st, ws, &p.window),
    )?;
    let links = ListLinks {
        first_day: &p.first_day,
        today: &p.today,
        channel: p.channel,
        assistant: p.assistant,
    };
    let chart = bar_chart(&series, interval, &p.itz, &p.window, &links);
    let page = InsightsPage {
        layout: Layout::new("insights", "Insights", session, p.tz, total),
        ranges: range_links(&p.range, p.channel, p.assistant),
        channel_options: Channel::ALL
            .iter()
            .map(|c| Opt {
                value: c.to_string(),
                label: c.label().into(),
                selected: p.channel == Some(*c),
            })
            .collect(),
        assistant_options: assistants
            .iter()
            .map(|a| Opt {
                value: a.id.to_string(),
                label: a.name.clone(),
                selected: p.assistant == Some(a.id),
            })
            .collect(),
        cards: headline_cards(&summary, &links),
        sentiment: sentiment_cards(&summary, &links),
        bars: chart.bars,
        chart_max: chart.max,
        chart_height: CHART_HEIGHT,
        chart_width: CHART_WIDTH,
        hours: (0..24).collect(),
        heatmap: heatmap_rows(cells),
        comparison: comparison_rows(&compared, &links),
        topics: topic_rows(&topic_list, &links),
        topics_learned: !topic_list["learned_at"].is_null(),
        // The page's query, for the CSV links.
        csv_query: raw.unwrap_or("").to_owned(),
        range: p.range,
        range_label: p.range_label,
        from_day: p.from_day,
        to_day: p.to_day,
    };
    page.render().map_err(ApiError::internal)
}

/// Links to the Conversations list with the page's range (`first_day` to `today`, local days
/// `YYYY-MM-DD`) and its channel / assistant filters, each figure adding its own filter.
struct ListLinks<'a> {
    first_day: &'a str,
    today: &'a str,
    channel: Option<Channel>,
    assistant: Option<AssistantId>,
}

impl ListLinks<'_> {
    /// The list's URL with the page's range and filters, changed by `f`.
    fn href(&self, f: &dyn Fn(&mut ViewState)) -> String {
        let mut v = ViewState {
            started_from: Some(self.first_day.to_owned()),
            started_to: Some(self.today.to_owned()),
            channels: self.channel.into_iter().collect(),
            assistants: self.assistant.into_iter().collect(),
            tpage: 1,
            ..Default::default()
        };
        f(&mut v);
        v.href()
    }
}

/// The range buttons (`/insights?range=..` keeping the channel and assistant), each with its
/// label and whether it is the current one.
fn range_links(
    current: &str,
    channel: Option<Channel>,
    assistant: Option<AssistantId>,
) -> Vec<(String, &'static str, bool)> {
    RANGES
        .iter()
        .map(|(v, label, _)| {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("range", v);
            if let Some(c) = channel {
                q.append_pair("channel", c.as_str());
            }
            if let Some(a) = assistant {
                q.append_pair("assistant", &a.to_string());
            }
            (format!("/insights?{}", q.finish()), *label, *v == current)
        })
        .collect()
}

/// One headline card from `/insights/summary`'s `figures[name]` (`{value, previous}`), shown
/// as `kind`: `count`, `rate` (a share as a percentage), `rating` (of 5) or `cost` (nano-USD).
fn card(
    summary: &Value,
    id: &'static str,
    label: &'static str,
    name: &str,
    kind: &str,
    href: String,
) -> Card {
    let f = &summary["figures"][name];
    let value = match kind {
        "rate" => percent(&f["value"]),
        "rating" => f["value"]
            .as_f64()
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2} / 5")),
        "cost" => f["value"]
            .as_i64()
            .map_or_else(|| "—".to_owned(), format::cost),
        _ => f["value"]
            .as_i64()
            .map_or_else(|| "—".to_owned(), format::int),
    };
    Card {
        id,
        label,
        value,
        change: change(&f["value"], &f["previous"], kind),
        href,
    }
}

/// The headline cards, each linking to the conversations it counts.
fn headline_cards(summary: &Value, links: &ListLinks) -> Vec<Card> {
    let tokens = |w: &str| {
        let fig = |n: &str| summary["figures"][n][w].as_i64().unwrap_or(0);
        fig("prompt_tokens") + fig("completion_tokens")
    };
    let all = || links.href(&|_| {});
    let resolved = || links.href(&|v| v.resolutions = vec![Resolution::ResolvedByAi]);
    vec![
        card(
            summary,
            "conversations",
            "Conversations",
            "conversations",
            "count",
            all(),
        ),
        card(summary, "messages", "Messages", "messages", "count", all()),
        card(
            summary,
            "resolution-rate",
            "Resolution rate (AI)",
            "resolution_rate",
            "rate",
            resolved(),
        ),
        card(
            summary,
            "handoff-rate",
            "Hand-off rate",
            "handoff_rate",
            "rate",
            links.href(&|v| v.resolutions = vec![Resolution::HandedOff]),
        ),
        card(
            summary,
            "average-rating",
            "Average rating",
            "average_rating",
            "rating",
            links.href(&|v| v.min_rating = Some(1)),
        ),
        card(
            summary,
            "csat",
            "CSAT (4–5 stars)",
            "csat",
            "rate",
            links.href(&|v| v.min_rating = Some(4)),
        ),
        Card {
            id: "tokens",
            label: "Tokens",
            value: format::int(tokens("value")),
            change: change(
                &Value::from(tokens("value")),
                &Value::from(tokens("previous")),
                "count",
            ),
            href: all(),
        },
        card(summary, "cost", "Cost", "cost_nanousd", "cost", all()),
        card(
            summary,
            "cost-per-resolved",
            "Cost per resolved conversation",
            "cost_per_resolved_nanousd",
            "cost",
            resolved(),
        ),
    ]
}

/// The sentiment mix as four cards, each linking to its conversations.
fn sentiment_cards(summary: &Value, links: &ListLinks) -> Vec<Card> {
    [
        (
            "sentiment-positive",
            "Positive",
            "sentiment_positive",
            SentimentFilter::Positive,
        ),
        (
            "sentiment-neutral",
            "Neutral",
            "sentiment_neutral",
            SentimentFilter::Neutral,
        ),
        (
            "sentiment-negative",
            "Negative",
            "sentiment_negative",
            SentimentFilter::Negative,
        ),
        (
            "sentiment-not-analyzed",
            "Not analyzed",
            "sentiment_not_analyzed",
            SentimentFilter::NotAnalyzed,
        ),
    ]
    .into_iter()
    .map(|(id, label, name, s)| {
        card(
            summary,
            id,
            label,
            name,
            "count",
            links.href(&|v| v.sentiments = vec![s]),
        )
    })
    .collect()
}

/// The SVG chart's size in user units.
const CHART_WIDTH: u32 = 720;
const CHART_HEIGHT: u32 = 160;

/// The conversations-over-time chart: its bars and the value the full height stands for.
struct BarChart {
    bars: Vec<Bar>,
    max: i64,
}

/// Bars from `/insights/timeseries`' `points` (`{start, value}`), each labelled with its local
/// day (or hour when `interval` is `hour`) and linking to that day's conversations.
fn bar_chart(
    series: &Value,
    interval: &str,
    itz: &InsightTz,
    window: &InsightWindow,
    links: &ListLinks,
) -> BarChart {
    let points = series["points"].as_array().cloned().unwrap_or_default();
    let max = points
        .iter()
        .filter_map(|p| p["value"].as_i64())
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = CHART_WIDTH / points.len().max(1) as u32;
    let bars = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let value = p["value"].as_i64().unwrap_or(0);
            let start = p["start"]
                .as_str()
                .and_then(|s| Timestamp::parse_rfc3339(s).ok())
                .unwrap_or(window.from);
            let height = ((value as f64 / max as f64) * CHART_HEIGHT as f64).round() as u32;
            let day = format::date_iso(start, itz.offset_at(start));
            let label = if interval == "hour" {
                format::clock(start, itz.offset_at(start))
            } else {
                format::day_label(&day)
            };
            Bar {
                x: i as u32 * slot + 1,
                y: CHART_HEIGHT - height,
                width: slot.saturating_sub(2).max(1),
                height,
                label,
                value,
                href: links.href(&|v| {
                    v.started_from = Some(day.clone());
                    v.started_to = Some(day.clone());
                }),
            }
        })
        .collect();
    BarChart { bars, max }
}

/// The 7 x 24 grid (Monday first), each cell with its count and a shade level 0-4 (a class:
/// the page's CSP allows no inline style).
fn heatmap_rows(cells: Vec<Vec<i64>>) -> Vec<(&'static str, Vec<(i64, u32)>)> {
    let max_cell = cells.iter().flatten().copied().max().unwrap_or(0).max(1);
    let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    names
        .iter()
        .zip(cells)
        .map(|(n, row)| {
            let row = row
                .into_iter()
                .map(|c| (c, ((c * 4 + max_cell - 1) / max_cell) as u32))
                .collect();
            (*n, row)
        })
        .collect()
}

/// The assistant comparison from `/insights/assistants`: each assistant, then its versions
/// when it has more than one.
fn comparison_rows(compared: &Value, links: &ListLinks) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    for a in compared["assistants"].as_array().into_iter().flatten() {
        let id = a["assistant"]
            .as_str()
            .and_then(|v| v.parse::<AssistantId>().ok());
        let href = match id {
            Some(id) => links.href(&|v| v.assistants = vec![id]),
            None => links.href(&|_| {}),
        };
        let name = a["name"].as_str().map_or_else(
            || {
                if id.is_some() {
                    "Deleted assistant".to_owned()
                } else {
                    "No assistant".to_owned()
                }
            },
            str::to_owned,
        );
        rows.push(CompareRow::new(name, false, href.clone(), &a["figures"]));
        let versions = a["versions"].as_array().cloned().unwrap_or_default();
        // A single version adds nothing to its assistant's row.
        if versions.len() > 1 {
            for v in &versions {
                let label = v["version"]
                    .as_i64()
                    .map_or_else(|| "version not recorded".to_owned(), |n| format!("v{n}"));
                rows.push(CompareRow::new(label, true, href.clone(), &v["figures"]));
            }
        }
    }
    rows
}

/// The topics from `/insights/topics`, most conversations first, each linking to its
/// conversations.
fn topic_rows(topic_list: &Value, links: &ListLinks) -> Vec<TopicRow> {
    topic_list["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let f = &t["figures"];
            let key = t["topic"].as_str().unwrap_or_default().to_owned();
            let count = |k: &str| f[k].as_i64().map_or_else(|| "—".to_owned(), format::int);
            TopicRow {
                label: t["phrases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" · "),
                href: links.href(&|v| v.topic = Some(key.clone())),
                conversations: count("conversations"),
                trend: change(&f["conversations"], &t["previous_conversations"], "count"),
                resolution: percent(&f["resolution_rate"]),
                rating: f["average_rating"]
                    .as_f64()
                    .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}")),
                sentiment: format!(
                    "{} / {} / {}",
                    count("sentiment_positive"),
                    count("sentiment_neutral"),
                    count("sentiment_negative")
                ),
            }
        })
        .collect()
}
