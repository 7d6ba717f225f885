package capturespine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/spinecore/spine-go/core"
)

// Job is one row of Capture-Spine's legacy jobs table, kept by the Celery
// tasks that never went through the Dispatcher.
type Job struct {
	ID           int64
	JobType      string
	Status       string
	CeleryTaskID *string
	UserID       *string
	Queue        *string
	Payload      json.RawMessage // nil is SQL NULL
	Result       json.RawMessage // nil is SQL NULL
	ErrorMessage *string
	Progress     *int16
	Attempts     int
	CreatedAt    time.Time
	StartedAt    *time.Time
	FinishedAt   *time.Time
	UpdatedAt    time.Time
}

// JobMapping is the declarative Job → Execution mapping of phase 3. Only
// the job-type and status vocabularies vary between installations; every
// other column follows a fixed rule (see Execution):
//
//	job_type       → pipeline_name via Pipelines
//	status         → status via Statuses
//	payload        → params (NULL → {}; an object as is; anything else → {"payload": value})
//	celery_task_id → backend_task_id
//	attempts       → retry_count
//	queue          → lane (NULL → "normal"), priority by PriorityForLane
//	result, error_message, created_at, started_at, finished_at → result, error, created_at, started_at, completed_at
//	the rest       → metadata: legacy_job_id, legacy_job_type, legacy_status,
//	                 user_id and progress (when not NULL), legacy_updated_at
//
// and the execution id is JobExecutionID(id).
type JobMapping struct {
	Pipelines     map[string]string         `json:"pipelines"`
	Statuses      map[string]core.RunStatus `json:"statuses"`
	TriggerSource string                    `json:"trigger_source"`
}

// DefaultJobMapping maps the job types the six bypass tasks write, and the
// tracker's statuses: Celery's states (PENDING, RETRY → queued as spine-core
// maps them; STARTED → running; SUCCESS → completed; FAILURE → failed;
// REVOKED → cancelled) plus the tracker's own queued, running, error and
// cancelled. Migrated jobs are marked trigger_source "internal": the tasks
// were started by Capture-Spine itself, by beat or by its API, and the
// tracker did not record which.
func DefaultJobMapping() JobMapping {
	return JobMapping{
		Pipelines: map[string]string{
			"batch_import": "batch_import", "copilot_sync": "copilot_sync", "backup": "backup",
			"recommendations": "recommendations", "sync_environments": "sync_environments",
		},
		Statuses: map[string]core.RunStatus{
			"pending": core.StatusPending, "queued": core.StatusQueued, "retry": core.StatusQueued,
			"started": core.StatusRunning, "running": core.StatusRunning,
			"success": core.StatusCompleted, "failure": core.StatusFailed, "error": core.StatusFailed,
			"cancelled": core.StatusCancelled, "revoked": core.StatusCancelled,
		},
		TriggerSource: "internal",
	}
}

// LoadJobMapping reads a JSON mapping file and lays it over
// DefaultJobMapping: its entries add to or replace the defaults, so a file
// only names what differs. Unknown fields and invalid statuses are errors.
func LoadJobMapping(r io.Reader) (JobMapping, error) {
	var over JobMapping
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&over); err != nil {
		return JobMapping{}, fmt.Errorf("capturespine: job mapping: %w", err)
	}
	m := DefaultJobMapping()
	maps.Copy(m.Pipelines, over.Pipelines)
	maps.Copy(m.Statuses, over.Statuses)
	if over.TriggerSource != "" {
		m.TriggerSource = over.TriggerSource
	}
	if err := m.Validate(); err != nil {
		return JobMapping{}, err
	}
	return m, nil
}

// Validate checks that every target value is one an execution can hold.
func (m JobMapping) Validate() error {
	for _, legacy := range slices.Sorted(maps.Keys(m.Statuses)) {
		if s := m.Statuses[legacy]; !s.Valid() {
			return fmt.Errorf("capturespine: job mapping: status %q maps to %q, which is not one of pending, queued, running, completed, failed, cancelled, dead_lettered", legacy, s)
		}
	}
	for _, jobType := range slices.Sorted(maps.Keys(m.Pipelines)) {
		if m.Pipelines[jobType] == "" {
			return fmt.Errorf("capturespine: job mapping: job type %q maps to an empty pipeline name", jobType)
		}
	}
	if m.TriggerSource == "" {
		return fmt.Errorf("capturespine: job mapping: trigger_source is empty")
	}
	return nil
}

// Status maps a jobs.status value, or says how to map it.
func (m JobMapping) Status(legacy string) (core.RunStatus, error) {
	if s, ok := m.Statuses[legacy]; ok {
		return s, nil
	}
	return "", &UnknownValueError{Column: "jobs.status", Value: legacy,
		Fix: fmt.Sprintf(`add it to "statuses" in a job mapping file, e.g. {"statuses": {%q: "failed"}}`, legacy)}
}

// Pipeline maps a jobs.job_type value, or says how to map it.
func (m JobMapping) Pipeline(jobType string) (string, error) {
	if p, ok := m.Pipelines[jobType]; ok {
		return p, nil
	}
	return "", &UnknownValueError{Column: "jobs.job_type", Value: jobType,
		Fix: fmt.Sprintf(`add it to "pipelines" in a job mapping file, e.g. {"pipelines": {%q: "<pipeline name>"}}`, jobType)}
}

