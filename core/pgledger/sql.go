package pgledger

// The SQL of the ledger, one statement per operation: each write carries
// the events it records in a data-modifying CTE, so the change and its
// events commit together in one round trip without an explicit transaction.

// runColumns reads an executions row in the order scanRun expects. UUIDs are
// read as text: run ids are strings in core.
const runColumns = `
	execution_id::text, pipeline_name, params, lane, trigger_source, status,
	backend_task_id, feed_id::text, retry_count, result, error,
	created_at, started_at, completed_at,
	kind, priority, idempotency_key, correlation_id, parent_run_id::text,
	executor_name, retry_of_run_id::text, max_retries, retry_delay_seconds,
	error_type, metadata, tags`

// insertRuns inserts the runs in $1..$26 (parallel arrays) and, for the runs
// actually inserted, their events in $27..$31. A run whose idempotency key
// is taken is skipped by ON CONFLICT (the unique index decides, so
// concurrent inserts from many connections create one run) and its events
// with it. Returns the ids inserted.
const insertRuns = `
WITH ins AS (
	INSERT INTO executions (
		execution_id, pipeline_name, params, lane, trigger_source, status,
		backend_task_id, feed_id, retry_count, result, error,
		created_at, started_at, completed_at,
		kind, priority, idempotency_key, correlation_id, parent_run_id,
		executor_name, retry_of_run_id, max_retries, retry_delay_seconds,
		error_type, metadata, tags)
	SELECT * FROM unnest(
		$1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[],
		$7::text[], $8::uuid[], $9::int[], $10::jsonb[], $11::text[],
		$12::timestamptz[], $13::timestamptz[], $14::timestamptz[],
		$15::text[], $16::text[], $17::text[], $18::text[], $19::uuid[],
		$20::text[], $21::uuid[], $22::int[], $23::float8[],
		$24::text[], $25::jsonb[], $26::jsonb[]
	) AS r(id, name, params, lane, trigger_source, status,
		backend_task_id, feed_id, retry_count, result, error,
		created_at, started_at, completed_at,
		kind, priority, idempotency_key, correlation_id, parent_run_id,
		executor_name, retry_of_run_id, max_retries, retry_delay_seconds,
		error_type, metadata, tags)
	ON CONFLICT (idempotency_key) DO NOTHING
	RETURNING execution_id
), ev AS (
	INSERT INTO execution_events (execution_id, event_type, timestamp, data, source)
	SELECT ins.execution_id, e.event_type, e.ts, e.data, e.source
	FROM unnest($27::uuid[], $28::text[], $29::timestamptz[], $30::jsonb[], $31::text[])
		WITH ORDINALITY AS e(run_id, event_type, ts, data, source, ord)
	JOIN ins ON ins.execution_id = e.run_id
	ORDER BY e.ord
)
SELECT execution_id::text FROM ins`

// updateRuns applies compare-and-set updates: a row changes only if its
// status is still the expected one. Nulls in the arrays leave columns as
// they are. Events ($12..$16) are recorded only for the rows that changed.
const updateRuns = `
WITH u AS (
	SELECT * FROM unnest(
		$1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
		$6::jsonb[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[]
	) AS u(id, from_status, to_status, started_at, completed_at,
		result, error, error_type, backend_task_id, executor_name, set_result)
), upd AS (
	UPDATE executions e SET
		status          = u.to_status,
		started_at      = COALESCE(u.started_at, e.started_at),
		completed_at    = COALESCE(u.completed_at, e.completed_at),
		result          = CASE WHEN u.set_result THEN u.result ELSE e.result END,
		error           = COALESCE(u.error, e.error),
		error_type      = COALESCE(u.error_type, e.error_type),
		backend_task_id = COALESCE(u.backend_task_id, e.backend_task_id),
		executor_name   = COALESCE(u.executor_name, e.executor_name)
	FROM u
	WHERE e.execution_id = u.id AND e.status = u.from_status
	RETURNING ` + qualifiedRunColumns + `
), ev AS (
	INSERT INTO execution_events (execution_id, event_type, timestamp, data, source)
	SELECT e.run_id, e.event_type, e.ts, e.data, e.source
	FROM unnest($12::uuid[], $13::text[], $14::timestamptz[], $15::jsonb[], $16::text[])
		WITH ORDINALITY AS e(run_id, event_type, ts, data, source, ord)
	WHERE e.run_id IN (SELECT execution_id::uuid FROM upd)
	ORDER BY e.ord
)
SELECT * FROM upd`

// qualifiedRunColumns is runColumns for the UPDATE's RETURNING, where
// the table is aliased e.
const qualifiedRunColumns = `
	e.execution_id::text, e.pipeline_name, e.params, e.lane, e.trigger_source, e.status,
	e.backend_task_id, e.feed_id::text, e.retry_count, e.result, e.error,
	e.created_at, e.started_at, e.completed_at,
	e.kind, e.priority, e.idempotency_key, e.correlation_id, e.parent_run_id::text,
	e.executor_name, e.retry_of_run_id::text, e.max_retries, e.retry_delay_seconds,
	e.error_type, e.metadata, e.tags`

// statusesOf reads the current status of runs whose update did not apply,
// to tell "not found" from "changed by another writer".
const statusesOf = `SELECT execution_id::text, status FROM executions WHERE execution_id = ANY($1::uuid[])`

// appendEvent records an event while the run is in one of the statuses in
// $6 (any status when $6 is empty). FOR SHARE holds the run's status still
// until the event commits, so a guarded event never lands after a change
// that the guard forbids.
const appendEvent = `
INSERT INTO execution_events (execution_id, event_type, timestamp, data, source)
SELECT execution_id, $2, $3, $4::jsonb, $5
FROM (
	SELECT execution_id FROM executions
	WHERE execution_id = $1::uuid AND (cardinality($6::text[]) = 0 OR status = ANY($6::text[]))
	FOR SHARE
) AS run
RETURNING id::text`

const selectEvents = `
SELECT id::text, execution_id::text, event_type, timestamp, data, source
FROM execution_events WHERE execution_id = $1::uuid ORDER BY execution_events.id`

const runExists = `SELECT status FROM executions WHERE execution_id = $1::uuid`

// requiredColumns are the columns the ledger needs beyond Capture-Spine's
// own, added by sqlmigrations.
var requiredColumns = map[string][]string{
	"executions": {"kind", "priority", "idempotency_key", "correlation_id", "parent_run_id", "executor_name",
		"retry_of_run_id", "max_retries", "retry_delay_seconds", "error_type", "metadata", "tags"},
	"execution_events": {"source"},
}

const selectColumns = `
SELECT table_name, column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name IN ('executions', 'execution_events')`

// idempotencyIndexReady tells whether ON CONFLICT (idempotency_key) has the
// unique index it needs (built CONCURRENTLY, so it may exist but be invalid).
const idempotencyIndexReady = `
SELECT EXISTS (
	SELECT 1 FROM pg_index i
	JOIN pg_class t ON t.oid = i.indrelid
	JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey)
	WHERE t.relname = 'executions' AND t.relnamespace = current_schema()::regnamespace
	  AND i.indisunique AND i.indisvalid AND i.indnatts = 1 AND a.attname = 'idempotency_key'
	  AND i.indpred IS NULL)`
