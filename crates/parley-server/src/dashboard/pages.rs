//! The Conversations page, the detail panel, the transcript fragment, and the two actions.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use parley_core::model::{
    Assistant, ConversationDetail, ConversationPatch, ConversationSummary, Message,
};
use parley_core::query::{Cursor, ListQuery, SortKey, TranscriptQuery};
use parley_core::{Channel, ConversationId, ConversationStatus, Role, Timestamp, UserRole};
use parley_store::{ConversationCount, ListedConversation, MessagePage};
use serde::Deserialize;

use super::form::{AdminForm, PageError, admin_forms};
use super::format;

admin_forms!(ActionForm => "delete conversations and erase contacts");
use super::state::{Tab, ViewState};
use super::{asset_version, error_page, tz_offset};
use crate::AppState;
use crate::auth::Session;

/// Rows per page.
const PAGE_SIZE: u32 = 50;
/// Messages per transcript page.
const TRANSCRIPT_PAGE: u32 = 50;

/// What the base template needs.
pub(super) struct Layout {
    /// Which navigation item is current: `conversations`, `test-chat`, `assistants`.
    pub(super) nav: &'static str,
    pub(super) title: String,
    pub(super) csrf: String,
    pub(super) version: &'static str,
    pub(super) tz: i32,
    pub(super) badge: String,
    pub(super) badge_exact: String,
    pub(super) email: String,
    pub(super) initial: String,
    pub(super) role: &'static str,
    /// How many conversations need a human (the Needs attention badge; 0 hides it).
    pub(super) attention: u64,
}

impl Layout {
    /// The layout with the Needs attention count `n`.
    pub(super) fn with_attention(mut self, n: u64) -> Layout {
        self.attention = n;
        self
    }

    /// The layout of a page titled `title` under navigation item `nav`.
    pub(super) fn new(
        nav: &'static str,
        title: &str,
        session: &Session,
        tz: i32,
        total: u64,
    ) -> Layout {
        let badge = if total >= 100_000 {
            format!("{}k", total / 1000)
        } else {
            format::int(total as i64)
        };
        Layout {
            nav,
            title: title.to_owned(),
            csrf: session.csrf.clone(),
            version: asset_version(),
            tz,
            badge,
            badge_exact: format::int(total as i64),
            email: session.user.email.clone(),
            initial: session
                .user
                .email
                .chars()
                .next()
                .unwrap_or('?')
                .to_uppercase()
                .collect(),
            role: match session.user.role {
                UserRole::Admin => "Admin",
                UserRole::Member => "Member",
            },
            attention: 0,
        }
    }
}

struct Snip {
    field: &'static str,
    before: String,
    matched: String,
    after: String,
}

struct Row {
    id: String,
    href: String,
    selected: bool,
    channel: &'static str,
    channel_label: &'static str,
    agent: String,
    company: String,
    contact: String,
    session: Option<String>,
    status: &'static str,
    status_label: &'static str,
    preview: String,
    snippet: Option<Snip>,
    messages: String,
    stars: Vec<bool>,
    rating_title: String,
    date: String,
    date_iso: String,
    date_title: String,
    /// A phone call's length ("3:05"), shown under the channel badge.
    call_duration: Option<String>,
    /// The assistant asked for a human (Needs a human).
    needs_human: bool,
    /// A team member took it over (the hybrid assistant is paused).
    taken_over: bool,
}

struct Chip {
    kind: &'static str,
    value: String,
    remove: String,
}

struct Opt {
    value: String,
    label: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "conversations.html")]
struct ConversationsPage {
    layout: Layout,
    view: ViewState,
    count_label: String,
    /// How many conversations the view matches ("Select all N matching this filter").
    match_count: u64,
    /// Whether the viewer may bulk-delete (an admin).
    is_admin: bool,
    /// The workspace's members for the bulk "Assign to": (user id, name or email).
    members: Vec<(String, String)>,
    keep_for_search: Vec<(String, String)>,
    q: String,
    sort_param: String,
    status_options: Vec<Opt>,
    channel_options: Vec<Opt>,
    sentiment_options: Vec<Opt>,
    resolution_options: Vec<Opt>,
    agent_options: Vec<Opt>,
    rating_options: Vec<Opt>,
    range: &'static str,
    today_href: String,
    week_href: String,
    /// The **Calls** quick filter toggled.
    calls_href: String,
    from_value: String,
    to_value: String,
    clear_href: String,
    chips: Vec<Chip>,
    errors: Vec<String>,
    notice: Option<String>,
    load_error: Option<String>,
    filtered: bool,
    rows: Vec<Row>,
    self_href: String,
    sort_agent: String,
    sort_status: String,
    sort_messages: String,
    sort_rating: String,
    sort_date: String,
    arrow_agent: &'static str,
    arrow_status: &'static str,
    arrow_messages: &'static str,
    arrow_rating: &'static str,
    arrow_date: &'static str,
    prev_href: Option<String>,
    next_href: Option<String>,
    page_label: String,
    close_href: String,
    panel: Option<String>,
}

fn stars(score: Option<u8>) -> (Vec<bool>, String) {
    match score {
        Some(n) => ((1..=5).map(|i| i <= n).collect(), format!("{n} of 5 stars")),
        None => (Vec::new(), "Not rated".into()),
    }
}

fn row(c: &ListedConversation, view: &ViewState, tz: i32) -> Row {
    let s = &c.conversation;
    let (stars, rating_title) = stars(s.rating.as_ref().map(|r| r.score));
    let contact = s
        .contact
        .clone()
        .or_else(|| s.session_id.clone())
        .unwrap_or_else(|| "Anonymous".into());
    let session = s
        .session_id
        .clone()
        .filter(|sid| s.contact.is_some() && Some(sid) != s.contact.as_ref());
    let snippet = c.search_match.as_ref().map(|m| Snip {
        field: match m.field {
            "content" => "",
            "session_id" => "Session: ",
            "contact" => "Contact: ",
            _ => "Agent: ",
        },
        before: tail_chars(&m.snippet.before, 28),
        matched: m.snippet.matched.clone(),
        after: m.snippet.after.clone(),
    });
    Row {
        id: s.id.to_string(),
        href: view.with(|v| {
            v.open = Some(s.id);
            v.tab = Tab::Overview;
            v.tpage = 1;
            v.notice = None;
        }),
        selected: view.open == Some(s.id),
        channel: s.channel.as_str(),
        channel_label: s.channel.label(),
        agent: s.assistant.name.clone(),
        company: s.assistant.company.clone(),
        contact,
        session,
        status: s.status.as_str(),
        status_label: s.status.label(),
        preview: s.last_message_preview.clone().unwrap_or_default(),
        snippet,
        messages: format::int(s.message_count),
        stars,
        rating_title,
        date: format::datetime(s.last_message_at, tz),
        date_iso: s.last_message_at.to_rfc3339(),
        date_title: format::full(s.last_message_at, tz),
        call_duration: (s.channel == parley_core::Channel::Voip)
            .then_some(s.duration_ms)
            .flatten()
            .map(|ms| crate::api::calls::clock(ms.max(0) as u64)),
        needs_human: s.handoff.is_some(),
        taken_over: s.taken_over_at.is_some(),
    }
}

