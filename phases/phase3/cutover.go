package phase3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// RetiredTable is what cutover renames jobs to, and what finalize drops.
const RetiredTable = "jobs_retired"

// compatView is the read-only view named jobs that cutover can leave for
// legacy readers: one row per job, migrated or linked, in the jobs columns
// and the legacy vocabulary, over what executions holds now.
//
// A migrated job reads back exactly as jobs held it at the cutover in id,
// job_type, status, celery_task_id, user_id, result, error_message,
// progress, attempts, created_at, started_at, finished_at and updated_at:
// the mapping keeps each, in a column or in metadata. Approximate, because
// the mapping folds values together:
//   - queue is the lane, and a NULL queue became lane 'normal';
//   - payload is params: a NULL payload became {}, and one that is not a
//     JSON object became {"payload": value};
//   - status, once spine-core moves the execution to a status its
//     legacy_status does not map to, is that status mapped back (below);
//   - updated_at stays the job's last update before the cutover:
//     executions has no such column to follow spine-core's writes.
//
// A linked job has no execution of its own: its row is its native
// execution's, with the job's id and (by the link rule) its Celery task id.
// Its job_type is the pipeline name, its status the execution's mapped
// back, user_id and progress are NULL, updated_at is created_at, and the
// rest is the execution's. A job linked to several executions reads once
// for each.
//
// Mapped back means the legacy status the mapping (spine_phase3_mapping,
// which stays until rollback) maps to the execution's status: the one
// spelled alike, else the first by name ("failed" reads "error" rather
// than "failure"); the spine-core status itself when none maps to it
// ("dead_lettered" in the default mapping).
// UNION ALL makes it read-only: a legacy writer fails loudly.
const compatView = `
CREATE VIEW jobs AS
WITH spine_map AS (
    SELECT statuses FROM spine_phase3_mapping LIMIT 1
), legacy_status AS (
    SELECT DISTINCT ON (s.value) s.value AS status, s.key AS legacy
    FROM spine_map CROSS JOIN LATERAL jsonb_each_text(spine_map.statuses) AS s
    ORDER BY s.value, s.key <> s.value, s.key
)
SELECT (e.metadata ->> 'legacy_job_id')::bigint AS id,
       e.metadata ->> 'legacy_job_type' AS job_type,
       CASE WHEN m.statuses ->> (e.metadata ->> 'legacy_status') = e.status THEN e.metadata ->> 'legacy_status'
            ELSE COALESCE(r.legacy, e.status) END AS status,
       e.backend_task_id AS celery_task_id,
       (e.metadata ->> 'user_id')::uuid AS user_id,
       e.lane AS queue, e.params AS payload, e.result, e.error AS error_message,
       (e.metadata ->> 'progress')::smallint AS progress, e.retry_count AS attempts,
       e.created_at, e.started_at, e.completed_at AS finished_at,
       COALESCE((e.metadata ->> 'legacy_updated_at')::timestamptz, e.created_at) AS updated_at
FROM executions AS e
LEFT JOIN spine_map AS m ON true
LEFT JOIN legacy_status AS r ON r.status = e.status
WHERE e.metadata ? 'legacy_job_type'
UNION ALL
SELECT (v #>> '{}')::bigint, e.pipeline_name, COALESCE(r.legacy, e.status), e.backend_task_id, NULL::uuid,
       e.lane, e.params, e.result, e.error, NULL::smallint, e.retry_count,
       e.created_at, e.started_at, e.completed_at, e.created_at
FROM executions AS e CROSS JOIN LATERAL jsonb_array_elements(e.metadata -> 'legacy_job_ids') AS v
LEFT JOIN legacy_status AS r ON r.status = e.status
WHERE e.metadata ? 'legacy_job_ids'`

// CutoverResult is what Cutover did.
type CutoverResult struct {
	Verified   VerifyReport  `json:"verified"`
	CompatView bool          `json:"compat_view"`
	LockHeld   time.Duration `json:"lock_held_ns"`
	Retries    int           `json:"retries"`
}

