package phase3

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/internal/pglock"
)

// idRange is the job ids first..last, the range one verify worker
// compares. math.MinInt64 and math.MaxInt64 stand for open ends: the
// outer ranges also take the keys beyond every job id (an execution
// standing for a job that is gone, a stray link).
type idRange struct{ first, last int64 }

var allIDs = idRange{math.MinInt64, math.MaxInt64}

func (r idRange) String() string {
	switch {
	case r == allIDs:
		return "all ids"
	case r.first == math.MinInt64:
		return fmt.Sprintf("ids up to %d", r.last)
	case r.last == math.MaxInt64:
		return fmt.Sprintf("ids from %d", r.first)
	}
	return fmt.Sprintf("ids %d-%d", r.first, r.last)
}

// sql is the range as a predicate on the bigint expression k: comparisons
// with bigint constants, so that on jobs.id the planner can scan the
// primary key for the range alone. An open end has no comparison (and
// -9223372036854775808 would parse as numeric, which no bigint index serves).
func (r idRange) sql(k string) string {
	switch {
	case r == allIDs:
		return "true"
	case r.first == math.MinInt64:
		return fmt.Sprintf("%s <= %d", k, r.last)
	case r.last == math.MaxInt64:
		return fmt.Sprintf("%s >= %d", k, r.first)
	}
	return fmt.Sprintf("%s BETWEEN %d AND %d", k, r.first, r.last)
}

// within narrows scope, a predicate on a key expression, to the range. The
// comparison's every key (job ids, the legacy ids of migrated executions,
// linked ids, rejects) goes through scope, so every side is cut alike.
func (r idRange) within(scope func(string) string) func(string) string {
	if r == allIDs {
		return scope
	}
	return func(k string) string { return scope(k) + " AND " + r.sql(k) }
}

// splitIDs cuts the id line into at most n contiguous ranges whose inner
// bounds are chunk boundaries between minID and maxID, so that no chunk is
// in two ranges. The cut is even by id: job ids come from a sequence, so
// that is about even by rows (a few far outliers only unbalance the work).
func splitIDs(minID, maxID, chunkIDs int64, n int) []idRange {
	first, last := floorDiv(minID, chunkIDs), floorDiv(maxID, chunkIDs)
	span := uint64(last) - uint64(first) + 1 // chunks from minID to maxID
	if span == 0 {                           // all 2^64 ids, one per chunk
		span = math.MaxUint64
	}
	parts := min(uint64(max(n, 1)), span)
	q, rem := span/parts, span%parts
	out := make([]idRange, 0, parts)
	lo := int64(math.MinInt64)
	for i := uint64(1); i < parts; i++ {
		// The i-th cut, in chunks after the first; wrapping int64
		// arithmetic gives first + off exactly, and it is at most last.
		off := q*i + rem*i/parts
		bound := (first + int64(off)) * chunkIDs
		out = append(out, idRange{lo, bound - 1})
		lo = bound
	}
	return append(out, idRange{lo, math.MaxInt64})
}

// floorDiv is a / b rounded down, b > 0: the chunk of id a, as chunkSQL
// computes it.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// verifyRanges splits the job ids among as many workers as verify can
// have: VerifyParallel, but no more than the pool has connections free
// besides the coordinating transaction's (a repair or cutover holds one
// more for the runner lock; a worker waiting for a connection nobody
// releases would hang verify), and no more than there are chunks.
func verifyRanges(ctx context.Context, tx pgx.Tx, pool *pgxpool.Pool, opts Options) ([]idRange, error) {
	n := opts.VerifyParallel
	if free := int(pool.Config().MaxConns - pool.Stat().AcquiredConns()); n > 1+free {
		opts.Logger.Info("phase3 verify: fewer workers than asked, the pool has no more connections free (pool_max_conns in the database URL)",
			"asked", n, "workers", 1+free)
		n = 1 + free
	}
	if n <= 1 {
		return []idRange{allIDs}, nil
	}
	var lo, hi *int64
	if err := tx.QueryRow(ctx, "SELECT min(id), max(id) FROM jobs").Scan(&lo, &hi); err != nil {
		return nil, fmt.Errorf("split the ids: %w", err)
	}
	if lo == nil {
		return []idRange{allIDs}, nil
	}
	return splitIDs(*lo, *hi, opts.ChunkIDs, n), nil
}

