package phase2

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/celerybridge"
)

// The side-car's own keys beside kombu's, all under the broker's
// global_keyprefix. Counters are hashes keyed by task name, one per outcome.
const (
	counterPrefix = "spine.phase2.count."
	parkedPrefix  = "spine.phase2.parked."
	badParked     = "spine.phase2.parked.bad"
	oncePrefix    = "spine.phase2.once."
)

// Outcomes a message of a task is counted under: every settled message is
// "seen" and one of the others.
const (
	outcomeSeen         = "seen"
	outcomePassed       = "passed"
	outcomeShadowed     = "shadowed"
	outcomeRerouted     = "rerouted"
	outcomeDeadLettered = "dead_lettered"
	outcomeDuplicate    = "duplicate"
)

var outcomes = []string{outcomeSeen, outcomePassed, outcomeShadowed, outcomeRerouted, outcomeDeadLettered, outcomeDuplicate}

// brokerKeys names the Redis keys the side-car writes with its own scripts.
// kombu's (unacked, unacked_index, the priority lists) are named as
// celerybridge.Transport names them: its options are the same ones.
type brokerKeys struct {
	prefix string
	sep    string
	steps  []int
}

func newBrokerKeys(o celerybridge.TransportOptions) brokerKeys {
	k := brokerKeys{prefix: o.KeyPrefix, sep: o.Sep, steps: slices.Clone(o.PrioritySteps)}
	if k.sep == "" {
		k.sep = "\x06\x16"
	}
	if len(k.steps) == 0 {
		k.steps = []int{0, 3, 6, 9}
	}
	slices.Sort(k.steps)
	k.steps = slices.Compact(k.steps)
	return k
}

func (k brokerKeys) unacked() string      { return k.prefix + "unacked" }
func (k brokerKeys) unackedIndex() string { return k.prefix + "unacked_index" }
func (k brokerKeys) mutex() string        { return k.prefix + "unacked_mutex" }
func (k brokerKeys) counter(outcome string) string {
	return k.prefix + counterPrefix + outcome
}
func (k brokerKeys) parked(queue string) string { return k.prefix + parkedPrefix + queue }
func (k brokerKeys) badParked() string          { return k.prefix + badParked }
func (k brokerKeys) once(taskID string) string  { return k.prefix + oncePrefix + taskID }

// list is the list a message of priority p goes to on queue: kombu clamps
// the priority to 0..9 and takes the largest step not above it (the last
// step when it is below all, Python's index -1).
func (k brokerKeys) list(queue string, p int) string {
	p = min(max(p, 0), 9)
	i := 0
	for i < len(k.steps) && k.steps[i] <= p {
		i++
	}
	step := k.steps[len(k.steps)-1]
	if i > 0 {
		step = k.steps[i-1]
	}
	if step == 0 {
		return k.prefix + queue
	}
	return k.prefix + queue + k.sep + strconv.Itoa(step)
}

// parkedMember is how a message waits in the parked set: the list to go
// back to, its unacked field (two copies of one envelope stay two members)
// and the envelope.
func parkedMember(list, tag string, raw []byte) string {
	return list + "\x00" + tag + "\x00" + string(raw)
}

// parseParked splits a parked member; ok is false for anything the side-car
// did not write.
func parseParked(member []byte) (list, tag string, raw []byte, ok bool) {
	a := bytes.IndexByte(member, 0)
	if a <= 0 {
		return "", "", nil, false
	}
	b := bytes.IndexByte(member[a+1:], 0)
	if b < 0 {
		return "", "", nil, false
	}
	return string(member[:a]), string(member[a+1 : a+1+b]), member[a+2+b:], true
}

//go:embed settle.lua
var settleLua string

var settleScript = redis.NewScript(settleLua)

//go:embed unpark.lua
var unparkLua string

var unparkScript = redis.NewScript(unparkLua)

// breakMutexScript deletes the mutex (KEYS[1]) only if it still holds the
// token (ARGV[1]) seen holding it for too long.
var breakMutexScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// settleResult is what settle.lua did.
type settleResult int

const (
	settleLost      settleResult = 0 // the claim is no longer ours: nothing done
	settleDone      settleResult = 1
	settleDuplicate settleResult = 2 // acked as a duplicate, nothing pushed
)

// settlement is one message's part of a settle.lua call (settleMany).
type settlement struct {
	tag     string
	raw     []byte
	action  string // push, park, ack
	dest    string // list or parked set
	payload []byte
	score   float64
	task    string // counter field; "" counts nothing
	outcome string
	once    string        // marker key, "" for none
	onceTTL time.Duration // marker lifetime
}

