package phase2

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
)

// Phase 2 states, in order.
const (
	StateNotStarted  = "not started"
	StatePassthrough = "passthrough" // routes exist, none shadows or reroutes
	StateShadowing   = "shadowing"   // some route shadows, none reroutes
	StateRerouting   = "rerouting"   // some route reroutes
)

// StatusOptions say where to read what the side-cars counted. The zero value
// reports what PostgreSQL knows (the routes and the runs).
type StatusOptions struct {
	// Broker is Celery's Redis; nil leaves the counts and the lag out.
	Broker redis.UniversalClient
	// Transport is the broker's kombu settings (global_keyprefix, ...).
	Transport celerybridge.TransportOptions
	// Queue is the intercept queue. Default DefaultInterceptQueue.
	Queue string
	// Catalog lists the tasks to report even without a route. Default
	// capturespine.DefaultCatalog().
	Catalog *capturespine.Catalog
}

// State is where phase 2 stands.
type State struct {
	State string      `json:"state"`
	Tasks []TaskState `json:"tasks"`
	// ActiveRuns are shadowed and rerouted runs waiting for their task's
	// result.
	ActiveRuns int64 `json:"active_runs"`
	// Queue is the intercept queue; Lag the messages waiting on it, Parked
	// the rerouted ones held until their eta, DeadLetters the length of the
	// dead-letter list (nil without a broker).
	Queue       string `json:"queue"`
	Lag         *int64 `json:"lag"`
	Parked      *int64 `json:"parked"`
	DeadLetters *int64 `json:"dead_letters"`
}

// TaskState is one task's route and counters.
type TaskState struct {
	Route
	// Routed is false for a catalog task with no route row yet (it is
	// passed through).
	Routed bool   `json:"routed"`
	Counts Counts `json:"counts"`
}

