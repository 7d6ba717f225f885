package celerybridge

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"
)

// Every error the decoders may return is one of the sentinels.
var sentinels = []error{
	ErrMalformedJSON, ErrHeadersNotObject, ErrMissingProperties, ErrMissingDeliveryTag,
	ErrMissingDeliveryInfo, ErrBadHeader, ErrBadProperty, ErrBadBody, ErrBadBase64,
	ErrUnknownBodyEncoding, ErrUnknownContentType, ErrCompression, ErrOpaqueBody,
	ErrWrongProtocol, ErrBodyNotTriple, ErrBodyNotObject, ErrArgsNotList, ErrKwargsNotObject,
	ErrEmbedNotObject, ErrMissingTaskID, ErrMissingTaskName, ErrBadDate, ErrUnsafeDate,
	ErrUnknownType, ErrTypedValue, ErrUnencodable,
}

func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error outside the documented set: %v", err)
}

func addFixtureSeeds(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		f.Add(fx.raw)
	}
	f.Add([]byte(baseV2))
	f.Add([]byte(`{"body": "W10=", "content-type": "application/json", "headers": null, "properties": {"delivery_tag": "t", "delivery_info": {"exchange": null, "routing_key": "q"}}}`))
	f.Add([]byte(`{"body": "[[], {}, {}]", "content-type": "application/json", "headers": {"task": "t", "id": "i", "eta": "2024-01-01T00:00:00.5Z"}, "properties": {"body_encoding": "utf-8", "delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}, "x": [1, 2.50, -0]}`))
}

// FuzzDecodeEnvelope: no input panics, errors are sentinels, and what
// decodes re-encodes to the same value, stably.
func FuzzDecodeEnvelope(f *testing.F) {
	addFixtureSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		data = exact(data)
		e, err := DecodeEnvelope(data)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		checkEnvelopeRoundTrip(t, data, e)
	})
}

func checkEnvelopeRoundTrip(t *testing.T, data []byte, e *Envelope) {
	t.Helper()
	out, err := e.Encode()
	if err != nil {
		checkSentinel(t, err)
		return
	}
	again, err := DecodeEnvelope(out)
	if err != nil {
		t.Fatalf("re-encoded envelope does not decode: %v\nin:  %s\nout: %s", err, data, out)
	}
	if !bytes.Equal(again.Body(), e.Body()) {
		t.Fatalf("body changed\nin:  %q\nout: %q", e.Body(), again.Body())
	}
	out2, err := again.Encode()
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("encode not stable: %v\n1: %s\n2: %s", err, out, out2)
	}
	// Same JSON value as the input, as Python reads it (last duplicate key
	// wins), once the body strings are compared decoded.
	in, outN := mustNode(t, data), mustNode(t, out)
	dropMember(in, "body")
	dropMember(outN, "body")
	if !pyEqual(in, outN) {
		t.Fatalf("value changed\nin:  %s\nout: %s", data, out)
	}
}

func dropMember(n *node, key string) {
	for i := 0; i < len(n.keys); i++ {
		if n.keys[i] == key {
			n.keys = append(n.keys[:i], n.keys[i+1:]...)
			n.items = append(n.items[:i], n.items[i+1:]...)
			i--
		}
	}
}

// pyEqual compares two JSON values as Python's json.loads sees them: the
// last of duplicate keys wins, member order does not matter, integers
// compare by value and other numbers by text.
func pyEqual(a, b *node) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case nNumber:
		if a.text == b.text {
			return true
		}
		x, ok1 := new(big.Int).SetString(a.text, 10)
		y, ok2 := new(big.Int).SetString(b.text, 10)
		return ok1 && ok2 && x.Cmp(y) == 0
	case nString:
		return a.text == b.text
	case nList:
		if len(a.items) != len(b.items) {
			return false
		}
		for i := range a.items {
			if !pyEqual(&a.items[i], &b.items[i]) {
				return false
			}
		}
		return true
	case nObject:
		am, bm := lastWins(a), lastWins(b)
		if len(am) != len(bm) {
			return false
		}
		for k, av := range am {
			bv, ok := bm[k]
			if !ok || !pyEqual(av, bv) {
				return false
			}
		}
		return true
	case nTyped:
		return bytes.Equal(appendNode(nil, a), appendNode(nil, b))
	}
	return true
}

func lastWins(n *node) map[string]*node {
	m := make(map[string]*node, len(n.keys))
	for i, k := range n.keys {
		m[k] = &n.items[i]
	}
	return m
}

// envelopeFor wraps fuzzed headers and a plain body into an otherwise valid
// envelope, so the fuzzer works on the parts the protocol decoders read
// instead of on base64.
func envelopeFor(headers, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"body": "`)
	b.WriteString(base64.StdEncoding.EncodeToString(body))
	b.WriteString(`", "content-encoding": "utf-8", "content-type": "application/json", "headers": `)
	b.Write(headers)
	b.WriteString(`, "properties": {"correlation_id": "c", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "t"}}`)
	return b.Bytes()
}

func addProtocolSeeds(f *testing.F, protocol int) {
	for _, fx := range loadFixtures(f) {
		if fx.protocol != protocol {
			continue
		}
		v := mustNode(f, fx.raw)
		h, _ := v.lookup("headers")
		ct, _ := v.lookup("content-type")
		if ct.text == ContentTypeJSON {
			f.Add(appendNode(nil, h), plainBody(f, fx.raw))
		}
	}
	head := []byte(`{"task": "t", "id": "i"}`)
	for _, body := range []string{baseV2Body, baseV1Body, `[[], {}]`, `[null, {}, {}]`, `{"args": [1]}`,
		`[[{"__type__": "uuid", "__value__": {"hex": "0"}}], {"k": {"__type__": "x", "__value__": 1}}, {"chain": [{"task": "n"}]}]`} {
		f.Add(head, []byte(body))
		f.Add([]byte(`{}`), []byte(body))
	}
}

