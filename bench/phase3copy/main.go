// Command phase3copy measures the phase-3 figures of BENCHMARKS.md: the
// copy rate of `spine-migrate phase3 copy` (the real binary, as an operator
// runs it) against one `INSERT INTO executions_ref SELECT … FROM jobs`
// statement with the same mapping, the same indexes and the same trigger,
// in one run, alternating A B A B; with the WAL each arm writes, the peak
// RSS of the copy, its p99 batch time, the longest stall a probe
// connection writing to jobs sees, and verify time against copy time.
//
//	go run ./bench/phase3copy                      # 200k jobs, throwaway PostgreSQL 15
//	go run ./bench/phase3copy -n 2000000           # the BENCHMARKS.md size
//	go run ./bench/phase3copy -database-url postgres://...   # an existing, disposable database
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
	"github.com/spinecore/spine-go/phases/phase3"
)

type config struct {
	n, natives, pairs int
	bin, out          string
	probeEvery        time.Duration
	extra             []string
}

// arm is one timed run.
type arm struct {
	Name        string  `json:"name"`
	Pair        int     `json:"pair"`
	Jobs        int64   `json:"jobs"`
	Seconds     float64 `json:"seconds"`
	JobsPerSec  float64 `json:"jobs_per_second"`
	WALBytes    int64   `json:"wal_bytes"`
	PeakRSSKiB  int64   `json:"peak_rss_kib,omitempty"`
	BatchP99ms  float64 `json:"batch_p99_ms,omitempty"`
	Batches     int64   `json:"batches,omitempty"`
	Retries     int     `json:"retries,omitempty"`            // batches retried, mostly while the probe held their ids
	Overlapped  int64   `json:"batches_overlapped,omitempty"` // batches started while another was in flight
	ProbeMaxMs  float64 `json:"probe_max_ms"`
	ProbeWrites int     `json:"probe_writes"`
	VerifySecs  float64 `json:"verify_seconds,omitempty"`
}

func main() {
	var cfg config
	dbURL := flag.String("database-url", "", "a disposable database (its jobs and executions are replaced); default: a throwaway PostgreSQL 15")
	flag.IntVar(&cfg.n, "n", 200000, "jobs to copy per arm")
	flag.IntVar(&cfg.natives, "natives", 0, "executions Capture-Spine wrote, some sharing a job's task id (default n/20)")
	flag.IntVar(&cfg.pairs, "pairs", 3, "A/B pairs")
	flag.StringVar(&cfg.bin, "bin", "", "spine-migrate binary (default: go build ./cmd/spine-migrate into a temporary directory)")
	flag.StringVar(&cfg.out, "out", "bench/results/phase3copy.json", "JSON result file")
	flag.DurationVar(&cfg.probeEvery, "probe-every", 20*time.Millisecond, "interval of the probe's writes to jobs")
	extra := flag.String("copy-flags", "", "extra flags for phase3 copy, space separated (e.g. \"--target-batch 500ms\")")
	flag.Parse()
	cfg.extra = strings.Fields(*extra)
	if cfg.natives == 0 {
		cfg.natives = max(42, cfg.n/20)
	}
	if err := run(cfg, *dbURL); err != nil {
		log.Fatal(err)
	}
}

