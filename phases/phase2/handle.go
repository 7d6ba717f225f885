package phase2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// job is one claimed message on its way through a batch. It ends in one of
// three ways: settled with the batch (off), finished on its own (outcome:
// dead-lettered), or failed (err: it goes back on the queue).
type job struct {
	d       *celerybridge.Delivery
	dec     decision
	task    string // counter field
	started time.Time

	off     *settlement
	done    string          // the outcome settling it counts as: "ok", "parked"
	follow  *core.RunRecord // followed once settled, if still active
	outcome string
	err     error
}

// handleBatch takes claimed messages to their ends: dead-lettered, parked,
// or handed off (with their acks) along their paths. The runs of a batch are
// recorded in one ledger write per path and every hand-off is settled in one
// settle.lua call, each message atomically on its own: batching spares round
// trips, it does not tie messages' fates together. Messages that could not
// be handed off go back on the queue; the first such error is returned.
func (s *Sidecar) handleBatch(ctx context.Context, ds []*celerybridge.Delivery) error {
	started := time.Now()
	table := *s.table.Load()
	jobs := make([]*job, len(ds))
	var shadows, reroutes []*job
	for i, d := range ds {
		j := &job{d: d, started: started, task: unknownTask}
		if dec, ok := d.Note.(*decision); ok {
			j.dec = *dec // decided when claimed
		} else {
			j.dec = decide(d.Raw, table, s.opts.Catalog, s.opts.WorkerQueue, s.opts.Pickle, started)
		}
		if j.dec.task != nil {
			j.task = j.dec.task.Name
		}
		jobs[i] = j
		if s.beforeHandOff != nil {
			s.beforeHandOff(ctx)
		}
		switch dec := j.dec; {
		case dec.deadLetter != "":
			j.outcome, j.err = s.deadLetter(ctx, d, j.task, dec.deadLetter)
		case !dec.park.IsZero():
			s.planPark(j)
		case dec.path == ModePassthrough:
			s.planPassthrough(ctx, j)
		case dec.path == ModeShadow:
			shadows = append(shadows, j)
		default:
			reroutes = append(reroutes, j)
		}
	}
	s.record(ctx, s.shadow, shadows, "record shadow executions")
	s.record(ctx, s.reroute, reroutes, "submit rerouted runs")
	s.settle(ctx, jobs)

	var first error
	for _, j := range jobs {
		path := string(j.dec.path)
		if j.err != nil {
			s.metrics.message(j.task, path, "error")
			s.putBack(j.d)
			if first == nil {
				first = j.err
			}
			continue
		}
		s.metrics.message(j.task, path, j.outcome)
		s.metrics.latency.observe(path, time.Since(j.started))
	}
	return first
}

// settle hands off every planned job of a batch in one settle.lua call.
func (s *Sidecar) settle(ctx context.Context, jobs []*job) {
	var ss []settlement
	var settling []*job
	for _, j := range jobs {
		if j.err == nil && j.off != nil {
			ss = append(ss, *j.off)
			settling = append(settling, j)
		}
	}
	res, err := s.keys.settleMany(ctx, s.broker, ss)
	var follow []*followed
	for i, j := range settling {
		if err != nil {
			j.err = err
			continue
		}
		j.outcome = settleOutcome(res[i], j.done)
		if res[i] != settleLost && j.follow != nil && j.follow.Status.Active() {
			follow = append(follow, followedRun(*j.follow))
		}
	}
	s.follower.addMany(follow)
}

// record records the runs of one path's jobs in one ledger write, then plans
// each hand-off the way its run says. Submits are idempotent on the Celery
// task id, so a batch that failed is simply claimed and recorded again.
func (s *Sidecar) record(ctx context.Context, d *core.Dispatcher, jobs []*job, what string) {
	if len(jobs) == 0 {
		return
	}
	specs := make([]core.WorkSpec, len(jobs))
	for i, j := range jobs {
		specs[i] = j.dec.spec
	}
	runs, err := d.SubmitMany(ctx, specs)
	if err != nil {
		err = fmt.Errorf("phase2: %s (%d messages): %w", what, len(jobs), err)
		for _, j := range jobs {
			j.err = err
		}
		return
	}
	for i, j := range jobs {
		s.planRecorded(ctx, j, runs[i])
	}
}

// deadLetter moves the message to the dead-letter list with the reason and
// counts it. The transport's move is atomic with the ack; the count follows
// it (a crash in between undercounts by one, the list itself is exact).
func (s *Sidecar) deadLetter(ctx context.Context, d *celerybridge.Delivery, task, reason string) (string, error) {
	err := s.transport.DeadLetter(ctx, d, reason)
	if errors.Is(err, celerybridge.ErrNotClaimed) {
		return "lost", nil
	}
	if err != nil {
		return "", err
	}
	s.log.Warn("phase2: dead-lettered a message", "queue", d.Queue, "task", task, "reason", reason)
	s.metrics.deadLetter(reasonKind(reason))
	if err := s.keys.count(context.WithoutCancel(ctx), s.broker, task, outcomeDeadLettered); err != nil {
		s.log.Warn("phase2: counting a dead letter", "err", err)
	}
	return "dead_lettered", nil
}

