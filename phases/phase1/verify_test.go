package phase1_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
	"github.com/spinecore/spine-go/sqlmigrations"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// verifyPool is a seeded Capture-Spine database of its own, with spine-go's
// migrations applied when migrate is set.
func verifyPool(t *testing.T, opts seed.Options, migrate bool) *pgxpool.Pool {
	t.Helper()
	url, _ := testsvc.NewSeededCaptureSpineDatabase(t, opts)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if migrate {
		if _, err := sqlmigrations.New(pool, sqlmigrations.Options{Logger: slog.New(slog.DiscardHandler)}).Up(context.Background(), sqlmigrations.Latest); err != nil {
			t.Fatalf("migrate up: %v", err)
		}
	}
	return pool
}

// statusCountsBySQL is what the database itself says: the counts Verify's
// scan must reproduce.
func statusCountsBySQL(t *testing.T, pool *pgxpool.Pool) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT status, count(*) FROM executions GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	var status string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error { counts[status] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return counts
}

func reportCounts(r phase1.VerifyReport) map[string]int64 {
	counts := map[string]int64{}
	for _, c := range r.ByStatus {
		counts[c.Status] = c.Rows
	}
	return counts
}

// A seeded database after the migrations holds only rows the ledger and
// Capture-Spine's view both accept; the report counts them as SQL does.
func TestVerifyPassesOnASeededMigratedDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const executions = 3000
	pool := verifyPool(t, seed.Options{Executions: executions, Jobs: -1, Seed: 11}, true)
	var progress []int64
	report, err := phase1.Verify(ctx, pool, phase1.VerifyOptions{Progress: func(done int64) { progress = append(progress, done) }})
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() || report.RowsFailed != 0 || len(report.Failures) != 0 {
		t.Errorf("seeded rows fail: %d, first %+v", report.RowsFailed, report.Failures)
	}
	if report.TotalRows != executions || report.RowsChecked != executions {
		t.Errorf("total %d, checked %d, want %d", report.TotalRows, report.RowsChecked, executions)
	}
	// Every status the seed wrote, in lifecycle order, counted as SQL counts it.
	sqlCounts := statusCountsBySQL(t, pool)
	var want []phase1.VerifyStatusCount
	for _, s := range core.Statuses {
		if sqlCounts[string(s)] == 0 {
			t.Errorf("seed wrote no %s row", s)
		}
		want = append(want, phase1.VerifyStatusCount{Status: string(s), Rows: sqlCounts[string(s)]})
	}
	if !slices.Equal(report.ByStatus, want) {
		t.Errorf("by status\n%v\nwant\n%v", report.ByStatus, want)
	}
	if !slices.Equal(progress, []int64{1000, 2000, 3000}) {
		t.Errorf("progress %v", progress)
	}

	// The JSON a script reads: snake_case keys, empty lists as [].
	b, err := json.Marshal(report)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(doc)); !slices.Equal(keys, []string{"by_status", "failures", "rows_checked", "rows_failed", "total_rows"}) {
		t.Errorf("JSON keys %v", keys)
	}
	if string(doc["failures"]) != "[]" || !strings.Contains(string(doc["by_status"]), `{"status":"pending","rows":`) {
		t.Errorf("JSON %s", b)
	}
	var text bytes.Buffer
	report.Write(&text)
	if !strings.Contains(text.String(), "OK") || !strings.Contains(text.String(), "dead_lettered") {
		t.Errorf("text report:\n%s", text.String())
	}
}

