package celerybridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spinecore/spine-go/internal/celerytest"
)

// interopScript is Celery 5.2.6's side of these tests.
var interopScript = filepath.Join("..", "testdata", "celery-interop", "results_interop.py")

// runInterop runs one of results_interop.py's one-shot modes with input as
// JSON on stdin and decodes its JSON output into out.
func runInterop(t *testing.T, py, url string, env []string, input any, out any, args ...string) {
	t.Helper()
	data, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{interopScript}, args...)...)
	cmd.Env = append(append(os.Environ(), "SPINE_REDIS_URL="+url), env...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("results_interop.py %v: %v\n%s", args, err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(res))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("results_interop.py %v: %v\n%s", args, err, res)
	}
}

// pyWaiter is a Python process calling AsyncResult(id).get() for the ids
// it is handed, one at a time.
type pyWaiter struct {
	t     *testing.T
	stdin io.WriteCloser
	lines *bufio.Scanner
}

type pyRaised struct {
	Module, Type, Str string
	Args              []json.RawMessage
	MRO               []string
	Revoked, Timeout  bool
}

type pyOutcome struct {
	ID      string
	Waiting string
	JSON    string // json.dumps of the value get() returned
	Type    string
	Raised  *pyRaised
}

func startPyWaiter(t *testing.T, py, url string) *pyWaiter {
	t.Helper()
	cmd := exec.Command(py, interopScript, "wait")
	cmd.Env = append(os.Environ(), "SPINE_REDIS_URL="+url)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("results_interop.py wait: %v", err)
		}
	})
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	return &pyWaiter{t: t, stdin: stdin, lines: lines}
}

func (w *pyWaiter) next() pyOutcome {
	w.t.Helper()
	if !w.lines.Scan() {
		w.t.Fatalf("results_interop.py wait ended: %v", w.lines.Err())
	}
	var o pyOutcome
	if err := json.Unmarshal(w.lines.Bytes(), &o); err != nil {
		w.t.Fatalf("%v: %s", err, w.lines.Bytes())
	}
	return o
}

// waitFor has Python call get() on id and returns once get() has
// subscribed, read the key and is blocked on pub/sub.
func (w *pyWaiter) waitFor(id string, timeout time.Duration) {
	w.t.Helper()
	fmt.Fprintf(w.stdin, `{"id": %q, "timeout": %g}`+"\n", id, timeout.Seconds())
	if o := w.next(); o.Waiting != id {
		w.t.Fatalf("expected Python to be waiting on %s, got %+v", id, o)
	}
}

// requireSubscribed makes sure a subscriber is registered on the key's
// channel before we write, so that what wakes it can only be our PUBLISH.
func requireSubscribed(t *testing.T, s *resultSetup, id string) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Second); ; {
		n := s.rdb.PubSubNumSub(ctx, s.backend.Key(id)).Val()[s.backend.Key(id)]
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody subscribed to %s", s.backend.Key(id))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.rdb.Exists(ctx, s.backend.Key(id)).Val(); n != 0 {
		t.Fatalf("%s exists before we wrote it", id)
	}
}

