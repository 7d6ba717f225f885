package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/internal/testsvc"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// run executes spine-migrate in process with the given environment.
func run(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	root := a.root()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	if err != nil {
		// What main prints.
		errOut.WriteString("spine-migrate: " + a.scrub.Scrub(err.Error()) + "\n")
	}
	return out.String(), errOut.String(), err
}

func TestMigrateUpDownStatus(t *testing.T) {
	t.Parallel()
	db := testsvc.NewCaptureSpineDatabase(t)
	env := map[string]string{"DATABASE_URL": db}

	out, _, err := run(t, env, "migrate", "up", "--dry-run")
	if err != nil || !strings.Contains(out, "ALTER TABLE executions") || !strings.Contains(out, "CREATE UNIQUE INDEX CONCURRENTLY") || !strings.Contains(out, "Dry run") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "migrate", "status", "-o", "json")
	var st []migrationView
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || len(st) == 0 {
		t.Fatalf("status after dry run: %v %s", err, out)
	}
	for _, s := range st {
		if s.Applied {
			t.Fatalf("dry run applied %04d", s.Version)
		}
	}

	out, _, err = run(t, env, "migrate", "up", "-o", "json")
	var res struct {
		Applied []stepView `json:"applied"`
	}
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || len(res.Applied) != len(st) {
		t.Fatalf("up: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "migrate", "up")
	if err != nil || !strings.Contains(out, "Nothing to do") {
		t.Fatalf("second up: %v\n%s", err, out)
	}

	// down without --execute only plans.
	out, _, err = run(t, env, "migrate", "down")
	if err != nil || !strings.Contains(out, "add --execute") || !strings.Contains(out, "DROP TRIGGER IF EXISTS trg_executions_priority_from_lane") {
		t.Fatalf("down plan: %v\n%s", err, out)
	}
	out, _, _ = run(t, env, "status", "-o", "json")
	var sv statusView
	if err := json.Unmarshal([]byte(out), &sv); err != nil || sv.Migrations.Applied != len(st) || len(sv.Phases) != 3 {
		t.Fatalf("status after a down plan: %v %s", err, out)
	}
	out, _, err = run(t, env, "migrate", "down", "--execute")
	if err != nil || !strings.Contains(out, "Reverted 0007") || strings.Contains(out, "0006") {
		t.Fatalf("down one step: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "migrate", "down", "--all", "--execute")
	if err != nil || !strings.Contains(out, "Reverted 0001") {
		t.Fatalf("down all: %v\n%s", err, out)
	}
	out, _, _ = run(t, env, "status")
	if !strings.Contains(out, "0 of ") {
		t.Errorf("status after down all:\n%s", out)
	}
}

func TestPasswordsAreNeverPrinted(t *testing.T) {
	t.Parallel()
	const secret = "Pw-that-must-NOT-leak"
	db := testsvc.NewCaptureSpineDatabase(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("postgres", secret) // the test server trusts loopback, so any password works
	withPassword := u.String()
	bad := *u
	bad.Host = "127.0.0.1:1" // nothing listens there
	redis := "redis://:" + secret + "-redis@127.0.0.1:1/0"

	cases := [][]string{
		{"--database-url", withPassword, "--redis-url", redis, "--log-level", "debug", "migrate", "up"},
		{"--database-url", withPassword, "status", "-o", "json"},
		{"--database-url", bad.String(), "--log-level", "debug", "migrate", "status"},
		{"--database-url", "host=127.0.0.1 port=1 user=postgres password=" + secret + " dbname=x", "migrate", "status"},
		{"--database-url", "postgres://postgres:" + secret + "@[::1", "status"},
	}
	for _, args := range cases {
		out, errOut, _ := run(t, map[string]string{}, args...)
		if strings.Contains(out+errOut, secret) {
			t.Errorf("%v printed the password:\n%s\n%s", args[2:], out, errOut)
		}
	}
	// PGPASSWORD is scrubbed too.
	_, errOut, err := run(t, map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGPASSWORD": secret}, "migrate", "status")
	if err == nil || strings.Contains(errOut, secret) {
		t.Errorf("PGPASSWORD case: %v\n%s", err, errOut)
	}
}

func TestEnvironmentPrecedence(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env   map[string]string
		args  []string
		redis string
	}{
		{map[string]string{"CELERY_BROKER_URL": "redis://broker/0", "REDIS_URL": "redis://other/1"}, nil, "redis://broker/0"},
		{map[string]string{"REDIS_URL": "redis://other/1"}, nil, "redis://other/1"},
		{map[string]string{"CELERY_BROKER_URL": "redis://broker/0"}, []string{"--redis-url", "redis://flag/2"}, "redis://flag/2"},
	}
	for _, c := range cases {
		a := newApp(&bytes.Buffer{}, &bytes.Buffer{}, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
		root := a.root()
		root.SetArgs(append(c.args, "version"))
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if a.redisURL != c.redis {
			t.Errorf("env %v args %v: redis %q, want %q", c.env, c.args, a.redisURL, c.redis)
		}
	}
	_, errOut, err := run(t, map[string]string{}, "migrate", "status")
	if err == nil || !strings.Contains(errOut, "no database given") {
		t.Errorf("no database anywhere: %v %s", err, errOut)
	}
	_, errOut, err = run(t, map[string]string{}, "-o", "yaml", "version")
	if err == nil || !strings.Contains(errOut, "use text or json") {
		t.Errorf("bad --output: %v %s", err, errOut)
	}
}
