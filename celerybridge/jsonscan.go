package celerybridge

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// maxDepth bounds nesting so hostile input cannot exhaust the stack. Python's
// json module gives up near 1000 levels (RecursionError), so nothing deeper is
// a message any worker could read.
const maxDepth = 1000

// scanner reads JSON the way Python's json.loads accepts it: RFC 8259 plus the
// NaN / Infinity / -Infinity tokens that json.dumps writes for floats. It never
// builds a tree: callers walk objects member by member and either read a typed
// value or take the raw bytes of a value, so a decode allocates only for the
// strings it keeps.
type scanner struct {
	data   []byte
	pos    int
	depth  int
	keyBuf []byte // unescaped key when the key has escapes; reused
	typed  bool   // node() turns kombu __type__ wrappers into values
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrMalformedJSON, s.pos, fmt.Sprintf(format, args...))
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the first byte of the next value, or 0 at the end of input.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// end checks that only whitespace follows the top-level value, as json.loads
// does ("Extra data").
func (s *scanner) end() error {
	s.ws()
	if s.pos != len(s.data) {
		return s.errorf("extra data after value")
	}
	return nil
}

// enter consumes the opening bracket of an array or object.
func (s *scanner) enter(open byte) error {
	if s.peek() != open {
		return s.errorf("expected %q", open)
	}
	if s.depth++; s.depth > maxDepth {
		return s.errorf("nesting deeper than %d", maxDepth)
	}
	s.pos++
	return nil
}

// more reports whether another element follows in the array or object opened
// by enter; n counts elements seen so far and is advanced. On false the
// closing bracket has been consumed.
func (s *scanner) more(close byte, n *int) (bool, error) {
	c := s.peek()
	if c == close {
		s.pos++
		s.depth--
		return false, nil
	}
	if *n > 0 {
		if c != ',' {
			return false, s.errorf("expected ',' or %q", close)
		}
		s.pos++
	}
	*n++
	if close == '}' {
		if s.peek() != '"' {
			return false, s.errorf("expected object key")
		}
	} else if s.peek() == close {
		return false, s.errorf("trailing comma")
	}
	return true, nil
}

// members reads the object at the cursor, calling member with each key once
// the cursor is at the key's value, which member must consume; the key is
// only valid during the call. Errors in the object's own structure are
// labelled with where (when not empty); member's errors are returned as
// they are, since they carry their own context.
func (s *scanner) members(where string, member func(key []byte) error) error {
	label := func(err error) error {
		if where == "" {
			return err
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := s.enter('{'); err != nil {
		return label(err)
	}
	for n := 0; ; {
		ok, err := s.more('}', &n)
		if err != nil {
			return label(err)
		}
		if !ok {
			return nil
		}
		key, err := s.key()
		if err != nil {
			return label(err)
		}
		if err := member(key); err != nil {
			return err
		}
	}
}

// key reads an object key and the colon after it. The result is only valid
// until the next call.
func (s *scanner) key() ([]byte, error) {
	raw, escaped, err := s.stringToken()
	if err != nil {
		return nil, err
	}
	k := raw
	if escaped {
		s.keyBuf = unescape(s.keyBuf[:0], raw)
		k = s.keyBuf
	}
	if s.peek() != ':' {
		return nil, s.errorf("expected ':' after key")
	}
	s.pos++
	return k, nil
}

// stringToken consumes a string and returns its content between the quotes,
// still escaped, and whether it contains escapes. It validates escapes and
// UTF-8 and rejects raw control characters, as json.loads(strict=True) does.
func (s *scanner) stringToken() ([]byte, bool, error) {
	if s.peek() != '"' {
		return nil, false, s.errorf("expected string")
	}
	start := s.pos + 1
	escaped := false
	for i := start; i < len(s.data); {
		i = skipPlain(s.data, i)
		if i >= len(s.data) {
			break
		}
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return s.data[start:i], escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(s.data) {
				s.pos = i
				return nil, false, s.errorf("unterminated escape")
			}
			switch s.data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s.data) || !isHex4(s.data[i+2:i+6]) {
					s.pos = i
					return nil, false, s.errorf("bad \\u escape")
				}
				i += 6
			default:
				s.pos = i
				return nil, false, s.errorf("bad escape")
			}
		case c < 0x20:
			s.pos = i
			return nil, false, s.errorf("control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(s.data[i:])
			if r == utf8.RuneError && size == 1 {
				s.pos = i
				return nil, false, s.errorf("invalid UTF-8")
			}
			i += size
		}
	}
	s.pos = len(s.data)
	return nil, false, s.errorf("unterminated string")
}

// skipPlain returns the index of the first byte at or after i that needs a
// look (a quote, a backslash, a control character or a non-ASCII byte),
// eight bytes at a time: most of a Celery envelope is base64 body and plain
// ASCII headers. The tests may flag a byte that needs none (a borrow
// carries into the next byte); the byte loop then takes it.
func skipPlain(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		quote, backslash := x^(ones*'"'), x^(ones*'\\')
		control := (x - ones*0x20) &^ x    // a byte below 0x20
		isQuote := (quote - ones) &^ quote // a zero byte in x ^ '"'
		isBackslash := (backslash - ones) &^ backslash
		if (control|isQuote|isBackslash|x)&highs != 0 { // or a byte >= 0x80
			break
		}
	}
	return i
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if hexVal(c) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// unescape appends the decoded form of a validated string token to dst.
// A \u escape of a lone surrogate, which Python strings can hold and
// json.dumps writes, is kept as its 3-byte WTF-8 form so that re-encoding
// writes the same escape back.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(raw[i+2:]))
			i += 6
			if 0xD800 <= r && r < 0xDC00 && i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				if lo := rune(hex4(raw[i+2:])); 0xDC00 <= lo && lo < 0xE000 {
					dst = utf8.AppendRune(dst, 0x10000+(r-0xD800)<<10+(lo-0xDC00))
					i += 6
					continue
				}
			}
			dst = appendWTF8(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) int {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}

