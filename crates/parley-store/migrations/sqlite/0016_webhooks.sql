-- Outgoing webhooks (issue 16): a workspace's endpoints and the deliveries made to them, per
-- the Standard Webhooks specification. See crates/parley-store/src/webhooks.rs.
--
-- The outbox is the event log (`events`, written in the transaction of each change). Each
-- endpoint keeps a cursor into it (`cursor`: the highest event id it has taken); taking events
-- writes their deliveries and advances the cursor in one transaction. The log's retention never
-- deletes an event of a workspace whose enabled endpoint's cursor is below it.
CREATE TABLE webhook_endpoints (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL,
    url          TEXT NOT NULL,
    description  TEXT NOT NULL,
    event_types  TEXT NOT NULL,      -- JSON array of event type names
    enabled      INTEGER NOT NULL,   -- 0 | 1
    secret       TEXT NOT NULL,      -- the whsec_ secret, sealed with the server's secret key
    cursor       INTEGER NOT NULL,   -- highest events.id taken
    created_at   INTEGER NOT NULL,   -- unix ms
    updated_at   INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_by_workspace ON webhook_endpoints (workspace_id, created_at);

CREATE TABLE webhook_deliveries (
    id               BLOB PRIMARY KEY,  -- UUIDv7; the `webhook-id` is `msg_` and its hex
    endpoint_id      BLOB NOT NULL,
    workspace_id     BLOB NOT NULL,
    event_id         INTEGER NOT NULL,
    event_type       TEXT NOT NULL,
    body             TEXT NOT NULL,     -- the JSON payload, fixed when the event was taken
    status           TEXT NOT NULL,     -- pending | succeeded | failed
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER,           -- unix ms, while pending
    retry_until      INTEGER NOT NULL,  -- unix ms: no attempt starts after it
    last_attempt_at  INTEGER,
    http_status      INTEGER,
    response_ms      INTEGER,
    response_excerpt TEXT,              -- at most 1 KiB of the last answer's body
    error            TEXT,
    locked_by        TEXT,              -- the server sending it now
    locked_until     INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (endpoint_id, event_id, event_type)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
