-- Back to 0006: the constant default, no trigger. Catalog only, brief locks.
ALTER TABLE executions ALTER COLUMN priority SET DEFAULT 'normal';
DROP TRIGGER IF EXISTS trg_executions_priority_from_lane ON executions;
DROP FUNCTION IF EXISTS spine_executions_priority_from_lane();
