package phase3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// ErrNotCopied is returned by Verify and Repair before a copy has set its bound.
var ErrNotCopied = errors.New("phase3: no copy has begun on this database (spine-migrate phase3 copy --execute)")

// VerifyReport is what Verify found, from one snapshot.
type VerifyReport struct {
	// Complete is true when the copy had finished, so every job was
	// compared; otherwise only the jobs the copy had passed, and those above
	// its bound (which the trigger alone carries), were.
	Complete bool   `json:"complete"`
	Scope    string `json:"scope"`
	Jobs     int64  `json:"jobs"`
	// Expected and actual counts, by kind: executions written for jobs,
	// links from native executions, unmapped jobs listed as rejects.
	ExpectedExecutions int64 `json:"expected_executions"`
	ActualExecutions   int64 `json:"actual_executions"`
	ExpectedLinks      int64 `json:"expected_links"`
	ActualLinks        int64 `json:"actual_links"`
	Unmapped           int64 `json:"unmapped"`
	// Orphans are executions marked as migrated from a job, and links,
	// that name no job: legacy_job_id, or an element of legacy_job_ids,
	// missing or null. No job says what they should be, so repair cannot
	// mend them.
	Orphans  int64 `json:"orphans"`
	Chunks   int   `json:"chunks"`
	ChunkIDs int64 `json:"chunk_ids"`
	// Mismatches are the id ranges whose hashes differ, adjacent chunks merged.
	Mismatches []Mismatch    `json:"mismatches"`
	Elapsed    time.Duration `json:"elapsed_ns"`
}

// Mismatch is an id range where the executions do not match the jobs.
type Mismatch struct {
	FirstID      int64     `json:"first_id"`
	LastID       int64     `json:"last_id"`
	ExpectedRows int64     `json:"expected_rows"`
	ActualRows   int64     `json:"actual_rows"`
	Jobs         []JobDiff `json:"jobs"` // the first differing job ids
}

// JobDiff is one job whose execution state differs: "missing" (no
// execution, link or reject stands for it), "unexpected" (one stands for a
// job that does not exist) or "differs".
type JobDiff struct {
	JobID   int64  `json:"job_id"`
	Problem string `json:"problem"`
}

// OrphansSQL finds the executions VerifyReport.Orphans counts.
const OrphansSQL = `SELECT execution_id FROM executions WHERE metadata ? '` + metaMigrated + `' AND metadata ->> 'legacy_job_id' IS NULL OR jsonb_path_exists(metadata, '$.legacy_job_ids[*] ? (@ == null)')`

// OK says the executions match the jobs, every job is mapped and the copy
// is complete.
func (r VerifyReport) OK() bool {
	return r.Complete && len(r.Mismatches) == 0 && r.Unmapped == 0 && r.Orphans == 0
}

