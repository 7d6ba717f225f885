package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
)

// The operator's path through phase 1, as the commands print it.
func TestPhase1Commands(t *testing.T) {
	t.Parallel()
	db, sum := testsvc.NewSeededCaptureSpineDatabase(t, seed.Options{Executions: 1500, Jobs: 100, Seed: 5})
	env := map[string]string{"DATABASE_URL": db}

	out, _, err := run(t, env, "phase1", "plan")
	if err != nil || !strings.Contains(out, "Apply would run") || !strings.Contains(out, "1500 rows") || !strings.Contains(out, "backfill priority") {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase1", "apply")
	if err != nil || !strings.Contains(out, "Dry run: nothing was changed") {
		t.Fatalf("apply without --execute: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "status", "-o", "json")
	var st statusView
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Phase1.State != phase1.StateNotStarted {
		t.Fatalf("status after a dry run: %v %s", err, out)
	}

	out, _, err = run(t, env, "phase1", "apply", "--execute", "--batch-size", "200", "-o", "json")
	var applied phase1.ApplyResult
	if err != nil || json.Unmarshal([]byte(out), &applied) != nil || len(applied.Migrations) != 7 || applied.Backfill.RowsScanned != int64(sum.Executions) {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase1", "verify")
	if err != nil || !strings.Contains(out, "1500") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "status")
	if err != nil || !strings.Contains(out, "phase1: done") {
		t.Fatalf("status: %v\n%s", err, out)
	}

	out, _, err = run(t, env, "phase1", "rollback")
	if err != nil || !strings.Contains(out, "rollback --execute") || !strings.Contains(out, "DROP TRIGGER") {
		t.Fatalf("rollback plan: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase1", "rollback", "--execute")
	if err != nil || !strings.Contains(out, "rolled back") {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase1", "verify")
	if err == nil || !strings.Contains(err.Error(), "phase1 apply --execute") {
		t.Fatalf("verify after rollback = %v\n%s", err, out)
	}
}

func TestPhase1PlanRefusesAnotherDatabase(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testsvc.NewDatabase(t)}
	_, stderr, err := run(t, env, "phase1", "apply", "--execute")
	if err == nil || !strings.Contains(stderr, "not a Capture-Spine database") {
		t.Fatalf("apply on an empty database = %v\n%s", err, stderr)
	}
}
