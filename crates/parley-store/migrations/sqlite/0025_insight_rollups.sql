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
    workspace_id           BLOB NOT NULL,
    hour                   INTEGER NOT NULL,
    channel                TEXT NOT NULL,
    assistant_id           BLOB NOT NULL,
    version                INTEGER NOT NULL,
    conversations          INTEGER NOT NULL DEFAULT 0,
    messages               INTEGER NOT NULL DEFAULT 0,
    resolved_by_ai         INTEGER NOT NULL DEFAULT 0,
    handed_off             INTEGER NOT NULL DEFAULT 0,
    unresolved             INTEGER NOT NULL DEFAULT 0,
    ongoing                INTEGER NOT NULL DEFAULT 0,
    rated                  INTEGER NOT NULL DEFAULT 0,
    rating_sum             INTEGER NOT NULL DEFAULT 0,
    rated_4_or_5           INTEGER NOT NULL DEFAULT 0,
    positive               INTEGER NOT NULL DEFAULT 0,
    neutral                INTEGER NOT NULL DEFAULT 0,
    negative               INTEGER NOT NULL DEFAULT 0,
    prompt_tokens          INTEGER NOT NULL DEFAULT 0,
    completion_tokens      INTEGER NOT NULL DEFAULT 0,
    cost_nanousd           INTEGER NOT NULL DEFAULT 0,
    first_responses        INTEGER NOT NULL DEFAULT 0,
    first_response_ms_sum  INTEGER NOT NULL DEFAULT 0,
    durations              INTEGER NOT NULL DEFAULT 0,
    duration_ms_sum        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hour, channel, assistant_id, version)
);
CREATE TABLE insight_topic_rollups (
    workspace_id           BLOB NOT NULL,
    hour                   INTEGER NOT NULL,
    channel                TEXT NOT NULL,
    assistant_id           BLOB NOT NULL,
    topic                  TEXT NOT NULL,
    conversations          INTEGER NOT NULL DEFAULT 0,
    messages               INTEGER NOT NULL DEFAULT 0,
    resolved_by_ai         INTEGER NOT NULL DEFAULT 0,
    handed_off             INTEGER NOT NULL DEFAULT 0,
    unresolved             INTEGER NOT NULL DEFAULT 0,
    ongoing                INTEGER NOT NULL DEFAULT 0,
    rated                  INTEGER NOT NULL DEFAULT 0,
    rating_sum             INTEGER NOT NULL DEFAULT 0,
    rated_4_or_5           INTEGER NOT NULL DEFAULT 0,
    positive               INTEGER NOT NULL DEFAULT 0,
    neutral                INTEGER NOT NULL DEFAULT 0,
    negative               INTEGER NOT NULL DEFAULT 0,
    prompt_tokens          INTEGER NOT NULL DEFAULT 0,
    completion_tokens      INTEGER NOT NULL DEFAULT 0,
    cost_nanousd           INTEGER NOT NULL DEFAULT 0,
    first_responses        INTEGER NOT NULL DEFAULT 0,
    first_response_ms_sum  INTEGER NOT NULL DEFAULT 0,
    durations              INTEGER NOT NULL DEFAULT 0,
    duration_ms_sum        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hour, channel, assistant_id, topic)
);
ALTER TABLE conversation_insights ADD COLUMN r_hour INTEGER;
ALTER TABLE conversation_insights ADD COLUMN r_channel TEXT;
ALTER TABLE conversation_insights ADD COLUMN r_assistant_id BLOB;
ALTER TABLE conversation_insights ADD COLUMN r_assistant_version INTEGER;
ALTER TABLE conversation_insights ADD COLUMN r_messages INTEGER;
ALTER TABLE conversation_insights ADD COLUMN r_rating INTEGER;
ALTER TABLE conversation_insights ADD COLUMN r_prompt_tokens INTEGER;
ALTER TABLE conversation_insights ADD COLUMN r_completion_tokens INTEGER;
ALTER TABLE conversation_insights ADD COLUMN r_cost_nanousd INTEGER;
ALTER TABLE conversation_insights ADD COLUMN r_label TEXT;
CREATE TRIGGER insight_rollup_insert AFTER INSERT ON conversation_insights
WHEN NEW.r_hour IS NOT NULL BEGIN
    INSERT INTO insight_rollups (workspace_id, hour, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (NEW.workspace_id, NEW.r_hour, NEW.r_channel, NEW.r_assistant_id, COALESCE(NEW.r_assistant_version, -1), 1, NEW.r_messages, CASE WHEN NEW.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'handed_off' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'unresolved' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'ongoing' THEN 1 ELSE 0 END, CASE WHEN NEW.r_rating > 0 THEN 1 ELSE 0 END, CASE WHEN NEW.r_rating > 0 THEN NEW.r_rating ELSE 0 END, CASE WHEN NEW.r_rating >= 4 THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'positive' THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'neutral' THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'negative' THEN 1 ELSE 0 END, NEW.r_prompt_tokens, NEW.r_completion_tokens, NEW.r_cost_nanousd, CASE WHEN NEW.first_response_ms IS NOT NULL THEN 1 ELSE 0 END, COALESCE(NEW.first_response_ms, 0), CASE WHEN NEW.duration_ms IS NOT NULL THEN 1 ELSE 0 END, COALESCE(NEW.duration_ms, 0))
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
    VALUES (NEW.workspace_id, NEW.r_hour, NEW.r_channel, NEW.r_assistant_id, COALESCE(NEW.topic, ''), 1, NEW.r_messages, CASE WHEN NEW.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'handed_off' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'unresolved' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'ongoing' THEN 1 ELSE 0 END, CASE WHEN NEW.r_rating > 0 THEN 1 ELSE 0 END, CASE WHEN NEW.r_rating > 0 THEN NEW.r_rating ELSE 0 END, CASE WHEN NEW.r_rating >= 4 THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'positive' THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'neutral' THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'negative' THEN 1 ELSE 0 END, NEW.r_prompt_tokens, NEW.r_completion_tokens, NEW.r_cost_nanousd, CASE WHEN NEW.first_response_ms IS NOT NULL THEN 1 ELSE 0 END, COALESCE(NEW.first_response_ms, 0), CASE WHEN NEW.duration_ms IS NOT NULL THEN 1 ELSE 0 END, COALESCE(NEW.duration_ms, 0))
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
END;
CREATE TRIGGER insight_rollup_delete AFTER DELETE ON conversation_insights
WHEN OLD.r_hour IS NOT NULL BEGIN
    INSERT INTO insight_rollups (workspace_id, hour, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (OLD.workspace_id, OLD.r_hour, OLD.r_channel, OLD.r_assistant_id, COALESCE(OLD.r_assistant_version, -1), -(1), -(OLD.r_messages), -(CASE WHEN OLD.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'handed_off' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'unresolved' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'ongoing' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_rating > 0 THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_rating > 0 THEN OLD.r_rating ELSE 0 END), -(CASE WHEN OLD.r_rating >= 4 THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'positive' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'neutral' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'negative' THEN 1 ELSE 0 END), -(OLD.r_prompt_tokens), -(OLD.r_completion_tokens), -(OLD.r_cost_nanousd), -(CASE WHEN OLD.first_response_ms IS NOT NULL THEN 1 ELSE 0 END), -(COALESCE(OLD.first_response_ms, 0)), -(CASE WHEN OLD.duration_ms IS NOT NULL THEN 1 ELSE 0 END), -(COALESCE(OLD.duration_ms, 0)))
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
    VALUES (OLD.workspace_id, OLD.r_hour, OLD.r_channel, OLD.r_assistant_id, COALESCE(OLD.topic, ''), -(1), -(OLD.r_messages), -(CASE WHEN OLD.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'handed_off' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'unresolved' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'ongoing' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_rating > 0 THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_rating > 0 THEN OLD.r_rating ELSE 0 END), -(CASE WHEN OLD.r_rating >= 4 THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'positive' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'neutral' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'negative' THEN 1 ELSE 0 END), -(OLD.r_prompt_tokens), -(OLD.r_completion_tokens), -(OLD.r_cost_nanousd), -(CASE WHEN OLD.first_response_ms IS NOT NULL THEN 1 ELSE 0 END), -(COALESCE(OLD.first_response_ms, 0)), -(CASE WHEN OLD.duration_ms IS NOT NULL THEN 1 ELSE 0 END), -(COALESCE(OLD.duration_ms, 0)))
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
END;
CREATE TRIGGER insight_rollup_update_old AFTER UPDATE ON conversation_insights
WHEN OLD.r_hour IS NOT NULL BEGIN
    INSERT INTO insight_rollups (workspace_id, hour, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (OLD.workspace_id, OLD.r_hour, OLD.r_channel, OLD.r_assistant_id, COALESCE(OLD.r_assistant_version, -1), -(1), -(OLD.r_messages), -(CASE WHEN OLD.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'handed_off' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'unresolved' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'ongoing' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_rating > 0 THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_rating > 0 THEN OLD.r_rating ELSE 0 END), -(CASE WHEN OLD.r_rating >= 4 THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'positive' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'neutral' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'negative' THEN 1 ELSE 0 END), -(OLD.r_prompt_tokens), -(OLD.r_completion_tokens), -(OLD.r_cost_nanousd), -(CASE WHEN OLD.first_response_ms IS NOT NULL THEN 1 ELSE 0 END), -(COALESCE(OLD.first_response_ms, 0)), -(CASE WHEN OLD.duration_ms IS NOT NULL THEN 1 ELSE 0 END), -(COALESCE(OLD.duration_ms, 0)))
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
    VALUES (OLD.workspace_id, OLD.r_hour, OLD.r_channel, OLD.r_assistant_id, COALESCE(OLD.topic, ''), -(1), -(OLD.r_messages), -(CASE WHEN OLD.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'handed_off' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'unresolved' THEN 1 ELSE 0 END), -(CASE WHEN OLD.resolution = 'ongoing' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_rating > 0 THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_rating > 0 THEN OLD.r_rating ELSE 0 END), -(CASE WHEN OLD.r_rating >= 4 THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'positive' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'neutral' THEN 1 ELSE 0 END), -(CASE WHEN OLD.r_label = 'negative' THEN 1 ELSE 0 END), -(OLD.r_prompt_tokens), -(OLD.r_completion_tokens), -(OLD.r_cost_nanousd), -(CASE WHEN OLD.first_response_ms IS NOT NULL THEN 1 ELSE 0 END), -(COALESCE(OLD.first_response_ms, 0)), -(CASE WHEN OLD.duration_ms IS NOT NULL THEN 1 ELSE 0 END), -(COALESCE(OLD.duration_ms, 0)))
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
END;
CREATE TRIGGER insight_rollup_update_new AFTER UPDATE ON conversation_insights
WHEN NEW.r_hour IS NOT NULL BEGIN
    INSERT INTO insight_rollups (workspace_id, hour, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (NEW.workspace_id, NEW.r_hour, NEW.r_channel, NEW.r_assistant_id, COALESCE(NEW.r_assistant_version, -1), 1, NEW.r_messages, CASE WHEN NEW.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'handed_off' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'unresolved' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'ongoing' THEN 1 ELSE 0 END, CASE WHEN NEW.r_rating > 0 THEN 1 ELSE 0 END, CASE WHEN NEW.r_rating > 0 THEN NEW.r_rating ELSE 0 END, CASE WHEN NEW.r_rating >= 4 THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'positive' THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'neutral' THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'negative' THEN 1 ELSE 0 END, NEW.r_prompt_tokens, NEW.r_completion_tokens, NEW.r_cost_nanousd, CASE WHEN NEW.first_response_ms IS NOT NULL THEN 1 ELSE 0 END, COALESCE(NEW.first_response_ms, 0), CASE WHEN NEW.duration_ms IS NOT NULL THEN 1 ELSE 0 END, COALESCE(NEW.duration_ms, 0))
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
    VALUES (NEW.workspace_id, NEW.r_hour, NEW.r_channel, NEW.r_assistant_id, COALESCE(NEW.topic, ''), 1, NEW.r_messages, CASE WHEN NEW.resolution = 'resolved_by_ai' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'handed_off' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'unresolved' THEN 1 ELSE 0 END, CASE WHEN NEW.resolution = 'ongoing' THEN 1 ELSE 0 END, CASE WHEN NEW.r_rating > 0 THEN 1 ELSE 0 END, CASE WHEN NEW.r_rating > 0 THEN NEW.r_rating ELSE 0 END, CASE WHEN NEW.r_rating >= 4 THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'positive' THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'neutral' THEN 1 ELSE 0 END, CASE WHEN NEW.r_label = 'negative' THEN 1 ELSE 0 END, NEW.r_prompt_tokens, NEW.r_completion_tokens, NEW.r_cost_nanousd, CASE WHEN NEW.first_response_ms IS NOT NULL THEN 1 ELSE 0 END, COALESCE(NEW.first_response_ms, 0), CASE WHEN NEW.duration_ms IS NOT NULL THEN 1 ELSE 0 END, COALESCE(NEW.duration_ms, 0))
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
END;
-- The insights stored so far are rolled up now (the update trigger adds each).
UPDATE conversation_insights SET
    r_hour = c.started_at - c.started_at % 3600000,
    r_channel = c.channel,
    r_assistant_id = c.assistant_id,
    r_assistant_version = c.assistant_version,
    r_messages = c.message_count,
    r_rating = c.rating,
    r_prompt_tokens = c.prompt_tokens,
    r_completion_tokens = c.completion_tokens,
    r_cost_nanousd = c.cost_nanousd,
    r_label = COALESCE(c.sentiment, conversation_insights.sentiment_label)
FROM conversations c WHERE c.pk = conversation_insights.conversation;