func run(cfg config, dbURL string) error {
	ctx := context.Background()
	if cfg.bin == "" {
		dir, err := os.MkdirTemp("", "phase3copy-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.bin = filepath.Join(dir, "spine-migrate")
		fmt.Fprintln(os.Stderr, "building spine-migrate...")
		if out, err := exec.Command("go", "build", "-o", cfg.bin, "./cmd/spine-migrate").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	if dbURL == "" {
		pg, err := testsvc.StartPostgres(ctx, testsvc.PostgresOptions{})
		if err != nil {
			return err
		}
		defer pg.Stop()
		if dbURL, err = pg.CreateDatabase(ctx, "phase3copy"); err != nil {
			return err
		}
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	width, err := prepare(ctx, pool, dbURL, cfg)
	if err != nil {
		return err
	}
	var settings = map[string]string{}
	for _, s := range []string{"synchronous_commit", "fsync", "full_page_writes", "shared_buffers", "work_mem", "server_version"} {
		var v string
		if err := pool.QueryRow(ctx, "SELECT current_setting($1)", s).Scan(&v); err != nil {
			return err
		}
		settings[s] = v
	}
	refSQL, refArgs, err := referenceSQL()
	if err != nil {
		return err
	}

	// The plan's estimate, to set against the measured copy.
	var plan phase3.Plan
	if out, err := exec.CommandContext(ctx, cfg.bin, "phase3", "plan", "-o", "json", "--database-url", dbURL).Output(); err != nil {
		return fmt.Errorf("phase3 plan: %w", err)
	} else if err := json.Unmarshal(out, &plan); err != nil {
		return fmt.Errorf("phase3 plan output: %w", err)
	}
	settings["plan_estimate"] = plan.Estimate.Round(time.Second).String()
	settings["plan_sample_jobs_per_second"] = fmt.Sprintf("%.0f", plan.Sample.RowsPerSecond)

	var arms []arm
	for p := 1; p <= cfg.pairs; p++ {
		fmt.Fprintf(os.Stderr, "pair %d/%d: A (phase3 copy)...\n", p, cfg.pairs)
		a, err := copyArm(ctx, pool, dbURL, cfg, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "pair %d/%d: B (INSERT … SELECT)...\n", p, cfg.pairs)
		b, err := referenceArm(ctx, pool, cfg, p, refSQL, refArgs)
		if err != nil {
			return err
		}
		arms = append(arms, a, b)
	}
	return report(cfg, arms, settings, width)
}

// prepare seeds n jobs and the native executions, applies phase 1 (the
// production indexes and trigger on executions), and creates executions_ref
// with the same indexes, trigger and the backend_task_id index phase 3 adds.
func prepare(ctx context.Context, pool *pgxpool.Pool, url string, cfg config) (width float64, err error) {
	fmt.Fprintf(os.Stderr, "seeding %d jobs and %d executions...\n", cfg.n, cfg.natives)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		// A reused -database-url: phase 1 state of the previous run goes too,
		// or phase 1 would think its work done on the new tables.
		"DROP TABLE IF EXISTS executions_ref, bench_natives, execution_events, executions, jobs, spine_phase1_backfill, spine_schema_migrations CASCADE",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return 0, err
		}
	}
	if err := resetPhase3(ctx, pool); err != nil {
		return 0, err
	}
	if err := seed.LoadSchema(ctx, conn); err != nil {
		return 0, err
	}
	if _, err := seed.CaptureSpine(ctx, conn, seed.Options{Executions: cfg.natives, Jobs: cfg.n, EventsPerExecution: -1, Seed: 1}); err != nil {
		return 0, err
	}
	if _, err := phase1.Apply(ctx, pool, phase1.Options{Logger: slog.New(slog.DiscardHandler), BatchSize: 10000}); err != nil {
		return 0, err
	}
	for _, sql := range []string{
		"CREATE TABLE bench_natives AS SELECT * FROM executions",
		"CREATE TABLE executions_ref (LIKE executions INCLUDING ALL)",
		"CREATE TRIGGER trg_executions_ref_priority_from_lane BEFORE INSERT ON executions_ref FOR EACH ROW EXECUTE FUNCTION spine_executions_priority_from_lane()",
		"CREATE INDEX executions_ref_backend_task_id ON executions_ref (backend_task_id)",
		"ALTER TABLE jobs SET (autovacuum_enabled = false)",
		"ALTER TABLE executions SET (autovacuum_enabled = false)",
		"ALTER TABLE executions_ref SET (autovacuum_enabled = false)",
		"VACUUM ANALYZE jobs",
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			return 0, fmt.Errorf("%s: %w", sql, err)
		}
	}
	err = pool.QueryRow(ctx, "SELECT avg(pg_column_size(j.*)) FROM jobs AS j").Scan(&width)
	return width, err
}

