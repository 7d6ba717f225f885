package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
)

// RunRecord is the authoritative record of one attempt at a WorkSpec.
type RunRecord struct {
	RunID  string
	Spec   WorkSpec
	Status RunStatus

	CreatedAt   time.Time
	StartedAt   *time.Time
	CompletedAt *time.Time

	// Result is the run's result as JSON, nil when there is none. Kept as
	// raw JSON so every number survives a trip through any ledger (key
	// order and spacing may not: PostgreSQL's jsonb normalises them).
	Result    json.RawMessage
	Error     string
	ErrorType string

	// ExternalRef is the executor's handle: a Celery task id, an Airflow
	// dag_run_id, the memory executor's own id.
	ExternalRef  string
	ExecutorName string

	// Attempt counts from 1; a retry has its predecessor's Attempt + 1 and
	// RetryOfRunID pointing at it.
	Attempt      int
	RetryOfRunID string
	Tags         map[string]string
}

// Duration is CompletedAt - StartedAt, and false until both are known.
func (r RunRecord) Duration() (time.Duration, bool) {
	if r.StartedAt == nil || r.CompletedAt == nil {
		return 0, false
	}
	return r.CompletedAt.Sub(*r.StartedAt), true
}

// Seconds converts a duration in float seconds (Python's and the
// database's unit) to a Duration, rounding to the nearest nanosecond: a
// plain conversion truncates, so 4.35 s would come back as 4.349999999 s.
func Seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// NewRunID returns a fresh run id: a UUID v4 string, as Python makes them.
func NewRunID() string { return uuid.NewString() }

func validRunID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// Timestamp returns t in UTC truncated to the microsecond: the precision of
// PostgreSQL's timestamptz and Python's datetime, so a time survives every
// store unchanged and keyset cursors compare equal to what was stored.
func Timestamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// pythonTime is the ISO-8601 layout Python's isoformat() produces for an
// aware UTC datetime with microseconds.
const pythonTime = "2006-01-02T15:04:05.000000+00:00"

// FormatTime writes t as Python's isoformat() does for a UTC datetime.
func FormatTime(t time.Time) string { return Timestamp(t).Format(pythonTime) }

// ParseTime reads the ISO-8601 forms Python and Go write: with or without a
// fraction, with an offset, "Z", or naive (taken as UTC, as Python's
// utcnow() values are).
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return Timestamp(t), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q is not ISO-8601", s)
}

// runJSON is the wire shape: Python's RunRecord.to_dict keys, then the spec
// and lineage fields to_dict omits, so nothing is lost in a round trip.
type runJSON struct {
	RunID           string            `json:"run_id"`
	Kind            Kind              `json:"kind"`
	Name            string            `json:"name"`
	Params          json.RawMessage   `json:"params"`
	Status          RunStatus         `json:"status"`
	CreatedAt       *string           `json:"created_at"`
	StartedAt       *string           `json:"started_at"`
	CompletedAt     *string           `json:"completed_at"`
	Result          json.RawMessage   `json:"result"`
	Error           *string           `json:"error"`
	ErrorType       *string           `json:"error_type"`
	ExternalRef     *string           `json:"external_ref"`
	ExecutorName    *string           `json:"executor_name"`
	Attempt         int               `json:"attempt"`
	DurationSeconds *float64          `json:"duration_seconds"`
	Tags            map[string]string `json:"tags"`

	Priority          Priority        `json:"priority"`
	Lane              string          `json:"lane"`
	IdempotencyKey    *string         `json:"idempotency_key"`
	CorrelationID     *string         `json:"correlation_id"`
	ParentRunID       *string         `json:"parent_run_id"`
	TriggerSource     string          `json:"trigger_source"`
	Metadata          json.RawMessage `json:"metadata"`
	MaxRetries        int             `json:"max_retries"`
	RetryDelaySeconds float64         `json:"retry_delay_seconds"`
	RetryOfRunID      *string         `json:"retry_of_run_id"`
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := FormatTime(*t)
	return &s
}

