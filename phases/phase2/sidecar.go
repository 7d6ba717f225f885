package phase2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/pgledger"
)

// Options configure a Sidecar. The zero value runs with the defaults
// documented on each field.
type Options struct {
	// Queue is the intercept queue, consumed over all its priority lists.
	// Default DefaultInterceptQueue.
	Queue string
	// WorkerQueue is where a catalog task with no route row is republished.
	// Default "celery", Celery's default queue.
	WorkerQueue string
	// Catalog maps bypass tasks to pipelines. Default
	// capturespine.DefaultCatalog().
	Catalog *capturespine.Catalog
	// Concurrency is how many batches are handled at once. Default 4.
	Concurrency int
	// Batch is the most messages one claim takes and handles together:
	// their runs recorded in one ledger write per path, their hand-offs
	// settled in one Redis call. At most Concurrency × Batch messages are
	// in hand. A batch takes what is waiting, so a large one costs a lone
	// message nothing. Default 512 (celerybridge.MaxClaimBatch); 1 handles
	// messages one by one.
	Batch int
	// Pickle is what happens to pickle, yaml and msgpack bodies. Default
	// PickleDeadLetter.
	Pickle PicklePolicy
	// Transport is the broker's kombu settings (global_keyprefix,
	// visibility_timeout, ...). Default kombu's.
	Transport celerybridge.TransportOptions
	// Results is the result backend's Redis when it is not the broker's.
	Results redis.UniversalClient
	// ResultOptions are the result backend's settings. Default Celery
	// 5.2.6's.
	ResultOptions celerybridge.ResultBackendOptions
	// SpineExecute publishes rerouted runs as spine-core's
	// spine.execute.pipeline(name, params) instead of Capture-Spine's
	// run_pipeline(execution_id). Default false.
	SpineExecute bool
	// RunPipelineTask is Capture-Spine's pipeline task. Default "run_pipeline".
	RunPipelineTask string
	// RouteRefresh is the longest a route change takes to apply when its
	// notification is lost. Default 2s.
	RouteRefresh time.Duration
	// RestoreEvery is how often messages unacked past the visibility
	// timeout (a side-car or worker killed while holding them) are put
	// back. Default a quarter of the visibility timeout, at most a minute.
	RestoreEvery time.Duration
	// StaleMutexAfter: kombu's unacked_mutex held by the same holder for
	// this long is taken as the mark of a consumer killed in mid-restore
	// and deleted, instead of blocking every restore until it expires
	// (kombu's 300 s). Safe with a live holder: its next move sees the
	// mutex is no longer its own and stops. Default half the visibility
	// timeout, at least 5s (with kombu's one-hour default, expiry comes
	// first).
	StaleMutexAfter time.Duration
	// FollowPoll is how often every followed result is read again, behind
	// the pub/sub notifications. Default 5s.
	FollowPoll time.Duration
	// AdoptEvery is how often runs nobody follows (their side-car died) are
	// looked for; AdoptAfter is how old a run must be to be adopted.
	// Defaults 15s and 30s.
	AdoptEvery, AdoptAfter time.Duration
	// FollowTimeout is how long past its creation (or eta) a run waits for
	// its task's result before it is failed as ResultNotSeen (an
	// ignore_result task, an expired result). Default one day, Celery's
	// result_expires.
	FollowTimeout time.Duration
	// OnceTTL is how long a rerouted task id is remembered, so a second
	// copy of its message is not run twice. Default 7 days.
	OnceTTL time.Duration
	// ShutdownTimeout bounds how long messages in hand are finished after
	// Run's context ends; the rest are put back on the queue. Default 30s.
	ShutdownTimeout time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Queue == "" {
		o.Queue = DefaultInterceptQueue
	}
	if o.WorkerQueue == "" {
		o.WorkerQueue = "celery"
	}
	if o.Catalog == nil {
		o.Catalog = capturespine.DefaultCatalog()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Batch <= 0 {
		o.Batch = celerybridge.MaxClaimBatch
	}
	o.Batch = min(o.Batch, celerybridge.MaxClaimBatch)
	if o.Pickle == "" {
		o.Pickle = PickleDeadLetter
	}
	if o.Transport.VisibilityTimeout <= 0 {
		o.Transport.VisibilityTimeout = time.Hour
	}
	if o.RouteRefresh <= 0 {
		o.RouteRefresh = 2 * time.Second
	}
	if o.RestoreEvery <= 0 {
		o.RestoreEvery = min(o.Transport.VisibilityTimeout/4, time.Minute)
	}
	if o.StaleMutexAfter <= 0 {
		o.StaleMutexAfter = max(o.Transport.VisibilityTimeout/2, 5*time.Second)
	}
	if o.FollowPoll <= 0 {
		o.FollowPoll = 5 * time.Second
	}
	if o.AdoptEvery <= 0 {
		o.AdoptEvery = 15 * time.Second
	}
	if o.AdoptAfter <= 0 {
		o.AdoptAfter = 30 * time.Second
	}
	if o.FollowTimeout <= 0 {
		o.FollowTimeout = 24 * time.Hour
	}
	if o.OnceTTL <= 0 {
		o.OnceTTL = 7 * 24 * time.Hour
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Sidecar consumes the intercept queue and applies the routes. Several may
// run at once, in one process or many: the claim, every hand-off and every
// run record are atomic or idempotent in Redis and PostgreSQL.
type Sidecar struct {
	opts      Options
	log       *slog.Logger
	pool      *pgxpool.Pool
	broker    redis.UniversalClient
	results   *celerybridge.ResultBackend
	transport *celerybridge.Transport
	celery    *celerybridge.Executor
	keys      brokerKeys
	routes    *Routes
	shadow    *core.Dispatcher
	reroute   *core.Dispatcher
	follower  *follower
	metrics   *metrics

	table    atomic.Pointer[routeTable]
	loadedAt atomic.Int64 // unix nanos of the last good route read
	ready    atomic.Bool
	running  atomic.Bool
	used     atomic.Bool // Run was called
	failing  atomic.Bool // the last claim failed: Redis is unreachable
	mu       sync.Mutex  // guards rerouted
	rerouted map[string]bool

	// beforeHandOff, when set (tests), runs after a message is decided and
	// before it is handed off.
	beforeHandOff func(ctx context.Context)
}

// New prepares a side-car on pool (PostgreSQL with phase 1 applied; phase
// 2's tables are created if missing) and broker (Celery's Redis).
func New(ctx context.Context, pool *pgxpool.Pool, broker redis.UniversalClient, opts Options) (*Sidecar, error) {
	opts = opts.withDefaults()
	routes, err := OpenRoutes(ctx, pool)
	if err != nil {
		return nil, err
	}
	ledger, err := pgledger.New(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("phase2: %w", err)
	}
	resultsRDB := opts.Results
	if resultsRDB == nil {
		resultsRDB = broker
	}
	if opts.Transport.Logger == nil {
		opts.Transport.Logger = opts.Logger
	}
	s := &Sidecar{
		opts: opts, log: opts.Logger, pool: pool, broker: broker, routes: routes,
		transport: celerybridge.NewTransport(broker, opts.Transport),
		results:   celerybridge.NewResultBackend(resultsRDB, opts.ResultOptions),
		keys:      newBrokerKeys(opts.Transport),
		metrics:   newMetrics(),
		rerouted:  map[string]bool{},
	}
	s.celery = celerybridge.NewExecutor(s.transport, s.results, celerybridge.ExecutorOptions{
		Name: ExecutorReroute, CaptureSpine: !opts.SpineExecute, RunPipelineTask: opts.RunPipelineTask,
	})
	dopts := core.DispatcherOptions{DisableAutoRetry: true, EventSource: "spine-migrate phase2", Logger: opts.Logger}
	s.shadow = core.NewDispatcher(ledger, shadowExecutor{}, dopts)
	s.reroute = core.NewDispatcher(ledger, rerouteExecutor{celery: s.celery}, dopts)
	s.follower = newFollower(s)
	empty := routeTable{}
	s.table.Store(&empty)
	return s, nil
}

// Run consumes the intercept queue until ctx ends, then shuts down
// gracefully: it stops claiming, finishes the messages in hand within
// ShutdownTimeout, puts back those it could not finish, and returns. It
// returns an error only if it could not start (the routes unreadable). A
// Sidecar runs once.
func (s *Sidecar) Run(ctx context.Context) error {
	if !s.used.CompareAndSwap(false, true) {
		return errors.New("phase2: Run called twice: a Sidecar runs once")
	}
	s.running.Store(true)
	defer s.running.Store(false)
	defer s.shadow.Close()
	defer s.reroute.Close()

	// Background work lives until the claimers are done, not just until ctx.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var bgWG sync.WaitGroup
	firstLoad := make(chan error, 1)
	bgWG.Add(1)
	go func() {
		defer bgWG.Done()
		first := true
		_ = s.routes.Watch(bg, s.opts.RouteRefresh, func(routes []Route, err error) {
			if err == nil {
				s.applyRoutes(bg, routes)
			} else {
				s.metrics.routeErrors.Add(1)
				s.log.Warn("phase2: reading routes failed; keeping the previous ones", "err", err)
			}
			if first {
				first = false
				firstLoad <- err
			}
		})
	}()
	select {
	case err := <-firstLoad:
		if err != nil {
			stopBG()
			bgWG.Wait()
			return fmt.Errorf("phase2 run: %w", err)
		}
	case <-ctx.Done():
		stopBG()
		bgWG.Wait()
		return nil
	}
	s.restoreVisible(bg)
	for _, loop := range []func(context.Context){s.restoreLoop, s.unparkLoop, s.follower.run} {
		bgWG.Add(1)
		go func() { defer bgWG.Done(); loop(bg) }()
	}

	// Handlers get their own context: ctx ending stops the claiming, and
	// only ShutdownTimeout later the messages still in hand.
	hctx, stopHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHandlers()
	stopAfter := context.AfterFunc(ctx, func() {
		s.ready.Store(false)
		s.log.Info("phase2: stopping: no more claims; finishing the messages in hand", "timeout", s.opts.ShutdownTimeout)
		time.AfterFunc(s.opts.ShutdownTimeout, stopHandlers)
	})
	defer stopAfter()

	// One claimer feeds Concurrency handlers: batch claims peek at the
	// queue's tail, and several claimers in one process would mostly peek
	// at the same messages and lose them to each other.
	batches := make(chan []*celerybridge.Delivery)
	var claimers, handlers sync.WaitGroup
	for range s.opts.Concurrency {
		handlers.Add(1)
		go func() { defer handlers.Done(); s.handleLoop(ctx, hctx, batches) }()
	}
	claimers.Add(1)
	go func() { defer claimers.Done(); defer close(batches); s.claimLoop(ctx, batches) }()
	s.ready.Store(true)
	s.log.Info("phase2: side-car running", "queue", s.opts.Queue, "concurrency", s.opts.Concurrency, "batch", s.opts.Batch)
	claimers.Wait()
	handlers.Wait()
	s.ready.Store(false)
	stopBG()
	bgWG.Wait()
	s.log.Info("phase2: side-car stopped")
	return nil
}

// applyRoutes installs a new route table and, for tasks that stopped being
// rerouted, releases their parked messages (they go the new way now,
// nothing stays stranded behind an eta).
func (s *Sidecar) applyRoutes(ctx context.Context, routes []Route) {
	t := make(routeTable, len(routes))
	released := map[string]bool{}
	s.mu.Lock()
	for _, r := range routes {
		t[r.Task] = r
		was := s.rerouted[r.Task]
		now := r.Mode == ModeReroute && r.Percent > 0
		s.rerouted[r.Task] = now
		if was && !now {
			released[r.Task] = true
		}
	}
	s.mu.Unlock()
	s.table.Store(&t)
	s.loadedAt.Store(time.Now().UnixNano())
	s.metrics.routesVersion.Add(1)
	if len(released) > 0 {
		if n, err := s.releaseParked(ctx, released); err != nil {
			s.log.Warn("phase2: releasing parked messages of tasks no longer rerouted", "err", err)
		} else if n > 0 {
			s.log.Info("phase2: released parked messages of tasks no longer rerouted", "messages", n)
		}
	}
}

// claimLoop claims batches of messages and hands them to the handlers until
// ctx ends. A batch is claimed only once a handler is free to take it, so
// at most Concurrency + 1 batches are in hand.
func (s *Sidecar) claimLoop(ctx context.Context, batches chan<- []*celerybridge.Delivery) {
	queues := []string{s.opts.Queue}
	sorter := s.sorter()
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		started := time.Now()
		c, err := s.transport.ClaimOrForward(ctx, queues, s.opts.Batch, time.Second, sorter)
		ds := c.Deliveries
		if err == nil || errors.Is(err, celerybridge.ErrNoMessage) || ctx.Err() != nil {
			s.failing.Store(false)
		}
		for _, f := range c.Forwarded {
			// Passed through in the claim itself (counted there too).
			s.metrics.message(f.Note.(*decision).task.Name, string(ModePassthrough), "ok")
			s.metrics.latency.observe(string(ModePassthrough), time.Since(started))
		}
		for _, dl := range c.DeadLetters {
			// The claim rule refused it (kombu could not restore it): it is
			// in the dead-letter list already.
			s.metrics.deadLetter(dl.Reason)
			s.metrics.message(unknownTask, "", "dead_lettered")
			if cerr := s.keys.count(context.WithoutCancel(ctx), s.broker, unknownTask, outcomeDeadLettered); cerr != nil {
				s.log.Warn("phase2: counting a dead letter", "err", cerr)
			}
		}
		switch {
		case ctx.Err() != nil:
			for _, d := range ds { // cannot happen (ClaimBatch hands them back), but never strand one
				s.putBack(d)
			}
			return
		case errors.Is(err, celerybridge.ErrNoMessage):
			continue
		case err != nil:
			s.metrics.claimErrors.Add(1)
			s.failing.Store(true)
			backoff = s.pause(ctx, backoff, "claim", err)
			continue
		case len(ds) == 0:
			continue
		}
		backoff = 0
		s.metrics.inFlight.Add(int64(len(ds)))
		batches <- ds // handlers drain the channel until it is closed
	}
}

// sorter is the claimer's: it decides each message as it is peeked. One
// that passes through untouched is forwarded to its worker queue in the
// claim itself, so it is never held (nothing to ack, settle or restore);
// the rest are claimed with their decision noted, so handlers do not decode
// them again. A redelivered message is always claimed: a run recorded for
// its task id before a restart may overrule the route (planPassthrough).
func (s *Sidecar) sorter() *celerybridge.Sorter {
	return &celerybridge.Sorter{
		Counters: []string{s.keys.counter(outcomeSeen), s.keys.counter(outcomePassed)},
		Sort: func(p celerybridge.Peeked) celerybridge.Verdict {
			dec := decideTask(p.Task, p.TaskErr, *s.table.Load(), s.opts.Catalog, s.opts.WorkerQueue, s.opts.Pickle, time.Now())
			if dec.deadLetter == "" && dec.park.IsZero() && dec.path == ModePassthrough && !p.Redelivered {
				return celerybridge.Verdict{Forward: s.keys.list(dec.route.Queue, p.Priority), Count: dec.task.Name, Note: &dec}
			}
			return celerybridge.Verdict{Note: &dec}
		},
	}
}

// handleLoop handles the batches the claimer hands over, until it closes
// the channel. After a failed batch (its messages are back on the queue)
// it pauses, so a broken database is not hammered.
func (s *Sidecar) handleLoop(ctx, hctx context.Context, batches <-chan []*celerybridge.Delivery) {
	backoff := time.Duration(0)
	for ds := range batches {
		err := s.handleBatch(hctx, ds)
		s.metrics.inFlight.Add(-int64(len(ds)))
		if err != nil {
			backoff = s.pause(ctx, backoff, "handle", err)
			continue
		}
		backoff = 0
	}
}

// unknownTask is the counter field of messages with no readable task name.
const unknownTask = "(undecodable)"

// pause waits after a failure, doubling from 100ms up to 5s, and returns the
// next pause.
func (s *Sidecar) pause(ctx context.Context, prev time.Duration, what string, err error) time.Duration {
	next := min(max(2*prev, 100*time.Millisecond), 5*time.Second)
	if ctx.Err() == nil {
		s.log.Warn("phase2: "+what+" failed; retrying", "err", err, "pause", next)
	}
	select {
	case <-ctx.Done():
	case <-time.After(next):
	}
	return next
}

// putBack returns a message the side-car could not finish to the head of
// its queue, marked redelivered as kombu does.
func (s *Sidecar) putBack(d *celerybridge.Delivery) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.transport.Restore(ctx, d.Tag); err != nil {
		s.log.Warn("phase2: could not put a message back; the visibility-timeout scan will", "tag", d.Tag, "err", err)
		return
	}
	s.metrics.restored.Add(1)
}

// restoreLoop puts back what dead consumers left unacked past the
// visibility timeout, as every kombu consumer does.
func (s *Sidecar) restoreLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.RestoreEvery)
	defer t.Stop()
	var held mutexHolder
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.restoreVisible(ctx)
			s.breakStaleMutex(ctx, &held)
		}
	}
}

