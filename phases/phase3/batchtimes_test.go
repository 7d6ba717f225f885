package phase3

import (
	"testing"
	"time"
)

// batchTimes reports what a sorted list of every duration would, to within
// its 2% buckets (never below, never above the maximum), in memory that does
// not grow with the number of batches.
func TestBatchTimesPercentiles(t *testing.T) {
	var empty batchTimes
	if p50, p99, maxD := empty.percentiles(); p50 != 0 || p99 != 0 || maxD != 0 {
		t.Errorf("no batches: %v %v %v", p50, p99, maxD)
	}
	near := func(got, want time.Duration) bool { // the upper bound of want's bucket
		return got >= want && float64(got) <= float64(want)*batchTimeGrowth
	}
	var bt batchTimes
	for i := 1000; i >= 1; i-- { // 1ms .. 1s, in no particular order
		bt.add(time.Duration(i) * time.Millisecond)
	}
	p50, p99, maxD := bt.percentiles()
	// A sorted list's p50 and p99 here are its 501st and 991st: 501ms, 991ms.
	if !near(p50, 501*time.Millisecond) || !near(p99, 991*time.Millisecond) || maxD != time.Second {
		t.Errorf("p50 %v, p99 %v, max %v", p50, p99, maxD)
	}

	var one batchTimes
	one.add(250 * time.Millisecond)
	if p50, p99, maxD := one.percentiles(); p50 != 250*time.Millisecond || p99 != p50 || maxD != p50 {
		t.Errorf("one batch: %v %v %v", p50, p99, maxD)
	}

	var odd batchTimes
	odd.add(0)
	odd.add(-time.Second)
	odd.add(10 * time.Hour) // beyond the last bucket
	if p50, p99, maxD := odd.percentiles(); p50 > batchTimeFloor || p99 != 10*time.Hour || maxD != 10*time.Hour {
		t.Errorf("odd durations: %v %v %v", p50, p99, maxD)
	}
}
