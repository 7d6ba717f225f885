package runsapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/spinecore/spine-go/core"
)

// DefaultPrefix is where the routes live unless Options.Prefix says
// otherwise: spine-core's API prefix.
const DefaultPrefix = "/api/v1"

// DefaultMaxBodyBytes bounds a request body unless Options.MaxBodyBytes
// says otherwise. A WorkSpec is a few hundred bytes; 1 MiB leaves room for
// large params without letting one request hold much memory.
const DefaultMaxBodyBytes = 1 << 20

// Options configures the handler New returns. The zero value serves the
// routes under /api/v1 with 1 MiB bodies, logging to slog.Default().
type Options struct {
	// Prefix is the path the routes hang under, a plain path such as
	// "/api/v1" or "/internal/spine". Default DefaultPrefix; "/" serves
	// them at the root, for a gateway that strips its own prefix first.
	Prefix string
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	// Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives server-side failures with their full error text,
	// which clients never see. Default slog.Default().
	Logger *slog.Logger
}

// api is the handler: a ServeMux of Go 1.22 method patterns, and the
// dispatcher every route delegates to.
type api struct {
	d       *core.Dispatcher
	prefix  string
	maxBody int64
	log     *slog.Logger
	mux     *http.ServeMux
}

// New returns the runs API over d, ready to mount on a gateway's mux:
//
//	mux.Handle("/api/v1/", runsapi.New(d, runsapi.Options{}))
//
// New panics if d is nil or Prefix is not a plain, clean path (no
// wildcards, no "//" or ".."), as http.ServeMux.Handle panics on a bad
// pattern: both are set-up mistakes, not request-time conditions.
func New(d *core.Dispatcher, opts Options) http.Handler {
	if d == nil {
		panic("runsapi: New with a nil dispatcher")
	}
	prefix, err := cleanPrefix(opts.Prefix)
	if err != nil {
		panic("runsapi: " + err.Error())
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &api{d: d, prefix: prefix, maxBody: opts.MaxBodyBytes, log: log.With("component", "runsapi"), mux: http.NewServeMux()}
	a.routeRuns()
	a.routeExecutions()
	return a
}

// cleanPrefix returns the prefix routes are joined to: "" for the root.
func cleanPrefix(p string) (string, error) {
	switch p {
	case "":
		return DefaultPrefix, nil
	case "/":
		return "", nil
	}
	p = strings.TrimSuffix(p, "/")
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.ContainsAny(p, "{} \t\r\n?#") {
		return "", fmt.Errorf("Options.Prefix %q is not a plain path such as %q", p, DefaultPrefix)
	}
	return p, nil
}

// handle registers h for a method and a path under the prefix.
func (a *api) handle(method, route string, h http.HandlerFunc) {
	a.mux.HandleFunc(method+" "+a.prefix+route, h)
}

// ServeHTTP routes the request. Paths and methods nothing is registered
// for get the same JSON errors as every route, not ServeMux's plain text.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, pattern := a.mux.Handler(r); pattern == "" {
		a.noRoute(w, r, h)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// noRoute asks ServeMux's own answer (404, or 405 with the Allow header)
// and writes it as a problem.
func (a *api) noRoute(w http.ResponseWriter, r *http.Request, h http.Handler) {
	probe := &headerProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		a.writeProblem(w, r, &problem{Status: http.StatusMethodNotAllowed, Code: codeMethodNotAllowed,
			Detail: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.header.Get("Allow"))})
		return
	}
	a.writeProblem(w, r, &problem{Status: http.StatusNotFound, Code: codeNotFound,
		Detail: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)})
}

// headerProbe records the status and headers a handler writes and drops
// its body.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header { return p.header }
func (p *headerProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}
func (p *headerProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}
