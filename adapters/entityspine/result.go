package entityspine

import (
	"errors"
	"fmt"
	"strings"
)

// Shape says which of the two layouts found in the wild a RefreshResult or
// SyncResult has.
type Shape uint8

const (
	// ShapeShipped is what entity-spine's code returns (SymbologyRefreshService,
	// SyncService). It is the zero value.
	ShapeShipped Shape = iota
	// ShapeDocumented is the layout spine-core's EntitySpine integration guide
	// describes.
	ShapeDocumented
)

func (s Shape) String() string {
	switch s {
	case ShapeShipped:
		return "shipped"
	case ShapeDocumented:
		return "documented"
	}
	return fmt.Sprintf("Shape(%d)", uint8(s))
}

var (
	// ErrMalformedResult: the JSON is not a RefreshResult / SyncResult of
	// either shape. Every decoding error wraps it.
	ErrMalformedResult = errors.New("entityspine: malformed result")
	// ErrResultFailed: by the status rule, the result makes its run failed.
	// The error is a *ResultError.
	ErrResultFailed = errors.New("entityspine: result failed")
)

// ShapeError is a JSON object that has neither shape's fields, or both.
type ShapeError struct {
	Type string // "RefreshResult" or "SyncResult"
	// MissingDocumented and MissingShipped name the fields each shape lacks.
	// Both are empty when the object has every field of both shapes, which
	// leaves the status rule undecidable.
	MissingDocumented []string
	MissingShipped    []string
}

func (e *ShapeError) Error() string {
	if len(e.MissingDocumented) == 0 && len(e.MissingShipped) == 0 {
		return fmt.Sprintf("entityspine: %s has every field of both the documented and the shipped shape; cannot tell which it is", e.Type)
	}
	return fmt.Sprintf("entityspine: not a %s: the documented shape lacks %s; the shipped shape lacks %s",
		e.Type, strings.Join(e.MissingDocumented, ", "), strings.Join(e.MissingShipped, ", "))
}

// Unwrap returns ErrMalformedResult.
func (e *ShapeError) Unwrap() error { return ErrMalformedResult }

// maxErrorTexts bounds how many error texts a failed run's error repeats; a
// refresh can fail thousands of records and the count says the rest.
const maxErrorTexts = 10

// ResultError is a result whose errors make its run failed: errors and
// nothing that succeeded (see the package documentation).
type ResultError struct {
	Type   string   // "RefreshResult" or "SyncResult"
	Source string   // what a refresh refreshed; empty for a sync
	Errors []string // the error texts; the documented shape has only a count
	Count  int64    // how many errors there were
}

func (e *ResultError) Error() string {
	var b strings.Builder
	b.WriteString("entityspine ")
	if e.Type == syncType {
		b.WriteString("sync")
	} else {
		fmt.Fprintf(&b, "refresh of %q", e.Source)
	}
	fmt.Fprintf(&b, " failed: %d error", e.Count)
	if e.Count != 1 {
		b.WriteString("s")
	}
	b.WriteString(" and nothing succeeded")
	for i, text := range e.Errors {
		if i == maxErrorTexts {
			fmt.Fprintf(&b, "; (and %d more)", len(e.Errors)-maxErrorTexts)
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(text)
	}
	return b.String()
}

// ErrorType is what the failed run's error_type says: RefreshFailed or
// SyncFailed.
func (e *ResultError) ErrorType() string {
	if e.Type == syncType {
		return "SyncFailed"
	}
	return "RefreshFailed"
}

// Unwrap returns ErrResultFailed.
func (e *ResultError) Unwrap() error { return ErrResultFailed }

const (
	refreshType = "RefreshResult"
	syncType    = "SyncResult"
)
