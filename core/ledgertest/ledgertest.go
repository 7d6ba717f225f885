// Package ledgertest is the conformance suite every core.Ledger must pass,
// and the dispatcher's behaviour specified over any ledger. The memory
// ledger runs it in core's tests, the PostgreSQL ledger against a real
// server in pgledger's.
//
// It is test support: production code must never import it.
package ledgertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spinecore/spine-go/core"
)

// NewLedger returns a fresh, empty ledger for one test. It is called once
// per subtest; subtests run in parallel.
type NewLedger func(t *testing.T) core.Ledger

// Run runs the whole suite: the ledger contract and the dispatcher
// behaviour over it.
func Run(t *testing.T, newLedger NewLedger) {
	t.Run("Ledger", func(t *testing.T) { RunLedger(t, newLedger) })
	t.Run("Dispatcher", func(t *testing.T) { RunDispatcher(t, newLedger) })
}

// ctx returns a context that ends with the test, bounded so a hung store
// fails the test instead of the whole binary.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// fixedTime is a clock far from now so tests can place runs in time.
var fixedTime = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

// newRun builds a run record as a dispatcher would before CreateRun.
func newRun(kind core.Kind, name string, status core.RunStatus, created time.Time) core.RunRecord {
	spec := core.NewPipeline(name, map[string]any{"n": 1})
	spec.Kind = kind
	spec.Priority = core.PriorityNormal
	spec.Lane = core.DefaultLane
	spec.TriggerSource = core.DefaultTriggerSource
	spec.Metadata = map[string]any{}
	return core.RunRecord{
		RunID: core.NewRunID(), Spec: spec, Status: status, CreatedAt: core.Timestamp(created),
		Attempt: 1, Tags: map[string]string{"kind": string(kind), "name": name},
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

// waitFor polls the run until cond holds or the deadline passes.
func waitFor(t *testing.T, l core.Ledger, runID string, what string, cond func(core.RunRecord) bool) core.RunRecord {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		run, err := l.GetRun(context.Background(), runID)
		if err == nil && cond(run) {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: timed out waiting for %s (last: status=%s err=%v)", runID, what, run.Status, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitStatus(t *testing.T, l core.Ledger, runID string, want core.RunStatus) core.RunRecord {
	t.Helper()
	return waitFor(t, l, runID, "status "+string(want), func(r core.RunRecord) bool { return r.Status == want })
}

func eventTypes(t *testing.T, l core.Ledger, runID string) []core.EventType {
	t.Helper()
	evs, err := l.Events(context.Background(), runID)
	if err != nil {
		t.Fatalf("events of %s: %v", runID, err)
	}
	out := make([]core.EventType, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

func countEvents(t *testing.T, l core.Ledger, runID string, typ core.EventType) int {
	t.Helper()
	n := 0
	for _, et := range eventTypes(t, l, runID) {
		if et == typ {
			n++
		}
	}
	return n
}

func sameTypes(a, b []core.EventType) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// fakeExecutor accepts or refuses runs as told and records cancels: the
// stand-in for a remote executor (Celery) whose workers report through the
// dispatcher's callbacks.
type fakeExecutor struct {
	mu        sync.Mutex
	refuse    error
	submitted []core.RunRecord
	cancelled []string
}

func (f *fakeExecutor) Name() string { return "fake" }

func (f *fakeExecutor) Submit(_ context.Context, run core.RunRecord) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return "", f.refuse
	}
	f.submitted = append(f.submitted, run)
	return "ext-" + run.RunID, nil
}

func (f *fakeExecutor) Cancel(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, ref)
	return nil
}

func (f *fakeExecutor) cancels() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cancelled...)
}

var errBoom = errors.New("boom")

// reservingExecutor names its work before taking it (as a Celery producer
// chooses the task id) and checks, at every hand-over, that the ledger
// already holds the run queued with that ref.
type reservingExecutor struct {
	ledger   core.Ledger
	mu       sync.Mutex
	n        int
	problems []string
	refusal  error
}

func (r *reservingExecutor) Name() string                         { return "reserving" }
func (r *reservingExecutor) ReserveRef(run core.RunRecord) string { return "reserved-" + run.RunID }
func (r *reservingExecutor) Cancel(context.Context, string) error { return nil }

func (r *reservingExecutor) Submit(ctx context.Context, run core.RunRecord) (string, error) {
	stored, err := r.ledger.GetRun(ctx, run.RunID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || stored.Status != core.StatusQueued || stored.ExternalRef != r.ReserveRef(run) {
		r.problems = append(r.problems, fmt.Sprintf("%s: %s %q %v", run.RunID, stored.Status, stored.ExternalRef, err))
	}
	if r.refusal != nil {
		return "", r.refusal
	}
	r.n++
	return r.ReserveRef(run), nil
}

func (r *reservingExecutor) refuse(err error) { r.mu.Lock(); r.refusal = err; r.mu.Unlock() }
func (r *reservingExecutor) count() int       { r.mu.Lock(); defer r.mu.Unlock(); return r.n }
func (r *reservingExecutor) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.problems...)
}
