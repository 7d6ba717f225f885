package entityspine_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/adapters/entityspine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

const beatTaskID = "6c7e2b1a-0d4f-4e8a-9b3c-2f1e0d9c8b7a"

// beatMessage is what a producer LPUSHes for name(*args, **kwargs), read back
// as a worker reads it.
func beatMessage(t *testing.T, name string, args []any, kwargs map[string]any, opts celerybridge.TaskOptions) *celerybridge.Task {
	t.Helper()
	opts.ID = beatTaskID
	m, err := celerybridge.NewTaskMessage(name, args, kwargs, opts)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	task, err := celerybridge.DecodeTask(wire)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// scheduled is the spec a beat message for name must become: the catalog's,
// as a schedule triggers it.
func scheduled(t *testing.T, name string, params map[string]any) core.WorkSpec {
	t.Helper()
	spec, err := entityspine.Spec(name, params)
	if err != nil {
		t.Fatal(err)
	}
	spec.TriggerSource = "schedule"
	spec.IdempotencyKey = "celery:" + beatTaskID
	spec.Metadata = map[string]any{"celery_task_id": beatTaskID}
	return spec
}

func TestBeatSpec(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		args   []any
		kwargs map[string]any
		opts   celerybridge.TaskOptions
		want   string         // catalog name
		params map[string]any // as the spec must hold them, before defaults
		kind   core.Kind
	}{
		// The guide's beat_schedule entries.
		{"refresh-sec-daily", []any{"refresh_sec", map[string]any{}}, nil, celerybridge.TaskOptions{}, "refresh_sec", nil, core.KindTask},
		{"refresh-gleif-weekly", []any{"refresh_gleif", map[string]any{}}, nil, celerybridge.TaskOptions{}, "refresh_gleif", nil, core.KindTask},
		{"params override defaults", []any{"refresh_sec", map[string]any{"force": true, "incremental": true}}, nil, celerybridge.TaskOptions{},
			"refresh_sec", map[string]any{"force": true, "incremental": true}, core.KindTask},
		{"a pipeline", []any{"multi_source_load", map[string]any{"sources": []any{"thomson", "bloomberg", "factset"}}}, nil, celerybridge.TaskOptions{},
			"multi_source_load", map[string]any{"sources": []any{"thomson", "bloomberg", "factset"}}, core.KindPipeline},
		{"a workflow", []any{"daily_refresh", map[string]any{}}, nil, celerybridge.TaskOptions{}, "daily_refresh", nil, core.KindWorkflow},
		// dispatch_refresh.delay(...) and apply_async(kwargs=...) bind by keyword.
		{"params by keyword", []any{"sync"}, map[string]any{"params": map[string]any{"mode": "full"}}, celerybridge.TaskOptions{},
			"sync", map[string]any{"mode": "full"}, core.KindTask},
		{"both by keyword", nil, map[string]any{"task_name": "refresh_all", "params": map[string]any{}}, celerybridge.TaskOptions{},
			"refresh_all", nil, core.KindTask},
		// spine-core's submit_task takes params or {}.
		{"params null", []any{"refresh_sec", nil}, nil, celerybridge.TaskOptions{}, "refresh_sec", nil, core.KindTask},
		{"numbers exact", []any{"batch_resolve", map[string]any{"queries": []any{"AAPL"}, "limit": json.Number("9007199254740993")}}, nil,
			celerybridge.TaskOptions{}, "batch_resolve", map[string]any{"queries": []any{"AAPL"}, "limit": json.Number("9007199254740993")}, core.KindTask},
		// kombu 5.3 wrappers become the plain JSON kombu 5.2 writes.
		{"a datetime param from kombu 5.3", []any{"sync", map[string]any{"since": when}}, nil, celerybridge.TaskOptions{Target: celerybridge.TargetKombu53},
			"sync", map[string]any{"since": core.FormatTime(when)}, core.KindTask},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			task := beatMessage(t, entityspine.DispatchRefreshTask, tc.args, tc.kwargs, tc.opts)
			got, err := entityspine.BeatSpec(task)
			if err != nil {
				t.Fatal(err)
			}
			want := scheduled(t, tc.want, tc.params)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("BeatSpec = %+v\nwant       %+v", got, want)
			}
			if got.Kind != tc.kind || got.TriggerSource != "schedule" {
				t.Errorf("kind %s trigger %s", got.Kind, got.TriggerSource)
			}
		})
	}
}

// A protocol 1 producer's message (task_protocol=1) reads the same.
func TestBeatSpecProtocol1(t *testing.T) {
	t.Parallel()
	m, err := celerybridge.NewTaskMessageV1(entityspine.DispatchRefreshTask, []any{"refresh_gleif", map[string]any{"force": true}}, nil,
		celerybridge.TaskOptions{ID: beatTaskID})
	if err != nil {
		t.Fatal(err)
	}
	wire, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	task, err := celerybridge.DecodeTask(wire)
	if err != nil {
		t.Fatal(err)
	}
	got, err := entityspine.BeatSpec(task)
	if err != nil {
		t.Fatal(err)
	}
	if want := scheduled(t, "refresh_gleif", map[string]any{"force": true}); !reflect.DeepEqual(got, want) {
		t.Errorf("BeatSpec = %+v, want %+v", got, want)
	}
}

func TestBeatSpecRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		task   string
		args   []any
		kwargs map[string]any
		is     error
		says   string
	}{
		{"another task", "entityspine.tasks.refresh_sec", []any{"refresh_sec", map[string]any{}}, nil, entityspine.ErrNotDispatchRefresh, "entityspine.tasks.refresh_sec"},
		{"unknown task_name", entityspine.DispatchRefreshTask, []any{"refresh_factset", map[string]any{}}, nil, entityspine.ErrUnknownName, "refresh_factset"},
		{"params a list", entityspine.DispatchRefreshTask, []any{"refresh_sec", []any{"force"}}, nil, entityspine.ErrDispatchArgs, "params is a list"},
		{"params a string", entityspine.DispatchRefreshTask, []any{"refresh_sec", "{}"}, nil, entityspine.ErrDispatchArgs, "params is a str"},
		{"task_name a number", entityspine.DispatchRefreshTask, []any{42, map[string]any{}}, nil, entityspine.ErrDispatchArgs, "task_name is a number"},
		{"task_name null", entityspine.DispatchRefreshTask, []any{nil, map[string]any{}}, nil, entityspine.ErrDispatchArgs, "task_name is None"},
		{"no arguments", entityspine.DispatchRefreshTask, nil, nil, entityspine.ErrDispatchArgs, `missing required argument "task_name"`},
		{"params missing", entityspine.DispatchRefreshTask, []any{"refresh_sec"}, nil, entityspine.ErrDispatchArgs, `missing required argument "params"`},
		{"three arguments", entityspine.DispatchRefreshTask, []any{"refresh_sec", map[string]any{}, true}, nil, entityspine.ErrDispatchArgs, "takes 2 positional arguments but 3 were given"},
		{"an unknown keyword", entityspine.DispatchRefreshTask, []any{"refresh_sec", map[string]any{}}, map[string]any{"force": true},
			entityspine.ErrDispatchArgs, `unexpected keyword argument "force"`},
		{"task_name twice", entityspine.DispatchRefreshTask, []any{"refresh_sec", map[string]any{}}, map[string]any{"task_name": "sync"},
			entityspine.ErrDispatchArgs, `multiple values for argument "task_name"`},
		{"params the work cannot run with", entityspine.DispatchRefreshTask, []any{"batch_resolve", map[string]any{}}, nil, core.ErrInvalidSpec, "queries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := entityspine.BeatSpec(beatMessage(t, tc.task, tc.args, tc.kwargs, celerybridge.TaskOptions{}))
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %v, want %v saying %s", err, tc.is, tc.says)
			}
		})
	}
}

// Bodies a worker cannot read are refused with celerybridge's reason.
func TestBeatSpecUnreadableBody(t *testing.T) {
	t.Parallel()
	opaque := &celerybridge.Task{Name: entityspine.DispatchRefreshTask, ID: beatTaskID, Opaque: true}
	if _, err := entityspine.BeatSpec(opaque); !errors.Is(err, entityspine.ErrDispatchArgs) || !errors.Is(err, celerybridge.ErrOpaqueBody) {
		t.Errorf("pickle body: %v", err)
	}
	wrapped := &celerybridge.Task{Name: entityspine.DispatchRefreshTask, ID: beatTaskID,
		Args: json.RawMessage(`["sync", {"x": {"__type__": "frozenset", "__value__": []}}]`), Kwargs: json.RawMessage(`{}`)}
	if _, err := entityspine.BeatSpec(wrapped); !errors.Is(err, entityspine.ErrDispatchArgs) || !errors.Is(err, celerybridge.ErrUnknownType) {
		t.Errorf("unknown kombu type: %v", err)
	}
	if _, err := entityspine.BeatSpec(nil); !errors.Is(err, entityspine.ErrDispatchArgs) {
		t.Errorf("nil task: %v", err)
	}
}

// The bridge takes a beat entry over: the message becomes a run of the
// registered handler, and a redelivered message finds the same run.
func TestBeatMessageRunsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, core.DispatcherOptions{DisableAutoRetry: true})
	at := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	h := entityspine.Handler(func(_ context.Context, params map[string]any) (entityspine.RefreshResult, error) {
		return entityspine.RefreshResult{Source: "sec", StartedAt: at, CompletedAt: at.Add(time.Second), RecordsFetched: 3, SkippedDuplicates: 3}, nil
	})
	if err := entityspine.Register(b.registry, "refresh_sec", h); err != nil {
		t.Fatal(err)
	}
	task := beatMessage(t, entityspine.DispatchRefreshTask, []any{"refresh_sec", map[string]any{}}, nil, celerybridge.TaskOptions{})
	var runIDs []string
	for range 2 {
		spec, err := entityspine.BeatSpec(task)
		if err != nil {
			t.Fatal(err)
		}
		run, err := b.d.Submit(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		runIDs = append(runIDs, run.RunID)
	}
	if runIDs[0] != runIDs[1] {
		t.Errorf("redelivery made a second run: %v", runIDs)
	}
	done := waitStatus(t, b.ledger, runIDs[0], core.StatusCompleted)
	if done.Spec.TriggerSource != "schedule" || done.Tags["celery_task_id"] != beatTaskID || done.Tags["name"] != "refresh_sec" {
		t.Errorf("run %+v", done)
	}
}
