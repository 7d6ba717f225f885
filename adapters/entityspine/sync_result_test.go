package entityspine_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/adapters/entityspine"
)

// SyncService stamps results with datetime.utcnow(): naive ISO-8601, UTC.
const pyNaiveTime = "2006-01-02T15:04:05.999999"

func TestDecodeSyncResultShipped(t *testing.T) {
	t.Parallel()
	raw := fixture(t, "sync_shipped.json")
	in := members(t, raw)
	r, err := entityspine.DecodeSyncResult(raw)
	if err != nil {
		t.Fatal(err)
	}
	started := mustTime(t, pyNaiveTime, in["started_at"].(string))
	completed := mustTime(t, pyNaiveTime, in["completed_at"].(string))
	if r.Shape != entityspine.ShapeShipped || !r.StartedAt.Equal(started) || r.CompletedAt == nil || !r.CompletedAt.Equal(completed) {
		t.Fatalf("decoded %+v", r)
	}
	for field, got := range map[string]int64{"entities_synced": r.EntitiesSynced, "relationships_synced": r.RelationshipsSynced} {
		if want, _ := in[field].(json.Number).Int64(); got != want {
			t.Errorf("%s = %d, want %d", field, got, want)
		}
	}
	if len(r.Errors) != 0 || r.Errors == nil || len(r.Warnings) != len(in["warnings"].([]any)) {
		t.Errorf("errors %q warnings %q", r.Errors, r.Warnings)
	}
	// to_dict's duration_seconds and success are kept as given.
	for _, k := range []string{"duration_seconds", "success"} {
		var want any = in[k]
		var got any
		if err := json.Unmarshal(r.Extra[k], &got); err != nil {
			t.Fatalf("Extra[%s]: %v", k, err)
		}
		if n, ok := want.(json.Number); ok {
			want = number(t, n)
		}
		if got != want {
			t.Errorf("Extra[%s] = %v, want %v", k, got, want)
		}
	}
	if d, ok := r.Duration(); !ok || d != completed.Sub(started) {
		t.Errorf("Duration = %v, %v; want %v", d, ok, completed.Sub(started))
	}
	if r.Err() != nil {
		t.Errorf("Err = %v", r.Err())
	}
}

func TestDecodeSyncResultDocumented(t *testing.T) {
	t.Parallel()
	raw := fixture(t, "sync_documented.json")
	in := members(t, raw)
	r, err := entityspine.DecodeSyncResult(raw)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := in["synced_count"].(json.Number).Int64()
	if r.Shape != entityspine.ShapeDocumented || r.SyncedCount != want {
		t.Errorf("decoded %+v", r)
	}
	if _, ok := r.Duration(); ok {
		t.Error("Duration known without duration_seconds")
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := members(t, out); !reflect.DeepEqual(got, in) {
		t.Errorf("result JSON %v, want the input %v", got, in)
	}
}

// What to_dict derives is added to a shipped result that lacks it.
func TestSyncResultDerivedValues(t *testing.T) {
	t.Parallel()
	shipped := withMembers(t, fixture(t, "sync_shipped.json"), map[string]any{"duration_seconds": nil, "success": nil})
	in := members(t, shipped)
	started := mustTime(t, pyNaiveTime, in["started_at"].(string))
	completed := mustTime(t, pyNaiveTime, in["completed_at"].(string))
	cases := []struct {
		name         string
		input        []byte
		wantDuration string
		wantSuccess  bool
	}{
		{"completed, no errors", shipped, jsonFloat(t, float64(completed.Sub(started).Microseconds())/1e6), true},
		{"with errors", withMembers(t, shipped, map[string]any{"errors": []string{"Neo4j sync error: refused"}}),
			jsonFloat(t, float64(completed.Sub(started).Microseconds())/1e6), false},
		// SyncResult.duration_seconds returns the int 0 while unfinished.
		{"never completed", withMembers(t, shipped, map[string]any{"completed_at": json.RawMessage(`null`)}), "0", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := entityspine.DecodeSyncResult(tc.input)
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			got := members(t, out)
			if got["duration_seconds"] != json.Number(tc.wantDuration) || got["success"] != tc.wantSuccess {
				t.Errorf("duration_seconds %v success %v; want %s %v", got["duration_seconds"], got["success"], tc.wantDuration, tc.wantSuccess)
			}
		})
	}
}

// jsonFloat is f as Python's json.dumps writes a float.
func jsonFloat(t *testing.T, f float64) string {
	t.Helper()
	s, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.ContainsAny(string(s), ".e") {
		return string(s) + ".0"
	}
	return string(s)
}

