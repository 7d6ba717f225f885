package pglock

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestConflictIsTheRetryableLockErrors(t *testing.T) {
	for code, want := range map[string]bool{"55P03": true, "40P01": true, "40001": true, "23505": false, "42P01": false} {
		err := fmt.Errorf("batch 3: %w", &pgconn.PgError{Code: code})
		if got := Conflict(err); got != want {
			t.Errorf("Conflict(%s) = %v, want %v", code, got, want)
		}
	}
	if Conflict(errors.New("connection reset")) {
		t.Error("a non-PostgreSQL error counted as a lock conflict")
	}
}
