package celerybridge

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed restore.lua
var restoreLua string

var restoreScript = redis.NewScript(restoreLua)

//go:embed unlock.lua
var unlockLua string

var unlockScript = redis.NewScript(unlockLua)

// Ack removes a claimed message's unacked record: ZREM and HDEL in one
// MULTI, as kombu's QoS.ack. A tag no longer recorded is ErrNotClaimed: a
// visibility-timeout scan restored the message, which may run again.
func (t *Transport) Ack(ctx context.Context, tag string) error {
	var hdel *redis.IntCmd
	_, err := t.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, t.indexKey, tag)
		hdel = p.HDel(ctx, t.unackedKey, tag)
		return nil
	})
	if err != nil {
		return fmt.Errorf("celerybridge: ack %q: %w", tag, err)
	}
	if hdel.Val() == 0 {
		return fmt.Errorf("celerybridge: ack %q: %w", tag, ErrNotClaimed)
	}
	return nil
}

// Reject gives a claimed message up. Without requeue it is Ack, as in
// kombu. With requeue the message goes to the back of its queue, marked
// redelivered (headers.redelivered and properties.delivery_info.redelivered,
// the envelope re-dumped as kombu's restore writes it), on the list of its
// own priority as kombu 5.4+ does (5.2.4 used the priority-0 list), in the
// same atomic step that drops its unacked record. A message whose record is
// gone is ErrNotClaimed and is not pushed twice; one with nowhere to go is
// dead-lettered and returned as a *DeadLetter.
func (t *Transport) Reject(ctx context.Context, d *Delivery, requeue bool) error {
	if !requeue {
		return t.Ack(ctx, d.Tag)
	}
	outcome, dl, err := t.restoreTag(ctx, d.Tag, false, "")
	switch {
	case err != nil:
		return err
	case outcome == moveGone:
		return fmt.Errorf("celerybridge: reject %q: %w", d.Tag, ErrNotClaimed)
	case outcome == moveDeadLettered:
		return dl
	}
	return nil
}

// Restore puts unacked messages back at the head of their queues (kombu's
// restore_unacked, used at warm shutdown), marked redelivered, priority kept.
// It returns how many went back; tags no longer recorded are skipped.
func (t *Transport) Restore(ctx context.Context, tags ...string) (int, error) {
	n := 0
	for _, tag := range tags {
		outcome, _, err := t.restoreTag(ctx, tag, true, "")
		if err != nil {
			return n, err
		}
		if outcome == moveRestored {
			n++
		}
	}
	return n, nil
}

// RestoreVisible is kombu's restore_visible: under unacked_mutex (SET NX PX
// 300000 with a token of ours, released only while it is still ours) every
// message unacked for longer than VisibilityTimeout, whoever claimed it, goes
// back to the head of its queue, newest first so the oldest is served first,
// written exactly as kombu's restore writes it, but on the list of its own
// priority (kombu 5.4+). When the mutex is held elsewhere it does nothing and
// returns ErrMutexHeld; a restore running when the mutex expires stops there.
//
// Ages are measured on the Redis server's clock, which is also what Claim
// records: Go consumers agree with each other whatever their hosts' clocks
// say. Python consumers write and compare their own time.time(), so keep
// hosts in NTP sync, as kombu needs anyway.
func (t *Transport) RestoreVisible(ctx context.Context) (int, error) {
	token := newMutexToken()
	err := t.rdb.Do(ctx, "SET", t.mutexKey, token, "NX", "PX", unackedMutexExpire.Milliseconds()).Err()
	if errors.Is(err, redis.Nil) {
		return 0, ErrMutexHeld
	}
	if err != nil {
		return 0, fmt.Errorf("celerybridge: take unacked_mutex: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := unlockScript.Run(ctx, t.rdb, []string{t.mutexKey}, token).Err(); err != nil {
			t.log.Warn("celerybridge: release unacked_mutex; it expires by itself", "err", err)
		}
	}()
	now, err := t.rdb.Time(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("celerybridge: server time: %w", err)
	}
	tags, err := t.rdb.ZRevRangeByScore(ctx, t.indexKey, &redis.ZRangeBy{
		Max: formatUnackedScore(now.Add(-t.visibility)), Min: "0",
	}).Result()
	if err != nil {
		return 0, fmt.Errorf("celerybridge: unacked_index: %w", err)
	}
	n := 0
	for _, tag := range tags {
		outcome, _, err := t.restoreTag(ctx, tag, true, token)
		if err != nil {
			return n, err
		}
		if outcome == moveRestored {
			n++
		}
	}
	return n, nil
}

