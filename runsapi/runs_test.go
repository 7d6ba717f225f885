package runsapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinecore/spine-go/core"
)

// Each submit route records the spec its body describes, with Python's
// defaults for what it leaves out, and answers the run as GET will show it.
func TestSubmitRoutes(t *testing.T) {
	t.Parallel()
	parent := core.NewRunID()
	tests := []struct {
		name  string
		route string
		body  string
		want  core.WorkSpec
	}{
		{
			name:  "whole WorkSpec",
			route: "/api/v1/runs",
			body: `{"kind":"step","name":"normalise","params":{"cik":320193,"big":12345678901234567890,"f":1.50},
				"idempotency_key":"norm-1","correlation_id":"corr-9","priority":"high","lane":"backfill",
				"parent_run_id":"` + parent + `","trigger_source":"schedule","metadata":{"feed_id":"f-1","n":2},
				"max_retries":5,"retry_delay_seconds":30}`,
			want: core.WorkSpec{Kind: core.KindStep, Name: "normalise",
				Params:         map[string]any{"cik": json.Number("320193"), "big": json.Number("12345678901234567890"), "f": json.Number("1.50")},
				IdempotencyKey: "norm-1", CorrelationID: "corr-9", Priority: core.PriorityHigh, Lane: "backfill",
				ParentRunID: parent, TriggerSource: "schedule", Metadata: map[string]any{"feed_id": "f-1", "n": json.Number("2")},
				MaxRetries: 5, RetryDelay: 30 * time.Second},
		},
		{
			name:  "defaults",
			route: "/api/v1/runs",
			body:  `{"kind":"workflow","name":"daily_refresh","idempotency_key":null,"max_retries":2.0}`,
			want: core.WorkSpec{Kind: core.KindWorkflow, Name: "daily_refresh", Params: map[string]any{},
				Priority: core.PriorityNormal, Lane: core.DefaultLane, TriggerSource: core.DefaultTriggerSource,
				Metadata: map[string]any{}, MaxRetries: 2, RetryDelay: core.DefaultRetryDelay},
		},
		{
			name:  "a step correlates with its parent",
			route: "/api/v1/runs",
			body:  `{"kind":"step","name":"load","parent_run_id":"` + parent + `"}`,
			want: core.WorkSpec{Kind: core.KindStep, Name: "load", Params: map[string]any{}, CorrelationID: parent,
				Priority: core.PriorityNormal, Lane: core.DefaultLane, ParentRunID: parent, TriggerSource: core.DefaultTriggerSource,
				Metadata: map[string]any{}, MaxRetries: core.DefaultMaxRetries, RetryDelay: core.DefaultRetryDelay},
		},
		{
			name:  "task convenience",
			route: "/api/v1/runs/task",
			body:  `{"name":"refresh_sec","params":{"ciks":[1,2]},"priority":"realtime","metadata":{"who":"ops"},"idempotency_key":"sec-1"}`,
			want: core.WorkSpec{Kind: core.KindTask, Name: "refresh_sec", Params: map[string]any{"ciks": []any{json.Number("1"), json.Number("2")}},
				IdempotencyKey: "sec-1", Priority: core.PriorityRealtime, Lane: core.DefaultLane, TriggerSource: core.DefaultTriggerSource,
				Metadata: map[string]any{"who": "ops"}, MaxRetries: core.DefaultMaxRetries, RetryDelay: core.DefaultRetryDelay},
		},
		{
			name:  "pipeline convenience",
			route: "/api/v1/runs/pipeline",
			body:  `{"name":"ingest_otc","params":{"date":"2026-01-15"},"lane":"backfill"}`,
			want: core.WorkSpec{Kind: core.KindPipeline, Name: "ingest_otc", Params: map[string]any{"date": "2026-01-15"},
				Priority: core.PriorityNormal, Lane: "backfill", TriggerSource: core.DefaultTriggerSource,
				Metadata: map[string]any{}, MaxRetries: core.DefaultMaxRetries, RetryDelay: core.DefaultRetryDelay},
		},
	}
	eachLedger(t, func(t *testing.T, b bundle) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				body := b.ok(t, "POST", tc.route, tc.body)
				run := decodeRun(t, body)
				if !reflect.DeepEqual(run.Spec, tc.want) {
					t.Errorf("spec\n got %#v\nwant %#v", run.Spec, tc.want)
				}
				if run.Status != core.StatusQueued || run.ExternalRef != "hold-"+run.RunID || run.ExecutorName != "hold" || run.Attempt != 1 {
					t.Errorf("run %+v", run)
				}
				if got := b.ok(t, "GET", "/api/v1/runs/"+run.RunID, ""); !bytes.Equal(got, body) {
					t.Errorf("GET answers\n%s\nsubmit answered\n%s", got, body)
				}
			})
		}
	})
}

