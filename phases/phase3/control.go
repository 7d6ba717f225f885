package phase3

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SetControl flips the control row a running copy reads before each batch
// (and every 200ms while paused or held to its rate), so the change takes
// effect within a second. paused nil leaves it; maxRate nil leaves it, 0
// returns to the copy's own --max-rate. Any connection can do the same with
// UPDATE spine_phase3_control SET paused = true.
func SetControl(ctx context.Context, pool *pgxpool.Pool, paused *bool, maxRate *int) error {
	if maxRate != nil && *maxRate < 0 {
		return errors.New("phase3: max rate must be 0 (no override) or more")
	}
	tag, err := pool.Exec(ctx, `UPDATE spine_phase3_control
		SET paused = COALESCE($1, paused), max_rate = COALESCE($2, max_rate), updated_at = now()`, paused, maxRate)
	if err != nil {
		if ok, _ := tableExists(ctx, pool, ControlTable); !ok {
			return ErrNotCopied
		}
		return fmt.Errorf("phase3: %s: %w", ControlTable, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotCopied
	}
	return nil
}
