package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// MemoryExecutorOptions configures a MemoryExecutor. The zero value works.
type MemoryExecutorOptions struct {
	// LaneConcurrency bounds how many handlers of a lane run at once.
	LaneConcurrency map[string]int
	// DefaultConcurrency applies to lanes not in LaneConcurrency. Default 4.
	DefaultConcurrency int
	// QueueSize is how many runs a lane holds waiting before Submit refuses
	// with ErrBackpressure. Default 1024.
	QueueSize int
	// CallbackTimeout bounds each report to the dispatcher. Default 30 s.
	CallbackTimeout time.Duration
	Logger          *slog.Logger
}

// MemoryExecutor runs handlers from a Registry in this process, with a
// bounded number of workers per lane. It is the embedded default executor.
// Runs still waiting when the process exits are lost: use it where the
// ledger, not the executor, is the source of truth.
type MemoryExecutor struct {
	registry *Registry
	opts     MemoryExecutorOptions
	log      *slog.Logger

	mu        sync.Mutex
	callbacks WorkerCallbacks
	lanes     map[string]chan memoryJob
	cancels   map[string]context.CancelCauseFunc // runs started, by ref
	cancelled map[string]bool                    // refs cancelled before they started
	closed    bool

	stop    context.CancelFunc // hard stop of every handler
	baseCtx context.Context
	workers sync.WaitGroup
}

type memoryJob struct {
	run     RunRecord
	handler Handler
}

var errCancelledByCaller = errors.New("run cancelled")

// NewMemoryExecutor returns an executor for the handlers in registry.
func NewMemoryExecutor(registry *Registry, opts MemoryExecutorOptions) *MemoryExecutor {
	if opts.DefaultConcurrency <= 0 {
		opts.DefaultConcurrency = 4
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1024
	}
	if opts.CallbackTimeout <= 0 {
		opts.CallbackTimeout = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, stop := context.WithCancel(context.Background())
	return &MemoryExecutor{
		registry: registry, opts: opts, log: log.With("executor", "memory"),
		lanes: map[string]chan memoryJob{}, cancels: map[string]context.CancelCauseFunc{},
		cancelled: map[string]bool{}, stop: stop, baseCtx: ctx,
	}
}

// Name implements Executor.
func (e *MemoryExecutor) Name() string { return "memory" }

// BindCallbacks implements CallbackBinder.
func (e *MemoryExecutor) BindCallbacks(cb WorkerCallbacks) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.callbacks = cb
}

// ReserveRef implements RefReserver: the ref is the run id.
func (e *MemoryExecutor) ReserveRef(run RunRecord) string { return run.RunID }

// Submit implements Executor: it queues the run on its lane and returns at
// once. The external ref is the run id.
func (e *MemoryExecutor) Submit(ctx context.Context, run RunRecord) (string, error) {
	h, err := e.registry.Lookup(run.Spec.HandlerKey())
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return "", fmt.Errorf("memory executor: %w", ErrClosed)
	}
	if e.callbacks == nil {
		return "", errors.New("memory executor: not bound to a dispatcher (use NewDispatcher)")
	}
	q := e.laneLocked(run.Spec.Lane)
	select {
	case q <- memoryJob{run: run, handler: h}:
		return run.RunID, nil
	default:
		return "", fmt.Errorf("memory executor lane %q holds %d runs: %w", run.Spec.Lane, e.opts.QueueSize, ErrBackpressure)
	}
}

// laneLocked returns the lane's queue, starting its workers on first use.
func (e *MemoryExecutor) laneLocked(lane string) chan memoryJob {
	if q, ok := e.lanes[lane]; ok {
		return q
	}
	q := make(chan memoryJob, e.opts.QueueSize)
	e.lanes[lane] = q
	n := e.opts.LaneConcurrency[lane]
	if n <= 0 {
		n = e.opts.DefaultConcurrency
	}
	for range n {
		e.workers.Add(1)
		go e.work(q)
	}
	return q
}

func (e *MemoryExecutor) work(q chan memoryJob) {
	defer e.workers.Done()
	for job := range q {
		e.execute(job)
	}
}

// Cancel implements Executor: a running handler's context is cancelled, a
// queued run is skipped when its turn comes.
func (e *MemoryExecutor) Cancel(ctx context.Context, ref string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cancel, ok := e.cancels[ref]; ok {
		cancel(errCancelledByCaller)
		return nil
	}
	e.cancelled[ref] = true
	return nil
}

func (e *MemoryExecutor) execute(job memoryJob) {
	runID := job.run.RunID
	e.mu.Lock()
	cb := e.callbacks
	if e.cancelled[runID] {
		delete(e.cancelled, runID)
		e.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancelCause(e.baseCtx)
	e.cancels[runID] = cancel
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.cancels, runID)
		e.mu.Unlock()
		cancel(nil)
	}()

	if _, err := e.report(func(c context.Context) (RunRecord, error) { return cb.MarkStarted(c, runID) }); err != nil {
		// Cancelled or changed by someone else before it started: the
		// ledger is the authority, so the handler does not run.
		e.log.Info("run not started", "run_id", runID, "reason", err)
		return
	}
	ctx = context.WithValue(ctx, progressKey{}, progressReporter{cb: cb, runID: runID})
	result, err := callHandler(ctx, job.handler, job.run.Spec.Params)
	if errors.Is(context.Cause(ctx), errCancelledByCaller) {
		return // the dispatcher recorded the cancellation
	}
	if err == nil {
		_, err = e.report(func(c context.Context) (RunRecord, error) { return cb.MarkCompleted(c, runID, result) })
	} else {
		_, err = e.report(func(c context.Context) (RunRecord, error) { return cb.MarkFailed(c, runID, err) })
	}
	if err != nil {
		e.log.Warn("could not record the outcome of a run", "run_id", runID, "err", err)
	}
}

// report calls back with a context of its own: the handler's may already be
// cancelled by the time the outcome is recorded.
func (e *MemoryExecutor) report(f func(context.Context) (RunRecord, error)) (RunRecord, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.CallbackTimeout)
	defer cancel()
	return f(ctx)
}

// callHandler runs h, turning a panic into a *PanicError so one bad handler
// fails its run instead of the process.
func callHandler(ctx context.Context, h Handler, params map[string]any) (result any, err error) {
	defer func() {
		if v := recover(); v != nil {
			result, err = nil, &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h(ctx, params)
}

// Shutdown stops taking runs and waits for queued and running ones to
// finish. If ctx ends first, running handlers are cancelled (their runs are
// recorded failed with the context's error) and Shutdown returns ctx.Err().
func (e *MemoryExecutor) Shutdown(ctx context.Context) error {
	e.closeQueues()
	done := make(chan struct{})
	go func() { e.workers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		e.stop()
		<-done
		return ctx.Err()
	}
}

// Close stops at once: running handlers are cancelled and queued runs that
// have not started are dropped (they stay queued in the ledger).
func (e *MemoryExecutor) Close() error {
	e.mu.Lock()
	for _, q := range e.lanes {
		for len(q) > 0 {
			<-q
		}
	}
	e.mu.Unlock()
	e.stop()
	e.closeQueues()
	e.workers.Wait()
	return nil
}

func (e *MemoryExecutor) closeQueues() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	for _, q := range e.lanes {
		close(q)
	}
}