// planPassthrough republishes the message, unless it is a redelivery of a
// task id the side-car recorded a run for before it stopped: the first
// decision stands whatever the route says now. Only redeliveries are looked
// up, which keeps the common case free of any database access.
func (s *Sidecar) planPassthrough(ctx context.Context, j *job) {
	dec := j.dec
	if j.d.Redelivered && dec.task != nil && !dec.task.Opaque {
		run, err := s.reroute.Ledger().GetRunByIdempotencyKey(ctx, IdempotencyKey(dec.task.ID))
		switch {
		case errors.Is(err, core.ErrNotFound):
		case err != nil:
			j.err = fmt.Errorf("phase2: look up a run for redelivered %s[%s]: %w", dec.task.Name, dec.task.ID, err)
			return
		case run.ExecutorName == ExecutorReroute || run.ExecutorName == ExecutorShadow:
			s.planRecorded(ctx, j, run)
			return
		}
	}
	s.planForward(j, outcomePassed)
}

// planForward republishes the original envelope, byte for byte, to the
// route's worker queue, on the list of its priority, with the ack.
func (s *Sidecar) planForward(j *job, outcome string) {
	j.off = &settlement{
		tag: j.d.Tag, raw: j.d.Raw, action: "push", dest: s.keys.list(j.dec.route.Queue, j.d.Priority), payload: j.d.Raw,
		task: j.dec.task.Name, outcome: outcome,
	}
	j.done = "ok"
}

func settleOutcome(res settleResult, done string) string {
	switch res {
	case settleLost:
		return "lost"
	case settleDuplicate:
		return outcomeDuplicate
	}
	return done
}

// planPark holds a reroute message until its eta, out of the unacked records
// (no visibility timeout can restore it early) and out of memory.
func (s *Sidecar) planPark(j *job) {
	j.off = &settlement{
		tag: j.d.Tag, raw: j.d.Raw, action: "park", dest: s.keys.parked(s.opts.Queue),
		payload: []byte(parkedMember(s.keys.list(s.opts.Queue, j.d.Priority), j.d.Tag, j.d.Raw)),
		score:   float64(j.dec.park.UnixMicro()) / 1e6,
	}
	j.done = "parked"
}

// planRecorded plans a hand-off the way the task id's run says: the first
// decision stands, whatever the route says now (the side-car stopped
// between recording the run and the hand-off, and the route changed). A run
// the side-car did not record (its idempotency key taken by another writer)
// is left alone, and the message passed through untracked.
func (s *Sidecar) planRecorded(ctx context.Context, j *job, run core.RunRecord) {
	switch run.ExecutorName {
	case ExecutorReroute:
		s.planPipeline(ctx, j, run)
		return
	case ExecutorShadow:
		s.planForward(j, outcomeShadowed)
		j.follow = &run
		return
	}
	s.log.Warn("phase2: the task id's execution was recorded by another writer; passing the message through untracked",
		"task", j.dec.task.Name, "id", j.dec.task.ID, "run", run.RunID, "executor", run.ExecutorName)
	s.planForward(j, outcomePassed)
}

// planPipeline hands the run's pipeline task to the Python workers with the
// ack of the original message, once per task id.
func (s *Sidecar) planPipeline(ctx context.Context, j *job, run core.RunRecord) {
	dec := j.dec
	msg, err := s.celery.Message(run, run.ExternalRef)
	if err != nil {
		// Nothing Celery could read: the run fails now rather than wait
		// for a result that cannot come.
		if _, ferr := s.reroute.MarkFailed(ctx, run.RunID, &core.Failure{Type: "PipelineTaskUnbuildable", Message: err.Error(), Permanent: true}); ferr != nil && !settled(ferr) {
			j.err = ferr
			return
		}
		j.outcome, j.err = s.deadLetter(ctx, j.d, dec.task.Name, fmt.Sprintf("%s: %s[%s]: pipeline task: %v", reasonMapping, dec.task.Name, dec.task.ID, err))
		return
	}
	j.off = &settlement{
		tag: j.d.Tag, raw: j.d.Raw, action: "push", dest: s.keys.list(s.celery.Queue(run.Spec), s.celery.Priority(run.Spec)), payload: msg,
		task: dec.task.Name, outcome: outcomeRerouted, once: s.keys.once(dec.task.ID), onceTTL: s.opts.OnceTTL,
	}
	j.done = "ok"
	j.follow = &run
}

// unparkLoop puts due parked messages back on the intercept queue.
func (s *Sidecar) unparkLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	lastCount := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := s.keys.unparkDue(ctx, s.broker, s.opts.Queue, 500)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("phase2: unparking due messages", "err", err)
				}
				break
			}
			if n < 500 {
				break
			}
		}
		if time.Since(lastCount) > 5*time.Second {
			lastCount = time.Now()
			if n, err := s.broker.ZCard(ctx, s.keys.parked(s.opts.Queue)).Result(); err == nil {
				s.metrics.parked.Store(n)
			}
		}
	}
}

// releaseParked puts back now the parked messages of tasks, due or not.
func (s *Sidecar) releaseParked(ctx context.Context, tasks map[string]bool) (int, error) {
	members, err := s.broker.ZRange(ctx, s.keys.parked(s.opts.Queue), 0, -1).Result()
	if err != nil {
		return 0, fmt.Errorf("phase2: parked messages: %w", err)
	}
	n := 0
	for _, m := range members {
		_, _, raw, ok := parseParked([]byte(m))
		if !ok {
			continue
		}
		task, err := celerybridge.DecodeTask(raw)
		if err != nil || !tasks[task.Name] {
			continue
		}
		moved, err := s.keys.unparkMember(ctx, s.broker, s.opts.Queue, m)
		if err != nil {
			return n, err
		}
		if moved {
			n++
		}
	}
	return n, nil
}
