-- Durable background work (issue 11, DESIGN.md section 7): the job queue every background
-- task runs from (webhook deliveries with their raw bodies, answers, media downloads), named
-- leases (an assistant's turn on a conversation), and rate-limit windows. See
-- crates/parley-store/src/jobs.rs.

CREATE TABLE jobs (
    id              BLOB PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,      -- queued | running | failed
    payload         TEXT NOT NULL,      -- JSON, or a webhook delivery's raw body
    workspace_id    BLOB,
    connection_id   BLOB,
    conversation_id BLOB,
    message_id      BLOB,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    run_after       INTEGER NOT NULL,   -- unix ms
    locked_by       TEXT,
    locked_until    INTEGER,            -- unix ms
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE INDEX jobs_queued ON jobs (run_after) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_by_connection ON jobs (connection_id, created_at) WHERE connection_id IS NOT NULL;

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL         -- unix ms
) WITHOUT ROWID;

CREATE TABLE rate_windows (
    subject      TEXT NOT NULL,
    window_start INTEGER NOT NULL,      -- unix ms
    hits         INTEGER NOT NULL,
    PRIMARY KEY (subject, window_start)
) WITHOUT ROWID;

CREATE INDEX rate_windows_by_start ON rate_windows (window_start);
