// Command demo is what `make demo` runs: throwaway PostgreSQL and Redis, a
// seeded Capture-Spine database, phase 1 planned, applied and verified with the
// real spine-migrate binary, phase 2 routes set, the legacy jobs copied by
// phase 3 and verified, and runs submitted through core's dispatcher on the
// PostgreSQL ledger, printed as an operator would read them. Everything it
// starts is torn down at the end.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(n int, title string) { fmt.Printf("\n[%d/9] %s\n", n, title) }

func run(ctx context.Context) error {
	fmt.Println("spine-go demo: Capture-Spine onto spine-core run tracking, on throwaway servers")

	step(1, "Starting throwaway PostgreSQL 15 and Redis 7 on loopback")
	start := time.Now()
	pg, err := testsvc.StartPostgres(ctx, testsvc.PostgresOptions{})
	if err != nil {
		return err
	}
	defer func() { _ = pg.Stop(); fmt.Println("\nTore down PostgreSQL and Redis.") }()
	rd, err := testsvc.StartRedis(ctx, testsvc.RedisOptions{})
	if err != nil {
		return err
	}
	defer rd.Stop()
	fmt.Printf("      postgres %s, redis %s (%.1fs)\n", strings.TrimSuffix(pg.AdminURL(), "/postgres?sslmode=disable"), rd.Addr(), time.Since(start).Seconds())

	step(2, "Creating a Capture-Spine database and seeding it like production")
	dbURL, err := pg.CreateDatabase(ctx, "capture_spine")
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := seed.LoadSchema(ctx, pool); err != nil {
		return err
	}
	sum, err := seed.CaptureSpine(ctx, pool, seed.Options{Executions: 5000, Jobs: 2000, Seed: 42})
	if err != nil {
		return err
	}
	fmt.Printf("      %d executions, %d execution_events, %d legacy jobs\n", sum.Executions, sum.Events, sum.Jobs)
	fmt.Printf("      executions by status: %s\n", counts(sum.ExecutionsByStatus))
	fmt.Printf("      executions by lane:   %s\n", counts(sum.ExecutionsByLane))

	bin, cleanup, err := buildCLI(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	env := append(os.Environ(), "DATABASE_URL="+dbURL, "REDIS_URL="+rd.URL(0))

	step(3, "spine-migrate phase1 plan   (read-only: what apply would do, with locks and estimates)")
	out, err := runCLI(ctx, bin, env, "phase1", "plan")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if !strings.HasPrefix(line, "       ") { // the SQL itself: see `spine-migrate phase1 plan`
			fmt.Println("      " + line)
		}
	}

	step(4, "spine-migrate phase1 apply --execute, then phase1 verify")
	if out, err = runCLI(ctx, bin, env, "phase1", "apply", "--execute"); err != nil {
		return err
	}
	fmt.Print(indent(out))
	if out, err = runCLI(ctx, bin, env, "phase1", "verify"); err != nil {
		return err
	}
	fmt.Print(indent(out))

	step(5, "Submitting runs through core's Dispatcher on the PostgreSQL ledger")
	if err := dispatch(ctx, pool); err != nil {
		return err
	}

	step(6, "Phase 2 routes: shadow one bypass task, start another at 25% reroute (the side-car reads them)")
	for _, args := range [][]string{
		{"phase2", "set", "app.tasks.backup.run_backup_for_user", "--mode", "shadow", "--percent", "100", "--queue", "backups"},
		{"phase2", "set", "app.tasks.sync.sync_environments", "--mode", "reroute", "--percent", "25"},
		{"phase2", "routes"},
	} {
		if out, err = runCLI(ctx, bin, env, args...); err != nil {
			return err
		}
		fmt.Print(indent(out))
	}
	if out, err = runCLI(ctx, bin, env, "phase2", "celery-config"); err != nil {
		return err
	}
	fmt.Println("      the Celery config that sends the bypass tasks to the side-car (first lines):")
	for i, line := range strings.Split(out, "\n") {
		if i < 8 {
			fmt.Println("        " + line)
		}
	}

	step(7, "Phase 2 side-car: backups shadowed, 25% of syncs rerouted through the dispatcher, the rest shadowed")
	if err := sidecarTraffic(ctx, bin, env, pool, rd.URL(0)); err != nil {
		return err
	}

	step(8, "Phase 3: copy the legacy jobs into executions online, then verify")
	for _, args := range [][]string{{"phase3", "copy", "--execute"}, {"phase3", "verify"}} {
		if out, err = runCLI(ctx, bin, env, args...); err != nil {
			return err
		}
		fmt.Print(indent(out))
	}

	step(9, "spine-migrate status")
	if out, err = runCLI(ctx, bin, env, "status"); err != nil {
		return err
	}
	fmt.Print(indent(out))
	return nil
}

