package phase3_test

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase3"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(crashChildEnv); url != "" {
		os.Exit(crashChild(url))
	}
	testsvc.Main(m)
}

// The copy of a seeded database with every awkward row equals the Go
// mapping row for row, and verify agrees.
func TestCopyAwkwardJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(awkwardJobs)
	// An overlap the seed does not make: two jobs on one native execution.
	b.exec(`UPDATE jobs SET celery_task_id = (SELECT backend_task_id FROM executions WHERE backend_task_id IS NOT NULL ORDER BY execution_id LIMIT 1)
		WHERE id IN (7, 8)`)

	res := b.copy()
	if res.Resumed || res.AlreadyDone || !res.TriggerInstalled || !res.IndexBuilt || res.Batches < 5 {
		t.Errorf("copy = %+v", res)
	}
	o := b.checkAgainstGo(capturespine.DefaultJobMapping())
	if o.Jobs != b.sum.Jobs+4 || o.Linked < b.sum.SharedTaskIDs || o.Linked == 0 || o.Rejected != 0 {
		t.Errorf("oracle: %s; seeded %d jobs + 4, %d overlapping", o, b.sum.Jobs, b.sum.SharedTaskIDs)
	}
	if res.RowsScanned != int64(o.Jobs) || res.RowsCopied != int64(o.Migrated) || res.RowsLinked != int64(o.Linked) {
		t.Errorf("copy counted %d scanned, %d copied, %d linked; the oracle %s", res.RowsScanned, res.RowsCopied, res.RowsLinked, o)
	}
	r := b.verifyOK()
	if r.ExpectedExecutions != int64(o.Migrated) || r.Jobs != int64(o.Jobs) {
		t.Errorf("verify = %+v, oracle %s", r, o)
	}
	// The pre-14 hash gives the same verdict.
	if r2, err := phase3.VerifyWithTextHash(b.ctx, b.pool, b.opts); err != nil || !r2.OK() {
		t.Errorf("verify with the text hash: %+v %v", r2, err)
	}

	again, err := phase3.Copy(b.ctx, b.pool, b.opts)
	if err != nil || !again.AlreadyDone || again.Batches != 0 {
		t.Errorf("second copy = %+v, %v", again, err)
	}
	st, err := phase3.Status(b.ctx, b.pool)
	if err != nil || st.State != phase3.StateCopied || !st.Trigger || st.Percent != 100 || st.Checkpoint.RowsScanned != int64(o.Jobs) {
		t.Errorf("status = %+v, %v", st, err)
	}
}

// JobSQL's parameters are bound by position to the mapping row's columns:
// this pins the order phase 3 assumes.
func TestMappingParametersKeepTheirOrder(t *testing.T) {
	t.Parallel()
	m := capturespine.DefaultJobMapping()
	q, err := m.SQL("j", 1)
	if err != nil {
		t.Fatal(err)
	}
	pipelines, _ := json.Marshal(m.Pipelines)
	statuses, _ := json.Marshal(m.Statuses)
	want := []any{string(pipelines), string(statuses), m.TriggerSource}
	if !reflect.DeepEqual(q.Args, want) || !reflect.DeepEqual(phase3.MappingParams, []string{"pipelines", "statuses", "trigger_source"}) {
		t.Fatalf("JobSQL.Args = %v, phase 3 binds %v", q.Args, phase3.MappingParams)
	}
	fn, err := phase3.TriggerFunctionSQL()
	if err != nil || strings.Contains(fn, "$1") || !strings.Contains(fn, "spine_map.statuses") {
		t.Fatalf("trigger function: %v\n%s", err, fn)
	}
}

