-- Capture-Spine's tables before any spine-go migration has touched them.
--
-- This is the fixture every test database starts from (internal/seed loads it), so it
-- must keep the same tables, columns, types, defaults and indexes as the reference model
-- in the shared design notes. It is a model, not a dump: Capture-Spine's source is not
-- public, and the jobs table in particular is our reading of its legacy job tracker.
-- Anything the migrator learns about these tables it must learn from here.

-- One row per pipeline run that went through Capture-Spine's Dispatcher.
CREATE TABLE executions (
    execution_id     UUID PRIMARY KEY,
    pipeline_name    TEXT        NOT NULL,
    params           JSONB       NOT NULL DEFAULT '{}',
    lane             TEXT        NOT NULL DEFAULT 'normal',   -- normal | backfill | slow | realtime | high | low
    trigger_source   TEXT        NOT NULL DEFAULT 'api',      -- api | cli | schedule | webhook | retry | internal
    status           TEXT        NOT NULL DEFAULT 'pending',  -- pending | queued | running | completed | failed | cancelled | dead_lettered
    backend_task_id  TEXT,                                    -- the Celery task id, once the run was sent to a worker
    feed_id          UUID,                                    -- the feed a capture run belongs to; NULL for runs not tied to one
    retry_count      INTEGER     NOT NULL DEFAULT 0,
    result           JSONB,
    error            TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ
);

-- The Dispatcher's guard against running the same feed twice at once. Note that
-- 'queued' is not in the list: a feed may have a queued run beside its active one.
CREATE UNIQUE INDEX ix_executions_one_active_per_feed
    ON executions (feed_id) WHERE status IN ('pending', 'running');
CREATE INDEX ix_executions_status ON executions (status);
CREATE INDEX ix_executions_pipeline_created ON executions (pipeline_name, created_at DESC);

-- The lifecycle history of an execution, appended as it moves between statuses.
CREATE TABLE execution_events (
    id            BIGSERIAL PRIMARY KEY,
    execution_id  UUID        NOT NULL REFERENCES executions (execution_id) ON DELETE CASCADE,
    event_type    TEXT        NOT NULL,
    timestamp     TIMESTAMPTZ NOT NULL DEFAULT now(),
    data          JSONB       NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_execution_events_execution ON execution_events (execution_id, timestamp);

-- The older tracker kept by the Celery tasks that never went through the Dispatcher.
-- Phase 3 folds these rows into executions, so every value here must map or be refused.
CREATE TABLE jobs (
    id              BIGSERIAL PRIMARY KEY,
    job_type        TEXT        NOT NULL,   -- batch_import | copilot_sync | backup | recommendations | sync_environments | (others may exist)
    status          TEXT        NOT NULL,   -- pending | queued | started | running | retry | success | failure | error | cancelled | revoked
    celery_task_id  TEXT,                   -- NULL if the task was never sent; can equal an executions.backend_task_id
    user_id         UUID,
    queue           TEXT,                   -- the Celery queue the task went to
    payload         JSONB,                  -- the task's arguments, when they were recorded at all
    result          JSONB,
    error_message   TEXT,
    progress        SMALLINT,               -- percent, 0..100
    attempts        INTEGER     NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_jobs_status ON jobs (status);
CREATE INDEX ix_jobs_celery_task_id ON jobs (celery_task_id);
