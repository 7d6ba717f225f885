package seed_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// coverage is large enough to show the weighted draws as well as the coverage prefix.
var coverage = seed.Options{Executions: 2000, Jobs: 800, Seed: 42}

func TestSchemaSQLFindsTheFixtureFromAPackageDirectory(t *testing.T) {
	t.Parallel()
	sql, err := seed.SchemaSQL()
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"executions", "execution_events", "jobs"} {
		if !strings.Contains(sql, "CREATE TABLE "+table+" (") {
			t.Errorf("schema lacks table %s", table)
		}
	}
}

func TestSchemaSQLExplainsWhereItLooked(t *testing.T) {
	// Not parallel: changes the environment and the working directory.
	t.Run("SPINE_TESTDATA without the fixture", func(t *testing.T) {
		t.Setenv("SPINE_TESTDATA", t.TempDir())
		if _, err := seed.SchemaSQL(); !errors.Is(err, seed.ErrSchemaNotFound) {
			t.Errorf("err = %v, want ErrSchemaNotFound", err)
		}
	})
	t.Run("outside the repository", func(t *testing.T) {
		t.Setenv("SPINE_TESTDATA", "")
		t.Chdir(t.TempDir())
		_, err := seed.SchemaSQL()
		if !errors.Is(err, seed.ErrSchemaNotFound) || !strings.Contains(err.Error(), "SPINE_TESTDATA") {
			t.Errorf("err = %v, want ErrSchemaNotFound naming SPINE_TESTDATA", err)
		}
	})
}

func TestCaptureSpineCoversEveryVocabularyValue(t *testing.T) {
	t.Parallel()
	url, sum := testsvc.NewSeededCaptureSpineDatabase(t, coverage)
	db := connect(t, url)

	for _, tc := range []struct {
		query   string
		want    []string
		summary map[string]int
	}{
		{"SELECT status, count(*) FROM executions GROUP BY 1", seed.ExecutionStatuses, sum.ExecutionsByStatus},
		{"SELECT lane, count(*) FROM executions GROUP BY 1", seed.Lanes, sum.ExecutionsByLane},
		{"SELECT trigger_source, count(*) FROM executions GROUP BY 1", seed.TriggerSources, sum.ExecutionsByTrigger},
		{"SELECT event_type, count(*) FROM execution_events GROUP BY 1", seed.EventTypes, sum.EventsByType},
		{"SELECT job_type, count(*) FROM jobs GROUP BY 1", seed.JobTypes, sum.JobsByType},
		{"SELECT status, count(*) FROM jobs GROUP BY 1", seed.JobStatuses, sum.JobsByStatus},
	} {
		got := countsBy(t, db, tc.query)
		if !reflect.DeepEqual(got, tc.summary) {
			t.Errorf("%s\n got %v\nsummary %v", tc.query, got, tc.summary)
		}
		for _, v := range tc.want {
			if got[v] == 0 {
				t.Errorf("%s: no rows for %q", tc.query, v)
			}
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: values %v beyond the vocabulary %v", tc.query, got, tc.want)
		}
	}

	// Every nullable column holds NULLs and values, and the counts match the summary.
	for table, nulls := range map[string]map[string]int{"executions": sum.ExecutionNulls, "jobs": sum.JobNulls} {
		total := count(t, db, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize())
		for column, want := range nulls {
			got := count(t, db, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()+" WHERE "+pgx.Identifier{column}.Sanitize()+" IS NULL")
			if got != want {
				t.Errorf("%s.%s: %d NULLs, summary says %d", table, column, got, want)
			}
			if got == 0 || got == total {
				t.Errorf("%s.%s: %d NULLs of %d rows; want some of each", table, column, got, total)
			}
		}
	}

	for _, check := range []struct{ what, query string }{
		{"retry_count outside 0..5", "SELECT count(*) FROM executions WHERE retry_count NOT BETWEEN 0 AND 5"},
		{"progress outside 0..100", "SELECT count(*) FROM jobs WHERE progress NOT BETWEEN 0 AND 100"},
		{"empty params", "SELECT count(*) FROM executions WHERE params = '{}'"},
		{"unicode params", "SELECT count(*) FROM executions WHERE params->>'query' LIKE '%東京%'"},
		{"nested params", "SELECT count(*) FROM executions WHERE jsonb_typeof(params #> '{a,b,c,d}') = 'array'"},
		{"integers beyond 2^53", "SELECT count(*) FROM executions WHERE params->>'big_id' = '9007199254740993'"},
		{"NULL job payloads", "SELECT count(*) FROM jobs WHERE payload IS NULL"},
	} {
		n := count(t, db, check.query)
		if wantNone := strings.Contains(check.what, "outside"); wantNone != (n == 0) {
			t.Errorf("%s: %d rows", check.what, n)
		}
	}
}

