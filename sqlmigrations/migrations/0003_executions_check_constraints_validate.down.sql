-- PostgreSQL cannot mark a constraint NOT VALID again, so the exact reverse of 0003 is
-- to put back the NOT VALID constraints that 0002 leaves: drop and re-add in one
-- statement, catalog-only (no scan), brief ACCESS EXCLUSIVE. Keep the expressions
-- identical to 0002.
ALTER TABLE executions
    DROP CONSTRAINT IF EXISTS ck_executions_kind,
    DROP CONSTRAINT IF EXISTS ck_executions_priority,
    ADD CONSTRAINT ck_executions_kind
        CHECK (kind IN ('task', 'pipeline', 'workflow', 'step')) NOT VALID,
    ADD CONSTRAINT ck_executions_priority
        CHECK (priority IN ('realtime', 'high', 'normal', 'low', 'slow')) NOT VALID;
