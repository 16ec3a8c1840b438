-- Workspace settings (issue 16): members' names and last sign-in, API key roles and last use,
-- the workspace's time zone and analysis switch, and one-time invite links.
-- `users.name`: chosen when accepting an invite ('' for users made on the command line).
-- `users.last_sign_in_at`, `api_keys.last_used_at`: ms since the epoch, UTC; NULL = never.
-- `api_keys.role`: 'admin' (also manages members, keys, settings) or 'member'; keys made before
-- roles existed keep every right they had, so the default is 'admin'.
ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN last_sign_in_at INTEGER;
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;

-- One row per workspace once its settings were saved; a workspace without one has the defaults.
CREATE TABLE workspace_settings (
    workspace_id     BLOB PRIMARY KEY REFERENCES workspaces (id),
    time_zone        TEXT NOT NULL DEFAULT 'UTC',   -- IANA name
    analysis_enabled INTEGER NOT NULL DEFAULT 1,    -- the background insights analyser
    updated_at       INTEGER NOT NULL
);

-- Invite links: only the SHA-256 of the link's token is kept. Pending while `accepted_at` is
-- NULL and `expires_at` is in the future; accepting sets `accepted_at` and `user_id`.
CREATE TABLE invites (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    token_hash   BLOB NOT NULL UNIQUE,
    email        TEXT NOT NULL,                     -- lowercased
    role         TEXT NOT NULL,
    invited_by   BLOB,                              -- users.id, NULL when made with an API key
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    accepted_at  INTEGER,
    user_id      BLOB
);
CREATE INDEX invites_by_workspace ON invites (workspace_id, created_at);