/// The last `n` characters of `text`, with a leading `…` when cut (so a table cell shows the
/// search match rather than the text long before it).
fn tail_chars(text: &str, n: usize) -> String {
    let count = text.chars().count();
    if count <= n {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - n).collect();
    format!("…{}", tail.trim_start())
}

fn chips(view: &ViewState, assistants: &[Assistant], today: &str, week_start: &str) -> Vec<Chip> {
    let base = view.first_page();
    let mut out = Vec::new();
    if !view.statuses.is_empty() {
        out.push(Chip {
            kind: "Status",
            value: view
                .statuses
                .iter()
                .map(|s| s.label())
                .collect::<Vec<_>>()
                .join(", "),
            remove: base.with(|v| v.statuses.clear()),
        });
    }
    if !view.channels.is_empty() {
        out.push(Chip {
            kind: "Channel",
            value: view
                .channels
                .iter()
                .map(|c| c.label())
                .collect::<Vec<_>>()
                .join(", "),
            remove: base.with(|v| v.channels.clear()),
        });
    }
    if !view.assistants.is_empty() {
        let names: Vec<String> = view
            .assistants
            .iter()
            .map(|id| {
                assistants
                    .iter()
                    .find(|a| a.id == *id)
                    .map_or_else(|| "Unknown agent".to_owned(), |a| format::isolate(&a.name))
            })
            .collect();
        out.push(Chip {
            kind: "Agent",
            value: names.join(", "),
            remove: base.with(|v| v.assistants.clear()),
        });
    }
    if !view.sentiments.is_empty() {
        out.push(Chip {
            kind: "Sentiment",
            value: view
                .sentiments
                .iter()
                .map(|s| s.label())
                .collect::<Vec<_>>()
                .join(", "),
            remove: base.with(|v| v.sentiments.clear()),
        });
    }
    if !view.resolutions.is_empty() {
        out.push(Chip {
            kind: "Outcome",
            value: view
                .resolutions
                .iter()
                .map(|r| r.label())
                .collect::<Vec<_>>()
                .join(", "),
            remove: base.with(|v| v.resolutions.clear()),
        });
    }
    if let Some(t) = &view.topic {
        out.push(Chip {
            kind: "Topic",
            value: t.clone(),
            remove: base.with(|v| v.topic = None),
        });
    }
    if view.calls {
        out.push(Chip {
            kind: "Calls",
            value: "Phone calls and voice".into(),
            remove: base.with(|v| v.calls = false),
        });
    }
    if let Some(r) = view.min_rating {
        let value = if r == 5 {
            "5 stars".to_owned()
        } else {
            format!("{r}+ stars")
        };
        out.push(Chip {
            kind: "Rating",
            value,
            remove: base.with(|v| v.min_rating = None),
        });
    }
    match (view.from.as_deref(), view.to.as_deref()) {
        (Some(f), None) if f == today => out.push(Chip {
            kind: "Date",
            value: "Today".into(),
            remove: base.with(|v| v.from = None),
        }),
        (Some(f), None) if f == week_start => out.push(Chip {
            kind: "Date",
            value: "Last 7 days".into(),
            remove: base.with(|v| v.from = None),
        }),
        (from, to) => {
            if let Some(f) = from {
                out.push(Chip {
                    kind: "From",
                    value: format::day_label(f),
                    remove: base.with(|v| v.from = None),
                });
            }
            if let Some(t) = to {
                out.push(Chip {
                    kind: "To",
                    value: format::day_label(t),
                    remove: base.with(|v| v.to = None),
                });
            }
        }
    }
    if view.started_from.is_some() || view.started_to.is_some() {
        let day = |d: &Option<String>| {
            d.as_deref()
                .map_or_else(|| "…".to_owned(), format::day_label)
        };
        let value = if view.started_from == view.started_to {
            day(&view.started_from)
        } else {
            format!("{} – {}", day(&view.started_from), day(&view.started_to))
        };
        out.push(Chip {
            kind: "Started",
            value,
            remove: base.with(|v| {
                v.started_from = None;
                v.started_to = None;
            }),
        });
    }
    if let Some(q) = &view.q {
        out.push(Chip {
            kind: "Search",
            value: format!("“{q}”"),
            remove: base.with(|v| v.q = None),
        });
    }
    out
}

fn count_label(count: &ConversationCount) -> String {
    let n = format::int(count.count as i64);
    let plus = if count.exact { "" } else { "+" };
    let noun = if count.count == 1 && count.exact {
        "conversation"
    } else {
        "conversations"
    };
    format!("{n}{plus} {noun}")
}

/// `GET /conversations`.
pub(super) async fn conversations(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let tz = tz_offset(&headers);
    let (view, errors) = ViewState::parse(raw.as_deref());
    let data = gather_list(&st, &session, view, errors, tz).await;
    render(list_page(&session, tz, data))
}

/// What the conversation list shows, read from the store: the page of conversations, the
/// counts, the assistants and members for the filters and the open conversation's panel.
struct ListData {
    view: ViewState,
    errors: Vec<String>,
    /// The page was read backwards (a "previous" link).
    before: bool,
    page: Result<parley_store::ConversationPage, parley_store::StoreError>,
    filtered: bool,
    count: ConversationCount,
    total: u64,
    attention: u64,
    assistants: Vec<parley_core::model::Assistant>,
    members: Vec<(String, String)>,
    panel: Option<String>,
}

