package pgledger

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/spinecore/spine-go/core"
)

// row is an executions row as the ledger writes and reads it. The mapping
// is Capture-Spine's published one: pipeline_name = spec name,
// backend_task_id = external ref, retry_count = attempt - 1, and feed_id =
// metadata["feed_id"] (kept in the column, where Capture-Spine's
// one-active-execution-per-feed index can see it, and not also in the
// metadata JSON).
type row struct {
	id, name, params, lane, triggerSource, status string
	backendTaskID, feedID                         *string
	retryCount                                    int32
	result, errorText                             *string
	createdAt                                     time.Time
	startedAt, completedAt                        *time.Time
	kind, priority                                string
	idempotencyKey, correlationID, parentRunID    *string
	executorName, retryOfRunID                    *string
	maxRetries                                    int32
	retryDelaySeconds                             float64
	errorType                                     *string
	metadata, tags                                string
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func toRow(r core.RunRecord) (row, error) {
	spec := r.Spec
	params, err := json.Marshal(orEmpty(spec.Params))
	if err != nil {
		return row{}, fmt.Errorf("params: %w", err)
	}
	meta := make(map[string]any, len(spec.Metadata))
	for k, v := range spec.Metadata {
		meta[k] = v
	}
	var feedID *string
	if s, ok := meta["feed_id"].(string); ok && canonicalUUID(s) {
		feedID = &s
		delete(meta, "feed_id")
	}
	metadata, err := json.Marshal(meta)
	if err != nil {
		return row{}, fmt.Errorf("metadata: %w", err)
	}
	tags, err := json.Marshal(orEmptyTags(r.Tags))
	if err != nil {
		return row{}, fmt.Errorf("tags: %w", err)
	}
	var result *string
	if !jsonNull(r.Result) {
		if !json.Valid(r.Result) {
			return row{}, fmt.Errorf("result is not valid JSON")
		}
		s := string(r.Result)
		result = &s
	}
	if spec.ParentRunID != "" && !isUUID(spec.ParentRunID) {
		return row{}, fmt.Errorf("parent_run_id %q is not a UUID", spec.ParentRunID)
	}
	if r.RetryOfRunID != "" && !isUUID(r.RetryOfRunID) {
		return row{}, fmt.Errorf("retry_of_run_id %q is not a UUID", r.RetryOfRunID)
	}
	attempt := r.Attempt
	if attempt < 1 {
		attempt = 1
	}
	spec = spec.WithDefaults()
	out := row{
		id: r.RunID, name: spec.Name, params: string(params), lane: spec.Lane,
		triggerSource: spec.TriggerSource, status: string(r.Status),
		backendTaskID: nullable(r.ExternalRef), feedID: feedID, retryCount: int32(attempt - 1),
		result: result, errorText: nullable(r.Error), createdAt: core.Timestamp(r.CreatedAt),
		kind: string(spec.Kind), priority: string(spec.Priority),
		idempotencyKey: nullable(spec.IdempotencyKey), correlationID: nullable(spec.CorrelationID),
		parentRunID: nullable(spec.ParentRunID), executorName: nullable(r.ExecutorName),
		retryOfRunID: nullable(r.RetryOfRunID), maxRetries: int32(spec.MaxRetries),
		retryDelaySeconds: spec.RetryDelay.Seconds(), errorType: nullable(r.ErrorType),
		metadata: string(metadata), tags: string(tags),
	}
	if r.StartedAt != nil {
		t := core.Timestamp(*r.StartedAt)
		out.startedAt = &t
	}
	if r.CompletedAt != nil {
		t := core.Timestamp(*r.CompletedAt)
		out.completedAt = &t
	}
	return out, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func orEmptyTags(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// fromRow builds the RunRecord a row holds.
func fromRow(r row) (core.RunRecord, error) {
	params, err := core.DecodeObject([]byte(r.params))
	if err != nil {
		return core.RunRecord{}, fmt.Errorf("run %s: params: %w", r.id, err)
	}
	meta, err := core.DecodeObject([]byte(r.metadata))
	if err != nil {
		return core.RunRecord{}, fmt.Errorf("run %s: metadata: %w", r.id, err)
	}
	var tags map[string]string
	if err := json.Unmarshal([]byte(r.tags), &tags); err != nil {
		return core.RunRecord{}, fmt.Errorf("run %s: tags must be an object of strings: %w", r.id, err)
	}
	return recordOf(r, params, meta, tags), nil
}

// recordOf is the RunRecord of r with its JSON columns already decoded.
func recordOf(r row, params, meta map[string]any, tags map[string]string) core.RunRecord {
	if r.feedID != nil {
		meta["feed_id"] = *r.feedID
	}
	if tags == nil {
		tags = map[string]string{}
	}
	run := core.RunRecord{
		RunID: r.id,
		Spec: core.WorkSpec{
			Kind: core.Kind(r.kind), Name: r.name, Params: params, IdempotencyKey: deref(r.idempotencyKey),
			CorrelationID: deref(r.correlationID), Priority: core.Priority(r.priority), Lane: r.lane,
			ParentRunID: deref(r.parentRunID), TriggerSource: r.triggerSource, Metadata: meta,
			MaxRetries: int(r.maxRetries), RetryDelay: core.Seconds(r.retryDelaySeconds),
		},
		Status: core.RunStatus(r.status), CreatedAt: core.Timestamp(r.createdAt),
		Error: deref(r.errorText), ErrorType: deref(r.errorType), ExternalRef: deref(r.backendTaskID),
		ExecutorName: deref(r.executorName), Attempt: int(r.retryCount) + 1, RetryOfRunID: deref(r.retryOfRunID),
		Tags: tags,
	}
	if r.result != nil && !jsonNull([]byte(*r.result)) {
		run.Result = json.RawMessage(*r.result)
	}
	if r.startedAt != nil {
		t := core.Timestamp(*r.startedAt)
		run.StartedAt = &t
	}
	if r.completedAt != nil {
		t := core.Timestamp(*r.completedAt)
		run.CompletedAt = &t
	}
	return run
}

// storedRecord is the RunRecord a row built by toRow(run) reads back as,
// what a handler would see had the run come from the database: the same
// whether it comes from Submit or, after a restart, from a read (numbers
// are json.Number either way). It is valid by construction. When run's
// params, metadata and tags hold only values that survive a JSON round
// trip unchanged, a deep copy gives that record without decoding the JSON
// just encoded (a fifth of a batch submit's CPU); anything else takes the
// round trip.
func storedRecord(run core.RunRecord, r row) core.RunRecord {
	params, ok := roundTripCopy(orEmpty(run.Spec.Params))
	var meta map[string]any
	if ok {
		meta, ok = roundTripCopy(orEmpty(run.Spec.Metadata))
	}
	var tags map[string]string
	if ok {
		tags, ok = roundTripTags(run.Tags)
	}
	if ok {
		return recordOf(r, params, meta, tags)
	}
	stored, err := fromRow(r)
	if err != nil {
		panic("pgledger: a row built by toRow does not read back: " + err.Error())
	}
	return stored
}

// roundTripCopy returns what core.DecodeObject would make of m encoded by
// encoding/json, or false when m holds a value whose round trip changes
// it (a float64 becomes a json.Number, a struct a map, a bad UTF-8
// sequence U+FFFD, ...) or that this copy does not know.
func roundTripCopy(m map[string]any) (map[string]any, bool) {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if !utf8.ValidString(k) {
			return nil, false
		}
		c, ok := roundTripValue(v)
		if !ok {
			return nil, false
		}
		out[k] = c
	}
	return out, true
}

func roundTripValue(v any) (any, bool) {
	switch v := v.(type) {
	case nil, bool:
		return v, true
	case string:
		return v, utf8.ValidString(v)
	case json.Number:
		// encoding/json writes the empty Number as 0; toRow has already
		// refused any other invalid one.
		return v, v != ""
	case map[string]any:
		if v == nil {
			return nil, true // null
		}
		return roundTripCopy(v)
	case []any:
		if v == nil {
			return nil, true // null
		}
		out := make([]any, len(v))
		for i, e := range v {
			c, ok := roundTripValue(e)
			if !ok {
				return nil, false
			}
			out[i] = c
		}
		return out, true
	}
	return nil, false
}

func roundTripTags(m map[string]string) (map[string]string, bool) {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, false
		}
		out[k] = v
	}
	return out, true
}

