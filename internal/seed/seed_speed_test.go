//go:build !race

// The speed check runs without the race detector only: under -race the
// JSON generation is several times slower, and the figure would measure the
// detector, not the seeder.

package seed_test

import (
	"context"
	"testing"
	"time"

	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
)

func TestCaptureSpineSeedsAHundredThousandRowsInSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 100k rows")
	}
	t.Parallel()
	db := connect(t, testsvc.NewCaptureSpineDatabase(t))
	begin := time.Now()
	sum, err := seed.CaptureSpine(context.Background(), db, seed.Options{Executions: 50_000, Jobs: 50_000, EventsPerExecution: -1})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	t.Logf("seeded %d executions and %d jobs in %v", sum.Executions, sum.Jobs, took)
	if took > time.Minute { // generous: shared CI machines are slow
		t.Errorf("seeding 100k rows took %v", took)
	}
}
