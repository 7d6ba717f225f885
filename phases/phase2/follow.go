package phase2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// followed is a run waiting for its Celery task's result.
type followed struct {
	runID string
	// ref is the task whose result ends the run: the original task under
	// shadow, the pipeline task under reroute.
	ref  string
	path Mode
	// origID is the original task id a reroute answers.
	origID string
	// since is when the run was created, or its eta when later: the
	// FollowTimeout counts from there.
	since   time.Time
	started bool
	// created is the run's creation, the keyset of adoption.
	created time.Time
}

func followedRun(run core.RunRecord) *followed {
	f := &followed{runID: run.RunID, ref: run.ExternalRef, path: ModeShadow, since: run.CreatedAt,
		started: run.Status == core.StatusRunning}
	if run.ExecutorName == ExecutorReroute {
		f.path = ModeReroute
		f.origID, _ = run.Spec.Metadata[metaTaskID].(string)
	}
	if eta, _ := run.Spec.Metadata[metaETA].(string); eta != "" {
		if t, err := celerybridge.ParseTime(eta); err == nil && t.After(f.since) {
			f.since = t
		}
	}
	return f
}

// follower moves the side-car's runs along their tasks' results: one pub/sub
// connection subscribed to each followed result's channel (as
// AsyncResult.get() listens, but for all of them at once), a read right
// after subscribing (for results stored before), a periodic read of all of
// them (behind lost notifications), and the adoption of runs whose side-car
// died (their state is in PostgreSQL: queued or running, by its executor
// name).
type follower struct {
	s   *Sidecar
	rdb redis.UniversalClient

	mu        sync.Mutex
	runs      map[string]*followed // by ref
	finishing map[string]bool
	pending   []string // refs to read soon
	ps        *redis.PubSub
	wake      chan struct{}
	// jobs feed the finishers, one channel each; a run always goes to the
	// same one, so its STARTED is recorded before its SUCCESS.
	jobs [4]chan finishJob
}

type finishJob struct {
	f   *followed
	res *celerybridge.TaskResult
}

func newFollower(s *Sidecar) *follower {
	rdb := s.opts.Results
	if rdb == nil {
		rdb = s.broker
	}
	fw := &follower{s: s, rdb: rdb, runs: map[string]*followed{}, finishing: map[string]bool{}, wake: make(chan struct{}, 1)}
	for i := range fw.jobs {
		fw.jobs[i] = make(chan finishJob, 256)
	}
	return fw
}

// add starts following f; a run already followed is left as it is.
func (fw *follower) add(f *followed) { fw.addMany([]*followed{f}) }

// addMany starts following fs (a batch's runs) with one SUBSCRIBE: one
// command per run would cost a write and a command each.
func (fw *follower) addMany(fs []*followed) {
	var channels []string
	fw.mu.Lock()
	for _, f := range fs {
		if f.ref == "" {
			continue
		}
		if _, ok := fw.runs[f.ref]; ok {
			continue
		}
		fw.runs[f.ref] = f
		fw.pending = append(fw.pending, f.ref)
		channels = append(channels, fw.s.results.Key(f.ref))
	}
	ps := fw.ps
	fw.mu.Unlock()
	if len(channels) == 0 {
		return
	}
	fw.s.metrics.following.Add(int64(len(channels)))
	if ps != nil {
		// Subscribe first, read after (the pending read): a result stored in
		// between is seen by the read, a later one arrives as a message.
		if err := ps.Subscribe(context.Background(), channels...); err != nil {
			fw.s.log.Debug("phase2: subscribe to results; polling covers them", "runs", len(channels), "err", err)
		}
	}
	select {
	case fw.wake <- struct{}{}:
	default:
	}
}

