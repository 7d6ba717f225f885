package testsvc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

func TestStartPostgresRunsAThrowawayServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if os.Getenv("SPINE_TEST_DATABASE_URL") != "" {
		t.Skip("SPINE_TEST_DATABASE_URL is set: this machine is not expected to run a server of its own")
	}
	begin := time.Now()
	pg, err := testsvc.StartPostgres(ctx, testsvc.PostgresOptions{Logf: t.Logf})
	if errors.Is(err, testsvc.ErrUnavailable) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("StartPostgres: %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	t.Logf("StartPostgres took %v", time.Since(begin))

	if !strings.HasPrefix(pg.AdminURL(), "postgres://postgres@127.0.0.1:") || !strings.HasSuffix(pg.AdminURL(), "/postgres?sslmode=disable") {
		t.Errorf("AdminURL() = %q, want postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable", pg.AdminURL())
	}
	conn := connect(t, pg.AdminURL())
	settings := map[string]string{
		"listen_addresses":   "127.0.0.1",
		"fsync":              "off",
		"full_page_writes":   "off",
		"synchronous_commit": "on",
		"max_connections":    "300",
		"server_encoding":    "UTF8",
		"lc_collate":         "C",
	}
	for name, want := range settings {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatalf("current_setting(%s): %v", name, err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	var dataDir string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir); err != nil {
		t.Fatal(err)
	}
	workDir := filepath.Dir(dataDir)
	if !strings.HasPrefix(filepath.Base(workDir), "spine-testsvc-pg-") {
		t.Errorf("data directory %s is not in a spine-testsvc-pg-* directory", dataDir)
	}

	url, err := pg.CreateDatabase(ctx, "created_by_test")
	if err != nil {
		t.Fatal(err)
	}
	if want := pg.URL("created_by_test"); url != want {
		t.Errorf("CreateDatabase URL = %q, want %q", url, want)
	}
	holder := connect(t, url) // DropDatabase must not wait for it
	if err := pg.DropDatabase(ctx, "created_by_test"); err != nil {
		t.Fatalf("DropDatabase with an open session: %v", err)
	}
	if err := holder.Ping(ctx); err == nil {
		t.Error("session of a dropped database still works")
	}

	if err := pg.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(workDir); !os.IsNotExist(err) {
		t.Errorf("work directory %s still exists after Stop (stat: %v)", workDir, err)
	}
	if c, err := pgx.Connect(ctx, pg.AdminURL()); err == nil {
		c.Close(ctx)
		t.Error("server still accepts connections after Stop")
	}
	if err := pg.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartRedisRunsAThrowawayServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, err := testsvc.StartRedis(ctx, testsvc.RedisOptions{Logf: t.Logf})
	if errors.Is(err, testsvc.ErrUnavailable) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("StartRedis: %v", err)
	}
	t.Cleanup(func() { _ = r.Stop() })

	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want loopback", r.Addr())
	}
	if want := "redis://" + r.Addr() + "/7"; r.URL(7) != want {
		t.Errorf("URL(7) = %q, want %q", r.URL(7), want)
	}
	client := redisClient(t, r.URL(0))
	want := map[string]string{"databases": "2048", "maxmemory-policy": "noeviction", "save": "", "appendonly": "no", "bind": "127.0.0.1"}
	for name, value := range want {
		got, err := client.ConfigGet(ctx, name).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got[name] != value {
			t.Errorf("CONFIG GET %s = %q, want %q", name, got[name], value)
		}
	}
	dir, err := client.ConfigGet(ctx, "dir").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(dir["dir"]), "spine-testsvc-redis-") {
		t.Errorf("dir = %q, want a spine-testsvc-redis-* directory", dir["dir"])
	}

	if err := r.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(dir["dir"]); !os.IsNotExist(err) {
		t.Errorf("work directory %s still exists after Stop (stat: %v)", dir["dir"], err)
	}
	if conn, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		conn.Close()
		t.Error("server still accepts connections after Stop")
	}
}

func TestNewDatabaseIsolatesTests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := testsvc.NewDatabase(t), testsvc.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share the URL %s", a)
	}
	if _, err := connect(t, a).Exec(ctx, "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatal(err)
	}
	if tables := tableNames(t, b); len(tables) != 0 {
		t.Errorf("database b sees tables %v", tables)
	}
}

func TestNewDatabaseIsDroppedWhenTheTestEnds(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("owner", func(t *testing.T) {
		name = currentDatabase(t, testsvc.NewDatabase(t))
	})
	var exists bool
	err := connect(t, testsvc.PostgresServer(t).AdminURL()).QueryRow(context.Background(),
		"SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s outlived its test", name)
	}
}

func TestNewCaptureSpineDatabaseHasTheSchemaAndNoRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := testsvc.NewCaptureSpineDatabase(t), testsvc.NewCaptureSpineDatabase(t)
	want := []string{"execution_events", "executions", "jobs"}
	if got := tableNames(t, a); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("tables = %v, want %v", got, want)
	}
	for _, table := range want {
		if n := count(t, a, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()); n != 0 {
			t.Errorf("%s has %d rows, want 0", table, n)
		}
	}
	if _, err := connect(t, a).Exec(ctx, "INSERT INTO jobs (job_type, status) VALUES ('backup', 'pending')"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, b, "SELECT count(*) FROM jobs"); n != 0 {
		t.Errorf("a row inserted in one copy shows in another: jobs has %d rows", n)
	}
}

