package celerybridge

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Target is the kombu generation a message is written for. It decides how Go
// values JSON has no type for are written: kombu 5.3+ understands
// {"__type__": ..., "__value__": ...} wrappers and turns them back into
// Python objects, while kombu 5.2 would hand the wrapper to the task as a
// plain dict.
type Target int

const (
	// TargetKombu52 (the zero value) writes what kombu 5.2.4 writes: dates,
	// times, UUIDs and decimals as plain strings; bytes cannot be sent.
	// Every version reads it.
	TargetKombu52 Target = iota
	// TargetKombu53 writes kombu 5.3+ wrappers, so the task receives a
	// datetime, UUID, Decimal or bytes. Only for estates where every worker
	// runs kombu 5.3 or newer.
	TargetKombu53
)

// DecodeValue decodes one JSON value into Go values the way kombu's loads
// does: objects become map[string]any, arrays []any, numbers json.Number
// (integers beyond 2^63 and floats keep their text), and kombu 5.3+ wrappers
// become time.Time (datetime), Date, TimeOfDay, uuid.UUID, Decimal or []byte
// (bytes, base64). An unknown __type__ is ErrUnknownType.
func DecodeValue(raw []byte) (any, error) {
	n, err := parseNode(raw, true)
	if err != nil {
		return nil, err
	}
	return n.toAny(), nil
}

// EncodeValue writes v as JSON exactly as Python's json.dumps would write the
// corresponding Python value, with the types JSON lacks written for t. Maps
// are written with sorted keys (Go maps have no order); json.RawMessage is
// re-laid-out in Python's style with its numbers untouched.
func EncodeValue(v any, t Target) (json.RawMessage, error) {
	return appendValue(nil, v, t, 0)
}

// node is a decoded JSON value that keeps object member order, which
// saferepr needs and Go maps lose.
type node struct {
	kind  nodeKind
	text  string // string value, number text
	items []node // list items; object values
	keys  []string
	typed any // the Go value of a kombu wrapper
}

type nodeKind uint8

const (
	nNull nodeKind = iota
	nFalse
	nTrue
	nNumber
	nString
	nList
	nObject
	nTyped
)

// parseNode parses one JSON value; with typed, kombu 5.3+ wrappers become
// nTyped nodes (and an unknown __type__ is an error), as kombu's loads does.
func parseNode(raw []byte, typed bool) (node, error) {
	s := scanner{data: raw, typed: typed}
	n, err := s.node()
	if err != nil {
		return node{}, err
	}
	return n, s.end()
}

func (s *scanner) node() (node, error) {
	switch c := s.peek(); c {
	case '{':
		if err := s.enter('{'); err != nil {
			return node{}, err
		}
		var n node
		n.kind = nObject
		for i := 0; ; {
			ok, err := s.more('}', &i)
			if err != nil {
				return node{}, err
			}
			if !ok {
				break
			}
			k, err := s.key()
			if err != nil {
				return node{}, err
			}
			key := string(k)
			v, err := s.node()
			if err != nil {
				return node{}, err
			}
			n.keys = append(n.keys, key)
			n.items = append(n.items, v)
		}
		if !s.typed {
			return n, nil
		}
		return unwrapTyped(n)
	case '[':
		if err := s.enter('['); err != nil {
			return node{}, err
		}
		n := node{kind: nList, items: []node{}}
		for i := 0; ; {
			ok, err := s.more(']', &i)
			if err != nil {
				return node{}, err
			}
			if !ok {
				return n, nil
			}
			v, err := s.node()
			if err != nil {
				return node{}, err
			}
			n.items = append(n.items, v)
		}
	case '"':
		v, _, err := s.str()
		return node{kind: nString, text: v}, err
	case 't':
		return node{kind: nTrue}, s.literal("true")
	case 'f':
		return node{kind: nFalse}, s.literal("false")
	case 'n':
		return node{kind: nNull}, s.literal("null")
	case 0:
		return node{}, s.errorf("unexpected end of input")
	default:
		text, err := s.number()
		return node{kind: nNumber, text: string(text)}, err
	}
}

// lookup returns the last value for key, as a Python dict keeps the last of
// duplicate keys.
func (n *node) lookup(key string) (*node, bool) {
	for i := len(n.keys) - 1; i >= 0; i-- {
		if n.keys[i] == key {
			return &n.items[i], true
		}
	}
	return nil, false
}

func (n *node) distinctKeys() int {
	seen := make(map[string]struct{}, len(n.keys))
	for _, k := range n.keys {
		seen[k] = struct{}{}
	}
	return len(seen)
}

func (n *node) toAny() any {
	switch n.kind {
	case nNull:
		return nil
	case nFalse:
		return false
	case nTrue:
		return true
	case nNumber:
		return json.Number(n.text)
	case nString:
		return n.text
	case nList:
		out := make([]any, len(n.items))
		for i := range n.items {
			out[i] = n.items[i].toAny()
		}
		return out
	case nObject:
		out := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			out[k] = n.items[i].toAny()
		}
		return out
	}
	return n.typed
}

