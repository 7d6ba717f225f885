// Command sidecar measures the phase-2 side-car figures of BENCHMARKS.md, in
// one run each, alternating A B A B over the same messages, and prints the
// per-pair ratios with their median and spread:
//
//   - passthrough: A = phase2.New(...).Run passing N messages of a bypass
//     task with no route row from the intercept queue to the worker queue
//     (each message decoded and routed as it is peeked, then moved
//     byte for byte with its counters in one atomic step: ClaimOrForward);
//     B = the raw Redis limit, a pipelined RPOP+LPUSH loop in Go moving the
//     same N messages between the same lists.
//
//   - reroute: A = the same side-car with a 100% reroute route (decode,
//     route, idempotent submit recorded in PostgreSQL, publish of the
//     pipeline task, ack); B = a real Celery 5.2.6 worker (prefork, 2
//     processes) running a no-op task over the same N messages.
//
//     go run ./bench/sidecar                        # both figures, throwaway servers
//     go run ./bench/sidecar -figure passthrough -n 20000 -pairs 5
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
	"github.com/spinecore/spine-go/phases/phase2"
)

// The bypass task every message calls: in the catalog, so with no route row
// the side-car passes it through to the worker queue.
const (
	bypassTask  = "app.tasks.backup.run_backup_for_user"
	workerQueue = "celery"
)

var quiet = slog.New(slog.DiscardHandler)

type config struct {
	figure      string
	n, nReroute int
	pairs       int
	concurrency int
	batch       int
	refBatch    int
	out         string
	python      string
	diagnose    bool
}

type arm struct {
	Figure   string  `json:"figure"`
	Name     string  `json:"name"`
	Pair     int     `json:"pair"`
	Messages int     `json:"messages"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"messages_per_second"`
}