// Err explains why the report is not OK.
func (r VerifyReport) Err() error {
	var why []string
	if len(r.Mismatches) > 0 {
		var ranges []string
		for _, m := range r.Mismatches {
			ranges = append(ranges, fmt.Sprintf("%d-%d", m.FirstID, m.LastID))
		}
		why = append(why, fmt.Sprintf("%d id ranges differ (%s): spine-migrate phase3 verify --repair --execute re-copies them", len(ranges), strings.Join(ranges, ", ")))
	}
	if r.Unmapped > 0 {
		why = append(why, fmt.Sprintf("%d jobs have a type or status the mapping does not know (listed in %s): add them with %s and run phase3 copy --execute again", r.Unmapped, RejectsTable, MappingFlag))
	}
	if r.Orphans > 0 {
		why = append(why, fmt.Sprintf("%d executions or links say they stand for a job but name none (metadata legacy_job_id, or an element of legacy_job_ids, missing or null): "+
			"no job says what they should be, so mend or delete them by hand; %s finds them", r.Orphans, OrphansSQL))
	}
	if !r.Complete {
		why = append(why, "the copy has not finished: "+r.Scope)
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("phase3 verify: %s", strings.Join(why, "; "))
}

// verifySQL is the comparison, over the jobs whose id satisfies the scope:
// "expected" is what the mapping and the link rule make of the jobs,
// "actual" what executions (and the rejects list) hold for them, each row
// as (kind, job id, 64-bit hash). Kinds: x an execution, l a link, u an
// unmapped job.
type verifySQL struct {
	with string // WITH … expected, actual
}

func buildVerifySQL(b boundMapping, types map[string]string, rowHash func([]string) string, scope func(string) string, part verifyPart) (verifySQL, error) {
	inPart := part.ids.within(scope)
	var want, have []string
	for _, c := range b.Columns {
		t, ok := types[c]
		if !ok {
			return verifySQL{}, fmt.Errorf("phase3 verify: executions has no column %s: apply phase 1 first", c)
		}
		q := pgx.Identifier{c}.Sanitize()
		if c == "metadata" { // compared as text: see sel below
			want = append(want, "m."+q)
			have = append(have, "e."+q+"::text")
			continue
		}
		want = append(want, "m."+q+"::"+t)
		have = append(have, "e."+q)
	}
	legacyID, linkedID := "(e.metadata ->> 'legacy_job_id')::bigint", "(v #>> '{}')::bigint"
	// The migrated executions and links compared: those of the part's
	// ids, or, for a worker's share, those stored in its blocks, whatever
	// job they stand for: each is read by one worker, rather than every
	// worker reading all to keep its own ids. Those that name no job (a
	// NULL key, counted as orphans) are in the whole table's comparison
	// and in one worker's share.
	orNull := func(k string) string { return fmt.Sprintf("(%s OR %s IS NULL)", scope(k), k) }
	migrated, linked := inPart(legacyID), inPart(linkedID)
	switch {
	case part.blocks != nil:
		migrated = part.blocks.sql("e.ctid") + " AND " + orNull(legacyID)
		linked = part.blocks.sql("e.spine_ctid") + " AND " + orNull(linkedID)
	case part.ids == allIDs:
		migrated, linked = orNull(legacyID), orNull(linkedID)
	}
	// The expected execution id from an MD5 computed once per job, in a
	// LATERAL subquery, and its bits set as bytes: half the cost of the
	// mapping's own expression, which computes the MD5 twice and edits
	// its text.
	id := capturespine.JobExecutionIDSQL(`"j"."id"`)
	if strings.Count(b.Select, id) != 1 {
		return verifySQL{}, fmt.Errorf("phase3 verify: the mapping computes the execution id as %d expressions, not 1 (a build bug)", strings.Count(b.Select, id))
	}
	sel := strings.Replace(b.Select, id, capturespine.JobExecutionIDFromDigestSQL("spine_x.digest"), 1)
	// The metadata as the text jsonb prints for it, built without building
	// the jsonb (a third of the cost), against executions.metadata::text.
	if strings.Count(sel, b.Metadata) != 1 {
		return verifySQL{}, errors.New("phase3 verify: the mapping's metadata expression is not in its select list once (a build bug)")
	}
	sel = strings.Replace(sel, b.Metadata, b.MetadataText, 1)
	return verifySQL{with: fmt.Sprintf(`
WITH special AS MATERIALIZED (
    SELECT ctid AS spine_ctid, execution_id, backend_task_id, metadata ? '%[1]s' AS migrated, metadata -> 'legacy_job_ids' AS links
    FROM executions
    WHERE backend_task_id IS NOT NULL AND NOT (metadata ? '%[1]s') OR metadata ? 'legacy_job_ids'
), natives AS MATERIALIZED (
    SELECT backend_task_id AS task_id, array_agg(execution_id ORDER BY execution_id) AS ids
    FROM special
    WHERE backend_task_id IS NOT NULL AND NOT migrated
    GROUP BY backend_task_id
), base AS MATERIALIZED (
    SELECT m.spine_k AS k, m.spine_natives AS natives,
           CASE WHEN m.spine_natives IS NOT NULL THEN NULL
                WHEN m.spine_mapped THEN %[2]s
                ELSE hashtextextended('unmapped ' || m.spine_k, 0) END AS h,
           CASE WHEN m.spine_mapped THEN 'x' ELSE 'u' END AS kind
    FROM (SELECT j.id AS spine_k, n.ids AS spine_natives, %[3]s AS spine_mapped, %[4]s
          FROM jobs AS j CROSS JOIN (SELECT * FROM spine_phase3_mapping LIMIT 1) AS spine_map
          CROSS JOIN LATERAL (SELECT %[11]s AS digest OFFSET 0) AS spine_x
          LEFT JOIN natives AS n ON n.task_id = j.celery_task_id
          WHERE %[5]s) AS m
), expected AS (
    SELECT kind, k, h FROM base WHERE h IS NOT NULL
    UNION ALL
    SELECT 'l', b.k, hashtextextended('link ' || b.k || ' ' || x::text, 0)
    FROM base AS b CROSS JOIN LATERAL unnest(b.natives) AS x
), actual AS (
    SELECT 'x' AS kind, %[6]s AS k, %[7]s AS h
    FROM executions AS e
    WHERE e.metadata ? '%[1]s' AND %[8]s
    UNION ALL
    SELECT 'l', %[12]s, hashtextextended('link ' || (v #>> '{}') || ' ' || e.execution_id::text, 0)
    FROM special AS e CROSS JOIN LATERAL jsonb_array_elements(e.links) AS v
    WHERE e.links IS NOT NULL AND %[9]s
    UNION ALL
    SELECT 'u', r.job_id, hashtextextended('unmapped ' || r.job_id, 0)
    FROM spine_phase3_rejects AS r
    WHERE %[10]s
)`, metaMigrated, rowHash(want), mappedSQL("j"), sel, inPart("j.id"),
		legacyID, rowHash(have), migrated, linked, inPart("r.job_id"), capturespine.JobIDDigestSQL("j.id"), linkedID)}, nil
}

// chunkSQL groups expected and actual by chunk ($1 ids wide) and kind,
// and counts the jobs the link rule maps to links rather than an
// execution (side and kind j).
func (v verifySQL) chunkSQL() string {
	return v.with + `
SELECT side, kind, ((k - (((k % $1) + $1) % $1)) / $1) AS chunk, count(*), sum(h)::text
FROM (SELECT 'e' AS side, kind, k, h FROM expected UNION ALL SELECT 'a', kind, k, h FROM actual
      UNION ALL SELECT 'j', 'j', k, 0 FROM base WHERE natives IS NOT NULL) AS x
GROUP BY 1, 2, 3`
}

// jobSQL groups expected and actual by job id, within the ranges $1, $2 (arrays of bounds).
func (v verifySQL) jobSQL() string {
	return v.with + `
SELECT side, k, count(*), sum(h)::text
FROM (SELECT 'e' AS side, k, h FROM expected UNION ALL SELECT 'a', k, h FROM actual) AS x
WHERE EXISTS (SELECT 1 FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) WHERE x.k BETWEEN r.lo AND r.hi)
GROUP BY 1, 2`
}

// verifySettings are the settings of every verify transaction. JIT
// compiles the wide mapping for longer than it runs. Sorts are off because
// the planner, which cannot see how few rows unnest and
// jsonb_array_elements return, guesses tens of millions of groups where a
// chunk comparison has a few per 10,000 jobs, and sorts every row (spilling
// to disk) to group them; hashing them takes a tenth of the time.
const verifySettings = "SET LOCAL jit = off; SET LOCAL enable_sort = off"

// rowHashSQL hashes a row of the given expressions: hash_record_extended
// where PostgreSQL has it (14+), else the first 64 bits of an MD5 of its text.
func rowHashSQL(haveRecordHash bool) func([]string) string {
	return func(fields []string) string {
		row := "ROW(" + strings.Join(fields, ", ") + ")"
		if haveRecordHash {
			return "hash_record_extended(" + row + ", 0)"
		}
		return "('x' || substr(md5(" + row + "::text), 1, 16))::bit(64)::bigint"
	}
}

// Verify compares the executions with the jobs they stand for, from one
// snapshot (REPEATABLE READ, read-only transactions): per chunk of
// ChunkIDs job ids, the count and a sum of row hashes of what the mapping
// and the link rule make of the jobs against what executions holds. It
// names every differing range, and the first differing jobs in each. With
// VerifyParallel above 1 the ids and executions' blocks are split among
// that many connections, each reading the snapshot of the first (see
// compareParts), and their sums added up: the report is the one a single
// transaction gives.
func Verify(ctx context.Context, pool *pgxpool.Pool, opts Options) (VerifyReport, error) {
	return verify(ctx, pool, opts.withDefaults(), false)
}

func verify(ctx context.Context, pool *pgxpool.Pool, opts Options, forceTextHash bool) (VerifyReport, error) {
	start := time.Now()
	r := VerifyReport{ChunkIDs: opts.ChunkIDs}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return r, fmt.Errorf("phase3 verify: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, verifySettings); err != nil {
		return r, fmt.Errorf("phase3 verify: %w", err)
	}
	cp, err := readCheckpoint(ctx, tx)
	if err != nil {
		return r, fmt.Errorf("phase3 verify: %w", err)
	}
	if !cp.BoundSet {
		return r, ErrNotCopied
	}
	if ok, err := tableExists(ctx, tx, "jobs"); err != nil || !ok {
		return r, fmt.Errorf("phase3 verify: table jobs is gone (phase 3 is %s): nothing to compare", map[bool]string{true: "cut over", false: "unknown"}[cp.CutOverAt != nil])
	}
	r.Complete = cp.FinishedAt != nil
	scope := func(string) string { return "true" }
	r.Scope = "all jobs"
	if !r.Complete {
		scope = func(k string) string { return fmt.Sprintf("(%[1]s <= %[2]d OR %[1]s > %[3]d)", k, cp.LastID, cp.MaxID) }
		r.Scope = fmt.Sprintf("jobs with id <= %d (the checkpoint) or > %d (the copy's bound; the trigger alone carries those)", cp.LastID, cp.MaxID)
	}
	types, err := executionTypes(ctx, tx)
	if err != nil {
		return r, err
	}
	var haveRecordHash bool
	if err := tx.QueryRow(ctx, "SELECT to_regprocedure('hash_record_extended(record, bigint)') IS NOT NULL").Scan(&haveRecordHash); err != nil {
		return r, fmt.Errorf("phase3 verify: %w", err)
	}
	b, err := bindMapping()
	if err != nil {
		return r, err
	}
	rowHash := rowHashSQL(haveRecordHash && !forceTextHash)
	build := func(p verifyPart) (verifySQL, error) { return buildVerifySQL(b, types, rowHash, scope, p) }
	if _, err := build(wholeTable); err != nil { // a column missing fails every part alike: say so once
		return r, err
	}
	parts, err := verifyParts(ctx, tx, pool, opts)
	if err != nil {
		return r, fmt.Errorf("phase3 verify: %w", err)
	}
	sums, err := compareParts(ctx, tx, pool, parts, build, opts)
	if err != nil {
		return r, fmt.Errorf("phase3 verify: %w", err)
	}
	r.judge(sums, opts.ChunkIDs)
	if n := len(r.Mismatches); n > 0 {
		// Over the ids from the first differing range to the last alone.
		v, err := build(verifyPart{ids: idRange{r.Mismatches[0].FirstID, r.Mismatches[n-1].LastID}})
		if err == nil {
			err = r.listJobs(ctx, tx, v, opts.MaxListed)
		}
		if err != nil {
			return r, fmt.Errorf("phase3 verify: %w", err)
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// chunkSums are what comparisons saw: per side (e expected, a actual),
// kind and chunk, the count and the sum of the rows' hashes; and the jobs
// linked to native executions. Sums from parts of the comparison add up
// to the sums of the whole.
type chunkSums struct {
	rows    map[sumKey]*sumVal
	linked  int64
	orphans int64 // rows with no job id, so no chunk
}

type sumKey struct {
	side, kind string
	chunk      int64
}

type sumVal struct {
	n   int64
	sum big.Int
}

// sums runs the chunk comparison (chunkSQL) in tx.
func (v verifySQL) sums(ctx context.Context, tx pgx.Tx, opts Options) (chunkSums, error) {
	s := chunkSums{rows: map[sumKey]*sumVal{}}
	rows, err := tx.Query(ctx, v.chunkSQL(), opts.ChunkIDs)
	if err != nil {
		return s, fmt.Errorf("compare chunks: %w", err)
	}
	var k sumKey
	var chunk *int64
	var n int64
	var sum *string
	_, err = pgx.ForEachRow(rows, []any{&k.side, &k.kind, &chunk, &n, &sum}, func() error {
		switch {
		case k.side == "j":
			s.linked += n
			return nil
		case chunk == nil:
			s.orphans += n
			return nil
		case sum == nil:
			return fmt.Errorf("chunk %d has %d rows of kind %s on side %s and no hash sum", *chunk, n, k.kind, k.side)
		}
		k.chunk = *chunk
		var x big.Int
		if _, ok := x.SetString(*sum, 10); !ok {
			return fmt.Errorf("a hash sum %q is not an integer", *sum)
		}
		s.add(k, n, &x)
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("compare chunks: %w", err)
	}
	return s, nil
}

func (s *chunkSums) add(k sumKey, n int64, sum *big.Int) {
	v, ok := s.rows[k]
	if !ok {
		v = &sumVal{}
		s.rows[k] = v
	}
	v.n += n
	v.sum.Add(&v.sum, sum)
}

// merge adds o's counts and sums to s's.
func (s *chunkSums) merge(o chunkSums) {
	s.linked += o.linked
	s.orphans += o.orphans
	for k, v := range o.rows {
		s.add(k, v.n, &v.sum)
	}
}

// judge fills the report's counts, Chunks and Mismatches from the sums: a
// chunk differs when any kind's count or sum differs between the sides;
// adjacent differing chunks are merged into one range.
func (r *VerifyReport) judge(s chunkSums, chunkIDs int64) {
	// Every job compared is an expected execution (x), an unmapped job
	// (u) or a job linked to executions Capture-Spine wrote. Only the
	// last are counted apart: they are few, where a row for every job
	// was a third of the rows grouped.
	r.Jobs, r.Orphans = s.linked, s.orphans
	kinds := map[int64]map[string]bool{}
	for k, v := range s.rows {
		if kinds[k.chunk] == nil {
			kinds[k.chunk] = map[string]bool{}
		}
		kinds[k.chunk][k.kind] = true
		switch k.side + k.kind {
		case "ex":
			r.ExpectedExecutions += v.n
			r.Jobs += v.n
		case "eu":
			r.Jobs += v.n
		case "ax":
			r.ActualExecutions += v.n
		case "el":
			r.ExpectedLinks += v.n
		case "al":
			r.ActualLinks += v.n
		case "au":
			r.Unmapped += v.n
		}
	}
	r.Chunks = len(kinds)
	zero := &sumVal{}
	for _, c := range slices.Sorted(maps.Keys(kinds)) {
		var e, a int64
		same := true
		for kind := range kinds[c] {
			ev, av := s.rows[sumKey{"e", kind, c}], s.rows[sumKey{"a", kind, c}]
			if ev == nil {
				ev = zero
			}
			if av == nil {
				av = zero
			}
			e, a = e+ev.n, a+av.n
			same = same && ev.n == av.n && ev.sum.Cmp(&av.sum) == 0
		}
		if !same {
			lo := c * chunkIDs
			r.Mismatches = mergeMismatch(r.Mismatches, Mismatch{FirstID: lo, LastID: lo + chunkIDs - 1, ExpectedRows: e, ActualRows: a})
		}
	}
}

// mergeMismatch appends m, which starts after every range of ms, to ms:
// merged into the last range when the two are adjacent.
func mergeMismatch(ms []Mismatch, m Mismatch) []Mismatch {
	last := len(ms) - 1
	if last < 0 || ms[last].LastID != m.FirstID-1 {
		return append(ms, m)
	}
	prev := &ms[last]
	prev.LastID = m.LastID
	prev.ExpectedRows += m.ExpectedRows
	prev.ActualRows += m.ActualRows
	return ms
}

// listJobs names the first differing jobs of each mismatching range.
func (r *VerifyReport) listJobs(ctx context.Context, tx pgx.Tx, v verifySQL, limit int) error {
	var los, his []int64
	for _, m := range r.Mismatches {
		los, his = append(los, m.FirstID), append(his, m.LastID)
	}
	rows, err := tx.Query(ctx, v.jobSQL(), los, his)
	if err != nil {
		return fmt.Errorf("list differing jobs: %w", err)
	}
	type agg struct {
		n   int64
		sum string
	}
	exp, act := map[int64]agg{}, map[int64]agg{}
	var side, sum string
	var k, n int64
	if _, err := pgx.ForEachRow(rows, []any{&side, &k, &n, &sum}, func() error {
		if side == "e" {
			exp[k] = agg{n, sum}
		} else {
			act[k] = agg{n, sum}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list differing jobs: %w", err)
	}
	ids := slices.Sorted(maps.Keys(exp))
	for k := range act {
		if _, ok := exp[k]; !ok {
			ids = append(ids, k)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		e, inE := exp[id]
		a, inA := act[id]
		problem := ""
		switch {
		case inE && !inA:
			problem = "missing"
		case inA && !inE:
			problem = "unexpected"
		case e != a:
			problem = "differs"
		default:
			continue
		}
		for i := range r.Mismatches {
			m := &r.Mismatches[i]
			if id >= m.FirstID && id <= m.LastID && len(m.Jobs) < limit {
				m.Jobs = append(m.Jobs, JobDiff{JobID: id, Problem: problem})
			}
		}
	}
	return nil
}

// executionTypes maps each executions column to its SQL type.
func executionTypes(ctx context.Context, q querier) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = to_regclass('executions') AND attnum > 0 AND NOT attisdropped`)
	if err != nil {
		return nil, fmt.Errorf("phase3: executions columns: %w", err)
	}
	out := map[string]string{}
	var name, typ string
	_, err = pgx.ForEachRow(rows, []any{&name, &typ}, func() error { out[name] = typ; return nil })
	if err != nil {
		return nil, fmt.Errorf("phase3: executions columns: %w", err)
	}
	return out, nil
}

// Write prints the report for an operator.
func (r VerifyReport) Write(w io.Writer) {
	fmt.Fprintf(w, "Phase 3 verify (one snapshot, read-only) of %s: %d jobs in %d chunks of %d ids, %s\n",
		r.Scope, r.Jobs, r.Chunks, r.ChunkIDs, r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  executions for jobs: %d expected, %d found\n", r.ExpectedExecutions, r.ActualExecutions)
	fmt.Fprintf(w, "  links from Capture-Spine's executions: %d expected, %d found\n", r.ExpectedLinks, r.ActualLinks)
	if r.Unmapped > 0 {
		fmt.Fprintf(w, "  unmapped jobs (in %s): %d\n", RejectsTable, r.Unmapped)
	}
	if r.Orphans > 0 {
		fmt.Fprintf(w, "  executions or links that name no job: %d\n", r.Orphans)
	}
	for _, m := range r.Mismatches {
		fmt.Fprintf(w, "  MISMATCH ids %d-%d: %d rows expected, %d found", m.FirstID, m.LastID, m.ExpectedRows, m.ActualRows)
		var jobs []string
		for _, j := range m.Jobs {
			jobs = append(jobs, fmt.Sprintf("%d %s", j.JobID, j.Problem))
		}
		if len(jobs) > 0 {
			fmt.Fprintf(w, " (jobs: %s)", strings.Join(jobs, ", "))
		}
		fmt.Fprintln(w)
	}
	if err := r.Err(); err != nil {
		fmt.Fprintf(w, "NOT OK: %v\n", strings.TrimPrefix(err.Error(), "phase3 verify: "))
		return
	}
	fmt.Fprintln(w, "OK: every job is in executions exactly as the mapping says.")
}
