package phase1

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/sqlmigrations"
)

// Phase 1 states, in order.
const (
	StateNotStarted = "not started"
	StateSchema     = "schema partly aligned" // some migrations applied
	StateBackfill   = "backfill in progress"  // schema aligned, backfill unfinished
	StateDone       = "done"
)

// State is where phase 1 stands on a database.
type State struct {
	State             string     `json:"state"`
	MigrationsApplied int        `json:"migrations_applied"`
	MigrationsTotal   int        `json:"migrations_total"`
	LaneTrigger       bool       `json:"lane_trigger"`
	Backfill          Checkpoint `json:"backfill"`
}

// Status reads phase 1's state, read-only.
func Status(ctx context.Context, pool *pgxpool.Pool) (State, error) {
	var s State
	steps, err := sqlmigrations.New(pool, sqlmigrations.Options{}).Status(ctx)
	if err != nil {
		return s, fmt.Errorf("phase1 status: %w", err)
	}
	for _, st := range steps {
		if st.Unknown {
			continue
		}
		s.MigrationsTotal++
		if st.Applied {
			s.MigrationsApplied++
		}
	}
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'trg_executions_priority_from_lane' AND tgrelid = to_regclass('executions'))").Scan(&s.LaneTrigger); err != nil {
		return s, fmt.Errorf("phase1 status: %w", err)
	}
	if s.Backfill, err = readCheckpoint(ctx, pool); err != nil {
		return s, fmt.Errorf("phase1 status: %w", err)
	}
	switch {
	case s.MigrationsApplied == 0:
		s.State = StateNotStarted
	case s.MigrationsApplied < s.MigrationsTotal:
		s.State = StateSchema
	case s.Backfill.FinishedAt == nil:
		s.State = StateBackfill
	default:
		s.State = StateDone
	}
	return s, nil
}
