package entityspine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spinecore/spine-go/core"
)

// Result is what a func wrapped by Handler returns: a RefreshResult or a
// SyncResult.
type Result interface {
	RefreshResult | SyncResult
	json.Marshaler
	Err() error
	summary() string
}

// Handler wraps f as a core.Handler, so a run of it records what f reports:
//
//   - the result JSON (MarshalJSON: the result, its derived values and every
//     extra member) when the run completes;
//   - a last progress event (1.0) whose message sums the result up and says
//     "completed with warnings" when errors came with successes;
//   - a failed run, with a *ResultError (error_type RefreshFailed or
//     SyncFailed) listing the error texts, when the status rule says so.
//
// The run's own duration is the dispatcher's; EntitySpine's measure is the
// result's duration_seconds. An error from f fails the run as f returned it,
// and a result that cannot be encoded fails it permanently (a bug to fix,
// not a fault to retry). f may report progress itself with
// core.ReportProgress(ctx, ...).
func Handler[R Result](f func(ctx context.Context, params map[string]any) (R, error)) core.Handler {
	return func(ctx context.Context, params map[string]any) (any, error) {
		r, err := f(ctx, params)
		if err != nil {
			return nil, err // the run records it under its own name already
		}
		raw, err := r.MarshalJSON()
		if err != nil {
			return nil, core.PermanentError(fmt.Errorf("entityspine handler returned an invalid result: %w", err))
		}
		// Progress is advisory: a run cancelled meanwhile is the executor's
		// to record, and the outcome below still stands.
		_ = core.ReportProgress(ctx, 1, r.summary())
		if err := r.Err(); err != nil {
			return nil, err
		}
		return json.RawMessage(raw), nil
	}
}
