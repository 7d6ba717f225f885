package celerybridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/internal/testsvc"
)

// trBundle is one test's transport over its own Redis DB.
type trBundle struct {
	tr  *Transport
	rdb *redis.Client
	url string
	ctx context.Context
}

func trSetup(t *testing.T, opts TransportOptions) *trBundle {
	t.Helper()
	url := testsvc.NewRedisDB(t)
	o, err := ParseBrokerURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	return &trBundle{tr: NewTransport(rdb, opts), rdb: rdb, url: url, ctx: context.Background()}
}

// trMessage is what task.apply_async(args=[label], queue=queue,
// priority=priority) publishes.
func trMessage(t testing.TB, queue string, priority int, label string) []byte {
	t.Helper()
	m, err := NewTaskMessage("interop.record", []any{label}, nil, TaskOptions{Queue: queue, Priority: priority})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// trLabel reads the label argument back.
func trLabel(t testing.TB, raw []byte) string {
	t.Helper()
	task, err := DecodeTask(raw)
	if err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	args, err := task.DecodeArgs()
	if err != nil || len(args) != 1 {
		t.Fatalf("args %v: %v", args, err)
	}
	return args[0].(string)
}

func (b *trBundle) publish(t testing.TB, queue string, priority int, label string) []byte {
	t.Helper()
	raw := trMessage(t, queue, priority, label)
	if err := b.tr.Publish(b.ctx, "", queue, raw); err != nil {
		t.Fatal(err)
	}
	return raw
}

func (b *trBundle) claim(t testing.TB, queues ...string) *Delivery {
	t.Helper()
	d, err := b.tr.Claim(b.ctx, queues, 0)
	if err != nil {
		t.Fatalf("claim %v: %v", queues, err)
	}
	return d
}

// drain claims until queues are empty and returns the labels in order.
func (b *trBundle) drain(t testing.TB, queues ...string) []string {
	t.Helper()
	var out []string
	for {
		d, err := b.tr.Claim(b.ctx, queues, 0)
		if errors.Is(err, ErrNoMessage) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, trLabel(t, d.Raw))
	}
}

// trKombuOrder simulates kombu's consumer: BRPOP over every step's lists for
// the queues in cycle order, rotating the served queue to the end. lists
// maps queue and step to labels in publish order.
func trKombuOrder(cycle []string, steps []int, lists map[string]map[int][]string) []string {
	cycle = slices.Clone(cycle)
	pending := map[string]map[int][]string{}
	for q, m := range lists {
		pending[q] = map[int][]string{}
		for s, l := range m {
			pending[q][s] = slices.Clone(l)
		}
	}
	var out []string
	for {
		hit := ""
	search:
		for _, s := range steps {
			for _, q := range cycle {
				if l := pending[q][s]; len(l) > 0 {
					out = append(out, l[0])
					pending[q][s] = l[1:]
					hit = q
					break search
				}
			}
		}
		if hit == "" {
			return out
		}
		i := slices.Index(cycle, hit)
		cycle = append(append(cycle[:i:i], cycle[i+1:]...), hit)
	}
}

