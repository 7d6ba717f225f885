// Package capturespinetest reads Capture-Spine's jobs and executions rows
// into the adapter's types and compares them as rows, for the tests that
// prove a SQL mapping equal to the Go one (adapters/capturespine, phase 3).
// Test code only: production code reads rows through core/pgledger.
package capturespinetest

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/core"
)

// JobColumns selects a jobs row in ScanJob's order.
const JobColumns = `id, job_type, status, celery_task_id, user_id::text, queue, payload, result,
	error_message, progress, attempts, created_at, started_at, finished_at, updated_at`

// ScanJob reads a row selected with JobColumns.
func ScanJob(row pgx.CollectableRow) (capturespine.Job, error) {
	var j capturespine.Job
	var payload, result []byte
	var attempts int32
	err := row.Scan(&j.ID, &j.JobType, &j.Status, &j.CeleryTaskID, &j.UserID, &j.Queue, &payload, &result,
		&j.ErrorMessage, &j.Progress, &attempts, &j.CreatedAt, &j.StartedAt, &j.FinishedAt, &j.UpdatedAt)
	j.Payload, j.Result, j.Attempts = payload, result, int(attempts)
	j.CreatedAt, j.UpdatedAt = j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	j.StartedAt, j.FinishedAt = utc(j.StartedAt), utc(j.FinishedAt)
	return j, err
}

// ExecutionColumns selects an executions row in ScanExecution's order: the
// columns of JobMapping.SQL, feed_id as text.
var ExecutionColumns = func() string {
	q, err := capturespine.DefaultJobMapping().SQL("j", 1)
	if err != nil {
		panic(err)
	}
	return strings.ReplaceAll(strings.Join(q.Columns, ", "), "feed_id", "feed_id::text")
}()

// ScanExecution reads a row selected with ExecutionColumns.
func ScanExecution(row pgx.CollectableRow) (capturespine.Execution, error) {
	var e capturespine.Execution
	var params, result, metadata, tags []byte
	var status, kind, priority string
	var retryCount, maxRetries int32
	var delay float64
	err := row.Scan(&e.ExecutionID, &e.PipelineName, &params, &e.Lane, &e.TriggerSource, &status,
		&e.BackendTaskID, &e.FeedID, &retryCount, &result, &e.Error, &e.CreatedAt, &e.StartedAt, &e.CompletedAt,
		&kind, &priority, &maxRetries, &delay, &metadata, &tags)
	if err != nil {
		return e, err
	}
	e.Status, e.Kind, e.Priority = capturespine.ExecutionStatus(status), core.Kind(kind), core.Priority(priority)
	e.RetryCount, e.MaxRetries, e.RetryDelay = int(retryCount), int(maxRetries), core.Seconds(delay)
	e.Result = result
	e.CreatedAt, e.StartedAt, e.CompletedAt = e.CreatedAt.UTC(), utc(e.StartedAt), utc(e.CompletedAt)
	if e.Params, err = core.DecodeObject(params); err != nil {
		return e, err
	}
	if e.Metadata, err = core.DecodeObject(metadata); err != nil {
		return e, err
	}
	return e, json.Unmarshal(tags, &e.Tags)
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// NormaliseJSON re-decodes the maps Go built, so their numbers compare as
// the json.Number a database read gives.
func NormaliseJSON(e capturespine.Execution) (capturespine.Execution, error) {
	for _, m := range []*map[string]any{&e.Params, &e.Metadata} {
		b, err := json.Marshal(*m)
		if err != nil {
			return e, err
		}
		if *m, err = core.DecodeObject(b); err != nil {
			return e, err
		}
	}
	return e, nil
}

// SameRow reports whether two values are equal field by field, a nil map
// equal to the empty one: the table stores both as {}.
func SameRow(want, got any) bool {
	w, g := normaliseMaps(reflect.ValueOf(want)), normaliseMaps(reflect.ValueOf(got))
	return reflect.DeepEqual(w.Interface(), g.Interface())
}

func normaliseMaps(v reflect.Value) reflect.Value {
	if v.Kind() != reflect.Struct {
		return v
	}
	out := reflect.New(v.Type()).Elem()
	out.Set(v)
	for i := range out.NumField() {
		f := out.Field(i)
		if !f.CanSet() {
			continue
		}
		switch {
		case f.Kind() == reflect.Map && f.IsNil():
			f.Set(reflect.MakeMap(f.Type()))
		case f.Kind() == reflect.Struct:
			f.Set(normaliseMaps(f))
		}
	}
	return out
}
