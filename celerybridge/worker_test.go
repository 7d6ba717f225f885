package celerybridge

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spinecore/spine-go/internal/celerytest"
	"github.com/spinecore/spine-go/internal/testsvc"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// Messages this package writes are run by a real Celery 5.2.6 worker, which
// hands the task exactly the arguments we encoded.
func TestRealWorkerRunsOurMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and a Celery worker")
	}
	py := celerytest.Python(t)
	now := time.Now()
	type sent struct {
		key, raw string
		args     json.RawMessage
		kwargs   json.RawMessage
	}
	var msgs []sent
	add := func(key string, out []byte, args, kwargs json.RawMessage) {
		msgs = append(msgs, sent{key, string(out), args, kwargs})
	}
	v2 := func(key string, name string, args []any, kwargs map[string]any, opts TaskOptions) {
		m, err := NewTaskMessage(name, args, kwargs, opts)
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		add(key, out, m.Args, m.Kwargs)
	}
	v2("celery", "bridge.echo", []any{"caf\u00e9 \U0001F600 'q' \"d\" \\ \n", json.Number("18446744073709551617"), 1.0, 1e-7, -0.0, nil, true,
		map[string]any{"nested": []any{1, map[string]any{"k": "v"}}}}, map[string]any{"documents": []string{"a", "b"}}, TaskOptions{})
	v2("celery", "bridge.echo", []any{now, uuid.New(), Decimal("1.10"), Date{2024, 2, 29}}, nil, TaskOptions{})
	v2("celery", "bridge.echo", []any{"zipped"}, map[string]any{"pad": string(make([]byte, 2000))}, TaskOptions{Compression: CompressionZlib})
	v2("celery\x06\x169", "bridge.echo", []any{9}, nil, TaskOptions{Priority: 9, ETA: now.Add(-time.Second), ExpiresIn: time.Hour})
	v2("bridge", "bridge.other", nil, map[string]any{"k": 1}, TaskOptions{Queue: "bridge", TimeLimit: 30 * time.Second,
		SoftTimeLimit: 1500 * time.Millisecond, GroupID: uuid.NewString(), Retries: 2,
		Headers: []Member{{Key: "x-tenant", Value: json.RawMessage(`"acme"`)}}})
	v2("celery", "bridge.echo", []any{"soon"}, nil, TaskOptions{Countdown: 1500 * time.Millisecond})

	m1, err := NewTaskMessageV1("bridge.echo", []any{"protocol", 1}, map[string]any{"v": "1"}, TaskOptions{ETA: now.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := m1.Encode()
	if err != nil {
		t.Fatal(err)
	}
	add("celery", out, m1.Body.Args, m1.Body.Kwargs)

	// A message Celery wrote, decoded, marked redelivered and re-encoded.
	f := findFixture(t, "captured-protocol2.json", "chain")
	m, err := DecodeTaskMessage(f.raw)
	if err != nil {
		t.Fatal(err)
	}
	m.Headers.Redelivered = true
	m.Properties.DeliveryInfo.Redelivered = true
	if out, err = m.Encode(); err != nil {
		t.Fatal(err)
	}
	add(f.key, out, m.Args, m.Kwargs)

	var input []map[string]string
	for _, s := range msgs {
		input = append(input, map[string]string{"key": s.key, "raw": s.raw})
	}
	file := filepath.Join(t.TempDir(), "messages.json")
	data, _ := json.Marshal(input)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join(fixtureDir, "worker_check.py"), file)
	cmd.Env = append(os.Environ(), "SPINE_REDIS_URL="+testsvc.NewRedisDB(t))
	cmd.Stderr = os.Stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("worker_check.py: %v", err)
	}
	var report struct {
		Ran       map[string]json.RawMessage `json:"ran"`
		Expected  []string                   `json:"expected"`
		WorkerLog string                     `json:"worker_log"`
	}
	if err := json.Unmarshal(res, &report); err != nil {
		t.Fatal(err)
	}
	for i, id := range report.Expected {
		got, ok := report.Ran[id]
		if !ok {
			t.Errorf("message %d (%s) did not run\n%s", i, id, msgs[i].raw)
			continue
		}
		r := mustNode(t, got)
		args, _ := r.lookup("args")
		kwargs, _ := r.lookup("kwargs")
		if !pyEqual(args, mustNode(t, msgs[i].args)) || !pyEqual(kwargs, mustNode(t, msgs[i].kwargs)) {
			t.Errorf("message %d: worker got args %s kwargs %s, we sent %s %s", i,
				appendNode(nil, args), appendNode(nil, kwargs), msgs[i].args, msgs[i].kwargs)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("worker log:\n%s", report.WorkerLog)
	}
}