// MarshalJSON writes the run in spine-core's JSON shape (snake_case, times
// as ISO-8601 with microseconds and +00:00, absent values as null).
func (r RunRecord) MarshalJSON() ([]byte, error) {
	params, err := marshalObject(r.Spec.Params)
	if err != nil {
		return nil, fmt.Errorf("run %s params: %w", r.RunID, err)
	}
	metadata, err := marshalObject(r.Spec.Metadata)
	if err != nil {
		return nil, fmt.Errorf("run %s metadata: %w", r.RunID, err)
	}
	result := r.Result
	if len(result) == 0 {
		result = json.RawMessage("null")
	}
	tags := r.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	out := runJSON{
		RunID: r.RunID, Kind: r.Spec.Kind, Name: r.Spec.Name, Params: params,
		Status: r.Status, CreatedAt: optTime(&r.CreatedAt), StartedAt: optTime(r.StartedAt),
		CompletedAt: optTime(r.CompletedAt), Result: result, Error: optString(r.Error),
		ErrorType: optString(r.ErrorType), ExternalRef: optString(r.ExternalRef),
		ExecutorName: optString(r.ExecutorName), Attempt: r.Attempt, Tags: tags,
		Priority: r.Spec.Priority, Lane: r.Spec.Lane, IdempotencyKey: optString(r.Spec.IdempotencyKey),
		CorrelationID: optString(r.Spec.CorrelationID), ParentRunID: optString(r.Spec.ParentRunID),
		TriggerSource: r.Spec.TriggerSource, Metadata: metadata, MaxRetries: r.Spec.MaxRetries,
		RetryDelaySeconds: r.Spec.RetryDelay.Seconds(), RetryOfRunID: optString(r.RetryOfRunID),
	}
	if r.CreatedAt.IsZero() {
		out.CreatedAt = nil
	}
	if d, ok := r.Duration(); ok {
		secs := d.Seconds()
		out.DurationSeconds = &secs
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads the shape MarshalJSON writes; JSON numbers inside
// params, metadata and result are kept exact (json.Number).
func (r *RunRecord) UnmarshalJSON(data []byte) error {
	var in runJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	params, err := DecodeObject(in.Params)
	if err != nil {
		return fmt.Errorf("params: %w", err)
	}
	metadata, err := DecodeObject(in.Metadata)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	out := RunRecord{
		RunID: in.RunID, Status: in.Status, Error: deref(in.Error), ErrorType: deref(in.ErrorType),
		ExternalRef: deref(in.ExternalRef), ExecutorName: deref(in.ExecutorName),
		Attempt: in.Attempt, RetryOfRunID: deref(in.RetryOfRunID), Tags: in.Tags,
		Spec: WorkSpec{
			Kind: in.Kind, Name: in.Name, Params: params, IdempotencyKey: deref(in.IdempotencyKey),
			CorrelationID: deref(in.CorrelationID), Priority: in.Priority, Lane: in.Lane,
			ParentRunID: deref(in.ParentRunID), TriggerSource: in.TriggerSource, Metadata: metadata,
			MaxRetries: in.MaxRetries, RetryDelay: Seconds(in.RetryDelaySeconds),
		},
	}
	if len(in.Result) > 0 && !bytes.Equal(in.Result, []byte("null")) {
		out.Result = append(json.RawMessage(nil), in.Result...)
	}
	for _, f := range []struct {
		src *string
		dst **time.Time
	}{{in.StartedAt, &out.StartedAt}, {in.CompletedAt, &out.CompletedAt}} {
		if f.src == nil {
			continue
		}
		t, err := ParseTime(*f.src)
		if err != nil {
			return err
		}
		*f.dst = &t
	}
	if in.CreatedAt != nil {
		if out.CreatedAt, err = ParseTime(*in.CreatedAt); err != nil {
			return err
		}
	}
	*r = out
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// marshalObject writes a JSON object, {} for nil.
func marshalObject(m map[string]any) (json.RawMessage, error) {
	if m == nil {
		return json.RawMessage("{}"), nil
	}
	return json.Marshal(m)
}

// DecodeObject decodes a JSON object keeping numbers exact (json.Number);
// empty input and null give an empty map.
func DecodeObject(data []byte) (map[string]any, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after JSON object")
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}
