package celerybridge

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/internal/celerytest"
	"github.com/spinecore/spine-go/internal/testsvc"
)

// executorBundle is a dispatcher whose runs go to a real Celery 5.2.6 worker.
type executorBundle struct {
	rdb     *redis.Client
	exec    *Executor
	d       *core.Dispatcher
	ledger  core.Ledger
	results *ResultBackend
}

func mustRedisOptions(t *testing.T, url string) *redis.Options {
	t.Helper()
	opts, err := ParseBrokerURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

func newExecutorBundle(t *testing.T, url string, opts ExecutorOptions) executorBundle {
	t.Helper()
	rdb := redis.NewClient(mustRedisOptions(t, url))
	t.Cleanup(func() { _ = rdb.Close() })
	results := NewResultBackend(rdb, ResultBackendOptions{})
	ex := NewExecutor(NewTransport(rdb, TransportOptions{}), results, opts)
	ledger := core.NewMemoryLedger()
	d := core.NewDispatcher(ledger, ex, core.DispatcherOptions{DisableAutoRetry: true})
	t.Cleanup(func() { _ = d.Close() })
	return executorBundle{rdb: rdb, exec: ex, d: d, ledger: ledger, results: results}
}

func (b executorBundle) follow(t *testing.T, run core.RunRecord) core.RunRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := b.exec.Follow(ctx, b.d, run.RunID, run.ExternalRef)
	if err != nil {
		t.Fatalf("follow run %s: %v", run.RunID, err)
	}
	return got
}