// The JSON of a run is Python's to_dict shape plus the spec fields.
func TestRunJSONShape(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		run := b.submit(t, `{"kind":"task","name":"shape"}`)
		var m map[string]any
		if err := json.Unmarshal(b.ok(t, "GET", "/api/v1/runs/"+run.RunID, ""), &m); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"run_id", "kind", "name", "params", "status", "created_at", "started_at",
			"completed_at", "result", "error", "error_type", "external_ref", "executor_name", "attempt",
			"duration_seconds", "tags", "priority", "lane", "idempotency_key", "correlation_id", "parent_run_id",
			"trigger_source", "metadata", "max_retries", "retry_delay_seconds", "retry_of_run_id"} {
			if _, ok := m[key]; !ok {
				t.Errorf("run JSON lacks %q: %v", key, m)
			}
		}
		if m["created_at"] != "2026-05-04T12:00:00.001000+00:00" {
			t.Errorf("created_at %v, want Python's isoformat", m["created_at"])
		}
	})
}

// A known idempotency key returns the run it made, through any submit
// route, and records nothing more.
func TestIdempotentSubmit(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		first := b.submit(t, `{"kind":"task","name":"once","idempotency_key":"k-1"}`)
		again := b.submit(t, `{"kind":"task","name":"once","idempotency_key":"k-1","params":{"changed":true}}`)
		viaTask := decodeRun(t, b.ok(t, "POST", "/api/v1/runs/task", `{"name":"once","idempotency_key":"k-1"}`))
		if again.RunID != first.RunID || viaTask.RunID != first.RunID {
			t.Fatalf("run ids %s, %s, %s", first.RunID, again.RunID, viaTask.RunID)
		}
		if len(again.Spec.Params) != 0 {
			t.Errorf("replay changed the run: %v", again.Spec.Params)
		}
		if p := decodePage(t, b.ok(t, "GET", "/api/v1/runs?name=once", "")); len(p.Runs) != 1 {
			t.Errorf("%d runs for one key", len(p.Runs))
		}
		if got := eventTypes(t, b, first.RunID); !slices.Equal(got, []string{"created", "queued"}) {
			t.Errorf("events %v", got)
		}
		other := b.submit(t, `{"kind":"task","name":"once","idempotency_key":"k-2"}`)
		if other.RunID == first.RunID {
			t.Error("another key returned the same run")
		}

		// Racing requests with one key make one run between them.
		ids := make(chan string, 8)
		var wg sync.WaitGroup
		for range cap(ids) {
			wg.Go(func() {
				rec := b.do(t, "POST", "/api/v1/runs/pipeline", `{"name":"race","idempotency_key":"k-race"}`)
				if rec.Code != http.StatusOK {
					t.Errorf("racing submit: %d %s", rec.Code, rec.Body)
				}
				var run struct {
					RunID string `json:"run_id"`
				}
				_ = json.Unmarshal(rec.Body.Bytes(), &run)
				ids <- run.RunID
			})
		}
		wg.Wait()
		close(ids)
		distinct := map[string]bool{}
		for id := range ids {
			distinct[id] = true
		}
		if len(distinct) != 1 {
			t.Errorf("racing submits made runs %v", distinct)
		}
	})
}

func eventTypes(t *testing.T, b bundle, runID string) []string {
	t.Helper()
	var events []map[string]any
	if err := json.Unmarshal(b.ok(t, "GET", "/api/v1/runs/"+runID+"/events", ""), &events); err != nil {
		t.Fatal(err)
	}
	types := make([]string, len(events))
	for i, ev := range events {
		types[i], _ = ev["event_type"].(string)
	}
	return types
}

