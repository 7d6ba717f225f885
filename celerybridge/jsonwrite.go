package celerybridge

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// The writers below produce JSON exactly as Python's json.dumps does with its
// defaults, which is what kombu calls for the envelope and for JSON bodies:
// ", " and ": " separators, ensure_ascii (every non-ASCII character and DEL as
// a lowercase \uXXXX escape, surrogate pairs beyond the BMP), and floats in
// repr() form. Writing the same bytes as Celery is what makes a decoded and
// re-encoded message byte-identical to the one Celery wrote.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Bytes that are not UTF-8 become
// U+FFFD, except 3-byte surrogate encodings (WTF-8, see unescape), which are
// written back as the \udXXX escape Python wrote.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch {
		case c == '"':
			dst = append(dst, '\\', '"')
			i++
		case c == '\\':
			dst = append(dst, '\\', '\\')
			i++
		case c == '\n':
			dst = append(dst, '\\', 'n')
			i++
		case c == '\r':
			dst = append(dst, '\\', 'r')
			i++
		case c == '\t':
			dst = append(dst, '\\', 't')
			i++
		case c == '\b':
			dst = append(dst, '\\', 'b')
			i++
		case c == '\f':
			dst = append(dst, '\\', 'f')
			i++
		case c < utf8.RuneSelf: // other control characters and DEL
			dst = appendU(dst, rune(c))
			i++
		case c == 0xED && i+2 < len(s) && s[i+1] >= 0xA0 && s[i+1] <= 0xBF && s[i+2]&0xC0 == 0x80:
			dst = appendU(dst, 0xD000|rune(s[i+1]&0x3F)<<6|rune(s[i+2]&0x3F))
			i += 3
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r >= 0x10000 {
				r -= 0x10000
				dst = appendU(dst, 0xD800+(r>>10))
				dst = appendU(dst, 0xDC00+(r&0x3FF))
			} else {
				dst = appendU(dst, r) // U+FFFD for invalid bytes
			}
			i += size
		}
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// appendFloat appends f as Python's repr(float) writes it: the shortest
// round-tripping digits, positional notation for exponents -4..15 with at
// least one decimal ("1.0"), scientific otherwise ("1e-07", "1e+16"), and
// NaN / Infinity / -Infinity as json.dumps spells them.
func appendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	return appendPyRepr(dst, f)
}

// appendPyRepr is appendFloat without the JSON spelling of non-finite values.
func appendPyRepr(dst []byte, f float64) []byte {
	var scratch [32]byte
	e := strconv.AppendFloat(scratch[:0], f, 'e', -1, 64) // [-]d[.ddd]e±XX
	neg := e[0] == '-'
	if neg {
		e = e[1:]
	}
	mark := 0
	for mark < len(e) && e[mark] != 'e' {
		mark++
	}
	mant, exp := e[:mark], 0
	expNeg := e[mark+1] == '-'
	for _, c := range e[mark+2:] {
		exp = exp*10 + int(c-'0')
	}
	if expNeg {
		exp = -exp
	}
	digits := make([]byte, 0, 20)
	digits = append(digits, mant[0])
	if len(mant) > 2 {
		digits = append(digits, mant[2:]...)
	}
	if neg {
		dst = append(dst, '-')
	}
	if -4 <= exp && exp < 16 {
		point := exp + 1 // digits before the decimal point
		switch {
		case point <= 0:
			dst = append(dst, '0', '.')
			for range -point {
				dst = append(dst, '0')
			}
			dst = append(dst, digits...)
		case point >= len(digits):
			dst = append(dst, digits...)
			for range point - len(digits) {
				dst = append(dst, '0')
			}
			dst = append(dst, '.', '0')
		default:
			dst = append(dst, digits[:point]...)
			dst = append(dst, '.')
			dst = append(dst, digits[point:]...)
		}
		return dst
	}
	dst = append(dst, digits[0])
	if len(digits) > 1 {
		dst = append(dst, '.')
		dst = append(dst, digits[1:]...)
	}
	dst = append(dst, 'e')
	if exp < 0 {
		dst = append(dst, '-')
		exp = -exp
	} else {
		dst = append(dst, '+')
	}
	if exp < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(exp), 10)
}

// object writes the members of one JSON object in Python's layout.
type object struct {
	buf []byte
	n   int
}

func openObject(dst []byte) object { return object{buf: append(dst, '{')} }

func (o *object) key(k string) {
	if o.n > 0 {
		o.buf = append(o.buf, ',', ' ')
	}
	o.n++
	o.buf = appendString(o.buf, k)
	o.buf = append(o.buf, ':', ' ')
}

func (o *object) close() []byte { return append(o.buf, '}') }

func (o *object) raw(k string, v []byte) {
	o.key(k)
	o.buf = append(o.buf, v...)
}

func (o *object) str(k, v string) {
	o.key(k)
	o.buf = appendString(o.buf, v)
}

func (o *object) null(k string) {
	o.key(k)
	o.buf = append(o.buf, "null"...)
}

func (o *object) integer(k string, v int) {
	o.key(k)
	o.buf = strconv.AppendInt(o.buf, int64(v), 10)
}

func (o *object) boolean(k string, v bool) {
	o.key(k)
	o.buf = strconv.AppendBool(o.buf, v)
}

func (o *object) members(ms []Member) {
	for _, m := range ms {
		o.raw(m.Key, m.Value)
	}
}
