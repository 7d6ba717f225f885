package phase3

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
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

// blockRange is the heap blocks first..end-1 of executions, end -1 for
// every block from first on: where the migrated executions and links one
// verify worker hashes are stored. Where a row is stored says nothing of
// its job id, so each worker hashes rows of every chunk, and the sums of
// the parts are added up before the sides are compared (chunkSums).
type blockRange struct{ first, end int64 }

// sql is the range as a predicate on the tid expression ctid: on a
// table's ctid, a TID range scan from PostgreSQL 14 on (a filter on a full
// scan before).
func (r blockRange) sql(ctid string) string {
	var conds []string
	if r.first > 0 {
		conds = append(conds, fmt.Sprintf("%s >= '(%d,0)'::tid", ctid, r.first))
	}
	if r.end >= 0 {
		conds = append(conds, fmt.Sprintf("%s < '(%d,0)'::tid", ctid, r.end))
	}
	if len(conds) == 0 {
		return "true"
	}
	return strings.Join(conds, " AND ")
}

// splitBlocks cuts the blocks 0..n-1 into parts ranges about even, the
// last open so that it takes any block added since n was read.
func splitBlocks(n int64, parts int) []blockRange {
	out := make([]blockRange, parts)
	for i := range out {
		out[i] = blockRange{n * int64(i) / int64(parts), n * int64(i+1) / int64(parts)}
	}
	out[parts-1].end = -1
	return out
}

// verifyPart is a share of the comparison: the jobs, links and rejects of
// the ids, and the migrated executions stored in blocks, or, when blocks
// is nil, those of the ids.
type verifyPart struct {
	ids    idRange
	blocks *blockRange
}

// wholeTable is the comparison in one transaction.
var wholeTable = verifyPart{ids: allIDs}

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

