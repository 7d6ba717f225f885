package celerybridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// TaskMessage is a protocol 2 task message with a JSON body, the default
// since Celery 4: the task's identity and scheduling in Headers, and a body
// of exactly [args, kwargs, embed].
//
// Args, Kwargs and the Embed members are raw JSON kept exactly as received
// (numbers, key order, signatures intact); use DecodeValue to look inside.
// A decoded message shares those slices with its decoded body: assign new
// slices rather than modifying them in place.
type TaskMessage struct {
	Headers         Headers
	Properties      Properties
	ContentEncoding string   // "utf-8"
	Extra           []Member // envelope members this package does not model

	Args   json.RawMessage // a JSON array; positional arguments
	Kwargs json.RawMessage // a JSON object; keyword arguments
	Embed  Embed

	bw   bodyWire
	wire wire
}

// Embed is the third element of a protocol 2 body: the canvas around the
// task. Each member is a signature ({task, args, kwargs, options,
// subtask_type, immutable}), a list of them, or null, kept as raw JSON. A
// chain is stored reversed: the next task is the last element.
type Embed struct {
	Callbacks json.RawMessage // link
	Errbacks  json.RawMessage // link_error
	Chain     json.RawMessage
	Chord     json.RawMessage
	Extra     []Member
}

// DecodeTaskMessage decodes a protocol 2 message. A protocol 1 or hybrid
// message is ErrWrongProtocol (use DecodeTaskMessageV1 or DecodeTask), a
// pickle, yaml or msgpack body ErrOpaqueBody.
func DecodeTaskMessage(data []byte) (*TaskMessage, error) {
	var e Envelope
	if err := decodeEnvelope(data, &e); err != nil {
		return nil, err
	}
	return e.TaskMessage()
}

// TaskMessage reads the envelope as a protocol 2 message.
func (e *Envelope) TaskMessage() (*TaskMessage, error) {
	if e.Opaque() {
		return nil, fmt.Errorf("%s body: %w", e.ContentType, ErrOpaqueBody)
	}
	if !e.Headers.HasTask() {
		return nil, fmt.Errorf("no task header (protocol 1): %w", ErrWrongProtocol)
	}
	m := &TaskMessage{
		Headers:         e.Headers,
		Properties:      e.Properties,
		ContentEncoding: e.ContentEncoding,
		Extra:           e.Extra,
		bw:              e.bw,
		wire:            e.wire,
	}
	if err := parseBodyV2(e.body, m); err != nil {
		return nil, err
	}
	if err := checkIdentity(m.Headers.Task, m.Headers.ID, m.Headers.hasID()); err != nil {
		return nil, err
	}
	return m, nil
}

// parseBodyV2 splits [args, kwargs, embed]. Arity is checked before the
// element types because unpacking is what a worker does first.
func parseBodyV2(body []byte, m *TaskMessage) error {
	s := scanner{data: body}
	switch s.peek() {
	case '[':
	case '{':
		if err := validJSON(body); err != nil {
			return fmt.Errorf("body: %w", err)
		}
		if hasMember(body, "args") {
			return fmt.Errorf("body is a protocol 1 object (hybrid message): %w", ErrWrongProtocol)
		}
		return ErrBodyNotTriple
	default:
		if err := validJSON(body); err != nil {
			return fmt.Errorf("body: %w", err)
		}
		return ErrBodyNotTriple
	}
	var elems [3][]byte
	if err := s.enter('['); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	n := 0
	for {
		ok, err := s.more(']', &n)
		if err != nil {
			return fmt.Errorf("body: %w", err)
		}
		if !ok {
			break
		}
		v, err := s.skip()
		if err != nil {
			return fmt.Errorf("body: %w", err)
		}
		if n <= 3 {
			elems[n-1] = v
		}
	}
	if err := s.end(); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if n != 3 {
		return fmt.Errorf("body has %d elements: %w", n, ErrBodyNotTriple)
	}
	if elems[0][0] != '[' {
		return ErrArgsNotList
	}
	if elems[1][0] != '{' {
		return ErrKwargsNotObject
	}
	if elems[2][0] != '{' {
		return ErrEmbedNotObject
	}
	m.Args, m.Kwargs = elems[0], elems[1]
	return decodeEmbed(elems[2], &m.Embed)
}

// hasMember reports whether the valid JSON object b has the top-level key.
func hasMember(b []byte, key string) bool {
	s := scanner{data: b}
	found := false
	_ = s.members("", func(k []byte) error {
		if string(k) == key {
			found = true
			return errStopScan
		}
		_, err := s.skip()
		return err
	})
	return found
}

// errStopScan ends a members walk early once the answer is known.
var errStopScan = errors.New("stop")

func decodeEmbed(b []byte, e *Embed) error {
	s := scanner{data: b}
	return s.members("", func(key []byte) (err error) {
		var v []byte
		switch string(key) {
		case "callbacks":
			v, err = s.skip()
			e.Callbacks = v
		case "errbacks":
			v, err = s.skip()
			e.Errbacks = v
		case "chain":
			v, err = s.skip()
			e.Chain = v
		case "chord":
			v, err = s.skip()
			e.Chord = v
		default:
			err = s.extra(&e.Extra, key)
		}
		return err
	})
}

// checkIdentity enforces what a worker dereferences before anything else.
func checkIdentity(task, id string, hasID bool) error {
	if task == "" {
		return ErrMissingTaskName
	}
	if id == "" || !hasID {
		return ErrMissingTaskID
	}
	return nil
}

// bodyPool recycles the scratch buffer a body is serialized into before it
// is compressed or base64-encoded into the envelope.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Encode writes the message as Celery's producer would LPUSH it, after
// Validate. A message decoded from Celery's bytes and left unchanged encodes
// to the same bytes.
func (m *TaskMessage) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	bp := bodyPool.Get().(*[]byte)
	body := m.appendBody((*bp)[:0])
	size := 640 + len(m.Headers.ArgsRepr) + len(m.Headers.KwargsRepr) + len(body)*4/3 + len(m.bw.token)
	out, err := appendEnvelope(make([]byte, 0, size), envelopeParts{
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

// Envelope returns the message as an envelope with its body serialized.
func (m *TaskMessage) Envelope() (*Envelope, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &Envelope{
		ContentType:     ContentTypeJSON,
		ContentEncoding: m.ContentEncoding,
		Headers:         m.Headers,
		Properties:      m.Properties,
		Extra:           m.Extra,
		body:            m.appendBody(nil),
		bw:              m.bw,
		wire:            m.wire,
	}, nil
}

// appendBody writes [args, kwargs, embed] as json.dumps writes the tuple.
func (m *TaskMessage) appendBody(dst []byte) []byte {
	dst = append(dst, '[')
	dst = append(dst, m.Args...)
	dst = append(dst, ',', ' ')
	dst = append(dst, m.Kwargs...)
	dst = append(dst, ',', ' ')
	o := openObject(dst)
	o.optRaw("callbacks", m.Embed.Callbacks)
	o.optRaw("errbacks", m.Embed.Errbacks)
	o.optRaw("chain", m.Embed.Chain)
	o.optRaw("chord", m.Embed.Chord)
	o.members(m.Embed.Extra)
	return append(o.close(), ']')
}
