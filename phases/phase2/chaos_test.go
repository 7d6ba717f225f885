package phase2

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
)

// The chaos test runs side-cars as child processes of the test binary (so
// they can be SIGKILLed): TestMain hands over to chaosChild when this
// variable holds the child's configuration.
const chaosChildEnv = "SPINE_PHASE2_CHAOS_CHILD"

type chaosConfig struct {
	Database    string        `json:"database"`
	Redis       string        `json:"redis"`
	Replica     int           `json:"replica"`
	Visibility  time.Duration `json:"visibility"`
	Concurrency int           `json:"concurrency"`
}

// chaosChild runs one side-car until SIGTERM; its exit code says whether it
// stopped cleanly.
func chaosChild() int {
	var cfg chaosConfig
	if err := json.Unmarshal([]byte(os.Getenv(chaosChildEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "chaos child:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	// A child whose test died must not run on: it stops (cleanly) when its
	// parent is gone.
	parent := os.Getppid()
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			if os.Getppid() != parent {
				stop()
				return
			}
		}
	}()
	pool, err := pgxpool.New(ctx, cfg.Database)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos child:", err)
		return 2
	}
	defer pool.Close()
	opts, err := celerybridge.ParseBrokerURL(cfg.Redis)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos child:", err)
		return 2
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	sc, err := New(ctx, pool, rdb, Options{
		Concurrency: cfg.Concurrency, Transport: celerybridge.TransportOptions{VisibilityTimeout: cfg.Visibility},
		RouteRefresh: time.Second, RestoreEvery: cfg.Visibility / 4, FollowPoll: time.Second,
		AdoptEvery: time.Second, AdoptAfter: time.Second, ShutdownTimeout: 10 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos child:", err)
		return 2
	}
	if err := sc.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "chaos child:", err)
		return 1
	}
	return 0
}

// chaosParams: a short run in `make test`, the full one with
// SPINE_PHASE2_CHAOS=full (testdata/phase2/chaos.sh).
func chaosParams() (messages, kills int) {
	messages, kills = 2000, 6
	if os.Getenv("SPINE_PHASE2_CHAOS") == "full" {
		messages, kills = 100_000, 20
	}
	if v, err := strconv.Atoi(os.Getenv("SPINE_PHASE2_CHAOS_MESSAGES")); err == nil && v > 0 {
		messages = v
	}
	if v, err := strconv.Atoi(os.Getenv("SPINE_PHASE2_CHAOS_KILLS")); err == nil && v > 0 {
		kills = v
	}
	return messages, kills
}

// replica is one side-car child process slot, restarted after each kill.
type replica struct {
	t      *testing.T
	cfg    chaosConfig
	mu     sync.Mutex
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan struct{} // closed when the process has been waited for
	err    error         // its exit status, once exited
}

func (r *replica) start() {
	r.t.Helper()
	raw, _ := json.Marshal(r.cfg)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), chaosChildEnv+"="+string(raw))
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.log, r.exited = cmd, log, exited
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		close(exited)
	}()
}

func (r *replica) current() (*exec.Cmd, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd, r.exited
}

// kill SIGKILLs the child (if it still runs) and waits for it.
func (r *replica) kill() {
	cmd, exited := r.current()
	_ = cmd.Process.Kill()
	<-exited
}

// stop sends SIGTERM, once the child is running (a signal before its
// handler is installed would kill it), and reports whether it exited 0 in
// time.
func (r *replica) stop(timeout time.Duration) error {
	cmd, exited := r.current()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.output(), "side-car running") && time.Now().Before(deadline) {
		select {
		case <-exited: // dead already: nothing to wait for
			deadline = time.Time{}
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(timeout):
		r.kill()
		return fmt.Errorf("replica %d still running %s after SIGTERM:\n%s", r.cfg.Replica, timeout, r.output())
	}
	r.mu.Lock()
	err := r.err
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("replica %d exited with %v after SIGTERM:\n%s", r.cfg.Replica, err, r.output())
	}
	return nil
}

// output is what the child has logged so far.
func (r *replica) output() string {
	r.mu.Lock()
	log := r.log
	r.mu.Unlock()
	return log.String()
}

// lockedBuffer is a child's output, written by exec's copying goroutine and
// read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fakeWorker stands in for the Python workers at a rate no real one would
// reach: it claims from the worker and lane queues, counts what it got by
// task id (run_pipeline by execution id), stores a SUCCESS and acks.
type fakeWorker struct {
	mu       sync.Mutex
	got      map[string]int // original task id → times received
	pipeline map[string]int // execution id → run_pipeline received
}

func (w *fakeWorker) run(ctx context.Context, t *testing.T, rdb *redis.Client) {
	tr := celerybridge.NewTransport(rdb, celerybridge.TransportOptions{})
	results := celerybridge.NewResultBackend(rdb, celerybridge.ResultBackendOptions{})
	for ctx.Err() == nil {
		d, err := tr.Claim(ctx, []string{"celery", "normal"}, 200*time.Millisecond)
		if err != nil {
			continue
		}
		task, err := celerybridge.DecodeTask(d.Raw)
		if err != nil {
			t.Errorf("the worker got an undecodable message: %v", err)
			continue
		}
		w.mu.Lock()
		if task.Name == "run_pipeline" {
			args, _ := task.DecodeArgs()
			id, _ := args[0].(string)
			w.pipeline[id]++
		} else {
			w.got[task.ID]++
		}
		w.mu.Unlock()
		if err := results.StoreSuccess(context.WithoutCancel(ctx), task.ID, map[string]any{"ran": task.Name}, celerybridge.StoreMeta{}); err != nil {
			t.Errorf("store result: %v", err)
		}
		if err := tr.Ack(context.WithoutCancel(ctx), d.Tag); err != nil {
			t.Errorf("ack: %v", err)
		}
	}
}

// Two side-car replicas, SIGKILLed at random and restarted while messages
// flow: once the queue is empty and visibility has restored what the dead
// held, every task id is accounted for exactly once — one execution per
// shadowed or rerouted id, one republish per passed id, no pipeline task
// published twice.
func TestChaosKilledReplicasLoseAndDuplicateNothing(t *testing.T) {
	t.Parallel()
	messages, kills := chaosParams()
	b := setup(t)
	dbURL := b.dbURL
	catalog := capturespine.DefaultCatalog()
	routes := map[string]Route{}
	for i, bt := range catalog.Tasks() {
		r := NewRoute(bt, "celery")
		switch i {
		case 1:
			r.Mode, r.Percent = ModeShadow, 100
		case 2:
			r.Mode, r.Percent = ModeShadow, 50
		case 3:
			r.Mode, r.Percent = ModeReroute, 100
		case 4:
			r.Mode, r.Percent = ModeReroute, 50
		}
		if r.Mode != ModePassthrough {
			b.set(r)
		}
		routes[r.Task] = r
	}
	tasks := catalog.Tasks()

	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	w := &fakeWorker{got: map[string]int{}, pipeline: map[string]int{}}
	var workers sync.WaitGroup
	for range 4 {
		workers.Add(1)
		go func() { defer workers.Done(); w.run(ctx, t, b.rdb) }()
	}
	defer func() { cancel(); workers.Wait() }()

	visibility := 2 * time.Second
	replicas := make([]*replica, 2)
	for i := range replicas {
		replicas[i] = &replica{t: t, cfg: chaosConfig{Database: dbURL, Redis: b.url, Replica: i, Visibility: visibility, Concurrency: 4}}
		replicas[i].start()
	}
	t.Cleanup(func() { // whatever happened, no side-car outlives the test
		for _, r := range replicas {
			r.kill()
		}
	})

	// Publish in the background while the killer works.
	want := map[string]Mode{} // task id → path
	var published atomic.Int64
	pubDone := make(chan struct{})
	ids := make([]string, messages)
	raws := make([][]byte, messages)
	for i := range messages {
		bt := tasks[i%len(tasks)]
		args := make([]any, len(bt.Args))
		for j := range args {
			args[j] = i
		}
		id, raw := b.message(bt.Task, args, nil, celerybridge.TaskOptions{Priority: rand.IntN(10)})
		ids[i], raws[i] = id, raw
		want[id] = routes[bt.Task].Path(id)
	}
	go func() {
		defer close(pubDone)
		keys := newBrokerKeys(celerybridge.TransportOptions{})
		for start := 0; start < messages; start += 500 {
			end := min(start+500, messages)
			_, err := b.rdb.Pipelined(b.ctx, func(p redis.Pipeliner) error {
				for i := start; i < end; i++ {
					task, _ := celerybridge.DecodeTask(raws[i])
					p.LPush(b.ctx, keys.list(DefaultInterceptQueue, task.Priority), raws[i])
				}
				return nil
			})
			if err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published.Store(int64(end))
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// Kills spread over the expected run (about 400 messages a second), at
	// random intervals around their mean.
	mean := max(500*time.Millisecond, time.Duration(messages)*time.Second/400/time.Duration(kills))
	started := time.Now()
	for k := range kills {
		time.Sleep(mean/5 + rand.N(mean*8/5))
		r := replicas[rand.IntN(len(replicas))]
		r.kill()
		if k%3 == 2 {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond) // a moment with one replica
		}
		r.start()
	}
	<-pubDone
	t.Logf("%d kills done after %s; %d messages published", kills, time.Since(started).Round(time.Millisecond), published.Load())

	// Settled: nothing waiting, claimed, parked; every run ended; the
	// worker idle.
	deadline := time.Now().Add(time.Duration(60+messages/200) * time.Second)
	for {
		n, _ := b.tr.Len(b.ctx, DefaultInterceptQueue)
		u, _ := b.rdb.HLen(b.ctx, "unacked").Result()
		lanes, _ := b.tr.Len(b.ctx, "normal")
		work, _ := b.tr.Len(b.ctx, "celery")
		var active int
		_ = b.pool.QueryRow(b.ctx, "SELECT count(*) FROM executions WHERE status IN ('queued', 'running')").Scan(&active)
		if n == 0 && u == 0 && lanes == 0 && work == 0 && active == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, r := range replicas {
				_ = r.stop(10 * time.Second)
				t.Logf("replica %d log:\n%s", r.cfg.Replica, r.output())
			}
			ttl, _ := b.rdb.PTTL(b.ctx, "unacked_mutex").Result()
			t.Fatalf("not settled: %d waiting, %d unacked, %d+%d at the workers, %d runs active; unacked_mutex ttl %s", n, u, work, lanes, active, ttl)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, r := range replicas {
		if err := r.stop(20 * time.Second); err != nil {
			t.Error(err)
		}
	}
	elapsed := time.Since(started)

	// The tally.
	type execution struct{ runID, executor, status string }
	runs := map[string]execution{}
	rows, err := b.pool.Query(b.ctx, `SELECT idempotency_key, execution_id::text, executor_name, status FROM executions`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var key, id, executor, status string
		if err := rows.Scan(&key, &id, &executor, &status); err != nil {
			t.Fatal(err)
		}
		if _, dup := runs[key]; dup {
			t.Errorf("two executions for %s", key)
		}
		runs[key] = execution{id, executor, status}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	var tally struct{ passed, shadowed, rerouted, lost, duplicated, wrong int }
	w.mu.Lock()
	defer w.mu.Unlock()
	results := celerybridge.NewResultBackend(b.rdb, celerybridge.ResultBackendOptions{})
	for _, id := range ids {
		run, recorded := runs[IdempotencyKey(id)]
		got := w.got[id]
		switch want[id] {
		case ModePassthrough:
			tally.passed++
			if recorded {
				tally.wrong++
				t.Errorf("passed %s has an execution", id)
			}
		case ModeShadow:
			tally.shadowed++
			if !recorded || run.executor != ExecutorShadow || run.status != "completed" {
				tally.wrong++
				t.Errorf("shadowed %s: execution %+v (recorded %v)", id, run, recorded)
			}
		case ModeReroute:
			tally.rerouted++
			got = w.pipeline[run.runID]
			if !recorded || run.executor != ExecutorReroute || run.status != "completed" || w.got[id] != 0 {
				tally.wrong++
				t.Errorf("rerouted %s: execution %+v (recorded %v), original received %d times", id, run, recorded, w.got[id])
			}
			if res, err := results.Get(b.ctx, id); err != nil || res.State != celerybridge.StateSuccess {
				tally.wrong++
				t.Errorf("rerouted %s: original result %+v %v", id, res, err)
			}
		}
		switch {
		case got == 0:
			tally.lost++
			t.Errorf("%s (%s) never reached a worker", id, want[id])
		case got > 1:
			tally.duplicated++
			t.Errorf("%s (%s) reached a worker %d times", id, want[id], got)
		}
	}
	if len(runs) != tally.shadowed+tally.rerouted {
		t.Errorf("%d executions for %d shadowed and %d rerouted ids", len(runs), tally.shadowed, tally.rerouted)
	}
	var seen int64
	for _, c := range b.counts() {
		seen += c.Seen
	}
	if seen != int64(messages) {
		t.Errorf("the side-cars counted %d messages seen, want %d", seen, messages)
	}
	report := fmt.Sprintf("chaos: %d messages, 2 replicas, %d SIGKILLs, %s: passed %d, shadowed %d, rerouted %d; lost %d, duplicated %d, wrong %d",
		messages, kills, elapsed.Round(time.Millisecond), tally.passed, tally.shadowed, tally.rerouted, tally.lost, tally.duplicated, tally.wrong)
	t.Log(report)
	if os.Getenv("SPINE_PHASE2_CHAOS") == "full" {
		fmt.Println(report)
	}
}
