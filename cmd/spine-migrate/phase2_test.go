package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/internal/celerytest"
	"github.com/spinecore/spine-go/internal/testsvc"
	"github.com/spinecore/spine-go/phases/phase1"
	"github.com/spinecore/spine-go/phases/phase2"
)

// phase1Database is a Capture-Spine database with phase 1 applied.
func phase1Database(t *testing.T) string {
	t.Helper()
	url := testsvc.NewCaptureSpineDatabase(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := phase1.Apply(context.Background(), pool, phase1.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	return url
}

// runCtx is run with a context the test controls.
func runCtx(ctx context.Context, env map[string]string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	root := a.root()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func phase2Dir(t *testing.T) string {
	return filepath.Join(filepath.Dir(celerytest.InteropDir(t)), "phase2")
}

// The operator's path through the routes: set, list, drain, status and
// rollback, as the commands print them.
func TestPhase2RouteCommands(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testsvc.NewCaptureSpineDatabase(t), "USER": "alice"}
	if _, stderr, err := run(t, env, "phase2", "set", "app.tasks.backup.run_backup_for_user", "--mode", "shadow"); err == nil || !strings.Contains(stderr, "phase1 apply") {
		t.Fatalf("set before phase 1: %v %s", err, stderr)
	}
	env["DATABASE_URL"] = phase1Database(t)

	out, _, err := run(t, env, "phase2", "status")
	if err != nil || !strings.Contains(out, "Phase 2: not started") {
		t.Fatalf("status before any route: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase2", "routes")
	if err != nil || !strings.Contains(out, "No routes") {
		t.Fatalf("routes: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase2", "set", "app.tasks.backup.run_backup_for_user", "--mode", "shadow", "--percent", "30")
	if err != nil || !strings.Contains(out, "shadow 30%, passthrough the rest") || !strings.Contains(out, "by alice") {
		t.Fatalf("set shadow: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase2", "set", "--all", "--mode", "reroute", "--percent", "10", "--lane", "slow", "-o", "json")
	var set []phase2.Route
	if err != nil || json.Unmarshal([]byte(out), &set) != nil || len(set) != 6 {
		t.Fatalf("set --all: %v\n%s", err, out)
	}
	for _, r := range set {
		bt, err := capturespine.DefaultCatalog().Lookup(r.Task)
		if err != nil || r.Mode != phase2.ModeReroute || r.Percent != 10 || r.Pipeline != bt.Pipeline || r.Queue != "celery" || r.Lane != "slow" {
			t.Errorf("route %+v", r)
		}
	}
	for _, bad := range [][]string{
		{"phase2", "set", "app.tasks.none", "--mode", "shadow"},
		{"phase2", "set", "app.tasks.none", "--mode", "shadow", "--pipeline", "p"},
		{"phase2", "set", "app.tasks.backup.run_backup_for_user", "--mode", "fast"},
		{"phase2", "set", "app.tasks.backup.run_backup_for_user", "--mode", "shadow", "--percent", "120"},
		{"phase2", "set", "app.tasks.backup.run_backup_for_user"},
		{"phase2", "set", "--mode", "shadow"},
	} {
		if _, _, err := run(t, env, bad...); err == nil {
			t.Errorf("%v accepted", bad[2:])
		}
	}
	// A task outside the catalog can be given a passthrough route by hand.
	if _, stderr, err := run(t, env, "phase2", "set", "app.tasks.none", "--mode", "passthrough", "--pipeline", "p", "--queue", "q"); err != nil {
		t.Fatalf("passthrough route for a task outside the catalog: %v %s", err, stderr)
	}
	out, _, _ = run(t, env, "phase2", "routes")
	t.Logf("phase2 routes:\n%s", out)
	out, _, err = run(t, env, "phase2", "routes", "-o", "json")
	var listed []phase2.Route
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 7 {
		t.Fatalf("routes -o json: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase2", "status", "-o", "json")
	var st phase2.State
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.State != phase2.StateRerouting || st.Lag != nil || len(st.Tasks) != 7 {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if s := st.Summary(); !strings.Contains(s, "reroute run_backup_for_user 10%") {
		t.Errorf("summary %q", s)
	}

	if _, stderr, err := run(t, env, "phase2", "rollback"); err == nil || !strings.Contains(stderr, "drain") {
		t.Fatalf("rollback under active routes: %v %s", err, stderr)
	}
	out, _, err = run(t, env, "phase2", "drain")
	if err != nil || !strings.Contains(out, "Drained 6 routes") {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	out, _, _ = run(t, env, "phase2", "drain")
	if !strings.Contains(out, "Nothing to drain") {
		t.Errorf("second drain:\n%s", out)
	}
	out, _, err = run(t, env, "phase2", "status")
	t.Logf("phase2 status after drain:\n%s", out)
	if err != nil || !strings.Contains(out, "Phase 2: passthrough") || !strings.Contains(out, "no broker given") {
		t.Errorf("status after drain: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase2", "rollback")
	if err != nil || !strings.Contains(out, "Rollback would drop [spine_phase2_routes]") {
		t.Fatalf("rollback plan: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase2", "rollback", "--execute")
	if err != nil || !strings.Contains(out, "rolled back") {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	out, _, err = run(t, env, "phase1", "rollback")
	if err != nil || strings.Contains(out, "spine_phase2") {
		t.Errorf("phase 1 rollback plan after phase 2's rollback: %v\n%s", err, out)
	}
}

// A real Celery 5.2.6 app configured with celery-config's output sends the
// catalog's tasks (or those named) to the intercept queue, and nothing else.
func TestPhase2CeleryConfigRoutesARealCeleryApp(t *testing.T) {
	t.Parallel()
	py := celerytest.Python(t)
	catalog := capturespine.DefaultCatalog().Tasks()
	named := []string{"app.tasks.backup.run_backup_for_user", "app.tasks.sync.sync_environments"}
	for _, c := range []struct {
		name        string
		args        []string
		intercepted []string
	}{
		{"catalog", nil, nil},
		{"named", named, named},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := run(t, map[string]string{}, append([]string{"phase2", "celery-config"}, c.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			routes := filepath.Join(t.TempDir(), "spine_phase2_routes.py")
			if err := os.WriteFile(routes, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			url := testsvc.NewRedisDB(t)
			cmd := exec.Command(py, filepath.Join(phase2Dir(t), "phase2_app.py"), "send", "1")
			cmd.Env = append(os.Environ(), "SPINE_REDIS_URL="+url, "PHASE2_ROUTES="+routes)
			sent, err := cmd.Output()
			if err != nil {
				t.Fatalf("producer: %v\n%s", err, sent)
			}
			var ids struct {
				IDs   map[string][]string `json:"ids"`
				Other string              `json:"other"`
			}
			if err := json.Unmarshal(sent, &ids); err != nil || len(ids.IDs) != 6 {
				t.Fatalf("producer printed %s (%v)", sent, err)
			}
			opts, _ := celerybridge.ParseBrokerURL(url)
			rdb := redis.NewClient(opts)
			defer rdb.Close()
			tr := celerybridge.NewTransport(rdb, celerybridge.TransportOptions{})
			tasksOn := func(queue string) []string {
				msgs, err := tr.Peek(context.Background(), queue, 0)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, m := range msgs {
					task, err := celerybridge.DecodeTask(m.Raw)
					if err != nil {
						t.Fatal(err)
					}
					if ids.IDs[task.Name] != nil && ids.IDs[task.Name][0] != task.ID {
						t.Errorf("%s carries id %s, the producer sent %s", task.Name, task.ID, ids.IDs[task.Name][0])
					}
					names = append(names, task.Name)
				}
				slices.Sort(names)
				return names
			}
			want := c.intercepted
			if want == nil {
				for _, bt := range catalog {
					want = append(want, bt.Task)
				}
			}
			slices.Sort(want)
			var rest []string
			for _, bt := range catalog {
				if !slices.Contains(want, bt.Task) {
					rest = append(rest, bt.Task)
				}
			}
			rest = append(rest, "app.tasks.cleanup.purge_tmp")
			slices.Sort(rest)
			if got := tasksOn(phase2.DefaultInterceptQueue); !slices.Equal(got, want) {
				t.Errorf("intercept queue holds %v, want %v", got, want)
			}
			if got := tasksOn("celery"); !slices.Equal(got, rest) {
				t.Errorf("celery queue holds %v, want %v", got, rest)
			}
		})
	}
}

// phase2 run serves its endpoints, passes a message through, and stops
// cleanly when its context ends (what SIGTERM does to main's).
func TestPhase2RunCommand(t *testing.T) {
	t.Parallel()
	redisURL := testsvc.NewRedisDB(t)
	env := map[string]string{"DATABASE_URL": phase1Database(t), "REDIS_URL": redisURL}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	opts, _ := celerybridge.ParseBrokerURL(redisURL)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	tr := celerybridge.NewTransport(rdb, celerybridge.TransportOptions{})
	m, err := celerybridge.NewTaskMessage("app.tasks.backup.run_backup_for_user", []any{7}, nil, celerybridge.TaskOptions{Queue: phase2.DefaultInterceptQueue})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := m.Encode()
	if err := tr.Publish(context.Background(), "", phase2.DefaultInterceptQueue, raw); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stderr string
	go func() {
		var err error
		_, stderr, err = runCtx(ctx, env, "phase2", "run", "--listen", addr, "--concurrency", "2", "--log-level", "warn")
		done <- err
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _ := get("/readyz"); code == http.StatusOK {
			if n, _ := rdb.LLen(context.Background(), "celery").Result(); n == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("side-car not ready or the message not passed within 15s: %v", <-done)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, _ := rdb.RPop(context.Background(), "celery").Bytes(); !bytes.Equal(got, raw) {
		t.Errorf("republished %s, want the original bytes", got)
	}
	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, `spine_phase2_messages_total{task="app.tasks.backup.run_backup_for_user",path="passthrough",outcome="ok"} 1`) {
		t.Errorf("/metrics %d:\n%s", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run ended with %v\n%s", err, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop within 20s of its context ending")
	}
	out, _, err := run(t, env, "phase2", "status", "-o", "json")
	var st phase2.State
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Lag == nil || *st.Lag != 0 {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, task := range st.Tasks {
		if task.Task == "app.tasks.backup.run_backup_for_user" && (task.Counts.Passed != 1 || task.Counts.Seen != 1) {
			t.Errorf("counts %+v", task.Counts)
		}
	}
	if _, stderr, err := runCtx(context.Background(), env, "phase2", "run", "--pickle", "maybe"); err == nil || !strings.Contains(err.Error(), "dead-letter or passthrough") {
		t.Errorf("bad --pickle: %v %s", err, stderr)
	}
}
