package phase1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/sqlmigrations"
)

// ValueMapping is one distinct value of a legacy column, how many rows hold
// it, and what it becomes in a RunRecord.
type ValueMapping struct {
	Value  string `json:"value"`
	Rows   int64  `json:"rows"`
	MapsTo string `json:"maps_to"`
	// Known is false for a value outside Capture-Spine's vocabulary; it may
	// still map (a lane takes priority normal), and Problem says when not.
	Known   bool   `json:"known"`
	Problem string `json:"problem,omitempty"`
}

// PlannedStep is one statement group apply would run.
type PlannedStep struct {
	Version  int    `json:"version,omitempty"`
	Name     string `json:"name"`
	SQL      string `json:"sql"`
	Lock     string `json:"lock"`
	Estimate string `json:"estimate"`
}

// Plan is what phase 1 apply would do to this database, and why it may refuse.
type Plan struct {
	Tables         []Table        `json:"tables"`
	Statuses       []ValueMapping `json:"statuses"`
	Lanes          []ValueMapping `json:"lanes"`
	TriggerSources []ValueMapping `json:"trigger_sources"`
	// Derived explains the RunRecord fields that need no writing.
	Derived []string      `json:"derived"`
	Steps   []PlannedStep `json:"steps"`
	// BackfillRows is how many existing rows the backfill will update.
	BackfillRows int64 `json:"backfill_rows"`
	// Problems, when not empty, make apply refuse.
	Problems []string `json:"problems"`
}

// ErrRefused is returned by Apply when the plan has problems.
var ErrRefused = errors.New("phase1: refused")