func TestDecodeSyncResultShapes(t *testing.T) {
	t.Parallel()
	shipped, documented := fixture(t, "sync_shipped.json"), fixture(t, "sync_documented.json")
	cases := []struct {
		name              string
		input             []byte
		wantShape         entityspine.Shape
		missingDocumented []string
		missingShipped    []string
		ambiguous         bool
	}{
		{"shipped", shipped, entityspine.ShapeShipped, nil, nil, false},
		{"documented", documented, entityspine.ShapeDocumented, nil, nil, false},
		{"shipped with completed_at null", withMembers(t, shipped, map[string]any{"completed_at": json.RawMessage(`null`)}), entityspine.ShapeShipped, nil, nil, false},
		{"shipped without warnings", withMembers(t, shipped, map[string]any{"warnings": nil}), 0,
			[]string{"synced_count"}, []string{"warnings"}, false},
		{"shipped without completed_at", withMembers(t, shipped, map[string]any{"completed_at": nil}), 0,
			[]string{"synced_count"}, []string{"completed_at"}, false},
		{"a RefreshResult", fixture(t, "refresh_shipped.json"), 0,
			[]string{"synced_count"}, []string{"entities_synced", "relationships_synced", "warnings"}, false},
		{"both shapes", withMembers(t, shipped, map[string]any{"synced_count": 11000}), 0, nil, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := entityspine.DecodeSyncResult(tc.input)
			if tc.missingDocumented == nil && tc.missingShipped == nil && !tc.ambiguous {
				if err != nil || r.Shape != tc.wantShape {
					t.Fatalf("shape %v, err %v; want %v", r.Shape, err, tc.wantShape)
				}
				return
			}
			var se *entityspine.ShapeError
			if !errors.As(err, &se) || !errors.Is(err, entityspine.ErrMalformedResult) {
				t.Fatalf("err = %v, want a *ShapeError", err)
			}
			if se.Type != "SyncResult" || !slices.Equal(se.MissingDocumented, tc.missingDocumented) || !slices.Equal(se.MissingShipped, tc.missingShipped) {
				t.Errorf("ShapeError %+v", se)
			}
			for _, f := range append(tc.missingDocumented, tc.missingShipped...) {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
		})
	}
}

func TestDecodeSyncResultBadMembers(t *testing.T) {
	t.Parallel()
	shipped, documented := fixture(t, "sync_shipped.json"), fixture(t, "sync_documented.json")
	cases := []struct {
		name  string
		input []byte
		field string
	}{
		{"not an object", []byte(`[]`), ""},
		{"started_at null", withMembers(t, shipped, map[string]any{"started_at": json.RawMessage(`null`)}), "started_at"},
		{"completed_at a number", withMembers(t, shipped, map[string]any{"completed_at": 1700000000}), "completed_at"},
		{"negative entities", withMembers(t, shipped, map[string]any{"entities_synced": -5}), "entities_synced"},
		{"warnings holding an object", withMembers(t, shipped, map[string]any{"warnings": []any{map[string]any{}}}), "warnings"},
		{"synced_count fractional", withMembers(t, documented, map[string]any{"synced_count": 2.5}), "synced_count"},
		// The documented shape's analogous members decide status and duration.
		{"error_count a string", withMembers(t, documented, map[string]any{"error_count": "2"}), "error_count"},
		{"duration_seconds a list", withMembers(t, documented, map[string]any{"duration_seconds": []int{1}}), "duration_seconds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := entityspine.DecodeSyncResult(tc.input)
			if !errors.Is(err, entityspine.ErrMalformedResult) || !strings.Contains(err.Error(), "SyncResult") || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("err = %v, want ErrMalformedResult naming SyncResult.%s", err, tc.field)
			}
		})
	}
}

func TestSyncResultDuration(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	done := at.Add(150500 * time.Millisecond)
	before := at.Add(-time.Millisecond)
	cases := []struct {
		name   string
		r      entityspine.SyncResult
		want   time.Duration
		wantOK bool
	}{
		{"shipped", entityspine.SyncResult{StartedAt: at, CompletedAt: &done}, done.Sub(at), true},
		{"shipped, never completed", entityspine.SyncResult{StartedAt: at}, 0, false},
		{"shipped, completed before started", entityspine.SyncResult{StartedAt: at, CompletedAt: &before}, 0, false},
		{"documented with duration_seconds", entityspine.SyncResult{Shape: entityspine.ShapeDocumented,
			Extra: map[string]json.RawMessage{"duration_seconds": json.RawMessage(`2.5`)}}, 2500 * time.Millisecond, true},
		{"documented without", entityspine.SyncResult{Shape: entityspine.ShapeDocumented}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got, ok := tc.r.Duration(); got != tc.want || ok != tc.wantOK {
				t.Errorf("Duration = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestSyncResultMarshalRefusesInvalid(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		r    entityspine.SyncResult
		want string
	}{
		{"synced_count on a shipped value", entityspine.SyncResult{StartedAt: at, SyncedCount: 1}, "SyncedCount"},
		{"shipped field on a documented value", entityspine.SyncResult{Shape: entityspine.ShapeDocumented, Warnings: []string{"w"}}, "shipped"},
		{"negative count", entityspine.SyncResult{StartedAt: at, RelationshipsSynced: -1}, "relationships_synced"},
		{"documented error_count not a count", entityspine.SyncResult{Shape: entityspine.ShapeDocumented,
			Extra: map[string]json.RawMessage{"error_count": json.RawMessage(`-3`)}}, "error_count"},
		{"extra repeating a field", entityspine.SyncResult{StartedAt: at,
			Extra: map[string]json.RawMessage{"warnings": json.RawMessage(`[]`)}}, "warnings"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := tc.r.MarshalJSON()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("MarshalJSON = %s, %v; want an error naming %s", out, err, tc.want)
			}
		})
	}
}
