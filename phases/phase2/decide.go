package phase2

import (
	"errors"
	"fmt"
	"time"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// PicklePolicy says what the side-car does with a message whose body it
// never decodes: pickle (and yaml, msgpack).
type PicklePolicy string

const (
	// PickleDeadLetter moves such messages to the dead-letter list.
	PickleDeadLetter PicklePolicy = "dead-letter"
	// PicklePassthrough republishes them untouched to the task's worker
	// queue, whatever its route says: they can be neither shadowed nor
	// rerouted, since their arguments are never read.
	PicklePassthrough PicklePolicy = "passthrough"
)

// Dead-letter reasons, the prefix of DeadLetter.Reason.
const (
	reasonUndecodable = "undecodable"
	reasonOpaque      = "opaque_body"
	reasonUnknownTask = "unknown_task"
	reasonMapping     = "mapping_failed"
)

// triggerSource is what the executions the side-car records say started
// them: the call came from inside the application, as phase 3 says of the
// jobs these tasks kept.
const triggerSource = "internal"

// IdempotencyKey is the key of the execution recorded for a Celery task id,
// under shadow and reroute alike: one execution per task id.
func IdempotencyKey(taskID string) string { return "celery:" + taskID }

// decision is what to do with one claimed message. Exactly one of
// deadLetter, park and path is meaningful, in that order.
type decision struct {
	task  *celerybridge.Task
	route Route
	path  Mode
	// spec is the execution's WorkSpec under shadow and reroute.
	spec core.WorkSpec
	// park holds a reroute message until its eta.
	park time.Time
	// deadLetter is the reason to dead-letter, "" otherwise.
	deadLetter string
}

// routeTable is the routes a side-car applies, by task.
type routeTable map[string]Route

// decide is the side-car's whole judgement of a message, without I/O:
// decoded (or its decode error), looked up, hashed, mapped.
func decide(raw []byte, routes routeTable, catalog *capturespine.Catalog, workerQueue string, pickle PicklePolicy, now time.Time) decision {
	task, err := celerybridge.DecodeTask(raw)
	return decideTask(task, err, routes, catalog, workerQueue, pickle, now)
}

// decideTask is decide for a message already decoded (task, or err).
func decideTask(task *celerybridge.Task, err error, routes routeTable, catalog *capturespine.Catalog, workerQueue string, pickle PicklePolicy, now time.Time) decision {
	if err != nil {
		if errors.Is(err, celerybridge.ErrOpaqueBody) {
			return decision{deadLetter: reasonOpaque + ": protocol 1 body that is never decoded, so no task name to route by: " + err.Error()}
		}
		return decision{deadLetter: reasonUndecodable + ": " + err.Error()}
	}
	d := decision{task: task}
	route, ok := routes[task.Name]
	if !ok {
		bt, err := catalog.Lookup(task.Name)
		if err != nil {
			d.deadLetter = fmt.Sprintf("%s: %s has no route and is not in the bypass catalog", reasonUnknownTask, task.Name)
			return d
		}
		route = NewRoute(bt, workerQueue)
	}
	d.route = route
	if task.Opaque {
		if pickle != PicklePassthrough {
			d.deadLetter = fmt.Sprintf("%s: %s body of %s[%s] is never decoded (run with --pickle passthrough to republish such messages untouched)",
				reasonOpaque, task.ContentType, task.Name, task.ID)
			return d
		}
		d.path = ModePassthrough
		return d
	}
	d.path = route.Path(task.ID)
	if d.path == ModeReroute {
		if !task.Expires.IsZero() && !task.Expires.After(now) {
			// Expired before it could run: the worker revokes it and writes
			// the REVOKED result, exactly as Celery always has.
			d.path = ModePassthrough
			return d
		}
		if task.ETA.After(now) {
			d.park = task.ETA
			return d
		}
	}
	if d.path == ModePassthrough {
		return d
	}
	spec, err := workSpec(catalog, route, task, d.path)
	if err != nil {
		d.deadLetter = fmt.Sprintf("%s: %s[%s]: %v", reasonMapping, task.Name, task.ID, err)
		return d
	}
	d.spec = spec
	return d
}

// workSpec maps the call to the pipeline spec its execution records: the
// catalog's params, the route's pipeline and lane, idempotent on the task id.
func workSpec(catalog *capturespine.Catalog, route Route, task *celerybridge.Task, path Mode) (core.WorkSpec, error) {
	args, err := task.DecodeArgs()
	if err != nil {
		return core.WorkSpec{}, fmt.Errorf("args: %w", err)
	}
	kwargs, err := task.DecodeKwargs()
	if err != nil {
		return core.WorkSpec{}, fmt.Errorf("kwargs: %w", err)
	}
	spec, err := catalog.WorkSpec(task.Name, args, kwargs)
	if err != nil {
		return core.WorkSpec{}, err
	}
	spec.Name = route.Pipeline
	spec.Lane = route.Lane
	spec.IdempotencyKey = IdempotencyKey(task.ID)
	spec.CorrelationID = task.RootID
	if spec.CorrelationID == "" {
		spec.CorrelationID = task.ID
	}
	spec.TriggerSource = triggerSource
	// Celery retries the task its own way; the run is never retried by the
	// dispatcher (the side-car's executors cannot resubmit).
	spec.MaxRetries = 0
	spec.Metadata = map[string]any{
		metaTask:   task.Name,
		metaTaskID: task.ID,
		metaPath:   string(path),
		metaQueue:  route.Queue,
	}
	if !task.ETA.IsZero() {
		spec.Metadata[metaETA] = celerybridge.FormatTime(task.ETA)
	}
	if err := spec.Validate(); err != nil {
		return core.WorkSpec{}, err
	}
	return spec, nil
}

// Metadata the side-car's executions carry (string values: they are also
// the runs' tags).
const (
	metaTask   = "celery_task"
	metaTaskID = "celery_task_id"
	metaPath   = "phase2_path"
	metaQueue  = "celery_queue"
	metaETA    = "celery_eta"
)