// appendNode writes a parsed value back in Python's layout.
func appendNode(dst []byte, n *node) []byte {
	switch n.kind {
	case nNull:
		return append(dst, "null"...)
	case nFalse:
		return append(dst, "false"...)
	case nTrue:
		return append(dst, "true"...)
	case nNumber:
		return append(dst, n.text...)
	case nString:
		return appendString(dst, n.text)
	case nList:
		dst = append(dst, '[')
		for i := range n.items {
			if i > 0 {
				dst = append(dst, ',', ' ')
			}
			dst = appendNode(dst, &n.items[i])
		}
		return append(dst, ']')
	case nObject:
		o := openObject(dst)
		for i, k := range n.keys {
			o.key(k)
			o.buf = appendNode(o.buf, &n.items[i])
		}
		return o.close()
	}
	// A wrapper read from JSON goes back out as the wrapper it was.
	out, _ := appendTyped(dst, n.typed, TargetKombu53)
	return out
}

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	numberType     = reflect.TypeFor[json.Number]()
)

func appendValue(dst []byte, v any, t Target, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nesting deeper than %d (a cycle?): %w", maxDepth, ErrUnencodable)
	}
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case string:
		return appendString(dst, x), nil
	case json.Number:
		if err := validNumber(string(x)); err != nil {
			return nil, err
		}
		return append(dst, x...), nil
	case json.RawMessage:
		n, err := parseNode(x, true)
		if err != nil {
			return nil, err
		}
		return appendNode(dst, &n), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case float64:
		return appendFloat(dst, x), nil
	case float32:
		return appendFloat(dst, float64(x)), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',', ' ')
			}
			var err error
			if dst, err = appendValue(dst, e, t, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		o := openObject(dst)
		for _, k := range slices.Sorted(maps.Keys(x)) {
			o.key(k)
			var err error
			if o.buf, err = appendValue(o.buf, x[k], t, depth+1); err != nil {
				return nil, err
			}
		}
		return o.close(), nil
	case time.Time, Date, TimeOfDay, uuid.UUID, Decimal, []byte:
		return appendTyped(dst, x, t)
	}
	return appendReflect(dst, reflect.ValueOf(v), t, depth)
}

func validNumber(s string) error {
	sc := scanner{data: []byte(s)}
	if c := sc.peek(); c != '-' && c != 'N' && c != 'I' && (c < '0' || c > '9') {
		return fmt.Errorf("json.Number %q: %w", s, ErrUnencodable)
	}
	if _, err := sc.number(); err != nil || sc.pos != len(s) {
		return fmt.Errorf("json.Number %q: %w", s, ErrUnencodable)
	}
	return nil
}

// appendReflect covers the remaining kinds Python has an equivalent for:
// other integer and slice types, maps with string keys, pointers.
func appendReflect(dst []byte, rv reflect.Value, t Target, depth int) ([]byte, error) {
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(dst, rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.AppendUint(dst, rv.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return appendFloat(dst, rv.Float()), nil
	case reflect.Bool:
		return strconv.AppendBool(dst, rv.Bool()), nil
	case reflect.String:
		if rv.Type() == numberType {
			return appendValue(dst, json.Number(rv.String()), t, depth)
		}
		return appendString(dst, rv.String()), nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(dst, "null"...), nil
		}
		return appendValue(dst, rv.Elem().Interface(), t, depth+1)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return append(dst, "null"...), nil
		}
		if rv.Type().ConvertibleTo(rawMessageType) && rv.Kind() == reflect.Slice {
			return appendValue(dst, rv.Convert(rawMessageType).Interface(), t, depth)
		}
		dst = append(dst, '[')
		for i := range rv.Len() {
			if i > 0 {
				dst = append(dst, ',', ' ')
			}
			var err error
			if dst, err = appendValue(dst, rv.Index(i).Interface(), t, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("map with %s keys: %w", rv.Type().Key(), ErrUnencodable)
		}
		if rv.IsNil() {
			return append(dst, "null"...), nil
		}
		keys := rv.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		o := openObject(dst)
		for _, k := range keys {
			o.key(k.String())
			var err error
			if o.buf, err = appendValue(o.buf, rv.MapIndex(k).Interface(), t, depth+1); err != nil {
				return nil, err
			}
		}
		return o.close(), nil
	}
	if !rv.IsValid() {
		return append(dst, "null"...), nil
	}
	return nil, fmt.Errorf("%s: %w", rv.Type(), ErrUnencodable)
}

// pyNumberRepr returns Python's str() of the number a JSON token decodes
// to: integers as digits, floats in repr form ("1e-07", "inf", "nan").
func pyNumberRepr(text string) string {
	if !strings.ContainsAny(text, ".eEIN") {
		if text == "-0" {
			return "0"
		}
		return text
	}
	f, _ := strconv.ParseFloat(text, 64) // out of range: ±Inf, as Python's float()
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return string(appendPyRepr(nil, f))
}
