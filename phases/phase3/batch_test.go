package phase3_test

import (
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/phases/phase3"
)

// Executions the trigger wrote for jobs the copy had still to pass (jobs
// with a Celery task id and without one) are found by the batches
// themselves: the copy keeps them, writes every other job's, and never
// needs its ON CONFLICT fallback. Jobs sharing a task id that no native
// execution carries, in one batch and across batches, each get their own
// execution, whichever of them is written first.
func TestCopyKeepsWhatTheTriggerWrote(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Task ids no native carries, shared by jobs of one batch (10, 11) and
	// of batches far apart (20, 2500), set before the trigger exists: the
	// later job meets the execution the earlier one's batch wrote.
	b.exec(`UPDATE jobs SET celery_task_id = 'shared-a' WHERE id IN (10, 11)`)
	b.exec(`UPDATE jobs SET celery_task_id = 'shared-b' WHERE id IN (20, 2500)`)
	b.exec(`UPDATE jobs SET celery_task_id = 'shared-c' WHERE id = 30`)
	if err := phase3.SetupOnly(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	// Writes to jobs the copy has still to pass, through the trigger: with
	// a task id, without one, and one taking the task id of an earlier job
	// (whose batch then meets this job's execution).
	b.exec(`UPDATE jobs SET attempts = attempts + 1 WHERE id % 97 = 0 AND celery_task_id IS NOT NULL`)
	b.exec(`UPDATE jobs SET attempts = attempts + 1, celery_task_id = NULL WHERE id IN (1500, 1501, 2999)`)
	b.exec(`UPDATE jobs SET celery_task_id = 'shared-c' WHERE id = 2600`)
	before := b.count(`SELECT count(*) FROM executions WHERE metadata ? 'legacy_job_type'`)
	if before < 20 {
		t.Fatalf("the trigger wrote %d executions: the test would prove little", before)
	}

	res := b.copy()
	if res.OnConflict != 0 {
		t.Errorf("%d batches fell back to ON CONFLICT: a batch missed an execution the trigger wrote", res.OnConflict)
	}
	o := b.checkAgainstGo(capturespine.DefaultJobMapping())
	if res.RowsScanned != int64(o.Jobs) || res.RowsLinked != int64(o.Linked) || res.RowsCopied >= int64(o.Migrated) {
		t.Errorf("copy counted %d scanned, %d copied, %d linked; the oracle %s, %d written by the trigger before",
			res.RowsScanned, res.RowsCopied, res.RowsLinked, o, before)
	}
	b.verifyOK()
}

// An execution in the way that the batch could not have expected (written
// behind phase 3's back, under another Celery task id than its job's) makes
// the fast INSERT fail on the primary key; the batch runs again with ON
// CONFLICT DO NOTHING and keeps that execution, the copy goes on, later
// batches are fast again, and verify then repair set the job right.
func TestCopyFallsBackToOnConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := phase3.SetupOnly(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	var job int64
	if err := b.pool.QueryRow(b.ctx, `SELECT id FROM jobs WHERE id > 1000 AND celery_task_id IS NOT NULL
		AND job_type = 'backup' AND status = 'success' ORDER BY id LIMIT 1`).Scan(&job); err != nil {
		t.Fatal(err)
	}
	b.exec("UPDATE jobs SET attempts = attempts WHERE id = $1", job) // the trigger writes its execution
	id := capturespine.JobExecutionID(job)
	b.exec("UPDATE executions SET backend_task_id = 'somewhere-else' WHERE execution_id = $1", id)

	res := b.copy()
	if res.OnConflict != 1 || res.Retries < 1 {
		t.Errorf("copy = %+v: want one batch run again with ON CONFLICT", res)
	}
	if n := b.count("SELECT count(*) FROM executions WHERE execution_id = $1 AND backend_task_id = 'somewhere-else'", id); n != 1 {
		t.Errorf("the execution in the way was not kept as it was")
	}
	r, err := phase3.Verify(b.ctx, b.pool, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Mismatches) != 1 || r.Mismatches[0].FirstID > job || r.Mismatches[0].LastID < job || r.Unmapped != 0 {
		t.Fatalf("verify = %+v: want one mismatch, around job %d", r, job)
	}
	if _, err := phase3.Repair(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	b.checkAgainstGo(capturespine.DefaultJobMapping())
	b.verifyOK()
}
