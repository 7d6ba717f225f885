package phase3

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// Options configures plan, copy, verify and repair. The zero value is ready
// to use.
type Options struct {
	// Mapping is the job mapping. Nil means the one a previous copy stored
	// in the database, else capturespine.DefaultJobMapping().
	Mapping *capturespine.JobMapping
	// LockTimeout bounds every lock wait, DDL and batch alike, so phase 3
	// never queues in front of the application for long; a timed out step
	// is retried. It stays below PostgreSQL's deadlock_timeout (1s) so that
	// in a rare lock cycle with the application, the copy gives way. Default 500ms.
	LockTimeout time.Duration
	// MaxAttempts is how often a step that keeps timing out is tried. Default 20.
	MaxAttempts int
	// BatchSize is the rows of the first batch; later batches adapt to
	// TargetBatch. Default 2000.
	BatchSize int
	// MinBatch and MaxBatch bound the adapted batch size. Defaults 100 and 100000.
	MinBatch, MaxBatch int
	// TargetBatch is the duration each batch transaction aims at: long
	// enough to amortise a commit, short enough that an application write
	// to a job being copied waits little and a pause takes effect within a
	// second. Default 250ms.
	TargetBatch time.Duration
	// CopyWorkers is how many batches the copy runs at once, each on its
	// own connection, over ranges of job ids that share no bucket: one
	// batch keeps one PostgreSQL backend, so one core, busy. Batches still
	// commit one at a time, in id order, so the checkpoint stays a single
	// job id. Default 2; 1 copies one batch after the other.
	CopyWorkers int
	// MaxRate caps the copy at this many jobs per second; 0 means no cap.
	// The control row's max_rate, when not 0, overrides it while the copy runs.
	MaxRate int
	// BusyTimeout is how long a batch keeps retrying while application
	// transactions hold the jobs ids it needs. Default 2m.
	BusyTimeout time.Duration
	// ChunkIDs is the width, in job ids, of a verify chunk. Default 10000.
	ChunkIDs int64
	// MaxListed is how many differing job ids verify lists per range. Default 20.
	MaxListed int
	// VerifyParallel is how many connections verify compares on at once,
	// each a contiguous range of job ids and of executions' heap blocks,
	// all reading one snapshot; never
	// more than the pool has free. 1 compares in one transaction. Default
	// min(4, runtime.NumCPU()).
	VerifyParallel int
	// Logger receives a record per setup step, retry, pause and (every few
	// seconds) copy progress. Default slog.Default().
	Logger *slog.Logger
	// Progress, when set, is called after every batch and while paused.
	Progress func(Progress)
	// LogEvery is the interval of progress log lines. Default 5s.
	LogEvery time.Duration

	// afterSnapshotExport, set by tests only, runs once verify's
	// coordinating transaction has exported its snapshot, before any
	// worker imports it.
	afterSnapshotExport func(ranges []idRange)
	// afterOutcome, set by tests only, runs in a copy batch's goroutine
	// between reporting its outcome and marking its turn ended: the
	// instant when the loop has the outcome but the turn is still open.
	afterOutcome func()
}

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = 500 * time.Millisecond
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 20
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.MinBatch <= 0 {
		o.MinBatch = 100
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 100000
	}
	if o.MaxBatch < o.MinBatch {
		o.MaxBatch = o.MinBatch
	}
	o.BatchSize = min(max(o.BatchSize, o.MinBatch), o.MaxBatch)
	if o.TargetBatch <= 0 {
		o.TargetBatch = 250 * time.Millisecond
	}
	if o.CopyWorkers <= 0 {
		o.CopyWorkers = 2
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 2 * time.Minute
	}
	if o.ChunkIDs <= 0 {
		o.ChunkIDs = 10000
	}
	if o.MaxListed <= 0 {
		o.MaxListed = 20
	}
	if o.VerifyParallel <= 0 {
		o.VerifyParallel = min(4, runtime.NumCPU())
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LogEvery <= 0 {
		o.LogEvery = 5 * time.Second
	}
	return o
}
