package testsvc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrUnavailable is returned (wrapped, with the reason) when a server cannot be
// started: binaries missing, no Docker daemon, or the server would not come up.
var ErrUnavailable = errors.New("testsvc: service unavailable")

// defaultPostgresBinDir is where Debian's postgresql-15 package installs the server.
const defaultPostgresBinDir = "/usr/lib/postgresql/15/bin"

// PostgresOptions configures StartPostgres. The zero value is ready to use.
type PostgresOptions struct {
	// BinDir holds initdb, postgres and pg_ctl. Empty means $SPINE_PG_BIN, then
	// /usr/lib/postgresql/15/bin, then `pg_config --bindir`.
	BinDir string
	// Port is the port to listen on at 127.0.0.1; 0 picks a free one.
	Port int
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Postgres is a running PostgreSQL server on which AdminURL may create databases:
// one this package started (local process or container), trusting the postgres
// role, or an existing one named by SPINE_TEST_DATABASE_URL, which Stop leaves running.
type Postgres struct {
	admin  url.URL // the maintenance database, as the postgres role
	binDir string
	stop   func() error // stops the server; nil for a server we did not start

	poolMu  sync.Mutex
	pool    *pgxpool.Pool // admin connections for CREATE/DROP DATABASE, opened lazily
	version int           // server_version_num, read when the pool opens

	// CREATE DATABASE ... TEMPLATE fails while anything else uses the template, so
	// copies of one template are serialised; the map holds a *sync.Mutex per name.
	templateLocks sync.Map

	stopOnce sync.Once
	stopErr  error
}

// StartPostgres initialises a fresh cluster in a spine-testsvc-pg-* temporary
// directory and starts it on loopback, returning once it accepts connections. With
// no local binaries (and no BinDir given) it starts a postgres:15 container instead,
// but only when a Docker daemon answers.
//
// The server runs with fsync=off and full_page_writes=off (its data is disposable)
// but keeps synchronous_commit on, so commit latency in benchmarks stays realistic.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	logf := opts.Logf
	if logf == nil {
		logf = discardf
	}
	binDir, err := findPostgresBinDir(opts.BinDir)
	if err != nil {
		if opts.BinDir == "" && dockerAnswers(ctx) {
			logf("testsvc: %v; using a postgres:15 container", err)
			return startPostgresContainer(ctx, opts.Port, logf)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return startLocalPostgres(ctx, binDir, opts.Port, logf)
}

// AdminURL is the URL of the server's maintenance database, for example
// postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
func (p *Postgres) AdminURL() string { return p.admin.String() }

// URL is the URL of database on this server, as the same role as AdminURL.
func (p *Postgres) URL(database string) string {
	u := p.admin
	u.Path = "/" + database
	u.RawPath = ""
	return u.String()
}

// BinDir is the directory of the PostgreSQL client programs (pg_dump, psql) that
// match the local server, or "" when none are installed.
func (p *Postgres) BinDir() string { return p.binDir }

// CreateDatabase creates an empty database and returns its URL.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	return p.createDatabase(ctx, name, "")
}

// DropDatabase drops a database, disconnecting its sessions first (WITH (FORCE)).
// A database that does not exist is not an error.
func (p *Postgres) DropDatabase(ctx context.Context, name string) error {
	pool, err := p.adminPool(ctx)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	return nil
}

// Stop closes the admin connections and, for a server this package started, stops
// it (pg_ctl stop -m fast) and removes its directory. It is safe to call twice.
func (p *Postgres) Stop() error {
	p.stopOnce.Do(func() {
		p.poolMu.Lock()
		if p.pool != nil {
			p.pool.Close()
			p.pool = nil
		}
		p.poolMu.Unlock()
		if p.stop != nil {
			p.stopErr = p.stop()
		}
	})
	return p.stopErr
}

// createDatabase creates name, as a copy of template when one is given.
func (p *Postgres) createDatabase(ctx context.Context, name, template string) (string, error) {
	pool, err := p.adminPool(ctx)
	if err != nil {
		return "", err
	}
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
		lock, _ := p.templateLocks.LoadOrStore(template, new(sync.Mutex))
		lock.(*sync.Mutex).Lock()
		defer lock.(*sync.Mutex).Unlock()
	}
	// PostgreSQL 15 copies through the WAL by default; copying the files is about
	// twice as fast for small databases, and its checkpoints are cheap with fsync off.
	if p.version >= 150000 {
		sql += " STRATEGY FILE_COPY"
	}
	if _, err := pool.Exec(ctx, sql); err != nil {
		return "", fmt.Errorf("create database %q: %w", name, err)
	}
	return p.URL(name), nil
}

func (p *Postgres) adminPool(ctx context.Context) (*pgxpool.Pool, error) {
	p.poolMu.Lock()
	defer p.poolMu.Unlock()
	if p.pool != nil {
		return p.pool, nil
	}
	cfg, err := pgxpool.ParseConfig(p.AdminURL())
	if err != nil {
		return nil, fmt.Errorf("admin pool: %w", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("admin pool: %w", err)
	}
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&p.version); err != nil {
		pool.Close()
		return nil, fmt.Errorf("admin pool: server version: %w", err)
	}
	p.pool = pool
	return pool, nil
}

// findPostgresBinDir returns the first candidate holding initdb, postgres and pg_ctl.
func findPostgresBinDir(explicit string) (string, error) {
	if explicit != "" {
		if err := hasServerBinaries(explicit); err != nil {
			return "", err
		}
		return explicit, nil
	}
	candidates := []string{os.Getenv("SPINE_PG_BIN"), defaultPostgresBinDir}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	var tried []string
	for _, dir := range candidates {
		if dir == "" {
			continue
		}
		if hasServerBinaries(dir) == nil {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, postgres, pg_ctl) in %s; "+
		"install postgresql-15 or set SPINE_PG_BIN", strings.Join(tried, ", "))
}