// Test 1: a Python caller already blocked in AsyncResult.get() receives
// what StoreSuccess writes, value for value.
func TestPythonGetsGoSuccess(t *testing.T) {
	t.Parallel()
	py := celerytest.Python(t)
	s := setupResults(t, ResultBackendOptions{})
	ctx := context.Background()
	w := startPyWaiter(t, py, s.url)
	for _, tc := range []struct {
		name  string
		value any
		pyTyp string
	}{
		{"int beyond 2^64", json.Number("18446744073709551617"), "int"},
		{"list of edge numbers", []any{json.Number("-9223372036854775809"), json.Number("9223372036854775808"),
			1.5, 1e-7, math.Copysign(0, -1), 1e22, nil, true, false}, "list"},
		{"unicode", "caf\u00e9 \U0001F600 'q' \"d\" \\ \n\t\x00 \u2028 \x7f", "str"},
		{"nested", map[string]any{"nested": map[string]any{"list": []any{1, map[string]any{"k": "v"}}, "empty": map[string]any{},
			"none": nil}, "\u00fcn\u00efcode key": []any{}}, "dict"},
		{"raw JSON, numbers as written", json.RawMessage(`{"z":1, "a" : [1.5,-0.0,{"b":null}], "big": 123456789012345678901234567890}`), "dict"},
		{"null", nil, "NoneType"},
		{"time as kombu 5.2 writes it", time.Date(2024, 2, 29, 12, 0, 0, 1000, time.UTC), "str"},
	} {
		id := uuid.NewString()
		w.waitFor(id, 20*time.Second)
		requireSubscribed(t, s, id)
		if err := s.backend.StoreSuccess(ctx, id, tc.value, StoreMeta{}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		o := w.next()
		r, err := s.backend.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if o.Raised != nil || o.ID != id || o.Type != tc.pyTyp {
			t.Errorf("%s: Python got %+v (raised %+v)", tc.name, o, o.Raised)
			continue
		}
		// Python's json.dumps of what it received gives back our bytes.
		if o.JSON != string(r.Result) {
			t.Errorf("%s: Python received %s, we stored %s", tc.name, o.JSON, r.Result)
		}
	}
}

// Test 2: Python's get() raises what StoreFailure and StoreRevoked stored.
func TestPythonRaisesGoFailure(t *testing.T) {
	t.Parallel()
	py := celerytest.Python(t)
	s := setupResults(t, ResultBackendOptions{})
	ctx := context.Background()
	w := startPyWaiter(t, py, s.url)
	msg := func(s string) json.RawMessage { return json.RawMessage(s) }
	for _, tc := range []struct {
		name   string
		exc    *ExceptionInfo // nil: REVOKED
		module string         // of the class Python raises
		typ    string
		args   string // JSON of its args
		str    string
		isa    string // a class in its MRO
	}{
		{"ValueError", &ExceptionInfo{Type: "ValueError", Module: "builtins", Message: msg(`["boom", 42]`)},
			"builtins", "ValueError", `["boom",42]`, "('boom', 42)", "builtins.ValueError"},
		{"KeyError", &ExceptionInfo{Type: "KeyError", Module: "builtins", Message: msg(`["missing"]`)},
			"builtins", "KeyError", `["missing"]`, "'missing'", "builtins.LookupError"},
		{"a class Python does not have", &ExceptionInfo{Type: "QuotaExceeded", Module: "capture_spine.billing", Message: msg(`["over quota", 3]`)},
			"celery.exceptions", "QuotaExceeded", `["over quota",3]`, "('over quota', 3)", "builtins.Exception"},
		{"a class in a loaded module", &ExceptionInfo{Type: "SoftTimeLimitExceeded", Module: "billiard.exceptions", Message: msg(`["soft"]`)},
			"billiard.exceptions", "SoftTimeLimitExceeded", `["soft"]`, "SoftTimeLimitExceeded('soft',)", "builtins.Exception"},
		{"no module", &ExceptionInfo{Type: "Oops", Message: msg(`[]`)},
			"celery.backends.base", "Oops", `[]`, "", "builtins.Exception"},
		{"message as a string (pre-4 writers)", &ExceptionInfo{Type: "ValueError", Module: "builtins", Message: msg(`"boom"`)},
			"builtins", "ValueError", `["boom"]`, "boom", "builtins.ValueError"},
		{"not an exception class: Celery refuses it", &ExceptionInfo{Type: "system", Module: "os", Message: msg(`["true"]`)},
			"celery.exceptions", "SecurityError", "", "", "celery.exceptions.SecurityError"},
		{"REVOKED", nil, "celery.exceptions", "TaskRevokedError", `["revoked"]`, "revoked", "celery.exceptions.TaskRevokedError"},
	} {
		id := uuid.NewString()
		w.waitFor(id, 20*time.Second)
		requireSubscribed(t, s, id)
		var err error
		if tc.exc == nil {
			err = s.backend.StoreRevoked(ctx, id, "revoked", StoreMeta{})
		} else {
			err = s.backend.StoreFailure(ctx, id, *tc.exc, "Traceback (most recent call last):\n  File \"go\", line 1\n", StoreMeta{})
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		o := w.next()
		e := o.Raised
		if e == nil {
			t.Errorf("%s: get() returned %s instead of raising", tc.name, o.JSON)
			continue
		}
		args, _ := json.Marshal(e.Args)
		if e.Module != tc.module || e.Type != tc.typ || (tc.args != "" && string(args) != tc.args) ||
			(tc.args != "" && e.Str != tc.str) || !contains(e.MRO, tc.isa) || e.Revoked != (tc.exc == nil) || e.Timeout {
			t.Errorf("%s: Python raised %s.%s%s %q (mro %v)", tc.name, e.Module, e.Type, args, e.Str, e.MRO)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// interopJob is one task results_interop.py ran on a real worker.
type interopJob struct {
	ID        string
	Stored    string
	TTL       int
	Published []string
	Expected  string
	Py        pyView
}

// pyView is what Python's backend and AsyncResult read for a task.
type pyView struct {
	Status      string
	State       string
	TaskID      string `json:"task_id"`
	Traceback   *string
	GroupID     *string `json:"group_id"`
	ParentID    *string `json:"parent_id"`
	Name        *string
	Worker      *string
	Queue       *string
	DateDone    *string `json:"date_done"`
	DateDoneRaw *string `json:"date_done_raw"`
	Result      json.RawMessage
	Children    json.RawMessage
	Args        json.RawMessage
	Kwargs      json.RawMessage
	Retries     *int
	Has         []string
	Exception   *pyRaised
}

type interopRun struct {
	Jobs      map[string]*interopJob
	WorkerLog string `json:"worker_log"`
}

// runWorker runs results_interop.py's real Celery worker over the jobs.
func runWorker(t *testing.T, py, url string, extended bool, labels ...string) *interopRun {
	t.Helper()
	ext := "INTEROP_EXTENDED=0"
	if extended {
		ext = "INTEROP_EXTENDED=1"
	}
	var run interopRun
	runInterop(t, py, url, []string{ext}, nil, &run, append([]string{"worker"}, labels...)...)
	for label, j := range run.Jobs {
		if j.Py.Status != j.Expected {
			t.Fatalf("job %s ended %s, want %s\nworker log:\n%s", label, j.Py.Status, j.Expected, run.WorkerLog)
		}
	}
	return &run
}

// Test 3: what a real 5.2.6 worker stores and publishes, Get and
// DecodeTaskResult read field for field as Python does; and storing the
// same outcome through our API writes the same bytes.
func TestRealWorkerResultsDecode(t *testing.T) {
	t.Parallel()
	py := celerytest.Python(t)
	for _, extended := range []bool{false, true} {
		t.Run(fmt.Sprintf("result_extended=%v", extended), func(t *testing.T) {
			t.Parallel()
			s := setupResults(t, ResultBackendOptions{})
			run := runWorker(t, py, s.url, extended)
			if len(run.Jobs) != 10 {
				t.Fatalf("%d jobs", len(run.Jobs))
			}
			for label, j := range run.Jobs {
				t.Run(label, func(t *testing.T) {
					r, err := s.backend.Get(context.Background(), j.ID)
					if err != nil {
						t.Fatal(err)
					}
					checkAgainstPython(t, r, j, extended)
					checkLabel(t, label, r, run)
					if j.TTL < 86390 || j.TTL > 86400 {
						t.Errorf("TTL %d", j.TTL)
					}
					checkPublished(t, j, r)
					checkRewrite(t, s, r)
				})
			}
		})
	}
}

// checkAgainstPython compares every field with what Python read.
func checkAgainstPython(t *testing.T, r *TaskResult, j *interopJob, extended bool) {
	t.Helper()
	p := &j.Py
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	if string(r.Raw) != j.Stored || string(r.State) != p.Status || r.TaskID != j.ID || r.TaskID != p.TaskID {
		t.Errorf("state %s id %s raw %s; Python: %s %s", r.State, r.TaskID, r.Raw, p.Status, p.TaskID)
	}
	if r.Traceback != str(p.Traceback) || r.GroupID != str(p.GroupID) || r.ParentID != str(p.ParentID) {
		t.Errorf("traceback/group/parent %q %q %q; Python %q %q %q", r.Traceback, r.GroupID, r.ParentID,
			str(p.Traceback), str(p.GroupID), str(p.ParentID))
	}
	if !pyEqual(mustNode(t, r.Children), mustNode(t, p.Children)) {
		t.Errorf("children %s; Python %s", r.Children, p.Children)
	}
	switch {
	case p.DateDone == nil && !r.DateDone.IsZero():
		t.Errorf("date_done %v; Python none", r.DateDone)
	case p.DateDone != nil:
		want, err := ParseTime(*p.DateDone)
		if err != nil || !r.DateDone.Equal(want) || formatDateDone(r.DateDone, nil) != str(p.DateDoneRaw) {
			t.Errorf("date_done %v; Python %s (%v)", r.DateDone, *p.DateDone, err)
		}
	}
	if p.Exception != nil {
		if r.Exception == nil || r.Exception.Type != p.Exception.Type {
			t.Fatalf("exception %+v; Python %+v", r.Exception, p.Exception)
		}
		args, err := r.Exception.Args()
		got, _ := json.Marshal(args)
		want, _ := json.Marshal(p.Exception.Args)
		if err != nil || string(got) != string(want) {
			t.Errorf("exception args %s (%v); Python %s", got, err, want)
		}
	} else if !pyEqual(mustNode(t, r.Result), mustNode(t, p.Result)) || r.Exception != nil {
		t.Errorf("result %s; Python %s", r.Result, p.Result)
	}
	if !extended {
		if r.Extended != nil || contains(p.Has, "name") {
			t.Errorf("extended %+v without result_extended (Python has %v)", r.Extended, p.Has)
		}
		return
	}
	x := r.Extended
	if x == nil {
		t.Fatal("no extended meta")
	}
	if x.Name != str(p.Name) || x.Worker != str(p.Worker) || x.Queue != str(p.Queue) || p.Retries == nil || x.Retries != *p.Retries ||
		!pyEqual(mustNode(t, x.Args), mustNode(t, p.Args)) || !pyEqual(mustNode(t, x.Kwargs), mustNode(t, p.Kwargs)) {
		t.Errorf("extended %s %s %s %s %d %s; Python %+v", x.Name, x.Args, x.Kwargs, x.Worker, x.Retries, x.Queue, p)
	}
}

// checkLabel checks what each job is known to have produced.
func checkLabel(t *testing.T, label string, r *TaskResult, run *interopRun) {
	t.Helper()
	exc := func(module, typ, msg string) {
		t.Helper()
		if e := r.Exception; e == nil || e.Module != module || e.Type != typ || string(e.Message) != msg {
			t.Errorf("exception %+v, want %s.%s%s", e, module, typ, msg)
		}
	}
	switch label {
	case "add":
		if string(r.Result) != "5" || r.Err() != nil {
			t.Errorf("result %s", r.Result)
		}
	case "echo":
		want := `{"big": 18446744073709551617, "neg": -9223372036854775809, "text": "caf\u00e9 \ud83d\ude00 \"q\" \\ \n", "float": 1e-07, "zero": -0.0, "nested": [1, [2, {"k": null}], true], "empty": {}}`
		if string(r.Result) != want {
			t.Errorf("result %s", r.Result)
		}
	case "lineage":
		if r.GroupID != "9b7f7c2e-0c4e-4f0e-8a43-5d2b8f1f0a11" || r.ParentID != "3c1d2a90-7e55-4b6b-9d0c-2f4c7a8e6b22" {
			t.Errorf("group %q parent %q", r.GroupID, r.ParentID)
		}
	case "fail":
		exc("builtins", "ValueError", `["boom", 42]`)
		if !strings.HasSuffix(r.Traceback, "ValueError: ('boom', 42)\n") || r.Err() == nil {
			t.Errorf("traceback %q", r.Traceback)
		}
	case "keyerror":
		exc("builtins", "KeyError", `["missing"]`)
	case "custom":
		exc("results_interop", "QuotaExceeded", `["over quota", 3]`)
	case "retry":
		exc("builtins", "ValueError", `["again"]`)
		if !r.DateDone.IsZero() || r.State.IsReady() || !strings.Contains(r.Traceback, "Retry in 3600s") {
			t.Errorf("date_done %v traceback %q", r.DateDone, r.Traceback)
		}
	case "expired":
		exc("celery.exceptions", "TaskRevokedError", `["expired"]`)
		var re *ResultError
		if !errors.As(r.Err(), &re) || re.State != StateRevoked {
			t.Errorf("Err() = %v", r.Err())
		}
	case "spawn":
		child := run.Jobs["spawn.child"].ID
		if want := fmt.Sprintf(`[[["%s", null], null]]`, child); string(r.Children) != want || string(r.Result) != `"`+child+`"` {
			t.Errorf("children %s, want %s", r.Children, want)
		}
	case "spawn.child":
		if r.ParentID != run.Jobs["spawn"].ID {
			t.Errorf("parent %q", r.ParentID)
		}
	default:
		t.Errorf("unknown job %s", label)
	}
}

// checkPublished decodes every payload the worker published on the key's
// channel: STARTED (task_track_started) first, then the final state, which
// equals the stored value.
func checkPublished(t *testing.T, j *interopJob, r *TaskResult) {
	t.Helper()
	if len(j.Published) == 0 || j.Published[len(j.Published)-1] != j.Stored {
		t.Fatalf("published %q, stored %s", j.Published, j.Stored)
	}
	for i, p := range j.Published[:len(j.Published)-1] {
		m := mustDecodeResult(t, p)
		if m.State != StateStarted || m.TaskID != r.TaskID || !m.DateDone.IsZero() || i > 0 {
			t.Errorf("publish %d: %s", i, p)
		}
		v, err := m.Value()
		if hostname := v.(map[string]any)["hostname"]; err != nil || hostname != "interop@gotest" {
			t.Errorf("STARTED result %s", m.Result)
		}
	}
	if r.State != StateRevoked && len(j.Published) != 2 { // an expired task never starts
		t.Errorf("%d publishes", len(j.Published))
	}
}

// checkRewrite stores the outcome r describes through our API under a new
// id and compares the bytes with what the 5.2.6 worker stored.
func checkRewrite(t *testing.T, s *resultSetup, r *TaskResult) {
	t.Helper()
	ctx := context.Background()
	b := NewResultBackend(s.rdb, ResultBackendOptions{Extended: r.Extended != nil})
	meta := StoreMeta{GroupID: r.GroupID, ParentID: r.ParentID, Children: r.Children, DateDone: r.DateDone}
	if r.Extended != nil {
		meta.Extended = *r.Extended
	}
	id := "copy-" + r.TaskID
	var err error
	switch r.State {
	case StateSuccess:
		err = b.StoreSuccess(ctx, id, r.Result, meta)
	case StateFailure:
		err = b.StoreFailure(ctx, id, *r.Exception, r.Traceback, meta)
	case StateRetry:
		err = b.StoreRetry(ctx, id, *r.Exception, r.Traceback, meta)
	case StateRevoked:
		args, _ := r.Exception.Args()
		err = b.StoreRevoked(ctx, id, args[0].(string), meta)
	}
	if err != nil {
		t.Fatal(err)
	}
	ours, err := s.rdb.Get(ctx, b.Key(id)).Result()
	if err != nil {
		t.Fatal(err)
	}
	celery := strings.Replace(string(r.Raw), `"task_id": "`+r.TaskID+`"}`, `"task_id": "`+id+`"}`, 1)
	if ours != celery {
		t.Errorf("we store\n %s\nCelery 5.2.6 stored\n %s", ours, celery)
	}
}

// Test 4: a SUCCESS a real worker stored is never replaced by us, and
// Celery's own writer does not replace ours.
func TestPythonSuccessIsNeverReplaced(t *testing.T) {
	t.Parallel()
	py := celerytest.Python(t)
	s := setupResults(t, ResultBackendOptions{})
	ctx := context.Background()
	run := runWorker(t, py, s.url, false, "add")
	id := run.Jobs["add"].ID
	key := s.backend.Key(id)
	sub := s.rdb.Subscribe(ctx, key)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	ttl := s.rdb.TTL(ctx, key).Val()
	for name, write := range map[string]func() error{
		"FAILURE": func() error {
			return s.backend.StoreFailure(ctx, id, ExceptionInfo{Type: "ValueError", Module: "builtins"}, "tb", StoreMeta{})
		},
		"REVOKED": func() error { return s.backend.StoreRevoked(ctx, id, "revoked", StoreMeta{}) },
		"SUCCESS": func() error { return s.backend.StoreSuccess(ctx, id, 6, StoreMeta{}) },
		"STARTED": func() error { return s.backend.StoreState(ctx, id, StateStarted, nil, StoreMeta{}) },
	} {
		if err := write(); !errors.Is(err, ErrAlreadySucceeded) {
			t.Errorf("%s over the worker's SUCCESS: %v", name, err)
		}
	}
	if got := s.rdb.Get(ctx, key).Val(); got != run.Jobs["add"].Stored {
		t.Errorf("stored value changed:\n %s\nwas\n %s", got, run.Jobs["add"].Stored)
	}
	if now := s.rdb.TTL(ctx, key).Val(); now > ttl {
		t.Errorf("TTL renewed: %v > %v", now, ttl)
	}
	s.rdb.Publish(ctx, key, "END")
	if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Payload != "END" {
		t.Errorf("a refused write published %v (%v)", msg, err)
	}

	// And the other way round: Celery's store_result leaves our SUCCESS.
	ours := uuid.NewString()
	if err := s.backend.StoreSuccess(ctx, ours, "go", StoreMeta{}); err != nil {
		t.Fatal(err)
	}
	before := s.rdb.Get(ctx, s.backend.Key(ours)).Val()
	var stored map[string]*string
	runInterop(t, py, s.url, nil, []map[string]any{{"id": ours, "state": "FAILURE", "error": []string{"late"}}}, &stored, "store")
	if after := stored[ours]; after == nil || *after != before {
		t.Errorf("Celery replaced our SUCCESS with %v", after)
	}
}

// Test 5: Wait is woken by a PUBLISH from Celery's own writer, and what
// Go stores (STARTED, RETRY, extended) reads back in Python as Celery's.
func TestWaitWokenByPython(t *testing.T) {
	t.Parallel()
	py := celerytest.Python(t)
	s := setupResults(t, ResultBackendOptions{})
	ctx := context.Background()
	id := uuid.NewString()
	checked := make(chan struct{})
	s.backend.waitHook = func(stage string) {
		if stage == "checked" {
			close(checked)
		}
	}
	type waited struct {
		r   *TaskResult
		err error
	}
	done := make(chan waited, 1)
	go func() {
		r, err := s.backend.Wait(ctx, id, 30*time.Second)
		done <- waited{r, err}
	}()
	select {
	case <-checked: // subscribed, read, found nothing: only a PUBLISH can wake it now
	case w := <-done:
		t.Fatalf("Wait returned early: %+v %v", w.r, w.err)
	}
	var stored map[string]*string
	runInterop(t, py, s.url, nil, []map[string]any{
		{"id": id, "state": "STARTED", "result": map[string]any{"pid": 1}},
		{"id": id, "state": "SUCCESS", "result": []any{json.Number("18446744073709551617"), "caf\u00e9"}},
	}, &stored, "store")
	w := <-done
	if w.err != nil || w.r.State != StateSuccess || string(w.r.Result) != `[18446744073709551617, "caf\u00e9"]` ||
		string(w.r.Raw) != *stored[id] {
		t.Fatalf("Wait: %+v %v; Celery stored %s", w.r, w.err, *stored[id])
	}
}

// Python reads STARTED, RETRY and extended results we store as Celery's.
func TestPythonReadsGoStates(t *testing.T) {
	t.Parallel()
	py := celerytest.Python(t)
	s := setupResults(t, ResultBackendOptions{Extended: true, DateDoneLocation: time.UTC})
	ctx := context.Background()
	started, retry, done := uuid.NewString(), uuid.NewString(), uuid.NewString()
	ext := ExtendedMeta{Name: "capture.ingest", Args: json.RawMessage(`[1, "a"]`), Kwargs: json.RawMessage(`{"k": 18446744073709551617}`),
		Worker: "go@host", Retries: 2, Queue: "ingest"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.backend.StoreState(ctx, started, StateStarted, map[string]any{"pid": 7, "hostname": "go@host"}, StoreMeta{Extended: ext}))
	must(s.backend.StoreRetry(ctx, retry, ExceptionInfo{Type: "ConnectionError", Module: "builtins", Message: json.RawMessage(`["reset"]`)},
		"Traceback (most recent call last):\n", StoreMeta{Extended: ext, ParentID: started}))
	at := time.Date(2024, 5, 1, 12, 0, 0, 500000000, time.UTC)
	must(s.backend.StoreSuccess(ctx, done, "ok", StoreMeta{Extended: ext, GroupID: "g", DateDone: at}))
	var view map[string]*pyView
	runInterop(t, py, s.url, nil, []string{started, retry, done}, &view, "view")
	for id, want := range map[string]string{started: "STARTED", retry: "RETRY", done: "SUCCESS"} {
		v := view[id]
		if v.Status != want || v.State != want || *v.Name != "capture.ingest" || *v.Worker != "go@host" || *v.Queue != "ingest" ||
			*v.Retries != 2 || string(v.Kwargs) != `{"k": 18446744073709551617}` {
			t.Errorf("%s: Python read %+v", want, v)
		}
	}
	if e := view[retry].Exception; e == nil || e.Module != "builtins" || e.Type != "ConnectionError" || *view[retry].ParentID != started {
		t.Errorf("RETRY: Python read %+v", view[retry])
	}
	if d := view[done].DateDone; d == nil || *d != "2024-05-01T12:00:00.500000+00:00" || *view[done].GroupID != "g" {
		t.Errorf("SUCCESS date_done %v", d)
	}
	if string(view[started].Result) != `{"hostname": "go@host", "pid": 7}` {
		t.Errorf("STARTED result %s", view[started].Result)
	}
}
