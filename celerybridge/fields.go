package celerybridge

import (
	"encoding/json"
	"fmt"
)

// Member is an object member this package does not model, kept with its raw
// JSON value so that re-encoding a message loses nothing: Celery itself leaks
// options into properties on retries (replaced_task_nesting, origin), users add
// custom headers, and newer versions add keys older ones never heard of.
type Member struct {
	Key   string
	Value json.RawMessage
}

// wire records, for each known member of a decoded object, how it appeared:
// absent, null, or an empty string. Go zero values cannot tell these apart,
// and re-encoding must write back exactly what was read. A zero wire (a
// struct built by hand) writes only the fields that are set.
type wire struct {
	present, null, empty uint32
}

func (w *wire) mark(f uint, isNull, isEmpty bool) {
	w.present |= 1 << f
	if isNull {
		w.null |= 1 << f
	} else {
		w.null &^= 1 << f
	}
	if isEmpty {
		w.empty |= 1 << f
	} else {
		w.empty &^= 1 << f
	}
}

func (w wire) has(f uint) bool    { return w.present&(1<<f) != 0 }
func (w wire) isNull(f uint) bool { return w.null&(1<<f) != 0 }

// The write rules, shared by every struct with a wire: a set value is
// written; an unset (zero) value is written as it was read (null, "" or 0),
// or omitted if it was never on the wire.

func (o *object) optString(k, v string, w wire, f uint) {
	switch {
	case v != "":
		o.str(k, v)
	case !w.has(f):
	case w.empty&(1<<f) != 0:
		o.str(k, "")
	default:
		o.null(k)
	}
}

func (o *object) optInt(k string, v int, w wire, f uint) {
	switch {
	case v != 0:
		o.integer(k, v)
	case !w.has(f):
	case w.isNull(f):
		o.null(k)
	default:
		o.integer(k, 0)
	}
}

func (o *object) optBool(k string, v bool, w wire, f uint) {
	switch {
	case v:
		o.boolean(k, true)
	case !w.has(f):
	case w.isNull(f):
		o.null(k)
	default:
		o.boolean(k, false)
	}
}

func (o *object) optRaw(k string, v json.RawMessage) {
	if v != nil {
		o.raw(k, v)
	}
}

func (o *object) optIntPtr(k string, v *int, w wire, f uint) {
	switch {
	case v != nil:
		o.integer(k, *v)
	case w.has(f):
		o.null(k)
	}
}

// optTimeLimit writes a [hard, soft] pair: set, or read as a non-null value
// (even [null, null]), it is written; read as null, null; else omitted.
func (o *object) optTimeLimit(k string, v TimeLimit, w wire, f uint) {
	switch {
	case v != TimeLimit{} || (w.has(f) && !w.isNull(f)):
		o.key(k)
		o.buf = appendTimeLimit(o.buf, v)
	case w.has(f):
		o.null(k)
	}
}

// The read helpers: each reads one member value of the expected JSON type,
// records it in w, and returns errNotType for any other type so the caller
// can name the member in its error.

func (s *scanner) readString(dst *string, w *wire, f uint) error {
	if c := s.peek(); c != '"' && c != 'n' {
		return errNotType
	}
	v, isNull, err := s.str()
	if err != nil {
		return err
	}
	*dst = v
	w.mark(f, isNull, !isNull && v == "")
	return nil
}

func (s *scanner) readInt(dst *int, w *wire, f uint) error {
	v, isNull, err := s.integer()
	if err != nil {
		return err
	}
	*dst = v
	w.mark(f, isNull, false)
	return nil
}

func (s *scanner) readIntPtr(dst **int, w *wire, f uint) error {
	v, isNull, err := s.integer()
	if err != nil {
		return err
	}
	*dst = nil
	if !isNull {
		*dst = &v
	}
	w.mark(f, isNull, false)
	return nil
}

func (s *scanner) readBool(dst *bool, w *wire, f uint) error {
	v, isNull, err := s.boolean()
	if err != nil {
		return err
	}
	*dst = v
	w.mark(f, isNull, false)
	return nil
}

// readRaw keeps any value verbatim; a raw field has no wire bit because nil
// already means absent.
func (s *scanner) readRaw(dst *json.RawMessage) error {
	v, err := s.raw()
	*dst = v
	return err
}

func (s *scanner) extra(dst *[]Member, key []byte) error {
	v, err := s.raw()
	if err != nil {
		return err
	}
	*dst = append(*dst, Member{Key: string(key), Value: v})
	return nil
}

// fieldError names the member whose value had the wrong JSON type, wrapping
// kind (ErrBadHeader, ErrBadProperty, ...); malformed JSON passes through.
func fieldError(err error, kind error, where string, key []byte) error {
	if err == errNotType {
		return fmt.Errorf("%s.%s: %w", where, key, kind)
	}
	return err
}
