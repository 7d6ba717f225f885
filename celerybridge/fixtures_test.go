package celerybridge

import (
	"bytes"
	"compress/bzip2"
	"compress/zlib"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fixtureDir holds messages real Celery 5.2.6 wrote to Redis: the two
// reference captures, and what testdata/celery-5.2.6/capture.py recorded.
const fixtureDir = "../testdata/celery-5.2.6"

// fixture is one captured message.
type fixture struct {
	file, name string
	protocol   int
	key        string // the Redis list it was on
	raw        []byte // the exact string LPUSHed
}

func (f fixture) String() string { return f.file + "/" + f.name }

// loadFixtures reads every capture. The reference files keep only the parsed
// value; since kombu writes with json.dumps defaults, laying the value out in
// Python's style again gives back the bytes Celery wrote.
func loadFixtures(t testing.TB) []fixture {
	t.Helper()
	var out []fixture
	for _, file := range []string{"protocol2-messages.json", "protocol1-messages.json",
		"captured-protocol2.json", "captured-protocol1.json", "captured-other.json"} {
		data, err := os.ReadFile(filepath.Join(fixtureDir, file))
		if err != nil {
			t.Fatal(err)
		}
		root, err := parseNode(data, false)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		cases := &root
		if root.kind == nObject {
			cases, _ = root.lookup("cases")
		}
		for _, c := range cases.items {
			name, _ := c.lookup("case")
			proto, _ := c.lookup("protocol")
			msgs, _ := c.lookup("messages")
			for i, m := range msgs.items {
				key, _ := m.lookup("key")
				f := fixture{file: file, name: name.text, key: key.text}
				f.protocol = int(proto.text[0] - '0')
				if len(msgs.items) > 1 {
					f.name += "#" + string(rune('0'+i))
				}
				if raw, ok := m.lookup("raw"); ok {
					f.raw = []byte(raw.text)
				} else {
					v, _ := m.lookup("value")
					f.raw = appendNode(nil, v)
				}
				out = append(out, f)
			}
		}
	}
	if len(out) < 50 {
		t.Fatalf("only %d fixtures loaded", len(out))
	}
	return out
}

// wireValue parses a fixture for comparisons.
func wireValue(t testing.TB, raw []byte) *node {
	t.Helper()
	n, err := parseNode(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	return &n
}

func member(t testing.TB, n *node, path ...string) (*node, bool) {
	t.Helper()
	for _, p := range path {
		var ok bool
		if n, ok = n.lookup(p); !ok {
			return nil, false
		}
	}
	return n, true
}

// plainBody returns a fixture's payload: base64 and compression undone, by
// the standard library rather than the code under test.
func plainBody(t testing.TB, raw []byte) []byte {
	t.Helper()
	v := wireValue(t, raw)
	body, _ := member(t, v, "body")
	b, err := base64.StdEncoding.DecodeString(body.text)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := member(t, v, "headers", "compression")
	if !ok {
		return b
	}
	var r io.Reader = bzip2.NewReader(bytes.NewReader(b))
	if c.text == "application/x-gzip" {
		if r, err = zlib.NewReader(bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	if b, err = io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
	return b
}
