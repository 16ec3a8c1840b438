-- Live updates (issue 14): the stored event log. One row per change a listener may care about,
-- written in the same transaction as the change. `id` only grows, so it is the resume point of
-- `Last-Event-ID`; `event_log_state.pruned_through` is the highest id pruned so far.
CREATE TABLE events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id    uuid NOT NULL,
    type            text NOT NULL,     -- conversation.created, message.created, ...
    conversation_id uuid,
    channel         text,
    assistant_id    uuid,
    created_at      bigint NOT NULL,   -- ms since the epoch, UTC
    data            text NOT NULL      -- small JSON object
);
CREATE INDEX events_workspace ON events (workspace_id, id);
CREATE INDEX events_created ON events (created_at);

CREATE TABLE event_log_state (
    singleton      int PRIMARY KEY CHECK (singleton = 1),
    pruned_through bigint NOT NULL
);
INSERT INTO event_log_state (singleton, pruned_through) VALUES (1, 0);

-- Ids are handed out in commit order: every statement that appends events first takes one
-- transaction-scoped advisory lock, held until its transaction ends, so a transaction that took
-- id 5 has committed (or rolled back) before another one can take id 6. Without it a reader could
-- see 6, move its cursor past 5, and miss 5 when it commits later. The appends come last in
-- their transactions, so the lock is held only for the commit.
CREATE FUNCTION parley_events_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7411386297452037);
    RETURN NULL;
END $$;
CREATE TRIGGER events_order BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION parley_events_order();

-- Every server LISTENs on `parley_events`; the notification is delivered at commit, and only
-- says "something new": listeners read the log by id.
CREATE FUNCTION parley_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('parley_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION parley_events_notify();
