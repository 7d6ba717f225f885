package capturespine_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/core"
)

func TestExecutionJSONRoundTrip(t *testing.T) {
	t.Parallel()
	g := newGen(2)
	for i := range 2000 {
		e := g.execution(allStatuses[i%len(allStatuses)], capturespine.Lanes[i%len(capturespine.Lanes)])
		if string(e.Result) == "null" {
			e.Result = nil // JSON has one null: documented
		}
		if e.Result != nil { // re-encode as encoding/json will, for a byte compare
			var v any
			d := json.NewDecoder(strings.NewReader(string(e.Result)))
			d.UseNumber()
			_ = d.Decode(&v)
			e.Result, _ = json.Marshal(v)
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back capturespine.Execution
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		sameRow(t, e, back)
	}
}

func TestCaptureSpineJSONTakesTheTableDefaults(t *testing.T) {
	t.Parallel()
	// What Capture-Spine's API writes: its own columns only.
	in := `{"execution_id": "6f1c2a8e-0d4b-4f7e-9a51-3c2d1e0f9a8b", "pipeline_name": "capture_feed",
		"params": {"n": 9007199254740993}, "lane": "backfill", "trigger_source": "schedule", "status": "failed",
		"backend_task_id": null, "feed_id": null, "retry_count": 1, "result": null, "error": "",
		"created_at": "2025-06-01T12:00:00.123456", "started_at": "2025-06-01T12:00:01Z", "completed_at": null}`
	var e capturespine.Execution
	if err := json.Unmarshal([]byte(in), &e); err != nil {
		t.Fatal(err)
	}
	if e.Kind != core.KindPipeline || e.Priority != core.PriorityLow || e.MaxRetries != 3 ||
		e.RetryDelay != core.DefaultRetryDelay || e.Error == nil || *e.Error != "" ||
		e.Params["n"] != json.Number("9007199254740993") || e.CreatedAt.Nanosecond() != 123456000 {
		t.Errorf("decoded %+v", e)
	}
	out, _ := json.Marshal(e)
	for _, want := range []string{`"created_at":"2025-06-01T12:00:00.123456+00:00"`, `"error":""`, `"priority":"low"`, `"result":null`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s lacks %s", out, want)
		}
	}

	var zero capturespine.Execution
	for _, bad := range []string{
		`{"execution_id": "x", "pipeline_name": "p", "status": "pending", "created_at": "2025-06-01T12:00:00Z"}`,
		`{"execution_id": "6f1c2a8e-0d4b-4f7e-9a51-3c2d1e0f9a8b", "pipeline_name": "p", "status": "paused", "created_at": "2025-06-01T12:00:00Z"}`,
		`{"execution_id": "6f1c2a8e-0d4b-4f7e-9a51-3c2d1e0f9a8b", "pipeline_name": "p", "status": "pending"}`,
		`{"execution_id": "6f1c2a8e-0d4b-4f7e-9a51-3c2d1e0f9a8b", "pipeline_name": "p", "status": "pending", "created_at": "yesterday"}`,
		`{"execution_id": "6f1c2a8e-0d4b-4f7e-9a51-3c2d1e0f9a8b", "pipeline_name": "p", "status": "pending", "created_at": "2025-06-01T12:00:00Z", "params": []}`,
	} {
		if err := json.Unmarshal([]byte(bad), &zero); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
