package celerybridge

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
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
	c, err := t.ClaimOrForward(ctx, queues, limit, wait, nil)
	return c.Deliveries, c.DeadLetters, err
}

// Peeked is a claimable message ClaimOrForward has read but not taken yet,
// as its Sorter sees it.
type Peeked struct {
	// Raw is the envelope as it is on the list.
	Raw []byte
	// Queue is the queue it would be taken from; Priority kombu's reading
	// of its properties.priority (0..9).
	Queue    string
	Priority int
	// Redelivered: a restore or requeue put it back before.
	Redelivered bool
	// Task is the message decoded as DecodeTask decodes it, or TaskErr
	// why it could not be. One scan serves both this and the claim rule.
	Task    *Task
	TaskErr error
}

// Verdict is what ClaimOrForward does with one peeked message.
type Verdict struct {
	// Forward, when not "", names the list the message moves onto, byte
	// for byte (LPUSH, as a publish does), in the step that takes it from
	// its queue. It is never unacked: there is nothing to ack, restore or
	// lose. "" claims it.
	Forward string
	// Count is the field incremented by one in each of the Sorter's
	// Counters when the message is forwarded, in that same step; "" counts
	// nothing.
	Count string
	// Note is handed back with the message's Delivery or Forwarded, so
	// that what the Sorter learnt (a decoded message, a decision) is not
	// worked out again.
	Note any
}

// A Sorter decides which messages ClaimOrForward forwards instead of
// claiming: those whose fate is known from their bytes alone, so they need
// never be held.
type Sorter struct {
	// Sort returns the verdict on one claimable message (messages the
	// claim rule refuses are dead-lettered without asking). It is called
	// concurrently, possibly more than once for one message (after a race
	// lost to another consumer) and for messages the call then does not
	// take, so it must have no effects.
	Sort func(Peeked) Verdict
	// Counters are hashes whose Count fields forwarded messages increment.
	Counters []string
}

// Forwarded is a message ClaimOrForward moved to another list.
type Forwarded struct {
	Raw         []byte
	Queue, List string
	Note        any
}

// Claimed is what one ClaimOrForward took, each part in consume order.
type Claimed struct {
	Deliveries  []*Delivery
	DeadLetters []*DeadLetter
	Forwarded   []*Forwarded
}

func (c Claimed) empty() bool {
	return len(c.Deliveries) == 0 && len(c.DeadLetters) == 0 && len(c.Forwarded) == 0
}

// ClaimOrForward is ClaimBatch with a Sorter: of the claimable messages it
// takes, those the Sorter gives a list to are moved there instead of being
// claimed, with their counts, in the same atomic step. A consumer that only
// passes some messages on (a router) thus costs Redis a pop and a push for
// them, instead of a claim, an unacked record and an ack.
//
// Deliveries carry their Verdict's Note. When a batch claim is not possible
// (Redis older than 6.2, or runs lost to other consumers three times over)
// one message is claimed the classic way, without asking the Sorter: a
// caller must be ready for deliveries without a Note. A nil Sorter claims
// everything. When ctx ends while the script runs, the messages it forwarded
// stay forwarded and are returned with ctx's error.
func (t *Transport) ClaimOrForward(ctx context.Context, queues []string, limit int, wait time.Duration, sorter *Sorter) (Claimed, error) {
	if len(queues) == 0 {
		return Claimed{}, errEmptyQueues
	}
	limit = min(MaxClaimBatch, limit)
	if limit < 1 {
		return Claimed{}, fmt.Errorf("celerybridge: claim batch of %d messages", limit)
	}
	deadline := time.Now().Add(wait)
	var backoff time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return Claimed{}, err
		}
		c, err := t.claimBatchOnce(ctx, queues, limit, sorter)
		if !c.empty() || err != nil {
			return c, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return Claimed{}, ErrNoMessage
		}
		backoff = min(max(2*backoff, minClaimBackoff), maxClaimBackoff)
		sleep := min(backoff+rand.N(backoff/4+1), left)
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return Claimed{}, ctx.Err()
		case <-timer.C:
		}
	}
}

// peeked is a message judged before the claim: a fault for the dead-letter
// list, else the claim facts and the Sorter's verdict.
type peeked struct {
	raw     []byte
	facts   claimFacts
	fault   string
	verdict Verdict
}

