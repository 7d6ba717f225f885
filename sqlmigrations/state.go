package sqlmigrations

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// requiredTable is the table whose absence means the database is not one the
// migrations can extend.
const requiredTable = "executions"

const createTableSQL = `
CREATE TABLE IF NOT EXISTS %s (
    version    INTEGER     PRIMARY KEY,
    name       TEXT        NOT NULL,
    checksum   TEXT        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

type appliedRow struct {
	name      string
	checksum  string
	appliedAt time.Time
}

func requireExecutions(ctx context.Context, q querier) error {
	var found bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{requiredTable}.Sanitize()).Scan(&found); err != nil {
		return fmt.Errorf("sqlmigrations: look up table %s: %w", requiredTable, err)
	}
	if !found {
		return ErrNotCaptureSpine
	}
	return nil
}

// readState checks the database is a Capture-Spine one and returns the applied steps
// by version; none if the migrations table does not exist yet.
func (m *Migrator) readState(ctx context.Context, q querier) (map[int]appliedRow, error) {
	if err := requireExecutions(ctx, q); err != nil {
		return nil, err
	}
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", m.table).Scan(&exists); err != nil {
		return nil, fmt.Errorf("sqlmigrations: look up migrations table %s: %w", m.table, err)
	}
	applied := map[int]appliedRow{}
	if !exists {
		return applied, nil
	}
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT version, name, checksum, applied_at FROM %s", m.table))
	if err != nil {
		return nil, fmt.Errorf("sqlmigrations: read migrations table %s: %w", m.table, err)
	}
	var (
		version int
		row     appliedRow
	)
	_, err = pgx.ForEachRow(rows, []any{&version, &row.name, &row.checksum, &row.appliedAt}, func() error {
		applied[version] = row
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlmigrations: read migrations table %s: %w", m.table, err)
	}
	return applied, nil
}
