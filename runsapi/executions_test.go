package runsapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
)

type executionPage struct {
	Executions []json.RawMessage `json:"executions"`
	NextCursor *string           `json:"next_cursor"`
}

// The executions view shows each run as capturespine.FromRunRecord makes
// it, filtered and paged like the runs.
func TestExecutionsView(t *testing.T) {
	t.Parallel()
	const feed = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	eachLedger(t, func(t *testing.T, b bundle) {
		ctx := context.Background()
		fed := b.submit(t, `{"kind":"pipeline","name":"rss_ingest","lane":"backfill","metadata":{"feed_id":"`+feed+`"}}`)
		if _, err := b.d.MarkStarted(ctx, fed.RunID); err != nil {
			t.Fatal(err)
		}
		if _, err := b.d.MarkCompleted(ctx, fed.RunID, map[string]any{"items": 12}); err != nil {
			t.Fatal(err)
		}
		plain := b.submit(t, `{"kind":"pipeline","name":"rss_ingest"}`)
		task := b.submit(t, `{"kind":"task","name":"refresh_sec","max_retries":0}`)
		if _, err := b.d.MarkFailed(ctx, task.RunID, errors.New("SEC said 429")); err != nil {
			t.Fatal(err)
		}
		retry := decodeRun(t, b.ok(t, "POST", "/api/v1/runs/"+task.RunID+"/retry", ""))

		// rendered is what FromRunRecord makes of the run as it stands.
		rendered := func(id string) []byte {
			run, err := b.d.GetRun(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			e, err := capturespine.FromRunRecord(run)
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}

		var all executionPage
		if err := json.Unmarshal(b.ok(t, "GET", "/api/v1/executions", ""), &all); err != nil {
			t.Fatal(err)
		}
		wantOrder := []string{retry.RunID, task.RunID, plain.RunID, fed.RunID}
		if len(all.Executions) != len(wantOrder) || all.NextCursor != nil {
			t.Fatalf("%d executions, cursor %v", len(all.Executions), all.NextCursor)
		}
		for i, raw := range all.Executions {
			if want := rendered(wantOrder[i]); !bytes.Equal(raw, want) {
				t.Errorf("execution %d\n got %s\nwant %s", i, raw, want)
			}
			one := b.ok(t, "GET", "/api/v1/executions/"+wantOrder[i], "")
			if !bytes.Equal(bytes.TrimSpace(one), raw) {
				t.Errorf("GET one\n got %s\nwant %s", one, raw)
			}
		}

		var e map[string]any
		if err := json.Unmarshal(all.Executions[3], &e); err != nil {
			t.Fatal(err)
		}
		if e["execution_id"] != fed.RunID || e["pipeline_name"] != "rss_ingest" || e["lane"] != "backfill" || e["feed_id"] != feed ||
			e["backend_task_id"] != fed.ExternalRef || e["retry_count"] != 0.0 || e["status"] != "completed" {
			t.Errorf("execution columns %v", e)
		}
		if err := json.Unmarshal(all.Executions[0], &e); err != nil {
			t.Fatal(err)
		}
		if e["retry_count"] != 1.0 || e["retry_of_run_id"] != task.RunID {
			t.Errorf("retry as an execution %v", e)
		}

		for _, tc := range []struct {
			query string
			want  int
		}{
			{"pipeline_name=rss_ingest", 2},
			{"pipeline=rss_ingest", 2},
			{"status=completed", 1},
			{"status=failed,dead_lettered", 1},
			{"kind=task", 2},
			{"limit=3", 3},
		} {
			var p executionPage
			if err := json.Unmarshal(b.ok(t, "GET", "/api/v1/executions?"+tc.query, ""), &p); err != nil {
				t.Fatal(err)
			}
			if len(p.Executions) != tc.want {
				t.Errorf("%s: %d executions, want %d", tc.query, len(p.Executions), tc.want)
			}
		}

		for _, tc := range []struct {
			target string
			status int
			code   string
		}{
			{"/api/v1/executions?lane=backfill", 400, "INVALID_INPUT"},
			{"/api/v1/executions?feed_id=" + feed, 400, "INVALID_INPUT"},
			{"/api/v1/executions?status=done", 400, "INVALID_INPUT"},
			{"/api/v1/executions?limit=1000", 422, "VALIDATION_FAILED"},
			{"/api/v1/executions/" + core.NewRunID(), 404, "NOT_FOUND"},
			{"/api/v1/executions/42", 404, "NOT_FOUND"},
		} {
			rec := b.do(t, "GET", tc.target, "")
			path, _, _ := bytes.Cut([]byte(tc.target), []byte("?"))
			p := decodeProblem(t, rec, string(path))
			if rec.Code != tc.status || p.Code != tc.code {
				t.Errorf("%s: %d %+v", tc.target, rec.Code, p)
			}
		}
		if rec := b.do(t, "POST", "/api/v1/executions", `{}`); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST /executions: %d", rec.Code)
		}
	})
}

