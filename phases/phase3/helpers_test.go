package phase3_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/capturespinetest"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
	"github.com/spinecore/spine-go/phases/phase3"
)

// seeded is the database most tests start from: every job status and type,
// NULL payloads, unicode, and jobs sharing a Celery task id with an execution.
var seeded = seed.Options{Executions: 600, Jobs: 3000, Seed: 23}

type bundle struct {
	t    *testing.T
	ctx  context.Context
	url  string
	pool *pgxpool.Pool
	sum  seed.Summary
	opts phase3.Options
}

// setup is a seeded Capture-Spine database with phase 1 applied, as phase 3
// expects it.
func setup(t *testing.T) *bundle {
	t.Helper()
	url, sum := testsvc.NewSeededCaptureSpineDatabase(t, seeded)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	b := &bundle{t: t, ctx: context.Background(), url: url, pool: pool, sum: sum,
		opts: phase3.Options{Logger: slog.New(slog.DiscardHandler), BatchSize: 300}}
	if _, err := phase1.Apply(b.ctx, pool, phase1.Options{Logger: slog.New(slog.DiscardHandler), BatchSize: 5000}); err != nil {
		t.Fatal(err)
	}
	return b
}

// spreadIDs gives the seeded jobs times copies of themselves (same values,
// Celery task ids included, so more of them share one), then multiplies
// every id by spread, before phase 3 has touched jobs: a table spanning
// many of the copy's id buckets, so that its batches run side by side.
func (b *bundle) spreadIDs(times int, spread int64) {
	b.t.Helper()
	b.exec(`INSERT INTO jobs (job_type, status, celery_task_id, user_id, queue, payload, result, error_message, progress, attempts, created_at, started_at, finished_at, updated_at)
		SELECT job_type, status, celery_task_id, user_id, queue, payload, result, error_message, progress, attempts, created_at, started_at, finished_at, updated_at
		FROM jobs CROSS JOIN generate_series(1, $1) WHERE id < 1000000 ORDER BY id`, times)
	b.exec(`UPDATE jobs SET id = -id WHERE id > 0 AND id < 1000000`) // two steps: no id meets one it will become
	b.exec(`UPDATE jobs SET id = -id * $1 WHERE id < 0`, spread)
	b.exec(`SELECT setval(pg_get_serial_sequence('jobs', 'id'), (SELECT max(id) FROM jobs WHERE id < 1000000 * $1::bigint))`, spread)
}

func (b *bundle) exec(sql string, args ...any) {
	b.t.Helper()
	if _, err := b.pool.Exec(b.ctx, sql, args...); err != nil {
		b.t.Fatalf("%s: %v", sql, err)
	}
}