// mutexHolder is the unacked_mutex token last seen, and since when.
type mutexHolder struct {
	token string
	since time.Time
}

// breakStaleMutex deletes unacked_mutex when one token has held it for
// StaleMutexAfter: its holder was killed in the middle of a restore.
func (s *Sidecar) breakStaleMutex(ctx context.Context, held *mutexHolder) {
	token, err := s.broker.Get(ctx, s.keys.mutex()).Result()
	if err != nil {
		*held = mutexHolder{}
		return
	}
	if token != held.token {
		*held = mutexHolder{token: token, since: time.Now()}
		return
	}
	if time.Since(held.since) < s.opts.StaleMutexAfter {
		return
	}
	n, err := breakMutexScript.Run(ctx, s.broker, []string{s.keys.mutex()}, token).Int()
	if err == nil && n == 1 {
		s.log.Warn("phase2: deleted unacked_mutex: the same holder kept it too long (killed in mid-restore?)", "held_for", time.Since(held.since).Round(time.Second))
	}
	*held = mutexHolder{}
}

func (s *Sidecar) restoreVisible(ctx context.Context) {
	n, err := s.transport.RestoreVisible(ctx)
	switch {
	case errors.Is(err, celerybridge.ErrMutexHeld):
	case err != nil:
		if ctx.Err() == nil {
			s.log.Warn("phase2: restoring messages past the visibility timeout", "err", err)
		}
	case n > 0:
		s.metrics.restored.Add(int64(n))
		s.log.Info("phase2: restored messages left unacked past the visibility timeout", "messages", n)
	}
}
