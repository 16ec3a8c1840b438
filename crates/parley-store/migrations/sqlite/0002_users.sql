-- Dashboard users, their sign-in sessions, and failed sign-ins (for the rate limit; kept in the
-- database so that several servers share it).

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id),
    email         TEXT NOT NULL UNIQUE,   -- lowercased
    password_hash TEXT NOT NULL,          -- PHC string, Argon2id
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,          -- SHA-256 of the cookie's token
    user_id    BLOB NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE login_failures (
    subject TEXT NOT NULL,                -- "email:<address>" or "ip:<address>"
    at      INTEGER NOT NULL
);

CREATE INDEX login_failures_by_subject ON login_failures (subject, at);
