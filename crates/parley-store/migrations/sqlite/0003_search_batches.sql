-- Search indexes, version 2.
--
-- 1. New rows are indexed by the store in one INSERT ... SELECT per write job instead of by
--    per-row triggers: once FTS5 takes part in a transaction it flushes its pending terms to a
--    new segment at every statement savepoint, and a trigger makes every message INSERT open
--    one, so per-row triggers wrote one tiny segment per message and spent their time merging.
--    The delete and update triggers stay (deletes and edits are rare and per row anyway).
-- 2. detail=none: the indexes keep which rows hold each trigram, not where. A term of more than
--    three characters is looked up as all of its trigrams, and every candidate is then verified
--    against the text, so results stay exact; the index is about a third of the size.

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
DROP TABLE messages_fts;

CREATE VIRTUAL TABLE messages_fts USING fts5 (
    content,
    content = 'messages', content_rowid = 'pk',
    tokenize = 'trigram case_sensitive 0', detail = none
);

INSERT INTO messages_fts (rowid, content)
    SELECT pk, content FROM messages WHERE visible_seq IS NOT NULL;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.visible_seq IS NOT NULL
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages WHEN old.visible_seq IS NOT NULL
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.pk, new.content);
END;

DROP TRIGGER conversations_fts_insert;
DROP TRIGGER conversations_fts_delete;
DROP TRIGGER conversations_fts_update;
DROP TABLE conversations_fts;

CREATE VIRTUAL TABLE conversations_fts USING fts5 (
    session_id, contact, assistant_name,
    content = 'conversations', content_rowid = 'pk',
    tokenize = 'trigram case_sensitive 0', detail = none
);

INSERT INTO conversations_fts (rowid, session_id, contact, assistant_name)
    SELECT pk, session_id, contact, assistant_name FROM conversations;

CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations
BEGIN
    INSERT INTO conversations_fts (conversations_fts, rowid, session_id, contact, assistant_name)
    VALUES ('delete', old.pk, old.session_id, old.contact, old.assistant_name);
END;

CREATE TRIGGER conversations_fts_update AFTER UPDATE OF session_id, contact, assistant_name ON conversations
BEGIN
    INSERT INTO conversations_fts (conversations_fts, rowid, session_id, contact, assistant_name)
    VALUES ('delete', old.pk, old.session_id, old.contact, old.assistant_name);
    INSERT INTO conversations_fts (rowid, session_id, contact, assistant_name)
    VALUES (new.pk, new.session_id, new.contact, new.assistant_name);
END;

-- Bigger in-memory term buffers (16 MiB instead of 1 MiB): fewer, larger segments to merge.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('hashsize', 16777216);
INSERT INTO conversations_fts (conversations_fts, rank) VALUES ('hashsize', 16777216);