/// Reads what the list page of `view` needs (the queries run together); a failed count or
/// panel degrades to the total or no panel, with the view corrected and `errors` told why.
async fn gather_list(
    st: &AppState,
    session: &Session,
    mut view: ViewState,
    mut errors: Vec<String>,
    tz: i32,
) -> ListData {
    let ws = session.user.workspace_id;
    let (sort, cursor, before) = match view.page_cursor() {
        Ok(p) => p,
        Err(e) => {
            errors.push(e);
            view.after = None;
            view.before = None;
            (view.sort, None, false)
        }
    };
    let filter = view.filter(tz, session.user.id);
    let query = ListQuery {
        filter: filter.clone(),
        sort,
        limit: PAGE_SIZE,
        cursor,
    };
    let filtered = view.is_filtered();
    let store = &st.store;
    let open_panel = async {
        match view.open {
            Some(id) => build_panel(st, session, &view, id, tz).await.map(Some),
            None => Ok(None),
        }
    };
    let count = async {
        if filtered {
            store.conversations().count_conversations(ws, &filter).await
        } else {
            Ok(ConversationCount {
                count: 0,
                exact: true,
            })
        }
    };
    let attention_filter = parley_core::query::ConversationFilter {
        needs_human: true,
        ..Default::default()
    };
    let (page, count, total, assistants, panel, attention) = tokio::join!(
        store.conversations().list_conversations(ws, &query),
        count,
        store.conversations().conversation_total(ws),
        store.assistants().list_assistants(ws),
        open_panel,
        store
            .conversations()
            .count_conversations(ws, &attention_filter)
    );
    let total = total.unwrap_or(0);
    let attention = attention.map(|c| c.count).unwrap_or(0);
    let count = match count {
        Ok(c) if filtered => c,
        _ => ConversationCount {
            count: total,
            exact: true,
        },
    };
    let assistants = assistants.unwrap_or_default();
    let panel = match panel {
        Ok(p) => p.flatten(),
        Err(e) => {
            tracing::error!(error = %e, "panel failed");
            None
        }
    };
    if view.open.is_some() && panel.is_none() {
        errors.push("that conversation no longer exists".into());
        view.open = None;
    }

    let members: Vec<(String, String)> = st
        .store
        .auth()
        .list_users(ws)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            let name = if u.name.trim().is_empty() {
                u.email.clone()
            } else {
                u.name.clone()
            };
            (u.id.to_string(), name)
        })
        .collect();
    ListData {
        view,
        errors,
        before,
        page,
        filtered,
        count,
        total,
        attention,
        assistants,
        members,
        panel,
    }
}

/// The rows of the list and its previous / next links (keyset cursors from the first and last
/// row), or the error text when the page could not be read.
fn list_rows(
    page: Result<parley_store::ConversationPage, parley_store::StoreError>,
    before: bool,
    view: &ViewState,
    tz: i32,
) -> (Vec<Row>, Option<String>, Option<String>, Option<String>) {
    let (mut rows, mut load_error, mut prev_href, mut next_href) = (Vec::new(), None, None, None);
    match page {
        Ok(page) => {
            let mut items = page.items;
            let has_more = page.next_cursor.is_some();
            if before {
                items.reverse();
            }
            let first = items.first().map(|i| i.conversation.clone());
            let last = items.last().map(|i| i.conversation.clone());
            let more_after = if before { true } else { has_more };
            let more_before = if before {
                has_more
            } else {
                view.after.is_some()
            };
            let base = ViewState {
                open: None,
                tab: Tab::Overview,
                tpage: 1,
                notice: None,
                ..view.clone()
            };
            if more_after {
                next_href = last.as_ref().map(|l: &ConversationSummary| {
                    base.with(|v| {
                        v.before = None;
                        v.after = Some(Cursor::after(view.sort, l).encode());
                    })
                });
            }
            if more_before {
                prev_href = first.as_ref().map(|f| {
                    base.with(|v| {
                        v.after = None;
                        v.before = Some(Cursor::after(view.sort.reversed(), f).encode());
                    })
                });
            }
            rows = items.iter().map(|c| row(c, view, tz)).collect();
        }
        Err(e) => {
            tracing::error!(error = %e, "listing conversations failed");
            load_error =
                Some("The database did not answer. The server log has details.".to_owned());
        }
    }
    (rows, load_error, prev_href, next_href)
}

/// The filter bar's choices, each checked as `view` has it.
struct FilterOptions {
    status: Vec<Opt>,
    channel: Vec<Opt>,
    sentiment: Vec<Opt>,
    resolution: Vec<Opt>,
    agent: Vec<Opt>,
    rating: Vec<Opt>,
}

fn filter_options(view: &ViewState, assistants: &[parley_core::model::Assistant]) -> FilterOptions {
    let opt = |value: String, label: String, checked: bool| Opt {
        value,
        label,
        checked,
    };
    let status_options = ConversationStatus::ALL
        .iter()
        .map(|s| opt(s.to_string(), s.label().into(), view.statuses.contains(s)))
        .collect();
    let channel_options = Channel::ALL
        .iter()
        .map(|c| opt(c.to_string(), c.label().into(), view.channels.contains(c)))
        .collect();
    let sentiment_options = parley_core::SentimentFilter::ALL
        .iter()
        .map(|s| opt(s.to_string(), s.label().into(), view.sentiments.contains(s)))
        .collect();
    let resolution_options = parley_core::Resolution::ALL
        .iter()
        .map(|r| {
            opt(
                r.to_string(),
                r.label().into(),
                view.resolutions.contains(r),
            )
        })
        .collect();
    let agent_options = assistants
        .iter()
        .map(|a| {
            let label = if a.company.is_empty() {
                a.name.clone()
            } else {
                format!(
                    "{} · {}",
                    format::isolate(&a.name),
                    format::isolate(&a.company)
                )
            };
            opt(a.id.to_string(), label, view.assistants.contains(&a.id))
        })
        .collect();
    let mut rating_options = vec![opt(String::new(), "Any".into(), view.min_rating.is_none())];
    rating_options.extend((1..=5u8).map(|r| {
        let label = if r == 5 {
            "5 stars".to_owned()
        } else {
            format!("{r}+")
        };
        opt(r.to_string(), label, view.min_rating == Some(r))
    }));
    FilterOptions {
        status: status_options,
        channel: channel_options,
        sentiment: sentiment_options,
        resolution: resolution_options,
        agent: agent_options,
        rating: rating_options,
    }
}

