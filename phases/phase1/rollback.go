package phase1

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/sqlmigrations"
)

// Later phases keep their state in tables named spine_phase2_* and
// spine_phase3_*, and phase 3 renames jobs to jobs_retired: while any
// exists, phase 1's columns are in use and rollback refuses.
const selectLaterPhases = `
SELECT tablename FROM pg_tables
WHERE schemaname = current_schema()
  AND (tablename LIKE 'spine\_phase2\_%' OR tablename LIKE 'spine\_phase3\_%' OR tablename = 'jobs_retired')
ORDER BY tablename`

// selectRunData counts rows holding what only phase 1's columns can keep:
// rollback would drop it. Rows Capture-Spine wrote hold the defaults (and
// the priority the backfill derived, which is recomputable).
const selectRunData = `
SELECT count(*) FILTER (WHERE kind <> 'pipeline'),
       count(*) FILTER (WHERE idempotency_key IS NOT NULL OR correlation_id IS NOT NULL OR parent_run_id IS NOT NULL
                           OR executor_name IS NOT NULL OR retry_of_run_id IS NOT NULL OR error_type IS NOT NULL),
       count(*) FILTER (WHERE max_retries <> 3 OR retry_delay_seconds <> 60),
       count(*) FILTER (WHERE metadata <> '{}'::jsonb OR tags <> '{}'::jsonb),
       (SELECT count(*) FROM execution_events WHERE source <> 'dispatcher')
FROM executions`

// RollbackPlan is what Rollback would do, and why it may refuse.
type RollbackPlan struct {
	Steps       []PlannedStep `json:"steps"`
	LaterPhases []string      `json:"later_phases"`
	// DataAtRisk describes rows whose RunRecord data the rollback would drop.
	DataAtRisk []string `json:"data_at_risk"`
	Problems   []string `json:"problems"`
}

// Err is nil when Rollback may proceed (discard says the operator accepts
// losing DataAtRisk).
func (p RollbackPlan) Err(discard bool) error {
	problems := slices.Clone(p.Problems)
	if len(p.DataAtRisk) > 0 && !discard {
		problems = append(problems, "rows hold data only phase 1's columns can keep ("+strings.Join(p.DataAtRisk, "; ")+
			"); rolling back drops it: pass --discard-run-data to accept that")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRefused, strings.Join(problems, "; "))
}

// PlanRollback inspects, read-only, what removing phase 1 would take.
func PlanRollback(ctx context.Context, pool *pgxpool.Pool, opts Options) (RollbackPlan, error) {
	opts = opts.withDefaults()
	var p RollbackPlan
	rows, err := pool.Query(ctx, selectLaterPhases)
	if err != nil {
		return p, fmt.Errorf("phase1 rollback plan: %w", err)
	}
	if p.LaterPhases, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return p, fmt.Errorf("phase1 rollback plan: %w", err)
	}
	if len(p.LaterPhases) > 0 {
		p.Problems = append(p.Problems, fmt.Sprintf("later phases depend on phase 1 (%s): roll them back first", strings.Join(p.LaterPhases, ", ")))
	}

	executions, err := inspectTable(ctx, pool, "executions")
	if err != nil {
		return p, fmt.Errorf("phase1 rollback plan: %w", err)
	}
	if slices.ContainsFunc(executions.Columns, func(c Column) bool { return c.Name == "executor_name" }) {
		var kinds, lineage, retries, meta, events int64
		if err := pool.QueryRow(ctx, selectRunData).Scan(&kinds, &lineage, &retries, &meta, &events); err != nil {
			return p, fmt.Errorf("phase1 rollback plan: %w", err)
		}
		for _, c := range []struct {
			n    int64
			what string
		}{{kinds, "executions with a kind other than pipeline"}, {lineage, "executions with idempotency keys, lineage, executor or error type"},
			{retries, "executions with their own retry policy"}, {meta, "executions with metadata or tags"}, {events, "events from a source other than the dispatcher"}} {
			if c.n > 0 {
				p.DataAtRisk = append(p.DataAtRisk, fmt.Sprintf("%d %s", c.n, c.what))
			}
		}
	}

	cp, err := readCheckpoint(ctx, pool)
	if err != nil {
		return p, fmt.Errorf("phase1 rollback plan: %w", err)
	}
	if cp.Exists {
		p.Steps = append(p.Steps, PlannedStep{Name: "drop the backfill checkpoint", SQL: "DROP TABLE IF EXISTS " + CheckpointTable + ";",
			Lock: "ACCESS EXCLUSIVE on " + CheckpointTable + " (phase 1's own table)", Estimate: catalogOnly})
	}
	down, err := sqlmigrations.New(pool, opts.migrations()).PlanDown(ctx, sqlmigrations.AllTheWayDown)
	if err != nil {
		return p, fmt.Errorf("phase1 rollback plan: %w", err)
	}
	for _, s := range down.Steps {
		lock := fmt.Sprintf(lockAccessExclusiveFmt, "executions")
		if s.NoTx {
			lock = "SHARE UPDATE EXCLUSIVE on executions (DROP INDEX CONCURRENTLY): reads and writes continue"
		}
		p.Steps = append(p.Steps, PlannedStep{Version: s.Version, Name: "revert " + s.Name, SQL: strings.TrimSpace(s.SQL), Lock: lock, Estimate: catalogOnly})
	}
	return p, nil
}

