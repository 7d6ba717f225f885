// Package redact keeps secrets out of what spine-migrate prints: connection
// URLs shown with their password masked, and any known secret scrubbed from
// error messages and log lines, wherever a library put it.
//
// It must never be bypassed: every URL a command prints goes through URL,
// every error and log line through a Scrubber.
package redact

import (
	"context"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

const mask = "xxxxx"

// keyValuePassword matches password=... in libpq key/value connection
// strings, quoted or not.
var keyValuePassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// rawUserinfo finds the userinfo of a URL that net/url refuses to parse (a
// typo in the host, say): such a URL still carries a real password.
var rawUserinfo = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@]*)@`)

// URL returns a connection string fit to print: the password of a URL
// (postgres://, redis://, rediss://) or of a libpq key/value string masked.
func URL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), mask)
		} else if u.User != nil && u.User.Username() != "" && (u.Scheme == "redis" || u.Scheme == "rediss") {
			// redis://:secret@host and redis://secret@host both carry the
			// password in the only userinfo part.
			u.User = url.User(mask)
		}
		q := u.Query()
		for k := range q {
			if strings.EqualFold(k, "password") {
				q.Set(k, mask)
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	if m := rawUserinfo.FindStringSubmatch(s); m != nil {
		user, _, hasPassword := strings.Cut(m[2], ":")
		masked := user + ":" + mask
		if !hasPassword {
			masked = mask
		}
		return m[1] + masked + "@" + s[len(m[0]):]
	}
	return keyValuePassword.ReplaceAllString(s, "${1}"+mask)
}

// Secrets returns the passwords a connection string carries, for a Scrubber.
func Secrets(s string) []string {
	var out []string
	if m := rawUserinfo.FindStringSubmatch(s); m != nil {
		if _, p, ok := strings.Cut(m[2], ":"); ok {
			out = append(out, p)
			if dec, err := url.PathUnescape(p); err == nil {
				out = append(out, dec)
			}
		} else {
			out = append(out, m[2])
		}
	}
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if p, has := u.User.Password(); has && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		} else if u.User != nil && (u.Scheme == "redis" || u.Scheme == "rediss") && u.User.Username() != "" {
			out = append(out, u.User.Username())
		}
		for k, vs := range u.Query() {
			if strings.EqualFold(k, "password") {
				out = append(out, vs...)
			}
		}
		return out
	}
	for _, m := range keyValuePassword.FindAllStringSubmatch(s, -1) {
		out = append(out, strings.Trim(m[2], "'"))
	}
	return out
}

// Scrubber replaces known secrets in text. The zero value scrubs nothing.
type Scrubber struct {
	secrets []string
}

// Add registers secrets (empty and very short strings are ignored: masking
// every "a" in a message would hide more than it protects).
func (s *Scrubber) Add(secrets ...string) {
	for _, x := range secrets {
		if len(x) >= 3 {
			s.secrets = append(s.secrets, x)
		}
	}
}

// AddURL registers the passwords in a connection string.
func (s *Scrubber) AddURL(conn string) { s.Add(Secrets(conn)...) }

// Scrub returns text with every known secret masked.
func (s *Scrubber) Scrub(text string) string {
	for _, x := range s.secrets {
		text = strings.ReplaceAll(text, x, mask)
	}
	return text
}

// Handler returns a slog.Handler that scrubs messages and string attributes
// before h sees them.
func (s *Scrubber) Handler(h slog.Handler) slog.Handler { return &scrubHandler{s: s, next: h} }

type scrubHandler struct {
	s    *Scrubber
	next slog.Handler
}

func (h *scrubHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.s.Scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *scrubHandler) attr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.s.Scrub(a.Value.String()))
	case slog.KindGroup:
		attrs := a.Value.Group()
		out := make([]any, len(attrs))
		for i, g := range attrs {
			out[i] = h.attr(g)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, h.s.Scrub(err.Error()))
		}
	}
	return a
}

func (h *scrubHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return &scrubHandler{s: h.s, next: h.next.WithAttrs(clean)}
}

func (h *scrubHandler) WithGroup(name string) slog.Handler {
	return &scrubHandler{s: h.s, next: h.next.WithGroup(name)}
}
