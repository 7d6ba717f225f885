package sqlmigrations_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/sqlmigrations"
)

// A dry run first, then the migration itself; running it again is a no-op.
func ExampleMigrator_Up() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://capture_spine@localhost/capture_spine")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	m := sqlmigrations.New(pool, sqlmigrations.Options{LockTimeout: time.Second})
	plan, err := m.PlanUp(ctx, sqlmigrations.Latest)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(plan) // the SQL, step by step

	res, err := m.Up(ctx, sqlmigrations.Latest)
	if err != nil {
		log.Fatal(err) // run Up again once the cause is fixed: it converges
	}
	fmt.Printf("applied %d steps in %s\n", len(res.Applied), res.Elapsed)
}
