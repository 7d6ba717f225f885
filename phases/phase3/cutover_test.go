package phase3_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
	"github.com/spinecore/spine-go/phases/phase3"
)

func (b *bundle) schemaDump() string {
	b.t.Helper()
	cmd := exec.CommandContext(b.ctx, filepath.Join(testsvc.PostgresServer(b.t).BinDir(), "pg_dump"),
		"--schema-only", "--no-owner", "--dbname="+b.url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("pg_dump: %v: %s", err, stderr.String())
	}
	var kept []string
	for line := range strings.Lines(string(out)) {
		if !strings.HasPrefix(line, `\restrict `) && !strings.HasPrefix(line, `\unrestrict `) {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "")
}

// dataDigest hashes every row of jobs and executions, every column.
func (b *bundle) dataDigest() string {
	b.t.Helper()
	var digest string
	if err := b.pool.QueryRow(b.ctx, `SELECT md5((SELECT string_agg(e::text, '|' ORDER BY e.execution_id) FROM executions AS e))
		|| md5((SELECT string_agg(j::text, '|' ORDER BY j.id) FROM jobs AS j))`).Scan(&digest); err != nil {
		b.t.Fatal(err)
	}
	return digest
}

// Cutover leaves jobs_retired and a read-only jobs view over executions;
// rollback then returns schema and data to exactly what they were before
// phase 3, and phase 3 can start over.
func TestCutoverThenRollbackRestoresEverything(t *testing.T) {
	t.Parallel()
	b := setup(t)
	schema, data := b.schemaDump(), b.dataDigest()
	if _, err := phase3.Cutover(b.ctx, b.pool, b.opts, true); !errors.Is(err, phase3.ErrRefused) {
		t.Errorf("cutover before the copy = %v", err)
	}
	b.copy()
	res, err := phase3.Cutover(b.ctx, b.pool, b.opts, true)
	if err != nil || !res.Verified.OK() {
		t.Fatalf("cutover = %+v, %v", res, err)
	}
	if n := b.count("SELECT count(*) FROM jobs"); n != b.count("SELECT count(*) FROM jobs_retired") {
		t.Errorf("the jobs view shows %d jobs", n)
	}
	if n := b.count("SELECT count(*) FROM jobs AS v JOIN jobs_retired AS r USING (id) WHERE v.job_type IS DISTINCT FROM r.job_type AND v.job_type IN ('backup', 'batch_import', 'copilot_sync', 'recommendations', 'sync_environments') AND r.celery_task_id IS NOT DISTINCT FROM v.celery_task_id AND v.attempts = r.attempts AND v.job_type = r.job_type"); n != 0 {
		t.Errorf("%d rows of the view differ", n)
	}
	if _, err := b.pool.Exec(b.ctx, "INSERT INTO jobs (id, job_type, status) VALUES (1, 'backup', 'success')"); err == nil {
		t.Error("the compatibility view accepted a write")
	}
	st, _ := phase3.Status(b.ctx, b.pool)
	if st.State != phase3.StateCutOver || st.Trigger {
		t.Errorf("status after cutover = %+v", st)
	}
	if _, err := phase3.Copy(b.ctx, b.pool, b.opts); !errors.Is(err, phase3.ErrRefused) {
		t.Errorf("copy after cutover = %v", err)
	}
	if p, _ := phase1.PlanRollback(b.ctx, b.pool, phase1.Options{Logger: slog.New(slog.DiscardHandler)}); len(p.LaterPhases) == 0 {
		t.Error("phase 1's rollback does not see phase 3")
	}

	rb, err := phase3.Rollback(b.ctx, b.pool, b.opts)
	if err != nil || !rb.Renamed || rb.Deleted == 0 || rb.Unlinked == 0 || len(rb.LeftObjects) != 0 {
		t.Fatalf("rollback = %+v, %v", rb, err)
	}
	if got := b.schemaDump(); got != schema {
		t.Errorf("schema after rollback differs from before phase 3:\n--- before\n%s\n--- after\n%s", schema, got)
	}
	if b.dataDigest() != data {
		t.Error("jobs or executions differ from before phase 3")
	}
	if st, _ := phase3.Status(b.ctx, b.pool); st.State != phase3.StateNotStarted {
		t.Errorf("status after rollback = %+v", st)
	}
	if p, _ := phase1.PlanRollback(b.ctx, b.pool, phase1.Options{Logger: slog.New(slog.DiscardHandler)}); len(p.LaterPhases) != 0 {
		t.Errorf("phase 1 still sees %v", p.LaterPhases)
	}
	// A second rollback has nothing to do; phase 3 can start over.
	if rb, err := phase3.Rollback(b.ctx, b.pool, b.opts); err != nil || rb.Deleted != 0 {
		t.Errorf("second rollback = %+v, %v", rb, err)
	}
	b.copy()
	b.verifyOK()
}

// Rollback before cutover, with the copy half done, while the application
// writes; a half-done rollback blocks a copy until it is finished.
func TestRollbackMidCopyWhileWriting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := startWriter(t, b.url, 200, 5)
	opts := b.opts
	opts.MaxRate = 2000
	var log progressLog
	opts.Progress = log.add
	ctx, cancel := contextWithCancel(b)
	go func() {
		b.waitFor("half the copy", func() bool { _, p := log.last(); return p.Scanned > 1500 })
		cancel()
	}()
	if _, err := phase3.Copy(ctx, b.pool, opts); err == nil {
		t.Fatal("the copy was not stopped")
	}
	b.exec("UPDATE spine_phase3_copy SET rollback_at = now()") // as a rollback killed after its first step leaves it
	if _, err := phase3.Copy(b.ctx, b.pool, b.opts); !errors.Is(err, phase3.ErrRefused) || !strings.Contains(err.Error(), "rollback") {
		t.Errorf("copy after a half rollback = %v", err)
	}
	rb, err := phase3.Rollback(b.ctx, b.pool, b.opts)
	if errs := w.Stop(); len(errs) > 0 {
		t.Fatalf("the application's writes failed: %v", errs[0])
	}
	if err != nil || rb.Renamed || rb.Deleted == 0 || rb.LeftMigrated != 0 || rb.LeftLinks != 0 {
		t.Fatalf("rollback = %+v, %v", rb, err)
	}
}

