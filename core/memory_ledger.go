package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
)

// MemoryLedger is the embedded default Ledger: everything in process memory,
// gone when the process exits. The zero value is ready to use.
type MemoryLedger struct {
	mu        sync.RWMutex
	runs      map[string]RunRecord
	byKey     map[string]string
	events    map[string][]RunEvent
	nextEvent int64
}

var _ Ledger = (*MemoryLedger)(nil)

// NewMemoryLedger returns an empty MemoryLedger.
func NewMemoryLedger() *MemoryLedger { return &MemoryLedger{} }

func (l *MemoryLedger) init() {
	if l.runs == nil {
		l.runs = map[string]RunRecord{}
		l.byKey = map[string]string{}
		l.events = map[string][]RunEvent{}
	}
}

// CreateRun implements Ledger.
func (l *MemoryLedger) CreateRun(ctx context.Context, run RunRecord, events ...RunEvent) (RunRecord, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.createLocked(run, events)
}

func (l *MemoryLedger) createLocked(run RunRecord, events []RunEvent) (RunRecord, error) {
	l.init()
	if !validRunID(run.RunID) {
		return RunRecord{}, fmt.Errorf("create run: run_id %q is not a UUID", run.RunID)
	}
	if key := run.Spec.IdempotencyKey; key != "" {
		if id, ok := l.byKey[key]; ok {
			return cloneRun(l.runs[id]), fmt.Errorf("%w: idempotency key %q is run %s", ErrDuplicate, key, id)
		}
	}
	if _, ok := l.runs[run.RunID]; ok {
		return RunRecord{}, fmt.Errorf("%w: run_id %s exists", ErrDuplicate, run.RunID)
	}
	run = normaliseRun(run)
	l.runs[run.RunID] = run
	if key := run.Spec.IdempotencyKey; key != "" {
		l.byKey[key] = run.RunID
	}
	for _, ev := range events {
		l.appendLocked(run.RunID, ev)
	}
	return cloneRun(run), nil
}

