-- The web widget and the visitor tracker (issue 6).

-- One widget per assistant: its public key (looked up on every widget request) and settings
-- (JSON text, see parley_core::widget::WidgetSettings).
CREATE TABLE widgets (
    assistant_id uuid PRIMARY KEY REFERENCES assistants (id),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    public_key   text NOT NULL UNIQUE,
    settings     text NOT NULL,
    updated_at   bigint NOT NULL
);

-- A visitor's website session (JSON text, see parley_core::widget::TrackerSession).
CREATE TABLE tracker_sessions (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    data         text NOT NULL,
    updated_at   bigint NOT NULL
);

-- Which visit each widget conversation came from (a visit may hold several conversations).
CREATE TABLE tracker_links (
    conversation_id uuid PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES tracker_sessions (id)
);
CREATE INDEX tracker_links_session ON tracker_links (session_id);

-- Pageviews, events and triggers (JSON text, see parley_core::widget::TrackerItem).
CREATE TABLE tracker_items (
    id         uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES tracker_sessions (id),
    at         bigint NOT NULL,
    data       text NOT NULL
);
CREATE INDEX tracker_items_session ON tracker_items (session_id, at);
