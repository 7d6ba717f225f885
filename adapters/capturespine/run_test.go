package capturespine_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/core"
)

var allStatuses = []capturespine.ExecutionStatus{
	capturespine.ExecutionPending, capturespine.ExecutionQueued, capturespine.ExecutionRunning,
	capturespine.ExecutionCompleted, capturespine.ExecutionFailed, capturespine.ExecutionCancelled,
	capturespine.ExecutionDeadLettered,
}

func TestExecutionRoundTripIsLossless(t *testing.T) {
	t.Parallel()
	g := newGen(1)
	for i := range 3000 {
		status := allStatuses[i%len(allStatuses)]
		lane := append(capturespine.Lanes, "default", "imports")[i%(len(capturespine.Lanes)+2)]
		e := g.execution(status, lane)
		run, err := capturespine.ToRunRecord(e)
		if err != nil {
			t.Fatalf("ToRunRecord(%+v): %v", e, err)
		}
		back, err := capturespine.FromRunRecord(run)
		if err != nil {
			t.Fatalf("FromRunRecord(%+v): %v", run, err)
		}
		sameRow(t, e, back)

		// And the other way, for the run as a ledger would return it.
		again, err := capturespine.ToRunRecord(back)
		if err != nil {
			t.Fatal(err)
		}
		sameRow(t, run, again)
	}
}

func TestToRunRecordFollowsThePublishedMapping(t *testing.T) {
	t.Parallel()
	task, feed := "celery-task-1", "6f1c2a8e-0d4b-4f7e-9a51-3c2d1e0f9a8b"
	e := capturespine.NewExecution("capture_feed", map[string]any{"url": "https://example.org"})
	e.Lane, e.Priority, e.TriggerSource = capturespine.LaneHigh, core.PriorityHigh, "schedule"
	e.Status, e.BackendTaskID, e.FeedID, e.RetryCount = capturespine.ExecutionRunning, &task, &feed, 2

	run, err := capturespine.ToRunRecord(e)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"run_id", run.RunID, e.ExecutionID},
		{"kind", run.Spec.Kind, core.KindPipeline},
		{"name", run.Spec.Name, "capture_feed"},
		{"params.url", run.Spec.Params["url"], "https://example.org"},
		{"lane", run.Spec.Lane, "high"},
		{"trigger_source", run.Spec.TriggerSource, "schedule"},
		{"status", run.Status, core.StatusRunning},
		{"external_ref", run.ExternalRef, task},
		{"metadata.feed_id", run.Spec.Metadata["feed_id"], feed},
		{"attempt", run.Attempt, 3},
		{"error", run.Error, ""},
		{"tags", len(run.Tags), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestEmptyStringsAndJSONNullSurviveTheRoundTrip(t *testing.T) {
	t.Parallel()
	empty := ""
	cases := []struct {
		name   string
		edit   func(*capturespine.Execution)
		tag    string
		result string
	}{
		{"empty error is not NULL", func(e *capturespine.Execution) { e.Error = &empty }, capturespine.TagEmptyError, ""},
		{"empty task id is not NULL", func(e *capturespine.Execution) { e.BackendTaskID = &empty }, capturespine.TagEmptyBackendTaskID, ""},
		{"JSON null result is not SQL NULL", func(e *capturespine.Execution) { e.Result = json.RawMessage("null") }, "", "null"},
		{"NULLs stay NULL", func(*capturespine.Execution) {}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := capturespine.NewExecution("p", nil)
			e.Status = capturespine.ExecutionFailed
			c.edit(&e)
			run, err := capturespine.ToRunRecord(e)
			if err != nil {
				t.Fatal(err)
			}
			if c.tag != "" && run.Tags[c.tag] != "true" {
				t.Errorf("tags = %v, want %s", run.Tags, c.tag)
			}
			if string(run.Result) != c.result {
				t.Errorf("result = %q, want %q", run.Result, c.result)
			}
			back, err := capturespine.FromRunRecord(run)
			if err != nil {
				t.Fatal(err)
			}
			sameRow(t, e, back)
			if _, leaked := back.Tags[c.tag]; c.tag != "" && leaked {
				t.Errorf("marker tag %s reached the Execution", c.tag)
			}
		})
	}
}

