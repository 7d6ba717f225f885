package capturespine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/internal/capturespinetest"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/sqlmigrations"
)

func TestDefaultJobMappingCoversTheTrackersVocabulary(t *testing.T) {
	t.Parallel()
	m := capturespine.DefaultJobMapping()
	want := map[string]core.RunStatus{
		"pending": "pending", "queued": "queued", "started": "running", "running": "running",
		"retry": "queued", "success": "completed", "failure": "failed", "error": "failed",
		"cancelled": "cancelled", "revoked": "cancelled",
	}
	for _, legacy := range seed.JobStatuses {
		got, err := m.Status(legacy)
		if err != nil || got != want[legacy] {
			t.Errorf("Status(%q) = %q, %v; want %q", legacy, got, err, want[legacy])
		}
	}
	for _, jobType := range seed.JobTypes {
		if _, err := m.Pipeline(jobType); err != nil {
			t.Errorf("Pipeline(%q): %v", jobType, err)
		}
	}
}

func TestUnknownJobValuesNameTheValueAndTheFix(t *testing.T) {
	t.Parallel()
	m := capturespine.DefaultJobMapping()
	job := capturespine.Job{ID: 7, JobType: "backup", Status: "zombie", Attempts: 1, CreatedAt: time.Now()}
	_, err := m.Execution(job)
	var unknown *capturespine.UnknownValueError
	if !errors.As(err, &unknown) || unknown.Column != "jobs.status" || unknown.Value != "zombie" ||
		!strings.Contains(err.Error(), `"statuses"`) || !strings.Contains(err.Error(), "job 7") {
		t.Fatalf("unknown status: %v", err)
	}
	job.Status, job.JobType = "success", "reindex"
	_, err = m.Execution(job)
	if !errors.As(err, &unknown) || unknown.Column != "jobs.job_type" || unknown.Value != "reindex" || !strings.Contains(err.Error(), `"pipelines"`) {
		t.Fatalf("unknown job type: %v", err)
	}

	// The fix the error names works.
	fixed, err := capturespine.LoadJobMapping(strings.NewReader(`{"statuses": {"zombie": "failed"}, "pipelines": {"reindex": "search_reindex"}}`))
	if err != nil {
		t.Fatal(err)
	}
	job.Status = "zombie"
	e, err := fixed.Execution(job)
	if err != nil || e.Status != capturespine.ExecutionFailed || e.PipelineName != "search_reindex" {
		t.Fatalf("with the mapping file: %+v, %v", e, err)
	}
	if s, _ := fixed.Status("success"); s != core.StatusCompleted {
		t.Errorf("a mapping file must keep the defaults it does not name")
	}
}

func TestLoadJobMappingRefusesBadFiles(t *testing.T) {
	t.Parallel()
	for _, file := range []string{
		`{"statuses": {"x": "done"}}`,
		`{"pipelines": {"x": ""}}`,
		`{"statusses": {}}`,
		`{"statuses": []}`,
		`not json`,
	} {
		if _, err := capturespine.LoadJobMapping(strings.NewReader(file)); err == nil {
			t.Errorf("LoadJobMapping(%s) accepted it", file)
		}
	}
}

func TestJobExecutionIDIsAStableVersion3UUID(t *testing.T) {
	t.Parallel()
	seen := map[string]int64{}
	for _, id := range []int64{0, 1, 2, 10, 999_999, math.MaxInt64, -1} {
		s := capturespine.JobExecutionID(id)
		u := uuid.MustParse(s)
		if u.Version() != 3 || u.Variant() != uuid.RFC4122 || s != capturespine.JobExecutionID(id) {
			t.Errorf("JobExecutionID(%d) = %s: version %d variant %v", id, s, u.Version(), u.Variant())
		}
		if other, dup := seen[s]; dup {
			t.Errorf("jobs %d and %d share %s", id, other, s)
		}
		seen[s] = id
	}
}

