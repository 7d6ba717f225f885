package phase2

import (
	"fmt"
	"hash/fnv"
	"time"
)

// Mode is what a route does with a task's messages, and the path one
// message takes.
type Mode string

// The modes, in the order a migration goes through them.
const (
	// ModePassthrough republishes the original envelope to the worker queue,
	// unchanged and untracked: what Celery did before the side-car.
	ModePassthrough Mode = "passthrough"
	// ModeShadow republishes it unchanged and records an execution that
	// follows the task's result.
	ModeShadow Mode = "shadow"
	// ModeReroute runs the call as a pipeline through the Dispatcher and
	// answers the original task id when the run ends.
	ModeReroute Mode = "reroute"
)

// Modes lists every Mode.
var Modes = []Mode{ModePassthrough, ModeShadow, ModeReroute}

// ParseMode reads a mode name.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("phase2: mode %q: use passthrough, shadow or reroute", s)
}

// fallback is the path of the messages a route's percentage leaves out: the
// step before, so tracking never drops while a reroute ramps up.
func (m Mode) fallback() Mode {
	if m == ModeReroute {
		return ModeShadow
	}
	return ModePassthrough
}

// Route is how the side-car treats one Celery task: one row of
// spine_phase2_routes.
type Route struct {
	// Task is the Celery task name, e.g. "app.tasks.backup.run_backup_for_user".
	Task string `json:"task"`
	Mode Mode   `json:"mode"`
	// Percent (0-100) of the task's messages take Mode, chosen by Bucket of
	// the task id; the rest take the step before (shadow for reroute,
	// passthrough for shadow). Ignored for passthrough.
	Percent int `json:"percent"`
	// Queue is the worker queue that passthrough and shadow republish to.
	Queue string `json:"queue"`
	// Pipeline is the pipeline the task maps to: the executions' name under
	// shadow and reroute.
	Pipeline string `json:"pipeline"`
	// Lane is the executions' lane; under reroute Capture-Spine's
	// run_pipeline task is published to the lane's queue.
	Lane string `json:"lane"`

	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// Path is the way the message with this task id goes: the route's mode
// when the id's Bucket is below Percent, else the step before.
func (r Route) Path(taskID string) Mode {
	if r.Mode == ModePassthrough || Bucket(taskID) >= r.Percent {
		return r.Mode.fallback()
	}
	return r.Mode
}

// Describe says in words what the route does, e.g. "reroute 50%, shadow the
// rest".
func (r Route) Describe() string {
	switch {
	case r.Mode == ModePassthrough:
		return "passthrough"
	case r.Percent >= 100:
		return fmt.Sprintf("%s 100%%", r.Mode)
	case r.Percent <= 0:
		return fmt.Sprintf("%s 0%% (all %s)", r.Mode, r.Mode.fallback())
	}
	return fmt.Sprintf("%s %d%%, %s the rest", r.Mode, r.Percent, r.Mode.fallback())
}

func (r Route) validate() error {
	if _, err := ParseMode(string(r.Mode)); err != nil {
		return err
	}
	switch {
	case r.Task == "":
		return fmt.Errorf("phase2: route without a task name")
	case r.Percent < 0 || r.Percent > 100:
		return fmt.Errorf("phase2: route %s: percent %d is not within 0-100", r.Task, r.Percent)
	case r.Queue == "":
		return fmt.Errorf("phase2: route %s: no worker queue", r.Task)
	case r.Pipeline == "":
		return fmt.Errorf("phase2: route %s: no pipeline", r.Task)
	case r.Lane == "":
		return fmt.Errorf("phase2: route %s: no lane", r.Task)
	}
	return nil
}

// Bucket places a task id in 0..99, the same on every replica and every
// release: FNV-1a then a 64-bit finalizer (FNV alone spreads the similar
// uuids Celery makes poorly over the low bits).
func Bucket(taskID string) int {
	h := fnv.New64a()
	h.Write([]byte(taskID))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return int(x % 100)
}
