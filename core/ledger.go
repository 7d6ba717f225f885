package core

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Ledger stores runs and their events. Every implementation must make each
// method atomic: a run is created together with its first event, a status
// change together with the events that record it. The conformance suite in
// core/ledgertest states the contract as tests.
type Ledger interface {
	// CreateRun stores run and the events recording its creation. If the
	// run's idempotency key is taken it stores nothing and returns the
	// existing run with an error wrapping ErrDuplicate.
	CreateRun(ctx context.Context, run RunRecord, events ...RunEvent) (RunRecord, error)
	// CreateRuns is CreateRun for many runs at once; events[i] belong to
	// runs[i]. results[i] is the stored run, or the existing one when
	// errs[i] wraps ErrDuplicate. A non-nil error means nothing is known.
	CreateRuns(ctx context.Context, runs []RunRecord, events [][]RunEvent) (results []RunRecord, errs []error, err error)

	GetRun(ctx context.Context, runID string) (RunRecord, error)
	GetRunByIdempotencyKey(ctx context.Context, key string) (RunRecord, error)
	ListRuns(ctx context.Context, filter RunFilter) (RunPage, error)

	// UpdateRun applies u if and only if the run's status is still u.From
	// (compare-and-set), and records u.Events with it. It returns the
	// updated run, a *ConflictError when the status differs, an
	// *IllegalTransitionError when From → To is not allowed.
	UpdateRun(ctx context.Context, u RunUpdate) (RunRecord, error)
	// UpdateRuns is UpdateRun for many runs; each update stands alone.
	UpdateRuns(ctx context.Context, us []RunUpdate) (results []RunRecord, errs []error, err error)

	// AppendEvent records ev without changing the run. With ifStatus, the
	// event is recorded only while the run is in one of those statuses
	// (else a *ConflictError).
	AppendEvent(ctx context.Context, ev RunEvent, ifStatus ...RunStatus) (RunEvent, error)
	// Events returns the run's events, oldest first.
	Events(ctx context.Context, runID string) ([]RunEvent, error)
}

// RunUpdate is a compare-and-set change of one run. Nil fields are left as
// they are. From == To changes fields without a transition.
type RunUpdate struct {
	RunID string
	From  RunStatus
	To    RunStatus

	StartedAt    *time.Time
	CompletedAt  *time.Time
	Result       json.RawMessage
	Error        *string
	ErrorType    *string
	ExternalRef  *string
	ExecutorName *string

	Events []RunEvent
}

// Check validates the transition the update makes.
func (u RunUpdate) Check() error {
	if u.From == u.To {
		if !u.From.Valid() {
			return fmt.Errorf("run %s: unknown status %q", u.RunID, u.From)
		}
		return nil
	}
	return CheckTransition(u.RunID, u.From, u.To)
}

// Apply returns r with the update's fields set (no checks: ledgers call
// Check and compare the status first).
func (u RunUpdate) Apply(r RunRecord) RunRecord {
	r.Status = u.To
	if u.StartedAt != nil {
		t := Timestamp(*u.StartedAt)
		r.StartedAt = &t
	}
	if u.CompletedAt != nil {
		t := Timestamp(*u.CompletedAt)
		r.CompletedAt = &t
	}
	if u.Result != nil {
		// JSON null is "no result", as a SQL NULL is in Capture-Spine.
		r.Result = nil
		if t := bytes.TrimSpace(u.Result); !bytes.Equal(t, []byte("null")) {
			r.Result = append(json.RawMessage(nil), u.Result...)
		}
	}
	if u.Error != nil {
		r.Error = *u.Error
	}
	if u.ErrorType != nil {
		r.ErrorType = *u.ErrorType
	}
	if u.ExternalRef != nil {
		r.ExternalRef = *u.ExternalRef
	}
	if u.ExecutorName != nil {
		r.ExecutorName = *u.ExecutorName
	}
	return r
}

// Listing limits: Python's API caps a page at 200.
const (
	DefaultListLimit = 50
	MaxListLimit     = 200
)

// RunFilter selects runs for ListRuns. Zero fields do not filter. Runs come
// newest first (created_at, then run_id, descending) and pages are cut by a
// keyset cursor, so rows inserted while a client pages never shift or repeat
// what it has yet to read.
type RunFilter struct {
	Kind        Kind
	Name        string
	Statuses    []RunStatus
	ParentRunID string
	// CreatedFrom is inclusive, CreatedBefore exclusive.
	CreatedFrom   time.Time
	CreatedBefore time.Time
	// Limit defaults to DefaultListLimit and is capped at MaxListLimit.
	Limit int
	// Cursor is RunPage.NextCursor of the previous page.
	Cursor string
}

// RunPage is one page of ListRuns. NextCursor is empty on the last page.
type RunPage struct {
	Runs       []RunRecord
	NextCursor string
}

// EffectiveLimit is the page size the filter asks for, within bounds.
func (f RunFilter) EffectiveLimit() int {
	switch {
	case f.Limit <= 0:
		return DefaultListLimit
	case f.Limit > MaxListLimit:
		return MaxListLimit
	}
	return f.Limit
}

// Matches reports whether r passes the filter's predicates (not the cursor).
// Ledgers that filter in memory use it; SQL ledgers must agree with it.
func (f RunFilter) Matches(r RunRecord) bool {
	if f.Kind != "" && r.Spec.Kind != f.Kind {
		return false
	}
	if f.Name != "" && r.Spec.Name != f.Name {
		return false
	}
	if f.ParentRunID != "" && r.Spec.ParentRunID != f.ParentRunID {
		return false
	}
	if len(f.Statuses) > 0 {
		ok := false
		for _, s := range f.Statuses {
			ok = ok || r.Status == s
		}
		if !ok {
			return false
		}
	}
	if !f.CreatedFrom.IsZero() && r.CreatedAt.Before(f.CreatedFrom) {
		return false
	}
	if !f.CreatedBefore.IsZero() && !r.CreatedAt.Before(f.CreatedBefore) {
		return false
	}
	return true
}

// Cursor is a position in the newest-first order of runs.
type Cursor struct {
	CreatedAt time.Time
	RunID     string
}

// Encode returns the opaque string form handed to clients.
func (c Cursor) Encode() string {
	raw := strconv.FormatInt(Timestamp(c.CreatedAt).UnixMicro(), 10) + "/" + c.RunID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// After reports whether r comes after the cursor in newest-first order.
func (c Cursor) After(r RunRecord) bool {
	t := Timestamp(r.CreatedAt)
	if !t.Equal(c.CreatedAt) {
		return t.Before(c.CreatedAt)
	}
	return r.RunID < c.RunID
}

// DecodeCursor parses a cursor made by Cursor.Encode.
func DecodeCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("invalid cursor %q: %w", s, err)
	}
	micros, runID, ok := strings.Cut(string(raw), "/")
	if !ok {
		return Cursor{}, fmt.Errorf("invalid cursor %q", s)
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil || !validRunID(runID) {
		return Cursor{}, fmt.Errorf("invalid cursor %q", s)
	}
	return Cursor{CreatedAt: time.UnixMicro(us).UTC(), RunID: runID}, nil
}
