-- Parley schema, PostgreSQL backend, version 1. The same tables as the SQLite backend, with
-- native uuid ids. Times are bigint UTC milliseconds and money bigint nano-USD, as in SQLite, so
-- both backends sort, filter and round identically.
-- Search: pg_trgm GIN indexes, queried with ILIKE (case folding follows the database's LC_CTYPE;
-- create the database with a UTF-8 locale such as C.UTF-8).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE workspaces (
    id         uuid PRIMARY KEY,
    slug       text NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at bigint NOT NULL
);

-- The conversation count, maintained in the same transaction as every insert and delete and
-- spread over 16 slots (by conversation key) so concurrent creators do not queue on one row;
-- the badge is the sum of at most 16 rows.
CREATE TABLE workspace_counters (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    slot          smallint NOT NULL,
    conversations bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, slot)
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    name         text NOT NULL,
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE,
    created_at   bigint NOT NULL,
    revoked_at   bigint
);

CREATE TABLE assistants (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    name         text NOT NULL,
    company      text NOT NULL DEFAULT '',
    mode         text NOT NULL,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL,
    UNIQUE (workspace_id, name, company)
);

CREATE TABLE conversations (
    pk                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                     uuid NOT NULL UNIQUE,
    workspace_id           uuid NOT NULL REFERENCES workspaces (id),
    assistant_id           uuid NOT NULL REFERENCES assistants (id),
    assistant_name         text NOT NULL,
    external_id            text,
    channel                text NOT NULL,
    status                 text NOT NULL,
    contact                text,
    session_id             text,
    started_at             bigint NOT NULL,
    ended_at               bigint,
    last_message_at        bigint NOT NULL,
    last_inbound_at        bigint,
    last_message_preview   text,
    message_count          bigint NOT NULL DEFAULT 0,
    stored_message_count   bigint NOT NULL DEFAULT 0,
    prompt_tokens          bigint NOT NULL DEFAULT 0,
    completion_tokens      bigint NOT NULL DEFAULT 0,
    cost_nanousd           bigint NOT NULL DEFAULT 0,
    unpriced_message_count bigint NOT NULL DEFAULT 0,
    has_voice              boolean NOT NULL DEFAULT false,
    rating                 bigint NOT NULL DEFAULT 0,
    rating_comment         text,
    rated_at               bigint,
    sentiment              text,
    sentiment_score        double precision,
    end_reason             text,
    converted              boolean,
    memory                 text NOT NULL DEFAULT '{}',  -- JSON text, kept exactly as given
    created_at             bigint NOT NULL,
    updated_at             bigint NOT NULL
);

CREATE UNIQUE INDEX conversations_external_id
    ON conversations (workspace_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX conversations_by_date      ON conversations (workspace_id, last_message_at, id);
CREATE INDEX conversations_by_messages  ON conversations (workspace_id, message_count, last_message_at, id);
CREATE INDEX conversations_by_rating    ON conversations (workspace_id, rating, last_message_at, id);
CREATE INDEX conversations_by_agent     ON conversations (workspace_id, assistant_name, last_message_at, id);
CREATE INDEX conversations_by_status    ON conversations (workspace_id, status, last_message_at, id);
CREATE INDEX conversations_by_created   ON conversations (workspace_id, id);
CREATE INDEX conversations_by_assistant ON conversations (assistant_id, last_message_at);
CREATE INDEX conversations_session_trgm   ON conversations USING gin (session_id gin_trgm_ops);
CREATE INDEX conversations_contact_trgm   ON conversations USING gin (contact gin_trgm_ops);
CREATE INDEX conversations_assistant_trgm ON conversations USING gin (assistant_name gin_trgm_ops);

CREATE TABLE messages (
    pk                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                uuid NOT NULL UNIQUE,
    conversation      bigint NOT NULL REFERENCES conversations (pk),
    seq               bigint NOT NULL,
    visible_seq       bigint,
    role              text NOT NULL,
    content           text NOT NULL,
    created_at        bigint NOT NULL,
    external_id       text,
    model             text,
    prompt_tokens     bigint,
    completion_tokens bigint,
    cost_nanousd      bigint,
    cost_source       text
);

CREATE UNIQUE INDEX messages_by_seq ON messages (conversation, seq);
CREATE UNIQUE INDEX messages_by_visible_seq
    ON messages (conversation, visible_seq) WHERE visible_seq IS NOT NULL;
CREATE UNIQUE INDEX messages_external_id
    ON messages (conversation, external_id) WHERE external_id IS NOT NULL;
-- Visible messages only, as in SQLite: system prompts and tool output are not searched.
CREATE INDEX messages_content_trgm ON messages USING gin (content gin_trgm_ops)
    WHERE visible_seq IS NOT NULL;

CREATE TABLE variables (
    conversation bigint NOT NULL REFERENCES conversations (pk),
    key          text NOT NULL,
    value        text NOT NULL,
    source       text NOT NULL,
    updated_at   bigint NOT NULL,
    PRIMARY KEY (conversation, key)
);