// resetPhase3 returns the database to before phase 3, for the next A arm.
func resetPhase3(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `
DO $$ BEGIN
    IF to_regclass('jobs') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS spine_phase3_jobs_sync ON jobs;
    END IF;
END $$;
DROP FUNCTION IF EXISTS spine_phase3_jobs_sync();
DROP FUNCTION IF EXISTS spine_phase3_relink(jsonb, bigint, bigint, bigint[]);
DROP TABLE IF EXISTS spine_phase3_mapping, spine_phase3_copy, spine_phase3_control, spine_phase3_rejects;
DROP INDEX IF EXISTS spine_phase3_ix_executions_backend_task_id`)
	return err
}

// fresh empties a target but for the native executions, and checkpoints,
// as BENCHMARKS.md asks before each arm.
func fresh(ctx context.Context, pool *pgxpool.Pool, table string) error {
	truncate := "TRUNCATE " + table
	if table == "executions" {
		truncate += ", execution_events"
	}
	for _, sql := range []string{truncate, "INSERT INTO " + table + " SELECT * FROM bench_natives", "CHECKPOINT"} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	// And the kernel's own writeback of what the last arm (or the seed)
	// dirtied, which would otherwise land in the next arm's time.
	syscall.Sync()
	return nil
}

func walLSN(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var lsn string
	err := pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn)
	return lsn, err
}

func walSince(ctx context.Context, pool *pgxpool.Pool, from string) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::bigint", from).Scan(&n)
	return n, err
}

// probe is the application: a connection updating one job (rolled back)
// every interval; during the copy it aims at the next job to copy, the
// worst case for waiting on a batch.
type probe struct {
	stop   chan struct{}
	done   sync.WaitGroup
	max    time.Duration
	writes int
	err    error
}

func startProbe(ctx context.Context, url string, every time.Duration, n int, aimAtCopy bool) *probe {
	p := &probe{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			p.err = err
			return
		}
		defer conn.Close(ctx)
		r := rand.New(rand.NewPCG(7, 7))
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			id := 1 + r.Int64N(int64(n))
			if aimAtCopy {
				var last *int64
				if conn.QueryRow(ctx, "SELECT last_id FROM spine_phase3_copy").Scan(&last) == nil && last != nil {
					id = *last + 1 + r.Int64N(50)
				}
			}
			start := time.Now()
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "UPDATE jobs SET attempts = attempts WHERE id = $1", id); err != nil {
					return err
				}
				return errRollback
			})
			if err != nil && err != errRollback {
				p.err = err
				return
			}
			p.max = max(p.max, time.Since(start))
			p.writes++
		}
	}()
	return p
}

var errRollback = fmt.Errorf("rollback")

