package celerybridge

import (
	_ "time/tzdata" // the zone test must not depend on the machine's zoneinfo

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/internal/testsvc"
)

// resultSetup is one test's Redis DB with a backend over it.
type resultSetup struct {
	url     string
	rdb     *redis.Client
	backend *ResultBackend
}

func setupResults(t *testing.T, opts ResultBackendOptions) *resultSetup {
	t.Helper()
	url := testsvc.NewRedisDB(t)
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	return &resultSetup{url: url, rdb: rdb, backend: NewResultBackend(rdb, opts)}
}

func mustDecodeResult(t *testing.T, raw string) *TaskResult {
	t.Helper()
	r, err := DecodeTaskResult([]byte(raw))
	if err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return r
}

// What a Celery 5.2.6 worker stored (captured with results_interop.py, task
// ids shortened), and what newer versions write, from their sources.
const (
	celery526Success  = `{"status": "SUCCESS", "result": 5, "traceback": null, "children": [], "date_done": "2026-11-23T18:48:25.472996", "name": "interop.add", "args": [2, 3], "kwargs": {}, "worker": "interop@gotest", "retries": 0, "queue": "celery", "task_id": "c1867109"}`
	celery526Failure  = `{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["boom", 42], "exc_module": "builtins"}, "traceback": "Traceback (most recent call last):\n  File \"t.py\", line 78, in fail\n    raise ValueError(msg, n)\nValueError: ('boom', 42)\n", "children": [], "date_done": "2026-11-23T18:48:25.484738", "task_id": "d566a76c"}`
	celery526Revoked  = `{"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["expired"], "exc_module": "celery.exceptions"}, "traceback": null, "children": [], "date_done": "2026-11-23T18:48:25.511274", "task_id": "c4743d51"}`
	celery526Started  = `{"status": "STARTED", "result": {"pid": 22385, "hostname": "interop@gotest"}, "traceback": null, "children": [], "date_done": null, "task_id": "c1867109"}`
	celery526Lineage  = `{"status": "SUCCESS", "result": 2, "traceback": null, "children": [[["289204ef", null], null]], "date_done": "2026-11-23T18:48:25.479784", "group_id": "9b7f7c2e", "parent_id": "3c1d2a90", "task_id": "4a288c79"}`
	celery54Success   = `{"status": "SUCCESS", "result": [1, 2], "traceback": null, "children": [], "date_done": "2024-05-01T12:00:00.123456+00:00", "task_id": "a"}`
	celery55Success   = `{"status": "SUCCESS", "result": null, "traceback": null, "children": [], "date_done": "2024-05-01T14:00:00.123456+02:00", "task_id": "a"}`
	celery56Stamped   = `{"status": "SUCCESS", "result": 1, "traceback": null, "children": [], "date_done": "2024-05-01T12:00:00+00:00", "name": "t", "args": [], "kwargs": {}, "worker": "w", "retries": 2, "queue": "q", "stamped_headers": ["tenant"], "tenant": "acme", "task_id": "a"}`
	kombu53Typed      = `{"status": "SUCCESS", "result": {"at": {"__type__": "datetime", "__value__": "2024-05-01T12:00:00.000001+00:00"}, "id": {"__type__": "uuid", "__value__": {"hex": "0f0e0d0c0b0a09080706050403020100"}}, "amount": {"__type__": "decimal", "__value__": "1.10"}}, "traceback": null, "children": [], "date_done": "2024-05-01T12:00:00", "task_id": "a"}`
	celery3StringExc  = `{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": "boom", "exc_module": "builtins"}, "traceback": "tb", "children": [], "date_done": "2024-05-01T12:00:00", "task_id": "a"}`
	customStateResult = `{"status": "PROGRESS", "result": {"current": 5, "total": 9}, "traceback": null, "children": [], "date_done": null, "task_id": "a"}`
)

