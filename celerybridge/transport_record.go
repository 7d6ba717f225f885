package celerybridge

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds what the transport reads and writes inside Redis values:
// the claim rule (kept in step with claim.lua), kombu's unacked record, the
// envelope kombu's restore writes back, and the dead-letter record.

// Reasons claim.lua gives for dead-lettering a message, in its records.
const (
	faultMalformed    = "malformed_json"
	faultTooDeep      = "too_deep"
	faultNotObject    = "not_an_object"
	faultHeaders      = "headers_not_object"
	faultProperties   = "missing_properties"
	faultDeliveryTag  = "missing_delivery_tag"
	faultDeliveryInfo = "missing_delivery_info"
	// Reasons the Go side adds when a restore cannot proceed.
	faultUnroutable = "unroutable"
	faultBadRecord  = "bad_unacked_record"
)

// maxClaimDepth is claim.lua's MAX_DEPTH.
const maxClaimDepth = 512

// claimFaultError maps a dead-letter reason to the package error a caller tests
// for, or nil for a reason given by a caller.
func claimFaultError(reason string) error {
	switch reason {
	case faultMalformed, faultTooDeep, faultBadRecord:
		return ErrMalformedJSON
	case faultNotObject, faultProperties:
		return ErrMissingProperties
	case faultHeaders:
		return ErrHeadersNotObject
	case faultDeliveryTag:
		return ErrMissingDeliveryTag
	case faultDeliveryInfo:
		return ErrMissingDeliveryInfo
	case faultUnroutable:
		return ErrUnroutable
	}
	return nil
}

// claimFacts is what the transport reads from an envelope it can claim.
type claimFacts struct {
	tag, exchange, routingKey string
	priority                  int // kombu's _get_message_priority
	redelivered               bool
}

// claimCheck applies claim.lua's rule in Go: the facts of a claimable
// envelope, or the reason it would be dead-lettered. Publish refuses what
// Claim would dead-letter, ClaimBatch claims by it, and the tests hold both
// scripts to this function.
//
// It validates the whole envelope as json.loads would but builds nodes only
// for the few members the rule reads (the last of each, as a Python dict
// keeps), so a side-car judges thousands of messages a second on one core;
// nodeFacts then reads that reduced envelope exactly as it would the whole.
func claimCheck(raw []byte) (claimFacts, string) {
	var f claimFacts
	if nestedDeeperThan(raw, maxClaimDepth) {
		return f, faultTooDeep
	}
	root, err := claimNodes(raw)
	if err != nil {
		return f, faultMalformed
	}
	return nodeFacts(&root)
}

// claimNodes validates raw and returns it reduced to what nodeFacts reads:
// the kind of the top-level value and, for an object, its last "headers"
// (an object keeping only its last "redelivered") and last "properties" (an
// object keeping only the last delivery_tag, delivery_info and priority).
func claimNodes(raw []byte) (node, error) {
	s := scanner{data: raw}
	if s.peek() != '{' {
		n, err := s.node()
		if err != nil {
			return node{}, err
		}
		return node{kind: n.kind}, s.end()
	}
	root := node{kind: nObject}
	var headers, props *node
	err := s.members("", func(key []byte) error {
		var err error
		switch string(key) {
		case "headers":
			headers, err = s.reducedMember(headerKeysRead)
		case "properties":
			props, err = s.reducedMember(propertyKeysRead)
		default:
			_, err = s.skip()
		}
		return err
	})
	if err != nil {
		return node{}, err
	}
	if err := s.end(); err != nil {
		return node{}, err
	}
	if headers != nil {
		root.keys, root.items = append(root.keys, "headers"), append(root.items, *headers)
	}
	if props != nil {
		root.keys, root.items = append(root.keys, "properties"), append(root.items, *props)
	}
	return root, nil
}

// The members of headers and properties nodeFacts reads.
var (
	headerKeysRead   = map[string]bool{"redelivered": true}
	propertyKeysRead = map[string]bool{"delivery_tag": true, "delivery_info": true, "priority": true}
)

// reducedMember reads a value: an object keeps only the last value of each
// key in keep; anything else keeps only its kind.
func (s *scanner) reducedMember(keep map[string]bool) (*node, error) {
	if s.peek() != '{' {
		if _, err := s.skip(); err != nil {
			return nil, err
		}
		return &node{kind: nNull}, nil // nodeFacts only asks whether it is an object
	}
	n := node{kind: nObject, keys: make([]string, 0, len(keep)), items: make([]node, 0, len(keep))}
	err := s.members("", func(key []byte) error {
		if !keep[string(key)] {
			_, err := s.skip()
			return err
		}
		v, err := s.node()
		if err != nil {
			return err
		}
		for i, k := range n.keys {
			if k == string(key) {
				n.items[i] = v
				return nil
			}
		}
		n.keys, n.items = append(n.keys, string(key)), append(n.items, v)
		return nil
	})
	return &n, err
}

