package phase3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// ErrRefused is returned by Copy when the plan has problems.
var ErrRefused = errors.New("phase3: refused")

// MappingFlag is how an operator hands phase 3 a job mapping file; the
// plan's problems name it.
const MappingFlag = "--job-mapping FILE"

// Plan is what phase 3's copy would do to this database, and why it may refuse.
type Plan struct {
	JobsRows       int64 `json:"jobs_rows"`
	JobsBytes      int64 `json:"jobs_bytes"`
	JobsMaxID      int64 `json:"jobs_max_id"`
	ExecutionsRows int64 `json:"executions_rows"`
	// Counts is jobs per (job_type, status), with what each maps to.
	Counts   []TypeStatusCount `json:"counts"`
	JobTypes []ValueMapping    `json:"job_types"`
	Statuses []ValueMapping    `json:"statuses"`
	Overlaps Overlaps          `json:"overlaps"`
	Sample   Sample            `json:"sample"`
	// Estimate is the copy's duration estimated from Sample.
	Estimate time.Duration `json:"estimate_ns"`
	Steps    []PlannedStep `json:"steps"`
	// State is phase 3's state when it has already begun.
	State string `json:"state"`
	// Problems, when not empty, make copy refuse.
	Problems []string `json:"problems"`
}

// TypeStatusCount is how many jobs hold one (job_type, status) pair.
type TypeStatusCount struct {
	JobType  string `json:"job_type"`
	Status   string `json:"status"`
	Rows     int64  `json:"rows"`
	Pipeline string `json:"pipeline,omitempty"`   // empty: unmapped
	MapsTo   string `json:"run_status,omitempty"` // empty: unmapped
}

// ValueMapping is one distinct value of jobs.job_type or jobs.status, its
// row count and what it becomes; Problem is set when it has no mapping.
type ValueMapping struct {
	Value   string `json:"value"`
	Rows    int64  `json:"rows"`
	MapsTo  string `json:"maps_to,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// Overlaps are jobs whose celery_task_id a native execution (one phase 3
// did not write) carries as backend_task_id. The rule is link, not
// duplicate: such a job gets no execution; the native one lists the job's
// id in metadata.legacy_job_ids.
type Overlaps struct {
	Jobs       int64     `json:"jobs"`
	Executions int64     `json:"executions"`
	Examples   []Overlap `json:"examples"`
	Rule       string    `json:"rule"`
}

// Overlap is one job and the native execution it links to.
type Overlap struct {
	JobID       int64  `json:"job_id"`
	TaskID      string `json:"celery_task_id"`
	ExecutionID string `json:"execution_id"`
}

// OverlapRule is the overlap rule as the plan prints it.
const OverlapRule = "link, not duplicate: the job gets no execution of its own; the execution Capture-Spine already " +
	"wrote for that Celery task lists the job id in metadata.legacy_job_ids (rollback removes the key)"

// Sample is the plan's measurement: the mapping evaluated over the first
// Rows jobs, read-only.
type Sample struct {
	Rows          int64         `json:"rows"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	RowsPerSecond float64       `json:"rows_per_second"`
}

// PlannedStep is one step copy would take, with the lock it takes.
type PlannedStep struct {
	Name     string `json:"name"`
	Lock     string `json:"lock"`
	Estimate string `json:"estimate"`
	SQL      string `json:"sql,omitempty"`
}

