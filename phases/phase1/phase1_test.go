package phase1_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
)

var seeded = seed.Options{Executions: 3000, Jobs: 300, Seed: 11}

type bundle struct {
	t    *testing.T
	ctx  context.Context
	url  string
	pool *pgxpool.Pool
	sum  seed.Summary
	opts phase1.Options
}

func setup(t *testing.T) *bundle {
	t.Helper()
	url, sum := testsvc.NewSeededCaptureSpineDatabase(t, seeded)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &bundle{t: t, ctx: context.Background(), url: url, pool: pool, sum: sum,
		opts: phase1.Options{Logger: slog.New(slog.DiscardHandler), BatchSize: 250}}
}

func (b *bundle) count(sql string, args ...any) int64 {
	b.t.Helper()
	var n int64
	if err := b.pool.QueryRow(b.ctx, sql, args...).Scan(&n); err != nil {
		b.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// misderived counts Capture-Spine's rows whose priority is not their lane's.
func (b *bundle) misderived() int64 {
	return b.count("SELECT count(*) FROM executions WHERE executor_name IS NULL AND priority IS DISTINCT FROM " +
		capturespine.PriorityForLaneSQL("lane"))
}

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

// dataDigest hashes every Capture-Spine column of every row, in id order.
func (b *bundle) dataDigest() string {
	b.t.Helper()
	var digest string
	err := b.pool.QueryRow(b.ctx, `
SELECT md5(string_agg(row(execution_id, pipeline_name, params, lane, trigger_source, status, backend_task_id,
	feed_id, retry_count, result, error, created_at, started_at, completed_at)::text, '|' ORDER BY execution_id))
	|| md5((SELECT string_agg(row(id, execution_id, event_type, timestamp, data)::text, '|' ORDER BY id) FROM execution_events))
	|| md5((SELECT string_agg(j::text, '|' ORDER BY j.id) FROM jobs j))
FROM executions`).Scan(&digest)
	if err != nil {
		b.t.Fatal(err)
	}
	return digest
}

func TestPlanIsStableAndAccurate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p1, err := phase1.PlanApply(b.ctx, b.pool, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := phase1.PlanApply(b.ctx, b.pool, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := json.Marshal(p1)
	j2, _ := json.Marshal(p2)
	var w1, w2 bytes.Buffer
	p1.Write(&w1)
	p2.Write(&w2)
	if !bytes.Equal(j1, j2) || w1.String() != w2.String() {
		t.Fatalf("two plans of one database differ:\n%s\n%s", w1.String(), w2.String())
	}
	if err := p1.Err(); err != nil {
		t.Fatalf("a seeded Capture-Spine database is refused: %v", err)
	}

	if ex := p1.Tables[0]; ex.Name != "executions" || ex.Rows != int64(b.sum.Executions) || p1.Tables[2].Rows != int64(b.sum.Jobs) {
		t.Errorf("tables = %+v, seeded %d executions and %d jobs", p1.Tables, b.sum.Executions, b.sum.Jobs)
	}
	sum := func(vs []phase1.ValueMapping) (n int64, values []string) {
		for _, v := range vs {
			n += v.Rows
			values = append(values, v.Value)
		}
		return n, values
	}
	for _, c := range []struct {
		column string
		got    []phase1.ValueMapping
		vocab  []string
	}{{"status", p1.Statuses, seed.ExecutionStatuses}, {"lane", p1.Lanes, seed.Lanes}, {"trigger_source", p1.TriggerSources, seed.TriggerSources}} {
		n, values := sum(c.got)
		if n != int64(b.sum.Executions) || len(values) != len(c.vocab) {
			t.Errorf("%s: %d rows over %v, want %d rows over every value of %v", c.column, n, values, b.sum.Executions, c.vocab)
		}
		for _, v := range c.got {
			if want := b.count(fmt.Sprintf("SELECT count(*) FROM executions WHERE %s = $1", c.column), v.Value); v.Rows != want || !v.Known {
				t.Errorf("%s %q: plan says %d rows (known %v), table has %d", c.column, v.Value, v.Rows, v.Known, want)
			}
		}
	}
	var wantBackfill int64
	for _, l := range p1.Lanes {
		if capturespine.PriorityForLane(l.Value) != "normal" {
			wantBackfill += l.Rows
		}
	}
	if p1.BackfillRows != wantBackfill || wantBackfill == 0 {
		t.Errorf("backfill rows = %d, want %d (rows on a lane whose priority is not normal)", p1.BackfillRows, wantBackfill)
	}
	if n := len(p1.Steps); n != 8 || p1.Steps[7].Name != "backfill priority" {
		t.Errorf("plan has %d steps, want the 7 migrations then the backfill", n)
	}
	for _, want := range []string{"ACCESS EXCLUSIVE on executions", "SHARE UPDATE EXCLUSIVE", "CREATE UNIQUE INDEX CONCURRENTLY",
		`"backfill"`, "priority low", "phase1 apply --execute"} {
		if !strings.Contains(w1.String(), want) {
			t.Errorf("plan text lacks %q", want)
		}
	}
	if b.count("SELECT count(*) FROM pg_tables WHERE tablename IN ('spine_schema_migrations', 'spine_phase1_backfill')") != 0 {
		t.Error("plan wrote to the database")
	}
}

func TestPlanRefusesWhatItDoesNotKnow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.pool.Exec(b.ctx, "UPDATE executions SET status = 'paused' WHERE execution_id IN (SELECT execution_id FROM executions LIMIT 3)")
	b.pool.Exec(b.ctx, "UPDATE executions SET trigger_source = '' WHERE execution_id IN (SELECT execution_id FROM executions WHERE status <> 'paused' LIMIT 1)")
	p, err := phase1.PlanApply(b.ctx, b.pool, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	msg := fmt.Sprint(p.Err())
	if !errors.Is(p.Err(), phase1.ErrRefused) || !strings.Contains(msg, `executions.status "paused" (3 rows)`) || !strings.Contains(msg, "trigger_source") {
		t.Errorf("plan error = %v", msg)
	}
	if _, err := phase1.Apply(b.ctx, b.pool, b.opts); !errors.Is(err, phase1.ErrRefused) {
		t.Errorf("Apply = %v, want ErrRefused", err)
	}
	if b.count("SELECT count(*) FROM pg_tables WHERE tablename = 'spine_schema_migrations'") != 0 {
		t.Error("a refused apply changed the schema")
	}

	// Not a Capture-Spine database at all.
	other, err := pgxpool.New(b.ctx, testsvc.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	p, err = phase1.PlanApply(b.ctx, other, b.opts)
	if err != nil || !strings.Contains(fmt.Sprint(p.Err()), "not a Capture-Spine database") {
		t.Errorf("empty database: %v %v", p.Err(), err)
	}
}

// writer is Capture-Spine's Python code: it inserts and updates executions
// knowing only its own columns.
type writer struct {
	inserted, updated atomic.Int64
	errs              []error
	mu                sync.Mutex
	stop              chan struct{}
	done              sync.WaitGroup
}

func startWriter(b *bundle) *writer {
	w := &writer{stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			lane := seed.Lanes[r.IntN(len(seed.Lanes))]
			_, err := b.pool.Exec(b.ctx, `INSERT INTO executions (execution_id, pipeline_name, lane, trigger_source, status)
				VALUES (gen_random_uuid(), 'capture_feed', $1, 'api', 'queued')`, lane)
			if err == nil {
				w.inserted.Add(1)
				_, err = b.pool.Exec(b.ctx, `UPDATE executions SET status = 'running', started_at = now()
					WHERE execution_id = (SELECT execution_id FROM executions WHERE status = 'queued' AND feed_id IS NULL ORDER BY random() LIMIT 1)`)
				w.updated.Add(1)
			}
			if err != nil {
				w.mu.Lock()
				w.errs = append(w.errs, err)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *writer) Stop() []error {
	close(w.stop)
	w.done.Wait()
	return w.errs
}

func TestApplyWhileCaptureSpineKeepsWriting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	plan, err := phase1.PlanApply(b.ctx, b.pool, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	w := startWriter(b)
	time.Sleep(100 * time.Millisecond)
	var during atomic.Int64
	opts := b.opts
	opts.BatchSize = 50
	opts.Progress = func(phase1.BackfillProgress) {
		during.Store(w.inserted.Load())
		time.Sleep(2 * time.Millisecond) // keep the backfill long enough to overlap many writes
	}
	before := w.inserted.Load()
	res, err := phase1.Apply(b.ctx, b.pool, opts)
	time.Sleep(100 * time.Millisecond)
	if errs := w.Stop(); len(errs) > 0 {
		t.Fatalf("the Python-side writer failed %d times during apply, first: %v", len(errs), errs[0])
	}
	if err != nil {
		t.Fatal(err)
	}
	if during.Load()-before < 20 {
		t.Fatalf("only %d rows written while apply ran: the test did not overlap", during.Load()-before)
	}
	if got, want := b.count("SELECT count(*) FROM executions"), int64(b.sum.Executions)+w.inserted.Load(); got != want {
		t.Errorf("%d rows after apply, want %d: rows were lost", got, want)
	}
	// Rows the writer inserted before 0007 added the trigger got the old
	// default, so the backfill may fix more rows than the plan counted.
	if len(res.Migrations) != 7 || res.Backfill.RowsUpdated < plan.BackfillRows {
		t.Errorf("apply = %+v, plan said 7 migrations and %d rows", res, plan.BackfillRows)
	}
	if n := b.misderived(); n != 0 {
		t.Errorf("%d rows have a priority other than their lane's", n)
	}
	st, err := phase1.Status(b.ctx, b.pool)
	if err != nil || st.State != phase1.StateDone || !st.LaneTrigger || st.Backfill.RowsScanned < int64(b.sum.Executions) {
		t.Errorf("status = %+v, %v", st, err)
	}
}

func TestInterruptedApplyConverges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(b.ctx)
	batches := 0
	opts := b.opts
	opts.Progress = func(phase1.BackfillProgress) {
		if batches++; batches == 3 {
			cancel()
		}
	}
	_, err := phase1.Apply(ctx, b.pool, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted apply = %v, want context.Canceled", err)
	}
	st, _ := phase1.Status(b.ctx, b.pool)
	if st.State != phase1.StateBackfill || st.Backfill.RowsScanned != 3*int64(b.opts.BatchSize) || b.misderived() == 0 {
		t.Fatalf("after the interruption: %+v, %d rows left", st, b.misderived())
	}

	res, err := phase1.Apply(b.ctx, b.pool, b.opts)
	if err != nil || !res.Backfill.Resumed || len(res.Migrations) != 0 {
		t.Fatalf("resumed apply = %+v, %v", res, err)
	}
	if n := b.misderived(); n != 0 {
		t.Errorf("%d rows left after the resumed apply", n)
	}
	st, _ = phase1.Status(b.ctx, b.pool)
	if st.State != phase1.StateDone || st.Backfill.RowsScanned != int64(b.sum.Executions) {
		t.Errorf("status = %+v: every row scanned exactly once across both runs", st)
	}
	res, err = phase1.Apply(b.ctx, b.pool, b.opts)
	if err != nil || !res.Backfill.AlreadyDone {
		t.Errorf("third apply = %+v, %v; want a no-op", res, err)
	}
}

func TestRollbackRestoresSchemaAndData(t *testing.T) {
	t.Parallel()
	b := setup(t)
	schema, data := b.schemaDump(), b.dataDigest()
	if _, err := phase1.Apply(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	if b.schemaDump() == schema {
		t.Fatal("apply changed nothing in the schema")
	}

	// A later phase's table blocks the rollback.
	b.pool.Exec(b.ctx, "CREATE TABLE spine_phase3_checkpoint (id int)")
	if _, err := phase1.Rollback(b.ctx, b.pool, b.opts, false); !errors.Is(err, phase1.ErrRefused) || !strings.Contains(err.Error(), "spine_phase3_checkpoint") {
		t.Errorf("rollback under phase 3 = %v", err)
	}
	b.pool.Exec(b.ctx, "DROP TABLE spine_phase3_checkpoint")

	res, err := phase1.Rollback(b.ctx, b.pool, b.opts, false)
	if err != nil || len(res.Reverted) != 7 {
		t.Fatalf("rollback = %+v, %v", res, err)
	}
	if got := b.schemaDump(); got != schema {
		t.Errorf("schema after rollback differs from before apply:\n--- before\n%s\n--- after\n%s", schema, got)
	}
	if b.dataDigest() != data {
		t.Error("Capture-Spine's data changed across apply + rollback")
	}
	if st, _ := phase1.Status(b.ctx, b.pool); st.State != phase1.StateNotStarted {
		t.Errorf("status after rollback = %+v", st)
	}
}

func TestRollbackRefusesToDropRunData(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := phase1.Apply(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	// A run a spine-go dispatcher wrote: its kind and idempotency key live
	// only in phase 1's columns.
	b.pool.Exec(b.ctx, `INSERT INTO executions (execution_id, pipeline_name, kind, priority, idempotency_key, executor_name)
		VALUES (gen_random_uuid(), 'refresh_sec', 'task', 'high', 'k-1', 'memory')`)
	plan, err := phase1.PlanRollback(b.ctx, b.pool, b.opts)
	if err != nil || len(plan.DataAtRisk) != 2 {
		t.Fatalf("rollback plan = %+v, %v", plan, err)
	}
	if _, err := phase1.Rollback(b.ctx, b.pool, b.opts, false); !errors.Is(err, phase1.ErrRefused) || !strings.Contains(err.Error(), "--discard-run-data") {
		t.Fatalf("rollback = %v", err)
	}
	if st, _ := phase1.Status(b.ctx, b.pool); st.State != phase1.StateDone {
		t.Errorf("a refused rollback changed something: %+v", st)
	}
	if _, err := phase1.Rollback(b.ctx, b.pool, b.opts, true); err != nil {
		t.Errorf("rollback with discard: %v", err)
	}
}

func TestLaneTriggerEqualsTheGoRule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := phase1.Apply(b.ctx, b.pool, b.opts); err != nil {
		t.Fatal(err)
	}
	for _, lane := range append([]string{"default", "imports", "o'brien"}, capturespine.Lanes...) {
		var got string
		err := b.pool.QueryRow(b.ctx, `INSERT INTO executions (execution_id, pipeline_name, lane) VALUES (gen_random_uuid(), 'p', $1) RETURNING priority`, lane).Scan(&got)
		if err != nil || got != string(capturespine.PriorityForLane(lane)) {
			t.Errorf("lane %q: trigger gave %q (%v), Go rule %q", lane, got, err, capturespine.PriorityForLane(lane))
		}
	}
	// A writer that names a priority keeps it.
	var kept string
	if err := b.pool.QueryRow(b.ctx, `INSERT INTO executions (execution_id, pipeline_name, lane, priority) VALUES (gen_random_uuid(), 'p', 'realtime', 'slow') RETURNING priority`).Scan(&kept); err != nil || kept != "slow" {
		t.Errorf("explicit priority became %q (%v)", kept, err)
	}
}
