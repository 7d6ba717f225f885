package phase1

import (
	"log/slog"
	"time"

	"github.com/spinecore/spine-go/sqlmigrations"
)

// Options configures apply and rollback. The zero value is ready to use.
type Options struct {
	// LockTimeout bounds every lock wait, DDL and backfill batch alike, so
	// phase 1 never queues in front of the application's queries; a timed
	// out step is retried. Default 2s.
	LockTimeout time.Duration
	// MaxAttempts is how often a step that keeps timing out is tried. Default 10.
	MaxAttempts int
	// BatchSize is the rows per backfill transaction. Default 1000.
	BatchSize int
	// Logger receives a record per migration step, retry and (every few
	// seconds) backfill progress. Default slog.Default().
	Logger *slog.Logger
	// Progress, when set, is called after every backfill batch.
	Progress func(BackfillProgress)
}

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func (o Options) migrations() sqlmigrations.Options {
	return sqlmigrations.Options{LockTimeout: o.LockTimeout, MaxAttempts: o.MaxAttempts, Logger: o.Logger}
}
