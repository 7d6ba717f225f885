package pgledger_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
)

// scanAll walks the table with ScanRuns pages of limit rows.
func scanAll(t *testing.T, l *pgledger.Ledger, limit int) []pgledger.ScannedRun {
	t.Helper()
	var all []pgledger.ScannedRun
	after := ""
	for {
		page, err := l.ScanRuns(context.Background(), after, limit)
		if err != nil {
			t.Fatalf("scan after %q: %v", after, err)
		}
		if len(page) > limit {
			t.Fatalf("scan after %q: %d rows, limit %d", after, len(page), limit)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].RunID
	}
}

// errColumns lists the columns a ScannedRun's Err blames, in order.
func errColumns(err error) []string {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var cols []string
		for _, e := range joined.Unwrap() {
			cols = append(cols, errColumns(e)...)
		}
		return cols
	}
	var ce *pgledger.ColumnError
	if !errors.As(err, &ce) {
		return []string{fmt.Sprintf("not a ColumnError: %v", err)}
	}
	return []string{ce.Column}
}

func TestScanRunsReadsEveryRowOnceAsGetRunDoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t)
	const n = 23
	runs := make([]core.RunRecord, n)
	for i := range runs {
		spec := core.NewPipeline(fmt.Sprintf("p%d", i), map[string]any{"i": i})
		spec.Lane = []string{"normal", "backfill", "realtime"}[i%3]
		runs[i] = core.RunRecord{RunID: core.NewRunID(), Spec: spec, Status: core.StatusPending, CreatedAt: time.Now(), Attempt: 1 + i%2,
			Tags: map[string]string{"n": fmt.Sprint(i)}}
	}
	if _, errs, err := l.CreateRuns(ctx, runs, nil); err != nil || errors.Join(errs...) != nil {
		t.Fatalf("create: %v %v", err, errs)
	}
	for _, limit := range []int{1, 7, n, 1000} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			t.Parallel()
			got := scanAll(t, l, limit)
			if len(got) != n {
				t.Fatalf("scanned %d rows, want %d", len(got), n)
			}
			// PostgreSQL orders uuids bytewise: for canonical text, string order.
			if !slices.IsSortedFunc(got, func(a, b pgledger.ScannedRun) int { return strings.Compare(a.RunID, b.RunID) }) {
				t.Error("rows not in execution_id order")
			}
			seen := map[string]bool{}
			for _, s := range got {
				if seen[s.RunID] {
					t.Errorf("%s scanned twice", s.RunID)
				}
				seen[s.RunID] = true
				want, err := l.GetRun(ctx, s.RunID)
				if err != nil || s.Err != nil {
					t.Fatalf("%s: get %v, scan %v", s.RunID, err, s.Err)
				}
				if !reflect.DeepEqual(s.Run, want) {
					t.Errorf("%s: scanned\n%+v\nGetRun\n%+v", s.RunID, s.Run, want)
				}
			}
		})
	}
}

// A row the ledger's reads would refuse is reported with the columns to
// blame, keeps the rest of what it holds, and does not stop the page.
func TestScanRunsReportsUndecodableRowsAndGoesOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := migratedPool(t)
	// Capture-Spine's schema forbids this NULL; a scan must still survive one.
	if _, err := pool.Exec(ctx, `ALTER TABLE executions ALTER COLUMN pipeline_name DROP NOT NULL`); err != nil {
		t.Fatal(err)
	}
	l, err := pgledger.New(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                   string
		pipeline               *string
		params, metadata, tags string
		wantColumns            []string
	}{
		{name: "valid", params: `{"a": [1]}`, metadata: `{}`, tags: `{"k": "v"}`},
		{name: "tags an array", params: `{}`, metadata: `{}`, tags: `[1]`, wantColumns: []string{"tags"}},
		{name: "tags not strings", params: `{}`, metadata: `{}`, tags: `{"k": 1}`, wantColumns: []string{"tags"}},
		{name: "params an array", params: `[1]`, metadata: `{}`, tags: `{}`, wantColumns: []string{"params"}},
		{name: "metadata a string", params: `{}`, metadata: `"x"`, tags: `{}`, wantColumns: []string{"metadata"}},
		{name: "params and tags", params: `7`, metadata: `{}`, tags: `"t"`, wantColumns: []string{"params", "tags"}},
		{name: "pipeline_name NULL", params: `{}`, metadata: `{}`, tags: `{}`, wantColumns: []string{"pipeline_name"}},
	}
	name := "ingest"
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = core.NewRunID()
		pipeline := &name
		if len(c.wantColumns) == 1 && c.wantColumns[0] == "pipeline_name" {
			pipeline = nil
		}
		if _, err := pool.Exec(ctx, `
			INSERT INTO executions (execution_id, pipeline_name, params, metadata, tags, status, lane)
			VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, 'running', 'backfill')`,
			ids[i], pipeline, c.params, c.metadata, c.tags); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	byID := map[string]pgledger.ScannedRun{}
	for _, s := range scanAll(t, l, 2) {
		byID[s.RunID] = s
	}
	if len(byID) != len(cases) {
		t.Fatalf("scanned %d rows, want %d", len(byID), len(cases))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := byID[ids[i]]
			if got := errColumns(s.Err); !slices.Equal(got, c.wantColumns) {
				t.Errorf("Err %v blames %q, want %q", s.Err, got, c.wantColumns)
			}
			// The rest of the row is still read.
			if s.Run.RunID != ids[i] || s.Run.Status != core.StatusRunning || s.Run.Spec.Lane != "backfill" ||
				s.Run.Spec.Priority != core.PriorityLow || s.Run.Attempt != 1 {
				t.Errorf("run %+v", s.Run)
			}
		})
	}
}

func TestScanRunsArguments(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	cases := []struct {
		name    string
		after   string
		limit   int
		wantErr bool
	}{
		{name: "empty table", after: "", limit: 10},
		{name: "after an id no row has", after: "0f8fad5b-d9cb-469f-a165-70867728950e", limit: 10},
		{name: "limit 0", after: "", limit: 0, wantErr: true},
		{name: "after not a run id", after: "nope", limit: 10, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			page, err := l.ScanRuns(context.Background(), c.after, c.limit)
			if (err != nil) != c.wantErr || len(page) != 0 {
				t.Errorf("ScanRuns(%q, %d) = %d rows, %v; want error %v", c.after, c.limit, len(page), err, c.wantErr)
			}
		})
	}
}
