package celerybridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A Celery task's result lives in the result backend as one JSON object,
// the meta, under celery-task-meta-<task id>. This file is the meta as a Go
// value and its decoder; results_encode.go writes it as a 5.2.6 worker does,
// and results_backend.go moves it in and out of Redis.

// ResultState is a Celery task state (celery.states). Apps may store states
// of their own (update_state(state="PROGRESS")); they are kept as written.
type ResultState string

// The states Celery defines. PENDING is never stored: it is what a missing
// key means. RECEIVED and REJECTED occur only in events.
const (
	StatePending  ResultState = "PENDING"
	StateReceived ResultState = "RECEIVED"
	StateStarted  ResultState = "STARTED"
	StateRetry    ResultState = "RETRY"
	StateSuccess  ResultState = "SUCCESS"
	StateFailure  ResultState = "FAILURE"
	StateRevoked  ResultState = "REVOKED"
	StateRejected ResultState = "REJECTED"
)

// IsReady reports whether the task has finished (SUCCESS, FAILURE or
// REVOKED): Celery's READY_STATES, the states AsyncResult.get() returns on.
func (s ResultState) IsReady() bool {
	return s == StateSuccess || s == StateFailure || s == StateRevoked
}

// IsSuccessful reports whether the state is SUCCESS.
func (s ResultState) IsSuccessful() bool { return s == StateSuccess }

// IsException reports whether the result of this state is an exception
// (RETRY, FAILURE, REVOKED): Celery's EXCEPTION_STATES.
func (s ResultState) IsException() bool {
	return s == StateRetry || s == StateFailure || s == StateRevoked
}

// Propagates reports whether AsyncResult.get() raises the stored exception
// (FAILURE, REVOKED): Celery's PROPAGATE_STATES.
func (s ResultState) Propagates() bool { return s == StateFailure || s == StateRevoked }

var (
	// ErrMalformedResult: a stored or published result is not a meta object
	// Celery could read (not an object, no status, a member of a type Celery
	// never writes).
	ErrMalformedResult = errors.New("celerybridge: malformed task result")
	// ErrAlreadySucceeded: the task already has a SUCCESS result, which
	// Celery never replaces; nothing was written or published.
	ErrAlreadySucceeded = errors.New("celerybridge: task already has a SUCCESS result")
	// ErrWaitTimeout: Wait gave up before the task was ready; the error is
	// a *WaitTimeoutError.
	ErrWaitTimeout = errors.New("celerybridge: timed out waiting for the task result")
)

// TaskResult is one task's meta as any Celery version stores it.
type TaskResult struct {
	TaskID string
	State  ResultState
	// Result is the raw JSON, numbers and kombu __type__ wrappers intact
	// (see Value): the return value for SUCCESS, the exception object for
	// RETRY, FAILURE and REVOKED, update_state's meta for custom states;
	// null for PENDING.
	Result json.RawMessage
	// Exception is Result parsed for RETRY, FAILURE and REVOKED; nil when
	// Result is not an exception object Celery could rebuild.
	Exception *ExceptionInfo
	Traceback string
	Children  json.RawMessage // result tuples of subtasks the task sent; raw
	// DateDone is when the task became ready (zero before). Naive dates
	// (5.2, 5.3) are UTC; aware ones (5.4 +00:00, 5.5+ app timezone) keep
	// their offset.
	DateDone time.Time
	GroupID  string
	ParentID string
	// Extended holds what result_extended=True adds; nil without it.
	Extended *ExtendedMeta
	// Extra holds members this package does not model, in order: 5.6's
	// stamped_headers and stamps, or fields other writers add.
	Extra []Member
	// Raw is the stored or published JSON as read; nil for PENDING.
	Raw []byte
}

// ExceptionInfo is the exception of a RETRY, FAILURE or REVOKED result, as
// Celery's JSON serializer stores it: {"exc_type", "exc_message",
// "exc_module"}. A reader rebuilds the class by looking Type up in the
// already imported module Module; when either is unknown it makes an
// Exception subclass named Type in celery.exceptions (celery.backends.base
// for a null Module) instead, and a name that is not an exception class
// raises celery.exceptions.SecurityError.
type ExceptionInfo struct {
	Type   string // exc_type: the class's __qualname__, e.g. "ValueError"
	Module string // exc_module, e.g. "builtins"; "" is null
	// Message is exc_message raw: a JSON array of the exception's args as
	// Celery 4+ writes it (nil writes []), or a string from older writers.
	Message json.RawMessage
}

