package celerybridge

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ResultBackendOptions configure a ResultBackend. The zero value reads and
// writes as Celery 5.2.6 does with its defaults.
type ResultBackendOptions struct {
	// KeyPrefix is prepended verbatim to every result key and channel.
	// Default: none; 5.2.6 has no prefix for results. 5.3 and 5.4 join
	// result_backend_transport_options["global_keyprefix"] on with "_",
	// 5.5+ only when it does not end in one of ":_-.": pass the prefix as
	// it appears in the keys ("app_" for an estate configured with "app").
	KeyPrefix string
	// Expires is how long a stored result lives (SETEX). Default (0):
	// one day, Celery's result_expires. Negative: no expiry, plain SET, as
	// Celery writes with result_expires 0 or None. A fraction of a second
	// is rounded up.
	Expires time.Duration
	// Extended writes result_extended's members (name, args, kwargs,
	// worker, retries, queue) from StoreMeta.Extended. Default: off.
	Extended bool
	// DateDoneLocation selects the date_done format. Default (nil): naive
	// UTC ("2024-05-01T12:00:00.123456"), as 5.2 and 5.3 write and every
	// version reads. time.UTC writes "+00:00" as 5.4 does; an app timezone
	// writes its offset as 5.5+ do. 5.2.6 reads an aware date_done too.
	DateDoneLocation *time.Location
	// Target decides how time.Time, uuid.UUID, Decimal, Date, TimeOfDay and
	// []byte in a result are written (see EncodeValue). Default:
	// TargetKombu52, plain strings every reader takes.
	Target Target
}

// StoreMeta is what a worker knows about the task besides its outcome.
type StoreMeta struct {
	// GroupID and ParentID are written when set, as a worker writes the
	// request's group and parent_id.
	GroupID, ParentID string
	// Children are the result tuples of subtasks the task sent, raw JSON.
	// Default: [], what a worker writes for a task that sent none.
	Children json.RawMessage
	// DateDone is when the task became ready; written for SUCCESS, FAILURE
	// and REVOKED only. Default: now.
	DateDone time.Time
	// Extended is written when ResultBackendOptions.Extended is set; empty
	// strings and nil arguments are written as null.
	Extended ExtendedMeta
}

// ResultBackend reads and writes Celery task results in Redis the way
// Celery's RedisBackend does, so Python's AsyncResult and Go callers see
// the same results: celery-task-meta-<id> keys holding the meta JSON, each
// write also PUBLISHed on the key's channel for waiters. Unlike Celery, the
// check for an existing SUCCESS and the write are one Lua script
// (results_store.lua), so of racing writers the first SUCCESS stays. It is
// safe for concurrent use.
type ResultBackend struct {
	rdb  redis.UniversalClient
	opts ResultBackendOptions

	// recheck is how long Wait listens before reading the key again.
	recheck time.Duration
	// waitHook, when set by a test, is called by Wait with "subscribed"
	// (subscription confirmed, before the GET), "rechecked" (before a GET
	// after recheck) and "checked" (a GET found the task not ready).
	waitHook func(stage string)
}

// NewResultBackend returns a backend over rdb.
func NewResultBackend(rdb redis.UniversalClient, opts ResultBackendOptions) *ResultBackend {
	return &ResultBackend{rdb: rdb, opts: opts, recheck: waitRecheck}
}

// taskKeyPrefix is Celery's task_keyprefix.
const taskKeyPrefix = "celery-task-meta-"

// maxResultSize is the largest value Celery's RedisBackend stores (512 MiB,
// Redis's string limit); it raises BackendStoreError beyond it.
const maxResultSize = 536870912

// Key returns the Redis key, and pub/sub channel, of the task's result.
func (b *ResultBackend) Key(taskID string) string {
	return b.opts.KeyPrefix + taskKeyPrefix + taskID
}

// Get reads the task's result. A missing key is StatePending with a null
// Result and no error, as Celery reports a task it knows nothing about.
func (b *ResultBackend) Get(ctx context.Context, taskID string) (*TaskResult, error) {
	if taskID == "" {
		return nil, fmt.Errorf("get result: %w", ErrMissingTaskID)
	}
	raw, err := b.rdb.Get(ctx, b.Key(taskID)).Bytes()
	if errors.Is(err, redis.Nil) || (err == nil && len(raw) == 0) {
		return &TaskResult{TaskID: taskID, State: StatePending, Result: json.RawMessage("null")}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get result of task %s: %w", taskID, err)
	}
	r, err := DecodeTaskResult(raw)
	if err != nil {
		return nil, fmt.Errorf("result of task %s: %w", taskID, err)
	}
	if r.TaskID == "" {
		r.TaskID = taskID
	}
	return r, nil
}

// StoreSuccess stores result as the task's return value: a Go value
// written as EncodeValue does, or json.RawMessage kept number for number.
// It returns ErrAlreadySucceeded if a SUCCESS is already stored.
func (b *ResultBackend) StoreSuccess(ctx context.Context, taskID string, result any, meta StoreMeta) error {
	if raw, ok := result.(json.RawMessage); ok && len(raw) == 0 {
		result = nil
	}
	enc, err := EncodeValue(result, b.opts.Target)
	if err != nil {
		return fmt.Errorf("store SUCCESS of task %s: result: %w", taskID, err)
	}
	return b.store(ctx, taskID, StateSuccess, enc, "", meta)
}

