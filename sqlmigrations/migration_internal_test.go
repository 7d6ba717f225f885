package sqlmigrations

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestConcurrentIndexNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql  string
		want []string
	}{
		{"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ux_a ON t (a);", []string{"ux_a"}},
		{"-- spine:no-transaction\ncreate index concurrently if not exists\n    Ix_B\n  on t (b);", []string{"ix_b"}},
		{`CREATE INDEX CONCURRENTLY IF NOT EXISTS "Mixed ""Case""" ON t (c);`, []string{`Mixed "Case"`}},
		{"DROP INDEX CONCURRENTLY IF EXISTS ix_c;", nil},
		{"CREATE INDEX CONCURRENTLY ix_d ON t (d);", nil}, // no IF NOT EXISTS: never silently kept
	}
	for _, tt := range tests {
		if got := concurrentIndexNames(tt.sql); !slices.Equal(got, tt.want) {
			t.Errorf("concurrentIndexNames(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
}

func TestEmbeddedMigrations(t *testing.T) {
	t.Parallel()
	ms := All()
	if len(ms) != 7 {
		t.Fatalf("All() has %d migrations, want 7", len(ms))
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("migration %d has version %d: versions must be 1..n without gaps", i, m.Version)
		}
		wantNoTx := m.Version >= 4 && m.Version <= 6 // the CONCURRENTLY index steps
		if m.UpNoTx != wantNoTx || m.DownNoTx != wantNoTx {
			t.Errorf("step %04d (%s): UpNoTx=%v DownNoTx=%v, want %v", m.Version, m.Name, m.UpNoTx, m.DownNoTx, wantNoTx)
		}
		if m.UpNoTx && len(concurrentIndexNames(m.Up)) != 1 {
			t.Errorf("step %04d (%s): a no-transaction up step must build exactly one index with CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS", m.Version, m.Name)
		}
		if len(m.Checksum) != 64 {
			t.Errorf("step %04d (%s): checksum %q is not a hex sha256", m.Version, m.Name, m.Checksum)
		}
	}
	ms[0].Name = "changed"
	if All()[0].Name == "changed" {
		t.Error("All() returned the package's own slice")
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	t.Parallel()
	ok := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name string
		fs   fstest.MapFS
		want string
	}{
		{"bad file name", fstest.MapFS{"m/1_x.up.sql": ok("")}, "file name"},
		{"missing down", fstest.MapFS{"m/0001_x.up.sql": ok("SELECT 1;")}, "needs both"},
		{"two names", fstest.MapFS{"m/0001_x.up.sql": ok("SELECT 1;"), "m/0001_y.down.sql": ok("SELECT 1;")}, "two names"},
		{"two statements outside a transaction", fstest.MapFS{
			"m/0001_x.up.sql":   ok("-- spine:no-transaction\nCREATE INDEX CONCURRENTLY a ON t (a);\nCREATE INDEX CONCURRENTLY b ON t (b);\n"),
			"m/0001_x.down.sql": ok("SELECT 1;"),
		}, "exactly one statement"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(tt.fs, "m")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("load: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	t.Parallel()
	for attempt := 1; attempt <= 64; attempt++ {
		full := min(backoffBase<<min(attempt-1, 30), backoffMax)
		for range 20 {
			if d := backoff(attempt); d < full/2 || d > full {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, d, full/2, full)
			}
		}
	}
	if backoff(1) > 200*time.Millisecond {
		t.Errorf("first backoff %s is longer than the base", backoff(1))
	}
}
