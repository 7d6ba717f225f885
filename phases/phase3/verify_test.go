package phase3_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/phases/phase3"
)

// Verify names every range that differs, and the jobs in it, whatever broke
// it: a lost execution, a tampered one, one left for a job deleted behind
// the trigger's back, a lost link, and a native execution that gained a
// job's Celery task id after the job was copied. Repair re-copies exactly
// those ranges and verify passes again.
func TestVerifyNamesWhatDiffersAndRepairFixesIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.opts.ChunkIDs = 500
	b.copy()
	b.verifyOK()

	want := b.damage()
	for _, v := range []func() (phase3.VerifyReport, error){
		func() (phase3.VerifyReport, error) { return phase3.Verify(b.ctx, b.pool, b.opts) },
		func() (phase3.VerifyReport, error) { return phase3.VerifyWithTextHash(b.ctx, b.pool, b.opts) },
	} {
		r, err := v()
		if err != nil || r.OK() {
			t.Fatalf("verify after the damage: %+v, %v", r, err)
		}
		for _, m := range r.Mismatches {
			if m.LastID-m.FirstID+1 != 500 && m.FirstID != 1000 {
				t.Errorf("range %d-%d is not one chunk", m.FirstID, m.LastID)
			}
		}
		if got := differing(r); !reflect.DeepEqual(got, want) {
			t.Errorf("differing jobs = %v, want %v", got, want)
		}
		var w bytes.Buffer
		r.Write(&w)
		if !strings.Contains(w.String(), "MISMATCH ids 1000-1999: 1000 rows expected, 999 found (jobs: 1200 differs, 1500 missing, 1701 differs)") || !strings.Contains(w.String(), "--repair") {
			t.Errorf("report:\n%s", w.String())
		}
	}

	res, err := phase3.Repair(b.ctx, b.pool, b.opts)
	if err != nil || !res.After.OK() || len(res.Repaired) != len(res.Before.Mismatches) {
		t.Fatalf("repair = %+v, %v", res, err)
	}
	if c := res.Changed; c.Upserted != 2 || c.Dropped != 2 || c.Relinked != 2 {
		t.Errorf("repair changed %+v: want 2 written (1500, 1701), 2 dropped (1200 now linked, 2600 gone), 2 relinked", c)
	}
	b.checkAgainstGo(capturespine.DefaultJobMapping())
	// Nothing left to do.
	res, err = phase3.Repair(b.ctx, b.pool, b.opts)
	if err != nil || len(res.Repaired) != 0 {
		t.Errorf("second repair = %+v, %v", res, err)
	}
}

// damage breaks a copied seed the ways verify must notice: a lost
// execution (job 1500), a tampered one (1701), one left for a job deleted
// behind the trigger's back (2600), a lost link (a native execution's jobs
// below 1000), and a native execution that gained a job's Celery task id
// after the job was copied (1200). It returns the job ids verify must name,
// with the problem it must name for each.
func (b *bundle) damage() map[string]string {
	b.t.Helper()
	var linkedJobs []int64
	var linkedExec string
	if err := b.pool.QueryRow(b.ctx, `SELECT ARRAY(SELECT jsonb_array_elements_text(metadata -> 'legacy_job_ids')::bigint), execution_id::text
		FROM executions WHERE metadata ? 'legacy_job_ids' AND (metadata -> 'legacy_job_ids' ->> 0)::bigint BETWEEN 1 AND 999
		ORDER BY 2 LIMIT 1`).Scan(&linkedJobs, &linkedExec); err != nil {
		b.t.Fatal(err)
	}
	b.exec("DELETE FROM executions WHERE execution_id = $1", xid(1500))
	b.exec("UPDATE executions SET pipeline_name = 'tampered' WHERE execution_id = $1", xid(1701))
	b.deleteBehindTheTrigger(2600)
	b.exec("UPDATE executions SET metadata = metadata - 'legacy_job_ids' WHERE execution_id = $1", linkedExec)
	b.exec(`UPDATE executions SET backend_task_id = (SELECT celery_task_id FROM jobs WHERE id = 1200)
		WHERE execution_id = (SELECT execution_id FROM executions WHERE backend_task_id IS NULL AND NOT (metadata ? 'legacy_job_type') ORDER BY 1 LIMIT 1)`)

	want := map[string]string{"1200": "differs", "1500": "missing", "1701": "differs", "2600": "unexpected"}
	for _, id := range linkedJobs {
		want[fmt.Sprint(id)] = "missing"
	}
	return want
}

