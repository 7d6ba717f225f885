package phase3_test

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/phases/phase3"
)

// verifyPool is a pool of its own, of maxConns connections: how many
// workers verify may have depends on it.
func (b *bundle) verifyPool(maxConns int32) *pgxpool.Pool {
	b.t.Helper()
	cfg, err := pgxpool.ParseConfig(b.url)
	if err != nil {
		b.t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(b.ctx, cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(pool.Close)
	return pool
}

// verifyOn verifies with the given parallelism, and says on which ranges
// the workers compared (nil: one transaction, no export).
func (b *bundle) verifyOn(pool *pgxpool.Pool, opts phase3.Options, parallel int) (phase3.VerifyReport, [][2]int64) {
	b.t.Helper()
	opts.VerifyParallel = parallel
	var ranges [][2]int64
	r, err := phase3.VerifyAfterExport(b.ctx, pool, opts, func(rs [][2]int64) { ranges = rs })
	if err != nil {
		b.t.Fatalf("verify on %d connections: %v", parallel, err)
	}
	r.Elapsed = 0
	return r, ranges
}

// migratedJob is the first job from id on that has an execution of its own.
func (b *bundle) migratedJob(from int64) int64 {
	b.t.Helper()
	return b.count(`SELECT min((metadata ->> 'legacy_job_id')::bigint) FROM executions
		WHERE metadata ? 'legacy_job_type' AND (metadata ->> 'legacy_job_id')::bigint >= $1`, from)
}

func rangeOf(ranges [][2]int64, id int64) int {
	return slices.IndexFunc(ranges, func(r [2]int64) bool { return id >= r[0] && id <= r[1] })
}

// Verify on several connections gives the report one transaction gives,
// whatever the split: differing ranges in every worker's share, one that
// straddles two workers (merged, its job list cut at MaxListed across
// both), keys beyond the largest job id (caught by the open last range),
// counts of every kind.
func TestParallelVerifyEqualsSerial(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.opts.ChunkIDs = 500
	b.copy()
	b.verifyOK()

	want := b.damage()
	// Beyond the seed's ids: the largest job deleted behind the trigger's
	// back, and an execution claiming a job id far from any.
	b.deleteBehindTheTrigger(3000)
	moved, reject := b.migratedJob(2200), b.migratedJob(700)
	b.exec(`UPDATE executions SET metadata = jsonb_set(metadata, '{legacy_job_id}', '5000000') WHERE execution_id = $1`, xid(moved))
	b.exec("UPDATE jobs SET status = 'zombie' WHERE id = $1", reject)
	want["3000"], want[fmt.Sprint(moved)], want["5000000"] = "unexpected", "missing", "unexpected"

	pool := b.verifyPool(8)
	for _, maxListed := range []int{20, 2} {
		opts := b.opts
		opts.MaxListed = maxListed
		serial, none := b.verifyOn(pool, opts, 1)
		if none != nil || serial.OK() || serial.Unmapped != 1 || len(serial.Mismatches) < 3 {
			t.Fatalf("serial verify = %+v (ranges %v)", serial, none)
		}
		if got := differing(serial); maxListed == 20 && !reflect.DeepEqual(got, want) {
			t.Errorf("differing jobs = %v, want %v", got, want)
		}
		for _, parallel := range []int{2, 3, 4, 16} {
			r, ranges := b.verifyOn(pool, opts, parallel)
			if len(ranges) != min(parallel, 8, 6) { // 8 connections, 6 chunks from id 1 to 2999
				t.Errorf("%d workers asked for: ranges %v", parallel, ranges)
			}
			if !reflect.DeepEqual(r, serial) {
				t.Errorf("%d workers (ranges %v), max listed %d:\n got %+v\nwant %+v", parallel, ranges, maxListed, r, serial)
			}
			if parallel != 4 {
				continue
			}
			// The split this test was written for: differing chunks in at
			// least three workers' shares, the range 1000-1999 in two.
			shares := map[int]bool{}
			for _, m := range serial.Mismatches {
				shares[rangeOf(ranges, m.FirstID)], shares[rangeOf(ranges, m.LastID)] = true, true
			}
			if len(shares) < 3 || rangeOf(ranges, 1000) == rangeOf(ranges, 1999) {
				t.Errorf("ranges %v do not split the mismatches %+v", ranges, serial.Mismatches)
			}
		}
	}

	// Repair works from the parallel report.
	b.exec("UPDATE jobs SET status = 'success' WHERE id = $1", reject)
	opts := b.opts
	opts.VerifyParallel = 4
	res, err := phase3.Repair(b.ctx, pool, opts)
	if err != nil || !res.After.OK() || !reflect.DeepEqual(differing(res.Before), want) {
		t.Fatalf("repair = %+v, %v", res, err)
	}
	b.checkAgainstGo(capturespine.DefaultJobMapping())
}

// Every worker reads the coordinating transaction's snapshot: writes
// committed after it was exported, in every worker's range, are seen by
// none of them, though a verify after them sees each.
func TestParallelVerifyReadsOneSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.opts.ChunkIDs = 500
	b.copy()
	jobs := b.count("SELECT count(*) FROM jobs")
	pool := b.verifyPool(8)
	r, ranges := b.verifyOn(pool, b.opts, 4)
	if !r.OK() || r.Jobs != jobs || len(ranges) != 4 {
		t.Fatalf("verify before the writes = %+v on %v", r, ranges)
	}
	var lost []int64 // a migrated execution in each range
	wantLost := map[string]string{}
	for _, rg := range ranges {
		id := b.migratedJob(max(rg[0], 0) + 100)
		lost, wantLost[fmt.Sprint(id)] = append(lost, id), "missing"
	}
	reject := b.migratedJob(lost[0] + 1)
	seen := map[int]bool{}
	for _, id := range lost {
		seen[rangeOf(ranges, id)] = true
	}
	if len(seen) != 4 {
		t.Fatalf("the lost executions %v are not one in each range of %v", lost, ranges)
	}

	opts := b.opts
	opts.VerifyParallel = 4
	r, err := phase3.VerifyAfterExport(b.ctx, pool, opts, func(got [][2]int64) {
		if !reflect.DeepEqual(got, ranges) {
			t.Errorf("ranges %v, then %v", ranges, got)
		}
		for _, id := range lost {
			b.exec("DELETE FROM executions WHERE execution_id = $1", xid(id))
		}
		b.exec("INSERT INTO jobs (job_type, status) VALUES ('backup', 'success')")
		b.exec("UPDATE jobs SET status = 'zombie' WHERE id = $1", reject)
	})
	if err != nil || !r.OK() || r.Jobs != jobs || r.Unmapped != 0 {
		t.Fatalf("verify with writes after its snapshot = %+v, %v", r, err)
	}

	after, _ := b.verifyOn(pool, b.opts, 4)
	if after.Jobs != jobs+1 || after.Unmapped != 1 || !reflect.DeepEqual(differing(after), wantLost) {
		t.Errorf("verify after the writes = %+v, want %v missing", after, wantLost)
	}

	// With no connection to spare (a repair holds one for its lock, verify
	// one), the repair verifies in one transaction instead of waiting.
	small := b.verifyPool(2)
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	b.exec("UPDATE jobs SET status = 'success' WHERE id = $1", reject)
	res, err := phase3.Repair(ctx, small, opts)
	if err != nil || !res.After.OK() || !reflect.DeepEqual(res.Repaired, after.Mismatches) {
		t.Fatalf("repair on a pool of 2 = %+v, %v", res, err)
	}
}

// A lock request queued behind verify's (here a TRUNCATE of jobs) would
// make a worker's own lock request wait behind it, while verify waits for
// the worker: the workers give their ranges back instead, and verify
// reports what its snapshot holds. The TRUNCATE then goes through, and its
// trigger leaves executions matching the empty table.
func TestParallelVerifyBesideATruncate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.opts.ChunkIDs = 500
	b.copy()
	pool := b.verifyPool(8)
	serial, _ := b.verifyOn(pool, b.opts, 1)

	truncated := make(chan error, 1)
	opts := b.opts
	opts.VerifyParallel = 4
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	r, err := phase3.VerifyAfterExport(ctx, pool, opts, func([][2]int64) {
		go func() { _, err := b.pool.Exec(b.ctx, "TRUNCATE jobs"); truncated <- err }()
		b.waitFor("the TRUNCATE to queue", func() bool {
			return b.count(`SELECT count(*) FROM pg_locks WHERE relation = 'jobs'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted`) == 1
		})
	})
	if err != nil {
		t.Fatalf("verify beside a TRUNCATE: %v", err)
	}
	if r.Elapsed = 0; !reflect.DeepEqual(r, serial) {
		t.Errorf("verify beside a TRUNCATE = %+v, want %+v", r, serial)
	}
	if err := <-truncated; err != nil {
		t.Fatal(err)
	}
	if r := b.verifyOK(); r.Jobs != 0 || r.ActualExecutions != 0 || r.ActualLinks != 0 {
		t.Errorf("verify after the TRUNCATE = %+v", r)
	}
}

