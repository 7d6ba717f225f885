package sqlmigrations

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotCaptureSpine is returned when the database has no executions table: the
// migrations extend Capture-Spine's schema and have nothing to extend.
var ErrNotCaptureSpine = errors.New("sqlmigrations: not a Capture-Spine database: table executions not found")

// ErrChecksumMismatch matches every *ChecksumMismatchError with errors.Is.
var ErrChecksumMismatch = errors.New("sqlmigrations: checksum mismatch")

// ChecksumMismatchError reports an applied step whose up file has changed since it
// was applied: the database may not match what the binary believes it is.
type ChecksumMismatchError struct {
	Version  int
	Name     string
	Recorded string // checksum in the migrations table
	Embedded string // checksum of the up file in this binary
}

func (e *ChecksumMismatchError) Error() string {
	return fmt.Sprintf("sqlmigrations: step %04d (%s) was applied from a different file (recorded checksum %.12s, this binary has %.12s): "+
		"restore the original migration file instead of editing an applied one, and add a new migration for the change",
		e.Version, e.Name, e.Recorded, e.Embedded)
}

// Is makes errors.Is(err, ErrChecksumMismatch) true.
func (e *ChecksumMismatchError) Is(target error) bool { return target == ErrChecksumMismatch }

// ErrLockHeld matches every *LockHeldError with errors.Is.
var ErrLockHeld = errors.New("sqlmigrations: migration lock held by another process")

// LockHeldError reports that another session kept the migration lock for longer than
// Options.LockWait (or the context allowed).
type LockHeldError struct {
	PID             int    // backend pid of the holder; 0 if it released the lock meanwhile
	ApplicationName string // the holder's application_name, if known
	Err             error  // why waiting stopped: context.DeadlineExceeded or Canceled
}

func (e *LockHeldError) Error() string {
	who := "another session"
	if e.PID != 0 {
		who = fmt.Sprintf("backend pid %d", e.PID)
		if e.ApplicationName != "" {
			who += fmt.Sprintf(" (application_name %q)", e.ApplicationName)
		}
	}
	msg := fmt.Sprintf("sqlmigrations: migration lock held by %s: another migration is running; "+
		"wait for it to finish and retry", who)
	if e.PID != 0 {
		msg += fmt.Sprintf(", or, if that process is gone or stuck, end its session with SELECT pg_terminate_backend(%d)", e.PID)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrLockHeld) true.
func (e *LockHeldError) Is(target error) bool { return target == ErrLockHeld }

func (e *LockHeldError) Unwrap() error { return e.Err }

// IsLockTimeout reports whether err is (or wraps) PostgreSQL's lock_not_available
// (SQLSTATE 55P03), raised when a statement waited longer than lock_timeout.
func IsLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}
