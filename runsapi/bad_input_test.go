package runsapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/runsapi"
)

// Every refusal is a problem JSON with the status Python would answer,
// a code, and the offending field named.
func TestBadInput(t *testing.T) {
	t.Parallel()
	huge := `{"kind":"task","name":"x","params":{"blob":"` + strings.Repeat("x", runsapi.DefaultMaxBodyBytes) + `"}}`
	tests := []struct {
		name        string
		method      string
		target      string
		contentType string // "-" sends none
		body        string
		chunked     bool // no Content-Length: the limit must hold while reading

		status int
		code   string
		fields []string // fields named in errors, in order
		detail string   // substring of detail
		allow  string
	}{
		// Query parameters.
		{name: "unknown status", method: "GET", target: "/api/v1/runs?status=failed,bogus",
			status: 400, code: "INVALID_INPUT", fields: []string{"status"}, detail: `invalid status "bogus"`},
		{name: "unknown kind", method: "GET", target: "/api/v1/runs?kind=job",
			status: 422, code: "VALIDATION_FAILED", fields: []string{"kind"}},
		{name: "limit over 200", method: "GET", target: "/api/v1/runs?limit=201",
			status: 422, code: "VALIDATION_FAILED", fields: []string{"limit"}, detail: "from 1 to 200"},
		{name: "limit zero", method: "GET", target: "/api/v1/runs?limit=0", status: 422, code: "VALIDATION_FAILED", fields: []string{"limit"}},
		{name: "limit not a number", method: "GET", target: "/api/v1/runs?limit=ten", status: 422, code: "VALIDATION_FAILED", fields: []string{"limit"}},
		{name: "forged cursor", method: "GET", target: "/api/v1/runs?cursor=c2VjcmV0", status: 400, code: "INVALID_INPUT", fields: []string{"cursor"}},
		{name: "offset paging", method: "GET", target: "/api/v1/runs?offset=50", status: 400, code: "INVALID_INPUT", fields: []string{"offset"}, detail: "next_cursor"},
		{name: "bad datetime", method: "GET", target: "/api/v1/runs?created_after=yesterday", status: 422, code: "VALIDATION_FAILED", fields: []string{"created_after"}},
		{name: "parameter twice", method: "GET", target: "/api/v1/runs?kind=task&kind=step", status: 422, code: "VALIDATION_FAILED", fields: []string{"kind"}},
		{name: "name and pipeline disagree", method: "GET", target: "/api/v1/runs?name=a&pipeline=b", status: 422, code: "VALIDATION_FAILED", fields: []string{"pipeline"}},
		{name: "422 and 400 together", method: "GET", target: "/api/v1/runs?limit=999&status=nope",
			status: 422, code: "VALIDATION_FAILED", fields: []string{"limit", "status"}},
		{name: "children: bad limit", method: "GET", target: "/api/v1/runs/" + core.NewRunID() + "/children?limit=500",
			status: 422, code: "VALIDATION_FAILED", fields: []string{"limit"}},

		// Bodies.
		{name: "malformed JSON", method: "POST", target: "/api/v1/runs", body: `{"kind":"task",`,
			status: 422, code: "VALIDATION_FAILED", detail: "malformed JSON"},
		{name: "JSON syntax error", method: "POST", target: "/api/v1/runs", body: `{"kind":'task'}`,
			status: 422, code: "VALIDATION_FAILED", detail: "malformed JSON at byte 9"},
		{name: "data after the object", method: "POST", target: "/api/v1/runs", body: `{"kind":"task","name":"x"} {}`,
			status: 422, code: "VALIDATION_FAILED", detail: "data after the object"},
		{name: "array body", method: "POST", target: "/api/v1/runs", body: `[{"kind":"task"}]`,
			status: 422, code: "VALIDATION_FAILED", detail: "must be a JSON object, not array"},
		{name: "null body", method: "POST", target: "/api/v1/runs", body: `null`, status: 422, code: "VALIDATION_FAILED"},
		{name: "no body", method: "POST", target: "/api/v1/runs", status: 422, code: "VALIDATION_FAILED", detail: "body is required"},
		{name: "unknown field", method: "POST", target: "/api/v1/runs", body: `{"kind":"task","name":"x","colour":"red","Name":"y"}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"Name", "colour"}, detail: "Name: unknown field (and 1 more)"},
		{name: "missing kind and name", method: "POST", target: "/api/v1/runs", body: `{}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"kind", "name"}, detail: "field required"},
		{name: "every wrong type", method: "POST", target: "/api/v1/runs",
			body:   `{"kind":1,"name":null,"params":[],"metadata":"m","idempotency_key":7,"priority":null,"lane":false,"max_retries":"3","retry_delay_seconds":{}}`,
			status: 422, code: "VALIDATION_FAILED",
			fields: []string{"kind", "name", "params", "metadata", "idempotency_key", "priority", "lane", "max_retries", "retry_delay_seconds"}},
		{name: "params null", method: "POST", target: "/api/v1/runs", body: `{"kind":"task","name":"x","params":null}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"params"}, detail: "must be an object, not null"},
		{name: "unknown kind value", method: "POST", target: "/api/v1/runs", body: `{"kind":"job","name":"x"}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"kind"}},
		{name: "unknown priority", method: "POST", target: "/api/v1/runs", body: `{"kind":"task","name":"x","priority":"urgent"}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"priority"}},
		{name: "empty name", method: "POST", target: "/api/v1/runs", body: `{"kind":"task","name":""}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"name"}},
		{name: "negative retries", method: "POST", target: "/api/v1/runs", body: `{"kind":"task","name":"x","max_retries":-1}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"max_retries"}},
		{name: "fractional retries", method: "POST", target: "/api/v1/runs", body: `{"kind":"task","name":"x","max_retries":1.5}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"max_retries"}},
		{name: "delay beyond a column", method: "POST", target: "/api/v1/runs", body: `{"kind":"task","name":"x","retry_delay_seconds":1e12}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"retry_delay_seconds"}},
		{name: "parent not a UUID", method: "POST", target: "/api/v1/runs", body: `{"kind":"step","name":"x","parent_run_id":"abc"}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"parent_run_id"}, detail: "not a UUID"},
		{name: "task route sets the kind", method: "POST", target: "/api/v1/runs/task", body: `{"kind":"task","name":"x"}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"kind"}, detail: "the route sets kind task"},
		{name: "task route takes no lane", method: "POST", target: "/api/v1/runs/task", body: `{"name":"x","lane":"backfill"}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"lane"}, detail: "POST /runs takes the whole WorkSpec"},
		{name: "pipeline route takes no priority", method: "POST", target: "/api/v1/runs/pipeline", body: `{"name":"x","priority":"high"}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"priority"}},
		{name: "cancel takes no reason", method: "POST", target: "/api/v1/runs/" + core.NewRunID() + "/cancel", body: `{"reason":"abort"}`,
			status: 422, code: "VALIDATION_FAILED", fields: []string{"reason"}},
		{name: "retry body not an object", method: "POST", target: "/api/v1/runs/" + core.NewRunID() + "/retry", body: `"now"`,
			status: 422, code: "VALIDATION_FAILED", detail: "not string"},
		{name: "huge body", method: "POST", target: "/api/v1/runs", body: huge,
			status: 413, code: "PAYLOAD_TOO_LARGE", detail: "exceeds 1048576 bytes"},
		{name: "huge chunked body", method: "POST", target: "/api/v1/runs", body: huge, chunked: true,
			status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "form body", method: "POST", target: "/api/v1/runs", contentType: "application/x-www-form-urlencoded", body: "kind=task&name=x",
			status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "text body on cancel", method: "POST", target: "/api/v1/runs/" + core.NewRunID() + "/cancel", contentType: "text/plain", body: "please",
			status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},

		// Routing.
		{name: "DELETE a collection", method: "DELETE", target: "/api/v1/runs", status: 405, code: "METHOD_NOT_ALLOWED", allow: "GET, HEAD, POST"},
		{name: "PUT a run", method: "PUT", target: "/api/v1/runs/" + core.NewRunID(), body: `{}`, status: 405, code: "METHOD_NOT_ALLOWED", allow: "GET, HEAD"},
		{name: "GET cancel", method: "GET", target: "/api/v1/runs/" + core.NewRunID() + "/cancel", status: 405, code: "METHOD_NOT_ALLOWED", allow: "POST"},
		{name: "unknown route", method: "GET", target: "/api/v1/jobs", status: 404, code: "NOT_FOUND", detail: "no route for GET /api/v1/jobs"},
		{name: "trailing slash", method: "GET", target: "/api/v1/runs/", status: 404, code: "NOT_FOUND"},
	}
	b := setup(t, core.NewMemoryLedger())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body)
				}
			}
			req := httptest.NewRequest(tc.method, tc.target, body)
			if tc.chunked {
				req.ContentLength = -1
			}
			switch tc.contentType {
			case "":
				if tc.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
			case "-":
			default:
				req.Header.Set("Content-Type", tc.contentType)
			}
			rec := httptest.NewRecorder()
			b.h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			p := decodeProblem(t, rec, req.URL.Path)
			if p.Code != tc.code {
				t.Errorf("code %s, want %s", p.Code, tc.code)
			}
			if tc.fields != nil && !slices.Equal(p.fields(), tc.fields) {
				t.Errorf("fields %v, want %v (%+v)", p.fields(), tc.fields, p.Errors)
			}
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q lacks %q", p.Detail, tc.detail)
			}
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}

// What FastAPI accepts, this API accepts: a body with no Content-Type,
// JSON media types with parameters, whole numbers written as floats.
func TestLenientInput(t *testing.T) {
	t.Parallel()
	b := setup(t, core.NewMemoryLedger())
	for _, ct := range []string{"-", "application/json; charset=utf-8", "application/vnd.spine+json", "Application/JSON"} {
		req := httptest.NewRequest("POST", "/api/v1/runs", strings.NewReader(`{"kind":"task","name":"x","max_retries":3.0,"retry_delay_seconds":1e1}`))
		if ct != "-" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		b.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("Content-Type %s: %d %s", ct, rec.Code, rec.Body)
		}
		if run := decodeRun(t, rec.Body.Bytes()); run.Spec.MaxRetries != 3 || run.Spec.RetryDelay.Seconds() != 10 {
			t.Errorf("spec %+v", run.Spec)
		}
	}
	// HEAD is GET without a body.
	rec := b.do(t, "HEAD", "/api/v1/runs", "")
	if rec.Code != http.StatusOK {
		t.Errorf("HEAD: %d", rec.Code)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	d := core.NewDispatcher(core.NewMemoryLedger(), &holdExecutor{}, core.DispatcherOptions{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = d.Close() })
	quiet := slog.New(slog.DiscardHandler)
	tests := []struct {
		name   string
		opts   runsapi.Options
		mount  func(http.Handler) http.Handler
		target string
		status int
	}{
		{"default prefix", runsapi.Options{Logger: quiet}, nil, "/api/v1/runs", 200},
		{"own prefix", runsapi.Options{Prefix: "/internal/spine/", Logger: quiet}, nil, "/internal/spine/runs", 200},
		{"own prefix, old path", runsapi.Options{Prefix: "/internal/spine", Logger: quiet}, nil, "/api/v1/runs", 404},
		{"root behind StripPrefix", runsapi.Options{Prefix: "/", Logger: quiet},
			func(h http.Handler) http.Handler { return http.StripPrefix("/gw", h) }, "/gw/runs", 200},
		{"small body limit", runsapi.Options{MaxBodyBytes: 16, Logger: quiet}, nil, "POST /api/v1/runs", 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := runsapi.New(d, tc.opts)
			if tc.mount != nil {
				h = tc.mount(h)
			}
			method, target := "GET", tc.target
			var body io.Reader
			if m, rest, ok := strings.Cut(tc.target, " "); ok {
				method, target, body = m, rest, strings.NewReader(`{"kind":"task","name":"more than sixteen bytes"}`)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, target, body))
			if rec.Code != tc.status {
				t.Errorf("%s: %d %s", tc.target, rec.Code, rec.Body)
			}
		})
	}
	for _, prefix := range []string{"api/v1", "/api/{version}", "/api//v1", "/api/../v1", "/api v1"} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "not a plain path") {
					t.Errorf("prefix %q: recovered %v", prefix, r)
				}
			}()
			runsapi.New(d, runsapi.Options{Prefix: prefix})
		}()
	}
}

// Mounted on a gateway's mux behind a real server, the API serves its
// routes and leaves the gateway's own alone.
func TestMountedOnAGateway(t *testing.T) {
	t.Parallel()
	b := setup(t, core.NewMemoryLedger())
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", b.h)
	mux.HandleFunc("GET /api/v1/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	resp, err := srv.Client().Post(srv.URL+"/api/v1/runs/pipeline", "application/json", strings.NewReader(`{"name":"ingest"}`))
	if err != nil {
		t.Fatal(err)
	}
	run := decodeRun(t, mustRead(t, resp))
	if resp.StatusCode != 200 || run.Spec.Kind != core.KindPipeline {
		t.Fatalf("%d %+v", resp.StatusCode, run)
	}
	resp, err = srv.Client().Get(srv.URL + "/api/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	if body := string(mustRead(t, resp)); body != "ok" {
		t.Errorf("gateway route answered %q", body)
	}
	// A body over the limit is refused over a real connection too.
	resp, err = srv.Client().Post(srv.URL+"/api/v1/runs", "application/json", strings.NewReader(strings.Repeat(" ", 2<<20)))
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, resp)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body: %d", resp.StatusCode)
	}
}

func mustRead(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
