-- The assistant runtime (issue 5): versioned assistant settings, the version that handled a
-- conversation, and per-message metadata (tool calls, failures, estimated usage).

-- The current version's number and settings (JSON, see parley_core::assistant); every version
-- is also kept in assistant_versions.
ALTER TABLE assistants ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE assistants ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

CREATE TABLE assistant_versions (
    assistant_id BLOB NOT NULL REFERENCES assistants (id),
    version      INTEGER NOT NULL,
    name         TEXT NOT NULL,
    company      TEXT NOT NULL,
    mode         TEXT NOT NULL,
    settings     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (assistant_id, version)
) WITHOUT ROWID;

INSERT INTO assistant_versions (assistant_id, version, name, company, mode, settings, created_at)
    SELECT id, 1, name, company, mode, '{}', created_at FROM assistants;

ALTER TABLE conversations ADD COLUMN assistant_version INTEGER;

-- JSON (parley_core::model::MessageMeta), NULL when empty.
ALTER TABLE messages ADD COLUMN meta TEXT;
