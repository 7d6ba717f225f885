package seed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// modulePath identifies the repository root when SchemaSQL walks up from the working
// directory: the schema lives in the module's testdata, outside go:embed's reach.
const modulePath = "github.com/spinecore/spine-go"

// schemaFile is the fixture's path inside the testdata directory.
const schemaFile = "capturespine/schema.sql"

// ErrSchemaNotFound is returned (wrapped) when the schema fixture cannot be located.
var ErrSchemaNotFound = errors.New("seed: Capture-Spine schema fixture not found")

// Execer runs SQL without returning rows. *pgx.Conn, *pgxpool.Pool and pgx.Tx satisfy it.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SchemaSQL returns the Capture-Spine schema fixture. It reads
// $SPINE_TESTDATA/capturespine/schema.sql when SPINE_TESTDATA is set, and otherwise
// testdata/capturespine/schema.sql under the first directory, walking up from the
// working directory, whose go.mod declares module github.com/spinecore/spine-go. Tests run in their package
// directory, and installed binaries run anywhere, hence the walk and the override.
func SchemaSQL() (string, error) {
	path, err := schemaPath()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrSchemaNotFound, err)
	}
	return string(b), nil
}

// LoadSchema creates Capture-Spine's tables and indexes in the database conn is
// connected to. It runs the fixture as one multi-statement command, so a failure
// leaves nothing half-created.
func LoadSchema(ctx context.Context, conn Execer) error {
	sql, err := SchemaSQL()
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("seed: load Capture-Spine schema: %w", err)
	}
	return nil
}

func schemaPath() (string, error) {
	if dir := os.Getenv("SPINE_TESTDATA"); dir != "" {
		return filepath.Join(dir, schemaFile), nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%w: working directory: %w", ErrSchemaNotFound, err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if declaresModule(filepath.Join(dir, "go.mod")) {
			return filepath.Join(dir, "testdata", schemaFile), nil
		}
		if parent := filepath.Dir(dir); parent == dir {
			break
		}
	}
	return "", fmt.Errorf("%w: no go.mod declaring module %s in %s or any parent; "+
		"run from inside the repository or set SPINE_TESTDATA to its testdata directory",
		ErrSchemaNotFound, modulePath, wd)
}

// declaresModule reports whether the go.mod at path is this repository's, so a
// nested module or a vendored copy further up is not mistaken for the root.
func declaresModule(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == modulePath
		}
	}
	return false
}
