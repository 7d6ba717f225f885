package phase3

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/internal/pglock"
)

// ErrBusy is returned when another phase 3 copy, repair, cutover or
// rollback holds the runner lock on this database.
var ErrBusy = errors.New("phase3: another phase 3 copy, repair, cutover or rollback is running on this database")

// errBucketsBusy is a batch finding application transactions holding the
// job ids it needs: it waits and tries again.
var errBucketsBusy = errors.New("jobs ids held by application transactions")

// errRetryNow is a step asking to be run again at once, differently (a
// batch whose fast statement met an execution it did not expect).
var errRetryNow = errors.New("retry at once")

// querier is what both a pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// lockRunner takes the runner lock; a second operator is told, not queued.
func lockRunner(ctx context.Context, pool *pgxpool.Pool) (release func(), err error) {
	release, err = pglock.TryAdvisory(ctx, pool, runnerLock)
	switch {
	case errors.Is(err, pglock.ErrHeld):
		return nil, ErrBusy
	case err != nil:
		return nil, fmt.Errorf("phase3: runner lock: %w", err)
	}
	return release, nil
}

// runnerActive says whether some session holds the runner lock.
func runnerActive(ctx context.Context, q querier) (bool, error) {
	var held bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1)`, runnerLock).Scan(&held)
	return held, err
}

// withRetries runs fn in a transaction with lock_timeout set, retrying with
// jittered backoff when it times out on a lock, deadlocks or fails to
// serialise (each a transient clash with the application's writes), or
// finds its jobs ids busy. fn's context is ctx without its cancellation: a
// batch that has started finishes (or fails) on its own, so a signal stops
// the copy between batches, never in the middle of one.
func withRetries(ctx context.Context, pool *pgxpool.Pool, opts Options, what string, fn func(ctx context.Context, tx pgx.Tx) error) (attempts int, err error) {
	run := context.WithoutCancel(ctx)
	setLockTimeout := fmt.Sprintf("SET LOCAL lock_timeout = %d", opts.LockTimeout.Milliseconds())
	busySince := time.Time{}
	conflicts := 0 // attempts lost to lock timeouts and the like, bounded by MaxAttempts
	for attempts = 1; ; attempts++ {
		err = pgx.BeginFunc(run, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(run, setLockTimeout); err != nil {
				return err
			}
			return fn(run, tx)
		})
		var wait time.Duration
		switch {
		case err == nil:
			return attempts, nil
		case errors.Is(err, errRetryNow):
			// Asked for by fn, which changes what it does next time:
			// not counted against MaxAttempts, nothing to wait for.
			continue
		case errors.Is(err, errBucketsBusy):
			// Normal while application transactions touch these jobs:
			// retried until BusyTimeout, not counted against MaxAttempts.
			if busySince.IsZero() {
				busySince = time.Now()
			}
			if time.Since(busySince) > opts.BusyTimeout {
				return attempts, fmt.Errorf("%s: %w for more than %s", what, err, opts.BusyTimeout)
			}
			// An application write holds a bucket for a few milliseconds.
			wait = time.Duration(1000+rand.IntN(4000)) * time.Microsecond
		case pglock.Conflict(err) && conflicts+1 < opts.MaxAttempts:
			conflicts++
			wait = time.Duration(conflicts) * 50 * time.Millisecond
			wait += time.Duration(rand.Int64N(int64(wait)))
			opts.Logger.Warn("phase3: lock conflict, retrying", "step", what, "attempt", conflicts, "wait", wait, "err", err)
		default:
			return attempts, err
		}
		select {
		case <-ctx.Done():
			return attempts, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// lockBuckets takes, without waiting, the bucket locks of job ids lo..hi
// for the rest of tx; errBucketsBusy when an application transaction holds
// one. Not waiting matters: a waiting exclusive request would queue every
// later application write on those ids behind it.
func lockBuckets(ctx context.Context, tx pgx.Tx, lo, hi int64) error {
	var ok bool
	err := tx.QueryRow(ctx, tryLockBuckets, lo>>bucketShift, hi>>bucketShift).Scan(&ok)
	if err != nil {
		return err
	}
	if !ok {
		return errBucketsBusy
	}
	return nil
}

// tryLockBuckets tries the bucket locks $1..$2 (bucket numbers).
var tryLockBuckets = fmt.Sprintf(`SELECT bool_and(pg_try_advisory_xact_lock(%d, (b & 2147483647)::int4))
		FROM generate_series($1::bigint, $2::bigint) AS b`, bucketClass)

func tableExists(ctx context.Context, q querier, name string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok)
	return ok, err
}