// A row Capture-Spine's Python code wrote, knowing nothing of runs, is
// served by both views: as the execution it wrote and as a run.
func TestBothViewsOfACaptureSpineRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := migratedPool(t)
	l, err := pgledger.New(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, l)
	const id, feed, task = "0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "c0ffee00-0000-4000-8000-000000000001"
	_, err = pool.Exec(ctx, `
		INSERT INTO executions (execution_id, pipeline_name, params, lane, trigger_source, status,
			backend_task_id, feed_id, retry_count, error, created_at, started_at, completed_at)
		VALUES ($1, 'rss_ingest', '{"url": "https://example.org/feed"}', 'backfill', 'schedule', 'failed',
			$3, $2, 2, 'HTTP 503', '2026-11-20 10:00:00+00', '2026-11-20 10:00:01.5+00', '2026-11-20 10:00:04+00')`, id, feed, task)
	if err != nil {
		t.Fatal(err)
	}

	var e map[string]any
	if err := json.Unmarshal(b.ok(t, "GET", "/api/v1/executions/"+id, ""), &e); err != nil {
		t.Fatal(err)
	}
	for col, want := range map[string]any{
		"execution_id": id, "pipeline_name": "rss_ingest", "lane": "backfill", "trigger_source": "schedule",
		"status": "failed", "backend_task_id": task, "feed_id": feed, "retry_count": 2.0, "error": "HTTP 503",
		"created_at": "2026-11-20T10:00:00.000000+00:00", "result": nil,
	} {
		if e[col] != want {
			t.Errorf("execution %s = %v, want %v", col, e[col], want)
		}
	}
	run := decodeRun(t, b.ok(t, "GET", "/api/v1/runs/"+id, ""))
	if run.Attempt != 3 || run.ExternalRef != task || run.Spec.Metadata["feed_id"] != feed || run.Spec.Kind != core.KindPipeline {
		t.Errorf("as a run %+v", run)
	}
	if d, ok := run.Duration(); !ok || d.Seconds() != 2.5 {
		t.Errorf("duration %v", d)
	}
	// And the runs API retries it like any run of its own.
	retry := decodeRun(t, b.ok(t, "POST", "/api/v1/runs/"+id+"/retry", ""))
	if retry.Attempt != 4 || retry.RetryOfRunID != id || retry.Spec.Lane != "backfill" {
		t.Errorf("retry %+v", retry)
	}
}

// Capture-Spine's guard, one pending or running execution per feed, holds
// for runs submitted through the API and answers 409.
func TestOneActiveExecutionPerFeed(t *testing.T) {
	t.Parallel()
	b := setup(t, newPostgresLedger(t))
	const body = `{"kind":"pipeline","name":"rss_ingest","metadata":{"feed_id":"9b2f9c1e-2a7d-4d0e-8f43-5e6a7b8c9d0e"}}`
	first := b.submit(t, body)
	if _, err := b.d.MarkStarted(context.Background(), first.RunID); err != nil {
		t.Fatal(err)
	}
	rec := b.do(t, "POST", "/api/v1/runs", body)
	p := decodeProblem(t, rec, "/api/v1/runs")
	if rec.Code != http.StatusConflict || p.Code != "CONFLICT" || !strings.Contains(p.Detail, "one pending or running execution per feed") {
		t.Errorf("second active run of a feed: %d %+v", rec.Code, p)
	}
}
