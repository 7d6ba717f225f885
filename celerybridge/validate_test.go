package celerybridge

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"testing"
)

// A well-formed protocol 2 message (Celery's own delay fixture) to break.
const baseV2 = `{"body": "", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "app.tasks.backup.run_backup_for_user", "id": "cf420328-83c6-4274-9606-dc28850a4e96", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "cf420328-83c6-4274-9606-dc28850a4e96", "parent_id": null, "argsrepr": "[42]", "kwargsrepr": "{}", "origin": "gen8237@vm", "ignore_result": false}, "properties": {"correlation_id": "cf420328-83c6-4274-9606-dc28850a4e96", "reply_to": "20bc7ea6-700a-32a0-ae14-30c766d1ee45", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "503df175-5bc7-4e7a-8ef6-0885875a1597"}}`

const baseV2Body = `[[42], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`

const baseV1Body = `{"task": "app.tasks.backup.run_backup_for_user", "id": "dc179fda-f20f-4d0b-be62-5048c0b0ee97", "args": [42], "kwargs": {}, "group": null, "group_index": null, "retries": 0, "eta": null, "expires": null, "utc": true, "callbacks": null, "errbacks": null, "timelimit": [null, null], "taskset": null, "chord": null}`

// message builds an envelope from baseV2 with its body set to plain
// (base64-encoded) and edits applied: each edit sets the member at a path to
// raw JSON, or deletes it when raw is "".
func message(t testing.TB, plain string, edits ...[2]string) []byte {
	t.Helper()
	env := mustNode(t, []byte(baseV2))
	for i := range env.keys {
		if env.keys[i] == "body" {
			env.items[i] = node{kind: nString, text: base64.StdEncoding.EncodeToString([]byte(plain))}
		}
	}
	for _, e := range edits {
		setPath(t, env, e[0], e[1])
	}
	return appendNode(nil, env)
}

func setPath(t testing.TB, n *node, path, raw string) {
	t.Helper()
	keys := bytes.Split([]byte(path), []byte("."))
	for _, k := range keys[:len(keys)-1] {
		var ok bool
		if n, ok = n.lookup(string(k)); !ok {
			t.Fatalf("no member %s in %s", k, path)
		}
	}
	last := string(keys[len(keys)-1])
	for i := range n.keys {
		if n.keys[i] == last {
			if raw == "" {
				n.keys = append(n.keys[:i], n.keys[i+1:]...)
				n.items = append(n.items[:i], n.items[i+1:]...)
			} else {
				n.items[i] = *mustNode(t, []byte(raw))
			}
			return
		}
	}
	if raw != "" {
		n.keys = append(n.keys, last)
		n.items = append(n.items, *mustNode(t, []byte(raw)))
	}
}

func zlibBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestMalformedMessagesRejected(t *testing.T) {
	t.Parallel()
	v1 := func(body string, edits ...[2]string) []byte {
		return message(t, body, append([][2]string{{"headers", "{}"}}, edits...)...)
	}
	compressed := func(body []byte, header string) []byte {
		env := mustNode(t, message(t, "", [2]string{"headers.compression", `"` + header + `"`}))
		for i := range env.keys {
			if env.keys[i] == "body" {
				env.items[i].text = base64.StdEncoding.EncodeToString(body)
			}
		}
		return appendNode(nil, env)
	}
	type decoder func([]byte) error
	var (
		envelope = func(b []byte) error { _, err := DecodeEnvelope(b); return err }
		proto2   = func(b []byte) error { _, err := DecodeTaskMessage(b); return err }
		proto1   = func(b []byte) error { _, err := DecodeTaskMessageV1(b); return err }
		task     = func(b []byte) error { _, err := DecodeTask(b); return err }
	)
	tests := []struct {
		name   string
		data   []byte
		decode decoder
		want   error
	}{
		{"not JSON", []byte(`{"body": `), envelope, ErrMalformedJSON},
		{"envelope is a list", []byte(`[1, 2]`), envelope, ErrMalformedJSON},
		{"extra data after the envelope", append(message(t, baseV2Body), " {}"...), envelope, ErrMalformedJSON},
		{"invalid UTF-8", bytes.Replace(message(t, baseV2Body), []byte("gen8237"), []byte("gen\xff237"), 1), envelope, ErrMalformedJSON},
		{"headers is a list", message(t, baseV2Body, [2]string{"headers", `["task"]`}), envelope, ErrHeadersNotObject},
		{"headers is a string", message(t, baseV2Body, [2]string{"headers", `"x"`}), envelope, ErrHeadersNotObject},
		{"properties missing", message(t, baseV2Body, [2]string{"properties", ""}), envelope, ErrMissingProperties},
		{"properties null", message(t, baseV2Body, [2]string{"properties", "null"}), envelope, ErrMissingProperties},
		{"delivery_tag missing", message(t, baseV2Body, [2]string{"properties.delivery_tag", ""}), envelope, ErrMissingDeliveryTag},
		{"delivery_tag null", message(t, baseV2Body, [2]string{"properties.delivery_tag", "null"}), envelope, ErrMissingDeliveryTag},
		{"delivery_info missing", message(t, baseV2Body, [2]string{"properties.delivery_info", ""}), envelope, ErrMissingDeliveryInfo},
		{"delivery_info null", message(t, baseV2Body, [2]string{"properties.delivery_info", "null"}), envelope, ErrMissingDeliveryInfo},
		{"routing_key missing", message(t, baseV2Body, [2]string{"properties.delivery_info.routing_key", ""}), envelope, ErrMissingDeliveryInfo},
		{"body missing", message(t, baseV2Body, [2]string{"body", ""}), envelope, ErrBadBody},
		{"body not a string", message(t, baseV2Body, [2]string{"body", baseV2Body}), envelope, ErrBadBody},
		{"body not base64", message(t, baseV2Body, [2]string{"body", `"W1s0Ml0s!!"`}), envelope, ErrBadBase64},
		{"body base64 without padding", message(t, baseV2Body, [2]string{"body", `"W1s0Ml0"`}), envelope, ErrBadBase64},
		{"unknown body_encoding", message(t, baseV2Body, [2]string{"properties.body_encoding", `"rot13"`}), envelope, ErrUnknownBodyEncoding},
		{"unknown content-type", message(t, baseV2Body, [2]string{"content-type", `"text/plain"`}), envelope, ErrUnknownContentType},
		{"content-type missing", message(t, baseV2Body, [2]string{"content-type", ""}), envelope, ErrUnknownContentType},
		{"content-type not a string", message(t, baseV2Body, [2]string{"content-type", "7"}), envelope, ErrUnknownContentType},
		{"bad zlib data", compressed([]byte(baseV2Body), CompressionZlib), envelope, ErrCompression},
		{"truncated zlib data", compressed(zlibBytes([]byte(baseV2Body))[:20], CompressionZlib), envelope, ErrCompression},
		{"unsupported compression", compressed([]byte(baseV2Body), "application/x-lzma"), envelope, ErrCompression},
		{"retries not an int", message(t, baseV2Body, [2]string{"headers.retries", `"1"`}), envelope, ErrBadHeader},
		{"timelimit one element", message(t, baseV2Body, [2]string{"headers.timelimit", `[1]`}), envelope, ErrBadHeader},
		{"id not a string", message(t, baseV2Body, [2]string{"headers.id", `5`}), envelope, ErrBadHeader},
		{"priority not an int", message(t, baseV2Body, [2]string{"properties.priority", `"high"`}), envelope, ErrBadProperty},

		{"2-element body", message(t, `[[42], {}]`), proto2, ErrBodyNotTriple},
		{"4-element body", message(t, `[[42], {}, {}, {}]`), proto2, ErrBodyNotTriple},
		{"empty body list", message(t, `[]`), proto2, ErrBodyNotTriple},
		{"null body", message(t, `null`), proto2, ErrBodyNotTriple},
		{"object body without args", message(t, `{"kwargs": {}}`), proto2, ErrBodyNotTriple},
		{"body not JSON", message(t, `[[42], {}, {]`), proto2, ErrMalformedJSON},
		{"empty body", message(t, ``), proto2, ErrMalformedJSON},
		{"args null", message(t, `[null, {}, {}]`), proto2, ErrArgsNotList},
		{"args an object", message(t, `[{"a": 1}, {}, {}]`), proto2, ErrArgsNotList},
		{"kwargs null", message(t, `[[], null, {}]`), proto2, ErrKwargsNotObject},
		{"kwargs a list", message(t, `[[], [], {}]`), proto2, ErrKwargsNotObject},
		{"embed null", message(t, `[[], {}, null]`), proto2, ErrEmbedNotObject},
		{"embed a list", message(t, `[[], {}, []]`), proto2, ErrEmbedNotObject},
		{"id missing", message(t, baseV2Body, [2]string{"headers.id", ""}), proto2, ErrMissingTaskID},
		{"id null", message(t, baseV2Body, [2]string{"headers.id", "null"}), proto2, ErrMissingTaskID},
		{"task null", message(t, baseV2Body, [2]string{"headers.task", "null"}), proto2, ErrMissingTaskName},
		{"task empty", message(t, baseV2Body, [2]string{"headers.task", `""`}), proto2, ErrMissingTaskName},
		{"protocol 1 to the protocol 2 decoder", v1(baseV1Body), proto2, ErrWrongProtocol},
		{"hybrid to the protocol 2 decoder", message(t, baseV1Body), proto2, ErrWrongProtocol},
		{"pickle to the protocol 2 decoder", message(t, "\x80\x04.", [2]string{"content-type", `"` + ContentTypePickle + `"`}), proto2, ErrOpaqueBody},

		{"protocol 1 body a list", v1(baseV2Body), proto1, ErrBodyNotObject},
		{"protocol 1 body a string", v1(`"task"`), proto1, ErrBodyNotObject},
		{"protocol 1 without task", v1(`{"id": "x", "args": [], "kwargs": {}}`), proto1, ErrMissingTaskName},
		{"protocol 1 without id", v1(`{"task": "t", "args": [], "kwargs": {}}`), proto1, ErrMissingTaskID},
		{"protocol 1 args null", v1(`{"task": "t", "id": "x", "args": null, "kwargs": {}}`), proto1, ErrArgsNotList},
		{"protocol 1 kwargs null", v1(`{"task": "t", "id": "x", "args": [], "kwargs": null}`), proto1, ErrKwargsNotObject},
		{"protocol 1 retries a string", v1(`{"task": "t", "id": "x", "retries": "0"}`), proto1, ErrBadHeader},
		{"protocol 2 to the protocol 1 decoder", message(t, baseV2Body), proto1, ErrWrongProtocol},
		{"hybrid without args", message(t, `{"task": "t", "id": "x", "kwargs": {}}`), proto1, ErrBodyNotTriple},
		{"hybrid without args via DecodeTask", message(t, `{"kwargs": {}}`), task, ErrBodyNotTriple},
		{"hybrid with args null", message(t, `{"args": null}`), task, ErrArgsNotList},
		{"protocol 1 pickle", v1("\x80\x04.", [2]string{"content-type", `"` + ContentTypePickle + `"`}), task, ErrOpaqueBody},

		{"unparseable eta", message(t, baseV2Body, [2]string{"headers.eta", `"tomorrow"`}), task, ErrBadDate},
		{"out-of-range expires", message(t, baseV2Body, [2]string{"headers.expires", `"2024-02-30T00:00:00"`}), task, ErrBadDate},
		{"2-element body via DecodeTask", message(t, `[[42], {}]`), task, ErrBodyNotTriple},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.decode(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v\nmessage: %s", err, tt.want, tt.data)
			}
		})
	}
}

