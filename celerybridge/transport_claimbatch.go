package celerybridge

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed claimbatch.lua
var claimBatchLua string

var claimBatchScript = redis.NewScript(claimBatchLua)

// peekScript returns the 1-based index of the first non-empty list among
// KEYS, in consume order, and up to ARGV[1] messages from its tail (LRANGE
// order: the tail, served first, comes last), or nil when all are empty.
var peekScript = redis.NewScript(`
for i = 1, #KEYS do
  local items = redis.call('LRANGE', KEYS[i], -tonumber(ARGV[1]), -1)
  if #items > 0 then return { i, items } end
end
return nil`)

// Batch limits. MaxClaimBatch keeps the script's argument lists well inside
// Lua's stack; maxClaimBatchBytes keeps one call's payload modest when the
// messages are large (one message is always taken, whatever its size).
const (
	MaxClaimBatch      = 512
	maxClaimBatchBytes = 4 << 20
	// peekRetries is how many times a batch claim peeks again after losing
	// the messages it peeked to another consumer before it claims one
	// message the classic way, so it progresses under any contention.
	peekRetries = 3
)

// ClaimBatch claims up to max messages (at most MaxClaimBatch) at once, with
// the same rule, records and order as Claim: the messages it returns are
// recorded as unacked, those Claim would dead-letter are in the dead-letter
// list and returned as dead letters, and both come in consume order. All the
// messages of one call come from one list; among queues of one priority step
// the list served longest ago goes first, as with Claim.
//
// It is Claim at a fraction of the Redis time per message: the claim rule
// runs in Go on messages peeked from the tail, and one script takes the run
// of them still there byte for byte, recording them all in a few commands.
// A message is claimed only with the verdict reached on its own bytes.
//
// ClaimBatch polls until at least one message comes or wait elapses
// (ErrNoMessage, with no deliveries or dead letters); wait 0 tries once. When
// ctx ends while the script runs, the claimed messages are put back at the
// head of their list, untouched, and ctx's error is returned.
func (t *Transport) ClaimBatch(ctx context.Context, queues []string, limit int, wait time.Duration) ([]*Delivery, []*DeadLetter, error) {
	if len(queues) == 0 {
		return nil, nil, errEmptyQueues
	}
	limit = min(MaxClaimBatch, limit)
	if limit < 1 {
		return nil, nil, fmt.Errorf("celerybridge: claim batch of %d messages", limit)
	}
	deadline := time.Now().Add(wait)
	var backoff time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		ds, dls, err := t.claimBatchOnce(ctx, queues, limit)
		if len(ds) > 0 || len(dls) > 0 || err != nil {
			return ds, dls, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil, ErrNoMessage
		}
		backoff = min(max(2*backoff, minClaimBackoff), maxClaimBackoff)
		sleep := min(backoff+rand.N(backoff/4+1), left)
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// peeked is a message judged before the claim.
type peeked struct {
	raw   []byte
	facts claimFacts
	fault string
}

func (t *Transport) claimBatchOnce(ctx context.Context, queues []string, limit int) ([]*Delivery, []*DeadLetter, error) {
	for range peekRetries {
		if t.singleClaims.Load() {
			break
		}
		ds, dls, lost, err := t.claimPeeked(ctx, queues, limit)
		if isScriptUnsupported(err) {
			t.log.Warn("celerybridge: this Redis has no RPOP count (6.2+): claiming one message at a time", "err", err)
			t.singleClaims.Store(true)
			break
		}
		if err != nil || !lost {
			return ds, dls, err
		}
	}
	d, err := t.claimOnce(ctx, queues)
	var dl *DeadLetter
	switch {
	case errors.As(err, &dl):
		return nil, []*DeadLetter{dl}, nil
	case err != nil:
		return nil, nil, err
	case d != nil:
		return []*Delivery{d}, nil, nil
	}
	return nil, nil, nil
}

// claimPeeked peeks, judges and claims once. lost says the peeked messages
// were taken by someone else first (or a list ahead of them filled): the
// caller may try again.
func (t *Transport) claimPeeked(ctx context.Context, queues []string, limit int) (ds []*Delivery, dls []*DeadLetter, lost bool, err error) {
	order := t.consumeOrder(queues)
	lists := make([]string, 0, len(t.steps)*len(order))
	for _, step := range t.steps {
		for _, q := range order {
			lists = append(lists, t.listKey(q, step))
		}
	}
	key := strings.Join(queues, "\x00")
	idx, items, ok := t.takeAhead(key)
	if !ok {
		res, err := peekScript.Run(ctx, t.rdb, lists, limit).Slice()
		if errors.Is(err, redis.Nil) {
			return nil, nil, false, nil
		}
		if err != nil {
			return nil, nil, false, fmt.Errorf("celerybridge: claim from %v: peek: %w", queues, err)
		}
		idx, _ = res[0].(int64)
		got, _ := res[1].([]any)
		items = make([]string, len(got))
		for i, v := range got {
			items[i], _ = v.(string)
		}
	}
	if idx < 1 || int(idx) > len(lists) || len(items) == 0 {
		return nil, nil, false, fmt.Errorf("celerybridge: peek script replied list %d with %d messages", idx, len(items))
	}
	queue := order[(int(idx)-1)%len(order)]
	list := lists[idx-1]

	// Judge the tail first, the order they are popped in.
	n, size := 0, 0
	for i := len(items) - 1; i >= 0; i-- {
		if n > 0 && size+len(items[i]) > maxClaimBatchBytes {
			break
		}
		size += len(items[i])
		n++
	}
	msgs := judge(items[len(items)-n:])
	keys := append([]string{t.unackedKey, t.indexKey, t.deadKey, list}, lists[:idx-1]...)
	args := make([]any, 0, 1+3*len(msgs))
	args = append(args, t.sep)
	for _, m := range msgs {
		if m.fault != "" {
			head := appendDeadLetterHead(nil, &DeadLetter{Reason: m.fault, Queue: queue, Raw: m.raw})
			args = append(args, m.raw, "", head)
			continue
		}
		rec := kombuUnackedRecord(nil, m.facts.exchange, m.facts.routingKey)
		args = append(args, m.raw, m.facts.tag, rec[1:]) // the record after its '['
	}

	// As in claimOnce: the reply is read even when the caller gives up,
	// since it may list messages now recorded as ours.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(claimReplyGrace, cancel) })
	defer stop()
	// With one queue the next claim will peek at the same list, so the run
	// behind this one is read in the same round trip, before this run is
	// popped: the next claim judges it at once (and its script still checks
	// every message is there, byte for byte).
	peekAhead := len(queues) == 1 && len(items) == limit && len(msgs) == len(items)
	out, ahead, err := t.runClaimBatch(sctx, keys, args, list, peekAhead, len(msgs), limit)
	if err != nil {
		return nil, nil, false, fmt.Errorf("celerybridge: claim from %v: %w", queues, err)
	}
	if len(out)-1 == len(msgs) && len(ahead) > 0 {
		t.putAhead(key, idx, ahead)
	}
	if len(out) < 1 || len(out)-1 > len(msgs) {
		return nil, nil, false, fmt.Errorf("celerybridge: claim batch script replied %d values for %d messages", len(out), len(msgs))
	}
	at, err := parseUnackedScore(out[0])
	if err != nil {
		return nil, nil, false, fmt.Errorf("celerybridge: claim batch script score: %w", err)
	}
	taken := out[1:]
	if len(taken) == 0 {
		return nil, nil, true, nil
	}
	t.rotate(queues, queue)
	for i, field := range taken {
		m := msgs[i]
		if field == "" {
			dl := &DeadLetter{Reason: m.fault, Queue: queue, Raw: m.raw, At: at}
			t.log.Warn("celerybridge: dead-lettered a message kombu could not restore", "queue", queue, "reason", m.fault)
			dls = append(dls, dl)
			continue
		}
		ds = append(ds, &Delivery{
			Tag: field, Raw: m.raw, Queue: queue,
			Exchange: m.facts.exchange, RoutingKey: m.facts.routingKey,
			Priority: m.facts.priority, ClaimedAt: at, Redelivered: m.facts.redelivered,
		})
	}
	if ctx.Err() != nil {
		// Back at the head in reverse: the first claimed is served first again.
		for i := len(ds) - 1; i >= 0; i-- {
			if err := t.unclaim(ds[i], list); err != nil {
				t.log.Warn("celerybridge: could not hand back a claim whose caller left; a visibility scan will restore it",
					"tag", ds[i].Tag, "err", err)
			}
		}
		return nil, dls, false, ctx.Err()
	}
	return ds, dls, false, nil
}

// runClaimBatch runs claimbatch.lua, pipelined behind an LRANGE of the
// count messages behind the k being claimed when peekAhead is set.
func (t *Transport) runClaimBatch(ctx context.Context, keys []string, args []any, list string, peekAhead bool, k, count int) ([]string, []string, error) {
	if !peekAhead {
		out, err := claimBatchScript.Run(ctx, t.rdb, keys, args...).StringSlice()
		return out, nil, err
	}
	pipe := t.rdb.Pipeline()
	aheadCmd := pipe.LRange(ctx, list, -int64(k+count), -int64(k+1))
	claimCmd := claimBatchScript.EvalSha(ctx, pipe, keys, args...)
	_, _ = pipe.Exec(ctx)
	if err := claimCmd.Err(); redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server lost its script cache: load it, no peek ahead this time.
		out, err := claimBatchScript.Run(ctx, t.rdb, keys, args...).StringSlice()
		return out, nil, err
	}
	out, err := claimCmd.StringSlice()
	if err != nil {
		return nil, nil, err
	}
	ahead, err := aheadCmd.Result()
	if err != nil {
		return out, nil, nil // the claim stands; the next one peeks afresh
	}
	return out, ahead, nil
}