// snapshotIDRE is what pg_export_snapshot returns: hex digits and dashes.
var snapshotIDRE = regexp.MustCompile(`^[0-9A-Fa-f]+(-[0-9A-Fa-f]+)*$`)

// noParallelQuery keeps PostgreSQL from adding parallel workers to a
// verify that has its own, one per core: they would compete for the same
// cores and pass every row they scan through a queue (about 5% slower at
// 2M jobs on 2 cores). A verify on one connection keeps them.
const noParallelQuery = "SET LOCAL max_parallel_workers_per_gather = 0"

// lockCompared takes, for the rest of the coordinating transaction, the
// locks every worker's comparison needs.
const lockCompared = "LOCK TABLE jobs, executions, spine_phase3_mapping, spine_phase3_rejects IN ACCESS SHARE MODE"

// compareRanges compares each range on a worker of its own: the first in
// tx, the coordinating transaction, every other on a pool connection in a
// transaction that imports tx's snapshot, so that all of them read the
// database as tx does, whatever commits meanwhile. tx stays open until
// every worker is done, as an exported snapshot can only be imported while
// its transaction lasts. The first error cancels the other workers.
//
// A worker must never wait for a lock: with tx holding its locks until
// the workers are done, a lock request queued behind tx's (a TRUNCATE or
// ALTER of jobs, say) would make any later request of a worker wait
// behind it, forever. So the workers run with a lock timeout and hand a
// range they cannot lock back to tx, which holds every lock it needs.
func compareRanges(ctx context.Context, tx pgx.Tx, pool *pgxpool.Pool, ranges []idRange,
	build func(idRange) (verifySQL, error), opts Options) ([]VerifyReport, error) {
	parts := make([]VerifyReport, len(ranges))
	errs := make([]error, len(ranges))
	onTx := func(i int) {
		v, err := build(ranges[i])
		if err == nil {
			parts[i], err = v.compare(ctx, tx, opts)
		}
		errs[i] = err
	}
	if len(ranges) == 1 {
		onTx(0)
		return parts, errs[0]
	}
	if _, err := tx.Exec(ctx, lockCompared+"; "+noParallelQuery); err != nil {
		return nil, fmt.Errorf("lock the compared tables: %w", err)
	}
	var snapshot string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		return nil, fmt.Errorf("export the snapshot: %w", err)
	}
	if !snapshotIDRE.MatchString(snapshot) {
		return nil, fmt.Errorf("pg_export_snapshot returned %q, not a snapshot id", snapshot)
	}
	if opts.afterSnapshotExport != nil {
		opts.afterSnapshotExport(ranges)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := 1; i < len(ranges); i++ {
		wg.Go(func() {
			parts[i], errs[i] = compareImported(ctx, pool, snapshot, ranges[i], build, opts)
			if errs[i] != nil && !pglock.Conflict(errs[i]) {
				cancel()
			}
		})
	}
	if onTx(0); errs[0] != nil {
		cancel()
	}
	wg.Wait()
	for i := 1; i < len(ranges); i++ {
		if pglock.Conflict(errs[i]) && errs[0] == nil && ctx.Err() == nil {
			opts.Logger.Info("phase3 verify: a lock request waits behind verify's; its coordinating transaction compares the range itself",
				"range", ranges[i].String(), "err", errs[i])
			onTx(i)
		}
	}

	// The error that stopped the others, not their cancellation.
	var first error
	for i, err := range errs {
		if err == nil {
			continue
		}
		err = fmt.Errorf("%s: %w", ranges[i], err)
		if first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	return parts, first
}

// compareImported compares one range in a transaction of its own that
// reads the snapshot the coordinating transaction exported, and gives up
// (a lock timeout) rather than wait for a lock.
func compareImported(ctx context.Context, pool *pgxpool.Pool, snapshot string, ids idRange,
	build func(idRange) (verifySQL, error), opts Options) (VerifyReport, error) {
	v, err := build(ids)
	if err != nil {
		return VerifyReport{}, err
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return VerifyReport{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// SET TRANSACTION SNAPSHOT must precede every query of the transaction
	// and takes no parameter: the id is spliced, checked by snapshotIDRE.
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET TRANSACTION SNAPSHOT '%s'; %s; %s; SET LOCAL lock_timeout = %d",
		snapshot, verifySettings, noParallelQuery, max(1, opts.LockTimeout.Milliseconds()))); err != nil {
		return VerifyReport{}, fmt.Errorf("import the snapshot: %w", err)
	}
	return v.compare(ctx, tx, opts)
}
