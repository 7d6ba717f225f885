package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/phases/phase3"
)

// phase3Flags are the options the phase 3 commands share.
type phase3Flags struct {
	execute     bool
	mappingFile string
	lockTimeout time.Duration
	maxAttempts int
	batchSize   int
	targetBatch time.Duration
	maxRate     int
	workers     int
	chunkIDs    int64
	parallel    int
}

func (f *phase3Flags) registerMapping(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.mappingFile, "job-mapping", "", "JSON job mapping file laid over the defaults: "+
		`{"pipelines": {"<job_type>": "<pipeline>"}, "statuses": {"<status>": "<run status>"}, "trigger_source": "..."}`)
}

func (f *phase3Flags) registerLocks(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.lockTimeout, "lock-timeout", 500*time.Millisecond, "give up a lock wait after this long and retry, instead of queueing in front of the application")
	cmd.Flags().IntVar(&f.maxAttempts, "max-attempts", 20, "attempts per step before giving up on lock timeouts")
}

// options turns the flags into phase3.Options, reading the mapping file.
func (a *app) phase3Options(f phase3Flags) (phase3.Options, error) {
	opts := phase3.Options{LockTimeout: f.lockTimeout, MaxAttempts: f.maxAttempts, BatchSize: f.batchSize,
		TargetBatch: f.targetBatch, MaxRate: f.maxRate, CopyWorkers: f.workers, ChunkIDs: f.chunkIDs, VerifyParallel: f.parallel, Logger: a.log}
	if f.mappingFile != "" {
		file, err := os.Open(f.mappingFile)
		if err != nil {
			return opts, fmt.Errorf("--job-mapping: %w", err)
		}
		defer file.Close()
		m, err := capturespine.LoadJobMapping(file)
		if err != nil {
			return opts, fmt.Errorf("--job-mapping %s: %w", f.mappingFile, err)
		}
		opts.Mapping = &m
	}
	return opts, nil
}

func (a *app) phase3Cmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "phase3",
		Short: "Consolidate the legacy jobs table into executions, online: plan, copy, verify, cutover, rollback, finalize, status",
		Long: `Phase 3 copies Capture-Spine's legacy jobs into executions while the Celery tasks
keep writing jobs.

  plan     read-only: jobs per type and status and what each maps to, values the
           mapping does not know (the plan fails and names the fix: --job-mapping
           FILE), overlaps with executions (jobs whose Celery task id an execution
           already carries: linked, not duplicated), an estimate from a measured sample
  copy     installs triggers on jobs first (they carry every later insert, update,
           delete and truncate into executions), then copies in keyset batches up to the
           largest id seen, each committed with its checkpoint: a killed copy resumes
           exactly. Batches adapt to --target-batch; --workers run side by side (and
           commit in id order); --max-rate caps jobs/s; SIGINT
           or SIGTERM stop it after the batch in flight. Prints the plan unless --execute
  pause    pause a running copy within a second (as UPDATE spine_phase3_control
  resume   SET paused = true/false does from any connection)
  verify   compares per-chunk hashes of the mapped jobs with executions from one
           snapshot (on --parallel connections) and names every range that differs;
           --repair --execute re-copies them
  status   progress, rate, ETA, checkpoint, trigger, the state of each step
  cutover  verify, then with writes to jobs stopped by a short lock: jobs renamed to
           jobs_retired, the triggers removed, optionally (--compat-view) a read-only
           view named jobs over executions for legacy readers
  rollback until finalize: back to before phase 3 (jobs renamed back, migrated
           executions deleted by their deterministic ids, links, trigger, index and
           phase 3's tables removed), proven by counting what is left
  finalize drops jobs_retired (--execute --confirm jobs_retired)`,
	}
	cmd.AddCommand(a.phase3PlanCmd(), a.phase3CopyCmd(), a.phase3VerifyCmd(), a.phase3StatusCmd(),
		a.phase3ControlCmd("pause", "Pause a running copy (it takes effect within a second)", true),
		a.phase3ControlCmd("resume", "Resume a paused copy", false),
		a.phase3CutoverCmd(), a.phase3RollbackCmd(), a.phase3FinalizeCmd())
	return cmd
}