// The split: contiguous, the outer ranges open, every inner bound a chunk
// boundary after the smallest id and at most the largest, about even by id.
func TestSplitIDs(t *testing.T) {
	t.Parallel()
	const lo, hi = math.MinInt64, math.MaxInt64
	for _, c := range []struct {
		min, max, chunk int64
		n               int
		want            [][2]int64 // nil: only the properties are checked
	}{
		{1, 3000, 500, 4, [][2]int64{{lo, 499}, {500, 1499}, {1500, 2499}, {2500, hi}}},
		{1, 3000, 500, 1, [][2]int64{{lo, hi}}},
		{1, 900, 500, 4, [][2]int64{{lo, 499}, {500, hi}}},
		{10, 20, 500, 4, [][2]int64{{lo, hi}}},
		{-1000, 999, 500, 4, [][2]int64{{lo, -501}, {-500, -1}, {0, 499}, {500, hi}}},
		{1, 1 << 40, 10000, 4, nil},
		{1, 200000, 10000, 3, [][2]int64{{lo, 69999}, {70000, 139999}, {140000, hi}}},
		{lo, hi, 1, 2, [][2]int64{{lo, -2}, {-1, hi}}},
		{lo, hi, 10000, 7, nil},
		{hi - 5, hi, 3, 4, [][2]int64{{lo, hi - 5}, {hi - 4, hi - 2}, {hi - 1, hi}}},
	} {
		got := phase3.SplitIDs(c.min, c.max, c.chunk, c.n)
		name := fmt.Sprintf("SplitIDs(%d, %d, %d, %d) = %v", c.min, c.max, c.chunk, c.n, got)
		if c.want != nil && !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s, want %v", name, c.want)
		}
		if len(got) == 0 || len(got) > c.n || got[0][0] != lo || got[len(got)-1][1] != hi {
			t.Errorf("%s: not %d ranges or fewer from MinInt64 to MaxInt64", name, c.n)
			continue
		}
		for i := 1; i < len(got); i++ {
			bound := got[i][0]
			if got[i-1][1] != bound-1 || bound%c.chunk != 0 || bound <= c.min || bound > c.max {
				t.Errorf("%s: bound %d is not a chunk boundary in (%d, %d] after %v", name, bound, c.min, c.max, got[i-1])
			}
		}
	}
}