// Cutover retires jobs: it verifies (outside any lock), then, with writes
// to jobs stopped by a short ACCESS EXCLUSIVE lock (lock_timeout, retried),
// makes sure nothing unmapped arrived since, renames jobs to jobs_retired,
// removes the triggers and, if view, creates the read-only view jobs over
// executions. The triggers carried every write up to the lock, so that is
// the final catch-up. From then on executions is the only table that
// tracks work; Rollback can still undo it, until Finalize.
func Cutover(ctx context.Context, pool *pgxpool.Pool, opts Options, view bool) (CutoverResult, error) {
	opts = opts.withDefaults()
	res := CutoverResult{CompatView: view}
	st, err := Status(ctx, pool)
	if err != nil {
		return res, err
	}
	if st.State != StateCopied {
		return res, fmt.Errorf("%w: phase 3 is %s; cutover needs a finished copy (spine-migrate phase3 copy --execute)", ErrRefused, st.State)
	}
	release, err := lockRunner(ctx, pool)
	if err != nil {
		return res, err
	}
	defer release()
	if res.Verified, err = Verify(ctx, pool, opts); err != nil {
		return res, err
	}
	if err := res.Verified.Err(); err != nil {
		return res, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	attempts, err := withRetries(ctx, pool, opts, "cutover", func(ctx context.Context, tx pgx.Tx) error {
		start := time.Now()
		defer func() { res.LockHeld = time.Since(start) }()
		if _, err := tx.Exec(ctx, "LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"); err != nil {
			return err
		}
		var rejects int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM spine_phase3_rejects").Scan(&rejects); err != nil {
			return err
		}
		if rejects > 0 {
			return fmt.Errorf("%w: %d jobs written since verify have a type or status the mapping does not know: map them (%s) and copy again",
				ErrRefused, rejects, MappingFlag)
		}
		stmts := []string{"ALTER TABLE jobs RENAME TO jobs_retired",
			"DROP TRIGGER IF EXISTS spine_phase3_jobs_sync ON jobs_retired", "DROP TRIGGER IF EXISTS spine_phase3_jobs_truncate ON jobs_retired"}
		if view {
			stmts = append(stmts, compatView)
		}
		stmts = append(stmts, "UPDATE spine_phase3_copy SET cut_over_at = now()")
		for _, sql := range stmts {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	res.Retries = attempts - 1
	if err != nil {
		return res, fmt.Errorf("phase3 cutover: %w", err)
	}
	opts.Logger.Info("phase3 cutover: jobs is now jobs_retired", "compat_view", view, "lock_held", res.LockHeld)
	return res, nil
}

// Finalize drops jobs_retired for good; confirm must be its name. Phase 3's
// state table stays, so phase 1's rollback keeps refusing: executions now
// holds the jobs.
func Finalize(ctx context.Context, pool *pgxpool.Pool, opts Options, confirm string) error {
	opts = opts.withDefaults()
	if confirm != RetiredTable {
		return fmt.Errorf("%w: finalize drops %s and cannot be undone: pass --confirm %s", ErrRefused, RetiredTable, RetiredTable)
	}
	st, err := Status(ctx, pool)
	if err != nil {
		return err
	}
	if st.State != StateCutOver || !st.JobsRetired {
		return fmt.Errorf("%w: phase 3 is %s; finalize needs a cutover (spine-migrate phase3 cutover --execute)", ErrRefused, st.State)
	}
	release, err := lockRunner(ctx, pool)
	if err != nil {
		return err
	}
	defer release()
	_, err = withRetries(ctx, pool, opts, "finalize", func(ctx context.Context, tx pgx.Tx) error {
		for _, sql := range []string{
			"DROP TABLE jobs_retired",
			"DROP FUNCTION IF EXISTS spine_phase3_jobs_sync()",
			"DROP FUNCTION IF EXISTS spine_phase3_jobs_truncate()",
			"DROP TABLE IF EXISTS spine_phase3_control, spine_phase3_rejects",
			"UPDATE spine_phase3_copy SET finalized_at = now()",
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("phase3 finalize: %w", err)
	}
	return nil
}

// RollbackResult is what Rollback did, and the proof it left nothing behind.
type RollbackResult struct {
	Renamed  bool  `json:"renamed_back"` // jobs_retired renamed back to jobs
	Deleted  int64 `json:"executions_deleted"`
	Unlinked int64 `json:"executions_unlinked"`
	// Left* are counted after the rollback, and are all 0.
	LeftMigrated int64    `json:"left_migrated"`
	LeftLinks    int64    `json:"left_links"`
	LeftObjects  []string `json:"left_objects"`
}

// Rollback returns the database to its state before phase 3, until
// Finalize: jobs renamed back (the compatibility view dropped), the triggers
// dropped first (so nothing writes migrated rows meanwhile), the migrated
// executions deleted by their deterministic ids in keyset batches, the
// links removed from native executions, phase 3's functions, index and
// tables dropped. Interrupted, it is run again. It proves itself by
// counting what is left. Changes made to migrated executions after a
// cutover are lost with them: jobs is as it was at the cutover.
func Rollback(ctx context.Context, pool *pgxpool.Pool, opts Options) (RollbackResult, error) {
	opts = opts.withDefaults()
	var res RollbackResult
	cp, err := readCheckpoint(ctx, pool)
	if err != nil {
		return res, err
	}
	if cp.FinalizedAt != nil {
		return res, fmt.Errorf("%w: finalize dropped %s: there is nothing to roll back to", ErrRefused, RetiredTable)
	}
	release, err := lockRunner(ctx, pool)
	if err != nil {
		return res, err
	}
	defer release()
	step := func(what string, stmts ...string) error {
		_, err := withRetries(ctx, pool, opts, "rollback: "+what, func(ctx context.Context, tx pgx.Tx) error {
			for _, sql := range stmts {
				if _, err := tx.Exec(ctx, sql); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("phase3 rollback: %s: %w", what, err)
		}
		return nil
	}
	if cp.Exists {
		if err := step("mark", "UPDATE spine_phase3_copy SET rollback_at = COALESCE(rollback_at, now())"); err != nil {
			return res, err
		}
	}
	var retired, jobsIsView bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('jobs_retired') IS NOT NULL,
		COALESCE((SELECT relkind = 'v' FROM pg_class WHERE oid = to_regclass('jobs')), false)`).Scan(&retired, &jobsIsView); err != nil {
		return res, fmt.Errorf("phase3 rollback: %w", err)
	}
	if retired {
		stmts := []string{"ALTER TABLE jobs_retired RENAME TO jobs"}
		if jobsIsView {
			stmts = append([]string{"DROP VIEW jobs"}, stmts...)
		}
		if err := step("rename jobs_retired back to jobs", stmts...); err != nil {
			return res, err
		}
		res.Renamed = true
	}
	if err := step("drop the triggers", "DROP TRIGGER IF EXISTS spine_phase3_jobs_sync ON jobs",
		"DROP TRIGGER IF EXISTS spine_phase3_jobs_truncate ON jobs"); err != nil {
		return res, err
	}

	// The migrated executions, by deterministic id, in keyset batches over jobs.
	del := fmt.Sprintf(`WITH b AS (SELECT id FROM jobs WHERE id > $1 ORDER BY id LIMIT $2),
		d AS (DELETE FROM executions WHERE execution_id = ANY (ARRAY(SELECT %s FROM b)) RETURNING 1)
		SELECT (SELECT max(id) FROM b), (SELECT count(*) FROM d)`, capturespine.JobExecutionIDSQL("b.id"))
	var last int64 = -1 << 63
	for {
		var next *int64
		var n int64
		if _, err := withRetries(ctx, pool, opts, "rollback: delete migrated executions", func(ctx context.Context, tx pgx.Tx) error {
			return tx.QueryRow(ctx, del, last, 5000).Scan(&next, &n)
		}); err != nil {
			return res, fmt.Errorf("phase3 rollback: delete migrated executions after job %d: %w", last, err)
		}
		res.Deleted += n
		if next == nil {
			break
		}
		last = *next
	}
	// Whatever no job id leads to any more (its job gone behind the
	// trigger's back), then the links.
	if _, err := withRetries(ctx, pool, opts, "rollback: sweep", func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM executions WHERE metadata ? '"+metaMigrated+"'")
		res.Deleted += tag.RowsAffected()
		if err != nil {
			return err
		}
		tag, err = tx.Exec(ctx, "UPDATE executions SET metadata = metadata - 'legacy_job_ids' WHERE metadata ? 'legacy_job_ids'")
		res.Unlinked = tag.RowsAffected()
		return err
	}); err != nil {
		return res, fmt.Errorf("phase3 rollback: %w", err)
	}
	if err := step("drop phase 3's functions and tables",
		"DROP FUNCTION IF EXISTS spine_phase3_jobs_sync()",
		"DROP FUNCTION IF EXISTS spine_phase3_jobs_truncate()",
		"DROP FUNCTION IF EXISTS spine_phase3_relink(jsonb, bigint, bigint, bigint[])",
		"DROP TABLE IF EXISTS spine_phase3_mapping, spine_phase3_control, spine_phase3_rejects, spine_phase3_copy"); err != nil {
		return res, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return res, err
	}
	_, err = conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+taskIDIndex)
	conn.Release()
	if err != nil {
		return res, fmt.Errorf("phase3 rollback: drop the backend_task_id index: %w", err)
	}
	return res, res.prove(ctx, pool)
}

// prove counts what phase 3 could have left behind.
func (r *RollbackResult) prove(ctx context.Context, q querier) error {
	err := q.QueryRow(ctx, `SELECT count(*) FILTER (WHERE metadata ? 'legacy_job_type'), count(*) FILTER (WHERE metadata ? 'legacy_job_ids')
		FROM executions`).Scan(&r.LeftMigrated, &r.LeftLinks)
	if err != nil {
		return fmt.Errorf("phase3 rollback: check: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT relname::text FROM pg_class WHERE relname LIKE 'spine\_phase3\_%' OR relname = 'jobs_retired'
		UNION ALL SELECT proname::text FROM pg_proc WHERE proname LIKE 'spine\_phase3\_%'
		UNION ALL SELECT tgname::text FROM pg_trigger WHERE tgname LIKE 'spine\_phase3\_%' ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("phase3 rollback: check: %w", err)
	}
	if r.LeftObjects, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return fmt.Errorf("phase3 rollback: check: %w", err)
	}
	if r.LeftMigrated > 0 || r.LeftLinks > 0 || len(r.LeftObjects) > 0 {
		return fmt.Errorf("phase3 rollback: left %d migrated executions, %d links, objects %s", r.LeftMigrated, r.LeftLinks, strings.Join(r.LeftObjects, ", "))
	}
	return nil
}

// errRolledBack is Copy's refusal while a rollback is half done.
var errRolledBack = errors.New("a rollback of phase 3 began and has not finished: run spine-migrate phase3 rollback --execute again first")
