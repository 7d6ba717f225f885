package entityspine_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/adapters/entityspine"
)

const pySpaceTime = "2006-01-02 15:04:05.999999-07:00" // str(datetime) with a zone

func TestDecodeRefreshResultShipped(t *testing.T) {
	t.Parallel()
	raw := fixture(t, "refresh_shipped.json")
	in := members(t, raw)
	r, err := entityspine.DecodeRefreshResult(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.Shape != entityspine.ShapeShipped {
		t.Errorf("shape %v, want shipped", r.Shape)
	}
	started := mustTime(t, pySpaceTime, in["started_at"].(string))
	completed := mustTime(t, pySpaceTime, in["completed_at"].(string))
	if !r.StartedAt.Equal(started) || !r.CompletedAt.Equal(completed) {
		t.Errorf("times %v .. %v, want %v .. %v", r.StartedAt, r.CompletedAt, started, completed)
	}
	for field, got := range map[string]int64{"records_fetched": r.RecordsFetched, "new_entities": r.NewEntities,
		"new_claims": r.NewClaims, "updated_claims": r.UpdatedClaims, "skipped_duplicates": r.SkippedDuplicates} {
		if want, _ := in[field].(json.Number).Int64(); got != want {
			t.Errorf("%s = %d, want %d", field, got, want)
		}
	}
	var wantErrors []string
	for _, e := range in["errors"].([]any) {
		wantErrors = append(wantErrors, e.(string))
	}
	if r.Source != in["source"] || !slices.Equal(r.Errors, wantErrors) {
		t.Errorf("source %q errors %q", r.Source, r.Errors)
	}
	if r.LoadedCount != 0 || r.UpdatedCount != 0 || r.ErrorCount != 0 || r.DurationSeconds != 0 {
		t.Errorf("documented fields set on a shipped result: %+v", r)
	}
	// Unknown members are kept; the derived ones are filled in.
	for _, k := range []string{"snapshot_id", "sources", "duration_seconds", "success_rate"} {
		if _, ok := r.Extra[k]; !ok {
			t.Errorf("Extra lacks %q: %v", k, r.Extra)
		}
	}
	if d, ok := r.Duration(); !ok || d != completed.Sub(started) {
		t.Errorf("Duration = %v, %v; want %v", d, ok, completed.Sub(started))
	}
}

func TestDecodeRefreshResultDocumented(t *testing.T) {
	t.Parallel()
	raw := fixture(t, "refresh_documented.json")
	in := members(t, raw)
	r, err := entityspine.DecodeRefreshResult(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.Shape != entityspine.ShapeDocumented || r.Source != in["source"] {
		t.Errorf("shape %v source %q", r.Shape, r.Source)
	}
	for field, got := range map[string]int64{"loaded_count": r.LoadedCount, "updated_count": r.UpdatedCount, "error_count": r.ErrorCount} {
		if want, _ := in[field].(json.Number).Int64(); got != want {
			t.Errorf("%s = %d, want %d", field, got, want)
		}
	}
	seconds := number(t, in["duration_seconds"])
	if r.DurationSeconds != seconds {
		t.Errorf("duration_seconds %v, want %v", r.DurationSeconds, seconds)
	}
	if d, ok := r.Duration(); !ok || d != time.Duration(math.Round(seconds*1e9)) {
		t.Errorf("Duration = %v, %v", d, ok)
	}
	if !r.StartedAt.IsZero() || r.RecordsFetched != 0 || r.Errors != nil || r.Extra != nil {
		t.Errorf("shipped fields or extras on a documented result: %+v", r)
	}
}

// The result JSON is the original object plus what Python derives, nothing
// dropped: every member of the input comes back with its value.
func TestRefreshResultJSONKeepsEveryMember(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"refresh_shipped.json", "refresh_documented.json"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw := fixture(t, name)
			r, err := entityspine.DecodeRefreshResult(raw)
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			in, got := members(t, raw), members(t, out)
			for k, want := range in {
				if strings.HasSuffix(k, "_at") { // rewritten in UTC ISO-8601: the same instant
					a, b := mustTime(t, pySpaceTime, want.(string)), mustTime(t, time.RFC3339Nano, got[k].(string))
					if !a.Equal(b) {
						t.Errorf("%s: %v, want %v", k, b, a)
					}
					continue
				}
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("%s: %#v, want %#v", k, got[k], want)
				}
			}
			if r.Shape == entityspine.ShapeDocumented && len(got) != len(in) {
				t.Errorf("documented result gained members: %s", out)
			}
		})
	}
}

func TestRefreshResultDerivedValues(t *testing.T) {
	t.Parallel()
	shipped := fixture(t, "refresh_shipped.json")
	in := members(t, shipped)
	started := mustTime(t, pySpaceTime, in["started_at"].(string))
	completed := mustTime(t, pySpaceTime, in["completed_at"].(string))
	fetched, _ := in["records_fetched"].(json.Number).Int64()
	errs := len(in["errors"].([]any))
	cases := []struct {
		name            string
		input           []byte
		wantDuration    float64
		wantSuccessRate float64
	}{
		{"absent: derived as Python's properties compute them", shipped,
			float64(completed.Sub(started).Microseconds()) / 1e6, 1 - float64(errs)/float64(fetched)},
		{"given: kept as given, even when they disagree",
			withMembers(t, shipped, map[string]any{"duration_seconds": json.Number("99.5"), "success_rate": json.Number("0.25")}),
			99.5, 0.25},
		{"nothing fetched: success_rate 1.0",
			withMembers(t, shipped, map[string]any{"records_fetched": 0, "errors": []string{"Fetch failed: timeout"}}),
			float64(completed.Sub(started).Microseconds()) / 1e6, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := entityspine.DecodeRefreshResult(tc.input)
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			got := members(t, out)
			if d := number(t, got["duration_seconds"]); d != tc.wantDuration {
				t.Errorf("duration_seconds %v, want %v", d, tc.wantDuration)
			}
			if s := number(t, got["success_rate"]); s != tc.wantSuccessRate {
				t.Errorf("success_rate %v, want %v", s, tc.wantSuccessRate)
			}
		})
	}
}