// A worker's range predicate on jobs.id is a range scan of the primary
// key the planner can take (it would, on a table large enough to prefer
// it to a sequential scan), and its share of executions a scan of its
// blocks alone.
func TestVerifyWorkerScansItsIDsAndBlocksOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.copy()
	sql, err := phase3.VerifyChunkSQL(b.ctx, b.pool, 1000, 1999, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(b.ctx)
	if _, err := tx.Exec(b.ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(b.ctx, "EXPLAIN "+sql, int64(500))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "jobs_pkey") || !strings.Contains(plan, "Index Cond: ((id >= 1000) AND (id <= 1999))") {
		t.Errorf("the worker's jobs are not scanned by the primary key:\n%s", plan)
	}
	if !strings.Contains(plan, "Tid Range Scan on executions e") || !strings.Contains(plan, "TID Cond: ((ctid >= '(10,0)'::tid) AND (ctid < '(20,0)'::tid))") {
		t.Errorf("the worker's executions are not scanned by their blocks:\n%s", plan)
	}
}

// The blocks are split about evenly, without gap or overlap, the last
// part open to blocks added after they were counted.
func TestSplitBlocks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		n     int64
		parts int
		want  [][2]int64
	}{
		{100, 2, [][2]int64{{0, 50}, {50, -1}}},
		{10, 3, [][2]int64{{0, 3}, {3, 6}, {6, -1}}},
		{1, 4, [][2]int64{{0, 0}, {0, 0}, {0, 0}, {0, -1}}},
		{0, 2, [][2]int64{{0, 0}, {0, -1}}},
		{1, 1, [][2]int64{{0, -1}}},
	} {
		if got := phase3.SplitBlocks(c.n, c.parts); !reflect.DeepEqual(got, c.want) {
			t.Errorf("SplitBlocks(%d, %d) = %v, want %v", c.n, c.parts, got, c.want)
		}
	}
}

