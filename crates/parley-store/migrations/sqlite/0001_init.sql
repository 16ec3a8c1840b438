-- Parley schema, SQLite backend, version 1.
-- Conventions: ids are UUIDv7 as 16-byte BLOBs; times are INTEGER UTC milliseconds since the
-- epoch; money is INTEGER nano-USD. Conversations and messages also have an INTEGER key,
-- `pk`, which the FTS5 search indexes and the message foreign key use (smaller, faster indexes).

CREATE TABLE workspaces (
    id                 BLOB PRIMARY KEY,
    slug               TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    -- Maintained in the same transaction as every conversation insert and delete: the
    -- navigation badge reads it instead of counting.
    conversation_count INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE,   -- SHA-256 of the full key
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE TABLE assistants (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    name         TEXT NOT NULL,
    company      TEXT NOT NULL DEFAULT '',
    mode         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (workspace_id, name, company)
);

CREATE TABLE conversations (
    pk                     INTEGER PRIMARY KEY,
    id                     BLOB NOT NULL UNIQUE,
    workspace_id           BLOB NOT NULL REFERENCES workspaces (id),
    assistant_id           BLOB NOT NULL REFERENCES assistants (id),
    assistant_name         TEXT NOT NULL,          -- copy of assistants.name: sort and search
    external_id            TEXT,
    channel                TEXT NOT NULL,
    status                 TEXT NOT NULL,
    contact                TEXT,
    session_id             TEXT,
    started_at             INTEGER NOT NULL,
    ended_at               INTEGER,
    last_message_at        INTEGER NOT NULL,       -- the list's "date"
    last_inbound_at        INTEGER,
    last_message_preview   TEXT,
    message_count          INTEGER NOT NULL DEFAULT 0,  -- visible messages
    stored_message_count   INTEGER NOT NULL DEFAULT 0,  -- all messages (= highest seq)
    prompt_tokens          INTEGER NOT NULL DEFAULT 0,
    completion_tokens      INTEGER NOT NULL DEFAULT 0,
    cost_nanousd           INTEGER NOT NULL DEFAULT 0,
    unpriced_message_count INTEGER NOT NULL DEFAULT 0,
    has_voice              INTEGER NOT NULL DEFAULT 0,
    rating                 INTEGER NOT NULL DEFAULT 0,  -- 0 = not rated, else 1..5
    rating_comment         TEXT,
    rated_at               INTEGER,
    sentiment              TEXT,
    sentiment_score        REAL,
    end_reason             TEXT,
    converted              INTEGER,
    memory                 TEXT NOT NULL DEFAULT '{}',
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);

CREATE UNIQUE INDEX conversations_external_id
    ON conversations (workspace_id, external_id) WHERE external_id IS NOT NULL;
-- One index per sort order; every one ends in (last_message_at, id) so keyset pages are
-- range scans. Filters on status/channel/assistant are checked on the index walk.
CREATE INDEX conversations_by_date     ON conversations (workspace_id, last_message_at, id);
CREATE INDEX conversations_by_messages ON conversations (workspace_id, message_count, last_message_at, id);
CREATE INDEX conversations_by_rating   ON conversations (workspace_id, rating, last_message_at, id);
CREATE INDEX conversations_by_agent    ON conversations (workspace_id, assistant_name, last_message_at, id);
CREATE INDEX conversations_by_status   ON conversations (workspace_id, status, last_message_at, id);
CREATE INDEX conversations_by_created   ON conversations (workspace_id, id);
CREATE INDEX conversations_by_assistant ON conversations (assistant_id, last_message_at);

CREATE TABLE messages (
    pk                INTEGER PRIMARY KEY,
    id                BLOB NOT NULL UNIQUE,
    conversation      INTEGER NOT NULL REFERENCES conversations (pk),
    seq               INTEGER NOT NULL,   -- 1-based position among all the conversation's messages
    visible_seq       INTEGER,            -- 1-based position among visible ones; NULL if hidden
    role              TEXT NOT NULL,
    content           TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    external_id       TEXT,
    model             TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_nanousd      INTEGER,
    cost_source       TEXT
);

CREATE UNIQUE INDEX messages_by_seq ON messages (conversation, seq);
CREATE UNIQUE INDEX messages_by_visible_seq
    ON messages (conversation, visible_seq) WHERE visible_seq IS NOT NULL;
CREATE UNIQUE INDEX messages_external_id
    ON messages (conversation, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE variables (
    conversation INTEGER NOT NULL REFERENCES conversations (pk),
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    source       TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (conversation, key)
) WITHOUT ROWID;

-- Substring search (DESIGN.md section 4): trigram full-text indexes over visible message
-- content and over the conversation's searchable fields, kept in step by triggers, so a delete
-- removes the index entries in the same transaction.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    content,
    content = 'messages', content_rowid = 'pk',
    tokenize = 'trigram case_sensitive 0'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.visible_seq IS NOT NULL
BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.pk, new.content);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.visible_seq IS NOT NULL
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages WHEN old.visible_seq IS NOT NULL
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.pk, new.content);
END;

CREATE VIRTUAL TABLE conversations_fts USING fts5 (
    session_id, contact, assistant_name,
    content = 'conversations', content_rowid = 'pk',
    tokenize = 'trigram case_sensitive 0'
);

CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations
BEGIN
    INSERT INTO conversations_fts (rowid, session_id, contact, assistant_name)
    VALUES (new.pk, new.session_id, new.contact, new.assistant_name);
END;

CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations
BEGIN
    INSERT INTO conversations_fts (conversations_fts, rowid, session_id, contact, assistant_name)
    VALUES ('delete', old.pk, old.session_id, old.contact, old.assistant_name);
END;

CREATE TRIGGER conversations_fts_update AFTER UPDATE OF session_id, contact, assistant_name ON conversations
BEGIN
    INSERT INTO conversations_fts (conversations_fts, rowid, session_id, contact, assistant_name)
    VALUES ('delete', old.pk, old.session_id, old.contact, old.assistant_name);
    INSERT INTO conversations_fts (rowid, session_id, contact, assistant_name)
    VALUES (new.pk, new.session_id, new.contact, new.assistant_name);
END;
