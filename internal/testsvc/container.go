package testsvc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// This file is the fallback for machines without local server binaries. It is only
// reached after dockerAnswers, so a machine with a docker CLI but no daemon never
// waits on testcontainers' own discovery and retries.

// dockerAnswers reports whether a Docker daemon replies to GET /_ping within two
// seconds, at $DOCKER_HOST (unix:// or tcp://, without TLS) or the usual sockets.
func dockerAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, endpoint := range dockerEndpoints() {
		if pingDocker(ctx, endpoint) {
			return true
		}
	}
	return false
}

func dockerEndpoints() []string {
	if host := os.Getenv("DOCKER_HOST"); host != "" {
		return []string{host}
	}
	endpoints := []string{"unix:///var/run/docker.sock"}
	if home, err := os.UserHomeDir(); err == nil {
		endpoints = append(endpoints, "unix://"+filepath.Join(home, ".docker", "run", "docker.sock"))
	}
	if runtime := os.Getenv("XDG_RUNTIME_DIR"); runtime != "" {
		endpoints = append(endpoints, "unix://"+filepath.Join(runtime, "docker.sock"))
	}
	return endpoints
}

func pingDocker(ctx context.Context, endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	var dial func(ctx context.Context, _, _ string) (net.Conn, error)
	switch u.Scheme {
	case "unix":
		if _, err := os.Stat(u.Path); err != nil {
			return false
		}
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", u.Path)
		}
	case "tcp":
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
		}
	default:
		return false
	}
	client := &http.Client{Transport: &http.Transport{DialContext: dial}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startPostgresContainer runs postgres:15 with the same settings as a local server.
// The port is the container's mapping; a fixed host port is not supported.
func startPostgresContainer(ctx context.Context, port int, logf func(string, ...any)) (*Postgres, error) {
	if port != 0 {
		return nil, fmt.Errorf("%w: a fixed port is not supported for the postgres container", ErrUnavailable)
	}
	begin := time.Now()
	ctr, err := testcontainers.Run(ctx, "postgres:15",
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithEnv(map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust"}),
		testcontainers.WithCmd("postgres", "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300"),
		// The image's entrypoint starts the server twice (init, then for real).
		testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").
			WithOccurrence(2).WithStartupTimeout(3*time.Minute)),
	)
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("%w: postgres container: %w", ErrUnavailable, err)
	}
	hostPort, err := ctr.PortEndpoint(ctx, "5432/tcp", "")
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("%w: postgres container port: %w", ErrUnavailable, err)
	}
	binDir, _ := findPostgresBinDir("")
	p := &Postgres{
		admin:  url.URL{Scheme: "postgres", User: url.User("postgres"), Host: hostPort, Path: "/postgres", RawQuery: "sslmode=disable"},
		binDir: binDir,
		stop:   func() error { return testcontainers.TerminateContainer(ctr) },
	}
	if err := waitPostgresReady(ctx, p.AdminURL(), nil); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("%w: postgres container: %w", ErrUnavailable, err)
	}
	logf("testsvc: postgres container ready on %s in %v", hostPort, time.Since(begin).Round(time.Millisecond))
	return p, nil
}

// startRedisContainer runs redis:7 with the same settings as a local server.
func startRedisContainer(ctx context.Context, port int, logf func(string, ...any)) (*Redis, error) {
	if port != 0 {
		return nil, fmt.Errorf("%w: a fixed port is not supported for the redis container", ErrUnavailable)
	}
	begin := time.Now()
	ctr, err := testcontainers.Run(ctx, "redis:7",
		testcontainers.WithExposedPorts("6379/tcp"),
		testcontainers.WithCmd("redis-server", "--save", "", "--appendonly", "no",
			"--databases", fmt.Sprint(redisDatabases), "--maxmemory-policy", "noeviction"),
		testcontainers.WithWaitStrategy(wait.ForLog("Ready to accept connections").WithStartupTimeout(3*time.Minute)),
	)
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("%w: redis container: %w", ErrUnavailable, err)
	}
	hostPort, err := ctr.PortEndpoint(ctx, "6379/tcp", "")
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("%w: redis container port: %w", ErrUnavailable, err)
	}
	r := &Redis{
		base: url.URL{Scheme: "redis", Host: hostPort},
		stop: func() error { return testcontainers.TerminateContainer(ctr) },
	}
	if err := waitRedisReady(ctx, r.Addr(), nil); err != nil {
		_ = r.Stop()
		return nil, fmt.Errorf("%w: redis container: %w", ErrUnavailable, err)
	}
	logf("testsvc: redis container ready on %s in %v", hostPort, time.Since(begin).Round(time.Millisecond))
	return r, nil
}