// takeAhead returns (and forgets) the messages read ahead for queues.
func (t *Transport) takeAhead(key string) (int64, []string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.ahead[key]
	if ok {
		delete(t.ahead, key)
	}
	return a.idx, a.items, ok
}

func (t *Transport) putAhead(key string, idx int64, items []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ahead == nil || len(t.ahead) >= 64 {
		t.ahead = map[string]peekedAhead{}
	}
	t.ahead[key] = peekedAhead{idx: idx, items: items}
}

// peekedAhead is the run of messages read behind a claimed one.
type peekedAhead struct {
	idx   int64 // 1-based list index in consume order, as the peek script gives
	items []string
}

// judge applies the claim rule to items, the tail (served first) last, and
// returns them in pop order. Large runs are judged on every core.
func judge(items []string) []peeked {
	msgs := make([]peeked, len(items))
	one := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			raw := []byte(items[len(items)-1-i])
			facts, fault := claimCheck(raw)
			msgs[i] = peeked{raw: raw, facts: facts, fault: fault}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(items)/64)
	if workers < 2 {
		one(0, len(items))
		return msgs
	}
	var wg sync.WaitGroup
	per := (len(items) + workers - 1) / workers
	for lo := 0; lo < len(items); lo += per {
		wg.Go(func() { one(lo, min(lo+per, len(items))) })
	}
	wg.Wait()
	return msgs
}

// isScriptUnsupported reports a server too old for the batch claim (RPOP
// with a count needs Redis 6.2). Inside a script, Redis 7 says "wrong number
// of arguments for 'rpop'" and Redis 6.0 and older "Wrong number of args
// calling Redis command from script".
func isScriptUnsupported(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "wrong number of arg")
}
