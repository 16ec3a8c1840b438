-- Insight rollups (issue 13): the sums behind /api/v1/insights/* per workspace, UTC hour
-- (`hour`, ms since the epoch of its first millisecond), channel, assistant and assistant
-- version (`insight_rollups`, version -1 = none recorded) or topic (`insight_topic_rollups`,
-- '' = in no topic). Each column is the sum over the conversations started in that hour of what
-- `InsightTotals` names. A conversation counts once its insight row is written: that row keeps
-- the conversation's values as they were rolled up (`r_*`, read from `conversations` when the
-- analyser saves the insight; `r_hour` NULL = not rolled up), and the triggers below subtract
-- the old contribution and add the new one in the statement that inserts, changes (a new
-- analysis, a topic assignment) or deletes (the conversation's deletion, retention) the row, so
-- the rollups change in the same transaction as the insights.
CREATE TABLE insight_rollups (
    workspace_id           uuid NOT NULL,
    hour                   bigint NOT NULL,
    channel                text NOT NULL,
    assistant_id           uuid NOT NULL,
    version                bigint NOT NULL,
    conversations          bigint NOT NULL DEFAULT 0,
    messages               bigint NOT NULL DEFAULT 0,
    resolved_by_ai         bigint NOT NULL DEFAULT 0,
    handed_off             bigint NOT NULL DEFAULT 0,
    unresolved             bigint NOT NULL DEFAULT 0,
    ongoing                bigint NOT NULL DEFAULT 0,
    rated                  bigint NOT NULL DEFAULT 0,
    rating_sum             bigint NOT NULL DEFAULT 0,
    rated_4_or_5           bigint NOT NULL DEFAULT 0,
    positive               bigint NOT NULL DEFAULT 0,
    neutral                bigint NOT NULL DEFAULT 0,
    negative               bigint NOT NULL DEFAULT 0,
    prompt_tokens          bigint NOT NULL DEFAULT 0,
    completion_tokens      bigint NOT NULL DEFAULT 0,
    cost_nanousd           bigint NOT NULL DEFAULT 0,
    first_responses        bigint NOT NULL DEFAULT 0,
    first_response_ms_sum  bigint NOT NULL DEFAULT 0,
    durations              bigint NOT NULL DEFAULT 0,
    duration_ms_sum        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hour, channel, assistant_id, version)
);
CREATE TABLE insight_topic_rollups (
    workspace_id           uuid NOT NULL,
    hour                   bigint NOT NULL,
    channel                text NOT NULL,
    assistant_id           uuid NOT NULL,
    topic                  text NOT NULL,
    conversations          bigint NOT NULL DEFAULT 0,
    messages               bigint NOT NULL DEFAULT 0,
    resolved_by_ai         bigint NOT NULL DEFAULT 0,
    handed_off             bigint NOT NULL DEFAULT 0,
    unresolved             bigint NOT NULL DEFAULT 0,
    ongoing                bigint NOT NULL DEFAULT 0,
    rated                  bigint NOT NULL DEFAULT 0,
    rating_sum             bigint NOT NULL DEFAULT 0,
    rated_4_or_5           bigint NOT NULL DEFAULT 0,
    positive               bigint NOT NULL DEFAULT 0,
    neutral                bigint NOT NULL DEFAULT 0,
    negative               bigint NOT NULL DEFAULT 0,
    prompt_tokens          bigint NOT NULL DEFAULT 0,
    completion_tokens      bigint NOT NULL DEFAULT 0,
    cost_nanousd           bigint NOT NULL DEFAULT 0,
    first_responses        bigint NOT NULL DEFAULT 0,
    first_response_ms_sum  bigint NOT NULL DEFAULT 0,
    durations              bigint NOT NULL DEFAULT 0,
    duration_ms_sum        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hour, channel, assistant_id, topic)
);
ALTER TABLE conversation_insights ADD COLUMN r_hour bigint;
ALTER TABLE conversation_insights ADD COLUMN r_channel text;
ALTER TABLE conversation_insights ADD COLUMN r_assistant_id uuid;
ALTER TABLE conversation_insights ADD COLUMN r_assistant_version bigint;
ALTER TABLE conversation_insights ADD COLUMN r_messages bigint;
ALTER TABLE conversation_insights ADD COLUMN r_rating bigint;
ALTER TABLE conversation_insights ADD COLUMN r_prompt_tokens bigint;
ALTER TABLE conversation_insights ADD COLUMN r_completion_tokens bigint;
ALTER TABLE conversation_insights ADD COLUMN r_cost_nanousd bigint;
ALTER TABLE conversation_insights ADD COLUMN r_label text;
-- Adds (s = 1) or subtracts (s = -1) one insight row's contribution.
CREATE FUNCTION insight_rollup_apply(x conversation_insights, s bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO insight_rollups (workspace_id, hour, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (x.workspace_id, x.r_hour, x.r_channel, x.r_assistant_id, COALESCE(x.r_assistant_version, -1), s * (1), s * (x.r_messages), s * (CASE WHEN x.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END), s * (CASE WHEN x.resolution = 'handed_off' THEN 1 ELSE 0 END), s * (CASE WHEN x.resolution = 'unresolved' THEN 1 ELSE 0 END), s * (CASE WHEN x.resolution = 'ongoing' THEN 1 ELSE 0 END), s * (CASE WHEN x.r_rating > 0 THEN 1 ELSE 0 END), s * (CASE WHEN x.r_rating > 0 THEN x.r_rating ELSE 0 END), s * (CASE WHEN x.r_rating >= 4 THEN 1 ELSE 0 END), s * (CASE WHEN x.r_label = 'positive' THEN 1 ELSE 0 END), s * (CASE WHEN x.r_label = 'neutral' THEN 1 ELSE 0 END), s * (CASE WHEN x.r_label = 'negative' THEN 1 ELSE 0 END), s * (x.r_prompt_tokens), s * (x.r_completion_tokens), s * (x.r_cost_nanousd), s * (CASE WHEN x.first_response_ms IS NOT NULL THEN 1 ELSE 0 END), s * (COALESCE(x.first_response_ms, 0)), s * (CASE WHEN x.duration_ms IS NOT NULL THEN 1 ELSE 0 END), s * (COALESCE(x.duration_ms, 0)))
    ON CONFLICT (workspace_id, hour, channel, assistant_id, version) DO UPDATE SET
        conversations = insight_rollups.conversations + excluded.conversations,
        messages = insight_rollups.messages + excluded.messages,
        resolved_by_ai = insight_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_rollups.handed_off + excluded.handed_off,
        unresolved = insight_rollups.unresolved + excluded.unresolved,
        ongoing = insight_rollups.ongoing + excluded.ongoing,
        rated = insight_rollups.rated + excluded.rated,
        rating_sum = insight_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_rollups.positive + excluded.positive,
        neutral = insight_rollups.neutral + excluded.neutral,
        negative = insight_rollups.negative + excluded.negative,
        prompt_tokens = insight_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_rollups.durations + excluded.durations,
        duration_ms_sum = insight_rollups.duration_ms_sum + excluded.duration_ms_sum;
    INSERT INTO insight_topic_rollups (workspace_id, hour, channel, assistant_id, topic, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (x.workspace_id, x.r_hour, x.r_channel, x.r_assistant_id, COALESCE(x.topic, ''), s * (1), s * (x.r_messages), s * (CASE WHEN x.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END), s * (CASE WHEN x.resolution = 'handed_off' THEN 1 ELSE 0 END), s * (CASE WHEN x.resolution = 'unresolved' THEN 1 ELSE 0 END), s * (CASE WHEN x.resolution = 'ongoing' THEN 1 ELSE 0 END), s * (CASE WHEN x.r_rating > 0 THEN 1 ELSE 0 END), s * (CASE WHEN x.r_rating > 0 THEN x.r_rating ELSE 0 END), s * (CASE WHEN x.r_rating >= 4 THEN 1 ELSE 0 END), s * (CASE WHEN x.r_label = 'positive' THEN 1 ELSE 0 END), s * (CASE WHEN x.r_label = 'neutral' THEN 1 ELSE 0 END), s * (CASE WHEN x.r_label = 'negative' THEN 1 ELSE 0 END), s * (x.r_prompt_tokens), s * (x.r_completion_tokens), s * (x.r_cost_nanousd), s * (CASE WHEN x.first_response_ms IS NOT NULL THEN 1 ELSE 0 END), s * (COALESCE(x.first_response_ms, 0)), s * (CASE WHEN x.duration_ms IS NOT NULL THEN 1 ELSE 0 END), s * (COALESCE(x.duration_ms, 0)))
    ON CONFLICT (workspace_id, hour, channel, assistant_id, topic) DO UPDATE SET
        conversations = insight_topic_rollups.conversations + excluded.conversations,
        messages = insight_topic_rollups.messages + excluded.messages,
        resolved_by_ai = insight_topic_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_topic_rollups.handed_off + excluded.handed_off,
        unresolved = insight_topic_rollups.unresolved + excluded.unresolved,
        ongoing = insight_topic_rollups.ongoing + excluded.ongoing,
        rated = insight_topic_rollups.rated + excluded.rated,
        rating_sum = insight_topic_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_topic_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_topic_rollups.positive + excluded.positive,
        neutral = insight_topic_rollups.neutral + excluded.neutral,
        negative = insight_topic_rollups.negative + excluded.negative,
        prompt_tokens = insight_topic_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_topic_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_topic_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_topic_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_topic_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_topic_rollups.durations + excluded.durations,
        duration_ms_sum = insight_topic_rollups.duration_ms_sum + excluded.duration_ms_sum;
END
$$;
CREATE FUNCTION insight_rollup_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.r_hour IS NOT NULL THEN
        PERFORM insight_rollup_apply(OLD, -1);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.r_hour IS NOT NULL THEN
        PERFORM insight_rollup_apply(NEW, 1);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER insight_rollup AFTER INSERT OR UPDATE OR DELETE ON conversation_insights
FOR EACH ROW EXECUTE FUNCTION insight_rollup_trigger();
-- The insights stored so far are rolled up now (the trigger adds each).
UPDATE conversation_insights i SET
    r_hour = c.started_at - mod(c.started_at, 3600000),
    r_channel = c.channel,
    r_assistant_id = c.assistant_id,
    r_assistant_version = c.assistant_version,
    r_messages = c.message_count,
    r_rating = c.rating,
    r_prompt_tokens = c.prompt_tokens,
    r_completion_tokens = c.completion_tokens,
    r_cost_nanousd = c.cost_nanousd,
    r_label = COALESCE(c.sentiment, i.sentiment_label)
FROM conversations c WHERE c.pk = i.conversation;
