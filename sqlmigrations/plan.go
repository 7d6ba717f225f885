package sqlmigrations

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Directions of a Plan.
const (
	DirectionUp   = "up"
	DirectionDown = "down"
)

// Targets with a meaning of their own.
const (
	// Latest, as the target of PlanUp and Up, applies every known migration.
	Latest = 0
	// OneStepDown, as the target of PlanDown and Down, reverts only the most recently
	// applied step. It is what a command line should default to.
	OneStepDown = -1
	// AllTheWayDown, as the target of PlanDown and Down, reverts every applied step.
	AllTheWayDown = 0
)

// Step is one migration in one direction.
type Step struct {
	Version int
	Name    string
	SQL     string // the up or down file, as it will be executed
	NoTx    bool   // runs outside a transaction
}

// Plan is what Up or Down would execute, in order.
type Plan struct {
	Direction string
	Steps     []Step
}

// String renders the plan as a SQL script with one header comment per step, for a
// dry run.
func (p Plan) String() string {
	if len(p.Steps) == 0 {
		return fmt.Sprintf("-- sqlmigrations: nothing to migrate %s\n", p.Direction)
	}
	var b strings.Builder
	for i, s := range p.Steps {
		if i > 0 {
			b.WriteString("\n")
		}
		tx := "in a transaction"
		if s.NoTx {
			tx = "outside a transaction"
		}
		fmt.Fprintf(&b, "-- step %04d (%s) %s, %s\n", s.Version, s.Name, p.Direction, tx)
		b.WriteString(s.SQL)
		if !strings.HasSuffix(s.SQL, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// PlanUp returns the steps Up(ctx, target) would apply, without changing anything.
// target is a version, or Latest.
func (m *Migrator) PlanUp(ctx context.Context, target int) (Plan, error) {
	applied, err := m.readState(ctx, m.pool)
	if err != nil {
		return Plan{}, err
	}
	return m.planUp(applied, target)
}

// PlanDown returns the steps Down(ctx, target) would revert, without changing
// anything. target is the version to end at, OneStepDown or AllTheWayDown.
func (m *Migrator) PlanDown(ctx context.Context, target int) (Plan, error) {
	applied, err := m.readState(ctx, m.pool)
	if err != nil {
		return Plan{}, err
	}
	return m.planDown(applied, target)
}

func (m *Migrator) planUp(applied map[int]appliedRow, target int) (Plan, error) {
	if err := m.verifyChecksums(applied); err != nil {
		return Plan{}, err
	}
	if target == Latest && len(m.migrations) > 0 {
		target = m.migrations[len(m.migrations)-1].Version
	}
	if !m.known(target) {
		return Plan{}, fmt.Errorf("sqlmigrations: up: unknown target version %d (known: %s)", target, m.knownVersions())
	}
	plan := Plan{Direction: DirectionUp}
	for _, mig := range m.migrations {
		if _, ok := applied[mig.Version]; ok || mig.Version > target {
			continue
		}
		plan.Steps = append(plan.Steps, Step{Version: mig.Version, Name: mig.Name, SQL: mig.Up, NoTx: mig.UpNoTx})
	}
	return plan, nil
}

func (m *Migrator) planDown(applied map[int]appliedRow, target int) (Plan, error) {
	if err := m.verifyChecksums(applied); err != nil {
		return Plan{}, err
	}
	if target < OneStepDown || (target > 0 && !m.known(target)) {
		return Plan{}, fmt.Errorf("sqlmigrations: down: unknown target version %d (known: %s; %d: one step, %d: all the way)",
			target, m.knownVersions(), OneStepDown, AllTheWayDown)
	}
	versions := make([]int, 0, len(applied))
	for v := range applied {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	slices.Reverse(versions)
	if target == OneStepDown {
		target = 0
		if len(versions) > 1 {
			target = versions[1]
		}
	}
	plan := Plan{Direction: DirectionDown}
	for _, v := range versions {
		if v <= target {
			break
		}
		mig, ok := m.migration(v)
		if !ok {
			return Plan{}, fmt.Errorf("sqlmigrations: down: step %04d (%s) was applied by a newer build that knows how to revert it; run Down with that build",
				v, applied[v].name)
		}
		plan.Steps = append(plan.Steps, Step{Version: mig.Version, Name: mig.Name, SQL: mig.Down, NoTx: mig.DownNoTx})
	}
	return plan, nil
}

func (m *Migrator) verifyChecksums(applied map[int]appliedRow) error {
	for _, mig := range m.migrations {
		row, ok := applied[mig.Version]
		if ok && row.checksum != mig.Checksum {
			return &ChecksumMismatchError{Version: mig.Version, Name: mig.Name, Recorded: row.checksum, Embedded: mig.Checksum}
		}
	}
	return nil
}

func (m *Migrator) migration(version int) (Migration, bool) {
	i, ok := slices.BinarySearchFunc(m.migrations, version, func(mig Migration, v int) int { return mig.Version - v })
	if !ok {
		return Migration{}, false
	}
	return m.migrations[i], true
}

func (m *Migrator) known(version int) bool {
	_, ok := m.migration(version)
	return ok
}

func (m *Migrator) knownVersions() string {
	if len(m.migrations) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d..%d", m.migrations[0].Version, m.migrations[len(m.migrations)-1].Version)
}