func TestCaptureSpineTimestampsFollowTheStatus(t *testing.T) {
	t.Parallel()
	url, _ := testsvc.NewSeededCaptureSpineDatabase(t, coverage)
	db := connect(t, url)
	for _, violation := range []string{
		"SELECT count(*) FROM executions WHERE status IN ('pending', 'queued') AND started_at IS NOT NULL",
		"SELECT count(*) FROM executions WHERE status IN ('pending', 'queued', 'running') AND completed_at IS NOT NULL",
		"SELECT count(*) FROM executions WHERE status IN ('completed', 'failed', 'dead_lettered') AND (started_at IS NULL OR completed_at IS NULL)",
		"SELECT count(*) FROM executions WHERE started_at < created_at OR completed_at < started_at OR completed_at < created_at",
		"SELECT count(*) FROM executions WHERE status = 'pending' AND backend_task_id IS NOT NULL",
		"SELECT count(*) FROM executions WHERE status = 'completed' AND error IS NOT NULL",
		"SELECT count(*) FROM executions WHERE status IN ('failed', 'dead_lettered') AND error IS NULL",
		"SELECT count(*) FROM execution_events ev JOIN executions e USING (execution_id) WHERE ev.timestamp < e.created_at",
		"SELECT count(*) FROM (SELECT execution_id FROM execution_events GROUP BY 1 HAVING count(*) FILTER (WHERE event_type = 'created') <> 1) x",
		"SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued') AND started_at IS NOT NULL",
		"SELECT count(*) FROM jobs WHERE status IN ('success', 'failure', 'error') AND (started_at IS NULL OR finished_at IS NULL)",
		"SELECT count(*) FROM jobs WHERE started_at < created_at OR finished_at < started_at OR updated_at < greatest(created_at, started_at, finished_at)",
		"SELECT count(*) FROM jobs WHERE status = 'success' AND progress <> 100",
	} {
		if n := count(t, db, violation); n != 0 {
			t.Errorf("%d rows: %s", n, violation)
		}
	}
}

func TestCaptureSpineKeepsOneActiveExecutionPerFeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Few feeds for many executions, so the generator has collisions to avoid.
	url, sum := testsvc.NewSeededCaptureSpineDatabase(t, seed.Options{Executions: 6000, Jobs: -1, Seed: 3, EventsPerExecution: -1})
	db := connect(t, url)
	if n := count(t, db, "SELECT count(DISTINCT feed_id) FROM executions WHERE status IN ('pending', 'running')"); n != sum.ActiveFeeds || n == 0 {
		t.Errorf("%d feeds with an active execution, summary says %d", n, sum.ActiveFeeds)
	}
	// The fixture's index, not just the generator, enforces the rule.
	_, err := db.Exec(ctx, `INSERT INTO executions (execution_id, pipeline_name, status, feed_id)
		SELECT gen_random_uuid(), 'capture_feed', 'pending', feed_id
		FROM executions WHERE status = 'running' AND feed_id IS NOT NULL LIMIT 1`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.ConstraintName != "ix_executions_one_active_per_feed" {
		t.Errorf("second active execution for a feed: err = %v, want a violation of ix_executions_one_active_per_feed", err)
	}
}

func TestCaptureSpineSharesCeleryTaskIDsBetweenJobsAndExecutions(t *testing.T) {
	t.Parallel()
	url, sum := testsvc.NewSeededCaptureSpineDatabase(t, coverage)
	n := count(t, connect(t, url), `SELECT count(*) FROM jobs j
		WHERE EXISTS (SELECT FROM executions e WHERE e.backend_task_id = j.celery_task_id)`)
	if n != sum.SharedTaskIDs || n == 0 {
		t.Errorf("%d jobs share a task id with an execution, summary says %d", n, sum.SharedTaskIDs)
	}
}

