package core

// RunStatus is where a run is in its life. The values are Python
// spine-core's, and Capture-Spine's ExecutionStatus uses the same ones.
type RunStatus string

const (
	StatusPending      RunStatus = "pending"
	StatusQueued       RunStatus = "queued"
	StatusRunning      RunStatus = "running"
	StatusCompleted    RunStatus = "completed"
	StatusFailed       RunStatus = "failed"
	StatusCancelled    RunStatus = "cancelled"
	StatusDeadLettered RunStatus = "dead_lettered"
)

// Statuses lists every RunStatus in lifecycle order.
var Statuses = []RunStatus{
	StatusPending, StatusQueued, StatusRunning, StatusCompleted,
	StatusFailed, StatusCancelled, StatusDeadLettered,
}

// transitions is the state machine of spine-core's newer branch, which
// enforces it; the older one only documented it.
var transitions = map[RunStatus][]RunStatus{
	StatusPending:      {StatusQueued, StatusRunning, StatusCancelled},
	StatusQueued:       {StatusRunning, StatusCompleted, StatusFailed, StatusCancelled},
	StatusRunning:      {StatusCompleted, StatusFailed, StatusCancelled},
	StatusFailed:       {StatusDeadLettered, StatusPending},
	StatusDeadLettered: {StatusPending},
	StatusCompleted:    nil,
	StatusCancelled:    nil,
}

// Valid reports whether s is one of Statuses.
func (s RunStatus) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Terminal reports whether no transition leaves s.
func (s RunStatus) Terminal() bool { return s == StatusCompleted || s == StatusCancelled }

// Active reports whether a run in s may still do work: pending, queued or
// running. Only active runs can be cancelled.
func (s RunStatus) Active() bool {
	return s == StatusPending || s == StatusQueued || s == StatusRunning
}

// CanTransitionTo reports whether the state machine allows s → to.
func (s RunStatus) CanTransitionTo(to RunStatus) bool {
	for _, t := range transitions[s] {
		if t == to {
			return true
		}
	}
	return false
}

// NextStatuses returns the statuses reachable from s in one step.
func (s RunStatus) NextStatuses() []RunStatus {
	return append([]RunStatus(nil), transitions[s]...)
}

// CheckTransition returns an *IllegalTransitionError (errors.Is
// ErrIllegalTransition) unless from → to is allowed.
func CheckTransition(runID string, from, to RunStatus) error {
	if from.CanTransitionTo(to) {
		return nil
	}
	return &IllegalTransitionError{RunID: runID, From: from, To: to}
}
