package entityspine

import (
	"encoding/json"
	"fmt"
	"time"
)

// RefreshResult is what one EntitySpine refresh of a source reports, in
// either shape. Fields of the other shape stay zero.
type RefreshResult struct {
	// Shape says which fields the value uses. The zero value is ShapeShipped.
	Shape Shape
	// Source names what was refreshed ("sec-tickers", "gleif"); both shapes.
	Source string

	// The shipped shape: entity-spine's SymbologyRefreshService.
	StartedAt         time.Time
	CompletedAt       time.Time
	RecordsFetched    int64
	NewEntities       int64
	NewClaims         int64
	UpdatedClaims     int64
	SkippedDuplicates int64
	Errors            []string

	// The documented shape: spine-core's integration guide.
	LoadedCount     int64
	UpdatedCount    int64
	ErrorCount      int64
	DurationSeconds float64

	// Extra holds every member that is not a field of the shape, as raw
	// JSON (compact, HTML-escaped as encoding/json writes it): unknown
	// members, and for the shipped shape duration_seconds and success_rate,
	// as given or, when absent, as derived on decode.
	Extra map[string]json.RawMessage
}

var (
	refreshDocumentedFields = []string{"source", "loaded_count", "updated_count", "error_count", "duration_seconds"}
	refreshShippedFields    = []string{"source", "started_at", "completed_at", "records_fetched", "new_entities",
		"new_claims", "updated_claims", "skipped_duplicates", "errors"}
)

// DecodeRefreshResult decodes a RefreshResult of either shape, told apart by
// the fields present. Unknown members are kept in Extra; an object that has
// neither shape's fields, or both, is a *ShapeError naming what each lacks.
func DecodeRefreshResult(data []byte) (RefreshResult, error) {
	o, err := decodeObject(refreshType, data)
	if err != nil {
		return RefreshResult{}, err
	}
	shape, err := o.detect(refreshType, refreshDocumentedFields, refreshShippedFields)
	if err != nil {
		return RefreshResult{}, err
	}
	r := RefreshResult{Shape: shape}
	if r.Source, err = o.str(refreshType, "source"); err != nil {
		return RefreshResult{}, err
	}
	if shape == ShapeDocumented {
		err = r.decodeDocumented(o)
	} else {
		err = r.decodeShipped(o)
	}
	if err != nil {
		return RefreshResult{}, err
	}
	return r, nil
}

func (r *RefreshResult) decodeDocumented(o object) error {
	var err error
	if err := o.counts(refreshType, []countField{{"loaded_count", &r.LoadedCount},
		{"updated_count", &r.UpdatedCount}, {"error_count", &r.ErrorCount}}); err != nil {
		return err
	}
	if r.DurationSeconds, err = o.float(refreshType, "duration_seconds"); err != nil {
		return err
	}
	r.Extra = o.extra(refreshDocumentedFields)
	return nil
}

func (r *RefreshResult) decodeShipped(o object) error {
	var err error
	if r.StartedAt, err = o.time(refreshType, "started_at"); err != nil {
		return err
	}
	if r.CompletedAt, err = o.time(refreshType, "completed_at"); err != nil {
		return err
	}
	if err := o.counts(refreshType, []countField{{"records_fetched", &r.RecordsFetched},
		{"new_entities", &r.NewEntities}, {"new_claims", &r.NewClaims}, {"updated_claims", &r.UpdatedClaims},
		{"skipped_duplicates", &r.SkippedDuplicates}}); err != nil {
		return err
	}
	if r.Errors, err = o.strings(refreshType, "errors"); err != nil {
		return err
	}
	r.Extra, err = fillDerived(o.extra(refreshShippedFields), r.derived())
	return err
}

