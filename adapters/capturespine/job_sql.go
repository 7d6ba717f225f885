package capturespine

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/spinecore/spine-go/core"
)

// JobSQL is a JobMapping as SQL, for phase 3's INSERT … SELECT: Columns are
// the executions columns in order, Select the matching select list over a
// jobs row, Args the values of its parameters. The mapping's vocabularies
// travel as jsonb parameters, never spliced into the text; a value missing
// from them yields NULL, which executions' NOT NULL constraints refuse, so
// callers check the vocabularies first (phase 3's plan does) for a readable report.
type JobSQL struct {
	Columns []string
	Select  string
	Args    []any
	// Metadata is the metadata column's expression, as it stands in
	// Select, and MetadataText the same value as text, exactly as jsonb
	// prints it (JobMetadataTextSQL): a caller that only compares may
	// replace the one with the other.
	Metadata, MetadataText string
}

// SQL renders the mapping over the jobs row aliased alias, numbering its
// parameters from firstParam so a caller can put its own first.
func (m JobMapping) SQL(alias string, firstParam int) (JobSQL, error) {
	if err := m.Validate(); err != nil {
		return JobSQL{}, err
	}
	pipelines, err := json.Marshal(m.Pipelines)
	if err != nil {
		return JobSQL{}, err
	}
	statuses, err := json.Marshal(m.Statuses)
	if err != nil {
		return JobSQL{}, err
	}
	j := func(col string) string { return pgx.Identifier{alias, col}.Sanitize() }
	p := func(i int) string { return fmt.Sprintf("$%d", firstParam+i) }
	lane := fmt.Sprintf("COALESCE(%s, '%s')", j("queue"), LaneNormal)
	exprs := []struct{ column, expr string }{
		{"execution_id", JobExecutionIDSQL(j("id"))},
		{"pipeline_name", fmt.Sprintf("(%s::jsonb ->> %s)", p(0), j("job_type"))},
		{"params", fmt.Sprintf("(CASE WHEN %[1]s IS NULL THEN '{}'::jsonb WHEN jsonb_typeof(%[1]s) = 'object' THEN %[1]s ELSE jsonb_build_object('payload', %[1]s) END)", j("payload"))},
		{"lane", lane},
		{"trigger_source", p(2) + "::text"},
		{"status", fmt.Sprintf("(%s::jsonb ->> %s)", p(1), j("status"))},
		{"backend_task_id", j("celery_task_id")},
		{"feed_id", "NULL::uuid"},
		{"retry_count", j("attempts")},
		{"result", j("result")},
		{"error", j("error_message")},
		{"created_at", j("created_at")},
		{"started_at", j("started_at")},
		{"completed_at", j("finished_at")},
		{"kind", fmt.Sprintf("'%s'", core.KindPipeline)},
		{"priority", PriorityForLaneSQL(lane)},
		{"max_retries", fmt.Sprint(core.DefaultMaxRetries)},
		{"retry_delay_seconds", fmt.Sprint(core.DefaultRetryDelay.Seconds())},
		{"metadata", fmt.Sprintf("jsonb_strip_nulls(jsonb_build_object("+
			"'legacy_job_id', %s, 'legacy_job_type', %s, 'legacy_status', %s, 'user_id', %s, 'progress', %s, "+
			`'legacy_updated_at', %s))`,
			j("id"), j("job_type"), j("status"), j("user_id"), j("progress"), legacyUpdatedAtSQL(j("updated_at")))},
		{"tags", "'{}'::jsonb"},
	}
	out := JobSQL{Args: []any{string(pipelines), string(statuses), m.TriggerSource}, MetadataText: JobMetadataTextSQL(alias)}
	list := make([]string, len(exprs))
	for i, e := range exprs {
		if e.column == "metadata" {
			out.Metadata = e.expr
		}
		out.Columns = append(out.Columns, e.column)
		list[i] = e.expr + " AS " + pgx.Identifier{e.column}.Sanitize()
	}
	out.Select = strings.Join(list, ",\n       ")
	return out, nil
}

// legacyUpdatedAtSQL is the metadata's legacy_updated_at: the job's
// updated_at in UTC, as Python's isoformat() writes it.
func legacyUpdatedAtSQL(updatedAt string) string {
	return fmt.Sprintf(`to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')`, updatedAt)
}

// JobMetadataTextSQL is the metadata the mapping writes for the jobs row
// aliased alias, as text exactly as jsonb prints it (keys shortest first,
// then in byte order; ", " and ": " between; keys with a NULL value left
// out, as jsonb_strip_nulls does), built by concatenation: a third of the
// cost of building the jsonb value, for verify, which only compares it with
// executions.metadata::text. A test holds it equal to the jsonb's text.
func JobMetadataTextSQL(alias string) string {
	j := func(col string) string { return pgx.Identifier{alias, col}.Sanitize() }
	pair := func(key, value, col string) string {
		return fmt.Sprintf(`CASE WHEN %s IS NOT NULL THEN '"%s": ' || %s END`, col, key, value)
	}
	str := func(expr string) string { return "to_json(" + expr + ")::text" }
	// A string JSON needs no escapes in: quoted by concatenation, a
	// third of the cost of to_json. user_id is a UUID (the cast makes any
	// other type fail, not differ); the date is digits and punctuation.
	plain := func(expr string) string { return `'"' || ` + expr + ` || '"'` }
	return "('{' || concat_ws(', ', " + strings.Join([]string{
		pair("user_id", plain(j("user_id")+"::uuid::text"), j("user_id")),
		pair("progress", j("progress")+"::text", j("progress")),
		pair("legacy_job_id", j("id")+"::text", j("id")),
		pair("legacy_status", str(j("status")), j("status")),
		pair("legacy_job_type", str(j("job_type")), j("job_type")),
		pair("legacy_updated_at", plain(legacyUpdatedAtSQL(j("updated_at"))), j("updated_at")),
	}, ", ") + ") || '}')"
}