/// The conversation list page for `data` (pure: no I/O).
fn list_page(session: &Session, tz: i32, data: ListData) -> ConversationsPage {
    let ListData {
        view,
        errors,
        before,
        page,
        filtered,
        count,
        total,
        attention,
        assistants,
        members,
        panel,
    } = data;
    let today_day = format::date_iso(Timestamp::now(), tz);
    let week_day = format::date_iso(Timestamp::now().add_millis(-6 * 86_400_000), tz);
    let (rows, load_error, prev_href, next_href) = list_rows(page, before, &view, tz);
    let page_label = if rows.is_empty() {
        String::new()
    } else {
        format!("{} shown", rows.len())
    };
    let options = filter_options(&view, &assistants);
    let range = match (view.from.as_deref(), view.to.as_deref()) {
        (Some(f), None) if f == today_day => "today",
        (Some(f), None) if f == week_day => "7d",
        (None, None) => "",
        _ => "custom",
    };
    let first = view.first_page();
    let keep_for_search: Vec<(String, String)> = {
        let mut k = first.clone();
        k.q = None;
        form_urlencoded::parse(k.query().as_bytes())
            .map(|(a, b)| (a.into_owned(), b.into_owned()))
            .collect()
    };
    let notice = match view.notice.as_deref() {
        Some("deleted") => Some("The conversation was deleted.".to_owned()),
        Some("rating_removed") => Some("The rating was removed.".to_owned()),
        Some("contact_erased") => Some(
            "Everything about the contact was deleted: their conversations, variables, visits and files."
                .to_owned(),
        ),
        _ => None,
    };
    ConversationsPage {
        layout: Layout::new("conversations", "Conversations", session, tz, total)
            .with_attention(attention),
        count_label: count_label(&count),
        match_count: count.count,
        is_admin: session.user.role == parley_core::UserRole::Admin,
        members,
        keep_for_search,
        q: view.q.clone().unwrap_or_default(),
        sort_param: if view.sort == Default::default() {
            String::new()
        } else {
            view.sort.to_string()
        },
        status_options: options.status,
        channel_options: options.channel,
        sentiment_options: options.sentiment,
        resolution_options: options.resolution,
        agent_options: options.agent,
        rating_options: options.rating,
        range,
        today_href: first.with(|v| {
            v.from = Some(today_day.clone());
            v.to = None;
        }),
        week_href: first.with(|v| {
            v.from = Some(week_day.clone());
            v.to = None;
        }),
        calls_href: first.with(|v| v.calls = !v.calls),
        from_value: view.from.clone().unwrap_or_default(),
        to_value: view.to.clone().unwrap_or_default(),
        clear_href: ViewState {
            sort: view.sort,
            tpage: 1,
            ..Default::default()
        }
        .href(),
        chips: chips(&view, &assistants, &today_day, &week_day),
        errors,
        notice,
        load_error,
        filtered,
        rows,
        self_href: view.with(|v| v.notice = None),
        sort_agent: view.sort_href(SortKey::Assistant),
        sort_status: view.sort_href(SortKey::Status),
        sort_messages: view.sort_href(SortKey::Messages),
        sort_rating: view.sort_href(SortKey::Rating),
        sort_date: view.sort_href(SortKey::Date),
        arrow_agent: view.sort_arrow(SortKey::Assistant),
        arrow_status: view.sort_arrow(SortKey::Status),
        arrow_messages: view.sort_arrow(SortKey::Messages),
        arrow_rating: view.sort_arrow(SortKey::Rating),
        arrow_date: view.sort_arrow(SortKey::Date),
        prev_href,
        next_href,
        page_label,
        close_href: view.with(|v| {
            v.open = None;
            v.notice = None;
        }),
        panel,
        view,
    }
}

fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError(crate::error::ApiError::internal(e)).into_response(),
    }
}

/// One message as a chat bubble (`bubble.html`).
pub(super) struct Bubble {
    pub(super) id: String,
    pub(super) side: &'static str,
    pub(super) role: &'static str,
    pub(super) who: String,
    pub(super) markdown: bool,
    pub(super) html: String,
    pub(super) text: String,
    pub(super) time: String,
    pub(super) iso: String,
    pub(super) title: String,
    pub(super) tokens: Option<String>,
    /// Why the assistant could not answer (the message's `meta.error`), for the team.
    pub(super) error: Option<String>,
    /// The tokens were counted by Parley, not reported by the provider.
    pub(super) estimated: bool,
    /// Files that came with a channel message (`meta.channel.attachments`).
    pub(super) attachments: Vec<BubbleAttachment>,
    /// A channel message's delivery status ("Delivered", "Read", "Failed: ...").
    pub(super) delivery: Option<String>,
    /// The customer later edited or deleted this message on the channel.
    pub(super) note: Option<&'static str>,
    /// A phone call's transcript turn: (start, end) in ms into the call's recording.
    pub(super) offset: Option<(u64, u64)>,
}

/// A file shown in a transcript bubble.
pub(super) struct BubbleAttachment {
    /// How to show it: `image`, `audio`, `video` (inline), or `file` (a download link).
    pub(super) kind: &'static str,
    /// The dashboard URL of the stored bytes; empty when the file is not stored.
    pub(super) url: String,
    /// What to call it: the file name, else "Voice note", "Image"...
    pub(super) label: String,
    /// What a voice note says, when it was transcribed.
    pub(super) transcript: Option<String>,
    /// What an image shows, when a vision model described it.
    pub(super) description: Option<String>,
    /// Why the file could not be downloaded from the platform.
    pub(super) error: Option<String>,
    /// When the retention policy removed the file (`YYYY-MM-DD`, UTC).
    pub(super) removed: Option<String>,
}

