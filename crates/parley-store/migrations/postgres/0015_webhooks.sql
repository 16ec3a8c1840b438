-- Outgoing webhooks (issue 16): a workspace's endpoints and the deliveries made to them, per
-- the Standard Webhooks specification. See crates/parley-store/src/webhooks.rs.
--
-- The outbox is the event log (`events`, written in the transaction of each change). Each
-- endpoint keeps a cursor into it (`cursor`: the highest event id it has taken); taking events
-- writes their deliveries and advances the cursor in one transaction. The log's retention never
-- deletes an event of a workspace whose enabled endpoint's cursor is below it.
CREATE TABLE webhook_endpoints (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    url          text NOT NULL,
    description  text NOT NULL,
    event_types  text NOT NULL,      -- JSON array of event type names
    enabled      boolean NOT NULL,
    secret       text NOT NULL,      -- the whsec_ secret, sealed with the server's secret key
    cursor       bigint NOT NULL,   -- highest events.id taken
    created_at   bigint NOT NULL,   -- unix ms
    updated_at   bigint NOT NULL
);
CREATE INDEX webhook_endpoints_by_workspace ON webhook_endpoints (workspace_id, created_at);

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,  -- UUIDv7; the `webhook-id` is `msg_` and its hex
    endpoint_id      uuid NOT NULL,
    workspace_id     uuid NOT NULL,
    event_id         bigint NOT NULL,
    event_type       text NOT NULL,
    body             text NOT NULL,     -- the JSON payload, fixed when the event was taken
    status           text NOT NULL,     -- pending | succeeded | failed
    attempts         bigint NOT NULL,
    next_attempt_at  bigint,           -- unix ms, while pending
    retry_until      bigint NOT NULL,  -- unix ms: no attempt starts after it
    last_attempt_at  bigint,
    http_status      bigint,
    response_ms      bigint,
    response_excerpt text,              -- at most 1 KiB of the last answer's body
    error            text,
    locked_by        text,              -- the server sending it now
    locked_until     bigint,
    created_at       bigint NOT NULL,
    UNIQUE (endpoint_id, event_id, event_type)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