// Every version's meta decodes, each field as written.
func TestDecodeTaskResultVersions(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name, raw string
		check     func(t *testing.T, r *TaskResult)
	}{
		{"5.2.6 success, result_extended", celery526Success, func(t *testing.T, r *TaskResult) {
			want := &TaskResult{TaskID: "c1867109", State: StateSuccess, Result: json.RawMessage("5"),
				Children: json.RawMessage("[]"), DateDone: at("2026-11-23T18:48:25.472996Z"),
				Extended: &ExtendedMeta{Name: "interop.add", Args: json.RawMessage("[2, 3]"), Kwargs: json.RawMessage("{}"),
					Worker: "interop@gotest", Queue: "celery"}, Raw: []byte(celery526Success)}
			sameResult(t, r, want)
		}},
		{"5.2.6 failure", celery526Failure, func(t *testing.T, r *TaskResult) {
			if r.State != StateFailure || r.Exception == nil || r.Exception.Type != "ValueError" ||
				r.Exception.Module != "builtins" || string(r.Exception.Message) != `["boom", 42]` {
				t.Fatalf("%+v %+v", r, r.Exception)
			}
			if !strings.HasSuffix(r.Traceback, "ValueError: ('boom', 42)\n") || r.Extended != nil {
				t.Errorf("traceback %q extended %v", r.Traceback, r.Extended)
			}
			args, err := r.Exception.Args()
			if err != nil || fmt.Sprint(args) != "[boom 42]" {
				t.Errorf("args %v %v", args, err)
			}
			var re *ResultError
			if !errors.As(r.Err(), &re) || re.Exception.Type != "ValueError" {
				t.Errorf("Err() = %v", r.Err())
			}
		}},
		{"5.2.6 revoked", celery526Revoked, func(t *testing.T, r *TaskResult) {
			if r.State != StateRevoked || r.Exception.String() != "celery.exceptions.TaskRevokedError: expired" || r.Err() == nil {
				t.Errorf("%+v %v", r, r.Exception)
			}
		}},
		{"5.2.6 started", celery526Started, func(t *testing.T, r *TaskResult) {
			if r.State != StateStarted || !r.DateDone.IsZero() || r.Exception != nil || r.Err() != nil ||
				string(r.Result) != `{"pid": 22385, "hostname": "interop@gotest"}` {
				t.Errorf("%+v", r)
			}
		}},
		{"5.2.6 lineage", celery526Lineage, func(t *testing.T, r *TaskResult) {
			if r.GroupID != "9b7f7c2e" || r.ParentID != "3c1d2a90" || string(r.Children) != `[[["289204ef", null], null]]` {
				t.Errorf("%+v", r)
			}
		}},
		{"5.4 date_done +00:00", celery54Success, func(t *testing.T, r *TaskResult) {
			if !r.DateDone.Equal(at("2024-05-01T12:00:00.123456Z")) {
				t.Errorf("date_done %v", r.DateDone)
			}
		}},
		{"5.5 date_done in the app timezone", celery55Success, func(t *testing.T, r *TaskResult) {
			if !r.DateDone.Equal(at("2024-05-01T12:00:00.123456Z")) || string(r.Result) != "null" {
				t.Errorf("date_done %v result %s", r.DateDone, r.Result)
			}
		}},
		{"5.6 stamps", celery56Stamped, func(t *testing.T, r *TaskResult) {
			if r.Extended == nil || r.Extended.Retries != 2 || r.Extended.Queue != "q" || len(r.Extra) != 2 ||
				r.Extra[0].Key != "stamped_headers" || string(r.Extra[1].Value) != `"acme"` {
				t.Errorf("%+v %+v", r, r.Extended)
			}
		}},
		{"kombu 5.3 typed values", kombu53Typed, func(t *testing.T, r *TaskResult) {
			v, err := r.Value()
			if err != nil {
				t.Fatal(err)
			}
			m := v.(map[string]any)
			if got, ok := m["at"].(time.Time); !ok || !got.Equal(at("2024-05-01T12:00:00.000001Z")) {
				t.Errorf("at = %#v", m["at"])
			}
			if got, ok := m["id"].(uuid.UUID); !ok || got.String() != "0f0e0d0c-0b0a-0908-0706-050403020100" {
				t.Errorf("id = %#v", m["id"])
			}
			if m["amount"] != Decimal("1.10") {
				t.Errorf("amount = %#v", m["amount"])
			}
		}},
		{"exc_message as a string", celery3StringExc, func(t *testing.T, r *TaskResult) {
			args, err := r.Exception.Args()
			if err != nil || len(args) != 1 || args[0] != "boom" || r.Exception.String() != "ValueError: boom" {
				t.Errorf("args %v %v, %s", args, err, r.Exception)
			}
		}},
		{"custom state", customStateResult, func(t *testing.T, r *TaskResult) {
			if r.State != "PROGRESS" || r.State.IsReady() || r.Exception != nil {
				t.Errorf("%+v", r)
			}
		}},
		{"big numbers stay as written", `{"status": "SUCCESS", "result": [18446744073709551617, 1.10, 1e400, NaN], "task_id": "x"}`, func(t *testing.T, r *TaskResult) {
			if string(r.Result) != `[18446744073709551617, 1.10, 1e400, NaN]` {
				t.Errorf("result %s", r.Result)
			}
			v, _ := r.Value()
			if v.([]any)[0] != json.Number("18446744073709551617") {
				t.Errorf("value %#v", v)
			}
		}},
		{"later duplicate wins, as in Python", `{"status": "STARTED", "result": 1, "status": "SUCCESS", "task_id": "x"}`, func(t *testing.T, r *TaskResult) {
			if r.State != StateSuccess {
				t.Errorf("state %s", r.State)
			}
		}},
		{"exception state without an exception object", `{"status": "FAILURE", "result": null, "task_id": "x"}`, func(t *testing.T, r *TaskResult) {
			if r.Exception != nil || r.Err() == nil {
				t.Errorf("%+v", r)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, mustDecodeResult(t, tc.raw))
		})
	}
}

