package capturespine_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/internal/capturespinetest"
	"github.com/spinecore/spine-go/internal/testsvc"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// gen draws valid Executions covering every status and lane, each nullable
// column both ways, and the awkward values the table can hold: empty-string
// errors and task ids, JSON null results, exact big numbers, unicode.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) gen { return gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g gen) uuid() string {
	var u uuid.UUID
	for i := range u {
		u[i] = byte(g.r.UintN(256))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u.String()
}

func (g gen) maybe() bool { return g.r.IntN(2) == 0 }

func (g gen) text() string {
	return []string{"", "x", "Zürich – 東京", "line\nbreak", `quote "q" \ back`, "📈"}[g.r.IntN(6)]
}

func (g gen) optText() *string {
	if g.maybe() {
		return nil
	}
	s := g.text()
	return &s
}

func (g gen) time() time.Time {
	return core.Timestamp(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(g.r.Int64N(int64(400 * 24 * time.Hour)))))
}

func (g gen) optTime() *time.Time {
	if g.maybe() {
		return nil
	}
	t := g.time()
	return &t
}

// value is a JSON value as core.DecodeObject returns it (numbers as json.Number).
func (g gen) value(depth int) any {
	switch n := g.r.IntN(8); {
	case n == 0:
		return nil
	case n == 1:
		return g.maybe()
	case n == 2:
		return json.Number([]string{"0", "-1", "9007199254740993", "0.75", "1e-7", "123456789012345678901234567890"}[g.r.IntN(6)])
	case n == 3 || depth > 2:
		return g.text()
	case n == 4:
		out := []any{}
		for range g.r.IntN(3) {
			out = append(out, g.value(depth+1))
		}
		return out
	default:
		return g.object(depth + 1)
	}
}

func (g gen) object(depth int) map[string]any {
	out := map[string]any{}
	for i := range g.r.IntN(4) {
		out[fmt.Sprintf("k%d%s", i, g.text())] = g.value(depth)
	}
	return out
}

func (g gen) execution(status capturespine.ExecutionStatus, lane string) capturespine.Execution {
	e := capturespine.NewExecution([]string{"capture_feed", "backup", "résumé"}[g.r.IntN(3)], g.object(0))
	e.ExecutionID = g.uuid()
	e.Status, e.Lane = status, lane
	e.TriggerSource = []string{"api", "cli", "schedule", "webhook", "retry", "internal"}[g.r.IntN(6)]
	e.BackendTaskID, e.Error = g.optText(), g.optText()
	if g.maybe() {
		f := g.uuid()
		e.FeedID = &f
	}
	e.RetryCount = g.r.IntN(5)
	switch g.r.IntN(4) {
	case 0: // SQL NULL
	case 1:
		e.Result = json.RawMessage("null")
	default:
		b, _ := json.Marshal(g.value(0))
		e.Result = b
	}
	e.CreatedAt, e.StartedAt, e.CompletedAt = g.time(), g.optTime(), g.optTime()
	e.Kind = core.Kinds[g.r.IntN(len(core.Kinds))]
	e.Priority = core.Priorities[g.r.IntN(len(core.Priorities))]
	if g.maybe() {
		e.IdempotencyKey, e.CorrelationID, e.ParentRunID, e.RetryOfRunID = "key-"+g.uuid(), "corr", g.uuid(), g.uuid()
		e.ExecutorName, e.ErrorType = "celery", "TimeoutError"
	}
	e.MaxRetries = g.r.IntN(6)
	e.RetryDelay = time.Duration(g.r.Int64N(int64(time.Hour)))
	if g.maybe() {
		e.Metadata = map[string]any{"source": g.value(0)}
		if g.maybe() {
			e.Metadata["feed_id"] = json.Number("42") // not a UUID: stays in metadata
			e.FeedID = nil
		}
	}
	if g.maybe() {
		e.Tags = map[string]string{"team": g.text()}
	}
	return e
}

// sameRow fails the test unless want and got are the same row (a nil map
// equal to the empty one: the table stores both as {}).
func sameRow(t *testing.T, want, got any) {
	t.Helper()
	if !capturespinetest.SameRow(want, got) {
		t.Fatalf("round trip changed the value\nwant %#v\ngot  %#v", want, got)
	}
}
