package celerybridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Every message real Celery wrote decodes, and encodes back to the very
// bytes Celery wrote.
func TestGoldenEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, f := range loadFixtures(t) {
		e, err := DecodeEnvelope(f.raw)
		if err != nil {
			t.Errorf("%v: decode: %v", f, err)
			continue
		}
		out, err := e.Encode()
		if err != nil {
			t.Errorf("%v: encode: %v", f, err)
			continue
		}
		if !bytes.Equal(out, f.raw) {
			t.Errorf("%v: re-encoded envelope differs\n got: %s\nwant: %s", f, out, f.raw)
		}
		if !bytes.Equal(e.Body(), plainBody(t, f.raw)) {
			t.Errorf("%v: body differs from the payload Celery serialized", f)
		}
	}
}

// Every header, property and delivery_info member decodes to exactly what
// is on the wire; members the package does not model land in Extra intact.
func TestGoldenFieldsExact(t *testing.T) {
	t.Parallel()
	for _, f := range loadFixtures(t) {
		e, err := DecodeEnvelope(f.raw)
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		v := wireValue(t, f.raw)
		headers, _ := member(t, v, "headers")
		checkMembers(t, f.String()+" headers", headers, headerFields(&e.Headers), e.Headers.Extra)
		props, _ := member(t, v, "properties")
		checkMembers(t, f.String()+" properties", props, propertyFields(&e.Properties), e.Properties.Extra)
		info, _ := member(t, props, "delivery_info")
		checkMembers(t, f.String()+" delivery_info", info, deliveryInfoFields(&e.Properties.DeliveryInfo), e.Properties.DeliveryInfo.Extra)
		for key, got := range map[string]string{"content-type": e.ContentType, "content-encoding": e.ContentEncoding} {
			if want, _ := member(t, v, key); want.text != got {
				t.Errorf("%v: %s = %q, wire %q", f, key, got, want.text)
			}
		}
		if f.key == "" {
			t.Errorf("%v: fixture without a queue key", f)
		}
	}
}

func headerFields(h *Headers) map[string]any {
	return map[string]any{
		"lang": h.Lang, "task": h.Task, "id": h.ID, "shadow": h.Shadow, "eta": h.ETA,
		"expires": h.Expires, "group": h.Group, "group_index": h.GroupIndex,
		"retries": h.Retries, "timelimit": h.TimeLimit, "root_id": h.RootID,
		"parent_id": h.ParentID, "argsrepr": h.ArgsRepr, "kwargsrepr": h.KwargsRepr,
		"origin": h.Origin, "ignore_result": h.IgnoreResult,
		"replaced_task_nesting": h.ReplacedTaskNesting, "stamped_headers": h.StampedHeaders,
		"stamps": h.Stamps, "compression": h.Compression, "redelivered": h.Redelivered,
	}
}

func propertyFields(p *Properties) map[string]any {
	return map[string]any{
		"correlation_id": p.CorrelationID, "reply_to": p.ReplyTo, "delivery_mode": p.DeliveryMode,
		"expiration": p.Expiration, "priority": p.Priority, "body_encoding": p.BodyEncoding,
		"delivery_tag": p.DeliveryTag, "delivery_info": skipField{},
	}
}

func deliveryInfoFields(d *DeliveryInfo) map[string]any {
	return map[string]any{"exchange": d.Exchange, "routing_key": d.RoutingKey, "redelivered": d.Redelivered}
}

func bodyV1Fields(b *BodyV1) map[string]any {
	return map[string]any{
		"task": b.Task, "id": b.ID, "args": b.Args, "kwargs": b.Kwargs, "group": b.Group,
		"group_index": b.GroupIndex, "retries": b.Retries, "eta": b.ETA, "expires": b.Expires,
		"utc": b.UTC, "callbacks": b.Callbacks, "errbacks": b.Errbacks, "timelimit": b.TimeLimit,
		"taskset": b.Taskset, "chord": b.Chord,
	}
}

// skipField marks a member checked elsewhere.
type skipField struct{}

// checkMembers compares each member of the wire object with the decoded
// field of that name, or with the Extra entry when the field is not modelled.
func checkMembers(t *testing.T, where string, wire *node, fields map[string]any, extra []Member) {
	t.Helper()
	extras := map[string]json.RawMessage{}
	for _, m := range extra {
		extras[m.Key] = m.Value
	}
	for i, key := range wire.keys {
		want := &wire.items[i]
		got, known := fields[key]
		if !known {
			raw, ok := extras[key]
			if !ok {
				t.Errorf("%s.%s: neither modelled nor kept in Extra", where, key)
			} else if g, w := string(appendNode(nil, mustNode(t, raw))), string(appendNode(nil, want)); g != w {
				t.Errorf("%s.%s: Extra %s, wire %s", where, key, g, w)
			}
			continue
		}
		if err := fieldMatches(got, want); err != nil {
			t.Errorf("%s.%s: %v", where, key, err)
		}
	}
}

