package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/spinecore/spine-go/internal/redact"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = ""

// app holds what every command shares: resolved global flags, output and
// the scrubber that keeps secrets out of both.
type app struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	scrub          *redact.Scrubber

	databaseURL string
	redisURL    string
	output      string
	logLevel    string
	log         *slog.Logger
}

func newApp(stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) *app {
	return &app{stdout: stdout, stderr: stderr, lookupEnv: lookupEnv, scrub: &redact.Scrubber{}}
}

func (a *app) env(name string) string {
	v, _ := a.lookupEnv(name)
	return v
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "spine-migrate",
		Short: "Move Capture-Spine and EntitySpine onto spine-core's run tracking, online and phase by phase",
		Long: `spine-migrate migrates a live Capture-Spine estate (PostgreSQL + Redis + Celery)
onto spine-core's unified run tracking without downtime.

Every phase has a read-only plan; nothing destructive runs without --execute.

Connection settings come from flags, then the environment:
  database  --database-url, DATABASE_URL, or the libpq variables (PGHOST, PGPORT,
            PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, ...)
  redis     --redis-url, CELERY_BROKER_URL, REDIS_URL
Passwords are never printed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.resolveGlobals()
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.databaseURL, "database-url", "", "PostgreSQL connection URL (default: $DATABASE_URL, then PG* variables)")
	f.StringVar(&a.redisURL, "redis-url", "", "Redis broker URL (default: $CELERY_BROKER_URL, then $REDIS_URL)")
	f.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	f.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(a.versionCmd(), a.migrateCmd(), a.statusCmd(), a.celeryCmd(), a.phase1Cmd(), a.phase2Cmd(), a.phase3Cmd())
	return root
}

func (a *app) resolveGlobals() error {
	if a.databaseURL == "" {
		a.databaseURL = a.env("DATABASE_URL")
	}
	if a.redisURL == "" {
		a.redisURL = a.env("CELERY_BROKER_URL")
	}
	if a.redisURL == "" {
		a.redisURL = a.env("REDIS_URL")
	}
	a.scrub.AddURL(a.databaseURL)
	a.scrub.AddURL(a.redisURL)
	a.scrub.Add(a.env("PGPASSWORD"))
	if a.output != "text" && a.output != "json" {
		return fmt.Errorf("--output %q: use text or json", a.output)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", a.logLevel)
	}
	a.log = slog.New(a.scrub.Handler(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level})))
	return nil
}

// connect opens a pool on the target database. It refuses to guess: with no
// URL and no PGHOST / PGDATABASE it would silently use libpq's defaults.
func (a *app) connect(ctx context.Context) (*pgxpool.Pool, error) {
	if a.databaseURL == "" && a.env("PGHOST") == "" && a.env("PGDATABASE") == "" && a.env("PGSERVICE") == "" {
		return nil, errors.New("no database given: pass --database-url, or set DATABASE_URL or the PG* variables (PGHOST, PGDATABASE, ...)")
	}
	cfg, err := pgxpool.ParseConfig(a.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("database URL %s: %w", redact.URL(a.databaseURL), err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		// So a DBA watching pg_stat_activity sees who holds what.
		cfg.ConnConfig.RuntimeParams["application_name"] = "spine-migrate"
	}
	a.scrub.Add(cfg.ConnConfig.Password)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", a.describeDatabase(cfg), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", a.describeDatabase(cfg), err)
	}
	return pool, nil
}

func (a *app) describeDatabase(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("postgres://%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

func (a *app) json() bool { return a.output == "json" }

// emit prints v as one JSON document under --output json, else calls text.
func (a *app) emit(v any, text func(w io.Writer)) error {
	if a.json() {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.stdout)
	return nil
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if dirty {
				rev += "-dirty"
			}
			return "dev-" + rev
		}
		if info.Main.Version != "" && info.Main.Version != "(devel)" {
			return info.Main.Version
		}
	}
	return "dev"
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of spine-migrate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			return a.emit(map[string]string{"version": v}, func(w io.Writer) { fmt.Fprintln(w, "spine-migrate "+v) })
		},
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
