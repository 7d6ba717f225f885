package phase1

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/pglock"
)

// CheckpointTable holds the backfill's position, committed with each batch,
// so an interrupted apply resumes where it stopped.
const CheckpointTable = "spine_phase1_backfill"

const createCheckpoint = `
CREATE TABLE IF NOT EXISTS spine_phase1_backfill (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_execution_id uuid,
    rows_scanned      bigint      NOT NULL DEFAULT 0,
    rows_updated      bigint      NOT NULL DEFAULT 0,
    started_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
INSERT INTO spine_phase1_backfill DEFAULT VALUES ON CONFLICT DO NOTHING`

// priorityRule is the lane rule over the row being updated.
var priorityRule = capturespine.PriorityForLaneSQL("e.lane")

// backfillBatchSQL updates one keyset batch. Only rows no spine-go writer
// made are touched (Capture-Spine never sets executor_name; the dispatcher
// always does), and only when their priority differs from the lane's, so a
// re-run after a crash rewrites nothing it already did.
var backfillBatchSQL = fmt.Sprintf(`
WITH batch AS (
    SELECT execution_id FROM executions
    WHERE %%s
    ORDER BY execution_id
    LIMIT $2
), updated AS (
    UPDATE executions AS e SET priority = %[1]s
    FROM batch
    WHERE e.execution_id = batch.execution_id
      AND e.executor_name IS NULL
      AND e.priority IS DISTINCT FROM %[1]s
    RETURNING 1
)
SELECT (SELECT execution_id::text FROM batch ORDER BY execution_id DESC LIMIT 1),
       (SELECT count(*) FROM batch),
       (SELECT count(*) FROM updated)`, priorityRule)

var (
	firstBatch = fmt.Sprintf(backfillBatchSQL, "$1::uuid IS NULL")
	nextBatch  = fmt.Sprintf(backfillBatchSQL, "execution_id > $1::uuid")
)

const advanceCheckpoint = `
UPDATE spine_phase1_backfill
SET last_execution_id = $1, rows_scanned = rows_scanned + $2, rows_updated = rows_updated + $3,
    updated_at = now(), finished_at = CASE WHEN $4 THEN now() END`

// BackfillProgress is reported after each batch.
type BackfillProgress struct {
	Scanned, Updated, Total int64
	Rate                    float64 // rows scanned per second in this run
	ETA                     time.Duration
	Done                    bool
}

