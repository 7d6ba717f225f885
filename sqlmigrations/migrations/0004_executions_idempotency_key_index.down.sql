-- spine:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS ux_executions_idempotency_key;
