package phase2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// routesChannel is the LISTEN/NOTIFY channel announcing route changes.
const routesChannel = "spine_phase2_routes"

const selectRoutes = `
SELECT task, mode, percent, queue, pipeline, lane, updated_at, updated_by
FROM spine_phase2_routes ORDER BY task`

const selectRoute = `
SELECT task, mode, percent, queue, pipeline, lane, updated_at, updated_by
FROM spine_phase2_routes WHERE task = $1`

// upsertRoute writes one route and announces it in the same statement, so
// the notification is sent when, and only if, the change commits.
const upsertRoute = `
WITH up AS (
	INSERT INTO spine_phase2_routes AS r (task, mode, percent, queue, pipeline, lane, updated_at, updated_by)
	VALUES ($1, $2, $3, $4, $5, $6, now(), $7)
	ON CONFLICT (task) DO UPDATE SET
		mode = EXCLUDED.mode, percent = EXCLUDED.percent, queue = EXCLUDED.queue,
		pipeline = EXCLUDED.pipeline, lane = EXCLUDED.lane,
		updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
	RETURNING task, mode, percent, queue, pipeline, lane, updated_at, updated_by
)
SELECT up.*, pg_notify('` + routesChannel + `', up.task) IS NULL FROM up`

// drainRoutes turns every route that shadows or reroutes back to
// passthrough and announces each.
const drainRoutes = `
WITH d AS (
	UPDATE spine_phase2_routes SET mode = 'passthrough', percent = 0, updated_at = now(), updated_by = $1
	WHERE mode <> 'passthrough'
	RETURNING task, mode, percent, queue, pipeline, lane, updated_at, updated_by
)
SELECT d.*, pg_notify('` + routesChannel + `', d.task) IS NULL FROM d ORDER BY d.task`

// Routes is the route table in PostgreSQL, shared by every side-car replica
// and the operator's commands. It is safe for concurrent use.
type Routes struct {
	pool *pgxpool.Pool
}

// OpenRoutes returns the route table on pool, creating phase 2's tables the
// first time. Phase 1 must be applied (ErrPhase1Missing otherwise).
func OpenRoutes(ctx context.Context, pool *pgxpool.Pool) (*Routes, error) {
	if err := ensureSchema(ctx, pool); err != nil {
		return nil, err
	}
	return &Routes{pool: pool}, nil
}

// NewRoute is the route a catalog task starts with: passthrough to
// workerQueue, in Capture-Spine's normal lane.
func NewRoute(t capturespine.BypassTask, workerQueue string) Route {
	return Route{Task: t.Task, Mode: ModePassthrough, Queue: workerQueue, Pipeline: t.Pipeline, Lane: capturespine.LaneNormal}
}

// List returns every route, by task name.
func (r *Routes) List(ctx context.Context) ([]Route, error) {
	return listRoutes(ctx, r.pool)
}

func listRoutes(ctx context.Context, db querier) ([]Route, error) {
	rows, err := db.Query(ctx, selectRoutes)
	if err != nil {
		return nil, fmt.Errorf("phase2 routes: %w", err)
	}
	routes, err := pgx.CollectRows(rows, scanRoute)
	if err != nil {
		return nil, fmt.Errorf("phase2 routes: %w", err)
	}
	return routes, nil
}

func scanRoute(row pgx.CollectableRow) (Route, error) {
	var r Route
	var mode string
	var percent int16
	dest := []any{&r.Task, &mode, &percent, &r.Queue, &r.Pipeline, &r.Lane, &r.UpdatedAt, &r.UpdatedBy}
	if len(row.FieldDescriptions()) > len(dest) {
		var notified bool // the pg_notify column of the writes
		dest = append(dest, &notified)
	}
	if err := row.Scan(dest...); err != nil {
		return r, err
	}
	r.Mode, r.Percent = Mode(mode), int(percent)
	return r, nil
}

// Get returns the task's route; ok is false when it has none.
func (r *Routes) Get(ctx context.Context, task string) (route Route, ok bool, err error) {
	rows, err := r.pool.Query(ctx, selectRoute, task)
	if err != nil {
		return route, false, fmt.Errorf("phase2 route %s: %w", task, err)
	}
	route, err = pgx.CollectExactlyOneRow(rows, scanRoute)
	if errors.Is(err, pgx.ErrNoRows) {
		return route, false, nil
	}
	if err != nil {
		return route, false, fmt.Errorf("phase2 route %s: %w", task, err)
	}
	return route, true, nil
}

// Set writes route (creating or replacing the task's row) and announces the
// change to the side-cars; by is recorded as who made it. It returns the
// route as stored.
func (r *Routes) Set(ctx context.Context, route Route, by string) (Route, error) {
	if err := route.validate(); err != nil {
		return route, err
	}
	if route.Mode == ModePassthrough {
		route.Percent = 0
	}
	rows, err := r.pool.Query(ctx, upsertRoute, route.Task, string(route.Mode), route.Percent,
		route.Queue, route.Pipeline, route.Lane, who(by))
	if err != nil {
		return route, fmt.Errorf("phase2 set %s: %w", route.Task, err)
	}
	stored, err := pgx.CollectExactlyOneRow(rows, scanRoute)
	if err != nil {
		return route, fmt.Errorf("phase2 set %s: %w", route.Task, err)
	}
	return stored, nil
}

// Drain puts every route back to passthrough and returns those it changed.
func (r *Routes) Drain(ctx context.Context, by string) ([]Route, error) {
	rows, err := r.pool.Query(ctx, drainRoutes, who(by))
	if err != nil {
		return nil, fmt.Errorf("phase2 drain: %w", err)
	}
	changed, err := pgx.CollectRows(rows, scanRoute)
	if err != nil {
		return nil, fmt.Errorf("phase2 drain: %w", err)
	}
	return changed, nil
}

func who(by string) string {
	if by == "" {
		return "spine-migrate"
	}
	return by
}

// Watch calls apply with the whole route table now and after every change,
// until ctx ends: at once when a change is announced (LISTEN), and at the
// latest every interval (a re-read that also covers a lost listening
// connection). A failed read calls apply with the error instead; the
// previous routes stay whatever the caller made of them. The first read's
// error is also returned, before any waiting.
func (r *Routes) Watch(ctx context.Context, every time.Duration, apply func([]Route, error)) error {
	if every <= 0 {
		every = 2 * time.Second
	}
	routes, err := r.List(ctx)
	apply(routes, err)
	if err != nil {
		return err
	}
	var conn *pgxpool.Conn
	defer func() {
		if conn != nil {
			conn.Release()
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			conn = r.listen(ctx)
		}
		if conn != nil {
			wctx, cancel := context.WithTimeout(ctx, every)
			_, err := conn.Conn().WaitForNotification(wctx)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
				// The connection is broken or was closed: drop it and poll
				// until a new one listens.
				conn.Conn().Close(context.Background()) //nolint:errcheck
				conn.Release()
				conn = nil
			}
		} else {
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
		if ctx.Err() != nil {
			break
		}
		routes, err := r.List(ctx)
		if ctx.Err() != nil {
			break
		}
		apply(routes, err)
	}
	return nil
}

// listen holds a connection that LISTENs on the routes channel, or returns
// nil (polling covers for it).
func (r *Routes) listen(ctx context.Context) *pgxpool.Conn {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil
	}
	if _, err := conn.Exec(ctx, "LISTEN "+routesChannel); err != nil {
		conn.Release()
		return nil
	}
	return conn
}
