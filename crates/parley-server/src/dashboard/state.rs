//! The Conversations view's state, which lives entirely in the URL (DESIGN.md section 6):
//! filters, search, sort, page cursor, the open conversation and its tab. A view can be shared
//! as a link and the back button works. Parsing is lenient: an invalid value is dropped and
//! reported on the page instead of failing the whole page.

use parley_core::query::{AssigneeFilter, ConversationFilter, Cursor, Sort, SortKey};
use parley_core::{
    AssistantId, Channel, ConversationId, ConversationStatus, Resolution, SentimentFilter,
    Timestamp,
};

/// The open conversation's tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    /// Status, end, sentiment, session.
    #[default]
    Overview,
    /// The chat bubbles.
    Transcript,
    /// Variables, memory, tracker data.
    Client,
}

impl Tab {
    /// URL name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tab::Overview => "overview",
            Tab::Transcript => "transcript",
            Tab::Client => "client",
        }
    }

    fn parse(s: &str) -> Option<Tab> {
        match s {
            "overview" => Some(Tab::Overview),
            "transcript" => Some(Tab::Transcript),
            "client" => Some(Tab::Client),
            _ => None,
        }
    }
}

/// The team's views of the list (`view=`): Needs attention, Mine, Unassigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbox {
    /// Conversations that need a human (the assistant called `hand_off`).
    Attention,
    /// Conversations assigned to the signed-in member.
    Mine,
    /// Conversations assigned to nobody.
    Unassigned,
}

impl Inbox {
    /// URL name.
    pub fn as_str(self) -> &'static str {
        match self {
            Inbox::Attention => "attention",
            Inbox::Mine => "mine",
            Inbox::Unassigned => "unassigned",
        }
    }

    /// The view's heading.
    pub fn label(self) -> &'static str {
        match self {
            Inbox::Attention => "Needs attention",
            Inbox::Mine => "Mine",
            Inbox::Unassigned => "Unassigned",
        }
    }

    fn parse(s: &str) -> Option<Inbox> {
        [Inbox::Attention, Inbox::Mine, Inbox::Unassigned]
            .into_iter()
            .find(|i| i.as_str() == s)
    }
}

/// Everything the URL says about the view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewState {
    /// Status filter.
    pub statuses: Vec<ConversationStatus>,
    /// Channel filter.
    pub channels: Vec<Channel>,
    /// Agent filter.
    pub assistants: Vec<AssistantId>,
    /// Minimum rating.
    pub min_rating: Option<u8>,
    /// First day (viewer's calendar), `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last day, inclusive, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// Search text.
    pub q: Option<String>,
    /// Sentiment filter (issue 13).
    pub sentiments: Vec<SentimentFilter>,
    /// Resolution outcome filter (issue 13).
    pub resolutions: Vec<Resolution>,
    /// Topic filter (issue 13): a topic key.
    pub topic: Option<String>,
    /// First start day (viewer's calendar), `YYYY-MM-DD`: the Insights drill-downs' cohort.
    pub started_from: Option<String>,
    /// Last start day, inclusive.
    pub started_to: Option<String>,
    /// The team view (`view=`), if any.
    pub inbox: Option<Inbox>,
    /// The **Calls** quick filter (`calls=true`): channel `voip` or any conversation with
    /// voice.
    pub calls: bool,
    /// Sort order.
    pub sort: Sort,
    /// Page after this cursor (for `sort`).
    pub after: Option<String>,
    /// Page before: a cursor for the reversed sort.
    pub before: Option<String>,
    /// The open conversation.
    pub open: Option<ConversationId>,
    /// Its tab.
    pub tab: Tab,
    /// Transcript pages shown (1 = the latest 50 messages).
    pub tpage: u32,
    /// A one-off notice (`deleted`).
    pub notice: Option<String>,
}

fn is_day(s: &str) -> bool {
    s.len() == 10 && Timestamp::parse_bound(s, false).is_ok()
}

