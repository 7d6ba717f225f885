package phase3

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// Why a batch and the trigger can never produce a wrong execution, however
// their transactions interleave (the argument the tests exercise):
//
//  1. The trigger is installed, and committed, before the copy reads the
//     largest job id. CREATE TRIGGER waits for every transaction writing
//     jobs, so each row written without the trigger is committed, visible,
//     and within the copy's bound; each write after it fires the trigger.
//  2. A batch takes the bucket locks (4096 ids each) of its ids
//     exclusively, without waiting (it retries, so it never queues
//     application writes behind it), before the statement that reads jobs
//     takes its snapshot. The trigger takes the same bucket shared for a
//     job id the copy has still to pass, as the committed checkpoint says
//     (last_id < id <= max_id, or any id before the bound is set). So a
//     batch and any transaction whose trigger touched its ids are strictly
//     ordered: that transaction committed before the batch's snapshot (the
//     batch sees its rows and its execution writes), or it fires after the
//     batch committed (it sees the batch's rows, and the trigger replaces
//     them with the job's newest state). A trigger that skips the lock saw
//     the id at or below a committed checkpoint, or above the bound: no
//     batch reads that id again. No row locks are taken on jobs, so no WAL
//     is written for them and readers never wait; a write waits (at most
//     one batch) only on an uncopied id in the bucket being copied.
//  3. Within that order the batch is idempotent: it keeps an execution
//     the trigger already wrote (from a version at least as new as the
//     batch's snapshot) and inserts only for jobs that have none, linking
//     is a set union, and a job the batch does not see (deleted before its
//     snapshot) gets no execution, so nothing is resurrected. The batch
//     finds those executions itself, before inserting (batchSQL says how),
//     rather than leaving them to ON CONFLICT; should it ever miss one,
//     the primary key refuses the INSERT, the batch's transaction rolls
//     back whole, and the batch runs again with ON CONFLICT (execution_id)
//     DO NOTHING, which keeps it. The checkpoint moves in the same
//     transaction, so a crash at any instant either keeps a whole batch or
//     none of it.
//  4. Every trigger write is an upsert or delete by the deterministic id,
//     applied in jobs' own row-lock order, so the newest version wins.
//  5. TRUNCATE jobs takes ACCESS EXCLUSIVE on jobs, which a batch (reading
//     jobs) and any transaction writing jobs exclude, so it is strictly
//     ordered with both; its statement trigger removes, in the same
//     transaction, every execution, link and reject the jobs stood for.
//     A batch after it finds no jobs; a job inserted after it is new to
//     the row trigger and the copy alike.
//  6. Batches run side by side (copyLoop) only over ranges that share no
//     bucket, and write no row another batch writes until their turn: the
//     executions a batch inserts or deletes are its own jobs', and the
//     natives it links, which two batches may share, are updated only
//     once every batch before it has committed, with the checkpoint
//     (checkpointSQL), which moves only from where that batch starts. So
//     batches commit in id order, the checkpoint stays one job id below
//     which everything is copied, and a crash loses only batches not yet
//     committed, whose ids the checkpoint still shows as to do.
//
// What it does not cover: a native execution gaining or losing a job's
// Celery task id after the job was mapped (there is no trigger on
// executions, the hot table). Verify finds those, and Repair fixes them
// (with writes to jobs held off by a table lock: see syncRange). And an
// application writing jobs in REPEATABLE READ or SERIALIZABLE transactions
// can get a serialization failure (40001) when its trigger's upsert meets
// an execution a batch committed after its snapshot; it retries it as any
// such failure (Capture-Spine's tracker writes in READ COMMITTED).