func mustNode(t testing.TB, raw []byte) *node {
	n, err := parseNode(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	return &n
}

// fieldMatches reports whether a decoded field holds exactly the wire value;
// an empty string or zero number stands for null.
func fieldMatches(got any, want *node) error {
	mismatch := fmt.Errorf("decoded %#v, wire %s", got, appendNode(nil, want))
	switch g := got.(type) {
	case skipField:
		return nil
	case string:
		if (want.kind == nString && want.text == g) || (want.kind == nNull && g == "") {
			return nil
		}
	case int:
		if (want.kind == nNumber && want.text == fmt.Sprint(g)) || (want.kind == nNull && g == 0) {
			return nil
		}
	case *int:
		if (g == nil && want.kind == nNull) || (g != nil && want.kind == nNumber && want.text == fmt.Sprint(*g)) {
			return nil
		}
	case bool:
		if (want.kind == nTrue && g) || (want.kind == nFalse && !g) || (want.kind == nNull && !g) {
			return nil
		}
	case TimeLimit:
		if want.kind == nNull && g == (TimeLimit{}) {
			return nil
		}
		if want.kind == nList && len(want.items) == 2 {
			ok := true
			for i, n := range []json.Number{g.Hard, g.Soft} {
				item := want.items[i]
				ok = ok && ((item.kind == nNull && n == "") || (item.kind == nNumber && item.text == string(n)))
			}
			if ok {
				return nil
			}
		}
	case json.RawMessage:
		if g != nil && bytes.Equal(appendNode(nil, mustNode(nil, g)), appendNode(nil, want)) {
			return nil
		}
	default:
		return fmt.Errorf("no comparison for %T", got)
	}
	return mismatch
}

// Protocol 2 JSON messages decode to args, kwargs and embed exactly as
// serialized, and the whole message re-encodes to Celery's bytes.
func TestGoldenProtocol2(t *testing.T) {
	t.Parallel()
	n := 0
	for _, f := range loadFixtures(t) {
		if f.protocol != 2 || strings.Contains(f.name, "pickle") || strings.Contains(f.name, "yaml") || strings.Contains(f.name, "msgpack") {
			continue
		}
		n++
		m, err := DecodeTaskMessage(f.raw)
		if err != nil {
			t.Errorf("%v: %v", f, err)
			continue
		}
		body := mustNode(t, plainBody(t, f.raw))
		if len(body.items) != 3 {
			t.Fatalf("%v: fixture body is not a triple", f)
		}
		for i, got := range []json.RawMessage{m.Args, m.Kwargs} {
			if err := fieldMatches(got, &body.items[i]); err != nil {
				t.Errorf("%v: body[%d]: %v", f, i, err)
			}
		}
		checkMembers(t, f.String()+" embed", &body.items[2], map[string]any{
			"callbacks": m.Embed.Callbacks, "errbacks": m.Embed.Errbacks,
			"chain": m.Embed.Chain, "chord": m.Embed.Chord,
		}, m.Embed.Extra)
		if got := m.appendBody(nil); !bytes.Equal(got, plainBody(t, f.raw)) {
			t.Errorf("%v: body re-serialized differently\n got: %s\nwant: %s", f, got, plainBody(t, f.raw))
		}
		out, err := m.Encode()
		if err != nil {
			t.Errorf("%v: encode: %v", f, err)
			continue
		}
		if !bytes.Equal(out, f.raw) {
			t.Errorf("%v: re-encoded message differs\n got: %s\nwant: %s", f, out, f.raw)
		}
		if _, err := DecodeTaskMessageV1(f.raw); !errors.Is(err, ErrWrongProtocol) {
			t.Errorf("%v: as protocol 1: %v, want ErrWrongProtocol", f, err)
		}
	}
	if n < 25 {
		t.Errorf("only %d protocol 2 fixtures", n)
	}
}

func TestGoldenProtocol1(t *testing.T) {
	t.Parallel()
	n := 0
	for _, f := range loadFixtures(t) {
		if f.protocol != 1 || strings.Contains(f.name, "pickle") {
			continue
		}
		n++
		m, err := DecodeTaskMessageV1(f.raw)
		if err != nil {
			t.Errorf("%v: %v", f, err)
			continue
		}
		if m.Hybrid() {
			t.Errorf("%v: decoded as hybrid", f)
		}
		body := mustNode(t, plainBody(t, f.raw))
		checkMembers(t, f.String()+" body", body, bodyV1Fields(&m.Body), m.Body.Extra)
		out, err := m.Encode()
		if err != nil {
			t.Errorf("%v: encode: %v", f, err)
			continue
		}
		if !bytes.Equal(out, f.raw) {
			t.Errorf("%v: re-encoded message differs\n got: %s\nwant: %s", f, out, f.raw)
		}
		if _, err := DecodeTaskMessage(f.raw); !errors.Is(err, ErrWrongProtocol) {
			t.Errorf("%v: as protocol 2: %v, want ErrWrongProtocol", f, err)
		}
	}
	if n < 15 {
		t.Errorf("only %d protocol 1 fixtures", n)
	}
}

// The unified view agrees with the wire whatever the protocol.
func TestGoldenTaskView(t *testing.T) {
	t.Parallel()
	for _, f := range loadFixtures(t) {
		v := wireValue(t, f.raw)
		task, err := DecodeTask(f.raw)
		opaqueV1 := f.protocol == 1 && strings.Contains(f.name, "pickle")
		if opaqueV1 {
			if !errors.Is(err, ErrOpaqueBody) {
				t.Errorf("%v: %v, want ErrOpaqueBody", f, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", f, err)
			continue
		}
		if int(task.Protocol) != f.protocol {
			t.Errorf("%v: protocol %v", f, task.Protocol)
		}
		src := v // where name, id, eta... live
		if f.protocol == 1 {
			src = mustNode(t, plainBody(t, f.raw))
		} else {
			src, _ = member(t, v, "headers")
		}
		for key, got := range map[string]any{"task": task.Name, "id": task.ID, "retries": task.Retries, "group": task.GroupID} {
			want, _ := member(t, src, key)
			if err := fieldMatches(got, want); err != nil {
				t.Errorf("%v: %s: %v", f, key, err)
			}
		}
		for key, got := range map[string]time.Time{"eta": task.ETA, "expires": task.Expires} {
			want, _ := member(t, src, key)
			if want.kind == nNull {
				if !got.IsZero() {
					t.Errorf("%v: %s set for null", f, key)
				}
				continue
			}
			if w, err := ParseTime(want.text); err != nil || !w.Equal(got) {
				t.Errorf("%v: %s = %v, wire %s (%v)", f, key, got, want.text, err)
			}
		}
		prio, _ := member(t, v, "properties", "priority")
		if fmt.Sprint(task.Priority) != prio.text {
			t.Errorf("%v: priority %d, wire %s", f, task.Priority, prio.text)
		}
		isOpaque := strings.Contains(f.name, "pickle") || strings.Contains(f.name, "yaml") || strings.Contains(f.name, "msgpack")
		if task.Opaque != isOpaque {
			t.Errorf("%v: Opaque = %v", f, task.Opaque)
		}
		if isOpaque {
			if _, err := task.DecodeArgs(); !errors.Is(err, ErrOpaqueBody) {
				t.Errorf("%v: DecodeArgs on opaque body: %v", f, err)
			}
			continue
		}
		if _, err := task.DecodeArgs(); err != nil {
			t.Errorf("%v: args: %v", f, err)
		}
		if _, err := task.DecodeKwargs(); err != nil {
			t.Errorf("%v: kwargs: %v", f, err)
		}
	}
}

// Pickle, yaml and msgpack bodies are carried, never decoded, and written
// back byte for byte (bzip2 included, which this package cannot write).
func TestGoldenOpaqueBodies(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, f := range loadFixtures(t) {
		e, err := DecodeEnvelope(f.raw)
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if !e.Opaque() {
			continue
		}
		seen[e.ContentType] = true
		if _, err := e.TaskMessage(); !errors.Is(err, ErrOpaqueBody) {
			t.Errorf("%v: TaskMessage: %v, want ErrOpaqueBody", f, err)
		}
		if _, err := e.TaskMessageV1(); !errors.Is(err, ErrOpaqueBody) {
			t.Errorf("%v: TaskMessageV1: %v, want ErrOpaqueBody", f, err)
		}
		// A relabelled header must not change the body bytes.
		e.Headers.Redelivered = true
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		again, err := DecodeEnvelope(out)
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if !bytes.Equal(again.Body(), e.Body()) || !again.Headers.Redelivered {
			t.Errorf("%v: opaque body changed through a header edit", f)
		}
	}
	for _, ct := range []string{ContentTypePickle, ContentTypeYAML, ContentTypeMsgpack} {
		if !seen[ct] {
			t.Errorf("no fixture with content type %s", ct)
		}
	}
}
