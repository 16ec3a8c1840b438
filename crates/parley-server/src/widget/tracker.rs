//! The visitor tracker: the widget script records the visitor's website session (a visit) and
//! its pageviews, events and triggers; a widget conversation is linked to the visit it started
//! in, and the dashboard's Client data tab shows both.
//!
//! - `POST /widget/v1/track/session?key=` `{"tracker"?, "landing_page", "referrer", "visitor"?}`:
//!   resumes the visit the sealed `tracker` token names (same widget) or starts one, linked to
//!   the conversation of the `visitor` token when one is given: device,
//!   browser and OS from the User-Agent ([`super::ua`]), traffic source from the referrer
//!   ([`traffic_source`]), UTM tags from the landing page's query. 200 `{"tracker", "session_id",
//!   "recording"}`; with Do Not Track (`DNT: 1`) or Global Privacy Control (`Sec-GPC: 1`) and
//!   the widget's `respect_dnt` on, nothing is stored and `recording` is `false`.
//! - `POST /widget/v1/track?key=` with `X-Parley-Tracker: <token>` and `{"items": [...]}` (at
//!   most [`MAX_ITEMS`]): each item is `{"id" (UUID, chosen by the script), "kind": "pageview" |
//!   "event" | "trigger", "name", "url", "time_spent_ms"?, "scroll_depth"?, "data"?}`. Resending
//!   an id updates it (a pageview's time and scroll depth grow while the page is open). 200
//!   `{"stored": n}`.
//!
//! Privacy: the script never sends password or payment fields; the server drops them again
//! ([`scrub`]) in case a site's markup hides them under other input types.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Json, Response};
use parley_core::widget::{TrackerItem, TrackerItemKind, TrackerSession, WidgetRecord};
use parley_core::{AssistantId, ConversationId, Timestamp, WorkspaceId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Peer, TRACKER_HEADER, WidgetBody, WidgetRequest, open_token, seal_token};
use crate::AppState;
use crate::error::ApiError;

/// A GeoIP database (MaxMind GeoIP2/GeoLite2 or DB-IP, City or Country edition, `.mmdb`),
/// read with the `maxminddb` crate and kept in memory.
pub struct GeoIp(maxminddb::Reader<Vec<u8>>);

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeoIp")
    }
}

/// The part of a City/Country record the tracker uses.
#[derive(Deserialize)]
struct GeoRecord {
    #[serde(default)]
    country: Option<GeoCountry>,
    #[serde(default)]
    city: Option<GeoCity>,
}

#[derive(Deserialize)]
struct GeoCountry {
    #[serde(default)]
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct GeoCity {
    #[serde(default)]
    names: std::collections::BTreeMap<String, String>,
}

impl GeoIp {
    /// Opens the database at `path`. Errors: the file cannot be read or is not an mmdb file.
    pub fn open(path: &std::path::Path) -> Result<GeoIp, String> {
        maxminddb::Reader::open_readfile(path)
            .map(GeoIp)
            .map_err(|e| format!("GeoIP database {}: {e}", path.display()))
    }

    /// The country (ISO 3166-1 alpha-2) and English city name of `ip`; empty strings for what
    /// the database does not know.
    pub fn locate(&self, ip: std::net::IpAddr) -> (String, String) {
        let record = self
            .0
            .lookup(ip)
            .ok()
            .and_then(|r| r.decode::<GeoRecord>().ok().flatten());
        let Some(r) = record else {
            return (String::new(), String::new());
        };
        (
            r.country.and_then(|c| c.iso_code).unwrap_or_default(),
            r.city
                .and_then(|c| c.names.get("en").cloned())
                .unwrap_or_default(),
        )
    }
}

/// Most items per `POST /widget/v1/track`.
pub const MAX_ITEMS: usize = 50;
/// Longest URL, title, name or referrer kept, in characters (longer ones are cut).
pub const MAX_TEXT: usize = 2_000;
/// Largest `data` of one item, as JSON, in bytes.
pub const MAX_DATA_BYTES: usize = 4_096;

#[derive(Debug, Serialize, Deserialize)]
struct TrackerToken {
    t: String,
    w: WorkspaceId,
    a: AssistantId,
    s: Uuid,
    /// The widget key it was issued under (see [`super::key_tag`]).
    k: String,
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// Whether the request carries Do Not Track or Global Privacy Control.
pub fn privacy_signal(headers: &HeaderMap) -> bool {
    let on = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "1")
    };
    on("dnt") || on("sec-gpc")
}

/// The host of an `http(s)` URL, lowercased, without `www.` (`None` for anything else).
fn host_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host
        .rsplit('@')
        .next()?
        .split(':')
        .next()?
        .to_ascii_lowercase();
    Some(host.strip_prefix("www.").unwrap_or(&host).to_owned())
}