func TestNewCaptureSpineDatabaseMatchesTheFixture(t *testing.T) {
	t.Parallel()
	url := testsvc.NewCaptureSpineDatabase(t)
	bin := testsvc.PostgresServer(t).BinDir()
	if bin == "" {
		t.Skip("no local pg_dump")
	}
	out, err := exec.Command(filepath.Join(bin, "pg_dump"), "--schema-only", "--no-owner", "--dbname", url).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	for _, want := range []string{
		"CREATE TABLE public.executions",
		"CREATE TABLE public.execution_events",
		"CREATE TABLE public.jobs",
		"CREATE UNIQUE INDEX ix_executions_one_active_per_feed ON public.executions USING btree (feed_id) WHERE (status = ANY (ARRAY['pending'::text, 'running'::text]))",
		"CREATE INDEX ix_executions_pipeline_created ON public.executions USING btree (pipeline_name, created_at DESC)",
		"CREATE INDEX ix_execution_events_execution ON public.execution_events USING btree (execution_id, \"timestamp\")",
		"CREATE INDEX ix_jobs_celery_task_id ON public.jobs USING btree (celery_task_id)",
		"ON DELETE CASCADE",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("schema lacks %q", want)
		}
	}
}

func TestCreatingDatabasesFromOneTemplateConcurrently(t *testing.T) {
	t.Parallel()
	const n = 12
	var mu sync.Mutex
	var slowest time.Duration
	for i := range n {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			begin := time.Now()
			url := testsvc.NewCaptureSpineDatabase(t)
			took := time.Since(begin)
			mu.Lock()
			slowest = max(slowest, took)
			mu.Unlock()
			if got := tableNames(t, url); len(got) != 3 {
				t.Errorf("tables = %v", got)
			}
		})
	}
	t.Cleanup(func() { t.Logf("slowest of %d concurrent template copies: %v", n, slowest) })
}

func TestNewSeededCaptureSpineDatabaseMatchesItsSummary(t *testing.T) {
	t.Parallel()
	opts := seed.Options{Executions: 300, Jobs: 120, Seed: 7}
	a, sumA := testsvc.NewSeededCaptureSpineDatabase(t, opts)
	b, sumB := testsvc.NewSeededCaptureSpineDatabase(t, opts)
	if a == b {
		t.Fatal("two seeded databases share a URL")
	}
	if sumA.Executions != 300 || sumA.Jobs != 120 || sumB.Events != sumA.Events {
		t.Errorf("summaries: %+v / %+v", sumA, sumB)
	}
	for _, url := range []string{a, b} {
		if got := count(t, url, "SELECT count(*) FROM executions"); got != sumA.Executions {
			t.Errorf("executions: %d rows, summary says %d", got, sumA.Executions)
		}
		if got := count(t, url, "SELECT count(*) FROM execution_events"); got != sumA.Events {
			t.Errorf("execution_events: %d rows, summary says %d", got, sumA.Events)
		}
		if got := count(t, url, "SELECT count(*) FROM jobs"); got != sumA.Jobs {
			t.Errorf("jobs: %d rows, summary says %d", got, sumA.Jobs)
		}
	}
}

func TestNewRedisDBIsolatesTests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := testsvc.NewRedisDB(t), testsvc.NewRedisDB(t)
	if a == b {
		t.Fatalf("two tests share Redis DB %s", a)
	}
	ca, cb := redisClient(t, a), redisClient(t, b)
	for _, c := range []*redis.Client{ca, cb} {
		if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
			t.Fatalf("fresh DB has %d keys (err %v)", n, err)
		}
	}
	if err := ca.Set(ctx, "celery", "message", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := cb.Exists(ctx, "celery").Result(); err != nil || n != 0 {
		t.Errorf("key written to %s is visible in %s (exists=%d, err=%v)", a, b, n, err)
	}
}

func TestNewRedisDBIsEmptiedWhenTheTestEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var url string
	t.Run("owner", func(t *testing.T) {
		url = testsvc.NewRedisDB(t)
		if err := redisClient(t, url).Set(ctx, "left", "over", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	if n, err := redisClient(t, url).DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("DB %s holds %d keys after its test (err %v)", url, n, err)
	}
}

func TestManyParallelTestsGetDistinctRedisDBs(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	holders := map[string]string{} // DBs currently held; one is reused once released
	for i := range 50 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			url := testsvc.NewRedisDB(t)
			mu.Lock()
			defer mu.Unlock()
			if other, held := holders[url]; held {
				t.Errorf("%s handed to %s while %s holds it", url, t.Name(), other)
			}
			holders[url] = t.Name()
			t.Cleanup(func() {
				mu.Lock()
				defer mu.Unlock()
				delete(holders, url)
			})
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

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func tableNames(t *testing.T, url string) []string {
	t.Helper()
	rows, err := connect(t, url).Query(context.Background(),
		"SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func count(t *testing.T, url, sql string) int {
	t.Helper()
	var n int
	if err := connect(t, url).QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func currentDatabase(t *testing.T, url string) string {
	t.Helper()
	var name string
	if err := connect(t, url).QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}
