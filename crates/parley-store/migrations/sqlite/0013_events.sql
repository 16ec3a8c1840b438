-- Live updates (issue 14): the stored event log. One row per change a listener may care about,
-- written in the same transaction as the change. `id` only grows (AUTOINCREMENT: never reused,
-- even after the newest rows are pruned), so it is the resume point of `Last-Event-ID`.
-- Rows older than the retention window are pruned; `event_log_state.pruned_through` remembers
-- the highest id pruned so far, so a resume from before it is told that events are gone.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id    BLOB NOT NULL,
    type            TEXT NOT NULL,     -- conversation.created, message.created, ...
    conversation_id BLOB,
    channel         TEXT,
    assistant_id    BLOB,
    created_at      INTEGER NOT NULL,  -- ms since the epoch, UTC
    data            TEXT NOT NULL      -- small JSON object
);
CREATE INDEX events_workspace ON events (workspace_id, id);
CREATE INDEX events_created ON events (created_at);

CREATE TABLE event_log_state (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    pruned_through INTEGER NOT NULL
);
INSERT INTO event_log_state (singleton, pruned_through) VALUES (1, 0);