func hasServerBinaries(dir string) error {
	for _, name := range []string{"initdb", "postgres", "pg_ctl"} {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.IsDir() {
			return fmt.Errorf("no %s in %s", name, dir)
		}
	}
	return nil
}

// runAs runs PostgreSQL's programs as the postgres OS user when we are root, since
// initdb and postgres refuse to run as root; otherwise as ourselves.
type runAs struct {
	name     string
	uid, gid int
}

func postgresRunAs() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a 'postgres' OS user to run the server as: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("postgres user: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("postgres user: gid %q: %w", u.Gid, err)
	}
	return &runAs{name: u.Username, uid: uid, gid: gid}, nil
}

// command builds the command line; a nil runAs runs it directly.
func (r *runAs) command(ctx context.Context, program string, args ...string) *exec.Cmd {
	if r == nil {
		return exec.CommandContext(ctx, program, args...)
	}
	return exec.CommandContext(ctx, "runuser", append([]string{"-u", r.name, "--", program}, args...)...)
}

func (r *runAs) chown(path string) error {
	if r == nil {
		return nil
	}
	return os.Chown(path, r.uid, r.gid)
}

func startLocalPostgres(ctx context.Context, binDir string, port int, logf func(string, ...any)) (_ *Postgres, err error) {
	begin := time.Now()
	as, err := postgresRunAs()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	dir, err := newWorkDir("pg")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := as.chown(dir); err != nil {
		return nil, fmt.Errorf("chown %s to postgres: %w", dir, err)
	}

	data := filepath.Join(dir, "data")
	initdb := as.command(ctx, filepath.Join(binDir, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: initdb: %w\n%s", ErrUnavailable, err, out)
	}
	logf("testsvc: initdb %s in %v", data, time.Since(begin).Round(time.Millisecond))

	// Unix socket paths are limited to about 107 bytes; a long TMPDIR falls back to TCP only.
	socketDir := dir
	if len(socketDir)+len("/.s.PGSQL.65535") > 100 {
		socketDir = ""
	}

	logPath := filepath.Join(dir, "postgres.log")
	for attempt := 1; ; attempt++ {
		listen := port
		if listen == 0 {
			if listen, err = freeLoopbackPort(); err != nil {
				return nil, err
			}
		}
		srv, err := runPostgres(ctx, as, binDir, data, socketDir, logPath, listen)
		if err == nil {
			srv.stop = func() error { return stopLocalPostgres(as, binDir, data, dir, srv.exited, srv.cmd) }
			logf("testsvc: postgres ready on 127.0.0.1:%d in %v", listen, time.Since(begin).Round(time.Millisecond))
			return srv.Postgres, nil
		}
		if port != 0 || attempt == 4 || !strings.Contains(tailFile(logPath, 20), "could not bind") {
			return nil, err
		}
		logf("testsvc: port %d taken before postgres bound it; retrying", listen)
	}
}

// localPostgres is a server process this package runs.
type localPostgres struct {
	*Postgres
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returns
}

func runPostgres(ctx context.Context, as *runAs, binDir, data, socketDir, logPath string, port int) (*localPostgres, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("postgres log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor
	// Not CommandContext: the server must outlive the start-up context.
	cmd := as.command(context.Background(), filepath.Join(binDir, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+socketDir,
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start postgres: %w", ErrUnavailable, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	pg := &Postgres{
		admin:  url.URL{Scheme: "postgres", User: url.User("postgres"), Host: "127.0.0.1:" + strconv.Itoa(port), Path: "/postgres", RawQuery: "sslmode=disable"},
		binDir: binDir,
	}
	if err := waitPostgresReady(ctx, pg.AdminURL(), exited); err != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		return nil, fmt.Errorf("%w: postgres on port %d: %w\n%s", ErrUnavailable, port, err, tailFile(logPath, 20))
	}
	return &localPostgres{Postgres: pg, cmd: cmd, exited: exited}, nil
}

// waitPostgresReady polls until a connection succeeds, the process exits or ctx ends.
func waitPostgresReady(ctx context.Context, connURL string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var lastErr error
	for {
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, time.Second)
		conn, err := pgconn.Connect(attemptCtx, connURL)
		cancelAttempt()
		if err == nil {
			return conn.Close(ctx)
		}
		lastErr = err
		select {
		case <-exited:
			return errors.New("server exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections: %w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func stopLocalPostgres(as *runAs, binDir, data, dir string, exited <-chan struct{}, cmd *exec.Cmd) error {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var errs []error
	stop := as.command(ctx, filepath.Join(binDir, "pg_ctl"), "stop", "-D", data, "-m", "fast", "-w", "-t", "30")
	if out, err := stop.CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("pg_ctl stop: %w: %s", err, strings.TrimSpace(string(out))))
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		errs = append(errs, errors.New("postgres did not exit; killed"))
		killRecorded(filepath.Join(data, "postmaster.pid"), "postgres", syscall.SIGKILL)
		_ = cmd.Process.Kill()
		<-exited
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	return nil
}

// externalPostgres wraps an existing server the caller may CREATE DATABASE on.
func externalPostgres(ctx context.Context, rawURL string) (*Postgres, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("SPINE_TEST_DATABASE_URL: %w", err)
	}
	binDir, _ := findPostgresBinDir("")
	p := &Postgres{admin: *u, binDir: binDir}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: SPINE_TEST_DATABASE_URL: %w", ErrUnavailable, err)
	}
	return p, conn.Close(ctx)
}
