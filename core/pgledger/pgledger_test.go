package pgledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/ledgertest"
	"github.com/spinecore/spine-go/core/pgledger"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/sqlmigrations"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// migratedPool returns a pool on a fresh Capture-Spine database with the
// migrations applied.
func migratedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testsvc.NewCaptureSpineDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := sqlmigrations.New(pool, sqlmigrations.Options{Logger: slog.New(slog.DiscardHandler)}).Up(ctx, 0); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	return pool
}

func newLedger(t *testing.T) *pgledger.Ledger {
	t.Helper()
	l, err := pgledger.New(context.Background(), migratedPool(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConformance(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) core.Ledger { return newLedger(t) })
}

func TestRefusesADatabaseWithoutTheMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testsvc.NewCaptureSpineDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, err = pgledger.New(ctx, pool)
	if !errors.Is(err, pgledger.ErrSchemaNotReady) || !strings.Contains(err.Error(), "spine-migrate migrate up") {
		t.Fatalf("unmigrated database: %v", err)
	}
	empty, err := pgxpool.New(ctx, testsvc.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if _, err := pgledger.New(ctx, empty); !errors.Is(err, pgledger.ErrSchemaNotReady) || !strings.Contains(err.Error(), "Capture-Spine") {
		t.Fatalf("empty database: %v", err)
	}
}

// Rows the Python side writes today, knowing nothing of the new columns,
// read back as RunRecords through the published mapping.
func TestReadsRowsWrittenByCaptureSpine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := migratedPool(t)
	l, err := pgledger.New(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	const id, feed = "0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	_, err = pool.Exec(ctx, `
		INSERT INTO executions (execution_id, pipeline_name, params, lane, trigger_source, status,
			backend_task_id, feed_id, retry_count, result, error, created_at, started_at, completed_at)
		VALUES ($1, 'rss_ingest', '{"url": "https://example.org/feed", "max": 50}', 'backfill', 'schedule', 'failed',
			'c0ffee00-0000-4000-8000-000000000001', $2, 2, NULL, 'HTTP 503', '2026-11-20 10:00:00+00',
			'2026-11-20 10:00:01.5+00', '2026-11-20 10:00:04+00')`, id, feed)
	if err != nil {
		t.Fatal(err)
	}
	run, err := l.GetRun(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if run.Spec.Kind != core.KindPipeline || run.Spec.Name != "rss_ingest" || run.Spec.Lane != "backfill" ||
		run.Spec.TriggerSource != "schedule" || run.Status != core.StatusFailed || run.Attempt != 3 ||
		run.ExternalRef != "c0ffee00-0000-4000-8000-000000000001" || run.Spec.Metadata["feed_id"] != feed ||
		run.Error != "HTTP 503" || run.Result != nil || run.Spec.MaxRetries != 3 || run.Spec.Priority != core.PriorityLow /* backfill lane: migration 0007 */ {
		t.Errorf("read as %+v", run)
	}
	if d, ok := run.Duration(); !ok || d != 2500*time.Millisecond {
		t.Errorf("duration %v", d)
	}
	if fmt := run.Spec.Params["max"]; fmt != json.Number("50") {
		t.Errorf("params %v", run.Spec.Params)
	}
	// And the dispatcher can retry it like any run of its own.
	d := core.NewDispatcher(l, &acceptAll{}, core.DispatcherOptions{})
	defer d.Close()
	retry, err := d.Retry(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if retry.Attempt != 4 || retry.RetryOfRunID != id || retry.Spec.Metadata["feed_id"] != feed {
		t.Errorf("retry %+v", retry)
	}
	var feedCol string
	if err := pool.QueryRow(ctx, `SELECT feed_id::text FROM executions WHERE execution_id = $1`, retry.RunID).Scan(&feedCol); err != nil || feedCol != feed {
		t.Errorf("retry's feed_id column %q, %v", feedCol, err)
	}
}

// Capture-Spine's guard (one pending or running execution per feed) holds
// for runs the dispatcher submits too, and surfaces as a typed conflict.
func TestOneActiveExecutionPerFeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t)
	d := core.NewDispatcher(l, &acceptAll{}, core.DispatcherOptions{})
	defer d.Close()
	feed := "9b2f9c1e-2a7d-4d0e-8f43-5e6a7b8c9d0e"
	spec := core.NewPipeline("rss_ingest", nil)
	spec.Metadata = map[string]any{"feed_id": feed}
	first, err := d.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Queued is not "active" for the index; running is.
	if _, err := d.MarkStarted(ctx, first.RunID); err != nil {
		t.Fatal(err)
	}
	_, err = d.Submit(ctx, spec)
	if !errors.Is(err, core.ErrConcurrencyConflict) || !strings.Contains(err.Error(), "one pending or running execution per feed") {
		t.Fatalf("second active run of one feed: %v", err)
	}
}

type acceptAll struct{}

func (acceptAll) Name() string { return "accept-all" }
func (acceptAll) Submit(_ context.Context, run core.RunRecord) (string, error) {
	return "ref-" + run.RunID, nil
}
func (acceptAll) Cancel(context.Context, string) error { return nil }