func (a *app) phase3PlanCmd() *cobra.Command {
	var f phase3Flags
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what phase3 copy would do (read-only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := a.phase3Options(f)
			if err != nil {
				return err
			}
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			return a.phase3Plan(cmd, pool, opts)
		},
	}
	f.registerMapping(cmd)
	return cmd
}

func (a *app) phase3Plan(cmd *cobra.Command, pool *pgxpool.Pool, opts phase3.Options) error {
	plan, err := phase3.PlanCopy(cmd.Context(), pool, opts)
	if err != nil {
		return err
	}
	if err := a.emit(plan, plan.Write); err != nil {
		return err
	}
	return plan.Err()
}

func (a *app) phase3CopyCmd() *cobra.Command {
	var f phase3Flags
	cmd := &cobra.Command{
		Use:   "copy",
		Short: "Copy jobs into executions online, resumably (plan only, unless --execute)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := a.phase3Options(f)
			if err != nil {
				return err
			}
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			if !f.execute {
				if err := a.phase3Plan(cmd, pool, opts); err != nil {
					return err
				}
				if !a.json() {
					fmt.Fprintln(a.stdout, "\nDry run: nothing was changed. Add --execute to copy.")
				}
				return nil
			}
			bar := a.phase3ProgressBar()
			batches := 0
			opts.Progress = func(p phase3.Progress) {
				bar.show(p)
				// The copy leaves a few KiB of garbage per batch in a
				// process whose live heap stays under 1 MiB, and the Go
				// runtime collects only once the heap reaches 4 MiB: left
				// alone, the resident set would grow with the job count
				// (by 2.7 MiB over 2,000,000 jobs). A collection every
				// copyGCEvery batches (well under a millisecond with this
				// heap) keeps it flat.
				if batches++; batches%copyGCEvery == 0 {
					runtime.GC()
				}
			}
			res, err := phase3.Copy(cmd.Context(), pool, opts)
			bar.end()
			if err != nil && !res.Stopped {
				return err
			}
			if perr := a.emit(res, func(w io.Writer) { writeCopyResult(w, res) }); perr != nil {
				return perr
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&f.execute, "execute", false, "really copy; without it the plan is printed and nothing changes")
	f.registerMapping(cmd)
	f.registerLocks(cmd)
	cmd.Flags().IntVar(&f.batchSize, "batch-size", 2000, "jobs in the first batch; later batches adapt to --target-batch")
	cmd.Flags().DurationVar(&f.targetBatch, "target-batch", 250*time.Millisecond, "how long each batch transaction should take")
	cmd.Flags().IntVar(&f.maxRate, "max-rate", 0, "copy at most this many jobs per second (0: no cap; spine_phase3_control.max_rate overrides it while running)")
	cmd.Flags().IntVar(&f.workers, "workers", 2, "batches in flight at once, each on its own connection (they still commit one at a time, in id order); 1 copies one batch after the other")
	return cmd
}

// copyGCEvery is how many progress reports (one per batch) the copy makes
// between two forced garbage collections.
const copyGCEvery = 32

func writeCopyResult(w io.Writer, r phase3.CopyResult) {
	switch {
	case r.Stopped:
		fmt.Fprintf(w, "Copy stopped cleanly after %d batches at job id %d of %d; run `spine-migrate phase3 copy --execute` to resume.\n", r.Batches, r.LastID, r.MaxID)
	case r.AlreadyDone:
		fmt.Fprintf(w, "The copy had already finished (jobs up to id %d); the trigger keeps executions in step.\n", r.MaxID)
	default:
		resumed := ""
		if r.Resumed {
			resumed = ", resumed from its checkpoint"
		}
		fmt.Fprintf(w, "Copied jobs up to id %d in %s%s.\n", r.MaxID, r.Elapsed.Round(time.Millisecond), resumed)
	}
	if r.Batches > 0 {
		fmt.Fprintf(w, "  %d jobs in %d batches: %d executions written, %d linked to executions Capture-Spine wrote, %d unmapped; the rest the trigger had written\n",
			r.RowsScanned, r.Batches, r.RowsCopied, r.RowsLinked, r.RowsRejected)
		fmt.Fprintf(w, "  batch time p50 %s, p99 %s, max %s; %d lock retries; paused %s\n",
			r.BatchP50.Round(time.Millisecond), r.BatchP99.Round(time.Millisecond), r.BatchMax.Round(time.Millisecond), r.Retries, r.Paused.Round(time.Millisecond))
	}
	if r.OnConflict > 0 {
		fmt.Fprintf(w, "  %d batches ran with ON CONFLICT DO NOTHING: executions phase 3 did not expect were in the way and were kept; `spine-migrate phase3 verify` shows the jobs\n", r.OnConflict)
	}
	if r.TriggerInstalled || r.IndexBuilt {
		fmt.Fprintf(w, "  set up: trigger installed %v, backend_task_id index built %v\n", r.TriggerInstalled, r.IndexBuilt)
	}
	if r.RejectsRemapped > 0 {
		fmt.Fprintf(w, "  %d jobs unmapped before are mapped now\n", r.RejectsRemapped)
	}
	if r.Rejects > 0 {
		fmt.Fprintf(w, "  %d jobs have a type or status the mapping does not know (see %s): map them with %s and copy again\n", r.Rejects, phase3.RejectsTable, phase3.MappingFlag)
	}
	if !r.Stopped {
		fmt.Fprintln(w, "Next: `spine-migrate phase3 verify`.")
	}
}

func (a *app) phase3VerifyCmd() *cobra.Command {
	var f phase3Flags
	var repair bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare executions with the jobs, from one snapshot; --repair re-copies what differs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := a.phase3Options(f)
			if err != nil {
				return err
			}
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			if repair && f.execute {
				res, err := phase3.Repair(cmd.Context(), pool, opts)
				if err != nil {
					return err
				}
				if err := a.emit(res, res.Write); err != nil {
					return err
				}
				return res.After.Err()
			}
			report, err := phase3.Verify(cmd.Context(), pool, opts)
			if err != nil {
				return err
			}
			if err := a.emit(report, report.Write); err != nil {
				return err
			}
			if repair && len(report.Mismatches) > 0 && !a.json() {
				fmt.Fprintf(a.stdout, "\nDry run: --repair would re-copy %d id ranges. Add --execute to repair.\n", len(report.Mismatches))
			}
			return report.Err()
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "re-copy the ranges that differ (with --execute)")
	cmd.Flags().BoolVar(&f.execute, "execute", false, "with --repair: really re-copy; without it the ranges are listed and nothing changes")
	cmd.Flags().Int64Var(&f.chunkIDs, "chunk-ids", 10000, "job ids per compared chunk")
	cmd.Flags().IntVar(&f.parallel, "parallel", 0, "compare on this many connections at once, each a range of job ids and a share of the executions, all from one snapshot (0: min(4, CPUs); 1: one transaction; never more than pool_max_conns allows)")
	f.registerLocks(cmd)
	return cmd
}

