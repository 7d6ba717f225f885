package celerybridge

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed claim.lua
var claimLua string

var claimScript = redis.NewScript(claimLua)

// Delivery is a message Claim took: it stays in kombu's unacked records
// until Ack, Reject, Restore or DeadLetter, or until a visibility-timeout
// scan (ours or a Python consumer's) puts it back.
type Delivery struct {
	// Tag is the unacked field: properties.delivery_tag, unless another copy
	// of the same message (kombu gives every copy of a message routed to
	// several queues one tag) is in flight, when it is "<tag><sep><n>".
	Tag string
	// Raw is the envelope exactly as it was on the list.
	Raw []byte
	// Queue is where it was taken from; Exchange and RoutingKey come from
	// its delivery_info and say where a restore puts it.
	Queue, Exchange, RoutingKey string
	// Priority is kombu's reading of properties.priority, clamped to 0..9.
	Priority int
	// ClaimedAt is the unacked_index score, from the Redis server's clock.
	ClaimedAt time.Time
	// Redelivered: a restore or requeue put the message back before
	// (headers.redelivered or delivery_info.redelivered).
	Redelivered bool
	// Note is what a Sorter noted about the message when ClaimOrForward
	// judged it; nil from Claim, ClaimBatch and claims made without asking.
	Note any
}

// Polling bounds: Lua cannot block, so Claim runs the script, then sleeps
// 1ms, 2ms, 4ms ... up to maxClaimBackoff between empty attempts.
const (
	minClaimBackoff = time.Millisecond
	maxClaimBackoff = 100 * time.Millisecond
	// claimReplyGrace is how long a claim whose caller left may still wait
	// for the script's reply before leaving the message to a visibility scan.
	claimReplyGrace = 2 * time.Second
)

// Claim takes the next message from queues in kombu's consume order — every
// queue's priority-0 list before any priority-3 list, and so on (the lower
// number is served first), each list FIFO — and records it as unacked in the
// same atomic step, as kombu's QoS.append writes it: unacked[tag] =
// '[<envelope>, "<exchange>", "<routing_key>"]' with the envelope verbatim,
// and unacked_index[tag] = the server's time. Among queues with a message
// of the same step the one served longest ago goes first: the queue order
// rotates after each hit, like kombu's round-robin cycle.
//
// Claim polls until a message comes or wait elapses (ErrNoMessage); wait 0
// tries once. A message kombu's restore could not handle (see claim.lua) is
// moved to the dead-letter list in the same step and returned as a
// *DeadLetter error (errors.Is ErrDeadLettered); call Claim again.
//
// When ctx ends while the script runs, Claim still reads its reply (for up
// to two seconds more) and puts a claimed message back at the head of its
// list, untouched. If the reply never comes or the process dies, the message
// waits in unacked for a visibility-timeout scan: it is never lost.
func (t *Transport) Claim(ctx context.Context, queues []string, wait time.Duration) (*Delivery, error) {
	if len(queues) == 0 {
		return nil, errEmptyQueues
	}
	deadline := time.Now().Add(wait)
	var backoff time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := t.claimOnce(ctx, queues)
		if d != nil || err != nil {
			return d, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, ErrNoMessage
		}
		backoff = min(max(2*backoff, minClaimBackoff), maxClaimBackoff)
		sleep := min(backoff+rand.N(backoff/4+1), left)
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func (t *Transport) claimOnce(ctx context.Context, queues []string) (*Delivery, error) {
	order := t.consumeOrder(queues)
	keys := make([]string, 0, 3+len(t.steps)*len(order))
	keys = append(keys, t.unackedKey, t.indexKey, t.deadKey)
	args := make([]any, 0, 1+len(t.steps)*len(order))
	args = append(args, t.sep)
	for _, step := range t.steps {
		for _, q := range order {
			keys = append(keys, t.listKey(q, step))
			args = append(args, q)
		}
	}
	// The reply must be read even when the caller gives up, since it may
	// hold a message now recorded as ours; it gets claimReplyGrace to come.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(claimReplyGrace, cancel) })
	defer stop()
	res, err := claimScript.Run(sctx, t.rdb, keys, args...).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("celerybridge: claim from %v: %w", queues, err)
	}
	if len(res) != 5 {
		return nil, fmt.Errorf("celerybridge: claim script replied %d values", len(res))
	}
	kind, _ := res[0].(string)
	idx, _ := res[1].(int64)
	field, _ := res[2].(string)
	raw, _ := res[3].(string)
	score, _ := res[4].(string)
	if idx < 1 || int(idx) > len(keys)-3 {
		return nil, fmt.Errorf("celerybridge: claim script replied list %d", idx)
	}
	queue := order[(int(idx)-1)%len(order)]
	list := keys[2+idx]
	t.rotate(queues, queue)
	at, err := parseUnackedScore(score)
	if err != nil {
		return nil, fmt.Errorf("celerybridge: claim script score: %w", err)
	}
	if kind == "dead" {
		d := &DeadLetter{Reason: field, Queue: queue, Raw: []byte(raw), At: at}
		t.log.Warn("celerybridge: dead-lettered a message kombu could not restore", "queue", queue, "reason", field)
		return nil, d
	}
	facts, fault := claimCheck([]byte(raw))
	if fault != "" { // the script and claimCheck disagree: keep it claimed, loudly
		t.log.Error("celerybridge: claimed a message the Go claim rule refuses", "queue", queue, "tag", field, "reason", fault)
	}
	d := &Delivery{
		Tag: field, Raw: []byte(raw), Queue: queue,
		Exchange: facts.exchange, RoutingKey: facts.routingKey,
		Priority: facts.priority, ClaimedAt: at, Redelivered: facts.redelivered,
	}
	if ctx.Err() != nil {
		if err := t.unclaim(d, list); err != nil {
			t.log.Warn("celerybridge: could not hand back a claim whose caller left; a visibility scan will restore it",
				"tag", d.Tag, "err", err)
		}
		return nil, ctx.Err()
	}
	return d, nil
}

// unclaim puts a message whose claimer went away back at the head of the
// list it came from, byte for byte, and drops its unacked record.
func (t *Transport) unclaim(d *Delivery, list string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := t.rdb.HGet(ctx, t.unackedKey, d.Tag).Result()
	if err != nil {
		return err
	}
	_, err = t.move(ctx, d.Tag, rec, "", true, d.Raw, []string{list})
	return err
}

// consumeOrder returns the current rotation of queues (first use: as given).
func (t *Transport) consumeOrder(queues []string) []string {
	key := strings.Join(queues, "\x00")
	t.mu.Lock()
	defer t.mu.Unlock()
	order, ok := t.cycles[key]
	if !ok {
		if len(t.cycles) >= 1024 { // callers with ever-new queue lists
			clear(t.cycles)
		}
		order = slices.Clone(queues)
		t.cycles[key] = order
	}
	return slices.Clone(order)
}

// rotate moves the queue just served to the end of the order, as kombu's
// round_robin_cycle.rotate does.
func (t *Transport) rotate(queues []string, served string) {
	key := strings.Join(queues, "\x00")
	t.mu.Lock()
	defer t.mu.Unlock()
	order := t.cycles[key]
	if i := slices.Index(order, served); i >= 0 {
		order = append(append(order[:i:i], order[i+1:]...), served)
		t.cycles[key] = order
	}
}
