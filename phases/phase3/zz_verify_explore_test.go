//go:build explore

package phase3

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestExploreVerify(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("EXPLORE_DB"))
	if err != nil {
		t.Fatal(err)
	}
	types, err := executionTypes(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := bindMapping()
	all := func(string) string { return "true" }
	v, err := buildVerifySQL(b, types, rowHashSQL(true), idRange{1, 250000}.within(all))
	if err != nil {
		t.Fatal(err)
	}
	sql := v.chunkSQL()
	if os.Getenv("SHOWSQL") != "" {
		fmt.Println(sql)
	}
	tx, _ := conn.Begin(ctx)
	defer tx.Rollback(ctx)
	tx.Exec(ctx, "SET LOCAL jit = off")
	t0 := time.Now()
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, int64(10000))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	t.Logf("%v\n%s", time.Since(t0), strings.Join(out, "\n"))
}
