package phase3

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// syncSQL makes the execution state of the jobs with ids in [$1, $2] what
// the mapping and the link rule say, whatever it was: the re-copy of a
// range. $3 also searches every native execution for stale links into the
// range (a scan of executions; a reject's re-map skips it). It runs with
// the application's writes to jobs held off (see syncRange).
func syncSQL(b boundMapping) string {
	mapped := mappedSQL("j")
	var set, mine, theirs []string
	for _, c := range b.Columns[1:] {
		q := pgx.Identifier{c}.Sanitize()
		set = append(set, fmt.Sprintf("%s = EXCLUDED.%s", q, q))
		mine = append(mine, "executions."+q)
		theirs = append(theirs, "EXCLUDED."+q)
	}
	relink := "spine_phase3_relink(e.metadata, $1, $2, COALESCE((SELECT w.job_ids FROM want AS w WHERE w.execution_id = e.execution_id), '{}'))"
	return fmt.Sprintf(`
WITH src AS MATERIALIZED (
    SELECT j.*, %[1]s AS spine_natives
    FROM jobs AS j
    WHERE j.id BETWEEN $1 AND $2
), want AS MATERIALIZED (
    SELECT n.execution_id, array_agg(s.id ORDER BY s.id) AS job_ids
    FROM src AS s CROSS JOIN LATERAL unnest(s.spine_natives) AS n(execution_id)
    GROUP BY n.execution_id
), holders AS MATERIALIZED (
    SELECT execution_id FROM want
    UNION
    SELECT e.execution_id FROM executions AS e
    WHERE $3 AND e.metadata ? 'legacy_job_ids'
      AND EXISTS (SELECT 1 FROM jsonb_array_elements(e.metadata -> 'legacy_job_ids') AS v
                  WHERE (v #>> '{}')::bigint BETWEEN $1 AND $2)
), relinked AS (
    UPDATE executions AS e SET metadata = %[2]s
    WHERE e.execution_id = ANY (ARRAY(SELECT execution_id FROM holders)) AND e.metadata IS DISTINCT FROM %[2]s
    RETURNING 1
), keep AS MATERIALIZED (
    SELECT %[3]s AS execution_id
    FROM src AS j CROSS JOIN (SELECT * FROM spine_phase3_mapping LIMIT 1) AS spine_map
    WHERE cardinality(j.spine_natives) = 0 AND %[4]s
), dropped AS (
    DELETE FROM executions
    WHERE execution_id = ANY (ARRAY(SELECT %[5]s FROM generate_series($1::bigint, $2::bigint) AS g))
      AND execution_id NOT IN (SELECT execution_id FROM keep)
    RETURNING 1
), upserted AS (
    INSERT INTO executions (%[6]s)
    SELECT %[7]s
    FROM src AS j CROSS JOIN (SELECT * FROM spine_phase3_mapping LIMIT 1) AS spine_map
    WHERE cardinality(j.spine_natives) = 0 AND %[4]s
    ON CONFLICT (execution_id) DO UPDATE SET %[8]s
    WHERE ROW(%[9]s) IS DISTINCT FROM ROW(%[10]s)
    RETURNING 1
), unmapped AS MATERIALIZED (
    SELECT j.id, j.job_type, j.status
    FROM src AS j CROSS JOIN (SELECT * FROM spine_phase3_mapping LIMIT 1) AS spine_map
    WHERE cardinality(j.spine_natives) = 0 AND NOT %[4]s
), rejected AS (
    INSERT INTO spine_phase3_rejects (job_id, job_type, status)
    SELECT id, job_type, status FROM unmapped
    ON CONFLICT (job_id) DO UPDATE SET job_type = EXCLUDED.job_type, status = EXCLUDED.status, seen_at = now()
    RETURNING 1
), unrejected AS (
    DELETE FROM spine_phase3_rejects
    WHERE job_id BETWEEN $1 AND $2 AND job_id <> ALL (ARRAY(SELECT id FROM unmapped))
    RETURNING 1
)
SELECT (SELECT count(*) FROM relinked), (SELECT count(*) FROM dropped), (SELECT count(*) FROM upserted),
       (SELECT count(*) FROM rejected) + (SELECT count(*) FROM unrejected)`,
		nativesSQL("j"), relink, capturespine.JobExecutionIDSQL("j.id"), mapped, capturespine.JobExecutionIDSQL("g"),
		columnList(b.Columns), b.Select, strings.Join(set, ", "), strings.Join(mine, ", "), strings.Join(theirs, ", "))
}