// An execution marked as migrated without its legacy_job_id, and a link
// that is null, name no job: verify counts them as orphans, on one
// connection or several alike, lists the jobs they no longer stand for,
// and its message finds them.
func TestVerifyCountsExecutionsThatNameNoJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.opts.ChunkIDs = 500
	b.copy()
	b.verifyOK()
	lost := b.migratedJob(1200)
	var native string
	var linkedJob int64
	if err := b.pool.QueryRow(b.ctx, `SELECT execution_id::text, (metadata -> 'legacy_job_ids' ->> 0)::bigint FROM executions
		WHERE metadata ? 'legacy_job_ids' AND jsonb_array_length(metadata -> 'legacy_job_ids') = 1 ORDER BY 1 LIMIT 1`).Scan(&native, &linkedJob); err != nil {
		t.Fatal(err)
	}
	b.exec(`UPDATE executions SET metadata = metadata - 'legacy_job_id' WHERE execution_id = $1`, xid(lost))
	b.exec(`UPDATE executions SET metadata = jsonb_set(metadata, '{legacy_job_ids,0}', 'null') WHERE execution_id = $1`, native)
	want := map[string]string{fmt.Sprint(lost): "missing", fmt.Sprint(linkedJob): "missing"}

	pool := b.verifyPool(8)
	serial, _ := b.verifyOn(pool, b.opts, 1)
	if serial.OK() || serial.Orphans != 2 || !reflect.DeepEqual(differing(serial), want) {
		t.Fatalf("verify = %+v, want 2 orphans and %v", serial, want)
	}
	for _, parallel := range []int{2, 4} {
		if r, ranges := b.verifyOn(pool, b.opts, parallel); !reflect.DeepEqual(r, serial) {
			t.Errorf("%d workers (ranges %v):\n got %+v\nwant %+v", parallel, ranges, r, serial)
		}
	}
	// The same while the copy has not finished (here, as if it had
	// stopped after both jobs): orphans are out of no copy's reach.
	b.exec(`UPDATE spine_phase3_copy SET finished_at = NULL, last_id = $1`, max(lost, linkedJob))
	for _, parallel := range []int{1, 2, 4} {
		r, ranges := b.verifyOn(pool, b.opts, parallel)
		if r.Complete || r.Orphans != 2 || !reflect.DeepEqual(differing(r), want) {
			t.Errorf("%d workers (ranges %v) on a copy cut short: %+v, want 2 orphans and %v", parallel, ranges, r, want)
		}
	}
	if err := serial.Err(); err == nil || !strings.Contains(err.Error(), phase3.OrphansSQL) {
		t.Errorf("the message does not say how to find them: %v", err)
	}
	rows, err := b.pool.Query(b.ctx, phase3.OrphansSQL)
	if err != nil {
		t.Fatal(err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if slices.Sort(found); err != nil || !reflect.DeepEqual(found, sorted(xid(lost), native)) {
		t.Errorf("OrphansSQL found %v, %v; want %s and %s", found, err, xid(lost), native)
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }
