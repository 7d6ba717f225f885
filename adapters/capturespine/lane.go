package capturespine

import (
	"fmt"
	"strings"

	"github.com/spinecore/spine-go/core"
)

// Capture-Spine's lanes. A lane names the Celery queue an execution runs on;
// spine-core separates that (WorkSpec.Lane) from how urgent the work is
// (WorkSpec.Priority), which Capture-Spine never recorded.
const (
	LaneNormal   = "normal"
	LaneBackfill = "backfill"
	LaneSlow     = "slow"
	LaneRealtime = "realtime"
	LaneHigh     = "high"
	LaneLow      = "low"
)

// Lanes lists Capture-Spine's lanes; executions.lane defaults to LaneNormal.
var Lanes = []string{LaneNormal, LaneBackfill, LaneSlow, LaneRealtime, LaneHigh, LaneLow}

// lanePriorities is the lane → priority rule. Lanes named after a priority
// take that priority; backfill is bulk reprocessing of history that live work
// must overtake, but each item is short, so it is low rather than slow;
// normal, core's "default" lane and any other lane (a Celery queue name such
// as a migrated job's "imports") carry no urgency of their own: normal.
var lanePriorities = map[string]core.Priority{
	LaneRealtime: core.PriorityRealtime,
	LaneHigh:     core.PriorityHigh,
	LaneNormal:   core.PriorityNormal,
	LaneLow:      core.PriorityLow,
	LaneSlow:     core.PrioritySlow,
	LaneBackfill: core.PriorityLow,
}

// PriorityForLane is the priority of work on lane (see lanePriorities): the
// value phase 1 backfills into executions.priority for rows written before
// the column existed. Every lane has one, so no row can fail this step.
func PriorityForLane(lane string) core.Priority {
	if p, ok := lanePriorities[lane]; ok {
		return p
	}
	return core.PriorityNormal
}

// KnownLane reports whether lane is one of Lanes; phase 1's plan lists the
// others so an operator sees which lanes take the default priority.
func KnownLane(lane string) bool {
	_, ok := lanePriorities[lane]
	return ok
}

// LaneForPriority is the other direction, for a spec that names no lane of
// its own (core.DefaultLane): the Capture-Spine lane whose workers serve
// that priority. It is the inverse of PriorityForLane on the lanes named
// after a priority; backfill is never chosen, it must be asked for.
func LaneForPriority(p core.Priority) string {
	switch p {
	case core.PriorityRealtime, core.PriorityHigh, core.PriorityLow, core.PrioritySlow:
		return string(p)
	default:
		return LaneNormal
	}
}

// PriorityForLaneSQL is PriorityForLane as a SQL expression over the text
// expression lane, for backfills and INSERT … SELECT mappings. It is built
// from lanePriorities, so the two cannot disagree.
func PriorityForLaneSQL(lane string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "(CASE %s", lane)
	for _, l := range Lanes {
		fmt.Fprintf(&b, " WHEN '%s' THEN '%s'", l, lanePriorities[l])
	}
	fmt.Fprintf(&b, " ELSE '%s' END)", core.PriorityNormal)
	return b.String()
}
