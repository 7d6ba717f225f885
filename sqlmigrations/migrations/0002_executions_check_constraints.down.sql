ALTER TABLE executions
    DROP CONSTRAINT IF EXISTS ck_executions_priority,
    DROP CONSTRAINT IF EXISTS ck_executions_kind;
