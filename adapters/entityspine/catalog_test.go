package entityspine_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/adapters/entityspine"
	"github.com/spinecore/spine-go/core"
)

// The guide's WorkSpec table, kind by name, and the defaults its handlers
// apply (params.get(key, default)).
var guideTable = []struct {
	kind     core.Kind
	name     string
	defaults map[string]any
}{
	{core.KindTask, "refresh_sec", map[string]any{"force": false}},
	{core.KindTask, "refresh_gleif", map[string]any{}},
	{core.KindTask, "refresh_all", map[string]any{}},
	{core.KindTask, "sync", map[string]any{"mode": "incremental"}},
	{core.KindTask, "batch_resolve", map[string]any{}},
	{core.KindPipeline, "multi_source_load", map[string]any{"sources": []any{"sec", "gleif"}}},
	{core.KindWorkflow, "daily_refresh", map[string]any{}},
}

func TestSpecCatalog(t *testing.T) {
	t.Parallel()
	var names []string
	for _, row := range guideTable {
		names = append(names, row.name)
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			var params map[string]any
			want := map[string]any{}
			for k, v := range row.defaults {
				want[k] = v
			}
			if row.name == "batch_resolve" { // its handler reads params["queries"] unguarded
				params = map[string]any{"queries": []any{"AAPL", "MSFT"}}
				want["queries"] = params["queries"]
			}
			spec, err := entityspine.Spec(row.name, params)
			if err != nil {
				t.Fatal(err)
			}
			wantSpec := core.WorkSpec{Kind: row.kind, Name: row.name, Params: want,
				MaxRetries: core.DefaultMaxRetries, RetryDelay: core.DefaultRetryDelay}
			if !reflect.DeepEqual(spec, wantSpec) {
				t.Errorf("Spec = %+v\nwant  %+v", spec, wantSpec)
			}
			if err := spec.Validate(); err != nil {
				t.Errorf("spec does not validate: %v", err)
			}
			if spec.HandlerKey() != string(row.kind)+":"+row.name {
				t.Errorf("handler key %q", spec.HandlerKey())
			}
		})
	}
	slices.Sort(names)
	if got := entityspine.Names(); !slices.Equal(got, names) {
		t.Errorf("Names = %v, want %v", got, names)
	}
}

func TestSpecParamsOverDefaults(t *testing.T) {
	t.Parallel()
	params := map[string]any{"mode": "full", "targets": []any{"neo4j"}}
	spec, err := entityspine.Spec("sync", params)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(spec.Params, params) {
		t.Errorf("params %v, want %v", spec.Params, params)
	}
	// Specs share no map, neither with the caller nor with each other.
	params["mode"] = "changed"
	spec.Params["targets"] = "changed"
	again, _ := entityspine.Spec("sync", nil)
	if spec.Params["mode"] != "full" || again.Params["mode"] != "incremental" || again.Params["targets"] != nil {
		t.Errorf("maps shared: %v %v", spec.Params, again.Params)
	}
	a, _ := entityspine.Spec("multi_source_load", nil)
	a.Params["sources"].([]any)[0] = "changed"
	b, _ := entityspine.Spec("multi_source_load", nil)
	if b.Params["sources"].([]any)[0] != "sec" {
		t.Errorf("default list shared: %v", b.Params)
	}
}

func TestSpecRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		params map[string]any
		is     error
		says   []string
	}{
		{"refresh_factset", nil, entityspine.ErrUnknownName, append([]string{`"refresh_factset"`}, entityspine.Names()...)},
		{"entityspine.refresh_sec", nil, entityspine.ErrUnknownName, []string{"refresh_sec"}},
		{"", nil, entityspine.ErrUnknownName, []string{"daily_refresh"}},
		{"batch_resolve", nil, core.ErrInvalidSpec, []string{"batch_resolve", "queries"}},
		{"batch_resolve", map[string]any{"queries": "AAPL"}, core.ErrInvalidSpec, []string{"queries", "list"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := entityspine.Spec(tc.name, tc.params)
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %s", err, s)
				}
			}
			var unknown *entityspine.UnknownNameError
			if errors.As(err, &unknown) && (unknown.Name != tc.name || !slices.Equal(unknown.Known, entityspine.Names())) {
				t.Errorf("UnknownNameError %+v", unknown)
			}
		})
	}
}

// Register files a handler under the catalog's kind, so the specs Spec makes
// find it.
func TestRegisterRunsCatalogSpecs(t *testing.T) {
	t.Parallel()
	b := setup(t, core.DispatcherOptions{DisableAutoRetry: true})
	got := make(chan map[string]any, 1)
	h := func(_ context.Context, params map[string]any) (any, error) {
		got <- params
		return map[string]any{"loaded": 2}, nil
	}
	if err := entityspine.Register(b.registry, "multi_source_load", h); err != nil {
		t.Fatal(err)
	}
	if keys := b.registry.Keys(); !slices.Equal(keys, []string{"pipeline:multi_source_load"}) {
		t.Errorf("keys %v", keys)
	}
	spec, err := entityspine.Spec("multi_source_load", nil)
	if err != nil {
		t.Fatal(err)
	}
	run, err := b.d.Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b.ledger, run.RunID, core.StatusCompleted)
	// Params arrive as the ledger keeps them: JSON values.
	if params := <-got; !reflect.DeepEqual(params, map[string]any{"sources": []any{"sec", "gleif"}}) {
		t.Errorf("handler params %v", params)
	}

	if err := entityspine.Register(b.registry, "refresh_factset", h); !errors.Is(err, entityspine.ErrUnknownName) {
		t.Errorf("unknown name: %v", err)
	}
	if err := entityspine.Register(b.registry, "multi_source_load", h); err == nil || !strings.Contains(err.Error(), "multi_source_load") {
		t.Errorf("second registration: %v", err)
	}
}

// The catalog's defaults survive the trip to JSON and back unchanged.
func TestSpecDefaultsAreJSON(t *testing.T) {
	t.Parallel()
	for _, name := range entityspine.Names() {
		spec, err := entityspine.Spec(name, map[string]any{"queries": []any{}})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(spec.Params)
		if err != nil {
			t.Fatal(err)
		}
		back, err := core.DecodeObject(raw)
		if err != nil || !reflect.DeepEqual(back, spec.Params) {
			t.Errorf("%s: params %v came back as %v (%v)", name, spec.Params, back, err)
		}
	}
}
