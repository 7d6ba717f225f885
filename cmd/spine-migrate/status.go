package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/spinecore/spine-go/sqlmigrations"
)

// statusView is where the migration stands, across phases.
type statusView struct {
	Database   string         `json:"database"`
	Migrations migrationsView `json:"migrations"`
	Phases     []phaseSummary `json:"phases"`
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
			v := statusView{
				Database:   a.describeDatabase(pool.Config()),
				Migrations: migrationsView{Known: len(sqlmigrations.All()), Steps: migrationViews(st)},
				Phases: []phaseSummary{
					{Phase: "phase1", State: "not built yet (issue #5)"},
					{Phase: "phase2", State: "not built yet (issue #7)"},
					{Phase: "phase3", State: "not built yet (issue #6)"},
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