func TestRefreshResultNumbersExact(t *testing.T) {
	t.Parallel()
	base := fixture(t, "refresh_shipped.json")
	maxCount := json.Number("9223372036854775807")
	huge := json.RawMessage(`{"a":123456789012345678901234567890,"b":0.1000000000000000055511151231257827,"c":1E+2}`)
	r, err := entityspine.DecodeRefreshResult(withMembers(t, base, map[string]any{
		"records_fetched": maxCount, "skipped_duplicates": maxCount, "vendor_stats": huge}))
	if err != nil {
		t.Fatal(err)
	}
	if r.RecordsFetched != math.MaxInt64 || r.SkippedDuplicates != math.MaxInt64 {
		t.Errorf("counts %d %d", r.RecordsFetched, r.SkippedDuplicates)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"records_fetched":`+maxCount.String()) || !strings.Contains(string(out), `"vendor_stats":`+string(huge)) {
		t.Errorf("numbers changed: %s", out)
	}
	// One past int64 is refused, not rounded.
	_, err = entityspine.DecodeRefreshResult(withMembers(t, base, map[string]any{"records_fetched": json.Number("9223372036854775808")}))
	if !errors.Is(err, entityspine.ErrMalformedResult) || !strings.Contains(err.Error(), "records_fetched") {
		t.Errorf("err = %v", err)
	}
}

func TestDecodeRefreshResultShapes(t *testing.T) {
	t.Parallel()
	shipped, documented := fixture(t, "refresh_shipped.json"), fixture(t, "refresh_documented.json")
	both := withMembers(t, shipped, map[string]any{"loaded_count": 1, "updated_count": 0, "error_count": 0, "duration_seconds": 1.5})
	cases := []struct {
		name              string
		input             []byte
		wantShape         entityspine.Shape
		missingDocumented []string // nil and missingShipped nil: decodes
		missingShipped    []string
		ambiguous         bool
	}{
		{"shipped", shipped, entityspine.ShapeShipped, nil, nil, false},
		{"documented", documented, entityspine.ShapeDocumented, nil, nil, false},
		{"documented with a stray shipped member", withMembers(t, documented, map[string]any{"errors": []string{"x"}}),
			entityspine.ShapeDocumented, nil, nil, false},
		{"shipped without errors", withMembers(t, shipped, map[string]any{"errors": nil}), 0,
			[]string{"loaded_count", "updated_count", "error_count", "duration_seconds"}, []string{"errors"}, false},
		{"documented without error_count", withMembers(t, documented, map[string]any{"error_count": nil}), 0,
			[]string{"error_count"},
			[]string{"started_at", "completed_at", "records_fetched", "new_entities", "new_claims", "updated_claims", "skipped_duplicates", "errors"}, false},
		{"a SyncResult", fixture(t, "sync_shipped.json"), 0,
			[]string{"source", "loaded_count", "updated_count", "error_count"},
			[]string{"source", "records_fetched", "new_entities", "new_claims", "updated_claims", "skipped_duplicates"}, false},
		{"empty object", []byte(`{}`), 0,
			[]string{"source", "loaded_count", "updated_count", "error_count", "duration_seconds"},
			[]string{"source", "started_at", "completed_at", "records_fetched", "new_entities", "new_claims", "updated_claims", "skipped_duplicates", "errors"}, false},
		{"both shapes", both, 0, nil, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := entityspine.DecodeRefreshResult(tc.input)
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
			if se.Type != "RefreshResult" || !slices.Equal(se.MissingDocumented, tc.missingDocumented) || !slices.Equal(se.MissingShipped, tc.missingShipped) {
				t.Errorf("ShapeError %+v", se)
			}
			for _, f := range append(tc.missingDocumented, tc.missingShipped...) {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
			if tc.ambiguous && !strings.Contains(err.Error(), "both") {
				t.Errorf("error %q does not say it has both shapes", err)
			}
		})
	}
}

func TestDecodeRefreshResultBadMembers(t *testing.T) {
	t.Parallel()
	shipped, documented := fixture(t, "refresh_shipped.json"), fixture(t, "refresh_documented.json")
	cases := []struct {
		name  string
		input []byte
		field string // named by the error; "" for the whole value
	}{
		{"not JSON", []byte(`{"source": `), ""},
		{"trailing data", append(append([]byte{}, documented...), []byte(` {}`)...), ""},
		{"null", []byte(`null`), ""},
		{"a list", []byte(`[` + string(documented) + `]`), ""},
		{"a string", []byte(`"sec"`), ""},
		{"source null", withMembers(t, shipped, map[string]any{"source": json.RawMessage(`null`)}), "source"},
		{"source a number", withMembers(t, documented, map[string]any{"source": 7}), "source"},
		{"negative count", withMembers(t, shipped, map[string]any{"new_claims": -1}), "new_claims"},
		{"fractional count", withMembers(t, shipped, map[string]any{"records_fetched": 1.5}), "records_fetched"},
		{"count with exponent", withMembers(t, documented, map[string]any{"loaded_count": json.Number("1e3")}), "loaded_count"},
		{"count as a string", withMembers(t, documented, map[string]any{"error_count": "3"}), "error_count"},
		{"count null", withMembers(t, documented, map[string]any{"updated_count": json.RawMessage(`null`)}), "updated_count"},
		{"duration a string", withMembers(t, documented, map[string]any{"duration_seconds": "45.2"}), "duration_seconds"},
		{"duration beyond a float", withMembers(t, documented, map[string]any{"duration_seconds": json.Number("1e400")}), "duration_seconds"},
		{"time not ISO-8601", withMembers(t, shipped, map[string]any{"started_at": "yesterday"}), "started_at"},
		{"time null", withMembers(t, shipped, map[string]any{"completed_at": json.RawMessage(`null`)}), "completed_at"},
		{"time beyond year 9999", withMembers(t, shipped, map[string]any{"completed_at": "9999-12-31T23:59:59-01:00"}), "completed_at"},
		{"errors not a list", withMembers(t, shipped, map[string]any{"errors": "boom"}), "errors"},
		{"errors null", withMembers(t, shipped, map[string]any{"errors": json.RawMessage(`null`)}), "errors"},
		{"errors holding a null", withMembers(t, shipped, map[string]any{"errors": []any{"a", nil}}), "errors"},
		{"errors holding a number", withMembers(t, shipped, map[string]any{"errors": []any{1}}), "errors"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := entityspine.DecodeRefreshResult(tc.input)
			if !errors.Is(err, entityspine.ErrMalformedResult) {
				t.Fatalf("err = %v, want ErrMalformedResult", err)
			}
			if !strings.Contains(err.Error(), "RefreshResult") || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name RefreshResult.%s", err, tc.field)
			}
		})
	}
}

// A value built in Go gets the derived members, and decodes back to what was
// built with them in Extra.
func TestRefreshResultMarshalGoValue(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	built := entityspine.RefreshResult{Source: "gleif", StartedAt: started, CompletedAt: started.Add(90 * time.Second),
		RecordsFetched: 4, NewEntities: 1, NewClaims: 1, SkippedDuplicates: 2, Errors: []string{"Record error: LEI checksum"}}
	out, err := json.Marshal(built)
	if err != nil {
		t.Fatal(err)
	}
	got := members(t, out)
	if number(t, got["duration_seconds"]) != 90 || number(t, got["success_rate"]) != 1-1.0/4 {
		t.Errorf("derived members: %s", out)
	}
	back, err := entityspine.DecodeRefreshResult(out)
	if err != nil {
		t.Fatal(err)
	}
	extra := back.Extra
	back.Extra = nil
	if !reflect.DeepEqual(back, built) || len(extra) != 2 {
		t.Errorf("decoded %+v (extra %v), built %+v", back, extra, built)
	}
	// nil Errors is Python's empty list, never null.
	built.Errors = nil
	if out, _ := json.Marshal(built); !strings.Contains(string(out), `"errors":[]`) {
		t.Errorf("nil errors written as %s", out)
	}
}

func TestRefreshResultMarshalRefusesInvalid(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		r    entityspine.RefreshResult
		want string
	}{
		{"negative count", entityspine.RefreshResult{Source: "sec", StartedAt: at, CompletedAt: at, NewClaims: -2}, "new_claims"},
		{"documented field on a shipped value", entityspine.RefreshResult{Source: "sec", StartedAt: at, CompletedAt: at, ErrorCount: 1}, "documented"},
		{"shipped field on a documented value", entityspine.RefreshResult{Shape: entityspine.ShapeDocumented, Source: "sec", Errors: []string{"x"}}, "shipped"},
		{"duration not a number", entityspine.RefreshResult{Shape: entityspine.ShapeDocumented, DurationSeconds: math.Inf(1)}, "duration_seconds"},
		{"time beyond Python's range", entityspine.RefreshResult{Source: "sec", StartedAt: at, CompletedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "completed_at"},
		{"extra repeating a field", entityspine.RefreshResult{Source: "sec", StartedAt: at, CompletedAt: at,
			Extra: map[string]json.RawMessage{"records_fetched": json.RawMessage(`5`)}}, "records_fetched"},
		{"extra not JSON", entityspine.RefreshResult{Source: "sec", StartedAt: at, CompletedAt: at,
			Extra: map[string]json.RawMessage{"note": json.RawMessage(`{`)}}, "note"},
		{"unknown shape", entityspine.RefreshResult{Shape: 9}, "Shape(9)"},
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

func TestRefreshResultDuration(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		r      entityspine.RefreshResult
		want   time.Duration
		wantOK bool
	}{
		{"shipped", entityspine.RefreshResult{StartedAt: at, CompletedAt: at.Add(1500 * time.Millisecond)}, 1500 * time.Millisecond, true},
		{"shipped, instant", entityspine.RefreshResult{StartedAt: at, CompletedAt: at}, 0, true},
		{"shipped, completed before started", entityspine.RefreshResult{StartedAt: at, CompletedAt: at.Add(-time.Second)}, 0, false},
		{"shipped, longer than a Duration holds", entityspine.RefreshResult{StartedAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), CompletedAt: at}, 0, false},
		{"documented", entityspine.RefreshResult{Shape: entityspine.ShapeDocumented, DurationSeconds: 0.25}, 250 * time.Millisecond, true},
		{"documented, negative", entityspine.RefreshResult{Shape: entityspine.ShapeDocumented, DurationSeconds: -1}, 0, false},
		{"documented, beyond a Duration", entityspine.RefreshResult{Shape: entityspine.ShapeDocumented, DurationSeconds: 1e12}, 0, false},
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

// A list of results, as refresh_all returns, decodes with json.Unmarshal.
func TestRefreshResultUnmarshalList(t *testing.T) {
	t.Parallel()
	list := "[" + string(fixture(t, "refresh_shipped.json")) + "," + string(fixture(t, "refresh_documented.json")) + "]"
	var rs []entityspine.RefreshResult
	if err := json.Unmarshal([]byte(list), &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Shape != entityspine.ShapeShipped || rs[1].Shape != entityspine.ShapeDocumented {
		t.Errorf("decoded %+v", rs)
	}
	if err := json.Unmarshal([]byte(`[{"source": "sec"}]`), &rs); !errors.Is(err, entityspine.ErrMalformedResult) {
		t.Errorf("err = %v", err)
	}
}

// Derived values are written as Python writes the same float (repr), so the
// result JSON reads as if entity-spine had written it. The texts are what
// CPython 3 prints for timedelta(microseconds=us).total_seconds().
func TestDerivedDurationWrittenAsPython(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 15, 6, 0, 0, 125000000, time.UTC)
	for us, python := range map[int64]string{0: "0.0", 1: "1e-06", 45_200_000: "45.2", 123_456_789: "123.456789", 3_600_000_000: "3600.0"} {
		r := entityspine.RefreshResult{Source: "sec", StartedAt: at, CompletedAt: at.Add(time.Duration(us) * time.Microsecond)}
		out, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if want := `"duration_seconds":` + python + `,`; !strings.Contains(string(out), want) {
			t.Errorf("%d µs: %s lacks %s", us, out, want)
		}
	}
}

// An error quotes a bad member briefly: a member can be megabytes.
func TestDecodeErrorQuotesBriefly(t *testing.T) {
	t.Parallel()
	big := make([]int, 100_000)
	_, err := entityspine.DecodeRefreshResult(withMembers(t, fixture(t, "refresh_documented.json"), map[string]any{"source": big}))
	if !errors.Is(err, entityspine.ErrMalformedResult) || !strings.Contains(err.Error(), "source") || len(err.Error()) > 200 {
		t.Errorf("err (%d bytes) = %.300v", len(err.Error()), err)
	}
}
