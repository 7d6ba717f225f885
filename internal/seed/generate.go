package seed

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
)

// horizon is "now" for seeded data: every timestamp falls before it, so rows are
// identical whenever and wherever they are generated.
var horizon = time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)

// Weights for rows past the coverage prefix, aligned with the vocabulary slices:
// mostly finished work, as a production table holds.
var (
	statusWeights    = []int{4, 6, 5, 60, 12, 8, 5}
	laneWeights      = []int{55, 12, 8, 10, 10, 5}
	triggerWeights   = []int{35, 8, 30, 15, 7, 5}
	jobTypeWeights   = []int{30, 25, 20, 15, 10}
	jobStatusWeights = []int{5, 6, 4, 5, 5, 55, 10, 4, 3, 3}
)

var pipelines = []string{
	"capture_feed", "batch_import", "copilot_sync", "backup", "recommendations",
	"sync_environments", "extract_entities", "summarize_document",
}

// queueForJobType is where each bypass task's Celery route sends it.
var queueForJobType = map[string]string{
	"batch_import":      "imports",
	"copilot_sync":      "copilot",
	"backup":            "backups",
	"recommendations":   "recommendations",
	"sync_environments": "celery",
}

var errorTexts = []string{
	"TimeoutError: feed fetch exceeded 30s",
	"Traceback (most recent call last):\n  File \"/app/app/features/capture/tasks.py\", line 88, in run_pipeline\n    raise FeedUnavailable(url)\nFeedUnavailable: https://example.org/feed.xml → 503",
	`psycopg2.errors.UniqueViolation: duplicate key value violates unique constraint "ix_documents_url"`,
	"WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL).",
	"ValueError: ungültiges Datum «2025-13-01»",
	"", // empty but not NULL: the tracker stores str(exc), and some exceptions have no message
}

// generator draws each table from its own stream, so resizing one table leaves the
// other tables' rows unchanged.
type generator struct {
	opts   Options
	execR  *rand.Rand
	eventR *rand.Rand
	jobR   *rand.Rand
}

func newGenerator(opts Options) *generator {
	s := uint64(opts.Seed)
	return &generator{
		opts:   opts,
		execR:  rand.New(rand.NewPCG(s, 1)),
		eventR: rand.New(rand.NewPCG(s, 2)),
		jobR:   rand.New(rand.NewPCG(s, 3)),
	}
}

func (g *generator) executions() []execution {
	r := g.execR
	n := g.opts.Executions
	feeds := make([]uuid.UUID, max(4, n/6))
	for i := range feeds {
		feeds[i] = randomUUID(r)
	}
	active := make(map[uuid.UUID]bool) // feeds holding a pending or running execution

	out := make([]execution, n)
	for i := range out {
		e := &out[i]
		e.id = randomUUID(r)
		cover := i < MinExecutions
		if cover {
			// 7 statuses against 6 lanes and a trigger stepping every 7 rows:
			// within 42 rows every value of each appears.
			e.status = ExecutionStatuses[i%len(ExecutionStatuses)]
			e.lane = Lanes[i%len(Lanes)]
			e.trigger = TriggerSources[(i/len(ExecutionStatuses))%len(TriggerSources)]
		} else {
			e.status = pick(r, ExecutionStatuses, statusWeights)
			e.lane = pick(r, Lanes, laneWeights)
			e.trigger = pick(r, TriggerSources, triggerWeights)
		}
		e.pipeline = pipelines[r.IntN(len(pipelines))]
		e.params = executionParams(r)
		switch {
		case e.trigger == "retry":
			e.retries = int32(1 + r.IntN(5))
		case e.status == "dead_lettered":
			e.retries = int32(3 + r.IntN(3))
		case r.IntN(5) == 0:
			e.retries = int32(1 + r.IntN(2))
		}

		switch {
		case i%10 == 3: // guarantees NULL feeds in the coverage prefix
		case i%10 == 4 || r.IntN(10) >= 3:
			e.feedID = feedFor(r, e.status, &feeds, active)
		}
		fillExecutionTimes(r, e)
		fillExecutionOutcome(r, e, cover)
	}
	return out
}

