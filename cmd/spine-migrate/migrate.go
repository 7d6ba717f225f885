package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinecore/spine-go/sqlmigrations"
)

// migrateFlags are the options shared by migrate up and down.
type migrateFlags struct {
	target           int
	lockTimeout      time.Duration
	indexLockTimeout time.Duration
	maxAttempts      int
	lockWait         time.Duration
}

func (f *migrateFlags) register(cmd *cobra.Command, targetHelp string) {
	cmd.Flags().IntVar(&f.target, "target-version", 0, targetHelp)
	cmd.Flags().DurationVar(&f.lockTimeout, "lock-timeout", 2*time.Second, "give up a lock wait after this long and retry, instead of queueing behind a long transaction")
	cmd.Flags().DurationVar(&f.indexLockTimeout, "index-lock-timeout", 5*time.Minute, "lock wait for CREATE/DROP INDEX CONCURRENTLY steps, which wait for older transactions without blocking the application")
	cmd.Flags().IntVar(&f.maxAttempts, "max-attempts", 10, "attempts per step before giving up on lock timeouts")
	cmd.Flags().DurationVar(&f.lockWait, "lock-wait", time.Minute, "how long to wait for another spine-migrate holding the migration lock")
}

func (a *app) migrator(cmd *cobra.Command, f migrateFlags) (*sqlmigrations.Migrator, func(), error) {
	pool, err := a.connect(cmd.Context())
	if err != nil {
		return nil, nil, err
	}
	m := sqlmigrations.New(pool, sqlmigrations.Options{
		LockTimeout: f.lockTimeout, IndexLockTimeout: f.indexLockTimeout, MaxAttempts: f.maxAttempts,
		LockWait: f.lockWait, Logger: a.log,
	})
	return m, pool.Close, nil
}

func (a *app) migrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, revert or list the schema migrations (the columns run tracking needs)",
		Long: `The schema migrations extend Capture-Spine's executions and execution_events
tables with the columns a spine-core RunRecord needs. Every step is online-safe:
constant defaults, constraints NOT VALID then VALIDATE, indexes CONCURRENTLY, all
under lock_timeout with retries, so the application keeps reading and writing.`,
	}
	cmd.AddCommand(a.migrateUpCmd(), a.migrateDownCmd(), a.migrateStatusCmd())
	return cmd
}

// planView is a Plan as printed and as JSON.
type planView struct {
	Direction string     `json:"direction"`
	DryRun    bool       `json:"dry_run"`
	Steps     []stepView `json:"steps"`
}

type stepView struct {
	Version       int    `json:"version"`
	Name          string `json:"name"`
	NoTransaction bool   `json:"no_transaction"`
	SQL           string `json:"sql,omitempty"`
	Attempts      int    `json:"attempts,omitempty"`
}

func viewPlan(p sqlmigrations.Plan, dryRun bool) planView {
	v := planView{Direction: p.Direction, DryRun: dryRun, Steps: []stepView{}}
	for _, s := range p.Steps {
		v.Steps = append(v.Steps, stepView{Version: s.Version, Name: s.Name, NoTransaction: s.NoTx, SQL: s.SQL})
	}
	return v
}

func (a *app) printPlan(w io.Writer, v planView) {
	if len(v.Steps) == 0 {
		fmt.Fprintf(w, "Nothing to do: the database is already at the target (%s).\n", v.Direction)
		return
	}
	fmt.Fprintf(w, "Plan (%s, %d steps):\n", v.Direction, len(v.Steps))
	for _, s := range v.Steps {
		tx := "in a transaction"
		if s.NoTransaction {
			tx = "outside a transaction"
		}
		fmt.Fprintf(w, "\n-- %04d %s (%s)\n%s\n", s.Version, s.Name, tx, indent(s.SQL))
	}
}

func (a *app) migrateUpCmd() *cobra.Command {
	var f migrateFlags
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Apply the pending migrations (additive; --dry-run shows the SQL instead)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, closePool, err := a.migrator(cmd, f)
			if err != nil {
				return err
			}
			defer closePool()
			plan, err := m.PlanUp(cmd.Context(), f.target)
			if err != nil {
				return err
			}
			if dryRun {
				v := viewPlan(plan, true)
				return a.emit(v, func(w io.Writer) {
					a.printPlan(w, v)
					if len(v.Steps) > 0 {
						fmt.Fprintln(w, "\nDry run: nothing was changed. Run without --dry-run to apply.")
					}
				})
			}
			res, err := m.Up(cmd.Context(), f.target)
			if err != nil {
				return fmt.Errorf("migrate up: %w", err)
			}
			return a.emitResult("up", res)
		},
	}
	f.register(cmd, "apply up to this version (default: the latest)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the steps and their SQL without applying them")
	return cmd
}