// batchSQL is a batch's work on the jobs with ids in ($1, $2]: it lists
// the unmappable ones as rejects, inserts the executions of the rest, and
// returns the links to make from native executions to the overlapping ones
// as pairs (native execution id, job id), for checkpointSQL to apply.
// Nothing it writes is a row another batch writes, so batches of disjoint
// ranges run it at the same time (copyLoop); the links, which two batches
// can share, and the checkpoint are left to checkpointSQL, which batches
// run one at a time, in id order.
//
// Almost every job is simply mapped, so the statement is built around one
// INSERT … SELECT straight from jobs, as lean as the plain statement it is
// measured against: it takes the jobs of the range that are mapped and
// whose Celery task id no execution carries yet (an index probe that stops
// at the first entry; a job without a task id probes its own execution's
// id instead), and returns their ids (the legacy_job_id every execution
// the mapping writes holds). The few jobs it leaves (the rest: ones that
// share a task id with an execution, native or another job's, unmapped
// ones, and ones whose execution the trigger already wrote) are then
// looked at closely: linked, listed as rejects, skipped, or inserted.
// Reading jobs twice, the second time only their ids against the INSERT's,
// costs less than carrying every row through a materialised CTE, and the
// probe runs just before the insert of the same job, while the index pages
// it read are still in shared buffers.
//
// So neither INSERT needs ON CONFLICT, whose speculative insertion costs
// several per cent of a batch. An execution the probes cannot see is one
// carrying another Celery task id than its job's current one, or one
// committed after the batch's snapshot; by point 2 above neither exists
// (the trigger writes a job's execution from its current row, holding the
// bucket lock), short of someone writing executions behind phase 3's back.
// Should one exist all the same, an INSERT fails with a unique violation
// and the batch runs again with onConflict, which adds ON CONFLICT
// (execution_id) DO NOTHING: the execution in the way is kept, as point 3
// says.
func batchSQL(b boundMapping, onConflict bool) string {
	conflict := ""
	if onConflict {
		conflict = "\n    ON CONFLICT (execution_id) DO NOTHING"
	}
	return fmt.Sprintf(`
WITH inserted AS (
    INSERT INTO executions (%[1]s)
    SELECT %[2]s
    FROM jobs AS j CROSS JOIN (SELECT * FROM spine_phase3_mapping LIMIT 1) AS spine_map
    WHERE j.id > $1 AND j.id <= $2 AND %[3]s
      AND NOT EXISTS (SELECT FROM executions AS spine_e WHERE spine_e.backend_task_id = j.celery_task_id OFFSET 0)
      AND (j.celery_task_id IS NOT NULL
           OR NOT EXISTS (SELECT FROM executions AS spine_o WHERE spine_o.execution_id = %[4]s OFFSET 0))%[5]s
    RETURNING (metadata -> '%[6]s')::bigint AS id
), rest AS MATERIALIZED (
    SELECT j.*, %[7]s AS spine_natives,
           EXISTS (SELECT FROM executions AS spine_o WHERE spine_o.execution_id = %[4]s OFFSET 0) AS spine_own,
           %[3]s AS spine_mapped
    FROM jobs AS j LEFT JOIN (SELECT * FROM spine_phase3_mapping LIMIT 1) AS spine_map ON true
    WHERE j.id > $1 AND j.id <= $2 AND j.id NOT IN (SELECT i.id FROM inserted AS i WHERE i.id IS NOT NULL)
), overlapping AS MATERIALIZED (
    SELECT r.id, r.spine_natives FROM rest AS r WHERE cardinality(r.spine_natives) > 0
), unduplicated AS (
    DELETE FROM executions
    WHERE execution_id = ANY (ARRAY(SELECT %[8]s FROM overlapping AS o))
    RETURNING 1
), unmapped AS MATERIALIZED (
    SELECT r.id, r.job_type, r.status FROM rest AS r WHERE cardinality(r.spine_natives) = 0 AND NOT r.spine_mapped
), rejected AS (
    INSERT INTO spine_phase3_rejects (job_id, job_type, status)
    SELECT id, job_type, status FROM unmapped
    ON CONFLICT (job_id) DO UPDATE SET job_type = EXCLUDED.job_type, status = EXCLUDED.status, seen_at = now()
    RETURNING 1
), unrejected AS (
    DELETE FROM spine_phase3_rejects
    WHERE job_id > $1 AND job_id <= $2 AND job_id <> ALL (ARRAY(SELECT id FROM unmapped))
    RETURNING 1
), shared AS (
    INSERT INTO executions (%[1]s)
    SELECT %[2]s
    FROM rest AS j CROSS JOIN (SELECT * FROM spine_phase3_mapping LIMIT 1) AS spine_map
    WHERE cardinality(j.spine_natives) = 0 AND j.spine_mapped AND NOT j.spine_own%[5]s
    RETURNING 1
), counts AS MATERIALIZED (
    SELECT (SELECT count(*) FROM inserted) AS fast,
           (SELECT count(*) FROM rest) AS rest,
           (SELECT count(*) FROM shared) AS shared,
           (SELECT count(*) FROM overlapping) AS linked,
           (SELECT count(*) FROM unmapped) AS rejected
)
SELECT c.fast + c.rest, c.fast + c.shared, c.linked, c.rejected, l.natives, l.jobs
FROM counts AS c,
     (SELECT array_agg(n.execution_id::text) AS natives, array_agg(o.id) AS jobs
      FROM overlapping AS o CROSS JOIN LATERAL unnest(o.spine_natives) AS n(execution_id)) AS l`,
		columnList(b.Columns), b.Select, mappedSQL("j"), capturespine.JobExecutionIDSQL("j.id"), conflict,
		metaLegacyJobID, nativesSQL("j"), capturespine.JobExecutionIDSQL("o.id"))
}

