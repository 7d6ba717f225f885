package sqlmigrations

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// runStep executes one step, retrying with backoff while it hits lock_timeout, and
// returns how many attempts it made.
func (m *Migrator) runStep(ctx context.Context, conn *pgx.Conn, direction string, step Step) (int, error) {
	log := m.log.With("version", step.Version, "name", step.Name, "direction", direction)
	timeout := m.opts.LockTimeout
	if step.NoTx {
		timeout = m.opts.IndexLockTimeout
	}
	log.Info("sqlmigrations: running step", "no_transaction", step.NoTx, "lock_timeout", timeout)
	if err := setLockTimeout(ctx, conn, timeout); err != nil {
		return 0, err
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		var err error
		if step.NoTx {
			err = m.tryNoTx(ctx, conn, direction, step)
		} else {
			err = m.tryTx(ctx, conn, direction, step)
		}
		if err == nil {
			log.Info("sqlmigrations: step done", "attempts", attempt, "elapsed", time.Since(start).Round(time.Millisecond))
			return attempt, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return attempt, err
		}
		if attempt >= m.opts.MaxAttempts {
			return attempt, fmt.Errorf("gave up after %d attempts, each waiting %s for its locks (a long transaction holds a conflicting lock; see pg_locks): %w",
				attempt, timeout, err)
		}
		wait := backoff(attempt)
		log.Warn("sqlmigrations: lock not available, retrying step", "attempt", attempt, "max_attempts", m.opts.MaxAttempts,
			"lock_timeout", timeout, "backoff", wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return attempt, fmt.Errorf("waiting to retry after a lock timeout: %w", errors.Join(ctx.Err(), err))
		case <-time.After(wait):
		}
	}
}

// retryable reports a lock conflict that a later attempt can win: lock_timeout
// expired, or a deadlock with an application transaction (step 0001 locks executions
// and execution_events, which the application may lock in the other order) was broken
// by aborting the step rather than the application.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return IsLockTimeout(err) || (errors.As(err, &pgErr) && pgErr.Code == "40P01")
}

// tryTx runs the step and records it in one transaction: either both happen or
// neither does.
func (m *Migrator) tryTx(ctx context.Context, conn *pgx.Conn, direction string, step Step) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, step.SQL); err != nil {
		return err
	}
	if err := m.record(ctx, tx, direction, step); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// tryNoTx runs a step that cannot run in a transaction block and records it only once
// the statement succeeded. Every such statement is idempotent (IF [NOT] EXISTS), so a
// failure between the two is repaired by running the step again.
func (m *Migrator) tryNoTx(ctx context.Context, conn *pgx.Conn, direction string, step Step) error {
	if direction == DirectionUp {
		for _, name := range concurrentIndexNames(step.SQL) {
			if err := m.dropInvalidIndex(ctx, conn, name); err != nil {
				return err
			}
		}
	}
	if _, err := conn.Exec(ctx, step.SQL); err != nil {
		return err
	}
	return m.record(ctx, conn, direction, step)
}

// dropInvalidIndex drops the index name if it exists but is INVALID, as a failed or
// interrupted CREATE INDEX CONCURRENTLY leaves it; CREATE INDEX ... IF NOT EXISTS would
// otherwise keep it, unusable, and record the step as applied. Only this migrator
// builds these indexes and it holds the migration lock, so an invalid one is never a
// build still in progress.
func (m *Migrator) dropInvalidIndex(ctx context.Context, conn *pgx.Conn, name string) error {
	ident := pgx.Identifier{name}.Sanitize()
	var invalid bool
	err := conn.QueryRow(ctx, "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", ident).Scan(&invalid)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !invalid) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up index %s: %w", ident, err)
	}
	m.log.Warn("sqlmigrations: dropping INVALID index left by a failed concurrent build before rebuilding it", "index", name)
	if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+ident); err != nil {
		return fmt.Errorf("drop invalid index %s: %w", ident, err)
	}
	return nil
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// record inserts (up) or deletes (down) the step's row in the migrations table.
func (m *Migrator) record(ctx context.Context, db execer, direction string, step Step) error {
	var err error
	if direction == DirectionUp {
		mig, _ := m.migration(step.Version)
		_, err = db.Exec(ctx, fmt.Sprintf("INSERT INTO %s (version, name, checksum) VALUES ($1, $2, $3)", m.table),
			mig.Version, mig.Name, mig.Checksum)
	} else {
		_, err = db.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE version = $1", m.table), step.Version)
	}
	if err != nil {
		return fmt.Errorf("record step in %s: %w", m.table, err)
	}
	return nil
}

// backoff returns the pause before attempt+1: exponential from backoffBase, capped at
// backoffMax, with the upper half jittered.
func backoff(attempt int) time.Duration {
	d := backoffMax
	if attempt < 20 {
		d = min(backoffBase<<(attempt-1), backoffMax)
	}
	return d/2 + rand.N(d/2)
}
