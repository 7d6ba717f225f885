package pgledger

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/spinecore/spine-go/core"
)

// slowStored is what storedRecord must equal: the row read back through
// the JSON decoder, as a run read from the database is.
func slowStored(t *testing.T, run core.RunRecord) (core.RunRecord, row, bool) {
	t.Helper()
	r, err := toRow(run)
	if err != nil {
		return core.RunRecord{}, row{}, false // the ledger refuses it before storedRecord runs
	}
	want, err := fromRow(r)
	if err != nil {
		t.Fatalf("a row built by toRow does not read back: %v", err)
	}
	return want, r, true
}

func runWith(params, meta map[string]any, tags map[string]string) core.RunRecord {
	return core.RunRecord{
		RunID: "0b6f1d9e-1d7b-4c4e-9a55-6a8c1e1f2a3b", Status: core.StatusPending,
		CreatedAt: time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC),
		Spec:      core.WorkSpec{Kind: core.KindTask, Name: "ingest", Params: params, Metadata: meta},
		Tags:      tags,
	}
}

func TestStoredRecordEqualsReadBack(t *testing.T) {
	feed := "6f1c2a6e-5a1d-4f0e-8f8b-2b0c1d2e3f40"
	cases := map[string]core.RunRecord{
		"nil maps":             runWith(nil, nil, nil),
		"strings and numbers":  runWith(map[string]any{"a": "x", "n": json.Number("12.50"), "big": json.Number("123456789012345678901234567890")}, map[string]any{"k": "v"}, map[string]string{"t": "u"}),
		"nested":               runWith(map[string]any{"m": map[string]any{"l": []any{"a", true, nil, json.Number("1"), map[string]any{}}}}, nil, nil),
		"nil nested map/slice": runWith(map[string]any{"m": map[string]any(nil), "l": []any(nil)}, nil, nil),
		"feed id column":       runWith(nil, map[string]any{"feed_id": feed, "other": "x"}, nil),
		"non-canonical feed":   runWith(nil, map[string]any{"feed_id": "6F1C2A6E-5A1D-4F0E-8F8B-2B0C1D2E3F40"}, nil),
		// The values below change in a JSON round trip: the slow path.
		"float64":             runWith(map[string]any{"f": 1.5, "i": 3}, nil, nil),
		"int in a list":       runWith(map[string]any{"l": []any{1}}, nil, nil),
		"bad utf-8 value":     runWith(map[string]any{"s": "a\xffb"}, nil, nil),
		"bad utf-8 key":       runWith(map[string]any{"a\xff": "b"}, nil, nil),
		"bad utf-8 tag":       runWith(nil, nil, map[string]string{"t": "\xc3"}),
		"bad utf-8 meta":      runWith(nil, map[string]any{"m": []any{"\xed\xa0\x80"}}, nil),
		"typed slice":         runWith(map[string]any{"l": []string{"a"}}, nil, nil),
		"typed map":           runWith(map[string]any{"m": map[string]string{"a": "b"}}, nil, nil),
		"empty json.Number":   runWith(map[string]any{"n": json.Number("")}, nil, nil),
		"html characters":     runWith(map[string]any{"h": "<a href='x'>&</a>\u2028"}, nil, nil),
		"struct value":        runWith(map[string]any{"s": struct{ A int }{1}}, nil, nil),
		"raw message":         runWith(map[string]any{"r": json.RawMessage(`{"x": 1}`)}, nil, nil),
		"pointer to a string": runWith(map[string]any{"p": new(string)}, nil, nil),
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			want, r, ok := slowStored(t, run)
			if !ok {
				t.Fatalf("toRow refused the case")
			}
			got := storedRecord(run, r)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("stored record differs from the read back one\n got: %#v\nwant: %#v", got, want)
			}
		})
	}
}

// TestStoredRecordIsACopy: a caller changing its spec after submitting
// must not change the record the ledger returned.
func TestStoredRecordIsACopy(t *testing.T) {
	inner := map[string]any{"x": "1"}
	list := []any{"a"}
	run := runWith(map[string]any{"inner": inner, "list": list}, map[string]any{"m": "v"}, map[string]string{"t": "u"})
	_, r, _ := slowStored(t, run)
	got := storedRecord(run, r)
	inner["x"] = "changed"
	list[0] = "changed"
	run.Spec.Metadata["m"] = "changed"
	run.Tags["t"] = "changed"
	if got.Spec.Params["inner"].(map[string]any)["x"] != "1" || got.Spec.Params["list"].([]any)[0] != "a" ||
		got.Spec.Metadata["m"] != "v" || got.Tags["t"] != "u" {
		t.Fatalf("the stored record shares the caller's maps: %#v", got)
	}
}

// FuzzStoredRecord checks the copy against the round trip for any JSON
// params (decoded as the API decodes them, then strings damaged where the
// fuzzer says), so every value a run can carry in takes either path to the
// same record.
func FuzzStoredRecord(f *testing.F) {
	f.Add([]byte(`{"a": "x", "n": 1.50, "l": [1, "b", null, true, {"c": {}}]}`), uint8(0))
	f.Add([]byte(`{"feed_id": "6f1c2a6e-5a1d-4f0e-8f8b-2b0c1d2e3f40"}`), uint8(3))
	f.Add([]byte(`{"\u00e9": "\u2028<>&", "x": []}`), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, damage uint8) {
		params, err := core.DecodeObject(data)
		if err != nil {
			return
		}
		if damage%4 == 1 {
			params["bad"] = "a\xffb" // invalid UTF-8 beside valid values
		}
		if damage%4 == 2 {
			params["f"] = float64(damage) / 3
		}
		meta := map[string]any{}
		if damage%4 == 3 {
			meta = params
		}
		run := runWith(params, meta, map[string]string{"k": string(data[:min(len(data), 8)])})
		want, r, ok := slowStored(t, run)
		if !ok {
			return
		}
		if got := storedRecord(run, r); !reflect.DeepEqual(got, want) {
			t.Fatalf("stored record differs from the read back one\n got: %#v\nwant: %#v", got, want)
		}
	})
}
