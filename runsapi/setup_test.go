package runsapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/runsapi"
	"github.com/spinecore/spine-go/sqlmigrations"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// ledgers are the stores every behaviour test runs over: the memory ledger
// and the PostgreSQL ledger on a fresh, migrated Capture-Spine database.
var ledgers = []struct {
	name string
	new  func(t *testing.T) core.Ledger
}{
	{"memory", func(*testing.T) core.Ledger { return core.NewMemoryLedger() }},
	{"postgres", newPostgresLedger},
}

func newPostgresLedger(t *testing.T) core.Ledger {
	t.Helper()
	l, err := pgledger.New(context.Background(), migratedPool(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// migratedPool returns a pool on a fresh Capture-Spine database with the
// migrations applied.
func migratedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testsvc.NewCaptureSpineDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := sqlmigrations.New(pool, sqlmigrations.Options{Logger: slog.New(slog.DiscardHandler)}).Up(ctx, sqlmigrations.Latest); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	return pool
}

// eachLedger runs f, in parallel, once per ledger with a fresh bundle.
func eachLedger(t *testing.T, f func(t *testing.T, b bundle)) {
	t.Helper()
	for _, l := range ledgers {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			f(t, setup(t, l.new(t)))
		})
	}
}

// bundle is one test's API: a dispatcher over its own ledger, a hold
// executor that takes runs and leaves their fate to the test, a clock the
// test sets, and the handler under test.
type bundle struct {
	d     *core.Dispatcher
	exec  *holdExecutor
	clock *clock
	h     http.Handler
	logs  *syncBuffer
}

var t0 = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, ledger core.Ledger) bundle {
	t.Helper()
	clk := &clock{now: t0}
	exec := &holdExecutor{}
	d := core.NewDispatcher(ledger, exec, core.DispatcherOptions{
		Now: clk.Now,
		// Failed runs stay failed for the test's lifetime: their automatic
		// retry is an hour away. Runs with max_retries 0 are dead-lettered.
		Backoff: func(int, time.Duration) time.Duration { return time.Hour },
		Logger:  slog.New(slog.DiscardHandler),
	})
	t.Cleanup(func() { _ = d.Close() })
	logs := &syncBuffer{}
	h := runsapi.New(d, runsapi.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return bundle{d: d, exec: exec, clock: clk, h: h, logs: logs}
}

// holdExecutor takes every run and runs nothing: the test moves runs on
// through the dispatcher's worker callbacks. Specs named in refuse are
// refused with that error.
type holdExecutor struct {
	mu        sync.Mutex
	cancelled []string
}

var refusals = map[string]error{
	"overloaded":   fmt.Errorf("lane default holds 1024 runs: %w", core.ErrBackpressure),
	"shut_down":    fmt.Errorf("hold executor: %w", core.ErrClosed),
	"unregistered": &core.HandlerMissingError{Key: "task:unregistered"},
	"broken":       errors.New("dial tcp 10.0.0.7:5672: connection refused (password=hunter2)"),
}

func (e *holdExecutor) Name() string { return "hold" }

func (e *holdExecutor) Submit(_ context.Context, run core.RunRecord) (string, error) {
	if err := refusals[run.Spec.Name]; err != nil {
		return "", err
	}
	return "hold-" + run.RunID, nil
}

func (e *holdExecutor) Cancel(_ context.Context, ref string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cancelled = append(e.cancelled, ref)
	return nil
}

func (e *holdExecutor) cancelledRefs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.cancelled...)
}

// clock is the dispatcher's time: set by the test, a millisecond further
// at every reading so runs created in a row are ordered.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// do sends a request to the handler; body is sent as JSON unless empty.
func (b bundle) do(t *testing.T, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	return rec
}

// ok sends a request that must answer 200 and returns the body.
func (b bundle) ok(t *testing.T, method, target, body string) []byte {
	t.Helper()
	rec := b.do(t, method, target, body)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", method, target, ct)
	}
	return rec.Body.Bytes()
}

func (b bundle) submit(t *testing.T, body string) core.RunRecord {
	t.Helper()
	return decodeRun(t, b.ok(t, "POST", "/api/v1/runs", body))
}

func decodeRun(t *testing.T, body []byte) core.RunRecord {
	t.Helper()
	var run core.RunRecord
	if err := json.Unmarshal(body, &run); err != nil {
		t.Fatalf("decode run: %v\n%s", err, body)
	}
	return run
}

// page is the JSON of a list answer.
type page struct {
	Runs       []core.RunRecord `json:"runs"`
	NextCursor *string          `json:"next_cursor"`
}

func decodePage(t *testing.T, body []byte) page {
	t.Helper()
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode page: %v\n%s", err, body)
	}
	if p.Runs == nil {
		t.Fatalf("page without a runs array: %s", body)
	}
	return p
}

// problem is the JSON of an error answer.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
	Code     string `json:"code"`
	RunID    string `json:"run_id"`
	Errors   []struct {
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Field   *string `json:"field"`
	} `json:"errors"`
}

// decodeProblem checks that rec is a well-formed problem answer with the
// status it claims and returns it.
func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder, path string) problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answer Content-Type %q: %s", ct, rec.Body)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes())) // leaves rec.Body for the caller
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode problem: %v", err)
	}
	if p.Status != rec.Code || p.Title != http.StatusText(rec.Code) || p.Type != "about:blank" || p.Instance != path || p.Code == "" || p.Detail == "" || p.Errors == nil {
		t.Fatalf("malformed problem for %d: %+v", rec.Code, p)
	}
	return p
}

func (p problem) fields() []string {
	var out []string
	for _, e := range p.Errors {
		if e.Field != nil {
			out = append(out, *e.Field)
		}
	}
	return out
}
