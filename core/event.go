package core

import (
	"encoding/json"
	"time"
)

// EventType says what happened to a run.
type EventType string

const (
	EventCreated        EventType = "created"
	EventQueued         EventType = "queued"
	EventStarted        EventType = "started"
	EventProgress       EventType = "progress"
	EventHeartbeat      EventType = "heartbeat"
	EventCompleted      EventType = "completed"
	EventFailed         EventType = "failed"
	EventCancelled      EventType = "cancelled"
	EventRetryScheduled EventType = "retry_scheduled"
	EventRetried        EventType = "retried"
	EventDeadLettered   EventType = "dead_lettered"
)

// DefaultEventSource is the source of events the dispatcher records.
const DefaultEventSource = "dispatcher"

// RunEvent is one entry of a run's history. Events are append-only and
// written in the same transaction as the status change they record.
type RunEvent struct {
	// EventID is assigned by the ledger and opaque to callers.
	EventID   string         `json:"event_id"`
	RunID     string         `json:"run_id"`
	Type      EventType      `json:"event_type"`
	Timestamp time.Time      `json:"-"`
	Data      map[string]any `json:"data"`
	Source    string         `json:"source"`
}

// MarshalJSON writes the event with a Python-style ISO-8601 timestamp.
func (e RunEvent) MarshalJSON() ([]byte, error) {
	type plain RunEvent
	data := e.Data
	if data == nil {
		data = map[string]any{}
	}
	e.Data = data
	return json.Marshal(struct {
		plain
		Timestamp string `json:"timestamp"`
	}{plain(e), FormatTime(e.Timestamp)})
}

// UnmarshalJSON reads what MarshalJSON writes, numbers kept exact.
func (e *RunEvent) UnmarshalJSON(b []byte) error {
	var in struct {
		EventID   string          `json:"event_id"`
		RunID     string          `json:"run_id"`
		Type      EventType       `json:"event_type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
		Source    string          `json:"source"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	data, err := DecodeObject(in.Data)
	if err != nil {
		return err
	}
	ts, err := ParseTime(in.Timestamp)
	if err != nil {
		return err
	}
	*e = RunEvent{EventID: in.EventID, RunID: in.RunID, Type: in.Type, Timestamp: ts, Data: data, Source: in.Source}
	return nil
}