// verifyParts splits the job ids, and executions' heap blocks, among as
// many workers as verify can have: VerifyParallel, but no more than the
// pool has connections free besides the coordinating transaction's (a
// repair or cutover holds one more for the runner lock; a worker waiting
// for a connection nobody releases would hang verify), and no more than
// there are chunks.
func verifyParts(ctx context.Context, tx pgx.Tx, pool *pgxpool.Pool, opts Options) ([]verifyPart, error) {
	n := opts.VerifyParallel
	if free := int(pool.Config().MaxConns - pool.Stat().AcquiredConns()); n > 1+free {
		opts.Logger.Info("phase3 verify: fewer workers than asked, the pool has no more connections free (pool_max_conns in the database URL)",
			"asked", n, "workers", 1+free)
		n = 1 + free
	}
	if n <= 1 {
		return []verifyPart{wholeTable}, nil
	}
	var lo, hi *int64
	var blocks int64
	if err := tx.QueryRow(ctx, `SELECT min(id), max(id), pg_relation_size('executions') / current_setting('block_size')::bigint FROM jobs`).Scan(&lo, &hi, &blocks); err != nil {
		return nil, fmt.Errorf("split the ids: %w", err)
	}
	if lo == nil {
		return []verifyPart{wholeTable}, nil
	}
	ids := splitIDs(*lo, *hi, opts.ChunkIDs, n)
	parts := make([]verifyPart, len(ids))
	for i, b := range splitBlocks(blocks, len(ids)) {
		parts[i] = verifyPart{ids[i], &b}
	}
	return parts, nil
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

// compareParts compares each part on a worker of its own and adds up
// their sums: the first in tx, the coordinating transaction, every other
// on a pool connection in a transaction that imports tx's snapshot, so
// that all of them read the database as tx does, whatever commits
// meanwhile. tx stays open until every worker is done, as an exported
// snapshot can only be imported while its transaction lasts. The first
// error cancels the other workers.
//
// A worker must never wait for a lock: with tx holding its locks until
// the workers are done, a lock request queued behind tx's (a TRUNCATE or
// ALTER of jobs, say) would make any later request of a worker wait
// behind it, forever. So the workers run with a lock timeout and hand a
// part they cannot lock back to tx, which holds every lock it needs.
func compareParts(ctx context.Context, tx pgx.Tx, pool *pgxpool.Pool, parts []verifyPart,
	build func(verifyPart) (verifySQL, error), opts Options) (chunkSums, error) {
	sums := make([]chunkSums, len(parts))
	errs := make([]error, len(parts))
	onTx := func(i int) {
		v, err := build(parts[i])
		if err == nil {
			sums[i], err = v.sums(ctx, tx, opts)
		}
		errs[i] = err
	}
	if len(parts) == 1 {
		onTx(0)
		return sums[0], errs[0]
	}
	if _, err := tx.Exec(ctx, lockCompared+"; "+noParallelQuery); err != nil {
		return chunkSums{}, fmt.Errorf("lock the compared tables: %w", err)
	}
	var snapshot string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		return chunkSums{}, fmt.Errorf("export the snapshot: %w", err)
	}
	if !snapshotIDRE.MatchString(snapshot) {
		return chunkSums{}, fmt.Errorf("pg_export_snapshot returned %q, not a snapshot id", snapshot)
	}
	if opts.afterSnapshotExport != nil {
		ids := make([]idRange, len(parts))
		for i, p := range parts {
			ids[i] = p.ids
		}
		opts.afterSnapshotExport(ids)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := 1; i < len(parts); i++ {
		wg.Go(func() {
			sums[i], errs[i] = compareImported(ctx, pool, snapshot, parts[i], build, opts)
			if errs[i] != nil && !pglock.Conflict(errs[i]) {
				cancel()
			}
		})
	}
	if onTx(0); errs[0] != nil {
		cancel()
	}
	wg.Wait()
	for i := 1; i < len(parts); i++ {
		if pglock.Conflict(errs[i]) && errs[0] == nil && ctx.Err() == nil {
			opts.Logger.Info("phase3 verify: a lock request waits behind verify's; its coordinating transaction compares the part itself",
				"part", parts[i].String(), "err", errs[i])
			onTx(i)
		}
	}

	// The error that stopped the others, not their cancellation.
	var first error
	for i, err := range errs {
		if err == nil {
			continue
		}
		err = fmt.Errorf("%s: %w", parts[i], err)
		if first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	if first != nil {
		return chunkSums{}, first
	}
	total := chunkSums{rows: map[sumKey]*sumVal{}}
	for _, s := range sums {
		total.merge(s)
	}
	return total, nil
}

func (p verifyPart) String() string {
	if p.blocks == nil {
		return p.ids.String()
	}
	if p.blocks.end < 0 {
		return fmt.Sprintf("%s, executions blocks from %d", p.ids, p.blocks.first)
	}
	return fmt.Sprintf("%s, executions blocks %d to %d", p.ids, p.blocks.first, p.blocks.end-1)
}

// compareImported compares one part in a transaction of its own that
// reads the snapshot the coordinating transaction exported, and gives up
// (a lock timeout) rather than wait for a lock.
func compareImported(ctx context.Context, pool *pgxpool.Pool, snapshot string, part verifyPart,
	build func(verifyPart) (verifySQL, error), opts Options) (chunkSums, error) {
	v, err := build(part)
	if err != nil {
		return chunkSums{}, err
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return chunkSums{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// SET TRANSACTION SNAPSHOT must precede every query of the transaction
	// and takes no parameter: the id is spliced, checked by snapshotIDRE.
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET TRANSACTION SNAPSHOT '%s'; %s; %s; SET LOCAL lock_timeout = %d",
		snapshot, verifySettings, noParallelQuery, max(1, opts.LockTimeout.Milliseconds()))); err != nil {
		return chunkSums{}, fmt.Errorf("import the snapshot: %w", err)
	}
	return v.sums(ctx, tx, opts)
}
