package phase2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// handle takes one claimed message to its end: dead-lettered, parked, or
// handed off (with its ack) along its path. An error means nothing was
// handed off and the message should go back on the queue.
func (s *Sidecar) handle(ctx context.Context, d *celerybridge.Delivery) error {
	started := time.Now()
	dec := decide(d.Raw, *s.table.Load(), s.opts.Catalog, s.opts.WorkerQueue, s.opts.Pickle, started)
	task := unknownTask
	if dec.task != nil {
		task = dec.task.Name
	}
	var (
		outcome string
		err     error
	)
	if s.beforeHandOff != nil {
		s.beforeHandOff(ctx)
	}
	switch {
	case dec.deadLetter != "":
		outcome, err = s.deadLetter(ctx, d, task, dec.deadLetter)
	case !dec.park.IsZero():
		outcome, err = s.park(ctx, d, dec)
	case dec.path == ModePassthrough:
		outcome, err = s.passthrough(ctx, d, dec)
	case dec.path == ModeShadow:
		outcome, err = s.shadowMessage(ctx, d, dec)
	default:
		outcome, err = s.rerouteMessage(ctx, d, dec)
	}
	if err != nil {
		s.metrics.message(task, string(dec.path), "error")
		return err
	}
	s.metrics.message(task, string(dec.path), outcome)
	s.metrics.latency.observe(string(dec.path), time.Since(started))
	return nil
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

// passthrough republishes the message, unless it is a redelivery of a task
// id the side-car recorded a run for before it stopped: the first decision
// stands whatever the route says now. Only redeliveries are looked up, which
// keeps the common case free of any database access.
func (s *Sidecar) passthrough(ctx context.Context, d *celerybridge.Delivery, dec decision) (string, error) {
	if d.Redelivered && dec.task != nil && !dec.task.Opaque {
		run, err := s.reroute.Ledger().GetRunByIdempotencyKey(ctx, IdempotencyKey(dec.task.ID))
		switch {
		case errors.Is(err, core.ErrNotFound):
		case err != nil:
			return "", fmt.Errorf("phase2: look up a run for redelivered %s[%s]: %w", dec.task.Name, dec.task.ID, err)
		case run.ExecutorName == ExecutorReroute || run.ExecutorName == ExecutorShadow:
			return s.handOffRecorded(ctx, d, dec, run)
		}
	}
	return s.forward(ctx, d, dec, outcomePassed)
}

// forwardShadowed republishes a shadowed message and follows its run.
func (s *Sidecar) forwardShadowed(ctx context.Context, d *celerybridge.Delivery, dec decision, run core.RunRecord) (string, error) {
	outcome, err := s.forward(ctx, d, dec, outcomeShadowed)
	if err == nil && run.Status.Active() {
		s.follower.add(followedRun(run))
	}
	return outcome, err
}

// forward republishes the original envelope, byte for byte, to the route's
// worker queue, on the list of its priority, with the ack.
func (s *Sidecar) forward(ctx context.Context, d *celerybridge.Delivery, dec decision, outcome string) (string, error) {
	res, err := s.keys.settle(ctx, s.broker, settlement{
		tag: d.Tag, raw: d.Raw, action: "push", dest: s.keys.list(dec.route.Queue, d.Priority), payload: d.Raw,
		task: dec.task.Name, outcome: outcome,
	})
	return settleOutcome(res, "ok"), err
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

// park holds a reroute message until its eta, out of the unacked records
// (no visibility timeout can restore it early) and out of memory.
func (s *Sidecar) park(ctx context.Context, d *celerybridge.Delivery, dec decision) (string, error) {
	res, err := s.keys.settle(ctx, s.broker, settlement{
		tag: d.Tag, raw: d.Raw, action: "park", dest: s.keys.parked(s.opts.Queue),
		payload: []byte(parkedMember(s.keys.list(s.opts.Queue, d.Priority), d.Tag, d.Raw)),
		score:   float64(dec.park.UnixMicro()) / 1e6,
	})
	return settleOutcome(res, "parked"), err
}

// shadowMessage records the execution, then republishes the original.
func (s *Sidecar) shadowMessage(ctx context.Context, d *celerybridge.Delivery, dec decision) (string, error) {
	run, err := s.shadow.Submit(ctx, dec.spec)
	if err != nil {
		return "", fmt.Errorf("phase2: record shadow execution of %s[%s]: %w", dec.task.Name, dec.task.ID, err)
	}
	return s.handOffRecorded(ctx, d, dec, run)
}

// rerouteMessage submits the pipeline run, then publishes its task.
func (s *Sidecar) rerouteMessage(ctx context.Context, d *celerybridge.Delivery, dec decision) (string, error) {
	run, err := s.reroute.Submit(ctx, dec.spec)
	if err != nil {
		return "", fmt.Errorf("phase2: submit rerouted %s[%s]: %w", dec.task.Name, dec.task.ID, err)
	}
	return s.handOffRecorded(ctx, d, dec, run)
}

// handOffRecorded hands a message off the way its task id's run says: the
// first decision stands, whatever the route says now (the side-car stopped
// between recording the run and the hand-off, and the route changed). A
// run the side-car did not record (its idempotency key taken by another
// writer) is left alone, and the message passed through untracked.
func (s *Sidecar) handOffRecorded(ctx context.Context, d *celerybridge.Delivery, dec decision, run core.RunRecord) (string, error) {
	switch run.ExecutorName {
	case ExecutorReroute:
		return s.publishPipeline(ctx, d, dec, run)
	case ExecutorShadow:
		return s.forwardShadowed(ctx, d, dec, run)
	}
	s.log.Warn("phase2: the task id's execution was recorded by another writer; passing the message through untracked",
		"task", dec.task.Name, "id", dec.task.ID, "run", run.RunID, "executor", run.ExecutorName)
	return s.forward(ctx, d, dec, outcomePassed)
}

// publishPipeline hands the run's pipeline task to the Python workers with
// the ack of the original message, once per task id.
func (s *Sidecar) publishPipeline(ctx context.Context, d *celerybridge.Delivery, dec decision, run core.RunRecord) (string, error) {
	msg, err := s.celery.Message(run, run.ExternalRef)
	if err != nil {
		// Nothing Celery could read: the run fails now rather than wait
		// for a result that cannot come.
		if _, ferr := s.reroute.MarkFailed(ctx, run.RunID, &core.Failure{Type: "PipelineTaskUnbuildable", Message: err.Error(), Permanent: true}); ferr != nil && !settled(ferr) {
			return "", ferr
		}
		return s.deadLetter(ctx, d, dec.task.Name, fmt.Sprintf("%s: %s[%s]: pipeline task: %v", reasonMapping, dec.task.Name, dec.task.ID, err))
	}
	env, err := celerybridge.DecodeEnvelope(msg)
	if err != nil {
		return "", fmt.Errorf("phase2: the pipeline task just built does not decode: %w", err)
	}
	res, err := s.keys.settle(ctx, s.broker, settlement{
		tag: d.Tag, raw: d.Raw, action: "push", dest: s.keys.list(s.celery.Queue(run.Spec), env.Properties.Priority), payload: msg,
		task: dec.task.Name, outcome: outcomeRerouted, once: s.keys.once(dec.task.ID), onceTTL: s.opts.OnceTTL,
	})
	if err != nil {
		return "", err
	}
	if res != settleLost && run.Status.Active() {
		s.follower.add(followedRun(run))
	}
	return settleOutcome(res, "ok"), nil
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
