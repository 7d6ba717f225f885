package runsapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spinecore/spine-go/core"
)

// maxFieldErrors bounds the errors one answer lists: a body of a million
// unknown keys gets a short answer, not a long one.
const maxFieldErrors = 20

// maxEcho bounds how much of a client's value an error message repeats.
const maxEcho = 64

// readBody reads the request body within the size limit. A body needs a
// JSON media type, or none at all: FastAPI reads a body without
// Content-Type as JSON, and so does this API.
func (a *api) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooLarge := &problem{Status: http.StatusRequestEntityTooLarge, Code: codePayloadTooLarge,
		Detail: fmt.Sprintf("request body exceeds %d bytes", a.maxBody)}
	if r.ContentLength > a.maxBody {
		return nil, tooLarge
	}
	if r.ContentLength != 0 {
		if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
			return nil, err
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, &problem{Status: http.StatusBadRequest, Code: codeInvalidInput, Detail: "could not read the request body"}
	}
	return data, nil
}

func checkContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return &problem{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType,
		Detail: fmt.Sprintf("Content-Type %s is not JSON; send application/json", echo(ct))}
}

// specForm is the request model of a submit route: which WorkSpec fields
// its body may hold, and the kind the route fixes.
type specForm struct {
	route  string
	kind   core.Kind // "" when the body names the kind
	fields map[string]bool
}

// specFields are the WorkSpec fields of Python's WorkSpecRequest, in the
// order errors are reported.
var specFields = []string{
	"kind", "name", "params", "idempotency_key", "correlation_id", "priority", "lane",
	"parent_run_id", "trigger_source", "metadata", "max_retries", "retry_delay_seconds",
}

func fieldSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// The request models of Python's runs router: the canonical WorkSpec, and
// the task and pipeline conveniences with exactly the fields Python's
// TaskSubmitRequest and PipelineSubmitRequest have.
var (
	formRun      = specForm{route: "POST /runs", fields: fieldSet(specFields...)}
	formTask     = specForm{route: "POST /runs/task", kind: core.KindTask, fields: fieldSet("name", "params", "priority", "metadata", "idempotency_key")}
	formPipeline = specForm{route: "POST /runs/pipeline", kind: core.KindPipeline, fields: fieldSet("name", "params", "lane", "metadata", "idempotency_key")}
)

// decodeSpec reads a submit body as form's request model. Every problem is
// reported at once, each naming its field, as a 422; fields default as
// Python's WorkSpec defaults them.
func decodeSpec(body []byte, form specForm) (core.WorkSpec, error) {
	raw, err := decodeFields(body)
	if err != nil {
		return core.WorkSpec{}, err
	}
	d := &fieldDecoder{raw: raw}
	d.unknown(form)

	spec := core.NewTask("", nil) // Python's defaults: 3 retries, 60 s apart
	spec.Kind = form.kind
	if form.kind == "" {
		if s, ok := d.str("kind", true, false); ok {
			spec.Kind = core.Kind(s)
			if !spec.Kind.Valid() {
				d.add(fieldInvalidValue, "kind", "%s is not one of task, pipeline, workflow, step", echo(s))
			}
		}
	}
	if s, ok := d.str("name", true, false); ok {
		spec.Name = s
		if s == "" {
			d.add(fieldInvalidValue, "name", "must not be empty")
		}
	}
	spec.Params = d.object("params")
	spec.Metadata = d.object("metadata")
	spec.IdempotencyKey, _ = d.str("idempotency_key", false, true)
	spec.CorrelationID, _ = d.str("correlation_id", false, true)
	spec.ParentRunID, _ = d.str("parent_run_id", false, true)
	if s, ok := d.str("priority", false, false); ok {
		spec.Priority = core.Priority(s)
		if !spec.Priority.Valid() {
			d.add(fieldInvalidValue, "priority", "%s is not one of realtime, high, normal, low, slow", echo(s))
		}
	}
	spec.Lane, _ = d.str("lane", false, false)
	spec.TriggerSource, _ = d.str("trigger_source", false, false)
	if n, ok := d.integer("max_retries"); ok {
		spec.MaxRetries = int(n)
	}
	if n, ok := d.integer("retry_delay_seconds"); ok {
		spec.RetryDelay = time.Duration(n) * time.Second
	}
	if len(d.errs) == 0 {
		// What is left for core to refuse is a parent_run_id that is not
		// a UUID: the same rule the dispatcher applies.
		var invalid *core.InvalidSpecError
		if err := spec.Validate(); errors.As(err, &invalid) {
			d.add(fieldInvalidValue, invalid.Field, "%s", invalid.Reason)
		}
	}
	if err := d.err(); err != nil {
		return core.WorkSpec{}, err
	}
	return spec, nil
}

// decodeNoFields reads the body of a route that takes none (cancel, retry):
// nothing, null or an empty object.
func decodeNoFields(body []byte, route string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	raw, err := decodeFields(body)
	if err != nil {
		return err
	}
	d := &fieldDecoder{raw: raw}
	d.unknown(specForm{route: route, fields: map[string]bool{}})
	return d.err()
}

