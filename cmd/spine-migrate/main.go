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

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp(os.Stdout, os.Stderr, os.LookupEnv)
	// go-redis reports dial failures on its own logger, straight to stderr;
	// the commands report them as errors, so its lines only matter when
	// debugging, through the scrubbed logger.
	redis.SetLogger(redisLogger{app})
	if err := app.root().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "spine-migrate: "+app.scrub.Scrub(err.Error()))
		os.Exit(1)
	}
}

// redisLogger sends go-redis's internal log lines to the app's logger at
// debug level.
type redisLogger struct{ a *app }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.a.log != nil {
		l.a.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
	}
}
