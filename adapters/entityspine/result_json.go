package entityspine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// The JSON side of results: reading members with their types checked, and
// writing them back so that a decoded value encodes and decodes to itself.

// object is a decoded JSON object, members kept raw so numbers stay exact.
// Duplicate keys resolve as Python's json.loads does: the last one wins.
type object map[string]json.RawMessage

func decodeObject(typ string, data []byte) (object, error) {
	var o object
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformedResult, typ, err)
	}
	if o == nil {
		return nil, fmt.Errorf("%w: %s: null, want an object", ErrMalformedResult, typ)
	}
	return o, nil
}

func (o object) missing(fields []string) []string {
	var out []string
	for _, f := range fields {
		if _, ok := o[f]; !ok {
			out = append(out, f)
		}
	}
	return out
}

// detect picks the shape whose fields are all present.
func (o object) detect(typ string, documented, shipped []string) (Shape, error) {
	md, ms := o.missing(documented), o.missing(shipped)
	switch {
	case len(ms) == 0 && len(md) > 0:
		return ShapeShipped, nil
	case len(md) == 0 && len(ms) > 0:
		return ShapeDocumented, nil
	}
	return 0, &ShapeError{Type: typ, MissingDocumented: md, MissingShipped: ms}
}

// fieldError names the member at fault.
func fieldError(typ, key, format string, args ...any) error {
	return fmt.Errorf("%w: %s.%s: %s", ErrMalformedResult, typ, key, fmt.Sprintf(format, args...))
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// brief is raw for an error message, cut short: a member can be megabytes.
func brief(raw json.RawMessage) string {
	const max = 64
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}

func (o object) str(typ, key string) (string, error) {
	raw := o[key]
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", fieldError(typ, key, "%s is not a string", brief(raw))
	}
	return s, nil
}

// count reads a non-negative integer: Python writes ints as bare digits, so
// a fraction or exponent means the producer is not what it claims to be.
func (o object) count(typ, key string) (int64, error) {
	raw := o[key]
	n, err := strconv.ParseInt(string(raw), 10, 64)
	switch {
	case err != nil:
		return 0, fieldError(typ, key, "%s is not an integer within int64", brief(raw))
	case n < 0:
		return 0, fieldError(typ, key, "%d is negative", n)
	}
	return n, nil
}

func (o object) float(typ, key string) (float64, error) {
	raw := o[key]
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, fieldError(typ, key, "%s is not a number", brief(raw))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, fieldError(typ, key, "%s is not a number a Python float can hold", brief(raw))
	}
	return f, nil
}

func (o object) time(typ, key string) (time.Time, error) {
	s, err := o.str(typ, key)
	if err != nil {
		return time.Time{}, err
	}
	t, err := core.ParseTime(s)
	if err != nil {
		return time.Time{}, fieldError(typ, key, "%v", err)
	}
	if err := checkYear(t); err != nil {
		return time.Time{}, fieldError(typ, key, "%v", err)
	}
	return t, nil
}

func (o object) nullableTime(typ, key string) (*time.Time, error) {
	if isNull(o[key]) {
		return nil, nil
	}
	t, err := o.time(typ, key)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func (o object) strings(typ, key string) ([]string, error) {
	raw := o[key]
	var list []*string
	if isNull(raw) || json.Unmarshal(raw, &list) != nil {
		return nil, fieldError(typ, key, "%s is not a list of strings", brief(raw))
	}
	out := make([]string, len(list))
	for i, s := range list {
		if s == nil {
			return nil, fieldError(typ, key, "item %d is null, want a string", i)
		}
		out[i] = *s
	}
	return out, nil
}

// extra returns the members that are not fields, in canonical form.
func (o object) extra(fields []string) map[string]json.RawMessage {
	var out map[string]json.RawMessage
	for k, v := range o {
		if slices.Contains(fields, k) {
			continue
		}
		if out == nil {
			out = map[string]json.RawMessage{}
		}
		out[k], _ = canonical(v) // valid: the whole object was parsed
	}
	return out
}

// canonical is raw JSON as encoding/json writes a Marshaler's output:
// compact, with <, >, & and U+2028/9 escaped. Extra members are kept in
// this form, so a value decodes and encodes to itself, whether through
// MarshalJSON or json.Marshal. Strings and numbers keep their meaning and
// digits.
func canonical(raw json.RawMessage) (json.RawMessage, error) {
	var compact, escaped bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, err
	}
	json.HTMLEscape(&escaped, compact.Bytes())
	return escaped.Bytes(), nil
}

// checkYear keeps times within Python's datetime range, the only times an
// EntitySpine result can hold (and the only ones ParseTime reads back).
func checkYear(t time.Time) error {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("year %d is outside Python's datetime range", y)
	}
	return nil
}

// microsBetween is end - start in microseconds, exact for any two times
// Python can hold (time.Duration would saturate after 292 years).
func microsBetween(start, end time.Time) int64 {
	start, end = core.Timestamp(start), core.Timestamp(end)
	return (end.Unix()-start.Unix())*1_000_000 + int64(end.Nanosecond()-start.Nanosecond())/1000
}