// UnmarshalJSON implements json.Unmarshaler with DecodeRefreshResult, so a
// list of results (refresh_all) decodes with json.Unmarshal.
func (r *RefreshResult) UnmarshalJSON(data []byte) error {
	v, err := DecodeRefreshResult(data)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// derived is what Python's properties compute for the shipped shape:
// duration_seconds = (completed_at - started_at).total_seconds() and
// success_rate = 1 - len(errors) / records_fetched (1.0 when nothing was
// fetched).
func (r RefreshResult) derived() []derivedMember {
	duration, derr := pyFloat(ratio(microsBetween(r.StartedAt, r.CompletedAt), 1_000_000))
	rate := 1.0
	if r.RecordsFetched != 0 {
		rate = 1 - ratio(int64(len(r.Errors)), r.RecordsFetched)
	}
	success, serr := pyFloat(rate)
	return []derivedMember{{"duration_seconds", duration, derr}, {"success_rate", success, serr}}
}

// MarshalJSON writes the result JSON a run records: the shape's fields,
// the derived duration_seconds and success_rate of a shipped result unless
// Extra carries them, then Extra. Times are written as UTC ISO-8601 with
// microseconds. A value DecodeRefreshResult would refuse is an error.
func (r RefreshResult) MarshalJSON() ([]byte, error) {
	var w objectWriter
	switch r.Shape {
	case ShapeDocumented:
		if err := r.checkUnused(r.StartedAt.IsZero() && r.CompletedAt.IsZero() && r.RecordsFetched == 0 &&
			r.NewEntities == 0 && r.NewClaims == 0 && r.UpdatedClaims == 0 && r.SkippedDuplicates == 0 && len(r.Errors) == 0); err != nil {
			return nil, err
		}
		w.value("source", r.Source)
		w.count("loaded_count", r.LoadedCount)
		w.count("updated_count", r.UpdatedCount)
		w.count("error_count", r.ErrorCount)
		w.float("duration_seconds", r.DurationSeconds)
		w.extra(r.Extra, refreshDocumentedFields, nil)
	case ShapeShipped:
		if err := r.checkUnused(r.LoadedCount == 0 && r.UpdatedCount == 0 && r.ErrorCount == 0 && r.DurationSeconds == 0); err != nil {
			return nil, err
		}
		w.value("source", r.Source)
		w.time("started_at", r.StartedAt)
		w.time("completed_at", r.CompletedAt)
		w.count("records_fetched", r.RecordsFetched)
		w.count("new_entities", r.NewEntities)
		w.count("new_claims", r.NewClaims)
		w.count("updated_claims", r.UpdatedClaims)
		w.count("skipped_duplicates", r.SkippedDuplicates)
		w.strings("errors", r.Errors)
		w.extra(r.Extra, refreshShippedFields, r.derived())
	default:
		return nil, fmt.Errorf("entityspine: RefreshResult: unknown %v", r.Shape)
	}
	b, err := w.bytes()
	if err != nil {
		return nil, fmt.Errorf("entityspine: RefreshResult: %w", err)
	}
	return b, nil
}

func (r RefreshResult) checkUnused(unused bool) error {
	if unused {
		return nil
	}
	other := ShapeShipped
	if r.Shape == ShapeShipped {
		other = ShapeDocumented
	}
	return fmt.Errorf("entityspine: RefreshResult of the %v shape has fields of the %v shape set", r.Shape, other)
}

// Duration is how long EntitySpine says the refresh took: completed_at -
// started_at (shipped) or duration_seconds (documented). It is false when
// the result cannot say: a negative or out-of-range span.
func (r RefreshResult) Duration() (time.Duration, bool) {
	if r.Shape == ShapeDocumented {
		return secondsDuration(r.DurationSeconds)
	}
	return microsDuration(microsBetween(r.StartedAt, r.CompletedAt))
}

// Err applies the status rule: a *ResultError when the refresh had errors
// and nothing succeeded, nil otherwise (errors alongside successes leave
// the run completed, with the errors in its result as warnings).
func (r RefreshResult) Err() error {
	if r.Shape == ShapeDocumented {
		if r.ErrorCount == 0 || r.LoadedCount > 0 || r.UpdatedCount > 0 {
			return nil
		}
		return &ResultError{Type: refreshType, Source: r.Source, Count: r.ErrorCount}
	}
	// Every fetched record either succeeds (new, updated or skipped as
	// already known) or adds one error; a failed fetch adds one error to
	// zero records.
	n := int64(len(r.Errors))
	if n == 0 || r.RecordsFetched > n {
		return nil
	}
	return &ResultError{Type: refreshType, Source: r.Source, Errors: r.Errors, Count: n}
}

// summary is the message of the run's last progress event.
func (r RefreshResult) summary() string {
	var s string
	if r.Shape == ShapeDocumented {
		s = fmt.Sprintf("refresh of %q: loaded_count=%d updated_count=%d error_count=%d",
			r.Source, r.LoadedCount, r.UpdatedCount, r.ErrorCount)
	} else {
		s = fmt.Sprintf("refresh of %q: records_fetched=%d new_entities=%d new_claims=%d updated_claims=%d skipped_duplicates=%d errors=%d",
			r.Source, r.RecordsFetched, r.NewEntities, r.NewClaims, r.UpdatedClaims, r.SkippedDuplicates, len(r.Errors))
	}
	if (r.ErrorCount > 0 || len(r.Errors) > 0) && r.Err() == nil {
		s += " (completed with warnings)"
	}
	return s
}
