package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinecore/spine-go/phases/phase1"
)

// phase1Flags are the options of phase1 apply and rollback.
type phase1Flags struct {
	execute     bool
	lockTimeout time.Duration
	maxAttempts int
	batchSize   int
	discard     bool
}

func (f *phase1Flags) register(cmd *cobra.Command, verb string) {
	cmd.Flags().BoolVar(&f.execute, "execute", false, "really "+verb+"; without it the plan is printed and nothing changes")
	cmd.Flags().DurationVar(&f.lockTimeout, "lock-timeout", 2*time.Second, "give up a lock wait after this long and retry, instead of queueing in front of the application")
	cmd.Flags().IntVar(&f.maxAttempts, "max-attempts", 10, "attempts per step before giving up on lock timeouts")
}

func (a *app) phase1Options(f phase1Flags) phase1.Options {
	return phase1.Options{LockTimeout: f.lockTimeout, MaxAttempts: f.maxAttempts, BatchSize: f.batchSize, Logger: a.log}
}

func (a *app) phase1Cmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "phase1",
		Short: "Align Capture-Spine's schema with spine-core online: plan, apply, verify, rollback",
		Long: `Phase 1 makes the live executions table able to hold every RunRecord without
breaking the Python code that writes it.

  plan       read-only: the tables, the distinct status/lane/trigger_source values and
             how each maps, and what apply would run, statement by statement, with the
             lock each takes and an estimate; refuses a database it does not recognise
             or values it cannot map
  apply      the schema migrations (online: lock_timeout and retries, indexes
             CONCURRENTLY, a trigger that gives rows Capture-Spine inserts their
             priority), then the priority backfill in keyset batches, resumable;
             prints the plan unless --execute
  verify     every row reads back as a valid RunRecord through the Postgres ledger
  rollback   removes what phase 1 added; prints the plan unless --execute`,
	}
	cmd.AddCommand(a.phase1PlanCmd(), a.phase1ApplyCmd(), a.phase1VerifyCmd(), a.phase1RollbackCmd())
	return cmd
}

func (a *app) phase1PlanCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plan",
		Short: "Show what phase1 apply would do (read-only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			plan, err := phase1.PlanApply(cmd.Context(), pool, phase1.Options{Logger: a.log})
			if err != nil {
				return err
			}
			if err := a.emit(plan, plan.Write); err != nil {
				return err
			}
			return plan.Err()
		},
	}
}

func (a *app) phase1ApplyCmd() *cobra.Command {
	var f phase1Flags
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply phase 1 online (plan only, unless --execute)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			opts := a.phase1Options(f)
			if !f.execute {
				plan, err := phase1.PlanApply(cmd.Context(), pool, opts)
				if err != nil {
					return err
				}
				if err := a.emit(plan, plan.Write); err != nil {
					return err
				}
				if err := plan.Err(); err != nil {
					return err
				}
				if !a.json() {
					fmt.Fprintln(a.stdout, "\nDry run: nothing was changed. Add --execute to apply.")
				}
				return nil
			}
			opts.Progress = a.progressPrinter()
			res, err := phase1.Apply(cmd.Context(), pool, opts)
			a.endProgress()
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "Phase 1 applied in %s.\n", res.Elapsed.Round(time.Millisecond))
				fmt.Fprintf(w, "  migrations applied: %v\n", res.Migrations)
				switch b := res.Backfill; {
				case b.AlreadyDone:
					fmt.Fprintln(w, "  backfill: already done")
				default:
					resumed := ""
					if b.Resumed {
						resumed = " (resumed from its checkpoint)"
					}
					fmt.Fprintf(w, "  backfill%s: %d rows scanned, %d updated, %d batches, %d lock retries\n", resumed, b.RowsScanned, b.RowsUpdated, b.Batches, b.Retries)
				}
				fmt.Fprintln(w, "Next: `spine-migrate phase1 verify`.")
			})
		},
	}
	f.register(cmd, "apply")
	cmd.Flags().IntVar(&f.batchSize, "batch-size", 1000, "rows per backfill transaction")
	return cmd
}

func (a *app) phase1VerifyCmd() *cobra.Command {
	var batchSize, maxFailures int
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that every executions row reads back as a valid RunRecord (read-only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			report, err := phase1.Verify(cmd.Context(), pool, phase1.VerifyOptions{BatchSize: batchSize, MaxFailures: maxFailures})
			if err != nil {
				return err
			}
			if err := a.emit(report, report.Write); err != nil {
				return err
			}
			if !report.OK() {
				return fmt.Errorf("phase1 verify: %d of %d rows do not read back as valid RunRecords", report.RowsFailed, report.RowsChecked)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&batchSize, "batch-size", 1000, "rows per read")
	cmd.Flags().IntVar(&maxFailures, "max-failures", 100, "failing rows to list (all are counted)")
	return cmd
}

func (a *app) phase1RollbackCmd() *cobra.Command {
	var f phase1Flags
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Remove what phase 1 added (plan only, unless --execute)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			opts := a.phase1Options(f)
			if !f.execute {
				plan, err := phase1.PlanRollback(cmd.Context(), pool, opts)
				if err != nil {
					return err
				}
				if err := a.emit(plan, func(w io.Writer) { plan.Write(w, f.discard) }); err != nil {
					return err
				}
				return plan.Err(f.discard)
			}
			res, err := phase1.Rollback(cmd.Context(), pool, opts, f.discard)
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "Phase 1 rolled back: migrations %v reverted; the schema is Capture-Spine's own again.\n", res.Reverted)
			})
		},
	}
	f.register(cmd, "roll back")
	cmd.Flags().BoolVar(&f.discard, "discard-run-data", false, "roll back even though rows hold RunRecord data only phase 1's columns keep (it is dropped)")
	return cmd
}

// progressPrinter draws a progress line with rate and ETA on a terminal;
// elsewhere the backfill's own periodic log lines say the same.
func (a *app) progressPrinter() func(phase1.BackfillProgress) {
	f, ok := a.stderr.(*os.File)
	if !ok || a.json() {
		return nil
	}
	if info, err := f.Stat(); err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return func(p phase1.BackfillProgress) {
		pct := 100.0
		if p.Total > 0 {
			pct = min(100, 100*float64(p.Scanned)/float64(p.Total))
		}
		fmt.Fprintf(a.stderr, "\r\033[Kbackfill %5.1f%%  %d/%d rows  %d updated  %.0f rows/s  ETA %s",
			pct, p.Scanned, p.Total, p.Updated, p.Rate, p.ETA.Round(time.Second))
	}
}

func (a *app) endProgress() {
	if a.progressPrinter() != nil {
		fmt.Fprintln(a.stderr)
	}
}
