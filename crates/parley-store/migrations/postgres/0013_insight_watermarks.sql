-- Insights kept current (issue 13): the analyser walks each workspace's conversations in
-- (updated_at, pk) order past a stored watermark, so finding the changed ones is an index range
-- scan and the write path stays as it was (one more index entry). One watermark row per
-- workspace; `claimed_by` / `claimed_until` is the lease that keeps two servers from analysing
-- the same workspace at once.
CREATE INDEX conversations_by_updated ON conversations (workspace_id, updated_at, pk);
CREATE TABLE insight_watermarks (
    workspace_id  uuid PRIMARY KEY,
    updated_at    bigint NOT NULL,       -- ms since the epoch, UTC: everything up to here,
    pk            bigint NOT NULL,       -- and up to this conversation pk at it, is analysed
    claimed_by    text,
    claimed_until bigint NOT NULL DEFAULT 0
);
