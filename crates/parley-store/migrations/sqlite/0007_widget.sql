-- The web widget and the visitor tracker (issue 6).

-- One widget per assistant: its public key (looked up on every widget request) and settings
-- (JSON, see parley_core::widget::WidgetSettings).
CREATE TABLE widgets (
    assistant_id BLOB PRIMARY KEY REFERENCES assistants (id),
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    public_key   TEXT NOT NULL UNIQUE,
    settings     TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- A visitor's website session (JSON, see parley_core::widget::TrackerSession).
CREATE TABLE tracker_sessions (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    data         TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- Which visit each widget conversation came from (a visit may hold several conversations).
CREATE TABLE tracker_links (
    conversation_id BLOB PRIMARY KEY,
    session_id      BLOB NOT NULL REFERENCES tracker_sessions (id)
) WITHOUT ROWID;
CREATE INDEX tracker_links_session ON tracker_links (session_id);

-- Pageviews, events and triggers (JSON, see parley_core::widget::TrackerItem).
CREATE TABLE tracker_items (
    id         BLOB PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES tracker_sessions (id),
    at         INTEGER NOT NULL,
    data       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX tracker_items_session ON tracker_items (session_id, at);