// exact returns b with no spare capacity, so that reading past its end
// panics instead of silently seeing stale bytes.
func exact(b []byte) []byte { return b[:len(b):len(b)] }

// FuzzDecodeProtocol2: headers and body of a protocol 2 message.
func FuzzDecodeProtocol2(f *testing.F) {
	addProtocolSeeds(f, 2)
	f.Fuzz(func(t *testing.T, headers, body []byte) {
		data := exact(envelopeFor(headers, body))
		m, err := DecodeTaskMessage(data)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		if m.Args[0] != '[' || m.Kwargs[0] != '{' {
			t.Fatalf("accepted args %s kwargs %s", m.Args, m.Kwargs)
		}
		out, err := m.Encode()
		if err != nil {
			checkSentinel(t, err)
			return
		}
		again, err := DecodeTaskMessage(out)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v\n%s", err, out)
		}
		if !bytes.Equal(again.Args, m.Args) || !bytes.Equal(again.Kwargs, m.Kwargs) || again.Headers.ID != m.Headers.ID {
			t.Fatalf("message changed through a round trip\n%s", out)
		}
		out2, err := again.Encode()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encode not stable: %v", err)
		}
		if !pyEqual(mustNode(t, body), mustNode(t, again.appendBody(nil))) {
			t.Fatalf("body value changed\nin:  %s\nout: %s", body, again.appendBody(nil))
		}
		if _, err := DecodeTask(out); err != nil {
			checkSentinel(t, err)
		}
	})
}

// FuzzDecodeProtocol1: headers and body of a protocol 1 or hybrid message.
func FuzzDecodeProtocol1(f *testing.F) {
	addProtocolSeeds(f, 1)
	f.Fuzz(func(t *testing.T, headers, body []byte) {
		data := exact(envelopeFor(headers, body))
		m, err := DecodeTaskMessageV1(data)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		out, err := m.Encode()
		if err != nil {
			checkSentinel(t, err)
			return
		}
		again, err := DecodeTaskMessageV1(out)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v\n%s", err, out)
		}
		if again.Hybrid() != m.Hybrid() || again.Body.ID != m.Body.ID || !bytes.Equal(again.Body.Args, m.Body.Args) {
			t.Fatalf("message changed through a round trip\n%s", out)
		}
		out2, err := again.Encode()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encode not stable: %v", err)
		}
		if !pyEqual(mustNode(t, body), mustNode(t, appendBodyV1(nil, &again.Body))) {
			t.Fatalf("body value changed\nin:  %s\nout: %s", body, appendBodyV1(nil, &again.Body))
		}
		task, err := DecodeTask(out)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		if _, err := task.DecodeArgs(); err != nil {
			checkSentinel(t, err)
		}
	})
}

// FuzzRoundTrip: decode, encode, decode is stable for whole messages through
// every layer, and for argument values.
func FuzzRoundTrip(f *testing.F) {
	addFixtureSeeds(f)
	f.Add([]byte(`[1, 2.50, -0, 1e400, "\ud800", {"__type__": "decimal", "__value__": "1_0"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = exact(data)
		if v, err := DecodeValue(data); err != nil {
			checkSentinel(t, err)
		} else {
			raw, err := EncodeValue(v, TargetKombu53)
			if err != nil {
				checkSentinel(t, err)
			} else if v2, err := DecodeValue(raw); err != nil {
				t.Fatalf("EncodeValue output does not decode: %v\n%s", err, raw)
			} else if raw2, err := EncodeValue(v2, TargetKombu53); err != nil || !bytes.Equal(raw, raw2) {
				t.Fatalf("value round trip not stable: %v\n%s\n%s", err, raw, raw2)
			}
		}
		task, err := DecodeTask(data)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		e, err := DecodeEnvelope(data)
		if err != nil {
			t.Fatalf("DecodeTask accepted what DecodeEnvelope refuses: %v", err)
		}
		out, err := e.Encode()
		if err != nil {
			checkSentinel(t, err)
			return
		}
		task2, err := DecodeTask(out)
		if err != nil {
			t.Fatalf("re-encoded message no longer decodes: %v\n%s", err, out)
		}
		if task2.ID != task.ID || task2.Name != task.Name || task2.Protocol != task.Protocol ||
			!bytes.Equal(task2.Args, task.Args) || !task2.ETA.Equal(task.ETA) {
			t.Fatalf("task changed: %+v vs %+v", task, task2)
		}
	})
}

// FuzzSkipPlain: the eight-bytes-at-a-time string scan never skips a byte
// the validating loop must see (a quote, a backslash, a control character,
// a byte of a multi-byte sequence).
func FuzzSkipPlain(f *testing.F) {
	f.Add([]byte(`abcdefgh"ijklmnop`), 0)
	f.Add([]byte("abcdefghijklmnop\x1fqrstuvw"), 3)
	f.Add([]byte(`0123456789abcdef\u00e9 and more plain text`), 1)
	f.Add([]byte("plain text \xc3\xa9 here and there"), 0)
	f.Add([]byte("\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x80"), 0)
	f.Fuzz(func(t *testing.T, b []byte, i int) {
		if i < 0 || i > len(b) {
			return
		}
		j := skipPlain(b, i)
		if j < i || j > len(b) {
			t.Fatalf("skipPlain(%q, %d) = %d", b, i, j)
		}
		for k := i; k < j; k++ {
			if c := b[k]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
				t.Fatalf("skipPlain(%q, %d) = %d skipped byte %#x at %d", b, i, j, c, k)
			}
		}
	})
}
