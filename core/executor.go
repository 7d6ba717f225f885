package core

import (
	"context"
	"errors"
	"fmt"
)

// Executor runs the work a Dispatcher hands it: in process, on Celery
// workers, anywhere. Submit must not wait for the work to finish.
type Executor interface {
	// Name is recorded as the run's executor_name.
	Name() string
	// Submit hands the run over and returns the executor's handle for it
	// (external_ref). An error means the executor did not take the run.
	Submit(ctx context.Context, run RunRecord) (externalRef string, err error)
	// Cancel asks the executor to stop the work behind externalRef.
	Cancel(ctx context.Context, externalRef string) error
}

// RefReserver is implemented by executors that can name a run's work
// before taking it: a Celery task id is chosen by the client, the memory
// executor's ref is the run id. The dispatcher then records the run queued,
// with its ref, before handing it over, in one write: work can never exist
// that the ledger does not know by its ref, even if the process dies in
// between (a run recorded queued whose hand-over never happened is visible
// and can be reconciled by its ref). Submit must then return the reserved
// ref.
type RefReserver interface {
	ReserveRef(run RunRecord) string
}

// WorkerCallbacks is how running work reports back. The Dispatcher
// implements it; executors that run work themselves receive it through
// CallbackBinder, remote workers call the Dispatcher directly.
type WorkerCallbacks interface {
	MarkStarted(ctx context.Context, runID string) (RunRecord, error)
	RecordProgress(ctx context.Context, runID string, progress float64, message string) error
	Heartbeat(ctx context.Context, runID string) error
	MarkCompleted(ctx context.Context, runID string, result any) (RunRecord, error)
	MarkFailed(ctx context.Context, runID string, cause error) (RunRecord, error)
	// MarkCancelled records that the executor ended the run itself (a
	// Celery task revoked, or refused because it expired).
	MarkCancelled(ctx context.Context, runID string, reason string) (RunRecord, error)
}

// CallbackBinder is implemented by executors that report through
// WorkerCallbacks; NewDispatcher binds itself to them.
type CallbackBinder interface {
	BindCallbacks(WorkerCallbacks)
}

var errPanic = errors.New("handler panicked")

// PanicError is a handler panic recovered into a failed run.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string     { return fmt.Sprintf("panic: %v", e.Value) }
func (e *PanicError) Unwrap() error     { return errPanic }
func (e *PanicError) ErrorType() string { return "Panic" }

type progressKey struct{}

type progressReporter struct {
	cb    WorkerCallbacks
	runID string
}

// ReportProgress records a progress event for the run whose handler got ctx.
// progress is a fraction in [0, 1] or a percentage, as the handler's
// convention is; message may be empty. Outside a handler it does nothing.
func ReportProgress(ctx context.Context, progress float64, message string) error {
	p, ok := ctx.Value(progressKey{}).(progressReporter)
	if !ok {
		return nil
	}
	return p.cb.RecordProgress(context.WithoutCancel(ctx), p.runID, progress, message)
}

// RunIDFromContext returns the id of the run whose handler got ctx.
func RunIDFromContext(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(progressKey{}).(progressReporter)
	return p.runID, ok
}