// Checkpoint is the backfill's committed position.
type Checkpoint struct {
	Exists          bool       `json:"exists"`
	LastExecutionID string     `json:"last_execution_id,omitempty"`
	RowsScanned     int64      `json:"rows_scanned"`
	RowsUpdated     int64      `json:"rows_updated"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
}

func readCheckpoint(ctx context.Context, q querier) (Checkpoint, error) {
	var c Checkpoint
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", CheckpointTable).Scan(&c.Exists); err != nil || !c.Exists {
		return c, err
	}
	var last *string
	err := q.QueryRow(ctx, `SELECT last_execution_id::text, rows_scanned, rows_updated, started_at, finished_at FROM spine_phase1_backfill`).
		Scan(&last, &c.RowsScanned, &c.RowsUpdated, &c.StartedAt, &c.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, nil
	}
	if last != nil {
		c.LastExecutionID = *last
	}
	return c, err
}

// backfillRemaining counts the rows the backfill would still update.
func backfillRemaining(ctx context.Context, q querier, executions Table) (int64, error) {
	hasColumns := slices.ContainsFunc(executions.Columns, func(c Column) bool { return c.Name == "executor_name" })
	sql := fmt.Sprintf("SELECT count(*) FROM executions AS e WHERE %s <> 'normal'", priorityRule)
	if hasColumns {
		sql = fmt.Sprintf("SELECT count(*) FROM executions AS e WHERE e.executor_name IS NULL AND e.priority IS DISTINCT FROM %s", priorityRule)
	}
	var n int64
	if err := q.QueryRow(ctx, sql).Scan(&n); err != nil {
		return 0, fmt.Errorf("phase1: count rows to backfill: %w", err)
	}
	return n, nil
}

// BackfillResult is what one backfill run did.
type BackfillResult struct {
	Batches     int           `json:"batches"`
	RowsScanned int64         `json:"rows_scanned"`
	RowsUpdated int64         `json:"rows_updated"`
	Retries     int           `json:"retries"`
	Resumed     bool          `json:"resumed"`
	AlreadyDone bool          `json:"already_done"`
	Elapsed     time.Duration `json:"elapsed_ns"`
}

// backfill walks executions from the checkpoint to the end, one committed
// batch at a time. Cancelling ctx stops it between batches (a batch in
// flight rolls back, its checkpoint with it), and the next run resumes.
func backfill(ctx context.Context, pool *pgxpool.Pool, opts Options, total int64) (BackfillResult, error) {
	start := time.Now()
	var res BackfillResult
	if _, err := pool.Exec(ctx, createCheckpoint); err != nil {
		return res, fmt.Errorf("phase1 backfill: checkpoint table: %w", err)
	}
	cp, err := readCheckpoint(ctx, pool)
	if err != nil {
		return res, fmt.Errorf("phase1 backfill: read checkpoint: %w", err)
	}
	if cp.FinishedAt != nil {
		res.AlreadyDone = true
		return res, nil
	}
	res.Resumed = cp.RowsScanned > 0
	last := cp.LastExecutionID
	lastLog := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("phase1 backfill: stopped after %d batches at %s (resume by running apply again): %w", res.Batches, last, err)
		}
		var batchLast *string
		var scanned, updated int64
		attempts, err := withRetries(ctx, pool, opts, func(tx pgx.Tx) error {
			sql, arg := nextBatch, any(last)
			if last == "" {
				sql, arg = firstBatch, nil
			}
			if err := tx.QueryRow(ctx, sql, arg, opts.BatchSize).Scan(&batchLast, &scanned, &updated); err != nil {
				return err
			}
			newLast, done := last, batchLast == nil
			if !done {
				newLast = *batchLast
			}
			var lastArg any
			if newLast != "" {
				lastArg = newLast
			}
			_, err := tx.Exec(ctx, advanceCheckpoint, lastArg, scanned, updated, done)
			return err
		})
		res.Retries += attempts - 1
		if err != nil {
			return res, fmt.Errorf("phase1 backfill: batch after %q: %w", last, err)
		}
		res.Batches++
		res.RowsScanned += scanned
		res.RowsUpdated += updated
		done := batchLast == nil
		if !done {
			last = *batchLast
		}
		res.Elapsed = time.Since(start)
		p := BackfillProgress{Scanned: cp.RowsScanned + res.RowsScanned, Updated: cp.RowsUpdated + res.RowsUpdated, Total: total, Done: done}
		if secs := res.Elapsed.Seconds(); secs > 0 {
			p.Rate = float64(res.RowsScanned) / secs
			if p.Rate > 0 && total > p.Scanned {
				p.ETA = time.Duration(float64(total-p.Scanned) / p.Rate * float64(time.Second))
			}
		}
		if opts.Progress != nil {
			opts.Progress(p)
		}
		if done || time.Since(lastLog) > 5*time.Second {
			opts.Logger.Info("phase1 backfill", "scanned", p.Scanned, "updated", p.Updated, "total", total, "rate", int(p.Rate), "eta", p.ETA.Round(time.Second), "done", done)
			lastLog = time.Now()
		}
		if done {
			return res, nil
		}
	}
}

// withRetries runs fn in a transaction with lock_timeout set, retrying with
// jittered backoff when it times out on a lock, deadlocks or fails to
// serialise: each is a transient clash with the application's writes.
func withRetries(ctx context.Context, pool *pgxpool.Pool, opts Options, fn func(pgx.Tx) error) (attempts int, err error) {
	for attempts = 1; ; attempts++ {
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", opts.LockTimeout.Milliseconds())); err != nil {
				return err
			}
			return fn(tx)
		})
		if err == nil || !pglock.Conflict(err) || attempts >= opts.MaxAttempts {
			return attempts, err
		}
		wait := time.Duration(attempts) * 100 * time.Millisecond
		wait += time.Duration(rand.Int64N(int64(wait)))
		opts.Logger.Warn("phase1: lock conflict, retrying", "attempt", attempts, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return attempts, ctx.Err()
		case <-time.After(wait):
		}
	}
}
