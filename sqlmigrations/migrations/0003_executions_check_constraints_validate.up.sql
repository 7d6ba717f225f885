-- Scans executions to prove the existing rows satisfy the checks. VALIDATE CONSTRAINT
-- takes only SHARE UPDATE EXCLUSIVE: reads and writes go on during the scan. Validating
-- an already valid constraint is a no-op.
ALTER TABLE executions
    VALIDATE CONSTRAINT ck_executions_kind,
    VALIDATE CONSTRAINT ck_executions_priority;
