package testsvc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisDatabases is how many logical DBs a local server gets: one per parallel test
// comfortably, with DB 0 kept for bookkeeping.
const redisDatabases = 2048

// RedisOptions configures StartRedis. The zero value is ready to use.
type RedisOptions struct {
	// Port is the port to listen on at 127.0.0.1; 0 picks a free one.
	Port int
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Redis is a running Redis server: one this package started, or an existing one
// named by SPINE_TEST_REDIS_URL, which Stop leaves running.
type Redis struct {
	base url.URL // without a DB path
	stop func() error

	stopOnce sync.Once
	stopErr  error
}

// StartRedis starts redis-server on loopback from a spine-testsvc-redis-* temporary
// directory, without persistence, with 2048 logical DBs and noeviction (a test must
// see an out-of-memory error, not silently lose keys), and returns once it answers
// PING. Without a local redis-server it starts a redis:7 container, but only when a
// Docker daemon answers.
func StartRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	logf := opts.Logf
	if logf == nil {
		logf = discardf
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server" // PATH may be trimmed under go test's callers
		if _, statErr := os.Stat(bin); statErr != nil {
			if dockerAnswers(ctx) {
				logf("testsvc: no redis-server installed; using a redis:7 container")
				return startRedisContainer(ctx, opts.Port, logf)
			}
			return nil, fmt.Errorf("%w: no redis-server on PATH or in /usr/bin; install redis-server (Redis 7)", ErrUnavailable)
		}
	}
	return startLocalRedis(ctx, bin, opts.Port, logf)
}

// URL is the URL of logical DB db, for example redis://127.0.0.1:PORT/3.
func (r *Redis) URL(db int) string {
	u := r.base
	u.Path = "/" + strconv.Itoa(db)
	u.RawPath = ""
	return u.String()
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return r.base.Host }

// Stop stops a server this package started and removes its directory. It is safe
// to call twice.
func (r *Redis) Stop() error {
	r.stopOnce.Do(func() {
		if r.stop != nil {
			r.stopErr = r.stop()
		}
	})
	return r.stopErr
}

func startLocalRedis(ctx context.Context, bin string, port int, logf func(string, ...any)) (_ *Redis, err error) {
	begin := time.Now()
	dir, err := newWorkDir("redis")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	logPath := filepath.Join(dir, "redis.log")
	for attempt := 1; ; attempt++ {
		listen := port
		if listen == 0 {
			if listen, err = freeLoopbackPort(); err != nil {
				return nil, err
			}
		}
		r, err := runRedis(ctx, bin, dir, logPath, listen)
		if err == nil {
			logf("testsvc: redis ready on %s in %v", r.Addr(), time.Since(begin).Round(time.Millisecond))
			return r, nil
		}
		if port != 0 || attempt == 4 || !strings.Contains(tailFile(logPath, 20), "Address already in use") {
			return nil, err
		}
		logf("testsvc: port %d taken before redis bound it; retrying", listen)
	}
}

func runRedis(ctx context.Context, bin, dir, logPath string, port int) (*Redis, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("redis log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--save", "",
		"--appendonly", "no",
		"--databases", strconv.Itoa(redisDatabases),
		"--maxmemory-policy", "noeviction",
		"--dir", dir,
		"--pidfile", filepath.Join(dir, "redis.pid"),
		"--daemonize", "no",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start redis-server: %w", ErrUnavailable, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	r := &Redis{base: url.URL{Scheme: "redis", Host: "127.0.0.1:" + strconv.Itoa(port)}}
	r.stop = func() error {
		var errs []error
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			errs = append(errs, errors.New("redis-server did not exit on SIGTERM; killed"))
			_ = cmd.Process.Kill()
			<-exited
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("stop redis: %w", err)
		}
		return nil
	}
	if err := waitRedisReady(ctx, r.Addr(), exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("%w: redis-server on port %d: %w\n%s", ErrUnavailable, port, err, tailFile(logPath, 20))
	}
	return r, nil
}

// waitRedisReady polls PING until +PONG, the process exits or ctx ends. It speaks
// RESP by hand: a client library would log every refused dial while the server boots.
func waitRedisReady(ctx context.Context, addr string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := pingRedis(ctx, addr)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("server exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("no answer to PING: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func pingRedis(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if reply != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(reply)) // e.g. -LOADING
	}
	return nil
}

// externalRedis wraps an existing server; its URL's DB path is ignored.
func externalRedis(ctx context.Context, rawURL string) (*Redis, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("SPINE_TEST_REDIS_URL: %w", err)
	}
	u.Path, u.RawPath = "", ""
	r := &Redis{base: *u}
	opts, err := redis.ParseURL(r.URL(0))
	if err != nil {
		return nil, fmt.Errorf("SPINE_TEST_REDIS_URL: %w", err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("%w: SPINE_TEST_REDIS_URL: %w", ErrUnavailable, err)
	}
	return r, nil
}
