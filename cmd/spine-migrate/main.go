// Command spine-migrate moves Capture-Spine and EntitySpine onto spine-core's
// unified run tracking, one online phase at a time:
//
//	spine-migrate migrate up|down|status   the schema migrations
//	spine-migrate phase1|phase2|phase3     the migration phases
//	spine-migrate status                   where the migration stands
//
// It only wires packages together and parses flags: the work is done in
// core, sqlmigrations, the adapters and celerybridge.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp(os.Stdout, os.Stderr, os.LookupEnv)
	if err := app.root().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "spine-migrate: "+app.scrub.Scrub(err.Error()))
		os.Exit(1)
	}
}
