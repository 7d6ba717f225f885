package celerybridge

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// UnackedMessage is one of kombu's unacked records, whoever claimed it.
type UnackedMessage struct {
	Tag       string
	ClaimedAt time.Time     // the unacked_index score
	Age       time.Duration // on the Redis server's clock
	// Queue is where a restore would put it (the first such queue); Exchange
	// and RoutingKey are the record's. A record this package cannot read
	// has all three empty and Raw holding the whole record.
	Queue, Exchange, RoutingKey string
	Raw                         []byte
}

// QueuedMessage is a message waiting on a queue.
type QueuedMessage struct {
	Step int    // the priority list it is on: 0, 3, 6 or 9 by default
	Raw  []byte // exactly as on the list
}

// Unacked lists the unacked records, oldest claim first. Read-only.
func (t *Transport) Unacked(ctx context.Context) ([]UnackedMessage, error) {
	index, err := t.rdb.ZRangeWithScores(ctx, t.indexKey, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("celerybridge: unacked_index: %w", err)
	}
	now, err := t.rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("celerybridge: server time: %w", err)
	}
	routes := map[[2]string]string{}
	var out []UnackedMessage
	for batch := range slices.Chunk(index, 256) {
		tags := make([]string, len(batch))
		for i, z := range batch {
			tags[i], _ = z.Member.(string)
		}
		recs, err := t.rdb.HMGet(ctx, t.unackedKey, tags...).Result()
		if err != nil {
			return nil, fmt.Errorf("celerybridge: unacked: %w", err)
		}
		for i, r := range recs {
			rec, ok := r.(string)
			if !ok {
				continue // acked between the two reads, or a stale index entry
			}
			sec := batch[i].Score
			at := time.Unix(0, int64(sec*1e9))
			m := UnackedMessage{Tag: tags[i], ClaimedAt: at, Age: now.Sub(at)}
			env, ex, rk, err := parseUnackedRecord([]byte(rec))
			if err != nil {
				m.Raw = []byte(rec)
				out = append(out, m)
				continue
			}
			m.Raw, m.Exchange, m.RoutingKey = env, ex, rk
			q, seen := routes[[2]string{ex, rk}]
			if !seen {
				queues, err := t.route(ctx, ex, rk)
				if err != nil {
					return nil, err
				}
				if len(queues) > 0 {
					q = queues[0]
				}
				routes[[2]string{ex, rk}] = q
			}
			m.Queue = q
			out = append(out, m)
		}
	}
	return out, nil
}

// Peek returns up to limit messages of queue in the order Claim would take
// them (all when limit <= 0), without taking any: what `celery inspect`
// and `celery purge --dry-run` need.
func (t *Transport) Peek(ctx context.Context, queue string, limit int) ([]QueuedMessage, error) {
	start := int64(0)
	if limit > 0 {
		start = -int64(limit)
	}
	cmds := make([]*redis.StringSliceCmd, len(t.steps))
	_, err := t.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, step := range t.steps {
			cmds[i] = p.LRange(ctx, t.listKey(queue, step), start, -1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("celerybridge: peek %q: %w", queue, err)
	}
	var out []QueuedMessage
	for i, c := range cmds {
		vals := c.Val()
		for j := len(vals) - 1; j >= 0; j-- { // the right end is served first
			if limit > 0 && len(out) == limit {
				return out, nil
			}
			out = append(out, QueuedMessage{Step: t.steps[i], Raw: []byte(vals[j])})
		}
	}
	return out, nil
}

// Len is the number of messages waiting on queue, over all priority lists.
func (t *Transport) Len(ctx context.Context, queue string) (int64, error) {
	cmds := make([]*redis.IntCmd, len(t.steps))
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, step := range t.steps {
			cmds[i] = p.LLen(ctx, t.listKey(queue, step))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("celerybridge: length of %q: %w", queue, err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// DeadLetters returns up to limit dead-lettered messages, oldest first (all
// when limit <= 0), without removing them. An entry this package cannot read
// comes back with Reason "unreadable" and the entry as Raw.
func (t *Transport) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	start := int64(0)
	if limit > 0 {
		start = -int64(limit)
	}
	vals, err := t.rdb.LRange(ctx, t.deadKey, start, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("celerybridge: dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(vals))
	for i := len(vals) - 1; i >= 0; i-- {
		d, err := parseDeadLetter([]byte(vals[i]))
		if err != nil {
			d = &DeadLetter{Reason: "unreadable", Raw: []byte(vals[i])}
		}
		out = append(out, *d)
	}
	return out, nil
}
