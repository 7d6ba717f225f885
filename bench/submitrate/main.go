// Command submitrate measures the "dispatcher submit rate" of
// BENCHMARKS.md: runs per second submitted through core's Dispatcher with
// the PostgreSQL ledger, against pgx CopyFrom of the same rows into the same
// table, in one run, alternating A B A B, and prints the ratio with its
// spread.
//
//	go run ./bench/submitrate                 # throwaway PostgreSQL 15
//	go run ./bench/submitrate -database-url postgres://...   # an existing, disposable database
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/sqlmigrations"
)

// acceptingExecutor takes every run at once, as a Celery producer does once
// its LPUSH returns, and, like it, names the work before taking it (the
// client chooses the task id): the benchmark measures the dispatcher and
// ledger, not a broker.
type acceptingExecutor struct{}

func (acceptingExecutor) Name() string                         { return "bench" }
func (acceptingExecutor) ReserveRef(run core.RunRecord) string { return "task-" + run.RunID }
func (e acceptingExecutor) Submit(_ context.Context, run core.RunRecord) (string, error) {
	return e.ReserveRef(run), nil
}
func (acceptingExecutor) Cancel(context.Context, string) error { return nil }

type config struct {
	n, batch, workers, pairs int
	out                      string
}

type arm struct {
	Name    string  `json:"name"`
	Pair    int     `json:"pair"`
	Rows    int     `json:"rows"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"rows_per_second"`
}

func main() {
	var cfg config
	dbURL := flag.String("database-url", "", "a disposable database (its executions tables are TRUNCATED); default: a throwaway PostgreSQL 15")
	flag.IntVar(&cfg.n, "n", 20000, "runs per arm")
	flag.IntVar(&cfg.batch, "batch", 500, "runs per SubmitMany batch")
	flag.IntVar(&cfg.workers, "workers", 4, "concurrent submitters")
	flag.IntVar(&cfg.pairs, "pairs", 5, "A/B pairs")
	flag.StringVar(&cfg.out, "out", "bench/results/submitrate.json", "JSON result file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	flag.Parse()
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
	if err := run(cfg, *dbURL); err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err)
	}
}

func run(cfg config, dbURL string) error {
	ctx := context.Background()
	if dbURL == "" {
		pg, err := testsvc.StartPostgres(ctx, testsvc.PostgresOptions{})
		if err != nil {
			return err
		}
		defer pg.Stop()
		if dbURL, err = pg.CreateDatabase(ctx, "submitrate"); err != nil {
			return err
		}
		if err := loadSchema(ctx, dbURL); err != nil {
			return err
		}
	}
	poolCfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	poolCfg.MaxConns = int32(cfg.workers + 2)
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := sqlmigrations.New(pool, sqlmigrations.Options{Logger: slog.New(slog.DiscardHandler)}).Up(ctx, 0); err != nil {
		return err
	}
	for _, t := range []string{"executions", "execution_events"} {
		if _, err := pool.Exec(ctx, "ALTER TABLE "+t+" SET (autovacuum_enabled = false)"); err != nil {
			return err
		}
	}
	ledger, err := pgledger.New(ctx, pool)
	if err != nil {
		return err
	}
	d := core.NewDispatcher(ledger, acceptingExecutor{}, core.DispatcherOptions{})
	defer d.Close()

	var syncCommit string
	_ = pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&syncCommit)
	var arms []arm
	for p := 1; p <= cfg.pairs; p++ {
		specs := makeSpecs(cfg.n, p)
		a, err := timeArm(ctx, pool, "dispatcher", p, cfg.n, func() error { return submitAll(ctx, d, specs, cfg) })
		if err != nil {
			return err
		}
		rows, events, err := readBack(ctx, pool) // the same rows, as the dispatcher left them
		if err != nil {
			return err
		}
		b, err := timeArm(ctx, pool, "copyfrom", p, cfg.n, func() error {
			return copyRows(ctx, pool, "executions", copyColumns, rows, cfg.batch, cfg)
		})
		if err != nil {
			return err
		}
		// The floor for anything that records what the dispatcher records:
		// the same rows and their events, both by COPY.
		c, err := timeArm(ctx, pool, "copyfrom+events", p, cfg.n, func() error {
			if err := copyRows(ctx, pool, "executions", copyColumns, rows, cfg.batch, cfg); err != nil {
				return err
			}
			return copyRows(ctx, pool, "execution_events", eventColumns, events, 2*cfg.batch, cfg)
		})
		if err != nil {
			return err
		}
		arms = append(arms, a, b, c)
	}
	return report(cfg, arms, syncCommit)
}

