package core

import (
	"encoding/json"
	"math"
	"testing"
)

// TestEncodesAsJSONAgreesWithMarshal: the walk says yes only where
// json.Marshal succeeds, and its fall-back reports json.Marshal's error.
func TestEncodesAsJSONAgreesWithMarshal(t *testing.T) {
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	cases := map[string]map[string]any{
		"nil":          nil,
		"plain":        {"s": "x", "b": true, "n": nil, "i": 3, "u": uint8(2), "f": 1.5, "num": json.Number("-0.5e+10")},
		"nested":       {"m": map[string]any{"l": []any{1, "a", []any{}}}},
		"empty number": {"n": json.Number("")},
		"bad number":   {"n": json.Number("01")},
		"NaN":          {"f": math.NaN()},
		"Inf in list":  {"l": []any{math.Inf(-1)}},
		"float32 NaN":  {"f": float32(math.NaN())},
		"channel":      {"c": make(chan int)},
		"func in map":  {"m": map[string]any{"f": func() {}}},
		"typed slice":  {"l": []string{"a"}},
		"struct":       {"s": struct{ C chan int }{}},
		"cycle":        cyclic,
		"bad utf-8":    {"s": "\xff"},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			_, want := json.Marshal(m)
			got := encodesAsJSON(m)
			if (got == nil) != (want == nil) {
				t.Fatalf("encodesAsJSON = %v, json.Marshal error = %v", got, want)
			}
		})
	}
}

func FuzzValidJSONNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.5", "1e5", "1E+5", "-1.0e-7", "01", "1.", ".5", "-", "1e", "+1", "0x10", "1_0", " 1", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// json.Marshal of a json.Number fails exactly when the text is not
		// a JSON number (the empty one is written as 0).
		_, err := json.Marshal(json.Number(s))
		if want := s == "" || err == nil; validJSONNumber(s) != want && s != "" {
			t.Fatalf("validJSONNumber(%q) = %v, json.Marshal error %v", s, !want, err)
		}
	})
}
