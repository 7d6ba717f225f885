-- spine:no-transaction
-- Keyset pagination over all runs, newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_executions_created_id
    ON executions (created_at DESC, execution_id DESC);