func loadSchema(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return seed.LoadSchema(ctx, conn)
}

// makeSpecs builds realistic pipeline specs: a few params, a feed in
// metadata, a third with idempotency keys.
func makeSpecs(n, pair int) []core.WorkSpec {
	specs := make([]core.WorkSpec, n)
	lanes := []string{"normal", "backfill", "slow", "realtime"}
	for i := range specs {
		s := core.NewPipeline("rss_ingest", map[string]any{
			"url": fmt.Sprintf("https://feeds.example.org/%d.xml", i), "max_items": 200, "since": "2026-11-22T00:00:00Z",
		})
		s.Lane = lanes[i%len(lanes)]
		s.TriggerSource = "schedule"
		s.Metadata = map[string]any{"source": "bench", "shard": i % 16}
		if i%3 == 0 {
			s.IdempotencyKey = fmt.Sprintf("bench-%d-%d", pair, i)
		}
		specs[i] = s
	}
	return specs
}

func submitAll(ctx context.Context, d *core.Dispatcher, specs []core.WorkSpec, cfg config) error {
	batches := make(chan []core.WorkSpec)
	errs := make(chan error, cfg.workers)
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if _, err := d.SubmitMany(ctx, b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < len(specs); i += cfg.batch {
		batches <- specs[i:min(i+cfg.batch, len(specs))]
	}
	close(batches)
	wg.Wait()
	close(errs)
	return <-errs
}

// readBack returns the executions rows and events the dispatcher arm
// wrote, to copy the very same rows in the reference arms.
func readBack(ctx context.Context, pool *pgxpool.Pool) ([][]any, [][]any, error) {
	values := func(r pgx.CollectableRow) ([]any, error) { return r.Values() }
	rows, err := pool.Query(ctx, `SELECT `+copyColumnList+` FROM executions`)
	if err != nil {
		return nil, nil, err
	}
	runs, err := pgx.CollectRows(rows, values)
	if err != nil {
		return nil, nil, err
	}
	rows, err = pool.Query(ctx, `SELECT execution_id, event_type, timestamp, data, source FROM execution_events ORDER BY id`)
	if err != nil {
		return nil, nil, err
	}
	events, err := pgx.CollectRows(rows, values)
	return runs, events, err
}

var eventColumns = []string{"execution_id", "event_type", "timestamp", "data", "source"}

const copyColumnList = `execution_id, pipeline_name, params, lane, trigger_source, status, backend_task_id,
	feed_id, retry_count, result, error, created_at, started_at, completed_at, kind, priority, idempotency_key,
	correlation_id, parent_run_id, executor_name, retry_of_run_id, max_retries, retry_delay_seconds, error_type,
	metadata, tags`

var copyColumns = []string{"execution_id", "pipeline_name", "params", "lane", "trigger_source", "status", "backend_task_id",
	"feed_id", "retry_count", "result", "error", "created_at", "started_at", "completed_at", "kind", "priority", "idempotency_key",
	"correlation_id", "parent_run_id", "executor_name", "retry_of_run_id", "max_retries", "retry_delay_seconds", "error_type",
	"metadata", "tags"}

// copyRows is the reference: the same rows, the same number of concurrent
// writers, each with one CopyFrom per batch.
func copyRows(ctx context.Context, pool *pgxpool.Pool, table string, columns []string, rows [][]any, batch int, cfg config) error {
	batches := make(chan [][]any)
	errs := make(chan error, cfg.workers)
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if _, err := pool.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(b)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < len(rows); i += batch {
		batches <- rows[i:min(i+batch, len(rows))]
	}
	close(batches)
	wg.Wait()
	close(errs)
	return <-errs
}

// timeArm resets the tables (TRUNCATE + CHECKPOINT, per BENCHMARKS.md) and
// times f.
func timeArm(ctx context.Context, pool *pgxpool.Pool, name string, pair, n int, f func() error) (arm, error) {
	if _, err := pool.Exec(ctx, "TRUNCATE executions, execution_events"); err != nil {
		return arm{}, err
	}
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		return arm{}, err
	}
	start := time.Now()
	if err := f(); err != nil {
		return arm{}, fmt.Errorf("%s arm: %w", name, err)
	}
	secs := time.Since(start).Seconds()
	var count int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM executions").Scan(&count); err != nil || count != n {
		return arm{}, fmt.Errorf("%s arm wrote %d rows, want %d (%v)", name, count, n, err)
	}
	return arm{Name: name, Pair: pair, Rows: n, Seconds: secs, PerSec: float64(n) / secs}, nil
}

