package capturespine

import (
	"errors"
	"fmt"
)

// UnknownValueError is a value a mapping has no entry for: a legacy status, a
// job type, a Celery task name. Fix says what to add, and where, to map it.
type UnknownValueError struct {
	Column string // e.g. "jobs.status"
	Value  string
	Fix    string
}

func (e *UnknownValueError) Error() string {
	return fmt.Sprintf("capturespine: %s %q has no mapping: %s", e.Column, e.Value, e.Fix)
}

// Is makes errors.Is(err, ErrUnknownValue) true for every UnknownValueError.
func (e *UnknownValueError) Is(target error) bool { return target == ErrUnknownValue }

// ErrUnknownValue matches every UnknownValueError.
var ErrUnknownValue = errors.New("capturespine: value has no mapping")

// InvalidExecutionError is an Execution (or the RunRecord it came from) that
// no executions row can hold.
type InvalidExecutionError struct {
	ExecutionID string
	Column      string
	Reason      string
}

func (e *InvalidExecutionError) Error() string {
	return fmt.Sprintf("capturespine: execution %s: %s %s", e.ExecutionID, e.Column, e.Reason)
}
