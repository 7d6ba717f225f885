package phase2

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/celerybridge"
)

// decide reads whatever a producer put on the intercept queue: it must
// never panic, and always say exactly one thing to do, with a reason the
// dead-letter list can carry.
func FuzzDecide(f *testing.F) {
	b := &bundle{t: f}
	for _, opts := range []celerybridge.TaskOptions{{}, {Priority: 7}, {Countdown: time.Hour}, {ExpiresIn: -time.Hour}} {
		_, raw := b.message(backupTask, []any{7}, map[string]any{"backup_type": "full"}, opts)
		f.Add(raw)
	}
	v1, _ := celerybridge.NewTaskMessageV1("app.tasks.sync.sync_environments", []any{[]any{"prod"}}, nil, celerybridge.TaskOptions{Queue: DefaultInterceptQueue})
	raw, _ := v1.Encode()
	f.Add(raw)
	_, pickled := b.pickleMessage(backupTask)
	f.Add(pickled)
	f.Add([]byte(`{"body": "", "headers": {"task": "x", "id": "y"}, "properties": {}}`))
	f.Add([]byte("null"))

	routes := routeTable{
		backupTask:                         backupRoute(ModeReroute, 50),
		"app.tasks.sync.sync_environments": {Task: "app.tasks.sync.sync_environments", Mode: ModeShadow, Percent: 100, Queue: "q", Pipeline: "sync_environments", Lane: "normal"},
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, pickle := range []PicklePolicy{PickleDeadLetter, PicklePassthrough} {
			d := decide(raw, routes, defaultCatalog(), "celery", pickle, now)
			switch {
			case d.deadLetter != "":
				kind := reasonKind(d.deadLetter)
				if kind != reasonUndecodable && kind != reasonOpaque && kind != reasonUnknownTask && kind != reasonMapping {
					t.Fatalf("unknown dead-letter reason %q", d.deadLetter)
				}
			case d.task == nil:
				t.Fatalf("no task and no dead-letter reason: %+v", d)
			case !d.park.IsZero():
				if d.path != ModeReroute || !d.park.After(now) {
					t.Fatalf("parked %+v", d)
				}
			case d.path == ModePassthrough:
				if d.route.Queue == "" {
					t.Fatalf("passthrough with no queue: %+v", d)
				}
			case d.path == ModeShadow || d.path == ModeReroute:
				if d.spec.IdempotencyKey != IdempotencyKey(d.task.ID) || d.spec.Validate() != nil || d.task.Opaque {
					t.Fatalf("%s without a valid spec: %+v", d.path, d)
				}
			default:
				t.Fatalf("no path: %+v", d)
			}
		}
	})
}

// A parked member reads back as written, and anything else is refused
// without a panic.
func FuzzParseParked(f *testing.F) {
	f.Add("spine.intercept\x06\x163", "tag", []byte(`{"body": ""}`), []byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, list, tag string, raw, junk []byte) {
		_, _, _, _ = parseParked(junk)
		if list == "" || strings.ContainsRune(list, 0) || strings.ContainsRune(tag, 0) {
			return
		}
		l, tg, r, ok := parseParked([]byte(parkedMember(list, tag, raw)))
		if !ok || l != list || tg != tag || !bytes.Equal(r, raw) {
			t.Fatalf("round trip of %q %q %q: %q %q %q %v", list, tag, raw, l, tg, r, ok)
		}
	})
}
