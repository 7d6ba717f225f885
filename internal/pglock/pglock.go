// Package pglock holds what the online phases share about PostgreSQL locks:
// a session advisory lock that keeps a second operator out rather than
// queueing them, and which errors are lock conflicts a retry can win.
package pglock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrHeld is returned by TryAdvisory when another session holds the lock.
var ErrHeld = errors.New("pglock: advisory lock held by another session")

// TryAdvisory takes the session advisory lock key on a connection of its
// own, held until release. It never waits: ErrHeld when another session has
// it. If the process dies, its session ends and the lock with it.
func TryAdvisory(ctx context.Context, pool *pgxpool.Pool, key int64) (release func(), err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil {
		conn.Release()
		return nil, fmt.Errorf("advisory lock: %w", err)
	}
	if !got {
		conn.Release()
		return nil, ErrHeld
	}
	return func() {
		// A fresh context: the caller's may be cancelled, and an unreleased
		// session lock would outlive this run on a pooled connection.
		unlockCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(unlockCtx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			conn.Conn().Close(unlockCtx) // closing the session drops the lock
		}
		conn.Release()
	}, nil
}

// Conflict reports an error a later attempt can win against the
// application's transactions: lock_timeout expired (55P03), a deadlock was
// broken (40P01) or serialisation failed (40001).
func Conflict(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "55P03", "40P01", "40001":
		return true
	}
	return false
}