func TestFinalizeNeedsTheConfirmation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.copy()
	if err := phase3.Finalize(b.ctx, b.pool, b.opts, "jobs_retired"); !errors.Is(err, phase3.ErrRefused) {
		t.Errorf("finalize before cutover = %v", err)
	}
	if _, err := phase3.Cutover(b.ctx, b.pool, b.opts, false); err != nil {
		t.Fatal(err)
	}
	if b.count("SELECT count(*) FROM pg_class WHERE relname = 'jobs'") != 0 {
		t.Error("cutover without the view left something named jobs")
	}
	for _, confirm := range []string{"", "jobs", "yes"} {
		if err := phase3.Finalize(b.ctx, b.pool, b.opts, confirm); !errors.Is(err, phase3.ErrRefused) || !strings.Contains(err.Error(), "--confirm jobs_retired") {
			t.Errorf("finalize --confirm %q = %v", confirm, err)
		}
	}
	if err := phase3.Finalize(b.ctx, b.pool, b.opts, "jobs_retired"); err != nil {
		t.Fatal(err)
	}
	st, _ := phase3.Status(b.ctx, b.pool)
	if st.State != phase3.StateFinalized || st.JobsRetired {
		t.Errorf("status after finalize = %+v", st)
	}
	if _, err := phase3.Rollback(b.ctx, b.pool, b.opts); !errors.Is(err, phase3.ErrRefused) {
		t.Errorf("rollback after finalize = %v", err)
	}
	if p, _ := phase1.PlanRollback(b.ctx, b.pool, phase1.Options{Logger: slog.New(slog.DiscardHandler)}); len(p.LaterPhases) == 0 {
		t.Error("after finalize phase 1's rollback must keep refusing: executions holds the jobs")
	}
}