func sameResult(t *testing.T, got, want *TaskResult) {
	t.Helper()
	if g, w := describeResult(got), describeResult(want); g != w {
		t.Errorf("decoded\n %s\nwant\n %s", g, w)
	}
}

// describeResult prints every field of r, raw JSON as text.
func describeResult(r *TaskResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "task_id=%s state=%s result=%s traceback=%q children=%s date_done=%s group=%s parent=%s",
		r.TaskID, r.State, r.Result, r.Traceback, r.Children, r.DateDone.Format(time.RFC3339Nano), r.GroupID, r.ParentID)
	if e := r.Exception; e != nil {
		fmt.Fprintf(&b, " exc=%s/%s/%s", e.Module, e.Type, e.Message)
	}
	if x := r.Extended; x != nil {
		fmt.Fprintf(&b, " ext=%s/%s/%s/%s/%d/%s", x.Name, x.Args, x.Kwargs, x.Worker, x.Retries, x.Queue)
	}
	for _, m := range r.Extra {
		fmt.Fprintf(&b, " %s=%s", m.Key, m.Value)
	}
	fmt.Fprintf(&b, " raw=%s", r.Raw)
	return b.String()
}

func TestDecodeTaskResultRejects(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]error{
		`[1]`:                                   ErrMalformedResult,
		`"SUCCESS"`:                             ErrMalformedResult,
		`{"result": 1}`:                         ErrMalformedResult,
		`{"status": 1}`:                         ErrMalformedResult,
		`{"status": null}`:                      ErrMalformedResult,
		`{"status": "SUCCESS"`:                  ErrMalformedJSON,
		`{"status": "SUCCESS"} x`:               ErrMalformedJSON,
		`{"status": "SUCCESS", "traceback": 1}`: ErrMalformedResult,
		`{"status": "SUCCESS", "retries": "1"}`: ErrMalformedResult,
		`{"status": "SUCCESS", "date_done": "yesterday"}`:  ErrBadDate,
		`{"status": "SUCCESS", "date_done": 1714564800}`:   ErrMalformedResult,
		`{"status": "SUCCESS", "task_id": ["a"]}`:          ErrMalformedResult,
		`{"status": "SUCCESS", "result": {"__type__": 1}}`: nil, // a reader's problem (Value), not the meta's
	} {
		_, err := DecodeTaskResult([]byte(raw))
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", raw, err, want)
		}
	}
}