/// A query parameter of `url`.
fn query_param(url: &str, name: &str) -> String {
    let Some((_, q)) = url.split_once('?') else {
        return String::new();
    };
    let q = q.split('#').next().unwrap_or("");
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.chars().take(200).collect())
        .unwrap_or_default()
}

/// The traffic source of a visit: `paid` (a `gclid`/`fbclid`/`msclkid` or a UTM medium of
/// `cpc`/`ppc`/`paid*`), `email` (UTM medium `email`), then by the referrer's host: none →
/// `direct`, the site itself → `internal`, a known search engine → `search`, a known social
/// network → `social`, any other → `referral`.
pub fn traffic_source(landing_page: &str, referrer: &str) -> &'static str {
    let medium = query_param(landing_page, "utm_medium").to_ascii_lowercase();
    if ["gclid", "fbclid", "msclkid"]
        .iter()
        .any(|p| !query_param(landing_page, p).is_empty())
        || matches!(medium.as_str(), "cpc" | "ppc")
        || medium.starts_with("paid")
    {
        return "paid";
    }
    if medium == "email" || medium == "newsletter" {
        return "email";
    }
    let Some(r) = host_of(referrer) else {
        return "direct";
    };
    if host_of(landing_page).is_some_and(|l| l == r) {
        return "internal";
    }
    const SEARCH: &[&str] = &[
        "google.",
        "bing.com",
        "duckduckgo.com",
        "yahoo.",
        "yandex.",
        "baidu.com",
        "ecosia.org",
        "search.brave.com",
        "startpage.com",
        "qwant.com",
    ];
    const SOCIAL: &[&str] = &[
        "facebook.com",
        "l.facebook.com",
        "instagram.com",
        "t.co",
        "twitter.com",
        "x.com",
        "linkedin.com",
        "lnkd.in",
        "reddit.com",
        "pinterest.",
        "tiktok.com",
        "youtube.com",
        "mastodon.",
        "threads.net",
        "bsky.app",
    ];
    let matches = |list: &[&str]| {
        list.iter().any(|p| {
            if p.ends_with('.') {
                r.starts_with(p) || r.contains(&format!(".{p}"))
            } else {
                r == *p || r.ends_with(&format!(".{p}"))
            }
        })
    };
    if matches(SEARCH) {
        "search"
    } else if matches(SOCIAL) {
        "social"
    } else {
        "referral"
    }
}

/// Whether a field or query parameter name looks like a password or payment field.
pub fn is_sensitive_name(name: &str) -> bool {
    const SENSITIVE: &[&str] = &[
        "pass", "pwd", "secret", "card", "cc-", "cc_", "ccnum", "cvc", "cvv", "csc", "iban",
        "expir", "exp-", "exp_", "token", "ssn",
    ];
    let k = name.to_ascii_lowercase();
    k == "pin" || k == "pw" || SENSITIVE.iter().any(|s| k.contains(s))
}

