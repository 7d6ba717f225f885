-- Destructive: drops the RunRecord columns and whatever was written to them (and, with
-- them, any index or constraint still built on them). Catalog-only, brief ACCESS EXCLUSIVE.
ALTER TABLE execution_events
    DROP COLUMN IF EXISTS source;

ALTER TABLE executions
    DROP COLUMN IF EXISTS tags,
    DROP COLUMN IF EXISTS metadata,
    DROP COLUMN IF EXISTS error_type,
    DROP COLUMN IF EXISTS retry_delay_seconds,
    DROP COLUMN IF EXISTS max_retries,
    DROP COLUMN IF EXISTS retry_of_run_id,
    DROP COLUMN IF EXISTS executor_name,
    DROP COLUMN IF EXISTS parent_run_id,
    DROP COLUMN IF EXISTS correlation_id,
    DROP COLUMN IF EXISTS idempotency_key,
    DROP COLUMN IF EXISTS priority,
    DROP COLUMN IF EXISTS kind;
