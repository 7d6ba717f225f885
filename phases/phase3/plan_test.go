package phase3_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/internal/seed"
	"github.com/spinecore/spine-go/phases/phase3"
)

func TestPlanCountsOverlapsAndEstimates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := phase3.PlanCopy(b.ctx, b.pool, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("a seeded database is refused: %v", err)
	}
	var total int64
	byType, byStatus := map[string]int64{}, map[string]int64{}
	for _, c := range p.Counts {
		total += c.Rows
		byType[c.JobType] += c.Rows
		byStatus[c.Status] += c.Rows
		if c.Pipeline == "" || c.MapsTo == "" {
			t.Errorf("%s/%s unmapped in a seeded database", c.JobType, c.Status)
		}
	}
	if total != int64(b.sum.Jobs) || p.JobsRows != total || len(p.Counts) != len(seed.JobTypes)*len(seed.JobStatuses) {
		t.Errorf("counts cover %d jobs in %d pairs, seeded %d", total, len(p.Counts), b.sum.Jobs)
	}
	for typ, n := range b.sum.JobsByType {
		if byType[typ] != int64(n) {
			t.Errorf("job type %s: plan %d, seeded %d", typ, byType[typ], n)
		}
	}
	for st, n := range b.sum.JobsByStatus {
		if byStatus[st] != int64(n) {
			t.Errorf("status %s: plan %d, seeded %d", st, byStatus[st], n)
		}
	}
	if p.Overlaps.Jobs != int64(b.sum.SharedTaskIDs) || p.Overlaps.Jobs == 0 || len(p.Overlaps.Examples) == 0 || p.Overlaps.Rule != phase3.OverlapRule {
		t.Errorf("overlaps = %+v, seeded %d", p.Overlaps, b.sum.SharedTaskIDs)
	}
	if p.Sample.Rows != int64(b.sum.Jobs) || p.Sample.RowsPerSecond <= 0 || p.Estimate <= 0 {
		t.Errorf("sample %+v, estimate %s", p.Sample, p.Estimate)
	}
	var w bytes.Buffer
	p.Write(&w)
	for _, want := range []string{"copilot_sync", "-> pipeline copilot_sync, status completed", "Overlaps:", "link, not duplicate",
		"CONCURRENTLY", "SHARE ROW EXCLUSIVE on jobs", "phase3 copy --execute"} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("plan text lacks %q:\n%s", want, w.String())
		}
	}
	if n := b.count(`SELECT count(*) FROM pg_class WHERE relname LIKE 'spine\_phase3\_%'`); n != 0 {
		t.Errorf("plan created %d objects", n)
	}
}

func TestPlanNamesUnknownValuesAndTheFlagThatMapsThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec("UPDATE jobs SET status = 'zombie' WHERE id IN (3, 4)")
	b.exec("UPDATE jobs SET job_type = 'reindex' WHERE id = 5")
	p, err := phase3.PlanCopy(b.ctx, b.pool, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	msg := p.Err().Error()
	for _, want := range []string{`jobs.status "zombie" (2 jobs)`, `{"statuses": {"zombie": "failed"}}`, `jobs.job_type "reindex" (1 jobs)`, `"pipelines"`, "--job-mapping FILE"} {
		if !strings.Contains(msg, want) {
			t.Errorf("plan error lacks %q: %s", want, msg)
		}
	}
	if _, err := phase3.Copy(b.ctx, b.pool, b.opts); !errors.Is(err, phase3.ErrRefused) {
		t.Fatalf("copy = %v, want ErrRefused", err)
	}
	if n := b.count(`SELECT count(*) FROM pg_class WHERE relname LIKE 'spine\_phase3\_%'`); n != 0 {
		t.Errorf("a refused copy created %d objects", n)
	}
	// The fix the error names works.
	m, err := capturespine.LoadJobMapping(strings.NewReader(`{"statuses": {"zombie": "failed"}, "pipelines": {"reindex": "search_reindex"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b.opts.Mapping = &m
	if p, err := phase3.PlanCopy(b.ctx, b.pool, b.opts); err != nil || p.Err() != nil {
		t.Fatalf("plan with the mapping file: %v %v", err, p.Err())
	}
	b.copy()
	b.verifyOK()
	b.checkAgainstGo(m)

	// Not a Capture-Spine database at all.
	other := setup(t)
	other.exec("DROP TABLE jobs")
	p, err = phase3.PlanCopy(other.ctx, other.pool, other.opts)
	if err != nil || !strings.Contains(p.Err().Error(), "table jobs does not exist") {
		t.Errorf("without jobs: %v %v", p.Err(), err)
	}
}
