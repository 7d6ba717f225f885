package seed

import (
	"time"

	"github.com/google/uuid"
)

// The columns each COPY writes, in row order. Serial ids are left to their
// sequences, as Capture-Spine's own inserts leave them.
var (
	executionColumns = []string{
		"execution_id", "pipeline_name", "params", "lane", "trigger_source", "status",
		"backend_task_id", "feed_id", "retry_count", "result", "error",
		"created_at", "started_at", "completed_at",
	}
	executionNullable = []string{"backend_task_id", "feed_id", "result", "error", "started_at", "completed_at"}

	eventColumns = []string{"execution_id", "event_type", "timestamp", "data"}

	jobColumns = []string{
		"job_type", "status", "celery_task_id", "user_id", "queue", "payload", "result",
		"error_message", "progress", "attempts", "created_at", "started_at", "finished_at", "updated_at",
	}
	jobNullable = []string{"celery_task_id", "user_id", "queue", "payload", "result", "error_message", "progress", "started_at", "finished_at"}
)

// execution is one executions row; nil pointers and nil JSON are SQL NULL.
type execution struct {
	id        uuid.UUID
	pipeline  string
	params    []byte
	lane      string
	trigger   string
	status    string
	taskID    *string
	feedID    *uuid.UUID
	retries   int32
	result    []byte
	err       *string
	created   time.Time
	started   *time.Time
	completed *time.Time
}

func (e *execution) row() []any {
	return []any{
		[16]byte(e.id), e.pipeline, string(e.params), e.lane, e.trigger, e.status,
		nullable(e.taskID), nullableUUID(e.feedID), e.retries, nullableJSON(e.result), nullable(e.err),
		e.created, nullable(e.started), nullable(e.completed),
	}
}

// event is one execution_events row.
type event struct {
	executionID uuid.UUID
	typ         string
	at          time.Time
	data        []byte
}

func (e *event) row() []any {
	return []any{[16]byte(e.executionID), e.typ, e.at, string(e.data)}
}

// job is one jobs row.
type job struct {
	typ      string
	status   string
	taskID   *string
	userID   *uuid.UUID
	queue    *string
	payload  []byte
	result   []byte
	errMsg   *string
	progress *int16
	attempts int32
	created  time.Time
	started  *time.Time
	finished *time.Time
	updated  time.Time
}

func (j *job) row() []any {
	return []any{
		j.typ, j.status, nullable(j.taskID), nullableUUID(j.userID), nullable(j.queue),
		nullableJSON(j.payload), nullableJSON(j.result), nullable(j.errMsg), nullable(j.progress),
		j.attempts, j.created, nullable(j.started), nullable(j.finished), j.updated,
	}
}

// nullable turns a nil pointer into an untyped nil, which is what makes pgx send NULL
// (and what Summary counts).
func nullable[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func nullableUUID(p *uuid.UUID) any {
	if p == nil {
		return nil
	}
	return [16]byte(*p)
}

// nullableJSON keeps SQL NULL (nil) apart from the JSON literal null ("null").
func nullableJSON(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}
