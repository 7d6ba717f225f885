package celerybridge

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// kombu 5.3+ carries the Python values JSON has no type for as
// {"__type__": <marker>, "__value__": <value>}; its loads turns every object
// with exactly those two keys back into the value and raises on a marker it
// does not know. These are the Go types they decode to and encode from.

// Decimal is the exact text of a Python decimal.Decimal, such as "1.10".
type Decimal string

// Date is a Python datetime.date.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day) }

// TimeOfDay is a Python datetime.time.
type TimeOfDay struct {
	Hour, Minute, Second, Nanosecond int
	// Offset is seconds east of UTC; nil for a naive time.
	Offset *int
}

// String writes the time as Python's isoformat does, always with six
// fraction digits, which every reader takes the same way.
func (t TimeOfDay) String() string {
	s := fmt.Sprintf("%02d:%02d:%02d.%06d", t.Hour, t.Minute, t.Second, t.Nanosecond/1000)
	if t.Offset != nil {
		s += formatOffset(*t.Offset)
	}
	return s
}

func formatOffset(secs int) string {
	sign := byte('+')
	if secs < 0 {
		sign, secs = '-', -secs
	}
	s := fmt.Sprintf("%c%02d:%02d", sign, secs/3600, secs/60%60)
	if secs%60 != 0 {
		s += fmt.Sprintf(":%02d", secs%60)
	}
	return s
}

// unwrapTyped applies kombu 5.3+'s object_hook: an object whose keys are
// exactly __type__ and __value__ is a wrapped Python value.
func unwrapTyped(n node) (node, error) {
	if len(n.keys) < 2 {
		return n, nil
	}
	typ, ok1 := n.lookup("__type__")
	val, ok2 := n.lookup("__value__")
	if !ok1 || !ok2 || n.distinctKeys() != 2 {
		return n, nil
	}
	if typ.kind != nString {
		// kombu looks the marker up in a dict: an unhashable marker raises
		// TypeError, a hashable non-string one is simply unknown.
		return node{}, fmt.Errorf("__type__ is not a string: %w", ErrUnknownType)
	}
	v, err := decodeTyped(typ.text, val)
	if err != nil {
		return node{}, err
	}
	return node{kind: nTyped, typed: v, text: typ.text}, nil
}

func decodeTyped(typ string, val *node) (any, error) {
	bad := func(why string) error {
		return fmt.Errorf("__type__ %q: %s: %w", typ, why, ErrTypedValue)
	}
	switch typ {
	case "datetime", "date", "time", "decimal", "bytes", "base64":
		if val.kind != nString {
			return nil, bad("__value__ is not a string")
		}
	}
	switch typ {
	case "datetime":
		t, err := ParseTime(val.text)
		if err != nil {
			return nil, bad(err.Error())
		}
		return t, nil
	case "date":
		// kombu: datetime.fromisoformat(value).date()
		t, err := ParseTime(val.text)
		if err != nil {
			return nil, bad(err.Error())
		}
		return Date{Year: t.Year(), Month: t.Month(), Day: t.Day()}, nil
	case "time":
		t, ok := parseTimeOfDay(val.text)
		if !ok {
			return nil, bad("not an ISO time")
		}
		return t, nil
	case "decimal":
		if !validDecimal(val.text) {
			return nil, bad("not a decimal")
		}
		return Decimal(val.text), nil
	case "bytes":
		// kombu: value.encode("utf-8"); a lone surrogate cannot be encoded.
		if !utf8.ValidString(val.text) {
			return nil, bad("not encodable as UTF-8")
		}
		return []byte(val.text), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(val.text)
		if err != nil {
			return nil, bad(err.Error())
		}
		return b, nil
	case "uuid":
		// kombu: uuid.UUID(**value), value {"hex": ...} (5.3.0 added "version").
		if val.kind != nObject {
			return nil, bad("__value__ is not an object")
		}
		hex, ok := val.lookup("hex")
		if !ok || hex.kind != nString || val.distinctKeys() > 2 {
			return nil, bad(`__value__ needs "hex" (and at most "version")`)
		}
		u, err := parsePyUUIDHex(hex.text)
		if err != nil {
			return nil, bad(err.Error())
		}
		if ver, ok := val.lookup("version"); ok {
			if val.distinctKeys() != 2 || ver.kind != nNumber {
				return nil, bad("bad version")
			}
			v, err := strconv.Atoi(ver.text)
			if err != nil || v < 1 || v > 5 {
				return nil, bad("bad version")
			}
			// uuid.UUID(version=v) rewrites the variant and version bits.
			u[8] = u[8]&0x3f | 0x80
			u[6] = u[6]&0x0f | byte(v)<<4
		} else if val.distinctKeys() != 1 {
			return nil, bad(`__value__ needs "hex" (and at most "version")`)
		}
		return u, nil
	}
	return nil, fmt.Errorf("__type__ %q: %w", typ, ErrUnknownType)
}

