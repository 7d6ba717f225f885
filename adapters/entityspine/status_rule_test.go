package entityspine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/adapters/entityspine"
	"github.com/spinecore/spine-go/core"
)

func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("Record error: row %d", i+1)
	}
	return out
}

// The status rule at its boundaries: no errors completes; errors fail the run
// only when nothing succeeded.
func TestStatusRule(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 15, 6, 0, 0, 0, time.UTC)
	shippedRefresh := func(fetched int64, errs int) entityspine.RefreshResult {
		return entityspine.RefreshResult{Source: "sec", StartedAt: at, CompletedAt: at, RecordsFetched: fetched, Errors: texts(errs)}
	}
	documentedRefresh := func(loaded, updated, errs int64) entityspine.RefreshResult {
		return entityspine.RefreshResult{Shape: entityspine.ShapeDocumented, Source: "sec", LoadedCount: loaded, UpdatedCount: updated, ErrorCount: errs}
	}
	shippedSync := func(entities, relationships int64, errs int) entityspine.SyncResult {
		return entityspine.SyncResult{StartedAt: at, EntitiesSynced: entities, RelationshipsSynced: relationships, Errors: texts(errs)}
	}
	documentedSync := func(synced int64, errorCount string) entityspine.SyncResult {
		r := entityspine.SyncResult{Shape: entityspine.ShapeDocumented, SyncedCount: synced}
		if errorCount != "" {
			r.Extra = map[string]json.RawMessage{"error_count": json.RawMessage(errorCount)}
		}
		return r
	}
	cases := []struct {
		name     string
		result   interface{ Err() error }
		fails    bool
		texts    int   // error texts the failure carries
		count    int64 // error count it reports
		wantType string
	}{
		{"shipped refresh: nothing fetched, no errors", shippedRefresh(0, 0), false, 0, 0, ""},
		{"shipped refresh: fetch failed", shippedRefresh(0, 1), true, 1, 1, "RefreshFailed"},
		{"shipped refresh: every record failed", shippedRefresh(3, 3), true, 3, 3, "RefreshFailed"},
		{"shipped refresh: more errors than records", shippedRefresh(2, 3), true, 3, 3, "RefreshFailed"},
		{"shipped refresh: one record succeeded", shippedRefresh(4, 3), false, 0, 0, ""},
		{"shipped refresh: clean", shippedRefresh(10, 0), false, 0, 0, ""},
		{"documented refresh: nothing, no errors", documentedRefresh(0, 0, 0), false, 0, 0, ""},
		{"documented refresh: errors, nothing loaded", documentedRefresh(0, 0, 1), true, 0, 1, "RefreshFailed"},
		{"documented refresh: errors, one loaded", documentedRefresh(1, 0, 5), false, 0, 0, ""},
		{"documented refresh: errors, one updated", documentedRefresh(0, 1, 5), false, 0, 0, ""},
		{"shipped sync: nothing, no errors", shippedSync(0, 0, 0), false, 0, 0, ""},
		{"shipped sync: errors, nothing synced", shippedSync(0, 0, 2), true, 2, 2, "SyncFailed"},
		{"shipped sync: errors, one entity", shippedSync(1, 0, 2), false, 0, 0, ""},
		{"shipped sync: errors, one relationship", shippedSync(0, 1, 2), false, 0, 0, ""},
		{"documented sync: no error_count", documentedSync(0, ""), false, 0, 0, ""},
		{"documented sync: error_count 0", documentedSync(0, "0"), false, 0, 0, ""},
		{"documented sync: errors, nothing synced", documentedSync(0, "1"), true, 0, 1, "SyncFailed"},
		{"documented sync: errors, one synced", documentedSync(1, "4"), false, 0, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.result.Err()
			if !tc.fails {
				if err != nil {
					t.Fatalf("Err = %v, want the run completed", err)
				}
				return
			}
			var re *entityspine.ResultError
			if !errors.As(err, &re) || !errors.Is(err, entityspine.ErrResultFailed) {
				t.Fatalf("Err = %v, want a *ResultError", err)
			}
			if len(re.Errors) != tc.texts || re.Count != tc.count || core.ErrorType(err) != tc.wantType {
				t.Errorf("ResultError %+v, error_type %q", re, core.ErrorType(err))
			}
			for _, text := range re.Errors {
				if !strings.Contains(err.Error(), text) {
					t.Errorf("error %q lacks %q", err, text)
				}
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tc.count)) {
				t.Errorf("error %q does not say how many errors", err)
			}
		})
	}
}

// A failed run's error repeats the first texts and counts the rest.
func TestResultErrorCapsTexts(t *testing.T) {
	t.Parallel()
	all := texts(25)
	err := (&entityspine.ResultError{Type: "RefreshResult", Source: "sec", Errors: all, Count: int64(len(all))}).Error()
	for i, text := range all {
		if shown := strings.Contains(err, text+";") || strings.HasSuffix(err, text); shown != (i < 10) {
			t.Errorf("text %d shown: %v", i, shown)
		}
	}
	if !strings.Contains(err, fmt.Sprintf("and %d more", len(all)-10)) || !strings.Contains(err, `"sec"`) {
		t.Errorf("error %q", err)
	}
}
