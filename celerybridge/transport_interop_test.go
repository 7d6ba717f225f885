package celerybridge

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/internal/celerytest"
	"github.com/spinecore/spine-go/internal/testsvc"
)

// trInteropDir holds the Python side of these tests.
const trInteropDir = "../testdata/celery-interop"

func trPython(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs Celery 5.2.6 / kombu 5.2.4 in Python")
	}
	return celerytest.Python(t)
}

// trRunInterop runs a transport_interop.py command on the Redis DB at url and
// decodes its JSON reply into out.
func trRunInterop(t *testing.T, py, url, cmd string, spec, out any) {
	t.Helper()
	arg, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(py, filepath.Join(trInteropDir, "transport_interop.py"), cmd, string(arg))
	c.Env = append(os.Environ(), "INTEROP_URL="+url, "PYTHONDONTWRITEBYTECODE=1")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	res, err := c.Output()
	if err != nil {
		t.Fatalf("transport_interop.py %s: %v\n%s", cmd, err, stderr.String())
	}
	if err := json.Unmarshal(trLastLine(res), out); err != nil {
		t.Fatalf("transport_interop.py %s: %v\n%s\n%s", cmd, err, res, stderr.String())
	}
}

func trLastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

func trUnb64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// trBuffer collects a subprocess's output for the failure message.
type trBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *trBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *trBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// trStartWorker runs `celery worker -P solo --prefetch-multiplier 1` with
// interop.record, which appends what it ran to the list interop:ran.
func trStartWorker(t *testing.T, url string, opts map[string]any, queues ...string) *celerytest.Worker {
	t.Helper()
	optJSON, _ := json.Marshal(opts)
	return celerytest.StartWorker(t, url, celerytest.WorkerOptions{
		Module: "transport_interop", Queues: queues,
		Env:  []string{"INTEROP_URL=" + url, "INTEROP_OPTS=" + string(optJSON)},
		Args: []string{"--prefetch-multiplier", "1"},
	})
}

// trRan is what interop.record wrote.
type trRan struct {
	Label        string         `json:"label"`
	ID           string         `json:"id"`
	DeliveryInfo map[string]any `json:"delivery_info"`
	Redelivered  bool           `json:"redelivered"`
}

