package celerybridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimed is what one claim did to one message, as the tests compare it.
type claimed struct {
	tag, exchange, routingKey string // delivery; "" tag for a dead letter
	reason                    string
	raw                       []byte
	record                    []byte // the unacked record, parsed back
}

func (b *trBundle) claimAll(t *testing.T, queues []string, batch int) []claimed {
	t.Helper()
	var out []claimed
	for {
		var ds []*Delivery
		var dls []*DeadLetter
		var err error
		if batch == 0 {
			var d *Delivery
			d, err = b.tr.Claim(b.ctx, queues, 0)
			var dl *DeadLetter
			if errors.As(err, &dl) {
				dls, err = []*DeadLetter{dl}, nil
			} else if d != nil {
				ds = []*Delivery{d}
			}
		} else {
			ds, dls, err = b.tr.ClaimBatch(b.ctx, queues, batch, 0)
		}
		if errors.Is(err, ErrNoMessage) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		// A batch holds claims and dead letters in pop order; the raw bytes
		// put them back in that order for the comparison.
		for _, dl := range dls {
			out = append(out, claimed{reason: dl.Reason, raw: dl.Raw})
		}
		for _, d := range ds {
			rec := trMust(b.rdb.HGet(b.ctx, "unacked", d.Tag).Result())
			env, ex, rk, err := parseUnackedRecord([]byte(rec))
			if err != nil || ex != d.Exchange || rk != d.RoutingKey {
				t.Fatalf("record %q of %+v: %v", rec, d, err)
			}
			out = append(out, claimed{tag: d.Tag, exchange: ex, routingKey: rk, raw: d.Raw, record: env})
		}
	}
}

// ClaimBatch takes exactly what Claim takes, with the same tags, records and
// dead letters, for every case of the claim rule and two copies of one tag
// in flight, whatever the batch size.
func TestTransportClaimBatchMatchesClaim(t *testing.T) {
	t.Parallel()
	cases := trClaimRuleCases(t)
	good := trMessage(t, "q", 0, "twice")
	var raws [][]byte
	for _, c := range cases {
		raws = append(raws, c.raw)
	}
	raws = append(raws, good, good, good)
	sort := func(cs []claimed) []claimed {
		// Dead letters and claims of one batch are returned apart; the raw
		// bytes and tags give one order for both sides.
		slices.SortStableFunc(cs, func(a, b claimed) int {
			if c := bytes.Compare(a.raw, b.raw); c != 0 {
				return c
			}
			return len(a.tag) - len(b.tag)
		})
		return cs
	}
	one := trSetup(t, TransportOptions{})
	for _, raw := range raws {
		one.rdb.LPush(one.ctx, "q", raw)
	}
	want := sort(one.claimAll(t, []string{"q"}, 0))
	if len(want) != len(raws) {
		t.Fatalf("Claim took %d of %d", len(want), len(raws))
	}
	for _, size := range []int{1, 3, 7, 100} {
		b := trSetup(t, TransportOptions{})
		for _, raw := range raws {
			b.rdb.LPush(b.ctx, "q", raw)
		}
		got := sort(b.claimAll(t, []string{"q"}, size))
		if len(got) != len(want) {
			t.Fatalf("batch %d: %d claims, want %d", size, len(got), len(want))
		}
		for i := range want {
			w, g := want[i], got[i]
			if w.tag != g.tag || w.exchange != g.exchange || w.routingKey != g.routingKey || w.reason != g.reason ||
				!bytes.Equal(w.raw, g.raw) || !bytes.Equal(w.record, g.record) {
				t.Errorf("batch %d: message %d\n got %+v\nwant %+v", size, i, g, w)
			}
		}
		dlOne := trMust(one.tr.DeadLetters(one.ctx, 0))
		dlBatch := trMust(b.tr.DeadLetters(b.ctx, 0))
		if len(dlOne) != len(dlBatch) {
			t.Fatalf("batch %d: %d dead letters, Claim %d", size, len(dlBatch), len(dlOne))
		}
		for i := range dlOne {
			if dlOne[i].Reason != dlBatch[i].Reason || dlOne[i].Queue != dlBatch[i].Queue || !bytes.Equal(dlOne[i].Raw, dlBatch[i].Raw) {
				t.Errorf("batch %d: dead letter %d\n got %+v\nwant %+v", size, i, dlBatch[i], dlOne[i])
			}
		}
	}
}