// StoreFailure stores the task's FAILURE with the exception it raised, so
// that AsyncResult.get() raises exc.Module's exc.Type with exc.Message's
// arguments. traceback is the formatted Python-style traceback; "" is
// null. It returns ErrAlreadySucceeded if a SUCCESS is already stored.
func (b *ResultBackend) StoreFailure(ctx context.Context, taskID string, exc ExceptionInfo, traceback string, meta StoreMeta) error {
	enc, err := appendException(nil, exc)
	if err != nil {
		return fmt.Errorf("store FAILURE of task %s: %w", taskID, err)
	}
	return b.store(ctx, taskID, StateFailure, enc, traceback, meta)
}

// StoreRetry stores the RETRY state a worker writes when a task calls
// self.retry(exc=...): the exception that caused it and its traceback.
// date_done stays null. It returns ErrAlreadySucceeded if a SUCCESS is
// already stored.
func (b *ResultBackend) StoreRetry(ctx context.Context, taskID string, exc ExceptionInfo, traceback string, meta StoreMeta) error {
	enc, err := appendException(nil, exc)
	if err != nil {
		return fmt.Errorf("store RETRY of task %s: %w", taskID, err)
	}
	return b.store(ctx, taskID, StateRetry, enc, traceback, meta)
}

// StoreRevoked stores the task as REVOKED, as a worker does for a revoked
// or expired task (reason "revoked" or "expired"): AsyncResult.get() then
// raises celery.exceptions.TaskRevokedError(reason). It returns
// ErrAlreadySucceeded if a SUCCESS is already stored.
func (b *ResultBackend) StoreRevoked(ctx context.Context, taskID string, reason string, meta StoreMeta) error {
	msg, err := EncodeValue([]any{reason}, TargetKombu52)
	if err != nil {
		return fmt.Errorf("store REVOKED of task %s: %w", taskID, err)
	}
	enc, err := appendException(nil, ExceptionInfo{Type: "TaskRevokedError", Module: "celery.exceptions", Message: msg})
	if err != nil {
		return fmt.Errorf("store REVOKED of task %s: %w", taskID, err)
	}
	return b.store(ctx, taskID, StateRevoked, enc, "", meta)
}

// StoreState stores any other state with its result, as Celery's
// store_result does: STARTED with {"pid", "hostname"}, or an app's custom
// state with its meta (update_state). An ExceptionInfo result is written as
// the exception object. date_done is written
// for ready states only. It returns ErrAlreadySucceeded if a SUCCESS is
// already stored.
func (b *ResultBackend) StoreState(ctx context.Context, taskID string, state ResultState, result any, meta StoreMeta) error {
	if state == "" || state == StatePending {
		return fmt.Errorf("store result of task %s: state %q is never stored: %w", taskID, state, ErrUnencodable)
	}
	var enc []byte
	var err error
	switch e := result.(type) {
	case ExceptionInfo:
		enc, err = appendException(nil, e)
	case *ExceptionInfo:
		enc, err = appendException(nil, *e)
	default:
		enc, err = EncodeValue(result, b.opts.Target)
	}
	if err != nil {
		return fmt.Errorf("store %s of task %s: result: %w", state, taskID, err)
	}
	return b.store(ctx, taskID, state, enc, "", meta)
}

//go:embed results_store.lua
var storeScriptSource string

var storeScript = redis.NewScript(storeScriptSource)

func (b *ResultBackend) store(ctx context.Context, taskID string, state ResultState, result []byte, traceback string, meta StoreMeta) error {
	if taskID == "" {
		return fmt.Errorf("store %s result: %w", state, ErrMissingTaskID)
	}
	m := resultMeta{state: state, result: result, traceback: traceback,
		groupID: meta.GroupID, parentID: meta.ParentID, taskID: taskID}
	var err error
	m.children = []byte("[]")
	if meta.Children != nil {
		if m.children, err = layout(meta.Children, "children"); err != nil {
			return fmt.Errorf("store %s of task %s: %w", state, taskID, err)
		}
	}
	if state.IsReady() {
		done := meta.DateDone
		if done.IsZero() {
			done = time.Now()
		}
		m.dateDone = formatDateDone(done, b.opts.DateDoneLocation)
	}
	if b.opts.Extended {
		x := meta.Extended
		if x.Args, err = layout(x.Args, "args"); err == nil {
			x.Kwargs, err = layout(x.Kwargs, "kwargs")
		}
		if err != nil {
			return fmt.Errorf("store %s of task %s: extended: %w", state, taskID, err)
		}
		m.extended = &x
	}
	payload := appendResultMeta(nil, &m)
	if len(payload) > maxResultSize {
		return fmt.Errorf("store %s of task %s: %d bytes is more than Redis stores: %w", state, taskID, len(payload), ErrUnencodable)
	}
	n, err := storeScript.Run(ctx, b.rdb, []string{b.Key(taskID)}, payload, b.expirySeconds()).Int()
	switch {
	case err != nil && strings.HasPrefix(err.Error(), "UNREADABLE"):
		return fmt.Errorf("store %s of task %s: %v: %w", state, taskID, err, ErrMalformedResult)
	case err != nil:
		return fmt.Errorf("store %s of task %s: %w", state, taskID, err)
	case n == 0:
		return fmt.Errorf("store %s of task %s: %w", state, taskID, ErrAlreadySucceeded)
	}
	return nil
}

// expirySeconds is the SETEX time: Celery's int(result_expires), where 0
// means plain SET.
func (b *ResultBackend) expirySeconds() string {
	switch d := b.opts.Expires; {
	case d == 0:
		return "86400"
	case d < 0:
		return "0"
	default:
		return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
	}
}
