-- Insights kept current (issue 13): the analyser walks each workspace's conversations in
-- (updated_at, pk) order past a stored watermark, so finding the changed ones is an index range
-- scan and the write path stays as it was (one more index entry). One watermark row per
-- workspace; `claimed_by` / `claimed_until` is the lease that keeps two servers (PostgreSQL)
-- from analysing the same workspace at once.
CREATE INDEX conversations_by_updated ON conversations (workspace_id, updated_at);
CREATE TABLE insight_watermarks (
    workspace_id  BLOB PRIMARY KEY,
    updated_at    INTEGER NOT NULL,      -- ms since the epoch, UTC: everything up to here,
    pk            INTEGER NOT NULL,      -- and up to this conversation pk at it, is analysed
    claimed_by    TEXT,
    claimed_until INTEGER NOT NULL DEFAULT 0
);