// One queue: the batches come in kombu's order exactly. Several queues:
// every priority step is served before the next, and each list stays FIFO
// (the queues of one step take turns per batch, not per message).
func TestTransportClaimBatchOrder(t *testing.T) {
	t.Parallel()
	for _, queues := range [][]string{{"a"}, {"a", "b", "c"}} {
		b := trSetup(t, TransportOptions{})
		lists := map[string]map[int][]string{}
		r := rand.New(rand.NewPCG(3, 4))
		stepOf := map[string]int{}
		for i := range 200 {
			q := queues[r.IntN(len(queues))]
			p := r.IntN(10)
			label := fmt.Sprintf("%s-p%d-%d", q, p, i)
			b.publish(t, q, p, label)
			if lists[q] == nil {
				lists[q] = map[int][]string{}
			}
			lists[q][b.tr.step(p)] = append(lists[q][b.tr.step(p)], label)
			stepOf[label] = b.tr.step(p)
		}
		var got []string
		for {
			ds, _, err := b.tr.ClaimBatch(b.ctx, queues, 1+r.IntN(9), 0)
			if errors.Is(err, ErrNoMessage) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			queue := ds[0].Queue
			for _, d := range ds {
				if d.Queue != queue {
					t.Fatalf("one batch from %s and %s", queue, d.Queue)
				}
				got = append(got, trLabel(t, d.Raw))
			}
		}
		if len(queues) == 1 {
			if want := trKombuOrder(queues, kombuPrioritySteps, lists); !slices.Equal(got, want) {
				t.Errorf("order\n got %v\nwant %v", got, want)
			}
			continue
		}
		perList := map[string][]string{}
		for i, label := range got {
			if i > 0 && stepOf[label] < stepOf[got[i-1]] {
				t.Errorf("%s (step %d) after %s (step %d)", label, stepOf[label], got[i-1], stepOf[got[i-1]])
			}
			key := fmt.Sprintf("%c/%d", label[0], stepOf[label])
			perList[key] = append(perList[key], label)
		}
		for q, steps := range lists {
			for step, labels := range steps {
				if key := fmt.Sprintf("%s/%d", q, step); !slices.Equal(perList[key], labels) {
					t.Errorf("list %s\n got %v\nwant %v", key, perList[key], labels)
				}
			}
		}
	}
}

