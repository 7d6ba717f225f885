package entityspine

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/spinecore/spine-go/core"
)

// ErrUnknownName: the name is not in the catalog. The error is an
// *UnknownNameError listing the names that are.
var ErrUnknownName = errors.New("entityspine: unknown work name")

// UnknownNameError is a name the catalog does not hold.
type UnknownNameError struct {
	Name  string
	Known []string // the catalog's names, sorted
}

func (e *UnknownNameError) Error() string {
	return fmt.Sprintf("entityspine: %q is not in the catalog (known: %s)", e.Name, strings.Join(e.Known, ", "))
}

// Unwrap returns ErrUnknownName.
func (e *UnknownNameError) Unwrap() error { return ErrUnknownName }

// entry is one unit of EntitySpine work spine-core's integration guide
// names. defaults is a JSON object, decoded afresh for every spec so specs
// never share a map and numbers are json.Number as from the wire.
type entry struct {
	kind     core.Kind
	defaults string
	check    func(params map[string]any) error
}

// catalog holds the guide's WorkSpec table. Defaults are those its
// handlers apply to a missing param (params.get(key, default)).
var catalog = map[string]entry{
	"refresh_sec":       {kind: core.KindTask, defaults: `{"force": false}`},
	"refresh_gleif":     {kind: core.KindTask},
	"refresh_all":       {kind: core.KindTask},
	"sync":              {kind: core.KindTask, defaults: `{"mode": "incremental"}`},
	"batch_resolve":     {kind: core.KindTask, check: needsList("queries")},
	"multi_source_load": {kind: core.KindPipeline, defaults: `{"sources": ["sec", "gleif"]}`},
	"daily_refresh":     {kind: core.KindWorkflow},
}

// needsList refuses params without key holding a list: the guide's handler
// reads params[key] unguarded, so such a run could only fail.
func needsList(key string) func(map[string]any) error {
	return func(params map[string]any) error {
		v, ok := params[key]
		if !ok {
			return &core.InvalidSpecError{Field: "params", Reason: fmt.Sprintf("needs %q (a list)", key)}
		}
		if k := reflect.ValueOf(v).Kind(); k != reflect.Slice && k != reflect.Array {
			return &core.InvalidSpecError{Field: "params", Reason: fmt.Sprintf("%q is %T, want a list", key, v)}
		}
		return nil
	}
}

// Names lists the catalog's names, sorted.
func Names() []string {
	return slices.Sorted(maps.Keys(catalog))
}

func lookup(name string) (entry, error) {
	e, ok := catalog[name]
	if !ok {
		return entry{}, &UnknownNameError{Name: name, Known: Names()}
	}
	return e, nil
}

// Spec returns the WorkSpec for the catalog's name: its kind, spine-core's
// defaults (core.NewTask, NewPipeline, NewWorkflow), and params laid over
// the entry's default params. An unknown name is an *UnknownNameError;
// params the work cannot run with, a *core.InvalidSpecError.
func Spec(name string, params map[string]any) (core.WorkSpec, error) {
	e, err := lookup(name)
	if err != nil {
		return core.WorkSpec{}, err
	}
	merged := map[string]any{}
	if e.defaults != "" {
		if merged, err = core.DecodeObject([]byte(e.defaults)); err != nil {
			return core.WorkSpec{}, fmt.Errorf("entityspine: catalog defaults of %s: %w", name, err)
		}
	}
	maps.Copy(merged, params)
	if e.check != nil {
		if err := e.check(merged); err != nil {
			return core.WorkSpec{}, fmt.Errorf("entityspine %s: %w", name, err)
		}
	}
	switch e.kind {
	case core.KindPipeline:
		return core.NewPipeline(name, merged), nil
	case core.KindWorkflow:
		return core.NewWorkflow(name, merged), nil
	}
	return core.NewTask(name, merged), nil
}

// Register adds h to reg under the catalog's kind for name ("task:refresh_sec",
// "pipeline:multi_source_load"), so it runs the specs Spec and BeatSpec make.
func Register(reg *core.Registry, name string, h core.Handler) error {
	e, err := lookup(name)
	if err != nil {
		return err
	}
	if err := reg.Register(e.kind, name, h); err != nil {
		return fmt.Errorf("entityspine: register %s: %w", name, err)
	}
	return nil
}