func (t *Transport) claimBatchOnce(ctx context.Context, queues []string, limit int, sorter *Sorter) (Claimed, error) {
	for range peekRetries {
		if t.singleClaims.Load() {
			break
		}
		c, lost, err := t.claimPeeked(ctx, queues, limit, sorter)
		if isScriptUnsupported(err) {
			t.log.Warn("celerybridge: this Redis has no RPOP count (6.2+): claiming one message at a time", "err", err)
			t.singleClaims.Store(true)
			break
		}
		if err != nil || !lost {
			return c, err
		}
	}
	d, err := t.claimOnce(ctx, queues)
	var dl *DeadLetter
	switch {
	case errors.As(err, &dl):
		return Claimed{DeadLetters: []*DeadLetter{dl}}, nil
	case err != nil:
		return Claimed{}, err
	case d != nil:
		return Claimed{Deliveries: []*Delivery{d}}, nil
	}
	return Claimed{}, nil
}

// claimPeeked peeks, judges and claims once. lost says the peeked messages
// were taken by someone else first (or a list ahead of them filled): the
// caller may try again.
func (t *Transport) claimPeeked(ctx context.Context, queues []string, limit int, sorter *Sorter) (c Claimed, lost bool, err error) {
	order := t.consumeOrder(queues)
	lists := make([]string, 0, len(t.steps)*len(order))
	for _, step := range t.steps {
		for _, q := range order {
			lists = append(lists, t.listKey(q, step))
		}
	}
	key := strings.Join(queues, "\x00")
	single := len(queues) == 1
	ahead, ok := t.takeAhead(key)
	idx, items := ahead.idx, ahead.items
	if !ok {
		// With one queue, two runs are read at once: the second is judged
		// while the first one's script runs.
		count := t.readCount(limit, 1)
		if single {
			count = t.readCount(2*limit, 2)
		}
		res, err := peekScript.Run(ctx, t.rdb, lists, count).Slice()
		if errors.Is(err, redis.Nil) {
			return Claimed{}, false, nil
		}
		if err != nil {
			return Claimed{}, false, fmt.Errorf("celerybridge: claim from %v: peek: %w", queues, err)
		}
		idx, _ = res[0].(int64)
		got, _ := res[1].([]any)
		items = make([]string, len(got))
		for i, v := range got {
			items[i], _ = v.(string)
		}
		ahead.full = len(items) == count
		t.noteSizes(items)
	}
	if idx < 1 || int(idx) > len(lists) || len(items) == 0 {
		return Claimed{}, false, fmt.Errorf("celerybridge: peek script replied list %d with %d messages", idx, len(items))
	}
	queue := order[(int(idx)-1)%len(order)]
	list := lists[idx-1]

	// This run is the tail (popped first); behind it, the next one.
	n := tailRun(items, limit)
	run, behind := items[len(items)-n:], items[:len(items)-n]
	var msgs []peeked
	if ahead.judged != nil && ahead.judged.sorter == sorter && ahead.judged.n == n {
		<-ahead.judged.done
		msgs = ahead.judged.msgs
	} else {
		msgs = judge(run, queue, sorter)
	}
	keys, args := t.claimBatchArgs(msgs, queue, list, lists[:idx-1], sorter)

	// The run behind is judged while this run's script runs (its own
	// script will still check every message is there, byte for byte).
	var next *judgedRun
	if single && len(behind) > 0 {
		next = judgeLater(behind[len(behind)-tailRun(behind, limit):], queue, sorter)
	}

	// As in claimOnce: the reply is read even when the caller gives up,
	// since it may list messages now recorded as ours.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(claimReplyGrace, cancel) })
	defer stop()
	// With one queue the next claim will peek at the same list, so the run
	// after the one behind is read in the same round trip, before this run
	// is popped.
	peekAhead := single && ahead.full
	out, beyond, err := t.runClaimBatch(sctx, keys, args, list, peekAhead, len(items), t.readCount(limit, 1))
	if err != nil {
		return Claimed{}, false, fmt.Errorf("celerybridge: claim from %v: %w", queues, err)
	}
	if len(out)-1 == len(msgs) && next != nil {
		// Still in list order: what was read beyond, then all behind this run.
		t.noteSizes(beyond)
		pending := append(beyond[:len(beyond):len(beyond)], behind...)
		t.putAhead(key, peekedAhead{idx: idx, items: pending, judged: next, full: len(beyond) == t.readCount(limit, 1)})
	}
	if len(out) < 1 || len(out)-1 > len(msgs) {
		return Claimed{}, false, fmt.Errorf("celerybridge: claim batch script replied %d values for %d messages", len(out), len(msgs))
	}
	at, err := parseUnackedScore(out[0])
	if err != nil {
		return Claimed{}, false, fmt.Errorf("celerybridge: claim batch script score: %w", err)
	}
	taken := out[1:]
	if len(taken) == 0 {
		return Claimed{}, true, nil
	}
	t.rotate(queues, queue)
	for i, field := range taken {
		m := msgs[i]
		switch {
		case m.fault != "":
			dl := &DeadLetter{Reason: m.fault, Queue: queue, Raw: m.raw, At: at}
			t.log.Warn("celerybridge: dead-lettered a message kombu could not restore", "queue", queue, "reason", m.fault)
			c.DeadLetters = append(c.DeadLetters, dl)
		case m.verdict.Forward != "":
			c.Forwarded = append(c.Forwarded, &Forwarded{Raw: m.raw, Queue: queue, List: m.verdict.Forward, Note: m.verdict.Note})
		default:
			c.Deliveries = append(c.Deliveries, &Delivery{
				Tag: field, Raw: m.raw, Queue: queue,
				Exchange: m.facts.exchange, RoutingKey: m.facts.routingKey,
				Priority: m.facts.priority, ClaimedAt: at, Redelivered: m.facts.redelivered,
				Note: m.verdict.Note,
			})
		}
	}
	if ctx.Err() != nil {
		// Back at the head in reverse: the first claimed is served first again.
		for i := len(c.Deliveries) - 1; i >= 0; i-- {
			if err := t.unclaim(c.Deliveries[i], list); err != nil {
				t.log.Warn("celerybridge: could not hand back a claim whose caller left; a visibility scan will restore it",
					"tag", c.Deliveries[i].Tag, "err", err)
			}
		}
		c.Deliveries = nil
		return c, false, ctx.Err()
	}
	return c, false, nil
}

// claimBatchArgs lays out claimbatch.lua's keys and arguments for msgs,
// peeked from list of queue, with the lists ahead of it in consume order.
func (t *Transport) claimBatchArgs(msgs []peeked, queue, list string, ahead []string, sorter *Sorter) ([]string, []any) {
	var counters []string
	if sorter != nil {
		counters = sorter.Counters
	}
	keys := make([]string, 0, 4+len(ahead)+len(counters)+2)
	keys = append(keys, t.unackedKey, t.indexKey, t.deadKey, list)
	keys = append(keys, ahead...)
	keys = append(keys, counters...)
	dest := map[string]string{} // forward list -> its KEYS index (1-based), as text
	args := make([]any, 0, 3+4*len(msgs))
	args = append(args, t.sep, len(ahead), len(counters))
	for _, m := range msgs {
		switch {
		case m.fault != "":
			head := appendDeadLetterHead(nil, &DeadLetter{Reason: m.fault, Queue: queue, Raw: m.raw})
			args = append(args, m.raw, "d", head, "")
		case m.verdict.Forward != "":
			k, ok := dest[m.verdict.Forward]
			if !ok {
				keys = append(keys, m.verdict.Forward)
				k = strconv.Itoa(len(keys))
				dest[m.verdict.Forward] = k
			}
			args = append(args, m.raw, "f", k, m.verdict.Count)
		default:
			rec := kombuUnackedRecord(nil, m.facts.exchange, m.facts.routingKey)
			args = append(args, m.raw, "c", m.facts.tag, rec[1:]) // the record after its '['
		}
	}
	return keys, args
}

// runClaimBatch runs claimbatch.lua, pipelined behind an LRANGE of the
// count messages behind the k already read when peekAhead is set.
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
func (t *Transport) takeAhead(key string) (peekedAhead, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.ahead[key]
	if ok {
		delete(t.ahead, key)
	}
	return a, ok
}

