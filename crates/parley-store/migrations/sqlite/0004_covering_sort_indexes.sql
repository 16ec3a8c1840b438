-- The list's sort indexes also carry the filter columns (channel, status, rating), so a page
-- walked in sort order tests its filters inside the index, without reading each row: a rare
-- channel or a date range under another sort no longer costs one table read per row skipped.
DROP INDEX conversations_by_date;
DROP INDEX conversations_by_messages;
DROP INDEX conversations_by_rating;
DROP INDEX conversations_by_agent;
DROP INDEX conversations_by_status;
CREATE INDEX conversations_by_date     ON conversations (workspace_id, last_message_at, id, channel, status, rating);
CREATE INDEX conversations_by_messages ON conversations (workspace_id, message_count, last_message_at, id, channel, status, rating);
CREATE INDEX conversations_by_rating   ON conversations (workspace_id, rating, last_message_at, id, channel, status);
CREATE INDEX conversations_by_agent    ON conversations (workspace_id, assistant_name, last_message_at, id, channel, status, rating);
CREATE INDEX conversations_by_status   ON conversations (workspace_id, status, last_message_at, id, channel, rating);
