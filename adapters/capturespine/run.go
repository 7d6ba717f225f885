package capturespine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/spinecore/spine-go/core"
)

// metadataFeedID is the WorkSpec metadata key that carries feed_id, as the
// published mapping says.
const metadataFeedID = "feed_id"

// A RunRecord's Error and ExternalRef are strings, "" meaning none; the
// executions columns they map to can also hold an empty string that is not
// NULL (Capture-Spine stores str(exc), and some exceptions have no message).
// These tags record that case, so the round trip keeps it. FromRunRecord
// consumes them; they never reach an Execution's Tags.
const (
	TagEmptyError         = "capturespine.empty_error"
	TagEmptyBackendTaskID = "capturespine.empty_backend_task_id"
)

var reservedTags = []string{TagEmptyError, TagEmptyBackendTaskID}

// ToRunRecord is the published mapping: execution_id → run_id, pipeline_name
// → spec.name, params, lane, trigger_source, status, backend_task_id →
// external_ref, feed_id → spec.metadata["feed_id"], retry_count → attempt-1;
// the columns phase 1 added map to the RunRecord fields of the same name.
func ToRunRecord(e Execution) (core.RunRecord, error) {
	if err := e.Validate(); err != nil {
		return core.RunRecord{}, err
	}
	metadata := maps.Clone(e.Metadata)
	if e.FeedID != nil {
		if metadata == nil {
			metadata = map[string]any{}
		}
		metadata[metadataFeedID] = *e.FeedID
	}
	tags := maps.Clone(e.Tags)
	mark := func(tag string) {
		if tags == nil {
			tags = map[string]string{}
		}
		tags[tag] = "true"
	}
	if e.Error != nil && *e.Error == "" {
		mark(TagEmptyError)
	}
	if e.BackendTaskID != nil && *e.BackendTaskID == "" {
		mark(TagEmptyBackendTaskID)
	}
	return core.RunRecord{
		RunID: e.ExecutionID,
		Spec: core.WorkSpec{
			Kind: e.Kind, Name: e.PipelineName, Params: maps.Clone(e.Params),
			IdempotencyKey: e.IdempotencyKey, CorrelationID: e.CorrelationID,
			Priority: e.Priority, Lane: e.Lane, ParentRunID: e.ParentRunID,
			TriggerSource: e.TriggerSource, Metadata: metadata,
			MaxRetries: e.MaxRetries, RetryDelay: e.RetryDelay,
		},
		Status:    e.Status.RunStatus(),
		CreatedAt: e.CreatedAt, StartedAt: cloneTime(e.StartedAt), CompletedAt: cloneTime(e.CompletedAt),
		Result: bytes.Clone(e.Result), Error: deref(e.Error), ErrorType: e.ErrorType,
		ExternalRef: deref(e.BackendTaskID), ExecutorName: e.ExecutorName,
		Attempt: e.RetryCount + 1, RetryOfRunID: e.RetryOfRunID, Tags: tags,
	}, nil
}

// FromRunRecord is ToRunRecord's inverse: for every valid Execution e,
// FromRunRecord(ToRunRecord(e)) == e, and for every run a ledger returns,
// ToRunRecord(FromRunRecord(run)) == run (nil and empty maps aside: the
// table stores both as {}). A spec's empty lane, trigger source and priority
// take their defaults first, as Submit would have stored them.
func FromRunRecord(run core.RunRecord) (Execution, error) {
	spec := run.Spec
	if spec.Lane == "" {
		spec.Lane = core.DefaultLane
	}
	if spec.TriggerSource == "" {
		spec.TriggerSource = core.DefaultTriggerSource
	}
	if spec.Priority == "" {
		spec.Priority = core.PriorityNormal
	}
	if run.Attempt < 1 {
		return Execution{}, &InvalidExecutionError{run.RunID, "retry_count", fmt.Sprintf("cannot hold attempt %d (attempts count from 1)", run.Attempt)}
	}
	e := Execution{
		ExecutionID: run.RunID, PipelineName: spec.Name, Params: maps.Clone(spec.Params),
		Lane: spec.Lane, TriggerSource: spec.TriggerSource, Status: ExecutionStatus(run.Status),
		RetryCount: run.Attempt - 1, Result: bytes.Clone(run.Result),
		CreatedAt: run.CreatedAt, StartedAt: cloneTime(run.StartedAt), CompletedAt: cloneTime(run.CompletedAt),
		Kind: spec.Kind, Priority: spec.Priority, IdempotencyKey: spec.IdempotencyKey,
		CorrelationID: spec.CorrelationID, ParentRunID: spec.ParentRunID,
		ExecutorName: run.ExecutorName, RetryOfRunID: run.RetryOfRunID,
		MaxRetries: spec.MaxRetries, RetryDelay: spec.RetryDelay, ErrorType: run.ErrorType,
		Metadata: maps.Clone(spec.Metadata), Tags: maps.Clone(run.Tags),
	}
	if s, ok := e.Metadata[metadataFeedID].(string); ok && canonicalUUID(s) {
		e.FeedID = &s
		delete(e.Metadata, metadataFeedID)
	}
	var err error
	if e.Error, err = takeMarked(e.Tags, TagEmptyError, run.Error, "error"); err != nil {
		return Execution{}, &InvalidExecutionError{run.RunID, "tags", err.Error()}
	}
	if e.BackendTaskID, err = takeMarked(e.Tags, TagEmptyBackendTaskID, run.ExternalRef, "external_ref"); err != nil {
		return Execution{}, &InvalidExecutionError{run.RunID, "tags", err.Error()}
	}
	if err := e.Validate(); err != nil {
		return Execution{}, err
	}
	return e, nil
}

// takeMarked turns a RunRecord string back into a nullable column, reading
// and removing the tag that says an empty value was not NULL.
func takeMarked(tags map[string]string, tag, value, field string) (*string, error) {
	marker, marked := tags[tag]
	delete(tags, tag)
	switch {
	case marked && (marker != "true" || value != ""):
		return nil, fmt.Errorf("%s=%q contradicts %s %q", tag, marker, field, value)
	case marked:
		return new(string), nil
	case value == "":
		return nil, nil
	default:
		return &value, nil
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// jsonNull reports whether raw is the JSON literal null.
func jsonNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }
