package celerybridge

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// TaskOptions are the apply_async options a Go producer sets. The zero value
// publishes like task.delay(*args, **kwargs) with Celery's defaults.
type TaskOptions struct {
	// ID is the task id. Default: a fresh uuid4, as Celery makes.
	ID string
	// Queue is the routing key on the default (direct, anonymous) exchange.
	// Default: "celery".
	Queue string
	// Priority is written to properties.priority; kombu clamps it to 0..9
	// when it picks the priority list. Default: 0.
	Priority int
	// ETA schedules the task; Countdown, when positive, wins over it
	// (Celery: eta = now + countdown). Default: run on receipt.
	ETA       time.Time
	Countdown time.Duration
	// Expires, or ExpiresIn from now when positive, revokes the task if it
	// has not started by then; it also sets properties.expiration.
	Expires   time.Time
	ExpiresIn time.Duration
	// TimeLimit and SoftTimeLimit: written as whole seconds when whole.
	// Default: none (the worker's own limits apply).
	TimeLimit     time.Duration
	SoftTimeLimit time.Duration
	// Canvas links, as signatures in raw JSON: Link and LinkError are lists
	// of signatures (callbacks, errbacks), Chain a reversed list, Chord one
	// signature. Default: null.
	Link, LinkError, Chain, Chord json.RawMessage
	// Lineage. RootID defaults to the task id, as Celery does.
	RootID, ParentID, GroupID string
	GroupIndex                *int
	Retries                   int
	Shadow                    string
	IgnoreResult              bool
	// ReplyTo defaults to an id stable for this process, as Celery's
	// producer uses its thread oid; only the rpc:// result backend reads it.
	ReplyTo string
	// Origin defaults to "gen<pid>@<hostname>", as Celery writes it.
	Origin string
	// ArgsRepr and KwargsRepr replace the saferepr of the arguments in the
	// headers, as apply_async(argsrepr=..., kwargsrepr=...) does to keep
	// secrets out of logs. Default: computed.
	ArgsRepr, KwargsRepr string
	// Headers are custom headers, written after Celery's own, as
	// apply_async(headers=...) merges them. A name Headers models is refused.
	Headers []Member
	// Compression: "" or CompressionZlib.
	Compression string
	// Target decides how time.Time, uuid.UUID, Decimal, Date, TimeOfDay and
	// []byte arguments are written. Default: TargetKombu52.
	Target Target
	// Now is the clock for Countdown and ExpiresIn. Default: time.Now().
	Now time.Time
}

var (
	origin = sync.OnceValue(func() string {
		host, err := os.Hostname()
		if err != nil {
			host = "localhost"
		}
		return "gen" + strconv.Itoa(os.Getpid()) + "@" + host
	})
	processOID = sync.OnceValue(func() string {
		return uuid.NewMD5(uuid.NameSpaceOID, []byte(origin())).String()
	})
)