// Err is nil when apply may proceed, else an ErrRefused naming the problems.
func (p Plan) Err() error {
	if len(p.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d problem(s):\n  - %s", ErrRefused, len(p.Problems), strings.Join(p.Problems, "\n  - "))
}

// Estimates assume rates a modest server sustains; they are printed as
// estimates, and fixed rather than measured so that a plan is reproducible.
const (
	scanBytesPerSecond     = 200 << 20 // sequential scan (VALIDATE CONSTRAINT)
	indexBytesPerSecond    = 50 << 20  // CREATE INDEX CONCURRENTLY: two scans and a sort
	backfillRowsPerSecond  = 20000     // keyset batches of UPDATE, committed one by one
	catalogOnly            = "catalog only: milliseconds once the lock is granted"
	lockAccessExclusiveFmt = "ACCESS EXCLUSIVE on %s, held for milliseconds (lock_timeout, retried)"
)

// stepCost says, per embedded migration, which lock it takes and what work
// it does, so the plan can say it before anything runs. A test checks every
// migration has an entry.
var stepCost = map[int]struct {
	lock string
	work func(executions Table) string
}{
	1: {fmt.Sprintf(lockAccessExclusiveFmt, "executions and execution_events"), constant(catalogOnly)},
	2: {fmt.Sprintf(lockAccessExclusiveFmt, "executions"), constant("catalog only: NOT VALID, existing rows not scanned")},
	3: {"SHARE UPDATE EXCLUSIVE on executions: reads and writes continue", scan(scanBytesPerSecond, "one scan to validate")},
	4: {"SHARE UPDATE EXCLUSIVE on executions (CONCURRENTLY): reads and writes continue", scan(indexBytesPerSecond, "index build")},
	5: {"SHARE UPDATE EXCLUSIVE on executions (CONCURRENTLY): reads and writes continue", scan(indexBytesPerSecond, "index build")},
	6: {"SHARE UPDATE EXCLUSIVE on executions (CONCURRENTLY): reads and writes continue", scan(indexBytesPerSecond, "index build")},
	7: {fmt.Sprintf(lockAccessExclusiveFmt, "executions"), constant(catalogOnly)},
}

func constant(s string) func(Table) string { return func(Table) string { return s } }

func scan(bytesPerSecond int64, what string) func(Table) string {
	return func(t Table) string {
		return fmt.Sprintf("%s of %d rows (%s): %s", what, t.Rows, humanBytes(t.Bytes), duration(float64(t.Bytes)/float64(bytesPerSecond)))
	}
}

func duration(seconds float64) string {
	if seconds < 1 {
		return "under a second"
	}
	return "about " + (time.Duration(seconds) * time.Second).String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}

// PlanApply inspects the database, read-only, and returns what Apply would do.
func PlanApply(ctx context.Context, pool *pgxpool.Pool, opts Options) (Plan, error) {
	opts = opts.withDefaults()
	var p Plan
	for _, name := range inspectedTables {
		t, err := inspectTable(ctx, pool, name)
		if err != nil {
			return Plan{}, fmt.Errorf("phase1 plan: %w", err)
		}
		p.Tables = append(p.Tables, t)
		p.Problems = append(p.Problems, recognise(t)...)
	}
	if len(p.Problems) > 0 {
		return p, nil // nothing below can be read from a table that is not there
	}
	executions := p.Tables[0]

	var err error
	if p.Statuses, err = valueMappings(ctx, pool, "status", mapStatus); err != nil {
		return Plan{}, err
	}
	if p.Lanes, err = valueMappings(ctx, pool, "lane", mapLane); err != nil {
		return Plan{}, err
	}
	if p.TriggerSources, err = valueMappings(ctx, pool, "trigger_source", mapTriggerSource); err != nil {
		return Plan{}, err
	}
	for _, list := range [][]ValueMapping{p.Statuses, p.Lanes, p.TriggerSources} {
		for _, v := range list {
			if v.Problem != "" {
				p.Problems = append(p.Problems, v.Problem)
			}
		}
	}
	p.Derived = []string{
		"kind: pipeline for every existing row (the column's constant default; Capture-Spine only runs pipelines)",
		"attempt: retry_count + 1, read by the ledger; nothing to write",
		"external_ref: backend_task_id, read by the ledger; nothing to write",
		"metadata.feed_id: the feed_id column, read by the ledger; nothing to write",
		"priority: from the lane (backfill below for existing rows; the 0007 trigger for rows Capture-Spine inserts from now on)",
	}

	pending, err := sqlmigrations.New(pool, opts.migrations()).PlanUp(ctx, sqlmigrations.Latest)
	if err != nil {
		return Plan{}, fmt.Errorf("phase1 plan: %w", err)
	}
	for _, s := range pending.Steps {
		cost, ok := stepCost[s.Version]
		if !ok {
			return Plan{}, fmt.Errorf("phase1 plan: migration %04d has no lock/cost entry (a build bug)", s.Version)
		}
		p.Steps = append(p.Steps, PlannedStep{Version: s.Version, Name: s.Name, SQL: strings.TrimSpace(s.SQL), Lock: cost.lock, Estimate: cost.work(executions)})
	}

	if p.BackfillRows, err = backfillRemaining(ctx, pool, executions); err != nil {
		return Plan{}, err
	}
	p.Steps = append(p.Steps, PlannedStep{
		Name: "backfill priority", SQL: strings.TrimSpace(backfillBatchSQL),
		Lock: fmt.Sprintf("row locks on at most %d rows per batch, one transaction per batch (lock_timeout %s, retried)", opts.BatchSize, opts.LockTimeout),
		Estimate: fmt.Sprintf("%d of %d rows to update in batches of %d: %s", p.BackfillRows, executions.Rows, opts.BatchSize,
			duration(float64(executions.Rows)/backfillRowsPerSecond)),
	})
	return p, nil
}

func valueMappings(ctx context.Context, q querier, column string, mapValue func(string) ValueMapping) ([]ValueMapping, error) {
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT %[1]s, count(*) FROM executions GROUP BY %[1]s ORDER BY %[1]s", pgx.Identifier{column}.Sanitize()))
	if err != nil {
		return nil, fmt.Errorf("phase1 plan: distinct %s: %w", column, err)
	}
	type count struct {
		Value string
		Rows  int64
	}
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[count])
	if err != nil {
		return nil, fmt.Errorf("phase1 plan: distinct %s: %w", column, err)
	}
	out := make([]ValueMapping, len(counts))
	for i, c := range counts {
		out[i] = mapValue(c.Value)
		out[i].Value, out[i].Rows = c.Value, c.Rows
		if out[i].Problem != "" {
			out[i].Problem = fmt.Sprintf("executions.%s %q (%d rows): %s", column, c.Value, c.Rows, out[i].Problem)
		}
	}
	return out, nil
}

