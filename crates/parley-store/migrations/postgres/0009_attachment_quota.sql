-- Attachment quota (issue 10): every attachment file Parley stores is recorded here, and each
-- workspace's bytes and files are counted in attachment_usage, maintained in the same
-- transaction as every record added or removed (the quota check reads one row, locked while a
-- file is admitted, so concurrent uploads on several servers cannot together pass the quota).
CREATE TABLE attachment_files (
    storage_key  text PRIMARY KEY,   -- '<workspace uuid>/<file uuid>' under <data_dir>/attachments
    workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    size_bytes   bigint NOT NULL,
    created_at   bigint NOT NULL
);
CREATE INDEX attachment_files_workspace ON attachment_files (workspace_id);

CREATE TABLE attachment_usage (
    workspace_id uuid PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    bytes        bigint NOT NULL DEFAULT 0,
    files        bigint NOT NULL DEFAULT 0
);

-- The files stored before this migration: those named by a message's meta.channel.attachments
-- with a storage key inside the message's own workspace's folder ('<workspace uuid>/' and a
-- 36-character file name).
INSERT INTO attachment_files (storage_key, workspace_id, size_bytes, created_at)
SELECT a.value ->> 'storage_key', c.workspace_id,
       greatest(coalesce((a.value ->> 'size_bytes')::bigint, 0), 0), m.created_at
FROM messages m
JOIN conversations c ON c.pk = m.conversation
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(m.meta::jsonb -> 'channel' -> 'attachments') = 'array'
         THEN m.meta::jsonb -> 'channel' -> 'attachments' ELSE '[]'::jsonb END) a
WHERE m.meta LIKE '%"storage_key"%'
  AND length(a.value ->> 'storage_key') = 73
  AND position('/' in substr(a.value ->> 'storage_key', 38)) = 0
  AND substr(a.value ->> 'storage_key', 1, 37) = c.workspace_id::text || '/'
ON CONFLICT (storage_key) DO NOTHING;

INSERT INTO attachment_usage (workspace_id, bytes, files)
SELECT workspace_id, sum(size_bytes), count(*) FROM attachment_files GROUP BY workspace_id;