// The trigger alone (no copy): inserts, updates, deletes, id changes, links
// made and undone, all mapped exactly as the Go adapter maps them.
func TestTriggerMapsLikeGo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := phase3.SetupOnly(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	native := func(i int) string {
		var task string
		if err := b.pool.QueryRow(b.ctx, `SELECT backend_task_id FROM executions WHERE backend_task_id IS NOT NULL
			ORDER BY execution_id OFFSET $1 LIMIT 1`, i).Scan(&task); err != nil {
			t.Fatal(err)
		}
		return task
	}
	b.exec("UPDATE jobs SET updated_at = updated_at + interval '1 microsecond'") // every seeded job through the trigger
	b.exec(awkwardJobs)
	b.exec("UPDATE jobs SET attempts = attempts + 1, status = 'failure' WHERE id % 5 = 0 AND id < 1000000")
	b.exec("DELETE FROM jobs WHERE id % 7 = 0")
	b.exec("UPDATE jobs SET id = 20000001 WHERE id = 11")
	b.exec("UPDATE jobs SET celery_task_id = $1 WHERE id IN (12, 13)", native(0)) // two links on one execution
	b.exec("UPDATE jobs SET celery_task_id = $1 WHERE id = 16", native(1))
	b.exec("UPDATE jobs SET celery_task_id = NULL WHERE id = 13") // unlinked again
	b.exec("UPDATE jobs SET id = 20000002 WHERE id = 12")         // a linked job changes id
	b.exec("DELETE FROM jobs WHERE id = 16")                      // a linked job goes
	b.exec("INSERT INTO jobs (job_type, status, celery_task_id) VALUES ('backup', 'success', $1)", native(2))
	o := b.checkAgainstGo(capturespine.DefaultJobMapping())
	if o.Migrated < 2000 || o.Linked < 2 {
		t.Errorf("oracle: %s", o)
	}
	// Every migrated execution stands for a job of the final table (the
	// oracle checks it by id; this by count). TRUNCATE, which fires no row
	// trigger, has a test of its own.
	if n := b.count("SELECT count(*) FROM executions WHERE metadata ? 'legacy_job_type'"); n != int64(o.Migrated) {
		t.Errorf("%d migrated executions, want %d", n, o.Migrated)
	}
}

// truncateAndRefill truncates jobs, checks that nothing the old jobs stood
// for is left, then inserts fresh jobs: some linked to native executions,
// one reusing an old id, one beyond every id so far.
func (b *bundle) truncateAndRefill() {
	b.t.Helper()
	b.exec("TRUNCATE jobs")
	if n := b.count(`SELECT count(*) FILTER (WHERE metadata ? 'legacy_job_type') + count(*) FILTER (WHERE metadata ? 'legacy_job_ids')
		+ (SELECT count(*) FROM spine_phase3_rejects) FROM executions`); n != 0 {
		b.t.Errorf("after TRUNCATE jobs: %d migrated executions, links and rejects left", n)
	}
	b.exec(`INSERT INTO jobs (job_type, status, celery_task_id, queue, payload)
		SELECT (ARRAY['backup', 'batch_import', 'copilot_sync', 'recommendations', 'sync_environments'])[1 + g % 5],
		       (ARRAY['pending', 'running', 'success', 'failure', 'retry'])[1 + g % 5],
		       CASE WHEN g % 10 = 0 THEN (SELECT backend_task_id FROM executions WHERE backend_task_id IS NOT NULL
		                                  ORDER BY execution_id OFFSET g / 10 LIMIT 1)
		            ELSE 'fresh-' || g END,
		       CASE WHEN g % 3 = 0 THEN NULL ELSE 'celery' END, jsonb_build_object('n', g)
		FROM generate_series(1, 200) AS g`)
	b.exec("INSERT INTO jobs (id, job_type, status) VALUES (7, 'backup', 'success'), (90000000, 'backup', 'queued')")
}

// TRUNCATE jobs after the copy: a statement trigger does what deleting
// every job would, so executions match the jobs inserted since.
func TestTruncateJobsAfterTheCopy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.copy()
	b.exec("UPDATE jobs SET status = 'zombie' WHERE id = $1", b.migratedJob(100)) // a reject to clear
	if n := b.count("SELECT count(*) FROM executions WHERE metadata ? 'legacy_job_ids'"); n == 0 {
		t.Fatal("the seed made no links: the test would prove nothing about them")
	}
	b.truncateAndRefill()
	o := b.checkAgainstGo(capturespine.DefaultJobMapping())
	if o.Jobs != 202 || o.Linked != 20 || o.Migrated == 0 {
		t.Errorf("oracle: %s", o)
	}
	if r := b.verifyOK(); r.Jobs != 202 {
		t.Errorf("verify = %+v", r)
	}
}

// TRUNCATE jobs while the copy runs: it waits for the batch in flight,
// the batches after it wait for it, and the copy finishes with executions
// matching the jobs inserted since, whichever side of the checkpoint
// their ids fall.
func TestTruncateJobsDuringTheCopy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var log progressLog
	opts := b.opts
	opts.MaxRate, opts.TargetBatch, opts.Progress = 1500, 30*time.Millisecond, log.add
	done := make(chan error, 1)
	go func() { _, err := phase3.Copy(b.ctx, b.pool, opts); done <- err }()
	b.waitFor("a third of the copy", func() bool { _, p := log.last(); return p.Scanned > 1000 })
	b.truncateAndRefill()
	b.exec("INSERT INTO jobs (id, job_type, status) VALUES (2500, 'backup', 'running')") // not copied yet, if the copy is still below it
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, p := log.last(); !p.Done || p.Scanned >= int64(b.sum.Jobs) {
		t.Errorf("the copy ended at %+v: the TRUNCATE did not land while it ran", p)
	}
	o := b.checkAgainstGo(capturespine.DefaultJobMapping())
	if o.Jobs != 203 || o.Linked != 20 {
		t.Errorf("oracle: %s", o)
	}
	b.verifyOK()
}