// SyncCounts is what re-copying ranges changed.
type SyncCounts struct {
	Relinked int64 `json:"relinked"` // native executions whose legacy_job_ids changed
	Dropped  int64 `json:"dropped"`  // executions removed: their job is gone, linked or unmapped
	Upserted int64 `json:"upserted"` // executions written or corrected
	Rejects  int64 `json:"rejects"`  // rejects listed or cleared
}

func (c *SyncCounts) add(o SyncCounts) {
	c.Relinked += o.Relinked
	c.Dropped += o.Dropped
	c.Upserted += o.Upserted
	c.Rejects += o.Rejects
}

// syncRange re-copies the jobs with ids lo..hi, in slices no wider than a
// chunk, each in its own transaction. Each takes SHARE ROW EXCLUSIVE on jobs
// first (lock_timeout, retried): it waits for the writes in flight and holds
// new ones off for the few milliseconds the slice takes, so no trigger runs
// beside it. The trigger's bucket locks cannot serve here: it takes them
// only for ids the copy has not passed, and a repair may touch any id.
func syncRange(ctx context.Context, pool *pgxpool.Pool, opts Options, lo, hi int64, scanHolders bool) (SyncCounts, error) {
	var total SyncCounts
	b, err := bindMapping()
	if err != nil {
		return total, err
	}
	sql := syncSQL(b)
	width := opts.ChunkIDs
	for from := lo; from <= hi; from += width {
		to := min(hi, from+width-1)
		var c SyncCounts
		if _, err := withRetries(ctx, pool, opts, "repair", func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, batchSettings); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE"); err != nil {
				return err
			}
			return tx.QueryRow(ctx, sql, from, to, scanHolders).Scan(&c.Relinked, &c.Dropped, &c.Upserted, &c.Rejects)
		}); err != nil {
			return total, fmt.Errorf("phase3: re-copy ids %d-%d: %w", from, to, err)
		}
		total.add(c)
		if to == hi {
			break // also stops from+width overflowing
		}
	}
	return total, nil
}

// RepairResult is what Repair found and did.
type RepairResult struct {
	Before   VerifyReport  `json:"before"`
	Repaired []Mismatch    `json:"repaired"`
	Changed  SyncCounts    `json:"changed"`
	After    VerifyReport  `json:"after"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// Repair verifies, re-copies every mismatching range, and verifies again.
// It holds the runner lock, so no copy runs meanwhile; the application
// keeps writing, held off only while each range is re-copied.
func Repair(ctx context.Context, pool *pgxpool.Pool, opts Options) (RepairResult, error) {
	opts = opts.withDefaults()
	start := time.Now()
	var res RepairResult
	release, err := lockRunner(ctx, pool)
	if err != nil {
		return res, err
	}
	defer release()
	if res.Before, err = Verify(ctx, pool, opts); err != nil {
		return res, err
	}
	for _, m := range res.Before.Mismatches {
		c, err := syncRange(ctx, pool, opts, m.FirstID, m.LastID, true)
		res.Changed.add(c)
		if err != nil {
			return res, err
		}
		res.Repaired = append(res.Repaired, m)
		opts.Logger.Info("phase3 repair: re-copied", "first_id", m.FirstID, "last_id", m.LastID,
			"upserted", c.Upserted, "dropped", c.Dropped, "relinked", c.Relinked)
	}
	if len(res.Repaired) == 0 {
		res.After = res.Before
	} else if res.After, err = Verify(ctx, pool, opts); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// Write prints the result for an operator.
func (r RepairResult) Write(w io.Writer) {
	if len(r.Repaired) == 0 {
		fmt.Fprintln(w, "Nothing to repair:")
		r.Before.Write(w)
		return
	}
	fmt.Fprintf(w, "Re-copied %d id ranges: %d executions written or corrected, %d removed, %d native executions relinked, %d rejects changed.\n",
		len(r.Repaired), r.Changed.Upserted, r.Changed.Dropped, r.Changed.Relinked, r.Changed.Rejects)
	for _, m := range r.Repaired {
		fmt.Fprintf(w, "  ids %d-%d\n", m.FirstID, m.LastID)
	}
	fmt.Fprintln(w, "\nAfter the repair:")
	r.After.Write(w)
}