func nodeFacts(root *node) (claimFacts, string) {
	var f claimFacts
	if root.kind != nObject {
		return f, faultNotObject
	}
	headers, hasHeaders := root.lookup("headers")
	if hasHeaders && headers.kind != nObject {
		return f, faultHeaders
	}
	props, ok := root.lookup("properties")
	if !ok || props.kind != nObject {
		return f, faultProperties
	}
	tag, ok := props.lookup("delivery_tag")
	if !ok || tag.kind != nString || tag.text == "" || hasLoneSurrogate(tag.text) {
		return f, faultDeliveryTag
	}
	info, ok := props.lookup("delivery_info")
	if !ok || info.kind != nObject {
		return f, faultDeliveryInfo
	}
	ex, okEx := info.lookup("exchange")
	rk, okRk := info.lookup("routing_key")
	if !okEx || !okRk || ex.kind != nString || rk.kind != nString || ex.text == "" && rk.text == "" {
		return f, faultDeliveryInfo
	}
	f.tag, f.exchange, f.routingKey = tag.text, ex.text, rk.text
	if p, ok := props.lookup("priority"); ok {
		f.priority = kombuPriority(p)
	}
	if hasHeaders {
		if r, ok := headers.lookup("redelivered"); ok && r.kind == nTrue {
			f.redelivered = true
		}
	}
	if r, ok := info.lookup("redelivered"); ok && r.kind == nTrue {
		f.redelivered = true
	}
	return f, ""
}

// hasLoneSurrogate reports a lone surrogate, which unescape keeps in WTF-8 and
// which only a \u escape can produce in validated input. redis-py cannot
// encode such a tag, so no Python consumer could ack it.
func hasLoneSurrogate(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == 0xED && s[i+1] >= 0xA0 && s[i+1] <= 0xBF {
			return true
		}
	}
	return false
}

