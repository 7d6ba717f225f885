package ledgertest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spinecore/spine-go/core"
)

// noBackoff retries at once so retry chains finish inside a test.
func noBackoff(int, time.Duration) time.Duration { return 0 }

type bundle struct {
	ledger   core.Ledger
	registry *core.Registry
	exec     *core.MemoryExecutor
	d        *core.Dispatcher
}

// setup returns a dispatcher over a fresh ledger and a memory executor,
// both shut down when the test ends.
func setup(t *testing.T, newLedger NewLedger, opts core.DispatcherOptions, eopts core.MemoryExecutorOptions) bundle {
	l := newLedger(t)
	reg := &core.Registry{}
	exec := core.NewMemoryExecutor(reg, eopts)
	if opts.Backoff == nil {
		opts.Backoff = noBackoff
	}
	d := core.NewDispatcher(l, exec, opts)
	t.Cleanup(func() {
		_ = d.Close()
		_ = exec.Close()
	})
	return bundle{ledger: l, registry: reg, exec: exec, d: d}
}

// RunDispatcher specifies the dispatcher's behaviour over a ledger.
func RunDispatcher(t *testing.T, newLedger NewLedger) {
	t.Run("SubmitRunsTheHandlerToCompletion", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{}, core.MemoryExecutorOptions{})
		b.registry.MustRegister(core.KindTask, "add", func(ctx context.Context, p map[string]any) (any, error) {
			x, _ := p["x"].(json.Number).Int64()
			y, _ := p["y"].(json.Number).Int64()
			if err := core.ReportProgress(ctx, 0.5, "halfway"); err != nil {
				return nil, err
			}
			return map[string]any{"sum": x + y}, nil
		})
		run, err := b.d.SubmitTask(ctx(t), "add", map[string]any{"x": 2, "y": 40})
		if err != nil {
			t.Fatal(err)
		}
		if run.Attempt != 1 || run.Spec.TriggerSource != "api" || run.Spec.Lane != "default" || run.Spec.Priority != core.PriorityNormal {
			t.Errorf("defaults not applied: %+v", run)
		}
		done := waitStatus(t, b.ledger, run.RunID, core.StatusCompleted)
		if string(done.Result) != `{"sum": 42}` && string(done.Result) != `{"sum":42}` {
			t.Errorf("result %s", done.Result)
		}
		if done.ExecutorName != "memory" || done.ExternalRef == "" || done.StartedAt == nil || done.CompletedAt == nil {
			t.Errorf("completed run lacks executor facts: %+v", done)
		}
		if done.Tags["kind"] != "task" || done.Tags["name"] != "add" {
			t.Errorf("tags %v", done.Tags)
		}
		// The memory executor reserves its ref (the run id), so the run is
		// recorded queued before any worker can start it.
		got := eventTypes(t, b.ledger, run.RunID)
		want := []core.EventType{core.EventCreated, core.EventQueued, core.EventStarted, core.EventProgress, core.EventCompleted}
		if !sameTypes(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		evs, _ := b.ledger.Events(ctx(t), run.RunID)
		created := evs[0]
		if created.Data["kind"] != "task" || created.Data["name"] != "add" || created.Source != "dispatcher" {
			t.Errorf("created event %+v", created)
		}
		last := evs[len(evs)-1]
		if _, ok := last.Data["duration_seconds"]; !ok {
			t.Errorf("completed event lacks duration_seconds: %+v", last)
		}
	})

	t.Run("IdempotentSubmitReturnsTheExistingRun", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{}
		l := newLedger(t)
		d := core.NewDispatcher(l, fe, core.DispatcherOptions{})
		t.Cleanup(func() { _ = d.Close() })
		spec := core.NewPipeline("ingest", map[string]any{"day": "2026-11-23"})
		spec.IdempotencyKey = "ingest-2026-11-23"
		first, err := d.Submit(ctx(t), spec)
		if err != nil {
			t.Fatal(err)
		}
		// Even after it finished, the key returns the same run.
		if _, err := d.MarkStarted(ctx(t), first.RunID); err != nil {
			t.Fatal(err)
		}
		if _, err := d.MarkCompleted(ctx(t), first.RunID, "ok"); err != nil {
			t.Fatal(err)
		}
		before := eventTypes(t, l, first.RunID)
		again, err := d.Submit(ctx(t), spec)
		if err != nil || again.RunID != first.RunID || again.Status != core.StatusCompleted {
			t.Fatalf("second submit: %s %s %v; want %s completed", again.RunID, again.Status, err, first.RunID)
		}
		if after := eventTypes(t, l, first.RunID); !sameTypes(before, after) {
			t.Errorf("idempotent submit recorded events: %v → %v", before, after)
		}
		if len(fe.submitted) != 1 {
			t.Errorf("executor got %d runs, want 1", len(fe.submitted))
		}
	})

	t.Run("FiftyConcurrentSubmitsWithOneKey", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{}
		l := newLedger(t)
		// Separate dispatchers: the guarantee must come from the store.
		var wg sync.WaitGroup
		ids := make(chan string, 50)
		start := make(chan struct{})
		for range 50 {
			d := core.NewDispatcher(l, fe, core.DispatcherOptions{})
			t.Cleanup(func() { _ = d.Close() })
			wg.Add(1)
			go func() {
				defer wg.Done()
				spec := core.NewTask("once", nil)
				spec.IdempotencyKey = "the-one-key"
				<-start
				run, err := d.Submit(ctx(t), spec)
				if err != nil {
					t.Errorf("submit: %v", err)
				}
				ids <- run.RunID
			}()
		}
		close(start)
		wg.Wait()
		close(ids)
		var first string
		for id := range ids {
			if first == "" {
				first = id
			}
			if id != first || id == "" {
				t.Fatalf("submits returned different runs: %q and %q", first, id)
			}
		}
		page, err := l.ListRuns(ctx(t), core.RunFilter{Limit: core.MaxListLimit})
		if err != nil || len(page.Runs) != 1 {
			t.Fatalf("%d runs stored (%v), want 1", len(page.Runs), err)
		}
		if n := countEvents(t, l, first, core.EventCreated); n != 1 {
			t.Errorf("%d created events, want 1", n)
		}
		if len(fe.submitted) != 1 {
			t.Errorf("executor received %d runs, want 1", len(fe.submitted))
		}
	})

	t.Run("InvalidSpecsAreRefusedBeforeAnythingIsRecorded", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{}, core.MemoryExecutorOptions{})
		bad := []core.WorkSpec{
			{Kind: "job", Name: "x"},
			{Kind: core.KindTask},
			{Kind: core.KindTask, Name: "x", Priority: "urgent"},
			{Kind: core.KindStep, Name: "x", ParentRunID: "not-a-uuid"},
			{Kind: core.KindTask, Name: "x", Params: map[string]any{"ch": make(chan int)}},
		}
		for _, spec := range bad {
			if _, err := b.d.Submit(ctx(t), spec); !errors.Is(err, core.ErrInvalidSpec) {
				t.Errorf("%+v: %v, want ErrInvalidSpec", spec, err)
			}
		}
		if page, _ := b.ledger.ListRuns(ctx(t), core.RunFilter{}); len(page.Runs) != 0 {
			t.Errorf("invalid specs recorded %d runs", len(page.Runs))
		}
	})

	t.Run("MissingHandlerIsDeadLetteredAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{}, core.MemoryExecutorOptions{})
		run, err := b.d.SubmitTask(ctx(t), "nobody", nil)
		if !errors.Is(err, core.ErrHandlerMissing) {
			t.Fatalf("err %v, want ErrHandlerMissing", err)
		}
		if run.Status != core.StatusDeadLettered || run.ErrorType != "HandlerMissing" || !strings.Contains(run.Error, "task:nobody") {
			t.Errorf("run %s error_type=%s error=%q", run.Status, run.ErrorType, run.Error)
		}
		want := []core.EventType{core.EventCreated, core.EventQueued, core.EventFailed, core.EventDeadLettered}
		if got := eventTypes(t, b.ledger, run.RunID); !sameTypes(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})

	t.Run("HandlerPanicFailsTheRunNotTheProcess", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{DisableAutoRetry: true}, core.MemoryExecutorOptions{})
		b.registry.MustRegister(core.KindTask, "panics", func(context.Context, map[string]any) (any, error) {
			var m map[string]int
			m["x"]++ // nil map write
			return nil, nil
		})
		run, err := b.d.SubmitTask(ctx(t), "panics", nil)
		if err != nil {
			t.Fatal(err)
		}
		failed := waitStatus(t, b.ledger, run.RunID, core.StatusFailed)
		if failed.ErrorType != "Panic" || !strings.Contains(failed.Error, "nil map") {
			t.Errorf("error_type=%s error=%q", failed.ErrorType, failed.Error)
		}
		evs, _ := b.ledger.Events(ctx(t), run.RunID)
		stack, _ := evs[len(evs)-1].Data["stack"].(string)
		if !strings.Contains(stack, "goroutine") {
			t.Errorf("failed event carries no stack: %+v", evs[len(evs)-1].Data)
		}
	})

	t.Run("ManualRetry", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{DisableAutoRetry: true}, core.MemoryExecutorOptions{})
		var calls atomic.Int32
		b.registry.MustRegister(core.KindPipeline, "flaky", func(context.Context, map[string]any) (any, error) {
			if calls.Add(1) == 1 {
				return nil, &core.Failure{Type: "ValueError", Message: "bad row 7"}
			}
			return "fine", nil
		})
		spec := core.NewPipeline("flaky", map[string]any{"a": 1})
		spec.IdempotencyKey = "flaky-1"
		spec.CorrelationID = "corr"
		spec.Metadata = map[string]any{"feed_id": "0b7b7a36-55b8-4b8e-bb1c-1a4f3b8d9a01"}
		first, err := b.d.Submit(ctx(t), spec)
		if err != nil {
			t.Fatal(err)
		}
		failed := waitStatus(t, b.ledger, first.RunID, core.StatusFailed)
		if failed.ErrorType != "ValueError" || failed.Error != "bad row 7" {
			t.Errorf("failure recorded as %s: %s", failed.ErrorType, failed.Error)
		}
		second, err := b.d.Retry(ctx(t), first.RunID)
		if err != nil {
			t.Fatal(err)
		}
		if second.RunID == first.RunID || second.Attempt != 2 || second.RetryOfRunID != first.RunID ||
			second.Spec.TriggerSource != "retry" || second.Spec.IdempotencyKey != "" ||
			second.Spec.CorrelationID != "corr" || second.Spec.Metadata["feed_id"] != spec.Metadata["feed_id"] {
			t.Errorf("retry run %+v", second)
		}
		waitStatus(t, b.ledger, second.RunID, core.StatusCompleted)
		evs, _ := b.ledger.Events(ctx(t), first.RunID)
		lastEv := evs[len(evs)-1]
		if lastEv.Type != core.EventRetried || lastEv.Data["new_run_id"] != second.RunID {
			t.Errorf("old run's last event %+v, want retried {new_run_id: %s}", lastEv, second.RunID)
		}
		// Completed runs cannot be retried; the old run is left as it was.
		if _, err := b.d.Retry(ctx(t), second.RunID); !errors.Is(err, core.ErrIllegalTransition) {
			t.Errorf("retry of a completed run: %v, want ErrIllegalTransition", err)
		}
		if r, _ := b.ledger.GetRun(ctx(t), first.RunID); r.Status != core.StatusFailed {
			t.Errorf("old run is %s after retry, want failed", r.Status)
		}
		if _, err := b.d.Retry(ctx(t), core.NewRunID()); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("retry of a missing run: %v", err)
		}
	})

	t.Run("AutomaticRetryThenDeadLetter", func(t *testing.T) {
		t.Parallel()
		var delays []time.Duration
		var mu sync.Mutex
		backoff := func(attempt int, base time.Duration) time.Duration {
			mu.Lock()
			delays = append(delays, core.ExponentialBackoff(attempt, base))
			mu.Unlock()
			return 0
		}
		b := setup(t, newLedger, core.DispatcherOptions{Backoff: backoff}, core.MemoryExecutorOptions{})
		var calls atomic.Int32
		b.registry.MustRegister(core.KindTask, "always-fails", func(context.Context, map[string]any) (any, error) {
			calls.Add(1)
			return nil, errBoom
		})
		spec := core.NewTask("always-fails", nil)
		spec.MaxRetries = 2
		spec.RetryDelay = time.Second
		first, err := b.d.Submit(ctx(t), spec)
		if err != nil {
			t.Fatal(err)
		}
		// Attempts 1 and 2 fail and are retried; attempt 3 is dead-lettered.
		chain := []core.RunRecord{waitStatus(t, b.ledger, first.RunID, core.StatusFailed)}
		for len(chain) < 3 {
			prev := chain[len(chain)-1]
			waitFor(t, b.ledger, prev.RunID, "a retried event", func(core.RunRecord) bool {
				return countEvents(t, b.ledger, prev.RunID, core.EventRetried) == 1
			})
			evs, _ := b.ledger.Events(ctx(t), prev.RunID)
			newID, _ := evs[len(evs)-1].Data["new_run_id"].(string)
			want := core.StatusFailed
			if len(chain) == 2 {
				want = core.StatusDeadLettered
			}
			chain = append(chain, waitStatus(t, b.ledger, newID, want))
		}
		for i, r := range chain {
			if r.Attempt != i+1 {
				t.Errorf("run %d has attempt %d", i, r.Attempt)
			}
			if i > 0 && (r.RetryOfRunID != chain[i-1].RunID || r.Spec.TriggerSource != "retry") {
				t.Errorf("run %d: retry_of %s trigger %s", i, r.RetryOfRunID, r.Spec.TriggerSource)
			}
		}
		want := []core.EventType{core.EventCreated, core.EventQueued, core.EventStarted, core.EventFailed, core.EventRetryScheduled, core.EventRetried}
		if got := eventTypes(t, b.ledger, chain[0].RunID); !sameTypes(got, want) {
			t.Errorf("first run events %v, want %v", got, want)
		}
		last := eventTypes(t, b.ledger, chain[2].RunID)
		if last[len(last)-1] != core.EventDeadLettered {
			t.Errorf("last run events %v, want dead_lettered last", last)
		}
		time.Sleep(50 * time.Millisecond)
		if n := calls.Load(); n != 3 {
			t.Errorf("handler ran %d times, want 3 (1 + MaxRetries)", n)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(delays) != 2 || delays[0] < 500*time.Millisecond || delays[0] > time.Second || delays[1] < time.Second || delays[1] > 2*time.Second {
			t.Errorf("backoff delays %v, want [0.5s,1s] then [1s,2s]", delays)
		}
	})

	t.Run("AutomaticRetryRecovers", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{}, core.MemoryExecutorOptions{})
		var calls atomic.Int32
		b.registry.MustRegister(core.KindTask, "second-time-lucky", func(context.Context, map[string]any) (any, error) {
			if calls.Add(1) == 1 {
				return nil, errBoom
			}
			return "ok", nil
		})
		first, err := b.d.SubmitTask(ctx(t), "second-time-lucky", nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, b.ledger, first.RunID, "retried", func(core.RunRecord) bool {
			return countEvents(t, b.ledger, first.RunID, core.EventRetried) == 1
		})
		evs, _ := b.ledger.Events(ctx(t), first.RunID)
		retryID, _ := evs[len(evs)-1].Data["new_run_id"].(string)
		retry := waitStatus(t, b.ledger, retryID, core.StatusCompleted)
		if retry.Spec.IdempotencyKey != "retry-of:"+first.RunID {
			t.Errorf("automatic retry key %q", retry.Spec.IdempotencyKey)
		}
		if r, _ := b.ledger.GetRun(ctx(t), first.RunID); r.Status != core.StatusFailed {
			t.Errorf("first run %s, want failed", r.Status)
		}
	})

	t.Run("PermanentErrorsSkipRetries", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{}, core.MemoryExecutorOptions{})
		b.registry.MustRegister(core.KindTask, "bad-input", func(context.Context, map[string]any) (any, error) {
			return nil, core.PermanentError(errors.New("row 3 is not a date"))
		})
		run, err := b.d.SubmitTask(ctx(t), "bad-input", nil)
		if err != nil {
			t.Fatal(err)
		}
		dead := waitStatus(t, b.ledger, run.RunID, core.StatusDeadLettered)
		if dead.Attempt != 1 || countEvents(t, b.ledger, run.RunID, core.EventRetryScheduled) != 0 {
			t.Errorf("permanent failure was retried: %+v", dead)
		}
	})

	t.Run("ScheduledRetriesSurviveARestart", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{}
		l := newLedger(t)
		slow := func(int, time.Duration) time.Duration { return time.Hour }
		d1 := core.NewDispatcher(l, fe, core.DispatcherOptions{Backoff: slow})
		run, err := d1.SubmitTask(ctx(t), "remote", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d1.MarkStarted(ctx(t), run.RunID); err != nil {
			t.Fatal(err)
		}
		if _, err := d1.MarkFailed(ctx(t), run.RunID, errBoom); err != nil {
			t.Fatal(err)
		}
		_ = d1.Close() // the process that scheduled the retry stops

		// The next process finds the retry due (an hour has passed).
		d2 := core.NewDispatcher(l, fe, core.DispatcherOptions{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
		t.Cleanup(func() { _ = d2.Close() })
		n, err := d2.ResumeScheduledRetries(ctx(t))
		if err != nil || n != 1 {
			t.Fatalf("resumed %d, %v; want 1", n, err)
		}
		waitFor(t, l, run.RunID, "retried", func(core.RunRecord) bool {
			return countEvents(t, l, run.RunID, core.EventRetried) == 1
		})
		if n, _ := d2.ResumeScheduledRetries(ctx(t)); n != 0 {
			t.Errorf("a made retry was re-armed (%d)", n)
		}
	})

	t.Run("CancelARunningHandler", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{}, core.MemoryExecutorOptions{})
		started := make(chan struct{})
		stopped := make(chan error, 1)
		b.registry.MustRegister(core.KindTask, "long", func(ctx context.Context, _ map[string]any) (any, error) {
			close(started)
			<-ctx.Done()
			stopped <- ctx.Err()
			return nil, ctx.Err()
		})
		run, err := b.d.SubmitTask(ctx(t), "long", nil)
		if err != nil {
			t.Fatal(err)
		}
		<-started
		waitStatus(t, b.ledger, run.RunID, core.StatusRunning)
		cancelled, err := b.d.Cancel(ctx(t), run.RunID)
		if err != nil || cancelled.Status != core.StatusCancelled || cancelled.CompletedAt == nil {
			t.Fatalf("cancel: %+v, %v", cancelled, err)
		}
		select {
		case err := <-stopped:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("handler context ended with %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the handler's context was not cancelled")
		}
		time.Sleep(50 * time.Millisecond)
		if r, _ := b.ledger.GetRun(ctx(t), run.RunID); r.Status != core.StatusCancelled {
			t.Errorf("after the handler returned the run is %s, want cancelled", r.Status)
		}
		if _, err := b.d.Cancel(ctx(t), run.RunID); !errors.Is(err, core.ErrIllegalTransition) {
			t.Errorf("second cancel: %v, want ErrIllegalTransition", err)
		}
	})

	t.Run("CancelAQueuedRemoteRun", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{}
		l := newLedger(t)
		d := core.NewDispatcher(l, fe, core.DispatcherOptions{})
		t.Cleanup(func() { _ = d.Close() })
		run, err := d.SubmitTask(ctx(t), "remote", nil)
		if err != nil || run.Status != core.StatusQueued || run.ExternalRef != "ext-"+run.RunID || run.ExecutorName != "fake" {
			t.Fatalf("submit: %+v, %v", run, err)
		}
		if _, err := d.Cancel(ctx(t), run.RunID); err != nil {
			t.Fatal(err)
		}
		if got := fe.cancels(); len(got) != 1 || got[0] != run.ExternalRef {
			t.Errorf("executor cancels %v, want [%s]", got, run.ExternalRef)
		}
		// The worker reporting late cannot resurrect it.
		if _, err := d.MarkStarted(ctx(t), run.RunID); !errors.Is(err, core.ErrIllegalTransition) {
			t.Errorf("start after cancel: %v", err)
		}
		if _, err := d.MarkCompleted(ctx(t), run.RunID, 1); !errors.Is(err, core.ErrIllegalTransition) {
			t.Errorf("complete after cancel: %v", err)
		}
		want := []core.EventType{core.EventCreated, core.EventQueued, core.EventCancelled}
		if got := eventTypes(t, l, run.RunID); !sameTypes(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})

	t.Run("ExecutorCancelsARunItself", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{}
		l := newLedger(t)
		d := core.NewDispatcher(l, fe, core.DispatcherOptions{})
		t.Cleanup(func() { _ = d.Close() })
		run, err := d.SubmitTask(ctx(t), "remote", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.MarkStarted(ctx(t), run.RunID); err != nil {
			t.Fatal(err)
		}
		got, err := d.MarkCancelled(ctx(t), run.RunID, "revoked: expired")
		if err != nil || got.Status != core.StatusCancelled || got.CompletedAt == nil {
			t.Fatalf("MarkCancelled: %+v, %v", got, err)
		}
		if len(fe.cancels()) != 0 {
			t.Error("MarkCancelled asked the executor to cancel: it is the executor reporting")
		}
		evs, _ := l.Events(ctx(t), run.RunID)
		last := evs[len(evs)-1]
		if last.Type != core.EventCancelled || last.Data["reason"] != "revoked: expired" || last.Data["previous_status"] != "running" {
			t.Errorf("cancelled event %+v", last)
		}
		if _, err := d.MarkCancelled(ctx(t), run.RunID, "again"); !errors.Is(err, core.ErrIllegalTransition) {
			t.Errorf("cancelling a cancelled run: %v", err)
		}
	})

	t.Run("WorkerCallbacksFollowTheStateMachine", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{}
		l := newLedger(t)
		d := core.NewDispatcher(l, fe, core.DispatcherOptions{DisableAutoRetry: true})
		t.Cleanup(func() { _ = d.Close() })
		run, err := d.SubmitPipeline(ctx(t), "p", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.RecordProgress(ctx(t), run.RunID, 10, "too early"); !errors.Is(err, core.ErrConcurrencyConflict) {
			t.Errorf("progress while queued: %v", err)
		}
		if err := d.Heartbeat(ctx(t), run.RunID); err != nil {
			t.Errorf("heartbeat while queued: %v", err)
		}
		if _, err := d.MarkStarted(ctx(t), run.RunID); err != nil {
			t.Fatal(err)
		}
		if _, err := d.MarkStarted(ctx(t), run.RunID); !errors.Is(err, core.ErrIllegalTransition) {
			t.Errorf("second start: %v", err)
		}
		if err := d.RecordProgress(ctx(t), run.RunID, 50, "half"); err != nil {
			t.Error(err)
		}
		done, err := d.MarkCompleted(ctx(t), run.RunID, json.RawMessage(`{"n": 12345678901234567890}`))
		if err != nil || done.Status != core.StatusCompleted {
			t.Fatalf("complete: %v", err)
		}
		if !strings.Contains(string(done.Result), "12345678901234567890") {
			t.Errorf("result lost precision: %s", done.Result)
		}
		if _, err := d.MarkFailed(ctx(t), run.RunID, errBoom); !errors.Is(err, core.ErrIllegalTransition) {
			t.Errorf("fail after complete: %v", err)
		}
		if err := d.Heartbeat(ctx(t), run.RunID); !errors.Is(err, core.ErrConcurrencyConflict) {
			t.Errorf("heartbeat after complete: %v", err)
		}
		want := []core.EventType{core.EventCreated, core.EventQueued, core.EventHeartbeat, core.EventStarted, core.EventProgress, core.EventCompleted}
		if got := eventTypes(t, l, run.RunID); !sameTypes(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})

	t.Run("ExecutorRefusalIsRecorded", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{refuse: errors.New("broker unreachable")}
		l := newLedger(t)
		d := core.NewDispatcher(l, fe, core.DispatcherOptions{DisableAutoRetry: true})
		t.Cleanup(func() { _ = d.Close() })
		run, err := d.SubmitTask(ctx(t), "t", nil)
		if err == nil || !strings.Contains(err.Error(), "broker unreachable") {
			t.Fatalf("err %v", err)
		}
		if run.Status != core.StatusFailed || run.Error != "broker unreachable" || run.ExecutorName != "fake" || run.ExternalRef != "" {
			t.Errorf("run %+v", run)
		}
		want := []core.EventType{core.EventCreated, core.EventQueued, core.EventFailed}
		if got := eventTypes(t, l, run.RunID); !sameTypes(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})

	t.Run("ReservedRefsAreRecordedBeforeTheHandOver", func(t *testing.T) {
		t.Parallel()
		l := newLedger(t)
		re := &reservingExecutor{ledger: l}
		d := core.NewDispatcher(l, re, core.DispatcherOptions{DisableAutoRetry: true})
		t.Cleanup(func() { _ = d.Close() })
		run, err := d.SubmitPipeline(ctx(t), "ingest", nil)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != core.StatusQueued || run.ExternalRef != "reserved-"+run.RunID || run.ExecutorName != "reserving" {
			t.Errorf("run %+v", run)
		}
		batch, err := d.SubmitMany(ctx(t), []core.WorkSpec{core.NewTask("a", nil), core.NewTask("b", nil)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range append(batch, run) {
			if got := eventTypes(t, l, r.RunID); !sameTypes(got, []core.EventType{core.EventCreated, core.EventQueued}) {
				t.Errorf("run %s events %v", r.RunID, got)
			}
		}
		if errs := re.errors(); len(errs) > 0 {
			t.Errorf("at hand-over time the ledger did not hold the runs queued: %v", errs)
		}
		if n := re.count(); n != 3 {
			t.Errorf("executor saw %d hand-overs, want 3", n)
		}

		// A refusal is the table's queued → failed edge: one queued event.
		re.refuse(errors.New("broker unreachable"))
		refused, err := d.SubmitTask(ctx(t), "c", nil)
		if err == nil || refused.Status != core.StatusFailed {
			t.Fatalf("refused run %s, %v", refused.Status, err)
		}
		want := []core.EventType{core.EventCreated, core.EventQueued, core.EventFailed}
		if got := eventTypes(t, l, refused.RunID); !sameTypes(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})

	t.Run("LaneConcurrencyIsBounded", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{}, core.MemoryExecutorOptions{LaneConcurrency: map[string]int{"narrow": 2}, DefaultConcurrency: 8})
		var running, peak atomic.Int32
		release := make(chan struct{})
		b.registry.MustRegister(core.KindTask, "hold", func(ctx context.Context, _ map[string]any) (any, error) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-release
			running.Add(-1)
			return nil, nil
		})
		var ids []string
		for range 8 {
			spec := core.NewTask("hold", nil)
			spec.Lane = "narrow"
			run, err := b.d.Submit(ctx(t), spec)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, run.RunID)
		}
		// The lane fills up to its bound, and stays there while the rest wait.
		deadline := time.Now().Add(10 * time.Second)
		for running.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(150 * time.Millisecond)
		if p := peak.Load(); p != 2 {
			t.Errorf("peak concurrency %d in a lane of 2", p)
		}
		close(release)
		for _, id := range ids {
			waitStatus(t, b.ledger, id, core.StatusCompleted)
		}
	})

	t.Run("FullLaneRefusesWithBackpressure", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newLedger, core.DispatcherOptions{DisableAutoRetry: true}, core.MemoryExecutorOptions{DefaultConcurrency: 1, QueueSize: 1})
		release := make(chan struct{})
		b.registry.MustRegister(core.KindTask, "hold", func(context.Context, map[string]any) (any, error) {
			<-release
			return nil, nil
		})
		defer close(release)
		first, _ := b.d.SubmitTask(ctx(t), "hold", nil)
		waitStatus(t, b.ledger, first.RunID, core.StatusRunning)
		if _, err := b.d.SubmitTask(ctx(t), "hold", nil); err != nil { // waits in the queue
			t.Fatal(err)
		}
		third, err := b.d.SubmitTask(ctx(t), "hold", nil)
		if !errors.Is(err, core.ErrBackpressure) || third.Status != core.StatusFailed || third.ErrorType != "Backpressure" {
			t.Errorf("third submit: %s %s %v; want failed Backpressure", third.Status, third.ErrorType, err)
		}
	})

	t.Run("SubmitMany", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{}
		l := newLedger(t)
		d := core.NewDispatcher(l, fe, core.DispatcherOptions{})
		t.Cleanup(func() { _ = d.Close() })
		prior := core.NewTask("batch", nil)
		prior.IdempotencyKey = "k-0"
		existing, err := d.Submit(ctx(t), prior)
		if err != nil {
			t.Fatal(err)
		}
		var specs []core.WorkSpec
		for i := range 120 {
			s := core.NewTask("batch", map[string]any{"i": i})
			if i%40 == 0 {
				s.IdempotencyKey = "k-0" // known before the batch
			}
			specs = append(specs, s)
		}
		runs, err := d.SubmitMany(ctx(t), specs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range runs {
			if i%40 == 0 {
				if r.RunID != existing.RunID {
					t.Errorf("run %d: %s, want the existing %s", i, r.RunID, existing.RunID)
				}
				continue
			}
			if r.Status != core.StatusQueued || r.ExternalRef != "ext-"+r.RunID {
				t.Errorf("run %d: %s ref %q", i, r.Status, r.ExternalRef)
			}
			if got := eventTypes(t, l, r.RunID); !sameTypes(got, []core.EventType{core.EventCreated, core.EventQueued}) {
				t.Errorf("run %d events %v", i, got)
			}
		}
		page, _ := l.ListRuns(ctx(t), core.RunFilter{Limit: core.MaxListLimit})
		if len(page.Runs) != 118 {
			t.Errorf("%d runs stored, want 118 (117 new + 1 existing)", len(page.Runs))
		}
		if _, err := d.SubmitMany(ctx(t), []core.WorkSpec{core.NewTask("ok", nil), {Kind: core.KindTask}}); !errors.Is(err, core.ErrInvalidSpec) {
			t.Errorf("batch with an invalid spec: %v", err)
		}
	})

	t.Run("StepsShareTheirParentsCorrelation", func(t *testing.T) {
		t.Parallel()
		fe := &fakeExecutor{}
		l := newLedger(t)
		d := core.NewDispatcher(l, fe, core.DispatcherOptions{})
		t.Cleanup(func() { _ = d.Close() })
		wf, err := d.SubmitWorkflow(ctx(t), "daily", nil)
		if err != nil {
			t.Fatal(err)
		}
		var stepIDs []string
		for _, name := range []string{"load", "validate", "publish"} {
			step, err := d.SubmitStep(ctx(t), name, nil, wf.RunID)
			if err != nil {
				t.Fatal(err)
			}
			if step.Spec.ParentRunID != wf.RunID || step.Spec.CorrelationID != wf.RunID || step.Spec.Kind != core.KindStep {
				t.Errorf("step %+v", step.Spec)
			}
			stepIDs = append(stepIDs, step.RunID)
		}
		page, err := d.Children(ctx(t), wf.RunID, core.RunFilter{})
		if err != nil || len(page.Runs) != 3 {
			t.Fatalf("children: %d, %v", len(page.Runs), err)
		}
		for i, r := range page.Runs { // newest first
			if r.RunID != stepIDs[2-i] {
				t.Errorf("child %d is %s, want %s", i, r.RunID, stepIDs[2-i])
			}
		}
	})
}