// Args decodes Message with DecodeValue into the exception's arguments; a
// string message is its one argument, as the class is called with it.
func (e *ExceptionInfo) Args() ([]any, error) {
	if len(e.Message) == 0 {
		return nil, nil
	}
	v, err := DecodeValue(e.Message)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case []any:
		return x, nil
	case nil:
		return nil, nil
	}
	return []any{v}, nil
}

// String is "Type: message", the message being the one string argument or
// else exc_message's JSON.
func (e *ExceptionInfo) String() string {
	name := e.Type
	if e.Module != "" && e.Module != "builtins" {
		name = e.Module + "." + e.Type
	}
	msg := strings.TrimSpace(string(e.Message))
	if n, err := parseNode(e.Message, false); err == nil {
		switch {
		case n.kind == nString:
			msg = n.text
		case n.kind == nList && len(n.items) == 1 && n.items[0].kind == nString:
			msg = n.items[0].text
		case n.kind == nList && len(n.items) == 0:
			msg = ""
		}
	}
	if msg == "" {
		return name
	}
	return name + ": " + msg
}

// ExtendedMeta is what a worker adds to the meta under result_extended.
type ExtendedMeta struct {
	Name   string          // the task name
	Args   json.RawMessage // positional arguments, raw
	Kwargs json.RawMessage // keyword arguments, raw
	Worker string          // hostname of the worker, "celery@host"
	// Retries is how often the task had been retried when it was stored.
	Retries int
	Queue   string // the routing key it was delivered with
}

// Value decodes Result with DecodeValue: numbers as json.Number and kombu
// 5.3+ wrappers as Go values.
func (r *TaskResult) Value() (any, error) {
	if len(r.Result) == 0 {
		return nil, nil
	}
	return DecodeValue(r.Result)
}

// Err returns what AsyncResult.get() would raise for r: a *ResultError for
// FAILURE and REVOKED, nil otherwise.
func (r *TaskResult) Err() error {
	if !r.State.Propagates() {
		return nil
	}
	e := &ResultError{TaskID: r.TaskID, State: r.State, Traceback: r.Traceback}
	if r.Exception != nil {
		e.Exception = *r.Exception
	}
	return e
}

// ResultError is a task's FAILURE or REVOKED result as a Go error.
type ResultError struct {
	TaskID    string
	State     ResultState
	Exception ExceptionInfo
	Traceback string
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("celerybridge: task %s %s: %s", e.TaskID, e.State, e.Exception.String())
}

// The meta members a reader knows, in 5.2.6's order.
const (
	metaStatus    = "status"
	metaResult    = "result"
	metaTraceback = "traceback"
	metaChildren  = "children"
	metaDateDone  = "date_done"
	metaGroupID   = "group_id"
	metaParentID  = "parent_id"
	metaName      = "name"
	metaArgs      = "args"
	metaKwargs    = "kwargs"
	metaWorker    = "worker"
	metaRetries   = "retries"
	metaQueue     = "queue"
	metaTaskID    = "task_id"
)