func collectRuns(rows pgx.Rows) ([]core.RunRecord, error) {
	defer rows.Close()
	var out []core.RunRecord
	for rows.Next() {
		var r row
		var params, result, metadata, tags []byte
		if err := rows.Scan(&r.id, &r.name, &params, &r.lane, &r.triggerSource, &r.status,
			&r.backendTaskID, &r.feedID, &r.retryCount, &result, &r.errorText,
			&r.createdAt, &r.startedAt, &r.completedAt,
			&r.kind, &r.priority, &r.idempotencyKey, &r.correlationID, &r.parentRunID,
			&r.executorName, &r.retryOfRunID, &r.maxRetries, &r.retryDelaySeconds,
			&r.errorType, &metadata, &tags); err != nil {
			return nil, err
		}
		r.params, r.metadata, r.tags = string(params), string(metadata), string(tags)
		if result != nil {
			s := string(result)
			r.result = &s
		}
		run, err := fromRow(r)
		if err != nil {
			return nil, err
		}
		out = append(out, run)
	}
	return out, rows.Err()
}

// runArrays are the parallel arrays insertRuns unnests.
type runArrays struct {
	id, name, params, lane, triggerSource, status []string
	backendTaskID, feedID                         []*string
	retryCount                                    []int32
	result, errorText                             []*string
	createdAt                                     []time.Time
	startedAt, completedAt                        []*time.Time
	kind, priority                                []string
	idempotencyKey, correlationID, parentRunID    []*string
	executorName, retryOfRunID                    []*string
	maxRetries                                    []int32
	retryDelaySeconds                             []float64
	errorType                                     []*string
	metadata, tags                                []string
}