// Rows the Python side could write but no RunRecord can be: each is reported
// with its id and the column to blame, and every other row still counts.
func TestVerifyReportsEachCorruptRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const seeded = 200
	pool := verifyPool(t, seed.Options{Executions: seeded, Jobs: -1, Seed: 12}, true)
	type row struct {
		name, status, lane, triggerSource, params, tags string
		retryCount                                      int
	}
	valid := row{name: "rss_ingest", status: "completed", lane: "normal", triggerSource: "api", params: `{}`, tags: `{}`}
	cases := []struct {
		name   string
		change func(*row)
		column string
	}{
		{"status outside the vocabulary", func(r *row) { r.status = "paused" }, "status"},
		{"tags not an object", func(r *row) { r.tags = `[1]` }, "tags"},
		{"tags not strings", func(r *row) { r.tags = `{"k": 1}` }, "tags"},
		{"empty lane", func(r *row) { r.lane = "" }, "lane"},
		{"empty trigger_source", func(r *row) { r.triggerSource = "" }, "trigger_source"},
		{"empty pipeline_name", func(r *row) { r.name = "" }, "pipeline_name"},
		{"params JSON but not an object", func(r *row) { r.params = `[1]` }, "params"},
		{"negative retry_count", func(r *row) { r.retryCount = -1 }, "retry_count"},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		r := valid
		c.change(&r)
		ids[i] = core.NewRunID()
		if _, err := pool.Exec(ctx, `
			INSERT INTO executions (execution_id, pipeline_name, status, lane, trigger_source, params, tags, retry_count)
			VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)`,
			ids[i], r.name, r.status, r.lane, r.triggerSource, r.params, r.tags, r.retryCount); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}

	report, err := phase1.Verify(ctx, pool, phase1.VerifyOptions{BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	if report.OK() || report.RowsFailed != int64(len(cases)) || len(report.Failures) != len(cases) {
		t.Fatalf("OK %v, %d failed, %d listed; want %d: %+v", report.OK(), report.RowsFailed, len(report.Failures), len(cases), report.Failures)
	}
	if want := int64(seeded + len(cases)); report.RowsChecked != want || report.TotalRows != want {
		t.Errorf("checked %d of %d rows, want %d", report.RowsChecked, report.TotalRows, want)
	}
	if got, want := reportCounts(report), statusCountsBySQL(t, pool); !maps.Equal(got, want) {
		t.Errorf("by status %v, SQL says %v", got, want)
	}
	if last := report.ByStatus[len(report.ByStatus)-1]; last != (phase1.VerifyStatusCount{Status: "paused", Rows: 1}) {
		t.Errorf("unknown status not listed last: %v", report.ByStatus)
	}
	if !slices.IsSortedFunc(report.Failures, func(a, b phase1.VerifyFailure) int { return strings.Compare(a.ExecutionID, b.ExecutionID) }) {
		t.Errorf("failures not in id order")
	}
	failures := map[string]phase1.VerifyFailure{}
	for _, f := range report.Failures {
		failures[f.ExecutionID] = f
	}
	var text bytes.Buffer
	report.Write(&text)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, ok := failures[ids[i]]
			if !ok {
				t.Fatalf("row %s not reported", ids[i])
			}
			first := f.Problems[0]
			if first.Column != c.column || first.Reason == "" {
				t.Errorf("problems %+v, want first on column %s", f.Problems, c.column)
			}
			if !strings.Contains(text.String(), ids[i]) || !strings.Contains(text.String(), c.column+": ") {
				t.Errorf("text report lacks %s / %s", ids[i], c.column)
			}
		})
	}

	// With the list capped, the lowest ids are listed and every failure counted.
	capped, err := phase1.Verify(ctx, pool, phase1.VerifyOptions{MaxFailures: 3})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	var listed []string
	for _, f := range capped.Failures {
		listed = append(listed, f.ExecutionID)
	}
	if capped.RowsFailed != int64(len(cases)) || !slices.Equal(listed, ids[:3]) {
		t.Errorf("capped at 3: %d failed, listed %v, want %v", capped.RowsFailed, listed, ids[:3])
	}
}

func TestVerifyRefusesADatabaseWithoutPhase1(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"Capture-Spine database not migrated", func(t *testing.T) string {
			url, _ := testsvc.NewSeededCaptureSpineDatabase(t, seed.Options{Executions: 50, Jobs: -1, Seed: 13})
			return url
		}},
		{"empty database", func(t *testing.T) string { return testsvc.NewDatabase(t) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pool, err := pgxpool.New(context.Background(), c.url(t))
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			_, err = phase1.Verify(context.Background(), pool, phase1.VerifyOptions{})
			if !errors.Is(err, pgledger.ErrSchemaNotReady) || !strings.Contains(err.Error(), "spine-migrate phase1 apply --execute") {
				t.Errorf("Verify = %v; want ErrSchemaNotReady saying to run phase1 apply", err)
			}
		})
	}
}

// Keyset batches see every row exactly once, whether the last batch is
// full or not: with every row made to fail, the failure list is the table.
func TestVerifyPagesAcrossBatchesSeeingEachRowOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		executions   int // as seed.Options: negative means none
		wantRows     int64
		wantProgress []int64
	}{
		{"partial last batch", 100, 100, []int64{7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91, 98, 100}},
		{"full last batch", 98, 98, []int64{7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91, 98}},
		{"one row", 1, 1, []int64{1}},
		{"no rows", -1, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := verifyPool(t, seed.Options{Executions: c.executions, Jobs: -1, Seed: 14}, true)
			if _, err := pool.Exec(ctx, `UPDATE executions SET trigger_source = ''`); err != nil {
				t.Fatal(err)
			}
			rows, err := pool.Query(ctx, `SELECT execution_id::text FROM executions ORDER BY execution_id`)
			if err != nil {
				t.Fatal(err)
			}
			all, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			var progress []int64
			report, err := phase1.Verify(ctx, pool, phase1.VerifyOptions{BatchSize: 7, MaxFailures: 1000,
				Progress: func(done int64) { progress = append(progress, done) }})
			if err != nil {
				t.Fatal(err)
			}
			listed := make([]string, 0, len(report.Failures))
			for _, f := range report.Failures {
				listed = append(listed, f.ExecutionID)
			}
			if report.RowsChecked != c.wantRows || report.RowsFailed != c.wantRows || !slices.Equal(listed, all) {
				t.Errorf("checked %d, failed %d, listed %d ids (equal to the table: %v); want %d",
					report.RowsChecked, report.RowsFailed, len(listed), slices.Equal(listed, all), c.wantRows)
			}
			if report.OK() != (c.wantRows == 0) {
				t.Errorf("OK() = %v with %d failures", report.OK(), report.RowsFailed)
			}
			if !slices.Equal(progress, c.wantProgress) {
				t.Errorf("progress %v, want %v", progress, c.wantProgress)
			}
		})
	}
}