// checkpointSQL ends a batch, once every batch before it has committed:
// it links the native executions $1 to the jobs $2 (pairs, as batchSQL
// returns them; linking is a set union, so it composes with what the
// trigger and other batches linked), and moves the checkpoint from $3 to
// $4 with the batch's counts ($5 scanned, $6 copied, $7 linked, $8
// rejected; $9 the batch size and $10 the rate, recorded for status). It
// returns no row unless the checkpoint stood at $3: a batch after a gap in
// the ids never commits.
const checkpointSQL = `
WITH links AS MATERIALIZED (
    SELECT p.execution_id::uuid AS execution_id, array_agg(p.job_id ORDER BY p.job_id) AS job_ids
    FROM unnest($1::text[], $2::bigint[]) AS p(execution_id, job_id)
    GROUP BY p.execution_id
), linked AS (
    UPDATE executions AS e
    SET metadata = spine_phase3_relink(e.metadata, 1, 0, l.job_ids)
    FROM links AS l
    WHERE e.execution_id = ANY (ARRAY(SELECT execution_id FROM links)) AND e.execution_id = l.execution_id
    RETURNING 1
)
UPDATE spine_phase3_copy AS cp
SET last_id = $4, rows_scanned = cp.rows_scanned + $5, rows_copied = cp.rows_copied + $6,
    rows_linked = cp.rows_linked + $7, rows_rejected = cp.rows_rejected + $8,
    batches = cp.batches + 1, batch_size = $9, rate = $10, updated_at = now()
WHERE cp.last_id = $3
RETURNING (SELECT count(*) FROM linked)`

// batchSettings are a batch's: a plan for its actual ids (a generic plan
// would be sized for no ids in particular), and no JIT compilation, which
// costs more than it saves on batches this size.
const batchSettings = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off"

// selectBatchRange finds the next batch: its first job id after $1 and the
// id $3 rows further, both at most $2.
const selectBatchRange = `
SELECT (SELECT id FROM jobs WHERE id > $1 AND id <= $2 ORDER BY id LIMIT 1),
       (SELECT id FROM jobs WHERE id > $1 AND id <= $2 ORDER BY id OFFSET $3 LIMIT 1)`

