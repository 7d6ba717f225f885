package celerybridge

import (
	"encoding/json"
	"fmt"
)

// TaskMessageV1 is a protocol 1 message (task_protocol=1): empty headers and
// a body object carrying everything. The same type holds a hybrid message,
// whose headers name the task while the body is a protocol 1 object; a
// worker merges the two, headers winning (see Task).
type TaskMessageV1 struct {
	Headers         Headers
	Properties      Properties
	ContentEncoding string
	Extra           []Member
	Body            BodyV1

	bw   bodyWire
	wire wire
}

// BodyV1 is the protocol 1 body object, in the order Celery's as_task_v1
// writes it. Args and Kwargs are nil when absent (a worker then uses () and
// {}); strings are empty for null, and a decoded body re-encodes as received.
type BodyV1 struct {
	Task       string
	ID         string
	Args       json.RawMessage
	Kwargs     json.RawMessage
	Group      string
	GroupIndex *int
	Retries    int
	ETA        string
	Expires    string
	// UTC says a naive eta is UTC; absent means true to a worker.
	UTC       bool
	Callbacks json.RawMessage
	Errbacks  json.RawMessage
	TimeLimit TimeLimit
	Taskset   string // the group id again, under its old name
	Chord     json.RawMessage
	Extra     []Member

	wire wire
}

const (
	bTask uint = iota
	bID
	bGroup
	bGroupIndex
	bRetries
	bETA
	bExpires
	bUTC
	bTimeLimit
	bTaskset
)

// Hybrid reports whether the headers name the task, which makes a worker
// read this protocol 1 body as a hybrid message.
func (m *TaskMessageV1) Hybrid() bool { return m.Headers.HasTask() }

// DecodeTaskMessageV1 decodes a protocol 1 or hybrid message. A protocol 2
// message is ErrWrongProtocol, a pickle, yaml or msgpack body ErrOpaqueBody.
func DecodeTaskMessageV1(data []byte) (*TaskMessageV1, error) {
	var e Envelope
	if err := decodeEnvelope(data, &e); err != nil {
		return nil, err
	}
	return e.TaskMessageV1()
}

// TaskMessageV1 reads the envelope as a protocol 1 or hybrid message.
func (e *Envelope) TaskMessageV1() (*TaskMessageV1, error) {
	if e.Opaque() {
		return nil, fmt.Errorf("%s body: %w", e.ContentType, ErrOpaqueBody)
	}
	m := &TaskMessageV1{
		Headers:         e.Headers,
		Properties:      e.Properties,
		ContentEncoding: e.ContentEncoding,
		Extra:           e.Extra,
		bw:              e.bw,
		wire:            e.wire,
	}
	s := scanner{data: e.body}
	if c := s.peek(); c != '{' {
		if err := validJSON(e.body); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		if c == '[' && e.Headers.HasTask() {
			return nil, fmt.Errorf("body is a protocol 2 list: %w", ErrWrongProtocol)
		}
		return nil, ErrBodyNotObject
	}
	if err := s.decodeBodyV1(&m.Body); err != nil {
		return nil, err
	}
	if err := s.end(); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	if m.Hybrid() && m.Body.Args == nil {
		// Only a body with args is hybrid; with a task header, any other
		// object is unpacked as [args, kwargs, embed] and kills the worker.
		return nil, fmt.Errorf("object body without args: %w", ErrBodyNotTriple)
	}
	if err := m.checkBody(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *TaskMessageV1) checkBody() error {
	b := &m.Body
	if b.Args != nil && b.Args[0] != '[' {
		return ErrArgsNotList
	}
	if b.Kwargs != nil && b.Kwargs[0] != '{' {
		return ErrKwargsNotObject
	}
	task, id, hasID := b.Task, b.ID, b.wire.has(bID) || b.ID != ""
	if m.Hybrid() {
		task = m.Headers.Task
		if m.Headers.hasID() {
			id, hasID = m.Headers.ID, true
		}
	}
	return checkIdentity(task, id, hasID)
}

func (s *scanner) decodeBodyV1(b *BodyV1) error {
	*b = BodyV1{}
	return s.members("body", func(key []byte) (err error) {
		switch string(key) {
		case "task":
			err = s.readString(&b.Task, &b.wire, bTask)
		case "id":
			err = s.readString(&b.ID, &b.wire, bID)
		case "args":
			b.Args, err = s.skip()
		case "kwargs":
			b.Kwargs, err = s.skip()
		case "group":
			err = s.readString(&b.Group, &b.wire, bGroup)
		case "group_index":
			err = s.readIntPtr(&b.GroupIndex, &b.wire, bGroupIndex)
		case "retries":
			err = s.readInt(&b.Retries, &b.wire, bRetries)
		case "eta":
			err = s.readString(&b.ETA, &b.wire, bETA)
		case "expires":
			err = s.readString(&b.Expires, &b.wire, bExpires)
		case "utc":
			err = s.readBool(&b.UTC, &b.wire, bUTC)
		case "callbacks":
			b.Callbacks, err = s.skip()
		case "errbacks":
			b.Errbacks, err = s.skip()
		case "timelimit":
			err = s.readTimeLimit(&b.TimeLimit, &b.wire, bTimeLimit)
		case "taskset":
			err = s.readString(&b.Taskset, &b.wire, bTaskset)
		case "chord":
			b.Chord, err = s.skip()
		default:
			err = s.extra(&b.Extra, key)
		}
		if err != nil {
			return fieldError(err, ErrBadHeader, "body", key)
		}
		return nil
	})
}

func appendBodyV1(dst []byte, b *BodyV1) []byte {
	o := openObject(dst)
	o.optString("task", b.Task, b.wire, bTask)
	o.optString("id", b.ID, b.wire, bID)
	o.optRaw("args", b.Args)
	o.optRaw("kwargs", b.Kwargs)
	o.optString("group", b.Group, b.wire, bGroup)
	o.optIntPtr("group_index", b.GroupIndex, b.wire, bGroupIndex)
	o.optInt("retries", b.Retries, b.wire, bRetries)
	o.optString("eta", b.ETA, b.wire, bETA)
	o.optString("expires", b.Expires, b.wire, bExpires)
	o.optBool("utc", b.UTC, b.wire, bUTC)
	o.optRaw("callbacks", b.Callbacks)
	o.optRaw("errbacks", b.Errbacks)
	o.optTimeLimit("timelimit", b.TimeLimit, b.wire, bTimeLimit)
	o.optString("taskset", b.Taskset, b.wire, bTaskset)
	o.optRaw("chord", b.Chord)
	o.members(b.Extra)
	return o.close()
}

// Encode writes the message as a protocol 1 producer would LPUSH it, after
// Validate.
func (m *TaskMessageV1) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	bp := bodyPool.Get().(*[]byte)
	body := appendBodyV1((*bp)[:0], &m.Body)
	out, err := appendEnvelope(make([]byte, 0, 640+len(body)*4/3+len(m.bw.token)), envelopeParts{
		contentType:     ContentTypeJSON,
		contentEncoding: m.ContentEncoding,
		headers:         &m.Headers,
		properties:      &m.Properties,
		extra:           m.Extra,
		body:            body,
		bw:              &m.bw,
		wire:            m.wire,
	})
	*bp = body
	bodyPool.Put(bp)
	return out, err
}