// appendWTF8 is utf8.AppendRune that also encodes surrogate code points.
func appendWTF8(dst []byte, r rune) []byte {
	if 0xD800 <= r && r < 0xE000 {
		return append(dst, 0xED, byte(0x80|(r>>6)&0x3F), byte(0x80|r&0x3F))
	}
	return utf8.AppendRune(dst, r)
}

// str reads a string or null. null reports isNull; the string is empty then.
func (s *scanner) str() (v string, isNull bool, err error) {
	if s.peek() == 'n' {
		return "", true, s.literal("null")
	}
	raw, escaped, err := s.stringToken()
	if err != nil {
		return "", false, err
	}
	if !escaped {
		return internString(raw), false, nil
	}
	return string(unescape(make([]byte, 0, len(raw)), raw)), false, nil
}

// strBytes reads a string and returns its unescaped bytes, sharing the input
// when there is nothing to unescape.
func (s *scanner) strBytes() ([]byte, error) {
	raw, escaped, err := s.stringToken()
	if err != nil || !escaped {
		return raw, err
	}
	return unescape(make([]byte, 0, len(raw)), raw), nil
}

func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.errorf("invalid literal")
	}
	s.pos += len(word)
	return nil
}

// boolean reads true, false or null.
func (s *scanner) boolean() (v, isNull bool, err error) {
	switch s.peek() {
	case 't':
		return true, false, s.literal("true")
	case 'f':
		return false, false, s.literal("false")
	case 'n':
		return false, true, s.literal("null")
	}
	return false, false, errNotType
}

// number consumes a number token and returns its text. Python's json.loads
// also accepts NaN, Infinity and -Infinity, and json.dumps writes them.
func (s *scanner) number() ([]byte, error) {
	s.ws()
	start := s.pos
	d := s.data
	i := s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == 'I':
		s.pos = i
		if err := s.literal("Infinity"); err != nil {
			return nil, err
		}
		return d[start:s.pos], nil
	case i == start && i < len(d) && d[i] == 'N':
		if err := s.literal("NaN"); err != nil {
			return nil, err
		}
		return d[start:s.pos], nil
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return nil, s.errorf("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return nil, s.errorf("invalid number")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return nil, s.errorf("invalid number")
		}
	}
	s.pos = i
	return d[start:i], nil
}

// integer reads an integral JSON number that fits an int, or null.
func (s *scanner) integer() (v int, isNull bool, err error) {
	c := s.peek()
	if c == 'n' {
		return 0, true, s.literal("null")
	}
	if c != '-' && (c < '0' || c > '9') {
		return 0, false, errNotType
	}
	text, err := s.number()
	if err != nil {
		return 0, false, err
	}
	n, ok := parseInt(text)
	if !ok {
		return 0, false, errNotType
	}
	return n, false, nil
}

// parseInt parses an integer token without exponent or fraction.
func parseInt(b []byte) (int, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false // beyond 18 digits is not a retry count or priority
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// skip consumes any value and returns its raw bytes.
func (s *scanner) skip() ([]byte, error) {
	c := s.peek()
	start := s.pos
	switch c {
	case '{', '[':
		close := byte(']')
		if c == '{' {
			close = '}'
		}
		if err := s.enter(c); err != nil {
			return nil, err
		}
		for n := 0; ; {
			ok, err := s.more(close, &n)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			if close == '}' {
				if _, _, err := s.stringToken(); err != nil {
					return nil, err
				}
				if s.peek() != ':' {
					return nil, s.errorf("expected ':' after key")
				}
				s.pos++
			}
			if _, err := s.skip(); err != nil {
				return nil, err
			}
		}
	case '"':
		if _, _, err := s.stringToken(); err != nil {
			return nil, err
		}
	case 't', 'f', 'n':
		if err := s.literal(literalFor(c)); err != nil {
			return nil, err
		}
	case 0:
		return nil, s.errorf("unexpected end of input")
	default:
		if _, err := s.number(); err != nil {
			return nil, err
		}
	}
	return s.data[start:s.pos], nil
}

func literalFor(c byte) string {
	switch c {
	case 't':
		return "true"
	case 'f':
		return "false"
	}
	return "null"
}

// wrongType consumes a value of an unexpected type and returns kind, or the
// syntax error if the value is not even JSON.
func (s *scanner) wrongType(kind error) error {
	if _, err := s.skip(); err != nil {
		return err
	}
	return kind
}

// raw consumes any value and returns a copy of its bytes, for values kept
// verbatim after the input buffer is gone.
func (s *scanner) raw() ([]byte, error) {
	b, err := s.skip()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), b...), nil
}

// validJSON reports whether b is exactly one JSON value as json.loads reads it.
func validJSON(b []byte) error {
	s := scanner{data: b}
	if _, err := s.skip(); err != nil {
		return err
	}
	return s.end()
}

// internString returns a shared string for the values that occur in nearly
// every message, so decoding them costs no allocation.
func internString(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "py":
		return "py"
	case "utf-8":
		return "utf-8"
	case "application/json":
		return ContentTypeJSON
	case "base64":
		return "base64"
	case "celery":
		return "celery"
	case "binary":
		return "binary"
	case "application/x-python-serialize":
		return ContentTypePickle
	case "application/x-gzip":
		return CompressionZlib
	}
	return string(b)
}
