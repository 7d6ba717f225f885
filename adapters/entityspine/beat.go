package entityspine

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// DispatchRefreshTask is the Celery task EntitySpine's beat schedule sends:
// dispatch_refresh(task_name, params), which submits the named work.
const DispatchRefreshTask = "entityspine.tasks.dispatch_refresh"

// triggerSchedule is the trigger_source of the specs BeatSpec makes.
const triggerSchedule = "schedule"

var (
	// ErrNotDispatchRefresh: the message is for another task; route it
	// elsewhere.
	ErrNotDispatchRefresh = errors.New("entityspine: not a dispatch_refresh message")
	// ErrDispatchArgs: the arguments are not what dispatch_refresh(task_name,
	// params) accepts; a Python worker would refuse the message too.
	ErrDispatchArgs = errors.New("entityspine: bad dispatch_refresh arguments")
)

// dispatchParams are dispatch_refresh's parameters, in order.
var dispatchParams = []string{"task_name", "params"}

// BeatSpec returns the WorkSpec a dispatch_refresh message asks for: the
// catalog's spec for task_name (see Spec), with trigger_source "schedule",
// the idempotency key "celery:<task id>" (a redelivered message finds the
// run the first delivery made) and metadata celery_task_id.
//
// The arguments bind as Python binds dispatch_refresh(task_name, params):
// positionally, by keyword, or both. A null params is {} as in spine-core's
// submit_task. Errors wrap ErrNotDispatchRefresh (another task),
// ErrDispatchArgs (arity, types, an undecodable body), ErrUnknownName
// (task_name not in the catalog) or core.ErrInvalidSpec (params the work
// cannot run with).
func BeatSpec(task *celerybridge.Task) (core.WorkSpec, error) {
	if task == nil {
		return core.WorkSpec{}, fmt.Errorf("%w: no task", ErrDispatchArgs)
	}
	if task.Name != DispatchRefreshTask {
		return core.WorkSpec{}, fmt.Errorf("%w: task %q", ErrNotDispatchRefresh, task.Name)
	}
	args, err := task.DecodeArgs()
	if err != nil {
		return core.WorkSpec{}, fmt.Errorf("%w: task %s: %w", ErrDispatchArgs, task.ID, err)
	}
	kwargs, err := task.DecodeKwargs()
	if err != nil {
		return core.WorkSpec{}, fmt.Errorf("%w: task %s: %w", ErrDispatchArgs, task.ID, err)
	}
	name, params, err := bindDispatchArgs(args, kwargs)
	if err != nil {
		return core.WorkSpec{}, fmt.Errorf("%w: task %s: %w", ErrDispatchArgs, task.ID, err)
	}
	spec, err := Spec(name, params)
	if err != nil {
		return core.WorkSpec{}, fmt.Errorf("dispatch_refresh task %s: %w", task.ID, err)
	}
	spec.TriggerSource = triggerSchedule
	if task.ID != "" {
		spec.IdempotencyKey = "celery:" + task.ID
		spec.Metadata = map[string]any{"celery_task_id": task.ID}
	}
	return spec, nil
}

// bindDispatchArgs binds args and kwargs to (task_name, params), refusing
// what Python's call would refuse with a TypeError, in its words.
func bindDispatchArgs(args []any, kwargs map[string]any) (string, map[string]any, error) {
	if len(args) > len(dispatchParams) {
		return "", nil, fmt.Errorf("dispatch_refresh() takes 2 positional arguments but %d were given", len(args))
	}
	bound := map[string]any{}
	for i, a := range args {
		bound[dispatchParams[i]] = a
	}
	for _, k := range slices.Sorted(maps.Keys(kwargs)) {
		if !slices.Contains(dispatchParams, k) {
			return "", nil, fmt.Errorf("dispatch_refresh() got an unexpected keyword argument %q", k)
		}
		if _, dup := bound[k]; dup {
			return "", nil, fmt.Errorf("dispatch_refresh() got multiple values for argument %q", k)
		}
		bound[k] = kwargs[k]
	}
	for _, p := range dispatchParams {
		if _, ok := bound[p]; !ok {
			return "", nil, fmt.Errorf("dispatch_refresh() missing required argument %q", p)
		}
	}
	name, ok := bound["task_name"].(string)
	if !ok {
		return "", nil, fmt.Errorf("task_name is %s, want a string", pyType(bound["task_name"]))
	}
	var params map[string]any
	switch p := bound["params"].(type) {
	case nil:
	case map[string]any:
		// kombu 5.3 wrappers decoded to Go values (times, UUIDs, decimals)
		// go back to the plain JSON kombu 5.2 writes for them, so params
		// hold JSON values only, as from any other producer.
		raw, err := celerybridge.EncodeValue(p, celerybridge.TargetKombu52)
		if err != nil {
			return "", nil, fmt.Errorf("params: %w", err)
		}
		if params, err = core.DecodeObject(raw); err != nil {
			return "", nil, fmt.Errorf("params: %w", err)
		}
	default:
		return "", nil, fmt.Errorf("params is %s, want a dict", pyType(p))
	}
	return name, params, nil
}

// pyType names a decoded value's type as Python would.
func pyType(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case string:
		return "a str"
	case bool:
		return "a bool"
	case json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a dict"
	}
	return fmt.Sprintf("a %T", v)
}