// The base messages themselves are fine, so each case above fails for its
// own reason only.
func TestBaseMessagesValid(t *testing.T) {
	t.Parallel()
	if _, err := DecodeTaskMessage(message(t, baseV2Body)); err != nil {
		t.Fatal(err)
	}
	m, err := DecodeTaskMessageV1(message(t, baseV1Body, [2]string{"headers", "{}"}))
	if err != nil {
		t.Fatal(err)
	}
	if m.Hybrid() {
		t.Fatal("protocol 1 reported as hybrid")
	}
	h, err := DecodeTaskMessageV1(message(t, baseV1Body))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Hybrid() {
		t.Fatal("hybrid not reported")
	}
}

// An envelope whose body was replaced is checked as the worker will read it.
func TestEnvelopeEncodeChecksBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body string
		want error
	}{
		{`[[42], {}]`, ErrBodyNotTriple},
		{`[[42], null, {}]`, ErrKwargsNotObject},
		{`{"kwargs": {}}`, ErrBodyNotTriple},
		{`{"args": [1], "eta": "2030-01-01T00:00:00.5Z"}`, ErrUnsafeDate},
		{`[[42], {}, {}`, ErrMalformedJSON},
	}
	for _, tt := range tests {
		e, err := DecodeEnvelope(message(t, baseV2Body))
		if err != nil {
			t.Fatal(err)
		}
		e.SetBody([]byte(tt.body))
		if _, err := e.Encode(); !errors.Is(err, tt.want) {
			t.Errorf("body %s: %v, want %v", tt.body, err, tt.want)
		}
	}
}

