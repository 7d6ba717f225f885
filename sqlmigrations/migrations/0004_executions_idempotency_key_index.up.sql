-- spine:no-transaction
-- One idempotency key per run (NULLs are distinct: runs without a key are unconstrained).
-- Built without blocking writes: SHARE UPDATE EXCLUSIVE.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ux_executions_idempotency_key
    ON executions (idempotency_key);
