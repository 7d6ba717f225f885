package phase1

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
)

// VerifyOptions configures Verify. The zero value is ready to use.
type VerifyOptions struct {
	// BatchSize is how many rows each statement reads; 0 means 1000.
	BatchSize int
	// MaxFailures is how many failing rows the report lists, lowest ids
	// first; 0 means 100, negative lists none. Every failure is counted.
	MaxFailures int
	// Progress, when set, is called after each batch with the number of rows
	// checked so far.
	Progress func(done int64)
}

// VerifyReport is what Verify found. It marshals to JSON for scripts.
type VerifyReport struct {
	// TotalRows is count(*) of executions when Verify began; RowsChecked is
	// how many rows it read. They differ only if writers inserted or deleted
	// rows meanwhile.
	TotalRows   int64 `json:"total_rows"`
	RowsChecked int64 `json:"rows_checked"`
	// RowsFailed counts every failing row; Failures lists the first of them.
	RowsFailed int64               `json:"rows_failed"`
	ByStatus   []VerifyStatusCount `json:"by_status"`
	Failures   []VerifyFailure     `json:"failures"`
}

// VerifyStatusCount is how many checked rows hold one status value, valid or
// not. Verify lists them in lifecycle order, unknown values last.
type VerifyStatusCount struct {
	Status string `json:"status"`
	Rows   int64  `json:"rows"`
}

// VerifyFailure is an executions row that does not read back as a valid
// RunRecord, with everything wrong with it.
type VerifyFailure struct {
	ExecutionID string          `json:"execution_id"`
	Problems    []VerifyProblem `json:"problems"`
}

// VerifyProblem is one reason a row fails, on the executions column to blame
// ("row" when no single column is).
type VerifyProblem struct {
	Column string `json:"column"`
	Reason string `json:"reason"`
}

// OK reports whether every row checked reads back as a valid RunRecord.
func (r VerifyReport) OK() bool { return r.RowsFailed == 0 }

// verifyCountRows sizes the table before the scan; verify reads every row
// anyway, so the count(*) scan costs no more than it.
const verifyCountRows = `SELECT count(*) FROM executions`

// Verify reads every executions row through the Postgres ledger, in keyset
// batches by execution_id, and checks that it decodes and is a valid
// RunRecord that Capture-Spine's view (capturespine.FromRunRecord) also
// holds. It only reads, one batch per statement: no long transaction, no
// lock a writer would wait on. A database without phase 1's schema is
// refused with an error wrapping pgledger.ErrSchemaNotReady.
func Verify(ctx context.Context, pool *pgxpool.Pool, opts VerifyOptions) (VerifyReport, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.MaxFailures == 0 {
		opts.MaxFailures = 100
	}
	ledger, err := pgledger.New(ctx, pool)
	if errors.Is(err, pgledger.ErrSchemaNotReady) {
		return VerifyReport{}, fmt.Errorf("phase1 verify: run `spine-migrate phase1 apply --execute` first: %w", err)
	}
	if err != nil {
		return VerifyReport{}, fmt.Errorf("phase1 verify: %w", err)
	}
	report := VerifyReport{ByStatus: []VerifyStatusCount{}, Failures: []VerifyFailure{}}
	if err := pool.QueryRow(ctx, verifyCountRows).Scan(&report.TotalRows); err != nil {
		return VerifyReport{}, fmt.Errorf("phase1 verify: count executions: %w", err)
	}
	byStatus := map[string]int64{}
	after := ""
	for batch := 1; ; batch++ {
		page, err := ledger.ScanRuns(ctx, after, opts.BatchSize)
		if err != nil {
			return VerifyReport{}, fmt.Errorf("phase1 verify: batch %d (ids after %q): %w", batch, after, err)
		}
		for _, s := range page {
			report.RowsChecked++
			byStatus[string(s.Run.Status)]++
			problems := verifyRun(s)
			if len(problems) == 0 {
				continue
			}
			report.RowsFailed++
			if len(report.Failures) < opts.MaxFailures {
				report.Failures = append(report.Failures, VerifyFailure{ExecutionID: s.RunID, Problems: problems})
			}
		}
		if opts.Progress != nil && len(page) > 0 {
			opts.Progress(report.RowsChecked)
		}
		if len(page) < opts.BatchSize {
			break
		}
		after = page[len(page)-1].RunID
	}
	for status, n := range byStatus {
		report.ByStatus = append(report.ByStatus, VerifyStatusCount{Status: status, Rows: n})
	}
	slices.SortFunc(report.ByStatus, func(a, b VerifyStatusCount) int {
		return cmp.Or(cmp.Compare(verifyStatusRank(a.Status), verifyStatusRank(b.Status)), strings.Compare(a.Status, b.Status))
	})
	return report, nil
}

