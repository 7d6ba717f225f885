package sqlmigrations_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spinecore/spine-go/sqlmigrations"
)

// The schema contract with core/pgledger: the columns and indexes its SQL
// relies on (see requiredColumns and idempotencyIndexReady there).
var contractColumns = []struct {
	table, column, dataType string
	nullable                bool
	def                     string
}{
	{"executions", "kind", "text", false, "'pipeline'::text"},
	{"executions", "priority", "text", false, ""}, // 0007: the lane trigger fills it
	{"executions", "idempotency_key", "text", true, ""},
	{"executions", "correlation_id", "text", true, ""},
	{"executions", "parent_run_id", "uuid", true, ""},
	{"executions", "executor_name", "text", true, ""},
	{"executions", "retry_of_run_id", "uuid", true, ""},
	{"executions", "max_retries", "integer", false, "3"},
	{"executions", "retry_delay_seconds", "double precision", false, "60"},
	{"executions", "error_type", "text", true, ""},
	{"executions", "metadata", "jsonb", false, "'{}'::jsonb"},
	{"executions", "tags", "jsonb", false, "'{}'::jsonb"},
	{"execution_events", "source", "text", false, "'dispatcher'::text"},
}

var contractIndexes = map[string]string{
	"ux_executions_idempotency_key": "CREATE UNIQUE INDEX ux_executions_idempotency_key ON public.executions USING btree (idempotency_key)",
	"ix_executions_parent_run_id":   "CREATE INDEX ix_executions_parent_run_id ON public.executions USING btree (parent_run_id, created_at DESC, execution_id DESC) WHERE (parent_run_id IS NOT NULL)",
	"ix_executions_created_id":      "CREATE INDEX ix_executions_created_id ON public.executions USING btree (created_at DESC, execution_id DESC)",
}

var contractConstraints = []string{"ck_executions_kind", "ck_executions_priority"}

var allVersions = []int{1, 2, 3, 4, 5, 6, 7}

// assertContract checks that every column, index and constraint of the contract
// exists and is valid.
func (b *bundle) assertContract() {
	b.t.Helper()
	for _, c := range contractColumns {
		var dataType, nullable, def string
		err := b.pool.QueryRow(b.ctx, `
SELECT data_type, is_nullable, coalesce(column_default, '')
FROM information_schema.columns WHERE table_name = $1 AND column_name = $2`, c.table, c.column).Scan(&dataType, &nullable, &def)
		if err != nil {
			b.t.Errorf("column %s.%s: %v", c.table, c.column, err)
			continue
		}
		if dataType != c.dataType || (nullable == "YES") != c.nullable || def != c.def {
			b.t.Errorf("column %s.%s is %s nullable=%s default %q, want %s nullable=%v default %q",
				c.table, c.column, dataType, nullable, def, c.dataType, c.nullable, c.def)
		}
	}
	for name, want := range contractIndexes {
		exists, valid, def := b.index(name)
		if !exists || !valid || def != want {
			b.t.Errorf("index %s: exists=%v valid=%v definition %q, want a valid %q", name, exists, valid, def, want)
		}
	}
	for _, name := range contractConstraints {
		if exists, validated := b.constraint(name); !exists || !validated {
			b.t.Errorf("constraint %s: exists=%v validated=%v, want a validated constraint", name, exists, validated)
		}
	}
}

func TestUpOnSeededDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t, 5000)
	m, _ := b.migrator(sqlmigrations.Options{})

	res, err := m.Up(b.ctx, sqlmigrations.Latest)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("Up on %d executions, %d events: %s", b.seed.Executions, b.seed.Events, res.Elapsed)
	if got := versions(res.Applied); !slices.Equal(got, allVersions) {
		t.Fatalf("Up applied %v, want %v", got, allVersions)
	}
	for v, n := range res.Attempts {
		if n != 1 {
			t.Errorf("step %d took %d attempts on an idle database, want 1", v, n)
		}
	}
	b.assertContract()
	if got := b.appliedVersions(); !slices.Equal(got, allVersions) {
		t.Errorf("migrations table holds %v, want %v", got, allVersions)
	}

	// Existing rows read the contract's defaults; nothing was lost.
	if n := b.queryInt(`SELECT count(*) FROM executions WHERE kind = 'pipeline' AND priority = 'normal'
		AND max_retries = 3 AND retry_delay_seconds = 60 AND metadata = '{}' AND tags = '{}' AND idempotency_key IS NULL`); n != b.seed.Executions {
		t.Errorf("%d executions read the defaults, want all %d", n, b.seed.Executions)
	}
	if n := b.queryInt("SELECT count(*) FROM execution_events WHERE source = 'dispatcher'"); n != b.seed.Events {
		t.Errorf("%d events read source 'dispatcher', want all %d", n, b.seed.Events)
	}
	// The constraints hold for new rows.
	_, err = b.pool.Exec(b.ctx, "INSERT INTO executions (execution_id, pipeline_name, kind) VALUES (gen_random_uuid(), 'p', 'bogus')")
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != "ck_executions_kind" {
		t.Errorf("inserting kind 'bogus': err = %v, want a ck_executions_kind check violation", err)
	}

	status, err := m.Status(b.ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, s := range status {
		if !s.Applied || s.AppliedAt.IsZero() || s.ChecksumMismatch || s.Unknown {
			t.Errorf("status %+v, want applied, with a time, matching", s)
		}
	}

	// A second Up is a no-op: no steps, nothing changed.
	dump := b.schemaDump()
	var appliedAt time.Time
	if err := b.pool.QueryRow(b.ctx, "SELECT max(applied_at) FROM spine_schema_migrations").Scan(&appliedAt); err != nil {
		t.Fatal(err)
	}
	res, err = m.Up(b.ctx, sqlmigrations.Latest)
	if err != nil {
		t.Fatalf("second Up: %v", err)
	}
	if len(res.Applied) != 0 || len(res.Attempts) != 0 {
		t.Errorf("second Up applied %v (attempts %v), want nothing", versions(res.Applied), res.Attempts)
	}
	if again := b.schemaDump(); again != dump {
		t.Error("second Up changed the schema")
	}
	var appliedAtAgain time.Time
	if err := b.pool.QueryRow(b.ctx, "SELECT max(applied_at) FROM spine_schema_migrations").Scan(&appliedAtAgain); err != nil {
		t.Fatal(err)
	}
	if !appliedAtAgain.Equal(appliedAt) {
		t.Errorf("second Up rewrote the migrations table: last applied_at %s, was %s", appliedAtAgain, appliedAt)
	}
}

