package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/phases/phase2"
)

// The two bypass tasks the demo routes: backups shadowed at 100%, syncs
// rerouted at 25% (the other 75% shadowed: a partial reroute shadows the
// rest).
const (
	demoBackupTask = "app.tasks.backup.run_backup_for_user"
	demoSyncTask   = "app.tasks.sync.sync_environments"
	demoPerTask    = 40
)

// sidecarTraffic runs `spine-migrate phase2 run` against the demo's Redis,
// sends it the calls Capture-Spine's code makes, stands in for the Python
// workers (it takes what the side-car republished or published and writes
// each task's result, as a worker would), and shows what became of every
// message. Real Celery 5.2.6 workers and producers do the same in the
// package's end-to-end tests.
func sidecarTraffic(ctx context.Context, bin string, env []string, pool *pgxpool.Pool, redisURL string) error {
	opts, err := celerybridge.ParseBrokerURL(redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	tr := celerybridge.NewTransport(rdb, celerybridge.TransportOptions{})
	results := celerybridge.NewResultBackend(rdb, celerybridge.ResultBackendOptions{})

	fmt.Println("      $ spine-migrate phase2 run --listen ''   (in the background)")
	sidecar := exec.CommandContext(ctx, bin, "phase2", "run", "--listen", "", "--adopt-after", "2s")
	sidecar.Env = env
	var logs strings.Builder
	sidecar.Stdout, sidecar.Stderr = &logs, &logs
	if err := sidecar.Start(); err != nil {
		return err
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = sidecar.Process.Signal(syscall.SIGTERM)
		return sidecar.Wait()
	}
	defer stop()

	// What Capture-Spine's API does today: apply_async to the bypass tasks,
	// which the generated task_routes send to the intercept queue.
	for i := range demoPerTask {
		for _, call := range []struct {
			task string
			args []any
		}{
			{demoBackupTask, []any{fmt.Sprintf("7f3c2a10-0000-4000-8000-%012d", i)}},
			{demoSyncTask, []any{[]any{"staging", fmt.Sprintf("tenant-%d", i)}}},
		} {
			m, err := celerybridge.NewTaskMessage(call.task, call.args, nil, celerybridge.TaskOptions{Queue: phase2.DefaultInterceptQueue})
			if err != nil {
				return err
			}
			raw, err := m.Encode()
			if err != nil {
				return err
			}
			if err := tr.Publish(ctx, "", phase2.DefaultInterceptQueue, raw); err != nil {
				return err
			}
		}
	}
	fmt.Printf("      sent %d calls of each task to the intercept queue %q\n", demoPerTask, phase2.DefaultInterceptQueue)

	// The stand-in workers: every message the side-car handed on is run
	// (instantly) and its result written where Celery writes it.
	workerQueues := []string{"backups", "celery", "normal", "high", "low", "realtime", "slow", "backfill"}
	ran := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for settled := 0; ; {
		if time.Now().After(deadline) {
			return fmt.Errorf("the side-car did not settle the demo's messages in 60s (%d ran)\n%s", settled, logs.String())
		}
		d, err := tr.Claim(ctx, workerQueues, 200*time.Millisecond)
		if err == nil {
			task, err := celerybridge.DecodeTask(d.Raw)
			if err != nil {
				return err
			}
			if err := results.StoreSuccess(ctx, task.ID, map[string]any{"ok": true, "task": task.Name}, celerybridge.StoreMeta{}); err != nil {
				return err
			}
			if err := tr.Ack(ctx, d.Tag); err != nil {
				return err
			}
			ran[task.Name]++
			settled++
			continue
		}
		if !errors.Is(err, celerybridge.ErrNoMessage) {
			return fmt.Errorf("the stand-in workers' claim: %w", err)
		}
		active, err := activeRuns(ctx, pool)
		if err != nil {
			return err
		}
		left, _ := tr.Len(ctx, phase2.DefaultInterceptQueue)
		if settled >= 2*demoPerTask && active == 0 && left == 0 {
			break
		}
	}
	fmt.Println("      the stand-in Python workers ran:")
	for _, name := range []string{demoBackupTask, demoSyncTask, "run_pipeline"} {
		fmt.Printf("        %-40s %d\n", name, ran[name])
	}
	if err := stop(); err != nil {
		return fmt.Errorf("phase2 run: %v\n%s", err, logs.String())
	}

	fmt.Println("      executions the side-car recorded, by task, path and status:")
	rows, err := pool.Query(ctx, `SELECT metadata->>'celery_task', metadata->>'phase2_path', status, count(*)
		FROM executions WHERE executor_name IN ($1, $2) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, phase2.ExecutorShadow, phase2.ExecutorReroute)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var task, path, status string
		var n int
		if err := rows.Scan(&task, &path, &status, &n); err != nil {
			return err
		}
		fmt.Printf("        %-40s %-8s %-10s %d\n", task, path, status, n)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	out, err := runCLI(ctx, bin, env, "phase2", "status")
	if err != nil {
		return err
	}
	fmt.Print(indent(out))
	return nil
}

// activeRuns counts the side-car's runs still waiting for their results.
func activeRuns(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM executions WHERE executor_name IN ($1, $2)
		AND status IN ('pending', 'queued', 'running')`, phase2.ExecutorShadow, phase2.ExecutorReroute).Scan(&n)
	return n, err
}
