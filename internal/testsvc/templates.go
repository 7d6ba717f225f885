package testsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spinecore/spine-go/internal/seed"
)

// dbTemplate is a database built once per test binary and copied for each test:
// CREATE DATABASE ... TEMPLATE takes milliseconds, loading a schema or seeding takes
// far longer.
type dbTemplate struct {
	once    sync.Once
	name    string
	summary seed.Summary
	err     error
}

var templates sync.Map // key → *dbTemplate

// NewCaptureSpineDatabase creates a database for the test holding Capture-Spine's
// schema (see seed.LoadSchema) and no rows; it is dropped when the test ends.
func NewCaptureSpineDatabase(t testing.TB) string {
	t.Helper()
	pg := PostgresServer(t)
	tmpl := templateFor(t, pg, "capturespine", func(context.Context, *pgx.Conn) (seed.Summary, error) {
		return seed.Summary{}, nil
	})
	return newDatabase(t, pg, tmpl.name)
}

// NewSeededCaptureSpineDatabase is NewCaptureSpineDatabase with the rows of
// seed.CaptureSpine(opts), and the seed's Summary. Equal opts share one seeded
// template, so the rows are generated once per test binary.
func NewSeededCaptureSpineDatabase(t testing.TB, opts seed.Options) (string, seed.Summary) {
	t.Helper()
	pg := PostgresServer(t)
	tmpl := templateFor(t, pg, fmt.Sprintf("capturespine-seeded %+v", opts), func(ctx context.Context, conn *pgx.Conn) (seed.Summary, error) {
		return seed.CaptureSpine(ctx, conn, opts)
	})
	return newDatabase(t, pg, tmpl.name), tmpl.summary
}

// templateFor returns the template for key, building it on first use: the
// Capture-Spine schema, then fill. A failure fails every test that needs it.
func templateFor(t testing.TB, pg *Postgres, key string, fill func(context.Context, *pgx.Conn) (seed.Summary, error)) *dbTemplate {
	t.Helper()
	v, _ := templates.LoadOrStore(key, new(dbTemplate))
	tmpl := v.(*dbTemplate)
	tmpl.once.Do(func() {
		sum := sha256.Sum256([]byte(key))
		tmpl.name = fmt.Sprintf("spine_tmpl_%s_%d", hex.EncodeToString(sum[:6]), os.Getpid())
		tmpl.summary, tmpl.err = buildTemplate(pg, tmpl.name, fill)
	})
	if tmpl.err != nil {
		t.Fatalf("testsvc: template %q: %v", key, tmpl.err)
	}
	return tmpl
}

func buildTemplate(pg *Postgres, name string, fill func(context.Context, *pgx.Conn) (seed.Summary, error)) (_ seed.Summary, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	url, err := pg.CreateDatabase(ctx, name)
	if err != nil {
		return seed.Summary{}, err
	}
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return pg.DropDatabase(ctx, name)
	}
	defer func() {
		if err != nil {
			_ = drop()
		}
	}()
	if err := onStop(drop); err != nil { // an external server keeps nothing of ours
		return seed.Summary{}, err
	}

	// Every session must be gone before the template is copied, so this connection
	// is closed here rather than pooled.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return seed.Summary{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if err := seed.LoadSchema(ctx, conn); err != nil {
		return seed.Summary{}, err
	}
	summary, err := fill(ctx, conn)
	if err != nil {
		return seed.Summary{}, err
	}
	// Fresh statistics, so every copy plans its first queries alike.
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return seed.Summary{}, fmt.Errorf("analyze: %w", err)
	}
	return summary, nil
}