// date_done is written as Python's isoformat() writes the datetime each
// version builds.
func TestFormatDateDone(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin") // tzdata embedded below: never missing
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	whole := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		t    time.Time
		loc  *time.Location
		want string
	}{
		{at, nil, "2024-05-01T12:00:00.123456"}, // 5.2/5.3: datetime.utcnow().isoformat()
		{whole, nil, "2024-05-01T12:00:00"},     // isoformat drops a zero fraction
		{at.Add(-999 * time.Microsecond), nil, "2024-05-01T12:00:00.122457"},
		{time.Date(2024, 5, 1, 12, 0, 0, 5000, time.UTC), nil, "2024-05-01T12:00:00.000005"},
		{at.In(berlin), nil, "2024-05-01T12:00:00.123456"}, // naive is always UTC
		{at, time.UTC, "2024-05-01T12:00:00.123456+00:00"}, // 5.4: datetime.now(timezone.utc)
		{at, berlin, "2024-05-01T14:00:00.123456+02:00"},   // 5.5+: app.now() in the app timezone
		{whole, time.FixedZone("", -(3*3600 + 30*60)), "2024-05-01T08:30:00-03:30"},
		{whole, time.FixedZone("", 5*3600+53*60+28), "2024-05-01T17:53:28+05:53:28"},
	} {
		if got := formatDateDone(tc.t, tc.loc); got != tc.want {
			t.Errorf("formatDateDone(%v, %v) = %s, want %s", tc.t, tc.loc, got, tc.want)
		}
	}
}

