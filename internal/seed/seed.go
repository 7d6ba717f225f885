package seed

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Defaults applied to a zero Options field.
const (
	DefaultExecutions         = 1000
	DefaultJobs               = 500
	DefaultEventsPerExecution = 6
)

// Coverage thresholds: below them the first rows cannot cycle through every
// vocabulary value, so Summary may lack some.
const (
	// MinExecutions guarantees every status, lane and trigger source.
	MinExecutions = 42
	// MinJobs guarantees every job status and job type, and every pairing of them.
	MinJobs = 50
)

// DB is what the seeder writes through. *pgx.Conn, *pgxpool.Pool and pgx.Tx satisfy
// it; pass a pgx.Tx to make a seed all-or-nothing.
type DB interface {
	Execer
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

// Options sizes a seed. The zero value seeds DefaultExecutions executions with up to
// DefaultEventsPerExecution events each and DefaultJobs jobs, from seed 0.
type Options struct {
	// Executions is the number of executions rows; 0 means DefaultExecutions, a
	// negative value means none.
	Executions int
	// Jobs is the number of jobs rows; 0 means DefaultJobs, a negative value means none.
	Jobs int
	// Seed selects the pseudo-random sequence. Equal Options give identical rows.
	Seed int64
	// EventsPerExecution caps the execution_events rows per execution (the created
	// and final events are kept when the cap cuts a lifecycle short); 0 means
	// DefaultEventsPerExecution, a negative value means none.
	EventsPerExecution int
}

// Summary counts what a seed wrote, so tests can assert against the database
// without restating the generator's logic.
type Summary struct {
	Executions int
	Events     int
	Jobs       int

	ExecutionsByStatus  map[string]int
	ExecutionsByLane    map[string]int
	ExecutionsByTrigger map[string]int
	EventsByType        map[string]int
	JobsByType          map[string]int
	JobsByStatus        map[string]int

	// ExecutionNulls and JobNulls count SQL NULLs per nullable column, keyed by
	// column name; every nullable column has a key, even at zero.
	ExecutionNulls map[string]int
	JobNulls       map[string]int

	// SharedTaskIDs is the number of jobs whose celery_task_id equals some
	// execution's backend_task_id: the overlaps phase 3 has to report.
	SharedTaskIDs int
	// ActiveFeeds is the number of distinct feed_id values held by a pending or
	// running execution, each exactly once as the unique partial index demands.
	ActiveFeeds int
}

// ErrInvalidOptions is returned (wrapped) for Options the seeder cannot honour.
var ErrInvalidOptions = errors.New("seed: invalid options")

// CaptureSpine fills an empty Capture-Spine database (see LoadSchema) with rows
// derived only from opts, using COPY so a hundred thousand rows take seconds.
// Seeding the same database twice with the same Seed fails on primary keys.
func CaptureSpine(ctx context.Context, db DB, opts Options) (Summary, error) {
	opts, err := opts.resolved()
	if err != nil {
		return Summary{}, err
	}
	g := newGenerator(opts)
	execs := g.executions()
	jobs := g.jobs(execs)

	n, err := db.CopyFrom(ctx, pgx.Identifier{"executions"}, executionColumns,
		pgx.CopyFromSlice(len(execs), func(i int) ([]any, error) { return execs[i].row(), nil }))
	if err != nil {
		return Summary{}, fmt.Errorf("seed executions (%d rows): %w", len(execs), err)
	}
	if int(n) != len(execs) {
		return Summary{}, fmt.Errorf("seed executions: copied %d rows, want %d", n, len(execs))
	}

	events := g.events(execs)
	n, err = db.CopyFrom(ctx, pgx.Identifier{"execution_events"}, eventColumns,
		pgx.CopyFromSlice(len(events), func(i int) ([]any, error) { return events[i].row(), nil }))
	if err != nil {
		return Summary{}, fmt.Errorf("seed execution_events (%d rows): %w", len(events), err)
	}
	if int(n) != len(events) {
		return Summary{}, fmt.Errorf("seed execution_events: copied %d rows, want %d", n, len(events))
	}

	n, err = db.CopyFrom(ctx, pgx.Identifier{"jobs"}, jobColumns,
		pgx.CopyFromSlice(len(jobs), func(i int) ([]any, error) { return jobs[i].row(), nil }))
	if err != nil {
		return Summary{}, fmt.Errorf("seed jobs (%d rows): %w", len(jobs), err)
	}
	if int(n) != len(jobs) {
		return Summary{}, fmt.Errorf("seed jobs: copied %d rows, want %d", n, len(jobs))
	}

	return summarize(execs, events, jobs), nil
}

// resolved applies the documented defaults; counts are plain ints afterwards.
func (o Options) resolved() (Options, error) {
	o.Executions = orDefault(o.Executions, DefaultExecutions)
	o.Jobs = orDefault(o.Jobs, DefaultJobs)
	o.EventsPerExecution = orDefault(o.EventsPerExecution, DefaultEventsPerExecution)
	const limit = 10_000_000 // the generator holds rows in memory
	if o.Executions > limit || o.Jobs > limit {
		return o, fmt.Errorf("%w: at most %d executions and %d jobs, got %d and %d",
			ErrInvalidOptions, limit, limit, o.Executions, o.Jobs)
	}
	return o, nil
}

func orDefault(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

func summarize(execs []execution, events []event, jobs []job) Summary {
	s := Summary{
		Executions:          len(execs),
		Events:              len(events),
		Jobs:                len(jobs),
		ExecutionsByStatus:  map[string]int{},
		ExecutionsByLane:    map[string]int{},
		ExecutionsByTrigger: map[string]int{},
		EventsByType:        map[string]int{},
		JobsByType:          map[string]int{},
		JobsByStatus:        map[string]int{},
		ExecutionNulls:      map[string]int{},
		JobNulls:            map[string]int{},
	}
	for _, c := range executionNullable {
		s.ExecutionNulls[c] = 0
	}
	for _, c := range jobNullable {
		s.JobNulls[c] = 0
	}
	taskIDs := make(map[string]bool)
	for _, e := range execs {
		s.ExecutionsByStatus[e.status]++
		s.ExecutionsByLane[e.lane]++
		s.ExecutionsByTrigger[e.trigger]++
		if e.feedID != nil && (e.status == "pending" || e.status == "running") {
			s.ActiveFeeds++
		}
		if e.taskID != nil {
			taskIDs[*e.taskID] = true
		}
		countNulls(s.ExecutionNulls, executionColumns, e.row())
	}
	for _, ev := range events {
		s.EventsByType[ev.typ]++
	}
	for _, j := range jobs {
		s.JobsByType[j.typ]++
		s.JobsByStatus[j.status]++
		if j.taskID != nil && taskIDs[*j.taskID] {
			s.SharedTaskIDs++
		}
		countNulls(s.JobNulls, jobColumns, j.row())
	}
	return s
}

func countNulls(into map[string]int, columns []string, row []any) {
	for i, v := range row {
		if v == nil {
			into[columns[i]]++
		}
	}
}
