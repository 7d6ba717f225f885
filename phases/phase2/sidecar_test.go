package phase2

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
)

// bundle is one side-car's world: PostgreSQL with phase 1, a Redis DB, the
// routes and a transport to publish and look with.
type bundle struct {
	t      testing.TB
	ctx    context.Context
	pool   *pgxpool.Pool
	dbURL  string
	url    string // redis
	rdb    *redis.Client
	tr     *celerybridge.Transport
	routes *Routes
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool, dbURL := phase1Pool(t)
	url, rdb := redisDB(t)
	routes, err := OpenRoutes(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{t: t, ctx: context.Background(), pool: pool, dbURL: dbURL, url: url, rdb: rdb,
		tr: celerybridge.NewTransport(rdb, celerybridge.TransportOptions{}), routes: routes}
}

// testOptions are options for quick tests: short intervals everywhere.
func (b *bundle) testOptions() Options {
	return Options{Concurrency: 4, RouteRefresh: 200 * time.Millisecond, FollowPoll: 300 * time.Millisecond,
		AdoptEvery: 500 * time.Millisecond, AdoptAfter: time.Second, ShutdownTimeout: 5 * time.Second,
		Logger: testLogger(b.t)}
}

// start runs a side-car until the test ends (or stop is called) and returns
// it with its stop function, which waits for Run to return.
func (b *bundle) start(opts Options) (*Sidecar, func()) {
	b.t.Helper()
	sc, err := New(b.ctx, b.pool, b.rdb, opts)
	if err != nil {
		b.t.Fatal(err)
	}
	stop := b.runSidecar(sc)
	deadline := time.Now().Add(10 * time.Second)
	for !sc.ready.Load() {
		if time.Now().After(deadline) {
			b.t.Fatal("side-car not ready after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sc, stop
}

// runSidecar runs sc until the test ends or stop is called; stop waits for
// Run to return.
func (b *bundle) runSidecar(sc *Sidecar) func() {
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					b.t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				b.t.Error("Run did not return within 30s of its context ending")
			}
		})
	}
	b.t.Cleanup(stop)
	return stop
}

func (b *bundle) set(r Route) {
	b.t.Helper()
	if _, err := b.routes.Set(b.ctx, r, "test"); err != nil {
		b.t.Fatal(err)
	}
}

// message builds what Celery 5.2.6 publishes for task(*args, **kwargs) to
// the intercept queue.
func (b *bundle) message(task string, args []any, kwargs map[string]any, opts celerybridge.TaskOptions) (id string, raw []byte) {
	b.t.Helper()
	if opts.Queue == "" {
		opts.Queue = DefaultInterceptQueue
	}
	m, err := celerybridge.NewTaskMessage(task, args, kwargs, opts)
	if err != nil {
		b.t.Fatal(err)
	}
	raw, err = m.Encode()
	if err != nil {
		b.t.Fatal(err)
	}
	return m.Headers.ID, raw
}