type figureResult struct {
	Figure   string    `json:"figure"`
	Target   string    `json:"target"`
	Messages int       `json:"messages_per_arm"`
	Arms     []arm     `json:"arms"`
	Ratios   []float64 `json:"ratios"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	// Notes are diagnostics printed under the table.
	Notes map[string]float64 `json:"notes,omitempty"`
	A, B  string             `json:"-"`
}

func main() {
	var cfg config
	flag.StringVar(&cfg.figure, "figure", "both", "passthrough, reroute or both")
	flag.IntVar(&cfg.n, "n", 20000, "messages per passthrough arm")
	flag.IntVar(&cfg.nReroute, "n-reroute", 20000, "messages per reroute arm")
	flag.IntVar(&cfg.pairs, "pairs", 5, "A/B pairs per figure")
	flag.IntVar(&cfg.concurrency, "concurrency", 4, "side-car Options.Concurrency")
	flag.IntVar(&cfg.batch, "batch", 512, "side-car Options.Batch")
	flag.IntVar(&cfg.refBatch, "ref-batch", 100, "messages per pipeline in the RPOP+LPUSH reference")
	flag.BoolVar(&cfg.diagnose, "diagnose", false, "also measure claim.lua's per-message inspection cost inside Redis")
	flag.StringVar(&cfg.out, "out", "bench/results/sidecar.json", "JSON result file")
	flag.StringVar(&cfg.python, "python", "/usr/bin/python3", "the interpreter with Celery 5.2.6 (reroute reference)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	flag.Parse()
	if cfg.figure != "passthrough" && cfg.figure != "reroute" && cfg.figure != "both" || cfg.pairs < 1 || cfg.n < 1 || cfg.nReroute < 1 || cfg.refBatch < 1 {
		log.Fatal("want -figure passthrough|reroute|both and positive -n, -n-reroute, -pairs, -ref-batch")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(cfg); err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err)
	}
}

func run(cfg config) error {
	ctx := context.Background()
	pg, err := testsvc.StartPostgres(ctx, testsvc.PostgresOptions{})
	if err != nil {
		return err
	}
	defer pg.Stop()
	dbURL, err := pg.CreateDatabase(ctx, "sidecarbench")
	if err != nil {
		return err
	}
	if err := loadSchema(ctx, dbURL); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := phase1.Apply(ctx, pool, phase1.Options{Logger: quiet}); err != nil {
		return fmt.Errorf("phase1 apply: %w", err)
	}
	for _, t := range []string{"executions", "execution_events"} {
		if _, err := pool.Exec(ctx, "ALTER TABLE "+t+" SET (autovacuum_enabled = false)"); err != nil {
			return err
		}
	}
	rs, err := testsvc.StartRedis(ctx, testsvc.RedisOptions{})
	if err != nil {
		return err
	}
	defer rs.Stop()
	redisURL := rs.URL(0)
	ropts, err := celerybridge.ParseBrokerURL(redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()

	var results []figureResult
	if cfg.figure == "passthrough" || cfg.figure == "both" {
		r, err := passthroughFigure(ctx, cfg, pool, rdb)
		if err != nil {
			return err
		}
		results = append(results, r)
		printFigure(r)
	}
	if cfg.figure == "reroute" || cfg.figure == "both" {
		r, err := rerouteFigure(ctx, cfg, pool, rdb, redisURL)
		if err != nil {
			return err
		}
		results = append(results, r)
		printFigure(r)
	}
	var version string
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		for _, l := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
				version = v
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(map[string]any{
		"figures": results, "pairs": cfg.pairs, "sidecar_concurrency": cfg.concurrency, "ref_batch": cfg.refBatch,
		"redis_version": version, "measured_at": time.Now().UTC().Format(time.RFC3339),
	}, "", "  ")
	return os.WriteFile(cfg.out, append(b, '\n'), 0o644)
}

func loadSchema(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return seed.LoadSchema(ctx, conn)
}

// makeMessages builds n messages as Celery 5.2.6 publishes
// run_backup_for_user(i, backup_type=...) to the intercept queue.
func makeMessages(n int) ([]any, error) {
	msgs := make([]any, n)
	for i := range msgs {
		m, err := celerybridge.NewTaskMessage(bypassTask, []any{i}, map[string]any{"backup_type": "incremental"},
			celerybridge.TaskOptions{Queue: phase2.DefaultInterceptQueue})
		if err != nil {
			return nil, err
		}
		raw, err := m.Encode()
		if err != nil {
			return nil, err
		}
		msgs[i] = raw
	}
	return msgs, nil
}

// reset empties the Redis DB and the side-car's runs, then queues msgs on
// list (untimed).
func reset(ctx context.Context, pool *pgxpool.Pool, rdb *redis.Client, list string, msgs []any) error {
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "TRUNCATE executions, execution_events"); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		return err
	}
	for i := 0; i < len(msgs); i += 1000 {
		if err := rdb.LPush(ctx, list, msgs[i:min(i+1000, len(msgs))]...).Err(); err != nil {
			return err
		}
	}
	return nil
}

// runSidecar runs a fresh side-car until done reports true, and returns the
// time from Run to done (route read and start-up included: one query).
func runSidecar(ctx context.Context, cfg config, pool *pgxpool.Pool, rdb *redis.Client, done func() (bool, error)) (time.Duration, error) {
	sc, err := phase2.New(ctx, pool, rdb, phase2.Options{Concurrency: cfg.concurrency, Batch: cfg.batch, Logger: quiet, ShutdownTimeout: 10 * time.Second})
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	start := time.Now()
	go func() { runErr <- sc.Run(rctx) }()
	deadline := start.Add(5 * time.Minute)
	for {
		ok, err := done()
		if err != nil {
			return 0, err
		}
		if ok {
			break
		}
		select {
		case err := <-runErr:
			return 0, fmt.Errorf("side-car stopped early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return 0, errors.New("side-car did not finish within 5 minutes")
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-runErr; err != nil {
		return 0, err
	}
	return elapsed, nil
}

// --- passthrough ---------------------------------------------------------

func passthroughFigure(ctx context.Context, cfg config, pool *pgxpool.Pool, rdb *redis.Client) (figureResult, error) {
	msgs, err := makeMessages(cfg.n)
	if err != nil {
		return figureResult{}, err
	}
	fmt.Fprintf(os.Stderr, "passthrough: %d messages of %d B, %d pairs\n", cfg.n, len(msgs[0].([]byte)), cfg.pairs)
	res := figureResult{Figure: "side-car passthrough rate", Target: "A/B >= 0.5", Messages: cfg.n,
		A: fmt.Sprintf("side-car (Concurrency %d, Batch %d): peek, decode and route in Go, forward in the claim (one script per batch), intercept -> %s", cfg.concurrency, cfg.batch, workerQueue),
		B: fmt.Sprintf("pipelined RPOP+LPUSH in Go, %d per pipeline, one connection", cfg.refBatch)}
	n := int64(cfg.n)
	for p := 1; p <= cfg.pairs; p++ {
		// A: the side-car.
		if err := reset(ctx, pool, rdb, phase2.DefaultInterceptQueue, msgs); err != nil {
			return res, err
		}
		d, err := runSidecar(ctx, cfg, pool, rdb, func() (bool, error) {
			l, err := rdb.LLen(ctx, workerQueue).Result()
			return l >= n, err
		})
		if err != nil {
			return res, fmt.Errorf("passthrough A: %w", err)
		}
		if err := checkMoved(ctx, rdb, n, true); err != nil {
			return res, fmt.Errorf("passthrough A: %w", err)
		}
		if err := sameMessages(ctx, rdb, msgs); err != nil {
			return res, fmt.Errorf("passthrough A: %w", err)
		}
		res.Arms = append(res.Arms, newArm("passthrough", "sidecar", p, cfg.n, d))

		// B: pipelined RPOP + LPUSH.
		if err := reset(ctx, pool, rdb, phase2.DefaultInterceptQueue, msgs); err != nil {
			return res, err
		}
		start := time.Now()
		if err := rawMove(ctx, rdb, phase2.DefaultInterceptQueue, workerQueue, cfg.refBatch); err != nil {
			return res, fmt.Errorf("passthrough B: %w", err)
		}
		d = time.Since(start)
		if err := checkMoved(ctx, rdb, n, false); err != nil {
			return res, fmt.Errorf("passthrough B: %w", err)
		}
		res.Arms = append(res.Arms, newArm("passthrough", "rpop+lpush", p, cfg.n, d))
	}
	res.finish()
	if cfg.diagnose {
		if res.Notes, err = claimCost(ctx, rdb, msgs[0].([]byte)); err != nil {
			return res, err
		}
	}
	return res, nil
}

// claimCost measures, inside one Redis script, what claim.lua's message
// inspection (the claim rule: JSON scan, delivery tag and info) costs per
// message on the benchmark's envelope: the single-threaded Redis time every
// Transport.Claim pays, which is why the side-car claims with ClaimBatch
// (the rule judged in Go) instead.
func claimCost(ctx context.Context, rdb *redis.Client, raw []byte) (map[string]float64, error) {
	src, err := os.ReadFile("celerybridge/claim.lua")
	if err != nil {
		return nil, fmt.Errorf("claim cost (run from the repository root): %w", err)
	}
	head, _, ok := strings.Cut(string(src), "local now = redis.call('TIME')")
	if !ok {
		return nil, errors.New("claim cost: claim.lua no longer has the expected layout")
	}
	const loops = 1000
	per := func(body string) (float64, error) {
		lua := head + "\nlocal raw = ARGV[1]\nfor i = 1, " + fmt.Sprint(loops) + " do " + body + " end\nreturn 1\n"
		sc := redis.NewScript(lua)
		best := time.Duration(1<<63 - 1)
		for range 3 { // the least of three: the cost itself, not the noise
			start := time.Now()
			if err := sc.Run(ctx, rdb, nil, raw).Err(); err != nil {
				return 0, err
			}
			best = min(best, time.Since(start))
		}
		return float64(best.Microseconds()) / loops, nil
	}
	notes := map[string]float64{}
	for name, body := range map[string]string{"claim_inspect_us": "inspect(raw)", "claim_utf8_check_us": "valid_utf8(raw)"} {
		if notes[name], err = per(body); err != nil {
			return nil, fmt.Errorf("claim cost: %w", err)
		}
	}
	notes["inspect_ceiling_msgs_per_s"] = 1e6 / notes["claim_inspect_us"]
	return notes, nil
}

// rawMove is the raw Redis limit: RPOP batch messages in one pipeline, LPUSH
// them in the next, until the source is empty.
func rawMove(ctx context.Context, rdb *redis.Client, from, to string, batch int) error {
	cmds := make([]*redis.StringCmd, batch)
	for {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range cmds {
				cmds[i] = p.RPop(ctx, from)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		got := 0
		_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range cmds {
				if v, err := c.Result(); err == nil {
					p.LPush(ctx, to, v)
					got++
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if got < batch {
			return nil
		}
	}
}

// checkMoved verifies the worker queue holds n messages, the intercept queue
// none, and (for the side-car) nothing is left unacked.
func checkMoved(ctx context.Context, rdb *redis.Client, n int64, sidecar bool) error {
	w, err := rdb.LLen(ctx, workerQueue).Result()
	if err != nil {
		return err
	}
	q, err := rdb.LLen(ctx, phase2.DefaultInterceptQueue).Result()
	if err != nil {
		return err
	}
	u, err := rdb.HLen(ctx, "unacked").Result()
	if err != nil {
		return err
	}
	if w != n || q != 0 || u != 0 {
		return fmt.Errorf("worker queue %d (want %d), intercept %d, unacked %d", w, n, q, u)
	}
	if sidecar {
		dl, _ := rdb.LLen(ctx, "spine.deadletter").Result()
		if dl != 0 {
			return fmt.Errorf("%d dead letters", dl)
		}
	}
	return nil
}

// sameMessages checks the worker queue holds msgs byte for byte (in any order).
func sameMessages(ctx context.Context, rdb *redis.Client, msgs []any) error {
	got, err := rdb.LRange(ctx, workerQueue, 0, -1).Result()
	if err != nil {
		return err
	}
	want := make(map[string]int, len(msgs))
	for _, m := range msgs {
		want[string(m.([]byte))]++
	}
	for _, g := range got {
		if want[g] == 0 {
			return fmt.Errorf("the worker queue holds a message that was not sent, or one twice: %.80q", g)
		}
		want[g]--
	}
	return nil
}

// --- reroute -------------------------------------------------------------

func rerouteFigure(ctx context.Context, cfg config, pool *pgxpool.Pool, rdb *redis.Client, redisURL string) (figureResult, error) {
	msgs, err := makeMessages(cfg.nReroute)
	if err != nil {
		return figureResult{}, err
	}
	// The worker's copy of the messages: the same envelopes, on its queue.
	fmt.Fprintf(os.Stderr, "reroute: %d messages, %d pairs\n", cfg.nReroute, cfg.pairs)
	res := figureResult{Figure: "side-car reroute rate", Target: "A/B >= 10", Messages: cfg.nReroute,
		A: fmt.Sprintf("side-car (Concurrency %d, Batch %d): reroute 100%%: decode, route, one PostgreSQL submit per batch, publish run_pipeline, ack", cfg.concurrency, cfg.batch),
		B: "Celery 5.2.6 worker, -P prefork --concurrency 2, prefetch 4, no-op task; the same messages LPUSHed (timed) on its queue"}
	routes, err := phase2.OpenRoutes(ctx, pool)
	if err != nil {
		return res, err
	}
	bt, err := capturespine.DefaultCatalog().Lookup(bypassTask)
	if err != nil {
		return res, err
	}
	route := phase2.NewRoute(bt, workerQueue)
	route.Mode, route.Percent = phase2.ModeReroute, 100
	if _, err := routes.Set(ctx, route, "bench"); err != nil {
		return res, fmt.Errorf("set route: %w", err)
	}
	w, err := startWorker(ctx, cfg, redisURL)
	if err != nil {
		return res, err
	}
	defer w.stop()
	n := int64(cfg.nReroute)
	for p := 1; p <= cfg.pairs; p++ {
		// A: the side-car rerouting every message.
		if err := reset(ctx, pool, rdb, phase2.DefaultInterceptQueue, msgs); err != nil {
			return res, err
		}
		d, err := runSidecar(ctx, cfg, pool, rdb, func() (bool, error) {
			c, err := rdb.HGet(ctx, "spine.phase2.count.rerouted", bypassTask).Int64()
			if errors.Is(err, redis.Nil) {
				return false, nil
			}
			return c >= n, err
		})
		if err != nil {
			return res, fmt.Errorf("reroute A: %w", err)
		}
		var runs int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM executions").Scan(&runs); err != nil || runs != n {
			return res, fmt.Errorf("reroute A recorded %d runs, want %d (%v)", runs, n, err)
		}
		if u, _ := rdb.HLen(ctx, "unacked").Result(); u != 0 {
			return res, fmt.Errorf("reroute A left %d unacked", u)
		}
		res.Arms = append(res.Arms, newArm("reroute", "sidecar", p, cfg.nReroute, d))

		// B: the Celery worker over the same messages on its queue.
		if err := reset(ctx, pool, rdb, "bench.noop", nil); err != nil {
			return res, err
		}
		start := time.Now()
		if err := w.feed(ctx, rdb, msgs); err != nil {
			return res, err
		}
		if err := waitCount(ctx, rdb, "bench:done", n, 5*time.Minute); err != nil {
			return res, fmt.Errorf("reroute B: %w\n%s", err, w.logs())
		}
		d = time.Since(start)
		res.Arms = append(res.Arms, newArm("reroute", "celery-prefork-2", p, cfg.nReroute, d))
	}
	res.finish()
	return res, nil
}

// noopApp is the Celery app of the reference worker: the bypass task as a
// no-op that counts itself done.
const noopApp = `import os
import redis
from celery import Celery

url = os.environ['SPINE_REDIS_URL']
app = Celery('bench_noop', broker=url)
app.conf.update(accept_content=['json'], worker_prefetch_multiplier=4, task_ignore_result=True,
                worker_hijack_root_logger=False)
client = redis.Redis.from_url(url)


@app.task(name='` + bypassTask + `')
def run_backup_for_user(user_id, backup_type=None):
    client.incr('bench:done')
`

type worker struct {
	cmd  *exec.Cmd
	out  *strings.Builder
	done chan struct{}
	dir  string
	mu   sync.Mutex
}

func (w *worker) logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

func (w *worker) stop() {
	_ = w.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	os.RemoveAll(w.dir)
}

// feed puts the messages on the worker's queue as Celery's producer would
// have, had the task been routed there: the same envelopes.
func (w *worker) feed(ctx context.Context, rdb *redis.Client, msgs []any) error {
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range msgs {
			p.LPush(ctx, workerQueue, m)
		}
		return nil
	})
	return err
}

func startWorker(ctx context.Context, cfg config, redisURL string) (*worker, error) {
	check := exec.Command(cfg.python, "-c", "import celery; assert celery.__version__ == '5.2.6', celery.__version__")
	if out, err := check.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("the reroute reference needs Celery 5.2.6 (%s): %v\n%s", cfg.python, err, out)
	}
	dir, err := os.MkdirTemp("", "sidecar-bench-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench_noop.py"), []byte(noopApp), 0o644); err != nil {
		return nil, err
	}
	w := &worker{out: &strings.Builder{}, done: make(chan struct{}), dir: dir}
	w.cmd = exec.Command(cfg.python, "-m", "celery", "-A", "bench_noop", "worker", "-P", "prefork", "--concurrency", "2",
		"-l", "WARNING", "-Q", workerQueue, "--without-gossip", "--without-mingle", "--without-heartbeat",
		"-n", fmt.Sprintf("bench-%d@%%h", time.Now().UnixNano()))
	w.cmd.Dir = dir
	w.cmd.Env = append(os.Environ(), "SPINE_REDIS_URL="+redisURL, "PYTHONPATH="+dir, "PYTHONDONTWRITEBYTECODE=1")
	lw := &lockedBuilder{mu: &w.mu, b: w.out}
	w.cmd.Stdout, w.cmd.Stderr = lw, lw
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = w.cmd.Wait(); close(w.done) }()
	// Ready when one probe message is run.
	ropts, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	probe, _ := makeMessages(1)
	if err := w.feed(ctx, rdb, probe); err != nil {
		w.stop()
		return nil, err
	}
	if err := waitCount(ctx, rdb, "bench:done", 1, 60*time.Second); err != nil {
		w.stop()
		return nil, fmt.Errorf("celery worker not ready: %w\n%s", err, w.logs())
	}
	return w, nil
}

type lockedBuilder struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func waitCount(ctx context.Context, rdb *redis.Client, key string, n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := rdb.Get(ctx, key).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if c >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s = %d after %s, want %d", key, c, timeout, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// --- report --------------------------------------------------------------

func newArm(figure, name string, pair, n int, d time.Duration) arm {
	return arm{Figure: figure, Name: name, Pair: pair, Messages: n, Seconds: d.Seconds(), PerSec: float64(n) / d.Seconds()}
}

func (r *figureResult) finish() {
	for i := 0; i+1 < len(r.Arms); i += 2 {
		r.Ratios = append(r.Ratios, r.Arms[i].PerSec/r.Arms[i+1].PerSec)
	}
	r.Median, r.Min, r.Max = spread(r.Ratios)
}

func printFigure(r figureResult) {
	fmt.Printf("%s: %d messages/arm, arms alternated A B A B\n", r.Figure, r.Messages)
	fmt.Printf("A  %s\nB  %s\n", r.A, r.B)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pair\tA msg/s\tB msg/s\tA/B\t")
	for i := 0; i+1 < len(r.Arms); i += 2 {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.3f\t\n", r.Arms[i].Pair, r.Arms[i].PerSec, r.Arms[i+1].PerSec, r.Ratios[i/2])
	}
	tw.Flush()
	fmt.Printf("A/B median %.3f (min %.3f, max %.3f), target %s\n", r.Median, r.Min, r.Max, r.Target)
	if v, ok := r.Notes["claim_inspect_us"]; ok {
		fmt.Printf("diagnosis: claim.lua's inspection of this envelope costs %.0f µs of Redis time per message (%.0f µs of it the UTF-8 check):\n"+
			"           a ceiling of %.0f msg/s for a claim judged in Lua (Transport.Claim); the side-car's ClaimBatch judges in Go\n",
			v, r.Notes["claim_utf8_check_us"], r.Notes["inspect_ceiling_msgs_per_s"])
	}
	fmt.Println()
}

// spread returns the median, minimum and maximum of xs.
func spread(xs []float64) (median, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return median, s[0], s[len(s)-1]
}
