package entityspine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spinecore/spine-go/core"
)

// fixture returns testdata/name: results as entity-spine and the
// integration guide write them.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// members decodes a JSON object with numbers kept as written.
func members(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

// withMembers returns the fixture object with members set (nil deletes).
func withMembers(t testing.TB, b []byte, set map[string]any) []byte {
	t.Helper()
	m := members(t, b)
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustTime parses a fixture's time the way the test means it, independently
// of the package: an explicit layout, naive meaning UTC.
func mustTime(t testing.TB, layout, s string) time.Time {
	t.Helper()
	v, err := time.Parse(layout, s)
	if err != nil {
		t.Fatal(err)
	}
	return v.UTC()
}

// number parses a JSON number member as a float64.
func number(t testing.TB, v any) float64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// bundle is a dispatcher over a memory ledger and a memory executor.
type bundle struct {
	registry *core.Registry
	ledger   *core.MemoryLedger
	d        *core.Dispatcher
}

func setup(t *testing.T, opts core.DispatcherOptions) bundle {
	t.Helper()
	reg := &core.Registry{}
	ledger := core.NewMemoryLedger()
	exec := core.NewMemoryExecutor(reg, core.MemoryExecutorOptions{})
	if opts.Backoff == nil {
		opts.Backoff = func(int, time.Duration) time.Duration { return 0 }
	}
	d := core.NewDispatcher(ledger, exec, opts)
	t.Cleanup(func() {
		_ = d.Close()
		_ = exec.Close()
	})
	return bundle{registry: reg, ledger: ledger, d: d}
}

// waitStatus polls the run until it has status want.
func waitStatus(t *testing.T, l core.Ledger, runID string, want core.RunStatus) core.RunRecord {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		run, err := l.GetRun(context.Background(), runID)
		if err == nil && run.Status == want {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: status %s, want %s (err %v, error %q)", runID, run.Status, want, err, run.Error)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// progressEvents returns the data of the run's progress events.
func progressEvents(t *testing.T, l core.Ledger, runID string) []map[string]any {
	t.Helper()
	evs, err := l.Events(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, ev := range evs {
		if ev.Type == core.EventProgress {
			out = append(out, ev.Data)
		}
	}
	return out
}

// progressOf reads a progress event's progress, however the ledger keeps
// the number.
func progressOf(t *testing.T, data map[string]any) float64 {
	t.Helper()
	switch p := data["progress"].(type) {
	case float64:
		return p
	case json.Number:
		return number(t, p)
	}
	t.Fatalf("progress %v (%T)", data["progress"], data["progress"])
	return 0
}
