package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase3"
)

// The operator's path through phase 3, as the commands print it.
func TestPhase3Commands(t *testing.T) {
	t.Parallel()
	db, sum := testsvc.NewSeededCaptureSpineDatabase(t, seed.Options{Executions: 400, Jobs: 1200, Seed: 9})
	env := map[string]string{"DATABASE_URL": db}
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
			t.Fatal(err)
		}
	}

	_, stderr, err := run(t, env, "phase3", "plan")
	if err == nil || !strings.Contains(stderr, "apply phase 1 first") {
		t.Fatalf("plan before phase 1 = %v\n%s", err, stderr)
	}
	if _, _, err := run(t, env, "phase1", "apply", "--execute"); err != nil {
		t.Fatal(err)
	}
	exec("UPDATE jobs SET status = 'zombie' WHERE id = 17")
	out, stderr, err := run(t, env, "phase3", "plan")
	if err == nil || !strings.Contains(stderr, `jobs.status "zombie" (1 jobs) has no mapping`) || !strings.Contains(stderr, "--job-mapping FILE") || !strings.Contains(out, "UNMAPPED") {
		t.Fatalf("plan with an unknown status = %v\n%s\n%s", err, out, stderr)
	}
	file := filepath.Join(t.TempDir(), "mapping.json")
	if err := os.WriteFile(file, []byte(`{"statuses": {"zombie": "failed"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, env, "phase3", "plan", "--job-mapping", file)
	if err != nil || !strings.Contains(out, "Overlaps:") || !strings.Contains(out, "link, not duplicate") || !strings.Contains(out, "phase3 copy --execute") {
		t.Fatalf("plan with the mapping file = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "copy", "--job-mapping", file)
	if err != nil || !strings.Contains(out, "Dry run: nothing was changed") {
		t.Fatalf("copy without --execute = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "status", "-o", "json")
	var st phase3.State
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.State != phase3.StateNotStarted {
		t.Fatalf("status after a dry run = %v %s", err, out)
	}

	out, _, err = run(t, env, "phase3", "copy", "--execute", "--job-mapping", file, "--batch-size", "200", "--target-batch", "20ms", "-o", "json")
	var res phase3.CopyResult
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.RowsScanned != int64(sum.Jobs) || res.Batches < 3 || !res.TriggerInstalled {
		t.Fatalf("copy = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "verify")
	if err != nil || !strings.Contains(out, "OK: every job") {
		t.Fatalf("verify = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "verify", "--parallel", "3", "--chunk-ids", "300")
	if err != nil || !strings.Contains(out, "1200 jobs in 5 chunks of 300 ids") || !strings.Contains(out, "OK: every job") {
		t.Fatalf("verify --parallel 3 = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "status")
	if err != nil || !strings.Contains(out, "Phase 3: copied") || !strings.Contains(out, "present on jobs") {
		t.Fatalf("status = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "pause")
	if err != nil || !strings.Contains(out, "Paused (no copy is running now") {
		t.Fatalf("pause = %v\n%s", err, out)
	}
	if _, _, err = run(t, env, "phase3", "resume", "--max-rate", "100"); err != nil {
		t.Fatal(err)
	}

	// Damage, found and repaired.
	exec("DELETE FROM executions WHERE execution_id = $1", capturespine.JobExecutionID(300))
	out, _, err = run(t, env, "phase3", "verify", "--repair")
	if err == nil || !strings.Contains(out, "MISMATCH ids 0-9999") || !strings.Contains(out, "300 missing") || !strings.Contains(out, "Dry run: --repair would re-copy 1 id ranges") {
		t.Fatalf("verify --repair without --execute = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "verify", "--repair", "--execute")
	if err != nil || !strings.Contains(out, "Re-copied 1 id ranges: 1 executions written") || !strings.Contains(out, "OK: every job") {
		t.Fatalf("verify --repair --execute = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "copy", "--execute", "--job-mapping", file)
	if err != nil || !strings.Contains(out, "had already finished") {
		t.Fatalf("second copy = %v\n%s", err, out)
	}

	// Cutover, then back.
	out, _, err = run(t, env, "phase3", "cutover", "--compat-view")
	if err != nil || !strings.Contains(out, "Dry run") || !strings.Contains(out, "CREATE VIEW jobs") {
		t.Fatalf("cutover without --execute = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "cutover", "--execute", "--compat-view")
	if err != nil || !strings.Contains(out, "Cut over: jobs is now jobs_retired") {
		t.Fatalf("cutover = %v\n%s", err, out)
	}
	if _, stderr, err = run(t, env, "phase3", "finalize", "--execute"); err == nil || !strings.Contains(stderr, "--confirm jobs_retired") {
		t.Fatalf("finalize without --confirm = %v\n%s", err, stderr)
	}
	out, _, err = run(t, env, "phase3", "rollback")
	if err != nil || !strings.Contains(out, "rename jobs_retired back to jobs") || !strings.Contains(out, "Dry run") {
		t.Fatalf("rollback without --execute = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "rollback", "--execute")
	if err != nil || !strings.Contains(out, "jobs_retired renamed back to jobs") || !strings.Contains(out, "0 migrated executions, 0 links and 0 phase 3 objects left") {
		t.Fatalf("rollback = %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase3", "status")
	if err != nil || !strings.Contains(out, "Phase 3: not started") {
		t.Fatalf("status after rollback = %v\n%s", err, out)
	}
}
