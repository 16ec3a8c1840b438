-- Retention and erasure (issue 16).

-- A workspace's retention policy: each period in days, NULL = keep for ever.
-- `conversation_statuses`: the statuses a conversation must have to be deleted by age, as a
-- comma-separated list (e.g. 'closed,archived'); '' = whatever its status.
CREATE TABLE retention_policies (
    workspace_id          uuid PRIMARY KEY REFERENCES workspaces (id),
    conversation_days     integer,
    conversation_statuses text NOT NULL DEFAULT '',
    attachment_days       integer,
    tracker_days          integer,
    updated_at            bigint NOT NULL   -- ms since the epoch, UTC
);

-- The audit log: who did what to what, per workspace, newest last (ids are UUIDv7).
-- `actor`: 'user:<uuid>', 'api_key:<uuid>', 'system' (the background job) or 'cli'.
-- `details`: a JSON object whose shape depends on `action`; never personal data.
CREATE TABLE audit_log (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    actor        text NOT NULL,
    action       text NOT NULL,
    target       text NOT NULL,
    details      text NOT NULL,
    at           bigint NOT NULL            -- ms since the epoch, UTC
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id);

-- Retention finds old tracker items without walking every session.
CREATE INDEX tracker_items_at ON tracker_items (at);
CREATE INDEX tracker_sessions_workspace ON tracker_sessions (workspace_id, updated_at);
-- The jobs and events of a conversation go with it.
CREATE INDEX jobs_by_conversation ON jobs (conversation_id) WHERE conversation_id IS NOT NULL;
CREATE INDEX events_conversation ON events (conversation_id) WHERE conversation_id IS NOT NULL;