// seedRuns records six runs an hour apart, one in each interesting state:
//
//	a task alpha       queued        t0
//	b pipeline beta    running       t0+1h
//	c pipeline beta    completed     t0+2h
//	d workflow gamma   failed        t0+3h
//	e step delta       cancelled     t0+4h (child of d)
//	f task alpha       dead_lettered t0+5h
func seedRuns(t *testing.T, b bundle) map[string]core.RunRecord {
	t.Helper()
	ctx := context.Background()
	runs := map[string]core.RunRecord{}
	at := func(h int) { b.clock.Set(t0.Add(time.Duration(h) * time.Hour)) }
	must := func(_ core.RunRecord, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	at(0)
	runs["a"] = b.submit(t, `{"kind":"task","name":"alpha"}`)
	at(1)
	runs["b"] = b.submit(t, `{"kind":"pipeline","name":"beta"}`)
	must(b.d.MarkStarted(ctx, runs["b"].RunID))
	at(2)
	runs["c"] = b.submit(t, `{"kind":"pipeline","name":"beta"}`)
	must(b.d.MarkStarted(ctx, runs["c"].RunID))
	must(b.d.MarkCompleted(ctx, runs["c"].RunID, map[string]any{"rows": 3}))
	at(3)
	runs["d"] = b.submit(t, `{"kind":"workflow","name":"gamma"}`)
	must(b.d.MarkStarted(ctx, runs["d"].RunID))
	must(b.d.MarkFailed(ctx, runs["d"].RunID, errors.New("boom")))
	at(4)
	runs["e"] = b.submit(t, `{"kind":"step","name":"delta","parent_run_id":"`+runs["d"].RunID+`"}`)
	must(b.d.Cancel(ctx, runs["e"].RunID))
	at(5)
	runs["f"] = b.submit(t, `{"kind":"task","name":"alpha","max_retries":0}`)
	must(b.d.MarkStarted(ctx, runs["f"].RunID))
	must(b.d.MarkFailed(ctx, runs["f"].RunID, errors.New("bang")))
	for k, run := range runs {
		got, err := b.d.GetRun(ctx, run.RunID)
		if err != nil {
			t.Fatal(err)
		}
		runs[k] = got
	}
	if runs["d"].Status != core.StatusFailed || runs["f"].Status != core.StatusDeadLettered {
		t.Fatalf("seed: d %s, f %s", runs["d"].Status, runs["f"].Status)
	}
	return runs
}

// letters names the runs of a page by their seed letter.
func letters(runs map[string]core.RunRecord, page []core.RunRecord) string {
	byID := map[string]string{}
	for k, r := range runs {
		byID[r.RunID] = k
	}
	var out strings.Builder
	for _, r := range page {
		if k, ok := byID[r.RunID]; ok {
			out.WriteString(k)
		} else {
			out.WriteString("?")
		}
	}
	return out.String()
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	iso := func(h int) string { return core.FormatTime(t0.Add(time.Duration(h) * time.Hour)) }
	tests := []struct {
		query string // {d} stands for run d's id
		want  string // newest first
	}{
		{"", "fedcba"},
		{"kind=pipeline", "cb"},
		{"kind=task&status=queued", "a"},
		{"name=beta", "cb"},
		{"pipeline=alpha", "fa"},
		{"name=alpha&pipeline=alpha", "fa"},
		{"name=nobody", ""},
		{"status=failed", "d"},
		{"status=failed,dead_lettered", "fd"},
		{"status=cancelled&status=failed", "ed"},
		{"status=running,%20completed,", "cb"},
		{"parent_run_id={d}", "e"},
		{"parent_run_id=not-a-uuid", ""},
		{"created_after=" + url.QueryEscape(iso(2)), "fedc"},
		{"created_before=" + url.QueryEscape(iso(2)), "ba"},
		{"created_after=" + url.QueryEscape(iso(1)) + "&created_before=" + url.QueryEscape(iso(3)), "cb"},
		// An unescaped "+" of an offset arrives as a space.
		{"created_after=2026-05-04T13:00:00.000000+00:00", "fedcb"},
		{"created_after=2026-05-04T14:00:00Z", "fedc"},
		{"created_before=2026-05-04", ""},
		{"created_after=2026-05-04", "fedcba"},
		{"limit=2", "fe"},
		{"offset=0&limit=200&unknown=ignored", "fedcba"},
	}
	eachLedger(t, func(t *testing.T, b bundle) {
		runs := seedRuns(t, b)
		for _, tc := range tests {
			q := strings.ReplaceAll(tc.query, "{d}", runs["d"].RunID)
			t.Run(q, func(t *testing.T) {
				p := decodePage(t, b.ok(t, "GET", "/api/v1/runs?"+q, ""))
				if got := letters(runs, p.Runs); got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			})
		}
	})
}

// Following next_cursor visits every matching run once, newest first, and
// the last page says so with a null cursor.
func TestListPagination(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		runs := seedRuns(t, b)
		for _, tc := range []struct {
			query string
			limit int
			want  string
		}{
			{"", 2, "fedcba"},
			{"", 4, "fedcba"},
			{"", 6, "fedcba"},
			{"&status=queued,running,completed,failed", 1, "dcba"},
		} {
			var got string
			pages := 0
			cursor := ""
			for {
				target := "/api/v1/runs?limit=" + strconv.Itoa(tc.limit) + tc.query
				if cursor != "" {
					target += "&cursor=" + url.QueryEscape(cursor)
				}
				p := decodePage(t, b.ok(t, "GET", target, ""))
				if len(p.Runs) > tc.limit {
					t.Fatalf("%d runs on a page of %d", len(p.Runs), tc.limit)
				}
				got += letters(runs, p.Runs)
				pages++
				if p.NextCursor == nil {
					break
				}
				if pages > 10 {
					t.Fatal("cursor never ends")
				}
				cursor = *p.NextCursor
			}
			if got != tc.want {
				t.Errorf("limit %d%s: visited %q, want %q", tc.limit, tc.query, got, tc.want)
			}
		}
	})
}