func (fw *follower) remove(f *followed) {
	fw.mu.Lock()
	if fw.runs[f.ref] != f {
		fw.mu.Unlock()
		return
	}
	delete(fw.runs, f.ref)
	delete(fw.finishing, f.ref)
	ps := fw.ps
	fw.mu.Unlock()
	fw.s.metrics.following.Add(-1)
	if ps != nil {
		_ = ps.Unsubscribe(context.Background(), fw.s.results.Key(f.ref))
	}
}

// run follows until ctx ends.
func (fw *follower) run(ctx context.Context) {
	ps := fw.rdb.Subscribe(ctx)
	fw.mu.Lock()
	fw.ps = ps
	channels := make([]string, 0, len(fw.runs))
	for ref := range fw.runs {
		channels = append(channels, fw.s.results.Key(ref))
	}
	fw.mu.Unlock()
	if len(channels) > 0 {
		_ = ps.Subscribe(ctx, channels...)
	}
	var wg sync.WaitGroup
	defer func() {
		fw.mu.Lock()
		fw.ps = nil
		fw.mu.Unlock()
		_ = ps.Close()
		wg.Wait()
	}()
	for _, jobs := range fw.jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-jobs:
					fw.finish(ctx, j.f, j.res)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); fw.receive(ctx, ps) }()

	fw.adopt(ctx, time.Now().Add(time.Hour)) // at start: every run nobody may be following
	poll := time.NewTicker(fw.s.opts.FollowPoll)
	defer poll.Stop()
	adopt := time.NewTicker(fw.s.opts.AdoptEvery)
	defer adopt.Stop()
	check := time.NewTicker(100 * time.Millisecond)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-fw.wake:
		case <-check.C:
		case <-poll.C:
			fw.mu.Lock()
			fw.pending = fw.pending[:0]
			for ref := range fw.runs {
				fw.pending = append(fw.pending, ref)
			}
			fw.mu.Unlock()
			fw.expire(ctx)
		case <-adopt.C:
			fw.adopt(ctx, time.Now().Add(-fw.s.opts.AdoptAfter))
		}
		fw.readPending(ctx)
	}
}

// receive handles the results published on the subscribed channels.
func (fw *follower) receive(ctx context.Context, ps *redis.PubSub) {
	ch := ps.Channel(redis.WithChannelSize(1024))
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			res, err := celerybridge.DecodeTaskResult([]byte(m.Payload))
			if err != nil {
				continue // the periodic read decides
			}
			fw.mu.Lock()
			f := fw.runs[res.TaskID]
			fw.mu.Unlock()
			if f != nil {
				fw.dispatch(ctx, f, res)
			}
		}
	}
}

// readPending reads the results of the refs waiting to be read, in
// pipelined batches.
func (fw *follower) readPending(ctx context.Context) {
	fw.mu.Lock()
	refs := fw.pending
	fw.pending = nil
	fw.mu.Unlock()
	for len(refs) > 0 && ctx.Err() == nil {
		batch := refs[:min(len(refs), 500)]
		refs = refs[len(batch):]
		cmds := make([]*redis.StringCmd, len(batch))
		_, err := fw.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, ref := range batch {
				cmds[i] = p.Get(ctx, fw.s.results.Key(ref))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() == nil {
				fw.s.log.Warn("phase2: reading followed results; the next poll retries", "err", err)
			}
			return
		}
		for i, ref := range batch {
			raw, err := cmds[i].Bytes()
			if err != nil {
				continue // PENDING
			}
			res, err := celerybridge.DecodeTaskResult(raw)
			if err != nil {
				fw.s.log.Warn("phase2: a followed result does not decode", "ref", ref, "err", err)
				continue
			}
			fw.mu.Lock()
			f := fw.runs[ref]
			fw.mu.Unlock()
			if f != nil {
				fw.dispatch(ctx, f, res)
			}
		}
	}
}