func TestFromRunRecordRefusesWhatNoRowCanHold(t *testing.T) {
	t.Parallel()
	valid := func() core.RunRecord {
		run, err := capturespine.ToRunRecord(capturespine.NewExecution("p", nil))
		if err != nil {
			t.Fatal(err)
		}
		return run
	}
	cases := []struct {
		name, column string
		edit         func(*core.RunRecord)
	}{
		{"unknown status", "executions.status", func(r *core.RunRecord) { r.Status = "paused" }},
		{"run id not a UUID", "execution_id", func(r *core.RunRecord) { r.RunID = "run-1" }},
		{"uppercase run id", "execution_id", func(r *core.RunRecord) { r.RunID = strings.ToUpper(r.RunID) }},
		{"attempt 0", "retry_count", func(r *core.RunRecord) { r.Attempt = 0 }},
		{"no name", "pipeline_name", func(r *core.RunRecord) { r.Spec.Name = "" }},
		{"unknown kind", "kind", func(r *core.RunRecord) { r.Spec.Kind = "job" }},
		{"result not JSON", "result", func(r *core.RunRecord) { r.Result = json.RawMessage("{") }},
		{"marker beside an error", "tags", func(r *core.RunRecord) {
			r.Error, r.Tags = "boom", map[string]string{capturespine.TagEmptyError: "true"}
		}},
		{"parent not a UUID", "parent_run_id", func(r *core.RunRecord) { r.Spec.ParentRunID = "p" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			run := valid()
			c.edit(&run)
			_, err := capturespine.FromRunRecord(run)
			var invalid *capturespine.InvalidExecutionError
			var unknown *capturespine.UnknownValueError
			switch {
			case errors.As(err, &invalid):
				if invalid.Column != c.column {
					t.Errorf("error names column %s, want %s: %v", invalid.Column, c.column, err)
				}
			case errors.As(err, &unknown):
				if unknown.Column != c.column || !errors.Is(err, capturespine.ErrUnknownValue) {
					t.Errorf("error names %s, want %s: %v", unknown.Column, c.column, err)
				}
			default:
				t.Fatalf("FromRunRecord = %v, want an error naming %s", err, c.column)
			}
		})
	}
}

func TestFeedIDMovesBetweenColumnAndMetadata(t *testing.T) {
	t.Parallel()
	run, err := capturespine.ToRunRecord(capturespine.NewExecution("p", nil))
	if err != nil {
		t.Fatal(err)
	}
	uuidFeed := "0b3e1f6c-9a2d-4c8e-b7f1-5d6a4e3c2b1a"
	for _, c := range []struct {
		feed     any
		inColumn bool
	}{{uuidFeed, true}, {json.Number("42"), false}, {"not-a-uuid", false}, {strings.ToUpper(uuidFeed), false}} {
		run.Spec.Metadata = map[string]any{"feed_id": c.feed, "other": "kept"}
		e, err := capturespine.FromRunRecord(run)
		if err != nil {
			t.Fatalf("feed %v: %v", c.feed, err)
		}
		if got := e.FeedID != nil; got != c.inColumn {
			t.Errorf("feed %v: in feed_id column = %v, want %v", c.feed, got, c.inColumn)
		}
		if _, inMeta := e.Metadata["feed_id"]; inMeta == c.inColumn || e.Metadata["other"] != "kept" {
			t.Errorf("feed %v: metadata = %v", c.feed, e.Metadata)
		}
	}
}

func TestLanePriorityRule(t *testing.T) {
	t.Parallel()
	cases := []struct {
		lane string
		want core.Priority
	}{
		{"realtime", core.PriorityRealtime}, {"high", core.PriorityHigh}, {"normal", core.PriorityNormal},
		{"low", core.PriorityLow}, {"slow", core.PrioritySlow}, {"backfill", core.PriorityLow},
		{"default", core.PriorityNormal}, {"imports", core.PriorityNormal}, {"", core.PriorityNormal},
	}
	for _, c := range cases {
		if got := capturespine.PriorityForLane(c.lane); got != c.want {
			t.Errorf("PriorityForLane(%q) = %s, want %s", c.lane, got, c.want)
		}
	}
	// The lanes named after a priority are a two-way mapping.
	for _, p := range core.Priorities {
		lane := capturespine.LaneForPriority(p)
		if !capturespine.KnownLane(lane) || capturespine.PriorityForLane(lane) != p {
			t.Errorf("LaneForPriority(%s) = %s, which maps back to %s", p, lane, capturespine.PriorityForLane(lane))
		}
	}
}
