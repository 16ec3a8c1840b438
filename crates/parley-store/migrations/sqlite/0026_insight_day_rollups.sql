-- Coarser insight rollups (issue 13), derived from the hourly ones of migration
-- `insight_rollups` so the insights figures read few rows at 1 M conversations:
-- `insight_day_rollups` (per workspace, UTC day, channel, assistant, version: whole days of the
-- summary, the day and week series at whole-day offsets, the assistants table),
-- `insight_channel_rollups` (per workspace, UTC hour, channel: the heatmap and hour series
-- when no assistant filter is given) and `insight_topic_day_rollups` (per workspace, UTC day,
-- channel, assistant, topic: the topics table). `day` is the first millisecond of the UTC
-- day. Triggers on the hourly tables add each change of an hourly row (its new sums minus its
-- old ones; a row's key never changes) to the rows it rolls into, in the same statement, so
-- every coarse row is always the sum of its hourly rows.
CREATE TABLE insight_day_rollups (
    workspace_id           BLOB NOT NULL,
    day                    INTEGER NOT NULL,
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
    PRIMARY KEY (workspace_id, day, channel, assistant_id, version)
) WITHOUT ROWID;
CREATE TABLE insight_channel_rollups (
    workspace_id           BLOB NOT NULL,
    hour                   INTEGER NOT NULL,
    channel                TEXT NOT NULL,
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
    PRIMARY KEY (workspace_id, hour, channel)
) WITHOUT ROWID;
CREATE TABLE insight_topic_day_rollups (
    workspace_id           BLOB NOT NULL,
    day                    INTEGER NOT NULL,
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
    PRIMARY KEY (workspace_id, day, channel, assistant_id, topic)
) WITHOUT ROWID;
CREATE TRIGGER insight_rollup_derive_insert AFTER INSERT ON insight_rollups BEGIN
    INSERT INTO insight_day_rollups (workspace_id, day, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (NEW.workspace_id, (NEW.hour - ((NEW.hour % 86400000) + 86400000) % 86400000), NEW.channel, NEW.assistant_id, NEW.version, NEW.conversations, NEW.messages, NEW.resolved_by_ai, NEW.handed_off, NEW.unresolved, NEW.ongoing, NEW.rated, NEW.rating_sum, NEW.rated_4_or_5, NEW.positive, NEW.neutral, NEW.negative, NEW.prompt_tokens, NEW.completion_tokens, NEW.cost_nanousd, NEW.first_responses, NEW.first_response_ms_sum, NEW.durations, NEW.duration_ms_sum)
    ON CONFLICT (workspace_id, day, channel, assistant_id, version) DO UPDATE SET
        conversations = insight_day_rollups.conversations + excluded.conversations,
        messages = insight_day_rollups.messages + excluded.messages,
        resolved_by_ai = insight_day_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_day_rollups.handed_off + excluded.handed_off,
        unresolved = insight_day_rollups.unresolved + excluded.unresolved,
        ongoing = insight_day_rollups.ongoing + excluded.ongoing,
        rated = insight_day_rollups.rated + excluded.rated,
        rating_sum = insight_day_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_day_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_day_rollups.positive + excluded.positive,
        neutral = insight_day_rollups.neutral + excluded.neutral,
        negative = insight_day_rollups.negative + excluded.negative,
        prompt_tokens = insight_day_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_day_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_day_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_day_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_day_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_day_rollups.durations + excluded.durations,
        duration_ms_sum = insight_day_rollups.duration_ms_sum + excluded.duration_ms_sum;
    INSERT INTO insight_channel_rollups (workspace_id, hour, channel, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (NEW.workspace_id, NEW.hour, NEW.channel, NEW.conversations, NEW.messages, NEW.resolved_by_ai, NEW.handed_off, NEW.unresolved, NEW.ongoing, NEW.rated, NEW.rating_sum, NEW.rated_4_or_5, NEW.positive, NEW.neutral, NEW.negative, NEW.prompt_tokens, NEW.completion_tokens, NEW.cost_nanousd, NEW.first_responses, NEW.first_response_ms_sum, NEW.durations, NEW.duration_ms_sum)
    ON CONFLICT (workspace_id, hour, channel) DO UPDATE SET
        conversations = insight_channel_rollups.conversations + excluded.conversations,
        messages = insight_channel_rollups.messages + excluded.messages,
        resolved_by_ai = insight_channel_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_channel_rollups.handed_off + excluded.handed_off,
        unresolved = insight_channel_rollups.unresolved + excluded.unresolved,
        ongoing = insight_channel_rollups.ongoing + excluded.ongoing,
        rated = insight_channel_rollups.rated + excluded.rated,
        rating_sum = insight_channel_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_channel_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_channel_rollups.positive + excluded.positive,
        neutral = insight_channel_rollups.neutral + excluded.neutral,
        negative = insight_channel_rollups.negative + excluded.negative,
        prompt_tokens = insight_channel_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_channel_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_channel_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_channel_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_channel_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_channel_rollups.durations + excluded.durations,
        duration_ms_sum = insight_channel_rollups.duration_ms_sum + excluded.duration_ms_sum;
END;
CREATE TRIGGER insight_rollup_derive_update AFTER UPDATE ON insight_rollups BEGIN
    INSERT INTO insight_day_rollups (workspace_id, day, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (NEW.workspace_id, (NEW.hour - ((NEW.hour % 86400000) + 86400000) % 86400000), NEW.channel, NEW.assistant_id, NEW.version, NEW.conversations - OLD.conversations, NEW.messages - OLD.messages, NEW.resolved_by_ai - OLD.resolved_by_ai, NEW.handed_off - OLD.handed_off, NEW.unresolved - OLD.unresolved, NEW.ongoing - OLD.ongoing, NEW.rated - OLD.rated, NEW.rating_sum - OLD.rating_sum, NEW.rated_4_or_5 - OLD.rated_4_or_5, NEW.positive - OLD.positive, NEW.neutral - OLD.neutral, NEW.negative - OLD.negative, NEW.prompt_tokens - OLD.prompt_tokens, NEW.completion_tokens - OLD.completion_tokens, NEW.cost_nanousd - OLD.cost_nanousd, NEW.first_responses - OLD.first_responses, NEW.first_response_ms_sum - OLD.first_response_ms_sum, NEW.durations - OLD.durations, NEW.duration_ms_sum - OLD.duration_ms_sum)
    ON CONFLICT (workspace_id, day, channel, assistant_id, version) DO UPDATE SET
        conversations = insight_day_rollups.conversations + excluded.conversations,
        messages = insight_day_rollups.messages + excluded.messages,
        resolved_by_ai = insight_day_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_day_rollups.handed_off + excluded.handed_off,
        unresolved = insight_day_rollups.unresolved + excluded.unresolved,
        ongoing = insight_day_rollups.ongoing + excluded.ongoing,
        rated = insight_day_rollups.rated + excluded.rated,
        rating_sum = insight_day_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_day_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_day_rollups.positive + excluded.positive,
        neutral = insight_day_rollups.neutral + excluded.neutral,
        negative = insight_day_rollups.negative + excluded.negative,
        prompt_tokens = insight_day_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_day_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_day_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_day_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_day_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_day_rollups.durations + excluded.durations,
        duration_ms_sum = insight_day_rollups.duration_ms_sum + excluded.duration_ms_sum;
    INSERT INTO insight_channel_rollups (workspace_id, hour, channel, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (NEW.workspace_id, NEW.hour, NEW.channel, NEW.conversations - OLD.conversations, NEW.messages - OLD.messages, NEW.resolved_by_ai - OLD.resolved_by_ai, NEW.handed_off - OLD.handed_off, NEW.unresolved - OLD.unresolved, NEW.ongoing - OLD.ongoing, NEW.rated - OLD.rated, NEW.rating_sum - OLD.rating_sum, NEW.rated_4_or_5 - OLD.rated_4_or_5, NEW.positive - OLD.positive, NEW.neutral - OLD.neutral, NEW.negative - OLD.negative, NEW.prompt_tokens - OLD.prompt_tokens, NEW.completion_tokens - OLD.completion_tokens, NEW.cost_nanousd - OLD.cost_nanousd, NEW.first_responses - OLD.first_responses, NEW.first_response_ms_sum - OLD.first_response_ms_sum, NEW.durations - OLD.durations, NEW.duration_ms_sum - OLD.duration_ms_sum)
    ON CONFLICT (workspace_id, hour, channel) DO UPDATE SET
        conversations = insight_channel_rollups.conversations + excluded.conversations,
        messages = insight_channel_rollups.messages + excluded.messages,
        resolved_by_ai = insight_channel_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_channel_rollups.handed_off + excluded.handed_off,
        unresolved = insight_channel_rollups.unresolved + excluded.unresolved,
        ongoing = insight_channel_rollups.ongoing + excluded.ongoing,
        rated = insight_channel_rollups.rated + excluded.rated,
        rating_sum = insight_channel_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_channel_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_channel_rollups.positive + excluded.positive,
        neutral = insight_channel_rollups.neutral + excluded.neutral,
        negative = insight_channel_rollups.negative + excluded.negative,
        prompt_tokens = insight_channel_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_channel_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_channel_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_channel_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_channel_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_channel_rollups.durations + excluded.durations,
        duration_ms_sum = insight_channel_rollups.duration_ms_sum + excluded.duration_ms_sum;
END;
CREATE TRIGGER insight_rollup_derive_delete AFTER DELETE ON insight_rollups BEGIN
    INSERT INTO insight_day_rollups (workspace_id, day, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (OLD.workspace_id, (OLD.hour - ((OLD.hour % 86400000) + 86400000) % 86400000), OLD.channel, OLD.assistant_id, OLD.version, -OLD.conversations, -OLD.messages, -OLD.resolved_by_ai, -OLD.handed_off, -OLD.unresolved, -OLD.ongoing, -OLD.rated, -OLD.rating_sum, -OLD.rated_4_or_5, -OLD.positive, -OLD.neutral, -OLD.negative, -OLD.prompt_tokens, -OLD.completion_tokens, -OLD.cost_nanousd, -OLD.first_responses, -OLD.first_response_ms_sum, -OLD.durations, -OLD.duration_ms_sum)
    ON CONFLICT (workspace_id, day, channel, assistant_id, version) DO UPDATE SET
        conversations = insight_day_rollups.conversations + excluded.conversations,
        messages = insight_day_rollups.messages + excluded.messages,
        resolved_by_ai = insight_day_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_day_rollups.handed_off + excluded.handed_off,
        unresolved = insight_day_rollups.unresolved + excluded.unresolved,
        ongoing = insight_day_rollups.ongoing + excluded.ongoing,
        rated = insight_day_rollups.rated + excluded.rated,
        rating_sum = insight_day_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_day_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_day_rollups.positive + excluded.positive,
        neutral = insight_day_rollups.neutral + excluded.neutral,
        negative = insight_day_rollups.negative + excluded.negative,
        prompt_tokens = insight_day_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_day_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_day_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_day_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_day_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_day_rollups.durations + excluded.durations,
        duration_ms_sum = insight_day_rollups.duration_ms_sum + excluded.duration_ms_sum;
    INSERT INTO insight_channel_rollups (workspace_id, hour, channel, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (OLD.workspace_id, OLD.hour, OLD.channel, -OLD.conversations, -OLD.messages, -OLD.resolved_by_ai, -OLD.handed_off, -OLD.unresolved, -OLD.ongoing, -OLD.rated, -OLD.rating_sum, -OLD.rated_4_or_5, -OLD.positive, -OLD.neutral, -OLD.negative, -OLD.prompt_tokens, -OLD.completion_tokens, -OLD.cost_nanousd, -OLD.first_responses, -OLD.first_response_ms_sum, -OLD.durations, -OLD.duration_ms_sum)
    ON CONFLICT (workspace_id, hour, channel) DO UPDATE SET
        conversations = insight_channel_rollups.conversations + excluded.conversations,
        messages = insight_channel_rollups.messages + excluded.messages,
        resolved_by_ai = insight_channel_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_channel_rollups.handed_off + excluded.handed_off,
        unresolved = insight_channel_rollups.unresolved + excluded.unresolved,
        ongoing = insight_channel_rollups.ongoing + excluded.ongoing,
        rated = insight_channel_rollups.rated + excluded.rated,
        rating_sum = insight_channel_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_channel_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_channel_rollups.positive + excluded.positive,
        neutral = insight_channel_rollups.neutral + excluded.neutral,
        negative = insight_channel_rollups.negative + excluded.negative,
        prompt_tokens = insight_channel_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_channel_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_channel_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_channel_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_channel_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_channel_rollups.durations + excluded.durations,
        duration_ms_sum = insight_channel_rollups.duration_ms_sum + excluded.duration_ms_sum;
END;
CREATE TRIGGER insight_topic_rollup_derive_insert AFTER INSERT ON insight_topic_rollups BEGIN
    INSERT INTO insight_topic_day_rollups (workspace_id, day, channel, assistant_id, topic, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (NEW.workspace_id, (NEW.hour - ((NEW.hour % 86400000) + 86400000) % 86400000), NEW.channel, NEW.assistant_id, NEW.topic, NEW.conversations, NEW.messages, NEW.resolved_by_ai, NEW.handed_off, NEW.unresolved, NEW.ongoing, NEW.rated, NEW.rating_sum, NEW.rated_4_or_5, NEW.positive, NEW.neutral, NEW.negative, NEW.prompt_tokens, NEW.completion_tokens, NEW.cost_nanousd, NEW.first_responses, NEW.first_response_ms_sum, NEW.durations, NEW.duration_ms_sum)
    ON CONFLICT (workspace_id, day, channel, assistant_id, topic) DO UPDATE SET
        conversations = insight_topic_day_rollups.conversations + excluded.conversations,
        messages = insight_topic_day_rollups.messages + excluded.messages,
        resolved_by_ai = insight_topic_day_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_topic_day_rollups.handed_off + excluded.handed_off,
        unresolved = insight_topic_day_rollups.unresolved + excluded.unresolved,
        ongoing = insight_topic_day_rollups.ongoing + excluded.ongoing,
        rated = insight_topic_day_rollups.rated + excluded.rated,
        rating_sum = insight_topic_day_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_topic_day_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_topic_day_rollups.positive + excluded.positive,
        neutral = insight_topic_day_rollups.neutral + excluded.neutral,
        negative = insight_topic_day_rollups.negative + excluded.negative,
        prompt_tokens = insight_topic_day_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_topic_day_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_topic_day_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_topic_day_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_topic_day_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_topic_day_rollups.durations + excluded.durations,
        duration_ms_sum = insight_topic_day_rollups.duration_ms_sum + excluded.duration_ms_sum;
END;
CREATE TRIGGER insight_topic_rollup_derive_update AFTER UPDATE ON insight_topic_rollups BEGIN
    INSERT INTO insight_topic_day_rollups (workspace_id, day, channel, assistant_id, topic, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (NEW.workspace_id, (NEW.hour - ((NEW.hour % 86400000) + 86400000) % 86400000), NEW.channel, NEW.assistant_id, NEW.topic, NEW.conversations - OLD.conversations, NEW.messages - OLD.messages, NEW.resolved_by_ai - OLD.resolved_by_ai, NEW.handed_off - OLD.handed_off, NEW.unresolved - OLD.unresolved, NEW.ongoing - OLD.ongoing, NEW.rated - OLD.rated, NEW.rating_sum - OLD.rating_sum, NEW.rated_4_or_5 - OLD.rated_4_or_5, NEW.positive - OLD.positive, NEW.neutral - OLD.neutral, NEW.negative - OLD.negative, NEW.prompt_tokens - OLD.prompt_tokens, NEW.completion_tokens - OLD.completion_tokens, NEW.cost_nanousd - OLD.cost_nanousd, NEW.first_responses - OLD.first_responses, NEW.first_response_ms_sum - OLD.first_response_ms_sum, NEW.durations - OLD.durations, NEW.duration_ms_sum - OLD.duration_ms_sum)
    ON CONFLICT (workspace_id, day, channel, assistant_id, topic) DO UPDATE SET
        conversations = insight_topic_day_rollups.conversations + excluded.conversations,
        messages = insight_topic_day_rollups.messages + excluded.messages,
        resolved_by_ai = insight_topic_day_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_topic_day_rollups.handed_off + excluded.handed_off,
        unresolved = insight_topic_day_rollups.unresolved + excluded.unresolved,
        ongoing = insight_topic_day_rollups.ongoing + excluded.ongoing,
        rated = insight_topic_day_rollups.rated + excluded.rated,
        rating_sum = insight_topic_day_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_topic_day_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_topic_day_rollups.positive + excluded.positive,
        neutral = insight_topic_day_rollups.neutral + excluded.neutral,
        negative = insight_topic_day_rollups.negative + excluded.negative,
        prompt_tokens = insight_topic_day_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_topic_day_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_topic_day_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_topic_day_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_topic_day_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_topic_day_rollups.durations + excluded.durations,
        duration_ms_sum = insight_topic_day_rollups.duration_ms_sum + excluded.duration_ms_sum;
END;
CREATE TRIGGER insight_topic_rollup_derive_delete AFTER DELETE ON insight_topic_rollups BEGIN
    INSERT INTO insight_topic_day_rollups (workspace_id, day, channel, assistant_id, topic, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
    VALUES (OLD.workspace_id, (OLD.hour - ((OLD.hour % 86400000) + 86400000) % 86400000), OLD.channel, OLD.assistant_id, OLD.topic, -OLD.conversations, -OLD.messages, -OLD.resolved_by_ai, -OLD.handed_off, -OLD.unresolved, -OLD.ongoing, -OLD.rated, -OLD.rating_sum, -OLD.rated_4_or_5, -OLD.positive, -OLD.neutral, -OLD.negative, -OLD.prompt_tokens, -OLD.completion_tokens, -OLD.cost_nanousd, -OLD.first_responses, -OLD.first_response_ms_sum, -OLD.durations, -OLD.duration_ms_sum)
    ON CONFLICT (workspace_id, day, channel, assistant_id, topic) DO UPDATE SET
        conversations = insight_topic_day_rollups.conversations + excluded.conversations,
        messages = insight_topic_day_rollups.messages + excluded.messages,
        resolved_by_ai = insight_topic_day_rollups.resolved_by_ai + excluded.resolved_by_ai,
        handed_off = insight_topic_day_rollups.handed_off + excluded.handed_off,
        unresolved = insight_topic_day_rollups.unresolved + excluded.unresolved,
        ongoing = insight_topic_day_rollups.ongoing + excluded.ongoing,
        rated = insight_topic_day_rollups.rated + excluded.rated,
        rating_sum = insight_topic_day_rollups.rating_sum + excluded.rating_sum,
        rated_4_or_5 = insight_topic_day_rollups.rated_4_or_5 + excluded.rated_4_or_5,
        positive = insight_topic_day_rollups.positive + excluded.positive,
        neutral = insight_topic_day_rollups.neutral + excluded.neutral,
        negative = insight_topic_day_rollups.negative + excluded.negative,
        prompt_tokens = insight_topic_day_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = insight_topic_day_rollups.completion_tokens + excluded.completion_tokens,
        cost_nanousd = insight_topic_day_rollups.cost_nanousd + excluded.cost_nanousd,
        first_responses = insight_topic_day_rollups.first_responses + excluded.first_responses,
        first_response_ms_sum = insight_topic_day_rollups.first_response_ms_sum + excluded.first_response_ms_sum,
        durations = insight_topic_day_rollups.durations + excluded.durations,
        duration_ms_sum = insight_topic_day_rollups.duration_ms_sum + excluded.duration_ms_sum;
END;
-- The hourly sums stored so far, rolled up once.
INSERT INTO insight_day_rollups (workspace_id, day, channel, assistant_id, version, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
SELECT s.workspace_id, (s.hour - ((s.hour % 86400000) + 86400000) % 86400000), s.channel, s.assistant_id, s.version, SUM(s.conversations), SUM(s.messages), SUM(s.resolved_by_ai), SUM(s.handed_off), SUM(s.unresolved), SUM(s.ongoing), SUM(s.rated), SUM(s.rating_sum), SUM(s.rated_4_or_5), SUM(s.positive), SUM(s.neutral), SUM(s.negative), SUM(s.prompt_tokens), SUM(s.completion_tokens), SUM(s.cost_nanousd), SUM(s.first_responses), SUM(s.first_response_ms_sum), SUM(s.durations), SUM(s.duration_ms_sum)
FROM insight_rollups s GROUP BY 1, 2, 3, 4, 5;
INSERT INTO insight_channel_rollups (workspace_id, hour, channel, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
SELECT s.workspace_id, s.hour, s.channel, SUM(s.conversations), SUM(s.messages), SUM(s.resolved_by_ai), SUM(s.handed_off), SUM(s.unresolved), SUM(s.ongoing), SUM(s.rated), SUM(s.rating_sum), SUM(s.rated_4_or_5), SUM(s.positive), SUM(s.neutral), SUM(s.negative), SUM(s.prompt_tokens), SUM(s.completion_tokens), SUM(s.cost_nanousd), SUM(s.first_responses), SUM(s.first_response_ms_sum), SUM(s.durations), SUM(s.duration_ms_sum)
FROM insight_rollups s GROUP BY 1, 2, 3;
INSERT INTO insight_topic_day_rollups (workspace_id, day, channel, assistant_id, topic, conversations, messages, resolved_by_ai, handed_off, unresolved, ongoing, rated, rating_sum, rated_4_or_5, positive, neutral, negative, prompt_tokens, completion_tokens, cost_nanousd, first_responses, first_response_ms_sum, durations, duration_ms_sum)
SELECT s.workspace_id, (s.hour - ((s.hour % 86400000) + 86400000) % 86400000), s.channel, s.assistant_id, s.topic, SUM(s.conversations), SUM(s.messages), SUM(s.resolved_by_ai), SUM(s.handed_off), SUM(s.unresolved), SUM(s.ongoing), SUM(s.rated), SUM(s.rating_sum), SUM(s.rated_4_or_5), SUM(s.positive), SUM(s.neutral), SUM(s.negative), SUM(s.prompt_tokens), SUM(s.completion_tokens), SUM(s.cost_nanousd), SUM(s.first_responses), SUM(s.first_response_ms_sum), SUM(s.durations), SUM(s.duration_ms_sum)
FROM insight_topic_rollups s GROUP BY 1, 2, 3, 4, 5;