func (a *app) migrateDownCmd() *cobra.Command {
	var f migrateFlags
	var execute, all bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Revert migrations, one step by default (destructive: needs --execute)",
		Long: `Reverts applied migrations, newest first: one step by default, down to
--target-version, or every step with --all. Reverting drops the columns the
migrations added, with the data in them, so without --execute this only prints
the plan.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			target := sqlmigrations.OneStepDown
			switch {
			case all && cmd.Flags().Changed("target-version"):
				return fmt.Errorf("--all and --target-version exclude each other")
			case all:
				target = sqlmigrations.AllTheWayDown
			case cmd.Flags().Changed("target-version"):
				if f.target <= 0 {
					return fmt.Errorf("--target-version must be a version ≥ 1 to stay at (use --all to revert everything)")
				}
				target = f.target
			}
			m, closePool, err := a.migrator(cmd, f)
			if err != nil {
				return err
			}
			defer closePool()
			if !execute {
				plan, err := m.PlanDown(cmd.Context(), target)
				if err != nil {
					return err
				}
				v := viewPlan(plan, true)
				return a.emit(v, func(w io.Writer) {
					a.printPlan(w, v)
					if len(v.Steps) > 0 {
						fmt.Fprintln(w, "\nDry run: nothing was changed. Reverting drops columns and their data; add --execute to do it.")
					}
				})
			}
			res, err := m.Down(cmd.Context(), target)
			if err != nil {
				return fmt.Errorf("migrate down: %w", err)
			}
			return a.emitResult("down", res)
		},
	}
	f.register(cmd, "revert down to (and keeping) this version")
	cmd.Flags().BoolVar(&execute, "execute", false, "really revert (default: print the plan only)")
	cmd.Flags().BoolVar(&all, "all", false, "revert every applied migration")
	return cmd
}

func (a *app) emitResult(direction string, res sqlmigrations.Result) error {
	type resultView struct {
		Direction      string     `json:"direction"`
		Applied        []stepView `json:"applied"`
		ElapsedSeconds float64    `json:"elapsed_seconds"`
	}
	v := resultView{Direction: direction, Applied: []stepView{}, ElapsedSeconds: res.Elapsed.Seconds()}
	for _, s := range res.Applied {
		v.Applied = append(v.Applied, stepView{Version: s.Version, Name: s.Name, NoTransaction: s.NoTx, Attempts: res.Attempts[s.Version]})
	}
	return a.emit(v, func(w io.Writer) {
		if len(v.Applied) == 0 {
			fmt.Fprintln(w, "Nothing to do: the database is already at the target.")
			return
		}
		verb := map[string]string{"up": "Applied", "down": "Reverted"}[direction]
		for _, s := range v.Applied {
			fmt.Fprintf(w, "%s %04d %s (%d attempt%s)\n", verb, s.Version, s.Name, s.Attempts, plural(s.Attempts))
		}
		fmt.Fprintf(w, "%d step%s in %s.\n", len(v.Applied), plural(len(v.Applied)), res.Elapsed.Round(time.Millisecond))
	})
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (a *app) migrateStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "List the migrations and which are applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, closePool, err := a.migrator(cmd, migrateFlags{})
			if err != nil {
				return err
			}
			defer closePool()
			st, err := m.Status(cmd.Context())
			if err != nil {
				return err
			}
			views := migrationViews(st)
			return a.emit(views, func(w io.Writer) { printMigrations(w, views) })
		},
	}
}

type migrationView struct {
	Version          int        `json:"version"`
	Name             string     `json:"name"`
	Applied          bool       `json:"applied"`
	AppliedAt        *time.Time `json:"applied_at"`
	ChecksumMismatch bool       `json:"checksum_mismatch"`
	Unknown          bool       `json:"unknown"`
}

func migrationViews(st []sqlmigrations.MigrationStatus) []migrationView {
	out := make([]migrationView, 0, len(st))
	for _, s := range st {
		v := migrationView{Version: s.Version, Name: s.Name, Applied: s.Applied, ChecksumMismatch: s.ChecksumMismatch, Unknown: s.Unknown}
		if s.Applied {
			t := s.AppliedAt.UTC()
			v.AppliedAt = &t
		}
		out = append(out, v)
	}
	return out
}

func printMigrations(w io.Writer, views []migrationView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATE\tAPPLIED AT")
	for _, v := range views {
		state, at := "pending", ""
		if v.Applied {
			state, at = "applied", v.AppliedAt.Format(time.RFC3339)
		}
		switch {
		case v.ChecksumMismatch:
			state += " (file changed since applied!)"
		case v.Unknown:
			state += " (unknown to this build: newer spine-migrate?)"
		}
		fmt.Fprintf(tw, "%04d\t%s\t%s\t%s\n", v.Version, v.Name, state, at)
	}
	tw.Flush()
}
