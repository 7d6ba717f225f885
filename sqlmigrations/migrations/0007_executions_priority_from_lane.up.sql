-- Rows Capture-Spine's Python code inserts name a lane but no priority (it has never
-- heard of the column). This trigger derives the priority from the lane for exactly
-- those rows: the column loses its default, so "not given" arrives as NULL, which the
-- trigger replaces before the NOT NULL check runs. A writer that gives a priority, as
-- spine-go's ledger always does, keeps it. The rule is adapters/capturespine's
-- PriorityForLane (a test compares the two on every lane).
-- Catalog only: brief SHARE ROW EXCLUSIVE (trigger) and ACCESS EXCLUSIVE (default) locks,
-- taken together in this transaction so no insert can see the column without both.
CREATE OR REPLACE FUNCTION spine_executions_priority_from_lane() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.priority IS NULL THEN
        NEW.priority := CASE NEW.lane
            WHEN 'normal' THEN 'normal'
            WHEN 'backfill' THEN 'low'
            WHEN 'slow' THEN 'slow'
            WHEN 'realtime' THEN 'realtime'
            WHEN 'high' THEN 'high'
            WHEN 'low' THEN 'low'
            ELSE 'normal'
        END;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS trg_executions_priority_from_lane ON executions;
CREATE TRIGGER trg_executions_priority_from_lane
    BEFORE INSERT ON executions
    FOR EACH ROW EXECUTE FUNCTION spine_executions_priority_from_lane();

ALTER TABLE executions ALTER COLUMN priority DROP DEFAULT;
