-- spine:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS ix_executions_parent_run_id;
