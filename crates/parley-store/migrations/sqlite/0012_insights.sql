-- Insights (issue 13): what Parley computed for each conversation (parley_core::insights),
-- written off the request path by the `insights.analyse` job and `parley analyse`. One row per
-- conversation, gone with it. `analysed_at` is compared with conversations.updated_at to find
-- the conversations whose insight is missing or stale.
CREATE TABLE conversation_insights (
    conversation      INTEGER PRIMARY KEY REFERENCES conversations (pk) ON DELETE CASCADE,
    workspace_id      BLOB NOT NULL,
    sentiment_label   TEXT,              -- positive | neutral | negative; NULL = not analysed
    sentiment_score   REAL,              -- [-1, 1]
    sentiment_source  TEXT,              -- client | lexicon
    sentiment_shift   TEXT,              -- improved | steady | worsened
    language          TEXT,              -- ISO 639-3
    resolution        TEXT NOT NULL,     -- resolved_by_ai | handed_off | unresolved | ongoing
    first_response_ms INTEGER,
    duration_ms       INTEGER,
    analysed_at       INTEGER NOT NULL   -- ms since the epoch, UTC
);
CREATE INDEX conversation_insights_workspace ON conversation_insights (workspace_id, resolution);
