package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/phases/phase2"
)

// phase2Flags are shared by the phase2 commands that talk to the broker or
// need the catalog.
type phase2Flags struct {
	celery  celeryFlags
	queue   string
	catalog string
}

func (f *phase2Flags) registerQueue(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.queue, "queue", phase2.DefaultInterceptQueue, "the intercept queue the bypass tasks are routed to")
}

func (f *phase2Flags) registerCatalog(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.catalog, "catalog", "", `a JSON catalog file laid over the six default bypass tasks: {"tasks": [{"task", "pipeline", "args"}]}`)
}

func (f *phase2Flags) registerBroker(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.celery.keyPrefix, "key-prefix", "", "kombu's global_keyprefix, if the estate sets one")
	cmd.Flags().DurationVar(&f.celery.visibility, "visibility-timeout", time.Hour, "the broker's visibility_timeout (broker_transport_options)")
}

func (f *phase2Flags) loadCatalog() (*capturespine.Catalog, error) {
	if f.catalog == "" {
		return capturespine.DefaultCatalog(), nil
	}
	file, err := os.Open(f.catalog)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return capturespine.LoadCatalog(file)
}

func (f *phase2Flags) transportOptions(a *app) celerybridge.TransportOptions {
	return celerybridge.TransportOptions{KeyPrefix: f.celery.keyPrefix, VisibilityTimeout: f.celery.visibility, Logger: a.log}
}

func (a *app) phase2Cmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "phase2",
		Short: "Shadow, then gradually reroute, the Celery tasks that bypass the dispatcher",
		Long: `Phase 2 runs a side-car next to the Celery workers. Celery's task_routes send the
bypass tasks to an intercept queue; the side-car consumes it and applies each task's
route, stored in PostgreSQL (phase 1 must be applied):

  passthrough  the message goes to the worker queue unchanged (no tracking)
  shadow       unchanged too, and an execution records the task and follows its result
  reroute      the call runs as a pipeline through the dispatcher; the original task's
               result is written when the run ends, so callers still get their answer

A route's percentage picks the messages that take its mode by a stable hash of the
task id; the rest take the step before (passthrough for shadow, shadow for reroute).

  celery-config  print the task_routes snippet for the Celery app
  run            the side-car (several may run at once)
  set            change tasks' routes; every side-car applies it within seconds
  routes         list the routes
  drain          put every route back to passthrough
  status         per task counts and the intercept queue's lag
  rollback       drop phase 2's tables (after drain)`,
	}
	cmd.AddCommand(a.phase2CeleryConfigCmd(), a.phase2RunCmd(), a.phase2SetCmd(), a.phase2RoutesCmd(),
		a.phase2DrainCmd(), a.phase2StatusCmd(), a.phase2RollbackCmd())
	return cmd
}

func (a *app) phase2CeleryConfigCmd() *cobra.Command {
	var f phase2Flags
	cmd := &cobra.Command{
		Use:   "celery-config [TASK...]",
		Short: "Print the Python task_routes that send the bypass tasks (or those named) to the intercept queue",
		Long: `Prints a Python module fragment defining SPINE_PHASE2_TASK_ROUTES (task name →
{'queue': <intercept queue>}) and task_routes. Load it with app.config_from_object,
or put the router first in the app's existing task_routes. Without TASK arguments
it routes every task of the bypass catalog (--catalog adds or overrides entries).`,
		RunE: func(cmd *cobra.Command, tasks []string) error {
			if len(tasks) == 0 {
				catalog, err := f.loadCatalog()
				if err != nil {
					return err
				}
				for _, t := range catalog.Tasks() {
					tasks = append(tasks, t.Task)
				}
			}
			return phase2.WriteCeleryConfig(a.stdout, f.queue, tasks)
		},
	}
	f.registerQueue(cmd)
	f.registerCatalog(cmd)
	return cmd
}

