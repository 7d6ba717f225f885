package celerybridge

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Celery fills the argsrepr and kwargsrepr headers with
// celery.utils.saferepr.saferepr(args, 1024): a streaming repr that truncates
// long strings at a word boundary, collapses containers nested three deep to
// "[...]", and once the budget is spent writes ", ..." followed by the
// closing brackets still pending — with the quirks of its token stream kept
// (strings are quoted with ' and only ' is escaped; a bracket whose opening
// was cut off still closes). Workers, flower and events show these strings,
// so a Go producer writes them the way a Python one would.

const (
	reprMaxLevels = 3    // saferepr's maxlevels default
	reprMaxSize   = 1024 // Celery's argsrepr_maxsize and kwargsrepr_maxsize
)

type reprKind uint8

const (
	rOpen   reprKind = iota // an opening bracket: never truncated
	rClose                  // a closing bracket: never truncated, emitted when cut
	rSep                    // ", " and ": ": counted, dropped when cut
	rQuoted                 // a string value or dict key, quoted and truncated
	rText                   // numbers, None, True, typed reprs, "[...]": truncated
	rBytes                  // a bytes value, b'...'
)

type reprToken struct {
	kind  reprKind
	s     string
	close string // for rOpen: the matching closing bracket
}

// saferepr renders n as saferepr(value, maxlen) does; tuple renders a list as
// the Python tuple Celery's args are. maxlen < 0 means no limit (None).
func saferepr(n *node, tuple bool, maxlen int) string {
	var g reprGen
	g.value(n, 0, tuple)
	return g.render(maxlen)
}

type reprGen struct{ toks []reprToken }

func (g *reprGen) value(n *node, level int, tuple bool) {
	switch n.kind {
	case nNull:
		g.toks = append(g.toks, reprToken{kind: rText, s: "None"})
	case nFalse:
		g.toks = append(g.toks, reprToken{kind: rText, s: "False"})
	case nTrue:
		g.toks = append(g.toks, reprToken{kind: rText, s: "True"})
	case nNumber:
		g.toks = append(g.toks, reprToken{kind: rText, s: pyNumberRepr(n.text)})
	case nString:
		g.toks = append(g.toks, reprToken{kind: rQuoted, s: n.text})
	case nTyped:
		if b, ok := n.typed.([]byte); ok {
			g.toks = append(g.toks, reprToken{kind: rBytes, s: string(b)})
			return
		}
		g.toks = append(g.toks, reprToken{kind: rText, s: pyRepr(n.typed)})
	case nList:
		open, close := "[", "]"
		if tuple {
			open, close = "(", ")"
			if len(n.items) == 1 {
				close = ",)"
			}
		}
		if level >= reprMaxLevels {
			g.toks = append(g.toks, reprToken{kind: rText, s: open + "..." + close})
			return
		}
		g.toks = append(g.toks, reprToken{kind: rOpen, s: open, close: close})
		for i := range n.items {
			if i > 0 {
				g.toks = append(g.toks, reprToken{kind: rSep, s: ", "})
			}
			g.value(&n.items[i], level+1, false)
		}
		g.toks = append(g.toks, reprToken{kind: rClose, s: close})
	case nObject:
		if level >= reprMaxLevels {
			g.toks = append(g.toks, reprToken{kind: rText, s: "{...}"})
			return
		}
		g.toks = append(g.toks, reprToken{kind: rOpen, s: "{", close: "}"})
		for i, k := range n.keys {
			if i > 0 {
				g.toks = append(g.toks, reprToken{kind: rSep, s: ", "})
			}
			g.toks = append(g.toks, reprToken{kind: rQuoted, s: k}, reprToken{kind: rSep, s: ": "})
			g.value(&n.items[i], level+1, false)
		}
		g.toks = append(g.toks, reprToken{kind: rClose, s: "}"})
	}
}

