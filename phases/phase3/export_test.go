package phase3

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SetupOnly installs phase 3's tables, mapping row, index and trigger
// without copying: the trigger alone, for the tests that isolate it.
func SetupOnly(ctx context.Context, pool *pgxpool.Pool, opts Options) error {
	var res CopyResult
	_, err := setup(ctx, pool, opts.withDefaults(), &res)
	return err
}

// VerifyWithTextHash is Verify with the MD5-of-text row hash that servers
// before PostgreSQL 14 get.
func VerifyWithTextHash(ctx context.Context, pool *pgxpool.Pool, opts Options) (VerifyReport, error) {
	return verify(ctx, pool, opts.withDefaults(), true)
}

// TriggerFunctionSQL and BatchSQL are the generated statements, for the
// tests that check them.
func TriggerFunctionSQL() (string, error) {
	b, err := bindMapping()
	return triggerFunctionSQL(b), err
}

var (
	MappingParams       = mappingParams
	DecodeStoredMapping = decodeStoredMapping
)