func TestDownAllTheWayRestoresTheOriginalSchema(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m, _ := b.migrator(sqlmigrations.Options{})
	before := b.schemaDump()

	if _, err := m.Up(b.ctx, sqlmigrations.Latest); err != nil {
		t.Fatalf("Up: %v", err)
	}
	res, err := m.Down(b.ctx, sqlmigrations.AllTheWayDown)
	if err != nil {
		t.Fatalf("Down: %v", err)
	}
	if got, want := versions(res.Applied), []int{7, 6, 5, 4, 3, 2, 1}; !slices.Equal(got, want) {
		t.Errorf("Down reverted %v, want %v", got, want)
	}
	if got := b.appliedVersions(); len(got) != 0 {
		t.Errorf("migrations table holds %v after Down all the way, want none", got)
	}
	if after := b.schemaDump(); after != before {
		t.Errorf("schema after Down all the way differs from before the first Up:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if n := b.queryInt("SELECT count(*) FROM executions"); n != b.seed.Executions {
		t.Errorf("%d executions after Down, want %d", n, b.seed.Executions)
	}

	res, err = m.Up(b.ctx, sqlmigrations.Latest)
	if err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	if got := versions(res.Applied); !slices.Equal(got, allVersions) {
		t.Errorf("Up after Down applied %v, want %v", got, allVersions)
	}
	b.assertContract()
}

func TestDownRevertsOneStepByDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m, _ := b.migrator(sqlmigrations.Options{})
	if _, err := m.Up(b.ctx, sqlmigrations.Latest); err != nil {
		t.Fatalf("Up: %v", err)
	}

	steps := []struct {
		target       int
		wantReverted []int
		wantApplied  []int
		check        func()
	}{
		{sqlmigrations.OneStepDown, []int{7}, []int{1, 2, 3, 4, 5, 6}, func() {
			var trigger bool
			if err := b.pool.QueryRow(b.ctx, "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'trg_executions_priority_from_lane')").Scan(&trigger); err != nil || trigger {
				t.Errorf("the lane trigger survived a one-step Down (%v)", err)
			}
		}},
		{sqlmigrations.OneStepDown, []int{6}, []int{1, 2, 3, 4, 5}, func() {
			if exists, _, _ := b.index("ix_executions_created_id"); exists {
				t.Error("ix_executions_created_id still exists")
			}
			if exists, _, _ := b.index("ix_executions_parent_run_id"); !exists {
				t.Error("ix_executions_parent_run_id was dropped by a one-step Down")
			}
		}},
		{sqlmigrations.OneStepDown, []int{5}, []int{1, 2, 3, 4}, nil},
		{3, []int{4}, []int{1, 2, 3}, func() {
			if exists, _, _ := b.index("ux_executions_idempotency_key"); exists {
				t.Error("ux_executions_idempotency_key still exists")
			}
		}},
		{sqlmigrations.OneStepDown, []int{3}, []int{1, 2}, func() {
			// Back to what 0002 leaves: the constraints exist but are NOT VALID.
			for _, name := range contractConstraints {
				if exists, validated := b.constraint(name); !exists || validated {
					t.Errorf("constraint %s: exists=%v validated=%v after reverting 0003, want NOT VALID", name, exists, validated)
				}
			}
		}},
		{3, nil, []int{1, 2}, nil}, // already below the target
	}
	for _, s := range steps {
		plan, err := m.PlanDown(b.ctx, s.target)
		if err != nil {
			t.Fatalf("PlanDown(%d): %v", s.target, err)
		}
		res, err := m.Down(b.ctx, s.target)
		if err != nil {
			t.Fatalf("Down(%d): %v", s.target, err)
		}
		if got := versions(res.Applied); !slices.Equal(got, s.wantReverted) || !slices.Equal(versions(plan.Steps), got) {
			t.Errorf("Down(%d) reverted %v (planned %v), want %v", s.target, got, versions(plan.Steps), s.wantReverted)
		}
		if got := b.appliedVersions(); !slices.Equal(got, s.wantApplied) {
			t.Errorf("after Down(%d) applied %v, want %v", s.target, got, s.wantApplied)
		}
		if s.check != nil {
			s.check()
		}
	}

	// Up to a target, then the rest.
	res, err := m.Up(b.ctx, 3)
	if err != nil || !slices.Equal(versions(res.Applied), []int{3}) {
		t.Fatalf("Up(3) applied %v, err %v; want [3]", versions(res.Applied), err)
	}
	if _, err := m.Up(b.ctx, sqlmigrations.Latest); err != nil {
		t.Fatalf("Up: %v", err)
	}
	b.assertContract()
}

func TestPlansAreDryRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m, _ := b.migrator(sqlmigrations.Options{})
	before := b.schemaDump()

	plan, err := m.PlanUp(b.ctx, sqlmigrations.Latest)
	if err != nil {
		t.Fatalf("PlanUp: %v", err)
	}
	if plan.Direction != sqlmigrations.DirectionUp {
		t.Errorf("direction %q, want up", plan.Direction)
	}
	for i, mig := range sqlmigrations.All() {
		s := plan.Steps[i]
		if s.Version != mig.Version || s.Name != mig.Name || s.SQL != mig.Up || s.NoTx != mig.UpNoTx {
			t.Errorf("planned step %d = %+v, want the up file of %04d (%s)", i, s, mig.Version, mig.Name)
		}
	}
	script := plan.String()
	for _, want := range []string{
		"-- step 0001 (executions_run_columns) up, in a transaction",
		"ADD COLUMN IF NOT EXISTS idempotency_key",
		"-- step 0004 (executions_idempotency_key_index) up, outside a transaction",
		"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ux_executions_idempotency_key",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("dry-run script lacks %q:\n%s", want, script)
		}
	}
	if plan, err := m.PlanUp(b.ctx, 2); err != nil || !slices.Equal(versions(plan.Steps), []int{1, 2}) {
		t.Errorf("PlanUp(2) = %v, %v; want [1 2]", versions(plan.Steps), err)
	}
	if _, err := m.PlanUp(b.ctx, 99); err == nil {
		t.Error("PlanUp(99) succeeded, want an unknown-version error")
	}
	if plan, err := m.PlanDown(b.ctx, sqlmigrations.OneStepDown); err != nil || len(plan.Steps) != 0 {
		t.Errorf("PlanDown on a fresh database = %v, %v; want no steps", versions(plan.Steps), err)
	}
	if after := b.schemaDump(); after != before {
		t.Error("planning changed the schema")
	}
	if b.appliedVersions() != nil {
		t.Error("planning created the migrations table")
	}

	if _, err := m.Up(b.ctx, 3); err != nil {
		t.Fatalf("Up(3): %v", err)
	}
	before = b.schemaDump()
	if plan, err := m.PlanUp(b.ctx, sqlmigrations.Latest); err != nil || !slices.Equal(versions(plan.Steps), []int{4, 5, 6, 7}) {
		t.Errorf("PlanUp after Up(3) = %v, %v; want [4 5 6 7]", versions(plan.Steps), err)
	}
	plan, err = m.PlanDown(b.ctx, sqlmigrations.AllTheWayDown)
	if err != nil || !slices.Equal(versions(plan.Steps), []int{3, 2, 1}) {
		t.Fatalf("PlanDown(all) = %v, %v; want [3 2 1]", versions(plan.Steps), err)
	}
	if plan.Steps[2].SQL != sqlmigrations.All()[0].Down || !strings.Contains(plan.String(), "DROP COLUMN IF EXISTS idempotency_key") {
		t.Errorf("PlanDown does not show the down SQL:\n%s", plan)
	}
	if after := b.schemaDump(); after != before {
		t.Error("planning changed the schema")
	}
	if got := b.appliedVersions(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("planning changed the migrations table: %v", got)
	}
}

// A long reader must not make the migrator queue an ACCESS EXCLUSIVE request in front
// of everybody else: the step gives up after LockTimeout, the application's queries go
// through, and the step is retried until the reader is gone.
func TestLockTimeoutRetriesInsteadOfQueueing(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)

	reader := b.conn()
	tx, err := reader.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(b.ctx, "SELECT count(*) FROM executions").Scan(&n); err != nil { // holds ACCESS SHARE until the end of tx
		t.Fatal(err)
	}

	m, _ := b.migrator(sqlmigrations.Options{LockTimeout: 100 * time.Millisecond})
	type outcome struct {
		res sqlmigrations.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := m.Up(b.ctx, sqlmigrations.Latest)
		done <- outcome{res, err}
	}()

	// While the migrator's ALTER TABLE is queued behind the reader, the application
	// reads executions from a third session. The reader is only released after the
	// probe returns, so a migrator that kept queueing would hold the probe until its
	// 5s deadline; one that gives up after LockTimeout lets it through at once.
	b.waitFor("the migrator to queue for ACCESS EXCLUSIVE on executions", 10*time.Second, func() bool {
		return b.lockWaiters("AccessExclusiveLock") > 0
	})
	probe := b.conn()
	probeCtx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := probe.QueryRow(probeCtx, "SELECT count(*) FROM executions").Scan(&n); err != nil {
		t.Fatalf("probe SELECT while the migrator waits: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("probe SELECT took %s while the migrator waited for its lock, want well under a second", took)
	} else {
		t.Logf("probe SELECT took %s while the migrator was retrying", took)
	}

	// Let it retry at least once more, then release the reader.
	time.Sleep(300 * time.Millisecond)
	select {
	case o := <-done:
		t.Fatalf("Up finished while the reader still held its lock: %+v, %v", o.res, o.err)
	default:
	}
	if err := tx.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil {
		t.Fatalf("Up after the reader left: %v", o.err)
	}
	if o.res.Attempts[1] < 2 {
		t.Errorf("step 1 took %d attempts, want more than 1", o.res.Attempts[1])
	}
	t.Logf("attempts %v, elapsed %s", o.res.Attempts, o.res.Elapsed)
	b.assertContract()
}

func TestLockTimeoutGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m, _ := b.migrator(sqlmigrations.Options{LockTimeout: 50 * time.Millisecond, IndexLockTimeout: 50 * time.Millisecond, MaxAttempts: 2})
	if _, err := m.Up(b.ctx, 3); err != nil {
		t.Fatalf("Up(3): %v", err)
	}

	reader := b.conn()
	tx, err := reader.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(b.ctx, "LOCK TABLE executions IN SHARE UPDATE EXCLUSIVE MODE"); err != nil { // as a VACUUM or another DDL would
		t.Fatal(err)
	}
	res, err := m.Up(b.ctx, sqlmigrations.Latest)
	if !sqlmigrations.IsLockTimeout(err) || !strings.Contains(err.Error(), "step 0004 (executions_idempotency_key_index)") {
		t.Fatalf("Up under a conflicting lock: err = %v, want a lock timeout naming step 0004", err)
	}
	if res.Attempts[4] != 2 || len(res.Applied) != 0 {
		t.Errorf("attempts %v, applied %v; want 2 attempts at step 4 and nothing applied", res.Attempts, versions(res.Applied))
	}
	if err := tx.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Up(b.ctx, sqlmigrations.Latest); err != nil {
		t.Fatalf("Up after the lock was released: %v", err)
	}
	b.assertContract()
}

// An index built CONCURRENTLY waits for every older transaction. Its own
// IndexLockTimeout lets it wait out a long one (where the short LockTimeout
// would fail every attempt), and the application's writes go on meanwhile.
func TestIndexStepsWaitOutALongTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m, _ := b.migrator(sqlmigrations.Options{LockTimeout: 50 * time.Millisecond, IndexLockTimeout: time.Minute, MaxAttempts: 2})
	if _, err := m.Up(b.ctx, 3); err != nil {
		t.Fatalf("Up(3): %v", err)
	}
	report := b.conn() // a long report: a REPEATABLE READ snapshot kept open
	tx, err := report.BeginTx(b.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(b.ctx, "SELECT count(*) FROM jobs"); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		res sqlmigrations.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := m.Up(b.ctx, sqlmigrations.Latest)
		done <- outcome{res, err}
	}()
	b.waitFor("the index build to wait for the report's snapshot", 10*time.Second, func() bool {
		return b.queryInt("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'virtualxid'") > 0
	})
	time.Sleep(300 * time.Millisecond) // six times the short LockTimeout
	select {
	case o := <-done:
		t.Fatalf("Up returned while the report was open: %v", o.err)
	default:
	}
	// The application keeps writing while the build waits.
	start := time.Now()
	b.exec("INSERT INTO executions (execution_id, pipeline_name) VALUES (gen_random_uuid(), 'written meanwhile')")
	if took := time.Since(start); took > time.Second {
		t.Errorf("an application INSERT took %s while the index build waited", took)
	}
	if err := tx.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil {
		t.Fatalf("Up: %v", o.err)
	}
	if o.res.Attempts[4] != 1 {
		t.Errorf("step 4 took %d attempts, want 1: it should have waited, not failed", o.res.Attempts[4])
	}
	b.assertContract()
}