// The application keeps writing jobs the whole time the copy runs (inserts,
// updates, deletes, overlaps made and undone, multi-row transactions, well
// over 200 writes/s): afterwards executions equal the Go mapping of the
// final jobs table, row for row.
func TestCopyWhileTheApplicationWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := startWriter(t, b.url, 400, 1)
	time.Sleep(200 * time.Millisecond)
	opts := b.opts
	opts.TargetBatch = 30 * time.Millisecond
	opts.MaxRate = 1200 // about 2.5s for the seed, to overlap many writes
	before := w.writes.Load()
	t0 := time.Now()
	res, err := phase3.Copy(b.ctx, b.pool, opts)
	during, secs := w.writes.Load()-before, time.Since(t0).Seconds()
	time.Sleep(300 * time.Millisecond) // writes after the copy: the trigger's alone
	if errs := w.Stop(); len(errs) > 0 {
		t.Fatalf("the application's writes failed %d times during the copy, first: %v", len(errs), errs[0])
	}
	if err != nil {
		t.Fatal(err)
	}
	if rate := float64(during) / secs; rate < 200 || res.Batches < 10 {
		t.Fatalf("%d writes in %.1fs (%.0f/s) over %d batches: the test did not overlap enough", during, secs, rate, res.Batches)
	}
	t.Logf("copy: %d batches, %d jobs in %.1fs while the application wrote %d rows (%.0f/s); batch p99 %s",
		res.Batches, res.RowsScanned, secs, during, float64(during)/secs, res.BatchP99)
	o := b.checkAgainstGo(capturespine.DefaultJobMapping())
	r := b.verifyOK()
	if r.ExpectedExecutions != int64(o.Migrated) {
		t.Errorf("verify %+v, oracle %s", r, o)
	}
}

// Batches run side by side on several connections (over ranges of ids in
// separate buckets) while the application writes, and commit in id order:
// the result is the mapping of the final jobs, row for row, and verify
// finds nothing.
func TestParallelCopyWhileTheApplicationWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const spread = 40
	b.spreadIDs(4, spread)
	w := startSpreadWriter(t, b.url, 400, 3, spread)
	time.Sleep(200 * time.Millisecond)
	opts := b.opts
	opts.CopyWorkers, opts.TargetBatch = 4, 20*time.Millisecond
	before := w.writes.Load()
	t0 := time.Now()
	res, err := phase3.Copy(b.ctx, b.pool, opts)
	during, secs := w.writes.Load()-before, time.Since(t0).Seconds()
	time.Sleep(300 * time.Millisecond)
	if errs := w.Stop(); len(errs) > 0 {
		t.Fatalf("the application's writes failed %d times during the copy, first: %v", len(errs), errs[0])
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("copy: %d batches (%d started beside another), %d jobs in %.1fs while the application wrote %d rows; %d retries",
		res.Batches, res.Overlapped, res.RowsScanned, secs, during, res.Retries)
	if res.Overlapped < res.Batches/4 || during < 100 {
		t.Fatalf("%d of %d batches overlapped another, %d writes during the copy: the test proved little", res.Overlapped, res.Batches, during)
	}
	o := b.checkAgainstGo(capturespine.DefaultJobMapping())
	r := b.verifyOK()
	if r.ExpectedExecutions != int64(o.Migrated) {
		t.Errorf("verify %+v, oracle %s", r, o)
	}
}

// Batches inside one id bucket cannot run side by side: each waits for the
// batch before it to end. The loop has that batch's outcome a moment
// before the turn ends; a loop that then waited for another outcome, with
// none in flight, stalled for good (CI once hung 15 minutes on it).
func TestBatchesSharingABucketWaitForTheTurnNotAnOutcome(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts := b.opts
	// The seed's 3000 ids are all in the first bucket: every batch shares
	// it with the one before.
	opts.CopyWorkers, opts.BatchSize, opts.MinBatch, opts.MaxBatch = 2, 250, 250, 250
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	res, err := phase3.CopyHoldingTurns(ctx, b.pool, opts, 30*time.Millisecond)
	if err != nil {
		t.Fatalf("copy: %v (%+v)", err, res)
	}
	if res.Batches < 10 || res.Overlapped != 0 {
		t.Errorf("copy = %+v: want at least 10 batches, none beside another", res)
	}
	b.checkAgainstGo(capturespine.DefaultJobMapping())
	b.verifyOK()
}