// verifyStatusRank orders the known statuses by lifecycle, unknown ones after.
func verifyStatusRank(status string) int {
	if i := slices.Index(core.Statuses, core.RunStatus(status)); i >= 0 {
		return i
	}
	return len(core.Statuses)
}

// verifyRun lists what is wrong with one scanned row, at most one problem
// per column: the first found, decoding before validation.
func verifyRun(s pgledger.ScannedRun) []VerifyProblem {
	var problems []VerifyProblem
	add := func(column, reason string) {
		if !slices.ContainsFunc(problems, func(p VerifyProblem) bool { return p.Column == column }) {
			problems = append(problems, VerifyProblem{Column: column, Reason: reason})
		}
	}
	for _, err := range verifyUnjoin(s.Err) {
		var ce *pgledger.ColumnError
		if errors.As(err, &ce) {
			// The ledger's messages start "run <id>: <column>: "; the report
			// says both already.
			reason := strings.TrimPrefix(ce.Error(), "run "+s.RunID+": ")
			add(ce.Column, strings.TrimPrefix(reason, ce.Column+": "))
		} else {
			add("row", err.Error())
		}
	}
	run, spec := s.Run, s.Run.Spec
	if !run.Status.Valid() {
		add("status", fmt.Sprintf("%q is not a run status (%s)", run.Status, verifyList(core.Statuses)))
	}
	if !spec.Kind.Valid() {
		add("kind", fmt.Sprintf("%q is not a kind (%s)", spec.Kind, verifyList(core.Kinds)))
	}
	if !spec.Priority.Valid() {
		add("priority", fmt.Sprintf("%q is not a priority (%s)", spec.Priority, verifyList(core.Priorities)))
	}
	if spec.Name == "" {
		add("pipeline_name", "is empty: a run needs a name")
	}
	if spec.Lane == "" {
		add("lane", "is empty")
	}
	if spec.TriggerSource == "" {
		add("trigger_source", "is empty")
	}
	if run.Attempt < 1 {
		add("retry_count", fmt.Sprintf("is %d, which makes attempt %d: attempts count from 1", run.Attempt-1, run.Attempt))
	}
	if run.CreatedAt.IsZero() {
		add("created_at", "is not set")
	}
	if err := spec.Validate(); err != nil {
		column := "row"
		if ise, ok := errors.AsType[*core.InvalidSpecError](err); ok {
			column = ise.Field
			if column == "name" {
				column = "pipeline_name"
			}
		}
		add(column, err.Error())
	}
	if _, err := capturespine.FromRunRecord(run); err != nil {
		column := "row"
		if iee, ok := errors.AsType[*capturespine.InvalidExecutionError](err); ok {
			column = iee.Column
		} else if uve, ok := errors.AsType[*capturespine.UnknownValueError](err); ok {
			column = strings.TrimPrefix(uve.Column, "executions.")
		}
		add(column, "Capture-Spine's view refuses it: "+err.Error())
	}
	return problems
}

// verifyUnjoin flattens an errors.Join tree into its leaves.
func verifyUnjoin(err error) []error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if err == nil {
			return nil
		}
		return []error{err}
	}
	var leaves []error
	for _, e := range joined.Unwrap() {
		leaves = append(leaves, verifyUnjoin(e)...)
	}
	return leaves
}

func verifyList[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// Write prints the report for an operator: counts per status, then each
// listed failure with its problems.
func (r VerifyReport) Write(w io.Writer) {
	verdict := "OK: every row reads back as a valid RunRecord"
	if !r.OK() {
		verdict = fmt.Sprintf("FAILED: %d of %d rows do not read back as a valid RunRecord", r.RowsFailed, r.RowsChecked)
	}
	fmt.Fprintf(w, "Phase 1 verify: %s\n", verdict)
	fmt.Fprintf(w, "\nexecutions: %d rows checked (%d counted when verify began)\n", r.RowsChecked, r.TotalRows)
	for _, c := range r.ByStatus {
		fmt.Fprintf(w, "  %-16s %10d\n", c.Status, c.Rows)
	}
	if len(r.Failures) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFailing rows (%d listed of %d, lowest ids first):\n", len(r.Failures), r.RowsFailed)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  %s\n", f.ExecutionID)
		for _, p := range f.Problems {
			fmt.Fprintf(w, "    %s: %s\n", p.Column, p.Reason)
		}
	}
}
