package core

import (
	"math/rand/v2"
	"time"
)

// MaxRetryDelay caps the backoff between automatic retries.
const MaxRetryDelay = time.Hour

// BackoffFunc returns how long to wait before retrying a run whose attempt
// number failed, given the spec's base RetryDelay.
type BackoffFunc func(attempt int, base time.Duration) time.Duration

// ExponentialBackoff doubles the delay with every attempt (base, 2·base,
// 4·base, … capped at MaxRetryDelay) and spreads it with "equal jitter": a
// uniformly random point in the upper half of the interval, so retries of
// many runs failed by one outage do not all land at the same instant.
func ExponentialBackoff(attempt int, base time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt && d < MaxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, MaxRetryDelay)
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}
