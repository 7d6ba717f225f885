package testsvc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisPool hands out the logical DBs of the shared Redis server. DB 0 is kept for
// claims (spine-testsvc:claim:<n>, SET NX with an expiry), so test binaries sharing an
// external server through SPINE_TEST_REDIS_URL never hand out the same DB twice.
type redisPool struct {
	server    *Redis
	claims    *redis.Client
	databases int
	next      atomic.Uint64
}

const claimTTL = time.Hour // outlives any test run; a killed run's claims expire

// NewRedisDB returns the URL of a logical DB of the shared Redis server that no other
// test holds, emptied before it is handed out and again when the test ends. When
// every DB is held it waits for one. If no Redis is available the test is skipped,
// or failed under CI=true.
func NewRedisDB(t testing.TB) string {
	t.Helper()
	pool := sharedRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner := fmt.Sprintf("%d %s", os.Getpid(), t.Name())
	for {
		db, err := pool.claim(ctx, owner)
		if err != nil {
			t.Fatalf("testsvc: %v", err)
		}
		if db == 0 { // an external server with few DBs: wait for a test to finish
			select {
			case <-ctx.Done():
				t.Fatalf("testsvc: all %d Redis DBs of %s stayed claimed: %v", pool.databases-1, pool.server.Addr(), ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if err := pool.flush(ctx, db); err != nil {
			t.Fatalf("testsvc: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := pool.flush(ctx, db); err != nil {
				t.Errorf("testsvc: %v", err)
			}
			if err := pool.claims.Del(ctx, claimKey(db)).Err(); err != nil {
				t.Errorf("testsvc: release Redis DB %d: %v", db, err)
			}
		})
		return pool.server.URL(db)
	}
}

// claim takes the next free DB in round-robin order, or returns 0 if all are held.
func (p *redisPool) claim(ctx context.Context, owner string) (int, error) {
	for range p.databases - 1 {
		db := 1 + int((p.next.Add(1)-1)%uint64(p.databases-1))
		ok, err := p.claims.SetNX(ctx, claimKey(db), owner, claimTTL).Result()
		if err != nil {
			return 0, fmt.Errorf("claim Redis DB %d: %w", db, err)
		}
		if ok {
			return db, nil
		}
	}
	return 0, nil
}

func claimKey(db int) string { return "spine-testsvc:claim:" + strconv.Itoa(db) }

func (p *redisPool) flush(ctx context.Context, db int) error {
	opts, err := redis.ParseURL(p.server.URL(db))
	if err != nil {
		return err
	}
	opts.PoolSize = 1
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush Redis DB %d: %w", db, err)
	}
	return nil
}

func sharedRedis(t testing.TB) *redisPool {
	t.Helper()
	shared.redisOnce.Do(func() {
		begin := time.Now()
		shared.redis, shared.redisErr = startSharedRedis()
		if shared.redisErr == nil {
			t.Logf("testsvc: redis at %s, ready in %v", shared.redis.server.Addr(), time.Since(begin).Round(time.Millisecond))
		}
	})
	if shared.redisErr != nil {
		unavailable(t, "Redis", shared.redisErr, redisHint)
	}
	return shared.redis
}

func startSharedRedis() (*redisPool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var server *Redis
	var err error
	if u := os.Getenv("SPINE_TEST_REDIS_URL"); u != "" {
		server, err = externalRedis(ctx, u)
	} else {
		server, err = StartRedis(ctx, RedisOptions{})
	}
	if err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(server.URL(0))
	if err != nil {
		return nil, errors.Join(err, server.Stop())
	}
	pool := &redisPool{server: server, claims: redis.NewClient(opts), databases: redisDatabases}
	// An external server may have fewer DBs (16 by default); a managed one may hide CONFIG.
	if cfg, err := pool.claims.ConfigGet(ctx, "databases").Result(); err == nil {
		if n, err := strconv.Atoi(cfg["databases"]); err == nil {
			pool.databases = n
		}
	} else if server.stop == nil {
		pool.databases = 16
	}
	if pool.databases < 2 {
		return nil, fmt.Errorf("redis at %s has %d logical DBs; tests need at least 2", server.Addr(), pool.databases)
	}
	stop := func() error {
		pool.claims.Close()
		return server.Stop()
	}
	if err := onStop(stop); err != nil {
		return nil, errors.Join(err, stop())
	}
	return pool, nil
}