func report(cfg config, arms []arm, syncCommit string) error {
	var ratios, floorRatios []float64
	for i := 0; i+2 < len(arms); i += 3 {
		ratios = append(ratios, arms[i].PerSec/arms[i+1].PerSec)
		floorRatios = append(floorRatios, arms[i].PerSec/arms[i+2].PerSec)
	}
	med, lo, hi := spread(ratios)
	fmed, flo, fhi := spread(floorRatios)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Printf("dispatcher submit rate: %d runs/arm, batches of %d, %d writers, synchronous_commit=%s, autovacuum off, arms alternated\n",
		cfg.n, cfg.batch, cfg.workers, syncCommit)
	fmt.Println("row: Capture-Spine executions + RunRecord columns, params ~90 B JSON; indexes: pkey, status, (pipeline_name, created_at),")
	fmt.Println("     one-active-per-feed, idempotency_key, parent_run_id, (created_at, execution_id); execution_events: pkey, (execution_id, timestamp), FK")
	fmt.Println("A  dispatcher: SubmitMany through core + pgledger (executor reserving refs like a Celery producer): 1 row + 2 events per run")
	fmt.Println("B  copyfrom:   pgx CopyFrom of the same executions rows (the BENCHMARKS.md reference)")
	fmt.Println("C  copyfrom+events: CopyFrom of the same rows and the same events (the floor for recording what A records)")
	fmt.Fprintln(tw, "pair\tA runs/s\tB rows/s\tC runs/s\tA/B\tA/C\t")
	for i := 0; i+2 < len(arms); i += 3 {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.0f\t%.3f\t%.3f\t\n", arms[i].Pair, arms[i].PerSec, arms[i+1].PerSec, arms[i+2].PerSec, ratios[i/3], floorRatios[i/3])
	}
	tw.Flush()
	fmt.Printf("A/B dispatcher/CopyFrom:        median %.3f (min %.3f, max %.3f), target >= 0.5\n", med, lo, hi)
	fmt.Printf("A/C dispatcher/CopyFrom+events: median %.3f (min %.3f, max %.3f)\n", fmed, flo, fhi)

	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(map[string]any{
		"figure": "dispatcher submit rate", "target": "A/B >= 0.5", "runs_per_arm": cfg.n, "batch": cfg.batch,
		"workers": cfg.workers, "synchronous_commit": syncCommit, "arms": arms,
		"ratios_vs_copyfrom": ratios, "median": med, "min": lo, "max": hi,
		"ratios_vs_copyfrom_with_events": floorRatios, "median_vs_floor": fmed,
		"measured_at": time.Now().UTC().Format(time.RFC3339),
	}, "", "  ")
	return os.WriteFile(cfg.out, append(b, '\n'), 0o644)
}

// spread returns the median, minimum and maximum of xs.
func spread(xs []float64) (median, lo, hi float64) {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return median, s[0], s[len(s)-1]
}
