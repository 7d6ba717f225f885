package celerybridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// WaitTimeoutError is Wait giving up after its timeout. It matches
// ErrWaitTimeout with errors.Is.
type WaitTimeoutError struct {
	TaskID string
	After  time.Duration // the timeout Wait was given
	// Last is the last state seen (PENDING, STARTED, RETRY, ...).
	Last *TaskResult
}

func (e *WaitTimeoutError) Error() string {
	state := StatePending
	if e.Last != nil {
		state = e.Last.State
	}
	return fmt.Sprintf("celerybridge: task %s not ready after %v (state %s)", e.TaskID, e.After, state)
}

// Is makes errors.Is(err, ErrWaitTimeout) true.
func (e *WaitTimeoutError) Is(target error) bool { return target == ErrWaitTimeout }

// Timeout reports true, as net.Error timeouts do.
func (e *WaitTimeoutError) Timeout() bool { return true }

// errWaitTimedOut is the cause Wait's own deadline cancels with, to tell it
// from the caller's context ending.
var errWaitTimedOut = errors.New("wait timeout")

// waitRecheck is how long Wait listens before it reads the key again: a
// safety net for a subscription that silently stopped delivering.
const waitRecheck = 30 * time.Second

// waitRetries is how many connection failures in a row Wait rides out, as
// Celery's result backend retry policy (max_retries 20).
const waitRetries = 20

// Wait blocks until the task is ready (SUCCESS, FAILURE or REVOKED) and
// returns its result; a FAILURE is a result, not an error (see
// TaskResult.Err). Like AsyncResult.get() it subscribes to the key's
// channel first and only then reads the key, so a result stored in between
// is seen by the read and one stored later arrives as a message: none is
// missed. After a reconnect it reads the key again, as Celery's consumer
// does, and every 30 seconds of silence. timeout <= 0 waits until ctx ends; running out of timeout is a
// *WaitTimeoutError, ctx ending is ctx's error.
func (b *ResultBackend) Wait(ctx context.Context, taskID string, timeout time.Duration) (*TaskResult, error) {
	if taskID == "" {
		return nil, fmt.Errorf("wait for result: %w", ErrMissingTaskID)
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		wctx, cancel = context.WithTimeoutCause(ctx, timeout, errWaitTimedOut)
	}
	defer cancel()

	ps := b.rdb.Subscribe(wctx, b.Key(taskID))
	defer ps.Close()
	// Receive only watches deadlines; closing the subscription is what
	// ends a read when the context is cancelled.
	stop := context.AfterFunc(wctx, func() { _ = ps.Close() })
	defer stop()

	var last *TaskResult
	ended := func() error {
		if errors.Is(context.Cause(wctx), errWaitTimedOut) && ctx.Err() == nil {
			return &WaitTimeoutError{TaskID: taskID, After: timeout, Last: last}
		}
		return fmt.Errorf("wait for task %s: %w", taskID, ctx.Err())
	}
	failures := 0
	for {
		msg, err := ps.ReceiveTimeout(wctx, b.recheck)
		if wctx.Err() != nil {
			return nil, ended()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			msg, err = &redis.Subscription{Kind: "recheck"}, nil
		}
		if err != nil {
			// go-redis reconnects and resubscribes on the next Receive;
			// the new subscription's confirmation triggers a fresh read.
			if failures++; failures > waitRetries {
				return nil, fmt.Errorf("wait for task %s: %w", taskID, err)
			}
			select {
			case <-wctx.Done():
				return nil, ended()
			case <-time.After(min(time.Duration(failures)*100*time.Millisecond, time.Second)):
			}
			continue
		}
		failures = 0
		var r *TaskResult
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" && m.Kind != "recheck" {
				continue
			}
			b.hook(map[string]string{"subscribe": "subscribed", "recheck": "rechecked"}[m.Kind])
			if r, err = b.Get(wctx, taskID); err != nil {
				if wctx.Err() != nil {
					return nil, ended()
				}
				return nil, err
			}
			if !r.State.IsReady() {
				b.hook("checked")
			}
		case *redis.Message:
			if r, err = DecodeTaskResult([]byte(m.Payload)); err != nil || r.TaskID != taskID {
				// Not a meta for this task: the stored value decides.
				if r, err = b.Get(wctx, taskID); err != nil {
					if wctx.Err() != nil {
						return nil, ended()
					}
					return nil, err
				}
			}
		default:
			continue
		}
		if r.State.IsReady() {
			return r, nil
		}
		last = r
	}
}

func (b *ResultBackend) hook(stage string) {
	if b.waitHook != nil {
		b.waitHook(stage)
	}
}
