package entityspine

import (
	"encoding/json"
	"fmt"
	"time"
)

// SyncResult is what one EntitySpine sync (PostgreSQL to Elasticsearch and
// Neo4j) reports, in either shape. Fields of the other shape stay zero.
type SyncResult struct {
	// Shape says which fields the value uses. The zero value is ShapeShipped.
	Shape Shape

	// The shipped shape: entity-spine's SyncService.
	StartedAt time.Time
	// CompletedAt is nil when the sync never recorded its end (null).
	CompletedAt         *time.Time
	EntitiesSynced      int64
	RelationshipsSynced int64
	Errors              []string
	Warnings            []string

	// The documented shape: spine-core's integration guide names only
	// synced_count. Its error_count and duration_seconds, when present, are
	// read from Extra by analogy with the documented RefreshResult.
	SyncedCount int64

	// Extra holds every member that is not a field of the shape, as raw
	// JSON (compact, HTML-escaped as encoding/json writes it): unknown
	// members, and for the shipped shape duration_seconds and success, as
	// given (SyncResult.to_dict writes them) or, when absent, as derived on
	// decode.
	Extra map[string]json.RawMessage
}

var (
	syncDocumentedFields = []string{"synced_count"}
	syncShippedFields    = []string{"started_at", "completed_at", "entities_synced", "relationships_synced", "errors", "warnings"}
)

// DecodeSyncResult decodes a SyncResult of either shape, told apart by the
// fields present. Unknown members are kept in Extra; an object that has
// neither shape's fields, or both, is a *ShapeError naming what each lacks.
func DecodeSyncResult(data []byte) (SyncResult, error) {
	o, err := decodeObject(syncType, data)
	if err != nil {
		return SyncResult{}, err
	}
	shape, err := o.detect(syncType, syncDocumentedFields, syncShippedFields)
	if err != nil {
		return SyncResult{}, err
	}
	r := SyncResult{Shape: shape}
	if shape == ShapeDocumented {
		err = r.decodeDocumented(o)
	} else {
		err = r.decodeShipped(o)
	}
	if err != nil {
		return SyncResult{}, err
	}
	return r, nil
}

func (r *SyncResult) decodeDocumented(o object) error {
	var err error
	if r.SyncedCount, err = o.count(syncType, "synced_count"); err != nil {
		return err
	}
	// The status rule and Duration read these; refuse what they cannot.
	if _, ok := o["error_count"]; ok {
		if _, err := o.count(syncType, "error_count"); err != nil {
			return err
		}
	}
	if _, ok := o["duration_seconds"]; ok {
		if _, err := o.float(syncType, "duration_seconds"); err != nil {
			return err
		}
	}
	r.Extra = o.extra(syncDocumentedFields)
	return nil
}

func (r *SyncResult) decodeShipped(o object) error {
	var err error
	if r.StartedAt, err = o.time(syncType, "started_at"); err != nil {
		return err
	}
	if r.CompletedAt, err = o.nullableTime(syncType, "completed_at"); err != nil {
		return err
	}
	if err := o.counts(syncType, []countField{{"entities_synced", &r.EntitiesSynced},
		{"relationships_synced", &r.RelationshipsSynced}}); err != nil {
		return err
	}
	if r.Errors, err = o.strings(syncType, "errors"); err != nil {
		return err
	}
	if r.Warnings, err = o.strings(syncType, "warnings"); err != nil {
		return err
	}
	r.Extra, err = fillDerived(o.extra(syncShippedFields), r.derived())
	return err
}

