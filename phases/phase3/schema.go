package phase3

import "fmt"

// Phase 3's own tables. Every name starts with spine_phase3_: phase 1's
// rollback refuses while one exists.
const (
	// MappingTable holds the job mapping's vocabularies in one row, read by
	// the trigger (a trigger takes no parameters), the copy and verify.
	MappingTable = "spine_phase3_mapping"
	// CopyTable is the copy's checkpoint, committed with each batch.
	CopyTable = "spine_phase3_copy"
	// ControlTable is the row any connection flips to pause the copy or
	// change its rate: UPDATE spine_phase3_control SET paused = true.
	ControlTable = "spine_phase3_control"
	// RejectsTable lists jobs whose type or status the mapping did not know
	// when they were last written; a copy with a mapping that knows them
	// maps them.
	RejectsTable = "spine_phase3_rejects"
)

// Other objects phase 3 creates (rollback drops them).
const (
	triggerName      = "spine_phase3_jobs_sync"
	triggerFunction  = "spine_phase3_jobs_sync"
	truncateTrigger  = "spine_phase3_jobs_truncate" // and its function's name
	relinkFunction   = "spine_phase3_relink"
	taskIDIndex      = "spine_phase3_ix_executions_backend_task_id"
	metaLegacyJobIDs = "legacy_job_ids"
	// metaLegacyJobID is the key holding the job id in every execution the
	// mapping writes.
	metaLegacyJobID = "legacy_job_id"
	// metaMigrated is the metadata key every execution the mapping writes
	// has and no other execution does: it tells a migrated execution from
	// a native one.
	metaMigrated = "legacy_job_type"
)

// Lock keys. The runner lock is a session lock in the one-bigint space
// ("spinep03" in ASCII, beside phase 1's "spinep01"); the bucket locks are
// transaction locks in the two-int4 space: class "sp3b", then the bucket.
const (
	runnerLock  int64 = 0x7370696e65703033
	bucketClass int32 = 0x73703362
	// bucketShift makes a bucket 4096 consecutive job ids. The trigger
	// locks only ids the copy has still to pass, so an application
	// transaction takes at most one lock per 4096 of those ids (a bulk
	// update of 2M uncopied jobs: 489), and a batch excludes writes to few
	// more ids than it copies.
	bucketShift = 12
	// maxBucketsPerBatch keeps a batch over a sparse id range from locking
	// a long list of buckets.
	maxBucketsPerBatch = 64
)

// bucketSQL is the bucket lock key of the job id expression id.
func bucketSQL(id string) string {
	return fmt.Sprintf("(((%s) >> %d) & 2147483647)::int4", id, bucketShift)
}

const createTables = `
CREATE TABLE IF NOT EXISTS spine_phase3_mapping (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pipelines      jsonb       NOT NULL,
    statuses       jsonb       NOT NULL,
    trigger_source text        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS spine_phase3_copy (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_id        bigint,                     -- the copy's bound: max(jobs.id) once the trigger was in place
    last_id       bigint,                     -- every job with id <= last_id has been copied
    total_rows    bigint      NOT NULL DEFAULT 0,
    rows_scanned  bigint      NOT NULL DEFAULT 0,
    rows_copied   bigint      NOT NULL DEFAULT 0,
    rows_linked   bigint      NOT NULL DEFAULT 0,
    rows_rejected bigint      NOT NULL DEFAULT 0,
    batches       bigint      NOT NULL DEFAULT 0,
    batch_size    integer     NOT NULL DEFAULT 0,
    rate          double precision NOT NULL DEFAULT 0, -- jobs/s of the latest run
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    cut_over_at   timestamptz,                -- jobs renamed to jobs_retired
    finalized_at  timestamptz,                -- jobs_retired dropped
    rollback_at   timestamptz                 -- a rollback began: no copy may resume
);
CREATE TABLE IF NOT EXISTS spine_phase3_control (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    paused     boolean     NOT NULL DEFAULT false,
    max_rate   integer     NOT NULL DEFAULT 0 CHECK (max_rate >= 0), -- jobs/s; 0: the copy's own setting
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS spine_phase3_rejects (
    job_id   bigint PRIMARY KEY,
    job_type text        NOT NULL,
    status   text        NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO spine_phase3_copy DEFAULT VALUES ON CONFLICT DO NOTHING;
INSERT INTO spine_phase3_control DEFAULT VALUES ON CONFLICT DO NOTHING`

// createRelink is the one helper the link rule needs: metadata with the job
// ids of legacy_job_ids in [lo, hi] replaced by ids, kept sorted and
// distinct, and the key removed when no id is left. Linking is
// relink(m, 1, 0, ids) (an empty range), unlinking relink(m, id, id, '{}').
const createRelink = `
CREATE OR REPLACE FUNCTION spine_phase3_relink(meta jsonb, lo bigint, hi bigint, ids bigint[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN agg.l IS NULL THEN meta - 'legacy_job_ids' ELSE jsonb_set(meta, '{legacy_job_ids}', agg.l) END
FROM (SELECT jsonb_agg(u.x ORDER BY u.x) AS l
      FROM (SELECT (v #>> '{}')::bigint AS x
            FROM jsonb_array_elements(COALESCE(meta -> 'legacy_job_ids', '[]')) AS v
            WHERE (v #>> '{}')::bigint NOT BETWEEN lo AND hi
            UNION
            SELECT unnest(ids)) AS u) AS agg
$$`

// nativesSQL is the native executions sharing the Celery task id of the
// jobs row aliased alias, as a uuid[] in no particular order (links are
// kept sorted by job id, and which native comes first does not matter): a
// correlated subquery, so it is an index probe per job however the planner
// sizes the batch.
func nativesSQL(alias string) string {
	return fmt.Sprintf(`ARRAY(SELECT spine_e.execution_id FROM executions AS spine_e
        WHERE spine_e.backend_task_id = %s.celery_task_id AND NOT (spine_e.metadata ? '%s'))`, alias, metaMigrated)
}

// selectTaskIDIndex names a valid, complete index on executions whose first
// column is backend_task_id, or nothing.
const selectTaskIDIndex = `SELECT i.indexrelid::regclass::text FROM pg_index AS i
    JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass('executions') AND a.attname = 'backend_task_id' AND i.indisvalid AND i.indpred IS NULL
    ORDER BY 1 LIMIT 1`

// createTaskIDIndex is the index the overlap lookups need (Capture-Spine's
// schema has none on backend_task_id). Only phase 3 uses this name, so
// rollback drops it by name.
const createTaskIDIndex = `CREATE INDEX CONCURRENTLY IF NOT EXISTS spine_phase3_ix_executions_backend_task_id ON executions (backend_task_id)`