func TestChildren(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		wf := b.submit(t, `{"kind":"workflow","name":"daily_refresh"}`)
		var steps []string
		for _, name := range []string{"fetch", "parse", "load"} {
			steps = append(steps, b.submit(t, `{"kind":"step","name":"`+name+`","parent_run_id":"`+wf.RunID+`"}`).RunID)
		}
		b.submit(t, `{"kind":"task","name":"unrelated"}`)

		p := decodePage(t, b.ok(t, "GET", "/api/v1/runs/"+wf.RunID+"/children", ""))
		var got []string
		for _, r := range p.Runs {
			got = append(got, r.RunID)
			if r.Spec.CorrelationID != wf.RunID {
				t.Errorf("step %s correlation %q", r.Spec.Name, r.Spec.CorrelationID)
			}
		}
		slices.Reverse(steps) // newest first
		if !slices.Equal(got, steps) || p.NextCursor != nil {
			t.Errorf("children %v (cursor %v), want %v", got, p.NextCursor, steps)
		}

		first := decodePage(t, b.ok(t, "GET", "/api/v1/runs/"+wf.RunID+"/children?limit=2", ""))
		if len(first.Runs) != 2 || first.NextCursor == nil {
			t.Fatalf("first page %d runs, cursor %v", len(first.Runs), first.NextCursor)
		}
		rest := decodePage(t, b.ok(t, "GET", "/api/v1/runs/"+wf.RunID+"/children?limit=2&cursor="+*first.NextCursor, ""))
		if len(rest.Runs) != 1 || rest.Runs[0].RunID != steps[2] || rest.NextCursor != nil {
			t.Errorf("second page %+v", rest)
		}

		if p := decodePage(t, b.ok(t, "GET", "/api/v1/runs/"+steps[0]+"/children", "")); len(p.Runs) != 0 {
			t.Errorf("a step has children: %v", p.Runs)
		}
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		ctx := context.Background()
		queued := b.submit(t, `{"kind":"task","name":"slow"}`)
		running := b.submit(t, `{"kind":"task","name":"slow"}`)
		if _, err := b.d.MarkStarted(ctx, running.RunID); err != nil {
			t.Fatal(err)
		}
		for _, run := range []core.RunRecord{queued, running} {
			got := decodeRun(t, b.ok(t, "POST", "/api/v1/runs/"+run.RunID+"/cancel", ""))
			if got.RunID != run.RunID || got.Status != core.StatusCancelled || got.CompletedAt == nil {
				t.Errorf("cancelled %+v", got)
			}
		}
		if refs := b.exec.cancelledRefs(); !slices.Equal(refs, []string{queued.ExternalRef, running.ExternalRef}) {
			t.Errorf("executor asked to cancel %v", refs)
		}
		// An empty object is an empty body.
		third := b.submit(t, `{"kind":"task","name":"slow"}`)
		b.ok(t, "POST", "/api/v1/runs/"+third.RunID+"/cancel", `{}`)

		rec := b.do(t, "POST", "/api/v1/runs/"+queued.RunID+"/cancel", "")
		p := decodeProblem(t, rec, "/api/v1/runs/"+queued.RunID+"/cancel")
		if rec.Code != http.StatusConflict || p.Code != "NOT_CANCELLABLE" || !strings.Contains(p.Detail, "is cancelled") {
			t.Errorf("second cancel: %d %+v", rec.Code, p)
		}
		if got := eventTypes(t, b, queued.RunID); !slices.Equal(got, []string{"created", "queued", "cancelled"}) {
			t.Errorf("events %v", got)
		}
	})
}

