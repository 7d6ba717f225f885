package celerybridge

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestDecodeValueKeepsNumbers(t *testing.T) {
	t.Parallel()
	raw := `[9223372036854775808, 18446744073709551617, -9223372036854775809, 1000000000000000000000000000000, 1.0, 1e-07, 1.5, -0.0, 1e+16, 123456789.0, NaN, Infinity, -Infinity]`
	v, err := DecodeValue([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{json.Number("9223372036854775808"), json.Number("18446744073709551617"),
		json.Number("-9223372036854775809"), json.Number("1000000000000000000000000000000"),
		json.Number("1.0"), json.Number("1e-07"), json.Number("1.5"), json.Number("-0.0"),
		json.Number("1e+16"), json.Number("123456789.0"), json.Number("NaN"),
		json.Number("Infinity"), json.Number("-Infinity")}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("got %#v", v)
	}
	// And they go back out with the same text.
	out, err := EncodeValue(v, TargetKombu52)
	if err != nil || string(out) != raw {
		t.Fatalf("re-encoded %s (%v)", out, err)
	}
}

func TestDecodeValueKombuWrappers(t *testing.T) {
	t.Parallel()
	off := 3600
	tests := []struct {
		raw  string
		want any
	}{
		{`{"__type__": "datetime", "__value__": "2024-01-02T03:04:05.006000+00:00"}`, time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)},
		{`{"__value__": "2024-01-02T03:04:05", "__type__": "datetime"}`, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{`{"__type__": "date", "__value__": "2024-01-02"}`, Date{2024, 1, 2}},
		{`{"__type__": "time", "__value__": "12:30:15.000500"}`, TimeOfDay{Hour: 12, Minute: 30, Second: 15, Nanosecond: 500_000}},
		{`{"__type__": "time", "__value__": "12:30:00+01:00"}`, TimeOfDay{Hour: 12, Minute: 30, Offset: &off}},
		{`{"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}}`, uuid.MustParse("12345678-1234-5678-1234-567812345678")},
		{`{"__type__": "uuid", "__value__": {"hex": "12345678-1234-4678-9234-567812345678", "version": 4}}`, uuid.MustParse("12345678-1234-4678-9234-567812345678")},
		{`{"__type__": "decimal", "__value__": "1.10"}`, Decimal("1.10")},
		{`{"__type__": "decimal", "__value__": "-1E+3"}`, Decimal("-1E+3")},
		{`{"__type__": "bytes", "__value__": "h\u00e9"}`, []byte("hé")},
		{`{"__type__": "base64", "__value__": "AP8="}`, []byte{0, 0xff}},
		// Not exactly the two keys: an ordinary dict, as kombu's hook decides.
		{`{"__type__": "nonsense", "__value__": 1, "x": 2}`, map[string]any{"__type__": "nonsense", "__value__": json.Number("1"), "x": json.Number("2")}},
		{`{"__type__": "datetime"}`, map[string]any{"__type__": "datetime"}},
	}
	for _, tt := range tests {
		got, err := DecodeValue([]byte(tt.raw))
		if err != nil {
			t.Errorf("%s: %v", tt.raw, err)
			continue
		}
		if tm, ok := tt.want.(time.Time); ok {
			if g, ok := got.(time.Time); !ok || !g.Equal(tm) {
				t.Errorf("%s: %#v", tt.raw, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.raw, got, tt.want)
		}
	}
}

func TestDecodeValueRejectsBadWrappers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want error
	}{
		{`{"__type__": "pickle", "__value__": "gASV"}`, ErrUnknownType},
		{`[1, {"a": [{"__type__": "set", "__value__": [1]}]}]`, ErrUnknownType},
		{`{"__type__": 5, "__value__": "x"}`, ErrUnknownType},
		{`{"__type__": "datetime", "__value__": "yesterday"}`, ErrTypedValue},
		{`{"__type__": "datetime", "__value__": 1700000000}`, ErrTypedValue},
		{`{"__type__": "uuid", "__value__": "12345678123456781234567812345678"}`, ErrTypedValue},
		{`{"__type__": "uuid", "__value__": {"hex": "xyz"}}`, ErrTypedValue},
		{`{"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678", "int": 5}}`, ErrTypedValue},
		{`{"__type__": "decimal", "__value__": "1.2.3"}`, ErrTypedValue},
		{`{"__type__": "base64", "__value__": "!!"}`, ErrTypedValue},
		{`{"__type__": "bytes", "__value__": "\ud800"}`, ErrTypedValue},
		{`{"__type__": "time", "__value__": "25:00"}`, ErrTypedValue},
		{`[1, 2`, ErrMalformedJSON},
		{`[1, 2] x`, ErrMalformedJSON},
		{`[01]`, ErrMalformedJSON},
		{`[-NaN]`, ErrMalformedJSON},
		{`{"a" 1}`, ErrMalformedJSON},
		{`[1,]`, ErrMalformedJSON},
		{`{"a": 1,}`, ErrMalformedJSON},
		{`"\x"`, ErrMalformedJSON},
		{"\"tab\there\"", ErrMalformedJSON},
	}
	for _, tt := range tests {
		if _, err := DecodeValue([]byte(tt.raw)); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.raw, err, tt.want)
		}
	}
	// A hostile nesting depth is an error, not a stack overflow.
	deep := make([]byte, 0, 200_000)
	for range 100_000 {
		deep = append(deep, '[')
	}
	if _, err := DecodeValue(deep); !errors.Is(err, ErrMalformedJSON) {
		t.Errorf("deep nesting: %v", err)
	}
}

