package phase3_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spinecore/spine-go/phases/phase3"
)

// progressLog records what a running copy reports.
type progressLog struct {
	mu   sync.Mutex
	at   []time.Time
	seen []phase3.Progress
}

func (l *progressLog) add(p phase3.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at, l.seen = append(l.at, time.Now()), append(l.seen, p)
}

func (l *progressLog) last() (time.Time, phase3.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		return time.Time{}, phase3.Progress{}
	}
	return l.at[len(l.at)-1], l.seen[len(l.seen)-1]
}

func (b *bundle) waitFor(what string, cond func() bool) {
	b.t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A copy honours --max-rate, pauses within a second of any connection
// flipping the control row, resumes at the rate the row then says, and
// stops cleanly after its batch when cancelled (SIGINT): the next copy
// resumes from the checkpoint.
func TestPauseResumeRateAndStop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var log progressLog
	opts := b.opts
	opts.MaxRate, opts.TargetBatch, opts.Progress = 800, 40*time.Millisecond, log.add
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	type outcome struct {
		res phase3.CopyResult
		err error
	}
	done := make(chan outcome, 1)
	t0 := time.Now()
	go func() {
		res, err := phase3.Copy(ctx, b.pool, opts)
		done <- outcome{res, err}
	}()

	b.waitFor("500 jobs copied", func() bool { _, p := log.last(); return p.Scanned >= 500 })
	tRate, p := log.last()
	if rate := float64(p.Scanned) / tRate.Sub(t0).Seconds(); rate > 800*1.25 {
		t.Errorf("copied %d jobs in %s: %.0f/s, over --max-rate 800", p.Scanned, tRate.Sub(t0), rate)
	}

	b.exec("UPDATE spine_phase3_control SET paused = true") // any connection
	paused := time.Now()
	b.waitFor("the copy to pause", func() bool { _, p := log.last(); return p.Paused })
	if at, _ := log.last(); at.Sub(paused) > time.Second {
		t.Errorf("pause took effect after %s", at.Sub(paused))
	}
	st, err := phase3.Status(b.ctx, b.pool)
	if err != nil || st.State != phase3.StatePaused || !st.Running {
		t.Errorf("status while paused = %+v, %v", st, err)
	}
	time.Sleep(300 * time.Millisecond)
	if st2, _ := phase3.Status(b.ctx, b.pool); st2.Checkpoint.LastID != st.Checkpoint.LastID {
		t.Errorf("the checkpoint moved while paused: %d -> %d", st.Checkpoint.LastID, st2.Checkpoint.LastID)
	}

	resume, rate := false, 2000
	if err := phase3.SetControl(b.ctx, b.pool, &resume, &rate); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the copy to resume", func() bool { _, p := log.last(); return !p.Paused && p.MaxRate == 2000 })
	from := st.Checkpoint.RowsScanned
	b.waitFor("400 more jobs", func() bool { _, p := log.last(); return p.Scanned >= from+400 })
	cancel() // as SIGINT does
	out := <-done
	if !errors.Is(out.err, context.Canceled) || !out.res.Stopped || out.res.Paused < 300*time.Millisecond {
		t.Fatalf("cancelled copy = %+v, %v", out.res, out.err)
	}
	st, _ = phase3.Status(b.ctx, b.pool)
	if st.State != phase3.StateInterrupted || st.Checkpoint.LastID != out.res.LastID {
		t.Errorf("after the stop: %+v; the copy said it stopped at %d", st, out.res.LastID)
	}
	if rep, err := phase3.Verify(b.ctx, b.pool, b.opts); err != nil || len(rep.Mismatches) > 0 || rep.Complete {
		t.Errorf("verify of the stopped copy: %+v, %v", rep, err)
	}

	res := b.copy()
	if !res.Resumed || res.RowsScanned != int64(b.sum.Jobs)-st.Checkpoint.RowsScanned {
		t.Errorf("resumed copy = %+v; %d of %d jobs were done", res, st.Checkpoint.RowsScanned, b.sum.Jobs)
	}
	b.verifyOK()
}

// One runner at a time: a second copy is told, not queued.
func TestSecondRunnerIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts := b.opts
	opts.MaxRate = 500
	var log progressLog
	opts.Progress = log.add
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { _, err := phase3.Copy(ctx, b.pool, opts); done <- err }()
	b.waitFor("the first copy to run", func() bool { _, p := log.last(); return p.Scanned > 0 })
	if _, err := phase3.Copy(b.ctx, b.pool, b.opts); !errors.Is(err, phase3.ErrBusy) {
		t.Errorf("second copy = %v, want ErrBusy", err)
	}
	if _, err := phase3.Repair(b.ctx, b.pool, b.opts); !errors.Is(err, phase3.ErrBusy) {
		t.Errorf("repair during a copy = %v, want ErrBusy", err)
	}
	cancel()
	<-done
}

func contextWithCancel(b *bundle) (context.Context, context.CancelFunc) {
	return context.WithCancel(b.ctx)
}
