-- spine:no-transaction
-- Children of a run, newest first (keyset on created_at, execution_id).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_executions_parent_run_id
    ON executions (parent_run_id, created_at DESC, execution_id DESC)
    WHERE parent_run_id IS NOT NULL;
