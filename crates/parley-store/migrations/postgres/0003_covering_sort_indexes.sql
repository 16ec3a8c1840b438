-- The list's sort indexes also carry the filter columns (channel, status, rating), so a page
-- walked in sort order can test its filters in an index-only scan.
DROP INDEX conversations_by_date;
DROP INDEX conversations_by_messages;
DROP INDEX conversations_by_rating;
DROP INDEX conversations_by_agent;
DROP INDEX conversations_by_status;
CREATE INDEX conversations_by_date     ON conversations (workspace_id, last_message_at, id) INCLUDE (channel, status, rating);
CREATE INDEX conversations_by_messages ON conversations (workspace_id, message_count, last_message_at, id) INCLUDE (channel, status, rating);
CREATE INDEX conversations_by_rating   ON conversations (workspace_id, rating, last_message_at, id) INCLUDE (channel, status);
CREATE INDEX conversations_by_agent    ON conversations (workspace_id, assistant_name, last_message_at, id) INCLUDE (channel, status, rating);
CREATE INDEX conversations_by_status   ON conversations (workspace_id, status, last_message_at, id) INCLUDE (channel, rating);
