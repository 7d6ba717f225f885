package celerybridge

import (
	"bytes"
	"fmt"
)

// Content types kombu registers. Only JSON is ever decoded; the others are
// carried as opaque bytes because decoding pickle is arbitrary code
// execution and yaml / msgpack bodies are not ours to reinterpret.
const (
	ContentTypeJSON    = "application/json"
	ContentTypePickle  = "application/x-python-serialize"
	ContentTypeYAML    = "application/x-yaml"
	ContentTypeMsgpack = "application/x-msgpack"
)

// Envelope is one message as kombu's Redis transport stores it: the JSON
// string LPUSHed on a queue list (and kept in the unacked hash). It is the
// layer below any task protocol; TaskMessage and TaskMessageV1 read its body.
//
// Decoding keeps every member, known or not, and Encode writes a decoded
// envelope back as the same JSON value; for a message Celery wrote, the same
// bytes.
type Envelope struct {
	ContentType     string // one of the ContentType constants
	ContentEncoding string // "utf-8" for JSON and yaml, "binary" for pickle and msgpack
	Headers         Headers
	Properties      Properties
	// Extra holds top-level members this package does not model, in order.
	Extra []Member

	body []byte // the serialized payload: base64 and compression undone
	bw   bodyWire
	wire wire // which top-level members were present
}

// bodyWire keeps the body member as received, to be written back verbatim
// while the payload, its compression and its encoding are unchanged: zlib
// output differs between implementations, so recompressing a body Python
// compressed would change the bytes.
type bodyWire struct {
	plain       []byte // the payload the token encodes
	token       []byte // the body string's content as received, still escaped
	compression string
	encoding    string
}

func (w *bodyWire) reusable(body []byte, compression, encoding string) bool {
	return w.token != nil && w.compression == compression && w.encoding == encoding &&
		bytes.Equal(w.plain, body)
}

const (
	eBody uint = iota
	eContentEncoding
	eContentType
	eHeaders
	eProperties
	eDecoded // the envelope came from DecodeEnvelope: write only what was present
)

// Body returns the serialized payload with base64 and compression undone.
// The slice is shared: use SetBody to change it.
func (e *Envelope) Body() []byte { return e.body }

// SetBody replaces the serialized payload. Encode compresses it as
// Headers.Compression says and base64-encodes it when
// Properties.BodyEncoding is "base64".
func (e *Envelope) SetBody(b []byte) {
	e.body = b
	e.bw = bodyWire{}
}

// Opaque reports whether the body is in a serialization this package never
// decodes (pickle, yaml, msgpack). Such a body is carried byte for byte.
func (e *Envelope) Opaque() bool { return e.ContentType != ContentTypeJSON }

// DecodeEnvelope parses one queued message. It rejects what would crash or
// poison a worker at the envelope level (see the Err variables); the body is
// decoded from base64 and decompressed but not parsed.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	e := new(Envelope)
	if err := decodeEnvelope(data, e); err != nil {
		return nil, err
	}
	return e, nil
}