// parsePyUUIDHex reads a hex string as uuid.UUID(hex=...) does: braces,
// "urn:uuid:" and hyphens are dropped, then 32 hex digits must remain.
func parsePyUUIDHex(s string) (uuid.UUID, error) {
	s = strings.ReplaceAll(s, "urn:", "")
	s = strings.ReplaceAll(s, "uuid:", "")
	s = strings.Trim(s, "{}")
	s = strings.ReplaceAll(s, "-", "")
	if len(s) != 32 {
		return uuid.UUID{}, fmt.Errorf("badly formed hexadecimal UUID string")
	}
	var u uuid.UUID
	for i := range 16 {
		hi, lo := hexVal(s[2*i]), hexVal(s[2*i+1])
		if hi < 0 || lo < 0 {
			return uuid.UUID{}, fmt.Errorf("badly formed hexadecimal UUID string")
		}
		u[i] = byte(hi<<4 | lo)
	}
	return u, nil
}

// validDecimal accepts the literals Python's Decimal(str) does: a signed
// decimal with optional exponent, or Infinity / Inf / NaN / sNaN (any case),
// surrounding whitespace and digit underscores allowed.
func validDecimal(s string) bool {
	s = strings.TrimSpace(s)
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	low := strings.ToLower(s)
	switch {
	case low == "inf" || low == "infinity":
		return true
	case strings.HasPrefix(low, "nan"), strings.HasPrefix(low, "snan"):
		digits := strings.TrimPrefix(strings.TrimPrefix(low, "s"), "nan")
		return strings.Trim(digits, "0123456789") == ""
	}
	mant, exp, hasExp := strings.Cut(low, "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	if !pyDigits(intPart, true) || !pyDigits(frac, true) || intPart+frac == "" {
		return false
	}
	if hasExp {
		if exp != "" && (exp[0] == '+' || exp[0] == '-') {
			exp = exp[1:]
		}
		return exp != "" && pyDigits(exp, false)
	}
	return true
}

// pyDigits reports whether s is digits with single underscores between them.
func pyDigits(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	if s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return false
	}
	return strings.Trim(s, "0123456789_") == ""
}

// parseTimeOfDay reads HH:MM[:SS[.f]][offset] as time.fromisoformat does.
func parseTimeOfDay(s string) (TimeOfDay, bool) {
	p := isoParser{s: s}
	h, m, sec, ns, ok := p.clock()
	if !ok || h > 23 || m > 59 || sec > 59 {
		return TimeOfDay{}, false
	}
	t := TimeOfDay{Hour: h, Minute: m, Second: sec, Nanosecond: ns}
	if !p.more() {
		return t, true
	}
	loc, ok := p.offset()
	if !ok || p.more() {
		return TimeOfDay{}, false
	}
	_, off := time.Date(2000, 1, 1, 0, 0, 0, 0, loc).Zone()
	t.Offset = &off
	return t, true
}

// appendTyped writes the values JSON has no type for, as the target kombu
// writes them.
func appendTyped(dst []byte, v any, t Target) ([]byte, error) {
	var typ, text string
	switch x := v.(type) {
	case time.Time:
		if y := x.UTC().Year(); y < 1 || y > 9999 {
			return nil, fmt.Errorf("time %v outside Python's datetime range: %w", x, ErrUnencodable)
		}
		typ, text = "datetime", FormatTime(x)
	case Date:
		if !validDate(x.Year, int(x.Month), x.Day) || x.Year > 9999 {
			return nil, fmt.Errorf("date %v: %w", x, ErrUnencodable)
		}
		typ, text = "date", x.String()
		if t == TargetKombu52 {
			// kombu 5.2 turns a date into a naive midnight datetime.
			text += "T00:00:00"
		}
	case TimeOfDay:
		typ, text = "time", x.String()
	case Decimal:
		if !validDecimal(string(x)) {
			return nil, fmt.Errorf("decimal %q: %w", string(x), ErrUnencodable)
		}
		typ, text = "decimal", string(x)
	case uuid.UUID:
		if t == TargetKombu52 {
			return appendString(dst, x.String()), nil
		}
		o := openObject(dst)
		o.str("__type__", "uuid")
		o.key("__value__")
		inner := openObject(o.buf)
		inner.str("hex", strings.ReplaceAll(x.String(), "-", ""))
		o.buf = inner.close()
		return o.close(), nil
	case []byte:
		if t == TargetKombu52 {
			return nil, fmt.Errorf("bytes: kombu 5.2 cannot carry them in JSON: %w", ErrUnencodable)
		}
		typ = "base64"
		if utf8.Valid(x) {
			typ, text = "bytes", string(x)
		} else {
			text = base64.StdEncoding.EncodeToString(x)
		}
	default:
		return nil, fmt.Errorf("%T: %w", v, ErrUnencodable)
	}
	if t == TargetKombu52 {
		return appendString(dst, text), nil
	}
	o := openObject(dst)
	o.str("__type__", typ)
	o.str("__value__", text)
	return o.close(), nil
}