// DeadLetter moves a claimed message the caller cannot use (a body that does
// not decode, a task nobody runs) from the unacked records to the
// dead-letter list, atomically, with reason and its raw bytes.
func (t *Transport) DeadLetter(ctx context.Context, d *Delivery, reason string) error {
	rec, err := t.rdb.HGet(ctx, t.unackedKey, d.Tag).Result()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("celerybridge: dead-letter %q: %w", d.Tag, ErrNotClaimed)
	}
	if err != nil {
		return fmt.Errorf("celerybridge: dead-letter %q: %w", d.Tag, err)
	}
	now, err := t.rdb.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("celerybridge: server time: %w", err)
	}
	dl := &DeadLetter{Reason: reason, Queue: d.Queue, Raw: d.Raw, At: now}
	n, err := t.move(ctx, d.Tag, rec, "", false, appendDeadLetter(nil, dl), []string{t.deadKey})
	if err != nil {
		return fmt.Errorf("celerybridge: dead-letter %q: %w", d.Tag, err)
	}
	if n == 0 {
		return fmt.Errorf("celerybridge: dead-letter %q: %w", d.Tag, ErrNotClaimed)
	}
	return nil
}

type moveOutcome int

const (
	moveGone moveOutcome = iota // record changed or vanished: nothing done
	moveRestored
	moveDeadLettered
)

// restoreTag is kombu's restore_by_tag: read the record, work out what to
// push where, and move it if the record is still the one read.
func (t *Transport) restoreTag(ctx context.Context, tag string, front bool, token string) (moveOutcome, *DeadLetter, error) {
	rec, err := t.rdb.HGet(ctx, t.unackedKey, tag).Result()
	if errors.Is(err, redis.Nil) {
		// An index entry without a record: kombu drops it.
		_, err := t.move(ctx, tag, "", token, front, nil, nil)
		return moveGone, nil, err
	}
	if err != nil {
		return moveGone, nil, fmt.Errorf("celerybridge: restore %q: %w", tag, err)
	}
	payload, dests, dl, err := t.restorePlan(ctx, rec)
	if err != nil {
		return moveGone, nil, fmt.Errorf("celerybridge: restore %q: %w", tag, err)
	}
	if dl != nil {
		payload, dests, front = appendDeadLetter(nil, dl), []string{t.deadKey}, false
	}
	n, err := t.move(ctx, tag, rec, token, front, payload, dests)
	switch {
	case err != nil:
		return moveGone, nil, fmt.Errorf("celerybridge: restore %q: %w", tag, err)
	case n < 0:
		return moveGone, nil, fmt.Errorf("celerybridge: restore %q: %w", tag, ErrMutexHeld)
	case n == 0:
		return moveGone, nil, nil
	case dl != nil:
		t.log.Warn("celerybridge: dead-lettered an unacked message that cannot be restored", "tag", tag, "reason", dl.Reason)
		return moveDeadLettered, dl, nil
	}
	return moveRestored, nil, nil
}

// restorePlan is kombu's _do_restore_message for one record: the envelope
// marked redelivered and the lists of the queues its exchange and routing
// key lead to, at its priority. Where kombu would drop the message (no
// queue, a record or envelope it cannot read) it returns a dead letter.
func (t *Transport) restorePlan(ctx context.Context, rec string) ([]byte, []string, *DeadLetter, error) {
	dead := func(reason, queue string, raw []byte) ([]byte, []string, *DeadLetter, error) {
		now, err := t.rdb.Time(ctx).Result()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("server time: %w", err)
		}
		return nil, nil, &DeadLetter{Reason: reason, Queue: queue, Raw: raw, At: now}, nil
	}
	env, ex, rk, err := parseUnackedRecord([]byte(rec))
	if err != nil {
		return dead(faultBadRecord, "", []byte(rec))
	}
	queue := ""
	if ex == "" {
		queue = rk
	}
	payload, root, err := restoredEnvelope(env)
	if err != nil {
		reason := faultMalformed
		switch {
		case errors.Is(err, ErrHeadersNotObject):
			reason = faultHeaders
		case errors.Is(err, ErrMissingProperties):
			reason = faultProperties
		case errors.Is(err, ErrMissingDeliveryInfo):
			reason = faultDeliveryInfo
		}
		return dead(reason, queue, env)
	}
	queues, err := t.route(ctx, ex, rk)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(queues) == 0 {
		return dead(faultUnroutable, queue, env)
	}
	step := t.step(kombuEnvelopePriority(root))
	dests := make([]string, len(queues))
	for i, q := range queues {
		dests[i] = t.listKey(q, step)
	}
	return payload, dests, nil, nil
}

// move runs restore.lua (see its header).
func (t *Transport) move(ctx context.Context, tag, record, token string, front bool, payload []byte, dests []string) (int64, error) {
	keys := append([]string{t.unackedKey, t.indexKey, t.mutexKey}, dests...)
	where := "back"
	if front {
		where = "front"
	}
	if payload == nil {
		payload = []byte{}
	}
	return restoreScript.Run(ctx, t.rdb, keys, tag, record, token, where, payload).Int64()
}

func newMutexToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
