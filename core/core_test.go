package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/core"
)

func TestTransitionTable(t *testing.T) {
	t.Parallel()
	// The table of spine-core's newer branch, spelled out independently of
	// the implementation's map.
	legal := map[string]bool{
		"pending>queued": true, "pending>running": true, "pending>cancelled": true,
		"queued>running": true, "queued>completed": true, "queued>failed": true, "queued>cancelled": true,
		"running>completed": true, "running>failed": true, "running>cancelled": true,
		"failed>dead_lettered": true, "failed>pending": true,
		"dead_lettered>pending": true,
	}
	for _, from := range core.Statuses {
		for _, to := range core.Statuses {
			key := string(from) + ">" + string(to)
			if got := from.CanTransitionTo(to); got != legal[key] {
				t.Errorf("%s: CanTransitionTo = %v, want %v", key, got, legal[key])
			}
			err := core.CheckTransition("r", from, to)
			if legal[key] != (err == nil) {
				t.Errorf("%s: CheckTransition = %v", key, err)
			}
			if err != nil && !errors.Is(err, core.ErrIllegalTransition) {
				t.Errorf("%s: error %v does not wrap ErrIllegalTransition", key, err)
			}
		}
	}
	for _, s := range []core.RunStatus{core.StatusCompleted, core.StatusCancelled} {
		if !s.Terminal() || len(s.NextStatuses()) != 0 {
			t.Errorf("%s should be terminal", s)
		}
	}
	if core.RunStatus("done").Valid() {
		t.Error(`"done" accepted as a status`)
	}
}

func TestRunRecordJSONShape(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 1, 15, 10, 0, 0, 123456789, time.UTC)
	started := created.Add(1500 * time.Millisecond)
	run := core.RunRecord{
		RunID: "7d3c1f0e-8a4b-4c2d-9e1f-0a1b2c3d4e5f",
		Spec: core.WorkSpec{Kind: core.KindPipeline, Name: "ingest_otc", Params: map[string]any{"date": "2026-01-15"},
			Priority: core.PriorityHigh, Lane: "backfill", TriggerSource: "schedule", Metadata: map[string]any{},
			MaxRetries: 3, RetryDelay: time.Minute},
		Status: core.StatusRunning, CreatedAt: created, StartedAt: &started, Attempt: 1,
		Tags: map[string]string{"kind": "pipeline", "name": "ingest_otc"},
	}
	b, err := json.Marshal(run)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	// Python's to_dict keys, then what it omits.
	for _, k := range []string{"run_id", "kind", "name", "params", "status", "created_at", "started_at", "completed_at",
		"result", "error", "error_type", "external_ref", "executor_name", "attempt", "duration_seconds", "tags",
		"priority", "lane", "idempotency_key", "correlation_id", "parent_run_id", "trigger_source", "metadata",
		"max_retries", "retry_delay_seconds", "retry_of_run_id"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %s", k, b)
		}
		delete(m, k)
	}
	if len(m) != 0 {
		t.Errorf("unexpected keys %v", m)
	}
	s := string(b)
	for _, want := range []string{`"created_at":"2026-01-15T10:00:00.123456+00:00"`, `"completed_at":null`, `"error":null`,
		`"duration_seconds":null`, `"retry_delay_seconds":60`, `"status":"running"`} {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %s", s, want)
		}
	}
	var back core.RunRecord
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if string(again) != s {
		t.Errorf("round trip changed the JSON:\n%s\n%s", s, again)
	}
}

func TestParseTimeReadsPythonAndGoForms(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 11, 23, 16, 55, 48, 632818000, time.UTC)
	for _, s := range []string{"2026-11-23T16:55:48.632818+00:00", "2026-11-23T16:55:48.632818Z", "2026-11-23T16:55:48.632818",
		"2026-11-23T17:55:48.632818+01:00", "2026-11-23 16:55:48.632818+00:00", "2026-11-23T16:55:48.6328184Z"} {
		got, err := core.ParseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := core.ParseTime("yesterday"); err == nil {
		t.Error("nonsense parsed")
	}
}