func (a *app) phase2RunCmd() *cobra.Command {
	var (
		f                                    phase2Flags
		opts                                 phase2.Options
		pickle, listen                       string
		shutdownTimeout, routeRefresh, adopt time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the side-car: consume the intercept queue and apply the routes until SIGTERM",
		Long: `Consumes the intercept queue (every priority list) with an atomic claim and applies
each task's route. Undecodable messages, unknown tasks, mapping failures and (unless
--pickle passthrough) pickle bodies go to the dead-letter list with the reason.
Rerouted messages with an eta are held in Redis until due.

SIGTERM or SIGINT stops the claiming; messages in hand are finished within
--shutdown-timeout or put back at the head of the queue. Serves /metrics
(Prometheus), /healthz and /readyz on --listen.

Each message handled at once may hold a database connection: size the pool to
--concurrency plus a few (pool_max_conns=12 in the URL; pgx's default is the
larger of 4 and the CPU count).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			catalog, err := f.loadCatalog()
			if err != nil {
				return err
			}
			opts.Catalog, opts.Queue, opts.Pickle = catalog, f.queue, phase2.PicklePolicy(pickle)
			if opts.Pickle != phase2.PickleDeadLetter && opts.Pickle != phase2.PicklePassthrough {
				return fmt.Errorf("--pickle %q: use dead-letter or passthrough", pickle)
			}
			opts.Transport = f.transportOptions(a)
			opts.ShutdownTimeout, opts.RouteRefresh, opts.AdoptAfter = shutdownTimeout, routeRefresh, adopt
			opts.Logger = a.log
			pool, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			rdb, _, _, err := a.broker(cmd, &f.celery)
			if err != nil {
				return err
			}
			defer rdb.Close()
			// The start-up must not be cancelled half way by a signal: Run
			// itself watches ctx and shuts down cleanly.
			sc, err := phase2.New(context.WithoutCancel(ctx), pool, rdb, opts)
			if err != nil {
				return err
			}
			var srv *http.Server
			if listen != "" {
				ln, err := net.Listen("tcp", listen)
				if err != nil {
					return fmt.Errorf("--listen %s: %w", listen, err)
				}
				srv = &http.Server{Handler: sc.Handler(), ReadHeaderTimeout: 5 * time.Second}
				go func() { _ = srv.Serve(ln) }()
				a.log.Info("phase2: serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
			}
			err = sc.Run(ctx)
			if srv != nil {
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = srv.Shutdown(sctx)
				cancel()
			}
			return err
		},
	}
	f.registerQueue(cmd)
	f.registerCatalog(cmd)
	f.registerBroker(cmd)
	fl := cmd.Flags()
	fl.StringVar(&opts.WorkerQueue, "worker-queue", "celery", "the worker queue of catalog tasks that have no route row yet")
	fl.IntVar(&opts.Concurrency, "concurrency", 4, "batches handled at once")
	fl.IntVar(&opts.Batch, "batch", 512, "most messages claimed, recorded and handed off together (1: one by one)")
	fl.StringVar(&pickle, "pickle", string(phase2.PickleDeadLetter), "pickle (and yaml, msgpack) bodies: dead-letter, or passthrough to republish them untouched")
	fl.StringVar(&listen, "listen", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz (empty: none)")
	fl.BoolVar(&opts.SpineExecute, "spine-execute", false, "publish rerouted runs as spine.execute.pipeline(name, params) instead of Capture-Spine's run_pipeline(execution_id)")
	fl.StringVar(&opts.RunPipelineTask, "run-pipeline-task", "run_pipeline", "Capture-Spine's pipeline task name")
	fl.DurationVar(&shutdownTimeout, "shutdown-timeout", 30*time.Second, "after SIGTERM, how long messages in hand may take before they are put back")
	fl.DurationVar(&routeRefresh, "route-refresh", 2*time.Second, "re-read the routes at least this often (changes are also notified at once)")
	fl.DurationVar(&adopt, "adopt-after", 30*time.Second, "follow the results of runs older than this that no running side-car follows")
	return cmd
}

// operator names who changed a route.
func (a *app) operator() string {
	if u := a.env("USER"); u != "" {
		return u
	}
	return "spine-migrate"
}

func (a *app) phase2SetCmd() *cobra.Command {
	var (
		f                             phase2Flags
		mode, workerQueue, pipe, lane string
		percent                       int
		all                           bool
	)
	cmd := &cobra.Command{
		Use:   "set TASK... --mode passthrough|shadow|reroute [--percent P]",
		Short: "Change the route of tasks (or --all catalog tasks); running side-cars apply it within seconds",
		Long: `Sets the mode and percentage of each task's route, creating the route (from the
bypass catalog: pipeline, the worker queue given by --queue) when the task has
none. --percent of the task's messages, chosen by a stable hash of the task id,
take the mode; the rest take the step before. Raising the percentage keeps the
messages already on the new path there.`,
		RunE: func(cmd *cobra.Command, tasks []string) error {
			m, err := phase2.ParseMode(mode)
			if err != nil {
				return err
			}
			if percent < 0 || percent > 100 {
				return fmt.Errorf("--percent %d: use 0 to 100", percent)
			}
			catalog, err := f.loadCatalog()
			if err != nil {
				return err
			}
			if all {
				if len(tasks) > 0 {
					return errors.New("give task names or --all, not both")
				}
				for _, t := range catalog.Tasks() {
					tasks = append(tasks, t.Task)
				}
			}
			if len(tasks) == 0 {
				return errors.New("name the tasks to route, or --all for the catalog's")
			}
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			routes, err := phase2.OpenRoutes(cmd.Context(), pool)
			if err != nil {
				return err
			}
			changed := cmd.Flags().Changed
			var out []phase2.Route
			for _, task := range tasks {
				r, ok, err := routes.Get(cmd.Context(), task)
				if err != nil {
					return err
				}
				bt, lookupErr := catalog.Lookup(task)
				known := lookupErr == nil
				if !ok {
					switch {
					case known:
						r = phase2.NewRoute(bt, workerQueue)
					case changed("pipeline"):
						r = phase2.Route{Task: task, Queue: workerQueue, Lane: capturespine.LaneNormal}
					default:
						return fmt.Errorf("%s is not in the bypass catalog: pass --pipeline (and --queue), or --catalog FILE", task)
					}
				}
				if m != phase2.ModePassthrough && !known {
					return fmt.Errorf("%s: only tasks of the bypass catalog can be shadowed or rerouted (their arguments must map to the pipeline's params): add it with --catalog FILE", task)
				}
				r.Mode, r.Percent = m, percent
				if changed("queue") {
					r.Queue = workerQueue
				}
				if changed("pipeline") {
					r.Pipeline = pipe
				}
				if changed("lane") {
					r.Lane = lane
				}
				stored, err := routes.Set(cmd.Context(), r, a.operator())
				if err != nil {
					return err
				}
				out = append(out, stored)
			}
			return a.emit(out, func(w io.Writer) { printRoutes(w, out) })
		},
	}
	f.registerCatalog(cmd)
	fl := cmd.Flags()
	fl.StringVar(&mode, "mode", "", "passthrough, shadow or reroute")
	fl.IntVar(&percent, "percent", 100, "percentage of the task's messages that take the mode")
	fl.StringVar(&workerQueue, "queue", "celery", "the worker queue the task's messages are republished to")
	fl.StringVar(&pipe, "pipeline", "", "the pipeline the task maps to (default: the catalog's)")
	fl.StringVar(&lane, "lane", capturespine.LaneNormal, "the lane of the task's executions (rerouted runs go to its queue)")
	fl.BoolVar(&all, "all", false, "every task of the bypass catalog")
	_ = cmd.MarkFlagRequired("mode")
	return cmd
}

func printRoutes(w io.Writer, routes []phase2.Route) {
	if len(routes) == 0 {
		fmt.Fprintln(w, "No routes: every catalog task is passed through (spine-migrate phase2 set TASK --mode shadow).")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tROUTE\tQUEUE\tPIPELINE\tLANE\tCHANGED")
	for _, r := range routes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s by %s\n", r.Task, r.Describe(), r.Queue, r.Pipeline, r.Lane,
			r.UpdatedAt.UTC().Format("2006-01-02 15:04:05Z"), r.UpdatedBy)
	}
	tw.Flush()
}

// openRoutes connects and opens the route table, for the commands that
// only read or change routes.
func (a *app) openRoutes(ctx context.Context) (*pgxpool.Pool, *phase2.Routes, error) {
	pool, err := a.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	routes, err := phase2.OpenRoutes(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, routes, nil
}

func (a *app) phase2RoutesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "routes",
		Short: "List the tasks' routes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, routes, err := a.openRoutes(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			list, err := routes.List(cmd.Context())
			if err != nil {
				return err
			}
			if list == nil {
				list = []phase2.Route{}
			}
			return a.emit(list, func(w io.Writer) { printRoutes(w, list) })
		},
	}
}

func (a *app) phase2DrainCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "drain",
		Short: "Put every route back to passthrough",
		Long: `Sets every route that shadows or reroutes back to passthrough; running side-cars
apply it within seconds. Runs already recorded keep following their tasks' results,
and rerouted messages held until their eta are released to the workers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, routes, err := a.openRoutes(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			changed, err := routes.Drain(cmd.Context(), a.operator())
			if err != nil {
				return err
			}
			if changed == nil {
				changed = []phase2.Route{}
			}
			return a.emit(map[string]any{"drained": changed}, func(w io.Writer) {
				if len(changed) == 0 {
					fmt.Fprintln(w, "Nothing to drain: every route already passes through.")
					return
				}
				fmt.Fprintf(w, "Drained %d route%s back to passthrough:\n", len(changed), plural(len(changed)))
				for _, r := range changed {
					fmt.Fprintf(w, "  %s\n", r.Task)
				}
			})
		},
	}
}

