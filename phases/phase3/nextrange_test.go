package phase3

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// idsAt answers selectBatchRange for jobs with the ids 1..last, every id
// taken: the first id after the cursor, and the one n-1 further.
type idsAt struct{ last int64 }

func (q idsAt) Query(context.Context, string, ...any) (pgx.Rows, error) { panic("not used") }

func (q idsAt) QueryRow(_ context.Context, _ string, args ...any) pgx.Row {
	after, bound, offset := args[0].(int64), args[1].(int64), int64(args[2].(int))
	return rowOf(func(dest ...any) error {
		first, hi := dest[0].(**int64), dest[1].(**int64)
		if f := after + 1; f <= min(bound, q.last) {
			*first = &f
		}
		if h := after + 1 + offset; h <= min(bound, q.last) {
			*hi = &h
		}
		return nil
	})
}

type rowOf func(dest ...any) error

func (r rowOf) Scan(dest ...any) error { return r(dest...) }

// Batches end at bucket boundaries whenever that keeps at least half the
// batch or at most doubles it, so that consecutive batches share no bucket
// and run side by side; a small batch inside a bucket ends where it ends.
func TestNextRangeEndsAtBucketBoundaries(t *testing.T) {
	const bucket = 1 << bucketShift
	q := idsAt{last: 100 * bucket}
	for _, c := range []struct {
		name         string
		last         int64
		n            int
		wantHi       int64
		sharesBucket bool
	}{
		{"a bucket and a half: back to the first's end", 0, bucket + bucket/2, bucket - 1, false},
		{"from mid-bucket, most of it in the next: on to its end", bucket / 2, bucket, 2*bucket - 1, false},
		{"three quarters of a bucket from its start: on to its end", bucket - 1, bucket * 3 / 4, 2*bucket - 1, false},
		{"a small batch inside a bucket stays", bucket - 1, 100, bucket + 99, true},
		{"already at a bucket end", bucket - 1, bucket, 2*bucket - 1, false},
		{"the last ids: up to the bound", 100*bucket - 50, 1000, 100 * bucket, false},
	} {
		r, ok, err := nextRange(context.Background(), q, c.last, q.last, c.n)
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", c.name, ok, err)
		}
		if r.lo != c.last || r.first != c.last+1 || r.hi != c.wantHi {
			t.Errorf("%s: range %+v, want (%d, %d]", c.name, r, c.last, c.wantHi)
		}
		next := batchRange{lo: r.hi, first: r.hi + 1}
		if shares := next.firstBucket() == r.lastBucket(); shares != c.sharesBucket && r.hi < q.last {
			t.Errorf("%s: the next batch shares a bucket with it: %v, want %v", c.name, shares, c.sharesBucket)
		}
	}
	if _, ok, _ := nextRange(context.Background(), q, q.last, q.last, 10); ok {
		t.Error("a range past the last job")
	}
}
