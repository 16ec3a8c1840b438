-- Workspace settings (issue 16); see the SQLite migration 0018_settings for the meanings.
ALTER TABLE users ADD COLUMN name text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN last_sign_in_at bigint;
ALTER TABLE api_keys ADD COLUMN role text NOT NULL DEFAULT 'admin';
ALTER TABLE api_keys ADD COLUMN last_used_at bigint;

CREATE TABLE workspace_settings (
    workspace_id     uuid PRIMARY KEY REFERENCES workspaces (id),
    time_zone        text NOT NULL DEFAULT 'UTC',
    analysis_enabled boolean NOT NULL DEFAULT true,
    updated_at       bigint NOT NULL
);

CREATE TABLE invites (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    token_hash   bytea NOT NULL UNIQUE,
    email        text NOT NULL,
    role         text NOT NULL,
    invited_by   uuid,
    created_at   bigint NOT NULL,
    expires_at   bigint NOT NULL,
    accepted_at  bigint,
    user_id      uuid
);
CREATE INDEX invites_by_workspace ON invites (workspace_id, created_at);