func (g *reprGen) render(maxlen int) string {
	limited, budget := maxlen >= 0, maxlen
	var b strings.Builder
	var pending []string // closing brackets of the containers entered so far
	for _, t := range g.toks {
		if limited && budget <= 0 {
			// The budget is spent: the token just pulled is dropped and the
			// brackets still pending are closed, innermost first.
			b.WriteString(", ...")
			switch t.kind {
			case rOpen:
				b.WriteString(t.close)
			case rClose:
				pending = pending[:len(pending)-1]
			}
			for j := len(pending) - 1; j >= 0; j-- {
				b.WriteString(pending[j])
			}
			return b.String()
		}
		var out string
		switch t.kind {
		case rOpen:
			pending = append(pending, t.close)
			out = t.s
		case rClose:
			pending = pending[:len(pending)-1]
			out = t.s
		case rSep:
			out = t.s
		case rQuoted:
			out = "'" + strings.ReplaceAll(pyTruncate(t.s, budget), "'", `\'`) + "'"
		case rText:
			out = pyTruncate(t.s, budget)
		case rBytes:
			out = reprBytes(t.s, budget)
		}
		b.WriteString(out)
		budget -= pyLen(out)
	}
	return b.String()
}

// pyTruncate is celery.utils.text.truncate: at maxlen code points or more,
// cut to maxlen, back to the last space, and append "...". No limit when
// maxlen is not positive (None or 0 in Python).
func pyTruncate(s string, maxlen int) string {
	if maxlen <= 0 || pyLen(s) < maxlen {
		return s
	}
	s = pyPrefix(s, maxlen)
	if i := strings.LastIndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	return s + "..."
}

// reprBytes is saferepr's b'...' form: the bytes as text when they are UTF-8,
// else as hex; cut to maxlen bytes (strictly longer only) with "...".
func reprBytes(s string, maxlen int) string {
	suffix := ""
	if maxlen > 0 && len(s) > maxlen {
		s, suffix = s[:maxlen], "..."
	}
	if utf8.ValidString(s) {
		return "b'" + s + suffix + "'"
	}
	return "b'" + fmt.Sprintf("%x", s) + suffix + "'"
}

// pyLen counts code points as Python's len does, a WTF-8 surrogate as one.
func pyLen(s string) int {
	n := 0
	for i := 0; i < len(s); n++ {
		i += pyCharLen(s[i:])
	}
	return n
}

func pyPrefix(s string, n int) string {
	i := 0
	for ; n > 0 && i < len(s); n-- {
		i += pyCharLen(s[i:])
	}
	return s[:i]
}

func pyCharLen(s string) int {
	if len(s) >= 3 && s[0] == 0xED && s[1] >= 0xA0 && s[1] <= 0xBF {
		return 3
	}
	_, size := utf8.DecodeRuneInString(s)
	return size
}

// pyRepr writes Python's repr() of the objects kombu's wrappers decode to.
func pyRepr(v any) string {
	switch x := v.(type) {
	case time.Time:
		f := []int{x.Year(), int(x.Month()), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond() / 1000}
		return "datetime.datetime(" + joinTrimmed(f) + ", tzinfo=" + pyTZ(x) + ")"
	case Date:
		return fmt.Sprintf("datetime.date(%d, %d, %d)", x.Year, int(x.Month), x.Day)
	case TimeOfDay:
		s := "datetime.time(" + joinTrimmed([]int{x.Hour, x.Minute, x.Second, x.Nanosecond / 1000})
		if x.Offset != nil {
			s += ", tzinfo=" + pyTZOffset(*x.Offset)
		}
		return s + ")"
	case uuid.UUID:
		return "UUID('" + x.String() + "')"
	case Decimal:
		return "Decimal('" + strings.TrimSpace(string(x)) + "')"
	}
	return fmt.Sprint(v)
}

// joinTrimmed drops a zero microsecond and then a zero second, as
// datetime.__repr__ does.
func joinTrimmed(f []int) string {
	for range 2 {
		if f[len(f)-1] == 0 {
			f = f[:len(f)-1]
		}
	}
	parts := make([]string, len(f))
	for i, n := range f {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ", ")
}

func pyTZ(t time.Time) string {
	_, off := t.Zone()
	return pyTZOffset(off)
}

func pyTZOffset(off int) string {
	switch {
	case off == 0:
		return "datetime.timezone.utc"
	case off > 0:
		return fmt.Sprintf("datetime.timezone(datetime.timedelta(seconds=%d))", off)
	}
	return fmt.Sprintf("datetime.timezone(datetime.timedelta(days=-1, seconds=%d))", 86400+off)
}