func (a *app) phase2StatusCmd() *cobra.Command {
	var f phase2Flags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Per task: messages seen, shadowed, rerouted, passed, dead-lettered; the intercept queue's lag",
		Long: `Reads the routes and active runs from PostgreSQL and, when a broker is given
(--redis-url, CELERY_BROKER_URL, REDIS_URL), what the side-cars counted and the
intercept queue's lag. Read-only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			catalog, err := f.loadCatalog()
			if err != nil {
				return err
			}
			opts := phase2.StatusOptions{Queue: f.queue, Catalog: catalog, Transport: f.transportOptions(a)}
			if a.redisURL != "" {
				var rdb *redis.Client
				if rdb, _, _, err = a.broker(cmd, &f.celery); err != nil {
					return err
				}
				defer rdb.Close()
				opts.Broker = rdb
			}
			st, err := phase2.Status(cmd.Context(), pool, opts)
			if err != nil {
				return err
			}
			return a.emit(st, st.Write)
		},
	}
	f.registerQueue(cmd)
	f.registerCatalog(cmd)
	f.registerBroker(cmd)
	return cmd
}

func (a *app) phase2RollbackCmd() *cobra.Command {
	var execute bool
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Drop phase 2's tables (plan only, unless --execute); refuses while a route shadows or reroutes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			var plan phase2.RollbackPlan
			if execute {
				plan, err = phase2.Rollback(cmd.Context(), pool)
			} else {
				plan, err = phase2.PlanRollback(cmd.Context(), pool)
				if err == nil {
					err = plan.Err()
				}
			}
			if err != nil {
				return err
			}
			return a.emit(plan, func(w io.Writer) {
				switch {
				case len(plan.Tables) == 0:
					fmt.Fprintln(w, "Nothing to roll back: phase 2 has no tables.")
				case execute:
					fmt.Fprintf(w, "Phase 2 rolled back: dropped %v. Executions it recorded stay.\n", plan.Tables)
				default:
					fmt.Fprintf(w, "Rollback would drop %v (executions phase 2 recorded stay). Stop the side-cars, then run phase2 rollback --execute.\n", plan.Tables)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&execute, "execute", false, "really drop the tables")
	return cmd
}