// Encode refuses what decoding would refuse, and what 5.2.6 would misread.
func TestEncodeRefusesPoison(t *testing.T) {
	t.Parallel()
	base := func() *TaskMessage {
		m, err := DecodeTaskMessage(message(t, baseV2Body))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name string
		edit func(m *TaskMessage)
		want error
	}{
		{"args null", func(m *TaskMessage) { m.Args = []byte("null") }, ErrArgsNotList},
		{"args nil", func(m *TaskMessage) { m.Args = nil }, ErrArgsNotList},
		{"args malformed", func(m *TaskMessage) { m.Args = []byte("[1,") }, ErrArgsNotList},
		{"kwargs null", func(m *TaskMessage) { m.Kwargs = []byte("null") }, ErrKwargsNotObject},
		{"no id", func(m *TaskMessage) { m.Headers.ID = "" }, ErrMissingTaskID},
		{"no task", func(m *TaskMessage) { m.Headers.Task = "" }, ErrMissingTaskName},
		{"no delivery tag", func(m *TaskMessage) { m.Properties.DeliveryTag = "" }, ErrMissingDeliveryTag},
		{"eta with a 1-digit fraction", func(m *TaskMessage) { m.Headers.ETA = "2030-01-01T00:00:00.5+00:00" }, ErrUnsafeDate},
		{"eta with 9 fraction digits", func(m *TaskMessage) { m.Headers.ETA = "2030-01-01T00:00:00.123456789+00:00" }, ErrUnsafeDate},
		{"expires with a colonless offset", func(m *TaskMessage) { m.Headers.Expires = "2030-01-01T00:00:00.000000+0100" }, ErrUnsafeDate},
		{"eta garbage", func(m *TaskMessage) { m.Headers.ETA = "soon" }, ErrBadDate},
		{"embed member malformed", func(m *TaskMessage) { m.Embed.Chain = []byte("[{") }, ErrMalformedJSON},
		{"extra header malformed", func(m *TaskMessage) { m.Headers.Extra = []Member{{"x", []byte("nul")}} }, ErrMalformedJSON},
		{"bzip2 cannot be written", func(m *TaskMessage) { m.Headers.Compression = CompressionBzip2 }, ErrCompression},
		{"timelimit not a number", func(m *TaskMessage) { m.Headers.TimeLimit.Hard = "ten" }, ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := base()
			tt.edit(m)
			if _, err := m.Encode(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// Safe forms pass: six digits with +00:00, Z, a whole second, +00:00 only.
	for _, eta := range []string{"2030-01-01T00:00:00.500000+00:00", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00+02:00", "2030-01-01"} {
		m := base()
		m.Headers.ETA = eta
		if _, err := m.Encode(); err != nil {
			t.Errorf("eta %q: %v", eta, err)
		}
	}
}
