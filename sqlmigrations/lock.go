package sqlmigrations

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// advisoryLockKey is the session advisory lock every migrator takes: the first eight
// bytes of sha256("spine-go/sqlmigrations"), so it cannot collide with keys chosen by
// hand and is the same in every build.
var advisoryLockKey = func() int64 {
	sum := sha256.Sum256([]byte("spine-go/sqlmigrations"))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}()

const (
	tryLockSQL = `SELECT pg_try_advisory_lock($1)`
	unlockSQL  = `SELECT pg_advisory_unlock($1)`

	// A bigint advisory key appears in pg_locks split into classid (high 32 bits) and
	// objid (low 32 bits), with objsubid 1.
	lockHolderSQL = `
SELECT l.pid, coalesce(a.application_name, '')
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = $1 AND l.objid::bigint = $2
LIMIT 1`
)

// lockSession takes the migration advisory lock on conn, polling until it is free,
// Options.LockWait has passed or ctx ends. The lock belongs to the session: whatever
// happens to the steps, unlockSession (or the session's end) releases it.
func lockSession(ctx context.Context, conn *pgx.Conn, wait time.Duration, log *slog.Logger) error {
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()

	hi, lo := int64(uint64(advisoryLockKey)>>32), int64(uint32(advisoryLockKey))
	var holder LockHeldError
	start, waited := time.Now(), false
	for {
		var ok bool
		if err := conn.QueryRow(waitCtx, tryLockSQL, advisoryLockKey).Scan(&ok); err != nil {
			if waitCtx.Err() != nil {
				holder.Err = waitCtx.Err()
				return &holder
			}
			return fmt.Errorf("sqlmigrations: take migration lock: %w", err)
		}
		if ok {
			if waited {
				log.Info("sqlmigrations: got migration lock", "waited", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}

		previous := holder.PID
		err := conn.QueryRow(waitCtx, lockHolderSQL, hi, lo).Scan(&holder.PID, &holder.ApplicationName)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // released meanwhile: try again at once
			holder.PID, holder.ApplicationName = 0, ""
			continue
		case err != nil && waitCtx.Err() != nil:
			holder.Err = waitCtx.Err()
			return &holder
		case err != nil:
			return fmt.Errorf("sqlmigrations: look up migration lock holder: %w", err)
		}
		waited = true
		if holder.PID != previous {
			log.Info("sqlmigrations: waiting for migration lock", "holder_pid", holder.PID,
				"holder_application_name", holder.ApplicationName, "lock_wait", wait)
		}

		select {
		case <-waitCtx.Done():
			holder.Err = waitCtx.Err()
			return &holder
		case <-time.After(lockPollInterval):
		}
	}
}

// unlockSession releases the advisory lock. It runs on cleanup, so it ignores the
// caller's cancellation; if the lock cannot be released the connection is closed,
// which ends the session and releases the lock with it.
func unlockSession(ctx context.Context, conn *pgx.Conn, log *slog.Logger) {
	if conn.IsClosed() {
		return // the session ended, and its advisory locks with it
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var released bool
	err := conn.QueryRow(ctx, unlockSQL, advisoryLockKey).Scan(&released)
	if err == nil && released {
		return
	}
	log.Warn("sqlmigrations: could not release migration lock; closing the session instead", "err", err, "released", released)
	_ = conn.Close(ctx)
}
