package celerybridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Errors the transport returns for a caller to branch on, with errors.Is.
var (
	// ErrUnroutable: no queue is bound for the exchange and routing key (or
	// a fanout exchange has no subscriber). kombu drops such a message
	// without a word; Publish reports it and writes nothing.
	ErrUnroutable = errors.New("celerybridge: no queue bound for the exchange and routing key")
	// ErrNoMessage: Claim found every queue empty until its wait elapsed.
	ErrNoMessage = errors.New("celerybridge: no message before the wait elapsed")
	// ErrNotClaimed: the tag is not in kombu's unacked records: acked
	// already, or restored by a visibility-timeout scan and maybe running
	// elsewhere.
	ErrNotClaimed = errors.New("celerybridge: tag is not in the unacked records")
	// ErrMutexHeld: another consumer, Python or Go, holds unacked_mutex, so
	// RestoreVisible left the scan to it.
	ErrMutexHeld = errors.New("celerybridge: unacked_mutex is held by another consumer")
	// ErrDeadLettered: the message was moved to the dead-letter list; the
	// error is a *DeadLetter saying why.
	ErrDeadLettered = errors.New("celerybridge: message moved to the dead-letter list")
)

// ExchangeKind is how a named exchange routes, which kombu keeps in each
// process's memory rather than in Redis.
type ExchangeKind string

// Exchange kinds kombu's Redis transport supports.
const (
	ExchangeDirect ExchangeKind = "direct" // routing key equals the binding's
	ExchangeTopic  ExchangeKind = "topic"  // binding pattern with * and # wildcards
	ExchangeFanout ExchangeKind = "fanout" // PUBLISH to every subscriber
)

// TransportOptions configures a Transport. The zero value is kombu's
// defaults.
type TransportOptions struct {
	// KeyPrefix is kombu's global_keyprefix: it prefixes every key (queues,
	// bindings, unacked records, the mutex, the dead-letter list) and every
	// pub/sub channel. Default: none.
	KeyPrefix string
	// VisibilityTimeout is how long a claimed message may stay unacked
	// before RestoreVisible puts it back. Default: one hour, as kombu.
	VisibilityTimeout time.Duration
	// PrioritySteps are kombu's priority_steps: a message goes to the list
	// of the largest step not above its priority. Default: 0, 3, 6, 9.
	PrioritySteps []int
	// Sep joins a queue name to its step ("celery\x06\x163") and the parts
	// of a binding. Default: "\x06\x16", kombu's sep.
	Sep string
	// Exchanges gives the kind of each named exchange. Default: Celery's own
	// (celery.pidbox fanout, celeryev topic) and direct for any other, as
	// kombu assumes for an exchange it has not declared.
	Exchanges map[string]ExchangeKind
	// DeadLetterKey is the list receiving messages no consumer could handle.
	// Default: "spine.deadletter".
	DeadLetterKey string
	// Logger receives warnings about dead-lettered and unparseable entries.
	// Default: discard. Passwords never reach it.
	Logger *slog.Logger
}

// Transport is kombu's Redis transport: it publishes to and claims from the
// lists Celery uses, and keeps kombu's ack emulation (the unacked hash, its
// index and the restore mutex) so that Python and Go consumers can restore
// each other's abandoned messages. It is safe for concurrent use.
//
// Where it differs from kombu, on purpose:
//   - A claim is one Lua script (claim.lua): kombu BRPOPs and records the
//     message in a second round trip, losing it if the consumer dies in
//     between.
//   - Restores and requeues keep the message's priority list, as kombu 5.4+
//     does (5.2.4 puts it on the priority-0 list).
//   - What kombu would drop without a word goes to the dead-letter list: a
//     message its restore cannot handle, a restore with no queue bound.
//   - Claim times come from the Redis server's clock, not the host's.
//   - A second in-flight copy of one delivery tag gets its own unacked field.
type Transport struct {
	rdb          redis.UniversalClient
	prefix       string
	visibility   time.Duration
	steps        []int
	sep          string
	exchanges    map[string]ExchangeKind
	log          *slog.Logger
	fanoutPrefix string // "/<db>.", kombu's keyprefix_fanout

	unackedKey, indexKey, mutexKey, deadKey string

	mu     sync.Mutex
	cycles map[string][]string    // queue list -> rotated consume order
	ahead  map[string]peekedAhead // queue list -> messages read behind the last batch claimed
	// singleClaims: the server cannot run the batch claim (Redis < 6.2);
	// ClaimBatch claims one message at a time.
	singleClaims atomic.Bool
	// msgSize is the average size of the messages a batch claim read last,
	// which bounds how many the next one reads.
	msgSize atomic.Int64
	topics  sync.Map // Python pattern -> *regexp.Regexp (nil: unusable)
}

