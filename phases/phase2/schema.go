package phase2

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/core/pgledger"
)

//go:embed schema.sql
var schemaSQL string

// schemaLock is the advisory lock key phase 2's DDL runs under, so two
// side-cars starting together do not race CREATE TABLE IF NOT EXISTS (which
// is not safe against itself).
const schemaLock = 0x5350_4932 // "SPI2"

// ErrPhase1Missing means phase 1 has not been applied: phase 2 records runs
// in the columns phase 1 adds.
var ErrPhase1Missing = errors.New("phase2: phase 1 is not applied (run `spine-migrate phase1 apply --execute` first)")

// ErrRefused is what a rollback that would strand work returns.
var ErrRefused = errors.New("phase2: refused")

// ensureSchema creates phase 2's tables if they are missing, after checking
// that phase 1's schema is there.
func ensureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pgledger.New(ctx, pool); err != nil {
		if errors.Is(err, pgledger.ErrSchemaNotReady) {
			return fmt.Errorf("%w: %v", ErrPhase1Missing, err)
		}
		return fmt.Errorf("phase2: %w", err)
	}
	exists, err := tablesExist(ctx, pool)
	if err != nil || exists {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
			return fmt.Errorf("phase2 schema: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, schemaSQL); err != nil {
			return fmt.Errorf("phase2 schema: %w", err)
		}
		return nil
	})
}

// querier is what reads need: a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func tablesExist(ctx context.Context, db querier) (bool, error) {
	var ok bool
	if err := db.QueryRow(ctx, "SELECT to_regclass('spine_phase2_routes') IS NOT NULL").Scan(&ok); err != nil {
		return false, fmt.Errorf("phase2 schema: %w", err)
	}
	return ok, nil
}

// RollbackPlan is what Rollback would do, and why it may refuse.
type RollbackPlan struct {
	// Tables are phase 2's tables that exist (dropped by Rollback).
	Tables []string `json:"tables"`
	// Active are the routes that still shadow or reroute: rolling back
	// under them would leave side-cars without routes.
	Active []Route `json:"active_routes"`
}

// Err is nil when Rollback may proceed.
func (p RollbackPlan) Err() error {
	if len(p.Active) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d routes still shadow or reroute: run `spine-migrate phase2 drain` and stop the side-cars first", ErrRefused, len(p.Active))
}

// PlanRollback inspects, read-only, what removing phase 2's tables would take.
func PlanRollback(ctx context.Context, pool *pgxpool.Pool) (RollbackPlan, error) {
	return planRollback(ctx, pool)
}

func planRollback(ctx context.Context, db querier) (RollbackPlan, error) {
	var p RollbackPlan
	rows, err := db.Query(ctx, `SELECT tablename FROM pg_tables
		WHERE schemaname = current_schema() AND tablename LIKE 'spine\_phase2\_%' ORDER BY tablename`)
	if err != nil {
		return p, fmt.Errorf("phase2 rollback plan: %w", err)
	}
	if p.Tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return p, fmt.Errorf("phase2 rollback plan: %w", err)
	}
	if len(p.Tables) == 0 {
		return p, nil
	}
	routes, err := listRoutes(ctx, db)
	if err != nil {
		return p, fmt.Errorf("phase2 rollback plan: %w", err)
	}
	for _, r := range routes {
		if r.Mode != ModePassthrough {
			p.Active = append(p.Active, r)
		}
	}
	return p, nil
}

// Rollback drops phase 2's tables, refusing while a route shadows or
// reroutes. Side-cars still running fall back to passthrough for the
// catalog's tasks. The executions phase 2 recorded stay: they are runs.
func Rollback(ctx context.Context, pool *pgxpool.Pool) (RollbackPlan, error) {
	var plan RollbackPlan
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
			return fmt.Errorf("phase2 rollback: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
			return fmt.Errorf("phase2 rollback: %w", err)
		}
		exists, err := tablesExist(ctx, tx)
		if err != nil {
			return err
		}
		if exists {
			// No route may change between the check and the drop.
			if _, err := tx.Exec(ctx, "LOCK TABLE spine_phase2_routes IN EXCLUSIVE MODE"); err != nil {
				return fmt.Errorf("phase2 rollback: %w", err)
			}
		}
		if plan, err = planRollback(ctx, tx); err != nil {
			return err
		}
		if err := plan.Err(); err != nil {
			return err
		}
		for _, t := range plan.Tables {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{t}.Sanitize()); err != nil {
				return fmt.Errorf("phase2 rollback: drop %s: %w", t, err)
			}
		}
		return nil
	})
	return plan, err
}