// ratio is a/b correctly rounded, as Python's int / int is.
func ratio(a, b int64) float64 {
	f, _ := new(big.Rat).SetFrac(big.NewInt(a), big.NewInt(b)).Float64()
	return f
}

// microsDuration converts microseconds to a Duration when it fits.
func microsDuration(us int64) (time.Duration, bool) {
	if us < 0 || us > math.MaxInt64/int64(time.Microsecond) {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}

// secondsDuration converts float seconds to a Duration when it fits.
func secondsDuration(s float64) (time.Duration, bool) {
	ns := s * float64(time.Second)
	if math.IsNaN(ns) || ns < 0 || ns >= math.MaxInt64 {
		return 0, false
	}
	return time.Duration(math.Round(ns)), true
}

// pyFloat writes f as Python's json.dumps writes a float (repr: "45.0",
// "1e+16"), so derived values read like the ones entity-spine writes.
func pyFloat(f float64) (json.RawMessage, error) {
	return celerybridge.EncodeValue(f, celerybridge.TargetKombu52)
}

// objectWriter writes a JSON object member by member; the first error sticks.
type objectWriter struct {
	buf bytes.Buffer
	err error
}

func (w *objectWriter) raw(key string, v []byte) {
	if w.buf.Len() == 0 {
		w.buf.WriteByte('{')
	} else {
		w.buf.WriteByte(',')
	}
	k, _ := json.Marshal(key)
	w.buf.Write(k)
	w.buf.WriteByte(':')
	w.buf.Write(v)
}

func (w *objectWriter) value(key string, v any) {
	b, err := json.Marshal(v)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("%s: %w", key, err)
	}
	w.raw(key, b)
}

func (w *objectWriter) count(key string, n int64) {
	if n < 0 && w.err == nil {
		w.err = fmt.Errorf("%s: %d is negative", key, n)
	}
	w.raw(key, strconv.AppendInt(nil, n, 10))
}

func (w *objectWriter) float(key string, f float64) {
	if (math.IsInf(f, 0) || math.IsNaN(f)) && w.err == nil {
		w.err = fmt.Errorf("%s: %v is not a JSON number", key, f) // Python would write Infinity
	}
	b, err := pyFloat(f)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("%s: %w", key, err)
	}
	w.raw(key, b)
}

func (w *objectWriter) time(key string, t time.Time) {
	if err := checkYear(t); err != nil && w.err == nil {
		w.err = fmt.Errorf("%s: %w", key, err)
	}
	w.value(key, core.FormatTime(t))
}

func (w *objectWriter) strings(key string, list []string) {
	if list == nil {
		list = []string{} // Python's default_factory=list: never null
	}
	w.value(key, list)
}

// extra writes the derived members (given values win over computed ones),
// then the other extra members in key order. fields are the shape's own
// members, which extra must not repeat.
func (w *objectWriter) extra(extra map[string]json.RawMessage, fields []string, derived []derivedMember) {
	for _, d := range derived {
		if v, ok := extra[d.key]; ok {
			w.checkedRaw(d.key, v)
			continue
		}
		if d.err != nil && w.err == nil {
			w.err = fmt.Errorf("%s: %w", d.key, d.err)
		}
		w.raw(d.key, d.value)
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if !slices.ContainsFunc(derived, func(d derivedMember) bool { return d.key == k }) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.Contains(fields, k) && w.err == nil {
			w.err = fmt.Errorf("Extra[%q] repeats a field of the shape", k)
		}
		w.checkedRaw(k, extra[k])
	}
}

func (w *objectWriter) checkedRaw(key string, v json.RawMessage) {
	b, err := canonical(v)
	if err != nil {
		if w.err == nil {
			w.err = fmt.Errorf("Extra[%q]: not JSON: %w", key, err)
		}
		return
	}
	w.raw(key, b)
}

func (w *objectWriter) bytes() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.buf.Len() == 0 {
		return []byte("{}"), nil
	}
	w.buf.WriteByte('}')
	return w.buf.Bytes(), nil
}

// derivedMember is a value Python computes from the fields (a property or a
// to_dict addition), written when the result does not carry it.
type derivedMember struct {
	key   string
	value json.RawMessage
	err   error
}

// fillDerived adds the derived members a decoded value lacks to its Extra,
// so that it encodes and decodes to itself.
func fillDerived(extra map[string]json.RawMessage, derived []derivedMember) (map[string]json.RawMessage, error) {
	for _, d := range derived {
		if _, ok := extra[d.key]; ok {
			continue
		}
		if d.err != nil {
			return nil, fmt.Errorf("%w: derived %s: %v", ErrMalformedResult, d.key, d.err)
		}
		if extra == nil {
			extra = map[string]json.RawMessage{}
		}
		extra[d.key] = d.value
	}
	return extra, nil
}

// countField is an integer member and where it goes.
type countField struct {
	key string
	dst *int64
}

// counts reads the fields in order, so the first bad one is reported.
func (o object) counts(typ string, fields []countField) error {
	for _, f := range fields {
		n, err := o.count(typ, f.key)
		if err != nil {
			return err
		}
		*f.dst = n
	}
	return nil
}