// Execution maps a job to the execution phase 3 writes for it.
func (m JobMapping) Execution(j Job) (Execution, error) {
	status, err := m.Status(j.Status)
	if err != nil {
		return Execution{}, fmt.Errorf("job %d: %w", j.ID, err)
	}
	pipeline, err := m.Pipeline(j.JobType)
	if err != nil {
		return Execution{}, fmt.Errorf("job %d: %w", j.ID, err)
	}
	params, err := jobParams(j.Payload)
	if err != nil {
		return Execution{}, fmt.Errorf("job %d: payload: %w", j.ID, err)
	}
	lane := LaneNormal
	if j.Queue != nil {
		lane = *j.Queue
	}
	metadata := map[string]any{
		"legacy_job_id": j.ID, "legacy_job_type": j.JobType, "legacy_status": j.Status,
		"legacy_updated_at": core.FormatTime(j.UpdatedAt),
	}
	if j.UserID != nil {
		metadata["user_id"] = *j.UserID
	}
	if j.Progress != nil {
		metadata["progress"] = *j.Progress
	}
	e := Execution{
		ExecutionID: JobExecutionID(j.ID), PipelineName: pipeline, Params: params,
		Lane: lane, TriggerSource: m.TriggerSource, Status: ExecutionStatus(status),
		BackendTaskID: cloneString(j.CeleryTaskID), RetryCount: j.Attempts,
		Result: bytes.Clone(j.Result), Error: cloneString(j.ErrorMessage),
		CreatedAt: j.CreatedAt, StartedAt: cloneTime(j.StartedAt), CompletedAt: cloneTime(j.FinishedAt),
		Kind: core.KindPipeline, Priority: PriorityForLane(lane),
		MaxRetries: core.DefaultMaxRetries, RetryDelay: core.DefaultRetryDelay,
		Metadata: metadata, Tags: map[string]string{},
	}
	if err := e.Validate(); err != nil {
		return Execution{}, fmt.Errorf("job %d: %w", j.ID, err)
	}
	return e, nil
}

func jobParams(payload json.RawMessage) (map[string]any, error) {
	if payload == nil {
		return map[string]any{}, nil
	}
	if p := bytes.TrimSpace(payload); len(p) > 0 && p[0] == '{' {
		return core.DecodeObject(p)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return map[string]any{"payload": v}, nil
}

func cloneString(s *string) *string {
	if s == nil {
		return nil
	}
	c := *s
	return &c
}

// jobNamespace is the UUID namespace of migrated jobs' execution ids.
var jobNamespace = uuid.MustParse("5230a20a-d61c-5731-8a15-d17714bd9e10")

// JobExecutionID is the execution id of the job with id jobID: a name-based
// UUID (version 3: MD5 of a fixed namespace and the decimal id), so copying
// a job twice, resuming a copy, or rolling one back finds the same row.
// Version 3 rather than 5 because PostgreSQL has md5() built in and SHA-1
// only through pgcrypto; JobExecutionIDSQL computes the same value there.
func JobExecutionID(jobID int64) string {
	return uuid.NewMD5(jobNamespace, []byte(strconv.FormatInt(jobID, 10))).String()
}

// JobExecutionIDSQL is JobExecutionID as a SQL expression of type uuid over
// the bigint expression jobID (a column reference, never user input): MD5
// of namespace || decimal id, then the version (3) and variant (RFC 4122)
// bits set as the RFC says.
//
// The expression computes the MD5 twice, which costs less than the
// subquery per row that computing it once in an expression takes.
func JobExecutionIDSQL(jobID string) string {
	return JobExecutionIDFromMD5SQL(JobIDMD5SQL(jobID))
}

// JobIDMD5SQL is the MD5 (as PostgreSQL's md5() gives it: 32 lower-case
// hex digits) that JobExecutionID is made of, for the bigint expression
// jobID. A query over many jobs can compute it once per row (in a LATERAL
// subquery) and pass it to JobExecutionIDFromMD5SQL: cheaper than
// JobExecutionIDSQL's subquery per row.
func JobIDMD5SQL(jobID string) string {
	ns := strings.ReplaceAll(jobNamespace.String(), "-", "")
	return fmt.Sprintf(`md5(decode('%s', 'hex') || convert_to((%s)::bigint::text, 'UTF8'))`, ns, jobID)
}

// JobIDDigestSQL is the MD5 of JobIDMD5SQL as 16 bytes (bytea), for
// JobExecutionIDFromDigestSQL.
func JobIDDigestSQL(jobID string) string {
	return fmt.Sprintf(`decode(%s, 'hex')`, JobIDMD5SQL(jobID))
}

// JobExecutionIDFromDigestSQL is JobExecutionIDFromMD5SQL over the bytea
// expression digest (JobIDDigestSQL), which it reads three times: the
// version and variant bits set on the bytes, then the uuid parsed from
// their hex. For a query that computes the digest once per row (in a
// LATERAL subquery) it costs a third less than the text form, whose
// overlay and translate copy the string twice.
func JobExecutionIDFromDigestSQL(digest string) string {
	return fmt.Sprintf(`encode(set_byte(set_byte(%[1]s, 6, (get_byte(%[1]s, 6) & 15) | 48), 8, (get_byte(%[1]s, 8) & 63) | 128), 'hex')::uuid`, digest)
}

// JobExecutionIDFromMD5SQL is the uuid JobExecutionID makes of the text
// expression md5 (JobIDMD5SQL): hex digit 13 becomes the version, 3, and
// digit 17 keeps its low two bits under the variant bits 10.
func JobExecutionIDFromMD5SQL(md5 string) string {
	return fmt.Sprintf(`overlay(overlay(%[1]s placing '3' from 13 for 1) placing translate(substr(%[1]s, 17, 1), '0123456789abcdef', '89ab89ab89ab89ab') from 17 for 1)::uuid`, md5)
}
