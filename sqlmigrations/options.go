package sqlmigrations

import (
	"log/slog"
	"time"
)

// Options configures a Migrator. The zero value is ready to use.
type Options struct {
	// LockTimeout bounds how long any DDL statement waits for a table lock before it
	// gives up and is retried, so that it never queues in front of the application's
	// queries for long. Default 2s.
	LockTimeout time.Duration

	// IndexLockTimeout replaces LockTimeout for the steps that build or drop an
	// index CONCURRENTLY. Such a build waits for every transaction older than it, so
	// one long report query would time out a short LockTimeout on every attempt;
	// and waiting is harmless there: its SHARE UPDATE EXCLUSIVE lock does not
	// conflict with the application's reads and writes, queued or granted.
	// Default 5m.
	IndexLockTimeout time.Duration

	// MaxAttempts is how often a step is tried when it keeps hitting LockTimeout.
	// Default 10.
	MaxAttempts int

	// LockWait bounds how long Up and Down wait for another migrator to release the
	// migration advisory lock (the context may end the wait sooner). Default 1m.
	LockWait time.Duration

	// Logger receives one record per step and per retry. Default slog.Default().
	Logger *slog.Logger

	// Table is the migrations table, resolved through search_path. Default
	// spine_schema_migrations.
	Table string
}

const (
	defaultLockTimeout      = 2 * time.Second
	defaultIndexLockTimeout = 5 * time.Minute
	defaultMaxAttempts      = 10
	defaultLockWait         = time.Minute
	defaultTable            = "spine_schema_migrations"

	// Backoff between attempts of a step that hit lock_timeout: base·2^(n-1), capped,
	// with jitter so that several waiting migrators (or retries) do not line up.
	backoffBase = 200 * time.Millisecond
	backoffMax  = 10 * time.Second

	// lockPollInterval is how often a waiting migrator retries pg_try_advisory_lock.
	lockPollInterval = 250 * time.Millisecond
)

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.IndexLockTimeout <= 0 {
		o.IndexLockTimeout = defaultIndexLockTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = defaultMaxAttempts
	}
	if o.LockWait <= 0 {
		o.LockWait = defaultLockWait
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Table == "" {
		o.Table = defaultTable
	}
	return o
}