/// Removes fields that look like passwords or payment data (by name, see
/// [`is_sensitive_name`]), recursively; keeps at most 50 keys per object and strings of up to
/// 500 characters.
pub fn scrub(data: Value) -> Value {
    match data {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !is_sensitive_name(k))
                .take(50)
                .map(|(k, v)| (k.chars().take(100).collect(), scrub(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().take(50).map(scrub).collect()),
        Value::String(s) => Value::String(s.chars().take(500).collect()),
        other => other,
    }
}

/// A URL without its fragment and without query parameters whose names look sensitive (a
/// site's GET form can put a password into the next page's URL), cut to [`MAX_TEXT`].
pub fn scrub_url(url: &str) -> String {
    let url = url.split('#').next().unwrap_or("");
    let Some((base, query)) = url.split_once('?') else {
        return cut(url);
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| !is_sensitive_name(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.is_empty() {
        return cut(base);
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    cut(&format!("{base}?{query}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionInput {
    #[serde(default)]
    tracker: Option<String>,
    #[serde(default)]
    landing_page: String,
    #[serde(default)]
    referrer: String,
    /// The visitor token of an ongoing conversation, to link a visit that began after it.
    #[serde(default)]
    visitor: Option<String>,
}

/// `POST /widget/v1/track/session`: see the module docs.
pub(super) async fn session(
    State(st): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    WidgetBody { widget: c, body }: WidgetBody<Bytes>,
) -> Result<Json<Value>, ApiError> {
    let settings = &c.widget.settings;
    if !settings.tracking || (settings.respect_dnt && privacy_signal(&headers)) {
        return Ok(Json(json!({"recording": false})));
    }
    let input: SessionInput = crate::body::parse_json(&body)?;
    let now = Timestamp::now();
    let linked = linked_conversation(&st, &c.widget, input.visitor.as_deref());
    if let Some(t) = input
        .tracker
        .as_deref()
        .and_then(|t| token_for(&st, &c.widget, t))
        && let Ok(Some(mut s)) = st.store.widgets().tracker_session(t.w, t.s).await
    {
        s.last_seen_at = Some(now);
        st.store.widgets().save_tracker_session(&s).await?;
        if let Some(v) = linked {
            st.store
                .widgets()
                .link_tracker_session(t.w, s.id, v)
                .await?;
        }
        return Ok(Json(json!({
            "tracker": input.tracker, "session_id": s.id.to_string(), "recording": true,
        })));
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let session = new_session(&st, &c.widget, ua, peer, &input, now);
    st.store.widgets().save_tracker_session(&session).await?;
    if let Some(v) = linked {
        st.store
            .widgets()
            .link_tracker_session(c.widget.workspace_id, session.id, v)
            .await?;
    }
    let token = seal_token(
        &st,
        &TrackerToken {
            t: "tracker".into(),
            w: c.widget.workspace_id,
            a: c.widget.assistant_id,
            s: session.id,
            k: super::key_tag(&c.widget.public_key),
        },
    );
    Ok(Json(json!({
        "tracker": token, "session_id": session.id.to_string(), "recording": true,
    })))
}

/// A new visit of `widget` starting `now`: the device of the user agent `ua`, the place of
/// the client address `peer` (with a GeoIP database), the landing page and referrer scrubbed
/// ([`scrub_url`]), the traffic source and UTM parameters they give.
fn new_session(
    st: &AppState,
    widget: &WidgetRecord,
    ua: &str,
    peer: Option<std::net::IpAddr>,
    input: &SessionInput,
    now: Timestamp,
) -> TrackerSession {
    let device = super::ua::parse(ua);
    let (country, city) = match (&st.widget.geoip, peer) {
        (Some(db), Some(addr)) => db.locate(addr),
        _ => (String::new(), String::new()),
    };
    let landing = scrub_url(&input.landing_page);
    let referrer = scrub_url(&input.referrer);
    TrackerSession {
        id: Uuid::now_v7(),
        workspace_id: Some(widget.workspace_id),
        assistant_id: Some(widget.assistant_id),
        started_at: Some(now),
        last_seen_at: Some(now),
        device: device.kind.to_owned(),
        browser: device.browser,
        os: device.os,
        country,
        city,
        traffic_source: traffic_source(&landing, &referrer).to_owned(),
        utm_source: query_param(&landing, "utm_source"),
        utm_medium: query_param(&landing, "utm_medium"),
        utm_campaign: query_param(&landing, "utm_campaign"),
        landing_page: landing,
        referrer,
    }
}

/// The conversation a visitor token (valid for this widget) names.
fn linked_conversation(
    st: &AppState,
    widget: &WidgetRecord,
    visitor: Option<&str>,
) -> Option<ConversationId> {
    let t: super::VisitorToken = open_token(st, visitor?)?;
    t.is_for(widget).then_some(t.c)
}

fn token_for(st: &AppState, widget: &WidgetRecord, token: &str) -> Option<TrackerToken> {
    open_token::<TrackerToken>(st, token).filter(|t| {
        t.t == "tracker"
            && t.w == widget.workspace_id
            && t.a == widget.assistant_id
            && t.k == super::key_tag(&widget.public_key)
    })
}

/// Links the visit a tracker token names to a new conversation (nothing happens for an invalid
/// token: the conversation simply has no website session).
pub(super) async fn link(
    st: &AppState,
    widget: &WidgetRecord,
    token: &str,
    conversation: ConversationId,
) {
    let Some(t) = token_for(st, widget, token) else {
        return;
    };
    if let Err(e) = st
        .store
        .widgets()
        .link_tracker_session(t.w, t.s, conversation)
        .await
    {
        tracing::warn!(error = %e, "linking the tracker session failed");
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemInput {
    id: Uuid,
    kind: TrackerItemKind,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default, deserialize_with = "parley_core::model::int::optional")]
    time_spent_ms: Option<i64>,
    #[serde(default, deserialize_with = "parley_core::model::int::optional")]
    scroll_depth: Option<u8>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackInput {
    items: Vec<ItemInput>,
}

/// `POST /widget/v1/track`'s request: the [`WidgetRequest`] checks counted per tracker session
/// (the `X-Parley-Tracker` header's, when it opens), the header's token (not yet checked) and
/// the body as sent. Rejections: those of [`WidgetBody`].
pub(super) struct TrackRequest {
    widget: WidgetRequest,
    token: Option<String>,
    body: Bytes,
}

impl FromRequest<AppState> for TrackRequest {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let token = parts
            .headers
            .get(TRACKER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let hint = token
            .as_deref()
            .and_then(|t| open_token::<TrackerToken>(st, t))
            .map(|t| t.s.to_string());
        let widget = WidgetRequest::check(&mut parts, st, hint).await?;
        let body = super::extract::body_of(Request::from_parts(parts, body), st)
            .await
            .map_err(axum::response::IntoResponse::into_response)?;
        Ok(TrackRequest {
            widget,
            token,
            body,
        })
    }
}

/// `POST /widget/v1/track`: see the module docs.
pub(super) async fn track(
    State(st): State<AppState>,
    headers: HeaderMap,
    TrackRequest {
        widget: c,
        token,
        body,
    }: TrackRequest,
) -> Result<Json<Value>, ApiError> {
    let settings = &c.widget.settings;
    if !settings.tracking || (settings.respect_dnt && privacy_signal(&headers)) {
        return Ok(Json(json!({"stored": 0})));
    }
    let Some(t) = token.as_deref().and_then(|t| token_for(&st, &c.widget, t)) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_tracker_token",
            "start a tracker session first: the tracker token is missing or not valid for this widget",
        ));
    };
    let input: TrackInput = crate::body::parse_json(&body)?;
    if input.items.len() > MAX_ITEMS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("at most {MAX_ITEMS} items per request"),
        )
        .with_field("items"));
    }
    let now = Timestamp::now();
    let mut stored = 0;
    for (i, it) in input.items.into_iter().enumerate() {
        if it.scroll_depth.is_some_and(|v| v > 100) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "a percentage from 0 to 100",
            )
            .with_field(format!("items[{i}].scroll_depth")));
        }
        let data = scrub(it.data);
        if !(data.is_null() || data.is_object())
            || serde_json::to_string(&data).map_or(0, |s| s.len()) > MAX_DATA_BYTES
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("a JSON object of at most {MAX_DATA_BYTES} bytes"),
            )
            .with_field(format!("items[{i}].data")));
        }
        let item = TrackerItem {
            id: it.id,
            session_id: t.s,
            kind: it.kind,
            name: cut(&it.name),
            url: scrub_url(&it.url),
            at: now,
            time_spent_ms: it.time_spent_ms.map(|v| v.clamp(0, 86_400_000)),
            scroll_depth: it.scroll_depth,
            data,
        };
        match st.store.widgets().save_tracker_item(t.w, &item).await {
            Ok(()) => stored += 1,
            Err(parley_store::StoreError::Conflict { .. }) => {}
            Err(e) => return Err(ApiError::from(e)),
        }
    }
    if let Ok(Some(mut s)) = st.store.widgets().tracker_session(t.w, t.s).await {
        s.last_seen_at = Some(now);
        let _ = st.store.widgets().save_tracker_session(&s).await;
    }
    Ok(Json(json!({"stored": stored})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_sources() {
        let l = "https://shop.example/";
        assert_eq!(traffic_source(l, ""), "direct");
        assert_eq!(
            traffic_source(l, "https://www.google.de/search?q=x"),
            "search"
        );
        assert_eq!(traffic_source(l, "https://duckduckgo.com/"), "search");
        assert_eq!(traffic_source(l, "https://t.co/abc"), "social");
        assert_eq!(traffic_source(l, "https://www.linkedin.com/feed"), "social");
        assert_eq!(
            traffic_source(l, "https://blog.other.example/post"),
            "referral"
        );
        assert_eq!(traffic_source(l, "https://shop.example/cart"), "internal");
        assert_eq!(
            traffic_source("https://shop.example/?utm_medium=cpc", "https://google.com"),
            "paid"
        );
        assert_eq!(
            traffic_source("https://shop.example/?utm_medium=email&utm_source=nl", ""),
            "email"
        );
        assert_eq!(
            query_param("https://a.b/?utm_source=news%20letter#x", "utm_source"),
            "news letter"
        );
    }

    #[test]
    fn sensitive_fields_are_dropped() {
        let v = scrub(
            json!({"email": "a@b.c", "password": "x", "Card-Number": "4111",
                             "cc-exp": "12/30", "cvc": "123", "nested": {"user_pwd": "y", "ok": 1}}),
        );
        assert_eq!(v, json!({"email": "a@b.c", "nested": {"ok": 1}}));
        assert_eq!(
            scrub_url("https://a.example/p?company=Globex&pw=x&card_number=4111&q=a+b#frag"),
            "https://a.example/p?company=Globex&q=a+b"
        );
        assert_eq!(
            scrub_url("https://a.example/p?password=x"),
            "https://a.example/p"
        );
        assert_eq!(
            scrub_url("https://a.example/shipping"),
            "https://a.example/shipping"
        );
    }
}
