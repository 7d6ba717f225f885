package pgledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/core"
)

// Ledger is a core.Ledger over Capture-Spine's executions and
// execution_events tables. It is safe for concurrent use.
type Ledger struct {
	pool *pgxpool.Pool
}

var _ core.Ledger = (*Ledger)(nil)

// ErrSchemaNotReady means the database lacks the columns or index the
// ledger needs: the migrations have not been applied.
var ErrSchemaNotReady = errors.New("schema not ready for the run ledger")

// New returns a ledger over pool after checking that the database has the
// unified schema (Capture-Spine's tables plus the sqlmigrations columns).
func New(ctx context.Context, pool *pgxpool.Pool) (*Ledger, error) {
	if err := checkSchema(ctx, pool); err != nil {
		return nil, err
	}
	return &Ledger{pool: pool}, nil
}

func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	rows, err := pool.Query(ctx, selectColumns)
	if err != nil {
		return fmt.Errorf("pgledger: read schema: %w", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			return fmt.Errorf("pgledger: read schema: %w", err)
		}
		have[table+"."+column] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pgledger: read schema: %w", err)
	}
	if !have["executions.execution_id"] || !have["execution_events.execution_id"] {
		return fmt.Errorf("%w: tables executions and execution_events not found (is this a Capture-Spine database?)", ErrSchemaNotReady)
	}
	var missing []string
	for table, cols := range requiredColumns {
		for _, c := range cols {
			if !have[table+"."+c] {
				missing = append(missing, table+"."+c)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing columns %s; run `spine-migrate migrate up`", ErrSchemaNotReady, strings.Join(missing, ", "))
	}
	var ready bool
	if err := pool.QueryRow(ctx, idempotencyIndexReady).Scan(&ready); err != nil {
		return fmt.Errorf("pgledger: read schema: %w", err)
	}
	if !ready {
		return fmt.Errorf("%w: no valid unique index on executions (idempotency_key); run `spine-migrate migrate up`", ErrSchemaNotReady)
	}
	return nil
}

// CreateRun implements core.Ledger.
func (l *Ledger) CreateRun(ctx context.Context, run core.RunRecord, events ...core.RunEvent) (core.RunRecord, error) {
	results, errs, err := l.CreateRuns(ctx, []core.RunRecord{run}, [][]core.RunEvent{events})
	if err != nil {
		return core.RunRecord{}, err
	}
	return results[0], errs[0]
}

// CreateRuns implements core.Ledger in one statement.
func (l *Ledger) CreateRuns(ctx context.Context, runs []core.RunRecord, events [][]core.RunEvent) ([]core.RunRecord, []error, error) {
	if len(events) != 0 && len(events) != len(runs) {
		return nil, nil, fmt.Errorf("pgledger: create runs: %d runs but %d event lists", len(runs), len(events))
	}
	if len(runs) == 0 {
		return nil, nil, nil
	}
	var rows runArrays
	var evs eventArrays
	stored := make([]core.RunRecord, len(runs))
	for i, run := range runs {
		r, err := toRow(run)
		if err != nil {
			return nil, nil, fmt.Errorf("pgledger: create run %s: %w", run.RunID, err)
		}
		rows.add(r)
		stored[i] = storedRecord(run, r)
		if len(events) > 0 {
			for _, ev := range events[i] {
				if err := evs.add(run.RunID, ev); err != nil {
					return nil, nil, fmt.Errorf("pgledger: create run %s: %w", run.RunID, err)
				}
			}
		}
	}
	inserted := map[string]bool{}
	dbRows, err := l.pool.Query(ctx, insertRuns, append(rows.args(), evs.args()...)...)
	if err != nil {
		return nil, nil, mapWriteError("create runs", err)
	}
	for dbRows.Next() {
		var id string
		if err := dbRows.Scan(&id); err != nil {
			return nil, nil, fmt.Errorf("pgledger: create runs: %w", err)
		}
		inserted[id] = true
	}
	if err := dbRows.Err(); err != nil {
		return nil, nil, mapWriteError("create runs", err)
	}

	// Runs not inserted lost their idempotency key to an existing run.
	errs := make([]error, len(runs))
	var keys []string
	for _, run := range runs {
		if !inserted[run.RunID] {
			keys = append(keys, run.Spec.IdempotencyKey)
		}
	}
	if len(keys) == 0 {
		return stored, errs, nil
	}
	existing, err := l.runsByKeys(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	for i, run := range runs {
		if inserted[run.RunID] {
			continue
		}
		key := run.Spec.IdempotencyKey
		if key == "" {
			return nil, nil, fmt.Errorf("pgledger: create run %s: not inserted and it has no idempotency key", run.RunID)
		}
		other, ok := existing[key]
		if !ok {
			// ON CONFLICT skipped it, yet no run holds the key: only
			// possible if that run was deleted in between. Say so.
			return nil, nil, fmt.Errorf("pgledger: create run %s: idempotency key %q conflicted but no run holds it", run.RunID, key)
		}
		stored[i] = other
		errs[i] = fmt.Errorf("%w: idempotency key %q is run %s", core.ErrDuplicate, key, other.RunID)
	}
	return stored, errs, nil
}

func (l *Ledger) runsByKeys(ctx context.Context, keys []string) (map[string]core.RunRecord, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+runColumns+` FROM executions WHERE idempotency_key = ANY($1::text[])`, keys)
	if err != nil {
		return nil, fmt.Errorf("pgledger: read runs by idempotency key: %w", err)
	}
	runs, err := collectRuns(rows)
	if err != nil {
		return nil, fmt.Errorf("pgledger: read runs by idempotency key: %w", err)
	}
	out := make(map[string]core.RunRecord, len(runs))
	for _, r := range runs {
		out[r.Spec.IdempotencyKey] = r
	}
	return out, nil
}

// GetRun implements core.Ledger.
func (l *Ledger) GetRun(ctx context.Context, runID string) (core.RunRecord, error) {
	if !isUUID(runID) {
		return core.RunRecord{}, fmt.Errorf("%w: %q is not a run id", core.ErrNotFound, runID)
	}
	rows, err := l.pool.Query(ctx, `SELECT `+runColumns+` FROM executions WHERE execution_id = $1::uuid`, runID)
	return l.one(rows, err, runID)
}

// GetRunByIdempotencyKey implements core.Ledger.
func (l *Ledger) GetRunByIdempotencyKey(ctx context.Context, key string) (core.RunRecord, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+runColumns+` FROM executions WHERE idempotency_key = $1`, key)
	return l.one(rows, err, "with idempotency key "+key)
}