/// The bubble parts of a channel message's metadata, for message `m` of `conversation`.
fn channel_parts(
    conversation: ConversationId,
    m: &Message,
) -> (Vec<BubbleAttachment>, Option<String>, Option<&'static str>) {
    let Some(c) = &m.meta.channel else {
        return (Vec::new(), None, None);
    };
    let attachments = c
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mime = a.mime_type.as_deref().unwrap_or_default();
            let inline = crate::channels::media::inline_safe(mime);
            let kind = match a.kind.as_str() {
                "image" | "sticker" if inline => "image",
                "audio" | "voice" | "recording" | "speech" if inline => "audio",
                "video" if inline => "video",
                _ => "file",
            };
            let label = a.file_name.clone().unwrap_or_else(|| {
                match a.kind.as_str() {
                    "voice" => "Voice note",
                    "audio" => "Audio",
                    "recording" => "Call recording",
                    "speech" => "Spoken answer",
                    "image" => "Image",
                    "sticker" => "Sticker",
                    "video" => "Video",
                    _ => "Document",
                }
                .to_owned()
            });
            BubbleAttachment {
                kind,
                url: if a.storage_key.is_some() {
                    format!(
                        "/conversations/{conversation}/messages/{}/attachments/{i}",
                        m.id
                    )
                } else {
                    String::new()
                },
                label,
                transcript: a.transcript.clone(),
                description: a.description.clone(),
                error: a.download_error.clone(),
                removed: a
                    .removed_at
                    .map(|t| t.to_string().chars().take(10).collect()),
            }
        })
        .collect();
    let delivery = c.delivery.as_ref().map(|d| {
        use parley_core::channel::DeliveryStatus as S;
        let status = match d.status {
            S::Accepted => "Accepted",
            S::Sent => "Sent",
            S::Failed => "Failed",
            S::Delivered => "Delivered",
            S::Read => "Read",
            S::Played => "Played",
        };
        match d.errors.first() {
            Some(e) if d.status == S::Failed => match &e.message {
                Some(why) => format!("Not delivered: {} ({}): {why}", e.title, e.code),
                None => format!("Not delivered: {} ({})", e.title, e.code),
            },
            _ => status.to_owned(),
        }
    });
    // A team reply the background send has not handled yet.
    let delivery = delivery.or_else(|| (m.role == Role::Agent).then(|| "Sending…".to_owned()));
    let note = if c.deleted {
        Some("deleted by the customer")
    } else if c.edited_by.is_some() {
        Some("edited by the customer")
    } else {
        None
    };
    (attachments, delivery, note)
}

#[derive(Template)]
#[template(path = "transcript.html")]
struct TranscriptFragment {
    messages: Vec<Bubble>,
    older_href: Option<String>,
    older_fragment: String,
}

