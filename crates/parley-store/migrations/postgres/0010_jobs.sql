-- Durable background work (issue 11, DESIGN.md section 7): the job queue every background
-- task runs from (webhook deliveries with their raw bodies, answers, media downloads), shared
-- by every server through FOR UPDATE SKIP LOCKED; named leases (an assistant's turn on a
-- conversation); rate-limit windows counted across servers. See
-- crates/parley-store/src/jobs.rs.

CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,
    state           text NOT NULL,      -- queued | running | failed
    payload         text NOT NULL,      -- JSON, or a webhook delivery's raw body
    workspace_id    uuid,
    connection_id   uuid,
    conversation_id uuid,
    message_id      uuid,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    run_after       bigint NOT NULL,    -- unix ms
    locked_by       text,
    locked_until    bigint,             -- unix ms
    last_error      text,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);

CREATE INDEX jobs_queued ON jobs (run_after) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_by_connection ON jobs (connection_id, created_at) WHERE connection_id IS NOT NULL;

CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at bigint NOT NULL          -- unix ms
);

CREATE TABLE rate_windows (
    subject      text NOT NULL,
    window_start bigint NOT NULL,       -- unix ms
    hits         bigint NOT NULL,
    PRIMARY KEY (subject, window_start)
);

CREATE INDEX rate_windows_by_start ON rate_windows (window_start);
