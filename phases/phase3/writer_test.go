package phase3_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/internal/seed"
)

// jobWriter is Capture-Spine's Celery tasks: on a pool of its own it
// inserts, updates and deletes jobs, some in multi-row transactions, some
// taking or dropping a Celery task id a native execution carries, as fast
// as rate allows.
type jobWriter struct {
	pool    *pgxpool.Pool
	writes  atomic.Int64 // rows written
	mu      sync.Mutex
	errs    []error
	stop    chan struct{}
	done    sync.WaitGroup
	natives []string // task ids of native executions
	spread  int64    // the jobs' ids are multiples of spread (spreadIDs)
}

func startWriter(t *testing.T, url string, rate int, seedN uint64) *jobWriter {
	t.Helper()
	return startSpreadWriter(t, url, rate, seedN, 1)
}

// startSpreadWriter is startWriter for jobs whose ids spreadIDs multiplied
// by spread: the rows it updates and deletes are mostly ones that exist.
func startSpreadWriter(t *testing.T, url string, rate int, seedN uint64, spread int64) *jobWriter {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	w := &jobWriter{pool: pool, stop: make(chan struct{}), spread: spread}
	rows, err := pool.Query(context.Background(), "SELECT backend_task_id FROM executions WHERE backend_task_id IS NOT NULL ORDER BY 1 LIMIT 50")
	if err == nil {
		w.natives, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(w.natives) == 0 {
		t.Fatalf("native task ids: %v", err)
	}
	w.done.Add(1)
	go w.run(rate, seedN)
	t.Cleanup(func() { w.Stop(); pool.Close() })
	return w
}

func (w *jobWriter) run(rate int, seedN uint64) {
	defer w.done.Done()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seedN, 99))
	var maxID int64
	_ = w.pool.QueryRow(ctx, "SELECT max(id) FROM jobs WHERE id < 1000000").Scan(&maxID)
	maxID = max(1, maxID/w.spread)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		n := int64(1)
		var err error
		switch op := r.IntN(20); {
		case op < 7:
			err = w.insert(ctx, r)
		case op < 15:
			n, err = w.update(ctx, r, maxID)
		case op < 18:
			var tag interface{ RowsAffected() int64 }
			tag, err = w.pool.Exec(ctx, "DELETE FROM jobs WHERE id = $1", w.pick(r, maxID))
			if err == nil {
				n = tag.RowsAffected()
			}
		default: // a task's bookkeeping: several rows in one transaction
			err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
				for range 3 {
					if _, err := tx.Exec(ctx, "UPDATE jobs SET progress = $2, updated_at = now() WHERE id = $1", w.pick(r, maxID), r.IntN(101)); err != nil {
						return err
					}
				}
				return nil
			})
			n = 3
		}
		if err != nil {
			w.mu.Lock()
			w.errs = append(w.errs, err)
			w.mu.Unlock()
			continue
		}
		w.writes.Add(n)
	}
}

// pick is the id of a job the seed wrote (or, now and then, deleted).
func (w *jobWriter) pick(r *rand.Rand, maxID int64) int64 { return (1 + r.Int64N(maxID)) * w.spread }

func (w *jobWriter) taskID(r *rand.Rand) any {
	switch r.IntN(5) {
	case 0:
		return nil
	case 1:
		return w.natives[r.IntN(len(w.natives))] // an overlap
	default:
		return fmt.Sprintf("task-%x", r.Uint64())
	}
}

func (w *jobWriter) insert(ctx context.Context, r *rand.Rand) error {
	var payload any
	if r.IntN(4) > 0 {
		payload = fmt.Sprintf(`{"args": [%d], "kwargs": {"note": "écrit %d"}}`, r.IntN(1000), r.IntN(1000))
	}
	_, err := w.pool.Exec(ctx, `INSERT INTO jobs (job_type, status, celery_task_id, queue, payload, attempts)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		seed.JobTypes[r.IntN(len(seed.JobTypes))], seed.JobStatuses[r.IntN(len(seed.JobStatuses))], w.taskID(r),
		[]any{nil, "celery", "imports"}[r.IntN(3)], payload, r.IntN(3))
	return err
}

func (w *jobWriter) update(ctx context.Context, r *rand.Rand, maxID int64) (int64, error) {
	id := w.pick(r, maxID)
	var sql string
	args := []any{id}
	switch r.IntN(3) {
	case 0:
		sql = "UPDATE jobs SET celery_task_id = $2, updated_at = now() WHERE id = $1"
		args = append(args, w.taskID(r))
	default:
		sql = "UPDATE jobs SET status = $2, attempts = attempts + 1, result = $3, updated_at = now() WHERE id = $1"
		args = append(args, seed.JobStatuses[r.IntN(len(seed.JobStatuses))], fmt.Sprintf(`{"n": %d}`, r.IntN(100)))
	}
	tag, err := w.pool.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

// Stop stops the writer and returns its errors.
func (w *jobWriter) Stop() []error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.done.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errs
}
