-- The team acts (issue 14): who handles a conversation besides its assistant.
-- `taken_over_at`: a team member took over (hybrid mode): the assistant stays silent here until
-- "Hand back to AI" clears it (ms since the epoch, UTC; NULL = the assistant may answer).
-- `handoff_reason` / `handoff_at`: the assistant's `hand_off` tool asked for a human ("Needs a
-- human"); cleared when a team member replies, takes over, or closes it.
-- `assignee_id`: the member (users.id) the conversation is assigned to.
ALTER TABLE conversations ADD COLUMN taken_over_at INTEGER;
ALTER TABLE conversations ADD COLUMN handoff_reason TEXT;
ALTER TABLE conversations ADD COLUMN handoff_at INTEGER;
ALTER TABLE conversations ADD COLUMN assignee_id BLOB;
CREATE INDEX conversations_needing_a_human ON conversations (workspace_id, handoff_at)
    WHERE handoff_at IS NOT NULL;
CREATE INDEX conversations_by_assignee ON conversations (workspace_id, assignee_id)
    WHERE assignee_id IS NOT NULL;
