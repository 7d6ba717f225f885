package phase3

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// ErrMappingChanged is returned by Copy when the mapping given would map
// differently jobs a previous copy already mapped.
var ErrMappingChanged = errors.New("phase3: the job mapping changed entries a previous copy already applied")

// Progress is reported after every batch, and while the copy is paused.
type Progress struct {
	Scanned   int64         `json:"scanned"` // jobs copied, linked or rejected so far, across runs
	Copied    int64         `json:"copied"`
	Linked    int64         `json:"linked"`
	Rejected  int64         `json:"rejected"`
	Total     int64         `json:"total"` // jobs up to MaxID when the copy began
	LastID    int64         `json:"last_id"`
	MaxID     int64         `json:"max_id"`
	BatchSize int           `json:"batch_size"`
	Rate      float64       `json:"rate"` // jobs/s in this run, pauses excluded
	ETA       time.Duration `json:"eta_ns"`
	MaxRate   int           `json:"max_rate"`
	Paused    bool          `json:"paused"`
	Done      bool          `json:"done"`
}

// CopyResult is what one Copy run did.
type CopyResult struct {
	TriggerInstalled bool          `json:"trigger_installed"` // by this run
	IndexBuilt       bool          `json:"index_built"`       // by this run
	Resumed          bool          `json:"resumed"`
	AlreadyDone      bool          `json:"already_done"`
	Stopped          bool          `json:"stopped"` // by ctx, cleanly after a batch
	Batches          int64         `json:"batches"`
	RowsScanned      int64         `json:"rows_scanned"`
	RowsCopied       int64         `json:"rows_copied"`
	RowsLinked       int64         `json:"rows_linked"`
	RowsRejected     int64         `json:"rows_rejected"`
	RejectsRemapped  int64         `json:"rejects_remapped"` // rejects a new mapping could map
	Rejects          int64         `json:"rejects"`          // jobs still unmapped at the end
	Retries          int           `json:"retries"`
	OnConflict       int64         `json:"on_conflict_batches,omitempty"` // batches run with ON CONFLICT DO NOTHING (see batchSQL)
	Overlapped       int64         `json:"batches_overlapped"`            // batches started while another was in flight
	LastID           int64         `json:"last_id"`
	MaxID            int64         `json:"max_id"`
	BatchP50         time.Duration `json:"batch_p50_ns"`
	BatchP99         time.Duration `json:"batch_p99_ns"`
	BatchMax         time.Duration `json:"batch_max_ns"`
	Paused           time.Duration `json:"paused_ns"`
	Elapsed          time.Duration `json:"elapsed_ns"`
}

// Copy copies jobs into executions online (see the package comment and
// batch.go): it refuses what PlanCopy refuses, sets up phase 3's tables,
// the backend_task_id index and the trigger, then copies in batches until
// the bound. Cancelling ctx stops it after the batch in flight; the next
// Copy resumes from the checkpoint, as it does after a crash.
func Copy(ctx context.Context, pool *pgxpool.Pool, opts Options) (CopyResult, error) {
	opts = opts.withDefaults()
	start := time.Now()
	var res CopyResult
	plan, err := planCopy(ctx, pool, opts, false)
	if err != nil {
		return res, err
	}
	if err := plan.Err(); err != nil {
		return res, err
	}
	release, err := lockRunner(ctx, pool)
	if err != nil {
		return res, err
	}
	defer release()

	m, err := setup(ctx, pool, opts, &res)
	if err != nil {
		return res, err
	}
	cp, err := readCheckpoint(ctx, pool)
	if err != nil {
		return res, fmt.Errorf("phase3 copy: %w", err)
	}
	if res.RejectsRemapped, err = remapRejects(ctx, pool, opts, m, cp); err != nil {
		return res, err
	}
	err = copyLoop(ctx, pool, opts, cp, &res)
	res.Elapsed = time.Since(start)
	if n, cerr := countRejects(ctx, pool); cerr == nil {
		res.Rejects = n
	}
	return res, err
}

// setup creates what the copy needs, each step idempotent so that a copy
// killed during setup sets up again: the tables, the mapping row, the
// index, the trigger, and the bound.
func setup(ctx context.Context, pool *pgxpool.Pool, opts Options, res *CopyResult) (capturespine.JobMapping, error) {
	var m capturespine.JobMapping
	if _, err := withRetries(ctx, pool, opts, "create tables", func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, createTables)
		return err
	}); err != nil {
		return m, fmt.Errorf("phase3 copy: create %s tables: %w", "spine_phase3_*", err)
	}
	stored, haveStored, err := readMapping(ctx, pool)
	if err != nil {
		return m, err
	}
	switch {
	case opts.Mapping != nil:
		m = *opts.Mapping
		if haveStored {
			if changed := changedEntries(stored, m); len(changed) > 0 {
				return m, fmt.Errorf("%w: %s; a mapping file may only add entries once copying began (roll back to start over)",
					ErrMappingChanged, strings.Join(changed, "; "))
			}
		}
	case haveStored:
		m = stored
	default:
		m = capturespine.DefaultJobMapping()
	}
	if err := m.Validate(); err != nil {
		return m, err
	}
	pipelines, statuses, err := encodeMapping(m)
	if err != nil {
		return m, err
	}
	if _, err := withRetries(ctx, pool, opts, "store the mapping", func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, upsertMapping, pipelines, statuses, m.TriggerSource)
		return err
	}); err != nil {
		return m, fmt.Errorf("phase3 copy: store the mapping: %w", err)
	}

	if res.IndexBuilt, err = ensureTaskIDIndex(ctx, pool, opts); err != nil {
		return m, err
	}

	b, err := bindMapping()
	if err != nil {
		return m, err
	}
	if _, err := withRetries(ctx, pool, opts, "install the triggers", func(ctx context.Context, tx pgx.Tx) error {
		for _, sql := range []string{createRelink, triggerFunctionSQL(b), createTruncateFunction} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		// Each trigger only where it is missing: a resumed copy takes no
		// lock on jobs, and one set up before the TRUNCATE trigger existed
		// gains it.
		var row, truncate bool
		if err := tx.QueryRow(ctx, selectEachTriggerPresent).Scan(&row, &truncate); err != nil {
			return err
		}
		for _, t := range []struct {
			present bool
			create  string
		}{{row, createTrigger}, {truncate, createTruncateTrigger}} {
			if t.present {
				continue
			}
			res.TriggerInstalled = true
			if _, err := tx.Exec(ctx, t.create); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return m, fmt.Errorf("phase3 copy: install the triggers on jobs: %w", err)
	}
	opts.Logger.Info("phase3 copy: triggers in place", "triggers", []string{triggerName, truncateTrigger}, "installed_now", res.TriggerInstalled)

	// The bound, read only now that the trigger is committed (batch.go, 1).
	if _, err := withRetries(ctx, pool, opts, "set the bound", func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE spine_phase3_copy
			SET max_id = b.max_id, last_id = b.min_id - 1, total_rows = b.n, started_at = now(), updated_at = now()
			FROM (SELECT COALESCE(max(id), 0) AS max_id, COALESCE(min(id), 1) AS min_id, count(*) AS n FROM jobs) AS b
			WHERE spine_phase3_copy.max_id IS NULL`)
		return err
	}); err != nil {
		return m, fmt.Errorf("phase3 copy: set the bound: %w", err)
	}
	return m, nil
}

// selectTriggerPresent says whether both of phase 3's triggers are on jobs:
// the row trigger and the TRUNCATE trigger, which only work together.
const selectTriggerPresent = `SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('jobs')
    AND tgname IN ('spine_phase3_jobs_sync', 'spine_phase3_jobs_truncate')) = 2`

// selectEachTriggerPresent says, for the row trigger and the TRUNCATE
// trigger in turn, whether it is on jobs.
const selectEachTriggerPresent = `SELECT
    EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'spine_phase3_jobs_sync' AND tgrelid = to_regclass('jobs')),
    EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'spine_phase3_jobs_truncate' AND tgrelid = to_regclass('jobs'))`

// ensureTaskIDIndex builds the backend_task_id index unless a valid one
// exists, first dropping an invalid one a killed build left behind.
func ensureTaskIDIndex(ctx context.Context, pool *pgxpool.Pool, opts Options) (built bool, err error) {
	var have *string
	if err := pool.QueryRow(ctx, selectTaskIDIndex).Scan(&have); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("phase3 copy: look for a backend_task_id index: %w", err)
	}
	if have != nil {
		return false, nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	// CREATE INDEX CONCURRENTLY's lock (SHARE UPDATE EXCLUSIVE) does not
	// conflict with reads and writes, so it may wait: no lock_timeout.
	for _, sql := range []string{"SET lock_timeout = 0", "DROP INDEX CONCURRENTLY IF EXISTS " + taskIDIndex, createTaskIDIndex, "RESET lock_timeout"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) // do not pool a session with odd settings
			return false, fmt.Errorf("phase3 copy: build the backend_task_id index: %w", err)
		}
	}
	opts.Logger.Info("phase3 copy: built the backend_task_id index", "index", taskIDIndex)
	return true, nil
}

// remapRejects maps the rejects a mapping now knows, outside the range the
// copy has still to do (the copy maps those itself).
func remapRejects(ctx context.Context, pool *pgxpool.Pool, opts Options, m capturespine.JobMapping, cp Checkpoint) (int64, error) {
	rows, err := pool.Query(ctx, `SELECT job_id FROM spine_phase3_rejects AS r, spine_phase3_mapping AS spine_map
		WHERE spine_map.pipelines ? r.job_type AND spine_map.statuses ? r.status
		  AND NOT (r.job_id > $1 AND r.job_id <= $2) ORDER BY job_id`, cp.LastID, cp.MaxID)
	if err != nil {
		return 0, fmt.Errorf("phase3 copy: read rejects: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("phase3 copy: read rejects: %w", err)
	}
	for _, id := range ids {
		if _, err := syncRange(ctx, pool, opts, id, id, false); err != nil {
			return 0, fmt.Errorf("phase3 copy: map reject %d: %w", id, err)
		}
	}
	if len(ids) > 0 {
		opts.Logger.Info("phase3 copy: mapped jobs rejected before", "jobs", len(ids))
	}
	return int64(len(ids)), nil
}

// control is the control row.
type control struct {
	paused  bool
	maxRate int
}

func readControl(ctx context.Context, q querier) (control, error) {
	var c control
	err := q.QueryRow(ctx, "SELECT paused, max_rate FROM spine_phase3_control").Scan(&c.paused, &c.maxRate)
	if errors.Is(err, pgx.ErrNoRows) {
		return control{}, nil
	}
	return c, err
}

// pollEvery is how often a paused or rate-limited copy reads the control
// row, so a flip takes effect well within a second.
const pollEvery = 200 * time.Millisecond

// copyLoop copies batch after batch from the checkpoint to the bound.
//
// It keeps up to CopyWorkers batches in flight, each in its own
// transaction over the next range of ids (nextRange ends each at a bucket
// boundary, so no two share a bucket lock). A batch does its work as soon
// as it starts, then waits until the batch before it has committed before
// it links and moves the checkpoint (copyBatch): batches commit one at a
// time, in id order, so the checkpoint always says exactly which ids are
// done, and a crash loses only uncommitted batches, which the next run
// copies again. A batch whose predecessor failed rolls back.
func copyLoop(ctx context.Context, pool *pgxpool.Pool, opts Options, cp Checkpoint, res *CopyResult) error {
	res.MaxID, res.LastID = cp.MaxID, cp.LastID
	if cp.FinishedAt != nil {
		res.AlreadyDone = true
		return nil
	}
	res.Resumed = cp.Batches > 0
	b, err := bindMapping()
	if err != nil {
		return err
	}
	// The fast statement, and the one a batch falls back to when that
	// meets an execution it did not expect (batchSQL).
	fast, safe := batchSQL(b, false), batchSQL(b, true)
	var fb fallback
	n := opts.BatchSize
	if cp.BatchSize > 0 {
		n = min(max(cp.BatchSize, opts.MinBatch), opts.MaxBatch)
	}
	var (
		times       batchTimes
		begun       = time.Now()
		rateWaits   time.Duration // time spent holding back for MaxRate
		nextAllowed time.Time
		lastLog     time.Time
		wasPaused   bool
	)
	p := Progress{Scanned: cp.RowsScanned, Copied: cp.RowsCopied, Linked: cp.RowsLinked, Rejected: cp.RowsRejected,
		Total: cp.TotalRows, LastID: cp.LastID, MaxID: cp.MaxID, BatchSize: n}
	report := func(force bool) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
		if force || time.Since(lastLog) >= opts.LogEvery {
			opts.Logger.Info("phase3 copy", "scanned", p.Scanned, "total", p.Total, "copied", p.Copied, "linked", p.Linked,
				"rejected", p.Rejected, "last_id", p.LastID, "max_id", p.MaxID, "rate", int(p.Rate), "eta", p.ETA.Round(time.Second),
				"batch", p.BatchSize, "paused", p.Paused, "done", p.Done)
			lastLog = time.Now()
		}
	}
	defer func() { res.BatchP50, res.BatchP99, res.BatchMax = times.percentiles() }()

	var (
		// A batch holds its connection while it waits for its turn, and
		// the loop needs one of its own.
		workers  = max(1, min(opts.CopyWorkers, int(pool.Config().MaxConns)-1))
		results  = make(chan batchOutcome, workers) // never full: at most workers in flight
		inflight int
		last     *batchTurn // the batch dispatched last
		cursor   = cp.LastID
		pending  *batchRange
		failure  error
		seq      int64
	)
	// take records a batch that ended; outcomes arrive in commit order.
	take := func(o batchOutcome) {
		inflight--
		res.Retries += o.attempts - 1
		if o.err != nil {
			// The first failure is the cause; the batches after it only
			// rolled back. A batch cut short by a stop is no failure.
			stopped := ctx.Err() != nil && errors.Is(o.err, ctx.Err())
			if failure == nil && !stopped && !errors.Is(o.err, errPredecessorFailed) {
				failure = fmt.Errorf("phase3 copy: batch %d (ids %d..%d): %w", cp.Batches+res.Batches+1, o.r.lo+1, o.r.hi, o.err)
			}
			return
		}
		if o.safe {
			res.OnConflict++
		}
		bc := o.counts
		times.add(o.elapsed)
		res.Batches++
		res.RowsScanned += bc.scanned
		res.RowsCopied += bc.copied
		res.RowsLinked += bc.linked
		res.RowsRejected += bc.rejected
		res.LastID = o.r.hi
		// Adapt: the per-job cost of this batch (its statements only:
		// retries and the wait for its turn say nothing of it), aimed at
		// TargetBatch, moving at most 2x per batch so that one odd batch
		// cannot swing it.
		if bc.scanned > 0 {
			if perJob := bc.work / time.Duration(bc.scanned); perJob > 0 {
				want := int(opts.TargetBatch / perJob)
				n = min(max(want, n/2, opts.MinBatch), 2*n, opts.MaxBatch)
			}
		}
		p.Scanned += bc.scanned
		p.Copied += bc.copied
		p.Linked += bc.linked
		p.Rejected += bc.rejected
		p.LastID, p.BatchSize = o.r.hi, n
		if secs := (time.Since(begun) - res.Paused - rateWaits).Seconds(); secs > 0 {
			p.Rate = float64(res.RowsScanned) / secs
			if p.Rate > 0 && p.Total > p.Scanned {
				eff := p.Rate
				if p.MaxRate > 0 {
					eff = min(eff, float64(p.MaxRate))
				}
				p.ETA = time.Duration(float64(p.Total-p.Scanned) / eff * float64(time.Second))
			} else {
				p.ETA = 0
			}
		}
		report(false)
	}
	// await takes the next outcome, or returns after d (d > 0), once
	// ended is closed (when not nil), or on ctx.
	await := func(d time.Duration, ended <-chan struct{}) {
		var timeout <-chan time.Time
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case o := <-results:
			take(o)
		case <-timeout:
		case <-ended:
		case <-ctx.Done():
		}
	}
	dispatch := func(r batchRange, size int, rate float64) {
		seq++
		mySeq, before, own := seq, last, &batchTurn{done: make(chan struct{}), lastBucket: r.lastBucket()}
		last, cursor = own, r.hi
		if inflight > 0 {
			res.Overlapped++
		}
		inflight++
		go func() {
			o := batchOutcome{r: r}
			t0 := time.Now()
			useSafe := fb.useSafe(mySeq)
			o.attempts, o.err = withRetries(ctx, pool, opts, "copy batch", func(ctx context.Context, tx pgx.Tx) error {
				sql := fast
				if useSafe {
					sql = safe
				}
				bc, err := copyBatch(ctx, tx, sql, r, size, rate, before, own, opts.turnWait())
				if err != nil && !useSafe && isUniqueViolation(err) {
					useSafe = true
					fb.fellBack(mySeq)
					opts.Logger.Warn("phase3 copy: a batch met an execution it did not expect; running it with ON CONFLICT DO NOTHING (verify will show the job)",
						"ids", fmt.Sprintf("%d..%d", r.lo+1, r.hi), "err", err)
					return fmt.Errorf("%w: %w", errRetryNow, err)
				}
				o.counts = bc
				return err
			})
			o.safe, o.elapsed = useSafe, time.Since(t0)
			if o.err == nil && !useSafe {
				fb.wentThrough()
			}
			results <- o // before done: outcomes arrive in commit order
			if opts.afterOutcome != nil {
				opts.afterOutcome()
			}
			own.ok = o.err == nil
			close(own.done)
		}()
	}

	for {
		for drained := false; !drained; {
			select {
			case o := <-results:
				take(o)
			default:
				drained = true
			}
		}
		if failure != nil || ctx.Err() != nil {
			for inflight > 0 {
				take(<-results)
			}
			if failure != nil {
				return failure
			}
			res.Stopped = true
			return fmt.Errorf("phase3 copy: stopped after batch %d at job id %d (run copy again to resume): %w", cp.Batches+res.Batches, p.LastID, ctx.Err())
		}
		if inflight == workers {
			take(<-results)
			continue
		}
		c, err := readControl(ctx, pool)
		if err != nil {
			if ctx.Err() == nil {
				failure = fmt.Errorf("phase3 copy: read %s: %w", ControlTable, err)
			}
			continue
		}
		if c.paused {
			if !wasPaused {
				p.Paused, wasPaused = true, true
				opts.Logger.Info("phase3 copy: paused (UPDATE spine_phase3_control SET paused = false, or `spine-migrate phase3 resume`, to go on)", "last_id", p.LastID)
				report(true)
			}
			t0 := time.Now()
			await(pollEvery, nil)
			res.Paused += time.Since(t0)
			continue
		}
		if wasPaused {
			p.Paused, wasPaused = false, false
			nextAllowed = time.Time{}
			opts.Logger.Info("phase3 copy: resumed", "last_id", p.LastID)
		}
		rate := opts.MaxRate
		if c.maxRate > 0 {
			rate = c.maxRate
		}
		p.MaxRate = rate
		size := n
		if rate > 0 {
			size = min(size, max(opts.MinBatch, int(float64(rate)*opts.TargetBatch.Seconds())))
			if wait := time.Until(nextAllowed); wait > 0 {
				t0 := time.Now()
				await(min(wait, pollEvery), nil)
				rateWaits += time.Since(t0)
				continue
			}
		}
		if pending == nil {
			r, ok, err := nextRange(ctx, pool, cursor, p.MaxID, size)
			if err != nil {
				if ctx.Err() == nil {
					failure = fmt.Errorf("phase3 copy: after job id %d: %w", cursor, err)
				}
				continue
			}
			if !ok {
				for inflight > 0 {
					take(<-results)
				}
				if failure != nil {
					return failure
				}
				return finishCopy(ctx, pool, opts, cursor, &p, res, report)
			}
			pending = &r
		}
		// A range that shares a bucket with the batch before it (one that
		// ended mid-bucket) waits until that batch has committed. It waits
		// for the turn itself, not for an outcome: the loop may already
		// have taken that batch's outcome (sent just before its turn
		// ends), and then no outcome is coming.
		if last != nil && !last.ended() && pending.firstBucket() == last.lastBucket {
			await(0, last.done)
			continue
		}
		dispatch(*pending, size, p.Rate)
		pending = nil
		if rate > 0 {
			// Paced by the most the range can hold, so the cap holds.
			if now := time.Now(); nextAllowed.Before(now) {
				nextAllowed = now
			}
			nextAllowed = nextAllowed.Add(time.Duration(float64(size) / float64(rate) * float64(time.Second)))
		}
	}
}

// finishCopy marks the copy finished once every id up to the bound is
// copied (the checkpoint at last).
func finishCopy(ctx context.Context, pool *pgxpool.Pool, opts Options, last int64, p *Progress, res *CopyResult, report func(bool)) error {
	attempts, err := withRetries(ctx, pool, opts, "finish the copy", func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE spine_phase3_copy SET last_id = max_id, finished_at = now(), updated_at = now() WHERE last_id = $1`, last)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("the checkpoint is not at job id %d, where the last batch ended", last)
		}
		return err
	})
	res.Retries += attempts - 1
	if err != nil {
		return fmt.Errorf("phase3 copy: finish: %w", err)
	}
	p.Done, p.LastID, p.ETA = true, p.MaxID, 0
	res.LastID = p.MaxID
	report(true)
	return nil
}

// batchTurn tells the batch after this one when this one has ended: done
// is closed once it committed (ok) or gave up. blocked is set while it
// waits for ids application transactions hold.
type batchTurn struct {
	done       chan struct{}
	ok         bool
	blocked    atomic.Bool
	lastBucket int64
}

// errPredecessorFailed is a batch's answer when the batch before it gave
// up: committing would move the checkpoint past ids nobody copied.
var errPredecessorFailed = errors.New("the batch before this one failed")

// wait waits for t (the batch before; nil for none) to end. It gives up,
// so that the batch rolls back and tries again as when its own ids are
// busy, when t waits for ids an application transaction holds (that
// transaction may in turn wait for this batch's ids, a cycle no database
// sees), and after limit in any case.
func (t *batchTurn) wait(limit time.Duration) error {
	if t == nil {
		return nil
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-t.done:
			if !t.ok {
				return errPredecessorFailed
			}
			return nil
		case now := <-tick.C:
			if t.blocked.Load() {
				return fmt.Errorf("%w: the batch before it waits for ids application transactions hold", errBucketsBusy)
			}
			if now.After(deadline) {
				return fmt.Errorf("%w: the batch before it did not commit within %s", errBucketsBusy, limit)
			}
		}
	}
}

func (t *batchTurn) ended() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// turnWait is the longest a batch waits for the batch before it to commit.
func (o Options) turnWait() time.Duration { return max(o.LockTimeout, 40*o.TargetBatch) }

