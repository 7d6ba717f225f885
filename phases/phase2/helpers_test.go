package phase2

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
)

func TestMain(m *testing.M) {
	if os.Getenv(chaosChildEnv) != "" {
		os.Exit(chaosChild())
	}
	testsvc.Main(m)
}

var quiet = slog.New(slog.DiscardHandler)

// testLogger logs to the test when -v, else nowhere.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return quiet
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// phase1Pool is a pool on a fresh Capture-Spine database with phase 1
// applied, and its URL.
func phase1Pool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	url := testsvc.NewCaptureSpineDatabase(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := phase1.Apply(context.Background(), pool, phase1.Options{Logger: quiet}); err != nil {
		t.Fatalf("phase1 apply: %v", err)
	}
	return pool, url
}

// redisDB is a Redis logical DB of the test's own, as a URL and a client.
func redisDB(t testing.TB) (string, *redis.Client) {
	t.Helper()
	url := testsvc.NewRedisDB(t)
	opts, err := celerybridge.ParseBrokerURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return url, rdb
}

func defaultCatalog() *capturespine.Catalog { return capturespine.DefaultCatalog() }