// deleteBehindTheTrigger deletes a job with the trigger off, leaving its
// execution standing.
func (b *bundle) deleteBehindTheTrigger(id int64) {
	b.t.Helper()
	b.exec("ALTER TABLE jobs DISABLE TRIGGER spine_phase3_jobs_sync")
	b.exec("DELETE FROM jobs WHERE id = $1", id)
	b.exec("ALTER TABLE jobs ENABLE TRIGGER spine_phase3_jobs_sync")
}

// differing is the job ids a report names, with the problem of each.
func differing(r phase3.VerifyReport) map[string]string {
	got := map[string]string{}
	for _, m := range r.Mismatches {
		for _, j := range m.Jobs {
			got[fmt.Sprint(j.JobID)] = j.Problem
		}
	}
	return got
}

func xid(id int64) string { return capturespine.JobExecutionID(id) }

// A job type or status the mapping does not know, appearing while phase 3
// runs, never fails the application's write: the job is listed as a
// reject, verify says so, and a copy with a mapping file that knows it maps
// it. A mapping file that changes what was already applied is refused.
func TestUnknownValuesAfterThePlan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := phase3.SetupOnly(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	b.exec("UPDATE jobs SET status = 'zombie' WHERE id IN (3, 2999)") // one the copy will meet, one the trigger
	b.exec("INSERT INTO jobs (job_type, status) VALUES ('reindex', 'success')")
	// The plan would now refuse; a copy already under way goes on.
	if _, err := phase3.Verify(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	b.opts.Mapping = nil
	var bypass = b.opts
	bypass.Mapping = ptr(capturespine.DefaultJobMapping())
	res, err := phase3.Copy(b.ctx, b.pool, bypass)
	if !errors.Is(err, phase3.ErrRefused) {
		t.Fatalf("copy with unknown values = %+v, %v", res, err)
	}

	m := capturespine.DefaultJobMapping()
	m.Statuses["zombie"] = "failed"
	b.opts.Mapping = &m
	// Only "reindex" left unmapped: the plan still refuses.
	if _, err := phase3.Copy(b.ctx, b.pool, b.opts); !errors.Is(err, phase3.ErrRefused) || !strings.Contains(err.Error(), "reindex") {
		t.Fatalf("copy = %v", err)
	}
	m.Pipelines["reindex"] = "search_reindex"
	res = b.copy()
	if res.Rejects != 0 {
		t.Errorf("copy = %+v", res)
	}
	b.checkAgainstGo(m)
	b.verifyOK()

	// A mapping that re-maps what was applied is refused.
	changed := capturespine.DefaultJobMapping()
	changed.Statuses["zombie"], changed.Pipelines["reindex"] = "cancelled", "search_reindex"
	b.opts.Mapping = &changed
	if _, err := phase3.Copy(b.ctx, b.pool, b.opts); !errors.Is(err, phase3.ErrMappingChanged) || !strings.Contains(err.Error(), `statuses["zombie"]`) {
		t.Errorf("copy with a changed mapping = %v", err)
	}

	// After the copy, a new unknown value written by the application: the
	// write succeeds, the job is a reject, verify is not OK until mapped.
	b.exec("INSERT INTO jobs (job_type, status) VALUES ('backup', 'exploded')")
	r, err := phase3.Verify(b.ctx, b.pool, phase3.Options{})
	if err != nil || r.OK() || r.Unmapped != 1 || len(r.Mismatches) != 0 || !strings.Contains(r.Err().Error(), "--job-mapping FILE") {
		t.Errorf("verify with a reject = %+v, %v", r, err)
	}
	m.Statuses["exploded"] = "failed"
	b.opts.Mapping = &m
	if res := b.copy(); res.RejectsRemapped != 1 || !res.AlreadyDone {
		t.Errorf("copy mapping the reject = %+v", res)
	}
	b.verifyOK()
	b.checkAgainstGo(m)
}

func ptr[T any](v T) *T { return &v }
