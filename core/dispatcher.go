package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DispatcherOptions configures a Dispatcher. The zero value works.
type DispatcherOptions struct {
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Backoff spaces automatic retries. Default ExponentialBackoff.
	Backoff BackoffFunc
	// DisableAutoRetry leaves failed runs failed instead of retrying them
	// up to their spec's MaxRetries and then dead-lettering them.
	DisableAutoRetry bool
	// EventSource is the source of the events the dispatcher records.
	// Default "dispatcher".
	EventSource string
	Logger      *slog.Logger
}

// Dispatcher is the single entry point for work: it records each run in the
// Ledger, hands it to the Executor, and moves it through the RunStatus state
// machine as workers report back (it implements WorkerCallbacks).
//
// A Dispatcher is safe for concurrent use, and several dispatchers, in one
// process or many, may share one ledger: every change is a compare-and-set
// in the ledger and idempotency keys are unique there.
type Dispatcher struct {
	ledger   Ledger
	executor Executor
	opts     DispatcherOptions
	log      *slog.Logger

	baseCtx context.Context
	stop    context.CancelFunc

	mu       sync.Mutex
	retries  map[string]*time.Timer // scheduled automatic retries, by failed run id
	closed   bool
	inFlight sync.WaitGroup
}

var _ WorkerCallbacks = (*Dispatcher)(nil)

