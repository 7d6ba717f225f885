package celerybridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/spinecore/spine-go/core"
)

// ExecutorOptions configures an Executor. The zero value publishes Python
// spine-core's spine.execute.<kind> tasks with protocol 2.
type ExecutorOptions struct {
	// Name is recorded as the runs' executor_name. Default "celery".
	Name string
	// CaptureSpine publishes Capture-Spine's own pipeline task instead:
	// RunPipelineTask with args [execution_id] to the lane's queue, as its
	// CeleryBackend does.
	CaptureSpine bool
	// RunPipelineTask is Capture-Spine's task name. Default "run_pipeline".
	RunPipelineTask string
	// TaskNames overrides the task published for a kind. spine-core's newer
	// branch calls pipelines "operation": map KindPipeline to
	// "spine.execute.operation" for workers of that branch. Default
	// "spine.execute.<kind>".
	TaskNames map[core.Kind]string
	// ProtocolV1 publishes task protocol 1, for estates pinned to
	// task_protocol=1. Default protocol 2.
	ProtocolV1 bool
	// Target decides how typed values are written. Default TargetKombu52.
	Target Target
}

// Executor is core's Executor on Celery: Submit publishes a task message
// through the Transport, Follow reads its outcome from the ResultBackend and
// reports it to the dispatcher. It names its work before taking it (the task
// id is the client's choice), so the dispatcher records each run queued with
// its task id before anything reaches Redis.
type Executor struct {
	transport *Transport
	results   *ResultBackend
	opts      ExecutorOptions
}

var (
	_ core.Executor    = (*Executor)(nil)
	_ core.RefReserver = (*Executor)(nil)
)

// NewExecutor returns a Celery executor publishing through t and reading
// results from r.
func NewExecutor(t *Transport, r *ResultBackend, opts ExecutorOptions) *Executor {
	if opts.Name == "" {
		opts.Name = "celery"
	}
	if opts.RunPipelineTask == "" {
		opts.RunPipelineTask = "run_pipeline"
	}
	return &Executor{transport: t, results: r, opts: opts}
}

// Name implements core.Executor.
func (e *Executor) Name() string { return e.opts.Name }

// ReserveRef implements core.RefReserver: a fresh task id, a uuid4 as
// Celery makes them.
func (e *Executor) ReserveRef(core.RunRecord) string { return uuid.NewString() }

// Priority numbers of spine-core's Celery executor. Note that kombu's Redis
// transport serves the LOWER number first, so within one queue a realtime
// (9) task waits behind a slow (1) one; the queues differ by priority, which
// is what keeps realtime work apart in practice.
var celeryPriority = map[core.Priority]int{
	core.PriorityRealtime: 9, core.PriorityHigh: 7, core.PriorityNormal: 5,
	core.PriorityLow: 3, core.PrioritySlow: 1,
}

// priorityQueue is the queue of a spec in the default lane.
var priorityQueue = map[core.Priority]string{
	core.PriorityRealtime: "realtime", core.PriorityHigh: "high", core.PriorityNormal: "default",
	core.PriorityLow: "low", core.PrioritySlow: "slow",
}

// Queue returns the queue a run's task goes to: its lane unless that is the
// default lane, then the queue of its priority (spine-core's rule); in
// Capture-Spine mode always the lane.
func (e *Executor) Queue(spec core.WorkSpec) string {
	spec = spec.WithDefaults()
	if e.opts.CaptureSpine || spec.Lane != core.DefaultLane {
		return spec.Lane
	}
	return priorityQueue[spec.Priority]
}

// Priority returns the message priority a spec's task is published with
// (spine-core's mapping of its priorities onto Celery's 0-9), which picks
// the priority list of its queue.
func (e *Executor) Priority(spec core.WorkSpec) int {
	return celeryPriority[spec.WithDefaults().Priority]
}

// TaskName returns the Celery task a run is published as.
func (e *Executor) TaskName(kind core.Kind) string {
	if e.opts.CaptureSpine {
		return e.opts.RunPipelineTask
	}
	if name, ok := e.opts.TaskNames[kind]; ok {
		return name
	}
	return "spine.execute." + string(kind)
}