func TestRetry(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		runs := seedRuns(t, b)
		for _, k := range []string{"d", "f"} { // failed, dead_lettered
			old := runs[k]
			got := decodeRun(t, b.ok(t, "POST", "/api/v1/runs/"+old.RunID+"/retry", ""))
			if got.RunID == old.RunID || got.RetryOfRunID != old.RunID || got.Attempt != old.Attempt+1 ||
				got.Spec.TriggerSource != "retry" || got.Spec.IdempotencyKey != "" || got.Spec.Name != old.Spec.Name ||
				got.Status != core.StatusQueued {
				t.Errorf("retry of %s: %+v", k, got)
			}
			types := eventTypes(t, b, old.RunID)
			if types[len(types)-1] != "retried" {
				t.Errorf("old run's events %v", types)
			}
		}
		for _, k := range []string{"a", "b", "c", "e"} {
			path := "/api/v1/runs/" + runs[k].RunID + "/retry"
			rec := b.do(t, "POST", path, "")
			p := decodeProblem(t, rec, path)
			if rec.Code != http.StatusConflict || p.Code != "CONFLICT" || !strings.Contains(p.Detail, "only failed or dead_lettered") {
				t.Errorf("retry of %s run: %d %+v", runs[k].Status, rec.Code, p)
			}
		}
	})
}

func TestEvents(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		ctx := context.Background()
		run := b.submit(t, `{"kind":"task","name":"tracked"}`)
		if _, err := b.d.MarkStarted(ctx, run.RunID); err != nil {
			t.Fatal(err)
		}
		if err := b.d.RecordProgress(ctx, run.RunID, 0.5, "half way"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.d.MarkCompleted(ctx, run.RunID, map[string]any{"ok": true}); err != nil {
			t.Fatal(err)
		}
		var events []map[string]any
		if err := json.Unmarshal(b.ok(t, "GET", "/api/v1/runs/"+run.RunID+"/events", ""), &events); err != nil {
			t.Fatal(err)
		}
		want := []string{"created", "queued", "started", "progress", "completed"}
		if len(events) != len(want) {
			t.Fatalf("events %v", events)
		}
		for i, ev := range events {
			if ev["event_type"] != want[i] || ev["run_id"] != run.RunID || ev["source"] != "dispatcher" || ev["event_id"] == "" {
				t.Errorf("event %d: %v", i, ev)
			}
			if ts, _ := ev["timestamp"].(string); !strings.HasSuffix(ts, "+00:00") || len(ts) != len("2026-05-04T12:00:00.000000+00:00") {
				t.Errorf("event %d timestamp %v", i, ev["timestamp"])
			}
		}
		if data := events[3]["data"].(map[string]any); data["progress"] != 0.5 || data["message"] != "half way" {
			t.Errorf("progress data %v", data)
		}
		if data := events[0]["data"].(map[string]any); data["kind"] != "task" || data["name"] != "tracked" {
			t.Errorf("created data %v", data)
		}
		got := decodeRun(t, b.ok(t, "GET", "/api/v1/runs/"+run.RunID, ""))
		if got.Status != core.StatusCompleted || string(got.Result) != `{"ok":true}` {
			t.Errorf("completed run %+v result %s", got, got.Result)
		}
	})
}