// feedFor picks a feed for an execution; a pending or running one gets a feed with
// no other active execution, minting a new feed if a few draws all collide, because
// ix_executions_one_active_per_feed allows only one.
func feedFor(r *rand.Rand, status string, feeds *[]uuid.UUID, active map[uuid.UUID]bool) *uuid.UUID {
	f := (*feeds)[r.IntN(len(*feeds))]
	if status != "pending" && status != "running" {
		return &f
	}
	for range 4 {
		if !active[f] {
			break
		}
		f = (*feeds)[r.IntN(len(*feeds))]
	}
	if active[f] {
		f = randomUUID(r)
		*feeds = append(*feeds, f)
	}
	active[f] = true
	return &f
}

// fillExecutionTimes keeps timestamps consistent with the status: nothing not yet
// started has started_at, nothing unfinished has completed_at, and
// created_at <= started_at <= completed_at <= horizon.
func fillExecutionTimes(r *rand.Rand, e *execution) {
	switch e.status {
	case "pending", "queued", "running":
		e.created = micro(horizon.Add(-time.Minute - between(r, 0, 2*time.Hour)))
	default:
		e.created = micro(horizon.Add(-2*time.Hour - between(r, 0, 30*24*time.Hour)))
	}
	start := func() {
		e.started = ptr(micro(e.created.Add(between(r, 5*time.Millisecond, 3*time.Second))))
	}
	finish := func(from time.Time) {
		e.completed = ptr(micro(from.Add(between(r, 100*time.Millisecond, 45*time.Minute))))
	}
	switch e.status {
	case "running":
		start()
	case "completed", "failed", "dead_lettered":
		start()
		finish(*e.started)
	case "cancelled":
		if r.IntN(2) == 0 {
			start()
			finish(*e.started)
		} else { // cancelled while still waiting
			finish(e.created)
		}
	}
}

func fillExecutionOutcome(r *rand.Rand, e *execution, cover bool) {
	switch {
	case e.status == "pending": // not yet sent to a worker
	case e.status == "queued" || e.status == "running" || r.IntN(10) != 0:
		e.taskID = ptr(randomUUID(r).String())
	}
	switch e.status {
	case "completed":
		switch v := r.IntN(40); {
		case cover || v > 1:
			e.result = executionResult(r)
		case v == 1:
			e.result = []byte("null") // JSON null, which is not SQL NULL
		}
	case "failed", "dead_lettered":
		e.err = ptr(errorTexts[r.IntN(len(errorTexts))])
		if r.IntN(10) == 0 {
			e.result = mustJSON(map[string]any{"partial": true, "items_captured": r.IntN(50)})
		}
	case "cancelled":
		if r.IntN(3) == 0 {
			e.err = ptr("cancelled by user")
		}
	}
}

func (g *generator) events(execs []execution) []event {
	limit := g.opts.EventsPerExecution
	if limit == 0 {
		return nil
	}
	out := make([]event, 0, len(execs)*min(limit, 5))
	for i := range execs {
		evs := lifecycle(g.eventR, &execs[i])
		switch {
		case len(evs) <= limit:
		case limit == 1:
			evs = evs[:1]
		default: // keep the story's beginning and its end
			evs = append(evs[:limit-1], evs[len(evs)-1])
		}
		out = append(out, evs...)
	}
	return out
}

