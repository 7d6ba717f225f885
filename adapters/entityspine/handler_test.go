package entityspine_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/adapters/entityspine"
	"github.com/spinecore/spine-go/core"
)

// The run of a wrapped refresh records what it reports, end to end through a
// dispatcher, the memory ledger and the memory executor.
func TestRefreshHandlerRuns(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 1, 15, 6, 0, 0, 125000000, time.UTC)
	refresh := func(fetched int64, errs ...string) entityspine.RefreshResult {
		return entityspine.RefreshResult{Source: "sec-tickers", StartedAt: started, CompletedAt: started.Add(45 * time.Second),
			RecordsFetched: fetched, NewEntities: 1, NewClaims: 1, SkippedDuplicates: fetched - 1 - int64(len(errs)), Errors: errs}
	}
	cases := []struct {
		name       string
		result     entityspine.RefreshResult
		err        error
		autoRetry  bool
		want       core.RunStatus
		wantError  []string // in the run's error
		wantType   string
		wantNoteOK bool // the progress message says "completed with warnings"
	}{
		{name: "clean refresh completes", result: refresh(100), want: core.StatusCompleted},
		{name: "errors alongside successes complete with warnings", result: refresh(100, "Record error: 'cik'", "Record error: bad ticker"),
			want: core.StatusCompleted, wantNoteOK: true},
		{name: "errors and nothing succeeded fail", result: entityspine.RefreshResult{Source: "sec-tickers", StartedAt: started,
			CompletedAt: started.Add(time.Second), Errors: []string{"Fetch failed: 503 Service Unavailable"}},
			want: core.StatusFailed, wantError: []string{"Fetch failed: 503 Service Unavailable", `"sec-tickers"`}, wantType: "RefreshFailed"},
		{name: "the func's error fails the run as it is", err: &core.Failure{Type: "ConnectionError", Message: "sec.gov unreachable"},
			want: core.StatusFailed, wantError: []string{"sec.gov unreachable"}, wantType: "ConnectionError"},
		{name: "an invalid result is dead-lettered at once", result: entityspine.RefreshResult{Source: "sec", NewClaims: -1},
			autoRetry: true, want: core.StatusDeadLettered, wantError: []string{"invalid result", "new_claims"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, core.DispatcherOptions{DisableAutoRetry: !tc.autoRetry})
			gotParams := make(chan map[string]any, 1)
			h := entityspine.Handler(func(ctx context.Context, params map[string]any) (entityspine.RefreshResult, error) {
				gotParams <- params
				if err := core.ReportProgress(ctx, 0.5, "fetched"); err != nil {
					return entityspine.RefreshResult{}, err
				}
				return tc.result, tc.err
			})
			if err := entityspine.Register(b.registry, "refresh_sec", h); err != nil {
				t.Fatal(err)
			}
			spec, err := entityspine.Spec("refresh_sec", map[string]any{"force": true})
			if err != nil {
				t.Fatal(err)
			}
			run, err := b.d.Submit(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			done := waitStatus(t, b.ledger, run.RunID, tc.want)
			if p := <-gotParams; p["force"] != true {
				t.Errorf("handler params %v", p)
			}
			if d, ok := done.Duration(); !ok || d < 0 {
				t.Errorf("run duration %v, %v", d, ok)
			}

			if tc.want != core.StatusCompleted {
				for _, s := range tc.wantError {
					if !strings.Contains(done.Error, s) {
						t.Errorf("run error %q lacks %q", done.Error, s)
					}
				}
				if tc.wantType != "" && done.ErrorType != tc.wantType {
					t.Errorf("error_type %q, want %q", done.ErrorType, tc.wantType)
				}
				return
			}
			// The recorded result is the returned one, plus what Python derives.
			got, err := entityspine.DecodeRefreshResult(done.Result)
			if err != nil {
				t.Fatalf("recorded result %s: %v", done.Result, err)
			}
			seconds := number(t, members(t, done.Result)["duration_seconds"])
			if want := tc.result.CompletedAt.Sub(tc.result.StartedAt).Seconds(); seconds != want {
				t.Errorf("duration_seconds %v, want %v", seconds, want)
			}
			want := tc.result
			if want.Errors == nil {
				want.Errors = []string{} // Python's default_factory=list
			}
			got.Extra = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("recorded %+v\nreturned %+v", got, want)
			}
			// The handler's own progress, then the wrapper's summary.
			evs := progressEvents(t, b.ledger, run.RunID)
			if len(evs) != 2 || evs[0]["message"] != "fetched" || progressOf(t, evs[1]) != 1 {
				t.Fatalf("progress events %v", evs)
			}
			msg, _ := evs[1]["message"].(string)
			if !strings.Contains(msg, "sec-tickers") || strings.Contains(msg, "completed with warnings") != tc.wantNoteOK {
				t.Errorf("summary %q", msg)
			}
		})
	}
}

