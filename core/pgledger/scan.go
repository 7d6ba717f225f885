package pgledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spinecore/spine-go/core"
)

// ScannedRun is one executions row as ScanRuns read it.
type ScannedRun struct {
	RunID string
	// Run is what the row holds. When Err is set, the columns it names are
	// left empty and the rest of the row is still here.
	Run core.RunRecord
	// Err is nil when the row decodes as the ledger's reads decode it;
	// otherwise one *ColumnError per column that does not (joined with
	// errors.Join when there are several).
	Err error
}

// ColumnError is a column of an executions row that the ledger cannot
// decode: JSON that is not what the column must hold, or NULL where a value
// is required.
type ColumnError struct {
	RunID  string
	Column string // the executions column, e.g. "tags"
	Err    error
}

func (e *ColumnError) Error() string { return e.Err.Error() }

func (e *ColumnError) Unwrap() error { return e.Err }

// scanRunsFirst and scanRunsAfter read a keyset page of runColumns in
// primary-key order; $1 of scanRunsAfter is the last id of the page before.
const (
	scanRunsFirst = `SELECT ` + runColumns + ` FROM executions ORDER BY execution_id LIMIT $1`
	scanRunsAfter = `SELECT ` + runColumns + ` FROM executions WHERE execution_id > $1::uuid ORDER BY execution_id LIMIT $2`
)

// ScanRuns reads up to limit executions rows in execution_id order, starting
// after the run id after ("" for the first page); an empty result means no
// rows are left. Each row goes through the same decoding as GetRun, but a row
// that does not decode is returned with its Err rather than failing the page,
// so a caller can walk every row of a table the ledger's reads would refuse.
//
// Pages are separate statements: rows written while a scan is under way are
// seen or not depending on their id, and none is seen twice.
func (l *Ledger) ScanRuns(ctx context.Context, after string, limit int) ([]ScannedRun, error) {
	if limit < 1 {
		return nil, fmt.Errorf("pgledger: scan runs: limit %d, want at least 1", limit)
	}
	query, args := scanRunsFirst, []any{limit}
	if after != "" {
		if !isUUID(after) {
			return nil, fmt.Errorf("pgledger: scan runs: after %q is not a run id", after)
		}
		query, args = scanRunsAfter, []any{after, limit}
	}
	rows, err := l.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("pgledger: scan runs after %q: %w", after, err)
	}
	defer rows.Close()
	out := make([]ScannedRun, 0, min(limit, 1024))
	for rows.Next() {
		// Every column is scanned nullable: a NULL the schema should have
		// refused is this row's problem, not the page's.
		var raw struct {
			id, name, lane, triggerSource, status, kind, priority *string
			params, metadata, tags, result                        []byte
			retryCount, maxRetries                                *int32
			retryDelaySeconds                                     *float64
			createdAt                                             *time.Time
		}
		var r row
		if err := rows.Scan(&raw.id, &raw.name, &raw.params, &raw.lane, &raw.triggerSource, &raw.status,
			&r.backendTaskID, &r.feedID, &raw.retryCount, &raw.result, &r.errorText,
			&raw.createdAt, &r.startedAt, &r.completedAt,
			&raw.kind, &raw.priority, &r.idempotencyKey, &r.correlationID, &r.parentRunID,
			&r.executorName, &r.retryOfRunID, &raw.maxRetries, &raw.retryDelaySeconds,
			&r.errorType, &raw.metadata, &raw.tags); err != nil {
			return nil, fmt.Errorf("pgledger: scan runs after %q: %w", after, err)
		}
		r.id = deref(raw.id)
		var errs []error
		required := func(column string, present bool) bool {
			if !present {
				errs = append(errs, &ColumnError{RunID: r.id, Column: column, Err: fmt.Errorf("run %s: %s is NULL", r.id, column)})
			}
			return present
		}
		for _, c := range []struct {
			column string
			src    *string
			dst    *string
		}{
			{"pipeline_name", raw.name, &r.name}, {"lane", raw.lane, &r.lane},
			{"trigger_source", raw.triggerSource, &r.triggerSource}, {"status", raw.status, &r.status},
			{"kind", raw.kind, &r.kind}, {"priority", raw.priority, &r.priority},
		} {
			if required(c.column, c.src != nil) {
				*c.dst = *c.src
			}
		}
		for _, c := range []struct {
			column string
			src    []byte
			dst    *string
		}{{"params", raw.params, &r.params}, {"metadata", raw.metadata, &r.metadata}, {"tags", raw.tags, &r.tags}} {
			*c.dst = "{}"
			if required(c.column, c.src != nil) {
				*c.dst = string(c.src)
			}
		}
		if required("retry_count", raw.retryCount != nil) {
			r.retryCount = *raw.retryCount
		}
		if required("max_retries", raw.maxRetries != nil) {
			r.maxRetries = *raw.maxRetries
		}
		if required("retry_delay_seconds", raw.retryDelaySeconds != nil) {
			r.retryDelaySeconds = *raw.retryDelaySeconds
		}
		if required("created_at", raw.createdAt != nil) {
			r.createdAt = *raw.createdAt
		}
		if raw.result != nil {
			s := string(raw.result)
			r.result = &s
		}
		run, decodeErrs := decodeRow(r)
		out = append(out, ScannedRun{RunID: r.id, Run: run, Err: errors.Join(append(errs, decodeErrs...)...)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: scan runs after %q: %w", after, err)
	}
	return out, nil
}

// decodeRow is fromRow that, when the row does not decode, finds each JSON
// column to blame by decoding it alone (the others set to {}), and still
// returns the rest of the row.
func decodeRow(r row) (core.RunRecord, []error) {
	run, err := fromRow(r)
	if err == nil {
		return run, nil
	}
	columns := []struct {
		name  string
		field func(*row) *string
	}{
		{"params", func(r *row) *string { return &r.params }},
		{"metadata", func(r *row) *string { return &r.metadata }},
		{"tags", func(r *row) *string { return &r.tags }},
	}
	blank := r
	for _, c := range columns {
		*c.field(&blank) = "{}"
	}
	var errs []error
	rest := r
	for _, c := range columns {
		probe := blank
		*c.field(&probe) = *c.field(&r)
		if _, err := fromRow(probe); err != nil {
			errs = append(errs, &ColumnError{RunID: r.id, Column: c.name, Err: err})
			*c.field(&rest) = "{}"
		}
	}
	if run, err = fromRow(rest); err != nil {
		// Not down to the JSON columns: nothing of the row can be trusted.
		return core.RunRecord{RunID: r.id}, append(errs, &ColumnError{RunID: r.id, Column: "row", Err: err})
	}
	return run, errs
}
