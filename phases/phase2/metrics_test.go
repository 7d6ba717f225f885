package phase2

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spinecore/spine-go/celerybridge"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$`)
	metaLine   = regexp.MustCompile(`^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$`)
)

// checkExposition parses the text format strictly enough to catch what a
// Prometheus scrape would reject: bad lines, samples of an undeclared
// family, non-cumulative histogram buckets.
func checkExposition(t *testing.T, body string) map[string]float64 {
	t.Helper()
	declared := map[string]string{}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if m := metaLine.FindStringSubmatch(line); m != nil {
			if m[1] == "TYPE" {
				declared[m[2]] = strings.Fields(line)[3]
			}
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a sample line: %q", line)
		}
		family := m[1]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(family, suffix); ok && declared[base] == "histogram" {
				family = base
			}
		}
		if declared[family] == "" {
			t.Fatalf("sample of an undeclared family: %q", line)
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil && m[4] != "+Inf" {
			t.Fatalf("value of %q: %v", line, err)
		}
		samples[m[1]+m[2]] = v
	}
	return samples
}

func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc, err := New(b.ctx, b.pool, b.rdb, b.testOptions())
	if err != nil {
		t.Fatal(err)
	}
	h := sc.Handler()
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Errorf("/readyz before Run: %d %s", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	_, raw := b.message(backupTask, []any{1}, nil, celerybridge.TaskOptions{})
	_, unknown := b.message("nobody.knows", nil, nil, celerybridge.TaskOptions{})
	b.push(DefaultInterceptQueue, raw)
	b.push(DefaultInterceptQueue, unknown)

	// Run this side-car (not b.start's) so its handler is the one asked.
	stop := b.runSidecar(sc)
	b.waitFor("ready", 5*time.Second, func() bool { code, _ := get(t, h, "/readyz"); return code == http.StatusOK })
	b.waitFor("both messages counted", 5*time.Second, func() bool {
		_, body := get(t, h, "/metrics")
		return strings.Contains(body, `outcome="dead_lettered"} 1`) && strings.Contains(body, `outcome="ok"} 1`) &&
			strings.Contains(body, "spine_phase2_in_flight 0")
	})
	code, body := get(t, h, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	s := checkExposition(t, body)
	for series, want := range map[string]float64{
		`spine_phase2_messages_total{task="app.tasks.backup.run_backup_for_user",path="passthrough",outcome="ok"}`: 1,
		`spine_phase2_messages_total{task="nobody.knows",path="",outcome="dead_lettered"}`:                         1,
		`spine_phase2_dead_letters_total{reason="unknown_task"}`:                                                   1,
		`spine_phase2_claim_to_ack_seconds_count{path="passthrough"}`:                                              1,
		`spine_phase2_claim_to_ack_seconds_bucket{path="passthrough",le="+Inf"}`:                                   1,
		`spine_phase2_in_flight`: 0,
	} {
		if got, ok := s[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v\n%s", series, got, ok, want, body)
		}
	}
	stop()
	if code, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after stop: %d", code)
	}
}

func TestLabelQuoting(t *testing.T) {
	t.Parallel()
	m := newMetrics()
	m.message("a\"b\\c\nd", "shadow", "ok")
	m.latency.observe("shadow", 3*time.Millisecond)
	m.latency.observe("shadow", 20*time.Second)
	var out strings.Builder
	m.write(&out)
	s := checkExposition(t, out.String())
	if s[`spine_phase2_messages_total{task="a\"b\\c\nd",path="shadow",outcome="ok"}`] != 1 {
		t.Errorf("quoted label missing:\n%s", out.String())
	}
	if s[`spine_phase2_claim_to_ack_seconds_bucket{path="shadow",le="0.005"}`] != 1 ||
		s[`spine_phase2_claim_to_ack_seconds_bucket{path="shadow",le="10"}`] != 1 ||
		s[`spine_phase2_claim_to_ack_seconds_bucket{path="shadow",le="+Inf"}`] != 2 {
		t.Errorf("buckets not cumulative:\n%s", out.String())
	}
}
