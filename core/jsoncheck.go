package core

import (
	"encoding/json"
	"math"
)

// encodesAsJSON says whether json.Marshal(m) succeeds. The values a spec
// normally carries (what JSON decoding makes, plus Go's numbers) are
// checked by walking them, which costs a small part of encoding them; a
// value of any other type, or nesting deep enough to be a cycle, is left to
// json.Marshal itself, whose error is the one to report.
func encodesAsJSON(m map[string]any) error {
	if plainJSON(m, 0) {
		return nil
	}
	_, err := json.Marshal(m)
	return err
}

// plainJSON is true when v is made only of values json.Marshal always
// encodes; false means "not sure", never "fails".
func plainJSON(v any, depth int) bool {
	if depth > 64 {
		return false // deep enough to be a cycle: let json.Marshal decide
	}
	switch v := v.(type) {
	case nil, bool, string, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	case float64:
		return !math.IsNaN(v) && !math.IsInf(v, 0)
	case float32:
		return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0)
	case json.Number:
		return v == "" || validJSONNumber(string(v))
	case map[string]any:
		for _, e := range v {
			if !plainJSON(e, depth+1) {
				return false
			}
		}
		return true
	case []any:
		for _, e := range v {
			if !plainJSON(e, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// validJSONNumber is JSON's number grammar:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func validJSONNumber(s string) bool {
	i := 0
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		digits()
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
