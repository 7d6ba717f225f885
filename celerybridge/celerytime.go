package celerybridge

import (
	"fmt"
	"time"
)

// Celery carries eta and expires as ISO 8601 strings, and each version reads
// them differently: 5.2.6 uses a regex that takes the fraction as an integer
// count of microseconds (".5" is 5 µs, nine digits overflow and the message
// is discarded) and silently drops an offset without a colon; 5.3 uses
// datetime.fromisoformat; 5.4+ dateutil. ParseTime reads all of their
// outputs correctly; FormatTime writes the one form they all agree on.

// FormatTime writes t as Celery dates are written for every version to read
// the same instant: UTC, exactly six fraction digits, "+00:00".
func FormatTime(t time.Time) string {
	var b [32]byte
	return string(appendTime(b[:0], t))
}

func appendTime(dst []byte, t time.Time) []byte {
	return append(t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000"), "+00:00"...)
}

// ParseTime reads an ISO 8601 date or date-time as any Celery or kombu
// version writes it: a fraction of 1 to 9 digits or none, an offset written
// "Z", "+00:00", "+0000" or "+00", a date alone, or no offset at all. Celery
// makes a naive time aware in the worker's timezone, which is UTC unless the
// app configures another; ParseTime returns naive times as UTC.
func ParseTime(s string) (time.Time, error) {
	p := isoParser{s: s}
	year, ok1 := p.digits(4)
	ok2 := p.byte('-')
	month, ok3 := p.digits(2)
	ok4 := p.byte('-')
	day, ok5 := p.digits(2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return time.Time{}, fmt.Errorf("%q: %w", s, ErrBadDate)
	}
	var hour, minute, sec, nsec int
	if p.more() {
		if c := p.s[p.i]; c != 'T' && c != 't' && c != ' ' {
			return time.Time{}, fmt.Errorf("%q: %w", s, ErrBadDate)
		}
		p.i++
		var ok bool
		if hour, minute, sec, nsec, ok = p.clock(); !ok {
			return time.Time{}, fmt.Errorf("%q: %w", s, ErrBadDate)
		}
	}
	loc, ok := p.offset()
	if !ok || p.more() {
		return time.Time{}, fmt.Errorf("%q: %w", s, ErrBadDate)
	}
	if !validDate(year, month, day) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("%q: out of range: %w", s, ErrBadDate)
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc), nil
}

func validDate(year, month, day int) bool {
	if year < 1 || month < 1 || month > 12 || day < 1 {
		return false
	}
	return day <= time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

type isoParser struct {
	s string
	i int
}

func (p *isoParser) more() bool { return p.i < len(p.s) }

func (p *isoParser) byte(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// digits reads exactly n decimal digits.
func (p *isoParser) digits(n int) (int, bool) {
	if len(p.s)-p.i < n {
		return 0, false
	}
	v := 0
	for _, c := range []byte(p.s[p.i : p.i+n]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	p.i += n
	return v, true
}

// clock reads HH:MM[:SS[.fraction]]; the fraction may be 1-9 digits (more are
// truncated to nanoseconds) after '.' or ','.
func (p *isoParser) clock() (hour, minute, sec, nsec int, ok bool) {
	if hour, ok = p.digits(2); !ok || !p.byte(':') {
		return 0, 0, 0, 0, false
	}
	if minute, ok = p.digits(2); !ok {
		return 0, 0, 0, 0, false
	}
	if !p.byte(':') {
		return hour, minute, 0, 0, true
	}
	if sec, ok = p.digits(2); !ok {
		return 0, 0, 0, 0, false
	}
	if !p.byte('.') && !p.byte(',') {
		return hour, minute, sec, 0, true
	}
	n := 0
	scale := 100_000_000
	for ; p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9'; p.i++ {
		nsec += int(p.s[p.i]-'0') * scale
		scale /= 10
		n++
	}
	return hour, minute, sec, nsec, n > 0
}

// offset reads nothing (naive: UTC), Z, or ±HH[[:]MM[:SS]].
func (p *isoParser) offset() (*time.Location, bool) {
	if !p.more() {
		return time.UTC, true
	}
	if p.byte('Z') || p.byte('z') {
		return time.UTC, true
	}
	sign := 1
	switch {
	case p.byte('+'):
	case p.byte('-'):
		sign = -1
	default:
		return nil, false
	}
	hh, ok := p.digits(2)
	if !ok {
		return nil, false
	}
	var mm, ss int
	if p.more() {
		colon := p.byte(':')
		if mm, ok = p.digits(2); !ok {
			return nil, false
		}
		if colon && p.byte(':') {
			if ss, ok = p.digits(2); !ok {
				return nil, false
			}
		}
	}
	if hh > 23 || mm > 59 || ss > 59 {
		return nil, false
	}
	secs := sign * (hh*3600 + mm*60 + ss)
	if secs == 0 {
		return time.UTC, true
	}
	return time.FixedZone("", secs), true
}

// celery52Time emulates celery.utils.iso8601.parse_iso8601 in 5.2.6, the
// reader of eta and expires on Debian's workers, for a string ParseTime has
// accepted: it reports the instant 5.2.6 would compute, or false where 5.2.6
// raises (and the worker discards the message).
func celery52Time(s string) (time.Time, bool) {
	p := isoParser{s: s}
	year, ok1 := p.digits(4)
	ok2 := p.byte('-')
	month, ok3 := p.digits(2)
	ok4 := p.byte('-')
	day, ok5 := p.digits(2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) || !validDate(year, month, day) {
		return time.Time{}, false
	}
	var hour, minute, sec, usec int
	loc := time.UTC // naive: made aware in the app timezone, UTC by default
	if len(s)-p.i >= 6 {
		p.i++ // the regex takes any separator character
		h, okh := p.digits(2)
		okc := p.byte(':')
		m, okm := p.digits(2)
		if okh && okc && okm {
			hour, minute = h, m
			if p.byte(':') {
				if sec, ok1 = p.digits(2); !ok1 {
					return time.Time{}, false // the regex backtracks; we stay conservative
				}
				if p.byte('.') {
					// The fraction is read as an integer number of microseconds.
					n := 0
					for ; p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9'; p.i++ {
						usec = usec*10 + int(p.s[p.i]-'0')
						if n++; n > 9 {
							return time.Time{}, false
						}
					}
					if n == 0 || usec > 999_999 {
						return time.Time{}, false
					}
				}
			}
			// Only "Z" and "±HH:MM" are offsets; anything else is ignored.
			rest := s[p.i:]
			switch {
			case len(rest) >= 1 && rest[0] == 'Z':
			case len(rest) >= 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
				q := isoParser{s: rest, i: 1}
				hh, okh := q.digits(2)
				q.i++
				mm, okm := q.digits(2)
				if okh && okm {
					off := hh*3600 + mm*60
					if rest[0] == '-' {
						off = -off
					}
					loc = time.FixedZone("", off)
				}
			}
		}
	}
	if hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, usec*1000, loc), true
}

// safeFor52 reports whether a 5.2.6 worker reads s as the same instant as
// every newer version does.
func safeFor52(s string) bool {
	want, err := ParseTime(s)
	if err != nil {
		return false
	}
	got, ok := celery52Time(s)
	return ok && got.Equal(want)
}