// push LPUSHes raw onto a list as a producer would, bypassing the
// transport's checks.
func (b *bundle) push(list string, raw []byte) {
	b.t.Helper()
	if err := b.rdb.LPush(b.ctx, list, raw).Err(); err != nil {
		b.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func (b *bundle) waitFor(what string, timeout time.Duration, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: not so after %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drained says the intercept queue is empty and nothing is unacked or parked.
func (b *bundle) drained() bool {
	n, _ := b.tr.Len(b.ctx, DefaultInterceptQueue)
	u, _ := b.rdb.HLen(b.ctx, "unacked").Result()
	p, _ := b.rdb.ZCard(b.ctx, "spine.phase2.parked."+DefaultInterceptQueue).Result()
	return n == 0 && u == 0 && p == 0
}

// list returns a Redis list oldest first (the order a consumer takes it).
func (b *bundle) list(key string) [][]byte {
	b.t.Helper()
	vals, err := b.rdb.LRange(b.ctx, key, 0, -1).Result()
	if err != nil {
		b.t.Fatal(err)
	}
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[len(vals)-1-i] = []byte(v)
	}
	return out
}

func (b *bundle) counts() map[string]Counts {
	b.t.Helper()
	c, err := newBrokerKeys(celerybridge.TransportOptions{}).readCounts(b.ctx, b.rdb)
	if err != nil {
		b.t.Fatal(err)
	}
	return c
}

// pickleMessage is a protocol 2 message with a pickle body, as Celery
// publishes with serializer='pickle' (the body is never looked at).
func (b *bundle) pickleMessage(task string) (string, []byte) {
	b.t.Helper()
	m, err := celerybridge.NewTaskMessage(task, []any{1}, nil, celerybridge.TaskOptions{Queue: DefaultInterceptQueue})
	if err != nil {
		b.t.Fatal(err)
	}
	env, err := m.Envelope()
	if err != nil {
		b.t.Fatal(err)
	}
	env.ContentType, env.ContentEncoding = celerybridge.ContentTypePickle, "binary"
	env.SetBody([]byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a}\x94N\x87\x94."))
	raw, err := env.Encode()
	if err != nil {
		b.t.Fatal(err)
	}
	return m.Headers.ID, raw
}

// Passthrough republishes the original bytes, on the list of the message's
// priority, to the route's worker queue (or the default one for a catalog
// task without a route); what cannot be routed goes to the dead-letter list
// with its reason and original bytes.
func TestPassthroughAndDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.set(Route{Task: "app.tasks.sync.sync_environments", Mode: ModePassthrough, Queue: "sync-q", Pipeline: "sync_environments", Lane: "normal"})

	_, plain := b.message(backupTask, []any{42}, map[string]any{"backup_type": "incremental"}, celerybridge.TaskOptions{})
	_, urgent := b.message(backupTask, []any{43}, nil, celerybridge.TaskOptions{Priority: 7})
	_, routed := b.message("app.tasks.sync.sync_environments", []any{[]any{"prod"}}, nil, celerybridge.TaskOptions{})
	v1m, err := celerybridge.NewTaskMessageV1("app.tasks.copilot_chat_sync.sync_copilot_chats", []any{7}, nil, celerybridge.TaskOptions{Queue: DefaultInterceptQueue})
	if err != nil {
		t.Fatal(err)
	}
	v1, _ := v1m.Encode()
	_, unknown := b.message("app.tasks.nobody.knows", nil, nil, celerybridge.TaskOptions{})
	_, pickled := b.pickleMessage(backupTask)
	// A body of two elements: valid JSON the claim takes, a poison pill to
	// a worker.
	poison := bytes.Replace(plain, []byte(`"body": "`), []byte(`"body": "W1tdLCB7fV0=", "x": "`), 1)
	noTag := []byte(`{"body": "", "headers": {}, "properties": {"delivery_info": {"exchange": "", "routing_key": "spine.intercept"}}}`)

	for _, raw := range [][]byte{plain, routed, v1, unknown, pickled, poison, noTag} {
		b.push(DefaultInterceptQueue, raw)
	}
	b.push(DefaultInterceptQueue+"\x06\x166", urgent)

	_, stop := b.start(b.testOptions())
	b.waitFor("intercept queue drained", 10*time.Second, b.drained)
	stop()

	if got := b.list("celery"); len(got) != 2 || !bytes.Equal(got[0], plain) || !bytes.Equal(got[1], v1) {
		t.Errorf("celery queue holds %d messages, want the plain and protocol 1 ones byte for byte:\n%q", len(got), got)
	}
	if got := b.list("celery\x06\x166"); len(got) != 1 || !bytes.Equal(got[0], urgent) {
		t.Errorf("priority 7 must stay on the priority-6 list: %q", got)
	}
	if got := b.list("sync-q"); len(got) != 1 || !bytes.Equal(got[0], routed) {
		t.Errorf("sync-q (the route's queue): %q", got)
	}

	dls, err := b.tr.DeadLetters(b.ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string][]byte{}
	for _, d := range dls {
		reasons[reasonKind(d.Reason)] = d.Raw
	}
	for kind, raw := range map[string][]byte{reasonUnknownTask: unknown, reasonOpaque: pickled, reasonUndecodable: poison, "missing_delivery_tag": noTag} {
		if got, ok := reasons[kind]; !ok || !bytes.Equal(got, raw) {
			t.Errorf("dead letter %s: %q (have %v)", kind, got, dls)
		}
	}
	if len(dls) != 4 {
		t.Errorf("%d dead letters, want 4: %+v", len(dls), dls)
	}
	c := b.counts()
	if bk := c[backupTask]; bk.Seen != 3 || bk.Passed != 2 || bk.DeadLettered != 1 {
		t.Errorf("backup task counts %+v, want 3 seen: 2 passed, 1 dead-lettered (pickle)", bk)
	}
	if u := c[unknownTask]; u.DeadLettered != 2 {
		t.Errorf("undecodable counts %+v, want 2 dead-lettered", u)
	}
	if c["app.tasks.nobody.knows"].DeadLettered != 1 || c["app.tasks.sync.sync_environments"].Passed != 1 {
		t.Errorf("counts %+v", c)
	}
}

// With --pickle passthrough, pickle messages go to the worker queue
// untouched, whatever the route.
func TestPicklePassthrough(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.set(backupRoute(ModeReroute, 100))
	_, pickled := b.pickleMessage(backupTask)
	b.push(DefaultInterceptQueue, pickled)
	opts := b.testOptions()
	opts.Pickle = PicklePassthrough
	_, stop := b.start(opts)
	b.waitFor("drained", 10*time.Second, b.drained)
	stop()
	if got := b.list("celery"); len(got) != 1 || !bytes.Equal(got[0], pickled) {
		t.Fatalf("celery queue: %q", got)
	}
	if c := b.counts()[backupTask]; c.Passed != 1 || c.Rerouted != 0 {
		t.Errorf("counts %+v", c)
	}
}

// Stopping while messages flow finishes what is in hand and claims nothing
// more: every message is either republished once or still waiting.
func TestStopLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 3000
	want := map[string]bool{}
	for i := range n {
		_, raw := b.message(backupTask, []any{i}, nil, celerybridge.TaskOptions{})
		want[string(raw)] = true
		b.push(DefaultInterceptQueue, raw)
	}
	_, stop := b.start(b.testOptions())
	b.waitFor("some messages passed", 20*time.Second, func() bool {
		l, _ := b.rdb.LLen(b.ctx, "celery").Result()
		return l > 200
	})
	stop()
	seen := map[string]int{}
	for _, raw := range b.list("celery") {
		seen[string(raw)]++
	}
	waiting := b.list(DefaultInterceptQueue)
	for _, raw := range waiting {
		seen[string(raw)]++
	}
	if u, _ := b.rdb.HLen(b.ctx, "unacked").Result(); u != 0 {
		t.Errorf("%d messages left unacked after a graceful stop", u)
	}
	for raw, c := range seen {
		if !want[raw] || c != 1 {
			t.Fatalf("message seen %d times (known: %v)", c, want[raw])
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d messages accounted for", len(seen), n)
	}
	t.Logf("stopped after %d of %d messages", n-len(waiting), n)
}

// A message still in hand when the shutdown timeout runs out goes back to
// the head of the queue instead of waiting for a visibility-timeout scan.
func TestShutdownTimeoutPutsMessagesBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Shadowed, so it is claimed and held (a passthrough message is
	// forwarded in the claim itself and never in hand).
	bt, err := capturespine.DefaultCatalog().Lookup(backupTask)
	if err != nil {
		t.Fatal(err)
	}
	b.set(Route{Task: backupTask, Mode: ModeShadow, Percent: 100, Queue: "celery", Pipeline: bt.Pipeline, Lane: "normal"})
	id, raw := b.message(backupTask, []any{1}, nil, celerybridge.TaskOptions{})
	b.push(DefaultInterceptQueue, raw)
	opts := b.testOptions()
	opts.Concurrency, opts.ShutdownTimeout = 1, 300*time.Millisecond
	sc, err := New(b.ctx, b.pool, b.rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	inHand := make(chan struct{})
	sc.beforeHandOff = func(ctx context.Context) {
		close(inHand)
		<-ctx.Done() // a hand-off that cannot finish
	}
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	select {
	case <-inHand:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the message never came into hand")
	}
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("shutdown took %s", time.Since(start))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s with a 300ms timeout", d)
	}
	back := b.list(DefaultInterceptQueue)
	if len(back) != 1 {
		t.Fatalf("intercept queue holds %d messages, want the one put back", len(back))
	}
	task, err := celerybridge.DecodeTask(back[0])
	if err != nil || task.ID != id {
		t.Fatalf("put back %v %v", task, err)
	}
	if u, _ := b.rdb.HLen(b.ctx, "unacked").Result(); u != 0 {
		t.Errorf("%d unacked after the put-back", u)
	}
	if got := b.list("celery"); len(got) != 0 {
		t.Errorf("the unfinished message was also republished")
	}
}

// A claim that a visibility-timeout scan took away (the side-car was too
// slow) is not acked nor handed off by its old holder: the new holder does
// it, once.
func TestSettleRefusesAClaimNoLongerOurs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, raw := b.message(backupTask, []any{1}, nil, celerybridge.TaskOptions{})
	b.push(DefaultInterceptQueue, raw)
	keys := newBrokerKeys(celerybridge.TransportOptions{})
	tr := celerybridge.NewTransport(b.rdb, celerybridge.TransportOptions{VisibilityTimeout: time.Millisecond})
	old, err := tr.Claim(b.ctx, []string{DefaultInterceptQueue}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if n, err := tr.RestoreVisible(b.ctx); err != nil || n != 1 {
		t.Fatalf("restore: %d %v", n, err)
	}
	fresh, err := tr.Claim(b.ctx, []string{DefaultInterceptQueue}, time.Second)
	if err != nil || fresh.Tag != old.Tag {
		t.Fatalf("reclaim: %+v %v", fresh, err)
	}
	push := func(d *celerybridge.Delivery) settleResult {
		res, err := keys.settleMany(b.ctx, b.rdb, []settlement{{tag: d.Tag, raw: d.Raw, action: "push", dest: "celery", payload: d.Raw, task: backupTask, outcome: outcomePassed}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	if res := push(old); res != settleLost {
		t.Fatalf("the old holder settled a claim that is no longer its: %v", res)
	}
	if res := push(fresh); res != settleDone {
		t.Fatalf("the new holder could not settle: %v", res)
	}
	if res := push(fresh); res != settleLost {
		t.Fatalf("settled twice: %v", res)
	}
	if n, _ := b.rdb.LLen(b.ctx, "celery").Result(); n != 1 {
		t.Fatalf("%d copies republished", n)
	}

	// One claim settled twice in one batch is handed off once.
	b.push(DefaultInterceptQueue, raw)
	again, err := tr.Claim(b.ctx, []string{DefaultInterceptQueue}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := settlement{tag: again.Tag, raw: again.Raw, action: "push", dest: "celery", payload: again.Raw, task: backupTask, outcome: outcomePassed}
	res, err := keys.settleMany(b.ctx, b.rdb, []settlement{s, s})
	if err != nil || res[0] != settleDone || res[1] != settleLost {
		t.Fatalf("one claim settled twice in a batch: %v %v", res, err)
	}
	if n, _ := b.rdb.LLen(b.ctx, "celery").Result(); n != 2 {
		t.Fatalf("%d republished after the batch, want 2", n)
	}
}

func TestDecideDeadLetterReasons(t *testing.T) {
	t.Parallel()
	b := &bundle{t: t}
	catalogRoutes := routeTable{}
	now := time.Now()
	_, clash := b.message(backupTask, []any{7}, map[string]any{"user_id": 8}, celerybridge.TaskOptions{})
	for _, c := range []struct {
		name   string
		raw    []byte
		routes routeTable
		want   string
	}{
		{"not JSON", []byte("nope"), catalogRoutes, reasonUndecodable},
		{"unknown task", must(b.message("x.y", nil, nil, celerybridge.TaskOptions{})), catalogRoutes, reasonUnknownTask},
		{"mapping", clash, routeTable{backupTask: backupRoute(ModeShadow, 100)}, reasonMapping},
		{"no mapping needed to pass through", clash, catalogRoutes, ""},
	} {
		d := decide(c.raw, c.routes, defaultCatalog(), "celery", PickleDeadLetter, now)
		if got := reasonKind(d.deadLetter); got != c.want {
			t.Errorf("%s: dead letter %q, want %q", c.name, d.deadLetter, c.want)
		}
	}
}

func must(_ string, raw []byte) []byte { return raw }

// Reroute messages with an eta are parked out of unacked until due; their
// path is decided again then.
func TestDecideParksRerouteETAOnly(t *testing.T) {
	t.Parallel()
	b := &bundle{t: t}
	now := time.Now()
	_, eta := b.message(backupTask, []any{7}, nil, celerybridge.TaskOptions{Countdown: time.Hour})
	_, expired := b.message(backupTask, []any{7}, nil, celerybridge.TaskOptions{Expires: now.Add(-time.Second)})
	reroute := routeTable{backupTask: backupRoute(ModeReroute, 100)}
	if d := decide(eta, reroute, defaultCatalog(), "celery", PickleDeadLetter, now); d.park.IsZero() {
		t.Error("a rerouted eta message must be parked")
	}
	if d := decide(eta, reroute, defaultCatalog(), "celery", PickleDeadLetter, now.Add(2*time.Hour)); !d.park.IsZero() || d.path != ModeReroute {
		t.Errorf("a due eta message must be rerouted: %+v", d)
	}
	if d := decide(eta, routeTable{backupTask: backupRoute(ModeShadow, 100)}, defaultCatalog(), "celery", PickleDeadLetter, now); !d.park.IsZero() || d.path != ModeShadow {
		t.Errorf("a shadowed eta message goes to the worker, which holds it: %+v", d)
	}
	if d := decide(expired, reroute, defaultCatalog(), "celery", PickleDeadLetter, now); d.path != ModePassthrough {
		t.Errorf("an expired message is passed to the worker, which revokes it: %+v", d)
	}
}

func TestParkedMember(t *testing.T) {
	t.Parallel()
	m := parkedMember("q\x06\x163", "tag-1", []byte(`{"a": "b\u0000"}`))
	list, tag, raw, ok := parseParked([]byte(m))
	if !ok || list != "q\x06\x163" || tag != "tag-1" || string(raw) != `{"a": "b\u0000"}` {
		t.Fatalf("%q %q %q %v", list, tag, raw, ok)
	}
	for _, bad := range []string{"", "no-nul", "\x00tag\x00raw", "list\x00tag-only"} {
		if _, _, _, ok := parseParked([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestWriteCeleryConfig(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := WriteCeleryConfig(&out, "spine.intercept", []string{"b.task", "a.task", "b.task", `odd'"\name`}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"SPINE_PHASE2_INTERCEPT_QUEUE = \"spine.intercept\"\n",
		"    \"a.task\": {'queue': SPINE_PHASE2_INTERCEPT_QUEUE},\n    \"b.task\": {'queue': SPINE_PHASE2_INTERCEPT_QUEUE},\n    \"odd'\\\"\\\\name\"",
		"task_routes = (SPINE_PHASE2_TASK_ROUTES,)\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	if strings.Count(s, "b.task") != 1 {
		t.Error("a task named twice is routed once")
	}
	for _, bad := range [][]string{nil, {""}, {"\xff"}} {
		if err := WriteCeleryConfig(&out, "q", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := WriteCeleryConfig(&out, "", []string{"a"}); err == nil {
		t.Error("no queue accepted")
	}
}

// A side-car that died between recording a run and handing the message off
// leaves the message unacked; restored (redelivered) after a route change,
// it still goes the way its run records: the first decision stands.
func TestFirstDecisionStandsAfterARestart(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		recorded, now Mode
		queue         string // where the message must end up
	}{
		{ModeReroute, ModePassthrough, "normal"},
		{ModeShadow, ModeReroute, "celery"},
	} {
		t.Run(string(c.recorded)+"-then-"+string(c.now), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.set(backupRoute(c.recorded, 100))
			id, raw := b.message(backupTask, []any{7}, nil, celerybridge.TaskOptions{})
			b.push(DefaultInterceptQueue, raw)

			// The side-car that dies: it claims, records the run, and is gone.
			dead, err := New(b.ctx, b.pool, b.rdb, b.testOptions())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.tr.Claim(b.ctx, []string{DefaultInterceptQueue}, time.Second); err != nil {
				t.Fatal(err)
			}
			dec := decide(raw, routeTable{backupTask: backupRoute(c.recorded, 100)}, defaultCatalog(), "celery", PickleDeadLetter, time.Now())
			d := dead.shadow
			if c.recorded == ModeReroute {
				d = dead.reroute
			}
			run, err := d.Submit(b.ctx, dec.spec)
			if err != nil {
				t.Fatal(err)
			}
			// Its claim outlives the visibility timeout and is restored.
			short := celerybridge.NewTransport(b.rdb, celerybridge.TransportOptions{VisibilityTimeout: time.Millisecond})
			time.Sleep(5 * time.Millisecond)
			if n, err := short.RestoreVisible(b.ctx); err != nil || n != 1 {
				t.Fatalf("restore: %d %v", n, err)
			}
			b.set(backupRoute(c.now, 100))

			b.start(b.testOptions())
			b.waitFor("handed off", 10*time.Second, func() bool {
				n, _ := b.tr.Len(b.ctx, c.queue)
				return n == 1 && b.drained()
			})
			if other := map[string]string{"normal": "celery", "celery": "normal"}[c.queue]; func() int64 { n, _ := b.tr.Len(b.ctx, other); return n }() != 0 {
				t.Errorf("the message also went to %s", other)
			}
			again, err := b.run(id)
			if err != nil || again.RunID != run.RunID {
				t.Errorf("run %+v %v, want the one recorded before the restart", again, err)
			}
		})
	}
}
