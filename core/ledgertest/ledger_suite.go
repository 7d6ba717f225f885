package ledgertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spinecore/spine-go/core"
)

// RunLedger specifies the Ledger contract.
func RunLedger(t *testing.T, newLedger NewLedger) {
	t.Run("RoundTripKeepsEveryField", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		started := fixedTime.Add(time.Second)
		parent := core.NewRunID()
		run := core.RunRecord{
			RunID: core.NewRunID(),
			Spec: core.WorkSpec{
				Kind: core.KindStep, Name: "ünïcode ✓ step",
				Params:         map[string]any{"big": json.Number("123456789012345678901234567890"), "f": json.Number("1.50"), "nested": map[string]any{"a": []any{json.Number("1"), "x", nil, true}}},
				IdempotencyKey: "key-" + core.NewRunID(), CorrelationID: "corr-1", Priority: core.PriorityHigh,
				Lane: "backfill", ParentRunID: parent, TriggerSource: "schedule",
				Metadata:   map[string]any{"feed_id": "3f0c8a5e-1d2b-4c3a-9e8f-0123456789ab", "owner": "ops", "n": json.Number("7")},
				MaxRetries: 5, RetryDelay: 1500 * time.Millisecond,
			},
			Status: core.StatusRunning, CreatedAt: fixedTime, StartedAt: &started,
			ExternalRef: "celery-task-1", ExecutorName: "celery", Attempt: 2, RetryOfRunID: core.NewRunID(),
			Tags: map[string]string{"kind": "step", "name": "ünïcode ✓ step", "owner": "ops"},
		}
		got, err := l.CreateRun(ctx(t), run)
		if err != nil {
			t.Fatalf("CreateRun: %v", err)
		}
		read, err := l.GetRun(ctx(t), run.RunID)
		if err != nil {
			t.Fatalf("GetRun: %v", err)
		}
		want := mustJSON(t, run)
		if g := mustJSON(t, got); g != want {
			t.Errorf("CreateRun returned\n%s\nwant\n%s", g, want)
		}
		if g := mustJSON(t, read); g != want {
			t.Errorf("GetRun returned\n%s\nwant\n%s", g, want)
		}
		byKey, err := l.GetRunByIdempotencyKey(ctx(t), run.Spec.IdempotencyKey)
		if err != nil || byKey.RunID != run.RunID {
			t.Errorf("GetRunByIdempotencyKey = %s, %v; want %s", byKey.RunID, err, run.RunID)
		}

		// Completing it keeps the result's JSON exact.
		done := started.Add(2500 * time.Millisecond)
		result := json.RawMessage(`{"rows":18446744073709551616,"ratio":0.1,"names":["é","😀"]}`)
		updated, err := l.UpdateRun(ctx(t), core.RunUpdate{RunID: run.RunID, From: core.StatusRunning, To: core.StatusCompleted, CompletedAt: &done, Result: result})
		if err != nil {
			t.Fatalf("UpdateRun: %v", err)
		}
		read, _ = l.GetRun(ctx(t), run.RunID)
		var a, b any
		_ = json.Unmarshal(read.Result, &a)
		_ = json.Unmarshal(result, &b)
		if fmt.Sprint(a) != fmt.Sprint(b) || !jsonNumbersEqual(t, read.Result, result) {
			t.Errorf("result read back as %s, want %s", read.Result, result)
		}
		if d, ok := read.Duration(); !ok || d != 2500*time.Millisecond {
			t.Errorf("duration = %v, %v; want 2.5s", d, ok)
		}
		if mustJSON(t, updated) != mustJSON(t, read) {
			t.Errorf("UpdateRun returned %s but GetRun reads %s", mustJSON(t, updated), mustJSON(t, read))
		}
	})

	t.Run("MissingRunsAreNotFound", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		id := core.NewRunID()
		if _, err := l.GetRun(ctx(t), id); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("GetRun: %v, want ErrNotFound", err)
		}
		if _, err := l.GetRunByIdempotencyKey(ctx(t), "nope"); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("GetRunByIdempotencyKey: %v, want ErrNotFound", err)
		}
		if _, err := l.UpdateRun(ctx(t), core.RunUpdate{RunID: id, From: core.StatusPending, To: core.StatusQueued}); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("UpdateRun: %v, want ErrNotFound", err)
		}
		if _, err := l.AppendEvent(ctx(t), core.RunEvent{RunID: id, Type: core.EventProgress}); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("AppendEvent: %v, want ErrNotFound", err)
		}
		if _, err := l.Events(ctx(t), id); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("Events: %v, want ErrNotFound", err)
		}
	})

	t.Run("IdempotencyKeyIsUnique", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		first := newRun(core.KindTask, "t", core.StatusPending, fixedTime)
		first.Spec.IdempotencyKey = "once"
		if _, err := l.CreateRun(ctx(t), first, core.RunEvent{Type: core.EventCreated, Timestamp: fixedTime}); err != nil {
			t.Fatal(err)
		}
		second := newRun(core.KindTask, "t", core.StatusPending, fixedTime)
		second.Spec.IdempotencyKey = "once"
		existing, err := l.CreateRun(ctx(t), second, core.RunEvent{Type: core.EventCreated, Timestamp: fixedTime})
		if !errors.Is(err, core.ErrDuplicate) || existing.RunID != first.RunID {
			t.Fatalf("second CreateRun = %s, %v; want the first run %s and ErrDuplicate", existing.RunID, err, first.RunID)
		}
		if _, err := l.GetRun(ctx(t), second.RunID); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("the duplicate was stored: %v", err)
		}
		if n := countEvents(t, l, first.RunID, core.EventCreated); n != 1 {
			t.Errorf("%d created events, want 1", n)
		}
	})

	t.Run("ConcurrentCreatesWithOneKeyMakeOneRun", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		const n = 50
		var wg sync.WaitGroup
		ids := make([]string, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run := newRun(core.KindTask, "t", core.StatusPending, fixedTime)
				run.Spec.IdempotencyKey = "contended"
				<-start
				got, err := l.CreateRun(ctx(t), run, core.RunEvent{Type: core.EventCreated, Timestamp: fixedTime})
				ids[i] = got.RunID
				if err != nil && !errors.Is(err, core.ErrDuplicate) {
					errs[i] = err
				}
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("CreateRun: %v", err)
			}
		}
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("callers saw different runs: %s and %s", ids[0], id)
			}
		}
		page, err := l.ListRuns(ctx(t), core.RunFilter{Limit: core.MaxListLimit})
		if err != nil || len(page.Runs) != 1 {
			t.Fatalf("ListRuns: %d runs, %v; want exactly 1", len(page.Runs), err)
		}
		if c := countEvents(t, l, ids[0], core.EventCreated); c != 1 {
			t.Errorf("%d created events, want 1", c)
		}
	})

	t.Run("EveryTransition", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		legal := 0
		for _, from := range core.Statuses {
			for _, to := range core.Statuses {
				if from == to {
					continue
				}
				run := newRun(core.KindTask, "t", from, fixedTime)
				if _, err := l.CreateRun(ctx(t), run); err != nil {
					t.Fatal(err)
				}
				ev := core.RunEvent{Type: core.EventType("to_" + to), Timestamp: fixedTime}
				got, err := l.UpdateRun(ctx(t), core.RunUpdate{RunID: run.RunID, From: from, To: to, Events: []core.RunEvent{ev}})
				read, rerr := l.GetRun(ctx(t), run.RunID)
				if rerr != nil {
					t.Fatal(rerr)
				}
				events := eventTypes(t, l, run.RunID)
				if from.CanTransitionTo(to) {
					legal++
					if err != nil || got.Status != to || read.Status != to {
						t.Errorf("%s → %s is legal: got %v, status %s (stored %s)", from, to, err, got.Status, read.Status)
					}
					if len(events) != 1 {
						t.Errorf("%s → %s: %d events recorded with the change, want 1", from, to, len(events))
					}
					continue
				}
				var ite *core.IllegalTransitionError
				if !errors.As(err, &ite) || !errors.Is(err, core.ErrIllegalTransition) || ite.From != from || ite.To != to {
					t.Errorf("%s → %s is illegal: got %v", from, to, err)
				}
				if read.Status != from || len(events) != 0 {
					t.Errorf("%s → %s refused but the run changed: status %s, %d events", from, to, read.Status, len(events))
				}
			}
		}
		if legal != 13 {
			t.Errorf("%d legal transitions exercised, the state machine has 13", legal)
		}
	})

	t.Run("CompareAndSetRefusesStaleWriters", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		run := newRun(core.KindTask, "t", core.StatusRunning, fixedTime)
		if _, err := l.CreateRun(ctx(t), run); err != nil {
			t.Fatal(err)
		}
		_, err := l.UpdateRun(ctx(t), core.RunUpdate{RunID: run.RunID, From: core.StatusQueued, To: core.StatusCompleted,
			Events: []core.RunEvent{{Type: core.EventCompleted, Timestamp: fixedTime}}})
		var ce *core.ConflictError
		if !errors.As(err, &ce) || ce.Actual != core.StatusRunning || ce.Expected != core.StatusQueued {
			t.Fatalf("stale update: %v, want ConflictError expected queued actual running", err)
		}
		if got := eventTypes(t, l, run.RunID); len(got) != 0 {
			t.Errorf("a refused update recorded events %v", got)
		}
	})

	t.Run("ConcurrentWritersCannotBreakTheStateMachine", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		run := newRun(core.KindTask, "t", core.StatusQueued, fixedTime)
		if _, err := l.CreateRun(ctx(t), run); err != nil {
			t.Fatal(err)
		}
		// Half the writers start it, half cancel it, all believing it queued.
		const n = 20
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				to := core.StatusRunning
				if i%2 == 1 {
					to = core.StatusCancelled
				}
				_, err := l.UpdateRun(ctx(t), core.RunUpdate{RunID: run.RunID, From: core.StatusQueued, To: to,
					Events: []core.RunEvent{{Type: core.EventType("to_" + to), Timestamp: fixedTime}}})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, core.ErrConcurrencyConflict):
					t.Errorf("writer %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d writers won, want exactly 1", wins.Load())
		}
		if evs := eventTypes(t, l, run.RunID); len(evs) != 1 {
			t.Errorf("events %v, want exactly one", evs)
		}
	})

	t.Run("FieldOnlyUpdate", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		run := newRun(core.KindTask, "t", core.StatusRunning, fixedTime)
		if _, err := l.CreateRun(ctx(t), run); err != nil {
			t.Fatal(err)
		}
		ref, name := "late-ref", "fake"
		got, err := l.UpdateRun(ctx(t), core.RunUpdate{RunID: run.RunID, From: core.StatusRunning, To: core.StatusRunning, ExternalRef: &ref, ExecutorName: &name})
		if err != nil || got.ExternalRef != ref || got.ExecutorName != name || got.Status != core.StatusRunning {
			t.Fatalf("field-only update: %+v, %v", got, err)
		}
	})

	t.Run("AppendEventHonoursStatusGuard", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		run := newRun(core.KindTask, "t", core.StatusCompleted, fixedTime)
		if _, err := l.CreateRun(ctx(t), run); err != nil {
			t.Fatal(err)
		}
		_, err := l.AppendEvent(ctx(t), core.RunEvent{RunID: run.RunID, Type: core.EventProgress, Timestamp: fixedTime}, core.StatusRunning)
		if !errors.Is(err, core.ErrConcurrencyConflict) {
			t.Errorf("progress on a completed run: %v, want ErrConcurrencyConflict", err)
		}
		ev, err := l.AppendEvent(ctx(t), core.RunEvent{RunID: run.RunID, Type: core.EventRetried, Timestamp: fixedTime.Add(time.Second),
			Data: map[string]any{"new_run_id": "x", "n": json.Number("9007199254740993")}, Source: "worker"})
		if err != nil || ev.EventID == "" {
			t.Fatalf("unguarded append: %+v, %v", ev, err)
		}
		evs, err := l.Events(ctx(t), run.RunID)
		if err != nil || len(evs) != 1 {
			t.Fatalf("events: %v, %v", evs, err)
		}
		got := evs[0]
		if got.Type != core.EventRetried || got.Source != "worker" || got.Data["new_run_id"] != "x" ||
			fmt.Sprint(got.Data["n"]) != "9007199254740993" || !got.Timestamp.Equal(fixedTime.Add(time.Second)) || got.RunID != run.RunID {
			t.Errorf("event read back as %+v", got)
		}
	})

	t.Run("EventsComeOldestFirst", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		run := newRun(core.KindTask, "t", core.StatusPending, fixedTime)
		if _, err := l.CreateRun(ctx(t), run, core.RunEvent{Type: core.EventCreated, Timestamp: fixedTime}); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			from, to core.RunStatus
			ev       core.EventType
		}{{core.StatusPending, core.StatusQueued, core.EventQueued}, {core.StatusQueued, core.StatusRunning, core.EventStarted}, {core.StatusRunning, core.StatusFailed, core.EventFailed}}
		for i, s := range steps {
			if _, err := l.UpdateRun(ctx(t), core.RunUpdate{RunID: run.RunID, From: s.from, To: s.to,
				Events: []core.RunEvent{{Type: s.ev, Timestamp: fixedTime.Add(time.Duration(i+1) * time.Millisecond)}}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.UpdateRun(ctx(t), core.RunUpdate{RunID: run.RunID, From: core.StatusFailed, To: core.StatusDeadLettered,
			Events: []core.RunEvent{{Type: core.EventDeadLettered, Timestamp: fixedTime.Add(time.Second)}, {Type: core.EventHeartbeat, Timestamp: fixedTime.Add(time.Second)}}}); err != nil {
			t.Fatal(err)
		}
		want := []core.EventType{core.EventCreated, core.EventQueued, core.EventStarted, core.EventFailed, core.EventDeadLettered, core.EventHeartbeat}
		if got := eventTypes(t, l, run.RunID); !sameTypes(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})

	t.Run("BatchCreateAndUpdate", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		pre := newRun(core.KindTask, "t", core.StatusPending, fixedTime)
		pre.Spec.IdempotencyKey = "taken"
		if _, err := l.CreateRun(ctx(t), pre); err != nil {
			t.Fatal(err)
		}
		runs := make([]core.RunRecord, 6)
		events := make([][]core.RunEvent, 6)
		for i := range runs {
			runs[i] = newRun(core.KindTask, "t", core.StatusPending, fixedTime.Add(time.Duration(i)*time.Millisecond))
			events[i] = []core.RunEvent{{Type: core.EventCreated, Timestamp: fixedTime}}
		}
		runs[1].Spec.IdempotencyKey = "taken" // taken before the batch
		runs[3].Spec.IdempotencyKey = "twice" // taken inside the batch
		runs[4].Spec.IdempotencyKey = "twice"
		got, errs, err := l.CreateRuns(ctx(t), runs, events)
		if err != nil {
			t.Fatal(err)
		}
		for i := range runs {
			switch i {
			case 1:
				if !errors.Is(errs[i], core.ErrDuplicate) || got[i].RunID != pre.RunID {
					t.Errorf("run 1: %v / %s, want duplicate of %s", errs[i], got[i].RunID, pre.RunID)
				}
			case 4:
				if !errors.Is(errs[i], core.ErrDuplicate) || got[i].RunID != runs[3].RunID {
					t.Errorf("run 4: %v / %s, want duplicate of %s", errs[i], got[i].RunID, runs[3].RunID)
				}
			default:
				if errs[i] != nil || got[i].RunID != runs[i].RunID {
					t.Errorf("run %d: %v / %s", i, errs[i], got[i].RunID)
				}
				if c := countEvents(t, l, runs[i].RunID, core.EventCreated); c != 1 {
					t.Errorf("run %d: %d created events", i, c)
				}
			}
		}
		ref := "r"
		updates := []core.RunUpdate{
			{RunID: runs[0].RunID, From: core.StatusPending, To: core.StatusQueued, ExternalRef: &ref, Events: []core.RunEvent{{Type: core.EventQueued, Timestamp: fixedTime}}},
			{RunID: runs[2].RunID, From: core.StatusQueued, To: core.StatusRunning},    // stale
			{RunID: runs[3].RunID, From: core.StatusPending, To: core.StatusCompleted}, // illegal
			{RunID: core.NewRunID(), From: core.StatusPending, To: core.StatusQueued},  // missing
			{RunID: runs[5].RunID, From: core.StatusPending, To: core.StatusCancelled},
		}
		res, uerrs, err := l.UpdateRuns(ctx(t), updates)
		if err != nil {
			t.Fatal(err)
		}
		if uerrs[0] != nil || res[0].Status != core.StatusQueued || res[0].ExternalRef != "r" {
			t.Errorf("update 0: %v %+v", uerrs[0], res[0])
		}
		if !errors.Is(uerrs[1], core.ErrConcurrencyConflict) {
			t.Errorf("update 1: %v, want conflict", uerrs[1])
		}
		if !errors.Is(uerrs[2], core.ErrIllegalTransition) {
			t.Errorf("update 2: %v, want illegal transition", uerrs[2])
		}
		if !errors.Is(uerrs[3], core.ErrNotFound) {
			t.Errorf("update 3: %v, want not found", uerrs[3])
		}
		if uerrs[4] != nil || res[4].Status != core.StatusCancelled {
			t.Errorf("update 4: %v %+v", uerrs[4], res[4])
		}
		if c := countEvents(t, l, runs[0].RunID, core.EventQueued); c != 1 {
			t.Errorf("batch update recorded %d queued events, want 1", c)
		}
	})

	t.Run("ListFilters", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		parent := newRun(core.KindWorkflow, "wf", core.StatusRunning, fixedTime)
		all := []core.RunRecord{parent}
		for i := range 40 {
			kind := core.Kinds[i%len(core.Kinds)]
			r := newRun(kind, fmt.Sprintf("name-%d", i%3), core.Statuses[i%len(core.Statuses)], fixedTime.Add(time.Duration(i+1)*time.Minute))
			if kind == core.KindStep {
				r.Spec.ParentRunID = parent.RunID
			}
			all = append(all, r)
		}
		for _, r := range all {
			if _, err := l.CreateRun(ctx(t), r); err != nil {
				t.Fatal(err)
			}
		}
		filters := []core.RunFilter{
			{},
			{Kind: core.KindPipeline},
			{Name: "name-1"},
			{Kind: core.KindTask, Name: "name-2"},
			{Statuses: []core.RunStatus{core.StatusFailed, core.StatusDeadLettered}},
			{ParentRunID: parent.RunID},
			{CreatedFrom: fixedTime.Add(10 * time.Minute), CreatedBefore: fixedTime.Add(20 * time.Minute)},
			{Kind: core.KindStep, Statuses: []core.RunStatus{core.StatusPending}, CreatedFrom: fixedTime.Add(5 * time.Minute)},
			{Name: "no-such-name"},
		}
		for _, f := range filters {
			f.Limit = core.MaxListLimit
			page, err := l.ListRuns(ctx(t), f)
			if err != nil {
				t.Fatalf("%+v: %v", f, err)
			}
			var want []string
			for _, r := range all {
				if f.Matches(r) {
					want = append(want, r.RunID)
				}
			}
			// newest first
			sort.Slice(want, func(i, j int) bool { return indexOf(all, want[i]) > indexOf(all, want[j]) })
			var got []string
			for _, r := range page.Runs {
				got = append(got, r.RunID)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("filter %+v:\n got %v\nwant %v", f, got, want)
			}
			if page.NextCursor != "" {
				t.Errorf("filter %+v: a cursor on the only page", f)
			}
		}
		if _, err := l.ListRuns(ctx(t), core.RunFilter{Cursor: "not a cursor"}); err == nil {
			t.Error("a malformed cursor was accepted")
		}
	})

	t.Run("PaginationIsStableUnderConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		base := time.Now().Add(-time.Hour)
		existing := map[string]bool{}
		runs := make([]core.RunRecord, 0, 237)
		for i := range 237 {
			// Several runs share each timestamp, so the run id tie-break matters.
			r := newRun(core.KindTask, "page", core.StatusQueued, base.Add(time.Duration(i/3)*time.Second))
			runs = append(runs, r)
			existing[r.RunID] = true
		}
		if _, _, err := l.CreateRuns(ctx(t), runs, nil); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var inserted atomic.Int32
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A bounded, paced writer: fast enough to interleave with every
			// page, finite so paging ends on any ledger.
			for i := 0; i < 400; i++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Microsecond):
				}
				// New runs land both before the pages (now) and among them.
				at := time.Now()
				if i%2 == 1 {
					at = base.Add(time.Duration(i%79) * time.Second)
				}
				if _, err := l.CreateRun(context.Background(), newRun(core.KindTask, "page", core.StatusQueued, at)); err != nil {
					t.Errorf("concurrent insert: %v", err)
					return
				}
				inserted.Add(1)
			}
		}()
		seen := map[string]int{}
		var last *core.RunRecord
		f := core.RunFilter{Name: "page", Limit: 10}
		for pages := 0; ; pages++ {
			page, err := l.ListRuns(ctx(t), f)
			if err != nil {
				t.Fatal(err)
			}
			for i := range page.Runs {
				r := page.Runs[i]
				seen[r.RunID]++
				if last != nil && !(core.Cursor{CreatedAt: last.CreatedAt, RunID: last.RunID}).After(r) {
					t.Fatalf("page %d: %s (%s) does not come after %s (%s)", pages, r.RunID, r.CreatedAt, last.RunID, last.CreatedAt)
				}
				last = &r
			}
			if page.NextCursor == "" {
				break
			}
			f.Cursor = page.NextCursor
			time.Sleep(time.Millisecond)
		}
		close(stop)
		wg.Wait()
		if inserted.Load() == 0 {
			t.Fatal("the concurrent writer inserted nothing: the test proved nothing")
		}
		for id := range existing {
			if seen[id] != 1 {
				t.Errorf("run %s present before paging was seen %d times", id, seen[id])
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("run %s seen %d times", id, n)
			}
		}
	})

	t.Run("LimitIsCapped", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		runs := make([]core.RunRecord, core.MaxListLimit+5)
		for i := range runs {
			runs[i] = newRun(core.KindTask, "cap", core.StatusPending, fixedTime.Add(time.Duration(i)*time.Millisecond))
		}
		if _, _, err := l.CreateRuns(ctx(t), runs, nil); err != nil {
			t.Fatal(err)
		}
		page, err := l.ListRuns(ctx(t), core.RunFilter{Limit: 10_000})
		if err != nil || len(page.Runs) != core.MaxListLimit || page.NextCursor == "" {
			t.Fatalf("limit 10000: %d runs, cursor %q, %v; want %d and a cursor", len(page.Runs), page.NextCursor, err, core.MaxListLimit)
		}
		page, err = l.ListRuns(ctx(t), core.RunFilter{})
		if err != nil || len(page.Runs) != core.DefaultListLimit {
			t.Fatalf("default limit: %d runs, %v", len(page.Runs), err)
		}
	})
}

func indexOf(runs []core.RunRecord, id string) int {
	for i, r := range runs {
		if r.RunID == id {
			return i
		}
	}
	return -1
}

// jsonNumbersEqual compares two JSON documents with numbers compared by
// their text, so a float64 round trip cannot hide a lost digit.
func jsonNumbersEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	norm := func(raw []byte) string {
		m, err := core.DecodeObject(raw)
		if err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		out, _ := json.Marshal(m)
		return string(out)
	}
	return norm(a) == norm(b)
}