// decodeFields splits a JSON object into its members, or explains why the
// body is not one.
func decodeFields(body []byte) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, validationProblem([]fieldError{newFieldError(fieldRequired, "", "a JSON object body is required")})
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw map[string]json.RawMessage
	err := dec.Decode(&raw)
	if err == nil && raw == nil {
		return nil, validationProblem([]fieldError{newFieldError(fieldInvalidType, "", "the body must be a JSON object, not null")})
	}
	if err == nil {
		if _, trailing := dec.Token(); trailing != io.EOF {
			return nil, validationProblem([]fieldError{newFieldError(fieldMalformedJSON, "", "malformed JSON: data after the object")})
		}
		return raw, nil
	}
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return nil, validationProblem([]fieldError{newFieldError(fieldMalformedJSON, "", "malformed JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))})
	case errors.As(err, &typeErr):
		return nil, validationProblem([]fieldError{newFieldError(fieldInvalidType, "", "the body must be a JSON object, not %s", typeErr.Value)})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, validationProblem([]fieldError{newFieldError(fieldMalformedJSON, "", "malformed JSON: unexpected end of input")})
	}
	return nil, validationProblem([]fieldError{newFieldError(fieldMalformedJSON, "", "malformed JSON")})
}

// fieldDecoder reads the members of one JSON object, collecting a
// fieldError for each that does not fit.
type fieldDecoder struct {
	raw  map[string]json.RawMessage
	errs []fieldError
}

func (d *fieldDecoder) add(code, field, format string, args ...any) {
	d.errs = append(d.errs, newFieldError(code, field, format, args...))
}

func (d *fieldDecoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	errs := d.errs
	if len(errs) > maxFieldErrors {
		errs = append(errs[:maxFieldErrors:maxFieldErrors],
			newFieldError(fieldInvalidValue, "", "%d more errors not listed", len(d.errs)-maxFieldErrors))
	}
	return validationProblem(errs)
}

// unknown reports the members form does not accept, sorted.
func (d *fieldDecoder) unknown(form specForm) {
	var names []string
	for name := range d.raw {
		if !form.fields[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		field := truncate(name)
		switch {
		case name == "kind" && form.kind != "":
			d.add(fieldUnknown, field, "not accepted by %s: the route sets kind %s; POST /runs takes any kind", form.route, form.kind)
		case formRun.fields[name] && form.kind != "":
			d.add(fieldUnknown, field, "not accepted by %s; POST /runs takes the whole WorkSpec", form.route)
		default:
			d.add(fieldUnknown, field, "unknown field")
		}
	}
}

// str reads a string member. A missing member is an error if required;
// null is allowed only where Python's model says str | None.
func (d *fieldDecoder) str(field string, required, nullable bool) (string, bool) {
	raw, ok := d.raw[field]
	if !ok {
		if required {
			d.add(fieldRequired, field, "field required")
		}
		return "", false
	}
	switch t := jsonType(raw); {
	case t == "null" && nullable:
		return "", false
	case t != "string":
		d.add(fieldInvalidType, field, "must be a string, not %s", t)
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		d.add(fieldInvalidType, field, "must be a string")
		return "", false
	}
	return s, true
}

// object reads an object member, numbers kept exact; missing is {}.
func (d *fieldDecoder) object(field string) map[string]any {
	raw, ok := d.raw[field]
	if !ok {
		return map[string]any{}
	}
	if t := jsonType(raw); t != "object" {
		d.add(fieldInvalidType, field, "must be an object, not %s", t)
		return nil
	}
	m, err := core.DecodeObject(raw)
	if err != nil {
		d.add(fieldInvalidType, field, "must be an object")
		return nil
	}
	return m
}

// integer reads a whole, non-negative number that fits PostgreSQL's
// integer columns. 3.0 and 3e0 count as 3, as in Pydantic's lax mode.
func (d *fieldDecoder) integer(field string) (int64, bool) {
	raw, ok := d.raw[field]
	if !ok {
		return 0, false
	}
	if t := jsonType(raw); t != "number" {
		d.add(fieldInvalidType, field, "must be an integer, not %s", t)
		return 0, false
	}
	text := string(bytes.TrimSpace(raw))
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
			d.add(fieldInvalidValue, field, "must be an integer from 0 to %d, not %s", math.MaxInt32, echo(text))
			return 0, false
		}
		n = int64(f)
	}
	if n < 0 || n > math.MaxInt32 {
		d.add(fieldInvalidValue, field, "must be an integer from 0 to %d, not %s", math.MaxInt32, echo(text))
		return 0, false
	}
	return n, true
}

// jsonType names the JSON type of a valid JSON value.
func jsonType(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// echo quotes a client's value for an error message, cut to maxEcho.
func echo(s string) string { return strconv.Quote(truncate(s)) }

func truncate(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	cut := maxEcho
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
