package phase3_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/capturespinetest"
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

// The compatibility view reads like the jobs table it replaces: the same
// columns, one row per job, every column the mapping keeps exactly equal to
// the final table's, the others as compatView documents them, and statuses
// in the legacy vocabulary, also once spine-core moves an execution on.
func TestCompatViewReadsLikeJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(awkwardJobs)
	m := capturespine.DefaultJobMapping()
	// A job linked to an execution whose status no legacy status maps to.
	b.exec(`UPDATE jobs SET celery_task_id = (SELECT backend_task_id FROM executions
		WHERE status = 'dead_lettered' AND backend_task_id IS NOT NULL ORDER BY execution_id LIMIT 1) WHERE id = 9`)
	b.copy()
	final := b.jobs("jobs")
	natives := map[string]string{} // Celery task id -> status, of the executions jobs link to
	rows, err := b.pool.Query(b.ctx, "SELECT backend_task_id, status FROM executions WHERE metadata ? 'legacy_job_ids'")
	if err != nil {
		t.Fatal(err)
	}
	var task, status string
	if _, err := pgx.ForEachRow(rows, []any{&task, &status}, func() error { natives[task] = status; return nil }); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(final, func(j capturespine.Job) bool { return j.ID == 9 }); i < 0 || final[i].CeleryTaskID == nil || natives[*final[i].CeleryTaskID] != "dead_lettered" {
		t.Fatalf("job 9 is not linked to a dead-lettered execution: %v", natives)
	}

	if _, err := phase3.Cutover(b.ctx, b.pool, b.opts, true); err != nil {
		t.Fatal(err)
	}
	columns := `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`
	var viewCols, tableCols string
	if err := b.pool.QueryRow(b.ctx, columns, "jobs").Scan(&viewCols); err != nil {
		t.Fatal(err)
	}
	if err := b.pool.QueryRow(b.ctx, columns, "jobs_retired").Scan(&tableCols); err != nil {
		t.Fatal(err)
	}
	if viewCols != tableCols {
		t.Fatalf("SELECT * FROM the view gives %s; the table had %s", viewCols, tableCols)
	}
	got := b.jobs("jobs")
	if len(got) != len(final) {
		t.Fatalf("the view has %d rows, jobs had %d", len(got), len(final))
	}
	linked := 0
	for i, want := range final {
		g := got[i]
		if want.CeleryTaskID != nil && natives[*want.CeleryTaskID] != "" {
			// A linked job: the native execution's row under the job's id.
			linked++
			native := natives[*want.CeleryTaskID]
			if g.ID != want.ID || !reflect.DeepEqual(g.CeleryTaskID, want.CeleryTaskID) || g.Status != mappedBack(m, native) {
				t.Errorf("linked job %d (execution %s) reads %+v", want.ID, native, g)
			}
			continue
		}
		// The approximations compatView documents.
		if want.Queue == nil {
			want.Queue = ptr("normal")
		}
		if want.Payload == nil {
			want.Payload = []byte("{}")
		} else if want.Payload[0] != '{' {
			want.Payload = []byte(`{"payload": ` + string(want.Payload) + "}")
		}
		if !capturespinetest.SameRow(g, want) {
			t.Errorf("job %d:\nwant %+v\ngot  %+v", want.ID, want, g)
		}
	}
	if linked < 2 {
		t.Errorf("only %d linked jobs compared", linked)
	}

	// spine-core moves a migrated execution on: a status its legacy one
	// ("started") does not map to reads mapped back; back at the one it
	// maps to, the job reads "started" again, not "running".
	started := b.jobWithStatus(final, "started")
	for _, c := range []struct{ status, reads string }{
		{"completed", "success"}, {"failed", "error"}, {"dead_lettered", "dead_lettered"}, {"running", "started"},
	} {
		b.exec("UPDATE executions SET status = $1 WHERE execution_id = $2", c.status, xid(started))
		var got string
		if err := b.pool.QueryRow(b.ctx, "SELECT status FROM jobs WHERE id = $1", started).Scan(&got); err != nil || got != c.reads {
			t.Errorf("job %d, its execution %s, reads status %q (%v), want %q", started, c.status, got, err, c.reads)
		}
	}
}

// mappedBack is the legacy status compatView shows for a spine-core one:
// of those the mapping maps to it, the one spelled alike, else the first by
// name; the status itself when none maps to it.
func mappedBack(m capturespine.JobMapping, status string) string {
	var legacy []string
	for l, s := range m.Statuses {
		if string(s) == status {
			legacy = append(legacy, l)
		}
	}
	if len(legacy) == 0 || slices.Contains(legacy, status) {
		return status
	}
	return slices.Min(legacy)
}

// jobs reads the table or view named relation, ordered by id.
func (b *bundle) jobs(relation string) []capturespine.Job {
	b.t.Helper()
	rows, err := b.pool.Query(b.ctx, "SELECT "+capturespinetest.JobColumns+" FROM "+pgx.Identifier{relation}.Sanitize()+" ORDER BY id")
	if err != nil {
		b.t.Fatal(err)
	}
	jobs, err := pgx.CollectRows(rows, capturespinetest.ScanJob)
	if err != nil {
		b.t.Fatal(err)
	}
	return jobs
}

// jobWithStatus is the first of jobs with the status that has an
// execution of its own.
func (b *bundle) jobWithStatus(jobs []capturespine.Job, status string) int64 {
	b.t.Helper()
	for _, j := range jobs {
		if j.Status == status && b.count("SELECT count(*) FROM executions WHERE execution_id = $1", xid(j.ID)) == 1 {
			return j.ID
		}
	}
	b.t.Fatalf("no migrated job has status %s", status)
	return 0
}
