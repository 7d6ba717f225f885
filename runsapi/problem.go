package runsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/spinecore/spine-go/core"
)

// Problem codes: spine-core's error codes (NOT_FOUND, CONFLICT,
// NOT_CANCELLABLE, VALIDATION_FAILED, INVALID_INPUT, UNAVAILABLE, INTERNAL)
// and the HTTP-level ones Python leaves to its framework.
const (
	codeNotFound             = "NOT_FOUND"
	codeMethodNotAllowed     = "METHOD_NOT_ALLOWED"
	codeConflict             = "CONFLICT"
	codeNotCancellable       = "NOT_CANCELLABLE"
	codeValidationFailed     = "VALIDATION_FAILED"
	codeInvalidInput         = "INVALID_INPUT"
	codePayloadTooLarge      = "PAYLOAD_TOO_LARGE"
	codeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	codeUnavailable          = "UNAVAILABLE"
	codeInternal             = "INTERNAL"
)

// Field-level codes of a VALIDATION_FAILED problem.
const (
	fieldRequired      = "REQUIRED"
	fieldUnknown       = "UNKNOWN_FIELD"
	fieldInvalidType   = "INVALID_TYPE"
	fieldInvalidValue  = "INVALID_VALUE"
	fieldMalformedJSON = "MALFORMED_JSON"
)

// retryAfterSeconds is the Retry-After of a 503: the executor's queue
// drains in well under a second when it is merely busy.
const retryAfterSeconds = 1

// problem is an error answered as spine-core's RFC 7807 ProblemDetail
// (type, title, status, detail, instance, errors), with two extension
// members: code, and run_id when a run was recorded despite the error.
type problem struct {
	Status int
	Code   string
	Detail string
	Fields []fieldError
	RunID  string
}

// fieldError is one entry of a problem's errors: spine-core's ErrorDetail.
type fieldError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Field   *string `json:"field"`
}

func (p *problem) Error() string { return p.Detail }

func newFieldError(code, field, format string, args ...any) fieldError {
	fe := fieldError{Code: code, Message: fmt.Sprintf(format, args...)}
	if field != "" {
		fe.Field = &field
	}
	return fe
}

// validationProblem is the 422 of a request that does not fit its model.
func validationProblem(fields []fieldError) *problem {
	detail := fields[0].Message
	if fields[0].Field != nil {
		detail = *fields[0].Field + ": " + detail
	}
	if len(fields) > 1 {
		detail = fmt.Sprintf("%s (and %d more)", detail, len(fields)-1)
	}
	return &problem{Status: http.StatusUnprocessableEntity, Code: codeValidationFailed, Detail: detail, Fields: fields}
}

// invalidInput is the 400 of a query value the handler refuses.
func invalidInput(field, format string, args ...any) *problem {
	fe := newFieldError(fieldInvalidValue, field, format, args...)
	return &problem{Status: http.StatusBadRequest, Code: codeInvalidInput, Detail: field + ": " + fe.Message, Fields: []fieldError{fe}}
}

type problemJSON struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail"`
	Instance string       `json:"instance"`
	Errors   []fieldError `json:"errors"`
	Code     string       `json:"code"`
	RunID    string       `json:"run_id,omitempty"`
}

func (a *api) writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	fields := p.Fields
	if fields == nil {
		fields = []fieldError{}
	}
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	// The instance is the path only: a query may carry a gateway's tokens.
	a.writeJSON(w, r, p.Status, problemJSON{
		Type: "about:blank", Title: http.StatusText(p.Status), Status: p.Status, Detail: p.Detail,
		Instance: r.URL.Path, Errors: fields, Code: p.Code, RunID: p.RunID,
	})
}

// writeJSON answers v as JSON with status.
func (a *api) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		a.log.Error("encode response", "method", r.Method, "path", r.URL.Path, "err", err)
		status = http.StatusInternalServerError
		body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"internal error","instance":"","errors":[],"code":"INTERNAL"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// fail answers err. Problems built by the request decoders go out as
// they are; the dispatcher's errors are translated from their types, so no
// text from a ledger or an executor (SQL, hosts, credentials in a URL)
// ever reaches the client: the full error goes to the log instead.
func (a *api) fail(w http.ResponseWriter, r *http.Request, runID string, err error) {
	a.failAs(w, r, problemFor(runID, err), runID, err)
}

// failAs answers p, the translation of err, logging err in full.
func (a *api) failAs(w http.ResponseWriter, r *http.Request, p *problem, runID string, err error) {
	switch {
	case p.Status >= 500:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "run_id", runID, "err", err)
	default:
		a.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	a.writeProblem(w, r, p)
}

// problemFor translates err. runID names the run the request is about.
func problemFor(runID string, err error) *problem {
	var (
		p        *problem
		illegal  *core.IllegalTransitionError
		conflict *core.ConflictError
		invalid  *core.InvalidSpecError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &illegal):
		if illegal.To == core.StatusCancelled {
			return &problem{Status: http.StatusConflict, Code: codeNotCancellable,
				Detail: fmt.Sprintf("run %s is %s: only pending, queued or running runs can be cancelled", illegal.RunID, illegal.From)}
		}
		if illegal.To == core.StatusPending {
			return &problem{Status: http.StatusConflict, Code: codeConflict,
				Detail: fmt.Sprintf("run %s is %s: only failed or dead_lettered runs can be retried", illegal.RunID, illegal.From)}
		}
		return &problem{Status: http.StatusConflict, Code: codeConflict, Detail: illegal.Error()}
	case errors.As(err, &conflict):
		// Built from typed fields; Detail is the ledger's own wording of a
		// store guard (one active execution per feed).
		detail := conflict.Error()
		if conflict.RunID == "" && conflict.Detail != "" {
			detail = conflict.Detail
		}
		return &problem{Status: http.StatusConflict, Code: codeConflict, Detail: detail}
	case errors.Is(err, core.ErrConcurrencyConflict):
		return &problem{Status: http.StatusConflict, Code: codeConflict, Detail: "another writer changed the run first; read it again and retry"}
	case errors.Is(err, core.ErrDuplicate):
		return &problem{Status: http.StatusConflict, Code: codeConflict, Detail: "a run with that id or idempotency key already exists"}
	case errors.Is(err, core.ErrNotFound):
		return &problem{Status: http.StatusNotFound, Code: codeNotFound, Detail: fmt.Sprintf("run %s not found", runID)}
	case errors.As(err, &invalid):
		return validationProblem([]fieldError{newFieldError(fieldInvalidValue, invalid.Field, "%s", invalid.Reason)})
	case errors.Is(err, core.ErrBackpressure):
		return &problem{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Detail: "the executor's queue is full; try again later"}
	case errors.Is(err, core.ErrClosed):
		return &problem{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Detail: "the dispatcher is shutting down; try again later"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &problem{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Detail: "the request ended before the dispatcher answered"}
	}
	return &problem{Status: http.StatusInternalServerError, Code: codeInternal, Detail: "internal error"}
}