// UnmarshalJSON implements json.Unmarshaler with DecodeSyncResult.
func (r *SyncResult) UnmarshalJSON(data []byte) error {
	v, err := DecodeSyncResult(data)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// derived is what SyncResult.to_dict adds for the shipped shape:
// duration_seconds (the int 0 while completed_at is null) and success (no
// errors).
func (r SyncResult) derived() []derivedMember {
	duration, derr := json.RawMessage("0"), error(nil)
	if r.CompletedAt != nil {
		duration, derr = pyFloat(ratio(microsBetween(r.StartedAt, *r.CompletedAt), 1_000_000))
	}
	success := json.RawMessage("false")
	if len(r.Errors) == 0 {
		success = json.RawMessage("true")
	}
	return []derivedMember{{"duration_seconds", duration, derr}, {"success", success, nil}}
}

// MarshalJSON writes the result JSON a run records: the shape's fields,
// the derived duration_seconds and success of a shipped result unless Extra
// carries them, then Extra. Times are written as UTC ISO-8601 with
// microseconds. A value DecodeSyncResult would refuse is an error.
func (r SyncResult) MarshalJSON() ([]byte, error) {
	var w objectWriter
	switch r.Shape {
	case ShapeDocumented:
		if !(r.StartedAt.IsZero() && r.CompletedAt == nil && r.EntitiesSynced == 0 && r.RelationshipsSynced == 0 &&
			len(r.Errors) == 0 && len(r.Warnings) == 0) {
			return nil, fmt.Errorf("entityspine: SyncResult of the documented shape has fields of the shipped shape set")
		}
		w.count("synced_count", r.SyncedCount)
		w.extra(r.Extra, syncDocumentedFields, nil)
	case ShapeShipped:
		if r.SyncedCount != 0 {
			return nil, fmt.Errorf("entityspine: SyncResult of the shipped shape has SyncedCount set")
		}
		w.time("started_at", r.StartedAt)
		if r.CompletedAt == nil {
			w.raw("completed_at", []byte("null"))
		} else {
			w.time("completed_at", *r.CompletedAt)
		}
		w.count("entities_synced", r.EntitiesSynced)
		w.count("relationships_synced", r.RelationshipsSynced)
		w.strings("errors", r.Errors)
		w.strings("warnings", r.Warnings)
		w.extra(r.Extra, syncShippedFields, r.derived())
	default:
		return nil, fmt.Errorf("entityspine: SyncResult: unknown %v", r.Shape)
	}
	b, err := w.bytes()
	if err != nil {
		return nil, fmt.Errorf("entityspine: SyncResult: %w", err)
	}
	if r.Shape == ShapeDocumented {
		// The analogous members must read as the decoder demands.
		if _, err := DecodeSyncResult(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Duration is how long EntitySpine says the sync took: completed_at -
// started_at (shipped) or the documented shape's duration_seconds. It is
// false when the result cannot say: no completed_at, no duration_seconds,
// a negative or out-of-range span.
func (r SyncResult) Duration() (time.Duration, bool) {
	if r.Shape == ShapeDocumented {
		s, err := object(r.Extra).float(syncType, "duration_seconds")
		if err != nil {
			return 0, false
		}
		return secondsDuration(s)
	}
	if r.CompletedAt == nil {
		return 0, false
	}
	return microsDuration(microsBetween(r.StartedAt, *r.CompletedAt))
}

// errorCount is how many errors the result reports.
func (r SyncResult) errorCount() int64 {
	if r.Shape == ShapeDocumented {
		n, _ := object(r.Extra).count(syncType, "error_count") // absent: 0
		return n
	}
	return int64(len(r.Errors))
}

// Err applies the status rule: a *ResultError when the sync had errors and
// synced nothing, nil otherwise (errors alongside synced entities or
// relationships leave the run completed, with the errors in its result as
// warnings).
func (r SyncResult) Err() error {
	n := r.errorCount()
	if n == 0 {
		return nil
	}
	if r.Shape == ShapeDocumented {
		if r.SyncedCount > 0 {
			return nil
		}
		return &ResultError{Type: syncType, Count: n}
	}
	if r.EntitiesSynced > 0 || r.RelationshipsSynced > 0 {
		return nil
	}
	return &ResultError{Type: syncType, Errors: r.Errors, Count: n}
}

// summary is the message of the run's last progress event.
func (r SyncResult) summary() string {
	var s string
	if r.Shape == ShapeDocumented {
		s = fmt.Sprintf("sync: synced_count=%d error_count=%d", r.SyncedCount, r.errorCount())
	} else {
		s = fmt.Sprintf("sync: entities_synced=%d relationships_synced=%d errors=%d warnings=%d",
			r.EntitiesSynced, r.RelationshipsSynced, len(r.Errors), len(r.Warnings))
	}
	if r.errorCount() > 0 && r.Err() == nil {
		s += " (completed with warnings)"
	}
	return s
}
