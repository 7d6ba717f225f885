-- spine:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS ix_executions_created_id;