func (a *app) phase3ControlCmd(use, short string, pause bool) *cobra.Command {
	var maxRate int
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			var rate *int
			if cmd.Flags().Changed("max-rate") {
				rate = &maxRate
			}
			if err := phase3.SetControl(cmd.Context(), pool, &pause, rate); err != nil {
				return err
			}
			st, err := phase3.Status(cmd.Context(), pool)
			if err != nil {
				return err
			}
			return a.emit(st, func(w io.Writer) {
				verb := map[bool]string{true: "Paused", false: "Resumed"}[pause]
				if !st.Running {
					verb += " (no copy is running now; the next one starts " + map[bool]string{true: "paused", false: "at once"}[pause] + ")"
				}
				fmt.Fprintf(w, "%s. Phase 3: %s\n", verb, st.Summary())
			})
		},
	}
	cmd.Flags().IntVar(&maxRate, "max-rate", 0, "also set the running copy's rate cap, jobs/s (0: back to its --max-rate)")
	return cmd
}

func (a *app) phase3StatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Where phase 3 stands: progress, rate, ETA, checkpoint, trigger, steps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			st, err := phase3.Status(cmd.Context(), pool)
			if err != nil {
				return err
			}
			return a.emit(st, func(w io.Writer) {
				fmt.Fprintf(w, "Phase 3: %s\n", st.Summary())
				for _, s := range st.Steps {
					fmt.Fprintf(w, "  %-22s %s\n", s.Name, s.State)
				}
				if st.Checkpoint.UpdatedAt != nil {
					fmt.Fprintf(w, "  checkpoint updated %s, %d batches, batch size %d\n",
						st.Checkpoint.UpdatedAt.UTC().Format("2006-01-02 15:04:05Z"), st.Checkpoint.Batches, st.Checkpoint.BatchSize)
				}
			})
		},
	}
}

