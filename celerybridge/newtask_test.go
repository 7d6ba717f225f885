package celerybridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spinecore/spine-go/core"
)

func findFixture(t *testing.T, file, name string) fixture {
	t.Helper()
	for _, f := range loadFixtures(t) {
		if f.file == file && f.name == name {
			return f
		}
	}
	t.Fatalf("no fixture %s/%s", file, name)
	return fixture{}
}

// wireString returns a string member of a fixture, "" for null.
func wireString(t *testing.T, f fixture, path ...string) string {
	t.Helper()
	n, ok := member(t, wireValue(t, f.raw), path...)
	if !ok {
		t.Fatalf("%v: no %v", f, path)
	}
	return n.text
}

// NewTaskMessage writes, byte for byte, what Celery 5.2.6 publishes for the
// same call, once the random parts (id, delivery tag, reply_to oid, origin,
// clock) are taken from the capture.
func TestNewTaskMessageReproducesCelery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, name string
		task       string
		args       []any
		kwargs     map[string]any
		opts       TaskOptions
		v1         bool
	}{
		{file: "captured-protocol2.json", name: "delay", task: "app.tasks.batch_ingestion_tasks.batch_import_documents",
			args: []any{"imp-1"}, kwargs: map[string]any{"documents": []any{"a", "b"}}},
		{file: "captured-protocol2.json", name: "unicode", task: "app.tasks.batch_ingestion_tasks.batch_import_documents",
			args:   []any{"caf\u00e9 \u2603 \U0001F600 \"quote\" 'apos' back\\slash\nnl\ttab\x7f"},
			kwargs: map[string]any{"documents": []string{"\u00fcber", "\u65e5\u672c\u8a9e", "\u2028\u2029"}}},
		// apply_async(args=[42]) shows a list, not delay's tuple: given as argsrepr.
		{file: "captured-protocol2.json", name: "countdown_expires", task: "app.tasks.backup.run_backup_for_user",
			args: []any{42}, kwargs: map[string]any{"backup_type": "incremental"},
			opts: TaskOptions{Countdown: 10 * time.Second, ExpiresIn: time.Hour, ArgsRepr: "[42]"}},
		{file: "captured-protocol2.json", name: "custom_queue", task: "app.tasks.backup.run_backup_for_user",
			args: []any{7}, opts: TaskOptions{Queue: "backups", ArgsRepr: "[7]"}},
		{file: "captured-protocol2.json", name: "priorities#7", task: "app.tasks.backup.run_backup_for_user",
			args: []any{7}, opts: TaskOptions{Priority: 7, ArgsRepr: "[7]"}},
		{file: "captured-protocol2.json", name: "time_limits", task: "app.tasks.backup.run_backup_for_user",
			args: []any{3}, opts: TaskOptions{TimeLimit: 30 * time.Second, SoftTimeLimit: 12500 * time.Millisecond,
				Shadow: "shadowed", IgnoreResult: true, ArgsRepr: "[3]",
				Headers: []Member{{Key: "x-tenant", Value: json.RawMessage(`"acme"`)}}}},
		{file: "captured-protocol1.json", name: "delay", task: "app.tasks.batch_ingestion_tasks.batch_import_documents",
			args: []any{"imp-1"}, kwargs: map[string]any{"documents": []any{"a", "b"}}, v1: true},
		{file: "captured-protocol1.json", name: "countdown_expires", task: "app.tasks.backup.run_backup_for_user",
			args: []any{42}, kwargs: map[string]any{"backup_type": "incremental"},
			opts: TaskOptions{Countdown: 10 * time.Second, ExpiresIn: time.Hour}, v1: true},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.name, func(t *testing.T) {
			t.Parallel()
			f := findFixture(t, tt.file, tt.name)
			opts := tt.opts
			opts.ReplyTo = wireString(t, f, "properties", "reply_to")
			opts.ID = wireString(t, f, "properties", "correlation_id")
			if !tt.v1 {
				opts.Origin = wireString(t, f, "headers", "origin")
			}
			if opts.ExpiresIn > 0 {
				// Celery computed both eta and expires from one now().
				src := []string{"headers", "expires"}
				if tt.v1 {
					src = []string{"body", "expires"}
				}
				var expires string
				if tt.v1 {
					body := mustNode(t, plainBody(t, f.raw))
					n, _ := body.lookup("expires")
					expires = n.text
				} else {
					expires = wireString(t, f, src...)
				}
				at, err := ParseTime(expires)
				if err != nil {
					t.Fatal(err)
				}
				opts.Now = at.Add(-opts.ExpiresIn)
			}
			tag := wireString(t, f, "properties", "delivery_tag")
			var out []byte
			var err error
			if tt.v1 {
				var m *TaskMessageV1
				if m, err = NewTaskMessageV1(tt.task, tt.args, tt.kwargs, opts); err != nil {
					t.Fatal(err)
				}
				m.Properties.DeliveryTag = tag
				out, err = m.Encode()
			} else {
				var m *TaskMessage
				if m, err = NewTaskMessage(tt.task, tt.args, tt.kwargs, opts); err != nil {
					t.Fatal(err)
				}
				m.Properties.DeliveryTag = tag
				out, err = m.Encode()
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, f.raw) {
				t.Errorf("differs from Celery's message\n got: %s\nwant: %s\n got body: %s\nwant body: %s",
					out, f.raw, plainBody(t, out), plainBody(t, f.raw))
			}
		})
	}
}