// Run ids that name nothing, UUIDs or not, are 404 on every run route,
// as in Python (its run_id is a plain string).
func TestUnknownRuns(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		for _, id := range []string{core.NewRunID(), "not-a-uuid", "task%20x"} {
			for _, route := range []struct{ method, suffix string }{
				{"GET", ""}, {"GET", "/events"}, {"GET", "/children"}, {"POST", "/cancel"}, {"POST", "/retry"},
			} {
				target := "/api/v1/runs/" + id + route.suffix
				rec := b.do(t, route.method, target, "")
				p := decodeProblem(t, rec, strings.ReplaceAll(target, "%20", " "))
				if rec.Code != http.StatusNotFound || p.Code != "NOT_FOUND" {
					t.Errorf("%s %s: %d %+v", route.method, target, rec.Code, p)
				}
			}
		}
	})
}

// An executor that refuses a run does not fail the request, as in Python:
// the run is recorded failed and answered. A full queue or a shut-down
// executor is a 503 naming the run recorded meanwhile.
func TestExecutorRefusals(t *testing.T) {
	t.Parallel()
	eachLedger(t, func(t *testing.T, b bundle) {
		for _, name := range []string{"overloaded", "shut_down"} {
			rec := b.do(t, "POST", "/api/v1/runs", `{"kind":"task","name":"`+name+`","idempotency_key":"`+name+`"}`)
			p := decodeProblem(t, rec, "/api/v1/runs")
			if rec.Code != http.StatusServiceUnavailable || p.Code != "UNAVAILABLE" || p.RunID == "" || rec.Header().Get("Retry-After") == "" {
				t.Fatalf("%s: %d %+v %v", name, rec.Code, p, rec.Header())
			}
			run := decodeRun(t, b.ok(t, "GET", "/api/v1/runs/"+p.RunID, ""))
			if run.Status != core.StatusFailed {
				t.Errorf("%s: run recorded %s", name, run.Status)
			}
			// Coming back with the key returns that run instead of a second.
			if again := b.submit(t, `{"kind":"task","name":"`+name+`","idempotency_key":"`+name+`"}`); again.RunID != p.RunID {
				t.Errorf("%s: resubmit made run %s", name, again.RunID)
			}
		}

		run := b.submit(t, `{"kind":"task","name":"unregistered"}`)
		if run.Status != core.StatusDeadLettered || run.ErrorType != "HandlerMissing" || !strings.Contains(run.Error, "task:unregistered") {
			t.Errorf("missing handler: %+v", run)
		}
		run = b.submit(t, `{"kind":"task","name":"broken","max_retries":0}`)
		if run.Status != core.StatusDeadLettered || run.ErrorType != "Error" {
			t.Errorf("broken executor: %+v", run)
		}
	})
}

// Errors from the store go to the log, never to the client.
func TestInternalErrorsDoNotLeak(t *testing.T) {
	t.Parallel()
	secret := "postgres://spine:hunter2@10.0.0.7/spine"
	b := setup(t, failingLedger{Ledger: core.NewMemoryLedger(), err: errors.New("pgledger: list runs: dial " + secret + ": connection refused")})
	for _, target := range []string{"/api/v1/runs", "/api/v1/runs/" + core.NewRunID()} {
		rec := b.do(t, "GET", target, "")
		p := decodeProblem(t, rec, target)
		if rec.Code != http.StatusInternalServerError || p.Code != "INTERNAL" || strings.Contains(rec.Body.String(), "hunter2") {
			t.Errorf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
	}
	if !strings.Contains(b.logs.String(), "hunter2") {
		t.Errorf("the log lacks the error: %s", b.logs)
	}
}

type failingLedger struct {
	core.Ledger
	err error
}

func (l failingLedger) ListRuns(context.Context, core.RunFilter) (core.RunPage, error) {
	return core.RunPage{}, l.err
}

func (l failingLedger) GetRun(context.Context, string) (core.RunRecord, error) {
	return core.RunRecord{}, l.err
}
