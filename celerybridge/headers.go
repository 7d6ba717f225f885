package celerybridge

import (
	"encoding/json"
)

// Headers is the envelope's headers object. Under protocol 2 it carries the
// task's identity and scheduling; under protocol 1 it is normally empty and
// the same facts live in the body. Strings are empty for null; a decoded
// message re-encodes with null, "" and absent members exactly as received.
type Headers struct {
	Lang       string // "py" for Celery producers
	Task       string // registered task name; its presence makes a message protocol 2
	ID         string // task id; a 5.2.6 worker crashes (KeyError) without it
	Shadow     string // display name overriding Task in logs
	ETA        string // ISO 8601 as sent; see ParseTime and FormatTime
	Expires    string // ISO 8601 as sent
	Group      string
	GroupIndex *int // position in a group/chord header; nil is null
	Retries    int
	TimeLimit  TimeLimit
	RootID     string
	ParentID   string
	ArgsRepr   string // saferepr of args, for logs and events only
	KwargsRepr string
	Origin     string // "gen<pid>@<hostname>" of the producer
	// IgnoreResult asks the worker not to store a result.
	IgnoreResult bool
	// ReplacedTaskNesting, StampedHeaders and Stamps exist from Celery 5.3.
	ReplacedTaskNesting int
	StampedHeaders      json.RawMessage
	Stamps              json.RawMessage
	// Extra holds headers this package does not model (custom headers added
	// with apply_async(headers=...), newer versions' additions), in order.
	Extra []Member
	// Compression is kombu's compression header, "application/x-gzip" (zlib
	// data, despite the name) or "application/x-bz2"; empty for none.
	Compression string
	// Redelivered is set by kombu when it restores an unacked message.
	Redelivered bool

	wire wire
}

// TimeLimit is Celery's [hard, soft] pair of seconds. An empty Number is
// null (no limit); numbers keep their text, so 30 stays 30 and 12.5 stays 12.5.
type TimeLimit struct {
	Hard, Soft json.Number
}

const (
	hLang uint = iota
	hTask
	hID
	hShadow
	hETA
	hExpires
	hGroup
	hGroupIndex
	hRetries
	hTimeLimit
	hRootID
	hParentID
	hArgsRepr
	hKwargsRepr
	hOrigin
	hIgnoreResult
	hReplacedTaskNesting
	hCompression
	hRedelivered
	hObject // the headers member itself was present (and maybe null)
)

// HasTask reports whether the task header is present at all, which is how a
// worker tells protocol 2 (and hybrid) from protocol 1.
func (h *Headers) HasTask() bool { return h.wire.has(hTask) || h.Task != "" }

// hasID reports whether the id header is present.
func (h *Headers) hasID() bool { return h.wire.has(hID) || h.ID != "" }

func (s *scanner) decodeHeaders(h *Headers) error {
	*h = Headers{}
	if s.peek() == 'n' {
		// kombu reads a null headers member as {} ("headers or {}").
		h.wire.mark(hObject, true, false)
		return s.literal("null")
	}
	if s.peek() != '{' {
		return s.wrongType(ErrHeadersNotObject)
	}
	h.wire.mark(hObject, false, false)
	return s.members("", func(key []byte) (err error) {
		switch string(key) {
		case "lang":
			err = s.readString(&h.Lang, &h.wire, hLang)
		case "task":
			err = s.readString(&h.Task, &h.wire, hTask)
		case "id":
			err = s.readString(&h.ID, &h.wire, hID)
		case "shadow":
			err = s.readString(&h.Shadow, &h.wire, hShadow)
		case "eta":
			err = s.readString(&h.ETA, &h.wire, hETA)
		case "expires":
			err = s.readString(&h.Expires, &h.wire, hExpires)
		case "group":
			err = s.readString(&h.Group, &h.wire, hGroup)
		case "group_index":
			err = s.readIntPtr(&h.GroupIndex, &h.wire, hGroupIndex)
		case "retries":
			err = s.readInt(&h.Retries, &h.wire, hRetries)
		case "timelimit":
			err = s.readTimeLimit(&h.TimeLimit, &h.wire, hTimeLimit)
		case "root_id":
			err = s.readString(&h.RootID, &h.wire, hRootID)
		case "parent_id":
			err = s.readString(&h.ParentID, &h.wire, hParentID)
		case "argsrepr":
			err = s.readString(&h.ArgsRepr, &h.wire, hArgsRepr)
		case "kwargsrepr":
			err = s.readString(&h.KwargsRepr, &h.wire, hKwargsRepr)
		case "origin":
			err = s.readString(&h.Origin, &h.wire, hOrigin)
		case "ignore_result":
			err = s.readBool(&h.IgnoreResult, &h.wire, hIgnoreResult)
		case "replaced_task_nesting":
			err = s.readInt(&h.ReplacedTaskNesting, &h.wire, hReplacedTaskNesting)
		case "stamped_headers":
			err = s.readRaw(&h.StampedHeaders)
		case "stamps":
			err = s.readRaw(&h.Stamps)
		case "compression":
			err = s.readString(&h.Compression, &h.wire, hCompression)
		case "redelivered":
			err = s.readBool(&h.Redelivered, &h.wire, hRedelivered)
		default:
			err = s.extra(&h.Extra, key)
		}
		if err != nil {
			return fieldError(err, ErrBadHeader, "headers", key)
		}
		return nil
	})
}