// CreateRuns implements Ledger.
func (l *MemoryLedger) CreateRuns(ctx context.Context, runs []RunRecord, events [][]RunEvent) ([]RunRecord, []error, error) {
	if len(events) != 0 && len(events) != len(runs) {
		return nil, nil, fmt.Errorf("create runs: %d runs but %d event lists", len(runs), len(events))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	results := make([]RunRecord, len(runs))
	errs := make([]error, len(runs))
	for i, run := range runs {
		var evs []RunEvent
		if len(events) > 0 {
			evs = events[i]
		}
		results[i], errs[i] = l.createLocked(run, evs)
		if errs[i] != nil && !errors.Is(errs[i], ErrDuplicate) {
			return nil, nil, errs[i]
		}
	}
	return results, errs, nil
}

// GetRun implements Ledger.
func (l *MemoryLedger) GetRun(ctx context.Context, runID string) (RunRecord, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	r, ok := l.runs[runID]
	if !ok {
		return RunRecord{}, notFound(runID)
	}
	return cloneRun(r), nil
}

// GetRunByIdempotencyKey implements Ledger.
func (l *MemoryLedger) GetRunByIdempotencyKey(ctx context.Context, key string) (RunRecord, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	id, ok := l.byKey[key]
	if !ok || key == "" {
		return RunRecord{}, fmt.Errorf("%w: idempotency key %q", ErrNotFound, key)
	}
	return cloneRun(l.runs[id]), nil
}

// ListRuns implements Ledger.
func (l *MemoryLedger) ListRuns(ctx context.Context, f RunFilter) (RunPage, error) {
	var after *Cursor
	if f.Cursor != "" {
		c, err := DecodeCursor(f.Cursor)
		if err != nil {
			return RunPage{}, err
		}
		after = &c
	}
	l.mu.RLock()
	matched := make([]RunRecord, 0)
	for _, r := range l.runs {
		if f.Matches(r) && (after == nil || after.After(r)) {
			matched = append(matched, r)
		}
	}
	l.mu.RUnlock()
	sort.Slice(matched, func(i, j int) bool {
		a, b := matched[i], matched[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.RunID > b.RunID
	})
	limit := f.EffectiveLimit()
	page := RunPage{}
	if len(matched) > limit {
		matched = matched[:limit]
		last := matched[limit-1]
		page.NextCursor = Cursor{CreatedAt: last.CreatedAt, RunID: last.RunID}.Encode()
	}
	for _, r := range matched {
		page.Runs = append(page.Runs, cloneRun(r))
	}
	return page, nil
}

// UpdateRun implements Ledger.
func (l *MemoryLedger) UpdateRun(ctx context.Context, u RunUpdate) (RunRecord, error) {
	if err := u.Check(); err != nil {
		return RunRecord{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.updateLocked(u)
}

func (l *MemoryLedger) updateLocked(u RunUpdate) (RunRecord, error) {
	r, ok := l.runs[u.RunID]
	if !ok {
		return RunRecord{}, notFound(u.RunID)
	}
	if r.Status != u.From {
		return RunRecord{}, &ConflictError{RunID: u.RunID, Expected: u.From, Actual: r.Status}
	}
	r = u.Apply(r)
	l.runs[u.RunID] = r
	for _, ev := range u.Events {
		l.appendLocked(u.RunID, ev)
	}
	return cloneRun(r), nil
}

// UpdateRuns implements Ledger.
func (l *MemoryLedger) UpdateRuns(ctx context.Context, us []RunUpdate) ([]RunRecord, []error, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	results := make([]RunRecord, len(us))
	errs := make([]error, len(us))
	for i, u := range us {
		if errs[i] = u.Check(); errs[i] == nil {
			results[i], errs[i] = l.updateLocked(u)
		}
	}
	return results, errs, nil
}

// AppendEvent implements Ledger.
func (l *MemoryLedger) AppendEvent(ctx context.Context, ev RunEvent, ifStatus ...RunStatus) (RunEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.runs[ev.RunID]
	if !ok {
		return RunEvent{}, notFound(ev.RunID)
	}
	if len(ifStatus) > 0 && !statusIn(r.Status, ifStatus) {
		return RunEvent{}, &ConflictError{RunID: ev.RunID, Expected: ifStatus[0], Actual: r.Status}
	}
	return l.appendLocked(ev.RunID, ev), nil
}

func (l *MemoryLedger) appendLocked(runID string, ev RunEvent) RunEvent {
	l.nextEvent++
	ev.EventID = strconv.FormatInt(l.nextEvent, 10)
	ev.RunID = runID
	ev.Timestamp = Timestamp(ev.Timestamp)
	if ev.Source == "" {
		ev.Source = DefaultEventSource
	}
	ev.Data = cloneMap(ev.Data)
	l.events[runID] = append(l.events[runID], ev)
	return ev
}

// Events implements Ledger.
func (l *MemoryLedger) Events(ctx context.Context, runID string) ([]RunEvent, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if _, ok := l.runs[runID]; !ok {
		return nil, notFound(runID)
	}
	evs := l.events[runID]
	out := make([]RunEvent, len(evs))
	for i, ev := range evs {
		ev.Data = cloneMap(ev.Data)
		out[i] = ev
	}
	return out, nil
}

func statusIn(s RunStatus, set []RunStatus) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

// normaliseRun gives a stored run the precision and defaults every ledger
// stores, so memory and Postgres read back the same record.
func normaliseRun(r RunRecord) RunRecord {
	r.CreatedAt = Timestamp(r.CreatedAt)
	if r.StartedAt != nil {
		t := Timestamp(*r.StartedAt)
		r.StartedAt = &t
	}
	if r.CompletedAt != nil {
		t := Timestamp(*r.CompletedAt)
		r.CompletedAt = &t
	}
	r.Spec = r.Spec.WithDefaults()
	return cloneRun(r)
}

// cloneRun deep-copies the maps and result so callers cannot alias a
// ledger's stored state.
func cloneRun(r RunRecord) RunRecord {
	r.Spec.Params = cloneMap(r.Spec.Params)
	r.Spec.Metadata = cloneMap(r.Spec.Metadata)
	if r.Result != nil {
		r.Result = append(json.RawMessage(nil), r.Result...)
	}
	if r.Tags != nil {
		tags := make(map[string]string, len(r.Tags))
		for k, v := range r.Tags {
			tags[k] = v
		}
		r.Tags = tags
	}
	if r.StartedAt != nil {
		t := *r.StartedAt
		r.StartedAt = &t
	}
	if r.CompletedAt != nil {
		t := *r.CompletedAt
		r.CompletedAt = &t
	}
	return r
}

// cloneMap deep-copies a JSON-shaped map through its JSON form, keeping
// numbers exact.
func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		// Not JSON-shaped: a shallow copy is the best that can be done.
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	out, err := DecodeObject(b)
	if err != nil {
		return map[string]any{}
	}
	return out
}