func mapStatus(v string) ValueMapping {
	if core.RunStatus(v).Valid() {
		return ValueMapping{MapsTo: "status " + v, Known: true}
	}
	return ValueMapping{MapsTo: "nothing", Problem: "not a RunStatus (pending, queued, running, completed, failed, cancelled, dead_lettered); " +
		"correct these rows (UPDATE executions SET status = ... WHERE status = ...) and plan again"}
}

func mapLane(v string) ValueMapping {
	m := ValueMapping{MapsTo: fmt.Sprintf("lane %s, priority %s", v, capturespine.PriorityForLane(v)), Known: capturespine.KnownLane(v)}
	if v == "" {
		m.MapsTo, m.Problem = "nothing", "an empty lane names no queue; set these rows' lane (e.g. 'normal') and plan again"
	}
	return m
}

func mapTriggerSource(v string) ValueMapping {
	known := map[string]bool{"api": true, "cli": true, "schedule": true, "webhook": true, "retry": true, "internal": true}
	m := ValueMapping{MapsTo: "trigger_source " + v, Known: known[v]}
	if v == "" {
		m.MapsTo, m.Problem = "nothing", "an empty trigger_source; set these rows' trigger_source (e.g. 'api') and plan again"
	}
	return m
}

// Write prints the plan for an operator.
func (p Plan) Write(w io.Writer) {
	fmt.Fprintln(w, "Phase 1 plan: align Capture-Spine's executions with spine-core (read-only; nothing was changed)")
	fmt.Fprintln(w, "\nTables:")
	for _, t := range p.Tables {
		if !t.Exists {
			fmt.Fprintf(w, "  %-17s absent\n", t.Name)
			continue
		}
		fmt.Fprintf(w, "  %-17s %d rows, %s, %d columns, %d indexes, %d constraints, %d triggers\n",
			t.Name, t.Rows, humanBytes(t.Bytes), len(t.Columns), len(t.Indexes), len(t.Constraints), len(t.Triggers))
		cols := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cols[i] = c.Name + " " + c.Type
		}
		fmt.Fprintf(w, "    columns: %s\n", strings.Join(cols, ", "))
		for _, list := range []struct {
			label string
			items []string
		}{{"index", t.Indexes}, {"constraint", t.Constraints}, {"trigger", t.Triggers}} {
			for _, item := range list.items {
				fmt.Fprintf(w, "    %s: %s\n", list.label, item)
			}
		}
	}
	for _, list := range []struct {
		title  string
		values []ValueMapping
	}{{"executions.status", p.Statuses}, {"executions.lane", p.Lanes}, {"executions.trigger_source", p.TriggerSources}} {
		if len(list.values) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", list.title)
		for _, v := range list.values {
			note := ""
			if !v.Known {
				note = "  (not in Capture-Spine's vocabulary)"
			}
			if v.Problem != "" {
				note = "  UNMAPPABLE"
			}
			fmt.Fprintf(w, "  %-14q %8d rows -> %s%s\n", v.Value, v.Rows, v.MapsTo, note)
		}
	}
	if len(p.Derived) > 0 {
		fmt.Fprintln(w, "\nRunRecord fields derived from existing columns:")
		for _, d := range p.Derived {
			fmt.Fprintf(w, "  - %s\n", d)
		}
	}
	if len(p.Steps) > 0 {
		fmt.Fprintln(w, "\nApply would run, in order:")
		for i, s := range p.Steps {
			label := s.Name
			if s.Version > 0 {
				label = fmt.Sprintf("migration %04d %s", s.Version, s.Name)
			}
			fmt.Fprintf(w, "\n  %d. %s\n     lock: %s\n     work: %s\n", i+1, label, s.Lock, s.Estimate)
			for line := range strings.Lines(s.SQL) {
				fmt.Fprintf(w, "       %s", strings.TrimRight(line, "\n")+"\n")
			}
		}
	}
	if err := p.Err(); err != nil {
		fmt.Fprintf(w, "\nRefused: %d problem(s) must be fixed before apply:\n", len(p.Problems))
		for _, pr := range p.Problems {
			fmt.Fprintf(w, "  - %s\n", pr)
		}
		return
	}
	fmt.Fprintln(w, "\nRun `spine-migrate phase1 apply --execute` to apply it.")
}