func (l *Ledger) one(rows pgx.Rows, err error, what string) (core.RunRecord, error) {
	if err != nil {
		return core.RunRecord{}, fmt.Errorf("pgledger: read run %s: %w", what, err)
	}
	runs, err := collectRuns(rows)
	if err != nil {
		return core.RunRecord{}, fmt.Errorf("pgledger: read run %s: %w", what, err)
	}
	if len(runs) == 0 {
		return core.RunRecord{}, fmt.Errorf("%w: %s", core.ErrNotFound, what)
	}
	return runs[0], nil
}

// ListRuns implements core.Ledger. The WHERE clause holds only the filters
// given, so the planner sees plain predicates and can use the indexes on
// (created_at, execution_id), (pipeline_name, created_at) and parent_run_id.
func (l *Ledger) ListRuns(ctx context.Context, f core.RunFilter) (core.RunPage, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Kind != "" {
		where = append(where, "kind = "+arg(string(f.Kind)))
	}
	if f.Name != "" {
		where = append(where, "pipeline_name = "+arg(f.Name))
	}
	if len(f.Statuses) > 0 {
		statuses := make([]string, len(f.Statuses))
		for i, s := range f.Statuses {
			statuses[i] = string(s)
		}
		where = append(where, "status = ANY("+arg(statuses)+"::text[])")
	}
	if f.ParentRunID != "" {
		if !isUUID(f.ParentRunID) {
			return core.RunPage{}, nil // no run has a non-UUID parent
		}
		where = append(where, "parent_run_id = "+arg(f.ParentRunID)+"::uuid")
	}
	if !f.CreatedFrom.IsZero() {
		where = append(where, "created_at >= "+arg(f.CreatedFrom))
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, "created_at < "+arg(f.CreatedBefore))
	}
	if f.Cursor != "" {
		c, err := core.DecodeCursor(f.Cursor)
		if err != nil {
			return core.RunPage{}, err
		}
		where = append(where, fmt.Sprintf("(created_at, execution_id) < (%s, %s::uuid)", arg(c.CreatedAt), arg(c.RunID)))
	}
	limit := f.EffectiveLimit()
	q := `SELECT ` + runColumns + ` FROM executions`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, execution_id DESC LIMIT " + arg(limit+1)
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return core.RunPage{}, fmt.Errorf("pgledger: list runs: %w", err)
	}
	runs, err := collectRuns(rows)
	if err != nil {
		return core.RunPage{}, fmt.Errorf("pgledger: list runs: %w", err)
	}
	page := core.RunPage{Runs: runs}
	if len(runs) > limit {
		page.Runs = runs[:limit]
		last := page.Runs[limit-1]
		page.NextCursor = core.Cursor{CreatedAt: last.CreatedAt, RunID: last.RunID}.Encode()
	}
	return page, nil
}