func (b *bundle) count(sql string, args ...any) int64 {
	b.t.Helper()
	var n int64
	if err := b.pool.QueryRow(b.ctx, sql, args...).Scan(&n); err != nil {
		b.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (b *bundle) copy() phase3.CopyResult {
	b.t.Helper()
	res, err := phase3.Copy(b.ctx, b.pool, b.opts)
	if err != nil {
		b.t.Fatalf("copy: %v (%+v)", err, res)
	}
	return res
}

func (b *bundle) verifyOK() phase3.VerifyReport {
	b.t.Helper()
	r, err := phase3.Verify(b.ctx, b.pool, b.opts)
	if err != nil {
		b.t.Fatalf("verify: %v", err)
	}
	if !r.OK() {
		var w strings.Builder
		r.Write(&w)
		b.t.Fatalf("verify is not OK:\n%s", w.String())
	}
	return r
}

// awkwardJobs are rows beyond the seed's: non-object payloads, unicode and
// quotes everywhere, a JSON null result, an empty error, extreme values,
// ids far beyond the sequence (gaps of millions and of 2^40).
const awkwardJobs = `INSERT INTO jobs (id, job_type, status, celery_task_id, user_id, queue, payload, result,
	error_message, progress, attempts, created_at, started_at, finished_at, updated_at) VALUES
	(10000000, 'backup', 'failure', '', NULL, 'o''brien "q"', '[1, 2, {"a": null}]', 'null', '', 0, 2147483647,
	 '2025-01-01 00:00:00.000001+00', NULL, '2025-01-01 00:00:00+00', '2025-01-02 03:04:05.1+02'),
	(10000001, 'recommendations', 'revoked', 'täsk-ü', '00000000-0000-0000-0000-000000000000', 'backfill', '"just a string"',
	 '{"emoji": "📈", "big": 123456789012345678901234567890}', 'Zürich – 東京\nline 2', 100, 0,
	 '1999-12-31 23:59:59.999999+00', '2000-01-01 00:00:00+00', NULL, '2000-01-01 00:00:00+00'),
	(1099511627776, 'sync_environments', 'retry', NULL, NULL, NULL, '{}', NULL, NULL, NULL, 3,
	 '2025-06-01 12:00:00+00', NULL, NULL, '2025-06-01 12:00:00.5+00'),
	(1099511627777, 'copilot_sync', 'success', 'big-payload', NULL, 'copilot',
	 (SELECT jsonb_build_object('blob', repeat('x', 1048576), 'n', 9007199254740993)), '{"ok": true}', NULL, 100, 1,
	 '2025-06-01 12:00:00+00', '2025-06-01 12:00:01+00', '2025-06-01 12:00:02+00', '2025-06-01 12:00:03+00')`

// oracle is the Go side of every correctness test: it reads the final jobs
// table and maps it with the Go adapter and the link rule, then demands
// that executions hold exactly that, row for row:
//   - a job sharing its Celery task id with native executions (ones phase
//     3 did not write) has no execution, and each of those lists its id in
//     metadata.legacy_job_ids;
//   - a job the mapping does not know has no execution and a reject row;
//   - every other job has exactly the execution m.Execution gives;
//   - nothing else: no execution for a job that is gone, no stray link.
type oracle struct {
	Jobs, Migrated, Linked, Rejected int
}

func (b *bundle) checkAgainstGo(m capturespine.JobMapping) oracle {
	b.t.Helper()
	t := b.t
	rows, err := b.pool.Query(b.ctx, "SELECT "+capturespinetest.JobColumns+" FROM jobs ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := pgx.CollectRows(rows, capturespinetest.ScanJob)
	if err != nil {
		t.Fatal(err)
	}
	rows, err = b.pool.Query(b.ctx, "SELECT "+capturespinetest.ExecutionColumns+" FROM executions")
	if err != nil {
		t.Fatal(err)
	}
	execs, err := pgx.CollectRows(rows, capturespinetest.ScanExecution)
	if err != nil {
		t.Fatal(err)
	}
	rows, err = b.pool.Query(b.ctx, "SELECT job_id FROM spine_phase3_rejects")
	if err != nil {
		t.Fatal(err)
	}
	rejects, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}

	natives := map[string][]string{} // task id -> native execution ids
	migrated := map[string]capturespine.Execution{}
	links := map[string][]int64{} // native execution -> legacy_job_ids
	for _, e := range execs {
		if _, ok := e.Metadata["legacy_job_type"]; ok {
			migrated[e.ExecutionID] = e
			continue
		}
		if e.BackendTaskID != nil {
			natives[*e.BackendTaskID] = append(natives[*e.BackendTaskID], e.ExecutionID)
		}
		if ids, ok := e.Metadata["legacy_job_ids"].([]any); ok {
			for _, id := range ids {
				n, err := id.(json.Number).Int64()
				if err != nil {
					t.Fatalf("execution %s: legacy_job_ids holds %v", e.ExecutionID, id)
				}
				links[e.ExecutionID] = append(links[e.ExecutionID], n)
			}
			if len(ids) == 0 || !slices.IsSorted(links[e.ExecutionID]) {
				t.Errorf("execution %s: legacy_job_ids %v is empty or unsorted", e.ExecutionID, ids)
			}
		}
	}

	var o oracle
	wantLinks := map[string][]int64{}
	wantRejects := map[int64]bool{}
	seen := map[string]bool{}
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, j := range jobs {
		o.Jobs++
		id := capturespine.JobExecutionID(j.ID)
		if j.CeleryTaskID != nil && len(natives[*j.CeleryTaskID]) > 0 {
			o.Linked++
			for _, n := range natives[*j.CeleryTaskID] {
				wantLinks[n] = append(wantLinks[n], j.ID)
			}
			if _, ok := migrated[id]; ok {
				fail("job %d is linked to %v and also has execution %s: duplicated", j.ID, natives[*j.CeleryTaskID], id)
			}
			continue
		}
		want, err := m.Execution(j)
		if errors.Is(err, capturespine.ErrUnknownValue) {
			o.Rejected++
			wantRejects[j.ID] = true
			if _, ok := migrated[id]; ok {
				fail("unmapped job %d has execution %s", j.ID, id)
			}
			continue
		}
		if err != nil {
			t.Fatalf("job %d: %v", j.ID, err)
		}
		o.Migrated++
		seen[id] = true
		got, ok := migrated[id]
		if !ok {
			fail("job %d (%s/%s): execution %s missing", j.ID, j.JobType, j.Status, id)
			continue
		}
		if want, err = capturespinetest.NormaliseJSON(want); err != nil {
			t.Fatal(err)
		}
		if !capturespinetest.SameRow(want, got) {
			fail("job %d: execution differs from the Go mapping\nwant %#v\ngot  %#v", j.ID, want, got)
		}
	}
	for id, e := range migrated {
		if !seen[id] {
			fail("execution %s (legacy job %v) stands for no job", id, e.Metadata["legacy_job_id"])
		}
	}
	for n := range wantLinks {
		slices.Sort(wantLinks[n])
	}
	if !reflect.DeepEqual(links, wantLinks) && !(len(links) == 0 && len(wantLinks) == 0) {
		fail("links differ:\nwant %v\ngot  %v", wantLinks, links)
	}
	gotRejects := map[int64]bool{}
	for _, r := range rejects {
		gotRejects[r] = true
	}
	if !reflect.DeepEqual(gotRejects, wantRejects) && !(len(gotRejects) == 0 && len(wantRejects) == 0) {
		fail("rejects: want %v, got %v", wantRejects, gotRejects)
	}
	if bad > 10 {
		t.Errorf("... %d differences in all", bad)
	}
	return o
}

func (o oracle) String() string {
	return fmt.Sprintf("%d jobs: %d migrated, %d linked, %d rejected", o.Jobs, o.Migrated, o.Linked, o.Rejected)
}
