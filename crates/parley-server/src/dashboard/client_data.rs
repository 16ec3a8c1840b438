//! The website session part of a conversation's Client data tab: the visit recorded by the
//! widget's tracker (see [`crate::widget::tracker`]), its pageviews, events and triggers.

use parley_core::widget::{TrackerItemKind, TrackerRecord};

use super::format;

/// One pageview row.
pub(super) struct PageviewRow {
    pub(super) title: String,
    pub(super) url: String,
    pub(super) when: String,
    pub(super) time_spent: String,
    pub(super) scroll: String,
}

/// One event or trigger row.
pub(super) struct EventRow {
    pub(super) name: String,
    pub(super) url: String,
    pub(super) when: String,
    /// The data as pretty JSON (empty when none).
    pub(super) data: String,
}

/// The website session, ready for the template.
pub(super) struct WebsiteSession {
    /// (label, value) pairs of the visit, in display order.
    pub(super) facts: Vec<(&'static str, String)>,
    pub(super) pageviews: Vec<PageviewRow>,
    pub(super) events: Vec<EventRow>,
    pub(super) triggers: Vec<EventRow>,
}

fn or_dash(s: &str) -> String {
    if s.trim().is_empty() {
        "—".into()
    } else {
        s.to_owned()
    }
}

/// Builds the view of a tracker record; times shown at UTC offset `tz` minutes.
pub(super) fn website_session(r: &TrackerRecord, tz: i32) -> WebsiteSession {
    let s = &r.session;
    let facts = vec![
        ("Device", or_dash(&s.device)),
        ("Browser", or_dash(&s.browser)),
        ("OS", or_dash(&s.os)),
        ("Country", or_dash(&s.country)),
        ("City", or_dash(&s.city)),
        ("Landing page", or_dash(&s.landing_page)),
        ("Referrer", or_dash(&s.referrer)),
        ("Traffic source", or_dash(&s.traffic_source)),
        ("UTM source", or_dash(&s.utm_source)),
        ("UTM medium", or_dash(&s.utm_medium)),
        ("UTM campaign", or_dash(&s.utm_campaign)),
        (
            "Session duration",
            format::duration(s.duration_secs() * 1000),
        ),
        ("Pages visited", r.pages_visited().to_string()),
        ("Bounce", if r.bounced() { "Yes" } else { "No" }.to_owned()),
    ];
    let mut pageviews = Vec::new();
    let mut events = Vec::new();
    let mut triggers = Vec::new();
    for i in &r.items {
        let when = format::full(i.at, tz);
        match i.kind {
            TrackerItemKind::Pageview => pageviews.push(PageviewRow {
                title: or_dash(&i.name),
                url: i.url.clone(),
                when,
                time_spent: i.time_spent_ms.map_or_else(|| "—".into(), format::duration),
                scroll: i
                    .scroll_depth
                    .map_or_else(|| "—".into(), |d| format!("{d}%")),
            }),
            kind => {
                let row = EventRow {
                    name: i.name.clone(),
                    url: i.url.clone(),
                    when,
                    data: if i.data.is_null() {
                        String::new()
                    } else {
                        serde_json::to_string_pretty(&i.data).unwrap_or_default()
                    },
                };
                if kind == TrackerItemKind::Trigger {
                    triggers.push(row);
                } else {
                    events.push(row);
                }
            }
        }
    }
    WebsiteSession {
        facts,
        pageviews,
        events,
        triggers,
    }
}
