package sqlmigrations_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/sqlmigrations"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// bundle is one test's fresh Capture-Spine database.
type bundle struct {
	t    *testing.T
	ctx  context.Context
	url  string
	pool *pgxpool.Pool
	seed seed.Summary
}

// setup creates a Capture-Spine database seeded with the given number of executions
// (with their events, and a quarter as many jobs); 0 leaves it empty. Equal sizes share
// one seeded template, so use few distinct sizes.
func setup(t *testing.T, executions int) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	b := &bundle{t: t, ctx: ctx}
	if executions > 0 {
		b.url, b.seed = testsvc.NewSeededCaptureSpineDatabase(t, seed.Options{Executions: executions, Jobs: executions / 4, Seed: 1})
	} else {
		b.url = testsvc.NewCaptureSpineDatabase(t)
	}
	pool, err := pgxpool.New(ctx, b.url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	b.pool = pool
	return b
}

// migrator returns a Migrator logging to the test log and to the returned recorder.
func (b *bundle) migrator(opts sqlmigrations.Options) (*sqlmigrations.Migrator, *logRecorder) {
	rec := &logRecorder{t: b.t}
	opts.Logger = slog.New(slog.NewTextHandler(rec, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return sqlmigrations.New(b.pool, opts), rec
}

// conn opens a connection of its own, outside the pool, for a test's "other session".
func (b *bundle) conn() *pgx.Conn {
	b.t.Helper()
	c, err := pgx.Connect(b.ctx, b.url)
	if err != nil {
		b.t.Fatalf("connect: %v", err)
	}
	b.t.Cleanup(func() { _ = c.Close(context.WithoutCancel(b.ctx)) })
	return c
}

func (b *bundle) exec(sql string, args ...any) {
	b.t.Helper()
	if _, err := b.pool.Exec(b.ctx, sql, args...); err != nil {
		b.t.Fatalf("%s: %v", sql, err)
	}
}

func (b *bundle) queryInt(sql string, args ...any) int {
	b.t.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, sql, args...).Scan(&n); err != nil {
		b.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// schemaDump is pg_dump --schema-only of the database without the migrations table,
// which the migrator creates once and never drops, and without pg_dump's per-run
// \restrict key.
func (b *bundle) schemaDump() string {
	b.t.Helper()
	pgDump := filepath.Join(testsvc.PostgresServer(b.t).BinDir(), "pg_dump")
	cmd := exec.CommandContext(b.ctx, pgDump, "--schema-only", "--no-owner",
		"--exclude-table=*.spine_schema_migrations", "--dbname="+b.url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("pg_dump: %v: %s", err, stderr.String())
	}
	var kept []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, `\restrict `) || strings.HasPrefix(line, `\unrestrict `) {
			continue
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, "")
}

// appliedVersions reads the migrations table; nil if it does not exist.
func (b *bundle) appliedVersions() []int {
	b.t.Helper()
	if b.queryInt("SELECT count(*) FROM pg_tables WHERE tablename = 'spine_schema_migrations'") == 0 {
		return nil
	}
	rows, err := b.pool.Query(b.ctx, "SELECT version FROM spine_schema_migrations ORDER BY version")
	if err != nil {
		b.t.Fatalf("read migrations table: %v", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		b.t.Fatalf("read migrations table: %v", err)
	}
	return versions
}

// index reports whether an index exists on executions and, if so, whether it is
// valid and its definition.
func (b *bundle) index(name string) (exists, valid bool, def string) {
	b.t.Helper()
	err := b.pool.QueryRow(b.ctx, `
SELECT i.indisvalid, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = $1 AND i.indrelid = 'executions'::regclass`, name).Scan(&valid, &def)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, ""
	}
	if err != nil {
		b.t.Fatalf("look up index %s: %v", name, err)
	}
	return true, valid, def
}

// constraint reports whether a constraint exists on executions and whether it is
// validated.
func (b *bundle) constraint(name string) (exists, validated bool) {
	b.t.Helper()
	err := b.pool.QueryRow(b.ctx,
		"SELECT convalidated FROM pg_constraint WHERE conrelid = 'executions'::regclass AND conname = $1", name).Scan(&validated)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false
	}
	if err != nil {
		b.t.Fatalf("look up constraint %s: %v", name, err)
	}
	return true, validated
}

// waitFor polls cond every 10ms until it holds, failing the test after timeout.
func (b *bundle) waitFor(what string, timeout time.Duration, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockWaiters counts sessions of this database queued for a lock on executions in
// the given mode (pg_locks spans all databases: the parallel tests share a server).
func (b *bundle) lockWaiters(mode string) int {
	return b.queryInt(`
SELECT count(*) FROM pg_locks
WHERE NOT granted AND mode = $1 AND relation = 'executions'::regclass
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, mode)
}

func versions(steps []sqlmigrations.Step) []int {
	out := make([]int, len(steps))
	for i, s := range steps {
		out[i] = s.Version
	}
	return out
}

// logRecorder is a slog destination that forwards to the test log and remembers
// everything, so a test can wait for a record.
type logRecorder struct {
	t   *testing.T
	mu  sync.Mutex
	buf strings.Builder
}

var _ io.Writer = (*logRecorder)(nil)

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	r.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (r *logRecorder) contains(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Contains(r.buf.String(), s)
}
