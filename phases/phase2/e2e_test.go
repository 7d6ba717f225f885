package phase2

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
	"github.com/spinecore/spine-go/internal/celerytest"
)

// estate is a real Celery 5.2.6 estate on the bundle's Redis: a producer
// app configured with WriteCeleryConfig's routes and a worker standing in
// for Capture-Spine's (testdata/phase2/phase2_app.py).
type estate struct {
	b      *bundle
	py     string
	dir    string
	routes string
}

func (b *bundle) estate() *estate {
	b.t.Helper()
	py := celerytest.Python(b.t)
	dir := filepath.Join(filepath.Dir(celerytest.InteropDir(b.t)), "phase2")
	var tasks []string
	for _, bt := range capturespine.DefaultCatalog().Tasks() {
		tasks = append(tasks, bt.Task)
	}
	routes := filepath.Join(b.t.TempDir(), "spine_phase2_routes.py")
	f, err := os.Create(routes)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := WriteCeleryConfig(f, DefaultInterceptQueue, tasks); err != nil {
		b.t.Fatal(err)
	}
	f.Close()
	return &estate{b: b, py: py, dir: dir, routes: routes}
}

// worker starts the Python worker on the worker queue and the normal lane's
// queue (where run_pipeline goes).
func (e *estate) worker() *celerytest.Worker {
	return celerytest.StartWorker(e.b.t, e.b.url, celerytest.WorkerOptions{
		Module: "phase2_app", Queues: []string{"celery", "normal"},
		Env: []string{"PYTHONPATH=" + e.dir},
	})
}

func (e *estate) python(stdin []byte, args ...string) []byte {
	e.b.t.Helper()
	cmd := exec.Command(e.py, append([]string{filepath.Join(e.dir, "phase2_app.py")}, args...)...)
	cmd.Env = append(os.Environ(), "SPINE_REDIS_URL="+e.b.url, "PHASE2_ROUTES="+e.routes)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			e.b.t.Fatalf("phase2_app.py %v: %v\n%s", args, err, ee.Stderr)
		}
		e.b.t.Fatalf("phase2_app.py %v: %v", args, err)
	}
	return out
}

// sent is what the producer sent: ids by task, and the one task outside
// the catalog (never intercepted).
type sent struct {
	IDs   map[string][]string `json:"ids"`
	Other string              `json:"other"`
}

func (s sent) all() []string {
	var ids []string
	for _, l := range s.IDs {
		ids = append(ids, l...)
	}
	return ids
}

// send has the Python producer call each catalog task n times (and, with
// fail, run_backup_for_user once more with fail=True, listed under "fail").
func (e *estate) send(n int, fail ...string) sent {
	e.b.t.Helper()
	var s sent
	if err := json.Unmarshal(e.python(nil, append([]string{"send", strconv.Itoa(n)}, fail...)...), &s); err != nil || len(s.IDs) < 6 {
		e.b.t.Fatalf("producer: %+v %v", s, err)
	}
	return s
}

// answer is what AsyncResult(id).get() gave Python.
type answer struct {
	OK    any    `json:"ok"`
	Error string `json:"error"`
}

// get asks Python for every id's AsyncResult.get().
func (e *estate) get(ids []string) map[string]answer {
	e.b.t.Helper()
	in, _ := json.Marshal(ids)
	var out map[string]answer
	if err := json.Unmarshal(e.python(in, "get", "30"), &out); err != nil {
		e.b.t.Fatal(err)
	}
	return out
}

// runs is how often the worker ran each task id (the hash check:runs).
func (e *estate) runs() map[string]string {
	m, err := e.b.rdb.HGetAll(e.b.ctx, "check:runs").Result()
	if err != nil {
		e.b.t.Fatal(err)
	}
	return m
}

func (e *estate) waitRan(ids []string) {
	e.b.t.Helper()
	e.b.waitFor("the worker ran every task", 60*time.Second, func() bool {
		runs := e.runs()
		for _, id := range ids {
			if runs[id] == "" {
				return false
			}
		}
		return true
	})
}

// run is the execution recorded for a Celery task id.
func (b *bundle) run(taskID string) (core.RunRecord, error) {
	return b.ledger().GetRunByIdempotencyKey(b.ctx, IdempotencyKey(taskID))
}

func (b *bundle) ledger() core.Ledger {
	b.t.Helper()
	l, err := pgledger.New(b.ctx, b.pool)
	if err != nil {
		b.t.Fatal(err)
	}
	return l
}