// NewTaskMessage builds the protocol 2 message Celery 5.2.6's apply_async
// would publish for name(*args, **kwargs): every header and property it
// fills, argsrepr and kwargsrepr as its saferepr writes them (args shown as
// the tuple delay() passes), a fresh delivery tag. Map keys are written in
// sorted order.
func NewTaskMessage(name string, args []any, kwargs map[string]any, opts TaskOptions) (*TaskMessage, error) {
	c, err := newCall(name, args, kwargs, &opts)
	if err != nil {
		return nil, err
	}
	m := &TaskMessage{
		ContentEncoding: "utf-8",
		Properties:      c.properties(&opts),
		Args:            c.args,
		Kwargs:          c.kwargs,
		Embed: Embed{
			Callbacks: orNull(opts.Link),
			Errbacks:  orNull(opts.LinkError),
			Chain:     orNull(opts.Chain),
			Chord:     orNull(opts.Chord),
		},
	}
	h := &m.Headers
	*h = Headers{
		Lang:         "py",
		Task:         name,
		ID:           c.id,
		ETA:          c.eta,
		Expires:      c.expires,
		Shadow:       opts.Shadow,
		Group:        opts.GroupID,
		GroupIndex:   opts.GroupIndex,
		Retries:      opts.Retries,
		TimeLimit:    c.timeLimit,
		RootID:       c.rootID,
		ParentID:     opts.ParentID,
		ArgsRepr:     c.argsRepr,
		KwargsRepr:   c.kwargsRepr,
		Origin:       c.origin,
		IgnoreResult: opts.IgnoreResult,
		Extra:        opts.Headers,
		Compression:  opts.Compression,
	}
	// as_task_v2 writes all of these; the optional ones as null when unset.
	for _, f := range []uint{hLang, hTask, hID, hRetries, hTimeLimit, hRootID, hArgsRepr, hKwargsRepr, hOrigin, hIgnoreResult} {
		h.wire.mark(f, false, false)
	}
	for _, f := range []uint{hShadow, hETA, hExpires, hGroup, hGroupIndex, hParentID} {
		h.wire.mark(f, true, false)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// NewTaskMessageV1 builds the protocol 1 message Celery 5.2.6 publishes with
// task_protocol=1, for estates pinned to it. argsrepr is not part of
// protocol 1.
func NewTaskMessageV1(name string, args []any, kwargs map[string]any, opts TaskOptions) (*TaskMessageV1, error) {
	c, err := newCall(name, args, kwargs, &opts)
	if err != nil {
		return nil, err
	}
	m := &TaskMessageV1{
		ContentEncoding: "utf-8",
		Properties:      c.properties(&opts),
		Headers:         Headers{Extra: opts.Headers, Compression: opts.Compression},
		Body: BodyV1{
			Task:       name,
			ID:         c.id,
			Args:       c.args,
			Kwargs:     c.kwargs,
			Group:      opts.GroupID,
			GroupIndex: opts.GroupIndex,
			Retries:    opts.Retries,
			ETA:        c.eta,
			Expires:    c.expires,
			UTC:        true,
			Callbacks:  orNull(opts.Link),
			Errbacks:   orNull(opts.LinkError),
			TimeLimit:  c.timeLimit,
			Taskset:    opts.GroupID,
			Chord:      orNull(opts.Chord),
		},
	}
	for _, f := range []uint{bTask, bID, bRetries, bUTC, bTimeLimit} {
		m.Body.wire.mark(f, false, false)
	}
	for _, f := range []uint{bGroup, bGroupIndex, bETA, bExpires, bTaskset} {
		m.Body.wire.mark(f, true, false)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// call is what both protocols derive from the apply_async arguments.
type call struct {
	id, rootID, origin   string
	args, kwargs         json.RawMessage
	argsRepr, kwargsRepr string
	eta, expires         string
	expiration           string
	timeLimit            TimeLimit
}

func newCall(name string, args []any, kwargs map[string]any, opts *TaskOptions) (*call, error) {
	if name == "" {
		return nil, ErrMissingTaskName
	}
	for _, m := range opts.Headers {
		if modelledHeader(m.Key) {
			return nil, fmt.Errorf("custom header %q is set through TaskOptions: %w", m.Key, ErrBadHeader)
		}
	}
	c := &call{id: opts.ID, rootID: opts.RootID, origin: opts.Origin}
	if c.id == "" {
		c.id = uuid.NewString()
	}
	if c.rootID == "" {
		c.rootID = c.id
	}
	if c.origin == "" {
		c.origin = origin()
	}
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	var err error
	if c.args, err = EncodeValue(args, opts.Target); err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	if c.kwargs, err = EncodeValue(kwargs, opts.Target); err != nil {
		return nil, fmt.Errorf("kwargs: %w", err)
	}
	if c.argsRepr, c.kwargsRepr, err = reprs(args, kwargs, opts.Target, c.args, c.kwargs); err != nil {
		return nil, err
	}
	if opts.ArgsRepr != "" {
		c.argsRepr = opts.ArgsRepr
	}
	if opts.KwargsRepr != "" {
		c.kwargsRepr = opts.KwargsRepr
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	eta := opts.ETA
	if opts.Countdown > 0 {
		eta = now.Add(opts.Countdown)
	}
	if !eta.IsZero() {
		c.eta = FormatTime(eta)
	}
	expires := opts.Expires
	if opts.ExpiresIn > 0 {
		expires = now.Add(opts.ExpiresIn)
	}
	if !expires.IsZero() {
		c.expires = FormatTime(expires)
		// Celery: str(int(expires_s * 1000)), a past expiry clamped to 0.
		ms := max(expires.Sub(now).Milliseconds(), 0)
		c.expiration = strconv.FormatInt(ms, 10)
	}
	c.timeLimit = TimeLimit{Hard: seconds(opts.TimeLimit), Soft: seconds(opts.SoftTimeLimit)}
	return c, nil
}

// reprs renders saferepr(args) and saferepr(kwargs). They are computed from
// the values as kombu 5.3 would carry them, so a datetime shows as
// datetime.datetime(...) whatever the target, as in Python.
func reprs(args []any, kwargs map[string]any, t Target, argsJSON, kwargsJSON json.RawMessage) (string, string, error) {
	if t != TargetKombu53 {
		var err error
		if argsJSON, err = EncodeValue(args, TargetKombu53); err != nil {
			return "", "", fmt.Errorf("args: %w", err)
		}
		if kwargsJSON, err = EncodeValue(kwargs, TargetKombu53); err != nil {
			return "", "", fmt.Errorf("kwargs: %w", err)
		}
	}
	a, err := parseNode(argsJSON, true)
	if err != nil {
		return "", "", fmt.Errorf("args: %w", err)
	}
	k, err := parseNode(kwargsJSON, true)
	if err != nil {
		return "", "", fmt.Errorf("kwargs: %w", err)
	}
	return saferepr(&a, true, reprMaxSize), saferepr(&k, false, reprMaxSize), nil
}

func (c *call) properties(opts *TaskOptions) Properties {
	queue := opts.Queue
	if queue == "" {
		queue = "celery"
	}
	replyTo := opts.ReplyTo
	if replyTo == "" {
		replyTo = processOID()
	}
	p := Properties{
		CorrelationID: c.id,
		ReplyTo:       replyTo,
		DeliveryMode:  2,
		Expiration:    c.expiration,
		DeliveryInfo:  DeliveryInfo{Exchange: "", RoutingKey: queue},
		Priority:      opts.Priority,
		BodyEncoding:  "base64",
		DeliveryTag:   uuid.NewString(),
	}
	for _, f := range []uint{pCorrelationID, pReplyTo, pDeliveryMode, pDeliveryInfo, pPriority, pBodyEncoding, pDeliveryTag} {
		p.wire.mark(f, false, false)
	}
	p.DeliveryInfo.wire.mark(dExchange, false, false)
	p.DeliveryInfo.wire.mark(dRoutingKey, false, false)
	return p
}

// seconds writes a duration as Celery's time limits are given: an int when
// whole, a float otherwise; "" (null) for zero.
func seconds(d time.Duration) json.Number {
	if d <= 0 {
		return ""
	}
	if d%time.Second == 0 {
		return json.Number(strconv.FormatInt(int64(d/time.Second), 10))
	}
	return json.Number(appendPyRepr(nil, math.Round(d.Seconds()*1e6)/1e6))
}

func orNull(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return json.RawMessage("null")
	}
	return raw
}