// dispatch shows the kernel doing its job on the unified tables.
func dispatch(ctx context.Context, pool *pgxpool.Pool) error {
	ledger, err := pgledger.New(ctx, pool)
	if err != nil {
		return err
	}
	reg := &core.Registry{}
	reg.MustRegister(core.KindPipeline, "rss_ingest", func(ctx context.Context, p map[string]any) (any, error) {
		for i := 1; i <= 4; i++ {
			time.Sleep(20 * time.Millisecond)
			_ = core.ReportProgress(ctx, float64(i)/4, fmt.Sprintf("page %d of 4", i))
		}
		return map[string]any{"feed": p["feed"], "items_loaded": 120}, nil
	})
	var flakyCalls atomic.Int32
	reg.MustRegister(core.KindTask, "refresh_sec", func(ctx context.Context, _ map[string]any) (any, error) {
		if flakyCalls.Add(1) == 1 {
			return nil, &core.Failure{Type: "ConnectionError", Message: "sec.gov: connection reset by peer"}
		}
		return map[string]any{"records_fetched": 3142}, nil
	})
	reg.MustRegister(core.KindWorkflow, "daily_refresh", func(context.Context, map[string]any) (any, error) {
		return "steps submitted", nil
	})
	reg.MustRegister(core.KindStep, "load", func(context.Context, map[string]any) (any, error) { return "ok", nil })
	reg.MustRegister(core.KindStep, "validate", func(context.Context, map[string]any) (any, error) { return "ok", nil })

	exec := core.NewMemoryExecutor(reg, core.MemoryExecutorOptions{LaneConcurrency: map[string]int{"backfill": 1}})
	defer exec.Close()
	quick := func(attempt int, base time.Duration) time.Duration { return 300 * time.Millisecond }
	d := core.NewDispatcher(ledger, exec, core.DispatcherOptions{Backoff: quick, Logger: slog.New(slog.DiscardHandler)})
	defer d.Close()

	var submitted []core.RunRecord
	for i, feed := range []string{"https://www.sec.gov/rss", "https://feeds.example.org/news.xml"} {
		spec := core.NewPipeline("rss_ingest", map[string]any{"feed": feed})
		spec.Lane = "backfill"
		spec.IdempotencyKey = fmt.Sprintf("rss_ingest:2026-11-23:%d", i)
		run, err := d.Submit(ctx, spec)
		if err != nil {
			return err
		}
		submitted = append(submitted, run)
	}
	again, err := d.Submit(ctx, withKey(core.NewPipeline("rss_ingest", nil), "rss_ingest:2026-11-23:0"))
	if err != nil {
		return err
	}
	fmt.Printf("      idempotent resubmit of rss_ingest:2026-11-23:0 returned run %s (the same run, nothing recorded)\n", short(again.RunID))
	flaky, err := d.SubmitTask(ctx, "refresh_sec", map[string]any{"form_types": []string{"10-K", "8-K"}})
	if err != nil {
		return err
	}
	submitted = append(submitted, flaky)
	missing, err := d.SubmitTask(ctx, "refresh_gleif", nil)
	if !errors.Is(err, core.ErrHandlerMissing) {
		return fmt.Errorf("expected a missing handler, got %v", err)
	}
	fmt.Printf("      refresh_gleif has no handler: run %s is %s (%s)\n", short(missing.RunID), missing.Status, missing.Error)
	submitted = append(submitted, missing)
	wf, err := d.SubmitWorkflow(ctx, "daily_refresh", nil)
	if err != nil {
		return err
	}
	submitted = append(submitted, wf)
	for _, name := range []string{"load", "validate"} {
		s, err := d.SubmitStep(ctx, name, nil, wf.RunID)
		if err != nil {
			return err
		}
		submitted = append(submitted, s)
	}

	// Wait for everything, including the automatic retry of refresh_sec.
	deadline := time.Now().Add(30 * time.Second)
	for {
		page, err := d.ListRuns(ctx, core.RunFilter{CreatedFrom: submitted[0].CreatedAt, Limit: core.MaxListLimit})
		if err != nil {
			return err
		}
		busy := 0
		for _, r := range page.Runs {
			if r.Status.Active() || (r.Status == core.StatusFailed && r.Spec.Name == "refresh_sec" && r.Attempt == 1 && !retried(ctx, d, r.RunID)) {
				busy++
			}
		}
		if busy == 0 && len(page.Runs) >= len(submitted)+1 {
			return printRuns(ctx, d, page.Runs, flaky.RunID, pool)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("runs still busy after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func retried(ctx context.Context, d *core.Dispatcher, runID string) bool {
	evs, _ := d.Events(ctx, runID)
	for _, ev := range evs {
		if ev.Type == core.EventRetried {
			return true
		}
	}
	return false
}

func withKey(s core.WorkSpec, key string) core.WorkSpec { s.IdempotencyKey = key; return s }

func printRuns(ctx context.Context, d *core.Dispatcher, runs []core.RunRecord, flakyID string, pool *pgxpool.Pool) error {
	sort.Slice(runs, func(i, j int) bool { return runs[i].CreatedAt.Before(runs[j].CreatedAt) })
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "      RUN\tKIND\tNAME\tLANE\tSTATUS\tATTEMPT\tDURATION\tEXTERNAL_REF\tRESULT / ERROR")
	for _, r := range runs {
		dur := "-"
		if dd, ok := r.Duration(); ok {
			dur = dd.Round(time.Millisecond).String()
		}
		detail := string(r.Result)
		if r.Error != "" {
			detail = r.ErrorType + ": " + r.Error
		}
		fmt.Fprintf(tw, "      %s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", short(r.RunID), r.Spec.Kind, r.Spec.Name, r.Spec.Lane,
			r.Status, r.Attempt, dur, short(r.ExternalRef), truncate(detail, 48))
	}
	tw.Flush()

	fmt.Printf("\n      events of the refresh_sec run that failed once (%s), then of its automatic retry:\n", short(flakyID))
	evs, err := d.Events(ctx, flakyID)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		fmt.Printf("        %s  %-16s %v\n", ev.Timestamp.Format("15:04:05.000"), ev.Type, compact(ev.Data))
		if ev.Type == core.EventRetried {
			next, _ := ev.Data["new_run_id"].(string)
			nevs, _ := d.Events(ctx, next)
			for _, nev := range nevs {
				fmt.Printf("          %s  %-14s %v\n", nev.Timestamp.Format("15:04:05.000"), nev.Type, compact(nev.Data))
			}
		}
	}

	// The rows Capture-Spine's Python code wrote read as RunRecords too.
	page, err := d.ListRuns(ctx, core.RunFilter{Statuses: []core.RunStatus{core.StatusFailed}, Name: "", Limit: 3,
		CreatedBefore: runs[0].CreatedAt.Add(-time.Hour)})
	if err != nil {
		return err
	}
	var total int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM executions").Scan(&total)
	fmt.Printf("\n      the %d seeded rows written the Python way read as RunRecords; three failed ones:\n", total-len(runs))
	for _, r := range page.Runs {
		fmt.Printf("        %s pipeline %-22s lane %-8s attempt %d  external_ref %s  error %q\n", short(r.RunID), r.Spec.Name,
			r.Spec.Lane, r.Attempt, short(r.ExternalRef), truncate(r.Error, 40))
	}
	return nil
}

func compact(m map[string]any) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return truncate(strings.Join(parts, " "), 90)
}

func short(id string) string {
	if len(id) > 8 && strings.Count(id, "-") == 4 {
		return id[:8]
	}
	if id == "" {
		return "-"
	}
	return id
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("      " + line + "\n")
	}
	return b.String()
}

// buildCLI builds the spine-migrate binary the demo drives, so the commands
// shown are the ones an operator runs.
func buildCLI(ctx context.Context) (string, func(), error) {
	dir, err := os.MkdirTemp("", "spine-demo-bin-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "spine-migrate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/spine-migrate")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build spine-migrate: %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func runCLI(ctx context.Context, bin string, env []string, args ...string) (string, error) {
	fmt.Printf("      $ spine-migrate %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("spine-migrate %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}