func (b *bundle) waitRunsEnded(ids []string) {
	b.t.Helper()
	b.waitFor("every run ended", 60*time.Second, func() bool {
		for _, id := range ids {
			r, err := b.run(id)
			if err != nil || r.Status.Active() {
				return false
			}
		}
		return true
	})
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	norm := func(v any) any {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		_ = json.Unmarshal(raw, &out)
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// Python producer → intercept queue → side-car (passthrough) → Python
// worker: every task runs once and its caller gets the result.
func TestEndToEndPassthroughWithRealCelery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := b.estate()
	b.start(b.testOptions())
	e.worker()
	s := e.send(2)
	ids := append(s.all(), s.Other)
	e.waitRan(ids)
	for id, a := range e.get(ids) {
		if a.Error != "" {
			t.Errorf("%s: %s", id, a.Error)
		}
	}
	for id, n := range e.runs() {
		if n != "1" {
			t.Errorf("task %s ran %s times", id, n)
		}
	}
	b.waitFor("drained", 5*time.Second, b.drained)
	counts := b.counts()
	for task := range s.IDs {
		if c := counts[task]; c.Passed != 2 || c.Seen != 2 {
			t.Errorf("%s: %+v", task, c)
		}
	}
	for _, id := range s.all() {
		if _, err := b.run(id); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("passthrough recorded an execution for %s (%v)", id, err)
		}
	}
}

// Shadow at 100%: every task still runs on the Python worker, and has an
// execution that reaches completed with its result (failed with its
// exception for one that raises).
func TestEndToEndShadowWithRealCelery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, bt := range capturespine.DefaultCatalog().Tasks() {
		b.set(Route{Task: bt.Task, Mode: ModeShadow, Percent: 100, Queue: "celery", Pipeline: bt.Pipeline, Lane: "normal"})
	}
	e := b.estate()
	b.start(b.testOptions())
	e.worker()
	s := e.send(2, "fail")
	failing := s.IDs["fail"]
	delete(s.IDs, "fail")
	ids := s.all()
	e.waitRan(append(ids, failing...))
	answers := e.get(ids)
	b.waitRunsEnded(append(ids, failing...))
	catalog := capturespine.DefaultCatalog()
	for task, list := range s.IDs {
		bt, _ := catalog.Lookup(task)
		for _, id := range list {
			r, err := b.run(id)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			var result any
			_ = json.Unmarshal(r.Result, &result)
			if r.Status != core.StatusCompleted || r.ExternalRef != id || r.ExecutorName != ExecutorShadow ||
				r.Spec.Name != bt.Pipeline || !sameJSON(t, result, answers[id].OK) ||
				(r.StartedAt != nil && r.StartedAt.After(*r.CompletedAt)) {
				t.Errorf("%s[%s]: run %+v, result %s, the caller got %v", task, id, r, r.Result, answers[id])
			}
		}
	}
	for _, id := range failing {
		r, err := b.run(id)
		if err != nil || r.Status != core.StatusFailed || r.ErrorType != "ValueError" || !strings.Contains(r.Error, "failed as asked") {
			t.Errorf("failing task %s: %+v %v", id, r, err)
		}
	}
	for id, n := range e.runs() {
		if n != "1" {
			t.Errorf("task %s ran %s times", id, n)
		}
	}
	counts := b.counts()
	if c := counts[backupTask]; c.Shadowed != 3 || c.Passed != 0 {
		t.Errorf("backup: %+v", c)
	}
}