impl ViewState {
    /// Parses a query string; returns the state and a message for every value it dropped.
    pub fn parse(raw: Option<&str>) -> (ViewState, Vec<String>) {
        let mut v = ViewState {
            tpage: 1,
            ..Default::default()
        };
        let mut errors = Vec::new();
        for (k, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let list = || value.split(',').map(str::trim).filter(|s| !s.is_empty());
            match k.as_ref() {
                "status" => {
                    for s in list() {
                        match s.parse() {
                            Ok(s) if !v.statuses.contains(&s) => v.statuses.push(s),
                            Ok(_) => {}
                            Err(e) => errors.push(format!("{e}")),
                        }
                    }
                }
                "channel" => {
                    for s in list() {
                        match s.parse() {
                            Ok(c) if !v.channels.contains(&c) => v.channels.push(c),
                            Ok(_) => {}
                            Err(e) => errors.push(format!("{e}")),
                        }
                    }
                }
                "sentiment" => {
                    for s in list() {
                        match s.parse() {
                            Ok(x) if !v.sentiments.contains(&x) => v.sentiments.push(x),
                            Ok(_) => {}
                            Err(e) => errors.push(format!("{e}")),
                        }
                    }
                }
                "resolution" => {
                    for s in list() {
                        match s.parse() {
                            Ok(x) if !v.resolutions.contains(&x) => v.resolutions.push(x),
                            Ok(_) => {}
                            Err(e) => errors.push(format!("{e}")),
                        }
                    }
                }
                "assistant" => {
                    for s in list() {
                        match s.parse() {
                            Ok(a) if !v.assistants.contains(&a) => v.assistants.push(a),
                            Ok(_) => {}
                            Err(_) => errors.push(format!("unknown agent {s:?}")),
                        }
                    }
                }
                "min_rating" => match value.parse::<u8>() {
                    Ok(n @ 1..=5) => v.min_rating = Some(n),
                    _ => errors.push(format!("minimum rating must be 1 to 5, not {value:?}")),
                },
                "started_from" | "started_to" => {
                    if !is_day(value) {
                        errors.push(format!("{k} must be a date like 2026-11-20, not {value:?}"));
                    } else if k == "started_from" {
                        v.started_from = Some(value.to_owned())
                    } else {
                        v.started_to = Some(value.to_owned())
                    }
                }
                "from" | "to" => {
                    if is_day(value) {
                        if k == "from" {
                            v.from = Some(value.to_owned())
                        } else {
                            v.to = Some(value.to_owned())
                        }
                    } else {
                        errors.push(format!("{k} must be a date like 2026-11-20, not {value:?}"));
                    }
                }
                "calls" => match value {
                    "true" | "1" => v.calls = true,
                    "false" | "0" => v.calls = false,
                    _ => errors.push(format!("calls must be true or false, not {value:?}")),
                },
                "q" => v.q = Some(value.chars().take(200).collect()),
                "topic" => {
                    v.topic = Some(value.chars().take(200).collect::<String>().to_lowercase())
                }
                "view" => match Inbox::parse(value) {
                    Some(i) => v.inbox = Some(i),
                    None => errors.push(format!("unknown view {value:?}")),
                },
                "sort" => match value.parse() {
                    Ok(s) => v.sort = s,
                    Err(e) => errors.push(format!("{e}")),
                },
                "after" => v.after = Some(value.to_owned()),
                "before" => v.before = Some(value.to_owned()),
                "open" => match value.parse() {
                    Ok(id) => v.open = Some(id),
                    Err(_) => errors.push(format!("{value:?} is not a conversation id")),
                },
                "tab" => v.tab = Tab::parse(value).unwrap_or_default(),
                "tpage" => {
                    v.tpage = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=10_000).contains(n))
                        .unwrap_or(1)
                }
                "notice" => v.notice = Some(value.chars().take(40).collect()),
                _ => {}
            }
        }
        if let (Some(f), Some(t)) = (&v.from, &v.to)
            && t < f
        {
            errors.push("the end date is before the start date".into());
            v.to = None;
        }
        (v, errors)
    }

    /// The store filter, with day bounds in the viewer's UTC offset (minutes east of UTC);
    /// `me` is the viewer (the "Mine" view).
    pub fn filter(&self, offset_minutes: i32, me: parley_core::UserId) -> ConversationFilter {
        let shift = |t: Timestamp| t.add_millis(-(offset_minutes as i64) * 60_000);
        ConversationFilter {
            statuses: self.statuses.clone(),
            channels: self.channels.clone(),
            assistants: self.assistants.clone(),
            min_rating: self.min_rating,
            from: self
                .from
                .as_deref()
                .and_then(|d| Timestamp::parse_bound(d, false).ok())
                .map(shift),
            to: self
                .to
                .as_deref()
                .and_then(|d| Timestamp::parse_bound(d, true).ok())
                .map(shift),
            q: self.q.clone(),
            sentiments: self.sentiments.clone(),
            resolutions: self.resolutions.clone(),
            topic: self.topic.clone(),
            started_from: self
                .started_from
                .as_deref()
                .and_then(|d| Timestamp::parse_bound(d, false).ok())
                .map(shift),
            started_to: self
                .started_to
                .as_deref()
                .and_then(|d| Timestamp::parse_bound(d, true).ok())
                .map(shift),
            needs_human: self.inbox == Some(Inbox::Attention),
            assignee: match self.inbox {
                Some(Inbox::Mine) => Some(AssigneeFilter::User(me)),
                Some(Inbox::Unassigned) => Some(AssigneeFilter::Unassigned),
                _ => None,
            },
            calls: self.calls,
        }
    }

    /// Whether any filter or search is set.
    pub fn is_filtered(&self) -> bool {
        !self.statuses.is_empty()
            || !self.channels.is_empty()
            || !self.assistants.is_empty()
            || self.min_rating.is_some()
            || self.from.is_some()
            || self.to.is_some()
            || self.q.is_some()
            || !self.sentiments.is_empty()
            || !self.resolutions.is_empty()
            || self.topic.is_some()
            || self.started_from.is_some()
            || self.started_to.is_some()
            || self.inbox.is_some()
            || self.calls
    }

    /// The query string of this state (without the leading `?`), in a stable order.
    pub fn query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        let join = |items: Vec<String>| items.join(",");
        if !self.statuses.is_empty() {
            s.append_pair(
                "status",
                &join(self.statuses.iter().map(|x| x.to_string()).collect()),
            );
        }
        if !self.channels.is_empty() {
            s.append_pair(
                "channel",
                &join(self.channels.iter().map(|x| x.to_string()).collect()),
            );
        }
        if !self.assistants.is_empty() {
            s.append_pair(
                "assistant",
                &join(self.assistants.iter().map(|x| x.to_string()).collect()),
            );
        }
        if let Some(r) = self.min_rating {
            s.append_pair("min_rating", &r.to_string());
        }
        if !self.sentiments.is_empty() {
            s.append_pair(
                "sentiment",
                &join(self.sentiments.iter().map(|x| x.to_string()).collect()),
            );
        }
        if !self.resolutions.is_empty() {
            s.append_pair(
                "resolution",
                &join(self.resolutions.iter().map(|x| x.to_string()).collect()),
            );
        }
        if let Some(t) = &self.topic {
            s.append_pair("topic", t);
        }
        if let Some(f) = &self.started_from {
            s.append_pair("started_from", f);
        }
        if let Some(t) = &self.started_to {
            s.append_pair("started_to", t);
        }
        if let Some(i) = self.inbox {
            s.append_pair("view", i.as_str());
        }
        if self.calls {
            s.append_pair("calls", "true");
        }
        if let Some(f) = &self.from {
            s.append_pair("from", f);
        }
        if let Some(t) = &self.to {
            s.append_pair("to", t);
        }
        if let Some(q) = &self.q {
            s.append_pair("q", q);
        }
        if self.sort != Sort::default() {
            s.append_pair("sort", &self.sort.to_string());
        }
        if let Some(a) = &self.after {
            s.append_pair("after", a);
        }
        if let Some(b) = &self.before {
            s.append_pair("before", b);
        }
        if let Some(o) = &self.open {
            s.append_pair("open", &o.to_string());
            if self.tab != Tab::Overview {
                s.append_pair("tab", self.tab.as_str());
            }
            if self.tpage > 1 {
                s.append_pair("tpage", &self.tpage.to_string());
            }
        }
        if let Some(n) = &self.notice {
            s.append_pair("notice", n);
        }
        s.finish()
    }

    /// The `/conversations` URL of this state.
    pub fn href(&self) -> String {
        let q = self.query();
        if q.is_empty() {
            "/conversations".into()
        } else {
            format!("/conversations?{q}")
        }
    }

    /// The URL of this state changed by `f` (for links: remove a chip, sort, open a row).
    pub fn with(&self, f: impl FnOnce(&mut ViewState)) -> String {
        let mut next = self.clone();
        f(&mut next);
        next.href()
    }

    /// A copy at the first page, with no conversation open (what changing a filter gives).
    pub fn first_page(&self) -> ViewState {
        ViewState {
            after: None,
            before: None,
            open: None,
            tab: Tab::Overview,
            tpage: 1,
            notice: None,
            ..self.clone()
        }
    }

    /// The link for a column header: the same key reversed, or the key in its natural order.
    pub fn sort_href(&self, key: SortKey) -> String {
        let sort = if self.sort.key == key {
            self.sort.reversed()
        } else {
            Sort {
                key,
                descending: matches!(key, SortKey::Date | SortKey::Messages | SortKey::Rating),
            }
        };
        let mut next = self.first_page();
        next.sort = sort;
        next.href()
    }

    /// `▲`/`▼` when sorted by `key`, else empty.
    pub fn sort_arrow(&self, key: SortKey) -> &'static str {
        match (self.sort.key == key, self.sort.descending) {
            (false, _) => "",
            (true, true) => "▼",
            (true, false) => "▲",
        }
    }

    /// Decodes the page cursor: (sort to query with, cursor, whether the page is "before").
    pub fn page_cursor(&self) -> Result<(Sort, Option<Cursor>, bool), String> {
        if let Some(b) = &self.before {
            let reversed = self.sort.reversed();
            let c = Cursor::decode(b, reversed).map_err(|e| e.to_string())?;
            return Ok((reversed, Some(c), true));
        }
        match &self.after {
            Some(a) => Cursor::decode(a, self.sort)
                .map(|c| (self.sort, Some(c), false))
                .map_err(|e| e.to_string()),
            None => Ok((self.sort, None, false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_url() {
        let (v, errors) = ViewState::parse(Some(
            "status=closed,active&channel=whatsapp&min_rating=4&from=2026-11-01&to=2026-11-20&q=hello%20w%C3%B6rld&sort=agent&tab=client&open=0190f8a8-0000-7000-8000-000000000000&utm_source=x",
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            v.statuses,
            vec![ConversationStatus::Closed, ConversationStatus::Active]
        );
        assert_eq!(v.q.as_deref(), Some("hello wörld"));
        assert_eq!(v.tab, Tab::Client);
        let (again, _) = ViewState::parse(Some(&v.query()));
        assert_eq!(again, v);
        assert!(
            v.href()
                .starts_with("/conversations?status=closed%2Cactive&channel=whatsapp")
        );
    }

    #[test]
    fn bad_values_are_dropped_and_reported() {
        let (v, errors) = ViewState::parse(Some(
            "status=open&min_rating=9&from=yesterday&sort=price&open=x",
        ));
        assert_eq!(
            v,
            ViewState {
                tpage: 1,
                ..Default::default()
            }
        );
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn day_bounds_follow_the_viewers_offset() {
        let (v, _) = ViewState::parse(Some("from=2026-11-20&to=2026-11-20"));
        let f = v.filter(60, parley_core::UserId::new());
        assert_eq!(f.from.unwrap().to_rfc3339(), "2026-11-19T23:00:00.000Z");
        assert_eq!(f.to.unwrap().to_rfc3339(), "2026-11-20T23:00:00.000Z");
    }

    #[test]
    fn sort_links_toggle() {
        let v = ViewState::default();
        assert_eq!(v.sort_href(SortKey::Date), "/conversations?sort=date");
        assert_eq!(
            v.sort_href(SortKey::Assistant),
            "/conversations?sort=assistant"
        );
        assert_eq!(
            v.sort_href(SortKey::Messages),
            "/conversations?sort=-messages"
        );
        assert_eq!(v.sort_arrow(SortKey::Date), "▼");
    }
}
