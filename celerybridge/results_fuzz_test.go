package celerybridge

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzDecodeTaskResult: no input panics, errors are the documented
// sentinels, and what decodes, written back the way a 5.2.6 worker writes,
// decodes to the same result.
func FuzzDecodeTaskResult(f *testing.F) {
	for _, seed := range []string{
		celery526Success, celery526Failure, celery526Revoked, celery526Started, celery526Lineage,
		celery54Success, celery55Success, celery56Stamped, kombu53Typed, celery3StringExc, customStateResult,
		`{"status": "RETRY", "result": {"exc_type": "E", "exc_message": [{"__type__": "bytes", "__value__": "YQ=="}], "exc_module": null}, "date_done": {"__type__": "datetime", "__value__": "2024-01-01T00:00:00"}}`,
		`{"status": "SUCCESS", "result": [NaN, -Infinity, 1e400, -0, 18446744073709551617], "retries": null, "name": null, "task_id": "\ud800"}`,
		`{"status": "FAILURE", "result": {"exc_type": "A.B", "exc_message": "m", "exc_type": 1}, "date_done": "2024-02-29T23:59:59.999999999-12:00"}`,
		`{"status": "", "status": "SUCCESS", "children": null, "x": {"y": [[]]}}`,
		`{"status": "SUCCESS"}`, `{}`, `[]`, `{"status": "SUCCESS", "date_done": "2024-13-01"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		data = exact(data)
		r, err := DecodeTaskResult(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedJSON) && !errors.Is(err, ErrMalformedResult) && !errors.Is(err, ErrBadDate) {
				t.Fatalf("error outside the documented set: %v", err)
			}
			return
		}
		if !bytes.Equal(r.Raw, data) {
			t.Fatal("Raw is not the input")
		}
		if r.Exception != nil && !r.State.IsException() {
			t.Fatalf("exception parsed for state %q", r.State)
		}
		for _, raw := range [][]byte{r.Result, r.Children} {
			if raw != nil {
				if err := validJSON(raw); err != nil {
					t.Fatalf("kept invalid JSON %q: %v", raw, err)
				}
			}
		}
		_, _ = r.Value()
		if r.Exception != nil {
			_, _ = r.Exception.Args()
			_ = r.Exception.String()
		}
		_ = r.Err()

		m, err := metaFromResult(r)
		if err != nil {
			if !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrTypedValue) {
				t.Fatalf("cannot write back what we read: %v", err)
			}
			return
		}
		out := appendResultMeta(nil, m)
		r2, err := DecodeTaskResult(out)
		if err != nil {
			t.Fatalf("our own write does not decode: %v\n%s", err, out)
		}
		sameDecoded(t, r, r2, out)
	})
}

// metaFromResult is the meta a worker would write for r.
func metaFromResult(r *TaskResult) (*resultMeta, error) {
	m := &resultMeta{state: r.State, traceback: r.Traceback, groupID: r.GroupID, parentID: r.ParentID, taskID: r.TaskID}
	var err error
	if m.result, err = layout(r.Result, "result"); err != nil {
		return nil, err
	}
	if m.result == nil {
		m.result = []byte("null")
	}
	if m.children, err = layout(r.Children, "children"); err != nil {
		return nil, err
	}
	if !r.DateDone.IsZero() {
		var loc *time.Location
		if r.DateDone.Location() != time.UTC {
			loc = r.DateDone.Location()
		}
		m.dateDone = formatDateDone(r.DateDone, loc)
	}
	if r.Extended != nil {
		x := *r.Extended
		if x.Args, err = layout(x.Args, "args"); err != nil {
			return nil, err
		}
		if x.Kwargs, err = layout(x.Kwargs, "kwargs"); err != nil {
			return nil, err
		}
		m.extended = &x
	}
	return m, nil
}

func sameDecoded(t *testing.T, a, b *TaskResult, out []byte) {
	t.Helper()
	sameJSON := func(x, y []byte) bool {
		if len(x) == 0 || len(y) == 0 {
			return len(x) == len(y) || (len(x) == 0 && string(y) == "null") || (len(y) == 0 && string(x) == "null")
		}
		nx, err1 := parseNode(x, true)
		ny, err2 := parseNode(y, true)
		return err1 == nil && err2 == nil && pyEqual(&nx, &ny)
	}
	bad := a.State != b.State || a.TaskID != b.TaskID || a.Traceback != b.Traceback || a.GroupID != b.GroupID ||
		a.ParentID != b.ParentID || !sameJSON(a.Result, b.Result) || !sameJSON(a.Children, b.Children) ||
		!a.DateDone.Truncate(time.Microsecond).Equal(b.DateDone) || (a.Extended == nil) != (b.Extended == nil) ||
		(a.Exception == nil) != (b.Exception == nil)
	if !bad && a.Extended != nil {
		x, y := a.Extended, b.Extended
		bad = x.Name != y.Name || x.Worker != y.Worker || x.Queue != y.Queue || x.Retries != y.Retries ||
			!sameJSON(x.Args, y.Args) || !sameJSON(x.Kwargs, y.Kwargs)
	}
	if !bad && a.Exception != nil {
		x, y := a.Exception, b.Exception
		bad = x.Type != y.Type || x.Module != y.Module || !sameJSON(x.Message, y.Message)
	}
	if bad {
		t.Fatalf("read back differently:\n %s\n %s\nwritten as %s", describeResult(a), describeResult(b), out)
	}
}