// Message builds the encoded envelope Submit publishes for run, with task
// id ref.
func (e *Executor) Message(run core.RunRecord, ref string) ([]byte, error) {
	spec := run.Spec.WithDefaults()
	name := e.TaskName(spec.Kind)
	var args []any
	kwargs := map[string]any{}
	if e.opts.CaptureSpine {
		args = []any{run.RunID}
	} else {
		args = []any{spec.Name, spec.Params}
		kwargs = map[string]any{
			"idempotency_key": nullIfEmpty(spec.IdempotencyKey),
			"correlation_id":  nullIfEmpty(spec.CorrelationID),
			"parent_run_id":   nullIfEmpty(spec.ParentRunID),
			"metadata":        spec.Metadata,
		}
	}
	opts := TaskOptions{ID: ref, Queue: e.Queue(spec), Priority: e.Priority(spec), Target: e.opts.Target}
	if e.opts.ProtocolV1 {
		m, err := NewTaskMessageV1(name, args, kwargs, opts)
		if err != nil {
			return nil, err
		}
		return m.Encode()
	}
	m, err := NewTaskMessage(name, args, kwargs, opts)
	if err != nil {
		return nil, err
	}
	return m.Encode()
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Submit implements core.Executor: the task goes to its queue on the
// default exchange with the reserved id (a fresh one if none was reserved).
func (e *Executor) Submit(ctx context.Context, run core.RunRecord) (string, error) {
	ref := run.ExternalRef
	if ref == "" {
		ref = e.ReserveRef(run)
	}
	raw, err := e.Message(run, ref)
	if err != nil {
		return "", core.PermanentError(fmt.Errorf("celery executor: build task for run %s: %w", run.RunID, err))
	}
	queue := e.Queue(run.Spec)
	if err := e.transport.Publish(ctx, "", queue, raw); err != nil {
		return "", fmt.Errorf("celery executor: publish run %s to queue %q: %w", run.RunID, queue, err)
	}
	return ref, nil
}

// Cancel implements core.Executor as Python spine-core does:
// control.revoke(task_id, terminate=True), a broadcast every worker's
// control consumer receives; a worker discards the task when it arrives, or
// terminates it if running. With no worker listening, the revoke would be
// lost and the task run later: that is an error, not a cancellation.
func (e *Executor) Cancel(ctx context.Context, ref string) error {
	raw, err := revokeMessage(ref, true)
	if err != nil {
		return err
	}
	if err := e.transport.Publish(ctx, pidboxExchange, "", raw); err != nil {
		if errors.Is(err, ErrUnroutable) {
			return fmt.Errorf("celery executor: revoke %s: no Celery worker is listening for control messages, so the task would still run: %w", ref, err)
		}
		return fmt.Errorf("celery executor: revoke %s: %w", ref, err)
	}
	return nil
}

// Status maps the Celery state of ref to a RunStatus, as spine-core does:
// PENDING, RECEIVED, RETRY → queued; STARTED → running; SUCCESS →
// completed; FAILURE, REJECTED → failed; REVOKED → cancelled.
func (e *Executor) Status(ctx context.Context, ref string) (core.RunStatus, *TaskResult, error) {
	res, err := e.results.Get(ctx, ref)
	if err != nil {
		return "", nil, err
	}
	return RunStatusOf(res.State), res, nil
}

// RunStatusOf maps a Celery state to a RunStatus.
func RunStatusOf(s ResultState) core.RunStatus {
	switch s {
	case StateStarted:
		return core.StatusRunning
	case StateSuccess:
		return core.StatusCompleted
	case StateFailure, StateRejected:
		return core.StatusFailed
	case StateRevoked:
		return core.StatusCancelled
	}
	return core.StatusQueued // PENDING, RECEIVED, RETRY and states unknown to this version
}

// Follow waits for the outcome of the run's task and reports it through cb
// (the dispatcher): SUCCESS → MarkCompleted with the result, FAILURE or
// REJECTED → MarkFailed with the exception's type and message, REVOKED →
// MarkCancelled. It returns the run as recorded, or ctx's error if the task
// has not finished by then (nothing is recorded in that case).
func (e *Executor) Follow(ctx context.Context, cb core.WorkerCallbacks, runID, ref string) (core.RunRecord, error) {
	res, err := e.results.Wait(ctx, ref, 0)
	if err != nil {
		return core.RunRecord{}, fmt.Errorf("celery executor: follow run %s (task %s): %w", runID, ref, err)
	}
	return e.report(ctx, cb, runID, res)
}

// report records a ready result.
func (e *Executor) report(ctx context.Context, cb core.WorkerCallbacks, runID string, res *TaskResult) (core.RunRecord, error) {
	switch RunStatusOf(res.State) {
	case core.StatusCompleted:
		return cb.MarkCompleted(ctx, runID, res.Result)
	case core.StatusCancelled:
		reason := "revoked"
		if res.Exception != nil && res.Exception.String() != "" {
			reason = "revoked: " + res.Exception.String()
		}
		return cb.MarkCancelled(ctx, runID, reason)
	default:
		f := &core.Failure{Type: string(res.State), Message: "task " + strings.ToLower(string(res.State))}
		if res.Exception != nil {
			f.Type = res.Exception.Type
			f.Message = res.Exception.String()
		}
		return cb.MarkFailed(ctx, runID, f)
	}
}
