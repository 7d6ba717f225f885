package celerybridge

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
)

// pyvectors.json holds outputs of Python itself (capture.py writes it):
// saferepr, repr(float), json.dumps of strings, kombu 5.2's encoder.
func loadPyVectors(t *testing.T) *node {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "pyvectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	return mustNode(t, data)
}

func TestSafereprMatchesPython(t *testing.T) {
	t.Parallel()
	v := loadPyVectors(t)
	args, _ := v.lookup("saferepr_args")
	kwargs, _ := v.lookup("saferepr_kwargs")
	n := 0
	for _, group := range []*node{args, kwargs} {
		for _, c := range group.items {
			value, ok := c.lookup("args")
			tuple := false
			if ok {
				tup, _ := c.lookup("tuple")
				tuple = tup.kind == nTrue
			} else {
				value, _ = c.lookup("kwargs")
			}
			maxlen := -1
			if m, _ := c.lookup("maxlen"); m.kind == nNumber {
				maxlen = int(mustInt(t, m.text))
			}
			want, _ := c.lookup("repr")
			if got := saferepr(value, tuple, maxlen); got != want.text {
				t.Errorf("saferepr(%s, tuple=%v, maxlen=%d)\n got: %q\nwant: %q", appendNode(nil, value), tuple, maxlen, got, want.text)
			}
			n++
		}
	}
	if n < 400 {
		t.Errorf("only %d vectors", n)
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, ok := parseInt([]byte(s))
	if !ok {
		t.Fatalf("not an int: %s", s)
	}
	return int64(n)
}

func TestFloatReprMatchesPython(t *testing.T) {
	t.Parallel()
	floats, _ := loadPyVectors(t).lookup("float_repr")
	for _, c := range floats.items {
		bits, _ := c.lookup("bits")
		want, _ := c.lookup("repr")
		b, err := hex.DecodeString(bits.text)
		if err != nil {
			t.Fatal(err)
		}
		f := math.Float64frombits(binary.BigEndian.Uint64(b))
		if got := string(appendFloat(nil, f)); got != want.text {
			t.Errorf("repr(%v) = %q, Python %q", f, got, want.text)
		}
	}
}

func TestStringEscapesMatchPython(t *testing.T) {
	t.Parallel()
	strs, _ := loadPyVectors(t).lookup("json_strings")
	for _, c := range strs.items {
		s, _ := c.lookup("s")
		want, _ := c.lookup("json")
		if got := string(appendString(nil, s.text)); got != want.text {
			t.Errorf("json.dumps(%q) = %s, Python %s", s.text, got, want.text)
		}
	}
	// A lone surrogate (legal in Python strings) survives decode and encode.
	n := mustNode(t, []byte(`["\ud800", "\udfff x", "\ud83d\ude00"]`))
	if got := string(appendNode(nil, n)); got != `["\ud800", "\udfff x", "\ud83d\ude00"]` {
		t.Errorf("surrogates: %s", got)
	}
}

// With TargetKombu52 the typed values are written as kombu 5.2.4's encoder
// writes them, except datetimes, which always get the form every version
// reads alike (six digits, +00:00) rather than 5.2's trailing Z.
func TestKombu52TypedValues(t *testing.T) {
	t.Parallel()
	typed, _ := loadPyVectors(t).lookup("kombu52_typed")
	off := 0
	for name, v := range map[string]any{
		"date":    Date{2024, 1, 2},
		"time":    TimeOfDay{Hour: 12, Minute: 30, Second: 15, Nanosecond: 500_000},
		"uuid":    uuid.MustParse("12345678-1234-5678-1234-567812345678"),
		"decimal": Decimal("1.10"),
	} {
		want, _ := typed.lookup(name)
		got, err := EncodeValue(v, TargetKombu52)
		if err != nil || string(got) != want.text {
			t.Errorf("%s: %s (%v), kombu 5.2 %s", name, got, err, want.text)
		}
	}
	// kombu 5.2 writes "...Z"; both read to the same instant.
	want, _ := typed.lookup("datetime_utc")
	got, _ := EncodeValue(time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC), TargetKombu52)
	if string(got) != `"2024-01-02T03:04:05.006000+00:00"` {
		t.Errorf("datetime: %s", got)
	}
	a, _ := ParseTime(want.text[1 : len(want.text)-1])
	b, _ := ParseTime(string(got[1 : len(got)-1]))
	if !a.Equal(b) {
		t.Errorf("datetime: %v vs kombu's %v", b, a)
	}
	_ = off
}

// The emulation of 5.2.6's date regex agrees with the real one.
func TestCelery52TimeMatchesPython(t *testing.T) {
	t.Parallel()
	cases, _ := loadPyVectors(t).lookup("iso8601_52")
	for _, c := range cases.items {
		s, _ := c.lookup("s")
		res, _ := c.lookup("celery52")
		got, ok := celery52Time(s.text)
		if _, failed := res.lookup("error"); failed {
			// Our emulation may only be asked about strings ParseTime accepts;
			// for those it must fail too.
			if _, err := ParseTime(s.text); err == nil && ok {
				t.Errorf("%q: 5.2.6 raises, emulation gives %v", s.text, got)
			}
			continue
		}
		if _, err := ParseTime(s.text); err != nil {
			continue // outside what we read at all
		}
		utc, _ := res.lookup("utc")
		want, err := ParseTime(utc.text) // naive: UTC, as the emulation assumes
		if err != nil {
			t.Fatal(err)
		}
		if !ok || !got.Equal(want) {
			t.Errorf("%q: emulation %v (%v), 5.2.6 %s", s.text, got, ok, utc.text)
		}
	}
}