// dispatch queues the recording of a result worth recording.
func (fw *follower) dispatch(ctx context.Context, f *followed, res *celerybridge.TaskResult) {
	ready := res.State.IsReady() || res.State == celerybridge.StateRejected
	fw.mu.Lock()
	if ready {
		if fw.finishing[f.ref] {
			fw.mu.Unlock()
			return
		}
		fw.finishing[f.ref] = true
	} else if f.started || res.State != celerybridge.StateStarted {
		fw.mu.Unlock()
		return
	} else {
		f.started = true
	}
	fw.mu.Unlock()
	select {
	case fw.jobs[Bucket(f.ref)%len(fw.jobs)] <- finishJob{f: f, res: res}:
	case <-ctx.Done():
	}
}

// finish records a result: STARTED moves the run to running; a ready
// result answers the original task (reroute) and then ends the run, in that
// order, so that a crash in between leaves the run active, adopted and
// finished again.
func (fw *follower) finish(ctx context.Context, f *followed, res *celerybridge.TaskResult) {
	d := fw.s.reroute
	if !res.State.IsReady() && res.State != celerybridge.StateRejected {
		if _, err := d.MarkStarted(ctx, f.runID); err != nil && !settled(err) {
			fw.s.log.Debug("phase2: recording a run started", "run", f.runID, "err", err)
		}
		return
	}
	err := fw.end(ctx, f, res)
	if err != nil {
		fw.mu.Lock()
		delete(fw.finishing, f.ref)
		fw.mu.Unlock()
		if ctx.Err() == nil {
			fw.s.log.Warn("phase2: recording a result; the next poll retries", "run", f.runID, "task", f.ref, "err", err)
		}
		return
	}
	fw.s.metrics.runEnded(string(f.path), string(res.State))
	fw.remove(f)
}

func (fw *follower) end(ctx context.Context, f *followed, res *celerybridge.TaskResult) error {
	if f.path == ModeReroute && f.origID != "" {
		if err := fw.answer(ctx, f.origID, res); err != nil {
			return err
		}
	}
	d := fw.s.reroute
	var err error
	switch celerybridge.RunStatusOf(res.State) {
	case core.StatusCompleted:
		var result any
		if len(res.Result) > 0 {
			result = json.RawMessage(res.Result)
		}
		_, err = d.MarkCompleted(ctx, f.runID, result)
	case core.StatusCancelled:
		reason := "revoked"
		if res.Exception != nil {
			reason = "revoked: " + res.Exception.String()
		}
		_, err = d.MarkCancelled(ctx, f.runID, reason)
	default:
		_, err = d.MarkFailed(ctx, f.runID, failureOf(res))
	}
	if err != nil && !settled(err) {
		return err
	}
	return nil
}

// answer writes the original task's result as its worker would have, so
// AsyncResult(original id).get() returns or raises.
func (fw *follower) answer(ctx context.Context, origID string, res *celerybridge.TaskResult) error {
	var err error
	switch res.State {
	case celerybridge.StateSuccess:
		var v any = json.RawMessage("null")
		if len(res.Result) > 0 {
			v = json.RawMessage(res.Result)
		}
		err = fw.s.results.StoreSuccess(ctx, origID, v, celerybridge.StoreMeta{})
	case celerybridge.StateRevoked:
		reason := "revoked"
		if res.Exception != nil {
			if args, aerr := res.Exception.Args(); aerr == nil && len(args) == 1 {
				if s, ok := args[0].(string); ok {
					reason = s
				}
			}
		}
		err = fw.s.results.StoreRevoked(ctx, origID, reason, celerybridge.StoreMeta{})
	default:
		exc := celerybridge.ExceptionInfo{Type: "Exception", Module: "builtins",
			Message: json.RawMessage(fmt.Sprintf("[%q]", "pipeline task "+res.TaskID+" ended "+string(res.State)))}
		if res.Exception != nil {
			exc = *res.Exception
		}
		err = fw.s.results.StoreFailure(ctx, origID, exc, res.Traceback, celerybridge.StoreMeta{})
	}
	if errors.Is(err, celerybridge.ErrAlreadySucceeded) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("answer task %s: %w", origID, err)
	}
	return nil
}

