package runsapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/spinecore/spine-go/core"
)

var forms = []specForm{formRun, formTask, formPipeline}

// FuzzDecodeSpec: whatever the body, decodeSpec either refuses it with a
// well-formed 422 or returns a spec the dispatcher accepts, and that spec
// written back as JSON decodes to itself.
func FuzzDecodeSpec(f *testing.F) {
	for _, seed := range []string{
		`{"kind":"task","name":"refresh_sec","params":{"cik":320193}}`,
		`{"kind":"step","name":"s","parent_run_id":"0f8fad5b-d9cb-469f-a165-70867728950e","correlation_id":null}`,
		`{"kind":"pipeline","name":"p","priority":"slow","lane":"backfill","trigger_source":"schedule","metadata":{"feed_id":"x"},"max_retries":0,"retry_delay_seconds":1e3}`,
		`{"name":"x","params":{"a":[1,2.5,"3",null,{"b":true}]},"idempotency_key":"k"}`,
		`{"kind":"task","name":"x","max_retries":-0.0,"retry_delay_seconds":2147483647}`,
		`{"kind":"task","name":"x","max_retries":2147483648}`,
		`{"kind":"task","name":"\ud800","params":{"\u00e9":"\xff"}}`,
		`{"kind":1,"name":null,"params":[],"colour":"red"}`,
		`{"kind":"task"`, `[]`, `null`, ``, `{"a":1} x`, `{"name":"x","name":"y","kind":"task"}`,
	} {
		for i := range forms {
			f.Add([]byte(seed), uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		form := forms[int(which)%len(forms)]
		spec, err := decodeSpec(body, form)
		if err != nil {
			var p *problem
			if !errors.As(err, &p) || p.Status != http.StatusUnprocessableEntity || p.Code != codeValidationFailed || p.Detail == "" ||
				len(p.Fields) == 0 || len(p.Fields) > maxFieldErrors+1 {
				t.Fatalf("refusal is not a well-formed 422: %#v", err)
			}
			for _, fe := range p.Fields {
				if fe.Code == "" || fe.Message == "" || fe.Field != nil && len(*fe.Field) > maxEcho+len("…") {
					t.Fatalf("field error %+v", fe)
				}
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("accepted a spec core refuses: %v", err)
		}
		if form.kind != "" && spec.Kind != form.kind {
			t.Fatalf("route %s made kind %s", form.route, spec.Kind)
		}
		if spec.Params == nil || spec.Metadata == nil {
			t.Fatalf("nil params or metadata: %+v", spec)
		}
		again, err := decodeSpec(encodeSpec(t, spec, form), form)
		if err != nil {
			t.Fatalf("the spec written back is refused: %v\n%s", err, encodeSpec(t, spec, form))
		}
		if !reflect.DeepEqual(again, spec) {
			t.Fatalf("round trip\n got %#v\nwant %#v", again, spec)
		}
	})
}

// encodeSpec writes spec as a body of form, as a client would.
func encodeSpec(t *testing.T, spec core.WorkSpec, form specForm) []byte {
	m := map[string]any{
		"kind": spec.Kind, "name": spec.Name, "params": spec.Params, "metadata": spec.Metadata,
		"idempotency_key": spec.IdempotencyKey, "correlation_id": spec.CorrelationID, "lane": spec.Lane,
		"parent_run_id": spec.ParentRunID, "trigger_source": spec.TriggerSource,
		"max_retries": spec.MaxRetries, "retry_delay_seconds": int64(spec.RetryDelay.Seconds()),
	}
	if spec.Priority != "" {
		m["priority"] = spec.Priority
	}
	for k := range m {
		if !form.fields[k] {
			delete(m, k)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("encode %+v: %v", spec, err)
	}
	return b
}

// FuzzParseFilter: whatever the query, in either view, the list filter is
// refused with a 400 or 422 problem or is one the ledgers can run as it is.
func FuzzParseFilter(f *testing.F) {
	for _, seed := range []string{
		"", "kind=task&status=failed,dead_lettered&limit=200", "status=bogus", "limit=0", "limit=-1",
		"name=a&pipeline=a", "name=a&pipeline=b", "created_after=2026-05-04T13:00:00+00:00&created_before=2026-05-04",
		"created_after=2026-05-04T13:00:00 00:00", "cursor=MTc3Nzg5NjAwMDAwOTAwMC85OGUyYjFiOC02ZWEwLTQxMjEtYThiZC1hZWZkYWFjMmM3Nzc",
		"cursor=%ZZ", "offset=0", "offset=7", "kind=task&kind=task", "status=,,&status=queued,queued",
	} {
		f.Add(seed, uint8(0))
	}
	f.Add("pipeline_name=x&lane=backfill", uint8(1))
	f.Add("feed_id=&status=queued", uint8(1))
	f.Fuzz(func(t *testing.T, rawQuery string, view uint8) {
		q, _ := url.ParseQuery(rawQuery) // as r.URL.Query() does
		filter, err := []listQuery{runsQuery, executionsQuery}[view%2].parseFilter(q)
		if err != nil {
			var p *problem
			if !errors.As(err, &p) || (p.Status != http.StatusBadRequest && p.Status != http.StatusUnprocessableEntity) || len(p.Fields) == 0 {
				t.Fatalf("refusal %#v", err)
			}
			return
		}
		if filter.Limit < 0 || filter.Limit > core.MaxListLimit {
			t.Fatalf("limit %d", filter.Limit)
		}
		if filter.Kind != "" && !filter.Kind.Valid() {
			t.Fatalf("kind %q", filter.Kind)
		}
		seen := map[core.RunStatus]bool{}
		for _, s := range filter.Statuses {
			if !s.Valid() || seen[s] {
				t.Fatalf("statuses %v", filter.Statuses)
			}
			seen[s] = true
		}
		if filter.Cursor != "" {
			if _, err := core.DecodeCursor(filter.Cursor); err != nil {
				t.Fatalf("cursor %q passed: %v", filter.Cursor, err)
			}
		}
	})
}