// lifecycle is the event history an execution in its status would have, in time order.
func lifecycle(r *rand.Rand, e *execution) []event {
	var evs []event
	add := func(typ string, at time.Time, data map[string]any) {
		if data == nil {
			data = map[string]any{}
		}
		evs = append(evs, event{executionID: e.id, typ: typ, at: micro(at), data: mustJSON(data)})
	}
	add("created", e.created, map[string]any{"pipeline": e.pipeline, "trigger_source": e.trigger, "lane": e.lane})
	if e.status == "pending" {
		return evs
	}
	queuedAt := e.created.Add(between(r, time.Millisecond, 5*time.Millisecond))
	if e.taskID != nil {
		add("queued", queuedAt, map[string]any{"backend_task_id": *e.taskID, "queue": "capture." + e.lane})
	}
	if e.retries > 0 {
		add("retried", queuedAt, map[string]any{"attempt": e.retries + 1})
	}
	if e.started != nil {
		add("started", *e.started, map[string]any{"worker": fmt.Sprintf("celery@worker-%d", r.IntN(8)), "attempt": e.retries + 1})
		end := horizon
		if e.completed != nil {
			end = *e.completed
		}
		steps := r.IntN(4)
		for s := 1; s <= steps; s++ {
			at := e.started.Add(end.Sub(*e.started) * time.Duration(s) / time.Duration(steps+1))
			if r.IntN(3) == 0 {
				add("heartbeat", at, nil)
			} else {
				add("progress", at, map[string]any{"percent": 100 * s / (steps + 1), "message": "fetched page " + fmt.Sprint(s)})
			}
		}
	}
	switch e.status {
	case "completed":
		add("completed", *e.completed, map[string]any{"duration_ms": e.completed.Sub(e.created).Milliseconds()})
	case "failed", "dead_lettered":
		add("failed", *e.completed, map[string]any{"error": *e.err, "retryable": e.status == "failed"})
		if e.status == "dead_lettered" {
			add("dead_lettered", *e.completed, map[string]any{"retries": e.retries})
		}
	case "cancelled":
		add("cancelled", *e.completed, map[string]any{"reason": "user request", "by": "opérateur@example.org"})
	}
	return evs
}

func (g *generator) jobs(execs []execution) []job {
	r := g.jobR
	var executionTaskIDs []string
	for _, e := range execs {
		if e.taskID != nil {
			executionTaskIDs = append(executionTaskIDs, *e.taskID)
		}
	}
	users := make([]uuid.UUID, 40)
	for i := range users {
		users[i] = randomUUID(r)
	}

	out := make([]job, g.opts.Jobs)
	for i := range out {
		j := &out[i]
		if i < MinJobs { // every status with every job type
			j.status = JobStatuses[i%len(JobStatuses)]
			j.typ = JobTypes[(i/len(JobStatuses))%len(JobTypes)]
		} else {
			j.status = pick(r, JobStatuses, jobStatusWeights)
			j.typ = pick(r, JobTypes, jobTypeWeights)
		}
		fillJobTimes(r, j)

		// The i%N cases force each nullable column both ways inside the first MinJobs rows.
		switch {
		case i%37 == 5 && len(executionTaskIDs) > 0: // a job the dispatcher also recorded
			j.taskID = ptr(executionTaskIDs[r.IntN(len(executionTaskIDs))])
		case j.status == "pending" && (i/len(JobStatuses))%2 == 0: // never sent
		case j.status == "pending" || r.IntN(20) != 0:
			j.taskID = ptr(randomUUID(r).String())
		}
		if i%7 != 2 && r.IntN(5) != 0 { // scheduled and system jobs have no user
			j.userID = ptr(users[r.IntN(len(users))])
		}
		switch q := r.IntN(10); {
		case i%11 == 4 || q == 0:
		case q == 1:
			j.queue = ptr("celery") // sent before the task got its own route
		default:
			j.queue = ptr(queueForJobType[j.typ])
		}
		if i%13 != 6 && r.IntN(8) != 0 {
			j.payload = jobPayload(r, j.typ, users)
		}
		fillJobOutcome(r, j, i < MinJobs)
		if i%17 != 8 && r.IntN(10) != 0 {
			j.progress = ptr(jobProgress(r, j.status))
		}
	}
	return out
}