/// A channel message's text without the lines Parley wrote for its attachments (the
/// `[image]` placeholder, the `🎤 transcript` and `🖼 description` lines that make them
/// searchable), which the bubble shows beside the file instead.
fn without_attachment_lines(content: &str, attachments: &[BubbleAttachment]) -> String {
    let derived: Vec<String> = attachments
        .iter()
        .flat_map(|a| {
            let t = a.transcript.as_ref().map(|t| format!("🎤 {t}"));
            let d = a.description.as_ref().map(|d| format!("🖼 {d}"));
            t.into_iter().chain(d)
        })
        .collect();
    content
        .lines()
        .filter(|l| {
            let l = l.trim();
            !(derived.iter().any(|d| d == l) || (l.starts_with('[') && l.ends_with(']')))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Stored message `m` of `conversation` as a bubble, in the viewer's UTC offset `tz` (minutes).
pub(super) fn bubble(conversation: ConversationId, m: &Message, tz: i32) -> Bubble {
    let (attachments, delivery, note) = channel_parts(conversation, m);
    let markdown = matches!(m.role, Role::Assistant | Role::Agent);
    let who = match m.role {
        Role::User => "Customer".to_owned(),
        Role::Assistant => m.model.as_ref().map_or_else(
            || "Assistant".to_owned(),
            |model| format!("Assistant · {}", format::isolate(model)),
        ),
        Role::Agent => match &m.meta.author {
            Some(a) => format!("Team member · {}", format::isolate(&a.name)),
            None => "Team member".to_owned(),
        },
        Role::System => "System".to_owned(),
        Role::Tool => "Tool".to_owned(),
    };
    Bubble {
        id: m.id.to_string(),
        side: if m.role == Role::User {
            "left"
        } else {
            "right"
        },
        role: m.role.as_str(),
        who,
        markdown,
        html: if markdown {
            parley_core::markdown::to_safe_html(&m.content)
        } else {
            String::new()
        },
        text: if markdown {
            String::new()
        } else if attachments.is_empty() {
            m.content.clone()
        } else {
            without_attachment_lines(&m.content, &attachments)
        },
        time: format::clock(m.created_at, tz),
        iso: m.created_at.to_rfc3339(),
        title: format::full(m.created_at, tz),
        tokens: m.usage.map(|u| {
            format!(
                "{} + {} tokens",
                format::int(u.prompt_tokens),
                format::int(u.completion_tokens)
            )
        }),
        error: m
            .meta
            .error
            .as_ref()
            .map(|e| format!("Not answered ({}): {}", e.code, e.message)),
        estimated: m.meta.usage_estimated,
        attachments,
        delivery,
        note,
        offset: turn_offset(m),
    }
}

/// A call transcript turn's offsets (`meta.channel` of type `transcript`, `details.start_ms`
/// and `details.end_ms`), for the call player's highlight.
fn turn_offset(m: &Message) -> Option<(u64, u64)> {
    let c = m.meta.channel.as_ref().filter(|c| c.kind == "transcript")?;
    let d = c.details.as_ref()?;
    Some((d["start_ms"].as_u64()?, d["end_ms"].as_u64()?))
}

/// Renders transcript pages `1..=through` (newest first in storage, shown oldest first).
fn transcript_html(
    id: ConversationId,
    page: &MessagePage,
    view: &ViewState,
    shown_pages: u32,
    tz: i32,
) -> String {
    let messages: Vec<Bubble> = page.items.iter().rev().map(|m| bubble(id, m, tz)).collect();
    let more = (shown_pages as i64) < page.total_pages;
    let fragment = TranscriptFragment {
        messages,
        older_href: more.then(|| {
            view.with(|v| {
                v.tab = Tab::Transcript;
                v.tpage = shown_pages + 1;
                v.notice = None;
            })
        }),
        older_fragment: format!("/conversations/{id}/transcript?page={}", shown_pages + 1),
    };
    fragment.render().unwrap_or_default()
}

#[derive(Template)]
#[template(path = "panel.html")]
struct Panel {
    id: String,
    csrf: String,
    channel: &'static str,
    channel_label: &'static str,
    agent: String,
    company: String,
    contact: String,
    rated: bool,
    can_delete: bool,
    /// Admins, on a conversation with a contact: "Delete everything about this contact".
    can_erase: bool,
    self_href: String,
    close_href: String,
    started: String,
    started_iso: String,
    started_title: String,
    last_title: String,
    has_voice: bool,
    /// WhatsApp's 24-hour customer-service window, or Messenger's standard messaging window:
    /// (open, "until ..."/"since ..." text).
    window: Option<(bool, String)>,
    /// What the window means on this channel (the window line's tooltip).
    window_note: &'static str,
    duration: String,
    messages: String,
    stored_messages: String,
    tokens: String,
    tokens_split: String,
    cost: String,
    unpriced: i64,
    stars: Vec<bool>,
    rating_title: String,
    rating_comment: Option<String>,
    tab: &'static str,
    tab_overview: String,
    tab_transcript: String,
    tab_client: String,
    status: &'static str,
    status_label: &'static str,
    ended_how: String,
    sentiment: String,
    /// Where the sentiment came from and how it moved, e.g. "computed · Worsened over the
    /// conversation"; empty when not analysed.
    sentiment_detail: String,
    /// The resolution outcome's label, or "Not analyzed yet".
    outcome: String,
    /// First response time, "No answer", or "Not analyzed yet".
    first_response: String,
    /// The topic's key and its Conversations list; `None` when in none.
    topic: Option<(String, String)>,
    /// The key phrases, best first; "Not analyzed yet" / "None" when there are none.
    key_phrases: Vec<String>,
    /// What the panel says instead of key phrases and topic when there are none.
    phrases_note: &'static str,
    session: String,
    converted: &'static str,
    external_id: String,
    preview: Option<String>,
    transcript: String,
    memory: Vec<(String, String, bool)>,
    variables: Vec<VarRow>,
    /// The web widget visitor's website session, when the tracker recorded one.
    website: Option<super::client_data::WebsiteSession>,
    /// The team's controls (issue 14).
    team: TeamBar,
}

/// The panel's team controls: take over / hand back, Needs a human, status, assignment, and
/// what the composer offers.
#[derive(Default)]
pub(super) struct TeamBar {
    /// The assistant is hybrid (take over / hand back apply).
    hybrid: bool,
    /// A team member has taken over (the assistant is paused).
    taken_over: bool,
    /// The assistant's hand-off reason while it "Needs a human".
    handoff: Option<String>,
    /// The conversation is active (replies allowed; Close and Archive offered).
    active: bool,
    /// WhatsApp outside the 24-hour window: only templates can go.
    templates_only: bool,
    /// A Messenger conversation: the composer offers message tags.
    messenger: bool,
    /// Messenger outside the 24-hour window: only a tagged message can go.
    tag_required: bool,
    /// The message tags the composer offers (wire name, label).
    message_tags: Vec<(&'static str, &'static str)>,
    /// The workspace's members: (id, email, assigned).
    members: Vec<(String, String, bool)>,
}

struct VarRow {
    key: String,
    value: String,
    source: &'static str,
    source_label: &'static str,
}

/// Renders the panel of conversation `id`; `None` if it is not in the user's workspace.
async fn build_panel(
    st: &AppState,
    session: &Session,
    view: &ViewState,
    id: ConversationId,
    tz: i32,
) -> Result<Option<String>, parley_store::StoreError> {
    let ws = session.user.workspace_id;
    let shown = view.tpage.max(1);
    let tq = TranscriptQuery {
        page: 1,
        per_page: TRANSCRIPT_PAGE * shown,
        newest_first: true,
        include_hidden: false,
    };
    let (detail, messages, tracker, insight) = tokio::try_join!(
        st.store.conversations().get_conversation(ws, id),
        st.store.conversations().list_messages(ws, id, &tq),
        st.store.widgets().tracker_for_conversation(ws, id),
        st.store.insights().insight(ws, id)
    )?;
    let (Some(d), Some(mut messages)) = (detail, messages) else {
        return Ok(None);
    };
    // Express the page count in pages of TRANSCRIPT_PAGE, whatever was fetched.
    messages.total_pages = (messages.total + TRANSCRIPT_PAGE as i64 - 1) / TRANSCRIPT_PAGE as i64;
    let transcript = transcript_html(id, &messages, view, shown, tz);
    let website = tracker
        .as_ref()
        .map(|t| super::client_data::website_session(t, tz));
    let call_player = if d.summary.channel == parley_core::Channel::Voip {
        call_recording(st, ws, id).await?
    } else {
        None
    };
    let insight = insight.map(|i| i.insight);
    let (assistant, members) = tokio::try_join!(
        st.store
            .assistants()
            .get_assistant(ws, d.summary.assistant.id),
        st.store.auth().list_users(ws)
    )?;
    let s = &d.summary;
    let team = TeamBar {
        hybrid: assistant.is_some_and(|a| a.mode == parley_core::AssistantMode::Hybrid),
        taken_over: s.taken_over_at.is_some(),
        handoff: s.handoff.as_ref().map(|h| h.reason.clone()),
        active: s.status == ConversationStatus::Active,
        templates_only: s.channel == parley_core::Channel::Whatsapp
            && s.external_id.is_some()
            && !crate::channels::whatsapp::window_open(d.last_inbound_at, Timestamp::now()),
        messenger: s.channel == parley_core::Channel::Messenger && s.external_id.is_some(),
        tag_required: s.channel == parley_core::Channel::Messenger
            && crate::channels::messenger::may_send(d.last_inbound_at, Timestamp::now(), None)
                .is_err(),
        message_tags: if s.channel == parley_core::Channel::Messenger {
            crate::channels::messenger::MessageTag::ALL
                .iter()
                .map(|t| (t.as_str(), message_tag_label(*t)))
                .collect()
        } else {
            Vec::new()
        },
        members: members
            .into_iter()
            .map(|u| {
                let on = s.assignee_id == Some(u.id);
                (u.id.to_string(), u.email, on)
            })
            .collect(),
    };
    let mut html = panel_html(
        &d,
        insight.as_ref(),
        session,
        view,
        (transcript, team),
        website,
        tz,
    );
    if let Some(player) = call_player {
        html = html.replacen(CALL_PLAYER_SLOT, &player, 1);
    }
    Ok(Some(html))
}

/// Where the call player goes in `panel.html` (an HTML comment, left as is for other
/// conversations).
const CALL_PLAYER_SLOT: &str = "<!-- call-player -->";

/// The call player's HTML for a call's stored recording (the attachment of its `call`
/// message, a hidden system message among the first of the conversation), or the note that
/// the retention policy removed it; `None` without a recording.
async fn call_recording(
    st: &AppState,
    ws: parley_core::WorkspaceId,
    id: ConversationId,
) -> Result<Option<String>, parley_store::StoreError> {
    let call = crate::api::calls::call_message(st, ws, id).await?;
    Ok(call.and_then(|m| {
        let a = m.meta.channel.as_ref()?.attachments.first()?;
        if a.storage_key.is_none() {
            // The date is digits and dashes only: nothing to escape.
            let day: String = a.removed_at?.to_string().chars().take(10).collect();
            return Some(format!(
                "<div class=\"att-missing att-removed\" id=\"recording-removed\">Call recording — removed by the retention policy on {day}</div>"
            ));
        }
        let src = format!("/conversations/{id}/messages/{}/attachments/0", m.id);
        Some(format!(
            "<div class=\"player call-player\" data-src=\"{src}\" data-peaks=\"{src}/peaks\" data-label=\"Call recording\"></div>"
        ))
    }))
}

fn panel_html(
    d: &ConversationDetail,
    insight: Option<&parley_core::insights::ConversationInsight>,
    session: &Session,
    view: &ViewState,
    (transcript, team): (String, TeamBar),
    website: Option<super::client_data::WebsiteSession>,
    tz: i32,
) -> String {
    let s = &d.summary;
    let (stars, rating_title) = stars(s.rating.as_ref().map(|r| r.score));
    let tab_href = |t: Tab| {
        view.with(|v| {
            v.open = Some(s.id);
            v.tab = t;
            v.notice = None;
        })
    };
    let memory = d
        .memory
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(text) => (k.clone(), text.clone(), true),
            other => (
                k.clone(),
                serde_json::to_string_pretty(other).unwrap_or_default(),
                false,
            ),
        })
        .collect();
    let ended_how = match (&s.end_reason, s.status) {
        (Some(r), _) => r.replace('_', " "),
        (None, ConversationStatus::Active) => "Still ongoing".into(),
        (None, _) => "Completed".into(),
    };
    // The client's sentiment wins; else the computed one (issue 13).
    let shown_sentiment = s
        .sentiment
        .as_ref()
        .or_else(|| insight.and_then(|i| i.sentiment.as_ref()));
    let sentiment = match shown_sentiment {
        Some(x) => match x.score {
            Some(score) => format!("{} ({score:+.2})", capitalise(x.label.as_str())),
            None => capitalise(x.label.as_str()),
        },
        None if insight.is_some() => "Not analyzed (language not supported)".into(),
        None => "Not analyzed".into(),
    };
    let sentiment_detail = {
        let source = if s.sentiment.is_some() {
            Some("sent by the client")
        } else if shown_sentiment.is_some() {
            Some("computed")
        } else {
            None
        };
        let shift = insight
            .and_then(|i| i.sentiment_shift)
            .map(|x| format!("{} over the conversation", capitalise(x.as_str())));
        [source.map(str::to_owned), shift]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let outcome = insight.map_or_else(
        || "Not analyzed yet".to_owned(),
        |i| i.resolution.label().to_owned(),
    );
    let first_response = match insight {
        None => "Not analyzed yet".to_owned(),
        Some(i) => i
            .first_response_ms
            .map_or_else(|| "No answer".to_owned(), format::duration),
    };
    let topic = insight.and_then(|i| i.topic.clone()).map(|key| {
        let href = ViewState {
            topic: Some(key.clone()),
            tpage: 1,
            ..Default::default()
        }
        .href();
        (key, href)
    });
    Panel {
        topic,
        key_phrases: insight.map(|i| i.key_phrases.clone()).unwrap_or_default(),
        phrases_note: if insight.is_some() {
            "None"
        } else {
            "Not analyzed yet"
        },
        id: s.id.to_string(),
        csrf: session.csrf.clone(),
        channel: s.channel.as_str(),
        channel_label: s.channel.label(),
        agent: s.assistant.name.clone(),
        company: s.assistant.company.clone(),
        contact: s.contact.clone().unwrap_or_else(|| "Anonymous".into()),
        rated: s.rating.is_some(),
        can_delete: session.user.role == UserRole::Admin,
        can_erase: session.user.role == UserRole::Admin
            && s.contact.as_deref().is_some_and(|c| !c.is_empty()),
        self_href: view.with(|v| v.notice = None),
        close_href: view.with(|v| {
            v.open = None;
            v.notice = None;
        }),
        started: format::datetime(s.started_at, tz),
        started_iso: s.started_at.to_rfc3339(),
        started_title: format::full(s.started_at, tz),
        last_title: format::full(s.last_message_at, tz),
        has_voice: d.has_voice,
        window: matches!(
            s.channel,
            parley_core::Channel::Whatsapp | parley_core::Channel::Messenger
        )
        .then(|| crate::channels::whatsapp::window_closes_at(d.last_inbound_at))
        .flatten()
        .map(|end| {
            let open = Timestamp::now() < end;
            let when = format::datetime(end, tz);
            let only = if s.channel == parley_core::Channel::Messenger {
                "message tags only"
            } else {
                "templates only"
            };
            if open {
                (true, format!("Open until {when}"))
            } else {
                (false, format!("Closed since {when}: {only}"))
            }
        }),
        window_note: if s.channel == parley_core::Channel::Messenger {
            "Messenger lets a Page answer freely for 24 hours after the customer's last message; after that only with a message tag"
        } else {
            "WhatsApp lets a business answer freely for 24 hours after the customer's last message; after that only approved templates"
        },
        duration: s
            .duration_ms
            .or_else(|| insight.and_then(|i| i.duration_ms))
            .map_or_else(|| "Ongoing".into(), format::duration),
        messages: format::int(s.message_count),
        stored_messages: format::int(d.stored_message_count),
        tokens: format::int(s.usage.total_tokens),
        tokens_split: format!(
            "Prompt {} + completion {} tokens",
            format::int(s.usage.prompt_tokens),
            format::int(s.usage.completion_tokens)
        ),
        cost: format::cost(s.cost_nanousd),
        unpriced: d.unpriced_message_count,
        stars,
        rating_title,
        rating_comment: s.rating.as_ref().and_then(|r| r.comment.clone()),
        tab: view.tab.as_str(),
        tab_overview: tab_href(Tab::Overview),
        tab_transcript: tab_href(Tab::Transcript),
        tab_client: tab_href(Tab::Client),
        status: s.status.as_str(),
        status_label: s.status.label(),
        ended_how,
        sentiment,
        sentiment_detail,
        outcome,
        first_response,
        session: s.session_id.clone().unwrap_or_else(|| "—".into()),
        converted: match s.converted {
            Some(true) => "Yes",
            Some(false) => "No",
            None => "Unknown",
        },
        external_id: s.external_id.clone().unwrap_or_else(|| "—".into()),
        preview: s.last_message_preview.clone(),
        transcript,
        memory,
        variables: d
            .variables
            .iter()
            .map(|v| VarRow {
                key: v.key.clone(),
                value: v.value.clone(),
                source: v.source.as_str(),
                source_label: v.source.label(),
            })
            .collect(),
        website,
        team,
    }
    .render()
    .unwrap_or_default()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn parse_id(id: &str) -> Option<ConversationId> {
    id.parse().ok()
}

/// `GET /conversations/{id}/panel?<view state>`: the panel alone, for the script.
pub(super) async fn panel(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such conversation.");
    };
    let tz = tz_offset(&headers);
    let (mut view, _) = ViewState::parse(raw.as_deref());
    view.open = Some(id);
    match build_panel(&st, &session, &view, id, tz).await {
        Ok(Some(html)) => Html(html).into_response(),
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This conversation does not exist (any more).",
        ),
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}

/// `?page=` of the transcript fragment.
#[derive(Deserialize)]
pub(super) struct PageParam {
    page: Option<u32>,
}

/// `GET /conversations/{id}/transcript?page=N`: one older page, for "Load older messages".
pub(super) async fn transcript(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<PageParam>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such conversation.");
    };
    let tz = tz_offset(&headers);
    let page = p.page.unwrap_or(1).clamp(1, 1_000_000);
    let q = TranscriptQuery {
        page,
        per_page: TRANSCRIPT_PAGE,
        newest_first: true,
        include_hidden: false,
    };
    match st
        .store
        .conversations()
        .list_messages(session.user.workspace_id, id, &q)
        .await
    {
        Ok(Some(messages)) => {
            let view = ViewState {
                open: Some(id),
                tab: Tab::Transcript,
                tpage: page,
                ..Default::default()
            };
            Html(transcript_html(id, &messages, &view, page, tz)).into_response()
        }
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This conversation does not exist (any more).",
        ),
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}

/// A dashboard action form: the CSRF token and where to go afterwards.
#[derive(Deserialize)]
pub(super) struct ActionForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    back: String,
}