func TestExponentialBackoff(t *testing.T) {
	t.Parallel()
	for attempt, bounds := range map[int][2]time.Duration{1: {30 * time.Second, time.Minute}, 2: {time.Minute, 2 * time.Minute},
		4: {4 * time.Minute, 8 * time.Minute}, 30: {core.MaxRetryDelay / 2, core.MaxRetryDelay}} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := core.ExponentialBackoff(attempt, time.Minute)
			if d < bounds[0] || d > bounds[1] {
				t.Fatalf("attempt %d: %v outside %v", attempt, d, bounds)
			}
			seen[d] = true
		}
		if len(seen) < 50 {
			t.Errorf("attempt %d: only %d distinct delays: no jitter", attempt, len(seen))
		}
	}
	if d := core.ExponentialBackoff(3, 0); d != 0 {
		t.Errorf("zero base gave %v", d)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := core.Cursor{CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), RunID: core.NewRunID()}
	got, err := core.DecodeCursor(c.Encode())
	if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.RunID != c.RunID {
		t.Fatalf("%+v, %v", got, err)
	}
	for _, bad := range []string{"", "!!", "bm90LWEtY3Vyc29y"} {
		if _, err := core.DecodeCursor(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	var r core.Registry
	noop := func(context.Context, map[string]any) (any, error) { return nil, nil }
	if err := r.Register(core.KindTask, "x", nil); err == nil {
		t.Error("nil handler registered")
	}
	if err := r.Register("job", "x", noop); !errors.Is(err, core.ErrInvalidSpec) {
		t.Errorf("unknown kind: %v", err)
	}
	if err := r.Register(core.KindTask, "refresh_sec", noop); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(core.KindTask, "refresh_sec", noop); err == nil {
		t.Error("a second handler for one key was accepted")
	}
	if err := r.Register(core.KindPipeline, "refresh_sec", noop); err != nil {
		t.Errorf("same name, other kind: %v", err)
	}
	if _, err := r.Lookup("task:refresh_sec"); err != nil {
		t.Error(err)
	}
	_, err := r.Lookup("workflow:refresh_sec")
	var missing *core.HandlerMissingError
	if !errors.As(err, &missing) || missing.Key != "workflow:refresh_sec" || !errors.Is(err, core.ErrHandlerMissing) {
		t.Errorf("lookup of a missing key: %v", err)
	}
	if got := strings.Join(r.Keys(), ","); got != "pipeline:refresh_sec,task:refresh_sec" {
		t.Errorf("keys %s", got)
	}
}

func TestErrorType(t *testing.T) {
	t.Parallel()
	cases := map[string]error{
		"ValueError":     &core.Failure{Type: "ValueError", Message: "x"},
		"HandlerMissing": &core.HandlerMissingError{Key: "task:x"},
		"Timeout":        context.DeadlineExceeded,
		"Cancelled":      context.Canceled,
		"Panic":          &core.PanicError{Value: 1},
		"Error":          errors.New("plain"),
	}
	for want, err := range cases {
		if got := core.ErrorType(fmt.Errorf("wrapped: %w", err)); got != want {
			t.Errorf("ErrorType(%v) = %s, want %s", err, got, want)
		}
	}
	if !core.IsPermanent(core.PermanentError(errors.New("x"))) || core.IsPermanent(errors.New("x")) {
		t.Error("IsPermanent")
	}
}
func TestSecondsRoundsToTheNearestNanosecond(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 1, 4350 * time.Millisecond, time.Hour + 1, 60 * time.Second, 1234567891} {
		if got := core.Seconds(d.Seconds()); got != d {
			t.Errorf("Seconds(%v) = %v, want %v", d.Seconds(), got, d)
		}
	}
}
