-- Insights (issue 13): what Parley computed for each conversation (parley_core::insights),
-- written off the request path by the `insights.analyse` job and `parley analyse`. One row per
-- conversation, gone with it. `analysed_at` is compared with conversations.updated_at to find
-- the conversations whose insight is missing or stale.
CREATE TABLE conversation_insights (
    conversation      bigint PRIMARY KEY REFERENCES conversations (pk) ON DELETE CASCADE,
    workspace_id      uuid NOT NULL,
    sentiment_label   text,              -- positive | neutral | negative; NULL = not analysed
    sentiment_score   double precision,  -- [-1, 1]
    sentiment_source  text,              -- client | lexicon
    sentiment_shift   text,              -- improved | steady | worsened
    language          text,              -- ISO 639-3
    resolution        text NOT NULL,     -- resolved_by_ai | handed_off | unresolved | ongoing
    first_response_ms bigint,
    duration_ms       bigint,
    analysed_at       bigint NOT NULL    -- ms since the epoch, UTC
);
CREATE INDEX conversation_insights_workspace ON conversation_insights (workspace_id, resolution);