// DecodeTaskResult decodes a stored or published meta of any Celery
// version; the result's Raw is data itself. As in Python, a later
// duplicate member wins. Errors wrap ErrMalformedJSON, ErrMalformedResult
// or, for a date_done no version writes, ErrBadDate.
func DecodeTaskResult(data []byte) (*TaskResult, error) {
	r := &TaskResult{Raw: data}
	s := scanner{data: data}
	if s.peek() != '{' {
		if _, err := s.skip(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("result meta is not an object: %w", ErrMalformedResult)
	}
	hasStatus := false
	var ext ExtendedMeta
	hasExt := false
	err := s.members("", func(key []byte) error {
		var err error
		switch string(key) {
		case metaStatus:
			var v string
			if v, err = s.readStatus(key); err == nil {
				r.State, hasStatus = ResultState(v), true
			}
		case metaResult:
			r.Result, err = s.raw()
		case metaTraceback:
			err = s.readStringOrNull(&r.Traceback, key)
		case metaChildren:
			r.Children, err = s.raw()
		case metaDateDone:
			r.DateDone, err = s.readDateDone()
		case metaGroupID:
			err = s.readStringOrNull(&r.GroupID, key)
		case metaParentID:
			err = s.readStringOrNull(&r.ParentID, key)
		case metaTaskID:
			err = s.readStringOrNull(&r.TaskID, key)
		case metaName:
			hasExt = true
			err = s.readStringOrNull(&ext.Name, key)
		case metaArgs:
			hasExt = true
			ext.Args, err = s.raw()
		case metaKwargs:
			hasExt = true
			ext.Kwargs, err = s.raw()
		case metaWorker:
			hasExt = true
			err = s.readStringOrNull(&ext.Worker, key)
		case metaQueue:
			hasExt = true
			err = s.readStringOrNull(&ext.Queue, key)
		case metaRetries:
			hasExt = true
			var isNull bool
			ext.Retries, isNull, err = s.integer()
			if isNull {
				ext.Retries = 0
			}
			if err == errNotType {
				err = fmt.Errorf("result meta %s is not an integer: %w", key, ErrMalformedResult)
			}
		default:
			err = s.extra(&r.Extra, key)
		}
		return err
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, err
	}
	if !hasStatus {
		return nil, fmt.Errorf("result meta has no status: %w", ErrMalformedResult)
	}
	if hasExt {
		r.Extended = &ext
	}
	if r.State.IsException() {
		r.Exception = parseException(r.Result)
	}
	return r, nil
}

// readStatus reads the status, which must be a string.
func (s *scanner) readStatus(key []byte) (string, error) {
	if s.peek() != '"' {
		return "", fieldError(s.wrongType(errNotType), ErrMalformedResult, "result meta", key)
	}
	v, _, err := s.str()
	return v, err
}

// readStringOrNull reads a string member; null leaves it empty.
func (s *scanner) readStringOrNull(dst *string, key []byte) error {
	if c := s.peek(); c != '"' && c != 'n' {
		return fieldError(s.wrongType(errNotType), ErrMalformedResult, "result meta", key)
	}
	v, _, err := s.str()
	*dst = v
	return err
}

// readDateDone reads date_done: an ISO string in every version's format,
// null, or (defensively) a kombu 5.3 datetime wrapper.
func (s *scanner) readDateDone() (time.Time, error) {
	switch s.peek() {
	case 'n':
		return time.Time{}, s.literal("null")
	case '"':
		v, _, err := s.str()
		if err != nil {
			return time.Time{}, err
		}
		t, err := ParseTime(v)
		if err != nil {
			return time.Time{}, fmt.Errorf("result meta date_done: %w", err)
		}
		return t, nil
	case '{':
		raw, err := s.skip()
		if err != nil {
			return time.Time{}, err
		}
		n, err := parseNode(raw, true)
		if err == nil {
			if t, ok := n.typed.(time.Time); ok && n.kind == nTyped {
				return t, nil
			}
		}
	default:
		if _, err := s.skip(); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, fmt.Errorf("result meta date_done is not a date: %w", ErrMalformedResult)
}

// parseException reads {"exc_type", "exc_message", "exc_module"} as
// Celery's exception_to_python does; nil where it would raise instead of
// building an exception. exc_message is kept as stored.
func parseException(result json.RawMessage) *ExceptionInfo {
	s := scanner{data: result}
	if s.peek() != '{' {
		return nil
	}
	var e ExceptionInfo
	typed := false
	err := s.members("", func(key []byte) error {
		switch string(key) {
		case "exc_type":
			v, isNull, err := s.str()
			e.Type, typed = v, err == nil && !isNull
			return err
		case "exc_module":
			v, _, err := s.str()
			e.Module = v
			return err
		case "exc_message":
			b, err := s.skip()
			e.Message = b
			return err
		}
		_, err := s.skip()
		return err
	})
	if err != nil || !typed {
		return nil
	}
	return &e
}
