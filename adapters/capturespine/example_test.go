package capturespine_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// A gateway reads an execution as Capture-Spine's API writes it and works
// with it as a spine-core RunRecord; what it writes back is the same row.
func Example_executionAsRunRecord() {
	in := `{"execution_id": "6f1c2a8e-0d4b-4f7e-9a51-3c2d1e0f9a8b", "pipeline_name": "capture_feed",
		"params": {"feed_url": "https://news.example.com/feed.xml"}, "lane": "realtime",
		"trigger_source": "webhook", "status": "running", "backend_task_id": "c0ffee00-task",
		"feed_id": "0b3e1f6c-9a2d-4c8e-b7f1-5d6a4e3c2b1a", "retry_count": 1, "result": null, "error": null,
		"created_at": "2025-06-01T12:00:00+00:00", "started_at": "2025-06-01T12:00:02+00:00", "completed_at": null}`
	var e capturespine.Execution
	if err := json.Unmarshal([]byte(in), &e); err != nil {
		panic(err)
	}
	run, err := capturespine.ToRunRecord(e)
	if err != nil {
		panic(err)
	}
	fmt.Println(run.Spec.Kind, run.Spec.Name, run.Status, "attempt", run.Attempt)
	fmt.Println("priority", run.Spec.Priority, "external_ref", run.ExternalRef, "feed", run.Spec.Metadata["feed_id"])

	back, err := capturespine.FromRunRecord(run)
	if err != nil {
		panic(err)
	}
	fmt.Println("same row:", back.ExecutionID == e.ExecutionID && *back.FeedID == *e.FeedID && back.RetryCount == 1)
	// Output:
	// pipeline capture_feed running attempt 2
	// priority realtime external_ref c0ffee00-task feed 0b3e1f6c-9a2d-4c8e-b7f1-5d6a4e3c2b1a
	// same row: true
}

// The side-car turns a call of a bypass task into the pipeline run that
// replaces it; an operator's catalog file adds tasks without a rebuild.
func ExampleCatalog_WorkSpec() {
	catalog, err := capturespine.LoadCatalog(strings.NewReader(
		`{"tasks": [{"task": "app.tasks.reports.weekly_digest", "pipeline": "weekly_digest", "args": ["team"]}]}`))
	if err != nil {
		panic(err)
	}
	spec, err := catalog.WorkSpec("app.tasks.backup.run_backup_for_user",
		[]any{"e07587e9-976e-4d06-be63-566f2b27b4d3"}, map[string]any{"include_attachments": true})
	if err != nil {
		panic(err)
	}
	params, _ := json.Marshal(spec.Params)
	fmt.Println(spec.HandlerKey(), string(params))

	spec, _ = catalog.WorkSpec("app.tasks.reports.weekly_digest", []any{"search"}, nil)
	fmt.Println(spec.HandlerKey(), spec.Params["team"])

	_, err = catalog.WorkSpec("app.tasks.unknown", nil, nil)
	fmt.Println(err != nil)
	// Output:
	// pipeline:backup {"include_attachments":true,"user_id":"e07587e9-976e-4d06-be63-566f2b27b4d3"}
	// pipeline:weekly_digest search
	// true
}

// Phase 3 migrates each legacy job to the execution with a deterministic id.
func ExampleJobMapping_Execution() {
	queue, task := "backups", "5d0c6a1e-task"
	job := capturespine.Job{ID: 42, JobType: "backup", Status: "success", CeleryTaskID: &task, Queue: &queue,
		Payload: json.RawMessage(`{"args": ["u-1"], "kwargs": {}}`), Attempts: 1,
		CreatedAt: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2025, 6, 1, 12, 5, 0, 0, time.UTC)}
	e, err := capturespine.DefaultJobMapping().Execution(job)
	if err != nil {
		panic(err)
	}
	fmt.Println(e.ExecutionID == capturespine.JobExecutionID(42), e.PipelineName, e.Status, e.Lane, *e.BackendTaskID)
	fmt.Println(e.Metadata["legacy_job_id"], e.Metadata["legacy_status"])
	// Output:
	// true backup completed backups 5d0c6a1e-task
	// 42 success
}
