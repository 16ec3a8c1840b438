-- Dashboard users, sign-in sessions and failed sign-ins (the rate limit lives in the database so
-- every server behind a load balancer sees the same count).

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL,
    created_at    bigint NOT NULL
);

CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id),
    csrf_token text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL
);

CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE login_failures (
    subject text NOT NULL,
    at      bigint NOT NULL
);

CREATE INDEX login_failures_by_subject ON login_failures (subject, at);