// watchPeakRSS polls the process's VmHWM (its peak resident set since exec)
// until it exits, and returns the last value read. ru_maxrss would not do:
// Go starts children with vfork, and a vforked child's maxrss counts the
// parent's memory (here, the seeded rows).
func watchPeakRSS(pid int) func() int64 {
	var mu sync.Mutex
	var peak int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			for line := range strings.Lines(string(b)) {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
					if kib, err := strconv.ParseInt(f[1], 10, 64); err == nil {
						mu.Lock()
						peak = max(peak, kib)
						mu.Unlock()
					}
				}
				if strings.HasPrefix(line, "State:") && strings.Contains(line, "zombie") {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int64 {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

func (p *probe) Stop() error {
	close(p.stop)
	p.done.Wait()
	return p.err
}

func copyArm(ctx context.Context, pool *pgxpool.Pool, url string, cfg config, pair int) (arm, error) {
	a := arm{Name: "phase3 copy", Pair: pair}
	if err := resetPhase3(ctx, pool); err != nil {
		return a, err
	}
	if err := fresh(ctx, pool, "executions"); err != nil {
		return a, err
	}
	lsn, err := walLSN(ctx, pool)
	if err != nil {
		return a, err
	}
	pr := startProbe(ctx, url, cfg.probeEvery, cfg.n, true)
	args := append([]string{"phase3", "copy", "--execute", "-o", "json", "--log-level", "warn", "--database-url", url}, cfg.extra...)
	cmd := exec.CommandContext(ctx, cfg.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return a, err
	}
	hwm := watchPeakRSS(cmd.Process.Pid)
	err = cmd.Wait()
	a.Seconds = time.Since(start).Seconds()
	a.PeakRSSKiB = hwm()
	if perr := pr.Stop(); perr != nil {
		return a, fmt.Errorf("probe: %w", perr)
	}
	if err != nil {
		return a, fmt.Errorf("phase3 copy: %v\n%s", err, stderr.String())
	}
	var res phase3.CopyResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return a, fmt.Errorf("phase3 copy output: %v\n%s", err, stdout.String())
	}
	if a.WALBytes, err = walSince(ctx, pool, lsn); err != nil {
		return a, err
	}
	a.Jobs, a.Batches, a.Retries, a.Overlapped = res.RowsScanned, res.Batches, res.Retries, res.Overlapped
	a.JobsPerSec = float64(a.Jobs) / a.Seconds
	a.BatchP99ms = float64(res.BatchP99) / float64(time.Millisecond)
	a.ProbeMaxMs, a.ProbeWrites = float64(pr.max)/float64(time.Millisecond), pr.writes
	if a.Jobs != int64(cfg.n) {
		return a, fmt.Errorf("phase3 copy scanned %d jobs, want %d", a.Jobs, cfg.n)
	}
	start = time.Now()
	rep, err := phase3.Verify(ctx, pool, phase3.Options{Logger: slog.New(slog.DiscardHandler)})
	a.VerifySecs = time.Since(start).Seconds()
	if err != nil {
		return a, err
	}
	if !rep.OK() {
		return a, fmt.Errorf("verify after the copy: %v", rep.Err())
	}
	return a, nil
}

// referenceSQL is the B arm, the statement BENCHMARKS.md names: every job
// mapped by the same JobMapping.SQL and inserted in one INSERT … SELECT. It
// neither links overlaps, checks vocabularies nor keeps a checkpoint: that
// work is A's alone.
func referenceSQL() (string, []any, error) {
	q, err := capturespine.DefaultJobMapping().SQL("j", 1)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("INSERT INTO executions_ref (%s) SELECT %s FROM jobs AS j", strings.Join(q.Columns, ", "), q.Select), q.Args, nil
}

func referenceArm(ctx context.Context, pool *pgxpool.Pool, cfg config, pair int, sql string, args []any) (arm, error) {
	a := arm{Name: "INSERT … SELECT", Pair: pair}
	if err := fresh(ctx, pool, "executions_ref"); err != nil {
		return a, err
	}
	lsn, err := walLSN(ctx, pool)
	if err != nil {
		return a, err
	}
	pr := startProbe(ctx, pool.Config().ConnString(), cfg.probeEvery, cfg.n, false)
	start := time.Now()
	tag, err := pool.Exec(ctx, sql, args...)
	a.Seconds = time.Since(start).Seconds()
	if perr := pr.Stop(); perr != nil {
		return a, fmt.Errorf("probe: %w", perr)
	}
	if err != nil {
		return a, err
	}
	if a.WALBytes, err = walSince(ctx, pool, lsn); err != nil {
		return a, err
	}
	a.Jobs = tag.RowsAffected()
	a.JobsPerSec = float64(a.Jobs) / a.Seconds
	a.ProbeMaxMs, a.ProbeWrites = float64(pr.max)/float64(time.Millisecond), pr.writes
	return a, nil
}

func report(cfg config, arms []arm, settings map[string]string, width float64) error {
	var ratios, walRatios, verifyRatios, rss, probes, p99 []float64
	for i := 0; i+1 < len(arms); i += 2 {
		a, b := arms[i], arms[i+1]
		ratios = append(ratios, a.JobsPerSec/b.JobsPerSec)
		walRatios = append(walRatios, float64(a.WALBytes)/float64(b.WALBytes))
		verifyRatios = append(verifyRatios, a.VerifySecs/a.Seconds)
		rss = append(rss, float64(a.PeakRSSKiB)/1024)
		probes = append(probes, a.ProbeMaxMs)
		p99 = append(p99, a.BatchP99ms)
	}
	med, lo, hi := spread(ratios)
	wmed, _, _ := spread(walRatios)
	vmed, vlo, vhi := spread(verifyRatios)
	_, _, rssMax := spread(rss)
	_, _, probeMax := spread(probes)
	p99med, _, _ := spread(p99)

	fmt.Printf("phase-3 copy rate: %d jobs/arm (avg row %.0f B), %d native executions; PostgreSQL %s, synchronous_commit=%s, fsync=%s, full_page_writes=%s, shared_buffers=%s; autovacuum off; arms alternated A B\n",
		cfg.n, width, cfg.natives, settings["server_version"], settings["synchronous_commit"], settings["fsync"], settings["full_page_writes"], settings["shared_buffers"])
	fmt.Println("indexes on executions and executions_ref: pkey, status, (pipeline_name, created_at), one-active-per-feed, idempotency_key, parent_run_id, (created_at, execution_id), backend_task_id; phase 1's priority trigger")
	fmt.Printf("A  spine-migrate phase3 copy --execute %s(the binary: plan check, trigger, index, keyset batches with checkpoint, link rule; --workers 2 by default, batches side by side, committed in id order)\n", strings.Join(append(cfg.extra, ""), " "))
	fmt.Println("B  INSERT INTO executions_ref SELECT <the same JobMapping.SQL> FROM jobs, one statement")
	fmt.Printf("a probe connection updates a job every %s (A: the next job to copy, the worst case; B: a random one)\n", cfg.probeEvery)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pair\tA s\tB s\tA jobs/s\tB jobs/s\tA/B\tA WAL MiB\tB WAL MiB\tA RSS MiB\tA batches\tA overlapped\tA retries\tA p99 batch ms\tA probe max ms\tB probe max ms\tverify s\tverify/copy\t")
	for i := 0; i+1 < len(arms); i += 2 {
		a, b := arms[i], arms[i+1]
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.0f\t%.0f\t%.3f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.3f\t\n", a.Pair, a.Seconds, b.Seconds, a.JobsPerSec, b.JobsPerSec,
			ratios[i/2], float64(a.WALBytes)/(1<<20), float64(b.WALBytes)/(1<<20), float64(a.PeakRSSKiB)/1024, a.Batches, a.Overlapped, a.Retries, a.BatchP99ms, a.ProbeMaxMs, b.ProbeMaxMs, a.VerifySecs, verifyRatios[i/2])
	}
	tw.Flush()
	fmt.Printf("copy rate A/B: median %.3f (min %.3f, max %.3f), target >= 0.9\n", med, lo, hi)
	fmt.Printf("WAL A/B: median %.2f\n", wmed)
	fmt.Printf("peak RSS of the copy: %.1f MiB (target <= 64 MiB, flat from 200k to 2M)\n", rssMax)
	fmt.Printf("verify/copy time: median %.3f (min %.3f, max %.3f), target <= 0.3\n", vmed, vlo, vhi)
	fmt.Printf("longest probe stall during the copy: %.0f ms; p99 batch %.0f ms\n", probeMax, p99med)
	fmt.Printf("phase3 plan estimated the copy at %s (its read-only sample mapped %s jobs/s)\n", settings["plan_estimate"], settings["plan_sample_jobs_per_second"])

	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(map[string]any{
		"figure": "phase-3 copy rate", "target": "A/B >= 0.9 at n = 2,000,000; RSS flat <= 64 MiB; verify/copy <= 0.3",
		"jobs_per_arm": cfg.n, "native_executions": cfg.natives, "avg_job_row_bytes": width, "settings": settings,
		"arms": arms, "ratios": ratios, "median": med, "min": lo, "max": hi,
		"wal_ratio_median": wmed, "peak_rss_mib": rssMax, "verify_over_copy_median": vmed,
		"probe_max_ms": probeMax, "batch_p99_ms_median": p99med,
		"measured_at": time.Now().UTC().Format(time.RFC3339),
	}, "", "  ")
	if err := os.WriteFile(cfg.out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", cfg.out)
	return nil
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
