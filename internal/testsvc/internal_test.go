package testsvc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSweepStopsTheServersOfDeadOwnersAndRemovesTheirDirs(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	deadPid := exitedProcess(t)
	self := fmt.Sprintf("%d %s", os.Getpid(), processStartTime(os.Getpid()))

	orphan := workDirIn(t, root, "redis-orphan", fmt.Sprintf("%d 12345", deadPid))
	redisExited := runOrphanRedis(t, orphan)
	alive := workDirIn(t, root, "pg-alive", self)
	recycled := workDirIn(t, root, "pg-recycled", fmt.Sprintf("%d 1", os.Getpid())) // our pid, another start time
	creating := workDirIn(t, root, "pg-creating", "")
	unrelated := filepath.Join(root, "unrelated")
	if err := os.Mkdir(unrelated, 0o755); err != nil {
		t.Fatal(err)
	}

	sweepLeftovers(root, t.Logf)

	select {
	case <-redisExited:
	case <-time.After(10 * time.Second):
		t.Error("the orphaned redis-server is still running")
	}
	for dir, wantKept := range map[string]bool{orphan: false, recycled: false, alive: true, creating: true, unrelated: true} {
		_, err := os.Stat(dir)
		if kept := err == nil; kept != wantKept {
			t.Errorf("%s: kept = %v, want %v", filepath.Base(dir), kept, wantKept)
		}
	}
}

func TestUnavailableSkipsLocallyAndFailsUnderCI(t *testing.T) {
	// Not parallel: t.Setenv changes the whole process's environment.
	for _, tc := range []struct {
		ci       string
		wantFail bool
	}{
		{ci: "", wantFail: false},
		{ci: "false", wantFail: false},
		{ci: "true", wantFail: true},
		{ci: "1", wantFail: true},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			rec := &recordingTB{TB: t}
			unavailable(rec, "Redis", ErrUnavailable, redisHint)
			if failed := rec.fatal != ""; failed != tc.wantFail {
				t.Errorf("failed = %v (fatal %q, skip %q), want %v", failed, rec.fatal, rec.skip, tc.wantFail)
			}
			if msg := rec.fatal + rec.skip; !strings.Contains(msg, "apt-get install redis-server") {
				t.Errorf("message %q does not say what to install", msg)
			}
		})
	}
}

func TestDatabaseNamesAreValidAndUnique(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	seen := map[string]bool{}
	for _, name := range []string{"plain", "Spaces and/Slashes #01", strings.Repeat("Very_Long_Name", 10), "ünïcode—名前"} {
		t.Run(name, func(t *testing.T) {
			got := databaseName(t)
			if len(got) > 63 || !valid.MatchString(got) {
				t.Errorf("databaseName = %q: not a plain identifier of at most 63 bytes", got)
			}
			if seen[got] {
				t.Errorf("databaseName = %q twice", got)
			}
			seen[got] = true
		})
	}
}

// recordingTB notes Skipf and Fatalf instead of ending the test.
type recordingTB struct {
	testing.TB
	skip, fatal string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

// exitedProcess returns the pid of a process that has come and gone.
func exitedProcess(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func workDirIn(t *testing.T, root, name, owner string) string {
	t.Helper()
	dir := filepath.Join(root, tempPrefix+name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if owner != "" {
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runOrphanRedis starts a redis-server that writes its pid file into dir, as one
// left behind by a killed test binary would have.
func runOrphanRedis(t *testing.T, dir string) <-chan struct{} {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no redis-server to play the orphan: %v (apt-get install redis-server)", err)
		}
		t.Skip("no redis-server to play the orphan")
	}
	port, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "redis.pid")
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "",
		"--pidfile", pidFile, "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(pidFile); err == nil {
			return exited
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server wrote no pid file")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
