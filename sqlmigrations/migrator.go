package sqlmigrations

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migrator applies and reverts the embedded migrations on one database.
type Migrator struct {
	pool       *pgxpool.Pool
	opts       Options
	log        *slog.Logger
	table      string // quoted identifier of Options.Table
	migrations []Migration
}

// New returns a Migrator for the database behind pool. It holds one connection of the
// pool for the whole of each Up or Down.
func New(pool *pgxpool.Pool, opts Options) *Migrator {
	opts = opts.withDefaults()
	return &Migrator{
		pool:       pool,
		opts:       opts,
		log:        opts.Logger,
		table:      pgx.Identifier{opts.Table}.Sanitize(),
		migrations: All(),
	}
}

// Result is what Up or Down did.
type Result struct {
	// Applied lists the steps executed, in order (for Down: the steps reverted).
	Applied []Step
	// Attempts maps each executed version to how many tries it took; more than one
	// means it hit LockTimeout and was retried.
	Attempts map[int]int
	Elapsed  time.Duration
}

// Up applies, in order, every migration up to target (a version, or Latest) that is
// not applied yet. A second Up is a no-op. After a failure, Up can simply be run again.
func (m *Migrator) Up(ctx context.Context, target int) (Result, error) {
	return m.migrate(ctx, func(applied map[int]appliedRow) (Plan, error) { return m.planUp(applied, target) })
}

// Down reverts applied migrations, newest first, until target (a version to end at,
// OneStepDown or AllTheWayDown). Reverting drops the columns, constraints and indexes
// those migrations added, with their data.
func (m *Migrator) Down(ctx context.Context, target int) (Result, error) {
	return m.migrate(ctx, func(applied map[int]appliedRow) (Plan, error) { return m.planDown(applied, target) })
}

func (m *Migrator) migrate(ctx context.Context, plan func(map[int]appliedRow) (Plan, error)) (res Result, err error) {
	start := time.Now()
	res.Attempts = map[int]int{}
	defer func() { res.Elapsed = time.Since(start) }()

	pc, err := m.pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("sqlmigrations: acquire connection: %w", err)
	}
	defer pc.Release()
	conn := pc.Conn()

	if err := requireExecutions(ctx, conn); err != nil {
		return res, err
	}
	if err := lockSession(ctx, conn, m.opts.LockWait, m.log); err != nil {
		return res, err
	}
	defer unlockSession(ctx, conn, m.log)

	// Session-wide, so it covers every statement of every step, including the
	// no-transaction ones that cannot be preceded by SET LOCAL; runStep adjusts
	// it per step.
	if err := setLockTimeout(ctx, conn, m.opts.LockTimeout); err != nil {
		return res, err
	}
	defer resetLockTimeout(ctx, conn)

	if _, err := conn.Exec(ctx, fmt.Sprintf(createTableSQL, m.table)); err != nil {
		return res, fmt.Errorf("sqlmigrations: create migrations table %s: %w", m.table, err)
	}
	applied, err := m.readState(ctx, conn)
	if err != nil {
		return res, err
	}
	p, err := plan(applied)
	if err != nil {
		return res, err
	}
	if len(p.Steps) == 0 {
		m.log.Info("sqlmigrations: nothing to migrate", "direction", p.Direction)
		return res, nil
	}
	for _, step := range p.Steps {
		attempts, err := m.runStep(ctx, conn, p.Direction, step)
		res.Attempts[step.Version] = attempts
		if err != nil {
			return res, fmt.Errorf("sqlmigrations: step %04d (%s): %w", step.Version, step.Name, err)
		}
		res.Applied = append(res.Applied, step)
	}
	return res, nil
}

// setLockTimeout sets the session's lock_timeout; at least 1ms, since 0 would
// mean waiting forever.
func setLockTimeout(ctx context.Context, conn *pgx.Conn, d time.Duration) error {
	v := fmt.Sprintf("%dms", max(d.Milliseconds(), 1))
	if _, err := conn.Exec(ctx, "SELECT set_config('lock_timeout', $1, false)", v); err != nil {
		return fmt.Errorf("sqlmigrations: set lock_timeout: %w", err)
	}
	return nil
}

func resetLockTimeout(ctx context.Context, conn *pgx.Conn) {
	if conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "RESET lock_timeout"); err != nil {
		// Never hand a session with our lock_timeout back to the pool.
		_ = conn.Close(ctx)
	}
}