// UpdateRun implements core.Ledger.
func (l *Ledger) UpdateRun(ctx context.Context, u core.RunUpdate) (core.RunRecord, error) {
	results, errs, err := l.UpdateRuns(ctx, []core.RunUpdate{u})
	if err != nil {
		return core.RunRecord{}, err
	}
	return results[0], errs[0]
}

// UpdateRuns implements core.Ledger in one statement (plus one read for
// the updates that did not apply, to say why).
func (l *Ledger) UpdateRuns(ctx context.Context, us []core.RunUpdate) ([]core.RunRecord, []error, error) {
	results := make([]core.RunRecord, len(us))
	errs := make([]error, len(us))
	seen := map[string]bool{}
	var ups updateArrays
	var evs eventArrays
	var sent []int
	for i, u := range us {
		if err := u.Check(); err != nil {
			errs[i] = err
			continue
		}
		if !isUUID(u.RunID) {
			errs[i] = fmt.Errorf("%w: %q is not a run id", core.ErrNotFound, u.RunID)
			continue
		}
		if seen[u.RunID] {
			// Two updates of one row in one statement would race each
			// other; apply the rest first and this one after.
			results[i], errs[i] = l.UpdateRun(ctx, u)
			continue
		}
		seen[u.RunID] = true
		ups.add(u)
		for _, ev := range u.Events {
			if err := evs.add(u.RunID, ev); err != nil {
				return nil, nil, fmt.Errorf("pgledger: update run %s: %w", u.RunID, err)
			}
		}
		sent = append(sent, i)
	}
	if len(sent) == 0 {
		return results, errs, nil
	}
	rows, err := l.pool.Query(ctx, updateRuns, append(ups.args(), evs.args()...)...)
	if err != nil {
		return nil, nil, mapWriteError("update runs", err)
	}
	updated, err := collectRuns(rows)
	if err != nil {
		return nil, nil, mapWriteError("update runs", err)
	}
	byID := make(map[string]core.RunRecord, len(updated))
	for _, r := range updated {
		byID[r.RunID] = r
	}
	var missed []string
	for _, i := range sent {
		if r, ok := byID[us[i].RunID]; ok {
			results[i] = r
		} else {
			missed = append(missed, us[i].RunID)
		}
	}
	if len(missed) == 0 {
		return results, errs, nil
	}
	actual := map[string]core.RunStatus{}
	srows, err := l.pool.Query(ctx, statusesOf, missed)
	if err != nil {
		return nil, nil, fmt.Errorf("pgledger: update runs: %w", err)
	}
	for srows.Next() {
		var id, status string
		if err := srows.Scan(&id, &status); err != nil {
			return nil, nil, fmt.Errorf("pgledger: update runs: %w", err)
		}
		actual[id] = core.RunStatus(status)
	}
	if err := srows.Err(); err != nil {
		return nil, nil, fmt.Errorf("pgledger: update runs: %w", err)
	}
	for _, i := range sent {
		u := us[i]
		if _, ok := byID[u.RunID]; ok {
			continue
		}
		if s, ok := actual[u.RunID]; ok {
			errs[i] = &core.ConflictError{RunID: u.RunID, Expected: u.From, Actual: s}
		} else {
			errs[i] = fmt.Errorf("%w: %s", core.ErrNotFound, u.RunID)
		}
	}
	return results, errs, nil
}

