package phase2

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
)

const backupTask = "app.tasks.backup.run_backup_for_user"

func backupRoute(mode Mode, percent int) Route {
	return Route{Task: backupTask, Mode: mode, Percent: percent, Queue: "celery", Pipeline: "backup", Lane: "normal"}
}

func TestRoutesNeedPhase1(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), testsvc.NewCaptureSpineDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := OpenRoutes(context.Background(), pool); !errors.Is(err, ErrPhase1Missing) {
		t.Fatalf("OpenRoutes before phase 1 = %v, want ErrPhase1Missing", err)
	}
	if exists, _ := tablesExist(context.Background(), pool); exists {
		t.Fatal("a refused OpenRoutes created tables")
	}
}

func TestRoutesSetListDrain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := phase1Pool(t)
	routes, err := OpenRoutes(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRoutes(ctx, pool); err != nil {
		t.Fatalf("second open: %v", err)
	}
	if list, err := routes.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("fresh table: %v %v", list, err)
	}
	for _, bad := range []Route{
		{Task: backupTask, Mode: "fast", Queue: "q", Pipeline: "p", Lane: "l"},
		{Task: backupTask, Mode: ModeShadow, Percent: 101, Queue: "q", Pipeline: "p", Lane: "l"},
		{Task: backupTask, Mode: ModeShadow, Percent: -1, Queue: "q", Pipeline: "p", Lane: "l"},
		{Task: "", Mode: ModeShadow, Queue: "q", Pipeline: "p", Lane: "l"},
		{Task: backupTask, Mode: ModeShadow, Pipeline: "p", Lane: "l"},
		{Task: backupTask, Mode: ModeShadow, Queue: "q", Lane: "l"},
	} {
		if _, err := routes.Set(ctx, bad, "test"); err == nil {
			t.Errorf("Set(%+v) accepted", bad)
		}
	}
	stored, err := routes.Set(ctx, backupRoute(ModeShadow, 30), "alice")
	if err != nil || stored.Mode != ModeShadow || stored.Percent != 30 || stored.UpdatedBy != "alice" || stored.UpdatedAt.IsZero() {
		t.Fatalf("set: %+v %v", stored, err)
	}
	sync := Route{Task: "app.tasks.sync.sync_environments", Mode: ModeReroute, Percent: 50, Queue: "celery", Pipeline: "sync_environments", Lane: "slow"}
	if _, err := routes.Set(ctx, sync, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := routes.Set(ctx, backupRoute(ModeReroute, 10), "bob"); err != nil {
		t.Fatal(err)
	}
	got, ok, err := routes.Get(ctx, backupTask)
	if err != nil || !ok || got.Mode != ModeReroute || got.Percent != 10 || got.UpdatedBy != "bob" {
		t.Fatalf("get after update: %+v %v %v", got, ok, err)
	}
	if _, ok, err := routes.Get(ctx, "nope"); ok || err != nil {
		t.Fatalf("get of a task without a route: %v %v", ok, err)
	}
	list, _ := routes.List(ctx)
	if len(list) != 2 || list[0].Task != backupTask || list[1].Lane != "slow" || list[1].UpdatedBy != "spine-migrate" {
		t.Fatalf("list: %+v", list)
	}

	drained, err := routes.Drain(ctx, "carol")
	if err != nil || len(drained) != 2 {
		t.Fatalf("drain: %+v %v", drained, err)
	}
	for _, r := range drained {
		if r.Mode != ModePassthrough || r.UpdatedBy != "carol" {
			t.Errorf("drained route %+v", r)
		}
	}
	if again, err := routes.Drain(ctx, ""); err != nil || len(again) != 0 {
		t.Fatalf("second drain changed %v (%v)", again, err)
	}
	// Queue, pipeline and lane survive a drain.
	if got, _, _ := routes.Get(ctx, sync.Task); got.Queue != "celery" || got.Pipeline != "sync_environments" || got.Lane != "slow" {
		t.Errorf("after drain: %+v", got)
	}
}

// A change reaches a watcher at once through NOTIFY, long before its
// polling interval.
func TestRoutesWatchSeesChangesAtOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool, _ := phase1Pool(t)
	routes, err := OpenRoutes(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan []Route, 16)
	done := make(chan error, 1)
	go func() {
		done <- routes.Watch(ctx, time.Minute, func(r []Route, err error) {
			if err == nil {
				seen <- r
			}
		})
	}()
	if first := <-seen; len(first) != 0 {
		t.Fatalf("first read: %+v", first)
	}
	time.Sleep(100 * time.Millisecond) // let it LISTEN
	for _, r := range []Route{backupRoute(ModeShadow, 100), backupRoute(ModeReroute, 50)} {
		start := time.Now()
		if _, err := routes.Set(ctx, r, "t"); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-seen:
			if len(got) != 1 || got[0].Mode != r.Mode || got[0].Percent != r.Percent {
				t.Fatalf("watch saw %+v after setting %+v", got, r)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("change seen after %s", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("change to %s not seen within 5s (poll interval 1m)", r.Describe())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch returned %v", err)
	}
}

func TestRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := phase1Pool(t)
	if plan, err := PlanRollback(ctx, pool); err != nil || len(plan.Tables) != 0 || plan.Err() != nil {
		t.Fatalf("plan before phase 2: %+v %v", plan, err)
	}
	routes, err := OpenRoutes(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routes.Set(ctx, backupRoute(ModeShadow, 100), ""); err != nil {
		t.Fatal(err)
	}
	// Phase 1 cannot be rolled back under phase 2.
	if p1, err := phase1.PlanRollback(ctx, pool, phase1.Options{Logger: quiet}); err != nil || p1.Err(true) == nil {
		t.Fatalf("phase 1 rollback plan under phase 2: %+v %v", p1, err)
	}
	if _, err := Rollback(ctx, pool); !errors.Is(err, ErrRefused) {
		t.Fatalf("rollback with a shadowing route = %v", err)
	}
	if _, err := routes.Drain(ctx, ""); err != nil {
		t.Fatal(err)
	}
	plan, err := Rollback(ctx, pool)
	if err != nil || len(plan.Tables) != 1 || plan.Tables[0] != "spine_phase2_routes" {
		t.Fatalf("rollback: %+v %v", plan, err)
	}
	if exists, _ := tablesExist(ctx, pool); exists {
		t.Fatal("tables left after rollback")
	}
	if p1, err := phase1.PlanRollback(ctx, pool, phase1.Options{Logger: quiet}); err != nil || len(p1.LaterPhases) != 0 {
		t.Fatalf("phase 1 rollback plan after phase 2's: %+v %v", p1, err)
	}
}

func TestNewRouteFromTheCatalog(t *testing.T) {
	t.Parallel()
	for _, bt := range capturespine.DefaultCatalog().Tasks() {
		r := NewRoute(bt, "celery")
		if err := r.validate(); err != nil || r.Mode != ModePassthrough || r.Pipeline != bt.Pipeline {
			t.Errorf("%s: %+v %v", bt.Task, r, err)
		}
	}
}