// A failed step leaves nothing that needs hand repair: fix the data, run Up again.
func TestFailedStepsConverge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		upTo      int    // applied before the failure is provoked
		provoke   string // SQL that makes the next step fail
		failsAt   string // step named in the error
		sqlstate  string
		invalid   string // index left INVALID by the failed step, if any
		fix       string // SQL that repairs the data
		wantAfter []int
	}{
		{
			name:    "duplicate idempotency keys fail the unique concurrent build",
			upTo:    3,
			provoke: "UPDATE executions SET idempotency_key = 'dup' WHERE execution_id IN (SELECT execution_id FROM executions ORDER BY execution_id LIMIT 2)",
			failsAt: "step 0004 (executions_idempotency_key_index)", sqlstate: "23505",
			invalid: "ux_executions_idempotency_key",
			fix:     "UPDATE executions SET idempotency_key = NULL WHERE idempotency_key = 'dup'",
		},
		{
			name: "an invalid index of the same name left by an interrupted build",
			upTo: 5,
			// A concurrent build that fails half-way, exactly as an interrupted one would.
			provoke: "CREATE INDEX CONCURRENTLY ix_executions_created_id ON executions ((1 / (retry_count - retry_count)))",
			invalid: "ix_executions_created_id",
		},
		{
			name:    "rows violating a check fail VALIDATE, which rolls back",
			upTo:    1,
			provoke: "UPDATE executions SET kind = 'bogus' WHERE execution_id = (SELECT execution_id FROM executions ORDER BY execution_id LIMIT 1)",
			failsAt: "step 0003 (executions_check_constraints_validate)", sqlstate: "23514",
			fix: "UPDATE executions SET kind = 'task' WHERE kind = 'bogus'",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1000)
			m, _ := b.migrator(sqlmigrations.Options{})
			if _, err := m.Up(b.ctx, tt.upTo); err != nil {
				t.Fatalf("Up(%d): %v", tt.upTo, err)
			}

			_, err := b.pool.Exec(b.ctx, tt.provoke)
			if tt.failsAt != "" {
				if err != nil {
					t.Fatalf("provoke: %v", err)
				}
				_, err = m.Up(b.ctx, sqlmigrations.Latest)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != tt.sqlstate || !strings.Contains(err.Error(), tt.failsAt) {
					t.Fatalf("Up: err = %v, want SQLSTATE %s at %s", err, tt.sqlstate, tt.failsAt)
				}
			} else if err == nil {
				t.Fatal("provoking statement succeeded, want it to fail")
			}
			if tt.invalid != "" {
				if exists, valid, _ := b.index(tt.invalid); !exists || valid {
					t.Fatalf("index %s: exists=%v valid=%v, want an INVALID leftover", tt.invalid, exists, valid)
				}
			}
			failedAt := b.appliedVersions()

			if tt.fix != "" {
				b.exec(tt.fix)
			}
			res, err := m.Up(b.ctx, sqlmigrations.Latest)
			if err != nil {
				t.Fatalf("Up after the fix: %v", err)
			}
			if got, want := append(failedAt, versions(res.Applied)...), allVersions; !slices.Equal(got, want) {
				t.Errorf("applied %v before and %v after the fix, want %v in all", failedAt, versions(res.Applied), want)
			}
			b.assertContract()
		})
	}
}

// Two migrators started together: one waits for the other's advisory lock, and
// every step is applied exactly once.
func TestConcurrentUpsApplyEachStepOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)

	// Keep the first migrator busy inside its lock: it retries step 1 until the
	// reader leaves.
	reader := b.conn()
	tx, err := reader.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(b.ctx, "SELECT count(*) FROM executions"); err != nil {
		t.Fatal(err)
	}

	first, _ := b.migrator(sqlmigrations.Options{LockTimeout: 50 * time.Millisecond, MaxAttempts: 100})
	second, secondLog := b.migrator(sqlmigrations.Options{LockTimeout: 50 * time.Millisecond, MaxAttempts: 100})
	results := make([]sqlmigrations.Result, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { results[0], errs[0] = first.Up(b.ctx, sqlmigrations.Latest) })
	b.waitFor("the first migrator to reach step 1", 10*time.Second, func() bool {
		return b.lockWaiters("AccessExclusiveLock") > 0
	})
	wg.Go(func() { results[1], errs[1] = second.Up(b.ctx, sqlmigrations.Latest) })
	b.waitFor("the second migrator to wait for the lock", 10*time.Second, func() bool {
		return secondLog.contains("waiting for migration lock")
	})

	// A third gives up after LockWait and names the holder.
	third, _ := b.migrator(sqlmigrations.Options{LockWait: 300 * time.Millisecond})
	_, err = third.Up(b.ctx, sqlmigrations.Latest)
	var held *sqlmigrations.LockHeldError
	if !errors.As(err, &held) || !errors.Is(err, sqlmigrations.ErrLockHeld) || held.PID == 0 ||
		!strings.Contains(err.Error(), "pg_terminate_backend") {
		t.Errorf("third Up: err = %v, want a LockHeldError naming the holder's pid and what to do", err)
	} else {
		t.Logf("third Up: %v", err)
		holder := b.queryInt(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
		if held.PID != holder {
			t.Errorf("LockHeldError names pid %d, the lock is held by %d", held.PID, holder)
		}
	}

	if err := tx.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Up %d: %v", i+1, err)
		}
	}
	if got := versions(results[0].Applied); !slices.Equal(got, allVersions) {
		t.Errorf("first Up applied %v, want %v", got, allVersions)
	}
	if got := versions(results[1].Applied); len(got) != 0 {
		t.Errorf("second Up applied %v after waiting, want nothing", got)
	}
	if got := b.appliedVersions(); !slices.Equal(got, allVersions) {
		t.Errorf("migrations table holds %v, want %v", got, allVersions)
	}
	b.assertContract()
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	m, _ := b.migrator(sqlmigrations.Options{})
	if _, err := m.Up(b.ctx, 3); err != nil {
		t.Fatalf("Up(3): %v", err)
	}
	b.exec("UPDATE spine_schema_migrations SET checksum = 'edited' WHERE version = 2")

	calls := map[string]func() error{
		"Up":       func() error { _, err := m.Up(b.ctx, sqlmigrations.Latest); return err },
		"Down":     func() error { _, err := m.Down(b.ctx, sqlmigrations.OneStepDown); return err },
		"PlanUp":   func() error { _, err := m.PlanUp(b.ctx, sqlmigrations.Latest); return err },
		"PlanDown": func() error { _, err := m.PlanDown(b.ctx, sqlmigrations.OneStepDown); return err },
	}
	for name, call := range calls {
		err := call()
		var mismatch *sqlmigrations.ChecksumMismatchError
		if !errors.As(err, &mismatch) || !errors.Is(err, sqlmigrations.ErrChecksumMismatch) ||
			mismatch.Version != 2 || mismatch.Recorded != "edited" || mismatch.Embedded != sqlmigrations.All()[1].Checksum {
			t.Errorf("%s: err = %v, want a ChecksumMismatchError for step 2", name, err)
		}
	}
	if got := b.appliedVersions(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("refused calls changed the migrations table: %v", got)
	}

	status, err := m.Status(b.ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, s := range status {
		if s.ChecksumMismatch != (s.Version == 2) || s.Applied != (s.Version <= 3) {
			t.Errorf("status %+v", s)
		}
	}
}

