package celerybridge

import (
	"encoding/json"
	"fmt"
)

// Validate reports the first thing in m that would crash, poison or be
// misread by a Python worker, as one of the package's Err variables. Encode
// runs it, so this package never writes such a message; call it directly
// to check a message built or edited by hand.
func (m *TaskMessage) Validate() error {
	if err := validateEnvelope(ContentTypeJSON, &m.Headers, &m.Properties); err != nil {
		return err
	}
	if err := checkIdentity(m.Headers.Task, m.Headers.ID, m.Headers.hasID()); err != nil {
		return err
	}
	if err := validateContainer(m.Args, '[', ErrArgsNotList); err != nil {
		return err
	}
	if err := validateContainer(m.Kwargs, '{', ErrKwargsNotObject); err != nil {
		return err
	}
	for _, raw := range []json.RawMessage{m.Embed.Callbacks, m.Embed.Errbacks, m.Embed.Chain, m.Embed.Chord} {
		if err := validRaw(raw); err != nil {
			return fmt.Errorf("embed: %w", err)
		}
	}
	if err := validMembers(m.Embed.Extra); err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	return validMembers(m.Extra)
}

// Validate is TaskMessage.Validate for protocol 1 and hybrid messages.
func (m *TaskMessageV1) Validate() error {
	if err := validateEnvelope(ContentTypeJSON, &m.Headers, &m.Properties); err != nil {
		return err
	}
	b := &m.Body
	if b.Args != nil {
		if err := validateContainer(b.Args, '[', ErrArgsNotList); err != nil {
			return err
		}
	}
	if b.Kwargs != nil {
		if err := validateContainer(b.Kwargs, '{', ErrKwargsNotObject); err != nil {
			return err
		}
	}
	if err := m.checkBody(); err != nil {
		return err
	}
	for _, d := range []struct{ name, value string }{{"body.eta", b.ETA}, {"body.expires", b.Expires}} {
		if err := validateDate(d.name, d.value); err != nil {
			return err
		}
	}
	if err := validateTimeLimit("body.timelimit", b.TimeLimit); err != nil {
		return err
	}
	for _, raw := range []json.RawMessage{b.Callbacks, b.Errbacks, b.Chord} {
		if err := validRaw(raw); err != nil {
			return fmt.Errorf("body: %w", err)
		}
	}
	if err := validMembers(b.Extra); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return validMembers(m.Extra)
}

// validateEnvelope checks what every message needs whatever its body. The
// task's identity is checked by the callers: a hybrid message may carry its
// id in the body.
func validateEnvelope(contentType string, h *Headers, p *Properties) error {
	if !knownContentType(contentType) {
		return fmt.Errorf("content-type %q: %w", contentType, ErrUnknownContentType)
	}
	if err := checkDelivery(p); err != nil {
		return err
	}
	if !rawBodyEncoding(p.BodyEncoding) && p.BodyEncoding != "base64" {
		return fmt.Errorf("body_encoding %q: %w", p.BodyEncoding, ErrUnknownBodyEncoding)
	}
	if err := validateDate("headers.eta", h.ETA); err != nil {
		return err
	}
	if err := validateDate("headers.expires", h.Expires); err != nil {
		return err
	}
	if err := validateTimeLimit("headers.timelimit", h.TimeLimit); err != nil {
		return err
	}
	for _, raw := range []json.RawMessage{h.StampedHeaders, h.Stamps} {
		if err := validRaw(raw); err != nil {
			return fmt.Errorf("headers: %w", err)
		}
	}
	for _, ms := range [][]Member{h.Extra, p.Extra, p.DeliveryInfo.Extra} {
		if err := validMembers(ms); err != nil {
			return err
		}
	}
	return nil
}

// validateDate refuses an eta or expires that no version can parse, or that
// 5.2.6's regex reads as another instant than newer versions do.
func validateDate(name, s string) error {
	if s == "" {
		return nil
	}
	if _, err := ParseTime(s); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !safeFor52(s) {
		return fmt.Errorf("%s %q: %w", name, s, ErrUnsafeDate)
	}
	return nil
}

func validateTimeLimit(name string, t TimeLimit) error {
	for _, n := range []json.Number{t.Hard, t.Soft} {
		if n != "" {
			if err := validNumber(string(n)); err != nil {
				return fmt.Errorf("%s: %w", name, ErrBadHeader)
			}
		}
	}
	return nil
}

// validateContainer checks that raw is one JSON value opening with open.
func validateContainer(raw json.RawMessage, open byte, kind error) error {
	s := scanner{data: raw}
	if s.peek() != open {
		return kind
	}
	if err := validJSON(raw); err != nil {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return nil
}

func validRaw(raw json.RawMessage) error {
	if raw == nil {
		return nil
	}
	return validJSON(raw)
}

func validMembers(ms []Member) error {
	for _, m := range ms {
		if err := validJSON(m.Value); err != nil {
			return fmt.Errorf("%s: %w", m.Key, err)
		}
	}
	return nil
}
