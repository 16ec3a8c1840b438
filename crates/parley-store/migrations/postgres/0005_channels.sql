-- WhatsApp and Telegram channels (issue 7): a sender (WhatsApp phone number, Telegram bot)
-- connected to an assistant, with its settings and sealed secrets, and a lookup of messages by
-- their channel id for delivery status callbacks.

CREATE TABLE channel_connections (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    assistant_id uuid NOT NULL REFERENCES assistants (id),
    kind         text NOT NULL,            -- whatsapp | telegram
    external_key text NOT NULL,            -- phone number id | bot id
    config       text NOT NULL,            -- JSON object, nothing secret
    secrets      text NOT NULL,            -- JSON {name: {sealed, hint}}
    created_at   bigint NOT NULL,
    UNIQUE (kind, external_key)
);

CREATE INDEX channel_connections_by_assistant
    ON channel_connections (workspace_id, assistant_id, created_at);

CREATE INDEX messages_by_external_id ON messages (external_id) WHERE external_id IS NOT NULL;