func TestTransportPriorityListsAreKombus(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	cases := []struct {
		priority int
		key      string
	}{
		{-5, "q"}, {0, "q"}, {1, "q"}, {2, "q"}, {3, "q\x06\x163"}, {4, "q\x06\x163"}, {5, "q\x06\x163"},
		{6, "q\x06\x166"}, {7, "q\x06\x166"}, {8, "q\x06\x166"}, {9, "q\x06\x169"}, {12, "q\x06\x169"},
	}
	for _, c := range cases {
		raw := b.publish(t, "q", c.priority, fmt.Sprint(c.priority))
		got, err := b.rdb.LIndex(b.ctx, c.key, 0).Result()
		if err != nil || got != string(raw) {
			t.Errorf("priority %d: head of %q is %.40q (%v), want the message byte for byte", c.priority, c.key, got, err)
		}
	}
	// Priorities as Python's int() reads them, from envelopes edited by hand.
	for _, c := range []struct{ value, key string }{
		{`"7"`, "q\x06\x166"}, {`6.9`, "q\x06\x166"}, {`null`, "q"}, {`true`, "q"},
		{`" 4 "`, "q\x06\x163"}, {`"x"`, "q"}, {`1e400`, "q\x06\x169"}, {`-1e400`, "q"}, {`NaN`, "q"},
	} {
		raw := bytes.Replace(trMessage(t, "q", 0, c.value), []byte(`"priority": 0`), []byte(`"priority": `+c.value), 1)
		if err := b.tr.Publish(b.ctx, "", "q", raw); err != nil {
			t.Fatalf("priority %s: %v", c.value, err)
		}
		if got, _ := b.rdb.LIndex(b.ctx, c.key, 0).Result(); got != string(raw) {
			t.Errorf("priority %s: not at the head of %q", c.value, c.key)
		}
	}
	n, err := b.tr.Len(b.ctx, "q")
	if err != nil || n != int64(len(cases)+9) {
		t.Fatalf("Len = %d, %v", n, err)
	}
	peek, err := b.tr.Peek(b.ctx, "q", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n2, _ := b.tr.Len(b.ctx, "q"); n2 != n {
		t.Fatal("Peek took messages")
	}
	for i, p := range peek {
		d := b.claim(t, "q")
		if !bytes.Equal(d.Raw, p.Raw) {
			t.Fatalf("message %d: Peek said %.60s, Claim took %.60s", i, p.Raw, d.Raw)
		}
		if i > 0 && p.Step < peek[i-1].Step {
			t.Errorf("Peek order goes from step %d back to %d", peek[i-1].Step, p.Step)
		}
	}
	if top, _ := b.tr.Peek(b.ctx, "q", 3); len(top) != 0 {
		t.Errorf("Peek after draining: %d messages", len(top))
	}
}

func TestTransportClaimOrderIsKombus(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	queues := []string{"a", "b", "c"}
	lists := map[string]map[int][]string{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		q := queues[r.IntN(3)]
		p := r.IntN(10)
		label := fmt.Sprintf("%s-p%d-%d", q, p, i)
		b.publish(t, q, p, label)
		if lists[q] == nil {
			lists[q] = map[int][]string{}
		}
		lists[q][b.tr.step(p)] = append(lists[q][b.tr.step(p)], label)
	}
	want := trKombuOrder(queues, kombuPrioritySteps, lists)
	got := b.drain(t, queues...)
	if !slices.Equal(got, want) {
		t.Errorf("claim order\n got %v\nwant %v", got, want)
	}
}

func TestTransportClaimRecordsWhatKombuRecords(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	raw := b.publish(t, "q", 7, "x")
	before, _ := b.rdb.Time(b.ctx).Result()
	d := b.claim(t, "q")
	after, _ := b.rdb.Time(b.ctx).Result()
	env, err := DecodeEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	if d.Tag != env.Properties.DeliveryTag || d.Queue != "q" || d.Exchange != "" || d.RoutingKey != "q" ||
		d.Priority != 7 || d.Redelivered || !bytes.Equal(d.Raw, raw) {
		t.Errorf("delivery %+v", d)
	}
	if d.ClaimedAt.Before(before.Truncate(time.Microsecond)) || d.ClaimedAt.After(after) {
		t.Errorf("ClaimedAt %v not within %v..%v", d.ClaimedAt, before, after)
	}
	rec, err := b.rdb.HGet(b.ctx, "unacked", d.Tag).Result()
	if want := `[` + string(raw) + `, "", "q"]`; err != nil || rec != want {
		t.Errorf("unacked record\n got %s (%v)\nwant %s", rec, err, want)
	}
	score, err := b.rdb.ZScore(b.ctx, "unacked_index", d.Tag).Result()
	if err != nil || score != float64(d.ClaimedAt.UnixMicro())/1e6 {
		t.Errorf("unacked_index score %f (%v), ClaimedAt %v", score, err, d.ClaimedAt)
	}
	un, err := b.tr.Unacked(b.ctx)
	if err != nil || len(un) != 1 || un[0].Tag != d.Tag || un[0].Queue != "q" || !bytes.Equal(un[0].Raw, raw) || un[0].Age < 0 {
		t.Errorf("Unacked = %+v, %v", un, err)
	}
}

// A second copy of one message (kombu routes a message to several queues
// under one tag) gets its own unacked field, so acking one copy leaves the
// other's record.
func TestTransportSameTagTwiceInFlight(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	if err := b.tr.Bind(b.ctx, "x", "rk", "", "q1"); err != nil {
		t.Fatal(err)
	}
	if err := b.tr.Bind(b.ctx, "x", "rk", "", "q2"); err != nil {
		t.Fatal(err)
	}
	if err := b.tr.Publish(b.ctx, "x", "rk", trMessage(t, "q1", 0, "both")); err != nil {
		t.Fatal(err)
	}
	d1, d2 := b.claim(t, "q1"), b.claim(t, "q2")
	if d1.Tag == d2.Tag || !strings.HasPrefix(d2.Tag, d1.Tag+"\x06\x16") {
		t.Fatalf("tags %q and %q", d1.Tag, d2.Tag)
	}
	if err := b.tr.Ack(b.ctx, d1.Tag); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.rdb.HLen(b.ctx, "unacked").Result(); n != 1 {
		t.Fatalf("%d records left, want the second copy's", n)
	}
	if n, err := b.tr.Restore(b.ctx, d2.Tag); n != 1 || err != nil {
		t.Fatalf("Restore = %d, %v", n, err)
	}
	// Restoring goes through the bindings again, as kombu's does.
	if n1, n2 := trMust(b.tr.Len(b.ctx, "q1")), trMust(b.tr.Len(b.ctx, "q2")); n1 != 1 || n2 != 1 {
		t.Errorf("after restore q1 has %d, q2 %d", n1, n2)
	}
}

func trMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestTransportAckRejectRestore(t *testing.T) {
	t.Parallel()
	t.Run("ack", func(t *testing.T) {
		t.Parallel()
		b := trSetup(t, TransportOptions{})
		b.publish(t, "q", 0, "a")
		d := b.claim(t, "q")
		if err := b.tr.Ack(b.ctx, d.Tag); err != nil {
			t.Fatal(err)
		}
		if n := trMust(b.rdb.Exists(b.ctx, "unacked", "unacked_index").Result()); n != 0 {
			t.Errorf("%d unacked keys left", n)
		}
		if err := b.tr.Ack(b.ctx, d.Tag); !errors.Is(err, ErrNotClaimed) {
			t.Errorf("second ack: %v", err)
		}
	})
	t.Run("reject", func(t *testing.T) {
		t.Parallel()
		b := trSetup(t, TransportOptions{})
		b.publish(t, "q", 0, "a")
		d := b.claim(t, "q")
		if err := b.tr.Reject(b.ctx, d, false); err != nil {
			t.Fatal(err)
		}
		if n := trMust(b.tr.Len(b.ctx, "q")); n != 0 {
			t.Errorf("rejected without requeue, %d queued", n)
		}
		if n := trMust(b.rdb.HLen(b.ctx, "unacked").Result()); n != 0 {
			t.Errorf("%d records left", n)
		}
	})
	t.Run("reject requeue", func(t *testing.T) {
		t.Parallel()
		b := trSetup(t, TransportOptions{})
		first := b.publish(t, "q", 6, "a")
		b.publish(t, "q", 6, "b")
		d := b.claim(t, "q")
		if err := b.tr.Reject(b.ctx, d, true); err != nil {
			t.Fatal(err)
		}
		// Back of the line (kombu's LPUSH), on its own priority list.
		if got := b.drainDeliveries(t, "q"); len(got) != 2 || trLabel(t, got[0].Raw) != "b" || trLabel(t, got[1].Raw) != "a" {
			t.Fatalf("after requeue: %v", got)
		} else {
			again := got[1]
			want, _, err := restoredEnvelope(first)
			if err != nil {
				t.Fatal(err)
			}
			if !again.Redelivered || again.Priority != 6 || again.Tag != d.Tag || !bytes.Equal(again.Raw, want) {
				t.Errorf("requeued message %+v\n raw %s\nwant %s", again, again.Raw, want)
			}
			env, err := DecodeEnvelope(again.Raw)
			if err != nil || !env.Headers.Redelivered || !env.Properties.DeliveryInfo.Redelivered {
				t.Errorf("redelivered marks: %v", err)
			}
			if err := b.tr.Ack(b.ctx, again.Tag); err != nil {
				t.Fatal(err)
			}
			if err := b.tr.Reject(b.ctx, again, true); !errors.Is(err, ErrNotClaimed) {
				t.Errorf("requeue after ack: %v", err)
			}
			if n := trMust(b.tr.Len(b.ctx, "q")); n != 0 {
				t.Errorf("requeue after ack pushed %d", n)
			}
		}
	})
	t.Run("restore tags", func(t *testing.T) {
		t.Parallel()
		b := trSetup(t, TransportOptions{})
		b.publish(t, "q", 0, "a")
		b.publish(t, "q", 0, "b")
		b.publish(t, "q", 0, "c")
		da, db := b.claim(t, "q"), b.claim(t, "q")
		n, err := b.tr.Restore(b.ctx, da.Tag, db.Tag, "no-such-tag")
		if n != 2 || err != nil {
			t.Fatalf("Restore = %d, %v", n, err)
		}
		// RPUSH each in turn, as kombu's restore_unacked: the last ends first.
		var labels []string
		for _, d := range b.drainDeliveries(t, "q") {
			labels = append(labels, trLabel(t, d.Raw))
			if err := b.tr.Ack(b.ctx, d.Tag); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(labels, []string{"b", "a", "c"}) {
			t.Errorf("after restore: %v", labels)
		}
		if n, err := b.tr.Restore(b.ctx, da.Tag); n != 0 || err != nil {
			t.Errorf("restoring an acked tag: %d, %v", n, err)
		}
	})
	t.Run("restore visible", func(t *testing.T) {
		t.Parallel()
		b := trSetup(t, TransportOptions{VisibilityTimeout: 300 * time.Millisecond})
		b.publish(t, "q", 9, "old")
		old := b.claim(t, "q")
		time.Sleep(400 * time.Millisecond)
		b.publish(t, "q", 0, "young")
		young := b.claim(t, "q")
		n, err := b.tr.RestoreVisible(b.ctx)
		if n != 1 || err != nil {
			t.Fatalf("RestoreVisible = %d, %v", n, err)
		}
		if trMust(b.rdb.HExists(b.ctx, "unacked", young.Tag).Result()) == false {
			t.Error("restored a message younger than the visibility timeout")
		}
		again := b.claim(t, "q")
		if again.Tag != old.Tag || !again.Redelivered || again.Priority != 9 || again.Queue != "q" {
			t.Errorf("restored %+v", again)
		}
		if trMust(b.rdb.Exists(b.ctx, "unacked_mutex").Result()) != 0 {
			t.Error("mutex left behind")
		}
	})
	t.Run("dead letter", func(t *testing.T) {
		t.Parallel()
		b := trSetup(t, TransportOptions{DeadLetterKey: "dl"})
		raw := b.publish(t, "q", 0, "poison")
		d := b.claim(t, "q")
		if err := b.tr.DeadLetter(b.ctx, d, "unregistered task"); err != nil {
			t.Fatal(err)
		}
		if err := b.tr.DeadLetter(b.ctx, d, "twice"); !errors.Is(err, ErrNotClaimed) {
			t.Errorf("second dead-letter: %v", err)
		}
		dls, err := b.tr.DeadLetters(b.ctx, 0)
		if err != nil || len(dls) != 1 || dls[0].Reason != "unregistered task" || dls[0].Queue != "q" || !bytes.Equal(dls[0].Raw, raw) {
			t.Errorf("DeadLetters = %+v, %v", dls, err)
		}
		if n := trMust(b.rdb.HLen(b.ctx, "unacked").Result()); n != 0 {
			t.Errorf("%d records left", n)
		}
	})
}

func (b *trBundle) drainDeliveries(t testing.TB, queues ...string) []*Delivery {
	t.Helper()
	var out []*Delivery
	for {
		d, err := b.tr.Claim(b.ctx, queues, 0)
		if errors.Is(err, ErrNoMessage) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
}

// A held unacked_mutex makes RestoreVisible step aside; racing scans
// restore every message exactly once.
func TestTransportUnackedMutex(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{VisibilityTimeout: time.Millisecond})
	const m = 60
	for i := range m {
		b.publish(t, "q", i%10, fmt.Sprint(i))
	}
	for range m {
		b.claim(t, "q")
	}
	time.Sleep(5 * time.Millisecond)
	if err := b.rdb.Set(b.ctx, "unacked_mutex", "python-lock-token", 300*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := b.tr.RestoreVisible(b.ctx)
	if n != 0 || !errors.Is(err, ErrMutexHeld) || time.Since(start) > time.Second {
		t.Fatalf("RestoreVisible under a held mutex = %d, %v after %v", n, err, time.Since(start))
	}
	if v := trMust(b.rdb.Get(b.ctx, "unacked_mutex").Result()); v != "python-lock-token" {
		t.Fatalf("mutex now %q: another holder's mutex must be left alone", v)
	}
	if trMust(b.rdb.HLen(b.ctx, "unacked").Result()) != m {
		t.Fatal("restored under a held mutex")
	}
	// Releasing checks the token: an expired mutex taken over by another
	// consumer is theirs.
	if n := trMust(unlockScript.Run(b.ctx, b.rdb, []string{"unacked_mutex"}, "our-old-token").Int()); n != 0 {
		t.Fatal("released a mutex held under another token")
	}
	b.rdb.Del(b.ctx, "unacked_mutex")

	var wg sync.WaitGroup
	var mu sync.Mutex
	total, held := 0, 0
	for range 8 {
		wg.Go(func() {
			tr := NewTransport(b.rdb, TransportOptions{VisibilityTimeout: time.Millisecond})
			n, err := tr.RestoreVisible(b.ctx)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ErrMutexHeld):
				held++
			case err != nil:
				t.Error(err)
			}
			total += n
		})
	}
	wg.Wait()
	if total != m || trMust(b.tr.Len(b.ctx, "q")) != m || trMust(b.rdb.HLen(b.ctx, "unacked").Result()) != 0 {
		t.Fatalf("racing scans restored %d (held %d), queue has %d", total, held, trMust(b.tr.Len(b.ctx, "q")))
	}
	seen := map[string]bool{}
	for _, d := range b.drainDeliveries(t, "q") {
		if seen[d.Tag] {
			t.Fatalf("tag %s restored twice", d.Tag)
		}
		seen[d.Tag] = true
	}
}

// trNeedsKey builds an envelope with one member replaced or added.
func trEdit(t testing.TB, raw []byte, path []string, value string) []byte {
	t.Helper()
	root, err := parseNode(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	n := &root
	for _, p := range path[:len(path)-1] {
		n, _ = n.lookup(p)
	}
	last := path[len(path)-1]
	if value == "" {
		for i, k := range n.keys {
			if k == last {
				n.keys = slices.Delete(n.keys, i, i+1)
				n.items = slices.Delete(n.items, i, i+1)
				break
			}
		}
	} else {
		v, err := parseNode([]byte(value), false)
		if err != nil {
			t.Fatal(err)
		}
		setPyMember(n, last, v)
	}
	return appendNode(nil, &root)
}

// trClaimRuleCases are messages on either side of the claim rule.
func trClaimRuleCases(t testing.TB) []struct {
	name   string
	raw    []byte
	reason string // "" for claimable
} {
	good := trMessage(t, "q", 0, "x")
	deep := []byte(`{"properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}, "x": ` +
		strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`)
	pickle := bytes.Replace(good, []byte(`"application/json"`), []byte(`"application/x-python-serialize"`), 1)
	return []struct {
		name   string
		raw    []byte
		reason string
	}{
		{"celery json", good, ""},
		{"pickle envelope", pickle, ""},
		{"no headers", trEdit(t, good, []string{"headers"}, ""), ""},
		{"empty exchange named routing key", trEdit(t, good, []string{"properties", "delivery_info", "exchange"}, `"x"`), ""},
		{"named exchange empty routing key", trEdit(t, trEdit(t, good, []string{"properties", "delivery_info", "exchange"}, `"x"`),
			[]string{"properties", "delivery_info", "routing_key"}, `""`), ""},
		{"escaped key and tag", []byte(`{"propertie\u0073": {"delivery_tag": "caf\u00e9 \ud83d\ude00", "delivery_info": {"exchange": "", "routing_key": "q"}}}`), ""},
		{"duplicate properties, last good", []byte(`{"properties": 1, "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}}`), ""},
		{"NaN and Infinity", []byte(`{"n": [NaN, Infinity, -Infinity, 1e5, -0, 0.5], "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}}`), ""},
		{"whitespace", []byte(" \t\r\n{ \"properties\" : { \"delivery_tag\" : \"t\" , \"delivery_info\" : { \"exchange\" : \"\" , \"routing_key\" : \"q\" } } } \n"), ""},

		{"not json", []byte(`{"properties": `), faultMalformed},
		{"binary pickle", []byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x04task\x94."), faultMalformed},
		{"invalid utf-8 in a string", bytes.Replace(good, []byte(`"py"`), []byte("\"p\xffy\""), 1), faultMalformed},
		{"raw control character", bytes.Replace(good, []byte(`"py"`), []byte("\"p\x01y\""), 1), faultMalformed},
		{"trailing comma", []byte(`{"properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}},}`), faultMalformed},
		{"extra data", append(slices.Clone(good), " {}"...), faultMalformed},
		{"leading zero", []byte(`{"n": 01, "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}}`), faultMalformed},
		{"hex number", []byte(`{"n": 0x10, "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}}`), faultMalformed},
		{"nan lowercase", []byte(`{"n": nan, "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}}`), faultMalformed},
		{"too deep", deep, faultTooDeep},
		{"array", []byte(`[{"properties": {}}]`), faultNotObject},
		{"string", []byte(`"text"`), faultNotObject},
		{"headers null", trEdit(t, good, []string{"headers"}, "null"), faultHeaders},
		{"headers list", trEdit(t, good, []string{"headers"}, "[]"), faultHeaders},
		{"no properties", trEdit(t, good, []string{"properties"}, ""), faultProperties},
		{"properties list", trEdit(t, good, []string{"properties"}, "[]"), faultProperties},
		{"no delivery tag", trEdit(t, good, []string{"properties", "delivery_tag"}, ""), faultDeliveryTag},
		{"empty delivery tag", trEdit(t, good, []string{"properties", "delivery_tag"}, `""`), faultDeliveryTag},
		{"numeric delivery tag", trEdit(t, good, []string{"properties", "delivery_tag"}, `5`), faultDeliveryTag},
		{"lone surrogate tag", trEdit(t, good, []string{"properties", "delivery_tag"}, `"a\ud800b"`), faultDeliveryTag},
		{"no delivery info", trEdit(t, good, []string{"properties", "delivery_info"}, ""), faultDeliveryInfo},
		{"delivery info string", trEdit(t, good, []string{"properties", "delivery_info"}, `"q"`), faultDeliveryInfo},
		{"no routing key", trEdit(t, good, []string{"properties", "delivery_info", "routing_key"}, ""), faultDeliveryInfo},
		{"null exchange", trEdit(t, good, []string{"properties", "delivery_info", "exchange"}, "null"), faultDeliveryInfo},
		{"nowhere to go", trEdit(t, good, []string{"properties", "delivery_info", "routing_key"}, `""`), faultDeliveryInfo},
	}
}

// The claim rule: what kombu's restore can handle is claimed, the rest is
// dead-lettered in the same step with its bytes intact, and claim.lua
// agrees with claimCheck.
func TestTransportDeadLetters(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	for _, c := range trClaimRuleCases(t) {
		if _, fault := claimCheck(c.raw); fault != c.reason {
			t.Errorf("%s: claimCheck says %q, want %q", c.name, fault, c.reason)
		}
		if err := b.rdb.LPush(b.ctx, "q", c.raw).Err(); err != nil {
			t.Fatal(err)
		}
		d, err := b.tr.Claim(b.ctx, []string{"q"}, 0)
		if c.reason == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			rec := trMust(b.rdb.HGet(b.ctx, "unacked", d.Tag).Result())
			env, ex, rk, err := parseUnackedRecord([]byte(rec))
			if err != nil || !bytes.Equal(env, bytes.Trim(c.raw, " \t\r\n")) || ex != d.Exchange || rk != d.RoutingKey {
				t.Errorf("%s: record %s: %v", c.name, rec, err)
			}
			continue
		}
		var dl *DeadLetter
		if !errors.As(err, &dl) || !errors.Is(err, ErrDeadLettered) || dl.Reason != c.reason || !bytes.Equal(dl.Raw, c.raw) || dl.Queue != "q" {
			t.Errorf("%s: Claim = %+v, %v; want dead letter %q", c.name, d, err, c.reason)
			continue
		}
		if want := claimFaultError(c.reason); !errors.Is(err, want) {
			t.Errorf("%s: %v is not %v", c.name, err, want)
		}
		dls, err := b.tr.DeadLetters(b.ctx, 0)
		if err != nil || len(dls) == 0 {
			t.Fatalf("DeadLetters: %v", err)
		}
		last := dls[len(dls)-1]
		if last.Reason != c.reason || !bytes.Equal(last.Raw, c.raw) || last.Queue != "q" || !last.At.Equal(dl.At) {
			t.Errorf("%s: dead-letter record %+v", c.name, last)
		}
	}
	if n := trMust(b.rdb.LLen(b.ctx, "q").Result()); n != 0 {
		t.Errorf("%d left on the queue", n)
	}
	// Publish refuses what Claim would dead-letter.
	for _, c := range trClaimRuleCases(t) {
		if c.reason == "" || c.reason == faultDeliveryInfo {
			continue
		}
		if err := b.tr.Publish(b.ctx, "", "q", c.raw); err == nil || !errors.Is(err, claimFaultError(c.reason)) {
			t.Errorf("%s: Publish = %v", c.name, err)
		}
	}
}

func TestTransportExchanges(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{Exchanges: map[string]ExchangeKind{"t": ExchangeTopic, "f": ExchangeFanout}})
	ctx := b.ctx
	for _, bind := range [][3]string{{"x", "rk", "xq"}, {"t", "stock.*.nyse", "t1"}, {"t", "stock.#", "t2"}, {"f", "", "fq"}} {
		if err := b.tr.Bind(ctx, bind[0], bind[1], "", bind[2]); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.tr.Bind(ctx, "x", "rk", "", "xq"); err != nil { // idempotent
		t.Fatal(err)
	}
	if m := trMust(b.rdb.SMembers(ctx, "_kombu.binding.x").Result()); !slices.Equal(m, []string{"rk\x06\x16\x06\x16xq"}) {
		t.Errorf("direct binding members %q", m)
	}
	if m := trMust(b.rdb.SMembers(ctx, "_kombu.binding.t").Result()); !slices.Contains(m, "stock.*.nyse\x06\x16^stock\\..*?[^\\.]\\.nyse$\x06\x16t1") {
		t.Errorf("topic binding members %q: want kombu's key_to_pattern", m)
	}

	raw := trMessage(t, "celery", 3, "direct")
	if err := b.tr.Publish(ctx, "x", "rk", raw); err != nil {
		t.Fatal(err)
	}
	d := b.claim(t, "xq")
	if d.Exchange != "x" || d.RoutingKey != "rk" || d.Priority != 3 {
		t.Errorf("delivery %+v: delivery_info must name the exchange, as kombu sets it", d)
	}
	env, err := DecodeEnvelope(d.Raw)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := DecodeEnvelope(raw)
	if env.Properties.DeliveryTag != orig.Properties.DeliveryTag || env.Headers.ID != orig.Headers.ID {
		t.Error("rewriting delivery_info changed the message")
	}
	if want := bytes.Replace(raw, []byte(`{"exchange": "", "routing_key": "celery"}`), []byte(`{"exchange": "x", "routing_key": "rk"}`), 1); !bytes.Equal(d.Raw, want) {
		t.Errorf("re-addressed envelope\n got %s\nwant %s", d.Raw, want)
	}

	for _, c := range []struct {
		rk   string
		want []string
	}{
		{"stock.usd.nyse", []string{"t1", "t2"}}, {"stock.eur", []string{"t2"}},
		// kombu's "*" is .*?[^\.], which spans dots: Python routes this to t1 too.
		{"stock.a.b.nyse", []string{"t1", "t2"}},
	} {
		if err := b.tr.Publish(ctx, "t", c.rk, trMessage(t, "celery", 0, c.rk)); err != nil {
			t.Fatalf("topic %s: %v", c.rk, err)
		}
		for _, q := range []string{"t1", "t2"} {
			n := trMust(b.tr.Len(ctx, q))
			if want := int64(0); slices.Contains(c.want, q) {
				want = 1
				b.claim(t, q)
				if n != want {
					t.Errorf("topic %s: %s has %d", c.rk, q, n)
				}
			} else if n != 0 {
				t.Errorf("topic %s reached %s", c.rk, q)
			}
		}
	}

	for _, c := range [][2]string{{"x", "other"}, {"t", "bond.x"}, {"nobody", "rk"}, {"", ""}, {"f", ""}} {
		err := b.tr.Publish(ctx, c[0], c[1], trMessage(t, "celery", 0, "lost"))
		if !errors.Is(err, ErrUnroutable) {
			t.Errorf("Publish(%q, %q) = %v, want ErrUnroutable", c[0], c[1], err)
		}
	}
	if keys := trMust(b.rdb.Keys(ctx, "*").Result()); slices.ContainsFunc(keys, func(k string) bool {
		return !strings.HasPrefix(k, "_kombu.binding.") && !strings.HasPrefix(k, "unacked")
	}) {
		t.Errorf("unroutable messages left keys: %q", keys)
	}

	sub := b.rdb.PSubscribe(ctx, "/*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	fan := trMessage(t, "celery", 0, "fan")
	if err := b.tr.Publish(ctx, "f", "", fan); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := trMust(ParseBrokerURL(b.url)).DB
	if msg.Channel != fmt.Sprintf("/%d.f", db) || trLabel(t, []byte(msg.Payload)) != "fan" {
		t.Errorf("fanout message on %q: %.60s", msg.Channel, msg.Payload)
	}
}

func TestTransportKeyPrefix(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{KeyPrefix: "pfx:", DeadLetterKey: "dead", VisibilityTimeout: time.Millisecond})
	ctx := b.ctx
	if err := b.tr.Bind(ctx, "x", "rk", "", "xq"); err != nil {
		t.Fatal(err)
	}
	b.publish(t, "q", 5, "a")
	if err := b.tr.Publish(ctx, "x", "rk", trMessage(t, "q", 0, "b")); err != nil {
		t.Fatal(err)
	}
	b.rdb.LPush(ctx, "pfx:q", "not json")
	if _, err := b.tr.Claim(ctx, []string{"q"}, 0); !errors.Is(err, ErrDeadLettered) {
		t.Fatal(err)
	}
	d := b.claim(t, "q", "xq")
	time.Sleep(2 * time.Millisecond)
	if n, err := b.tr.RestoreVisible(ctx); n != 1 || err != nil {
		t.Fatalf("RestoreVisible = %d, %v", n, err)
	}
	if again := b.claim(t, "q", "xq"); d.Queue != "xq" || again.Tag != d.Tag || !again.Redelivered {
		t.Fatalf("claimed %+v, then %+v", d, again)
	}
	keys := trMust(b.rdb.Keys(ctx, "*").Result())
	slices.Sort(keys)
	want := []string{"pfx:_kombu.binding.x", "pfx:dead", "pfx:q\x06\x163", "pfx:unacked", "pfx:unacked_index"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %q, want %q", keys, want)
	}
}

// Every message is claimed exactly once however many goroutines claim.
func TestTransportConcurrentClaims(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	const m, n = 500, 16
	pipe := b.rdb.Pipeline()
	for i := range m {
		pipe.LPush(b.ctx, b.tr.listKey("q", b.tr.step(i%10)), trMessage(t, "q", i%10, fmt.Sprint(i)))
	}
	if _, err := pipe.Exec(b.ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				d, err := b.tr.Claim(b.ctx, []string{"q"}, 20*time.Millisecond)
				if errors.Is(err, ErrNoMessage) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[trLabel(t, d.Raw)]++
				mu.Unlock()
				if err := b.tr.Ack(b.ctx, d.Tag); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != m {
		t.Errorf("%d distinct messages claimed, want %d", len(seen), m)
	}
	for label, k := range seen {
		if k != 1 {
			t.Errorf("message %s claimed %d times", label, k)
		}
	}
	if trMust(b.rdb.HLen(b.ctx, "unacked").Result()) != 0 || trMust(b.rdb.ZCard(b.ctx, "unacked_index").Result()) != 0 {
		t.Error("records left after acking everything")
	}
}

// Claims cancelled at random points, and a client closed under running
// claims (the process dying), never lose or duplicate a message: every
// message is on a list, in unacked, or acked, exactly once.
func TestTransportCancelledClaimsLoseNothing(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	const m = 400
	tags := map[string]bool{}
	for i := range m {
		raw := b.publish(t, "q", i%10, fmt.Sprint(i))
		f, _ := claimCheck(raw)
		tags[f.tag] = true
	}
	var mu sync.Mutex
	acked := map[string]int{}
	var abandoned int
	victim := redis.NewClient(trMust(ParseBrokerURL(b.url)))
	victimTr := NewTransport(victim, TransportOptions{})
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			tr := b.tr
			if g%4 == 0 {
				tr = victimTr // dies half way
			}
			for range 200 {
				ctx, cancel := context.WithTimeout(b.ctx, time.Duration(r.IntN(3000))*time.Microsecond)
				d, err := tr.Claim(ctx, []string{"q"}, time.Duration(r.IntN(5))*time.Millisecond)
				cancel()
				if err != nil {
					continue // cancelled, empty, or the client is closed
				}
				switch r.IntN(3) {
				case 0:
					mu.Lock()
					abandoned++
					mu.Unlock()
				default:
					if err := b.tr.Ack(b.ctx, d.Tag); err != nil {
						t.Error(err)
					}
					mu.Lock()
					acked[d.Tag]++
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(15 * time.Millisecond)
	victim.Close()
	wg.Wait()

	b.checkEachOnce(t, acked, tags)
	t.Logf("acked %d, abandoned %d", len(acked), abandoned)
}

func TestRedeliveredMatchesPythonRules(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{`{"headers": {}, "properties": {"delivery_info": {"exchange": "", "routing_key": "q"}}}`,
			`{"headers": {"redelivered": true}, "properties": {"delivery_info": {"exchange": "", "routing_key": "q", "redelivered": true}}}`},
		{`{"headers": {"redelivered": false, "a": 1}, "properties": {"delivery_info": {"redelivered": null}}}`,
			`{"headers": {"redelivered": true, "a": 1}, "properties": {"delivery_info": {"redelivered": true}}}`},
		// KeyError on headers: nothing marked, but the message is re-dumped.
		{`{"properties":{"delivery_info":{}},"n":1E5,"m":-0,"f":1.50,"big":123456789012345678901234567890,"s":"\u00e9/"}`,
			`{"properties": {"delivery_info": {}}, "n": 100000.0, "m": 0, "f": 1.5, "big": 123456789012345678901234567890, "s": "\u00e9/"}`},
		// KeyError on properties or delivery_info: headers marked only.
		{`{"headers": {}}`, `{"headers": {"redelivered": true}}`},
		{`{"headers": {}, "properties": {}}`, `{"headers": {"redelivered": true}, "properties": {}}`},
		// Duplicate keys: first place, last value.
		{`{"a": 1, "headers": {}, "a": 2}`, `{"a": 2, "headers": {"redelivered": true}}`},
		{`{"headers": {}, "x": [1e400, -1e400, NaN, 1e-400, -0.0]}`, `{"headers": {"redelivered": true}, "x": [Infinity, -Infinity, NaN, 0.0, -0.0]}`},
	} {
		got, _, err := restoredEnvelope([]byte(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("restoredEnvelope(%s)\n got %s (%v)\nwant %s", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{`{"headers": null}`, `{"headers": {}, "properties": []}`, `{"headers": {}, "properties": {"delivery_info": "x"}}`, `[]`} {
		if _, _, err := restoredEnvelope([]byte(in)); err == nil {
			t.Errorf("restoredEnvelope(%s): kombu drops this message; want an error", in)
		}
	}
}

func TestUnackedRecordParse(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		rec, env, ex, rk string
		ok               bool
	}{
		{`[{"a": 1}, "", "celery"]`, `{"a": 1}`, "", "celery", true},
		{`[ {"a": [1, 2]} , "x" , "r\u00e9" ]`, `{"a": [1, 2]}`, "x", "ré", true},
		{`[{}, null, "q"]`, `{}`, "", "q", true},
		{`[{}, "", "q", 1]`, "", "", "", false},
		{`[{}, ""]`, "", "", "", false},
		{`[{}, 1, "q"]`, "", "", "", false},
		{`{"a": 1}`, "", "", "", false},
		{`[{}, "", "q"] x`, "", "", "", false},
	} {
		env, ex, rk, err := parseUnackedRecord([]byte(c.rec))
		if (err == nil) != c.ok || c.ok && (string(env) != c.env || ex != c.ex || rk != c.rk) {
			t.Errorf("parseUnackedRecord(%s) = %s %q %q %v", c.rec, env, ex, rk, err)
		}
	}
}

func TestDeadLetterRecordRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 123456000)
	for _, raw := range []string{"plain", "\x80\x04binary\xff", "\"quotes\" \\ \n \x00 café \U0001F600", ""} {
		d := &DeadLetter{Reason: "r", Queue: "q\x06\x163", Raw: []byte(raw), At: at}
		rec := appendDeadLetter(nil, d)
		if !json.Valid(rec) {
			t.Fatalf("not JSON: %s", rec)
		}
		got, err := parseDeadLetter(rec)
		if err != nil || got.Reason != d.Reason || got.Queue != d.Queue || string(got.Raw) != raw || !got.At.Equal(at) {
			t.Errorf("round trip of %q: %+v, %v", raw, got, err)
		}
	}
}

// checkEachOnce drains queue "q" and checks that every message of tags is in
// exactly one place: acked (as counted in acked), back on the queue, or
// still unacked.
func (b *trBundle) checkEachOnce(t *testing.T, acked map[string]int, tags map[string]bool) {
	t.Helper()
	where := map[string][]string{}
	for tag, k := range acked {
		for range k {
			where[tag] = append(where[tag], "acked")
		}
	}
	for _, d := range b.drainDeliveries(t, "q") {
		where[d.Tag] = append(where[d.Tag], "queued")
	}
	for tag := range trMust(b.rdb.HGetAll(b.ctx, "unacked").Result()) {
		if !slices.Contains(where[tag], "queued") { // drained just now
			where[tag] = append(where[tag], "unacked")
		}
	}
	if trMust(b.rdb.ZCard(b.ctx, "unacked_index").Result()) != trMust(b.rdb.HLen(b.ctx, "unacked").Result()) {
		t.Error("unacked and unacked_index disagree")
	}
	for tag := range tags {
		if len(where[tag]) != 1 {
			t.Errorf("message %s is %v", tag, where[tag])
		}
	}
	if len(where) != len(tags) {
		t.Errorf("%d messages accounted for, want %d", len(where), len(tags))
	}
}
