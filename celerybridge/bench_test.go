package celerybridge

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The codec figure (BENCHMARKS.md): decode + re-encode of a protocol 2
// message against encoding/json decoding the same envelope and its body into
// any. bench/codec.sh runs the two alternately and reports the ratio.

// benchMessages are Celery 5.2.6's own bytes for a plain call and for a
// call with a chain signature in its embed.
func benchMessages(b *testing.B) map[string][]byte {
	b.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "protocol2-messages.json"))
	if err != nil {
		b.Fatal(err)
	}
	root := mustNode(b, data)
	out := map[string][]byte{}
	for _, c := range root.items {
		name, _ := c.lookup("case")
		if name.text != "delay" && name.text != "chain" {
			continue
		}
		msgs, _ := c.lookup("messages")
		v, _ := msgs.items[0].lookup("value")
		out[name.text] = appendNode(nil, v)
	}
	return out
}

func BenchmarkCodecRoundTrip(b *testing.B) {
	for _, name := range []string{"delay", "chain"} {
		raw := benchMessages(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				m, err := DecodeTaskMessage(raw)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.Encode(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStdlibUnmarshalAny(b *testing.B) {
	for _, name := range []string{"delay", "chain"} {
		raw := benchMessages(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				var env map[string]any
				if err := json.Unmarshal(raw, &env); err != nil {
					b.Fatal(err)
				}
				body, err := base64.StdEncoding.DecodeString(env["body"].(string))
				if err != nil {
					b.Fatal(err)
				}
				var v any
				if err := json.Unmarshal(body, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The smoke version keeps the benchmark code working under go test.
func TestBenchmarkMessagesRoundTrip(t *testing.T) {
	t.Parallel()
	res := testing.Benchmark(func(b *testing.B) {
		for name, raw := range benchMessages(b) {
			m, err := DecodeTaskMessage(raw)
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			out, err := m.Encode()
			if err != nil || string(out) != string(raw) {
				b.Fatalf("%s: round trip differs: %v", name, err)
			}
		}
	})
	if res.N == 0 {
		t.Fatal("benchmark did not run")
	}
}