// What we store is, byte for byte, what a 5.2.6 worker stores for the same
// outcome (see TestRealWorkerResultsDecode for the comparison against a
// live worker).
func TestStoredJSON(t *testing.T) {
	t.Parallel()
	s := setupResults(t, ResultBackendOptions{})
	ctx := context.Background()
	done := time.Date(2026, 11, 23, 18, 48, 25, 484738000, time.UTC)
	stored := func(id string) string {
		v, err := s.rdb.Get(ctx, s.backend.Key(id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tb := "Traceback (most recent call last):\n  File \"t.py\", line 78, in fail\n    raise ValueError(msg, n)\nValueError: ('boom', 42)\n"
	if err := s.backend.StoreFailure(ctx, "d566a76c", ExceptionInfo{Type: "ValueError", Module: "builtins",
		Message: json.RawMessage(`["boom",42]`)}, tb, StoreMeta{DateDone: done}); err != nil {
		t.Fatal(err)
	}
	if got := stored("d566a76c"); got != celery526Failure {
		t.Errorf("FAILURE\n got %s\nwant %s", got, celery526Failure)
	}
	if err := s.backend.StoreRevoked(ctx, "c4743d51", "expired", StoreMeta{DateDone: time.Date(2026, 11, 23, 18, 48, 25, 511274000, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if got := stored("c4743d51"); got != celery526Revoked {
		t.Errorf("REVOKED\n got %s\nwant %s", got, celery526Revoked)
	}
	if err := s.backend.StoreState(ctx, "c1867109", StateStarted, map[string]any{"hostname": "interop@gotest", "pid": 22385}, StoreMeta{}); err != nil {
		t.Fatal(err)
	}
	// Go maps are written with sorted keys; Python kept insertion order.
	if got, want := stored("c1867109"), strings.Replace(celery526Started, `{"pid": 22385, "hostname": "interop@gotest"}`, `{"hostname": "interop@gotest", "pid": 22385}`, 1); got != want {
		t.Errorf("STARTED\n got %s\nwant %s", got, want)
	}
	if err := s.backend.StoreSuccess(ctx, "4a288c79", 2, StoreMeta{GroupID: "9b7f7c2e", ParentID: "3c1d2a90",
		Children: json.RawMessage(`[[["289204ef",null],null]]`), DateDone: time.Date(2026, 11, 23, 18, 48, 25, 479784000, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if got := stored("4a288c79"); got != celery526Lineage {
		t.Errorf("SUCCESS\n got %s\nwant %s", got, celery526Lineage)
	}

	ext := NewResultBackend(s.rdb, ResultBackendOptions{Extended: true, Expires: -1})
	if err := ext.StoreSuccess(ctx, "c1867109x", json.RawMessage("5"), StoreMeta{DateDone: time.Date(2026, 11, 23, 18, 48, 25, 472996000, time.UTC),
		Extended: ExtendedMeta{Name: "interop.add", Args: json.RawMessage("[2,3]"), Kwargs: json.RawMessage("{}"), Worker: "interop@gotest", Queue: "celery"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := stored("c1867109x"), strings.Replace(celery526Success, `"c1867109"`, `"c1867109x"`, 1); got != want {
		t.Errorf("extended SUCCESS\n got %s\nwant %s", got, want)
	}
	if ttl := s.rdb.TTL(ctx, ext.Key("c1867109x")).Val(); ttl != -1 {
		t.Errorf("Expires -1: TTL %v, want none", ttl)
	}
	if ttl := s.rdb.TTL(ctx, s.backend.Key("4a288c79")).Val(); ttl < 86390*time.Second || ttl > 86400*time.Second {
		t.Errorf("default TTL %v, want one day", ttl)
	}
	short := NewResultBackend(s.rdb, ResultBackendOptions{Expires: 1500 * time.Millisecond, KeyPrefix: "app_"})
	if err := short.StoreSuccess(ctx, "p", 1, StoreMeta{}); err != nil {
		t.Fatal(err)
	}
	if ttl := s.rdb.TTL(ctx, "app_celery-task-meta-p").Val(); ttl != 2*time.Second {
		t.Errorf("1.5s expiry: TTL %v, want 2s (rounded up)", ttl)
	}

	for _, bad := range []func() error{
		func() error { return s.backend.StoreSuccess(ctx, "", 1, StoreMeta{}) },
		func() error { return s.backend.StoreFailure(ctx, "x", ExceptionInfo{}, "", StoreMeta{}) },
		func() error { return s.backend.StoreSuccess(ctx, "x", make(chan int), StoreMeta{}) },
		func() error { return s.backend.StoreState(ctx, "x", StatePending, nil, StoreMeta{}) },
		func() error {
			return s.backend.StoreSuccess(ctx, "x", 1, StoreMeta{Children: json.RawMessage(`[`)})
		},
	} {
		if err := bad(); err == nil {
			t.Error("stored an invalid result")
		}
	}
	if n := s.rdb.Exists(ctx, s.backend.Key("x"), s.backend.Key("")).Val(); n != 0 {
		t.Errorf("a refused write left %d keys", n)
	}
}

func TestGetPendingAndUnreadable(t *testing.T) {
	t.Parallel()
	s := setupResults(t, ResultBackendOptions{})
	ctx := context.Background()
	r, err := s.backend.Get(ctx, "nobody")
	if err != nil || r.State != StatePending || r.TaskID != "nobody" || string(r.Result) != "null" || r.Raw != nil {
		t.Fatalf("missing key: %+v, %v", r, err)
	}
	if _, err := s.backend.Get(ctx, ""); !errors.Is(err, ErrMissingTaskID) {
		t.Errorf("empty id: %v", err)
	}
	if _, err := s.backend.Wait(ctx, "", time.Second); !errors.Is(err, ErrMissingTaskID) {
		t.Errorf("empty id: %v", err)
	}
	s.rdb.Set(ctx, s.backend.Key("junk"), "not json", 0)
	if _, err := s.backend.Get(ctx, "junk"); !errors.Is(err, ErrMalformedJSON) {
		t.Errorf("junk: %v", err)
	}
	// Celery's own check fails on such a value and so refuses to write;
	// so do we, rather than guess whether it was a SUCCESS.
	for _, v := range []string{"not json", `[1]`, `{"result": 1}`} {
		s.rdb.Set(ctx, s.backend.Key("junk"), v, 0)
		if err := s.backend.StoreFailure(ctx, "junk", ExceptionInfo{Type: "E"}, "", StoreMeta{}); !errors.Is(err, ErrMalformedResult) {
			t.Errorf("overwriting %s: %v", v, err)
		}
	}
	// A status that is not first is found by decoding the whole value.
	s.rdb.Set(ctx, s.backend.Key("late"), `{"result": 1, "task_id": "late", "status": "SUCCESS"}`, 0)
	if err := s.backend.StoreRevoked(ctx, "late", "revoked", StoreMeta{}); !errors.Is(err, ErrAlreadySucceeded) {
		t.Errorf("late status: %v", err)
	}
	// A FAILURE may be replaced (a retried task that then succeeds).
	s.rdb.Set(ctx, s.backend.Key("f"), celery526Failure, 0)
	if err := s.backend.StoreSuccess(ctx, "f", "ok", StoreMeta{}); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.backend.Get(ctx, "f"); r.State != StateSuccess || string(r.Result) != `"ok"` {
		t.Errorf("after FAILURE: %+v", r)
	}
}

// Writers racing on one task: exactly one SUCCESS is stored and published,
// the first; every write after it is refused and publishes nothing.
func TestConcurrentWritersFirstSuccessWins(t *testing.T) {
	t.Parallel()
	s := setupResults(t, ResultBackendOptions{})
	ctx := context.Background()
	for round := range 20 {
		id := fmt.Sprintf("race-%d-%s", round, uuid.NewString())
		key := s.backend.Key(id)
		sub := s.rdb.Subscribe(ctx, key)
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		type outcome struct {
			kind  string
			value int
			err   error
		}
		const writers = 24
		results := make([]outcome, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				<-start
				var err error
				kind := []string{"success", "failure", "revoked", "started"}[i%4]
				switch kind {
				case "success":
					err = s.backend.StoreSuccess(ctx, id, i, StoreMeta{})
				case "failure":
					err = s.backend.StoreFailure(ctx, id, ExceptionInfo{Type: "ValueError", Module: "builtins"}, "", StoreMeta{})
				case "revoked":
					err = s.backend.StoreRevoked(ctx, id, "revoked", StoreMeta{})
				default:
					err = s.backend.StoreState(ctx, id, StateStarted, map[string]any{"pid": i}, StoreMeta{})
				}
				results[i] = outcome{kind, i, err}
			})
		}
		close(start)
		wg.Wait()
		if err := s.rdb.Publish(ctx, key, "END").Err(); err != nil {
			t.Fatal(err)
		}

		winner, stored := -1, 0
		for _, o := range results {
			switch {
			case o.err == nil:
				stored++
				if o.kind == "success" {
					if winner >= 0 {
						t.Fatalf("round %d: two SUCCESS writes went through (%d, %d)", round, winner, o.value)
					}
					winner = o.value
				}
			case !errors.Is(o.err, ErrAlreadySucceeded):
				t.Fatalf("round %d: %v", round, o.err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no SUCCESS stored", round)
		}
		var published []*TaskResult
		for {
			msg, err := sub.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Payload == "END" {
				break
			}
			published = append(published, mustDecodeResult(t, msg.Payload))
		}
		sub.Close()
		if len(published) != stored {
			t.Fatalf("round %d: %d writes went through, %d published", round, stored, len(published))
		}
		if last := published[len(published)-1]; last.State != StateSuccess || string(last.Result) != fmt.Sprint(winner) {
			t.Errorf("round %d: last publish %s, want the SUCCESS %d", round, last.Raw, winner)
		}
		r, err := s.backend.Get(ctx, id)
		if err != nil || r.State != StateSuccess || string(r.Result) != fmt.Sprint(winner) {
			t.Errorf("round %d: stored %+v, %v; want SUCCESS %d", round, r, err, winner)
		}
	}
}

// Wait, against Go writers: woken by the PUBLISH, not missing a result
// stored between its subscription and its read, and timing out with a
// typed error.
func TestWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("woken by a publish", func(t *testing.T) {
		t.Parallel()
		s := setupResults(t, ResultBackendOptions{})
		var stages []string
		s.backend.waitHook = func(stage string) {
			stages = append(stages, stage)
			if stage == "checked" { // the read found nothing: only the PUBLISH can wake us
				if err := s.backend.StoreState(ctx, "w", StateStarted, map[string]any{"pid": 1}, StoreMeta{}); err != nil {
					t.Error(err)
				}
				if err := s.backend.StoreSuccess(ctx, "w", "done", StoreMeta{}); err != nil {
					t.Error(err)
				}
			}
		}
		r, err := s.backend.Wait(ctx, "w", 10*time.Second)
		if err != nil || r.State != StateSuccess || string(r.Result) != `"done"` {
			t.Fatalf("%+v %v", r, err)
		}
		if strings.Join(stages, ",") != "subscribed,checked" {
			t.Errorf("stages %v", stages)
		}
	})

	t.Run("stored between subscribe and read", func(t *testing.T) {
		t.Parallel()
		s := setupResults(t, ResultBackendOptions{})
		s.backend.waitHook = func(stage string) {
			if stage == "subscribed" { // a writer that does not publish: only the read sees it
				s.rdb.Set(ctx, s.backend.Key("b"), celery526Revoked, 0)
			}
		}
		r, err := s.backend.Wait(ctx, "b", 10*time.Second)
		if err != nil || r.State != StateRevoked {
			t.Fatalf("%+v %v", r, err)
		}
	})

	t.Run("already stored", func(t *testing.T) {
		t.Parallel()
		s := setupResults(t, ResultBackendOptions{})
		if err := s.backend.StoreFailure(ctx, "f", ExceptionInfo{Type: "KeyError", Module: "builtins", Message: json.RawMessage(`["k"]`)}, "tb", StoreMeta{}); err != nil {
			t.Fatal(err)
		}
		r, err := s.backend.Wait(ctx, "f", time.Second)
		if err != nil || r.State != StateFailure || r.Err() == nil {
			t.Fatalf("%+v %v", r, err)
		}
	})

	t.Run("a silent subscription is rechecked", func(t *testing.T) {
		t.Parallel()
		s := setupResults(t, ResultBackendOptions{})
		s.backend.recheck = 100 * time.Millisecond
		var stages []string
		s.backend.waitHook = func(stage string) {
			stages = append(stages, stage)
			if len(stages) == 2 { // stored without a PUBLISH after our read
				s.rdb.Set(ctx, s.backend.Key("q"), celery526Revoked, 0)
			}
		}
		r, err := s.backend.Wait(ctx, "q", 10*time.Second)
		if err != nil || r.State != StateRevoked || strings.Join(stages, ",") != "subscribed,checked,rechecked" {
			t.Fatalf("%+v %v %v", r, err, stages)
		}
	})

	t.Run("reconnect reads the key again", func(t *testing.T) {
		t.Parallel()
		s := setupResults(t, ResultBackendOptions{})
		o, _ := redis.ParseURL(s.url)
		o.ClientName = "waiter-" + uuid.NewString()
		rdb := redis.NewClient(o)
		defer rdb.Close()
		b := NewResultBackend(rdb, ResultBackendOptions{})
		var stages []string
		b.waitHook = func(stage string) {
			stages = append(stages, stage)
			if len(stages) != 2 {
				return
			}
			// Drop the subscription's connection, then store without a
			// PUBLISH while it is gone: only the read after the new
			// subscription can see the result.
			killed := false
			for _, line := range strings.Split(s.rdb.ClientList(ctx).Val(), "\n") {
				if strings.Contains(line, "name="+o.ClientName+" ") && strings.Contains(line, " sub=1 ") {
					id := strings.Fields(line)[0] // id=N
					killed = s.rdb.Do(ctx, "CLIENT", "KILL", "ID", strings.TrimPrefix(id, "id=")).Err() == nil
				}
			}
			if !killed {
				t.Error("found no subscription connection to kill")
			}
			s.rdb.Set(ctx, b.Key("k"), celery526Revoked, 0)
		}
		r, err := b.Wait(ctx, "k", 10*time.Second)
		if err != nil || r.State != StateRevoked || strings.Join(stages, ",") != "subscribed,checked,subscribed" {
			t.Fatalf("%+v %v %v", r, err, stages)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		s := setupResults(t, ResultBackendOptions{})
		if err := s.backend.StoreState(ctx, "slow", StateStarted, map[string]any{"pid": 1}, StoreMeta{}); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		r, err := s.backend.Wait(ctx, "slow", time.Second)
		var te *WaitTimeoutError
		if r != nil || !errors.As(err, &te) || !errors.Is(err, ErrWaitTimeout) {
			t.Fatalf("%+v %v", r, err)
		}
		if te.TaskID != "slow" || te.After != time.Second || te.Last == nil || te.Last.State != StateStarted {
			t.Errorf("%+v", te)
		}
		if d := time.Since(begin); d < time.Second || d > 10*time.Second {
			t.Errorf("timed out after %v", d)
		}
	})

	t.Run("context cancelled", func(t *testing.T) {
		t.Parallel()
		s := setupResults(t, ResultBackendOptions{})
		cctx, cancel := context.WithCancel(ctx)
		s.backend.waitHook = func(stage string) {
			if stage == "checked" {
				time.AfterFunc(100*time.Millisecond, cancel)
			}
		}
		_, err := s.backend.Wait(cctx, "never", 0)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrWaitTimeout) {
			t.Fatalf("%v", err)
		}
	})
}