func (t *Transport) putAhead(key string, a peekedAhead) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ahead == nil || len(t.ahead) >= 64 {
		t.ahead = map[string]peekedAhead{}
	}
	t.ahead[key] = a
}

// peekedAhead is what a batch claim read behind the run it claimed.
type peekedAhead struct {
	idx   int64    // 1-based list index in consume order, as the peek script gives
	items []string // LRANGE order: the tail, to be claimed first, last
	// judged is the verdict on the tail run of items, reached while the
	// claim before ran; nil if none.
	judged *judgedRun
	// full: items reached as far as the read asked, so more may follow.
	full bool
}

// judgedRun is a run of messages being judged in the background.
type judgedRun struct {
	sorter *Sorter
	items  []string
	n      int
	done   chan struct{}
	msgs   []peeked
}

func judgeLater(items []string, queue string, sorter *Sorter) *judgedRun {
	j := &judgedRun{sorter: sorter, items: items, n: len(items), done: make(chan struct{})}
	go func() {
		defer close(j.done)
		j.msgs = judge(items, queue, sorter)
	}()
	return j
}

// readCount is how many messages to read (LRANGE) for runs batches of up
// to limit each: as many, unless the messages read lately were so large
// that they would exceed runs times maxClaimBatchBytes (one message is
// always read). It bounds a claimer's memory when messages are large.
func (t *Transport) readCount(limit, runs int) int {
	if avg := t.msgSize.Load(); avg > 0 {
		return max(1, min(limit, runs*maxClaimBatchBytes/int(avg)))
	}
	return limit
}

// noteSizes records the average size of the messages just read.
func (t *Transport) noteSizes(items []string) {
	if len(items) == 0 {
		return
	}
	total := 0
	for _, it := range items {
		total += len(it)
	}
	t.msgSize.Store(int64(max(1, total/len(items))))
}

// tailRun is how many messages, from the tail of items (LRANGE order), one
// batch takes: up to limit, and no more than maxClaimBatchBytes of them
// (one message is always taken, whatever its size).
func tailRun(items []string, limit int) int {
	n, size := 0, 0
	for i := len(items) - 1; i >= 0 && n < limit; i-- {
		if n > 0 && size+len(items[i]) > maxClaimBatchBytes {
			break
		}
		size += len(items[i])
		n++
	}
	return n
}

// judge applies the claim rule to items, the tail (served first) last, asks
// the sorter (if any) about each claimable one, and returns them in pop
// order. Large
// runs are judged on every core.
func judge(items []string, queue string, sorter *Sorter) []peeked {
	msgs := make([]peeked, len(items))
	sorting := sorter != nil && sorter.Sort != nil
	one := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			raw := []byte(items[len(items)-1-i])
			if !sorting {
				facts, fault := claimCheck(raw)
				msgs[i] = peeked{raw: raw, facts: facts, fault: fault}
				continue
			}
			msgs[i] = judgeAndSort(raw, queue, sorter)
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

// judgeAndSort decodes a message for the Sorter and, when the decoded
// envelope settles it, takes the claim rule's facts from it rather than
// scanning the bytes again.
func judgeAndSort(raw []byte, queue string, sorter *Sorter) peeked {
	var env Envelope
	derr := decodeEnvelope(raw, &env)
	m := peeked{raw: raw}
	sure := false
	if derr == nil && !nestedDeeperThan(raw, maxClaimDepth) {
		m.facts, sure = envelopeFacts(&env)
	}
	if !sure {
		m.facts, m.fault = claimCheck(raw)
		if m.fault != "" {
			return m
		}
	}
	p := Peeked{Raw: raw, Queue: queue, Priority: m.facts.priority, Redelivered: m.facts.redelivered, TaskErr: derr}
	if derr == nil {
		p.Task, p.TaskErr = env.Task()
	}
	m.verdict = sorter.Sort(p)
	return m
}

// isScriptUnsupported reports a server too old for the batch claim (RPOP
// with a count needs Redis 6.2). Inside a script, Redis 7 says "wrong number
// of arguments for 'rpop'" and Redis 6.0 and older "Wrong number of args
// calling Redis command from script".
func isScriptUnsupported(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "wrong number of arg")
}