/// Where to return after an action: a `/conversations` URL, with a notice.
fn back_to(back: &str, notice: &str) -> String {
    let query = back
        .strip_prefix("/conversations")
        .filter(|r| r.is_empty() || r.starts_with('?'));
    let (mut view, _) = ViewState::parse(query.map(|q| q.trim_start_matches('?')));
    view.notice = Some(notice.to_owned());
    view.href()
}

/// `POST /conversations/{id}/rating/delete`.
pub(super) async fn remove_rating(
    State(st): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !session.csrf_ok(Some(&form.csrf)) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "Reload the page and try again.",
        );
    }
    let Some(id) = parse_id(&id) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such conversation.");
    };
    let patch = ConversationPatch {
        rating: Some(None),
        ..Default::default()
    };
    match st
        .store
        .conversations()
        .update_conversation(session.user.workspace_id, id, &patch)
        .await
    {
        Ok(Some(_)) => Redirect::to(&back_to(&form.back, "rating_removed")).into_response(),
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This conversation does not exist (any more).",
        ),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// `POST /conversations/{id}/erase-contact` (admins only): deletes everything about the
/// conversation's contact (every conversation with the same contact; see
/// [`crate::retention::erase_contact`]), then back to the list with a notice.
pub(super) async fn erase_contact(
    State(st): State<AppState>,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<ActionForm>,
) -> Response {
    let ws = session.user.workspace_id;
    let not_found = || {
        error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This conversation does not exist (any more).",
        )
    };
    let Some(id) = parse_id(&id) else {
        return not_found();
    };
    let contact = match st.store.conversations().get_conversation(ws, id).await {
        Ok(Some(d)) => d.summary.contact.filter(|c| !c.is_empty()),
        Ok(None) => return not_found(),
        Err(e) => return PageError::from(e).into_response(),
    };
    let Some(contact) = contact else {
        return error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "No contact",
            "This conversation has no contact to erase; delete the conversation instead.",
        );
    };
    let actor = crate::retention::user_actor(session.user.id);
    match crate::retention::erase_contact(
        &st,
        ws,
        &parley_store::ContactMatch::Contact(contact),
        &actor,
        "dashboard",
    )
    .await
    {
        Ok(done) => {
            tracing::info!(user = %session.user.email, conversations = done.conversations, "erased a contact");
            Redirect::to(&back_to(&form.back, "contact_erased")).into_response()
        }
        Err(e) => PageError::from(e).into_response(),
    }
}

/// `POST /conversations/{id}/delete` (admins only).
pub(super) async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
    AdminForm { session, form }: AdminForm<ActionForm>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "No such conversation.");
    };
    match crate::channels::media::delete_conversation(&st, session.user.workspace_id, id).await {
        Ok(true) => {
            tracing::info!(user = %session.user.email, conversation = %id, "deleted a conversation");
            Redirect::to(&back_to(&form.back, "deleted")).into_response()
        }
        Ok(false) => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This conversation does not exist (any more).",
        ),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// The composer's label of a Messenger message tag.
fn message_tag_label(t: crate::channels::messenger::MessageTag) -> &'static str {
    use crate::channels::messenger::MessageTag;
    match t {
        MessageTag::HumanAgent => "Human agent (up to 7 days)",
        MessageTag::AccountUpdate => "Account update",
        MessageTag::ConfirmedEventUpdate => "Confirmed event update",
        MessageTag::PostPurchaseUpdate => "Post-purchase update",
    }
}