// batchOutcome is what a batch reports when it has ended.
type batchOutcome struct {
	r        batchRange
	counts   batchCounts
	attempts int
	safe     bool          // it ran with ON CONFLICT DO NOTHING
	elapsed  time.Duration // from its start to its commit, retries and waits included
	err      error
}

// fallback is which batches run with ON CONFLICT DO NOTHING: after a
// batch falls back, the next ones keep to it, twice as many each time it
// happens again in a row, so that a range full of executions phase 3 did
// not expect costs few failed attempts.
type fallback struct {
	mu    sync.Mutex
	run   int   // batches in the current run of fallbacks
	until int64 // batches up to this sequence number run with ON CONFLICT
}

func (f *fallback) useSafe(seq int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return seq <= f.until
}

func (f *fallback) fellBack(seq int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.run = min(max(1, 2*f.run), 64)
	f.until = max(f.until, seq+int64(f.run)-1)
}

func (f *fallback) wentThrough() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.run = 0
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// batchTimes holds the batch durations a copy reports (p50, p99, max) in
// constant memory, however many batches it runs: counts per bucket, each
// bucket 2% wider than the one before, from 100µs to an hour and a half,
// and one for all longer.
type batchTimes struct {
	counts [batchTimeBuckets]uint32
	n      int
	max    time.Duration
}

