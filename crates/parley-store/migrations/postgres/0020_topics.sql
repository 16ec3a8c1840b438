-- Key phrases and topics (issue 13). Each conversation's key phrases (a JSON array of strings,
-- best first; NULL = none) and the key of the workspace topic it belongs to (NULL = none) sit
-- beside its other insights. `workspace_topics` holds each workspace's learned topics in
-- learning order (`position` 0 first; `phrases` a JSON array naming it, its key first);
-- `topic_learning` when they were learned and when an analysis last changed key phrases, both
-- ms since the epoch (UTC), so the analyser knows when to learn them again.
ALTER TABLE conversation_insights ADD COLUMN key_phrases text;
ALTER TABLE conversation_insights ADD COLUMN topic text;
CREATE INDEX conversation_insights_topic ON conversation_insights (workspace_id, topic);
CREATE TABLE workspace_topics (
    workspace_id  uuid NOT NULL,
    position      integer NOT NULL,
    topic         text NOT NULL,
    phrases       text NOT NULL,
    conversations bigint NOT NULL,
    PRIMARY KEY (workspace_id, position)
);
CREATE TABLE topic_learning (
    workspace_id uuid PRIMARY KEY,
    learned_at   bigint NOT NULL DEFAULT 0,
    changed_at   bigint NOT NULL DEFAULT 0
);
-- The insights stored so far have no key phrases: every conversation is analysed again, from
-- the start of each workspace's walk.
UPDATE conversation_insights SET analysed_at = 0;
DELETE FROM insight_watermarks;
