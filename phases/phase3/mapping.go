package phase3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// mapRef is the alias of the row holding the vocabularies in every
// statement phase 3 generates: the spine_phase3_mapping row in the copy,
// repair and verify, a variable of its row type in the trigger, and the
// plan's parameters in the plan.
const mapRef = "spine_map"

// boundMapping is capturespine.JobMapping.SQL over a jobs row aliased "j",
// with its three parameters (pipelines, statuses, trigger_source) bound to
// the columns of mapRef instead. The text does not depend on the
// vocabularies, only on the Go code: the trigger, the copy, repair and
// verify all run this one rendering, so they cannot drift apart.
type boundMapping struct {
	Columns []string
	Select  string
	// Metadata is the metadata expression in Select, MetadataText its
	// value as text (capturespine.JobSQL says more).
	Metadata, MetadataText string
}

// mappingParams names JobSQL.Args in order; a test pins the order.
var mappingParams = []string{"pipelines", "statuses", "trigger_source"}

var paramRE = regexp.MustCompile(`\$([0-9]+)`)

func bindMapping() (boundMapping, error) {
	q, err := capturespine.DefaultJobMapping().SQL("j", 1)
	if err != nil {
		return boundMapping{}, err
	}
	if len(q.Args) != len(mappingParams) {
		return boundMapping{}, fmt.Errorf("phase3: JobMapping.SQL has %d parameters, phase 3 binds %d (a build bug)", len(q.Args), len(mappingParams))
	}
	var bad error
	sel := paramRE.ReplaceAllStringFunc(q.Select, func(p string) string {
		n, _ := strconv.Atoi(p[1:])
		if n < 1 || n > len(mappingParams) {
			bad = fmt.Errorf("phase3: JobMapping.SQL uses parameter %s, phase 3 binds $1..$%d (a build bug)", p, len(mappingParams))
			return p
		}
		return mapRef + "." + mappingParams[n-1]
	})
	return boundMapping{Columns: q.Columns, Select: sel, Metadata: q.Metadata, MetadataText: q.MetadataText}, bad
}

// mappedSQL is true when the mapping knows the job's type and status: the
// rows the mapping can write. The others are rejects.
func mappedSQL(alias string) string {
	return fmt.Sprintf("(%[1]s.pipelines ? %[2]s.job_type AND %[1]s.statuses ? %[2]s.status)", mapRef, alias)
}