func TestCaptureSpineIsDeterministic(t *testing.T) {
	t.Parallel()
	opts := seed.Options{Executions: 500, Jobs: 200, Seed: 11}
	other := opts
	other.Seed = 12

	type outcome struct {
		summary seed.Summary
		hashes  map[string]string
	}
	run := func(opts seed.Options) outcome {
		db := connect(t, testsvc.NewCaptureSpineDatabase(t))
		sum, err := seed.CaptureSpine(context.Background(), db, opts)
		if err != nil {
			t.Fatal(err)
		}
		return outcome{sum, tableHashes(t, db)}
	}
	a, b, c := run(opts), run(opts), run(other)
	if !reflect.DeepEqual(a.summary, b.summary) {
		t.Errorf("same options, different summaries:\n%+v\n%+v", a.summary, b.summary)
	}
	if !reflect.DeepEqual(a.hashes, b.hashes) {
		t.Errorf("same options, different rows: %v vs %v", a.hashes, b.hashes)
	}
	for table, hash := range a.hashes {
		if c.hashes[table] == hash {
			t.Errorf("seeds %d and %d give identical %s", opts.Seed, other.Seed, table)
		}
	}
}

func TestCaptureSpineOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                    string
		opts                    seed.Options
		execs, jobs, maxPerExec int
	}{
		{"zero value means the defaults", seed.Options{}, seed.DefaultExecutions, seed.DefaultJobs, seed.DefaultEventsPerExecution},
		{"negative means none", seed.Options{Executions: 50, Jobs: -1, EventsPerExecution: -1}, 50, 0, 0},
		{"a cap of one keeps the created event", seed.Options{Executions: 50, Jobs: 3, EventsPerExecution: 1}, 50, 3, 1},
		{"a cap of two keeps created and the outcome", seed.Options{Executions: 50, Jobs: 3, EventsPerExecution: 2}, 50, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := connect(t, testsvc.NewCaptureSpineDatabase(t))
			sum, err := seed.CaptureSpine(context.Background(), db, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Executions != tc.execs || sum.Jobs != tc.jobs {
				t.Errorf("seeded %d executions and %d jobs, want %d and %d", sum.Executions, sum.Jobs, tc.execs, tc.jobs)
			}
			if most := count(t, db, "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM execution_events GROUP BY execution_id) x"); most != tc.maxPerExec {
				t.Errorf("at most %d events per execution, want %d", most, tc.maxPerExec)
			}
			if tc.maxPerExec == 1 && sum.EventsByType["created"] != sum.Events {
				t.Errorf("events %v, want only created", sum.EventsByType)
			}
			if tc.maxPerExec == 2 && sum.EventsByType["completed"] == 0 {
				t.Errorf("events %v: the outcome was cut", sum.EventsByType)
			}
		})
	}
}

func connect(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func count(t *testing.T, db *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func countsBy(t *testing.T, db *pgxpool.Pool, sql string) map[string]int {
	t.Helper()
	rows, err := db.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	got := map[string]int{}
	var key string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&key, &n}, func() error { got[key] = n; return nil })
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return got
}

// tableHashes digests every row of each table in a fixed order, with a fixed time
// zone so the text form of timestamps cannot vary between sessions.
func tableHashes(t *testing.T, db *pgxpool.Pool) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET TIME ZONE 'UTC'"); err != nil {
		t.Fatal(err)
	}
	hashes := map[string]string{}
	for table, order := range map[string]string{"executions": "execution_id", "execution_events": "id", "jobs": "id"} {
		var h string
		sql := "SELECT md5(string_agg(t::text, E'\\n' ORDER BY " + pgx.Identifier{order}.Sanitize() + ")) FROM " + pgx.Identifier{table}.Sanitize() + " t"
		if err := conn.QueryRow(ctx, sql).Scan(&h); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		hashes[table] = h
	}
	return hashes
}