func TestEncodeValueTargets(t *testing.T) {
	t.Parallel()
	tm := time.Date(2024, 1, 2, 3, 4, 5, 6_000_789, time.FixedZone("X", 3600))
	id := uuid.MustParse("12345678-1234-5678-1234-567812345678")
	tests := []struct {
		v      any
		kombu2 string // TargetKombu52
		kombu3 string // TargetKombu53
	}{
		{tm, `"2024-01-02T02:04:05.006000+00:00"`, `{"__type__": "datetime", "__value__": "2024-01-02T02:04:05.006000+00:00"}`},
		{id, `"12345678-1234-5678-1234-567812345678"`, `{"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}}`},
		{Decimal("1.10"), `"1.10"`, `{"__type__": "decimal", "__value__": "1.10"}`},
		{Date{2024, 1, 2}, `"2024-01-02T00:00:00"`, `{"__type__": "date", "__value__": "2024-01-02"}`},
		{map[string]any{"b": 1, "a": []any{nil, true, 1.5, "é"}}, `{"a": [null, true, 1.5, "\u00e9"], "b": 1}`, ""},
		{json.RawMessage(`{"z":1,"a":[1.0,2E3]}`), `{"z": 1, "a": [1.0, 2E3]}`, ""},
		{[]int{1, 2}, `[1, 2]`, ""},
		{map[string]string{"k": "v"}, `{"k": "v"}`, ""},
		{uint64(math.MaxUint64), `18446744073709551615`, ""},
		{math.NaN(), `NaN`, ""},
		{1.0, `1.0`, ""},
		{1e-7, `1e-07`, ""},
		{json.Number("100000000000000000000"), `100000000000000000000`, ""},
		{[]byte("hi"), "", `{"__type__": "bytes", "__value__": "hi"}`},
		{[]byte{0xff}, "", `{"__type__": "base64", "__value__": "/w=="}`},
	}
	for _, tt := range tests {
		for target, want := range map[Target]string{TargetKombu52: tt.kombu2, TargetKombu53: tt.kombu3} {
			if want == "" {
				continue
			}
			got, err := EncodeValue(tt.v, target)
			if err != nil || string(got) != want {
				t.Errorf("EncodeValue(%#v, %d) = %s, %v; want %s", tt.v, target, got, err, want)
			}
		}
	}
	for _, v := range []any{[]byte("x"), make(chan int), map[int]int{1: 1}, json.Number("1x"), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := EncodeValue(v, TargetKombu52); !errors.Is(err, ErrUnencodable) {
			t.Errorf("EncodeValue(%T): %v, want ErrUnencodable", v, err)
		}
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	if _, err := EncodeValue(cyclic, TargetKombu53); !errors.Is(err, ErrUnencodable) {
		t.Errorf("cycle: %v", err)
	}
}

// Typed values survive a kombu 5.3 round trip.
func TestTypedValuesRoundTrip(t *testing.T) {
	t.Parallel()
	off := -5400
	in := []any{
		time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC), Date{2024, 2, 29},
		TimeOfDay{Hour: 1, Minute: 2, Second: 3, Nanosecond: 4000, Offset: &off},
		uuid.MustParse("12345678-1234-5678-1234-567812345678"), Decimal("-0.50"),
		[]byte{1, 2, 3}, []byte("text"),
	}
	raw, err := EncodeValue(in, TargetKombu53)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeValue(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := out.([]any)
	if !got[0].(time.Time).Equal(in[0].(time.Time)) {
		t.Errorf("datetime: %v", got[0])
	}
	if !reflect.DeepEqual(got[1:], in[1:]) {
		t.Errorf("got %#v\nwant %#v", got[1:], in[1:])
	}
}
