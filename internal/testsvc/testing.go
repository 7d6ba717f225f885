package testsvc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	postgresHint = "Install the PostgreSQL 15 server (apt-get install postgresql-15) or set SPINE_PG_BIN to its bin directory, " +
		"or set SPINE_TEST_DATABASE_URL to a server where this role may CREATE DATABASE."
	redisHint = "Install Redis 7 (apt-get install redis-server) or set SPINE_TEST_REDIS_URL."
)

// errStopping refuses to start a server while Main is stopping them.
var errStopping = errors.New("testsvc: test binary is shutting down")

// shared holds the servers of one test binary, started on first use.
var shared struct {
	mu          sync.Mutex
	stopping    bool
	cleanups    []func() error // run in reverse order by stopAll
	mainRunning atomic.Bool

	pgOnce sync.Once
	pg     *Postgres
	pgErr  error

	redisOnce sync.Once
	redis     *redisPool
	redisErr  error

	stopOnce sync.Once
	stopErr  error
}

// Main runs the package's tests and then stops every server they started. Call it
// from TestMain:
//
//	func TestMain(m *testing.M) { testsvc.Main(m) }
//
// SIGINT and SIGTERM also stop the servers before the process exits.
func Main(m *testing.M) {
	shared.mainRunning.Store(true)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig, ok := <-signals
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "testsvc: %v: stopping test servers\n", sig)
		_ = stopAll()
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		os.Exit(code)
	}()

	code := runTests(m)
	signal.Stop(signals)
	close(signals)
	if err := stopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "testsvc: %v\n", err)
	}
	os.Exit(code)
}

// runTests stops the servers if m.Run panics on this goroutine; a panicking test
// goroutine kills the process outright, and then the parent-death signal and the
// next run's sweep clean up.
func runTests(m *testing.M) int {
	defer func() {
		if r := recover(); r != nil {
			_ = stopAll()
			panic(r)
		}
	}()
	return m.Run()
}

// onStop registers a cleanup for stopAll; it fails once stopping has begun.
func onStop(cleanup func() error) error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.stopping {
		return errStopping
	}
	shared.cleanups = append(shared.cleanups, cleanup)
	return nil
}

// stopAll runs the registered cleanups, newest first, exactly once; a concurrent
// caller waits for it to finish.
func stopAll() error {
	shared.stopOnce.Do(func() {
		shared.mu.Lock()
		shared.stopping = true
		cleanups := shared.cleanups
		shared.cleanups = nil
		shared.mu.Unlock()
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			errs = append(errs, cleanups[i]())
		}
		shared.stopErr = errors.Join(errs...)
	})
	return shared.stopErr
}

// PostgresServer returns the PostgreSQL server shared by the test binary, starting
// it on first use, or the server at SPINE_TEST_DATABASE_URL. If neither is possible
// the test is skipped, or failed under CI=true.
func PostgresServer(t testing.TB) *Postgres {
	t.Helper()
	started := false
	shared.pgOnce.Do(func() {
		started = true
		begin := time.Now()
		shared.pg, shared.pgErr = startSharedPostgres()
		if shared.pgErr == nil {
			t.Logf("testsvc: postgres at %s, ready in %v", shared.pg.admin.Host, time.Since(begin).Round(time.Millisecond))
		}
	})
	if shared.pgErr != nil {
		unavailable(t, "PostgreSQL", shared.pgErr, postgresHint)
	}
	if started && !shared.mainRunning.Load() {
		t.Log("testsvc: TestMain does not call testsvc.Main, so the server is only reaped when the process exits")
	}
	return shared.pg
}

func startSharedPostgres() (*Postgres, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var pg *Postgres
	var err error
	if u := os.Getenv("SPINE_TEST_DATABASE_URL"); u != "" {
		pg, err = externalPostgres(ctx, u)
	} else {
		pg, err = StartPostgres(ctx, PostgresOptions{})
	}
	if err != nil {
		return nil, err
	}
	if err := onStop(pg.Stop); err != nil {
		return nil, errors.Join(err, pg.Stop())
	}
	return pg, nil
}

// NewDatabase creates an empty database with a name unique to the test and returns
// its URL; the database is dropped, sessions and all, when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	pg := PostgresServer(t)
	return newDatabase(t, pg, "")
}

// newDatabase creates a database for t, copied from template when one is given.
func newDatabase(t testing.TB, pg *Postgres, template string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := databaseName(t)
	url, err := pg.createDatabase(ctx, name, template)
	if err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pg.DropDatabase(ctx, name); err != nil {
			t.Errorf("testsvc: %v", err)
		}
	})
	return url
}

var databaseSeq atomic.Uint64

// databaseName makes a valid, unique identifier that still says which test it is
// for and which process made it, since a shared external server sees many.
func databaseName(t testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 30 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if s := b.String(); s != "" && !strings.HasSuffix(s, "_") {
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("spine_%s_%d_%d", strings.TrimSuffix(b.String(), "_"), os.Getpid(), databaseSeq.Add(1))
}

// unavailable skips t, or fails it under CI=true, where a missing service is a
// broken pipeline rather than a developer's machine without Redis.
func unavailable(t testing.TB, service string, err error, hint string) {
	t.Helper()
	if inCI() {
		t.Fatalf("testsvc: %s is required under CI=true but could not be started: %v\n%s", service, err, hint)
	}
	t.Skipf("testsvc: skipping, %s could not be started: %v\n%s", service, err, hint)
}

func inCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}
