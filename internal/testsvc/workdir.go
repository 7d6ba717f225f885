package testsvc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tempPrefix names every directory this package creates, so leftovers of a killed
// process are recognisable in os.TempDir and can be swept.
const tempPrefix = "spine-testsvc-"

// ownerFile records which process a directory belongs to: its pid and its kernel
// start time, so a recycled pid is not mistaken for the owner.
const ownerFile = "owner"

// workRoot is where server directories go: $SPINE_TESTSVC_TMPDIR, else os.TempDir.
// Creating a database creates hundreds of files, so a tmpfs such as /dev/shm makes
// each NewDatabase many times faster where the disk is slow at creating files.
func workRoot() string {
	if dir := os.Getenv("SPINE_TESTSVC_TMPDIR"); dir != "" {
		return dir
	}
	return os.TempDir()
}

// newWorkDir creates a directory for one server, first sweeping the leftovers of
// dead processes (once per process).
func newWorkDir(kind string) (string, error) {
	sweepOnce.Do(func() {
		sweepLeftovers(os.TempDir(), nil)
		if root := workRoot(); root != os.TempDir() {
			sweepLeftovers(root, nil)
		}
	})
	dir, err := os.MkdirTemp(workRoot(), tempPrefix+kind+"-")
	if err != nil {
		return "", fmt.Errorf("create work dir: %w", err)
	}
	owner := fmt.Sprintf("%d %s\n", os.Getpid(), processStartTime(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("create work dir: %w", err)
	}
	return dir, nil
}

var sweepOnce sync.Once

// sweepLeftovers stops the servers left in spine-testsvc-* directories under root by
// processes that no longer exist, then removes those directories. A directory
// without an owner file is left alone for a minute: it may be in creation.
func sweepLeftovers(root string, logf func(string, ...any)) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, ent := range entries {
		if !ent.IsDir() || !strings.HasPrefix(ent.Name(), tempPrefix) {
			continue
		}
		dir := filepath.Join(root, ent.Name())
		if ownerAlive(dir) {
			continue
		}
		// The servers write their own pid files; the name check guards against a
		// recycled pid belonging to something else by now.
		killRecorded(filepath.Join(dir, "data", "postmaster.pid"), "postgres", syscall.SIGQUIT)
		killRecorded(filepath.Join(dir, "redis.pid"), "redis-server", syscall.SIGKILL)
		if err := os.RemoveAll(dir); err == nil {
			logf("testsvc: swept leftover %s", dir)
		}
	}
}

func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		info, statErr := os.Stat(dir)
		return statErr == nil && time.Since(info.ModTime()) < time.Minute
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || !processExists(pid) {
		return false
	}
	if len(fields) > 1 {
		if now := processStartTime(pid); now != "" && now != fields[1] {
			return false // the pid was reused
		}
	}
	return true
}

// killRecorded signals the process whose pid is on the first line of pidFile, if
// its command name still contains want, and waits briefly for it to exit.
func killRecorded(pidFile, want string, sig syscall.Signal) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 || !processExists(pid) {
		return
	}
	if !strings.Contains(processCommand(pid), want) {
		return
	}
	_ = syscall.Kill(pid, sig)
	waitGone(pid, 10*time.Second)
}

func waitGone(pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if !processExists(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err == nil || errors.Is(err, syscall.EPERM) {
		// A zombie still "exists"; it has no command line left.
		b, readErr := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return readErr != nil || !isZombie(string(b))
	}
	return false
}

func isZombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && strings.HasPrefix(stat[i+1:], " Z")
}

// processStartTime is field 22 of /proc/<pid>/stat (clock ticks since boot), or ""
// where /proc is unavailable.
func processStartTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may contain spaces
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// processCommand is the process's command line, or "" when unknown.
func processCommand(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// freeLoopbackPort asks the kernel for an unused port. Another process can take it
// before the server binds, so callers retry with a fresh port on a bind failure.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailFile returns the last lines of a server log, for error messages.
func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func discardf(string, ...any) {}
