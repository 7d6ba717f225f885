package entityspine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/spinecore/spine-go/adapters/entityspine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// A RefreshResult as entity-spine ships it (dataclasses.asdict, then
// json.dumps(default=str)) decodes by its fields; the result JSON a run
// records adds what Python derives.
func ExampleDecodeRefreshResult() {
	shipped := `{"source": "sec-tickers", "started_at": "2026-01-15 06:00:00.125000+00:00",
		"completed_at": "2026-01-15 06:00:45.325000+00:00", "records_fetched": 10412, "new_entities": 12,
		"new_claims": 19, "updated_claims": 0, "skipped_duplicates": 10391,
		"errors": ["Record error: 'cik'", "Record error: ticker 'BRK.A' has no exchange"]}`
	r, err := entityspine.DecodeRefreshResult([]byte(shipped))
	if err != nil {
		log.Fatal(err)
	}
	took, _ := r.Duration()
	fmt.Println(r.Shape, r.Source, r.RecordsFetched, "fetched,", len(r.Errors), "errors, took", took)
	fmt.Println("fails the run:", r.Err() != nil)
	fmt.Printf("derived: duration_seconds %s, success_rate %s\n", r.Extra["duration_seconds"], r.Extra["success_rate"])
	// Output:
	// shipped sec-tickers 10412 fetched, 2 errors, took 45.2s
	// fails the run: false
	// derived: duration_seconds 45.2, success_rate 0.9998079139454475
}

// What a gateway author writes: wrap the Go func that refreshes, register it
// under its catalog name, submit the catalog's spec. The run records the
// result, EntitySpine's duration and a summary as its last progress event.
func ExampleHandler() {
	registry := &core.Registry{}
	ledger := core.NewMemoryLedger()
	executor := core.NewMemoryExecutor(registry, core.MemoryExecutorOptions{})
	dispatcher := core.NewDispatcher(ledger, executor, core.DispatcherOptions{})
	defer executor.Close()
	defer dispatcher.Close()

	refreshSEC := func(ctx context.Context, params map[string]any) (entityspine.RefreshResult, error) {
		started := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
		// ... fetch company_tickers.json, resolve, store; force is params["force"] ...
		return entityspine.RefreshResult{Source: "sec-tickers", StartedAt: started, CompletedAt: started.Add(42 * time.Second),
			RecordsFetched: 10412, NewEntities: 12, NewClaims: 12, SkippedDuplicates: 10400}, nil
	}
	if err := entityspine.Register(registry, "refresh_sec", entityspine.Handler(refreshSEC)); err != nil {
		log.Fatal(err)
	}
	spec, err := entityspine.Spec("refresh_sec", nil)
	if err != nil {
		log.Fatal(err)
	}
	run, err := dispatcher.Submit(context.Background(), spec)
	if err != nil {
		log.Fatal(err)
	}
	for !run.Status.Terminal() && run.Status != core.StatusFailed {
		time.Sleep(time.Millisecond)
		if run, err = dispatcher.GetRun(context.Background(), run.RunID); err != nil {
			log.Fatal(err)
		}
	}
	var result map[string]any
	if err := json.Unmarshal(run.Result, &result); err != nil {
		log.Fatal(err)
	}
	events, err := dispatcher.Events(context.Background(), run.RunID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(spec.HandlerKey(), spec.Params, run.Status)
	fmt.Println("duration_seconds:", result["duration_seconds"], "success_rate:", result["success_rate"])
	for _, ev := range events {
		if ev.Type == core.EventProgress {
			fmt.Println("progress:", ev.Data["message"])
		}
	}
	// Output:
	// task:refresh_sec map[force:false] completed
	// duration_seconds: 42 success_rate: 1
	// progress: refresh of "sec-tickers": records_fetched=10412 new_entities=12 new_claims=12 updated_claims=0 skipped_duplicates=10400 errors=0
}

// A beat entry's message, as Celery beat publishes it for
// {"task": "entityspine.tasks.dispatch_refresh", "args": ("refresh_sec", {})},
// becomes the catalog's WorkSpec, triggered by the schedule.
func ExampleBeatSpec() {
	m, err := celerybridge.NewTaskMessage(entityspine.DispatchRefreshTask,
		[]any{"multi_source_load", map[string]any{"sources": []any{"thomson", "bloomberg", "factset"}}}, nil,
		celerybridge.TaskOptions{ID: "6c7e2b1a-0d4f-4e8a-9b3c-2f1e0d9c8b7a"})
	if err != nil {
		log.Fatal(err)
	}
	wire, err := m.Encode() // what sits on the Redis list
	if err != nil {
		log.Fatal(err)
	}
	task, err := celerybridge.DecodeTask(wire)
	if err != nil {
		log.Fatal(err)
	}
	spec, err := entityspine.BeatSpec(task)
	if err != nil {
		log.Fatal(err) // dead-letter the message with err as the reason
	}
	fmt.Println(spec.HandlerKey(), spec.Params)
	fmt.Println(spec.TriggerSource, spec.IdempotencyKey)
	// Output:
	// pipeline:multi_source_load map[sources:[thomson bloomberg factset]]
	// schedule celery:6c7e2b1a-0d4f-4e8a-9b3c-2f1e0d9c8b7a
}