func TestJobParamsRule(t *testing.T) {
	t.Parallel()
	m := capturespine.DefaultJobMapping()
	cases := []struct{ payload, want string }{
		{"", `{}`},
		{`{"args": [1], "kwargs": {"a": 9007199254740993}}`, `{"args":[1],"kwargs":{"a":9007199254740993}}`},
		{`[1, 2]`, `{"payload":[1,2]}`},
		{`"text"`, `{"payload":"text"}`},
		{`null`, `{"payload":null}`},
	}
	for _, c := range cases {
		job := capturespine.Job{ID: 1, JobType: "backup", Status: "pending", CreatedAt: time.Now()}
		if c.payload != "" {
			job.Payload = json.RawMessage(c.payload)
		}
		e, err := m.Execution(job)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(e.Params); string(got) != c.want {
			t.Errorf("payload %s → params %s, want %s", c.payload, got, c.want)
		}
	}
}

// pgDB is a Capture-Spine database with spine-go's migrations applied.
func pgDB(t *testing.T, opts *seed.Options) *pgxpool.Pool {
	t.Helper()
	var url string
	if opts != nil {
		url, _ = testsvc.NewSeededCaptureSpineDatabase(t, *opts)
	} else {
		url = testsvc.NewCaptureSpineDatabase(t)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := sqlmigrations.New(pool, sqlmigrations.Options{Logger: slog.New(slog.DiscardHandler)}).Up(context.Background(), sqlmigrations.Latest); err != nil {
		t.Fatal(err)
	}
	return pool
}

func TestJobExecutionIDSQLEqualsGo(t *testing.T) {
	t.Parallel()
	pool := pgDB(t, nil)
	ids := []int64{0, 1, 2, 9, 10, 99, 100, 123456789, math.MaxInt64, math.MinInt64, -1}
	for i := range int64(2000) {
		ids = append(ids, i*7919+3)
	}
	// The whole expression, and the digest computed once then made a uuid.
	rows, err := pool.Query(context.Background(),
		"SELECT id, "+capturespine.JobExecutionIDSQL("id")+"::text, "+capturespine.JobExecutionIDFromDigestSQL("d.b")+"::text "+
			"FROM unnest($1::bigint[]) AS id CROSS JOIN LATERAL (SELECT "+capturespine.JobIDDigestSQL("id")+" AS b OFFSET 0) AS d", ids)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID               int64
		UUID, FromDigest string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil || len(got) != len(ids) {
		t.Fatalf("compared %d of %d ids: %v", len(got), len(ids), err)
	}
	for _, p := range got {
		if want := capturespine.JobExecutionID(p.ID); p.UUID != want || p.FromDigest != want {
			t.Errorf("job %d: SQL %s, from the digest %s, Go %s", p.ID, p.UUID, p.FromDigest, want)
		}
	}
}

func TestPriorityForLaneSQLEqualsGo(t *testing.T) {
	t.Parallel()
	pool := pgDB(t, nil)
	lanes := append([]string{"default", "imports", "", "NORMAL", "o'brien"}, capturespine.Lanes...)
	for _, lane := range lanes {
		var got string
		if err := pool.QueryRow(context.Background(), "SELECT "+capturespine.PriorityForLaneSQL("$1::text"), lane).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := capturespine.PriorityForLane(lane); got != string(want) {
			t.Errorf("lane %q: SQL %s, Go %s", lane, got, want)
		}
	}
}

// awkwardJobs are rows the seed does not write: non-object payloads, unicode
// and quotes everywhere, a JSON null result, an empty error, extreme values.
var awkwardJobs = `INSERT INTO jobs (job_type, status, celery_task_id, user_id, queue, payload, result,
	error_message, progress, attempts, created_at, started_at, finished_at, updated_at) VALUES
	('backup', 'failure', '', NULL, 'o''brien "q"', '[1, 2, {"a": null}]', 'null', '', 0, 2147483647,
	 '2025-01-01 00:00:00.000001+00', NULL, '2025-01-01 00:00:00+00', '2025-01-02 03:04:05.1+02'),
	('recommendations', 'revoked', 'täsk-ü', '00000000-0000-0000-0000-000000000000', 'backfill', '"just a string"',
	 '{"emoji": "📈", "big": 123456789012345678901234567890}', 'Zürich – 東京\nline 2', 100, 0,
	 '1999-12-31 23:59:59.999999+00', '2000-01-01 00:00:00+00', NULL, '2000-01-01 00:00:00+00'),
	('sync_environments', 'retry', NULL, NULL, NULL, '{}', NULL, NULL, NULL, 3,
	 '2025-06-01 12:00:00+00', NULL, NULL, '2025-06-01 12:00:00.5+00')`

func TestJobMappingSQLEqualsGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgDB(t, &seed.Options{Executions: 200, Jobs: 3000, Seed: 7})
	if _, err := pool.Exec(ctx, awkwardJobs); err != nil {
		t.Fatal(err)
	}
	m := capturespine.DefaultJobMapping()
	q, err := m.SQL("j", 1)
	if err != nil {
		t.Fatal(err)
	}

	rows, err := pool.Query(ctx, "SELECT "+capturespinetest.JobColumns+" FROM jobs ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := pgx.CollectRows(rows, capturespinetest.ScanJob)
	if err != nil {
		t.Fatal(err)
	}
	var want []capturespine.Execution
	for _, j := range jobs {
		e, err := m.Execution(j)
		if err != nil {
			t.Fatal(err)
		}
		if e, err = capturespinetest.NormaliseJSON(e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}

	// The same rows mapped by Postgres, then inserted into executions: the
	// column list and types must be ones the real table accepts.
	insert := fmt.Sprintf("INSERT INTO executions (%s) SELECT %s FROM jobs AS j ORDER BY j.id",
		strings.Join(q.Columns, ", "), q.Select)
	if _, err := pool.Exec(ctx, insert, q.Args...); err != nil {
		t.Fatalf("%v\n%s", err, insert)
	}
	rows, err = pool.Query(ctx, "SELECT "+capturespinetest.ExecutionColumns+" FROM executions WHERE execution_id = ANY($1::uuid[])", ids(want))
	if err != nil {
		t.Fatal(err)
	}
	mapped, err := pgx.CollectRows(rows, capturespinetest.ScanExecution)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]capturespine.Execution{}
	for _, e := range mapped {
		got[e.ExecutionID] = e
	}
	if len(got) != len(want) || len(want) != 3003 {
		t.Fatalf("SQL mapped %d jobs, Go %d, want 3003", len(got), len(want))
	}
	for _, w := range want {
		sameRow(t, w, got[w.ExecutionID])
	}
}

// The metadata as text, built by concatenation, is what jsonb prints for
// the metadata the mapping builds, for every seeded and awkward job and for
// jobs whose optional fields are all NULL.
func TestJobMetadataTextSQLEqualsTheJSONB(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgDB(t, &seed.Options{Executions: 20, Jobs: 2000, Seed: 11})
	if _, err := pool.Exec(ctx, awkwardJobs); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE jobs SET user_id = NULL, progress = NULL WHERE id % 7 = 0`); err != nil {
		t.Fatal(err)
	}
	q, err := capturespine.DefaultJobMapping().SQL("j", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(q.Select, q.Metadata) {
		t.Fatalf("Metadata is not the expression in Select: %s", q.Metadata)
	}
	var n, differ int64
	var example *string
	err = pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE t IS DISTINCT FROM b::text), min(t || ' vs ' || b::text) FILTER (WHERE t IS DISTINCT FROM b::text)
		FROM (SELECT %s AS t, %s AS b FROM jobs AS j) AS x`, q.MetadataText, q.Metadata)).Scan(&n, &differ, &example)
	if err != nil {
		t.Fatal(err)
	}
	if n < 2003 || differ != 0 {
		t.Fatalf("%d of %d jobs differ, e.g. %v", differ, n, example)
	}
}

func ids(es []capturespine.Execution) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ExecutionID
	}
	return out
}
