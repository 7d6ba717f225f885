package phase3_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/phases/phase3"
)

// The mapping row is read back from the database, where any connection can
// have edited it: decoding never panics, accepts only what
// JobMapping.Validate accepts, and what it accepts survives a round trip.
func FuzzDecodeStoredMapping(f *testing.F) {
	m := capturespine.DefaultJobMapping()
	p, _ := json.Marshal(m.Pipelines)
	s, _ := json.Marshal(m.Statuses)
	f.Add(p, s, m.TriggerSource)
	f.Add([]byte(`{}`), []byte(`{}`), "api")
	f.Add([]byte(`{"a": ""}`), []byte(`{"x": "done"}`), "")
	f.Add([]byte(`null`), []byte(`[]`), "internal")
	f.Add([]byte(`{"a": "b"} {}`), []byte(`{"é": "failed", "é": "queued"}`), "cli")
	f.Fuzz(func(t *testing.T, pipelines, statuses []byte, trigger string) {
		got, err := phase3.DecodeStoredMapping(pipelines, statuses, trigger)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted an invalid mapping: %v", err)
		}
		p, err := json.Marshal(got.Pipelines)
		if err != nil {
			t.Fatal(err)
		}
		s, err := json.Marshal(got.Statuses)
		if err != nil {
			t.Fatal(err)
		}
		again, err := phase3.DecodeStoredMapping(p, s, got.TriggerSource)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip: %+v, %v; first %+v", again, err, got)
		}
	})
}
