package phase2

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are the side-car's Prometheus metrics, written in the text
// exposition format (version 0.0.4) by hand: a dozen series do not justify
// client_golang and its dependency tree in a binary operators install
// beside their workers.
type metrics struct {
	mu          sync.Mutex
	messages    map[[3]string]int64 // task, path, outcome
	deadLetters map[string]int64    // reason kind
	runsEnded   map[[2]string]int64 // path, Celery state

	latency histogram

	inFlight, following, parked        atomic.Int64
	claimErrors, routeErrors, restored atomic.Int64
	routesVersion                      atomic.Int64
}

func newMetrics() *metrics {
	return &metrics{
		messages: map[[3]string]int64{}, deadLetters: map[string]int64{}, runsEnded: map[[2]string]int64{},
		latency: histogram{counts: map[string][]int64{}, sums: map[string]float64{}},
	}
}

func (m *metrics) message(task, path, outcome string) {
	m.mu.Lock()
	m.messages[[3]string{task, path, outcome}]++
	m.mu.Unlock()
}

func (m *metrics) deadLetter(reason string) {
	m.mu.Lock()
	m.deadLetters[reason]++
	m.mu.Unlock()
}

func (m *metrics) runEnded(path, state string) {
	m.mu.Lock()
	m.runsEnded[[2]string{path, state}]++
	m.mu.Unlock()
}

// reasonKind is the label of a dead-letter reason: its first word.
func reasonKind(reason string) string {
	if i := strings.IndexByte(reason, ':'); i > 0 {
		return reason[:i]
	}
	return reason
}

// latencyBuckets are the claim-to-ack histogram's upper bounds, in seconds.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// histogram is a Prometheus histogram by one label (the path).
type histogram struct {
	mu     sync.Mutex
	counts map[string][]int64 // per bucket, not cumulative; last is +Inf
	sums   map[string]float64
}

func (h *histogram) observe(label string, d time.Duration) {
	s := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets, s)
	h.mu.Lock()
	c := h.counts[label]
	if c == nil {
		c = make([]int64, len(latencyBuckets)+1)
		h.counts[label] = c
	}
	c[i]++
	h.sums[label] += s
	h.mu.Unlock()
}

// write emits every metric in the text exposition format.
func (m *metrics) write(w io.Writer) {
	var b strings.Builder
	head := func(name, kind, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	}
	m.mu.Lock()
	head("spine_phase2_messages_total", "counter", "Messages the side-car finished, by task, path and outcome.")
	for _, k := range sortedKeys(m.messages) {
		fmt.Fprintf(&b, "spine_phase2_messages_total{task=%s,path=%s,outcome=%s} %d\n", q(k[0]), q(k[1]), q(k[2]), m.messages[k])
	}
	head("spine_phase2_dead_letters_total", "counter", "Messages moved to the dead-letter list, by reason.")
	for _, k := range sortedKeys(m.deadLetters) {
		fmt.Fprintf(&b, "spine_phase2_dead_letters_total{reason=%s} %d\n", q(k), m.deadLetters[k])
	}
	head("spine_phase2_runs_ended_total", "counter", "Shadowed and rerouted runs ended by their task's result, by path and Celery state.")
	for _, k := range sortedKeys(m.runsEnded) {
		fmt.Fprintf(&b, "spine_phase2_runs_ended_total{path=%s,state=%s} %d\n", q(k[0]), q(k[1]), m.runsEnded[k])
	}
	m.mu.Unlock()

	head("spine_phase2_claim_to_ack_seconds", "histogram", "Time from claiming a message to its hand-off and ack, by path.")
	m.latency.mu.Lock()
	for _, label := range sortedKeys(m.latency.counts) {
		c := m.latency.counts[label]
		var cum int64
		for i, le := range latencyBuckets {
			cum += c[i]
			fmt.Fprintf(&b, "spine_phase2_claim_to_ack_seconds_bucket{path=%s,le=%q} %d\n", q(label), strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		cum += c[len(latencyBuckets)]
		fmt.Fprintf(&b, "spine_phase2_claim_to_ack_seconds_bucket{path=%s,le=\"+Inf\"} %d\n", q(label), cum)
		fmt.Fprintf(&b, "spine_phase2_claim_to_ack_seconds_sum{path=%s} %s\n", q(label), strconv.FormatFloat(m.latency.sums[label], 'g', -1, 64))
		fmt.Fprintf(&b, "spine_phase2_claim_to_ack_seconds_count{path=%s} %d\n", q(label), cum)
	}
	m.latency.mu.Unlock()

	for _, g := range []struct {
		name, kind, help string
		v                int64
	}{
		{"spine_phase2_in_flight", "gauge", "Messages claimed and not yet finished.", m.inFlight.Load()},
		{"spine_phase2_following", "gauge", "Runs waiting for their task's result.", m.following.Load()},
		{"spine_phase2_parked", "gauge", "Rerouted messages held until their eta.", m.parked.Load()},
		{"spine_phase2_claim_errors_total", "counter", "Claims that failed (Redis errors).", m.claimErrors.Load()},
		{"spine_phase2_route_errors_total", "counter", "Route table reads that failed.", m.routeErrors.Load()},
		{"spine_phase2_restored_total", "counter", "Messages put back on a queue (unfinished at shutdown or after an error, or past the visibility timeout).", m.restored.Load()},
		{"spine_phase2_route_reloads_total", "counter", "Route table reads applied.", m.routesVersion.Load()},
	} {
		head(g.name, g.kind, g.help)
		fmt.Fprintf(&b, "%s %d\n", g.name, g.v)
	}
	_, _ = io.WriteString(w, b.String())
}

// q quotes a label value as the exposition format wants: backslash, double
// quote and newline escaped.
func q(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func sortedKeys[K interface {
	~string | ~[2]string | ~[3]string
}, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return keys
}

// Handler serves /metrics (Prometheus), /healthz (the process is alive) and
// /readyz (routes loaded, claiming, not shutting down).
func (s *Sidecar) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.metrics.write(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := s.notReady(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}

// notReady says why the side-car should not count as serving, or "".
func (s *Sidecar) notReady() string {
	if !s.ready.Load() {
		if s.running.Load() {
			return "starting or shutting down"
		}
		return "not running"
	}
	if s.failing.Load() {
		return "claims from the broker are failing"
	}
	stale := 3*s.opts.RouteRefresh + 5*time.Second
	if age := time.Since(time.Unix(0, s.loadedAt.Load())); age > stale {
		return fmt.Sprintf("routes last read %s ago", age.Round(time.Second))
	}
	return ""
}
