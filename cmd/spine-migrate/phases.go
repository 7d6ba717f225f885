package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// notBuilt is a phase command that exists so the command tree and its help
// show the whole migration path, and says plainly that it is not there yet.
func notBuilt(use, short, long, issue string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short + " [not built yet]",
		Long:  long + "\n\nNot built yet: this phase is tracked in issue " + issue + ". Running it does nothing and exits with an error.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("%s is not built yet (issue %s); nothing was done", use, issue)
		},
	}
}

func (a *app) phase2Cmd() *cobra.Command {
	return notBuilt("phase2", "Shadow, then gradually reroute, the Celery tasks that bypass the dispatcher",
		`Phase 2 runs a side-car next to the Celery workers. It consumes an intercept queue
that Celery's task_routes points the six bypass tasks at, and applies a per-task route
(passthrough, shadow or reroute, with a percentage) stored in PostgreSQL: celery-config,
set, routes, run, drain, status.`, "#7")
}

func (a *app) phase3Cmd() *cobra.Command {
	return notBuilt("phase3", "Consolidate the legacy jobs table into executions, online",
		`Phase 3 copies jobs into executions in resumable keyset batches while the
application keeps writing (a trigger carries the changes), verifies with per-chunk
hashes, cuts over by renaming jobs to jobs_retired, and can roll back until finalize:
plan, copy, verify, cutover, rollback, finalize, status.`, "#6")
}
