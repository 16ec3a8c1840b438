-- Bulk actions on conversations (issue 14): one row per request, kept after it finished so
-- its progress can be read (`GET /api/v1/conversations/bulk/{id}`) from any server and a retry
-- with the same idempotency key finds it instead of running again.
-- `action`: close, archive, reopen, assign, delete. `params`: the action's JSON (`end_reason`,
-- `assignee_id`). `selection`: JSON `{"ids": n}` or `{"filter": {...}}` as requested. `ids`: the
-- JSON array of the conversations selected when the request came (the work list, in order).
-- `total` / `done`: conversations selected / worked through so far; `affected`: those that
-- were still there and changed. `state`: queued, running, done, failed. Times: ms since the
-- epoch, UTC.
CREATE TABLE bulk_actions (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces (id),
    actor           text NOT NULL,
    action          text NOT NULL,
    params          text NOT NULL,
    selection       text NOT NULL,
    ids             text NOT NULL,
    total           bigint NOT NULL,
    done            bigint NOT NULL DEFAULT 0,
    affected        bigint NOT NULL DEFAULT 0,
    state           text NOT NULL,
    error           text,
    idempotency_key text,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL,
    finished_at     bigint
);
CREATE UNIQUE INDEX bulk_actions_idempotency ON bulk_actions (workspace_id, idempotency_key);
