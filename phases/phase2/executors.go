package phase2

import (
	"context"
	"fmt"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// The executor names of the runs the side-car records, in executions'
// executor_name: what the side-car adopts and follows after a restart.
const (
	ExecutorShadow  = "phase2-shadow"
	ExecutorReroute = "phase2-reroute"
)

// Both executors only name the work: the Dispatcher records a run queued
// with its ref, and the side-car then hands the message over itself, in the
// same atomic step as the ack of the intercepted one (settle.lua). Were the
// executor to publish, a crash between its publish and that ack would
// publish twice.

// shadowExecutor is for runs whose work the Python worker does anyway: the
// ref is the original Celery task id.
type shadowExecutor struct{}

func (shadowExecutor) Name() string { return ExecutorShadow }

func (shadowExecutor) ReserveRef(run core.RunRecord) string {
	id, _ := run.Spec.Metadata[metaTaskID].(string)
	return id
}

func (shadowExecutor) Submit(_ context.Context, run core.RunRecord) (string, error) {
	return run.ExternalRef, nil
}

func (shadowExecutor) Cancel(_ context.Context, ref string) error {
	return fmt.Errorf("phase2: a shadowed run is the Python worker's task: revoke Celery task %s instead", ref)
}

// rerouteExecutor is for runs published as the unified pipeline task: the
// ref is that task's id, a fresh uuid4.
type rerouteExecutor struct{ celery *celerybridge.Executor }

func (e rerouteExecutor) Name() string { return ExecutorReroute }

func (e rerouteExecutor) ReserveRef(run core.RunRecord) string { return e.celery.ReserveRef(run) }

func (e rerouteExecutor) Submit(_ context.Context, run core.RunRecord) (string, error) {
	return run.ExternalRef, nil
}

func (e rerouteExecutor) Cancel(ctx context.Context, ref string) error {
	return e.celery.Cancel(ctx, ref)
}