// Reroute at 50%: about half the ids (the same ones on every replica and
// every run: Bucket < 50) go through the dispatcher as run_pipeline, and
// their callers' original AsyncResult.get() returns the run's result; the
// others are shadowed. Drain then returns everything to passthrough with
// nothing stranded.
func TestEndToEndRerouteWithRealCelery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, bt := range capturespine.DefaultCatalog().Tasks() {
		b.set(Route{Task: bt.Task, Mode: ModeReroute, Percent: 50, Queue: "celery", Pipeline: bt.Pipeline, Lane: "normal"})
	}
	e := b.estate()
	b.start(b.testOptions())
	e.worker()
	s := e.send(5)
	ids := s.all()
	answers := e.get(ids)
	b.waitRunsEnded(ids)
	runs := e.runs()
	rerouted := 0
	for task, list := range s.IDs {
		for _, id := range list {
			r, err := b.run(id)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			a := answers[id]
			if a.Error != "" {
				t.Errorf("%s[%s]: the caller got %s", task, id, a.Error)
				continue
			}
			var result any
			_ = json.Unmarshal(r.Result, &result)
			if r.Status != core.StatusCompleted || !sameJSON(t, result, a.OK) {
				t.Errorf("%s[%s]: run %s %s with %s, the caller got %v", task, id, r.RunID, r.Status, r.Result, a.OK)
			}
			if Bucket(id) < 50 {
				rerouted++
				want := map[string]any{"execution_id": r.RunID, "ran": "run_pipeline"}
				if r.ExecutorName != ExecutorReroute || r.ExternalRef == id || !sameJSON(t, a.OK, want) {
					t.Errorf("%s[%s] (bucket %d) was not rerouted: run %+v, answer %v", task, id, Bucket(id), r, a.OK)
				}
				if runs[id] != "" || runs[r.ExternalRef] != "1" {
					t.Errorf("%s[%s]: the original ran %q times, its pipeline task %q times; want 0 and 1", task, id, runs[id], runs[r.ExternalRef])
				}
			} else if r.ExecutorName != ExecutorShadow || runs[id] != "1" {
				t.Errorf("%s[%s] (bucket %d) was not shadowed: run %+v, ran %q times", task, id, Bucket(id), r, runs[id])
			}
		}
	}
	if rerouted < 6 || rerouted > 24 {
		t.Errorf("%d of 30 rerouted at 50%%", rerouted)
	}
	total := Counts{}
	for _, c := range b.counts() {
		total.Rerouted += c.Rerouted
		total.Shadowed += c.Shadowed
	}
	if total.Rerouted != int64(rerouted) || total.Shadowed != int64(30-rerouted) {
		t.Errorf("counted %+v, want %d rerouted and %d shadowed", total, rerouted, 30-rerouted)
	}

	// Drain: the next calls pass through untracked.
	if _, err := b.routes.Drain(b.ctx, "test"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // > RouteRefresh, though NOTIFY is faster
	after := e.send(1)
	e.waitRan(after.all())
	for _, id := range after.all() {
		if _, err := b.run(id); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("after drain, %s got an execution (%v)", id, err)
		}
	}
	b.waitFor("nothing stranded", 10*time.Second, b.drained)
	var active int
	if err := b.pool.QueryRow(b.ctx, "SELECT count(*) FROM executions WHERE status IN ('queued', 'running')").Scan(&active); err != nil || active != 0 {
		t.Errorf("%d runs still active (%v)", active, err)
	}
}

// A rerouted message with an eta waits parked (out of unacked, out of
// memory) until due, then is submitted; drain releases parked messages to
// the workers at once.
func TestRerouteHoldsETAMessagesUntilDue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.set(backupRoute(ModeReroute, 100))
	soonID, soon := b.message(backupTask, []any{1}, nil, celerybridge.TaskOptions{Countdown: 1500 * time.Millisecond})
	_, later := b.message(backupTask, []any{2}, nil, celerybridge.TaskOptions{Countdown: time.Hour})
	_, now := b.message(backupTask, []any{3}, nil, celerybridge.TaskOptions{})
	sent := time.Now()
	for _, raw := range [][]byte{soon, later, now} {
		b.push(DefaultInterceptQueue, raw)
	}
	b.start(b.testOptions())
	parked := func() int64 {
		n, _ := b.rdb.ZCard(b.ctx, "spine.phase2.parked."+DefaultInterceptQueue).Result()
		return n
	}
	b.waitFor("the undelayed one rerouted, two parked", 5*time.Second, func() bool {
		n, _ := b.tr.Len(b.ctx, "normal")
		return n == 1 && parked() == 2
	})
	if u, _ := b.rdb.HLen(b.ctx, "unacked").Result(); u != 0 {
		t.Errorf("%d unacked while parked", u)
	}
	b.waitFor("the due one rerouted", 5*time.Second, func() bool {
		n, _ := b.tr.Len(b.ctx, "normal")
		return n == 2
	})
	if d := time.Since(sent); d < 1400*time.Millisecond {
		t.Errorf("rerouted %s after sending, before its eta", d)
	}
	if r, err := b.run(soonID); err != nil || r.ExecutorName != ExecutorReroute {
		t.Errorf("the due one: %+v %v", r, err)
	}
	if _, err := b.routes.Drain(b.ctx, "test"); err != nil {
		t.Fatal(err)
	}
	b.waitFor("drain released the parked one to the worker queue", 5*time.Second, func() bool {
		got := b.list("celery")
		return len(got) == 1 && bytes.Equal(got[0], later) && parked() == 0
	})
}