// phase3Bar draws the copy's progress on a terminal; elsewhere (and under
// --output json) the copy's own periodic log lines say the same.
type phase3Bar struct {
	w     io.Writer
	drawn bool
}

func (a *app) phase3ProgressBar() *phase3Bar {
	f, ok := a.stderr.(*os.File)
	if !ok || a.json() {
		return &phase3Bar{}
	}
	if info, err := f.Stat(); err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return &phase3Bar{}
	}
	return &phase3Bar{w: a.stderr}
}

func (b *phase3Bar) show(p phase3.Progress) {
	if b.w == nil {
		return
	}
	pct := 100.0
	if p.Total > 0 {
		pct = min(100, 100*float64(p.Scanned)/float64(p.Total))
	}
	const width = 30
	filled := int(pct / 100 * width)
	state := fmt.Sprintf("%.0f jobs/s  ETA %s", p.Rate, p.ETA.Round(time.Second))
	if p.Paused {
		state = "PAUSED (spine-migrate phase3 resume)"
	}
	fmt.Fprintf(b.w, "\r\033[Kcopy [%s%s] %5.1f%%  %d/%d jobs  %s", strings.Repeat("#", filled), strings.Repeat(".", width-filled), pct, p.Scanned, p.Total, state)
	b.drawn = true
}

func (b *phase3Bar) end() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

func (a *app) phase3CutoverCmd() *cobra.Command {
	var f phase3Flags
	var view bool
	cmd := &cobra.Command{
		Use:   "cutover",
		Short: "Retire jobs: verify, then rename it to jobs_retired under a short lock (plan only, unless --execute)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := a.phase3Options(f)
			if err != nil {
				return err
			}
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			if !f.execute {
				st, err := phase3.Status(cmd.Context(), pool)
				if err != nil {
					return err
				}
				return a.emit(st, func(w io.Writer) {
					fmt.Fprintf(w, "Phase 3: %s\n\nCutover would:\n", st.Summary())
					fmt.Fprintln(w, "  1. verify executions against jobs from one snapshot (refusing on any difference or unmapped job)")
					fmt.Fprintf(w, "  2. LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE (lock_timeout %s, retried): writes to jobs stop for milliseconds\n", f.lockTimeout)
					fmt.Fprintln(w, "  3. ALTER TABLE jobs RENAME TO jobs_retired; DROP TRIGGER spine_phase3_jobs_sync, spine_phase3_jobs_truncate")
					if view {
						fmt.Fprintln(w, "  4. CREATE VIEW jobs: read-only, over executions, for legacy readers")
					}
					fmt.Fprintln(w, "\nDry run: nothing was changed. Add --execute to cut over (rollback can undo it until finalize).")
				})
			}
			res, err := phase3.Cutover(cmd.Context(), pool, opts, view)
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "Cut over: jobs is now jobs_retired (writes to it were stopped for %s); executions alone tracks work.\n", res.LockHeld.Round(time.Millisecond))
				if view {
					fmt.Fprintln(w, "  jobs is a read-only view over executions for legacy readers.")
				}
				fmt.Fprintln(w, "Next: `spine-migrate phase3 finalize --execute --confirm jobs_retired` when nothing needs jobs_retired; `phase3 rollback --execute` undoes the cutover until then.")
			})
		},
	}
	cmd.Flags().BoolVar(&f.execute, "execute", false, "really cut over; without it the steps are printed and nothing changes")
	cmd.Flags().BoolVar(&view, "compat-view", false, "leave a read-only view named jobs over executions for legacy readers")
	f.registerLocks(cmd)
	return cmd
}