// Runs submitted through core's dispatcher with the Celery executor are run
// by a real Celery 5.2.6 worker, and their outcome comes back to the ledger.
func TestExecutorWithARealCeleryWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Celery worker")
	}
	url := testsvc.NewRedisDB(t)
	celerytest.StartWorker(t, url, celerytest.WorkerOptions{Module: "executor_worker",
		Queues: []string{"default", "realtime", "high", "low", "slow", "backfill", "normal"}})
	ctx := context.Background()
	b := newExecutorBundle(t, url, ExecutorOptions{})

	t.Run("CompletesWithTheResult", func(t *testing.T) {
		spec := core.NewTask("echo", map[string]any{"big": json.Number("123456789012345678901234567890"), "text": "naïve ✓"})
		spec.IdempotencyKey = "echo-1"
		spec.CorrelationID = "corr-7"
		spec.Metadata = map[string]any{"feed": "sec"}
		run, err := b.d.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != core.StatusQueued || run.ExecutorName != "celery" || len(run.ExternalRef) != 36 {
			t.Fatalf("submitted run %+v", run)
		}
		done := b.follow(t, run)
		if done.Status != core.StatusCompleted {
			t.Fatalf("run %s: %s", done.Status, done.Error)
		}
		var got struct {
			Name   string                     `json:"name"`
			Params map[string]json.RawMessage `json:"params"`
			Kwargs map[string]any             `json:"kwargs"`
			Queue  string                     `json:"queue"`
		}
		if err := json.Unmarshal(done.Result, &got); err != nil {
			t.Fatal(err)
		}
		if got.Name != "echo" || string(got.Params["big"]) != "123456789012345678901234567890" || got.Queue != "default" ||
			got.Kwargs["idempotency_key"] != "echo-1" || got.Kwargs["correlation_id"] != "corr-7" ||
			got.Kwargs["parent_run_id"] != nil || got.Kwargs["metadata"].(map[string]any)["feed"] != "sec" {
			t.Errorf("the worker received %s", done.Result)
		}
	})

	t.Run("FailsWithThePythonException", func(t *testing.T) {
		run, err := b.d.SubmitTask(ctx, "fail", map[string]any{"msg": "row 7 is not a date"})
		if err != nil {
			t.Fatal(err)
		}
		done := b.follow(t, run)
		if done.Status != core.StatusFailed || done.ErrorType != "ValueError" || !strings.Contains(done.Error, "row 7 is not a date") {
			t.Errorf("run %s error_type=%s error=%q", done.Status, done.ErrorType, done.Error)
		}
	})

	t.Run("QueueFromLaneOrPriority", func(t *testing.T) {
		cases := []struct {
			lane     string
			priority core.Priority
			queue    string
		}{{"", core.PriorityHigh, "high"}, {"", core.PrioritySlow, "slow"}, {"backfill", core.PriorityRealtime, "backfill"}}
		for _, c := range cases {
			spec := core.NewPipeline("route", nil)
			spec.Lane, spec.Priority = c.lane, c.priority
			run, err := b.d.Submit(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			done := b.follow(t, run)
			var got struct{ Queue string }
			_ = json.Unmarshal(done.Result, &got)
			if done.Status != core.StatusCompleted || got.Queue != c.queue {
				t.Errorf("lane %q priority %s: %s via queue %q, want %q", c.lane, c.priority, done.Status, got.Queue, c.queue)
			}
		}
	})

	t.Run("CancelRevokesTheTask", func(t *testing.T) {
		// A task held by the worker until its ETA, as the revoke finds it;
		// Cancel broadcasts the revoke and the worker discards the task.
		victim, err := NewTaskMessage("spine.execute.task", []any{"victim", map[string]any{}}, nil,
			TaskOptions{Queue: "default", Countdown: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := victim.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.exec.transport.Publish(ctx, "", "default", raw); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // the worker receives it and holds it
		if err := b.exec.Cancel(ctx, victim.Headers.ID); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		res, err := b.results.Wait(wctx, victim.Headers.ID, 0)
		if err != nil || res.State != StateRevoked {
			t.Fatalf("the revoked task's state: %v, %v", res, err)
		}
		time.Sleep(2 * time.Second) // past its ETA
		if ran, _ := b.rdb.HExists(ctx, "check:ran", victim.Headers.ID).Result(); ran {
			t.Error("the worker ran a revoked task")
		}
	})

	t.Run("ETAIsHonoured", func(t *testing.T) {
		m, err := NewTaskMessage("spine.execute.task", []any{"on-time", map[string]any{}}, nil,
			TaskOptions{Queue: "default", Countdown: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := m.Encode()
		sent := time.Now()
		if err := b.exec.transport.Publish(ctx, "", "default", raw); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if res, err := b.results.Wait(wctx, m.Headers.ID, 0); err != nil || res.State != StateSuccess {
			t.Fatalf("result %v, %v", res, err)
		}
		rec, err := b.rdb.HGet(ctx, "check:ran", m.Headers.ID).Result()
		if err != nil {
			t.Fatal(err)
		}
		var ran struct{ At float64 }
		_ = json.Unmarshal([]byte(rec), &ran)
		at := time.UnixMicro(int64(ran.At * 1e6))
		if early := sent.Add(2 * time.Second).Sub(at); early > 10*time.Millisecond {
			t.Errorf("the task ran %s before its ETA", early)
		}
	})

	t.Run("ExpiredTaskIsRevokedUnrun", func(t *testing.T) {
		m, err := NewTaskMessage("spine.execute.task", []any{"too-late", map[string]any{}}, nil,
			TaskOptions{Queue: "default", Expires: time.Now().Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := m.Encode()
		if err := b.exec.transport.Publish(ctx, "", "default", raw); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		res, err := b.results.Wait(wctx, m.Headers.ID, 0)
		if err != nil || res.State != StateRevoked {
			t.Fatalf("an expired task: %v, %v; want REVOKED", res, err)
		}
		if ran, _ := b.rdb.HExists(ctx, "check:ran", m.Headers.ID).Result(); ran {
			t.Error("the worker ran an expired task")
		}
	})

	t.Run("FollowReportsARevokedTaskAsCancelled", func(t *testing.T) {
		run, err := b.d.SubmitTask(ctx, "never-run", nil)
		if err != nil {
			t.Fatal(err)
		}
		// Revoked outside the dispatcher, as an operator would.
		if err := b.results.StoreRevoked(ctx, run.ExternalRef, "revoked by an operator", StoreMeta{}); err != nil {
			t.Fatal(err)
		}
		done := b.follow(t, run)
		if done.Status != core.StatusCancelled {
			t.Errorf("run %s, want cancelled", done.Status)
		}
	})

	t.Run("CaptureSpineRunPipeline", func(t *testing.T) {
		cs := newExecutorBundle(t, url, ExecutorOptions{CaptureSpine: true})
		spec := core.NewPipeline("rss_ingest", nil)
		spec.Lane = "backfill"
		run, err := cs.d.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		done := cs.follow(t, run)
		var got struct {
			ExecutionID string `json:"execution_id"`
			Queue       string `json:"queue"`
		}
		_ = json.Unmarshal(done.Result, &got)
		if done.Status != core.StatusCompleted || got.ExecutionID != run.RunID || got.Queue != "backfill" {
			t.Errorf("run_pipeline got %s (%s)", done.Result, done.Status)
		}
	})

	t.Run("ProtocolOne", func(t *testing.T) {
		v1 := newExecutorBundle(t, url, ExecutorOptions{ProtocolV1: true})
		run, err := v1.d.SubmitTask(ctx, "old-estate", map[string]any{"n": 1})
		if err != nil {
			t.Fatal(err)
		}
		if done := v1.follow(t, run); done.Status != core.StatusCompleted {
			t.Errorf("protocol 1 run %s: %s", done.Status, done.Error)
		}
	})
}

func TestRunStatusOfCeleryStates(t *testing.T) {
	t.Parallel()
	want := map[ResultState]core.RunStatus{
		StatePending: core.StatusQueued, StateReceived: core.StatusQueued, StateRetry: core.StatusQueued,
		StateStarted: core.StatusRunning, StateSuccess: core.StatusCompleted, StateFailure: core.StatusFailed,
		StateRejected: core.StatusFailed, StateRevoked: core.StatusCancelled, "IGNORED": core.StatusQueued,
	}
	for s, w := range want {
		if got := RunStatusOf(s); got != w {
			t.Errorf("%s → %s, want %s", s, got, w)
		}
	}
}
