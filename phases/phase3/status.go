package phase3

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Phase 3 states.
const (
	StateNotStarted  = "not started"
	StateSettingUp   = "setting up"       // tables exist, the copy's bound is not set yet
	StateCopying     = "copying"          // a copy is running now
	StatePaused      = "copy paused"      // a copy is running, paused by the control row
	StateInterrupted = "copy interrupted" // unfinished and no copy running: run copy again
	StateCopied      = "copied"           // every job copied; the trigger keeps executions in step
	StateCutOver     = "cut over"         // jobs renamed to jobs_retired
	StateFinalized   = "finalized"        // jobs_retired dropped
	StateRollingBack = "rolling back"     // a rollback began and has not finished: run it again
)

// Checkpoint is the copy's committed position and counters.
type Checkpoint struct {
	Exists       bool       `json:"exists"`
	MaxID        int64      `json:"max_id"`
	LastID       int64      `json:"last_id"`
	TotalRows    int64      `json:"total_rows"`
	RowsScanned  int64      `json:"rows_scanned"`
	RowsCopied   int64      `json:"rows_copied"`
	RowsLinked   int64      `json:"rows_linked"`
	RowsRejected int64      `json:"rows_rejected"`
	Batches      int64      `json:"batches"`
	BatchSize    int        `json:"batch_size"`
	Rate         float64    `json:"rate"` // jobs/s of the latest run
	BoundSet     bool       `json:"bound_set"`
	StartedAt    *time.Time `json:"started_at,omitempty"`
	UpdatedAt    *time.Time `json:"updated_at,omitempty"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	CutOverAt    *time.Time `json:"cut_over_at,omitempty"`
	FinalizedAt  *time.Time `json:"finalized_at,omitempty"`
	RollbackAt   *time.Time `json:"rollback_at,omitempty"`
}

func readCheckpoint(ctx context.Context, q querier) (Checkpoint, error) {
	var c Checkpoint
	var err error
	if c.Exists, err = tableExists(ctx, q, CopyTable); err != nil || !c.Exists {
		return c, err
	}
	var maxID, lastID *int64
	err = q.QueryRow(ctx, `SELECT max_id, last_id, total_rows, rows_scanned, rows_copied, rows_linked, rows_rejected,
		batches, batch_size, rate, started_at, updated_at, finished_at, cut_over_at, finalized_at, rollback_at FROM spine_phase3_copy`).
		Scan(&maxID, &lastID, &c.TotalRows, &c.RowsScanned, &c.RowsCopied, &c.RowsLinked, &c.RowsRejected,
			&c.Batches, &c.BatchSize, &c.Rate, &c.StartedAt, &c.UpdatedAt, &c.FinishedAt, &c.CutOverAt, &c.FinalizedAt, &c.RollbackAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, nil
	}
	if maxID != nil && lastID != nil {
		c.BoundSet, c.MaxID, c.LastID = true, *maxID, *lastID
	}
	return c, err
}

// Step is one step of phase 3 and how far it is.
type Step struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// State is where phase 3 stands on a database.
type State struct {
	State       string        `json:"state"`
	Steps       []Step        `json:"steps"`
	Checkpoint  Checkpoint    `json:"checkpoint"`
	Percent     float64       `json:"percent"`
	Rate        float64       `json:"rate"` // jobs/s of the latest run
	ETA         time.Duration `json:"eta_ns"`
	Trigger     bool          `json:"trigger"`
	TaskIDIndex string        `json:"task_id_index,omitempty"`
	Running     bool          `json:"running"` // a copy, repair, cutover or rollback holds the runner lock
	Paused      bool          `json:"paused"`
	MaxRate     int           `json:"max_rate"`
	Rejects     int64         `json:"rejects"`
	JobsRetired bool          `json:"jobs_retired"`
}

// Status reads phase 3's state, read-only.
func Status(ctx context.Context, pool *pgxpool.Pool) (State, error) {
	var s State
	var err error
	var index *string
	if s.Checkpoint, err = readCheckpoint(ctx, pool); err != nil {
		return s, fmt.Errorf("phase3 status: %w", err)
	}
	err = pool.QueryRow(ctx, `SELECT `+selectTriggerPresent[len("SELECT "):]+`, (`+selectTaskIDIndex+`), to_regclass('jobs_retired') IS NOT NULL`).
		Scan(&s.Trigger, &index, &s.JobsRetired)
	if err != nil {
		return s, fmt.Errorf("phase3 status: %w", err)
	}
	if index != nil {
		s.TaskIDIndex = *index
	}
	if s.Running, err = runnerActive(ctx, pool); err != nil {
		return s, fmt.Errorf("phase3 status: %w", err)
	}
	if ok, err := tableExists(ctx, pool, ControlTable); err != nil || ok { // finalize drops it
		c, err := readControl(ctx, pool)
		if err != nil {
			return s, fmt.Errorf("phase3 status: %w", err)
		}
		s.Paused, s.MaxRate = c.paused, c.maxRate
		if s.Rejects, err = countRejects(ctx, pool); err != nil {
			return s, fmt.Errorf("phase3 status: %w", err)
		}
	}
	cp := s.Checkpoint
	if cp.TotalRows > 0 {
		s.Percent = min(100, 100*float64(cp.RowsScanned)/float64(cp.TotalRows))
	} else if cp.FinishedAt != nil {
		s.Percent = 100
	}
	s.Rate = cp.Rate
	if cp.FinishedAt == nil && cp.Rate > 0 && cp.TotalRows > cp.RowsScanned {
		s.ETA = time.Duration(float64(cp.TotalRows-cp.RowsScanned) / cp.Rate * float64(time.Second))
	}
	switch {
	case !cp.Exists:
		s.State = StateNotStarted
	case cp.FinalizedAt != nil:
		s.State = StateFinalized
	case cp.RollbackAt != nil:
		s.State = StateRollingBack
	case cp.CutOverAt != nil || s.JobsRetired:
		s.State = StateCutOver
	case cp.FinishedAt != nil:
		s.State = StateCopied
	case !cp.BoundSet && !s.Running:
		s.State = StateInterrupted
	case !cp.BoundSet:
		s.State = StateSettingUp
	case s.Running && s.Paused:
		s.State = StatePaused
	case s.Running:
		s.State = StateCopying
	default:
		s.State = StateInterrupted
	}
	s.Steps = s.steps()
	return s, nil
}

func (s State) steps() []Step {
	cp := s.Checkpoint
	done := func(ok bool, otherwise string) string {
		if ok {
			return "done"
		}
		return otherwise
	}
	copyState := "pending"
	switch {
	case cp.FinishedAt != nil:
		copyState = fmt.Sprintf("done: %d jobs (%d copied, %d linked, %d rejected) up to id %d", cp.RowsScanned, cp.RowsCopied, cp.RowsLinked, cp.RowsRejected, cp.MaxID)
	case cp.BoundSet:
		copyState = fmt.Sprintf("%.1f%%: %d of %d jobs, checkpoint id %d of %d", s.Percent, cp.RowsScanned, cp.TotalRows, cp.LastID, cp.MaxID)
	}
	trigger := "absent"
	switch {
	case s.Trigger:
		trigger = "present on jobs"
	case s.State == StateCutOver || s.State == StateFinalized:
		trigger = "removed at cutover"
	}
	index := "pending"
	if s.TaskIDIndex != "" {
		index = "present (" + s.TaskIDIndex + ")"
	}
	return []Step{
		{"tables", done(cp.Exists, "pending")},
		{"backend_task_id index", index},
		{"trigger", trigger},
		{"copy", copyState},
		{"cutover", done(cp.CutOverAt != nil || s.JobsRetired, "pending")},
		{"finalize", done(cp.FinalizedAt != nil, "pending")},
	}
}

// Summary is the state in one line, for `spine-migrate status`.
func (s State) Summary() string {
	cp := s.Checkpoint
	switch s.State {
	case StateNotStarted:
		return "not started (spine-migrate phase3 plan)"
	case StateSettingUp:
		return "setting up: tables, index and trigger (a copy is running)"
	case StateCopying, StatePaused:
		return fmt.Sprintf("%s: %.1f%%, %d of %d jobs, checkpoint id %d of %d, %.0f jobs/s, ETA %s, %d rejects",
			s.State, s.Percent, cp.RowsScanned, cp.TotalRows, cp.LastID, cp.MaxID, s.Rate, s.ETA.Round(time.Second), s.Rejects)
	case StateRollingBack:
		return "rolling back: a rollback began and has not finished (spine-migrate phase3 rollback --execute)"
	case StateCutOver:
		return "cut over: jobs is jobs_retired, executions alone tracks work (spine-migrate phase3 finalize --execute --confirm jobs_retired drops it; rollback undoes it)"
	case StateInterrupted:
		return fmt.Sprintf("copy interrupted at %.1f%% (checkpoint id %d of %d; trigger %s): spine-migrate phase3 copy --execute resumes it",
			s.Percent, cp.LastID, cp.MaxID, presence(s.Trigger))
	case StateCopied:
		msg := fmt.Sprintf("copied: %d jobs (%d copied, %d linked), trigger %s", cp.RowsScanned, cp.RowsCopied, cp.RowsLinked, presence(s.Trigger))
		if s.Rejects > 0 {
			msg += fmt.Sprintf(", %d jobs unmapped (spine-migrate phase3 copy --job-mapping FILE --execute)", s.Rejects)
		}
		return msg + "; next: spine-migrate phase3 verify"
	default:
		return s.State
	}
}

func presence(ok bool) string {
	if ok {
		return "present"
	}
	return "ABSENT"
}
