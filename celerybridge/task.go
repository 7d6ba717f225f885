package celerybridge

import (
	"encoding/json"
	"fmt"
	"time"
)

// Protocol is the Celery task message protocol a message uses.
type Protocol int

const (
	// ProtocolV1: no task header; the body object carries everything.
	ProtocolV1 Protocol = 1
	// ProtocolV2: headers carry the task, the body is [args, kwargs, embed].
	ProtocolV2 Protocol = 2
	// ProtocolHybrid: headers name the task but the body is a protocol 1
	// object with args; a worker merges them, headers winning.
	ProtocolHybrid Protocol = 3
)

func (p Protocol) String() string {
	switch p {
	case ProtocolV1:
		return "protocol 1"
	case ProtocolV2:
		return "protocol 2"
	case ProtocolHybrid:
		return "hybrid"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// Task is what a worker makes of a message, whatever its protocol: the
// facts a router, a ledger or a dead-letter report needs.
type Task struct {
	Protocol    Protocol
	ContentType string
	Name        string
	ID          string
	// Args and Kwargs are raw JSON ([] and {} when a protocol 1 body omits
	// them); nil when Opaque.
	Args     json.RawMessage
	Kwargs   json.RawMessage
	ETA      time.Time // zero: run on receipt
	Expires  time.Time // zero: never
	Retries  int
	Priority int
	ParentID string
	RootID   string
	GroupID  string
	// Opaque is set for a pickle, yaml or msgpack body: the protocol 2
	// headers are known, the arguments are not and never will be.
	Opaque bool
}

// DecodeTask decodes a message of any protocol into the worker's view of it.
// A protocol 2 message with an opaque body decodes (its headers say what it
// is) with Opaque set; a protocol 1 message with an opaque body is
// ErrOpaqueBody, since only its body could name the task.
func DecodeTask(data []byte) (*Task, error) {
	var e Envelope
	if err := decodeEnvelope(data, &e); err != nil {
		return nil, err
	}
	return e.Task()
}

// Task reads the envelope the way a worker's consumer does: a task header
// means protocol 2 (hybrid when the body is an object with args), its
// absence protocol 1.
func (e *Envelope) Task() (*Task, error) {
	h := &e.Headers
	if e.Opaque() {
		if !h.HasTask() {
			return nil, fmt.Errorf("protocol 1 %s body: %w", e.ContentType, ErrOpaqueBody)
		}
		if err := checkIdentity(h.Task, h.ID, h.hasID()); err != nil {
			return nil, err
		}
		t := &Task{Protocol: ProtocolV2, ContentType: e.ContentType, Opaque: true}
		return t.fromHeaders(h, &e.Properties)
	}
	if h.HasTask() && !e.hybridBody() {
		m, err := e.TaskMessage()
		if err != nil {
			return nil, err
		}
		t := &Task{Protocol: ProtocolV2, ContentType: e.ContentType, Args: m.Args, Kwargs: m.Kwargs}
		return t.fromHeaders(h, &e.Properties)
	}
	m, err := e.TaskMessageV1()
	if err != nil {
		return nil, err
	}
	return m.task(e.ContentType)
}

func (t *Task) fromHeaders(h *Headers, p *Properties) (*Task, error) {
	t.Name, t.ID, t.Retries, t.Priority = h.Task, h.ID, h.Retries, p.Priority
	t.ParentID, t.RootID, t.GroupID = h.ParentID, h.RootID, h.Group
	if err := t.parseDates(h.ETA, h.Expires); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Task) parseDates(eta, expires string) error {
	var err error
	if eta != "" {
		if t.ETA, err = ParseTime(eta); err != nil {
			return fmt.Errorf("eta: %w", err)
		}
	}
	if expires != "" {
		if t.Expires, err = ParseTime(expires); err != nil {
			return fmt.Errorf("expires: %w", err)
		}
	}
	return nil
}

// task merges a protocol 1 body with the message headers as Celery's
// hybrid_to_proto2 does (both protocol 1 and hybrid messages go through it):
// a header that is present wins, even when null.
func (m *TaskMessageV1) task(contentType string) (*Task, error) {
	b, h := &m.Body, &m.Headers
	t := &Task{Protocol: ProtocolV1, ContentType: contentType, Args: b.Args, Kwargs: b.Kwargs}
	if m.Hybrid() {
		t.Protocol = ProtocolHybrid
	}
	if t.Args == nil {
		t.Args = json.RawMessage("[]")
	}
	if t.Kwargs == nil {
		t.Kwargs = json.RawMessage("{}")
	}
	pick := func(header string, f uint, body string) string {
		if h.wire.has(f) || header != "" {
			return header
		}
		return body
	}
	t.Name = pick(h.Task, hTask, b.Task)
	t.ID = pick(h.ID, hID, b.ID)
	t.GroupID = pick(h.Group, hGroup, b.Group)
	t.RootID = pick(h.RootID, hRootID, b.extraString("root_id"))
	t.ParentID = pick(h.ParentID, hParentID, b.extraString("parent_id"))
	t.Retries = b.Retries
	if h.wire.has(hRetries) || h.Retries != 0 {
		t.Retries = h.Retries
	}
	t.Priority = m.Properties.Priority
	if err := t.parseDates(pick(h.ETA, hETA, b.ETA), pick(h.Expires, hExpires, b.Expires)); err != nil {
		return nil, err
	}
	return t, nil
}

// extraString returns a string member a hybrid body may carry beyond the
// protocol 1 fields (root_id, parent_id), or "".
func (b *BodyV1) extraString(key string) string {
	for i := len(b.Extra) - 1; i >= 0; i-- {
		if b.Extra[i].Key == key {
			s := scanner{data: b.Extra[i].Value}
			v, _, err := s.str()
			if err != nil {
				return ""
			}
			return v
		}
	}
	return ""
}

// DecodeArgs decodes Args with DecodeValue.
func (t *Task) DecodeArgs() ([]any, error) {
	if t.Opaque {
		return nil, ErrOpaqueBody
	}
	v, err := DecodeValue(t.Args)
	if err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	args, ok := v.([]any)
	if !ok {
		return nil, ErrArgsNotList
	}
	return args, nil
}

// DecodeKwargs decodes Kwargs with DecodeValue.
func (t *Task) DecodeKwargs() (map[string]any, error) {
	if t.Opaque {
		return nil, ErrOpaqueBody
	}
	v, err := DecodeValue(t.Kwargs)
	if err != nil {
		return nil, fmt.Errorf("kwargs: %w", err)
	}
	kwargs, ok := v.(map[string]any)
	if !ok {
		return nil, ErrKwargsNotObject
	}
	return kwargs, nil
}