// NewDispatcher returns a dispatcher over ledger and executor. If the
// executor runs work itself (CallbackBinder), it is bound to report to the
// new dispatcher.
func NewDispatcher(ledger Ledger, executor Executor, opts DispatcherOptions) *Dispatcher {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Backoff == nil {
		opts.Backoff = ExponentialBackoff
	}
	if opts.EventSource == "" {
		opts.EventSource = DefaultEventSource
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, stop := context.WithCancel(context.Background())
	d := &Dispatcher{
		ledger: ledger, executor: executor, opts: opts, log: log.With("component", "dispatcher"),
		baseCtx: ctx, stop: stop, retries: map[string]*time.Timer{},
	}
	if b, ok := executor.(CallbackBinder); ok {
		b.BindCallbacks(d)
	}
	return d
}

// Ledger returns the dispatcher's ledger.
func (d *Dispatcher) Ledger() Ledger { return d.ledger }

func (d *Dispatcher) now() time.Time { return Timestamp(d.opts.Now()) }

func (d *Dispatcher) event(runID string, t EventType, data map[string]any) RunEvent {
	return RunEvent{RunID: runID, Type: t, Timestamp: d.now(), Data: data, Source: d.opts.EventSource}
}

// Submit records a run for spec and hands it to the executor.
//
// If spec.IdempotencyKey is already known, the existing run is returned,
// whatever its status, and nothing is recorded. If the executor refuses the
// run, the run is recorded failed (and retried or dead-lettered as its spec
// says) and returned together with the executor's error.
func (d *Dispatcher) Submit(ctx context.Context, spec WorkSpec) (RunRecord, error) {
	run, err := d.newRun(spec)
	if err != nil {
		return RunRecord{}, err
	}
	return d.create(ctx, run)
}

// SubmitTask submits a task spec built by NewTask.
func (d *Dispatcher) SubmitTask(ctx context.Context, name string, params map[string]any) (RunRecord, error) {
	return d.Submit(ctx, NewTask(name, params))
}

// SubmitPipeline submits a pipeline spec built by NewPipeline.
func (d *Dispatcher) SubmitPipeline(ctx context.Context, name string, params map[string]any) (RunRecord, error) {
	return d.Submit(ctx, NewPipeline(name, params))
}

// SubmitWorkflow submits a workflow spec built by NewWorkflow.
func (d *Dispatcher) SubmitWorkflow(ctx context.Context, name string, params map[string]any) (RunRecord, error) {
	return d.Submit(ctx, NewWorkflow(name, params))
}

// SubmitStep submits a step of the workflow run parentRunID.
func (d *Dispatcher) SubmitStep(ctx context.Context, name string, params map[string]any, parentRunID string) (RunRecord, error) {
	return d.Submit(ctx, NewStep(name, params, parentRunID))
}

// SubmitMany submits specs as one batch: one ledger write records every
// run (and, when the executor reserves refs, records them queued too),
// which is what makes high submit rates possible on a database ledger.
// results[i] belongs to specs[i]. An invalid spec fails the whole batch
// before anything is recorded; executor refusals are joined into the
// returned error while the other runs proceed.
func (d *Dispatcher) SubmitMany(ctx context.Context, specs []WorkSpec) ([]RunRecord, error) {
	runs := make([]RunRecord, len(specs))
	events := make([][]RunEvent, len(specs))
	for i, spec := range specs {
		run, err := d.newRun(spec)
		if err != nil {
			return nil, fmt.Errorf("submit many: spec %d (%s): %w", i, spec.HandlerKey(), err)
		}
		runs[i], events[i] = d.prepare(run)
	}
	stored, errs, err := d.ledger.CreateRuns(ctx, runs, events)
	if err != nil {
		return nil, fmt.Errorf("submit many: record %d runs: %w", len(runs), err)
	}
	results := make([]RunRecord, len(specs))
	var (
		updates   []RunUpdate
		updateIdx []int
		refs      []string
		failures  []error
	)
	for i := range runs {
		if errs[i] != nil {
			if errors.Is(errs[i], ErrDuplicate) && runs[i].Spec.IdempotencyKey != "" && stored[i].RunID != "" {
				results[i] = stored[i] // idempotent replay
				continue
			}
			return nil, fmt.Errorf("submit many: spec %d: %w", i, errs[i])
		}
		results[i] = stored[i]
		ref, err := d.executor.Submit(ctx, stored[i])
		switch {
		case err != nil:
			results[i], err = d.recordRejection(ctx, stored[i], err)
			failures = append(failures, err)
		case stored[i].Status == StatusQueued && ref == stored[i].ExternalRef:
			// Recorded queued with this ref before the hand-over: done.
		default:
			updates = append(updates, d.queuedUpdate(stored[i], ref))
			updateIdx = append(updateIdx, i)
			refs = append(refs, ref)
		}
	}
	if len(updates) == 0 {
		return results, errors.Join(failures...)
	}
	queued, uerrs, err := d.ledger.UpdateRuns(ctx, updates)
	if err != nil {
		return results, fmt.Errorf("submit many: record %d runs queued: %w", len(updates), err)
	}
	for j, i := range updateIdx {
		switch {
		case uerrs[j] == nil:
			results[i] = queued[j]
		case errors.Is(uerrs[j], ErrConcurrencyConflict):
			results[i], err = d.lateExternalRef(ctx, results[i].RunID, refs[j])
			if err != nil {
				failures = append(failures, err)
			}
		default:
			failures = append(failures, fmt.Errorf("run %s: %w", results[i].RunID, uerrs[j]))
		}
	}
	return results, errors.Join(failures...)
}

func (d *Dispatcher) newRun(spec WorkSpec) (RunRecord, error) {
	if err := spec.Validate(); err != nil {
		return RunRecord{}, err
	}
	spec = spec.WithDefaults()
	for field, m := range map[string]map[string]any{"params": spec.Params, "metadata": spec.Metadata} {
		if err := encodesAsJSON(m); err != nil {
			return RunRecord{}, &InvalidSpecError{Field: field, Reason: "is not JSON: " + err.Error()}
		}
	}
	return RunRecord{
		RunID: NewRunID(), Spec: spec, Status: StatusPending, CreatedAt: d.now(),
		Attempt: 1, Tags: tagsFor(spec),
	}, nil
}

// tagsFor follows Python: the kind and name, plus the spec's string-valued
// metadata.
func tagsFor(spec WorkSpec) map[string]string {
	tags := map[string]string{}
	for k, v := range spec.Metadata {
		switch v := v.(type) {
		case string:
			tags[k] = v
		case json.Number:
			tags[k] = v.String()
		}
	}
	tags["kind"] = string(spec.Kind)
	tags["name"] = spec.Name
	return tags
}

func (d *Dispatcher) createdEvent(run RunRecord) RunEvent {
	data := map[string]any{"kind": string(run.Spec.Kind), "name": run.Spec.Name}
	if run.RetryOfRunID != "" {
		data["retry_of_run_id"] = run.RetryOfRunID
		data["attempt"] = run.Attempt
	}
	return d.event(run.RunID, EventCreated, data)
}

// prepare returns the run as it is first recorded, with the events that
// record it. An executor that reserves refs gets the run recorded queued
// with its ref before the hand-over; any other gets Python spine-core's
// order: pending first, queued once the executor has answered.
func (d *Dispatcher) prepare(run RunRecord) (RunRecord, []RunEvent) {
	events := []RunEvent{d.createdEvent(run)}
	if r, ok := d.executor.(RefReserver); ok {
		run.Status = StatusQueued
		run.ExternalRef = r.ReserveRef(run)
		run.ExecutorName = d.executor.Name()
		events = append(events, d.event(run.RunID, EventQueued, map[string]any{"external_ref": run.ExternalRef}))
	}
	return run, events
}

// create records run and hands it over; a taken idempotency key returns
// the existing run instead.
func (d *Dispatcher) create(ctx context.Context, run RunRecord) (RunRecord, error) {
	run, events := d.prepare(run)
	stored, err := d.ledger.CreateRun(ctx, run, events...)
	if err != nil {
		if errors.Is(err, ErrDuplicate) && run.Spec.IdempotencyKey != "" && stored.RunID != "" {
			return stored, nil
		}
		return RunRecord{}, fmt.Errorf("submit %s: %w", run.Spec.HandlerKey(), err)
	}
	return d.handOver(ctx, stored)
}

// handOver gives a recorded run to the executor and records the outcome.
func (d *Dispatcher) handOver(ctx context.Context, run RunRecord) (RunRecord, error) {
	ref, err := d.executor.Submit(ctx, run)
	if err != nil {
		return d.recordRejection(ctx, run, err)
	}
	if run.Status == StatusQueued && ref == run.ExternalRef {
		return run, nil // recorded queued with this ref before the hand-over
	}
	queued, err := d.ledger.UpdateRun(ctx, d.queuedUpdate(run, ref))
	if errors.Is(err, ErrConcurrencyConflict) {
		return d.lateExternalRef(ctx, run.RunID, ref)
	}
	if err != nil {
		return run, fmt.Errorf("submit %s: run %s accepted by %s as %s but not recorded queued: %w",
			run.Spec.HandlerKey(), run.RunID, d.executor.Name(), ref, err)
	}
	return queued, nil
}

// queuedUpdate records the executor's ref: the pending → queued transition,
// or, for a run recorded queued whose executor answered with another ref
// than it reserved, the ref it actually uses.
func (d *Dispatcher) queuedUpdate(run RunRecord, ref string) RunUpdate {
	name := d.executor.Name()
	u := RunUpdate{
		RunID: run.RunID, From: StatusPending, To: StatusQueued, ExternalRef: &ref, ExecutorName: &name,
		Events: []RunEvent{d.event(run.RunID, EventQueued, map[string]any{"external_ref": ref})},
	}
	if run.Status == StatusQueued {
		u.From = StatusQueued
		u.Events[0].Data["reserved_ref"] = run.ExternalRef
	}
	return u
}

// lateExternalRef handles a run that moved on while it was being handed
// over: a fast worker already started (pending → running is the state
// machine's synchronous fast path) or a caller cancelled it. The executor's
// ref is recorded either way; a cancelled run's work is cancelled too.
func (d *Dispatcher) lateExternalRef(ctx context.Context, runID, ref string) (RunRecord, error) {
	name := d.executor.Name()
	for range 8 {
		run, err := d.ledger.GetRun(ctx, runID)
		if err != nil {
			return run, err
		}
		if run.Status == StatusCancelled {
			if err := d.executor.Cancel(ctx, ref); err != nil {
				d.log.Warn("cancelled run was handed over; cancelling its work failed", "run_id", runID, "ref", ref, "err", err)
			}
		}
		if run.ExternalRef != "" {
			return run, nil
		}
		run, err = d.ledger.UpdateRun(ctx, RunUpdate{RunID: runID, From: run.Status, To: run.Status, ExternalRef: &ref, ExecutorName: &name})
		if !errors.Is(err, ErrConcurrencyConflict) {
			return run, err
		}
	}
	return d.ledger.GetRun(ctx, runID)
}

// recordRejection records an executor's refusal. The state machine has no
// pending → failed edge: a refused hand-over is queued → failed ("executor
// rejection"), so a run recorded pending first passes through queued
// without an external ref.
func (d *Dispatcher) recordRejection(ctx context.Context, run RunRecord, cause error) (RunRecord, error) {
	name := d.executor.Name()
	if run.Status == StatusPending {
		queued, err := d.ledger.UpdateRun(ctx, RunUpdate{
			RunID: run.RunID, From: StatusPending, To: StatusQueued, ExecutorName: &name,
			Events: []RunEvent{d.event(run.RunID, EventQueued, map[string]any{"external_ref": nil})},
		})
		if err != nil {
			return run, fmt.Errorf("submit %s: executor %s refused run %s (%v) and recording it failed: %w",
				run.Spec.HandlerKey(), name, run.RunID, cause, err)
		}
		run = queued
	}
	failed, err := d.fail(ctx, run, cause)
	if err != nil {
		return run, fmt.Errorf("submit %s: executor %s refused run %s (%v) and recording it failed: %w",
			run.Spec.HandlerKey(), name, run.RunID, cause, err)
	}
	return failed, fmt.Errorf("submit %s: executor %s refused run %s: %w", run.Spec.HandlerKey(), name, run.RunID, cause)
}

// GetRun returns the run, or an error wrapping ErrNotFound.
func (d *Dispatcher) GetRun(ctx context.Context, runID string) (RunRecord, error) {
	return d.ledger.GetRun(ctx, runID)
}

// ListRuns returns one page of runs, newest first.
func (d *Dispatcher) ListRuns(ctx context.Context, filter RunFilter) (RunPage, error) {
	return d.ledger.ListRuns(ctx, filter)
}

// Children returns one page of the runs whose parent is parentRunID.
func (d *Dispatcher) Children(ctx context.Context, parentRunID string, filter RunFilter) (RunPage, error) {
	filter.ParentRunID = parentRunID
	return d.ledger.ListRuns(ctx, filter)
}

// Events returns the run's history, oldest first.
func (d *Dispatcher) Events(ctx context.Context, runID string) ([]RunEvent, error) {
	return d.ledger.Events(ctx, runID)
}

// Cancel stops an active (pending, queued or running) run: the executor is
// asked to stop its work first, then the run is recorded cancelled. A run
// that is no longer active gives an *IllegalTransitionError.
func (d *Dispatcher) Cancel(ctx context.Context, runID string) (RunRecord, error) {
	run, err := d.ledger.GetRun(ctx, runID)
	if err != nil {
		return run, err
	}
	if !run.Status.Active() {
		return run, CheckTransition(runID, run.Status, StatusCancelled)
	}
	if run.ExternalRef != "" {
		if err := d.executor.Cancel(ctx, run.ExternalRef); err != nil {
			return run, fmt.Errorf("cancel run %s: executor %s could not cancel %s: %w", runID, d.executor.Name(), run.ExternalRef, err)
		}
	}
	return d.transition(ctx, runID, run.Status, StatusCancelled, func(from RunStatus) RunUpdate {
		now := d.now()
		return RunUpdate{RunID: runID, From: from, To: StatusCancelled, CompletedAt: &now,
			Events: []RunEvent{d.event(runID, EventCancelled, map[string]any{"previous_status": string(from)})}}
	})
}

// MarkCancelled records that the executor ended an active run itself, for
// reason (a Celery REVOKED result, an expired task). Unlike Cancel it does
// not ask the executor to stop anything.
func (d *Dispatcher) MarkCancelled(ctx context.Context, runID string, reason string) (RunRecord, error) {
	run, err := d.ledger.GetRun(ctx, runID)
	if err != nil {
		return run, err
	}
	return d.transition(ctx, runID, run.Status, StatusCancelled, func(from RunStatus) RunUpdate {
		now := d.now()
		return RunUpdate{RunID: runID, From: from, To: StatusCancelled, CompletedAt: &now,
			Events: []RunEvent{d.event(runID, EventCancelled, map[string]any{"previous_status": string(from), "reason": reason, "by": "executor"})}}
	})
}

// transition applies the update build(from) by compare-and-set, starting
// from the status the caller believes the run has and following the actual
// status when another writer got there first, as long as the state machine
// allows the transition from it.
func (d *Dispatcher) transition(ctx context.Context, runID string, from, to RunStatus, build func(from RunStatus) RunUpdate) (RunRecord, error) {
	for range 8 {
		if err := CheckTransition(runID, from, to); err != nil {
			return RunRecord{}, err
		}
		run, err := d.ledger.UpdateRun(ctx, build(from))
		var conflict *ConflictError
		if !errors.As(err, &conflict) || conflict.Actual == "" {
			return run, err
		}
		from = conflict.Actual
	}
	return RunRecord{}, &ConflictError{RunID: runID, Expected: from, Detail: "status kept changing under concurrent writers; gave up after 8 attempts"}
}

// MarkStarted records that a worker began the run (queued or pending →
// running). An error means the worker should not run it.
func (d *Dispatcher) MarkStarted(ctx context.Context, runID string) (RunRecord, error) {
	return d.transition(ctx, runID, StatusQueued, StatusRunning, func(from RunStatus) RunUpdate {
		now := d.now()
		return RunUpdate{RunID: runID, From: from, To: StatusRunning, StartedAt: &now,
			Events: []RunEvent{d.event(runID, EventStarted, nil)}}
	})
}

// RecordProgress records a progress event while the run is running.
func (d *Dispatcher) RecordProgress(ctx context.Context, runID string, progress float64, message string) error {
	data := map[string]any{"progress": progress, "message": nil}
	if message != "" {
		data["message"] = message
	}
	_, err := d.ledger.AppendEvent(ctx, d.event(runID, EventProgress, data), StatusRunning)
	return err
}

// Heartbeat records that the worker of a queued or running run is alive.
func (d *Dispatcher) Heartbeat(ctx context.Context, runID string) error {
	_, err := d.ledger.AppendEvent(ctx, d.event(runID, EventHeartbeat, nil), StatusQueued, StatusRunning)
	return err
}

// MarkCompleted records the run's result (any JSON-marshalable value; a
// json.RawMessage is stored as it is).
func (d *Dispatcher) MarkCompleted(ctx context.Context, runID string, result any) (RunRecord, error) {
	raw, err := marshalResult(result)
	if err != nil {
		return d.MarkFailed(ctx, runID, &Failure{Type: "ResultNotJSON", Message: "result is not JSON-marshalable: " + err.Error(), Permanent: true})
	}
	run, err := d.ledger.GetRun(ctx, runID)
	if err != nil {
		return run, err
	}
	return d.transition(ctx, runID, run.Status, StatusCompleted, func(from RunStatus) RunUpdate {
		now := d.now()
		data := map[string]any{"duration_seconds": nil}
		if run.StartedAt != nil {
			data["duration_seconds"] = now.Sub(*run.StartedAt).Seconds()
		}
		return RunUpdate{RunID: runID, From: from, To: StatusCompleted, CompletedAt: &now, Result: raw,
			Events: []RunEvent{d.event(runID, EventCompleted, data)}}
	})
}

func marshalResult(result any) (json.RawMessage, error) {
	switch r := result.(type) {
	case nil:
		return json.RawMessage("null"), nil
	case json.RawMessage:
		if !json.Valid(r) {
			return nil, errors.New("invalid JSON")
		}
		return r, nil
	}
	return json.Marshal(result)
}

// MarkFailed records the run failed with cause, then retries it after a
// backoff if its spec allows more attempts, or dead-letters it. The error
// type recorded is ErrorType(cause). The run is returned as it stands after
// all of that.
func (d *Dispatcher) MarkFailed(ctx context.Context, runID string, cause error) (RunRecord, error) {
	run, err := d.ledger.GetRun(ctx, runID)
	if err != nil {
		return run, err
	}
	return d.fail(ctx, run, cause)
}

func (d *Dispatcher) fail(ctx context.Context, run RunRecord, cause error) (RunRecord, error) {
	if cause == nil {
		cause = errors.New("failed without an error")
	}
	msg, typ := cause.Error(), ErrorType(cause)
	failed, err := d.transition(ctx, run.RunID, run.Status, StatusFailed, func(from RunStatus) RunUpdate {
		now := d.now()
		data := map[string]any{"error": msg, "error_type": typ}
		var p *PanicError
		if errors.As(cause, &p) {
			data["stack"] = string(p.Stack)
		}
		return RunUpdate{RunID: run.RunID, From: from, To: StatusFailed, CompletedAt: &now,
			Error: &msg, ErrorType: &typ, Events: []RunEvent{d.event(run.RunID, EventFailed, data)}}
	})
	if err != nil {
		return failed, err
	}
	return d.afterFailure(ctx, failed, cause), nil
}

// afterFailure retries or dead-letters a failed run. Problems are logged:
// the failure itself is recorded either way.
func (d *Dispatcher) afterFailure(ctx context.Context, run RunRecord, cause error) RunRecord {
	if d.opts.DisableAutoRetry {
		return run
	}
	if IsPermanent(cause) || run.Attempt > run.Spec.MaxRetries {
		reason := "retries exhausted"
		if IsPermanent(cause) {
			reason = "permanent failure"
		}
		dead, err := d.ledger.UpdateRun(ctx, RunUpdate{
			RunID: run.RunID, From: StatusFailed, To: StatusDeadLettered,
			Events: []RunEvent{d.event(run.RunID, EventDeadLettered, map[string]any{
				"reason": reason, "attempts": run.Attempt, "error": run.Error, "error_type": run.ErrorType})},
		})
		if err != nil {
			d.log.Warn("could not dead-letter run", "run_id", run.RunID, "err", err)
			return run
		}
		return dead
	}
	delay := d.opts.Backoff(run.Attempt, run.Spec.RetryDelay)
	due := d.now().Add(delay)
	_, err := d.ledger.AppendEvent(ctx, d.event(run.RunID, EventRetryScheduled, map[string]any{
		"delay_seconds": delay.Seconds(), "due_at": FormatTime(due), "next_attempt": run.Attempt + 1,
	}), StatusFailed)
	if err != nil {
		d.log.Warn("could not schedule retry", "run_id", run.RunID, "err", err)
		return run
	}
	d.scheduleRetry(run.RunID, due)
	return run
}

func (d *Dispatcher) scheduleRetry(runID string, due time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.retries[runID] != nil {
		return
	}
	d.retries[runID] = time.AfterFunc(max(0, due.Sub(d.now())), func() { d.fireRetry(runID) })
}

func (d *Dispatcher) fireRetry(runID string) {
	d.mu.Lock()
	delete(d.retries, runID)
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.inFlight.Add(1)
	d.mu.Unlock()
	defer d.inFlight.Done()
	ctx, cancel := context.WithTimeout(d.baseCtx, time.Minute)
	defer cancel()
	if _, err := d.retry(ctx, runID, true); err != nil {
		d.log.Warn("automatic retry failed", "run_id", runID, "err", err)
	}
}

// Retry submits a new run for a failed or dead-lettered run: same spec, no
// idempotency key, trigger_source "retry", attempt + 1 and retry_of_run_id
// pointing back; the old run records `retried {new_run_id}`. Other statuses
// give an *IllegalTransitionError (retry is the state machine's
// failed/dead_lettered → pending edge, taken by a new run).
func (d *Dispatcher) Retry(ctx context.Context, runID string) (RunRecord, error) {
	d.mu.Lock()
	if t := d.retries[runID]; t != nil {
		t.Stop() // a manual retry replaces the scheduled one
		delete(d.retries, runID)
	}
	d.mu.Unlock()
	return d.retry(ctx, runID, false)
}

// autoRetryKey makes an automatic retry idempotent per failed run, so two
// dispatchers reacting to the same failure create one retry between them.
func autoRetryKey(runID string) string { return "retry-of:" + runID }

func (d *Dispatcher) retry(ctx context.Context, runID string, auto bool) (RunRecord, error) {
	old, err := d.ledger.GetRun(ctx, runID)
	if err != nil {
		return old, err
	}
	if auto && old.Status != StatusFailed {
		return old, nil // dead-lettered or handled by hand meanwhile
	}
	if old.Status != StatusFailed && old.Status != StatusDeadLettered {
		return old, CheckTransition(runID, old.Status, StatusPending)
	}
	spec := old.Spec
	spec.TriggerSource = "retry"
	spec.IdempotencyKey = ""
	if auto {
		spec.IdempotencyKey = autoRetryKey(runID)
	}
	run, err := d.newRun(spec)
	if err != nil {
		return RunRecord{}, err
	}
	run.Attempt = old.Attempt + 1
	run.RetryOfRunID = old.RunID

	run, events := d.prepare(run)
	stored, err := d.ledger.CreateRun(ctx, run, events...)
	switch {
	case errors.Is(err, ErrDuplicate) && auto && stored.RunID != "":
		// Another dispatcher made this retry; make sure the old run says so.
		d.ensureRetriedEvent(ctx, old.RunID, stored.RunID)
		return stored, nil
	case err != nil:
		return RunRecord{}, fmt.Errorf("retry run %s: %w", runID, err)
	}
	if _, err := d.ledger.AppendEvent(ctx, d.event(old.RunID, EventRetried, map[string]any{"new_run_id": stored.RunID})); err != nil {
		d.log.Warn("retry created but not recorded on the old run", "run_id", old.RunID, "new_run_id", stored.RunID, "err", err)
	}
	return d.handOver(ctx, stored)
}

func (d *Dispatcher) ensureRetriedEvent(ctx context.Context, oldID, newID string) {
	events, err := d.ledger.Events(ctx, oldID)
	if err != nil {
		return
	}
	for _, ev := range events {
		if ev.Type == EventRetried {
			return
		}
	}
	_, _ = d.ledger.AppendEvent(ctx, d.event(oldID, EventRetried, map[string]any{"new_run_id": newID}))
}

// ResumeScheduledRetries re-arms the automatic retries that were scheduled
// but never made (the process that scheduled them stopped). Call it at
// start-up; it returns how many it re-armed.
func (d *Dispatcher) ResumeScheduledRetries(ctx context.Context) (int, error) {
	armed := 0
	filter := RunFilter{Statuses: []RunStatus{StatusFailed}, Limit: MaxListLimit}
	for {
		page, err := d.ledger.ListRuns(ctx, filter)
		if err != nil {
			return armed, fmt.Errorf("resume retries: %w", err)
		}
		for _, run := range page.Runs {
			events, err := d.ledger.Events(ctx, run.RunID)
			if err != nil {
				return armed, fmt.Errorf("resume retries: run %s: %w", run.RunID, err)
			}
			var due *time.Time
			for _, ev := range events {
				switch ev.Type {
				case EventRetryScheduled:
					if s, ok := ev.Data["due_at"].(string); ok {
						if t, err := ParseTime(s); err == nil {
							due = &t
						}
					}
				case EventRetried:
					due = nil
				}
			}
			if due != nil {
				d.scheduleRetry(run.RunID, *due)
				armed++
			}
		}
		if page.NextCursor == "" {
			return armed, nil
		}
		filter.Cursor = page.NextCursor
	}
}

// Close stops the scheduled automatic retries and waits for retries in
// progress. The executor is the caller's to shut down.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	d.closed = true
	for id, t := range d.retries {
		t.Stop()
		delete(d.retries, id)
	}
	d.mu.Unlock()
	d.stop()
	d.inFlight.Wait()
	return nil
}