// modelledHeader reports whether key is a field of Headers rather than an
// Extra member.
func modelledHeader(key string) bool {
	switch key {
	case "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
		"timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
		"replaced_task_nesting", "stamped_headers", "stamps", "compression", "redelivered":
		return true
	}
	return false
}

// readTimeLimit reads null or [hard, soft] with numbers or nulls: a worker
// unpacks exactly two values from it.
func (s *scanner) readTimeLimit(dst *TimeLimit, w *wire, f uint) error {
	*dst = TimeLimit{}
	switch s.peek() {
	case 'n':
		w.mark(f, true, false)
		return s.literal("null")
	case '[':
	default:
		return errNotType
	}
	if err := s.enter('['); err != nil {
		return err
	}
	var pair [2]json.Number
	n := 0
	for {
		ok, err := s.more(']', &n)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if n > 2 {
			return errNotType
		}
		switch c := s.peek(); {
		case c == 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		case c == '-' || c == 'N' || c == 'I' || ('0' <= c && c <= '9'):
			text, err := s.number()
			if err != nil {
				return err
			}
			pair[n-1] = json.Number(text)
		default:
			return errNotType
		}
	}
	if n != 2 {
		return errNotType
	}
	dst.Hard, dst.Soft = pair[0], pair[1]
	w.mark(f, false, false)
	return nil
}

func appendTimeLimit(dst []byte, t TimeLimit) []byte {
	dst = append(dst, '[')
	dst = appendNumberOrNull(dst, t.Hard)
	dst = append(dst, ',', ' ')
	dst = appendNumberOrNull(dst, t.Soft)
	return append(dst, ']')
}

func appendNumberOrNull(dst []byte, n json.Number) []byte {
	if n == "" {
		return append(dst, "null"...)
	}
	return append(dst, n...)
}

// appendHeaders writes the headers in the order Celery's as_task_v2 builds
// them; custom headers follow (apply_async merges them in), then kombu's
// compression header (added at publish) and redelivered (added at restore).
func appendHeaders(dst []byte, h *Headers) []byte {
	if h.isEmpty() && h.wire.has(hObject) && h.wire.isNull(hObject) {
		return append(dst, "null"...)
	}
	o := openObject(dst)
	o.optString("lang", h.Lang, h.wire, hLang)
	o.optString("task", h.Task, h.wire, hTask)
	o.optString("id", h.ID, h.wire, hID)
	o.optString("shadow", h.Shadow, h.wire, hShadow)
	o.optString("eta", h.ETA, h.wire, hETA)
	o.optString("expires", h.Expires, h.wire, hExpires)
	o.optString("group", h.Group, h.wire, hGroup)
	o.optIntPtr("group_index", h.GroupIndex, h.wire, hGroupIndex)
	o.optInt("retries", h.Retries, h.wire, hRetries)
	o.optTimeLimit("timelimit", h.TimeLimit, h.wire, hTimeLimit)
	o.optString("root_id", h.RootID, h.wire, hRootID)
	o.optString("parent_id", h.ParentID, h.wire, hParentID)
	o.optString("argsrepr", h.ArgsRepr, h.wire, hArgsRepr)
	o.optString("kwargsrepr", h.KwargsRepr, h.wire, hKwargsRepr)
	o.optString("origin", h.Origin, h.wire, hOrigin)
	o.optBool("ignore_result", h.IgnoreResult, h.wire, hIgnoreResult)
	o.optInt("replaced_task_nesting", h.ReplacedTaskNesting, h.wire, hReplacedTaskNesting)
	o.optRaw("stamped_headers", h.StampedHeaders)
	o.optRaw("stamps", h.Stamps)
	o.members(h.Extra)
	o.optString("compression", h.Compression, h.wire, hCompression)
	o.optBool("redelivered", h.Redelivered, h.wire, hRedelivered)
	return o.close()
}

// isEmpty reports whether no header would be written.
func (h *Headers) isEmpty() bool {
	return h.wire.present&^(1<<hObject) == 0 && h.Lang == "" && h.Task == "" && h.ID == "" &&
		h.Shadow == "" && h.ETA == "" && h.Expires == "" && h.Group == "" && h.GroupIndex == nil &&
		h.Retries == 0 && h.TimeLimit == (TimeLimit{}) && h.RootID == "" && h.ParentID == "" &&
		h.ArgsRepr == "" && h.KwargsRepr == "" && h.Origin == "" && !h.IgnoreResult &&
		h.ReplacedTaskNesting == 0 && h.StampedHeaders == nil && h.Stamps == nil &&
		len(h.Extra) == 0 && h.Compression == "" && !h.Redelivered
}