// kombu's names and defaults.
const (
	kombuSep              = "\x06\x16"
	kombuBindingPrefix    = "_kombu.binding."
	unackedMutexExpire    = 300 * time.Second
	defaultVisibility     = time.Hour
	defaultDeadLetterList = "spine.deadletter"
)

var kombuPrioritySteps = []int{0, 3, 6, 9}

// NewTransport returns a transport over rdb, which may come from
// ParseBrokerURL.
func NewTransport(rdb redis.UniversalClient, opts TransportOptions) *Transport {
	t := &Transport{
		rdb:        rdb,
		prefix:     opts.KeyPrefix,
		visibility: opts.VisibilityTimeout,
		steps:      slices.Clone(opts.PrioritySteps),
		sep:        opts.Sep,
		exchanges:  opts.Exchanges,
		log:        opts.Logger,
		cycles:     make(map[string][]string),
	}
	if t.visibility <= 0 {
		t.visibility = defaultVisibility
	}
	if len(t.steps) == 0 {
		t.steps = slices.Clone(kombuPrioritySteps)
	}
	slices.Sort(t.steps)
	t.steps = slices.Compact(t.steps)
	if t.sep == "" {
		t.sep = kombuSep
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	dead := opts.DeadLetterKey
	if dead == "" {
		dead = defaultDeadLetterList
	}
	t.unackedKey = t.prefix + "unacked"
	t.indexKey = t.prefix + "unacked_index"
	t.mutexKey = t.prefix + "unacked_mutex"
	t.deadKey = t.prefix + dead
	db := 0
	if c, ok := rdb.(*redis.Client); ok {
		db = c.Options().DB
	}
	t.fanoutPrefix = fmt.Sprintf("/%d.", db)
	return t
}

// step is kombu's Channel.priority: the largest step not above p, with
// Python's index -1 (the last step) when p is below every step.
func (t *Transport) step(p int) int {
	i := 0
	for i < len(t.steps) && t.steps[i] <= p {
		i++
	}
	if i == 0 {
		return t.steps[len(t.steps)-1]
	}
	return t.steps[i-1]
}

// listKey is kombu's _q_for_pri, prefixed: the plain queue name for step 0.
func (t *Transport) listKey(queue string, step int) string {
	if step == 0 {
		return t.prefix + queue
	}
	return fmt.Sprintf("%s%s%s%d", t.prefix, queue, t.sep, step)
}

func (t *Transport) kind(exchange string) ExchangeKind {
	if k, ok := t.exchanges[exchange]; ok {
		return k
	}
	if k, ok := celeryExchanges[exchange]; ok {
		return k
	}
	return ExchangeDirect
}

// pidboxExchange is Celery's remote-control exchange ("<control_exchange>.
// pidbox", control_exchange defaulting to "celery"): a fanout every worker's
// control consumer subscribes to, which kombu's Redis transport maps to
// PUBLISH on "/<db>.celery.pidbox".
const pidboxExchange = "celery.pidbox"

// celeryExchanges are the exchanges every Celery process declares with a
// kind other than direct; knowing them by default lets a Go client send
// what Python's app.control and events send without configuration.
var celeryExchanges = map[string]ExchangeKind{
	pidboxExchange: ExchangeFanout, // remote control: revoke, ping, ...
	"celeryev":     ExchangeTopic,  // task and worker events
}

// Publish delivers envelope as kombu's basic_publish does: exchange "" puts
// it on the queue named routingKey, a named exchange on every queue its
// bindings select (a fanout exchange PUBLISHes it instead), each time with an
// LPUSH onto the list of the envelope's priority (properties.priority clamped
// to 0..9, then kombu's step). The envelope's delivery_info is set to the
// exchange and routing key, as kombu sets it, so that a restore finds the way
// back; an envelope that already says so is published byte for byte.
//
// An envelope Claim would dead-letter is refused with the rule it breaks
// (ErrMalformedJSON, ErrMissingDeliveryTag, ...); a message no queue is
// bound for is ErrUnroutable, and nothing is written.
func (t *Transport) Publish(ctx context.Context, exchange, routingKey string, envelope []byte) error {
	if exchange == "" && routingKey == "" {
		return fmt.Errorf("celerybridge: publish with neither exchange nor routing key: %w", ErrUnroutable)
	}
	raw, facts, err := addressedEnvelope(envelope, exchange, routingKey)
	if err != nil {
		return fmt.Errorf("celerybridge: publish to exchange %q routing key %q: %w", exchange, routingKey, err)
	}
	if exchange != "" && t.kind(exchange) == ExchangeFanout {
		channel := t.prefix + t.fanoutPrefix + exchange
		if routingKey != "" {
			channel += "/" + routingKey
		}
		n, err := t.rdb.Publish(ctx, channel, raw).Result()
		if err != nil {
			return fmt.Errorf("celerybridge: publish to fanout exchange %q: %w", exchange, err)
		}
		if n == 0 {
			return fmt.Errorf("celerybridge: fanout exchange %q has no subscriber: %w", exchange, ErrUnroutable)
		}
		return nil
	}
	queues, err := t.route(ctx, exchange, routingKey)
	if err != nil {
		return err
	}
	if len(queues) == 0 {
		return fmt.Errorf("celerybridge: exchange %q routing key %q: %w", exchange, routingKey, ErrUnroutable)
	}
	step := t.step(facts.priority)
	_, err = t.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range queues {
			p.LPush(ctx, t.listKey(q, step), raw)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("celerybridge: publish to %v: %w", queues, err)
	}
	return nil
}

// Bind registers queue with a named exchange as a producer's
// Queue.declare does: SADD of "<routingKey><sep><pattern><sep><queue>" to
// _kombu.binding.<exchange>. It is idempotent. For a topic exchange an empty
// pattern is computed from routingKey as kombu's TopicExchange does.
func (t *Transport) Bind(ctx context.Context, exchange, routingKey, pattern, queue string) error {
	if exchange == "" || queue == "" {
		return errors.New("celerybridge: bind needs a named exchange and a queue")
	}
	if pattern == "" && t.kind(exchange) == ExchangeTopic {
		pattern = kombuTopicPattern(routingKey)
	}
	member := routingKey + t.sep + pattern + t.sep + queue
	if err := t.rdb.SAdd(ctx, t.prefix+kombuBindingPrefix+exchange, member).Err(); err != nil {
		return fmt.Errorf("celerybridge: bind queue %q to exchange %q: %w", queue, exchange, err)
	}
	return nil
}

// route is kombu's _lookup: the queues a message for exchange and routingKey
// goes to, sorted (kombu returns a set). Members that do not split into
// three parts are skipped; kombu would raise on them.
func (t *Transport) route(ctx context.Context, exchange, routingKey string) ([]string, error) {
	if exchange == "" {
		if routingKey == "" {
			return nil, nil
		}
		return []string{routingKey}, nil
	}
	members, err := t.rdb.SMembers(ctx, t.prefix+kombuBindingPrefix+exchange).Result()
	if err != nil {
		return nil, fmt.Errorf("celerybridge: bindings of exchange %q: %w", exchange, err)
	}
	kind := t.kind(exchange)
	var queues []string
	for _, m := range members {
		parts := strings.Split(m, t.sep)
		if len(parts) != 3 {
			t.log.Warn("celerybridge: skipping malformed binding", "exchange", exchange, "member", m)
			continue
		}
		rk, pattern, queue := parts[0], parts[1], parts[2]
		switch kind {
		case ExchangeTopic:
			if !t.topicMatch(pattern, routingKey) {
				continue
			}
		case ExchangeFanout:
		default:
			if rk != routingKey {
				continue
			}
		}
		if queue != "" {
			queues = append(queues, queue)
		}
	}
	slices.Sort(queues)
	return slices.Compact(queues), nil
}

// kombuTopicPattern is kombu's TopicExchange.key_to_pattern: words split on
// ".", "*" one word, "#" any number of them, everything else not
// alphanumeric escaped.
func kombuTopicPattern(rk string) string {
	var b strings.Builder
	for _, c := range rk {
		switch {
		case c == '.' || c == '#' || c == '*' || unicode.IsLetter(c) || unicode.IsNumber(c):
			b.WriteRune(c)
		case c == 0:
			b.WriteString(`\000`)
		default:
			b.WriteByte('\\')
			b.WriteRune(c)
		}
	}
	words := strings.Split(b.String(), ".")
	for i, w := range words {
		switch w {
		case "*":
			words[i] = `.*?[^\.]`
		case "#":
			words[i] = `.*?`
		}
	}
	return "^" + strings.Join(words, `\.`) + "$"
}

// topicMatch is Python's re.match(pattern, routingKey): anchored at the
// start only. Python escapes of non-ASCII characters, which RE2 refuses,
// become the characters themselves.
func (t *Transport) topicMatch(pattern, routingKey string) bool {
	v, ok := t.topics.Load(pattern)
	if !ok {
		var b strings.Builder
		rs := []rune(pattern)
		for i := 0; i < len(rs); i++ {
			if rs[i] == '\\' && i+1 < len(rs) && rs[i+1] >= utf8.RuneSelf {
				b.WriteString(regexp.QuoteMeta(string(rs[i+1])))
				i++
				continue
			}
			b.WriteRune(rs[i])
		}
		re, err := regexp.Compile(`^(?:` + b.String() + `)`)
		if err != nil {
			t.log.Warn("celerybridge: topic binding pattern does not compile", "pattern", pattern, "err", err)
			re = nil
		}
		v, _ = t.topics.LoadOrStore(pattern, re)
	}
	re := v.(*regexp.Regexp)
	return re != nil && re.MatchString(routingKey)
}
