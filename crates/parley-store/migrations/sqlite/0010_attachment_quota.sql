-- Attachment quota (issue 10): every attachment file Parley stores is recorded here, and each
-- workspace's bytes and files are counted in attachment_usage, maintained in the same
-- transaction as every record added or removed (the quota check reads one row).
CREATE TABLE attachment_files (
    storage_key  TEXT PRIMARY KEY,   -- '<workspace uuid>/<file uuid>' under <data_dir>/attachments
    workspace_id BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    size_bytes   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX attachment_files_workspace ON attachment_files (workspace_id);

CREATE TABLE attachment_usage (
    workspace_id BLOB PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    bytes        INTEGER NOT NULL DEFAULT 0,
    files        INTEGER NOT NULL DEFAULT 0
);

-- The files stored before this migration: those named by a message's meta.channel.attachments
-- with a storage key inside the message's own workspace's folder ('<workspace uuid>/' and a
-- 36-character file name).
INSERT OR IGNORE INTO attachment_files (storage_key, workspace_id, size_bytes, created_at)
SELECT json_extract(a.value, '$.storage_key'), c.workspace_id,
       max(coalesce(json_extract(a.value, '$.size_bytes'), 0), 0), m.created_at
FROM messages m
JOIN conversations c ON c.pk = m.conversation
JOIN json_each(m.meta, '$.channel.attachments') a
WHERE m.meta LIKE '%"storage_key"%' AND json_valid(m.meta)
  AND length(json_extract(a.value, '$.storage_key')) = 73
  AND instr(substr(json_extract(a.value, '$.storage_key'), 38), '/') = 0
  AND substr(json_extract(a.value, '$.storage_key'), 1, 37) =
      lower(substr(hex(c.workspace_id), 1, 8) || '-' || substr(hex(c.workspace_id), 9, 4) || '-' ||
            substr(hex(c.workspace_id), 13, 4) || '-' || substr(hex(c.workspace_id), 17, 4) || '-' ||
            substr(hex(c.workspace_id), 21, 12)) || '/';

INSERT INTO attachment_usage (workspace_id, bytes, files)
SELECT workspace_id, sum(size_bytes), count(*) FROM attachment_files GROUP BY workspace_id;
