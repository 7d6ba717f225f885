package sqlmigrations

import (
	"context"
	"slices"
	"time"
)

// MigrationStatus is one migration as the database sees it.
type MigrationStatus struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt time.Time // zero unless Applied
	// ChecksumMismatch reports an applied step whose up file has changed since.
	ChecksumMismatch bool
	// Unknown reports a step recorded in the database that this build does not know,
	// applied by a newer build.
	Unknown bool
}

// Status lists every known migration and every recorded one, by version. It takes no
// lock and changes nothing.
func (m *Migrator) Status(ctx context.Context) ([]MigrationStatus, error) {
	applied, err := m.readState(ctx, m.pool)
	if err != nil {
		return nil, err
	}
	var out []MigrationStatus
	for _, mig := range m.migrations {
		s := MigrationStatus{Version: mig.Version, Name: mig.Name}
		if row, ok := applied[mig.Version]; ok {
			s.Applied, s.AppliedAt, s.ChecksumMismatch = true, row.appliedAt, row.checksum != mig.Checksum
		}
		out = append(out, s)
	}
	for v, row := range applied {
		if !m.known(v) {
			out = append(out, MigrationStatus{Version: v, Name: row.name, Applied: true, AppliedAt: row.appliedAt, Unknown: true})
		}
	}
	slices.SortFunc(out, func(a, b MigrationStatus) int { return a.Version - b.Version })
	return out, nil
}