// Err is nil when copy may proceed, else an ErrRefused naming the problems.
func (p Plan) Err() error {
	if len(p.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d problem(s):\n  - %s", ErrRefused, len(p.Problems), strings.Join(p.Problems, "\n  - "))
}

const (
	// sampleRows is the plan's measured sample.
	sampleRows = 5000
	// copyCostFactor is how much longer copying a job takes than mapping it
	// read-only (the sample measures the mapping; the copy also writes the
	// row, its index entries and WAL, and looks up overlaps). Measured with
	// bench/phase3copy at 200k jobs: the sample mapped 80k jobs/s, the copy
	// ran at 14.6k/s.
	copyCostFactor      = 5.5
	indexBytesPerSecond = 50 << 20 // CREATE INDEX CONCURRENTLY: two scans and a sort
)

// jobColumns are the jobs columns the mapping reads, with their types.
var jobColumns = map[string]string{
	"id": "bigint", "job_type": "text", "status": "text", "celery_task_id": "text", "user_id": "uuid",
	"queue": "text", "payload": "jsonb", "result": "jsonb", "error_message": "text", "progress": "smallint",
	"attempts": "integer", "created_at": "timestamp with time zone", "started_at": "timestamp with time zone",
	"finished_at": "timestamp with time zone", "updated_at": "timestamp with time zone",
}

// resolveMapping is opts.Mapping, else the stored mapping, else the default.
func resolveMapping(ctx context.Context, q querier, opts Options) (capturespine.JobMapping, error) {
	if opts.Mapping != nil {
		return *opts.Mapping, opts.Mapping.Validate()
	}
	m, ok, err := readMapping(ctx, q)
	if err != nil || ok {
		return m, err
	}
	return capturespine.DefaultJobMapping(), nil
}

// PlanCopy inspects the database, read-only, and returns what Copy would do.
func PlanCopy(ctx context.Context, pool *pgxpool.Pool, opts Options) (Plan, error) {
	return planCopy(ctx, pool, opts.withDefaults(), true)
}

// planCopy is PlanCopy; Copy skips the measured sample and the steps.
func planCopy(ctx context.Context, pool *pgxpool.Pool, opts Options, full bool) (Plan, error) {
	var p Plan
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return p, fmt.Errorf("phase3 plan: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	st, err := Status(ctx, pool)
	if err != nil {
		return p, err
	}
	p.State = st.State
	switch st.State {
	case StateCutOver, StateFinalized:
		p.Problems = append(p.Problems, fmt.Sprintf("phase 3 is %s: there is nothing left to copy", st.State))
		return p, nil
	case StateRollingBack:
		p.Problems = append(p.Problems, errRolledBack.Error())
		return p, nil
	}
	p.Problems = append(p.Problems, checkSchema(ctx, tx)...)
	if len(p.Problems) > 0 {
		return p, nil // nothing below can be read from tables that are not the expected ones
	}
	m, err := resolveMapping(ctx, tx, opts)
	if err != nil {
		return p, fmt.Errorf("phase3 plan: %w", err)
	}

	if err := p.countValues(ctx, tx, m); err != nil {
		return p, err
	}
	if !full {
		return p, nil // Copy needs no more, and should not scan jobs twice to learn it
	}
	if err := tx.QueryRow(ctx, `SELECT COALESCE(max(id), 0), pg_table_size('jobs'), (SELECT count(*) FROM executions) FROM jobs`).
		Scan(&p.JobsMaxID, &p.JobsBytes, &p.ExecutionsRows); err != nil {
		return p, fmt.Errorf("phase3 plan: count jobs: %w", err)
	}
	if p.Overlaps, err = findOverlaps(ctx, tx); err != nil {
		return p, err
	}
	if p.Sample, err = measureSample(ctx, tx, m); err != nil {
		return p, err
	}
	if p.Sample.RowsPerSecond > 0 {
		p.Estimate = time.Duration(float64(p.JobsRows) * copyCostFactor / p.Sample.RowsPerSecond * float64(time.Second))
	}
	if err := p.planSteps(ctx, tx, opts); err != nil {
		return p, err
	}
	return p, nil
}

// checkSchema reports what keeps this database from being one phase 3 can
// work on: Capture-Spine's jobs table, and executions with phase 1's columns.
func checkSchema(ctx context.Context, q querier) []string {
	cols := func(table string) (map[string]string, error) {
		rows, err := q.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1`, table)
		if err != nil {
			return nil, err
		}
		out := map[string]string{}
		var name, typ string
		_, err = pgx.ForEachRow(rows, []any{&name, &typ}, func() error { out[name] = typ; return nil })
		return out, err
	}
	var problems []string
	jobs, err := cols("jobs")
	switch {
	case err != nil:
		return []string{fmt.Sprintf("reading the jobs columns: %v", err)}
	case len(jobs) == 0:
		return []string{"table jobs does not exist: this is not a Capture-Spine database (check --database-url)"}
	}
	for _, name := range slices.Sorted(maps.Keys(jobColumns)) {
		switch got, ok := jobs[name]; {
		case !ok:
			problems = append(problems, fmt.Sprintf("jobs.%s is missing: not the jobs table phase 3 knows", name))
		case got != jobColumns[name]:
			problems = append(problems, fmt.Sprintf("jobs.%s is %s, Capture-Spine's is %s", name, got, jobColumns[name]))
		}
	}
	execs, err := cols("executions")
	if err != nil {
		return append(problems, fmt.Sprintf("reading the executions columns: %v", err))
	}
	if len(execs) == 0 {
		return append(problems, "table executions does not exist: this is not a Capture-Spine database (check --database-url)")
	}
	b, err := bindMapping()
	if err != nil {
		return append(problems, err.Error())
	}
	var missing []string
	for _, c := range b.Columns {
		if _, ok := execs[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("executions lacks %s: apply phase 1 first (spine-migrate phase1 apply --execute)", strings.Join(missing, ", ")))
	}
	return problems
}

// countValues fills Counts, JobTypes and Statuses, and a problem for each
// value the mapping does not know.
func (p *Plan) countValues(ctx context.Context, q querier, m capturespine.JobMapping) error {
	rows, err := q.Query(ctx, "SELECT job_type, status, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2")
	if err != nil {
		return fmt.Errorf("phase3 plan: count jobs per type and status: %w", err)
	}
	p.Counts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TypeStatusCount, error) {
		var c TypeStatusCount
		err := r.Scan(&c.JobType, &c.Status, &c.Rows)
		c.Pipeline = m.Pipelines[c.JobType]
		c.MapsTo = string(m.Statuses[c.Status])
		return c, err
	})
	if err != nil {
		return fmt.Errorf("phase3 plan: count jobs per type and status: %w", err)
	}
	types, statuses := map[string]int64{}, map[string]int64{}
	for _, c := range p.Counts {
		p.JobsRows += c.Rows
		types[c.JobType] += c.Rows
		statuses[c.Status] += c.Rows
	}
	for _, v := range slices.Sorted(maps.Keys(types)) {
		vm := ValueMapping{Value: v, Rows: types[v]}
		if pipeline, err := m.Pipeline(v); err != nil {
			vm.Problem = unknownProblem(err, vm.Rows)
		} else {
			vm.MapsTo = "pipeline " + pipeline
		}
		p.JobTypes = append(p.JobTypes, vm)
	}
	for _, v := range slices.Sorted(maps.Keys(statuses)) {
		vm := ValueMapping{Value: v, Rows: statuses[v]}
		if s, err := m.Status(v); err != nil {
			vm.Problem = unknownProblem(err, vm.Rows)
		} else {
			vm.MapsTo = "status " + string(s)
		}
		p.Statuses = append(p.Statuses, vm)
	}
	for _, list := range [][]ValueMapping{p.JobTypes, p.Statuses} {
		for _, v := range list {
			if v.Problem != "" {
				p.Problems = append(p.Problems, v.Problem)
			}
		}
	}
	return nil
}

func unknownProblem(err error, rows int64) string {
	var unknown *capturespine.UnknownValueError
	if !errors.As(err, &unknown) {
		return err.Error()
	}
	return fmt.Sprintf("%s %q (%d jobs) has no mapping: %s, and pass that file with %s", unknown.Column, unknown.Value, rows, unknown.Fix, MappingFlag)
}

// nativeExecutions are the executions phase 3 did not write.
var nativeExecutions = fmt.Sprintf("SELECT execution_id, backend_task_id FROM executions WHERE backend_task_id IS NOT NULL AND NOT (metadata ? '%s')", metaMigrated)

func findOverlaps(ctx context.Context, q querier) (Overlaps, error) {
	o := Overlaps{Rule: OverlapRule}
	err := q.QueryRow(ctx, `WITH natives AS (`+nativeExecutions+`)
		SELECT count(DISTINCT j.id), count(DISTINCT n.execution_id) FROM jobs AS j JOIN natives AS n ON n.backend_task_id = j.celery_task_id`).
		Scan(&o.Jobs, &o.Executions)
	if err != nil {
		return o, fmt.Errorf("phase3 plan: overlaps: %w", err)
	}
	rows, err := q.Query(ctx, `WITH natives AS (`+nativeExecutions+`)
		SELECT j.id, j.celery_task_id, n.execution_id::text FROM jobs AS j JOIN natives AS n ON n.backend_task_id = j.celery_task_id
		ORDER BY j.id, n.execution_id LIMIT 10`)
	if err != nil {
		return o, fmt.Errorf("phase3 plan: overlaps: %w", err)
	}
	o.Examples, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Overlap])
	if err != nil {
		return o, fmt.Errorf("phase3 plan: overlaps: %w", err)
	}
	return o, nil
}

// measureSample times the mapping over the first jobs, in the plan's
// read-only transaction: it writes nothing.
func measureSample(ctx context.Context, q querier, m capturespine.JobMapping) (Sample, error) {
	var s Sample
	b, err := bindMapping()
	if err != nil {
		return s, err
	}
	pipelines, statuses, err := encodeMapping(m)
	if err != nil {
		return s, err
	}
	// The mapping alone: the overlap lookup needs the index copy builds,
	// and without it would measure a scan of executions per job.
	sql := fmt.Sprintf(`SELECT count(*), COALESCE(sum(pg_column_size(m.*)), 0)
FROM (SELECT %s
      FROM (SELECT * FROM jobs ORDER BY id LIMIT $4) AS j
      CROSS JOIN (SELECT $1::jsonb AS pipelines, $2::jsonb AS statuses, $3::text AS trigger_source) AS %s) AS m`,
		b.Select, mapRef)
	var size int64
	start := time.Now()
	if err := q.QueryRow(ctx, sql, string(pipelines), string(statuses), m.TriggerSource, sampleRows).Scan(&s.Rows, &size); err != nil {
		return s, fmt.Errorf("phase3 plan: measure a sample: %w", err)
	}
	s.Elapsed = time.Since(start)
	if s.Rows > 0 && s.Elapsed > 0 {
		s.RowsPerSecond = float64(s.Rows) / s.Elapsed.Seconds()
	}
	return s, nil
}

func (p *Plan) planSteps(ctx context.Context, q querier, opts Options) error {
	var execBytes int64
	var haveIndex *string
	if err := q.QueryRow(ctx, `SELECT pg_table_size('executions'), (`+selectTaskIDIndex+`)`).Scan(&execBytes, &haveIndex); err != nil {
		return fmt.Errorf("phase3 plan: %w", err)
	}
	b, err := bindMapping()
	if err != nil {
		return err
	}
	p.Steps = append(p.Steps, PlannedStep{Name: "create phase 3's tables (" + strings.Join([]string{MappingTable, CopyTable, ControlTable, RejectsTable}, ", ") + ")",
		Lock: "none on Capture-Spine's tables", Estimate: "milliseconds", SQL: strings.TrimSpace(createTables)})
	idx := PlannedStep{Name: "index executions (backend_task_id), for the overlap lookups",
		Lock: "SHARE UPDATE EXCLUSIVE on executions (CONCURRENTLY): reads and writes continue",
		SQL:  createTaskIDIndex}
	if haveIndex != nil {
		idx.Name, idx.Lock, idx.Estimate, idx.SQL = "index executions (backend_task_id): "+*haveIndex+" exists, nothing to build", "none", "none", ""
	} else {
		idx.Estimate = fmt.Sprintf("%s of executions: %s", humanBytes(execBytes), duration(float64(execBytes)/indexBytesPerSecond))
	}
	p.Steps = append(p.Steps, idx)
	p.Steps = append(p.Steps, PlannedStep{Name: "install the triggers " + triggerName + " (rows) and " + truncateTrigger + " (TRUNCATE) on jobs, before the copy",
		Lock:     fmt.Sprintf("SHARE ROW EXCLUSIVE on jobs for milliseconds (lock_timeout %s, retried)", opts.LockTimeout),
		Estimate: "catalog only", SQL: strings.Join([]string{strings.TrimSpace(triggerFunctionSQL(b)), strings.TrimSpace(createTrigger),
			strings.TrimSpace(createTruncateFunction), strings.TrimSpace(createTruncateTrigger)}, ";\n")})
	p.Steps = append(p.Steps, PlannedStep{
		Name: fmt.Sprintf("copy %d jobs (ids up to %d) into executions, linking %d overlapping jobs", p.JobsRows, p.JobsMaxID, p.Overlaps.Jobs),
		Lock: fmt.Sprintf("no lock on jobs rows; each batch briefly excludes application writes to the uncopied ids of the %d-id buckets it copies (batches of about %s)", 1<<bucketShift, opts.TargetBatch),
		Estimate: fmt.Sprintf("about %s (the mapping ran at %.0f jobs/s over a %d-job sample, read-only; writing costs about %.0fx that)",
			p.Estimate.Round(time.Second), p.Sample.RowsPerSecond, p.Sample.Rows, copyCostFactor),
		SQL: strings.TrimSpace(batchSQL(b, false)) + ";\n" + strings.TrimSpace(checkpointSQL)})
	return nil
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

// Write prints the plan for an operator.
func (p Plan) Write(w io.Writer) {
	fmt.Fprintln(w, "Phase 3 plan: consolidate jobs into executions (read-only; nothing was changed)")
	if p.State != "" && p.State != StateNotStarted {
		fmt.Fprintf(w, "\nPhase 3 state: %s\n", p.State)
	}
	if len(p.Counts) > 0 || p.JobsRows > 0 {
		fmt.Fprintf(w, "\njobs: %d rows (%s), ids up to %d; executions: %d rows\n", p.JobsRows, humanBytes(p.JobsBytes), p.JobsMaxID, p.ExecutionsRows)
		fmt.Fprintln(w, "\nJobs per type and status:")
		for _, c := range p.Counts {
			to := fmt.Sprintf("pipeline %s, status %s", c.Pipeline, c.MapsTo)
			if c.Pipeline == "" || c.MapsTo == "" {
				to = "UNMAPPED"
			}
			fmt.Fprintf(w, "  %-20s %-10s %8d  -> %s\n", c.JobType, c.Status, c.Rows, to)
		}
		for _, list := range []struct {
			title  string
			values []ValueMapping
		}{{"jobs.job_type", p.JobTypes}, {"jobs.status", p.Statuses}} {
			fmt.Fprintf(w, "\n%s:\n", list.title)
			for _, v := range list.values {
				to := v.MapsTo
				if v.Problem != "" {
					to = "UNMAPPED"
				}
				fmt.Fprintf(w, "  %-20q %8d jobs -> %s\n", v.Value, v.Rows, to)
			}
		}
		fmt.Fprintf(w, "\nOverlaps: %d jobs share a Celery task id with %d executions Capture-Spine wrote.\n  Rule: %s.\n",
			p.Overlaps.Jobs, p.Overlaps.Executions, p.Overlaps.Rule)
		for _, o := range p.Overlaps.Examples {
			fmt.Fprintf(w, "  job %d (task %s) -> execution %s\n", o.JobID, o.TaskID, o.ExecutionID)
		}
		if p.Overlaps.Jobs > int64(len(p.Overlaps.Examples)) && len(p.Overlaps.Examples) > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", p.Overlaps.Jobs-int64(len(p.Overlaps.Examples)))
		}
	}
	if len(p.Steps) > 0 {
		fmt.Fprintln(w, "\nCopy would, in order:")
		for i, s := range p.Steps {
			fmt.Fprintf(w, "  %d. %s\n     lock: %s\n     time: %s\n", i+1, s.Name, s.Lock, s.Estimate)
		}
		fmt.Fprintln(w, "  (the statements are in `--output json`)")
	}
	if err := p.Err(); err != nil {
		fmt.Fprintf(w, "\nRefused: %d problem(s) must be fixed before the copy:\n", len(p.Problems))
		for _, pr := range p.Problems {
			fmt.Fprintf(w, "  - %s\n", pr)
		}
		return
	}
	fmt.Fprintln(w, "\nRun `spine-migrate phase3 copy --execute` to copy.")
}
