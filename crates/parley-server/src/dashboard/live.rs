//! `GET /dashboard/events`: the signed-in member's workspace's live events (issue 14), the
//! same stream and event shape as `GET /api/v1/events` (see [`crate::events`]), for the
//! dashboard's script (`assets/app.js`), which re-fetches the panel and list rows they name.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use parley_store::EventFilter;

use crate::AppState;
use crate::auth::session::Session;

/// Streams every event of the member's workspace from after `Last-Event-ID` (what the
/// browser's `EventSource` sends when it reconnects) or from now. A resume point that is no
/// longer in the log starts from now instead: the page then shows the state it loaded, and a
/// reload shows the rest (an `EventSource` that got an error status would stop for good).
pub(super) async fn events(
    State(st): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = match crate::events::start_after(&*st.store, resume).await {
        Ok(after) => after,
        Err(_) => match crate::events::start_after(&*st.store, None).await {
            Ok(after) => after,
            Err(e) => return e.into_response(),
        },
    };
    let events = crate::events::stream(
        &st,
        session.user.workspace_id,
        EventFilter::default(),
        after,
    );
    crate::sse::respond_frames(
        &st.metrics,
        crate::metrics::StreamKind::Events,
        events,
        crate::sse::KEEP_ALIVE,
    )
}
