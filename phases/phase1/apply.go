package phase1

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/internal/pglock"
	"github.com/spinecore/spine-go/sqlmigrations"
)

// runnerLock is the advisory lock key held by a running apply or rollback,
// so two operators cannot interleave them ("spine-go phase1" in ASCII).
const runnerLock int64 = 0x7370696e65703031

// ErrBusy is returned when another apply or rollback holds the runner lock.
var ErrBusy = errors.New("phase1: another phase 1 apply or rollback is running on this database")

// ApplyResult is what Apply did.
type ApplyResult struct {
	Migrations []int          `json:"migrations_applied"`
	Backfill   BackfillResult `json:"backfill"`
	Elapsed    time.Duration  `json:"elapsed_ns"`
}

// Apply aligns the schema online: the embedded migrations (lock_timeout and
// retries, indexes built concurrently), then the priority backfill in keyset
// batches, each committed with its checkpoint. It refuses what PlanApply
// refuses. Interrupted at any instant, it converges when run again; while it
// runs, Capture-Spine's writers keep inserting and updating executions.
func Apply(ctx context.Context, pool *pgxpool.Pool, opts Options) (ApplyResult, error) {
	opts = opts.withDefaults()
	start := time.Now()
	var res ApplyResult
	plan, err := PlanApply(ctx, pool, opts)
	if err != nil {
		return res, err
	}
	if err := plan.Err(); err != nil {
		return res, err
	}
	release, err := lockRunner(ctx, pool)
	if err != nil {
		return res, err
	}
	defer release()

	migrated, err := sqlmigrations.New(pool, opts.migrations()).Up(ctx, sqlmigrations.Latest)
	for _, s := range migrated.Applied {
		res.Migrations = append(res.Migrations, s.Version)
	}
	if err != nil {
		return res, fmt.Errorf("phase1 apply: migrations: %w", err)
	}
	total := int64(0)
	for _, t := range plan.Tables {
		if t.Name == "executions" {
			total = t.Rows
		}
	}
	res.Backfill, err = backfill(ctx, pool, opts, total)
	res.Elapsed = time.Since(start)
	return res, err
}

// lockRunner takes the runner lock; a second operator is told, not queued.
func lockRunner(ctx context.Context, pool *pgxpool.Pool) (release func(), err error) {
	release, err = pglock.TryAdvisory(ctx, pool, runnerLock)
	switch {
	case errors.Is(err, pglock.ErrHeld):
		return nil, ErrBusy
	case err != nil:
		return nil, fmt.Errorf("phase1: runner lock: %w", err)
	}
	return release, nil
}