func decodeEnvelope(data []byte, e *Envelope) error {
	s := scanner{data: data}
	if s.peek() == '{' {
		e.wire.mark(eDecoded, false, false)
	}
	var bodyToken []byte // the body string's content, still escaped
	bodyEscaped := false
	err := s.members("envelope", func(key []byte) (err error) {
		switch string(key) {
		case "body":
			if s.peek() != '"' {
				return fmt.Errorf("envelope: body is not a string: %w", s.wrongType(ErrBadBody))
			}
			e.wire.mark(eBody, false, false)
			bodyToken, bodyEscaped, err = s.stringToken()
		case "content-encoding":
			err = s.readString(&e.ContentEncoding, &e.wire, eContentEncoding)
		case "content-type":
			err = s.readString(&e.ContentType, &e.wire, eContentType)
		case "headers":
			e.wire.mark(eHeaders, false, false)
			err = s.decodeHeaders(&e.Headers)
		case "properties":
			e.wire.mark(eProperties, false, false)
			err = s.decodeProperties(&e.Properties)
		default:
			err = s.extra(&e.Extra, key)
		}
		if err != nil {
			kind := ErrMalformedJSON
			if string(key) == "content-type" || string(key) == "content-encoding" {
				kind = ErrUnknownContentType
			}
			return fieldError(err, kind, "envelope", key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.end(); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	if !e.wire.has(eProperties) {
		return ErrMissingProperties
	}
	if err := checkDelivery(&e.Properties); err != nil {
		return err
	}
	if !knownContentType(e.ContentType) {
		return fmt.Errorf("content-type %q: %w", e.ContentType, ErrUnknownContentType)
	}
	if !e.wire.has(eBody) {
		return fmt.Errorf("envelope: no body: %w", ErrBadBody)
	}
	token := bodyToken
	if bodyEscaped {
		token = unescape(make([]byte, 0, len(bodyToken)), bodyToken)
	}
	body, err := decodeBody(token, e.Properties.BodyEncoding, e.Headers.Compression)
	if err != nil {
		return err
	}
	e.body = body
	// Keep the wire form only where re-encoding could not reproduce it.
	if e.Headers.Compression != "" || bodyEscaped {
		e.bw = bodyWire{
			plain:       body,
			token:       append([]byte(nil), bodyToken...),
			compression: e.Headers.Compression,
			encoding:    e.Properties.BodyEncoding,
		}
	}
	return nil
}

// checkDelivery enforces the properties kombu's consumer dereferences
// unconditionally.
func checkDelivery(p *Properties) error {
	if p.DeliveryTag == "" {
		return ErrMissingDeliveryTag
	}
	d := &p.DeliveryInfo
	switch {
	case d.wire.has(dExchange) && d.wire.has(dRoutingKey):
		return nil // as decoded, or marked by NewTaskMessage
	case p.wire.has(pDeliveryInfo) || d.wire.present != 0:
		return ErrMissingDeliveryInfo // decoded without one of them
	case d.Exchange == "" && d.RoutingKey == "":
		return ErrMissingDeliveryInfo // built by hand with nowhere to go
	}
	return nil
}

func knownContentType(ct string) bool {
	switch ct {
	case ContentTypeJSON, ContentTypePickle, ContentTypeYAML, ContentTypeMsgpack:
		return true
	}
	return false
}

// Encode writes the envelope as kombu's Redis transport would LPUSH it. It
// refuses what a worker would choke on: the checks of TaskMessage.Validate
// for a JSON body of any protocol, those of the headers for an opaque one.
func (e *Envelope) Encode() ([]byte, error) {
	if err := validateEnvelope(e.ContentType, &e.Headers, &e.Properties); err != nil {
		return nil, err
	}
	if e.Opaque() {
		// The body cannot be checked; the protocol 2 headers can.
		if e.Headers.HasTask() {
			if err := checkIdentity(e.Headers.Task, e.Headers.ID, e.Headers.hasID()); err != nil {
				return nil, err
			}
		}
	} else if err := e.validateBody(); err != nil {
		return nil, err // a JSON body a worker could not run
	}
	size := 640 + len(e.Headers.ArgsRepr) + len(e.Headers.KwargsRepr) + len(e.body)*4/3 + len(e.bw.token)
	return appendEnvelope(make([]byte, 0, size), envelopeParts{
		contentType:     e.ContentType,
		contentEncoding: e.ContentEncoding,
		headers:         &e.Headers,
		properties:      &e.Properties,
		extra:           e.Extra,
		body:            e.body,
		bw:              &e.bw,
		wire:            e.wire,
	})
}

// validateBody applies the protocol's Validate to a JSON body, read the way
// a worker reads it.
func (e *Envelope) validateBody() error {
	if e.Headers.HasTask() && !e.hybridBody() {
		m, err := e.TaskMessage()
		if err != nil {
			return err
		}
		return m.Validate()
	}
	m, err := e.TaskMessageV1()
	if err != nil {
		return err
	}
	return m.Validate()
}

// hybridBody reports whether a JSON body is an object, which with a task
// header makes a hybrid message that may carry its id in the body.
func (e *Envelope) hybridBody() bool {
	s := scanner{data: e.body}
	return !e.Opaque() && s.peek() == '{'
}

// envelopeParts is what appendEnvelope writes; TaskMessage and TaskMessageV1
// hand in their own fields and freshly serialized body.
type envelopeParts struct {
	contentType, contentEncoding string
	headers                      *Headers
	properties                   *Properties
	extra                        []Member
	body                         []byte
	bw                           *bodyWire
	wire                         wire
}

// appendEnvelope writes the members in the order kombu's prepare_message
// builds them. A decoded envelope writes only the members it had; one built
// in Go writes all five, as kombu does.
func appendEnvelope(dst []byte, p envelopeParts) ([]byte, error) {
	all := !p.wire.has(eDecoded)
	o := openObject(dst)
	if all || p.wire.has(eBody) {
		o.key("body")
		if p.bw.reusable(p.body, p.headers.Compression, p.properties.BodyEncoding) {
			o.buf = append(o.buf, '"')
			o.buf = append(o.buf, p.bw.token...)
			o.buf = append(o.buf, '"')
		} else {
			var err error
			if o.buf, err = appendBody(o.buf, p.body, p.properties.BodyEncoding, p.headers.Compression); err != nil {
				return nil, err
			}
		}
	}
	if all {
		o.str("content-encoding", p.contentEncoding)
		o.str("content-type", p.contentType)
	} else {
		o.optString("content-encoding", p.contentEncoding, p.wire, eContentEncoding)
		o.optString("content-type", p.contentType, p.wire, eContentType)
	}
	if all || p.wire.has(eHeaders) || !p.headers.isEmpty() {
		o.key("headers")
		o.buf = appendHeaders(o.buf, p.headers)
	}
	o.key("properties")
	o.buf = appendProperties(o.buf, p.properties)
	o.members(p.extra)
	return o.close(), nil
}
