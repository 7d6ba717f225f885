package celerybridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/celerybridge"
)

// A Go worker stores outcomes where Python's AsyncResult.get() finds them,
// and a Go caller waits for a task a Python worker runs.
func ExampleResultBackend() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	results := celerybridge.NewResultBackend(rdb, celerybridge.ResultBackendOptions{})

	// get() in Python returns {"rows": 41}.
	err := results.StoreSuccess(ctx, "0b5e…", map[string]any{"rows": 41}, celerybridge.StoreMeta{})
	if errors.Is(err, celerybridge.ErrAlreadySucceeded) {
		fmt.Println("another worker finished it first")
	}
	// get() in Python raises ValueError('bad row', 7).
	_ = results.StoreFailure(ctx, "5f1c…", celerybridge.ExceptionInfo{
		Type: "ValueError", Module: "builtins", Message: json.RawMessage(`["bad row", 7]`),
	}, "Traceback (most recent call last):\n...", celerybridge.StoreMeta{})

	r, err := results.Wait(ctx, "9a7d…", time.Minute)
	switch {
	case errors.Is(err, celerybridge.ErrWaitTimeout):
		fmt.Println("still running")
	case err != nil:
		fmt.Println(err)
	case r.Err() != nil:
		fmt.Println("task failed:", r.Err())
	default:
		fmt.Println("returned", string(r.Result))
	}
}