func TestSyncHandlerRuns(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 1, 15, 6, 5, 0, 0, time.UTC)
	completed := started.Add(150 * time.Second)
	cases := []struct {
		name      string
		result    entityspine.SyncResult
		want      core.RunStatus
		wantError string
	}{
		{"clean sync completes", entityspine.SyncResult{StartedAt: started, CompletedAt: &completed, EntitiesSynced: 9800,
			Warnings: []string{"neo4j: 3 relationships had no target"}}, core.StatusCompleted, ""},
		{"partial sync completes with warnings", entityspine.SyncResult{StartedAt: started, CompletedAt: &completed,
			EntitiesSynced: 9800, Errors: []string{"Neo4j sync error: connection reset"}}, core.StatusCompleted, ""},
		{"nothing synced fails", entityspine.SyncResult{StartedAt: started, CompletedAt: &completed,
			Errors: []string{"Elasticsearch sync error: 401"}}, core.StatusFailed, "Elasticsearch sync error: 401"},
		{"documented shape", entityspine.SyncResult{Shape: entityspine.ShapeDocumented, SyncedCount: 12}, core.StatusCompleted, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, core.DispatcherOptions{DisableAutoRetry: true})
			h := entityspine.Handler(func(context.Context, map[string]any) (entityspine.SyncResult, error) {
				return tc.result, nil
			})
			if err := entityspine.Register(b.registry, "sync", h); err != nil {
				t.Fatal(err)
			}
			spec, err := entityspine.Spec("sync", nil)
			if err != nil {
				t.Fatal(err)
			}
			run, err := b.d.Submit(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			done := waitStatus(t, b.ledger, run.RunID, tc.want)
			if tc.want == core.StatusFailed {
				if !strings.Contains(done.Error, tc.wantError) || done.ErrorType != "SyncFailed" {
					t.Errorf("error %q (%s)", done.Error, done.ErrorType)
				}
				return
			}
			got, err := entityspine.DecodeSyncResult(done.Result)
			if err != nil {
				t.Fatalf("recorded result %s: %v", done.Result, err)
			}
			want := tc.result
			if want.Shape == entityspine.ShapeShipped {
				want.Errors = append([]string{}, want.Errors...) // nil is Python's empty list
				want.Warnings = append([]string{}, want.Warnings...)
			}
			got.Extra = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("recorded %+v\nreturned %+v", got, want)
			}
			if evs := progressEvents(t, b.ledger, run.RunID); len(evs) != 1 || !strings.HasPrefix(evs[0]["message"].(string), "sync:") {
				t.Errorf("progress events %v", evs)
			}
		})
	}
}

// A refresh that fails by the rule is retried like any failure: the next
// attempt may reach the source.
func TestFailedRefreshIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, core.DispatcherOptions{})
	at := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	attempts := make(chan struct{}, 8)
	h := entityspine.Handler(func(context.Context, map[string]any) (entityspine.RefreshResult, error) {
		attempts <- struct{}{}
		r := entityspine.RefreshResult{Source: "gleif", StartedAt: at, CompletedAt: at}
		if len(attempts) == 1 {
			r.Errors = []string{"Fetch failed: timeout"}
		}
		return r, nil
	})
	if err := entityspine.Register(b.registry, "refresh_gleif", h); err != nil {
		t.Fatal(err)
	}
	spec, _ := entityspine.Spec("refresh_gleif", nil)
	first, err := b.d.Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	failed := waitStatus(t, b.ledger, first.RunID, core.StatusFailed)
	if !strings.Contains(failed.Error, "Fetch failed: timeout") || failed.ErrorType != "RefreshFailed" {
		t.Errorf("first attempt %+v", failed)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		page, err := b.d.ListRuns(context.Background(), core.RunFilter{Name: "refresh_gleif", Statuses: []core.RunStatus{core.StatusCompleted}})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Runs) == 1 {
			if r := page.Runs[0]; r.Attempt != 2 || r.RetryOfRunID != first.RunID {
				t.Errorf("retry %+v", r)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no completed retry")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
