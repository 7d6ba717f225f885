package celerybridge

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// resultMeta is one meta ready to be written: every JSON value already
// serialized in Python's layout.
type resultMeta struct {
	state     ResultState
	result    []byte // JSON
	traceback string // "" is null
	children  []byte // JSON; nil is null
	dateDone  string // "" is null
	groupID   string // written only when set, as Celery does
	parentID  string
	extended  *ExtendedMeta // written when not nil; Args and Kwargs in Python's layout
	taskID    string
}

// appendResultMeta writes m as Celery 5.2.6's KeyValueStoreBackend does:
// json.dumps of the meta dict built by _get_result_meta, whose member order
// is status, result, traceback, children, date_done, [group_id],
// [parent_id], [name, args, kwargs, worker, retries, queue], task_id.
func appendResultMeta(dst []byte, m *resultMeta) []byte {
	o := openObject(dst)
	o.str(metaStatus, string(m.state))
	o.raw(metaResult, m.result)
	optStr(&o, metaTraceback, m.traceback)
	if m.children == nil {
		o.null(metaChildren)
	} else {
		o.raw(metaChildren, m.children)
	}
	optStr(&o, metaDateDone, m.dateDone)
	if m.groupID != "" {
		o.str(metaGroupID, m.groupID)
	}
	if m.parentID != "" {
		o.str(metaParentID, m.parentID)
	}
	if x := m.extended; x != nil {
		optStr(&o, metaName, x.Name)
		optRawNull(&o, metaArgs, x.Args)
		optRawNull(&o, metaKwargs, x.Kwargs)
		optStr(&o, metaWorker, x.Worker)
		o.integer(metaRetries, x.Retries)
		optStr(&o, metaQueue, x.Queue)
	}
	o.str(metaTaskID, m.taskID)
	return o.close()
}

// optStr writes v, or null for "" (Python's None).
func optStr(o *object, k, v string) {
	if v == "" {
		o.null(k)
		return
	}
	o.str(k, v)
}

func optRawNull(o *object, k string, v []byte) {
	if len(v) == 0 {
		o.null(k)
		return
	}
	o.raw(k, v)
}

// appendException writes e as Celery's prepare_exception builds it for the
// JSON serializer: {"exc_type", "exc_message", "exc_module"}.
func appendException(dst []byte, e ExceptionInfo) ([]byte, error) {
	if e.Type == "" {
		return nil, fmt.Errorf("exception without exc_type: %w", ErrUnencodable)
	}
	msg := []byte("[]")
	if len(e.Message) > 0 {
		var err error
		if msg, err = EncodeValue(e.Message, TargetKombu53); err != nil {
			return nil, fmt.Errorf("exc_message: %w", err)
		}
	}
	o := openObject(dst)
	o.str("exc_type", e.Type)
	o.raw("exc_message", msg)
	optStr(&o, "exc_module", e.Module)
	return o.close(), nil
}

// layout re-lays raw JSON out in Python's style, numbers intact, or returns
// nil for nil.
func layout(raw json.RawMessage, what string) ([]byte, error) {
	if raw == nil {
		return nil, nil
	}
	out, err := EncodeValue(raw, TargetKombu53)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// formatDateDone writes t as Python's datetime.isoformat(): microseconds,
// and the fraction left out when they are zero. A nil loc writes a naive
// UTC time, as datetime.utcnow() gives in 5.2 and 5.3; otherwise t in loc
// with its offset, as 5.4 (UTC) and 5.5+ (the app timezone) write it.
func formatDateDone(t time.Time, loc *time.Location) string {
	t = t.Truncate(time.Microsecond)
	if loc == nil {
		t = t.UTC()
	} else {
		t = t.In(loc)
	}
	b := make([]byte, 0, 32)
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		s := strconv.Itoa(us)
		for range 6 - len(s) {
			b = append(b, '0')
		}
		b = append(b, s...)
	}
	if loc == nil {
		return string(b)
	}
	_, off := t.Zone()
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	b = append(b, sign)
	b = append2(b, off/3600)
	b = append(b, ':')
	b = append2(b, off/60%60)
	if off%60 != 0 {
		b = append(b, ':')
		b = append2(b, off%60)
	}
	return string(b)
}

func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }
