package phase3

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SetupOnly installs phase 3's tables, mapping row, index and trigger
// without copying: the trigger alone, for the tests that isolate it.
func SetupOnly(ctx context.Context, pool *pgxpool.Pool, opts Options) error {
	var res CopyResult
	_, err := setup(ctx, pool, opts.withDefaults(), &res)
	return err
}

// VerifyWithTextHash is Verify with the MD5-of-text row hash that servers
// before PostgreSQL 14 get.
func VerifyWithTextHash(ctx context.Context, pool *pgxpool.Pool, opts Options) (VerifyReport, error) {
	return verify(ctx, pool, opts.withDefaults(), true)
}

// VerifyAfterExport is Verify calling hook once the coordinating
// transaction has exported its snapshot, before any worker imports it,
// with the id ranges the workers compare (math.MinInt64 and math.MaxInt64
// for open ends).
func VerifyAfterExport(ctx context.Context, pool *pgxpool.Pool, opts Options, hook func(ranges [][2]int64)) (VerifyReport, error) {
	opts.afterSnapshotExport = func(ranges []idRange) { hook(pairs(ranges)) }
	return verify(ctx, pool, opts.withDefaults(), false)
}

// SplitBlocks is how verify splits executions' heap blocks among its
// workers, as [first, end) pairs (end -1: to the end).
func SplitBlocks(n int64, parts int) [][2]int64 {
	var out [][2]int64
	for _, b := range splitBlocks(n, parts) {
		out = append(out, [2]int64{b.first, b.end})
	}
	return out
}

// SplitIDs is how verify splits the ids among its workers.
func SplitIDs(minID, maxID, chunkIDs int64, n int) [][2]int64 {
	return pairs(splitIDs(minID, maxID, chunkIDs, n))
}

func pairs(ranges []idRange) [][2]int64 {
	out := make([][2]int64, len(ranges))
	for i, r := range ranges {
		out[i] = [2]int64{r.first, r.last}
	}
	return out
}

// VerifyChunkSQL is the chunk comparison of one verify worker over the job
// ids first..last and executions' heap blocks firstBlock..endBlock-1 of a
// finished copy ($1 the chunk width), for the tests that read its plan.
func VerifyChunkSQL(ctx context.Context, pool *pgxpool.Pool, first, last, firstBlock, endBlock int64) (string, error) {
	types, err := executionTypes(ctx, pool)
	if err != nil {
		return "", err
	}
	b, err := bindMapping()
	if err != nil {
		return "", err
	}
	all := func(string) string { return "true" }
	v, err := buildVerifySQL(b, types, rowHashSQL(true), all, verifyPart{idRange{first, last}, &blockRange{firstBlock, endBlock}})
	return v.chunkSQL(), err
}

// TriggerFunctionSQL and BatchSQL are the generated statements, for the
// tests that check them.
func TriggerFunctionSQL() (string, error) {
	b, err := bindMapping()
	return triggerFunctionSQL(b), err
}

var (
	MappingParams       = mappingParams
	DecodeStoredMapping = decodeStoredMapping
)

// CopyHoldingTurns is Copy with every batch pausing for hold between
// reporting its outcome and ending its turn: the window in which the loop
// has taken a batch's outcome while the batch after it still sees the
// turn open.
func CopyHoldingTurns(ctx context.Context, pool *pgxpool.Pool, opts Options, hold time.Duration) (CopyResult, error) {
	opts.afterOutcome = func() { time.Sleep(hold) }
	return Copy(ctx, pool, opts)
}
