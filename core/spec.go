package core

import (
	"fmt"
	"time"
)

// Kind is what sort of work a WorkSpec describes.
type Kind string

const (
	KindTask     Kind = "task"
	KindPipeline Kind = "pipeline"
	KindWorkflow Kind = "workflow"
	KindStep     Kind = "step"
)

// Kinds lists every valid Kind.
var Kinds = []Kind{KindTask, KindPipeline, KindWorkflow, KindStep}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindTask, KindPipeline, KindWorkflow, KindStep:
		return true
	}
	return false
}

// Priority is the urgency of a run; executors map it to queues.
type Priority string

const (
	PriorityRealtime Priority = "realtime"
	PriorityHigh     Priority = "high"
	PriorityNormal   Priority = "normal"
	PriorityLow      Priority = "low"
	PrioritySlow     Priority = "slow"
)

// Priorities lists every valid Priority, most urgent first.
var Priorities = []Priority{PriorityRealtime, PriorityHigh, PriorityNormal, PriorityLow, PrioritySlow}

// Valid reports whether p is one of Priorities.
func (p Priority) Valid() bool {
	switch p {
	case PriorityRealtime, PriorityHigh, PriorityNormal, PriorityLow, PrioritySlow:
		return true
	}
	return false
}

// Defaults of a WorkSpec, as in Python spine-core.
const (
	DefaultLane          = "default"
	DefaultTriggerSource = "api"
	DefaultMaxRetries    = 3
	DefaultRetryDelay    = 60 * time.Second
)

// WorkSpec describes a unit of work to run. The zero values of Priority,
// Lane and TriggerSource mean their defaults (normal, "default", "api").
// MaxRetries and RetryDelay are taken literally: the constructors NewTask,
// NewPipeline, NewWorkflow and NewStep set Python's defaults (3 retries,
// 60 s), a literal WorkSpec with MaxRetries 0 is never retried.
type WorkSpec struct {
	Kind   Kind
	Name   string
	Params map[string]any

	// IdempotencyKey, when set, makes Submit return the existing run with
	// this key instead of creating another, whatever that run's status.
	IdempotencyKey string
	CorrelationID  string
	Priority       Priority
	Lane           string
	// ParentRunID is the run this one belongs to (a workflow for a step).
	ParentRunID   string
	TriggerSource string
	Metadata      map[string]any

	// MaxRetries is how many times a failed run is retried automatically
	// before it is dead-lettered.
	MaxRetries int
	// RetryDelay is the base of the exponential backoff between retries.
	RetryDelay time.Duration
}

func newSpec(kind Kind, name string, params map[string]any) WorkSpec {
	return WorkSpec{
		Kind:       kind,
		Name:       name,
		Params:     params,
		MaxRetries: DefaultMaxRetries,
		RetryDelay: DefaultRetryDelay,
	}
}

// NewTask returns a task spec with Python spine-core's defaults.
func NewTask(name string, params map[string]any) WorkSpec {
	return newSpec(KindTask, name, params)
}

// NewPipeline returns a pipeline spec with Python spine-core's defaults.
func NewPipeline(name string, params map[string]any) WorkSpec {
	return newSpec(KindPipeline, name, params)
}

// NewWorkflow returns a workflow spec with Python spine-core's defaults.
func NewWorkflow(name string, params map[string]any) WorkSpec {
	return newSpec(KindWorkflow, name, params)
}

// NewStep returns a step of the workflow run parentRunID. Like Python, a step
// shares its parent's correlation: CorrelationID defaults to parentRunID.
func NewStep(name string, params map[string]any, parentRunID string) WorkSpec {
	s := newSpec(KindStep, name, params)
	s.ParentRunID = parentRunID
	s.CorrelationID = parentRunID
	return s
}

// HandlerKey is the registry key of the spec's handler, "kind:name".
func (s WorkSpec) HandlerKey() string { return HandlerKey(s.Kind, s.Name) }

// WithDefaults returns s with the fields whose zero value means "default"
// filled in, as Submit stores them.
func (s WorkSpec) WithDefaults() WorkSpec {
	if s.Priority == "" {
		s.Priority = PriorityNormal
	}
	if s.Lane == "" {
		s.Lane = DefaultLane
	}
	if s.TriggerSource == "" {
		s.TriggerSource = DefaultTriggerSource
	}
	if s.Params == nil {
		s.Params = map[string]any{}
	}
	if s.Metadata == nil {
		s.Metadata = map[string]any{}
	}
	if s.Kind == KindStep && s.CorrelationID == "" {
		s.CorrelationID = s.ParentRunID
	}
	return s
}

// Validate reports what is wrong with a spec before anything is recorded.
func (s WorkSpec) Validate() error {
	if !s.Kind.Valid() {
		return &InvalidSpecError{Field: "kind", Reason: fmt.Sprintf("%q is not one of task, pipeline, workflow, step", s.Kind)}
	}
	if s.Name == "" {
		return &InvalidSpecError{Field: "name", Reason: "must not be empty"}
	}
	if s.Priority != "" && !s.Priority.Valid() {
		return &InvalidSpecError{Field: "priority", Reason: fmt.Sprintf("%q is not one of realtime, high, normal, low, slow", s.Priority)}
	}
	if s.ParentRunID != "" && !validRunID(s.ParentRunID) {
		return &InvalidSpecError{Field: "parent_run_id", Reason: fmt.Sprintf("%q is not a UUID", s.ParentRunID)}
	}
	if s.MaxRetries < 0 {
		return &InvalidSpecError{Field: "max_retries", Reason: "must not be negative"}
	}
	if s.RetryDelay < 0 {
		return &InvalidSpecError{Field: "retry_delay_seconds", Reason: "must not be negative"}
	}
	return nil
}
