package capturespine_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

func FuzzExecutionJSON(f *testing.F) {
	e := capturespine.NewExecution("p", map[string]any{"a": 1})
	seed, _ := json.Marshal(e)
	f.Add(seed)
	f.Add([]byte(`{"execution_id": "6f1c2a8e-0d4b-4f7e-9a51-3c2d1e0f9a8b", "pipeline_name": "p", "status": "failed", "error": "", "created_at": "2025-06-01T12:00:00"}`))
	f.Add([]byte(`{"execution_id": null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e capturespine.Execution
		if err := json.Unmarshal(data, &e); err != nil {
			return
		}
		// Anything accepted is a valid row, converts to a RunRecord and back,
		// and re-encodes to JSON that decodes to the same JSON.
		run, err := capturespine.ToRunRecord(e)
		if err != nil {
			t.Fatalf("decoded %s but ToRunRecord: %v", data, err)
		}
		if _, err := capturespine.FromRunRecord(run); err != nil {
			t.Fatalf("decoded %s but FromRunRecord: %v", data, err)
		}
		once, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var again capturespine.Execution
		if err := json.Unmarshal(once, &again); err != nil {
			t.Fatalf("re-decoding %s: %v", once, err)
		}
		twice, _ := json.Marshal(again)
		if !bytes.Equal(once, twice) {
			t.Fatalf("unstable:\n%s\n%s", once, twice)
		}
	})
}

func FuzzLoadJobMapping(f *testing.F) {
	f.Add([]byte(`{"statuses": {"zombie": "failed"}, "pipelines": {"reindex": "search"}, "trigger_source": "cli"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := capturespine.LoadJobMapping(bytes.NewReader(data))
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("loaded an invalid mapping: %v", err)
		}
		if _, err := m.SQL("j", 1); err != nil {
			t.Fatalf("loaded mapping has no SQL: %v", err)
		}
	})
}

func FuzzLoadCatalog(f *testing.F) {
	f.Add([]byte(`{"tasks": [{"task": "t", "pipeline": "p", "args": ["a"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := capturespine.LoadCatalog(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, task := range c.Tasks() {
			if _, err := c.WorkSpec(task.Task, []any{1, 2, 3}, nil); err != nil {
				t.Fatalf("catalog entry %+v cannot map a call: %v", task, err)
			}
		}
	})
}
