-- RunRecord columns that Capture-Spine's executions lacks, and the event source.
-- Constant defaults only: since PostgreSQL 11 this is a catalog-only change (no table
-- rewrite, no scan), so the ACCESS EXCLUSIVE lock is held for milliseconds.
ALTER TABLE executions
    ADD COLUMN IF NOT EXISTS kind                TEXT             NOT NULL DEFAULT 'pipeline',
    ADD COLUMN IF NOT EXISTS priority            TEXT             NOT NULL DEFAULT 'normal',
    ADD COLUMN IF NOT EXISTS idempotency_key     TEXT,
    ADD COLUMN IF NOT EXISTS correlation_id      TEXT,
    ADD COLUMN IF NOT EXISTS parent_run_id       UUID,
    ADD COLUMN IF NOT EXISTS executor_name       TEXT,
    ADD COLUMN IF NOT EXISTS retry_of_run_id     UUID,
    ADD COLUMN IF NOT EXISTS max_retries         INTEGER          NOT NULL DEFAULT 3,
    ADD COLUMN IF NOT EXISTS retry_delay_seconds DOUBLE PRECISION NOT NULL DEFAULT 60,
    ADD COLUMN IF NOT EXISTS error_type          TEXT,
    ADD COLUMN IF NOT EXISTS metadata            JSONB            NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS tags                JSONB            NOT NULL DEFAULT '{}';

ALTER TABLE execution_events
    ADD COLUMN IF NOT EXISTS source TEXT NOT NULL DEFAULT 'dispatcher';