func fillJobTimes(r *rand.Rand, j *job) {
	switch j.status {
	case "pending", "queued", "started", "running", "retry":
		j.created = micro(horizon.Add(-time.Minute - between(r, 0, 3*time.Hour)))
	default:
		j.created = micro(horizon.Add(-4*time.Hour - between(r, 0, 30*24*time.Hour)))
	}
	start := func() {
		j.started = ptr(micro(j.created.Add(between(r, 10*time.Millisecond, 20*time.Second))))
	}
	finish := func(from time.Time) {
		j.finished = ptr(micro(from.Add(between(r, 50*time.Millisecond, 3*time.Hour))))
	}
	switch j.status {
	case "started", "running", "retry":
		start()
	case "success", "failure", "error":
		start()
		finish(*j.started)
	case "cancelled", "revoked":
		if r.IntN(3) == 0 {
			start()
			finish(*j.started)
		} else {
			finish(j.created)
		}
	}
	latest := j.created
	for _, t := range []*time.Time{j.started, j.finished} {
		if t != nil && t.After(latest) {
			latest = *t
		}
	}
	j.updated = micro(latest.Add(between(r, 0, time.Second)))
}

func fillJobOutcome(r *rand.Rand, j *job, cover bool) {
	switch j.status {
	case "pending", "queued":
	case "retry":
		j.attempts = int32(1 + r.IntN(5))
	case "failure", "error":
		j.attempts = int32(1 + r.IntN(3))
	default:
		if j.started != nil {
			j.attempts = int32(1 + r.IntN(2))
		}
	}
	switch j.status {
	case "success":
		if cover || r.IntN(10) != 0 {
			j.result = jobResult(r, j.typ)
		}
	case "failure", "error":
		j.errMsg = ptr(errorTexts[r.IntN(len(errorTexts))])
		if r.IntN(10) == 0 {
			j.result = mustJSON(map[string]any{"exc_type": "TimeoutError", "exc_message": []any{"timed out"}})
		}
	case "retry":
		if r.IntN(10) < 7 {
			j.errMsg = ptr("Retry in 60s: " + errorTexts[r.IntN(len(errorTexts))])
		}
	case "revoked":
		if r.IntN(10) < 3 {
			j.errMsg = ptr("revoked: terminated by admin")
		}
	}
}

func jobProgress(r *rand.Rand, status string) int16 {
	switch status {
	case "success":
		return 100
	case "pending", "queued":
		return 0
	}
	return int16(r.IntN(100))
}

// executionParams varies the shape of params: empty, flat, nested, unicode, numeric
// edge cases (2^53+1 does not survive a float64), and deep nesting.
func executionParams(r *rand.Rand) []byte {
	var v map[string]any
	switch r.IntN(6) {
	case 0:
		v = map[string]any{}
	case 1:
		v = map[string]any{"feed_url": fmt.Sprintf("https://news.example.com/%d/feed.xml", r.IntN(1000)), "max_items": 10 + r.IntN(90)}
	case 2:
		v = map[string]any{
			"source":  map[string]any{"kind": "rss", "url": "https://blog.example.org/rss", "headers": map[string]any{"Accept-Language": "de-DE"}},
			"options": map[string]any{"dedupe": r.IntN(2) == 0, "since": "2025-05-01T00:00:00Z", "tags": []any{"news", "tech"}},
		}
	case 3:
		v = map[string]any{"query": "Zürich – 東京 – Δ", "emoji": "📈🚀", "note": "naïve café", "rtl": "مرحبا"}
	case 4:
		v = map[string]any{
			"document_ids": []any{r.IntN(1000), r.IntN(1000), r.IntN(1000)}, "batch_size": 500,
			"big_id": int64(9007199254740993), "ratio": 0.75, "dry_run": false, "cursor": nil,
		}
	default:
		v = map[string]any{"a": map[string]any{"b": map[string]any{"c": map[string]any{"d": []any{
			map[string]any{"e": r.IntN(10)}, map[string]any{"f": "g"}, []any{}, map[string]any{},
		}}}}}
	}
	return mustJSON(v)
}

