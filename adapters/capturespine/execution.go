package capturespine

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/spinecore/spine-go/core"
)

// ExecutionStatus is executions.status. Capture-Spine uses spine-core's
// RunStatus vocabulary, so the conversion is the identity on valid values.
type ExecutionStatus string

// The values of executions.status.
const (
	ExecutionPending      ExecutionStatus = "pending"
	ExecutionQueued       ExecutionStatus = "queued"
	ExecutionRunning      ExecutionStatus = "running"
	ExecutionCompleted    ExecutionStatus = "completed"
	ExecutionFailed       ExecutionStatus = "failed"
	ExecutionCancelled    ExecutionStatus = "cancelled"
	ExecutionDeadLettered ExecutionStatus = "dead_lettered"
)

// Valid reports whether s is one of the seven statuses.
func (s ExecutionStatus) Valid() bool { return core.RunStatus(s).Valid() }

// RunStatus is s as a core.RunStatus.
func (s ExecutionStatus) RunStatus() core.RunStatus { return core.RunStatus(s) }

// Execution is one row of Capture-Spine's executions table: its original
// columns, then the ones phase 1 adds (sqlmigrations 0001) to hold what a
// RunRecord has and Capture-Spine never recorded.
//
// Nullable columns whose NULL differs from an empty value in the database
// are pointers (BackendTaskID, Error) or raw JSON (Result: nil is SQL NULL,
// "null" is a stored JSON null), and the round trip through a RunRecord keeps
// those differences. The added text columns are written by spine-go only,
// which never stores an empty string, so "" means NULL there.
type Execution struct {
	ExecutionID   string
	PipelineName  string
	Params        map[string]any
	Lane          string
	TriggerSource string
	Status        ExecutionStatus
	BackendTaskID *string // the Celery task id
	FeedID        *string // a UUID
	RetryCount    int
	Result        json.RawMessage
	Error         *string
	CreatedAt     time.Time
	StartedAt     *time.Time
	CompletedAt   *time.Time

	Kind           core.Kind
	Priority       core.Priority
	IdempotencyKey string
	CorrelationID  string
	ParentRunID    string
	ExecutorName   string
	RetryOfRunID   string
	MaxRetries     int
	RetryDelay     time.Duration
	ErrorType      string
	Metadata       map[string]any
	Tags           map[string]string
}

// NewExecution returns a pending execution of pipeline with a fresh id and
// every other column at the value the table's defaults would give it.
func NewExecution(pipeline string, params map[string]any) Execution {
	return Execution{
		ExecutionID: uuid.NewString(), PipelineName: pipeline, Params: params,
		Lane: LaneNormal, TriggerSource: core.DefaultTriggerSource, Status: ExecutionPending,
		CreatedAt: core.Timestamp(time.Now()),
		Kind:      core.KindPipeline, Priority: PriorityForLane(LaneNormal),
		MaxRetries: core.DefaultMaxRetries, RetryDelay: core.DefaultRetryDelay,
		Metadata: map[string]any{}, Tags: map[string]string{},
	}
}

// Validate reports the first column whose value the table (after phase 1)
// would refuse or a RunRecord could not carry.
func (e Execution) Validate() error {
	switch {
	case !canonicalUUID(e.ExecutionID):
		return &InvalidExecutionError{e.ExecutionID, "execution_id", fmt.Sprintf("%q is not a lowercase UUID", e.ExecutionID)}
	case e.PipelineName == "":
		return &InvalidExecutionError{e.ExecutionID, "pipeline_name", "is empty"}
	case e.Lane == "":
		return &InvalidExecutionError{e.ExecutionID, "lane", "is empty"}
	case e.TriggerSource == "":
		return &InvalidExecutionError{e.ExecutionID, "trigger_source", "is empty"}
	case !e.Status.Valid():
		return &UnknownValueError{Column: "executions.status", Value: string(e.Status),
			Fix: "executions.status must be one of pending, queued, running, completed, failed, cancelled, dead_lettered"}
	case e.FeedID != nil && !canonicalUUID(*e.FeedID):
		return &InvalidExecutionError{e.ExecutionID, "feed_id", fmt.Sprintf("%q is not a lowercase UUID", *e.FeedID)}
	case e.RetryCount < 0 || e.RetryCount > math.MaxInt32:
		return &InvalidExecutionError{e.ExecutionID, "retry_count", fmt.Sprintf("%d is outside 0..2^31-1", e.RetryCount)}
	case e.Result != nil && !json.Valid(e.Result):
		return &InvalidExecutionError{e.ExecutionID, "result", "is not valid JSON"}
	case e.CreatedAt.IsZero():
		return &InvalidExecutionError{e.ExecutionID, "created_at", "is not set"}
	case !e.Kind.Valid():
		return &InvalidExecutionError{e.ExecutionID, "kind", fmt.Sprintf("%q is not one of task, pipeline, workflow, step", e.Kind)}
	case !e.Priority.Valid():
		return &InvalidExecutionError{e.ExecutionID, "priority", fmt.Sprintf("%q is not one of realtime, high, normal, low, slow", e.Priority)}
	case e.ParentRunID != "" && !canonicalUUID(e.ParentRunID):
		return &InvalidExecutionError{e.ExecutionID, "parent_run_id", fmt.Sprintf("%q is not a lowercase UUID", e.ParentRunID)}
	case e.RetryOfRunID != "" && !canonicalUUID(e.RetryOfRunID):
		return &InvalidExecutionError{e.ExecutionID, "retry_of_run_id", fmt.Sprintf("%q is not a lowercase UUID", e.RetryOfRunID)}
	case e.MaxRetries < 0 || e.MaxRetries > math.MaxInt32:
		return &InvalidExecutionError{e.ExecutionID, "max_retries", fmt.Sprintf("%d is outside 0..2^31-1", e.MaxRetries)}
	case e.RetryDelay < 0:
		return &InvalidExecutionError{e.ExecutionID, "retry_delay_seconds", "is negative"}
	}
	if v, ok := e.Metadata[metadataFeedID]; ok {
		// metadata.feed_id is where a RunRecord keeps the feed; a UUID there
		// belongs in the feed_id column, anything else stays in metadata.
		if s, isString := v.(string); e.FeedID != nil || (isString && canonicalUUID(s)) {
			return &InvalidExecutionError{e.ExecutionID, "metadata", "holds a feed_id that belongs in the feed_id column"}
		}
	}
	for _, key := range reservedTags {
		if _, ok := e.Tags[key]; ok {
			return &InvalidExecutionError{e.ExecutionID, "tags", fmt.Sprintf("uses the adapter's reserved tag %q", key)}
		}
	}
	return nil
}

// canonicalUUID reports whether s is a UUID as PostgreSQL prints one, so a
// uuid column stores and returns it unchanged.
func canonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