const (
	batchTimeBuckets = 900
	batchTimeFloor   = 100 * time.Microsecond
	batchTimeGrowth  = 1.02
)

// bucket is the first bucket whose upper bound is at least d.
func (t *batchTimes) bucket(d time.Duration) int {
	if d <= batchTimeFloor {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(batchTimeFloor)) / math.Log(batchTimeGrowth)))
	return min(max(i, 0), batchTimeBuckets-1)
}

// upper is bucket i's upper bound.
func (t *batchTimes) upper(i int) time.Duration {
	return time.Duration(float64(batchTimeFloor) * math.Pow(batchTimeGrowth, float64(i)))
}

func (t *batchTimes) add(d time.Duration) {
	t.counts[t.bucket(d)]++
	t.n++
	t.max = max(t.max, d)
}

// percentiles are the p50 and p99 (each the upper bound of its bucket, so
// at most 2% above the exact figure and never above the maximum) and the
// maximum.
func (t *batchTimes) percentiles() (p50, p99, maxD time.Duration) {
	if t.n == 0 {
		return 0, 0, 0
	}
	at := func(q float64) time.Duration {
		rank := min(t.n-1, int(q*float64(t.n))) // as in a sorted list
		seen := 0
		for i, c := range t.counts {
			if seen += int(c); seen > rank {
				if i == batchTimeBuckets-1 {
					return t.max // the last bucket has no upper bound
				}
				return min(t.upper(i), t.max)
			}
		}
		return t.max
	}
	return at(0.5), at(0.99), t.max
}

func countRejects(ctx context.Context, q querier) (int64, error) {
	var n int64
	if ok, err := tableExists(ctx, q, RejectsTable); err != nil || !ok {
		return 0, err
	}
	err := q.QueryRow(ctx, "SELECT count(*) FROM spine_phase3_rejects").Scan(&n)
	return n, err
}