// Status reads phase 2's state, read-only (it creates nothing).
func Status(ctx context.Context, pool *pgxpool.Pool, opts StatusOptions) (State, error) {
	if opts.Queue == "" {
		opts.Queue = DefaultInterceptQueue
	}
	if opts.Catalog == nil {
		opts.Catalog = capturespine.DefaultCatalog()
	}
	st := State{State: StateNotStarted, Queue: opts.Queue}
	exists, err := tablesExist(ctx, pool)
	if err != nil {
		return st, fmt.Errorf("phase2 status: %w", err)
	}
	var routes []Route
	if exists {
		if routes, err = listRoutes(ctx, pool); err != nil {
			return st, fmt.Errorf("phase2 status: %w", err)
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM executions
			WHERE status IN ('queued', 'running') AND executor_name IN ($1, $2)`, ExecutorShadow, ExecutorReroute).Scan(&st.ActiveRuns); err != nil {
			return st, fmt.Errorf("phase2 status: active runs: %w", err)
		}
		st.State = StatePassthrough
	}
	for _, r := range routes {
		st.Tasks = append(st.Tasks, TaskState{Route: r, Routed: true})
		switch {
		case r.Mode == ModeReroute:
			st.State = StateRerouting
		case r.Mode == ModeShadow && st.State != StateRerouting:
			st.State = StateShadowing
		}
	}
	for _, t := range opts.Catalog.Tasks() {
		if !slices.ContainsFunc(routes, func(r Route) bool { return r.Task == t.Task }) {
			st.Tasks = append(st.Tasks, TaskState{Route: NewRoute(t, "")})
		}
	}
	if opts.Broker != nil {
		keys := newBrokerKeys(opts.Transport)
		counts, err := keys.readCounts(ctx, opts.Broker)
		if err != nil {
			return st, fmt.Errorf("phase2 status: %w", err)
		}
		for task := range counts {
			if !slices.ContainsFunc(st.Tasks, func(t TaskState) bool { return t.Task == task }) {
				st.Tasks = append(st.Tasks, TaskState{Route: Route{Task: task}})
			}
		}
		tr := celerybridge.NewTransport(opts.Broker, opts.Transport)
		lag, err := tr.Len(ctx, opts.Queue)
		if err != nil {
			return st, fmt.Errorf("phase2 status: %w", err)
		}
		parked, err := opts.Broker.ZCard(ctx, keys.parked(opts.Queue)).Result()
		if err != nil {
			return st, fmt.Errorf("phase2 status: parked: %w", err)
		}
		dead, err := opts.Broker.LLen(ctx, deadLetterKey(opts.Transport)).Result()
		if err != nil {
			return st, fmt.Errorf("phase2 status: dead letters: %w", err)
		}
		st.Lag, st.Parked, st.DeadLetters = &lag, &parked, &dead
		for i := range st.Tasks {
			st.Tasks[i].Counts = counts[st.Tasks[i].Task]
		}
	}
	slices.SortFunc(st.Tasks, func(a, b TaskState) int { return strings.Compare(a.Task, b.Task) })
	return st, nil
}

// deadLetterKey is the transport's dead-letter list.
func deadLetterKey(o celerybridge.TransportOptions) string {
	if o.DeadLetterKey == "" {
		return o.KeyPrefix + "spine.deadletter"
	}
	return o.KeyPrefix + o.DeadLetterKey
}

// Summary is the state in one line, for `spine-migrate status`.
func (s State) Summary() string {
	if s.State == StateNotStarted {
		return "not started (spine-migrate phase2 celery-config, then phase2 run and phase2 set)"
	}
	var shadow, reroute []string
	for _, t := range s.Tasks {
		switch t.Mode {
		case ModeShadow:
			shadow = append(shadow, fmt.Sprintf("%s %d%%", shortTask(t.Task), t.Percent))
		case ModeReroute:
			reroute = append(reroute, fmt.Sprintf("%s %d%%", shortTask(t.Task), t.Percent))
		}
	}
	var parts []string
	if len(shadow) > 0 {
		parts = append(parts, "shadow "+strings.Join(shadow, ", "))
	}
	if len(reroute) > 0 {
		parts = append(parts, "reroute "+strings.Join(reroute, ", "))
	}
	if len(parts) == 0 {
		parts = append(parts, "every task passed through")
	}
	line := s.State + ": " + strings.Join(parts, "; ")
	line += fmt.Sprintf("; %d runs awaiting results", s.ActiveRuns)
	if s.Lag != nil {
		line += fmt.Sprintf("; intercept queue lag %d", *s.Lag)
	}
	return line
}

// shortTask is the last dotted part of a task name.
func shortTask(task string) string {
	if i := strings.LastIndexByte(task, '.'); i >= 0 && i < len(task)-1 {
		return task[i+1:]
	}
	return task
}

// Write prints the state as `spine-migrate phase2 status` shows it.
func (s State) Write(w io.Writer) {
	fmt.Fprintf(w, "Phase 2: %s\n\n", s.State)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tROUTE\tQUEUE\tPIPELINE\tSEEN\tPASSED\tSHADOWED\tREROUTED\tDEAD-LETTERED\tDUPLICATE")
	for _, t := range s.Tasks {
		route := t.Describe()
		if !t.Routed {
			route = "passthrough (no route row)"
			if t.Pipeline == "" {
				route = "(no route)"
			}
		}
		c := t.Counts
		counts := "-\t-\t-\t-\t-\t-" // no broker, no counts
		if s.Lag != nil {
			counts = fmt.Sprintf("%d\t%d\t%d\t%d\t%d\t%d", c.Seen, c.Passed, c.Shadowed, c.Rerouted, c.DeadLettered, c.Duplicate)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Task, route, or(t.Queue, "-"), or(t.Pipeline, "-"), counts)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRuns awaiting their task's result: %d\n", s.ActiveRuns)
	if s.Lag == nil {
		fmt.Fprintln(w, "Intercept queue: no broker given (--redis-url), counts and lag not shown")
		return
	}
	fmt.Fprintf(w, "Intercept queue %s: %d waiting, %d parked until their eta; dead-letter list: %d\n", s.Queue, *s.Lag, *s.Parked, *s.DeadLetters)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