// batchRange is the job ids (lo, hi] of one batch; first is the first id
// in it that existed when the range was chosen.
type batchRange struct {
	lo, first, hi int64
}

func (r batchRange) firstBucket() int64 { return r.first >> bucketShift }
func (r batchRange) lastBucket() int64  { return r.hi >> bucketShift }

// nextRange is the batch after last: about n jobs, up to maxID, never more
// than maxBucketsPerBatch buckets, and ending at the end of a bucket when
// it spans one, so that the next batch shares no bucket with it and can
// run at the same time (copyLoop). ok is false when no job is left.
func nextRange(ctx context.Context, q querier, last, maxID int64, n int) (r batchRange, ok bool, err error) {
	var first, hi *int64
	if err := q.QueryRow(ctx, selectBatchRange, last, maxID, max(n, 1)-1).Scan(&first, &hi); err != nil {
		return r, false, fmt.Errorf("find the next ids: %w", err)
	}
	if first == nil {
		return r, false, nil
	}
	r = batchRange{lo: last, first: *first, hi: maxID}
	if hi != nil {
		r.hi = *hi
	}
	if b := r.first >> bucketShift; b < math.MaxInt64>>bucketShift-maxBucketsPerBatch {
		r.hi = min(r.hi, (b+maxBucketsPerBatch)<<bucketShift-1)
	}
	// End at a bucket boundary: back to the end of the last whole bucket
	// when that keeps at least half the ids, else on to the end of this one
	// when that at most doubles them. Otherwise (a small batch inside a
	// large bucket) the next batch shares the bucket and waits for this one.
	down := (r.hi+1)>>bucketShift<<bucketShift - 1
	up := down + 1<<bucketShift
	if r.hi == down || r.hi >= maxID {
		return r, true, nil // no batch after it, or none sharing its bucket
	}
	switch span := r.hi - r.lo; {
	case down >= r.first && down-r.lo >= span/2:
		r.hi = down
	case up <= maxID && up-r.lo <= 2*span:
		r.hi = up
	}
	return r, true, nil
}

// batchCounts is what one batch did.
type batchCounts struct {
	scanned, copied, linked, rejected int64
	work                              time.Duration // its two statements, waits excluded
}

// copyBatch runs one batch over r in tx with sql (one of the two
// renderings of batchSQL): the bucket locks, the work, then, once turn (the
// batch before it, nil for none) has committed, the links and the
// checkpoint. own is this batch's turn; n and rate are recorded for status.
func copyBatch(ctx context.Context, tx pgx.Tx, sql string, r batchRange, n int, rate float64, turn *batchTurn, own *batchTurn, turnWait time.Duration) (batchCounts, error) {
	var c batchCounts
	if _, err := tx.Exec(ctx, batchSettings); err != nil {
		return c, err
	}
	err := lockBuckets(ctx, tx, r.first, r.hi)
	// The batch after this one stops waiting for its turn while this one
	// waits for application transactions (batchTurn.wait says why).
	own.blocked.Store(errors.Is(err, errBucketsBusy))
	if err != nil {
		return c, err
	}
	t0 := time.Now()
	var (
		natives []string
		jobs    []int64
	)
	err = tx.QueryRow(ctx, sql, r.lo, r.hi).Scan(&c.scanned, &c.copied, &c.linked, &c.rejected, &natives, &jobs)
	if err != nil {
		return c, err
	}
	c.work = time.Since(t0)
	if err := turn.wait(turnWait); err != nil {
		return c, err
	}
	t0 = time.Now()
	var links int64
	err = tx.QueryRow(ctx, checkpointSQL, natives, jobs, r.lo, r.hi, c.scanned, c.copied, c.linked, c.rejected, n, rate).Scan(&links)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("the checkpoint is not at job id %d, where this batch starts", r.lo)
	}
	c.work += time.Since(t0)
	return c, err
}

// isUniqueViolation says whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