// decodeStoredMapping reads the columns of the mapping row back into a
// JobMapping, refusing what JobMapping.Validate refuses.
func decodeStoredMapping(pipelines, statuses []byte, triggerSource string) (capturespine.JobMapping, error) {
	m := capturespine.JobMapping{TriggerSource: triggerSource}
	if err := decodeStrict(pipelines, &m.Pipelines); err != nil {
		return m, fmt.Errorf("phase3: stored mapping: pipelines: %w", err)
	}
	if err := decodeStrict(statuses, &m.Statuses); err != nil {
		return m, fmt.Errorf("phase3: stored mapping: statuses: %w", err)
	}
	if m.Pipelines == nil || m.Statuses == nil {
		return m, errors.New("phase3: stored mapping: pipelines and statuses must be JSON objects")
	}
	if err := m.Validate(); err != nil {
		return m, fmt.Errorf("phase3: stored mapping: %w", err)
	}
	return m, nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func encodeMapping(m capturespine.JobMapping) (pipelines, statuses []byte, err error) {
	if pipelines, err = json.Marshal(m.Pipelines); err != nil {
		return nil, nil, err
	}
	statuses, err = json.Marshal(m.Statuses)
	return pipelines, statuses, err
}

// readMapping returns the stored mapping, or ok false when none is stored.
func readMapping(ctx context.Context, q querier) (m capturespine.JobMapping, ok bool, err error) {
	exists, err := tableExists(ctx, q, MappingTable)
	if err != nil || !exists {
		return m, false, err
	}
	var pipelines, statuses []byte
	var trigger string
	err = q.QueryRow(ctx, "SELECT pipelines, statuses, trigger_source FROM spine_phase3_mapping").Scan(&pipelines, &statuses, &trigger)
	if errors.Is(err, pgx.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("phase3: read the stored mapping: %w", err)
	}
	m, err = decodeStoredMapping(pipelines, statuses, trigger)
	return m, err == nil, err
}

// changedEntries lists the entries of old that next maps differently or not
// at all: changing them would leave jobs already copied mapped the old way.
// Entries only next has are additions, which are fine.
func changedEntries(old, next capturespine.JobMapping) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(old.Pipelines)) {
		if v, ok := next.Pipelines[k]; !ok || v != old.Pipelines[k] {
			out = append(out, fmt.Sprintf("pipelines[%q] %q -> %q", k, old.Pipelines[k], v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(old.Statuses)) {
		if v, ok := next.Statuses[k]; !ok || v != old.Statuses[k] {
			out = append(out, fmt.Sprintf("statuses[%q] %q -> %q", k, old.Statuses[k], v))
		}
	}
	if old.TriggerSource != next.TriggerSource {
		out = append(out, fmt.Sprintf("trigger_source %q -> %q", old.TriggerSource, next.TriggerSource))
	}
	return out
}

// upsertMapping stores m as the mapping row.
const upsertMapping = `
INSERT INTO spine_phase3_mapping (pipelines, statuses, trigger_source) VALUES ($1, $2, $3)
ON CONFLICT (singleton) DO UPDATE SET pipelines = EXCLUDED.pipelines, statuses = EXCLUDED.statuses,
    trigger_source = EXCLUDED.trigger_source, updated_at = now()`

// triggerFunctionSQL is the trigger function: for each row written to jobs,
// the execution state the job stands for (see the package comment), under a
// shared lock on the job's bucket while the copy has still to pass it, so
// that it never interleaves with a batch of the same ids (batch.go says why
// that is enough).
func triggerFunctionSQL(b boundMapping) string {
	idOf := capturespine.JobExecutionIDSQL
	var set []string
	for _, c := range b.Columns[1:] {
		q := pgx.Identifier{c}.Sanitize()
		set = append(set, fmt.Sprintf("%s = EXCLUDED.%s", q, q))
	}
	return fmt.Sprintf(`
CREATE OR REPLACE FUNCTION spine_phase3_jobs_sync() RETURNS trigger
LANGUAGE plpgsql AS $spine_phase3$
DECLARE
    spine_map spine_phase3_mapping%%ROWTYPE;
    natives   uuid[];
    cp_last   bigint;
    cp_max    bigint;
BEGIN
    -- Never interleave with a copy batch over the same ids: lock the ids
    -- the copy has still to pass (all of them until its bound is set).
    SELECT last_id, max_id INTO cp_last, cp_max FROM spine_phase3_copy;
    IF TG_OP <> 'INSERT' AND (cp_max IS NULL OR (OLD.id > cp_last AND OLD.id <= cp_max)) THEN
        PERFORM pg_advisory_xact_lock_shared(%[1]d, %[3]s);
    END IF;
    IF TG_OP <> 'DELETE' AND (cp_max IS NULL OR (NEW.id > cp_last AND NEW.id <= cp_max)) THEN
        PERFORM pg_advisory_xact_lock_shared(%[1]d, %[2]s);
    END IF;

    -- Undo what the old row stood for, where the new one stands elsewhere.
    IF TG_OP = 'DELETE' THEN
        IF OLD.celery_task_id IS NOT NULL THEN
            UPDATE executions SET metadata = spine_phase3_relink(metadata, OLD.id, OLD.id, '{}')
            WHERE backend_task_id = OLD.celery_task_id AND metadata -> 'legacy_job_ids' @> to_jsonb(OLD.id);
        END IF;
        DELETE FROM executions WHERE execution_id = %[4]s;
        DELETE FROM spine_phase3_rejects WHERE job_id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.celery_task_id IS NOT NULL AND (OLD.id <> NEW.id OR OLD.celery_task_id IS DISTINCT FROM NEW.celery_task_id) THEN
            UPDATE executions SET metadata = spine_phase3_relink(metadata, OLD.id, OLD.id, '{}')
            WHERE backend_task_id = OLD.celery_task_id AND metadata -> 'legacy_job_ids' @> to_jsonb(OLD.id);
        END IF;
        IF OLD.id <> NEW.id THEN
            DELETE FROM executions WHERE execution_id = %[4]s;
            DELETE FROM spine_phase3_rejects WHERE job_id = OLD.id;
        END IF;
    END IF;

    -- Link, not duplicate: an execution Capture-Spine wrote for the same
    -- Celery task lists the job instead of the job getting its own.
    natives := ARRAY(SELECT e.execution_id FROM executions AS e
                     WHERE e.backend_task_id = NEW.celery_task_id AND NOT (e.metadata ? '%[5]s')
                     ORDER BY e.execution_id);
    IF cardinality(natives) > 0 THEN
        UPDATE executions SET metadata = spine_phase3_relink(metadata, 1, 0, ARRAY[NEW.id])
        WHERE execution_id = ANY (natives)
          AND NOT COALESCE(metadata -> 'legacy_job_ids' @> to_jsonb(NEW.id), false);
        DELETE FROM executions WHERE execution_id = %[6]s;
        DELETE FROM spine_phase3_rejects WHERE job_id = NEW.id;
        RETURN NULL;
    END IF;

    -- A value the mapping does not know must never fail the application's
    -- write: the job is listed as a reject for the operator instead.
    SELECT * INTO spine_map FROM spine_phase3_mapping;
    IF NOT FOUND OR NOT (spine_map.pipelines ? NEW.job_type AND spine_map.statuses ? NEW.status) THEN
        INSERT INTO spine_phase3_rejects (job_id, job_type, status) VALUES (NEW.id, NEW.job_type, NEW.status)
        ON CONFLICT (job_id) DO UPDATE SET job_type = EXCLUDED.job_type, status = EXCLUDED.status, seen_at = now();
        DELETE FROM executions WHERE execution_id = %[6]s;
        RETURN NULL;
    END IF;
    DELETE FROM spine_phase3_rejects WHERE job_id = NEW.id;

    INSERT INTO executions (%[7]s)
    SELECT %[8]s
    FROM (SELECT NEW.*) AS j
    ON CONFLICT (execution_id) DO UPDATE SET %[9]s;
    RETURN NULL;
END
$spine_phase3$`,
		bucketClass, bucketSQL("NEW.id"), bucketSQL("OLD.id"), idOf("OLD.id"), metaMigrated, idOf("NEW.id"),
		columnList(b.Columns), b.Select, strings.Join(set, ", "))
}

const createTrigger = `
DROP TRIGGER IF EXISTS spine_phase3_jobs_sync ON jobs;
CREATE TRIGGER spine_phase3_jobs_sync AFTER INSERT OR UPDATE OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION spine_phase3_jobs_sync()`

// createTruncateFunction is the trigger function for TRUNCATE jobs, which
// fires no row trigger: it does what deleting every job would, so no
// execution, link or reject is left standing for a job that is gone. It
// sweeps executions whole (nothing indexes the metadata), but TRUNCATE is
// rare, and it runs in the truncating transaction, whose ACCESS EXCLUSIVE
// lock on jobs already orders it with every batch and row trigger.
var createTruncateFunction = fmt.Sprintf(`
CREATE OR REPLACE FUNCTION spine_phase3_jobs_truncate() RETURNS trigger
LANGUAGE plpgsql AS $spine_phase3$
BEGIN
    DELETE FROM executions WHERE metadata ? '%[1]s';
    UPDATE executions SET metadata = metadata - '%[2]s' WHERE metadata ? '%[2]s';
    DELETE FROM spine_phase3_rejects;
    RETURN NULL;
END
$spine_phase3$`, metaMigrated, metaLegacyJobIDs)

const createTruncateTrigger = `
DROP TRIGGER IF EXISTS spine_phase3_jobs_truncate ON jobs;
CREATE TRIGGER spine_phase3_jobs_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION spine_phase3_jobs_truncate()`

func columnList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}
