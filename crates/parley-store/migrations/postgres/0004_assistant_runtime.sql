-- The assistant runtime (issue 5): versioned assistant settings, the version that handled a
-- conversation, and per-message metadata (tool calls, failures, estimated usage).

-- The current version's number and settings (JSON text, see parley_core::assistant); every
-- version is also kept in assistant_versions.
ALTER TABLE assistants ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE assistants ADD COLUMN settings text NOT NULL DEFAULT '{}';

CREATE TABLE assistant_versions (
    assistant_id uuid NOT NULL REFERENCES assistants (id),
    version      bigint NOT NULL,
    name         text NOT NULL,
    company      text NOT NULL,
    mode         text NOT NULL,
    settings     text NOT NULL,
    created_at   bigint NOT NULL,
    PRIMARY KEY (assistant_id, version)
);

INSERT INTO assistant_versions (assistant_id, version, name, company, mode, settings, created_at)
    SELECT id, 1, name, company, mode, '{}', created_at FROM assistants;

ALTER TABLE conversations ADD COLUMN assistant_version bigint;

-- JSON (parley_core::model::MessageMeta), NULL when empty.
ALTER TABLE messages ADD COLUMN meta text;