func (a *runArrays) add(r row) {
	a.id = append(a.id, r.id)
	a.name = append(a.name, r.name)
	a.params = append(a.params, r.params)
	a.lane = append(a.lane, r.lane)
	a.triggerSource = append(a.triggerSource, r.triggerSource)
	a.status = append(a.status, r.status)
	a.backendTaskID = append(a.backendTaskID, r.backendTaskID)
	a.feedID = append(a.feedID, r.feedID)
	a.retryCount = append(a.retryCount, r.retryCount)
	a.result = append(a.result, r.result)
	a.errorText = append(a.errorText, r.errorText)
	a.createdAt = append(a.createdAt, r.createdAt)
	a.startedAt = append(a.startedAt, r.startedAt)
	a.completedAt = append(a.completedAt, r.completedAt)
	a.kind = append(a.kind, r.kind)
	a.priority = append(a.priority, r.priority)
	a.idempotencyKey = append(a.idempotencyKey, r.idempotencyKey)
	a.correlationID = append(a.correlationID, r.correlationID)
	a.parentRunID = append(a.parentRunID, r.parentRunID)
	a.executorName = append(a.executorName, r.executorName)
	a.retryOfRunID = append(a.retryOfRunID, r.retryOfRunID)
	a.maxRetries = append(a.maxRetries, r.maxRetries)
	a.retryDelaySeconds = append(a.retryDelaySeconds, r.retryDelaySeconds)
	a.errorType = append(a.errorType, r.errorType)
	a.metadata = append(a.metadata, r.metadata)
	a.tags = append(a.tags, r.tags)
}

func (a *runArrays) args() []any {
	return []any{a.id, a.name, a.params, a.lane, a.triggerSource, a.status,
		a.backendTaskID, a.feedID, a.retryCount, a.result, a.errorText,
		a.createdAt, a.startedAt, a.completedAt,
		a.kind, a.priority, a.idempotencyKey, a.correlationID, a.parentRunID,
		a.executorName, a.retryOfRunID, a.maxRetries, a.retryDelaySeconds,
		a.errorType, a.metadata, a.tags}
}

// eventArrays are the parallel arrays of the events a write records.
type eventArrays struct {
	runID, eventType []string
	ts               []time.Time
	data, source     []string
}

func (a *eventArrays) add(runID string, ev core.RunEvent) error {
	ev = normaliseEvent(ev)
	data, err := eventData(ev)
	if err != nil {
		return err
	}
	a.runID = append(a.runID, runID)
	a.eventType = append(a.eventType, string(ev.Type))
	a.ts = append(a.ts, ev.Timestamp)
	a.data = append(a.data, data)
	a.source = append(a.source, ev.Source)
	return nil
}

func (a *eventArrays) args() []any {
	return []any{nonNil(a.runID), nonNil(a.eventType), nonNilTimes(a.ts), nonNil(a.data), nonNil(a.source)}
}

// nonNil sends an empty array rather than NULL when there are no events:
// unnest(NULL) would be fine, but an explicit empty array says what it means.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilTimes(s []time.Time) []time.Time {
	if s == nil {
		return []time.Time{}
	}
	return s
}

// updateArrays are the parallel arrays updateRuns unnests.
type updateArrays struct {
	id, from, to                                            []string
	startedAt, completedAt                                  []*time.Time
	result, errorText, errorType, externalRef, executorName []*string
	setResult                                               []bool
}

func (a *updateArrays) add(u core.RunUpdate) {
	a.id = append(a.id, u.RunID)
	a.from = append(a.from, string(u.From))
	a.to = append(a.to, string(u.To))
	a.startedAt = append(a.startedAt, timestampPtr(u.StartedAt))
	a.completedAt = append(a.completedAt, timestampPtr(u.CompletedAt))
	var result *string
	if u.Result != nil && !jsonNull(u.Result) {
		s := string(u.Result)
		result = &s
	}
	a.result = append(a.result, result)
	a.setResult = append(a.setResult, u.Result != nil)
	a.errorText = append(a.errorText, u.Error)
	a.errorType = append(a.errorType, u.ErrorType)
	a.externalRef = append(a.externalRef, u.ExternalRef)
	a.executorName = append(a.executorName, u.ExecutorName)
}

func (a *updateArrays) args() []any {
	return []any{a.id, a.from, a.to, a.startedAt, a.completedAt,
		a.result, a.errorText, a.errorType, a.externalRef, a.executorName, a.setResult}
}

func timestampPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	ts := core.Timestamp(*t)
	return &ts
}
