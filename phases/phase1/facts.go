package phase1

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Column is one column as the catalog describes it.
type Column struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Nullable bool   `json:"nullable"`
	Default  string `json:"default,omitempty"`
}

// Table is what the plan knows of one table.
type Table struct {
	Name        string   `json:"name"`
	Exists      bool     `json:"exists"`
	Rows        int64    `json:"rows"`
	Bytes       int64    `json:"bytes"`
	Columns     []Column `json:"columns,omitempty"`
	Indexes     []string `json:"indexes,omitempty"`
	Constraints []string `json:"constraints,omitempty"`
	Triggers    []string `json:"triggers,omitempty"`
}

// legacyColumns are Capture-Spine's own columns, as its schema defines them
// (testdata/capturespine/schema.sql). A database lacking one, or holding it
// with another type, is not one phase 1 knows how to align.
var legacyColumns = map[string][]Column{
	"executions": {
		{Name: "execution_id", Type: "uuid"}, {Name: "pipeline_name", Type: "text"},
		{Name: "params", Type: "jsonb"}, {Name: "lane", Type: "text"},
		{Name: "trigger_source", Type: "text"}, {Name: "status", Type: "text"},
		{Name: "backend_task_id", Type: "text"}, {Name: "feed_id", Type: "uuid"},
		{Name: "retry_count", Type: "integer"}, {Name: "result", Type: "jsonb"},
		{Name: "error", Type: "text"}, {Name: "created_at", Type: "timestamp with time zone"},
		{Name: "started_at", Type: "timestamp with time zone"}, {Name: "completed_at", Type: "timestamp with time zone"},
	},
	"execution_events": {
		{Name: "id", Type: "bigint"}, {Name: "execution_id", Type: "uuid"}, {Name: "event_type", Type: "text"},
		{Name: "timestamp", Type: "timestamp with time zone"}, {Name: "data", Type: "jsonb"},
	},
}

// inspectedTables are described in the plan; jobs is phase 3's, shown for context.
var inspectedTables = []string{"executions", "execution_events", "jobs"}

const (
	selectTableSize = `SELECT to_regclass($1) IS NOT NULL, COALESCE(pg_table_size(to_regclass($1)), 0)`
	selectColumns   = `
SELECT column_name, data_type, is_nullable = 'YES', COALESCE(column_default, '')
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1
ORDER BY ordinal_position`
	selectIndexes     = `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname`
	selectConstraints = `
SELECT conname || ' ' || pg_get_constraintdef(oid) || CASE WHEN convalidated THEN '' ELSE ' (NOT VALID)' END
FROM pg_constraint WHERE conrelid = to_regclass($1) ORDER BY conname`
	selectTriggers = `SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal ORDER BY tgname`
)

// inspectTable reads one table's catalog facts and exact row count. Only
// catalog reads and one count(*): plan takes no lock a writer would notice.
func inspectTable(ctx context.Context, q querier, name string) (Table, error) {
	t := Table{Name: name}
	if err := q.QueryRow(ctx, selectTableSize, name).Scan(&t.Exists, &t.Bytes); err != nil {
		return t, fmt.Errorf("inspect %s: %w", name, err)
	}
	if !t.Exists {
		return t, nil
	}
	if err := q.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{name}.Sanitize()).Scan(&t.Rows); err != nil {
		return t, fmt.Errorf("count %s: %w", name, err)
	}
	rows, err := q.Query(ctx, selectColumns, name)
	if err != nil {
		return t, fmt.Errorf("inspect %s columns: %w", name, err)
	}
	if t.Columns, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Column]); err != nil {
		return t, fmt.Errorf("inspect %s columns: %w", name, err)
	}
	for _, list := range []struct {
		sql string
		dst *[]string
	}{{selectIndexes, &t.Indexes}, {selectConstraints, &t.Constraints}, {selectTriggers, &t.Triggers}} {
		rows, err := q.Query(ctx, list.sql, name)
		if err != nil {
			return t, fmt.Errorf("inspect %s: %w", name, err)
		}
		if *list.dst, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return t, fmt.Errorf("inspect %s: %w", name, err)
		}
	}
	return t, nil
}

// recognise reports what keeps t from being Capture-Spine's table of that name.
func recognise(t Table) []string {
	want, ok := legacyColumns[t.Name]
	if !ok {
		return nil
	}
	if !t.Exists {
		return []string{fmt.Sprintf("table %s does not exist: this is not a Capture-Spine database (check --database-url)", t.Name)}
	}
	have := map[string]Column{}
	for _, c := range t.Columns {
		have[c.Name] = c
	}
	var problems []string
	for _, c := range want {
		got, ok := have[c.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s.%s is missing: not the Capture-Spine schema phase 1 knows", t.Name, c.Name))
		case got.Type != c.Type:
			problems = append(problems, fmt.Sprintf("%s.%s is %s, Capture-Spine's is %s", t.Name, c.Name, got.Type, c.Type))
		}
	}
	return problems
}

// querier is what both a pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