func TestStepsRecordedByANewerBuild(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	m, _ := b.migrator(sqlmigrations.Options{})
	if _, err := m.Up(b.ctx, sqlmigrations.Latest); err != nil {
		t.Fatalf("Up: %v", err)
	}
	b.exec("INSERT INTO spine_schema_migrations (version, name, checksum) VALUES (8, 'from_the_future', 'x')")

	status, err := m.Status(b.ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if last := status[len(status)-1]; len(status) != 8 || last.Version != 8 || !last.Unknown || !last.Applied || last.Name != "from_the_future" {
		t.Errorf("status = %+v, want steps 1..7 and an unknown applied step 8", status)
	}
	if res, err := m.Up(b.ctx, sqlmigrations.Latest); err != nil || len(res.Applied) != 0 {
		t.Errorf("Up = %v, %v; want a no-op", versions(res.Applied), err)
	}
	if _, err := m.Down(b.ctx, sqlmigrations.OneStepDown); err == nil || !strings.Contains(err.Error(), "newer build") {
		t.Errorf("Down over an unknown step: err = %v, want a refusal", err)
	}
}

func TestRefusesADatabaseWithoutExecutions(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.exec("DROP TABLE execution_events, executions, jobs")
	m, _ := b.migrator(sqlmigrations.Options{})

	_, errUp := m.Up(b.ctx, sqlmigrations.Latest)
	_, errDown := m.Down(b.ctx, sqlmigrations.OneStepDown)
	_, errPlan := m.PlanUp(b.ctx, sqlmigrations.Latest)
	_, errStatus := m.Status(b.ctx)
	for name, err := range map[string]error{"Up": errUp, "Down": errDown, "PlanUp": errPlan, "Status": errStatus} {
		if !errors.Is(err, sqlmigrations.ErrNotCaptureSpine) ||
			!strings.Contains(err.Error(), "not a Capture-Spine database: table executions not found") {
			t.Errorf("%s: err = %v, want ErrNotCaptureSpine", name, err)
		}
	}
	if b.appliedVersions() != nil {
		t.Error("the migrations table was created in a database that is not Capture-Spine's")
	}
}