// settleMany runs settle.lua once for a batch: results[i] belongs to ss[i].
func (k brokerKeys) settleMany(ctx context.Context, rdb redis.UniversalClient, ss []settlement) ([]settleResult, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, 4+3*len(ss))
	keys = append(keys, k.unacked(), k.unackedIndex(), k.counter(outcomeSeen), k.counter(outcomeDuplicate))
	args := make([]any, 0, 7*len(ss))
	for _, s := range ss {
		dest, once, ttl := s.dest, s.once, ""
		if dest == "" {
			dest = k.unacked() // unused; any key keeps KEYS' positions
		}
		if once == "" {
			once = k.unacked()
		} else {
			ttl = strconv.FormatInt(int64(max(s.onceTTL, time.Second)/time.Second), 10)
		}
		outcome := s.outcome
		if outcome == "" {
			outcome = outcomeSeen
		}
		keys = append(keys, dest, k.counter(outcome), once)
		args = append(args, s.tag, s.raw, s.action, s.payload, strconv.FormatFloat(s.score, 'f', 6, 64), s.task, ttl)
	}
	out, err := settleScript.Run(ctx, rdb, keys, args...).Int64Slice()
	if err != nil {
		if len(ss) == 1 {
			return nil, fmt.Errorf("phase2: settle %s (%s): %w", ss[0].tag, ss[0].action, err)
		}
		return nil, fmt.Errorf("phase2: settle %d messages: %w", len(ss), err)
	}
	if len(out) != len(ss) {
		return nil, fmt.Errorf("phase2: settle script replied %d results for %d messages", len(out), len(ss))
	}
	res := make([]settleResult, len(out))
	for i, n := range out {
		res[i] = settleResult(n)
	}
	return res, nil
}

// count adds one to the task's counters where no script can do it
// atomically with the hand-off (the transport's own dead-lettering).
func (k brokerKeys) count(ctx context.Context, rdb redis.UniversalClient, task, outcome string) error {
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, k.counter(outcomeSeen), task, 1)
		p.HIncrBy(ctx, k.counter(outcome), task, 1)
		return nil
	})
	return err
}

// unparkDue moves up to limit due messages back to their lists.
func (k brokerKeys) unparkDue(ctx context.Context, rdb redis.UniversalClient, queue string, limit int) (int, error) {
	n, err := unparkScript.Run(ctx, rdb, []string{k.parked(queue), k.badParked()}, "due", limit).Int()
	if err != nil {
		return 0, fmt.Errorf("phase2: unpark due messages of %s: %w", queue, err)
	}
	return n, nil
}

// unparkMember moves one parked message back now, due or not.
func (k brokerKeys) unparkMember(ctx context.Context, rdb redis.UniversalClient, queue, member string) (bool, error) {
	n, err := unparkScript.Run(ctx, rdb, []string{k.parked(queue), k.badParked()}, "member", member).Int()
	if err != nil {
		return false, fmt.Errorf("phase2: unpark a message of %s: %w", queue, err)
	}
	return n == 1, nil
}

// Counts are one task's message counters.
type Counts struct {
	// Seen is every message the side-cars settled, whatever its path: a
	// message interrupted by a restart and claimed again counts once.
	Seen     int64 `json:"seen"`
	Passed   int64 `json:"passed"`
	Shadowed int64 `json:"shadowed"`
	Rerouted int64 `json:"rerouted"`
	// DeadLettered messages are in the dead-letter list with their reason.
	DeadLettered int64 `json:"dead_lettered"`
	// Duplicate copies of a task id already rerouted were acked, not run.
	Duplicate int64 `json:"duplicate"`
}

func (c *Counts) add(outcome string, n int64) {
	switch outcome {
	case outcomeSeen:
		c.Seen += n
	case outcomePassed:
		c.Passed += n
	case outcomeShadowed:
		c.Shadowed += n
	case outcomeRerouted:
		c.Rerouted += n
	case outcomeDeadLettered:
		c.DeadLettered += n
	case outcomeDuplicate:
		c.Duplicate += n
	}
}

// readCounts reads every task's counters.
func (k brokerKeys) readCounts(ctx context.Context, rdb redis.UniversalClient) (map[string]Counts, error) {
	cmds := make([]*redis.MapStringStringCmd, len(outcomes))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, o := range outcomes {
			cmds[i] = p.HGetAll(ctx, k.counter(o))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("phase2: read counters: %w", err)
	}
	out := map[string]Counts{}
	for i, o := range outcomes {
		for task, v := range cmds[i].Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("phase2: counter %s of %s is %q", o, task, v)
			}
			c := out[task]
			c.add(o, n)
			out[task] = c
		}
	}
	return out, nil
}