func TestNewTaskMessageDefaults(t *testing.T) {
	t.Parallel()
	m, err := NewTaskMessage("spine.execute.task", []any{"refresh_sec", map[string]any{"cik": json.Number("320193")}},
		map[string]any{"idempotency_key": "k-1", "metadata": map[string]any{}}, TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, p := m.Headers, m.Properties
	if _, err := uuid.Parse(h.ID); err != nil || h.RootID != h.ID || p.CorrelationID != h.ID {
		t.Errorf("id %q root %q correlation %q", h.ID, h.RootID, p.CorrelationID)
	}
	if _, err := uuid.Parse(p.DeliveryTag); err != nil || p.DeliveryTag == h.ID {
		t.Errorf("delivery tag %q", p.DeliveryTag)
	}
	if !strings.HasPrefix(h.Origin, "gen") || !strings.Contains(h.Origin, "@") {
		t.Errorf("origin %q", h.Origin)
	}
	if h.ArgsRepr != "('refresh_sec', {'cik': 320193})" || h.KwargsRepr != "{'idempotency_key': 'k-1', 'metadata': {}}" {
		t.Errorf("reprs %q %q", h.ArgsRepr, h.KwargsRepr)
	}
	if p.DeliveryInfo.RoutingKey != "celery" || p.DeliveryMode != 2 || p.BodyEncoding != "base64" || p.Expiration != "" {
		t.Errorf("properties %+v", p)
	}
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Decoding what we wrote gives back the same message.
	again, err := DecodeTaskMessage(out)
	if err != nil {
		t.Fatal(err)
	}
	out2, err := again.Encode()
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("unstable: %v\n%s\n%s", err, out, out2)
	}
	if !strings.Contains(string(out), `"shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null]`) {
		t.Errorf("headers not written as Celery writes them: %s", out)
	}
}

// A datetime argument shows in argsrepr as Python shows it, whichever
// target writes the JSON, and a compressed message round-trips.
func TestNewTaskMessageTypedArgsAndCompression(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	for _, target := range []Target{TargetKombu52, TargetKombu53} {
		m, err := NewTaskMessage("t", []any{at, uuid.MustParse("12345678-1234-5678-1234-567812345678"), Decimal("1.10")}, nil,
			TaskOptions{Target: target, Compression: CompressionZlib})
		if err != nil {
			t.Fatal(err)
		}
		want := "(datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.timezone.utc), UUID('12345678-1234-5678-1234-567812345678'), Decimal('1.10'))"
		if m.Headers.ArgsRepr != want {
			t.Errorf("target %d: argsrepr %s", target, m.Headers.ArgsRepr)
		}
		out, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		task, err := DecodeTask(out)
		if err != nil {
			t.Fatal(err)
		}
		args, err := task.DecodeArgs()
		if err != nil {
			t.Fatal(err)
		}
		if _, isTime := args[0].(time.Time); isTime != (target == TargetKombu53) {
			t.Errorf("target %d: datetime arg decoded as %T", target, args[0])
		}
	}
	if _, err := NewTaskMessage("t", []any{[]byte("x")}, nil, TaskOptions{}); err == nil {
		t.Error("bytes accepted for kombu 5.2")
	}
	if _, err := NewTaskMessage("", nil, nil, TaskOptions{}); !errors.Is(err, ErrMissingTaskName) {
		t.Errorf("empty task name: %v", err)
	}
	if _, err := NewTaskMessage("t", nil, nil, TaskOptions{Headers: []Member{{Key: "eta", Value: json.RawMessage(`"x"`)}}}); !errors.Is(err, ErrBadHeader) {
		t.Errorf("custom header shadowing eta: %v", err)
	}
}

// TestExecutorPriorityIsTheMessages: the side-car picks a pipeline task's
// priority list from Executor.Priority without decoding the message it
// built, so the two must agree for every priority and mode.
func TestExecutorPriorityIsTheMessages(t *testing.T) {
	for _, opts := range []ExecutorOptions{{}, {CaptureSpine: true}, {ProtocolV1: true}} {
		e := NewExecutor(nil, nil, opts)
		for _, p := range []core.Priority{"", core.PriorityRealtime, core.PriorityHigh, core.PriorityNormal, core.PriorityLow, core.PrioritySlow} {
			spec := core.NewPipeline("p", nil)
			spec.Priority = p
			run := core.RunRecord{RunID: "3f0c7c1e-2b1a-4d55-9d1e-0a1b2c3d4e5f", Spec: spec}
			raw, err := e.Message(run, "ref")
			if err != nil {
				t.Fatal(err)
			}
			env, err := DecodeEnvelope(raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Priority(spec); got != env.Properties.Priority {
				t.Errorf("%+v priority %q: Priority says %d, the message has %d", opts, p, got, env.Properties.Priority)
			}
		}
	}
}