// Batch claims racing each other, single claims and a publisher: every
// message, poison included, is claimed or dead-lettered exactly once.
func TestTransportClaimBatchConcurrent(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	const m = 3000
	poison := []byte(`{"properties": {"delivery_tag": 5}}`)
	var wg sync.WaitGroup
	wg.Go(func() {
		pipe := b.rdb.Pipeline()
		for i := range m {
			raw := trMessage(t, "q", i%10, fmt.Sprint(i))
			if i%50 == 0 {
				raw = append(slices.Clone(poison[:len(poison)-1]), fmt.Sprintf(`, "n": %d}`, i)...)
			}
			pipe.LPush(b.ctx, b.tr.listKey("q", b.tr.step(i%10)), raw)
			if i%100 == 99 {
				if _, err := pipe.Exec(b.ctx); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
			}
		}
		if _, err := pipe.Exec(b.ctx); err != nil {
			t.Error(err)
		}
	})
	var mu sync.Mutex
	seen := map[string]int{}
	dead := 0
	for g := range 6 {
		wg.Go(func() {
			for {
				var ds []*Delivery
				var dls []*DeadLetter
				var err error
				if g < 4 {
					ds, dls, err = b.tr.ClaimBatch(b.ctx, []string{"q"}, 1+g*20, 200*time.Millisecond)
				} else {
					var d *Delivery
					d, err = b.tr.Claim(b.ctx, []string{"q"}, 200*time.Millisecond)
					var dl *DeadLetter
					if errors.As(err, &dl) {
						dls, err = []*DeadLetter{dl}, nil
					} else if d != nil {
						ds = append(ds, d)
					}
				}
				if errors.Is(err, ErrNoMessage) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				dead += len(dls)
				for _, d := range ds {
					seen[trLabel(t, d.Raw)]++
				}
				mu.Unlock()
				for _, d := range ds {
					if err := b.tr.Ack(b.ctx, d.Tag); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if len(seen)+dead != m || dead != m/50 {
		t.Errorf("%d claimed and %d dead-lettered, want %d and %d", len(seen), dead, m-m/50, m/50)
	}
	for label, k := range seen {
		if k != 1 {
			t.Errorf("message %s claimed %d times", label, k)
		}
	}
	if n := trMust(b.rdb.LLen(b.ctx, "spine.deadletter").Result()); n != m/50 {
		t.Errorf("dead-letter list holds %d", n)
	}
	if trMust(b.rdb.HLen(b.ctx, "unacked").Result()) != 0 || trMust(b.rdb.ZCard(b.ctx, "unacked_index").Result()) != 0 {
		t.Error("records left after acking everything")
	}
}

// Batch claims cancelled at random points, and a client closed under them
// (the process dying), lose and duplicate nothing, and a message handed back
// keeps its place; half the claimers forward some messages instead.
func TestTransportClaimBatchCancelledLosesNothing(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	const m = 600
	tags := map[string]bool{}
	for i := range m {
		raw := b.publish(t, "q", i%10, fmt.Sprint(i))
		f, _ := claimCheck(raw)
		tags[f.tag] = true
	}
	var mu sync.Mutex
	acked := map[string]int{}
	victim := redis.NewClient(trMust(ParseBrokerURL(b.url)))
	victimTr := NewTransport(victim, TransportOptions{})
	fwdSorter := &Sorter{Sort: func(p Peeked) Verdict {
		if p.Raw[len(p.Raw)/2]%3 == 0 { // any rule of the bytes alone
			return Verdict{Forward: "fwd"}
		}
		return Verdict{}
	}}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			tr := b.tr
			if g%4 == 0 {
				tr = victimTr
			}
			for range 150 {
				ctx, cancel := context.WithTimeout(b.ctx, time.Duration(r.IntN(3000))*time.Microsecond)
				var sorter *Sorter
				if g%2 == 1 {
					sorter = fwdSorter
				}
				c, err := tr.ClaimOrForward(ctx, []string{"q"}, 1+r.IntN(10), time.Duration(r.IntN(5))*time.Millisecond, sorter)
				cancel()
				if len(c.Deliveries) > 0 && err != nil {
					t.Errorf("%d deliveries returned with %v", len(c.Deliveries), err)
				}
				for _, d := range c.Deliveries {
					if r.IntN(3) == 0 {
						continue // abandoned: stays unacked
					}
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

	// A forwarded message is done, as an acked one is.
	fwd := trMust(b.rdb.LRange(b.ctx, "fwd", 0, -1).Result())
	if len(fwd) == 0 {
		t.Error("no message was forwarded")
	}
	for _, raw := range fwd {
		f, _ := claimCheck([]byte(raw))
		acked[f.tag]++
	}
	b.checkEachOnce(t, acked, tags)
}

// labelSorter forwards every third message (by label) to one of two lists,
// counting it by label parity, and notes the label on every message.
func labelSorter(t *testing.T) *Sorter {
	return &Sorter{
		Counters: []string{"cnt.seen", "cnt.passed"},
		Sort: func(p Peeked) Verdict {
			label := trLabel(t, p.Raw)
			var n int
			fmt.Sscan(label, &n)
			if n%3 != 0 {
				return Verdict{Note: label}
			}
			return Verdict{Forward: fmt.Sprintf("out-%d", n%2), Count: fmt.Sprintf("c%d", n%2), Note: label}
		},
	}
}

// ClaimOrForward racing itself, plain claims and a publisher: every message
// is claimed, dead-lettered or forwarded exactly once; forwarded ones are on
// their list, in their queue's order, never unacked, and counted in the
// same step; every delivery and forward carries its Sort note.
func TestTransportClaimOrForwardConcurrent(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	const m = 3000
	poison := []byte(`{"properties": {"delivery_tag": 5}}`)
	stepOf := map[string]int{}
	var wg sync.WaitGroup
	var raws [][]byte
	for i := range m {
		raw := trMessage(t, "q", i%10, fmt.Sprint(i))
		if i%50 == 1 {
			raw = append(slices.Clone(poison[:len(poison)-1]), fmt.Sprintf(`, "n": %d}`, i)...)
		}
		stepOf[fmt.Sprint(i)] = b.tr.step(i % 10)
		raws = append(raws, raw)
	}
	wg.Go(func() {
		pipe := b.rdb.Pipeline()
		for i, raw := range raws {
			pipe.LPush(b.ctx, b.tr.listKey("q", b.tr.step(i%10)), raw)
			if i%100 == 99 {
				if _, err := pipe.Exec(b.ctx); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
			}
		}
		if _, err := pipe.Exec(b.ctx); err != nil {
			t.Error(err)
		}
	})
	sorter := labelSorter(t)
	var mu sync.Mutex
	seen := map[string]int{}
	forwarded := map[string]int{} // list -> returned as forwarded there
	dead := 0
	for g := range 5 {
		wg.Go(func() {
			for {
				var c Claimed
				var err error
				if g < 4 {
					c, err = b.tr.ClaimOrForward(b.ctx, []string{"q"}, 1+g*40, 200*time.Millisecond, sorter)
				} else {
					var d *Delivery
					d, err = b.tr.Claim(b.ctx, []string{"q"}, 200*time.Millisecond)
					var dl *DeadLetter
					if errors.As(err, &dl) {
						c.DeadLetters, err = []*DeadLetter{dl}, nil
					} else if d != nil {
						c.Deliveries = []*Delivery{d}
					}
				}
				if errors.Is(err, ErrNoMessage) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				dead += len(c.DeadLetters)
				for _, d := range c.Deliveries {
					label := trLabel(t, d.Raw)
					seen[label]++
					// No note: the plain claimer, or the classic claim a batch
					// falls back to after lost races (still exactly once).
					if d.Note != nil && d.Note != label {
						t.Errorf("delivery %s noted %v", label, d.Note)
					}
				}
				for _, f := range c.Forwarded {
					label := trLabel(t, f.Raw)
					seen[label]++
					forwarded[f.List]++
					if f.Note != label || f.Queue != "q" {
						t.Errorf("forward of %s: note %v queue %s", label, f.Note, f.Queue)
					}
				}
				mu.Unlock()
				for _, d := range c.Deliveries {
					if err := b.tr.Ack(b.ctx, d.Tag); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if len(seen)+dead != m || dead != m/50 {
		t.Errorf("%d taken and %d dead-lettered, want %d and %d", len(seen), dead, m-m/50, m/50)
	}
	for label, k := range seen {
		if k != 1 {
			t.Errorf("message %s taken %d times", label, k)
		}
	}
	counts := map[string]int{}
	for _, list := range []string{"out-0", "out-1"} {
		got := trMust(b.rdb.LRange(b.ctx, list, 0, -1).Result())
		if len(got) != forwarded[list] {
			t.Errorf("%s holds %d messages, %d were returned as forwarded there", list, len(got), forwarded[list])
		}
		// LPUSHed: the oldest is last. Per priority step (one source list)
		// the forwarded messages keep their order.
		last := map[int]int{}
		for i := len(got) - 1; i >= 0; i-- {
			label := trLabel(t, []byte(got[i]))
			var n int
			fmt.Sscan(label, &n)
			if want := fmt.Sprintf("out-%d", n%2); n%3 != 0 || want != list {
				t.Errorf("%s holds message %s", list, label)
			}
			if step := stepOf[label]; n < last[step] {
				t.Errorf("%s: %s after %d from the same list", list, label, last[step])
			}
			last[stepOf[label]] = n
			counts[fmt.Sprintf("c%d", n%2)]++
		}
	}
	for _, hash := range sorter.Counters {
		for field, want := range counts {
			if got := trMust(b.rdb.HGet(b.ctx, hash, field).Int()); got != want {
				t.Errorf("%s %s = %d, want %d", hash, field, got, want)
			}
		}
	}
	if n := trMust(b.rdb.LLen(b.ctx, "spine.deadletter").Result()); n != m/50 {
		t.Errorf("dead-letter list holds %d", n)
	}
	if trMust(b.rdb.HLen(b.ctx, "unacked").Result()) != 0 || trMust(b.rdb.ZCard(b.ctx, "unacked_index").Result()) != 0 {
		t.Error("records left after acking every claim: a forward was recorded")
	}
}

// With one queue and nobody else consuming, ClaimOrForward keeps kombu's
// order exactly across its three outcomes, at every batch size.
func TestTransportClaimOrForwardOrder(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 4, 100} {
		b := trSetup(t, TransportOptions{})
		lists := map[string]map[int][]string{"q": {}}
		for i := range 120 {
			label := fmt.Sprint(i)
			b.publish(t, "q", i%10, label)
			lists["q"][b.tr.step(i%10)] = append(lists["q"][b.tr.step(i%10)], label)
		}
		var got []string
		for {
			c, err := b.tr.ClaimOrForward(b.ctx, []string{"q"}, size, 0, labelSorter(t))
			if errors.Is(err, ErrNoMessage) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			// One call: deliveries and forwards interleave in pop order;
			// the labels restore it within the batch.
			var batch []string
			for _, d := range c.Deliveries {
				batch = append(batch, trLabel(t, d.Raw))
			}
			for _, f := range c.Forwarded {
				batch = append(batch, trLabel(t, f.Raw))
			}
			slices.SortFunc(batch, func(a, b string) int {
				var x, y int
				fmt.Sscan(a, &x)
				fmt.Sscan(b, &y)
				return x - y
			})
			got = append(got, batch...)
		}
		if want := trKombuOrder([]string{"q"}, kombuPrioritySteps, lists); !slices.Equal(got, want) {
			t.Errorf("batch %d: order\n got %v\nwant %v", size, got, want)
		}
	}
}

// The Sorter sees each claimable message decoded exactly as DecodeTask
// decodes it, with claimCheck's priority and redelivery, whichever way the
// judge read the claim facts; messages the claim rule refuses never reach it.
func TestClaimOrForwardDecodesForTheSorter(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	cases := trClaimRuleCases(t)
	redelivered := bytes.Replace(trMessage(t, "q", 7, "again"), []byte(`"delivery_info": {`), []byte(`"delivery_info": {"redelivered": true, `), 1)
	raws := [][]byte{redelivered, trMessage(t, "q", 0, "plain")}
	refused := 0
	for _, c := range cases {
		raws = append(raws, c.raw)
		if c.reason != "" {
			refused++
		}
	}
	for _, raw := range raws {
		b.rdb.LPush(b.ctx, "q", raw)
	}
	var mu sync.Mutex
	sorted := 0
	sorter := &Sorter{Sort: func(p Peeked) Verdict {
		mu.Lock()
		defer mu.Unlock()
		sorted++
		facts, fault := claimCheck(p.Raw)
		if fault != "" {
			t.Errorf("the sorter was asked about a message the claim rule refuses (%s)", fault)
		}
		if p.Priority != facts.priority || p.Redelivered != facts.redelivered {
			t.Errorf("priority %d redelivered %v, claimCheck says %d %v", p.Priority, p.Redelivered, facts.priority, facts.redelivered)
		}
		want, werr := DecodeTask(p.Raw)
		switch {
		case (werr == nil) != (p.TaskErr == nil) || werr != nil && werr.Error() != p.TaskErr.Error():
			t.Errorf("decode error %v, DecodeTask says %v", p.TaskErr, werr)
		case werr == nil && !reflect.DeepEqual(p.Task, want):
			t.Errorf("task %+v, DecodeTask says %+v", p.Task, want)
		}
		return Verdict{Forward: "out"}
	}}
	taken := 0
	for {
		c, err := b.tr.ClaimOrForward(b.ctx, []string{"q"}, 5, 0, sorter)
		if errors.Is(err, ErrNoMessage) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		taken += len(c.Forwarded) + len(c.DeadLetters)
	}
	if taken != len(raws) || sorted < len(raws)-refused {
		t.Errorf("took %d of %d messages, sorted %d of the %d claimable", taken, len(raws), sorted, len(raws)-refused)
	}
}

// The run behind a batch is judged while the batch's script runs, with
// that call's Sorter. A next call with another Sorter (or none) judges it
// again rather than applying verdicts it did not give.
func TestClaimOrForwardJudgesAheadOnlyForTheSameSorter(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	for i := range 12 {
		b.publish(t, "q", 0, fmt.Sprint(i))
	}
	all := &Sorter{Sort: func(Peeked) Verdict { return Verdict{Forward: "out"} }}
	other := &Sorter{Sort: func(Peeked) Verdict { return Verdict{Forward: "elsewhere"} }}
	var labels []string
	for _, step := range []struct {
		sorter           *Sorter
		claims, forwards int
		list             string
	}{{all, 0, 3, "out"}, {nil, 3, 0, ""}, {all, 0, 3, "out"}, {other, 0, 3, "elsewhere"}} {
		c, err := b.tr.ClaimOrForward(b.ctx, []string{"q"}, 3, 0, step.sorter)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Deliveries) != step.claims || len(c.Forwarded) != step.forwards {
			t.Fatalf("%d claims and %d forwards, want %d and %d", len(c.Deliveries), len(c.Forwarded), step.claims, step.forwards)
		}
		for _, d := range c.Deliveries {
			labels = append(labels, trLabel(t, d.Raw))
		}
		for _, f := range c.Forwarded {
			if f.List != step.list {
				t.Errorf("forwarded to %s, want %s", f.List, step.list)
			}
			labels = append(labels, trLabel(t, f.Raw))
		}
	}
	if want := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}; !slices.Equal(labels, want) {
		t.Errorf("taken in order %v, want %v", labels, want)
	}
	if n := trMust(b.rdb.LLen(b.ctx, "elsewhere").Result()); n != 3 {
		t.Errorf("%d messages on the second sorter's list, want 3", n)
	}
}

// Large messages: every batch stays within maxClaimBatchBytes, and once
// their size is known a claim reads only as many as its runs can take.
func TestClaimBatchBoundsReadsByMessageSize(t *testing.T) {
	t.Parallel()
	b := trSetup(t, TransportOptions{})
	big := strings.Repeat("x", 700<<10)
	for i := range 30 {
		m, err := NewTaskMessage("interop.record", []any{fmt.Sprint(i), big}, nil, TaskOptions{Queue: "q"})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		b.rdb.LPush(b.ctx, "q", raw)
	}
	var got []string
	for {
		ds, _, err := b.tr.ClaimBatch(b.ctx, []string{"q"}, MaxClaimBatch, 0)
		if errors.Is(err, ErrNoMessage) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, d := range ds {
			size += len(d.Raw)
			task, err := DecodeTask(d.Raw)
			if err != nil {
				t.Fatal(err)
			}
			args, _ := task.DecodeArgs()
			got = append(got, args[0].(string))
		}
		if len(ds) > 1 && size > maxClaimBatchBytes {
			t.Errorf("a batch of %d messages, %d bytes", len(ds), size)
		}
		if n, most := b.tr.readCount(MaxClaimBatch, 2), 2*maxClaimBatchBytes/(700<<10); n > most {
			t.Errorf("the next claim would read %d messages of 700 KiB, want at most %d", n, most)
		}
	}
	want := make([]string, 30)
	for i := range want {
		want[i] = fmt.Sprint(i)
	}
	if !slices.Equal(got, want) {
		t.Errorf("claimed %v, want %v", got, want)
	}
}