// trWaitRan waits until the worker has run n tasks and returns them in order.
func trWaitRan(t *testing.T, rdb *redis.Client, n int, timeout time.Duration) []trRan {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		vals, err := rdb.LRange(t.Context(), "interop:ran", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) >= n || time.Now().After(deadline) {
			out := make([]trRan, len(vals))
			for i, v := range vals {
				if err := json.Unmarshal([]byte(v), &out[i]); err != nil {
					t.Fatal(err)
				}
			}
			if len(out) < n {
				t.Fatalf("the worker ran %d of %d tasks in %v: %+v", len(out), n, timeout, out)
			}
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// trWaitAge sleeps until a claim made at claimedAt (Redis clock) is older than
// age on the Redis clock.
func trWaitAge(t *testing.T, rdb *redis.Client, claimedAt time.Time, age time.Duration) {
	t.Helper()
	now, err := rdb.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(claimedAt.Add(age).Sub(now))
}

// 1. What Go publishes, a Celery 5.2.6 worker runs: priorities served in
// Celery's order (lowest number first, FIFO within a step), and a named
// direct exchange routed through the binding a Python Queue declared.
func TestInteropGoPublishCeleryWorkerRuns(t *testing.T) {
	t.Parallel()
	py := trPython(t)
	b := trSetup(t, TransportOptions{})
	opts := map[string]any{"queues": []map[string]string{
		{"name": "prio"}, {"name": "xq", "exchange": "x", "type": "direct", "routing_key": "rk"},
	}}
	var declared struct{ Declared []string }
	trRunInterop(t, py, b.url, "declare", opts, &declared)
	if m := trMust(b.rdb.SMembers(b.ctx, "_kombu.binding.x").Result()); !slices.Equal(m, []string{"rk\x06\x16\x06\x16xq"}) {
		t.Fatalf("binding Python declared: %q", m)
	}

	prios := append(rand.New(rand.NewPCG(3, 4)).Perm(10), rand.New(rand.NewPCG(5, 6)).Perm(10)...)
	byStep := map[int][]string{}
	priority := map[string]int{}
	for i, p := range prios {
		label := fmt.Sprintf("p%d-%02d", p, i)
		b.publish(t, "prio", p, label)
		byStep[b.tr.step(p)] = append(byStep[b.tr.step(p)], label)
		priority[label] = p
	}
	var want []string
	for _, s := range kombuPrioritySteps {
		want = append(want, byStep[s]...)
	}
	if err := b.tr.Publish(b.ctx, "x", "rk", trMessage(t, "celery", 0, "via-x")); err != nil {
		t.Fatal(err)
	}
	if err := b.tr.Publish(b.ctx, "x", "nope", trMessage(t, "celery", 0, "lost")); !errors.Is(err, ErrUnroutable) {
		t.Fatalf("unroutable publish: %v", err)
	}

	start := time.Now()
	w := trStartWorker(t, b.url, opts, "prio", "xq")
	ran := trWaitRan(t, b.rdb, len(prios)+1, 30*time.Second)
	w.Stop()
	t.Logf("worker ran %d tasks in %v", len(ran), time.Since(start))

	var got []string
	for _, r := range ran {
		if r.Label == "via-x" {
			if r.DeliveryInfo["exchange"] != "x" || r.DeliveryInfo["routing_key"] != "rk" {
				t.Errorf("via-x delivery_info %v", r.DeliveryInfo)
			}
			continue
		}
		got = append(got, r.Label)
		if p, _ := r.DeliveryInfo["priority"].(float64); int(p) != priority[r.Label] {
			t.Errorf("%s: worker saw priority %v", r.Label, r.DeliveryInfo["priority"])
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("execution order\n got %v\nwant %v", got, want)
	}
	if slices.ContainsFunc(ran, func(r trRan) bool { return r.Label == "lost" }) {
		t.Error("the unroutable message ran")
	}
}

// trConsumeReport is what transport_interop.py consume prints.
type trConsumeReport struct {
	Got []struct {
		Tag, Queue, Raw string
	} `json:"got"`
	Cycle   []string           `json:"cycle"`
	Unacked map[string]string  `json:"unacked"`
	Index   map[string]float64 `json:"index"`
}

// trCopyLists copies every list of one DB into another.
func trCopyLists(t *testing.T, from, to *redis.Client) {
	t.Helper()
	ctx := t.Context()
	for _, k := range trMust(from.Keys(ctx, "*").Result()) {
		if trMust(from.Type(ctx, k).Result()) != "list" {
			continue
		}
		vals := trMust(from.LRange(ctx, k, 0, -1).Result())
		args := make([]any, len(vals))
		for i, v := range vals {
			args[i] = v
		}
		if err := to.RPush(ctx, k, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// 2. What Python's apply_async publishes, Go claims in the order a kombu
// consumer takes it, and records it in unacked byte for byte as kombu does.
func TestInteropPythonProducerGoClaimsAsKombu(t *testing.T) {
	t.Parallel()
	py := trPython(t)
	b := trSetup(t, TransportOptions{})
	queues := []string{"qa", "qb", "qc"}
	r := rand.New(rand.NewPCG(7, 8))
	var msgs []map[string]any
	for i := range 30 {
		m := map[string]any{"label": fmt.Sprint("m", i), "queue": queues[r.IntN(3)], "priority": r.IntN(12)}
		if i%10 == 3 {
			m["serializer"] = "pickle" // a valid JSON envelope: claimable, body opaque
		}
		msgs = append(msgs, m)
	}
	var produced struct{ IDs []string }
	trRunInterop(t, py, b.url, "produce", map[string]any{"messages": msgs}, &produced)

	// The same messages in a second DB for a kombu consumer.
	url2 := testsvc.NewRedisDB(t)
	rdb2 := redis.NewClient(trMust(ParseBrokerURL(url2)))
	defer rdb2.Close()
	trCopyLists(t, b.rdb, rdb2)
	var rep trConsumeReport
	trRunInterop(t, py, url2, "consume", map[string]any{"queues": queues}, &rep)
	if len(rep.Got) != len(msgs) {
		t.Fatalf("kombu consumed %d of %d", len(rep.Got), len(msgs))
	}

	// Claim with the consumer's initial cycle, so the rotations coincide.
	var got []*Delivery
	for {
		d, err := b.tr.Claim(b.ctx, rep.Cycle, 0)
		if errors.Is(err, ErrNoMessage) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	if len(got) != len(rep.Got) {
		t.Fatalf("Go claimed %d, kombu %d", len(got), len(rep.Got))
	}
	for i, d := range got {
		k := rep.Got[i]
		if d.Tag != k.Tag || d.Queue != k.Queue {
			t.Errorf("message %d: Go took %s from %s, kombu %s from %s", i, d.Tag, d.Queue, k.Tag, k.Queue)
			continue
		}
		ours := trMust(b.rdb.HGet(b.ctx, "unacked", d.Tag).Result())
		if theirs := string(trUnb64(t, rep.Unacked[k.Tag])); ours != theirs {
			t.Errorf("message %d: unacked record\n  Go %s\nkombu %s", i, ours, theirs)
		}
		if _, ok := rep.Index[k.Tag]; !ok {
			t.Errorf("message %d: kombu did not index %s", i, k.Tag)
		}
		if task, err := DecodeTask(d.Raw); err != nil || task.Opaque != (msgs[slices.Index(produced.IDs, task.ID)]["serializer"] == "pickle") {
			t.Errorf("message %d: %+v, %v", i, task, err)
		}
	}
	if n := trMust(b.rdb.ZCard(b.ctx, "unacked_index").Result()); n != int64(len(got)) {
		t.Errorf("unacked_index has %d entries", n)
	}
}

// 3a. A message Go claimed and abandoned is restored and run by a Python
// worker once it is older than the worker's visibility_timeout.
func TestInteropGoAbandonedPythonWorkerRestores(t *testing.T) {
	t.Parallel()
	trPython(t)
	b := trSetup(t, TransportOptions{})
	b.publish(t, "crash", 6, "abandoned")
	d := b.claim(t, "crash")
	trWaitAge(t, b.rdb, d.ClaimedAt, 2100*time.Millisecond)

	opts := map[string]any{"transport_options": map[string]any{"visibility_timeout": 2}, "queues": []map[string]string{{"name": "crash"}}}
	w := trStartWorker(t, b.url, opts, "crash")
	ran := trWaitRan(t, b.rdb, 1, 20*time.Second)
	w.Stop()
	if ran[0].Label != "abandoned" || !ran[0].Redelivered {
		t.Errorf("worker ran %+v", ran[0])
	}
	if n := trMust(b.rdb.HLen(b.ctx, "unacked").Result()); n != 0 {
		t.Errorf("%d unacked records left", n)
	}
	if err := b.tr.Ack(b.ctx, d.Tag); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("late ack after a restore: %v", err)
	}
}

// 3b. A message a kombu consumer took before it was SIGKILLed is restored
// by Go, written exactly as kombu's own restore writes it but on its
// priority list, and claimed again.
func TestInteropPythonKilledGoRestores(t *testing.T) {
	t.Parallel()
	py := trPython(t)
	b := trSetup(t, TransportOptions{VisibilityTimeout: time.Second})
	var produced struct{ IDs []string }
	trRunInterop(t, py, b.url, "produce", map[string]any{"messages": []map[string]any{{"label": "killed", "queue": "crash2", "priority": 6}}}, &produced)
	original := trMust(b.rdb.LIndex(b.ctx, "crash2\x06\x166", 0).Result())

	spec, _ := json.Marshal(map[string]any{"queues": []string{"crash2"}, "count": 1, "hang": true})
	c := exec.Command(py, filepath.Join(trInteropDir, "transport_interop.py"), "consume", string(spec))
	c.Env = append(os.Environ(), "INTEROP_URL="+b.url, "PYTHONDONTWRITEBYTECODE=1")
	var stderr trBuffer
	c.Stderr = &stderr
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadBytes('\n')
	_ = c.Process.Kill() // SIGKILL: no restore at shutdown
	_ = c.Wait()
	var rep trConsumeReport
	if err != nil || json.Unmarshal(line, &rep) != nil || len(rep.Got) != 1 {
		t.Fatalf("consumer: %v %s\n%s", err, line, stderr.String())
	}
	tag := rep.Got[0].Tag
	if n := trMust(b.rdb.HLen(b.ctx, "unacked").Result()); n != 1 {
		t.Fatalf("the killed consumer left %d unacked records", n)
	}

	score := trMust(b.rdb.ZScore(b.ctx, "unacked_index", tag).Result())
	trWaitAge(t, b.rdb, time.Unix(0, int64(score*1e9)), 1100*time.Millisecond)
	n, err := b.tr.RestoreVisible(b.ctx)
	if n != 1 || err != nil {
		t.Fatalf("RestoreVisible = %d, %v", n, err)
	}
	restored := trMust(b.rdb.LIndex(b.ctx, "crash2\x06\x166", 0).Result())

	// kombu 5.2.4's own restore of the same message, in a spare DB.
	url2 := testsvc.NewRedisDB(t)
	var rt trRoundtripReport
	trRunInterop(t, py, url2, "roundtrip", map[string]any{"messages": []string{base64.StdEncoding.EncodeToString([]byte(original))}}, &rt)
	kombu := rt.Results[0].Restored["crash2"] // 5.2.4 restores to the plain list
	if len(kombu) != 1 || restored != string(trUnb64(t, kombu[0])) {
		t.Errorf("restored envelope\n  Go %s\nkombu %v", restored, rt.Results[0])
	}

	d := b.claim(t, "crash2")
	if d.Tag != tag || !d.Redelivered || d.Priority != 6 || string(d.Raw) != restored || trLabel(t, d.Raw) != "killed" {
		t.Errorf("claimed again: %+v", d)
	}
}

// trRoundtripReport is what transport_interop.py roundtrip prints.
type trRoundtripReport struct {
	Results []struct {
		Tag         any                 `json:"tag"`
		Record      string              `json:"record"`
		Restored    map[string][]string `json:"restored"`
		UnackedLeft int                 `json:"unacked_left"`
		Error       string              `json:"error"`
	} `json:"results"`
}

// 4. global_keyprefix end to end: a prefixed Python producer, Go claiming
// and publishing under the prefix, and a prefixed Python worker restoring
// what Go abandoned and running everything.
func TestInteropGlobalKeyPrefix(t *testing.T) {
	t.Parallel()
	py := trPython(t)
	b := trSetup(t, TransportOptions{KeyPrefix: "pfx:"})
	topts := map[string]any{"global_keyprefix": "pfx:", "visibility_timeout": 2}
	var produced struct{ IDs []string }
	trRunInterop(t, py, b.url, "produce", map[string]any{"transport_options": topts, "messages": []map[string]any{
		{"label": "py-abandoned", "queue": "pq", "priority": 0}, {"label": "py-left", "queue": "pq", "priority": 3},
	}}, &produced)
	d := b.claim(t, "pq")
	if trLabel(t, d.Raw) != "py-abandoned" || trMust(b.rdb.HExists(b.ctx, "pfx:unacked", d.Tag).Result()) == false ||
		trMust(b.rdb.ZScore(b.ctx, "pfx:unacked_index", d.Tag).Result()) == 0 {
		t.Fatalf("claim under the prefix: %+v", d)
	}
	b.publish(t, "pq", 9, "go-published")
	trWaitAge(t, b.rdb, d.ClaimedAt, 2100*time.Millisecond)

	opts := map[string]any{"transport_options": topts, "queues": []map[string]string{{"name": "pq"}}}
	w := trStartWorker(t, b.url, opts, "pq")
	ran := trWaitRan(t, b.rdb, 3, 20*time.Second)
	w.Stop()
	var labels []string
	for _, r := range ran {
		labels = append(labels, r.Label)
		if r.Redelivered != (r.Label == "py-abandoned") {
			t.Errorf("%s: redelivered %v", r.Label, r.Redelivered)
		}
	}
	if !slices.Equal(labels, []string{"py-abandoned", "py-left", "go-published"}) {
		t.Errorf("ran %v", labels)
	}
	for _, k := range trMust(b.rdb.Keys(b.ctx, "*").Result()) {
		if !strings.HasPrefix(k, "pfx:") && k != "interop:ran" {
			t.Errorf("key %q outside the prefix", k)
		}
	}
	if n := trMust(b.rdb.HLen(b.ctx, "pfx:unacked").Result()); n != 0 {
		t.Errorf("%d unacked records left", n)
	}
}

// 4. The claim rule against kombu itself: each message goes through kombu's
// basic_get (which records it as unacked) and QoS.restore_by_tag. What
// kombu can take and restore, Go claims, recording what kombu records; what
// kombu crashes on or loses in its restore, Go dead-letters. Where both
// handle a message, Go's redelivered envelope is kombu's byte for byte.
func TestInteropClaimRuleMatchesKombu(t *testing.T) {
	t.Parallel()
	py := trPython(t)
	b := trSetup(t, TransportOptions{})
	cases := trClaimRuleCases(t)
	// Where Go is stricter than kombu on purpose (see claim.lua).
	stricter := map[string]bool{
		"too deep":                  true, // Python parses ~950 levels; 512 is our margin
		"invalid utf-8 in a string": true, // kombu decodes with errors='replace'
		"null exchange":             true, // kombu restores via the routing key
		"numeric delivery tag":      true, // kombu keys unacked by str(5)
		"empty delivery tag":        true, // the codec calls an empty tag missing
	}
	var raws []string
	for _, c := range cases {
		raws = append(raws, base64.StdEncoding.EncodeToString(c.raw))
	}
	url2 := testsvc.NewRedisDB(t)
	var rt trRoundtripReport
	trRunInterop(t, py, url2, "roundtrip", map[string]any{"messages": raws}, &rt)
	for i, c := range cases {
		res := rt.Results[i]
		f, _ := claimCheck(c.raw)
		named := f.exchange != ""
		took := res.Error == "" && res.Record != ""
		restoredOK := len(res.Restored) == 1 && res.UnackedLeft == 0
		kombuOK := took && (restoredOK || named) // a named exchange with no binding: lost by kombu, dead-lettered by us
		claimable := c.reason == ""
		switch {
		case stricter[c.name]:
			if !kombuOK || claimable {
				t.Errorf("%s: expected kombu to handle it (%+v) and Go to dead-letter it (%q)", c.name, res, c.reason)
			}
			continue
		case kombuOK != claimable:
			t.Errorf("%s: kombu took+restored=%v (%+v), Go claimable=%v (%q)", c.name, kombuOK, res, claimable, c.reason)
			continue
		case !claimable:
			continue
		}
		// Claim it in Go; kombu's record is json.dumps of what it loaded.
		b.rdb.LPush(b.ctx, "q", c.raw)
		d, err := b.tr.Claim(b.ctx, []string{"q"}, 0)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		ours := trMust(b.rdb.HGet(b.ctx, "unacked", d.Tag).Result())
		root, err := parseNode([]byte(ours), false)
		if err != nil {
			t.Fatal(err)
		}
		loadsDict(&root)
		if theirs := trUnb64(t, res.Record); string(appendDumps(nil, &root)) != string(theirs) {
			t.Errorf("%s: record\n  Go %s\nkombu %s", c.name, ours, theirs)
		}
		if trPythonLayout(c.raw) && ours != string(trUnb64(t, res.Record)) {
			t.Errorf("%s: record not byte-identical for a message in Python's layout", c.name)
		}
		if restoredOK {
			var kombu []byte
			for _, vals := range res.Restored {
				kombu = trUnb64(t, vals[0])
			}
			want, _, err := restoredEnvelope(c.raw)
			if err != nil || !bytes.Equal(want, kombu) {
				t.Errorf("%s: restored envelope\n  Go %s (%v)\nkombu %s", c.name, want, err, kombu)
			}
		}
		if err := b.tr.Ack(b.ctx, d.Tag); err != nil {
			t.Fatal(err)
		}
	}
}

// trPythonLayout reports whether json.dumps(json.loads(raw)) is raw.
func trPythonLayout(raw []byte) bool {
	root, err := parseNode(raw, false)
	if err != nil {
		return false
	}
	loadsDict(&root)
	return bytes.Equal(appendDumps(nil, &root), raw)
}
