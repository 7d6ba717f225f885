package capturespine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spinecore/spine-go/core"
)

// executionJSON is an Execution on the wire: the column names, times as
// Python's isoformat(), absent values as null. The original columns come
// first, so a client of Capture-Spine's API sees the fields it knows.
type executionJSON struct {
	ExecutionID   string          `json:"execution_id"`
	PipelineName  string          `json:"pipeline_name"`
	Params        json.RawMessage `json:"params"`
	Lane          *string         `json:"lane"`
	TriggerSource *string         `json:"trigger_source"`
	Status        ExecutionStatus `json:"status"`
	BackendTaskID *string         `json:"backend_task_id"`
	FeedID        *string         `json:"feed_id"`
	RetryCount    int             `json:"retry_count"`
	Result        json.RawMessage `json:"result"`
	Error         *string         `json:"error"`
	CreatedAt     *string         `json:"created_at"`
	StartedAt     *string         `json:"started_at"`
	CompletedAt   *string         `json:"completed_at"`

	Kind              *core.Kind        `json:"kind"`
	Priority          *core.Priority    `json:"priority"`
	IdempotencyKey    *string           `json:"idempotency_key"`
	CorrelationID     *string           `json:"correlation_id"`
	ParentRunID       *string           `json:"parent_run_id"`
	ExecutorName      *string           `json:"executor_name"`
	RetryOfRunID      *string           `json:"retry_of_run_id"`
	MaxRetries        *int              `json:"max_retries"`
	RetryDelaySeconds *float64          `json:"retry_delay_seconds"`
	ErrorType         *string           `json:"error_type"`
	Metadata          json.RawMessage   `json:"metadata"`
	Tags              map[string]string `json:"tags"`
}

// MarshalJSON writes the row's columns by name. Result is written as stored:
// nil and a JSON null both read "result": null.
func (e Execution) MarshalJSON() ([]byte, error) {
	params, err := marshalObject(e.Params)
	if err != nil {
		return nil, fmt.Errorf("execution %s params: %w", e.ExecutionID, err)
	}
	metadata, err := marshalObject(e.Metadata)
	if err != nil {
		return nil, fmt.Errorf("execution %s metadata: %w", e.ExecutionID, err)
	}
	result := e.Result
	if len(result) == 0 {
		result = json.RawMessage("null")
	}
	tags := e.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	delay := e.RetryDelay.Seconds()
	kind, priority, maxRetries := e.Kind, e.Priority, e.MaxRetries
	return json.Marshal(executionJSON{
		ExecutionID: e.ExecutionID, PipelineName: e.PipelineName, Params: params,
		Lane: &e.Lane, TriggerSource: &e.TriggerSource, Status: e.Status,
		BackendTaskID: e.BackendTaskID, FeedID: e.FeedID, RetryCount: e.RetryCount,
		Result: result, Error: e.Error, CreatedAt: optTime(&e.CreatedAt),
		StartedAt: optTime(e.StartedAt), CompletedAt: optTime(e.CompletedAt),
		Kind: &kind, Priority: &priority, IdempotencyKey: optString(e.IdempotencyKey),
		CorrelationID: optString(e.CorrelationID), ParentRunID: optString(e.ParentRunID),
		ExecutorName: optString(e.ExecutorName), RetryOfRunID: optString(e.RetryOfRunID),
		MaxRetries: &maxRetries, RetryDelaySeconds: &delay, ErrorType: optString(e.ErrorType),
		Metadata: metadata, Tags: tags,
	})
}

// UnmarshalJSON reads what MarshalJSON writes, and Capture-Spine's own JSON
// (no phase-1 fields): a missing or null column takes the table's default,
// priority the one PriorityForLane gives. JSON cannot tell a stored JSON null
// result from SQL NULL, so "result": null decodes to nil. The result is
// checked with Validate.
func (e *Execution) UnmarshalJSON(data []byte) error {
	var in executionJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("capturespine: execution JSON: %w", err)
	}
	params, err := core.DecodeObject(in.Params)
	if err != nil {
		return fmt.Errorf("capturespine: execution %s params: %w", in.ExecutionID, err)
	}
	metadata, err := core.DecodeObject(in.Metadata)
	if err != nil {
		return fmt.Errorf("capturespine: execution %s metadata: %w", in.ExecutionID, err)
	}
	out := Execution{
		ExecutionID: in.ExecutionID, PipelineName: in.PipelineName, Params: params,
		Lane: or(in.Lane, LaneNormal), TriggerSource: or(in.TriggerSource, core.DefaultTriggerSource),
		Status: in.Status, BackendTaskID: in.BackendTaskID, FeedID: in.FeedID, RetryCount: in.RetryCount,
		Error: in.Error, Kind: or(in.Kind, core.KindPipeline),
		IdempotencyKey: or(in.IdempotencyKey, ""), CorrelationID: or(in.CorrelationID, ""),
		ParentRunID: or(in.ParentRunID, ""), ExecutorName: or(in.ExecutorName, ""),
		RetryOfRunID: or(in.RetryOfRunID, ""), RetryDelay: core.DefaultRetryDelay, ErrorType: or(in.ErrorType, ""),
		Metadata: metadata, Tags: in.Tags,
	}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	out.Priority = or(in.Priority, PriorityForLane(out.Lane))
	out.MaxRetries = core.DefaultMaxRetries
	if in.MaxRetries != nil { // 0 is a real value: never retry
		out.MaxRetries = *in.MaxRetries
	}
	if in.RetryDelaySeconds != nil {
		out.RetryDelay = core.Seconds(*in.RetryDelaySeconds)
	}
	if len(in.Result) > 0 && !jsonNull(in.Result) {
		out.Result = bytes.Clone(in.Result)
	}
	if in.CreatedAt == nil {
		return &InvalidExecutionError{in.ExecutionID, "created_at", "is missing"}
	}
	if out.CreatedAt, err = core.ParseTime(*in.CreatedAt); err != nil {
		return &InvalidExecutionError{in.ExecutionID, "created_at", err.Error()}
	}
	for _, f := range []struct {
		name string
		src  *string
		dst  **time.Time
	}{{"started_at", in.StartedAt, &out.StartedAt}, {"completed_at", in.CompletedAt, &out.CompletedAt}} {
		if f.src == nil {
			continue
		}
		t, err := core.ParseTime(*f.src)
		if err != nil {
			return &InvalidExecutionError{in.ExecutionID, f.name, err.Error()}
		}
		*f.dst = &t
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*e = out
	return nil
}

func or[T comparable](p *T, def T) T {
	var zero T
	if p == nil || *p == zero {
		return def
	}
	return *p
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := core.FormatTime(*t)
	return &s
}

func marshalObject(m map[string]any) (json.RawMessage, error) {
	if m == nil {
		return json.RawMessage("{}"), nil
	}
	return json.Marshal(m)
}