// AppendEvent implements core.Ledger.
func (l *Ledger) AppendEvent(ctx context.Context, ev core.RunEvent, ifStatus ...core.RunStatus) (core.RunEvent, error) {
	if !isUUID(ev.RunID) {
		return core.RunEvent{}, fmt.Errorf("%w: %q is not a run id", core.ErrNotFound, ev.RunID)
	}
	data, err := eventData(ev)
	if err != nil {
		return core.RunEvent{}, err
	}
	guard := make([]string, len(ifStatus))
	for i, s := range ifStatus {
		guard[i] = string(s)
	}
	ev = normaliseEvent(ev)
	err = l.pool.QueryRow(ctx, appendEvent, ev.RunID, string(ev.Type), ev.Timestamp, data, ev.Source, guard).Scan(&ev.EventID)
	if errors.Is(err, pgx.ErrNoRows) {
		var status string
		switch err := l.pool.QueryRow(ctx, runExists, ev.RunID).Scan(&status); {
		case errors.Is(err, pgx.ErrNoRows):
			return core.RunEvent{}, fmt.Errorf("%w: %s", core.ErrNotFound, ev.RunID)
		case err != nil:
			return core.RunEvent{}, fmt.Errorf("pgledger: append event to %s: %w", ev.RunID, err)
		}
		return core.RunEvent{}, &core.ConflictError{RunID: ev.RunID, Expected: ifStatus[0], Actual: core.RunStatus(status),
			Detail: fmt.Sprintf("%s event refused: run is %s, not %v", ev.Type, status, ifStatus)}
	}
	if err != nil {
		return core.RunEvent{}, mapWriteError("append event to "+ev.RunID, err)
	}
	ev.Data, _ = core.DecodeObject([]byte(data))
	return ev, nil
}

// Events implements core.Ledger.
func (l *Ledger) Events(ctx context.Context, runID string) ([]core.RunEvent, error) {
	if !isUUID(runID) {
		return nil, fmt.Errorf("%w: %q is not a run id", core.ErrNotFound, runID)
	}
	rows, err := l.pool.Query(ctx, selectEvents, runID)
	if err != nil {
		return nil, fmt.Errorf("pgledger: events of %s: %w", runID, err)
	}
	defer rows.Close()
	var out []core.RunEvent
	for rows.Next() {
		var ev core.RunEvent
		var typ string
		var data []byte
		if err := rows.Scan(&ev.EventID, &ev.RunID, &typ, &ev.Timestamp, &data, &ev.Source); err != nil {
			return nil, fmt.Errorf("pgledger: events of %s: %w", runID, err)
		}
		ev.Type = core.EventType(typ)
		ev.Timestamp = core.Timestamp(ev.Timestamp)
		if ev.Data, err = core.DecodeObject(data); err != nil {
			return nil, fmt.Errorf("pgledger: events of %s: event %s data: %w", runID, ev.EventID, err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: events of %s: %w", runID, err)
	}
	if len(out) == 0 {
		var status string
		if err := l.pool.QueryRow(ctx, runExists, runID).Scan(&status); errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%w: %s", core.ErrNotFound, runID)
		}
	}
	return out, nil
}

// mapWriteError turns the constraint violations a caller can act on into
// core's typed errors.
func mapWriteError(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		switch pgErr.ConstraintName {
		case "executions_pkey":
			return fmt.Errorf("pgledger: %s: %w: %s", op, core.ErrDuplicate, pgErr.Detail)
		case "ix_executions_one_active_per_feed":
			return &core.ConflictError{Detail: "Capture-Spine allows one pending or running execution per feed: " + pgErr.Detail}
		}
	}
	return fmt.Errorf("pgledger: %s: %w", op, err)
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// canonicalUUID reports whether s is a UUID exactly as PostgreSQL prints
// one, so storing it in a uuid column and reading it back is lossless.
func canonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

func normaliseEvent(ev core.RunEvent) core.RunEvent {
	if ev.Source == "" {
		ev.Source = core.DefaultEventSource
	}
	if ev.Timestamp.IsZero() {
		ev.Timestamp = time.Now()
	}
	ev.Timestamp = core.Timestamp(ev.Timestamp)
	return ev
}

func eventData(ev core.RunEvent) (string, error) {
	if ev.Data == nil {
		return "{}", nil
	}
	b, err := json.Marshal(ev.Data)
	if err != nil {
		return "", fmt.Errorf("event %s data is not JSON: %w", ev.Type, err)
	}
	return string(b), nil
}

// jsonNull reports whether raw is absent or the JSON null, which the ledger
// stores as SQL NULL (Capture-Spine's "no result").
func jsonNull(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}
