// Package celerytest runs real Celery 5.2.6 (Debian's python3-celery) for
// tests: the interpreter check and throwaway workers on a test's Redis.
//
// Test support only: production code must never import it. Under CI=true a
// missing Celery fails the test (scripts/ensure-deps.sh installs it); it is
// skipped elsewhere.
package celerytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Python returns an interpreter with Celery 5.2.6 and redis-py: $CELERY_PYTHON
// or /usr/bin/python3.
func Python(t testing.TB) string {
	t.Helper()
	py := os.Getenv("CELERY_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	check := exec.Command(py, "-c", "import celery, redis; assert celery.__version__ == '5.2.6', celery.__version__")
	if out, err := check.CombinedOutput(); err != nil {
		msg := fmt.Sprintf("no Python with Celery 5.2.6 and redis-py (%v): %s; apt-get install python3-celery python3-redis", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return py
}

// InteropDir is testdata/celery-interop of the module, where the Python
// side of the interop tests lives.
func InteropDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "celery-interop")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("celerytest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Worker is a running Celery worker.
type Worker struct {
	t    testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
	once sync.Once
	done chan struct{}
}

// Logs returns what the worker has printed so far.
func (w *Worker) Logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// WorkerOptions says which worker to run.
type WorkerOptions struct {
	// Module is the Celery app module (-A), a file in testdata/celery-interop.
	Module string
	Queues []string
	// Env is added to the worker's environment (KEY=VALUE); SPINE_REDIS_URL
	// is always set to the URL StartWorker is given.
	Env []string
	// Args are extra `celery worker` arguments (--prefetch-multiplier 1, ...).
	Args []string
}

// StartWorker runs `celery -A <module> worker` with the solo pool on url,
// waits until it is ready (its control consumer listens: a broadcast would
// reach it), and stops it when the test ends (cold, unless Stop was called),
// printing its log if the test failed.
func StartWorker(t testing.TB, url string, opts WorkerOptions) *Worker {
	t.Helper()
	py := Python(t)
	dir := InteropDir(t)
	w := &Worker{t: t, logs: &bytes.Buffer{}, done: make(chan struct{})}
	out := lockedWriter{mu: &w.mu, b: w.logs}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	args := []string{"-m", "celery", "-A", opts.Module, "worker", "-P", "solo", "-l", "INFO",
		"-Q", strings.Join(opts.Queues, ","), "--without-gossip", "--without-mingle", "--without-heartbeat",
		"-n", fmt.Sprintf("%s-%d@%%h", name, time.Now().UnixNano())}
	w.cmd = exec.Command(py, append(args, opts.Args...)...)
	w.cmd.Dir = dir
	w.cmd.Env = append(append(os.Environ(), "SPINE_REDIS_URL="+url, "PYTHONPATH="+dir, "PYTHONDONTWRITEBYTECODE=1"), opts.Env...)
	w.cmd.Stdout, w.cmd.Stderr = out, out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.cmd.Wait(); close(w.done) }()
	// Cold shutdown at the end: a test worker has nothing worth finishing.
	t.Cleanup(func() { w.stop(syscall.SIGQUIT) })

	ropts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		subs, _ := rdb.PubSubNumPat(context.Background()).Result()
		if subs > 0 && strings.Contains(w.Logs(), "ready.") {
			return w
		}
		select {
		case <-w.done:
			t.Fatalf("the Celery worker exited at start:\n%s", w.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Celery worker was not ready after 30s:\n%s", w.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop asks for a warm shutdown (SIGTERM: finish or restore what it holds,
// as in production) and waits, killing the worker after 10 s.
func (w *Worker) Stop() { w.stop(syscall.SIGTERM) }

func (w *Worker) stop(sig syscall.Signal) {
	w.once.Do(func() {
		_ = w.cmd.Process.Signal(sig)
		select {
		case <-w.done:
		case <-time.After(10 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.done
		}
		if w.t.Failed() {
			w.t.Logf("celery worker log:\n%s", w.Logs())
		}
	})
}
