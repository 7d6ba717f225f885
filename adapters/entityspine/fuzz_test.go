package entityspine_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/spinecore/spine-go/adapters/entityspine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

func addResultSeeds(f *testing.F, names ...string) {
	for _, name := range names {
		raw := fixture(f, name)
		f.Add(raw)
		f.Add(withMembers(f, raw, map[string]any{"errors": nil}))
	}
	f.Add([]byte(`{"source":"s","started_at":"2026-01-15T06:00:00Z","completed_at":"0001-01-01T00:00:00-00:01","records_fetched":0,` +
		`"new_entities":0,"new_claims":0,"updated_claims":0,"skipped_duplicates":0,"errors":["\ud800","<&>"],"x":{"a":[1e400]}}`))
	f.Add([]byte(`{"started_at":"2026-01-15 06:00:00","completed_at":null,"entities_synced":1,"relationships_synced":0,"errors":[],"warnings":[],"synced_count":1}`))
	f.Add([]byte(`{"synced_count":0,"error_count":3,"duration_seconds":-0.0}`))
	f.Add([]byte(`{"source":"","loaded_count":0,"updated_count":0,"error_count":0,"duration_seconds":5e-324,"source":"again"}`))
}

// Decoding never panics, refuses with ErrMalformedResult, and what it
// accepts encodes to JSON that decodes to the same value (and the same JSON).
func FuzzDecodeRefreshResult(f *testing.F) {
	addResultSeeds(f, "refresh_shipped.json", "refresh_documented.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := entityspine.DecodeRefreshResult(data)
		if err != nil {
			if !errors.Is(err, entityspine.ErrMalformedResult) {
				t.Fatalf("error %v does not wrap ErrMalformedResult", err)
			}
			return
		}
		_ = r.Err()
		_, _ = r.Duration()
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", r, err)
		}
		back, err := entityspine.DecodeRefreshResult(out)
		if err != nil {
			t.Fatalf("%s does not decode: %v", out, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip changed the value\n in: %+v\nout: %+v\njson: %s", r, back, out)
		}
		if again, _ := json.Marshal(back); !bytes.Equal(again, out) {
			t.Fatalf("encoding is not stable:\n%s\n%s", out, again)
		}
	})
}

func FuzzDecodeSyncResult(f *testing.F) {
	addResultSeeds(f, "sync_shipped.json", "sync_documented.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := entityspine.DecodeSyncResult(data)
		if err != nil {
			if !errors.Is(err, entityspine.ErrMalformedResult) {
				t.Fatalf("error %v does not wrap ErrMalformedResult", err)
			}
			return
		}
		_ = r.Err()
		_, _ = r.Duration()
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", r, err)
		}
		back, err := entityspine.DecodeSyncResult(out)
		if err != nil {
			t.Fatalf("%s does not decode: %v", out, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip changed the value\n in: %+v\nout: %+v\njson: %s", r, back, out)
		}
		if again, _ := json.Marshal(back); !bytes.Equal(again, out) {
			t.Fatalf("encoding is not stable:\n%s\n%s", out, again)
		}
	})
}

// BeatSpec never panics on any args and kwargs, refuses with one of its
// errors, and a spec it accepts, sent again as a producer would send it,
// comes back the same.
func FuzzBeatSpec(f *testing.F) {
	for _, seed := range []struct{ args, kwargs string }{
		{`["refresh_sec", {}]`, `{}`},
		{`["multi_source_load", {"sources": ["thomson", 1.50, 9007199254740993]}]`, `{}`},
		{`["sync"]`, `{"params": {"mode": "full", "since": {"__type__": "datetime", "__value__": "2026-01-15T06:00:00+00:00"}}}`},
		{`[]`, `{"task_name": "daily_refresh", "params": null}`},
		{`["batch_resolve", {"queries": ["AAPL"]}, 3]`, `{"task_name": "x"}`},
		{`["refresh_gleif", {"d": {"__type__": "decimal", "__value__": "1.10"}, "u": {"__type__": "uuid", "__value__": "6c7e2b1a-0d4f-4e8a-9b3c-2f1e0d9c8b7a"}}]`, `{}`},
		{`[{"__type__": "bytes", "__value__": "AA=="}, {}]`, `{}`},
		{`null`, `[]`},
	} {
		f.Add([]byte(seed.args), []byte(seed.kwargs))
	}
	const id = "fuzz-task"
	f.Fuzz(func(t *testing.T, args, kwargs []byte) {
		task := &celerybridge.Task{Protocol: celerybridge.ProtocolV2, ContentType: celerybridge.ContentTypeJSON,
			Name: entityspine.DispatchRefreshTask, ID: id, Args: args, Kwargs: kwargs}
		spec, err := entityspine.BeatSpec(task)
		if err != nil {
			if !errors.Is(err, entityspine.ErrDispatchArgs) && !errors.Is(err, entityspine.ErrUnknownName) && !errors.Is(err, core.ErrInvalidSpec) {
				t.Fatalf("error %v wraps none of BeatSpec's errors", err)
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("spec %+v does not validate: %v", spec, err)
		}
		m, err := celerybridge.NewTaskMessage(entityspine.DispatchRefreshTask, []any{spec.Name, spec.Params}, nil, celerybridge.TaskOptions{ID: id})
		if err != nil {
			t.Fatalf("spec %+v cannot be sent again: %v", spec, err)
		}
		wire, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := celerybridge.DecodeTask(wire)
		if err != nil {
			t.Fatal(err)
		}
		back, err := entityspine.BeatSpec(again)
		if err != nil {
			t.Fatalf("%s: %v", wire, err)
		}
		if !reflect.DeepEqual(back, spec) {
			t.Fatalf("round trip changed the spec\n in: %+v\nout: %+v", spec, back)
		}
	})
}