// nestedDeeperThan reports whether arrays and objects nest deeper than limit.
func nestedDeeperThan(b []byte, limit int) bool {
	// Nesting deeper than limit takes more than limit opening brackets;
	// counting them (vectorised) settles almost every message at once.
	if bytes.Count(b, []byte{'['})+bytes.Count(b, []byte{'{'}) <= limit {
		return false
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			if depth++; depth > limit {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}

// kombuPriority is kombu's _get_message_priority: int(properties['priority'])
// clamped to 0..9, and 0 when int() raises. Python's int() truncates floats
// and parses strings; infinities, where Python raises OverflowError, clamp.
func kombuPriority(n *node) int {
	clamp := func(v float64) int { return int(math.Max(0, math.Min(9, v))) }
	switch n.kind {
	case nTrue:
		return 1
	case nNumber:
		if !strings.ContainsAny(n.text, ".eEIN") {
			v, ok := new(big.Int).SetString(n.text, 10)
			if !ok {
				return 0
			}
			return clamp(bigWithin10(v))
		}
		f, _ := strconv.ParseFloat(n.text, 64)
		if math.IsNaN(f) {
			return 0
		}
		return clamp(math.Trunc(f))
	case nString:
		s := strings.TrimSpace(n.text)
		if s == "" || strings.HasPrefix(s, "_") || strings.HasSuffix(s, "_") || strings.Contains(s, "__") {
			return 0
		}
		v, ok := new(big.Int).SetString(strings.ReplaceAll(s, "_", ""), 10)
		if !ok {
			return 0
		}
		return clamp(bigWithin10(v))
	}
	return 0
}

// bigWithin10 is v limited to -10..10, which is all clamping needs.
func bigWithin10(v *big.Int) float64 {
	switch {
	case v.Cmp(big.NewInt(10)) > 0:
		return 10
	case v.Cmp(big.NewInt(-10)) < 0:
		return -10
	}
	return float64(v.Int64())
}

// loadsDict gives every object in n what Python's json.loads leaves in a dict:
// one member per key, at the place of its first occurrence, with the value
// of its last.
func loadsDict(n *node) {
	for i := range n.items {
		loadsDict(&n.items[i])
	}
	if n.kind != nObject || n.distinctKeys() == len(n.keys) {
		return
	}
	at := make(map[string]int, len(n.keys))
	var keys []string
	var items []node
	for i, k := range n.keys {
		if j, ok := at[k]; ok {
			items[j] = n.items[i]
			continue
		}
		at[k] = len(keys)
		keys = append(keys, k)
		items = append(items, n.items[i])
	}
	n.keys, n.items = keys, items
}

// setPyMember is Python's d[key] = v on a loadsDict-ed object.
func setPyMember(n *node, key string, v node) {
	for i, k := range n.keys {
		if k == key {
			n.items[i] = v
			return
		}
	}
	n.keys = append(n.keys, key)
	n.items = append(n.items, v)
}

// appendDumps writes a loadsDict-ed value as kombu's dumps (json.dumps) writes the
// Python value json.loads made of it: Python's layout and ensure_ascii, and
// numbers as Python holds them (integers exact, floats in repr form, out of
// range floats as Infinity).
func appendDumps(dst []byte, n *node) []byte {
	switch n.kind {
	case nNumber:
		if !strings.ContainsAny(n.text, ".eEIN") {
			if n.text == "-0" {
				return append(dst, '0')
			}
			return append(dst, n.text...)
		}
		f, _ := strconv.ParseFloat(n.text, 64) // out of range: ±Inf, as float()
		return appendFloat(dst, f)
	case nList:
		dst = append(dst, '[')
		for i := range n.items {
			if i > 0 {
				dst = append(dst, ',', ' ')
			}
			dst = appendDumps(dst, &n.items[i])
		}
		return append(dst, ']')
	case nObject:
		o := openObject(dst)
		for i, k := range n.keys {
			o.key(k)
			o.buf = appendDumps(o.buf, &n.items[i])
		}
		return o.close()
	}
	return appendNode(dst, n)
}

// addressedEnvelope returns the envelope with properties.delivery_info naming
// exchange and routingKey, as kombu's _inplace_augment_message sets them
// before every publish, and its facts. An envelope that already names them
// comes back unchanged; otherwise it is rewritten as kombu's dumps would.
func addressedEnvelope(envelope []byte, exchange, routingKey string) ([]byte, claimFacts, error) {
	facts, fault := claimCheck(envelope)
	if fault == "" && facts.exchange == exchange && facts.routingKey == routingKey {
		return envelope, facts, nil
	}
	if fault != "" && fault != faultDeliveryInfo {
		return nil, facts, fmt.Errorf("%s: %w", fault, claimFaultError(fault))
	}
	root, err := parseNode(envelope, false)
	if err != nil {
		return nil, facts, err
	}
	loadsDict(&root)
	props, _ := root.lookup("properties") // claimCheck saw an object
	info, ok := props.lookup("delivery_info")
	if !ok {
		setPyMember(props, "delivery_info", node{kind: nObject})
		info, _ = props.lookup("delivery_info")
	} else if info.kind != nObject {
		return nil, facts, fmt.Errorf("delivery_info is not an object: %w", ErrMissingDeliveryInfo)
	}
	setPyMember(info, "exchange", node{kind: nString, text: exchange})
	setPyMember(info, "routing_key", node{kind: nString, text: routingKey})
	out := appendDumps(nil, &root)
	if facts, fault = claimCheck(out); fault != "" {
		return nil, facts, fmt.Errorf("%s: %w", fault, claimFaultError(fault))
	}
	return out, facts, nil
}

// restoredEnvelope returns what kombu's _do_restore_message pushes for env:
// headers['redelivered'] and then properties['delivery_info']['redelivered']
// set to True, each skipped with the rest on a KeyError, and the whole
// re-dumped. Where kombu hits a TypeError and drops the message (headers or
// properties of the wrong type), it returns an error: the caller
// dead-letters instead.
func restoredEnvelope(env []byte) ([]byte, *node, error) {
	root, err := parseNode(env, false)
	if err != nil {
		return nil, nil, err
	}
	if root.kind != nObject {
		return nil, nil, fmt.Errorf("envelope is not an object: %w", ErrMalformedJSON)
	}
	loadsDict(&root)
	if headers, ok := root.lookup("headers"); ok {
		if headers.kind != nObject {
			return nil, nil, ErrHeadersNotObject
		}
		setPyMember(headers, "redelivered", node{kind: nTrue})
		if props, ok := root.lookup("properties"); ok {
			if props.kind != nObject {
				return nil, nil, ErrMissingProperties
			}
			if info, ok := props.lookup("delivery_info"); ok {
				if info.kind != nObject {
					return nil, nil, ErrMissingDeliveryInfo
				}
				setPyMember(info, "redelivered", node{kind: nTrue})
			}
		}
	}
	return appendDumps(nil, &root), &root, nil
}

// kombuEnvelopePriority is kombu's _get_message_priority of a parsed envelope.
func kombuEnvelopePriority(root *node) int {
	if props, ok := root.lookup("properties"); ok && props.kind == nObject {
		if p, ok := props.lookup("priority"); ok {
			return kombuPriority(p)
		}
	}
	return 0
}

// kombuUnackedRecord writes kombu's unacked record for an envelope as
// claim.lua does: the envelope verbatim, then exchange and routing key.
func kombuUnackedRecord(env []byte, exchange, routingKey string) []byte {
	out := append([]byte{'['}, env...)
	out = append(out, ',', ' ')
	out = appendString(out, exchange)
	out = append(out, ',', ' ')
	out = appendString(out, routingKey)
	return append(out, ']')
}

// parseUnackedRecord reads kombu's unacked record, a JSON array of the
// envelope, the exchange and the routing key. The envelope comes back as the
// bytes in the record; a null exchange or routing key (kombu writes None
// when delivery_info held it) reads as "".
func parseUnackedRecord(rec []byte) (env []byte, exchange, routingKey string, err error) {
	s := scanner{data: rec}
	if err = s.enter('['); err != nil {
		return nil, "", "", fmt.Errorf("unacked record: %w", err)
	}
	n := 0
	for i, dst := range []*string{nil, &exchange, &routingKey} {
		ok, err := s.more(']', &n)
		if err != nil {
			return nil, "", "", fmt.Errorf("unacked record: %w", err)
		}
		if !ok {
			return nil, "", "", fmt.Errorf("unacked record has %d elements, not 3: %w", i, ErrMalformedJSON)
		}
		if dst == nil {
			if env, err = s.skip(); err != nil {
				return nil, "", "", fmt.Errorf("unacked record: %w", err)
			}
			continue
		}
		c := s.peek()
		if c != '"' && c != 'n' {
			return nil, "", "", fmt.Errorf("unacked record: element %d is not a string: %w", i, ErrMalformedJSON)
		}
		if *dst, _, err = s.str(); err != nil {
			return nil, "", "", fmt.Errorf("unacked record: %w", err)
		}
	}
	if ok, err := s.more(']', &n); err != nil || ok {
		return nil, "", "", fmt.Errorf("unacked record has more than 3 elements: %w", ErrMalformedJSON)
	}
	if err := s.end(); err != nil {
		return nil, "", "", fmt.Errorf("unacked record: %w", err)
	}
	return env, exchange, routingKey, nil
}

// DeadLetter is a message the transport moved to the dead-letter list. Claim
// returns one as its error when the message it took breaks the claim rule.
type DeadLetter struct {
	// Reason is a claim rule broken ("malformed_json", "too_deep",
	// "not_an_object", "headers_not_object", "missing_properties",
	// "missing_delivery_tag", "missing_delivery_info"), "unroutable" or
	// "bad_unacked_record" for a restore with nowhere to go, or the
	// caller's reason given to Transport.DeadLetter.
	Reason string
	Queue  string // where it was taken from; "" when unknown
	Raw    []byte // the message exactly as it was in Redis
	At     time.Time
}

func (d *DeadLetter) Error() string {
	return fmt.Sprintf("celerybridge: message from queue %q dead-lettered: %s", d.Queue, d.Reason)
}

// Unwrap gives ErrDeadLettered and, for the transport's own reasons, the
// package error for the rule (ErrMalformedJSON, ErrMissingDeliveryTag, ...).
func (d *DeadLetter) Unwrap() []error {
	if e := claimFaultError(d.Reason); e != nil {
		return []error{ErrDeadLettered, e}
	}
	return []error{ErrDeadLettered}
}

// appendDeadLetter writes the dead-letter record claim.lua writes:
// {"reason", "queue", "raw", "at"}, raw as a JSON string when it is UTF-8
// and as base64 with "encoding": "base64" otherwise, at in float seconds.
func appendDeadLetter(dst []byte, d *DeadLetter) []byte {
	dst = appendDeadLetterHead(dst, d)
	dst = append(dst, formatUnackedScore(d.At)...)
	return append(dst, '}')
}

// appendDeadLetterHead writes the dead-letter record up to its time, which
// claimbatch.lua appends from the server's clock: '{"reason": ..., "at": '.
func appendDeadLetterHead(dst []byte, d *DeadLetter) []byte {
	o := openObject(dst)
	o.str("reason", d.Reason)
	o.str("queue", d.Queue)
	if utf8.Valid(d.Raw) {
		o.str("raw", string(d.Raw))
	} else {
		o.str("raw", base64.StdEncoding.EncodeToString(d.Raw))
		o.str("encoding", "base64")
	}
	o.key("at")
	return o.buf
}

// parseDeadLetter reads a dead-letter record.
func parseDeadLetter(rec []byte) (*DeadLetter, error) {
	var d DeadLetter
	var raw, encoding, at string
	s := scanner{data: rec}
	err := s.members("dead letter", func(key []byte) error {
		var dst *string
		switch string(key) {
		case "reason":
			dst = &d.Reason
		case "queue":
			dst = &d.Queue
		case "raw":
			dst = &raw
		case "encoding":
			dst = &encoding
		case "at":
			text, err := s.number()
			at = string(text)
			return err
		default:
			_, err := s.skip()
			return err
		}
		if s.peek() != '"' {
			return fmt.Errorf("dead letter: %s is not a string: %w", key, ErrMalformedJSON)
		}
		v, _, err := s.str()
		*dst = v
		return err
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, err
	}
	switch encoding {
	case "":
		d.Raw = []byte(raw)
	case "base64":
		if d.Raw, err = base64.StdEncoding.DecodeString(raw); err != nil {
			return nil, fmt.Errorf("dead letter: raw: %w", ErrBadBase64)
		}
	default:
		return nil, fmt.Errorf("dead letter: encoding %q: %w", encoding, ErrUnknownBodyEncoding)
	}
	if at != "" {
		if d.At, err = parseUnackedScore(at); err != nil {
			return nil, err
		}
	}
	return &d, nil
}

// formatUnackedScore writes t as claim.lua writes Redis TIME: seconds, a point and
// six digits of microseconds (kombu's time.time() as redis-py sends it has
// the same meaning).
func formatUnackedScore(t time.Time) string {
	us := t.UnixMicro()
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

// parseUnackedScore reads a score or timestamp in float seconds exactly, without
// the rounding of a float64 for the digits claim.lua writes.
func parseUnackedScore(s string) (time.Time, error) {
	sec, frac, hasFrac := strings.Cut(s, ".")
	if strings.ContainsAny(s, "eEnN") || sec == "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, fmt.Errorf("timestamp %q: %w", s, ErrMalformedJSON)
		}
		return time.Unix(0, int64(f*1e9)), nil
	}
	whole, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: %w", s, ErrMalformedJSON)
	}
	var ns int64
	if hasFrac {
		digits := (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(digits, 10, 64); err != nil || !allDigits(frac) {
			return time.Time{}, fmt.Errorf("timestamp %q: %w", s, ErrMalformedJSON)
		}
	}
	if whole < 0 || strings.HasPrefix(sec, "-") {
		ns = -ns
	}
	return time.Unix(whole, ns), nil
}

func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

var errEmptyQueues = errors.New("celerybridge: claim needs at least one queue")

// envelopeFacts reads the claim facts from an envelope decodeEnvelope
// accepted, so that a message decoded anyway (ClaimOrForward with a Sorter)
// is not scanned a second time for the claim rule. ok is false whenever the
// typed reading could differ from claimCheck's (a null or missing field,
// an empty tag); the caller then runs claimCheck. FuzzEnvelopeFacts holds
// every ok answer to claimCheck's on the same bytes.
func envelopeFacts(e *Envelope) (f claimFacts, ok bool) {
	p, d := &e.Properties, &e.Properties.DeliveryInfo
	switch {
	case !p.wire.has(pDeliveryTag) || p.wire.isNull(pDeliveryTag) || p.DeliveryTag == "" || hasLoneSurrogate(p.DeliveryTag):
		return f, false
	case !p.wire.has(pDeliveryInfo) || !d.wire.has(dExchange) || !d.wire.has(dRoutingKey):
		return f, false
	case d.wire.isNull(dExchange) || d.wire.isNull(dRoutingKey) || d.Exchange == "" && d.RoutingKey == "":
		return f, false
	case p.wire.has(pPriority) && p.wire.isNull(pPriority):
		return f, false
	case e.Headers.wire.isNull(hObject): // kombu's consumer reads it as {}, its restore does not
		return f, false
	}
	f = claimFacts{tag: p.DeliveryTag, exchange: d.Exchange, routingKey: d.RoutingKey, priority: min(max(p.Priority, 0), 9)}
	f.redelivered = e.Headers.Redelivered || d.Redelivered
	return f, true
}