// RollbackResult is what Rollback did.
type RollbackResult struct {
	Reverted          []int `json:"migrations_reverted"`
	CheckpointDropped bool  `json:"checkpoint_dropped"`
}

// Rollback removes what phase 1 added, leaving the schema and Capture-Spine's
// data as they were before apply. It refuses while later phases depend on
// phase 1, and when rows hold data only phase 1's columns keep, unless
// discard says to drop it.
func Rollback(ctx context.Context, pool *pgxpool.Pool, opts Options, discard bool) (RollbackResult, error) {
	opts = opts.withDefaults()
	var res RollbackResult
	plan, err := PlanRollback(ctx, pool, opts)
	if err != nil {
		return res, err
	}
	if err := plan.Err(discard); err != nil {
		return res, err
	}
	release, err := lockRunner(ctx, pool)
	if err != nil {
		return res, err
	}
	defer release()
	if _, err := withRetries(ctx, pool, opts, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+CheckpointTable)
		return err
	}); err != nil {
		return res, fmt.Errorf("phase1 rollback: drop checkpoint: %w", err)
	}
	res.CheckpointDropped = true
	down, err := sqlmigrations.New(pool, opts.migrations()).Down(ctx, sqlmigrations.AllTheWayDown)
	for _, s := range down.Applied {
		res.Reverted = append(res.Reverted, s.Version)
	}
	if err != nil {
		return res, fmt.Errorf("phase1 rollback: migrations: %w", err)
	}
	// The migrations' own bookkeeping table came with phase 1 too; once it
	// records nothing, it goes, and the schema is byte for byte the old one.
	if _, err := withRetries(ctx, pool, opts, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, dropEmptyMigrationsTable)
		return err
	}); err != nil {
		return res, fmt.Errorf("phase1 rollback: drop the empty migrations table: %w", err)
	}
	return res, nil
}

const dropEmptyMigrationsTable = `
DO $$
BEGIN
    IF to_regclass('spine_schema_migrations') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM spine_schema_migrations) THEN
        DROP TABLE spine_schema_migrations;
    END IF;
END
$$`

// Write prints the rollback plan for an operator.
func (p RollbackPlan) Write(w io.Writer, discard bool) {
	fmt.Fprintln(w, "Phase 1 rollback plan (read-only; nothing was changed)")
	if len(p.Steps) == 0 {
		fmt.Fprintln(w, "\nNothing to roll back: phase 1 is not applied.")
	}
	for i, s := range p.Steps {
		fmt.Fprintf(w, "\n  %d. %s\n     lock: %s\n", i+1, s.Name, s.Lock)
		for line := range strings.Lines(s.SQL) {
			fmt.Fprintf(w, "       %s\n", strings.TrimRight(line, "\n"))
		}
	}
	for _, d := range p.DataAtRisk {
		fmt.Fprintf(w, "\nData lost by rolling back: %s", d)
	}
	if len(p.DataAtRisk) > 0 {
		fmt.Fprintln(w)
	}
	if err := p.Err(discard); err != nil {
		fmt.Fprintf(w, "\nRefused: %v\n", err)
		return
	}
	if len(p.Steps) > 0 {
		fmt.Fprintln(w, "\nRun `spine-migrate phase1 rollback --execute` to roll back.")
	}
}
