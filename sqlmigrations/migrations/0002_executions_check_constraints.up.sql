-- CHECK constraints for kind and priority, added NOT VALID: existing rows are not
-- scanned, so the ACCESS EXCLUSIVE lock is brief; new and updated rows are checked from
-- now on. 0003 validates the existing rows under a weaker lock. ADD CONSTRAINT has no
-- IF NOT EXISTS, hence the guard on pg_constraint.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'executions'::regclass AND conname = 'ck_executions_kind') THEN
        ALTER TABLE executions ADD CONSTRAINT ck_executions_kind
            CHECK (kind IN ('task', 'pipeline', 'workflow', 'step')) NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'executions'::regclass AND conname = 'ck_executions_priority') THEN
        ALTER TABLE executions ADD CONSTRAINT ck_executions_priority
            CHECK (priority IN ('realtime', 'high', 'normal', 'low', 'slow')) NOT VALID;
    END IF;
END
$$;