func executionResult(r *rand.Rand) []byte {
	switch r.IntN(3) {
	case 0:
		return mustJSON(map[string]any{"items_captured": r.IntN(500), "duration_ms": r.IntN(60000)})
	case 1:
		return mustJSON(map[string]any{
			"documents": []any{map[string]any{"id": r.IntN(1 << 20), "title": "Résumé – 会议记录"}},
			"warnings":  []any{},
		})
	default:
		return mustJSON(map[string]any{
			"summary": "3 neue Einträge ✓",
			"stats":   map[string]any{"new": r.IntN(10), "updated": r.IntN(10), "skipped": r.IntN(10)},
		})
	}
}

// jobPayload is what each bypass task's Celery arguments look like when recorded.
func jobPayload(r *rand.Rand, typ string, users []uuid.UUID) []byte {
	user := users[r.IntN(len(users))].String()
	var v map[string]any
	switch typ {
	case "batch_import":
		v = map[string]any{"args": []any{user, []any{r.IntN(1e6), r.IntN(1e6)}}, "kwargs": map[string]any{"source": "notion", "overwrite": false}}
	case "copilot_sync":
		v = map[string]any{"args": []any{}, "kwargs": map[string]any{"user_id": user, "since": "2025-05-20T08:00:00+00:00", "chat_ids": []any{"c-1", "c-2"}}}
	case "backup":
		if r.IntN(2) == 0 { // schedule_pending_backups takes no arguments
			v = map[string]any{"args": []any{}, "kwargs": map[string]any{}}
		} else {
			v = map[string]any{"args": []any{user}, "kwargs": map[string]any{"destination": "s3://backups/" + user, "include_attachments": true}}
		}
	case "recommendations":
		v = map[string]any{"args": []any{}, "kwargs": map[string]any{"user_id": user, "limit": 20, "weights": map[string]any{"recency": 0.4, "similarity": 0.6}}}
	default:
		v = map[string]any{"args": []any{}, "kwargs": map[string]any{"environments": []any{"prod", "staging", "dév"}, "dry_run": r.IntN(2) == 0}}
	}
	return mustJSON(v)
}

func jobResult(r *rand.Rand, typ string) []byte {
	var v map[string]any
	switch typ {
	case "batch_import":
		v = map[string]any{"imported": r.IntN(1000), "skipped": r.IntN(20)}
	case "copilot_sync":
		v = map[string]any{"chats": r.IntN(50), "messages": r.IntN(5000)}
	case "backup":
		v = map[string]any{"backup_id": randomUUID(r).String(), "bytes": int64(r.IntN(1 << 30))}
	case "recommendations":
		v = map[string]any{"recommendations": []any{r.IntN(1e6), r.IntN(1e6), r.IntN(1e6)}}
	default:
		v = map[string]any{"environments": map[string]any{"prod": "ok", "staging": "skipped"}}
	}
	return mustJSON(v)
}

// pick draws from values with the given weights.
func pick(r *rand.Rand, values []string, weights []int) string {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := r.IntN(total)
	for i, w := range weights {
		if n < w {
			return values[i]
		}
		n -= w
	}
	return values[len(values)-1]
}

// randomUUID draws a version 4 UUID from r, so ids repeat with the seed.
func randomUUID(r *rand.Rand) uuid.UUID {
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[:8], r.Uint64())
	binary.BigEndian.PutUint64(u[8:], r.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// micro truncates to PostgreSQL's timestamp resolution, so what the generator
// compares is what the database stores.
func micro(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

func ptr[T any](v T) *T { return &v }

// mustJSON marshals the generator's own maps of plain values, which cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("seed: marshal %T: %v", v, err))
	}
	return b
}