func (a *app) phase3RollbackCmd() *cobra.Command {
	var f phase3Flags
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Return the database to before phase 3, until finalize (plan only, unless --execute)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := a.phase3Options(f)
			if err != nil {
				return err
			}
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			if !f.execute {
				st, err := phase3.Status(cmd.Context(), pool)
				if err != nil {
					return err
				}
				return a.emit(st, func(w io.Writer) {
					fmt.Fprintf(w, "Phase 3: %s\n\nRollback would:\n", st.Summary())
					if st.JobsRetired {
						fmt.Fprintln(w, "  - drop the jobs view if there is one and rename jobs_retired back to jobs (changes made since the cutover to migrated executions are lost)")
					}
					fmt.Fprintln(w, "  - drop the triggers spine_phase3_jobs_sync and spine_phase3_jobs_truncate, first")
					fmt.Fprintf(w, "  - delete the migrated executions by their deterministic ids, in keyset batches (%d written by the copy)\n", st.Checkpoint.RowsCopied)
					fmt.Fprintln(w, "  - remove metadata.legacy_job_ids from Capture-Spine's executions")
					fmt.Fprintln(w, "  - drop phase 3's functions, the backend_task_id index and the spine_phase3_* tables, then count what is left")
					fmt.Fprintln(w, "\nDry run: nothing was changed. Add --execute to roll back.")
				})
			}
			res, err := phase3.Rollback(cmd.Context(), pool, opts)
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "Phase 3 rolled back: %d migrated executions deleted, %d executions unlinked", res.Deleted, res.Unlinked)
				if res.Renamed {
					fmt.Fprint(w, ", jobs_retired renamed back to jobs")
				}
				fmt.Fprintf(w, ".\nChecked: %d migrated executions, %d links and %d phase 3 objects left.\n", res.LeftMigrated, res.LeftLinks, len(res.LeftObjects))
			})
		},
	}
	cmd.Flags().BoolVar(&f.execute, "execute", false, "really roll back; without it the steps are printed and nothing changes")
	f.registerLocks(cmd)
	return cmd
}

func (a *app) phase3FinalizeCmd() *cobra.Command {
	var f phase3Flags
	var confirm string
	cmd := &cobra.Command{
		Use:   "finalize",
		Short: "Drop jobs_retired for good (needs --execute --confirm jobs_retired)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := a.phase3Options(f)
			if err != nil {
				return err
			}
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			if !f.execute {
				st, err := phase3.Status(cmd.Context(), pool)
				if err != nil {
					return err
				}
				return a.emit(st, func(w io.Writer) {
					fmt.Fprintf(w, "Phase 3: %s\n\nFinalize would DROP TABLE jobs_retired: it cannot be undone, and phase 3 can no longer be rolled back.\n", st.Summary())
					fmt.Fprintln(w, "\nDry run: nothing was changed. Add --execute --confirm jobs_retired to finalize.")
				})
			}
			if err := phase3.Finalize(cmd.Context(), pool, opts, confirm); err != nil {
				return err
			}
			return a.emit(map[string]string{"state": phase3.StateFinalized}, func(w io.Writer) {
				fmt.Fprintln(w, "Finalized: jobs_retired dropped. executions is the only table that tracks work.")
			})
		},
	}
	cmd.Flags().BoolVar(&f.execute, "execute", false, "really drop jobs_retired")
	cmd.Flags().StringVar(&confirm, "confirm", "", "the name of the table to drop, jobs_retired, to confirm")
	f.registerLocks(cmd)
	return cmd
}