func failureOf(res *celerybridge.TaskResult) error {
	f := &core.Failure{Type: string(res.State), Message: "task " + res.TaskID + " ended " + string(res.State)}
	if res.Exception != nil {
		f.Type, f.Message = res.Exception.Type, res.Exception.String()
	}
	return f
}

// settled reports an error saying the run already moved on (another
// replica, or Capture-Spine's own worker, recorded it): nothing to do.
func settled(err error) bool {
	return errors.Is(err, core.ErrIllegalTransition) || errors.Is(err, core.ErrConcurrencyConflict)
}

// expire fails the runs whose result has not come within FollowTimeout.
func (fw *follower) expire(ctx context.Context) {
	deadline := time.Now().Add(-fw.s.opts.FollowTimeout)
	fw.mu.Lock()
	var late []*followed
	for _, f := range fw.runs {
		if f.since.Before(deadline) && !fw.finishing[f.ref] {
			late = append(late, f)
		}
	}
	fw.mu.Unlock()
	for _, f := range late {
		exc := celerybridge.ExceptionInfo{Type: "ResultNotSeen", Module: "spine.phase2",
			Message: json.RawMessage(fmt.Sprintf("[%q]", fmt.Sprintf("no result for task %s within %s (ignore_result, an expired result, or a lost worker)", f.ref, fw.s.opts.FollowTimeout)))}
		fw.dispatch(ctx, f, &celerybridge.TaskResult{TaskID: f.ref, State: celerybridge.StateFailure, Exception: &exc})
	}
}

// selectOrphans reads a page of the side-car's active runs created before
// $3, after the keyset position ($4, $5).
const selectOrphans = `
SELECT execution_id::text, COALESCE(backend_task_id, ''), executor_name, status, created_at,
       COALESCE(metadata->>'` + metaTaskID + `', ''), COALESCE(metadata->>'` + metaETA + `', '')
FROM executions
WHERE status IN ('queued', 'running') AND executor_name IN ($1, $2) AND created_at < $3
  AND (created_at, execution_id) > ($4, $5::uuid)
ORDER BY created_at, execution_id
LIMIT 5000`

// adopt follows the side-car's active runs created before `before` that
// this replica does not follow yet.
func (fw *follower) adopt(ctx context.Context, before time.Time) {
	var (
		afterAt = time.Time{}
		afterID = "00000000-0000-0000-0000-000000000000"
		n       int
	)
	for {
		page, err := fw.orphans(ctx, before, afterAt, afterID)
		if err != nil {
			if ctx.Err() == nil {
				fw.s.log.Warn("phase2: looking for runs to follow", "err", err)
			}
			break
		}
		for _, f := range page {
			fw.mu.Lock()
			_, known := fw.runs[f.ref]
			fw.mu.Unlock()
			if !known {
				fw.add(f)
				n++
			}
		}
		if len(page) < 5000 {
			break
		}
		last := page[len(page)-1]
		afterAt, afterID = last.created, last.runID
	}
	if n > 0 {
		fw.s.log.Info("phase2: following runs no side-car was following", "runs", n)
	}
}

func (fw *follower) orphans(ctx context.Context, before, afterAt time.Time, afterID string) ([]*followed, error) {
	rows, err := fw.s.pool.Query(ctx, selectOrphans, ExecutorShadow, ExecutorReroute, before, afterAt, afterID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var page []*followed
	for rows.Next() {
		var run core.RunRecord
		var status, origID, eta string
		if err := rows.Scan(&run.RunID, &run.ExternalRef, &run.ExecutorName, &status, &run.CreatedAt, &origID, &eta); err != nil {
			return nil, err
		}
		run.Status = core.RunStatus(status)
		run.Spec.Metadata = map[string]any{metaTaskID: origID, metaETA: eta}
		f := followedRun(run)
		f.created = run.CreatedAt
		page = append(page, f)
	}
	return page, rows.Err()
}
