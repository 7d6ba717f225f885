package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/spinecore/spine-go/phases/phase1"
	"github.com/spinecore/spine-go/phases/phase2"
	"github.com/spinecore/spine-go/phases/phase3"
	"github.com/spinecore/spine-go/sqlmigrations"
)

// phase1Summary is phase 1's state in one line.
func phase1Summary(s phase1.State) string {
	switch s.State {
	case phase1.StateNotStarted:
		return "not started (spine-migrate phase1 plan)"
	case phase1.StateSchema:
		return fmt.Sprintf("%s: %d of %d migrations applied (spine-migrate phase1 apply --execute)", s.State, s.MigrationsApplied, s.MigrationsTotal)
	case phase1.StateBackfill:
		return fmt.Sprintf("%s: %d rows scanned, %d updated, at %s (spine-migrate phase1 apply --execute resumes it)",
			s.State, s.Backfill.RowsScanned, s.Backfill.RowsUpdated, s.Backfill.LastExecutionID)
	default:
		return fmt.Sprintf("done: schema aligned, lane trigger %s, backfill finished %s (%d rows updated)",
			map[bool]string{true: "on", false: "MISSING"}[s.LaneTrigger], s.Backfill.FinishedAt.UTC().Format("2006-01-02 15:04:05Z"), s.Backfill.RowsUpdated)
	}
}

// statusView is where the migration stands, across phases.
type statusView struct {
	Database   string         `json:"database"`
	Migrations migrationsView `json:"migrations"`
	Phases     []phaseSummary `json:"phases"`
	Phase1     phase1.State   `json:"phase1"`
	Phase2     phase2.State   `json:"phase2"`
	Phase3     phase3.State   `json:"phase3"`
}

type migrationsView struct {
	Applied int             `json:"applied"`
	Known   int             `json:"known"`
	Steps   []migrationView `json:"steps"`
}

type phaseSummary struct {
	Phase string `json:"phase"`
	State string `json:"state"`
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Where the migration stands: schema migrations and each phase",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			st, err := sqlmigrations.New(pool, sqlmigrations.Options{Logger: a.log}).Status(cmd.Context())
			if err != nil {
				return err
			}
			p1, err := phase1.Status(cmd.Context(), pool)
			if err != nil {
				return err
			}
			// Phase 2's counters and queue lag live in Redis: read them when a
			// broker is configured, else report what PostgreSQL holds.
			p2opts := phase2.StatusOptions{}
			if a.redisURL != "" {
				rdb, _, _, err := a.broker(cmd, &celeryFlags{})
				if err != nil {
					return err
				}
				defer rdb.Close()
				p2opts.Broker = rdb
			}
			p2, err := phase2.Status(cmd.Context(), pool, p2opts)
			if err != nil {
				return err
			}
			p3, err := phase3.Status(cmd.Context(), pool)
			if err != nil {
				return err
			}
			v := statusView{
				Database:   a.describeDatabase(pool.Config()),
				Migrations: migrationsView{Known: len(sqlmigrations.All()), Steps: migrationViews(st)},
				Phase1:     p1, Phase2: p2, Phase3: p3,
				Phases: []phaseSummary{
					{Phase: "phase1", State: phase1Summary(p1)},
					{Phase: "phase2", State: p2.Summary()},
					{Phase: "phase3", State: p3.Summary()},
				},
			}
			for _, s := range st {
				if s.Applied {
					v.Migrations.Applied++
				}
			}
			return a.emit(v, func(w io.Writer) {
				fmt.Fprintf(w, "Database: %s\n\n", v.Database)
				fmt.Fprintf(w, "Schema migrations: %d of %d applied\n", v.Migrations.Applied, v.Migrations.Known)
				printMigrations(w, v.Migrations.Steps)
				fmt.Fprintln(w)
				for _, p := range v.Phases {
					fmt.Fprintf(w, "%s: %s\n", p.Phase, p.State)
				}
			})
		},
	}
}
