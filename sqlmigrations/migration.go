package sqlmigrations

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// noTxDirective, as the first line of a file, runs that file outside a transaction.
const noTxDirective = "-- spine:no-transaction"

// Migration is one versioned schema step.
type Migration struct {
	Version  int
	Name     string
	Up, Down string
	// UpNoTx and DownNoTx report a "-- spine:no-transaction" first line: the file holds
	// exactly one statement that cannot run inside a transaction block.
	UpNoTx, DownNoTx bool
	// Checksum is the hex SHA-256 of the up file, recorded when the step is applied.
	Checksum string
}

// All returns the embedded migrations sorted by version.
func All() []Migration {
	return slices.Clone(embedded)
}

var embedded = mustLoad(migrationFiles, "migrations")

var fileName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$`)

func mustLoad(fsys fs.FS, dir string) []Migration {
	ms, err := load(fsys, dir)
	if err != nil {
		panic(err) // The embedded files are part of the binary: a bad one is a build bug.
	}
	return ms
}

func load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("sqlmigrations: read %s: %w", dir, err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("sqlmigrations: %s: file name is not NNNN_name.up.sql or NNNN_name.down.sql", e.Name())
		}
		version, _ := strconv.Atoi(m[1])
		name, direction := m[2], m[3]
		raw, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("sqlmigrations: read %s: %w", e.Name(), err)
		}
		mig := byVersion[version]
		if mig == nil {
			mig = &Migration{Version: version, Name: name}
			byVersion[version] = mig
		}
		if mig.Name != name {
			return nil, fmt.Errorf("sqlmigrations: version %04d has two names, %q and %q", version, mig.Name, name)
		}
		sql := string(raw)
		noTx := strings.HasPrefix(sql, noTxDirective+"\n") || strings.TrimSpace(sql) == noTxDirective
		if noTx && countStatements(sql) != 1 {
			return nil, fmt.Errorf("sqlmigrations: %s: a no-transaction file must hold exactly one statement", e.Name())
		}
		if direction == "up" {
			sum := sha256.Sum256(raw)
			mig.Up, mig.UpNoTx, mig.Checksum = sql, noTx, hex.EncodeToString(sum[:])
		} else {
			mig.Down, mig.DownNoTx = sql, noTx
		}
	}
	var ms []Migration
	for _, m := range byVersion {
		if m.Version == 0 {
			return nil, fmt.Errorf("sqlmigrations: version 0000 is reserved")
		}
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("sqlmigrations: step %04d (%s): needs both an up and a down file", m.Version, m.Name)
		}
		ms = append(ms, *m)
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	return ms, nil
}

// countStatements counts ';'-terminated statements outside comment lines. It is only
// used on no-transaction files, which hold plain CREATE/DROP INDEX statements.
func countStatements(sql string) int {
	var body strings.Builder
	for line := range strings.Lines(sql) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			body.WriteString(line)
		}
	}
	n := 0
	for part := range strings.SplitSeq(body.String(), ";") {
		if strings.TrimSpace(part) != "" {
			n++
		}
	}
	return n
}

var concurrentIndex = regexp.MustCompile(`(?is)\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)`)

// concurrentIndexNames returns the names of the indexes a no-transaction step builds
// with CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS, as PostgreSQL stores them.
func concurrentIndexNames(sql string) []string {
	var names []string
	for _, m := range concurrentIndex.FindAllStringSubmatch(sql, -1) {
		name := m[1]
		if strings.HasPrefix(name, `"`) {
			name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
		} else {
			name = strings.ToLower(name) // Unquoted identifiers fold to lower case.
		}
		names = append(names, name)
	}
	return names
}
