package core

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors a caller can branch on with errors.Is. The typed errors
// below wrap them with the details.
var (
	// ErrNotFound: no run with that id.
	ErrNotFound = errors.New("run not found")
	// ErrIllegalTransition: the state machine forbids the change.
	ErrIllegalTransition = errors.New("illegal run status transition")
	// ErrDuplicate: a run with that id or idempotency key already exists.
	ErrDuplicate = errors.New("duplicate run")
	// ErrHandlerMissing: no handler is registered for the spec's "kind:name".
	ErrHandlerMissing = errors.New("no handler registered")
	// ErrConcurrencyConflict: another writer changed the run first (its status
	// was not the one expected), or a store-level guard refused concurrent
	// work (Capture-Spine's one active execution per feed).
	ErrConcurrencyConflict = errors.New("concurrency conflict")
	// ErrInvalidSpec: the WorkSpec cannot be submitted as it is.
	ErrInvalidSpec = errors.New("invalid work spec")
	// ErrBackpressure: the executor's queue for the lane is full.
	ErrBackpressure = errors.New("executor queue full")
	// ErrClosed: the dispatcher or executor has been shut down.
	ErrClosed = errors.New("closed")
)

// IllegalTransitionError is a refused status change.
type IllegalTransitionError struct {
	RunID    string
	From, To RunStatus
}

func (e *IllegalTransitionError) Error() string {
	return fmt.Sprintf("run %s: cannot go from %s to %s (allowed from %s: %v)",
		e.RunID, e.From, e.To, e.From, e.From.NextStatuses())
}

func (e *IllegalTransitionError) Unwrap() error { return ErrIllegalTransition }

// ConflictError is a compare-and-set that lost: the run was not in the
// status the writer expected.
type ConflictError struct {
	RunID    string
	Expected RunStatus
	Actual   RunStatus
	// Detail explains conflicts that are not about status (a store guard).
	Detail string
}

func (e *ConflictError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("run %s: %s", e.RunID, e.Detail)
	}
	return fmt.Sprintf("run %s: expected status %s but it is %s (changed by another writer)",
		e.RunID, e.Expected, e.Actual)
}

func (e *ConflictError) Unwrap() error { return ErrConcurrencyConflict }

// InvalidSpecError names the WorkSpec field that is wrong.
type InvalidSpecError struct {
	Field  string
	Reason string
}

func (e *InvalidSpecError) Error() string {
	return fmt.Sprintf("invalid work spec: %s %s", e.Field, e.Reason)
}

func (e *InvalidSpecError) Unwrap() error { return ErrInvalidSpec }

// HandlerMissingError names the registry key nobody registered.
type HandlerMissingError struct{ Key string }

func (e *HandlerMissingError) Error() string {
	return fmt.Sprintf("no handler registered for %q", e.Key)
}

func (e *HandlerMissingError) Unwrap() error { return ErrHandlerMissing }

func notFound(runID string) error { return fmt.Errorf("%w: %s", ErrNotFound, runID) }

// Failure is an error with the error_type recorded on the failed run, for
// failures that come from elsewhere (a Python exception class name, an
// executor's own vocabulary).
type Failure struct {
	Type    string
	Message string
	// Permanent failures are dead-lettered at once: retrying cannot help.
	Permanent bool
}

func (f *Failure) Error() string { return f.Message }

// ErrorType is what the failed run's error_type will say.
func (f *Failure) ErrorType() string { return f.Type }

// PermanentError marks err as not worth retrying: the run it fails is
// dead-lettered at once instead of being retried with backoff.
func PermanentError(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// IsPermanent reports whether err, or an error it wraps, was marked with
// PermanentError, is a permanent Failure, or is a missing handler.
func IsPermanent(err error) bool {
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	var f *Failure
	if errors.As(err, &f) && f.Permanent {
		return true
	}
	return errors.Is(err, ErrHandlerMissing)
}

// ErrorType names an error the way the run's error_type column records it:
// the type a Failure or an error with an ErrorType() method declares, else a
// name for the well-known sentinels, else "Error".
func ErrorType(err error) string {
	var typed interface{ ErrorType() string }
	if errors.As(err, &typed) && typed.ErrorType() != "" {
		return typed.ErrorType()
	}
	switch {
	case errors.Is(err, ErrHandlerMissing):
		return "HandlerMissing"
	case errors.Is(err, ErrBackpressure):
		return "Backpressure"
	case errors.Is(err, errPanic):
		return "Panic"
	case errors.Is(err, ErrClosed):
		return "ExecutorClosed"
	case errors.Is(err, context.Canceled):
		return "Cancelled"
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return "Timeout"
	}
	return "Error"
}
